/* HTTP GET and Prometheus text helpers for tests and benches (no Criterion). */
#ifndef ESK_TEST_HTTP_H
#define ESK_TEST_HTTP_H

#include <stddef.h>

/** Sends one HTTP/1.0 request to 127.0.0.1:@p port: @p headers are whole
 *  "Name: value\r\n" lines (may be NULL), @p body (may be NULL) gets a
 *  Content-Length. The response's status line and headers go to @p head, its
 *  body to @p out (both may be NULL). @returns the status, -1 on failure. */
int esk_tp_http_request(int port, const char *method, const char *path, const char *headers,
                        const char *body, size_t body_len, char *head, size_t head_size,
                        char *out, size_t size);

/** `GET @p path` on 127.0.0.1:@p port (HTTP/1.0, read to the end); the body,
 *  NUL-terminated, into @p body. @returns the status code, -1 on a socket error or out of memory. */
int esk_tp_http_get(int port, const char *path, char *body, size_t size);

/** The value of the series @p series (name plus labels exactly as rendered,
 *  e.g. `x_total{code="A"}`) in a Prometheus text body. @returns 1 and sets
 *  @p out when the series is present, 0 when not. */
int esk_tp_metric(const char *body, const char *series, double *out);

#endif
