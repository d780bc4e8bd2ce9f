/**
 * @file gateway.h
 * @brief esk-gateway: commands over HTTP (docs/api.md; docs/architecture.md,
 *        "HTTP API"). Write side: it only sends commands and reads results
 *        and event positions from Kafka.
 */
#ifndef ESK_GATEWAY_H
#define ESK_GATEWAY_H

#include <signal.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/metrics.h"

/** The `gateway.*` keys. */
extern const esk_conf_prop_t esk_gateway_props[];

typedef struct esk_gateway_s esk_gateway_t;

/**
 * @brief Opens the domain, the Kafka clients and the HTTP server (http.*).
 *        /readyz answers 200 once the reader has reached the end of every
 *        results and events partition, so no result of a command accepted
 *        after that can be missed.
 * @param metrics borrowed; must outlive the gateway.
 */
int esk_gateway_new(esk_gateway_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                    esk_error_t *err);

/** @brief The HTTP port (for tests with http.listen=127.0.0.1:0). */
int esk_gateway_port(const esk_gateway_t *g);

/**
 * @brief Reads results and events until @p stop is set; then answers every
 *        waiting request 503 and returns.
 */
int esk_gateway_run(esk_gateway_t *g, volatile sig_atomic_t *stop, esk_error_t *err);

/** @brief Stops the HTTP server and frees everything. NULL does nothing. */
void esk_gateway_destroy(esk_gateway_t *g);

/**
 * @brief Reads api.auth.file and the TLS files again (SIGHUP; docs/api.md,
 *        "Authentication" and "TLS"),
 *        while requests are served. @returns ESK_OK, or the file's error
 *        (what failed stays as it was).
 */
int esk_gateway_reload(esk_gateway_t *g, esk_error_t *err);

#endif
