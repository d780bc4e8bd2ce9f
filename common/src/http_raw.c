/* A refusal written past libmicrohttpd (http_raw.h): libmicrohttpd 0.9.75
 * builds an answer's status line and headers in what a request left of the
 * connection's memory pool, and closes the connection unanswered when that is
 * less than the answer; esk answers such a request on the socket itself. */
#include "http_raw.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* the longest wait for room in the socket's send buffer, per write */
#define RAW_WAIT_MS 200

static int wait_writable(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  return poll(&p, 1, RAW_WAIT_MS) == 1 ? 0 : -1;
}

/* one write to the TLS session or the socket: bytes written, 0 to try again, -1 */
static ssize_t write_some(gnutls_session_t tls, int fd, const char *buf, size_t len) {
  if (tls) {
    ssize_t n = gnutls_record_send(tls, buf, len);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) return 0;
    return n < 0 ? -1 : n;
  }
  ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
  return n;
}

static int write_all(gnutls_session_t tls, int fd, const char *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = write_some(tls, fd, buf + off, len - off);
    if (n < 0 || (n == 0 && wait_writable(fd))) return -1;
    off += (size_t)n;
  }
  return 0;
}

int esk_http_raw_answer(struct MHD_Connection *c, unsigned code, const char *body, int head_only) {
  const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  const union MHD_ConnectionInfo *tls = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (!fd) return -1;
  const char *reason = MHD_get_reason_phrase_for(code);
  char msg[1024];
  int n = snprintf(msg, sizeof(msg),
                   "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                   "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                   code, reason && *reason ? reason : "Error", strlen(body), head_only ? "" : body);
  if (n < 0 || (size_t)n >= sizeof(msg)) return -1;
  gnutls_session_t s = tls ? (gnutls_session_t)tls->tls_session : NULL;
  int rc = write_all(s, fd->connect_fd, msg, (size_t)n);
  if (!s) shutdown(fd->connect_fd, SHUT_WR); /* the answer ends here; libmicrohttpd closes */
  return rc;
}
