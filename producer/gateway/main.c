/* esk-gateway: commands over HTTP (see docs/api.md). */
#include <stdio.h>

#include "esk/api.h"
#include "esk/daemon.h"
#include "esk/http.h"
#include "esk/watchdog.h"
#include "gateway.h"

static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_gateway_props,
                                                esk_api_props, esk_watchdog_props,
                                                esk_http_props};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

static void usage(FILE *f) {
  fprintf(f,
          "usage: esk-gateway [-c, --config FILE] [-X key=value]... [--help] [--version]\n"
          "       esk-gateway --help-markdown (the keys as a Markdown table)\n"
          "\n"
          "Takes commands over HTTP on http.listen: POST /v1/<domain>/commands with the JSON\n"
          "command eskctl submit takes (an Idempotency-Key header may give its command_id).\n"
          "It sends the command to <domain>.commands, keyed by the aggregate id, waits up to\n"
          "wait_ms for its result on <domain>.command-results (read_committed) and answers\n"
          "200 with the aggregate version and a consistency token for esk-query, 409 or 422\n"
          "for a refusal, 400/413/415 for bad input, 202 with a Location when the wait runs\n"
          "out, 503 when Kafka does not take it. GET /v1/<domain>/commands/<id> answers a\n"
          "command's result again. See docs/api.md. SIGTERM or SIGINT answers the waiting\n"
          "requests 503 and exits 0; a bad configuration exits 2, a failure to start 1.\n"
          "SIGHUP reads api.auth.file and the TLS files again (a bad file is logged, and\n"
          "what it held stays as it was).\n"
          "\n"
          "The keys below are read from their defaults, then -c FILE, then ESK_<KEY>\n"
          "variables, then -X key=value (the last one wins); kafka.producer.* keys reach its\n"
          "producer, kafka.consumer.* its reader, other kafka.* keys both.\n\n");
  esk_conf_print_help(f, tables, N_TABLES);
}

static int start(void **self, const esk_conf_t *conf, esk_metrics_t *metrics, esk_error_t *err) {
  return esk_gateway_new((esk_gateway_t **)self, conf, metrics, err);
}
static int run(void *self, volatile sig_atomic_t *stop, esk_error_t *err) {
  return esk_gateway_run(self, stop, err);
}
static int reload(void *self, esk_error_t *err) { return esk_gateway_reload(self, err); }
static void destroy(void *self) { esk_gateway_destroy(self); }

int main(int argc, char **argv) {
  static const esk_daemon_t d = {"esk-gateway", "gateway", tables, N_TABLES, usage,
                                 start, run, destroy, reload};
  return esk_daemon_main(&d, argc, argv);
}
