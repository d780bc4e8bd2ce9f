#include "esk/http.h"

#include "esk/file.h"
#include "esk/log.h"
#include "esk/text.h"
#include "esk/watchdog.h"
#include "esk/time.h"
#include "http_linger.h"
#include "http_raw.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sodium.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A scrape never produces more than this; a registry that does is a bug. */
#define METRICS_MAX_BYTES ((size_t)16 << 20)
#define LISTEN_BACKLOG 64
/* Connections libmicrohttpd takes beyond http.max.connections: while every
 * general slot is taken, a new connection is still accepted (and then closes the
 * connection that has waited longest for its request), so a probe is served even
 * when slow clients hold every slot. */
#define PROBE_RESERVE 16

/* libmicrohttpd 0.9.75 builds an answer's status line and headers in what is
 * left of the connection's memory pool after the request's line and headers,
 * and closes the connection unanswered when that is too little (only its own
 * 414 and 431 free the pool first). So the pool is http.request.max.bytes plus
 * ANSWER_ROOM, a request over http.request.max.bytes is answered 414 or 431
 * here, and one that left less than RAW_ROOM of the pool is answered on the
 * socket past libmicrohttpd (http_raw.h). The room is small because
 * libmicrohttpd zeroes the whole pool after every request: 64 KiB of room cost
 * a third of the requests a second (docs/api.md, "Threads and limits"). */
#define ANSWER_ROOM 4096
#define RAW_ROOM 1024
/* what libmicrohttpd keeps per header, cookie or query argument besides the
 * bytes read: a record of six pointers and sizes and the kind, rounded up */
#define RECORD_COST 64

