#include "esk/http.h"
#include "esk/log.h"
#include "esk/watchdog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A scrape never produces more than this; a registry that does is a bug. */
#define METRICS_MAX_BYTES ((size_t)16 << 20)
#define LISTEN_BACKLOG 64

const esk_conf_prop_t esk_http_props[] = {
    {"http.listen", ESK_CONF_STRING, "127.0.0.1:0", 0, 0, NULL, NULL,
     "Address of the /healthz, /readyz and /metrics endpoints: host:port or [v6addr]:port; "
     "port 0 lets the kernel pick a free port (logged at start), off serves nothing. "
     "Loopback by default; use 0.0.0.0:<port> in a container."},
    {"http.max.connections", ESK_CONF_INT, "32", 1, 4096, NULL, NULL,
     "Most HTTP connections served at once; more wait in the listen backlog."},
    {"http.request.max.bytes", ESK_CONF_INT, "8192", 2048, 1048576, NULL, NULL,
     "Largest HTTP request line plus headers; a larger request gets an error and is closed."},
    {"http.timeout.s", ESK_CONF_INT, "10", 1, 3600, NULL, NULL,
     "Seconds after which an idle HTTP connection is closed."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

struct esk_http_s {
  struct MHD_Daemon *daemon;
  esk_metrics_t *metrics;
  esk_http_ready_fn ready;
  void *opaque;
  int port;
};

/* ------------------------------------------------------------ address --- */

typedef struct {
  char host[256];
  char port[8];
  int off;
} listen_addr_t;

static int parse_listen(listen_addr_t *a, const char *v, esk_error_t *err) {
  memset(a, 0, sizeof(*a));
  if (!v || !strcmp(v, "off")) {
    a->off = 1;
    return ESK_OK;
  }
  const char *host = v, *colon;
  size_t hlen;
  if (*v == '[') {
    const char *close = strchr(v, ']');
    if (!close || close[1] != ':')
      return esk_error_set(err, ESK_EINVAL,
                           "invalid value '%s' for http.listen: expected [v6addr]:port", v);
    host = v + 1;
    hlen = (size_t)(close - host);
    colon = close + 1;
  } else {
    colon = strrchr(v, ':');
    if (!colon)
      return esk_error_set(err, ESK_EINVAL,
                           "invalid value '%s' for http.listen: expected host:port or off", v);
    hlen = (size_t)(colon - v);
    if (memchr(v, ':', hlen))
      return esk_error_set(err, ESK_EINVAL,
                           "invalid value '%s' for http.listen: write an IPv6 address in "
                           "brackets, [::1]:port", v);
  }
  if (hlen == 0 || hlen >= sizeof(a->host))
    return esk_error_set(err, ESK_EINVAL, "invalid value '%s' for http.listen: %s host", v,
                         hlen ? "too long a" : "empty");
  const char *port = colon + 1;
  size_t plen = strlen(port);
  int ok = plen > 0 && plen <= 5;
  for (size_t i = 0; ok && i < plen; i++) ok = port[i] >= '0' && port[i] <= '9';
  if (!ok || atoi(port) > 65535)
    return esk_error_set(err, ESK_EINVAL,
                         "invalid value '%s' for http.listen: port '%s' is not in 0..65535", v,
                         port);
  memcpy(a->host, host, hlen);
  a->host[hlen] = '\0';
  snprintf(a->port, sizeof(a->port), "%d", atoi(port));
  return ESK_OK;
}

int esk_http_check_conf(const esk_conf_t *conf, esk_error_t *err) {
  listen_addr_t a;
  return parse_listen(&a, esk_conf_get(conf, "http.listen"), err);
}

/* Binds the listening socket ourselves, so that a failure says why (errno)
 * and port 0 can be read back with getsockname(). */
static int open_listener(int *out, int *port, int *v6, const listen_addr_t *a, const char *value,
                         esk_error_t *err) {
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int g = getaddrinfo(a->host, a->port, &hints, &res);
  if (g)
    return esk_error_set(err, ESK_EINVAL, "http.listen=%s: cannot resolve '%s': %s", value,
                         a->host, gai_strerror(g));
  int rc = ESK_OK, fd = -1, one = 1;
  fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  if (fd < 0) {
    rc = esk_error_set(err, ESK_EINVAL, "http.listen=%s: socket: %s", value, strerror(errno));
    goto cleanup;
  }
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, LISTEN_BACKLOG)) {
    rc = esk_error_set(err, ESK_EINVAL, "http.listen=%s: cannot listen: %s", value,
                       strerror(errno));
    goto cleanup;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
    rc = esk_error_set(err, ESK_EINVAL, "http.listen=%s: getsockname: %s", value,
                       strerror(errno));
    goto cleanup;
  }
  *v6 = ss.ss_family == AF_INET6;
  *port = ntohs(*v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                    : ((struct sockaddr_in *)&ss)->sin_port);
  *out = fd;
  fd = -1;
cleanup:
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return rc;
}

