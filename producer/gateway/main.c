/* esk-gateway: commands over HTTP (see docs/api.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/conf.h"
#include "esk/http.h"
#include "esk/log.h"
#include "esk/metrics.h"
#include "esk/watchdog.h"
#include "esk/api.h"
#include "gateway.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

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
          "\n"
          "The keys below are read from their defaults, then -c FILE, then ESK_<KEY>\n"
          "variables, then -X key=value (the last one wins); kafka.producer.* keys reach its\n"
          "producer, kafka.consumer.* its reader, other kafka.* keys both.\n\n");
  esk_conf_print_help(f, tables, N_TABLES);
}

int main(int argc, char **argv) {
  esk_gateway_t *g = NULL;
  esk_conf_t *conf = NULL;
  esk_metrics_t *metrics = NULL;
  esk_error_t err = {0};
  int status = 1, go = esk_conf_main(&conf, argc, argv, "esk-gateway", tables, N_TABLES, usage);
  if (go >= 0) return go;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* before the HTTP server: /healthz reads its heartbeat */
  if (esk_watchdog_start(conf, &stop_flag, &err) || esk_metrics_new(&metrics, &err)) {
    fprintf(stderr, "esk-gateway: %s\n", err.msg);
    status = err.code == ESK_EINVAL ? 2 : 1;
    goto cleanup;
  }
  if (esk_gateway_new(&g, conf, metrics, &err)) {
    char q[600];
    ESK_ERROR("gateway", "msg=\"cannot start\" error=%s reason=%s", esk_error_name(err.code),
              esk_log_quote(q, sizeof(q), err.msg));
    status = err.code == ESK_EINVAL ? 2 : 1;
    goto cleanup;
  }
  if (esk_gateway_run(g, &stop_flag, &err)) goto cleanup;
  status = 0;
cleanup:
  esk_watchdog_shutdown(); /* what follows is bounded by shutdown.timeout.ms too */
  esk_gateway_destroy(g); /* first: its HTTP server reads the registry */
  esk_watchdog_stop();
  esk_metrics_destroy(metrics);
  esk_conf_destroy(conf);
  return status;
}