const esk_conf_prop_t esk_http_props[] = {
    {"http.listen", ESK_CONF_STRING, "127.0.0.1:0", 0, 0, NULL, NULL,
     "Address of the /healthz, /readyz and /metrics endpoints: host:port or [v6addr]:port; "
     "port 0 lets the kernel pick a free port (logged at start), off serves nothing. "
     "Loopback by default; use 0.0.0.0:<port> in a container."},
    {"http.max.connections", ESK_CONF_INT, "32", 1, 4096, NULL, NULL,
     "Most HTTP connections held at once: a new one beyond it closes the connection that has "
     "waited longest for its request (so probes are answered while slow clients hold every "
     "slot); when all are answering requests, 16 more are taken, then more wait in the listen "
     "backlog."},
    {"http.request.max.bytes", ESK_CONF_INT, "8192", 2048, 1048576, NULL, NULL,
     "Largest HTTP request line plus headers; a larger request is answered 414 (its line) or "
     "431 (its headers) and closed."},
    {"http.threads", ESK_CONF_INT, "1", 1, 16, NULL, NULL,
     "Threads serving HTTP (libmicrohttpd's thread pool): each accepts and serves its own "
     "connections. More than 1 lets esk-query answer more requests a second on more cores."},
    {"http.timeout.s", ESK_CONF_INT, "10", 1, 3600, NULL, NULL,
     "Seconds after which an idle HTTP connection is closed."},
    {"http.header.timeout.s", ESK_CONF_INT, "5", 1, 3600, NULL, NULL,
     "Seconds a new HTTP connection has to send its request line and headers, counted from "
     "its accept; a connection that has not is closed (http.timeout.s applies after that). "
     "A slow client cannot hold a slot for longer."},
    {"http.max.connections.per.address", ESK_CONF_INT, "8", 1, 4096, NULL, NULL,
     "Most HTTP connections from one client address: a further one closes that address's "
     "connection that has waited longest for a request, or is refused when all of them are "
     "being answered."},
    {"http.tls.cert.file", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "PEM certificate (chain) of the HTTP endpoints; with http.tls.key.file, they (the API "
     "and the probes) answer HTTPS only. Empty: plain HTTP."},
    {"http.tls.key.file", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "PEM private key of http.tls.cert.file (unencrypted; keep the file mode 0600 or 0640)."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

/* One open connection, known from libmicrohttpd's connection notices. Only the
 * daemon's one thread (its callbacks) touches these. */
typedef struct conn_s {
  struct conn_s *prev, *next;
  MHD_socket fd;
  unsigned char addr[16]; /* the client's IPv4 or IPv6 address */
  size_t addr_len;
  int64_t since_ms; /* when it began waiting for a request (accept, or the last response) */
  esk_http_t *h;
  int waiting;      /* no complete request line and headers yet */
  int first;        /* waiting for its first request: http.header.timeout.s applies */
  int closing;      /* shut down here to free its slot; libmicrohttpd closes it next */
} conn_t;

struct esk_http_req_s {
  struct MHD_Connection *conn;
  const char *method, *url; /* libmicrohttpd's, valid for the request */
  char *raw_path;           /* the path as sent (on_uri), before percent-decoding */
  char *body;
  size_t len, max;
  int too_large, dispatched, head_checked;
  int line_refused; /* its query was defused (defuse_arguments): answered 414 */
  /* the answer, set by esk_http_respond() (any thread) before it resumes the connection */
  struct MHD_Response *resp;
  unsigned status;
};

struct esk_http_s {
  struct MHD_Daemon *daemon;
  esk_http_app_t app;
  int has_app;
  esk_metrics_t *metrics;
  esk_http_ready_fn ready;
  void *opaque;
  int port;
  esk_linger_t *linger;      /* closed connections whose client may still be sending */
  pthread_mutex_t conns_mu; /* the list and its entries: every HTTP thread uses them */
  conn_t *conns;            /* open connections, newest first */
  unsigned threads, max_conns, max_per_addr, idle_s, header_s;
  size_t head_max; /* http.request.max.bytes */
  char *tls_cert_path, *tls_key_path; /* NULL: plain HTTP */
  pthread_mutex_t tls_mu;               /* tls: esk_http_reload_tls() swaps it */
  struct creds_s *tls;                  /* what a handshake is given now */
  struct creds_s *tls_old;              /* replaced ones: a handshake may still use them */
};

/* ---------------------------------------------------------------- TLS --- */

#define PEM_MAX ((size_t)1 << 20)

/* The whole PEM file at @p path (NUL-terminated) into @p *out. */
static int read_pem(char **out, const char *key, const char *path, esk_error_t *err) {
  char what[600];
  size_t n;
  snprintf(what, sizeof(what), "%s=%s", key, path);
  int rc = esk_file_read_text(out, &n, path, PEM_MAX, what, err);
  if (rc || strstr(*out, "-----BEGIN ")) return rc;
  sodium_memzero(*out, n);
  free(*out);
  *out = NULL;
  return esk_error_set(err, ESK_EINVAL, "%s: not a PEM file", what);
}

/* A certificate chain and its key as GnuTLS gives them to a handshake
 * (docs/api.md, "TLS"): built from the PEM files, never changed after. */
typedef struct creds_s {
  struct creds_s *next; /* in tls_old */
  gnutls_pcert_st pcert[16];
  unsigned n;
  gnutls_privkey_t key;
} creds_t;

static void creds_free(creds_t *c) {
  while (c) {
    creds_t *next = c->next;
    for (unsigned i = 0; i < c->n; i++) gnutls_pcert_deinit(&c->pcert[i]);
    if (c->key) gnutls_privkey_deinit(c->key);
    free(c);
    c = next;
  }
}

/* The credentials of the two PEM texts, checked the way GnuTLS checks a
 * server's pair: a key that does not match the certificate is refused. */
static int creds_new(creds_t **out, const char *cert, const char *key, esk_error_t *err) {
  gnutls_datum_t cd = {(unsigned char *)cert, (unsigned)strlen(cert)};
  gnutls_datum_t kd = {(unsigned char *)key, (unsigned)strlen(key)};
  gnutls_certificate_credentials_t check = NULL;
  creds_t *c = calloc(1, sizeof(*c));
  int g = c ? gnutls_certificate_allocate_credentials(&check) : GNUTLS_E_MEMORY_ERROR;
  if (!g) g = gnutls_certificate_set_x509_key_mem2(check, &cd, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
  if (g >= 0) {
    c->n = sizeof(c->pcert) / sizeof(c->pcert[0]);
    g = gnutls_pcert_list_import_x509_raw(c->pcert, &c->n, &cd, GNUTLS_X509_FMT_PEM, 0);
    if (g < 0) c->n = 0;
  }
  if (g >= 0 && (g = gnutls_privkey_init(&c->key)) >= 0)
    g = gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
  if (check) gnutls_certificate_free_credentials(check);
  if (g < 0) {
    creds_free(c);
    return esk_error_set(err, ESK_EINVAL, "http.tls.cert.file and http.tls.key.file: are they a "
                         "certificate (chain of at most 16) and its key? GnuTLS: %s",
                         gnutls_strerror(g));
  }
  *out = c;
  return ESK_OK;
}

/* Reads the two files into new credentials. */
static int creds_load(creds_t **out, const char *cert_path, const char *key_path,
                      esk_error_t *err) {
  char *cert = NULL, *key = NULL;
  int rc = read_pem(&cert, "http.tls.cert.file", cert_path, err);
  if (!rc) rc = read_pem(&key, "http.tls.key.file", key_path, err);
  if (!rc) rc = creds_new(out, cert, key, err);
  if (key) sodium_memzero(key, strlen(key));
  free(key);
  free(cert);
  return rc;
}

/* GnuTLS asks for the server's certificate at each handshake (on the
 * daemon's thread): the current one, found through the connection. */
static int creds_for_handshake(gnutls_session_t s, const gnutls_datum_t *req_ca_dn, int n_dn,
                               const gnutls_pk_algorithm_t *algos, int n_algos,
                               gnutls_pcert_st **pcert, unsigned int *n_pcert,
                               gnutls_privkey_t *key) {
  (void)req_ca_dn;
  (void)n_dn;
  (void)algos;
  (void)n_algos;
  struct MHD_Connection *c = gnutls_session_get_ptr(s); /* libmicrohttpd sets it */
  const union MHD_ConnectionInfo *i =
      c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
  conn_t *k = i ? i->socket_context : NULL;
  if (!k || !k->h || !k->h->tls) return -1; /* untracked: the handshake fails */
  pthread_mutex_lock(&k->h->tls_mu);
  *pcert = k->h->tls->pcert;
  *n_pcert = k->h->tls->n;
  *key = k->h->tls->key;
  pthread_mutex_unlock(&k->h->tls_mu);
  return 0;
}

/* http.tls.cert.file and http.tls.key.file: both or neither. */
static int load_tls(esk_http_t *h, const esk_conf_t *conf, esk_error_t *err) {
  const char *cert = esk_conf_get(conf, "http.tls.cert.file");
  const char *key = esk_conf_get(conf, "http.tls.key.file");
  if (!*cert && !*key) return ESK_OK;
  if (!*cert || !*key)
    return esk_error_set(err, ESK_EINVAL, "http.tls.cert.file and http.tls.key.file go "
                         "together: %s is set, %s is not", *cert ? "the certificate" : "the key",
                         *cert ? "the key" : "the certificate");
  if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
    return esk_error_set(err, ESK_EINVAL, "http.tls.cert.file: this libmicrohttpd has no TLS");
  if (!(h->tls_cert_path = strdup(cert)) || !(h->tls_key_path = strdup(key)))
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  return creds_load(&h->tls, cert, key, err);
}

int esk_http_reload_tls(esk_http_t *h, esk_error_t *err) {
  if (!h || !h->tls) return ESK_OK;
  creds_t *fresh = NULL;
  int rc = creds_load(&fresh, h->tls_cert_path, h->tls_key_path, err);
  if (rc) return rc;
  pthread_mutex_lock(&h->tls_mu);
  h->tls->next = h->tls_old; /* freed at stop: a handshake may hold its pointers */
  h->tls_old = h->tls;
  h->tls = fresh;
  pthread_mutex_unlock(&h->tls_mu);
  ESK_INFO("http", "msg=\"TLS certificate reloaded\" http.tls.cert.file=%s", h->tls_cert_path);
  return ESK_OK;
}

static void free_tls(esk_http_t *h) {
  creds_free(h->tls);
  creds_free(h->tls_old);
  free(h->tls_cert_path);
  free(h->tls_key_path);
}

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

/* ------------------------------------------------------ slow clients --- */

static size_t addr_key(unsigned char out[16], const struct sockaddr *sa) {
  if (sa && sa->sa_family == AF_INET) {
    memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    return 4;
  }
  if (sa && sa->sa_family == AF_INET6) {
    memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    return 16;
  }
  return 0;
}

static conn_t *conn_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return i ? i->socket_context : NULL;
}

/* Frees the slot of @p k: shutdown() wakes the daemon, which reads the end of
 * the stream and closes the connection (and notifies its close) in its loop. */
static void evict(conn_t *k, const char *why) {
  k->closing = 1;
  shutdown(k->fd, SHUT_RDWR);
  ESK_DEBUG("http", "msg=\"closed a connection waiting for a request\" reason=\"%s\"", why);
}

/* The connection waiting longest for a request (from @p addr when given). */
static conn_t *oldest_waiting(esk_http_t *h, const unsigned char *addr, size_t addr_len) {
  conn_t *best = NULL;
  for (conn_t *k = h->conns; k; k = k->next)
    if (!k->closing && k->waiting &&
        (!addr || (k->addr_len == addr_len && !memcmp(k->addr, addr, addr_len))) &&
        (!best || k->since_ms <= best->since_ms))
      best = k;
  return best;
}

/* Closes connections whose headers are overdue, and makes room for a new one
 * from @p addr (the per-address limit first, then the general one). Holds
 * conns_mu. @returns MHD_NO when the new one must be refused. */
static enum MHD_Result make_room(esk_http_t *h, int64_t now, const unsigned char *addr,
                                 size_t addr_len) {
  unsigned total = 0, same = 0;
  for (conn_t *k = h->conns; k; k = k->next) {
    if (!k->closing && k->waiting && k->first && now - k->since_ms >= (int64_t)h->header_s * 1000)
      evict(k, "no request line and headers within http.header.timeout.s");
    if (k->closing) continue;
    total++;
    same += addr_len && k->addr_len == addr_len && !memcmp(k->addr, addr, addr_len);
  }
  if (same >= h->max_per_addr) {
    conn_t *k = oldest_waiting(h, addr, addr_len);
    if (!k) return MHD_NO; /* all of this address's connections are being answered */
    evict(k, "http.max.connections.per.address reached");
    total--;
  }
  if (total >= h->max_conns) {
    conn_t *k = oldest_waiting(h, NULL, 0);
    if (k) evict(k, "http.max.connections reached");
    /* else every slot is answering a request: the new one takes a reserved one */
  }
  return MHD_YES;
}

/* Called by an HTTP thread on each accept, before the connection is served. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t len) {
  (void)len;
  esk_http_t *h = cls;
  unsigned char addr[16];
  size_t addr_len = addr_key(addr, sa);
  pthread_mutex_lock(&h->conns_mu);
  enum MHD_Result ok = make_room(h, esk_time_mono_ms(), addr, addr_len);
  pthread_mutex_unlock(&h->conns_mu);
  return ok;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  esk_http_t *h = cls;
  if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
    conn_t *k = *socket_context;
    if (!k) return;
    int unread = 0; /* a refused request's rest: closing now would reset */
    if (ioctl(k->fd, FIONREAD, &unread) == 0 && unread > 0) esk_linger_add(h->linger, k->fd);
    pthread_mutex_lock(&h->conns_mu);
    if (k->prev) k->prev->next = k->next;
    else h->conns = k->next;
    if (k->next) k->next->prev = k->prev;
    pthread_mutex_unlock(&h->conns_mu);
    free(k);
    *socket_context = NULL;
    return;
  }
  conn_t *k = calloc(1, sizeof(*k));
  const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  const union MHD_ConnectionInfo *ad =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!k || !fd) { /* untracked: it still has the idle timeout */
    free(k);
    return;
  }
  k->h = h;
  k->fd = fd->connect_fd;
  k->addr_len = addr_key(k->addr, ad ? ad->client_addr : NULL);
  k->since_ms = esk_time_mono_ms();
  k->waiting = k->first = 1;
  pthread_mutex_lock(&h->conns_mu);
  k->next = h->conns;
  if (h->conns) h->conns->prev = k;
  h->conns = k;
  pthread_mutex_unlock(&h->conns_mu);
  *socket_context = k;
  /* until its headers arrive, silence ends it at the shorter of the two timeouts */
  if (h->header_s < h->idle_s)
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, h->header_s);
}

