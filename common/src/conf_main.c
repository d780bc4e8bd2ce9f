/* The command line every esk daemon takes (esk_conf_main() in esk/conf.h) and the
 * main() of the HTTP daemons (esk/daemon.h). */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>

#include "esk/conf.h"
#include "esk/daemon.h"
#include "esk/http.h"
#include "esk/log.h"
#include "esk/watchdog.h"

int esk_conf_main(esk_conf_t **out, int argc, char **argv, const char *prog,
                  const esk_conf_prop_t *const *tables, size_t n, void (*usage)(FILE *f)) {
  const char *file = NULL;
  char **overrides = calloc((size_t)argc + 1, sizeof(char *));
  size_t n_over = 0;
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"help-markdown", no_argument, NULL, 'D'},
                                       {"config-doc", no_argument, NULL, 'D'}, /* old name */
                                       {NULL, 0, NULL, 0}};
  int c, status = -1;
  esk_error_t err = {0};
  *out = NULL;
  if (!overrides) return 1;
  while (status < 0 && (c = getopt_long(argc, argv, "c:X:hV", opts, NULL)) != -1) {
    switch (c) {
    case 'c': file = optarg; break;
    case 'X': overrides[n_over++] = optarg; break;
    case 'h': usage(stdout); status = 0; break;
    case 'V':
      printf("%s %s (librdkafka %s)\n", prog, ESK_VERSION, rd_kafka_version_str());
      status = 0;
      break;
    case 'D': esk_conf_print_markdown(stdout, tables, n); status = 0; break;
    default: usage(stderr); status = 2; break;
    }
  }
  if (status < 0 && optind < argc) {
    fprintf(stderr, "%s: unexpected argument '%s' (try --help)\n", prog, argv[optind]);
    status = 2;
  }
  if (status < 0 && (esk_conf_new(out, tables, n, &err) ||
                     esk_conf_load(*out, file, overrides, n_over, &err) ||
                     esk_http_check_conf(*out, &err))) {
    fprintf(stderr, "%s: %s\n", prog, err.msg);
    status = 2;
  }
  if (status < 0) esk_log_set_level(esk_conf_get(*out, "log.level"));
  if (status >= 0) {
    esk_conf_destroy(*out);
    *out = NULL;
  }
  free(overrides);
  return status;
}

/* ------------------------------------------------------------ daemons --- */

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

/* SIGHUP, blocked in every thread, is taken here with sigtimedwait and
 * reloads the daemon, until the daemon stops. */
typedef struct {
  const esk_daemon_t *d;
  void *self;
  pthread_t thread;
  int running;
} reloader_t;

static void *reload_loop(void *arg) {
  reloader_t *r = arg;
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  const struct timespec tick = {0, 200 * 1000 * 1000};
  while (!stop_flag) {
    if (sigtimedwait(&hup, NULL, &tick) != SIGHUP) continue;
    esk_error_t err = {0};
    char q[600];
    if (r->d->reload(r->self, &err))
      ESK_WARN(r->d->fac, "msg=\"reload on SIGHUP failed; going on as before\" reason=%s",
               esk_log_quote(q, sizeof(q), err.msg));
    else
      ESK_INFO(r->d->fac, "msg=\"reloaded on SIGHUP\"");
  }
  return NULL;
}

/* @returns 0 when the reload thread runs (or @p r's daemon has no reload). */
static int reloader_start(reloader_t *r, void *self) {
  r->self = self;
  if (!r->d->reload) return 0;
  r->running = !pthread_create(&r->thread, NULL, reload_loop, r);
  return !r->running;
}

int esk_daemon_main(const esk_daemon_t *d, int argc, char **argv) {
  esk_conf_t *conf = NULL;
  esk_metrics_t *metrics = NULL;
  esk_error_t err = {0};
  void *self = NULL;
  int status = esk_conf_main(&conf, argc, argv, d->prog, d->tables, d->n_tables, d->usage);
  if (status >= 0) return status;
  status = 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* SIGHUP: blocked here, before any thread starts, so only reload_loop takes it */
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  if (d->reload) pthread_sigmask(SIG_BLOCK, &hup, NULL);
  reloader_t rl = {d, NULL, 0, 0};
  char q[600];
  if (esk_watchdog_start(conf, &stop_flag, &err) || esk_metrics_new(&metrics, &err)) {
    fprintf(stderr, "%s: %s\n", d->prog, err.msg);
    status = err.code == ESK_EINVAL ? 2 : 1;
  } else if (d->start(&self, conf, metrics, &err)) {
    ESK_ERROR(d->fac, "msg=\"cannot start\" error=%s reason=%s", esk_error_name(err.code),
              esk_log_quote(q, sizeof(q), err.msg));
    status = err.code == ESK_EINVAL ? 2 : 1;
  } else if (reloader_start(&rl, self)) {
    ESK_ERROR(d->fac, "msg=\"cannot start the SIGHUP thread\"");
  } else if (d->run(self, &stop_flag, &err)) {
    ESK_ERROR(d->fac, "msg=\"stopping on a fatal error\" reason=%s",
              esk_log_quote(q, sizeof(q), err.msg));
  } else {
    status = 0;
  }
  stop_flag = 1; /* run() may have returned on its own: the reloader stops too */
  if (rl.running) pthread_join(rl.thread, NULL);
  esk_watchdog_shutdown(); /* what follows is bounded by shutdown.timeout.ms too */
  if (self) d->destroy(self); /* first: its HTTP server reads the registry */
  esk_watchdog_stop();
  esk_metrics_destroy(metrics);
  esk_conf_destroy(conf);
  return status;
}
