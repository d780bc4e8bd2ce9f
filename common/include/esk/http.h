/**
 * @file http.h
 * @brief The HTTP endpoints of an esk process: `/healthz`, `/readyz` and
 *        `/metrics`, served by libmicrohttpd from its own thread.
 *
 * - `GET /healthz`: 200 `ok` while the process runs and, once the watchdog
 *   runs (esk/watchdog.h), its main loop has made progress within
 *   `liveness.timeout.ms`; else 503 `not live: <reason>` (liveness).
 * - `GET /readyz`: 200 `ready` when the binary's readiness callback says so,
 *   else 503 with `not ready: <reason>` (readiness).
 * - `GET /metrics`: 200, the metrics registry in the Prometheus text format.
 *
 * Only GET and HEAD are served (405 with `Allow: GET, HEAD` otherwise); any
 * other path is 404. Connections (in all and per client address), the request
 * size (request line plus headers), the time to send the headers and idle
 * time are capped by configuration (esk_http_props).
 *
 * Wiring into a binary:
 *
 * @code
 *   static const esk_conf_prop_t *const tables[] = {esk_conf_common_props,
 *                                                   my_props, esk_http_props};
 *   ... esk_conf_new(), esk_conf_load() ...
 *   if (esk_http_check_conf(conf, &err)) exit(2);            // before connecting anywhere
 *   ...
 *   esk_http_t *http = NULL;
 *   if (esk_http_start(&http, conf, metrics, my_ready, my_state, &err)) exit(1);
 *   ... run until SIGTERM ...
 *   esk_http_stop(http);       // before destroying metrics or my_state
 * @endcode
 */
#ifndef ESK_HTTP_H
#define ESK_HTTP_H

#include <stddef.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/metrics.h"

/**
 * The `http.*` keys; append this table to a binary's tables:
 * - `http.listen` (default `127.0.0.1:0`): `host:port` or `[v6addr]:port` to
 *   listen on; port 0 lets the kernel pick a free port (logged at start, and
 *   returned by esk_http_port()), `off` serves nothing. Loopback by default:
 *   set `0.0.0.0:<port>` in a container so probes and scrapers can reach it.
 * - `http.max.connections` (default 32): a further connection closes the one
 *   that has waited longest for its request; while every connection is
 *   answering one, a few more are accepted, then they wait in the backlog.
 * - `http.request.max.bytes` (default 8192): memory for one request's line
 *   and headers; a larger request is answered with an error and closed.
 * - `http.timeout.s` (default 10): an idle connection is closed after this.
 * - `http.header.timeout.s` (default 5): a new connection that has not sent
 *   its request line and headers this long after its accept is closed
 *   (silence closes it then; a client that dribbles bytes loses its slot to
 *   the next connection accepted after the deadline).
 * - `http.max.connections.per.address` (default 8): a further connection
 *   from an address at the limit closes that address's connection that has
 *   waited longest for its request, or is refused when none is waiting.
 *
 * Probes are answered even when slow clients hold every general slot: a new
 * connection beyond `http.max.connections` closes the connection that has
 * waited longest for its request, and libmicrohttpd accepts a few more
 * connections than the general limit for when every slot is answering one.
 */
extern const esk_conf_prop_t esk_http_props[];

/**
 * Readiness callback, called from the HTTP thread on each `GET /readyz`, so
 * it must be thread-safe and quick: read state the main loop publishes
 * (atomics, a gauge via esk_metrics_value()), never use the main loop's Kafka
 * or PostgreSQL handles.
 * @param opaque as given to esk_http_start().
 * @param reason when not ready, write a one-line reason here (NUL-terminated;
 *        it is sent as the 503 body).
 * @param size   size of @p reason (at least 256).
 * @returns 1 when ready, 0 when not.
 */
typedef int (*esk_http_ready_fn)(void *opaque, char *reason, size_t size);

typedef struct esk_http_s esk_http_t;

/**
 * @brief Validates the `http.*` values of @p conf (address syntax, port
 *        range) without opening anything, so a bad value stops start-up early.
 * @returns ESK_OK or ESK_EINVAL naming the key, the value and why.
 */
int esk_http_check_conf(const esk_conf_t *conf, esk_error_t *err);

