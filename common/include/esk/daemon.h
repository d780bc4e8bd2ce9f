/**
 * @file daemon.h
 * @brief The main() of an esk HTTP daemon (esk-gateway, esk-query): the
 *        command line (esk_conf_main()), SIGTERM/SIGINT, SIGHUP (reload),
 *        the watchdog, the metrics registry, then start, run and destroy of
 *        the daemon.
 */
#ifndef ESK_DAEMON_H
#define ESK_DAEMON_H

#include <signal.h>
#include <stdio.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/metrics.h"

typedef struct esk_daemon_s {
  const char *prog; /**< e.g. "esk-gateway": messages and --version */
  const char *fac;  /**< its log facility */
  const esk_conf_prop_t *const *tables;
  size_t n_tables;
  void (*usage)(FILE *f);
  /** Starts it (its HTTP server included); ESK_EINVAL exits 2, other errors 1. */
  int (*start)(void **self, const esk_conf_t *conf, esk_metrics_t *metrics, esk_error_t *err);
  /** Runs until @p stop is set (by SIGTERM or SIGINT). */
  int (*run)(void *self, volatile sig_atomic_t *stop, esk_error_t *err);
  void (*destroy)(void *self);
  /** On SIGHUP, from a thread of its own while run() goes on: reads again
   *  what may change without a restart (tokens, TLS certificates). An error
   *  is logged and the daemon goes on as it was. */
  int (*reload)(void *self, esk_error_t *err);
} esk_daemon_t;

/** @brief Runs @p d. @returns the exit status: 0 after a stop, 1 on a failure, 2 for a bad configuration. */
int esk_daemon_main(const esk_daemon_t *d, int argc, char **argv);

#endif
