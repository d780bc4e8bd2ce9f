/* esk-producer: the command side of esk (see docs/producer.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>

#include "esk/conf.h"
#include "esk/http.h"
#include "esk/log.h"
#include "esk/metrics.h"
#include "esk/watchdog.h"
#include "producer.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_producer_props,
                                                esk_watchdog_props, esk_http_props};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

/* /readyz, from the HTTP thread: reads only the published atomics. */
static int ready(void *opaque, char *reason, size_t size) {
  return esk_producer_ready(opaque, reason, size);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: esk-producer [-c, --config FILE] [-X key=value]... [--help] [--version]\n"
          "       esk-producer --help-markdown (the keys as a Markdown table)\n"
          "\n"
          "Handles the commands of <domain>.commands in the consumer group of the command\n"
          "handlers: for each partition it holds, it restores the aggregates (snapshots, then\n"
          "events), then decides commands in batches, one Kafka transaction per batch with\n"
          "the events, results, snapshots and consumed offsets. SIGTERM or SIGINT completes\n"
          "the open batch, leaves the group and exits 0; a fenced or fatal error exits 1; a\n"
          "shutdown longer than shutdown.timeout.ms exits 3, naming what it waited for.\n"
          "\n"
          "Configuration, later sources winning: defaults, -c FILE (key=value lines), the\n"
          "environment (ESK_<KEY>), -X key=value. A kafka.<property> key goes to every Kafka\n"
          "client; kafka.consumer.* only to the consumers (of the commands, and the reader\n"
          "that restores partitions), kafka.producer.* only to the transactional producer.\n"
          "\n");
  esk_conf_print_help(f, tables, N_TABLES);
}

int main(int argc, char **argv) {
  int status = 1;
  esk_conf_t *conf = NULL;
  esk_producer_t *p = NULL;
  esk_metrics_t *metrics = NULL;
  esk_http_t *http = NULL;
  static esk_producer_health_t health; /* zero: not running */
  esk_error_t err = {0};
  int go = esk_conf_main(&conf, argc, argv, "esk-producer", tables, N_TABLES, usage);
  if (go >= 0) return go;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* before the HTTP server: /healthz reads its heartbeat */
  if (esk_watchdog_start(conf, &stop_flag, &err) || esk_metrics_new(&metrics, &err) ||
      esk_http_start(&http, conf, metrics, ready, &health, &err)) {
    fprintf(stderr, "esk-producer: %s\n", err.msg);
    status = err.code == ESK_EINVAL ? 2 : 1;
    goto cleanup;
  }
  /* /healthz answers from here on; /readyz once partitions are restored */
  if (esk_producer_new(&p, conf, metrics, &health, &err)) {
    char q[600];
    ESK_ERROR("producer", "msg=\"cannot start\" error=%s reason=%s", esk_error_name(err.code),
              esk_log_quote(q, sizeof(q), err.msg));
    goto cleanup;
  }
  if (esk_producer_run(p, &stop_flag, &err)) {
    char q[600];
    ESK_ERROR("producer", "msg=\"stopping on a fatal error\" reason=%s",
              esk_log_quote(q, sizeof(q), err.msg));
    goto cleanup;
  }
  status = 0;
cleanup:
  esk_watchdog_shutdown(); /* what follows is bounded by shutdown.timeout.ms too */
  esk_http_stop(http); /* first: it reads the registry and the health */
  esk_producer_destroy(p);
  esk_watchdog_stop();
  esk_metrics_destroy(metrics);
  esk_conf_destroy(conf);
  return status;
}