/* A request was answered (or abandoned): the connection waits for the next one. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)toe;
  esk_http_req_t *r = *con_cls;
  if (r) {
    if (r->resp) MHD_destroy_response(r->resp);
    free(r->body);
    free(r->raw_path);
    free(r);
    *con_cls = NULL;
  }
  conn_t *k = conn_of(c);
  if (k) {
    pthread_mutex_lock(&k->h->conns_mu);
    k->waiting = 1;
    k->since_ms = esk_time_mono_ms();
    pthread_mutex_unlock(&k->h->conns_mu);
  }
}

/* libmicrohttpd 0.9.75 splits the query into arguments, a record each from the
 * pool, right after this callback; when the records overflow the pool its 431
 * is overwritten by the next state and the connection hangs unanswered until
 * its timeout (schemathesis found it: 11 KB of "limit=" arguments). A request
 * line that is refused anyway (over http.request.max.bytes, counting a record
 * per argument) has its '&' replaced in libmicrohttpd's buffer, so that it
 * parses one argument, and esk answers it 414. @returns 1 when refused. */
static int defuse_arguments(const esk_http_t *h, const char *uri) {
  char *q = strchr(uri, '?');
  size_t args = 0;
  for (const char *a = q; a && *a; a++) args += *a == '&';
  if (!q || strlen(uri) + (args + 1) * RECORD_COST <= h->head_max) return 0;
  for (char *a = q; *a; a++) /* the buffer is libmicrohttpd's, and writable */
    if (*a == '&') *a = '_';
  return 1;
}

