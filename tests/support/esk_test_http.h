/* HTTP GET and Prometheus text helpers for tests and benches (no Criterion). */
#ifndef ESK_TEST_HTTP_H
#define ESK_TEST_HTTP_H

#include <stddef.h>

/** `GET @p path` on 127.0.0.1:@p port (HTTP/1.0, read to the end); the body,
 *  NUL-terminated, into @p body. @returns the status code, -1 on a socket error or out of memory. */
int esk_tp_http_get(int port, const char *path, char *body, size_t size);

/** The value of the series @p series (name plus labels exactly as rendered,
 *  e.g. `x_total{code="A"}`) in a Prometheus text body. @returns 1 and sets
 *  @p out when the series is present, 0 when not. */
int esk_tp_metric(const char *body, const char *series, double *out);

#endif
