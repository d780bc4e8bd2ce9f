/* HTTP GET and Prometheus text helpers for tests and benches (no Criterion:
 * benches link them too). */
#include "esk_test_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int esk_tp_http_request(int port, const char *method, const char *path, const char *headers,
                        const char *body, size_t body_len, char *head, size_t head_size,
                        char *out, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {35, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char *req = NULL, *resp = NULL;
  size_t len = 0, cap = 0;
  int status = -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) goto cleanup;
  size_t rsize = strlen(path) + (headers ? strlen(headers) : 0) + body_len + 256;
  if (!(req = malloc(rsize))) goto cleanup;
  int n = snprintf(req, rsize, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s", method, path,
                   headers ? headers : "");
  if (body) n += snprintf(req + n, rsize - (size_t)n, "Content-Length: %zu\r\n", body_len);
  n += snprintf(req + n, rsize - (size_t)n, "\r\n");
  if (body) {
    memcpy(req + n, body, body_len);
    n += (int)body_len;
  }
  for (int off = 0; off < n;) { /* a server may answer and close before it all is sent */
    ssize_t w = write(fd, req + off, (size_t)(n - off));
    if (w <= 0) break;
    off += (int)w;
  }
  for (;;) {
    if (cap - len < 4097) {
      cap = cap ? cap * 2 : 65536;
      char *grown = realloc(resp, cap);
      if (!grown) goto cleanup;
      resp = grown;
    }
    ssize_t r = read(fd, resp + len, cap - len - 1);
    if (r < 0 && !len) goto cleanup;
    if (r <= 0) break;
    len += (size_t)r;
  }
  if (!resp) goto cleanup;
  resp[len] = '\0';
  const char *b = strstr(resp, "\r\n\r\n");
  if (strncmp(resp, "HTTP/1.", 7) || !b) goto cleanup;
  status = atoi(resp + 9);
  if (head) snprintf(head, head_size, "%.*s", (int)(b - resp), resp);
  if (out) snprintf(out, size, "%s", b + 4);
cleanup:
  free(req);
  free(resp);
  close(fd);
  return status;
}

int esk_tp_http_get(int port, const char *path, char *body, size_t size) {
  return esk_tp_http_request(port, "GET", path, NULL, NULL, 0, NULL, 0, body, size);
}

int esk_tp_metric(const char *body, const char *series, double *out) {
  size_t n = strlen(series);
  for (const char *l = body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    if (!strncmp(l, series, n) && l[n] == ' ') {
      *out = strtod(l + n + 1, NULL);
      return 1;
    }
  }
  return 0;
}

