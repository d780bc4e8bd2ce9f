/**
 * @file query.h
 * @brief esk-query: declared read-model queries over HTTP, with
 *        read-your-writes through consistency tokens (docs/api.md;
 *        docs/architecture.md, "HTTP API"). Read side: it reads PostgreSQL
 *        only (the read models and the projectors' stored positions).
 */
#ifndef ESK_QUERY_H
#define ESK_QUERY_H

#include <signal.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/metrics.h"

/** The `query.*` keys. */
extern const esk_conf_prop_t esk_query_props[];

typedef struct esk_query_s esk_query_t;

/**
 * @brief Loads the declared queries (query.file), connects the workers to
 *        PostgreSQL, prepares every query there (a refused one stops
 *        start-up naming it) and starts the HTTP server.
 * @param metrics borrowed; must outlive the server.
 */
int esk_query_new(esk_query_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                  esk_error_t *err);

/** @brief The HTTP port. */
int esk_query_port(const esk_query_t *q);

/** @brief Serves until @p stop is set (the workers answer; this thread beats the watchdog). */
int esk_query_run(esk_query_t *q, volatile sig_atomic_t *stop, esk_error_t *err);

/** @brief Answers what is queued 503, stops the workers and the server. NULL does nothing. */
void esk_query_destroy(esk_query_t *q);

/**
 * @brief Reads api.auth.file and the TLS files again (SIGHUP; docs/api.md,
 *        "Authentication" and "TLS"),
 *        while queries are served. @returns ESK_OK, or the file's error
 *        (what failed stays as it was).
 */
int esk_query_reload(esk_query_t *q, esk_error_t *err);

#endif