/* Every request starts here, before libmicrohttpd percent-decodes its URI
 * (which would make "a%2Fb" two segments and cut "a%00b" at the NUL): the
 * request object, freed by on_completed, keeps the path as sent. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
  esk_http_req_t *r = calloc(1, sizeof(*r));
  if (r && !(r->raw_path = strndup(uri, strcspn(uri, "?")))) {
    free(r);
    return NULL;
  }
  if (r) {
    r->conn = c;
    r->line_refused = defuse_arguments(cls, uri);
  }
  return r;
}

/* Finds a query argument holding a NUL byte (libmicrohttpd decodes %00 and
 * its C string would end there: "limit=5%00x" would read as 5). */
static enum MHD_Result arg_nul(void *cls, enum MHD_ValueKind kind, const char *key,
                               size_t key_size, const char *value, size_t value_size) {
  (void)kind;
  const char **bad = cls;
  if (strlen(key) != key_size || (value && strlen(value) != value_size)) {
    *bad = key;
    return MHD_NO;
  }
  return MHD_YES;
}

/* 400 for a path holding %00 or a query argument holding a NUL byte, which no
 * app can see whole. @returns the message, or NULL when there is none. */
static const char *nul_in_request(esk_http_req_t *r, char *msg, size_t size) {
  const char *bad = NULL;
  if (strstr(r->raw_path, "%00")) {
    snprintf(msg, size, "the path holds %%00 (U+0000), which no id or parameter may hold");
    return msg;
  }
  MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, arg_nul, (void *)&bad);
  if (!bad) return NULL;
  snprintf(msg, size, "query parameter '%.64s' holds U+0000 (%%00), which no parameter may hold",
           bad);
  return msg;
}