/**
 * @brief Starts serving in a libmicrohttpd-owned thread.
 * @param out     the server, or NULL when `http.listen=off` (ESK_OK then);
 *                stop it with esk_http_stop().
 * @param conf    read during the call only; must hold esk_http_props.
 * @param metrics borrowed for /metrics, may be NULL (then an empty body); must
 *                outlive the server.
 * @param ready   readiness callback, may be NULL (always ready).
 * @returns ESK_OK; ESK_EINVAL for a bad value or an address that cannot be
 *          bound (the message names `http.listen`, the value and the reason,
 *          e.g. "Address already in use"); ESK_ENOMEM.
 */
int esk_http_start(esk_http_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                   esk_http_ready_fn ready, void *opaque, esk_error_t *err);

/**
 * An API request (esk-gateway's and esk-query's routes): complete, its body
 * read. Valid from the route callback until it is answered with
 * esk_http_respond(), which any thread may call once; the connection waits
 * (suspended, without a thread) until then.
 */
typedef struct esk_http_req_s esk_http_req_t;

/**
 * An application's routes, served beside /healthz, /readyz and /metrics.
 * Called on the HTTP thread: it must not block (answer later from another
 * thread instead). Every request it gets must be answered exactly once.
 */
typedef struct esk_http_app_s {
  const char *prefix;  /**< paths that start with it go to handle (e.g. "/v1/") */
  void (*handle)(void *opaque, esk_http_req_t *req);
  void *opaque;
  size_t body_max;     /**< larger bodies get 413 before handle is called */
  const char *methods; /**< the Allow header for a method not served, e.g. "GET, POST" */
} esk_http_app_t;

/**
 * @brief As esk_http_start(), with @p app's routes (copied; its opaque must
 *        outlive the server). Requests the app has not answered when
 *        esk_http_stop() is called must be answered first (the app's job).
 */
int esk_http_start_app(esk_http_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                       esk_http_ready_fn ready, void *opaque, const esk_http_app_t *app,
                       esk_error_t *err);

/**
 * @brief Reads http.tls.cert.file and http.tls.key.file again (SIGHUP): new
 *        handshakes get the new certificate, open connections keep theirs.
 *        Safe while the server runs. Nothing to do without TLS.
 * @returns ESK_OK, or ESK_EINVAL naming the file and the reason (a missing
 *          or non-PEM file, a key that does not match): the certificate in
 *          use stays.
 */
int esk_http_reload_tls(esk_http_t *h, esk_error_t *err);

/** @brief The request's method ("GET", "POST", ...). */
const char *esk_http_req_method(const esk_http_req_t *r);
/** @brief The request's path, percent-decoded by libmicrohttpd, without the query. */
const char *esk_http_req_path(const esk_http_req_t *r);
/**
 * @brief The request's path as sent, before percent-decoding, without the
 *        query: split it on '/' and decode each segment (esk_text_pct_decode())
 *        to take `%2F` as a '/' inside a segment. A request whose path holds
 *        `%00` or whose query holds a NUL byte never reaches the app: the
 *        server answers it 400 `INVALID_PARAMETER` itself.
 */
const char *esk_http_req_raw_path(const esk_http_req_t *r);
/** @brief A request header (case-insensitive name), or NULL. */
const char *esk_http_req_header(const esk_http_req_t *r, const char *name);
/** @brief A query argument, or NULL. */
const char *esk_http_req_query(const esk_http_req_t *r, const char *name);
/** @brief The body (NUL-terminated, may hold NULs) and its length in @p len. */
const char *esk_http_req_body(const esk_http_req_t *r, size_t *len);

/**
 * @brief Answers @p r (from any thread, once); @p body is copied. @p headers
 *        are extra name, value pairs ending with NULL (may be NULL).
 *        After it returns @p r must not be used.
 */
void esk_http_respond(esk_http_req_t *r, unsigned status, const char *content_type,
                      const char *body, size_t len, const char *const *headers);

/** @brief The port the server listens on (the kernel's pick for port 0); 0 for NULL. */
int esk_http_port(const esk_http_t *http);

/**
 * @brief Stops serving: closes the listening socket and every open connection
 *        (also ones in the middle of a request), joins the thread and frees
 *        the server. After it returns the callback is no longer called.
 *        NULL does nothing.
 */
void esk_http_stop(esk_http_t *http);

#endif
