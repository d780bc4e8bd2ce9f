/**
 * @file api_auth.h
 * @brief Bearer tokens with scopes for the HTTP API daemons (docs/api.md,
 *        "Authentication"): `Authorization: Bearer <token>` is checked against
 *        a file of SHA-256 hashes, compared in constant time, never logged.
 *
 * The file (`api.auth.file`) holds one token per line, `#` starts a comment:
 * @code
 *   # name          scopes                          sha256 of the token (hex)
 *   web-frontend    commands:write,queries:read     5e88...42d8
 * @endcode
 * Names are [a-z0-9_.-]{1,63}; the scopes are commands:write (esk-gateway)
 * and queries:read (esk-query). The file holds no token itself.
 * esk_api_auth_reload() reads it again while requests are checked (SIGHUP).
 */
#ifndef ESK_API_AUTH_H
#define ESK_API_AUTH_H

#include <stddef.h>

#include "esk/error.h"
#include "esk/http.h"
#include "esk/metrics.h"

#define ESK_SCOPE_COMMANDS_WRITE "commands:write"
#define ESK_SCOPE_QUERIES_READ "queries:read"
#define ESK_AUTH_TOKEN_MAX 4096 /**< longest bearer token taken */

typedef struct esk_api_auth_s esk_api_auth_t;

/**
 * @brief Reads the tokens file at @p path into @p *out. An empty @p path turns
 *        authentication off (*out NULL), with a warning when @p listen is not
 *        a loopback address.
 * @returns ESK_OK, or ESK_EINVAL naming the file, the line and the reason.
 */
int esk_api_auth_load(esk_api_auth_t **out, const char *path, const char *listen,
                      esk_error_t *err);

/**
 * @brief Reads @p a's file again and, when the whole file is good, serves its
 *        tokens from then on; otherwise the tokens stay as they were. Safe
 *        while other threads check requests against @p a.
 * @returns ESK_OK (NULL @p a, authentication off, too: it cannot be turned on
 *          without a restart), or the error of esk_api_auth_load().
 */
int esk_api_auth_reload(esk_api_auth_t *a, esk_error_t *err);

/** @brief Frees @p a (NULL is fine). */
void esk_api_auth_free(esk_api_auth_t *a);

/**
 * @brief Checks @p authorization (the header's value, NULL when absent) for
 *        @p scope. @returns 0 when allowed (or @p a is NULL), 401 when the
 *        token is missing, malformed or unknown, 403 when it lacks the scope;
 *        @p msg says which, naming the token's name (never the token).
 */
unsigned esk_api_auth_check(esk_api_auth_t *a, const char *authorization,
                            const char *scope, char *msg, size_t size);

/**
 * @brief esk_api_auth_check() on @p req's Authorization header, answering a
 *        refusal itself (401 with WWW-Authenticate: Bearer, or 403).
 * @returns 0 when allowed, 1 when @p req was answered.
 */
int esk_api_auth_require(esk_api_auth_t *a, esk_metric_t *requests, esk_http_req_t *req,
                         const char *scope);

#endif