/* Adds one argument's bytes, as sent, to the request line's length. */
static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               size_t key_size, const char *value, size_t value_size) {
  (void)kind;
  (void)key;
  (void)value;
  *(size_t *)cls += key_size + value_size + 2;
  return MHD_YES;
}

/* Adds what libmicrohttpd keeps beside the bytes read for one header, cookie
 * or argument: its record, and for a cookie its share of the copy it parses. */
static enum MHD_Result add_record(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size) {
  (void)key;
  (void)value;
  *(size_t *)cls += RECORD_COST + (kind == MHD_COOKIE_KIND ? key_size + value_size + 2 : 0);
  return MHD_YES;
}

/* The bytes of @p c's memory pool its request line and headers take: every
 * byte read of them, padding included, and the records kept for them. */
static size_t pool_used(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *i =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
  size_t used = i ? i->header_size : (size_t)-1 / 2;
  MHD_get_connection_values_n(c, MHD_HEADER_KIND | MHD_COOKIE_KIND | MHD_GET_ARGUMENT_KIND,
                              add_record, &used);
  return used;
}

/* 414 when the request line is over http.request.max.bytes, 431 when the line
 * and headers are (with what libmicrohttpd keeps for them), else 0. */
static unsigned head_refusal(const esk_http_t *h, struct MHD_Connection *c, const char *method,
                             const char *raw_path, size_t used) {
  size_t line = strlen(method) + strlen(raw_path) + sizeof(" HTTP/1.1\r\n");
  MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, add_arg, &line);
  if (line > h->head_max) return MHD_HTTP_URI_TOO_LONG;
  return used > h->head_max ? MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE : 0;
}

