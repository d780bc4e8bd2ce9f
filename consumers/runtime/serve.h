/**
 * @file serve.h
 * @brief Serving a projection's generations (docs/architecture.md, "Read
 *        side"; generation.h): choose the generation (the live one, or the one
 *        `generation=N` names), run a projector on it, publish the live
 *        generation's views, and when a rebuild switches to another generation
 *        move to it with a fresh projector and a fresh projection.
 *
 * esk-projector's main() parses, configures and starts the HTTP server; this
 * module is the loop it then runs, with the thread that watches the registry
 * for a switch while the live generation is served.
 */
#ifndef ESK_SERVE_H
#define ESK_SERVE_H

#include <libpq-fe.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/metrics.h"
#include "esk/projection.h"
#include "event.h"
#include "projector.h"

/**
 * @brief Makes the projection afresh for a new generation (no state cached
 *        from the one before): frees what @p proj holds and fills it again.
 */
typedef int (*esk_serve_reopen_fn)(void *opaque, esk_projection_t *proj, esk_error_t *err);

/**
 * What esk_serve_run() serves. The caller fills the inputs and zeroes the
 * rest; the flags are written from a signal handler (esk_serve_request_stop())
 * and the watcher thread.
 */
typedef struct esk_serve_s {
  esk_conf_t *conf;            /**< the projector's; "generation" and "group.id" are set here */
  esk_projection_t *proj;      /**< the projection, made by the caller, remade by reopen */
  esk_serve_reopen_fn reopen;  /**< remakes @c proj when the generation moves */
  void *reopen_opaque;
  esk_decoder_t decoder;       /**< copied into each projector */
  const int64_t *from_ms;      /**< --from-time (ms since the epoch), or NULL */
  esk_metrics_t *metrics;      /**< the projector's families are registered here; may be NULL */

  volatile sig_atomic_t stop_requested; /**< stop for good (a signal) */
  volatile sig_atomic_t run_stop;       /**< ends the current esk_projector_run() */
  volatile sig_atomic_t generation_moved; /**< set with run_stop when a switch was seen */
  _Atomic(esk_projector_t *) running;   /**< the projector serving, for /readyz; or NULL */
  int config_error;            /**< set when start-up failed on a configuration value */
  PGconn *registry;            /**< the session that chooses and publishes generations */
} esk_serve_t;

/** @brief Asks esk_serve_run() to stop (async-signal-safe). */
void esk_serve_request_stop(esk_serve_t *s);

/**
 * @brief Serves generations until a stop is requested (then ESK_OK) or an
 *        error stops it (logged here; config_error says whether it was a
 *        configuration value). The last projector is left in @c running for
 *        esk_serve_close(), so that readers of it can be stopped first.
 */
int esk_serve_run(esk_serve_t *s, esk_error_t *err);

/** @brief Frees the last projector and the registry session. */
void esk_serve_close(esk_serve_t *s);

#endif
