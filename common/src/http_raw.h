#ifndef ESK_HTTP_RAW_H
#define ESK_HTTP_RAW_H
/* esk's answer written straight to a connection, past libmicrohttpd: only for
 * a request that left its connection's memory pool too full for libmicrohttpd
 * 0.9.75 to build any answer in (docs/api.md, "Threads and limits"). */
#include <microhttpd.h>
#include <stddef.h>

/* Writes "HTTP/1.1 <code>" with the JSON @p body (none when @p head_only) and
 * "Connection: close" to @p c's socket or TLS session, waiting at most a short
 * while for room, then ends the sending side. The caller then closes the
 * connection (its handler returns MHD_NO). @returns 0, or -1 when not all of it
 * could be written. */
int esk_http_raw_answer(struct MHD_Connection *c, unsigned code, const char *body, int head_only);

#endif