/* The first call of a request: answers one over http.request.max.bytes (and
 * closes its connection). Where the request left less than RAW_ROOM of the
 * pool, libmicrohttpd could not build the answer, so esk writes it itself
 * (http_raw.h). @returns 1 when it answered, with *ret set. */
static int refuse_large_head(const esk_http_t *h, struct MHD_Connection *c, const char *method,
                             esk_http_req_t *r, enum MHD_Result *ret) {
  if (r->head_checked) return 0;
  r->head_checked = 1;
  size_t used = pool_used(c);
  unsigned code = r->line_refused ? MHD_HTTP_URI_TOO_LONG
                                  : head_refusal(h, c, method, r->raw_path, used);
  if (!code) return 0;
  r->dispatched = 1;
  static const char uri[] = "{\"error\":{\"code\":\"URI_TOO_LONG\",\"message\":\"the request "
                            "line is longer than http.request.max.bytes\"}}";
  static const char head[] = "{\"error\":{\"code\":\"HEADERS_TOO_LARGE\",\"message\":\"the "
                             "request line and headers are larger than http.request.max.bytes\"}}";
  const char *body = code == MHD_HTTP_URI_TOO_LONG ? uri : head;
  if (used + RAW_ROOM > h->head_max + ANSWER_ROOM) {
    esk_http_raw_answer(c, code, body, !strcmp(method, MHD_HTTP_METHOD_HEAD));
    *ret = MHD_NO; /* closes the connection: the answer was written */
    return 1;
  }
  *ret = reply(c, code, "application/json", (void *)body, strlen(body), MHD_RESPMEM_PERSISTENT);
  return 1;
}

/* An application request: its body is read (up to body_max), then the
 * connection is suspended while the app answers (esk_http_respond resumes it,
 * and the next call queues the answer). */
