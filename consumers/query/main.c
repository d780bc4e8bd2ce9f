/* esk-query: declared read-model queries over HTTP (see docs/api.md). */
#include <stdio.h>

#include "esk/api.h"
#include "esk/daemon.h"
#include "esk/http.h"
#include "esk/watchdog.h"
#include "query.h"

static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_query_props,
                                                esk_api_props, esk_watchdog_props,
                                                esk_http_props};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

static void usage(FILE *f) {
  fprintf(f,
          "usage: esk-query [-c, --config FILE] [-X key=value]... [--help] [--version]\n"
          "       esk-query --help-markdown (the keys as a Markdown table)\n"
          "\n"
          "Serves the queries declared in query.file over HTTP on http.listen, reading the\n"
          "read models' views in pg.schema (always the live generation). A query with a\n"
          "consistency token from esk-gateway (?consistency=T or an Esk-Consistency header)\n"
          "is answered once the projection's stored positions have reached it, waiting up\n"
          "to wait_ms (?wait_ms=, default query.wait.ms); past it, 503 STALE with the\n"
          "positions and Retry-After. 404 for no such row or route, 400 for a bad parameter\n"
          "or token. GET /v1/<domain>/aggregates/<id>/state?as_of=<RFC 3339 time> folds the\n"
          "aggregate's event_log rows up to as_of with the domain's own evolve (its shared\n"
          "object from domain.dir) and renders the state. See docs/api.md.\n"
          "SIGTERM or SIGINT answers what is queued 503 and exits\n"
          "0; a bad configuration or a declaration PostgreSQL refuses exits 2. SIGHUP reads\n"
          "api.auth.file and the TLS files again (a bad file is logged, and what it held\n"
          "stays as it was).\n"
          "\n"
          "Keys come from their defaults, -c FILE, ESK_<KEY> variables and -X key=value,\n"
          "the last one winning:\n\n");
  esk_conf_print_help(f, tables, N_TABLES);
}

static int start(void **self, const esk_conf_t *conf, esk_metrics_t *metrics, esk_error_t *err) {
  return esk_query_new((esk_query_t **)self, conf, metrics, err);
}
static int run(void *self, volatile sig_atomic_t *stop, esk_error_t *err) {
  return esk_query_run(self, stop, err);
}
static int reload(void *self, esk_error_t *err) { return esk_query_reload(self, err); }
static void destroy(void *self) { esk_query_destroy(self); }

int main(int argc, char **argv) {
  static const esk_daemon_t d = {"esk-query", "query", tables, N_TABLES, usage,
                                 start, run, destroy, reload};
  return esk_daemon_main(&d, argc, argv);
}