/* ------------------------------------------------------------ serving --- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
                             void *body, size_t len, enum MHD_ResponseMemoryMode mode) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
  if (!r) {
    if (mode == MHD_RESPMEM_MUST_FREE) free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *text) {
  return reply(c, code, "text/plain; charset=utf-8", (void *)text, strlen(text),
               MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result serve_metrics(esk_http_t *h, struct MHD_Connection *c) {
  esk_buf_t b;
  esk_error_t err = {0};
  esk_buf_init(&b, METRICS_MAX_BYTES);
  if (h->metrics && esk_metrics_render(h->metrics, &b, &err)) {
    ESK_WARN("http", "msg=\"cannot render metrics\" reason=\"%s\"", err.msg);
    esk_buf_free(&b);
    return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render metrics\n");
  }
  if (b.len == 0) {
    esk_buf_free(&b);
    return reply(c, MHD_HTTP_OK, ESK_METRICS_CONTENT_TYPE, (void *)"", 0, MHD_RESPMEM_PERSISTENT);
  }
  /* The response takes the rendered buffer and free()s it. */
  return reply(c, MHD_HTTP_OK, ESK_METRICS_CONTENT_TYPE, b.data, b.len, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result serve_readyz(esk_http_t *h, struct MHD_Connection *c) {
  char reason[256] = "";
  if (!h->ready || h->ready(h->opaque, reason, sizeof(reason)))
    return reply_text(c, MHD_HTTP_OK, "ready\n");
  char body[300];
  reason[sizeof(reason) - 1] = '\0';
  for (char *p = reason; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  snprintf(body, sizeof(body), "not ready: %s\n", reason[0] ? reason : "(no reason given)");
  return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

/* Liveness: the main loop's heartbeat (esk/watchdog.h), 200 without a watchdog. */
static enum MHD_Result serve_healthz(struct MHD_Connection *c) {
  char reason[256] = "", body[300];
  if (esk_watchdog_live(reason, sizeof(reason))) return reply_text(c, MHD_HTTP_OK, "ok\n");
  snprintf(body, sizeof(body), "not live: %s\n", reason);
  return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls) {
  (void)version;
  (void)upload_data;
  (void)upload_data_size;
  (void)con_cls;
  esk_http_t *h = cls;
  if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
    return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD are served\n");
  if (!strcmp(url, "/healthz")) return serve_healthz(c);
  if (!strcmp(url, "/readyz")) return serve_readyz(h, c);
  if (!strcmp(url, "/metrics")) return serve_metrics(h, c);
  return reply_text(c, MHD_HTTP_NOT_FOUND, "not found; try /healthz, /readyz or /metrics\n");
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  if (ESK_LOG_DEBUG < esk_log_threshold) return; /* client mistakes are not our errors */
  char msg[256], q[300];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  ESK_DEBUG("http", "msg=%s", esk_log_quote(q, sizeof(q), msg));
}

int esk_http_start(esk_http_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                   esk_http_ready_fn ready, void *opaque, esk_error_t *err) {
  const char *value = esk_conf_get(conf, "http.listen");
  listen_addr_t a;
  int rc = parse_listen(&a, value, err), fd = -1, v6 = 0;
  if (rc) return rc;
  if (a.off) {
    ESK_INFO("http", "msg=\"http endpoints off\" http.listen=off");
    *out = NULL;
    return ESK_OK;
  }
  esk_http_t *h = calloc(1, sizeof(*h));
  if (!h) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  h->metrics = metrics;
  h->ready = ready;
  h->opaque = opaque;
  if ((rc = open_listener(&fd, &h->port, &v6, &a, value, err))) goto cleanup;

  unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                   (v6 ? MHD_USE_IPv6 : 0);
  h->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, handle, h, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)esk_conf_get_int(conf, "http.max.connections"),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)esk_conf_get_int(conf, "http.request.max.bytes"),
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)esk_conf_get_int(conf, "http.timeout.s"),
      MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
  if (!h->daemon) {
    rc = esk_error_set(err, ESK_EINVAL, "http.listen=%s: libmicrohttpd could not start", value);
    goto cleanup;
  }
  fd = -1; /* the daemon owns it now and closes it on stop */
  ESK_INFO("http", "msg=\"http endpoints listening\" addr=%s%s%s:%d paths=/healthz,/readyz,/metrics",
           v6 ? "[" : "", a.host, v6 ? "]" : "", h->port);
  *out = h;
  return ESK_OK;

cleanup:
  if (fd >= 0) close(fd);
  free(h);
  return rc;
}

int esk_http_port(const esk_http_t *h) { return h ? h->port : 0; }

void esk_http_stop(esk_http_t *h) {
  if (!h) return;
  MHD_stop_daemon(h->daemon);
  free(h);
}