static enum MHD_Result handle_app(esk_http_t *h, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  esk_http_req_t *r = *con_cls;
  if (!r) return MHD_NO; /* on_uri was out of memory */
  if (!r->method) {
    char msg[200], body[1400];
    r->method = method;
    r->url = url;
    r->max = h->app.body_max;
    if (nul_in_request(r, msg, sizeof(msg))) {
      r->dispatched = 1;
      /* as esk_api_error_json() writes it (esk/api.h sits above this module) */
      static const char head[] = "{\"error\":{\"code\":\"INVALID_PARAMETER\",\"message\":";
      size_t n = sizeof(head) - 1;
      memcpy(body, head, n);
      n = esk_text_json_str(body, sizeof(body) - 3, n, msg, strlen(msg)); /* fits: 6 x 200 */
      memcpy(body + n, "}}", 3);
      return reply(c, MHD_HTTP_BAD_REQUEST, "application/json", body, n + 2,
                   MHD_RESPMEM_MUST_COPY);
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > r->max) r->too_large = 1;
    if (!r->too_large) return MHD_YES;
    /* answered before the body is read: libmicrohttpd closes the connection after;
     * a chunked body that grows past the limit is read, dropped and answered at its end */
  }
  if (r->too_large && !r->dispatched && *upload_data_size == 0) {
    char body[160];
    r->dispatched = 1;
    snprintf(body, sizeof(body), "{\"error\":{\"code\":\"BODY_TOO_LARGE\",\"message\":"
             "\"the body is larger than %zu bytes\"}}", r->max);
    return reply(c, MHD_HTTP_CONTENT_TOO_LARGE, "application/json", body, strlen(body),
                 MHD_RESPMEM_MUST_COPY);
  }
  if (r->resp) return MHD_queue_response(c, r->status, r->resp);
  if (*upload_data_size) {
    if (r->len + *upload_data_size <= r->max) {
      char *b = realloc(r->body, r->len + *upload_data_size + 1);
      if (!b) return MHD_NO;
      memcpy(b + r->len, upload_data, *upload_data_size);
      r->body = b;
      r->len += *upload_data_size;
      r->body[r->len] = '\0';
    } else {
      r->too_large = 1;
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (r->dispatched) return MHD_YES; /* a spurious call while suspended */
  r->dispatched = 1;
  if (!r->body && !(r->body = calloc(1, 1))) return MHD_NO;
  MHD_suspend_connection(c);
  h->app.handle(h->app.opaque, r);
  return MHD_YES;
}

const char *esk_http_req_method(const esk_http_req_t *r) { return r->method; }
const char *esk_http_req_path(const esk_http_req_t *r) { return r->url; }
const char *esk_http_req_raw_path(const esk_http_req_t *r) { return r->raw_path; }
const char *esk_http_req_header(const esk_http_req_t *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}
const char *esk_http_req_query(const esk_http_req_t *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}
const char *esk_http_req_body(const esk_http_req_t *r, size_t *len) {
  *len = r->len;
  return r->body;
}

void esk_http_respond(esk_http_req_t *r, unsigned status, const char *content_type,
                      const char *body, size_t len, const char *const *headers) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
  if (resp) {
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
      MHD_add_response_header(resp, headers[i], headers[i + 1]);
  }
  r->status = status;
  r->resp = resp; /* NULL (no memory): the next call fails and closes the connection */
  MHD_resume_connection(r->conn);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls) {
  (void)version;
  esk_http_t *h = cls;
  conn_t *k = conn_of(c);
  enum MHD_Result ret;
  if (k) { /* its request line and headers are complete */
    pthread_mutex_lock(&h->conns_mu);
    int first = k->waiting && k->first;
    k->waiting = k->first = 0;
    pthread_mutex_unlock(&h->conns_mu);
    if (first && h->header_s < h->idle_s)
      MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, h->idle_s);
  }
  if (!*con_cls) return MHD_NO; /* on_uri was out of memory */
  if (refuse_large_head(h, c, method, *con_cls, &ret)) return ret;
  if (h->has_app && !strncmp(url, h->app.prefix, strlen(h->app.prefix)))
    return handle_app(h, c, url, method, upload_data, upload_data_size, con_cls);
  if (*upload_data_size) { /* a body to a probe path: read and ignored */
    *upload_data_size = 0;
    return MHD_YES;
  }
  esk_http_req_t *r = *con_cls;
  if (!r->method) { /* answered on the next call: libmicrohttpd 0.9.75 closes the */
    r->method = method; /* connection of an answer queued on the first */
    return MHD_YES;
  }
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

/* libmicrohttpd's daemon on the listening socket @p fd, with esk's callbacks
 * and limits. @returns it, or NULL when it could not start. */
static struct MHD_Daemon *start_daemon(esk_http_t *h, int fd, int v6, int app) {
  unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                   (v6 ? MHD_USE_IPv6 : 0) | (app ? MHD_ALLOW_SUSPEND_RESUME : 0) |
                   (h->tls ? MHD_USE_TLS : 0);
  /* the certificate is asked for at each handshake, so that SIGHUP can change it */
  struct MHD_OptionItem extra[3] = {{MHD_OPTION_END, 0, NULL}};
  int n_extra = 0;
  if (h->tls) extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
                                                         (void *)creds_for_handshake};
  if (h->threads > 1) /* 1 is no pool: libmicrohttpd warns about a pool of 1 */
    extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, h->threads, NULL};
  extra[n_extra] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  return MHD_start_daemon(
      flags, 0, on_accept, h, handle, h, MHD_OPTION_ARRAY, extra,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
      MHD_OPTION_CONNECTION_LIMIT, h->max_conns + PROBE_RESERVE,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, h->head_max + ANSWER_ROOM,
      MHD_OPTION_CONNECTION_TIMEOUT, h->idle_s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
      MHD_OPTION_END);
}

int esk_http_start(esk_http_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                   esk_http_ready_fn ready, void *opaque, esk_error_t *err) {
  return esk_http_start_app(out, conf, metrics, ready, opaque, NULL, err);
}

int esk_http_start_app(esk_http_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                       esk_http_ready_fn ready, void *opaque, const esk_http_app_t *app,
                       esk_error_t *err) {
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
  if (app) {
    h->app = *app;
    h->has_app = 1;
  }
  h->ready = ready;
  h->opaque = opaque;
  pthread_mutex_init(&h->tls_mu, NULL);
  pthread_mutex_init(&h->conns_mu, NULL);
  h->threads = (unsigned)esk_conf_get_int(conf, "http.threads");
  h->max_conns = (unsigned)esk_conf_get_int(conf, "http.max.connections");
  h->max_per_addr = (unsigned)esk_conf_get_int(conf, "http.max.connections.per.address");
  h->idle_s = (unsigned)esk_conf_get_int(conf, "http.timeout.s");
  h->header_s = (unsigned)esk_conf_get_int(conf, "http.header.timeout.s");
  h->head_max = (size_t)esk_conf_get_int(conf, "http.request.max.bytes");
  if ((rc = load_tls(h, conf, err)) || (rc = open_listener(&fd, &h->port, &v6, &a, value, err)))
    goto cleanup;

  if (esk_linger_start(&h->linger)) {
    rc = esk_error_set(err, ESK_ENOMEM, "http.listen=%s: no thread for lingering closes", value);
    goto cleanup;
  }
  h->daemon = start_daemon(h, fd, v6, app != NULL);
  if (!h->daemon) {
    rc = h->tls ? esk_error_set(err, ESK_EINVAL, "http.listen=%s: libmicrohttpd could not "
                                     "start: are http.tls.cert.file and http.tls.key.file a "
                                     "certificate and its key?", value)
                     : esk_error_set(err, ESK_EINVAL, "http.listen=%s: libmicrohttpd could not "
                                     "start", value);
    goto cleanup;
  }
  fd = -1; /* the daemon owns it now and closes it on stop */
  ESK_INFO("http", "msg=\"http endpoints listening\" addr=%s%s%s:%d paths=/healthz,/readyz,/metrics%s%s tls=%s",
           v6 ? "[" : "", a.host, v6 ? "]" : "", h->port, app ? "," : "", app ? app->prefix : "",
           h->tls ? "on" : "off");
  *out = h;
  return ESK_OK;

cleanup:
  if (fd >= 0) close(fd);
  esk_linger_stop(h->linger);
  free_tls(h);
  pthread_mutex_destroy(&h->tls_mu);
  pthread_mutex_destroy(&h->conns_mu);
  free(h);
  return rc;
}

int esk_http_port(const esk_http_t *h) { return h ? h->port : 0; }

void esk_http_stop(esk_http_t *h) {
  if (!h) return;
  MHD_stop_daemon(h->daemon); /* notifies every close: the list is empty after it */
  esk_linger_stop(h->linger);
  while (h->conns) {
    conn_t *k = h->conns;
    h->conns = k->next;
    free(k);
  }
  free_tls(h);
  pthread_mutex_destroy(&h->tls_mu);
  pthread_mutex_destroy(&h->conns_mu);
  free(h);
}
