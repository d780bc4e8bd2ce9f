/* esk-gateway: commands over HTTP (see gateway.h; docs/api.md;
 * docs/architecture.md, "HTTP API").
 *
 * Threads: libmicrohttpd's thread runs the routes (parse, encode, send) and
 * never blocks: a request waiting for its result is a suspended connection.
 * The run loop (the caller's thread) reads <domain>.command-results and
 * <domain>.events with one read_committed reader, polls the producer's
 * delivery reports, and answers the waiting requests. Both meet in the
 * waiter list under one mutex; answers are sent outside it. */
#include "gateway.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domains.h"
#include "esk/domain_lib.h"
#include "esk/api.h"
#include "esk/api_auth.h"
#include "esk/command_json.h"
#include "esk/http.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/text.h"
#include "esk/time.h"
#include "esk/watchdog.h"

#define FAC "gateway"
#define JSON_TYPE "application/json"
/* Events read back at start per partition, to know the last event offset
 * before the first command (a resubmitted old command's token). */
#define EVENTS_TAIL 64
/* How long a waiter whose request was answered 202 is kept for its result. */
#define LATE_RESULT_MS 60000
/* How long an accepted result waits for its command's last event to be read
 * before its token falls back to the events partition's end (only a command
 * sent before its waiter was made, e.g. by another gateway, can need it). */
#define EVENTS_GRACE_MS 10000

const esk_conf_prop_t esk_gateway_props[] = {
    {"topic.prefix", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "Prefix of the domain's topic names (as esk-producer's topic.prefix)."},
    ESK_DOMAIN_DIR_PROP,
    {"gateway.wait.ms", ESK_CONF_INT, "5000", 0, 600000, NULL, NULL,
     "How long a POST waits for its command's result when it gives no wait_ms; past it the "
     "answer is 202 with a Location to ask again."},
    {"gateway.wait.max.ms", ESK_CONF_INT, "30000", 0, 600000, NULL, NULL,
     "Largest wait_ms a request may ask for (a larger one is answered 400)."},
    {"gateway.body.max.bytes", ESK_CONF_INT, "65536", 256, 16777216, NULL, NULL,
     "Largest request body; a larger one is answered 413."},
    {"gateway.json.max.depth", ESK_CONF_INT, "16", 2, 1000, NULL, NULL,
     "Deepest nesting of objects and arrays in a command; deeper is answered 400."},
    {"gateway.max.pending", ESK_CONF_INT, "4096", 1, 1000000, NULL, NULL,
     "Most commands waiting for their result at once; more are answered 503 with "
     "Retry-After."},
    {"gateway.results.cache", ESK_CONF_INT, "4096", 16, 1000000, NULL, NULL,
     "Answers kept for GET /v1/<domain>/commands/<id> and resubmissions (the newest ones)."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

/* W_RESULT: no result yet. W_EVENTS: accepted, its command's last event not
 * read yet. W_LSO: the events partition's end to be asked. W_TAIL: asked, the
 * reader not there yet. */
enum { W_RESULT, W_EVENTS, W_LSO, W_TAIL, W_DONE };

typedef struct waiter_s {
  struct waiter_s *next;
  esk_http_req_t *req; /* NULL once answered */
  char *id;
  char *key;            /* the command's aggregate id (its message key) */
  int64_t seen_version; /* newest version of that aggregate read since the waiter was made */
  int64_t want_version; /* W_EVENTS: the result's aggregate_version */
  int64_t result_ms;    /* when the result was read */
  int64_t deadline_ms, started_ms;
  int state;
  int dr_done;
  int32_t partition;
  int64_t lso;
  unsigned status; /* the result's */
  char *body;      /* the result's JSON */
} waiter_t;

typedef struct cached_s {
  char *id;
  unsigned status;
  char *body; /* with the token */
  char *token;
} cached_t;

/* An answer, sent once the lock is released. */
typedef struct answer_s {
  esk_http_req_t *req;
  unsigned status;
  char *body;
  char *token, *location;
} answer_t;

struct esk_gateway_s {
  esk_domain_lib_t *dom_lib; /* the shared object the domain came from */
  esk_domain_inst_t dom;
  void *cmd_scratch;
  void *ev_scratch; /* an event decoded by the run loop (event_version) */
  rd_kafka_t *producer, *reader;
  char t_commands[256], t_results[256], t_events[256];
  int nparts;
  unsigned char key[ESK_TOKEN_KEY_BYTES];
  int64_t wait_ms, wait_max_ms, max_pending;
  size_t max_depth;
  esk_http_t *http;
  atomic_int ready, stopping;
  pthread_mutex_t mu;
  waiter_t *waiters;
  size_t n_waiters;
  cached_t *cache;
  size_t cache_size, cache_next;
  /* run loop only */
  int64_t *last_data_next, *tail_pos;
  struct end_query_s *ends; /* fetch_ends' asks, one a partition at most */
  char *eof_results, *eof_events;
  int n_eof;
  esk_series_t *m_pending, *m_latency;
  esk_metric_t *m_requests;
  esk_api_auth_t *auth; /* NULL: no authentication */
};

/* ------------------------------------------------------------ answers --- */

static void send_json(esk_gateway_t *g, esk_http_req_t *req, unsigned status, const char *body,
                      const char *const *headers) {
  esk_api_send(g->m_requests, req, status, body, headers);
}

static void send_error(esk_gateway_t *g, esk_http_req_t *req, unsigned status, const char *code,
                       const char *message) {
  esk_api_send_error(g->m_requests, req, status, code, message);
}

static void send_answer(esk_gateway_t *g, answer_t *a) {
  const char *h[5] = {NULL};
  size_t n = 0;
  if (a->token) {
    h[n++] = "Esk-Consistency";
    h[n++] = a->token;
  }
  if (a->location) {
    h[n++] = "Location";
    h[n++] = a->location;
  }
  send_json(g, a->req, a->status, a->body ? a->body : "{}", h);
  free(a->body);
  free(a->token);
  free(a->location);
}

/* The HTTP status of a result: accepted 200, a stale expected version 409, a
 * malformed command 400, any other refusal 422. */
static unsigned result_status(json_t *r) {
  const char *st = json_string_value(json_object_get(r, "status"));
  if (st && !strcmp(st, "accepted")) return 200;
  const char *code = json_string_value(json_object_get(json_object_get(r, "error"), "code"));
  if (code && !strcmp(code, "CONCURRENCY_CONFLICT")) return 409;
  if (code && !strcmp(code, "INVALID_COMMAND")) return 400;
  return 422;
}

/* The Location of a command's result: the id percent-encoded. */
static char *location_of(const esk_gateway_t *g, const char *id) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(id), o = 0;
  char *enc = malloc(3 * n + 1);
  if (!enc) return NULL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      enc[o++] = (char)c;
    } else {
      enc[o++] = '%';
      enc[o++] = hex[c >> 4];
      enc[o++] = hex[c & 15];
    }
  }
  enc[o] = '\0';
  size_t size = o + strlen(g->dom.d->name) + 32;
  char *loc = malloc(size);
  if (loc) snprintf(loc, size, "/v1/%s/commands/%s", g->dom.d->name, enc);
  free(enc);
  return loc;
}

/* mu held: remembers an answer for GET and resubmissions (the oldest goes). */
static void cache_put(esk_gateway_t *g, const char *id, unsigned status, const char *body,
                      const char *token) {
  cached_t *c = &g->cache[g->cache_next];
  free(c->id);
  free(c->body);
  free(c->token);
  c->id = strdup(id);
  c->body = strdup(body);
  c->token = token ? strdup(token) : NULL;
  c->status = status;
  if (!c->id || !c->body) {
    free(c->id);
    free(c->body);
    c->id = c->body = NULL;
  }
  g->cache_next = (g->cache_next + 1) % g->cache_size;
}

/* mu held. */
static const cached_t *cache_get(const esk_gateway_t *g, const char *id) {
  for (size_t k = 0; k < g->cache_size; k++) {
    /* newest first */
    const cached_t *c = &g->cache[(g->cache_next + g->cache_size - 1 - k) % g->cache_size];
    if (!c->id) return NULL;
    if (!strcmp(c->id, id)) return c;
  }
  return NULL;
}

static answer_t cached_answer(esk_http_req_t *req, const cached_t *c) {
  answer_t a = {req, c->status, strdup(c->body), c->token ? strdup(c->token) : NULL, NULL};
  return a;
}

/* mu held: @p w's result (and token, for an accepted one) is complete. */
static void complete(esk_gateway_t *g, waiter_t *w, int64_t token_offset, answer_t *out,
                     size_t *n_out) {
  char token[ESK_TOKEN_MAX_CHARS + 1] = "";
  char *body = w->body;
  w->body = NULL;
  w->state = W_DONE;
  if (w->status == 200) {
    esk_token_t t;
    esk_error_t e = {0};
    memset(&t, 0, sizeof(t));
    snprintf(t.domain, sizeof(t.domain), "%s", g->dom.d->name);
    json_t *r = json_loads(body, 0, NULL);
    if (r && !esk_token_merge(&t, w->partition, token_offset < 0 ? 0 : token_offset, &e) &&
        !esk_token_encode(token, sizeof(token), &t, g->key, &e)) {
      json_object_set_new(r, "consistency_token", json_string(token));
      char *b = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
      if (b) {
        free(body);
        body = b;
      }
    } else {
      char q[600];
      ESK_WARN(FAC, "msg=\"no consistency token\" reason=%s", esk_log_quote(q, sizeof(q), e.msg));
      token[0] = '\0';
    }
    json_decref(r);
  }
  if (body) cache_put(g, w->id, w->status, body, token[0] ? token : NULL);
  if (w->req && body) {
    esk_metrics_observe(g->m_latency, (double)(esk_time_mono_ms() - w->started_ms) / 1000.0);
    out[(*n_out)++] = (answer_t){w->req, w->status, body, token[0] ? strdup(token) : NULL, NULL};
    w->req = NULL;
    body = NULL;
  }
  free(body);
}

static void waiter_free(waiter_t *w) {
  free(w->id);
  free(w->key);
  free(w->body);
  free(w);
}

/* mu held: unlinks and frees the waiters that are done (answered, result
 * complete or given up, delivery reported). */
static void reap(esk_gateway_t *g, int64_t now) {
  waiter_t **pp = &g->waiters;
  while (*pp) {
    waiter_t *w = *pp;
    int gone = w->dr_done && !w->req &&
               (w->state == W_DONE || now > w->deadline_ms + LATE_RESULT_MS);
    if (!gone) {
      pp = &w->next;
      continue;
    }
    *pp = w->next;
    waiter_free(w);
    g->n_waiters--;
  }
  esk_metrics_set(g->m_pending, (double)g->n_waiters);
}

/* ------------------------------------------------------------- routes --- */

/* A request's wait: wait_ms or the default. @returns 0, or -1 (answered 400). */
static int wait_of(esk_gateway_t *g, esk_http_req_t *req, int64_t *out) {
  const char *v = esk_http_req_query(req, "wait_ms");
  *out = g->wait_ms;
  if (!v) return 0;
  char *end, msg[200];
  long long x = strtoll(v, &end, 10);
  if (!*v || *end || x < 0 || x > g->wait_max_ms) {
    snprintf(msg, sizeof(msg), "wait_ms '%.32s' is not a number of milliseconds in 0..%" PRId64,
             v, g->wait_max_ms);
    send_error(g, req, 400, "INVALID_PARAMETER", msg);
    return -1;
  }
  *out = x;
  return 0;
}

/* The headers and the state a POST needs before its body is read: JSON, a
 * wait_ms in range, an Idempotency-Key of UTF-8 within ESK_ID_MAX, and a
 * gateway that is ready. @returns 0, or -1 once the error is sent. */
static int post_allowed(esk_gateway_t *g, esk_http_req_t *req, const char *idem,
                        int64_t *wait) {
  const char *ctype = esk_http_req_header(req, "Content-Type");
  char msg[128];
  if (!ctype || strncmp(ctype, JSON_TYPE, strlen(JSON_TYPE)) ||
      (ctype[strlen(JSON_TYPE)] && ctype[strlen(JSON_TYPE)] != ';')) {
    send_error(g, req, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json");
    return -1;
  }
  if (wait_of(g, req, wait)) return -1;
  if (idem && (!*idem || strlen(idem) > ESK_ID_MAX || esk_utf8_check(idem, strlen(idem)) !=
                                                          strlen(idem))) {
    snprintf(msg, sizeof(msg), "Idempotency-Key must be 1..%d bytes of UTF-8", ESK_ID_MAX);
    send_error(g, req, 400, "INVALID_COMMAND", msg);
    return -1;
  }
  if (!atomic_load(&g->ready)) {
    send_error(g, req, 503, "NOT_READY", "the gateway is not ready (reading results)");
    return -1;
  }
  return 0;
}

/* The body as a command of the domain into @p c: parsed against the contract,
 * with ids within ESK_ID_MAX, and a type the domain decodes as a command (an
 * event or a record of the contract is refused here, by the domain itself).
 * @returns 0, or -1 once the error is sent. */
static int post_command_of(esk_gateway_t *g, esk_http_req_t *req, const char *idem,
                           esk_command_json_t *c) {
  size_t len;
  const char *body = esk_http_req_body(req, &len);
  char msg[ESK_ERROR_MSG_MAX + 64];
  esk_error_t err = {0};
  esk_command_json_opts_t o = {NULL, g->dom.d->aggregate_id_field, "esk-gateway", idem,
                               g->max_depth};
  if (esk_command_json_parse(c, body, len, g->dom.schemas, g->dom.codec, &o, &err)) {
    send_error(g, req, 400, "INVALID_COMMAND", err.msg);
    return -1;
  }
  if (strlen(c->command_id) > ESK_ID_MAX || strlen(c->key) > ESK_ID_MAX) {
    snprintf(msg, sizeof(msg), "command_id and %s must be at most %d bytes",
             g->dom.d->aggregate_id_field, ESK_ID_MAX);
    send_error(g, req, 400, "INVALID_COMMAND", msg);
    return -1;
  }
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  esk_envelope_t env;
  memset(&env, 0, sizeof(env));
  if (esk_codec_decode(g->dom.codec, c->value.data, c->value.len, 0, &rs, &v, &err) ||
      g->dom.d->decode_command(g->dom.self, rs, v, &env, g->cmd_scratch, &err)) {
    snprintf(msg, sizeof(msg), "%s is not a command of domain %s: %s", esk_schema_type(c->schema),
             g->dom.d->name, err.msg);
    send_error(g, req, 400, "INVALID_COMMAND", msg);
    return -1;
  }
  return 0;
}

/* Why a command could not be sent: sent to the client once g->mu is released. */
typedef struct {
  unsigned status;
  const char *code;
  char message[200];
} refusal_t;

static waiter_t *refuse(refusal_t *r, const char *code, const char *message) {
  r->status = 503;
  r->code = code;
  snprintf(r->message, sizeof(r->message), "%s", message);
  return NULL;
}

/* Links a waiter for command @p c and produces it, with g->mu held. @returns
 * the waiter, or NULL with the reason in @p r. */
static waiter_t *post_send(esk_gateway_t *g, esk_http_req_t *req, const esk_command_json_t *c,
                           int64_t wait, refusal_t *r) {
  char msg[200];
  if ((int64_t)g->n_waiters >= g->max_pending)
    return refuse(r, "TOO_MANY_PENDING", "too many commands are waiting for results");
  waiter_t *w = calloc(1, sizeof(*w));
  if (!w || !(w->id = strdup(c->command_id)) || !(w->key = strdup(c->key))) {
    if (w) waiter_free(w);
    return refuse(r, "OUT_OF_MEMORY", "out of memory");
  }
  w->started_ms = esk_time_mono_ms();
  w->deadline_ms = w->started_ms + wait;
  w->req = req;
  w->partition = -1;
  w->next = g->waiters;
  g->waiters = w;
  g->n_waiters++;
  /* produced under the lock: its delivery report (run loop) finds it linked */
  rd_kafka_resp_err_t e = esk_command_json_produce(g->producer, g->t_commands, c, w);
  if (e) {
    g->waiters = w->next;
    g->n_waiters--;
    waiter_free(w);
    snprintf(msg, sizeof(msg), "Kafka does not take the command now: %s", rd_kafka_err2str(e));
    return refuse(r, "KAFKA_UNAVAILABLE", msg);
  }
  return w;
}

static void post_command(esk_gateway_t *g, esk_http_req_t *req) {
  const char *idem = esk_http_req_header(req, "Idempotency-Key");
  int64_t wait;
  esk_command_json_t c;
  memset(&c, 0, sizeof(c));
  if (post_allowed(g, req, idem, &wait) || post_command_of(g, req, idem, &c)) goto cleanup;
  answer_t a = {NULL, 0, NULL, NULL, NULL};
  refusal_t r = {0};
  pthread_mutex_lock(&g->mu);
  const cached_t *seen = cache_get(g, c.command_id);
  waiter_t *w = NULL;
  if (seen) { /* a resubmission: its first answer */
    a = cached_answer(req, seen);
  } else if ((w = post_send(g, req, &c, wait, &r)) && wait == 0) { /* do not wait: where to ask */
    a = (answer_t){req, 202, NULL, NULL, location_of(g, c.command_id)};
    json_t *j = json_pack("{s:s, s:s}", "command_id", c.command_id, "status", "pending");
    a.body = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    w->req = NULL;
  }
  pthread_mutex_unlock(&g->mu);
  if (a.req) send_answer(g, &a);
  else if (!seen && !w) send_error(g, req, r.status, r.code, r.message);
cleanup:
  esk_command_json_free(&c);
}

static void get_command(esk_gateway_t *g, esk_http_req_t *req, const char *id) {
  answer_t a = {req, 404, NULL, NULL, NULL};
  pthread_mutex_lock(&g->mu);
  const cached_t *c = cache_get(g, id);
  int pending = 0;
  for (waiter_t *w = g->waiters; w && !c && !pending; w = w->next)
    pending = w->state != W_DONE && !strcmp(w->id, id);
  if (c) a = cached_answer(req, c);
  pthread_mutex_unlock(&g->mu);
  if (c) {
    send_answer(g, &a);
  } else if (pending) {
    json_t *j = json_pack("{s:s, s:s}", "command_id", id, "status", "pending");
    char *b = j ? json_dumps(j, JSON_COMPACT) : NULL;
    const char *retry[] = {"Retry-After", "1", NULL};
    send_json(g, req, 202, b ? b : "{}", retry);
    free(b);
    json_decref(j);
  } else {
    send_error(g, req, 404, "NOT_FOUND",
               "no result known for this command id (unknown, or older than this gateway's "
               "cache)");
  }
}

/* The routes, on the HTTP thread (esk/http.h): never blocks. */
static void route(void *opaque, esk_http_req_t *req) {
  esk_gateway_t *g = opaque;
  const char *path = esk_http_req_path(req), *method = esk_http_req_method(req);
  char base[128];
  int n = snprintf(base, sizeof(base), "/v1/%s/commands", g->dom.d->name);
  if (atomic_load(&g->stopping)) {
    send_error(g, req, 503, "SHUTTING_DOWN", "the gateway is stopping");
    return;
  }
  if (esk_api_auth_require(g->auth, g->m_requests, req, ESK_SCOPE_COMMANDS_WRITE)) return;
  if (n > 0 && (size_t)n < sizeof(base) && !strcmp(path, base)) {
    if (!strcmp(method, "POST")) return post_command(g, req);
    const char *allow[] = {"Allow", "POST", NULL};
    char body[256];
    esk_api_error_json(body, sizeof(body), "METHOD_NOT_ALLOWED", "only POST is served here");
    return send_json(g, req, 405, body, allow);
  }
  if (n > 0 && !strncmp(path, base, (size_t)n) && path[n] == '/' && path[n + 1]) {
    /* the id as sent, decoded here: a command id may hold '/', sent as %2F
     * (location_of); the request's %00 was answered 400 by the HTTP layer */
    const char *raw = esk_http_req_raw_path(req);
    char idbuf[3 * ESK_ID_MAX + 2];
    const char *id = path + n + 1;
    if (!strncmp(raw, base, (size_t)n) && raw[n] == '/' && strlen(raw + n + 1) < sizeof(idbuf)) {
      memcpy(idbuf, raw + n + 1, strlen(raw + n + 1) + 1);
      esk_text_pct_decode(idbuf);
      id = idbuf;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
      const char *allow[] = {"Allow", "GET, HEAD", NULL};
      char body[256];
      esk_api_error_json(body, sizeof(body), "METHOD_NOT_ALLOWED", "only GET is served here");
      return send_json(g, req, 405, body, allow);
    }
    if (strlen(id) > ESK_ID_MAX) {
      send_error(g, req, 400, "INVALID_PARAMETER", "command id longer than 128 bytes");
      return;
    }
    return get_command(g, req, id);
  }
  send_error(g, req, 404, "NOT_FOUND", "no such route; see docs/api.md");
}

/* --------------------------------------------------------- run loop --- */

/* A delivery report (run loop, from rd_kafka_poll). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  esk_gateway_t *g = opaque;
  waiter_t *w = m->_private;
  answer_t a = {NULL, 0, NULL, NULL, NULL};
  pthread_mutex_lock(&g->mu);
  w->dr_done = 1;
  if (m->err) {
    w->state = W_DONE;
    if (w->req) {
      char msg[300];
      snprintf(msg, sizeof(msg), "Kafka did not take the command: %s", rd_kafka_err2str(m->err));
      char body[512];
      esk_api_error_json(body, sizeof(body), "KAFKA_UNAVAILABLE", msg);
      a = (answer_t){w->req, 503, strdup(body), NULL, NULL};
      w->req = NULL;
    }
  }
  pthread_mutex_unlock(&g->mu);
  if (a.req) send_answer(g, &a);
}

/* What an accepted result @p r waits for before its token: W_EVENTS, the
 * command's last event (its aggregate at *@p version) read by the reader; or
 * W_LSO, the events partition's end, for a repeated first result (its events
 * are in an earlier transaction) and a command without events. Not the end
 * alone for a first result: the transaction markers are written partition by
 * partition, so the results partition may show a transaction committed while
 * the events partition's end is still before its events (docs/api.md). */
static int accepted_state(const rd_kafka_message_t *m, json_t *r, int64_t *version) {
  rd_kafka_headers_t *h = NULL;
  const void *v;
  size_t size;
  json_t *events = json_object_get(r, "events");
  *version = json_integer_value(json_object_get(r, "aggregate_version"));
  if (!rd_kafka_message_headers(m, &h) &&
      !rd_kafka_header_get_last(h, ESK_KAFKA_HDR_DUPLICATE, &v, &size))
    return W_LSO;
  if ((json_is_array(events) && !json_array_size(events)) || *version <= 0) return W_LSO;
  return W_EVENTS;
}

/* The aggregate version of event @p m (run loop): its header, or, when the
 * producer wrote event.headers=minimal, its value's EventMeta; -1 when
 * neither says. */
static int64_t event_version(esk_gateway_t *g, const rd_kafka_message_t *m) {
  rd_kafka_headers_t *h = NULL;
  const void *v;
  size_t size;
  char text[24];
  if (rd_kafka_message_headers(m, &h) ||
      rd_kafka_header_get_last(h, ESK_KAFKA_HDR_AGGREGATE_VERSION, &v, &size) || !v) {
    esk_event_ref_t ref;
    esk_error_t err = {0};
    if (g->dom.d->decode_event(g->dom.self, g->ev_scratch, &ref, m->payload, m->len, &err))
      return -1;
    return ref.aggregate_version;
  }
  if (!size || size >= sizeof(text)) return -1;
  memcpy(text, v, size);
  text[size] = '\0';
  return strtoll(text, NULL, 10);
}

/* An event read (run loop, mu held): the waiters of its aggregate note its
 * version, and an accepted result whose last event it is, or follows, is
 * complete: everything up to this event has been read. */
static void event_read(esk_gateway_t *g, const rd_kafka_message_t *m, answer_t **ans, size_t *n,
                       size_t *cap) {
  int64_t version = -1;
  for (waiter_t *w = g->waiters; w; w = w->next) {
    if ((w->state != W_RESULT && w->state != W_EVENTS) || !m->key ||
        m->key_len != strlen(w->key) || memcmp(m->key, w->key, m->key_len))
      continue;
    if (version < 0 && (version = event_version(g, m)) < 0) return;
    if (version > w->seen_version) w->seen_version = version;
    if (w->state != W_EVENTS || w->seen_version < w->want_version) continue;
    answer_t *grown = esk_array_grow(*ans, cap, *n + 1, sizeof(**ans), 16);
    if (!grown) return;
    *ans = grown;
    complete(g, w, g->last_data_next[m->partition], *ans, n);
  }
}

/* Accepted results whose last event was not read within EVENTS_GRACE_MS:
 * their token is the events partition's end after all (mu held). */
static void events_overdue(esk_gateway_t *g, int64_t now) {
  for (waiter_t *w = g->waiters; w; w = w->next) {
    if (w->state != W_EVENTS || now - w->result_ms < EVENTS_GRACE_MS) continue;
    w->state = W_LSO;
    char q[600];
    ESK_WARN(FAC, "msg=\"a result's events were not read; its token is the partition's end\" "
             "command_id=%s partition=%d aggregate_version=%" PRId64 " waited_ms=%" PRId64,
             esk_log_quote(q, sizeof(q), w->id), (int)w->partition, w->want_version,
             now - w->result_ms);
  }
}

/* A result (run loop): the waiters for its command id. */
static void on_result(esk_gateway_t *g, const rd_kafka_message_t *m, answer_t **ans, size_t *n,
                      size_t *cap) {
  json_error_t je;
  /* without JSON_ALLOW_NUL, as eskctl: "c1\u0000x" answers no "c1" */
  json_t *r = json_loadb(m->payload, m->len, 0, &je);
  const char *id = r ? json_string_value(json_object_get(r, "command_id")) : NULL;
  if (!id) {
    json_decref(r);
    return;
  }
  unsigned status = result_status(r);
  int64_t version = 0;
  int next = status == 200 ? accepted_state(m, r, &version) : W_DONE;
  char *body = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
  pthread_mutex_lock(&g->mu);
  for (waiter_t *w = g->waiters; w && body; w = w->next) {
    if (w->state != W_RESULT || strcmp(w->id, id)) continue;
    answer_t *grown = esk_array_grow(*ans, cap, *n + 1, sizeof(**ans), 16);
    if (!grown) break;
    *ans = grown;
    w->status = status;
    w->partition = m->partition;
    w->want_version = version;
    w->result_ms = esk_time_mono_ms();
    free(w->body);
    w->body = strdup(body);
    w->state = next;
    if (next == W_DONE) complete(g, w, -1, *ans, n);
    else if (next == W_EVENTS && w->seen_version >= version) /* its events were read already */
      complete(g, w, g->last_data_next[m->partition], *ans, n);
  }
  pthread_mutex_unlock(&g->mu);
  free(body);
  json_decref(r);
}

/* The reader has reached @p pos on events partition @p p (run loop, mu held). */
static void tail_reached(esk_gateway_t *g, int32_t p, answer_t **ans, size_t *n, size_t *cap) {
  for (waiter_t *w = g->waiters; w; w = w->next) {
    if (w->state != W_TAIL || w->partition != p || g->tail_pos[p] < w->lso) continue;
    answer_t *grown = esk_array_grow(*ans, cap, *n + 1, sizeof(**ans), 16);
    if (!grown) return;
    *ans = grown;
    complete(g, w, g->last_data_next[p], *ans, n);
  }
}

/* One partition's end, asked for on a thread of its own (fetch_ends). */
typedef struct end_query_s {
  esk_gateway_t *g;
  int32_t p;
  int64_t hi;
  rd_kafka_resp_err_t e;
  pthread_t th;
  int threaded;
} end_query_t;

static void *end_query_main(void *arg) {
  end_query_t *q = arg;
  int64_t lo = 0;
  q->hi = -1;
  /* the cached leader first: one round trip, where a metadata refresh before
   * each ask tripled it (a leader that moved still gets the refresh) */
  q->e = esk_kafka_watermarks_quick(q->g->reader, q->g->t_events, q->p, &lo, &q->hi, 1000, 5000);
  return NULL;
}

/* The events partitions some accepted result waits on, asked at once. */
static size_t ask_ends(esk_gateway_t *g, end_query_t *qs) {
  size_t k = 0;
  pthread_mutex_lock(&g->mu);
  for (int32_t p = 0; p < g->nparts; p++)
    for (waiter_t *w = g->waiters; w; w = w->next)
      if (w->state == W_LSO && w->partition == p) {
        qs[k++] = (end_query_t){.g = g, .p = p};
        break;
      }
  pthread_mutex_unlock(&g->mu);
  for (size_t i = 0; i < k; i++)
    qs[i].threaded = k > 1 && pthread_create(&qs[i].th, NULL, end_query_main, &qs[i]) == 0;
  for (size_t i = 0; i < k; i++)
    if (qs[i].threaded) pthread_join(qs[i].th, NULL);
    else end_query_main(&qs[i]);
  return k;
}

/* Repeated first results, and accepted ones without events, wait for the
 * events partition's end as it is now (its last stable offset for this
 * read_committed reader): the command's events, in an earlier and completed
 * transaction, lie below it (accepted_state). Once the reader has read that
 * far, the last event it read there is at or after them. Only this thread
 * reads results, so the waiters asked for are the ones given the ends. */
static void fetch_ends(esk_gateway_t *g, answer_t **ans, size_t *n, size_t *cap) {
  end_query_t *qs = g->ends;
  size_t k = ask_ends(g, qs);
  for (size_t i = 0; i < k; i++) {
    int32_t p = qs[i].p;
    if (qs[i].e) {
      char q[300];
      ESK_WARN(FAC, "msg=\"cannot read the end of the events partition\" topic=%s partition=%d "
               "error=%s", g->t_events, (int)p,
               esk_log_quote(q, sizeof(q), rd_kafka_err2str(qs[i].e)));
      continue; /* asked again next turn; the request's wait bounds it */
    }
    pthread_mutex_lock(&g->mu);
    for (waiter_t *w = g->waiters; w; w = w->next)
      if (w->state == W_LSO && w->partition == p) {
        w->state = W_TAIL;
        w->lso = qs[i].hi;
      }
    tail_reached(g, p, ans, n, cap);
    pthread_mutex_unlock(&g->mu);
  }
}

/* Requests whose wait ran out: 202 with where to ask (mu held). */
static void expire(esk_gateway_t *g, int64_t now, answer_t **ans, size_t *n, size_t *cap) {
  for (waiter_t *w = g->waiters; w; w = w->next) {
    if (!w->req || now < w->deadline_ms) continue;
    answer_t *grown = esk_array_grow(*ans, cap, *n + 1, sizeof(**ans), 16);
    if (!grown) return;
    *ans = grown;
    json_t *j = json_pack("{s:s, s:s}", "command_id", w->id, "status", "pending");
    (*ans)[(*n)++] = (answer_t){w->req, 202, j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER)
                                               : NULL, NULL, location_of(g, w->id)};
    json_decref(j);
    w->req = NULL;
  }
}

static void on_message(esk_gateway_t *g, rd_kafka_message_t *m, answer_t **ans, size_t *n,
                       size_t *cap) {
  const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
  int events = !strcmp(topic, g->t_events);
  int32_t p = m->partition;
  if (p < 0 || p >= g->nparts) return;
  if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    char *seen = events ? g->eof_events : g->eof_results;
    if (!seen[p]) {
      seen[p] = 1;
      if (++g->n_eof == 2 * g->nparts) {
        atomic_store(&g->ready, 1);
        ESK_INFO(FAC, "msg=ready topics=%s,%s partitions=%d", g->t_results, g->t_events,
                 g->nparts);
      }
    }
    if (events && m->offset > g->tail_pos[p]) {
      g->tail_pos[p] = m->offset;
      pthread_mutex_lock(&g->mu);
      tail_reached(g, p, ans, n, cap);
      pthread_mutex_unlock(&g->mu);
    }
    return;
  }
  if (m->err) {
    char q[600];
    ESK_WARN(FAC, "msg=\"reader error\" error=%s",
             esk_log_quote(q, sizeof(q), rd_kafka_message_errstr(m)));
    return;
  }
  if (!events) return on_result(g, m, ans, n, cap);
  /* everything up to this event has been read, and it is the last event read */
  g->last_data_next[p] = m->offset + 1;
  g->tail_pos[p] = m->offset + 1;
  pthread_mutex_lock(&g->mu);
  event_read(g, m, ans, n, cap);
  tail_reached(g, p, ans, n, cap);
  pthread_mutex_unlock(&g->mu);
}

int esk_gateway_run(esk_gateway_t *g, volatile sig_atomic_t *stop, esk_error_t *err) {
  (void)err;
  answer_t *ans = NULL;
  size_t n = 0, cap = 0;
  while (!*stop) {
    esk_watchdog_beat();
    rd_kafka_poll(g->producer, 0);
    rd_kafka_message_t *m = rd_kafka_consumer_poll(g->reader, 20);
    int batch = 0;
    while (m) {
      on_message(g, m, &ans, &n, &cap);
      rd_kafka_message_destroy(m);
      m = ++batch < 500 ? rd_kafka_consumer_poll(g->reader, 0) : NULL;
    }
    for (size_t i = 0; i < n; i++) send_answer(g, &ans[i]); /* before asking for ends */
    n = 0;
    fetch_ends(g, &ans, &n, &cap);
    int64_t now = esk_time_mono_ms();
    pthread_mutex_lock(&g->mu);
    expire(g, now, &ans, &n, &cap);
    events_overdue(g, now);
    reap(g, now);
    pthread_mutex_unlock(&g->mu);
    for (size_t i = 0; i < n; i++) send_answer(g, &ans[i]);
    n = 0;
  }
  /* stopping: new requests get 503 (route), waiting ones too */
  atomic_store(&g->stopping, 1);
  pthread_mutex_lock(&g->mu);
  for (waiter_t *w = g->waiters; w; w = w->next) {
    if (!w->req) continue;
    answer_t *grown = esk_array_grow(ans, &cap, n + 1, sizeof(*ans), 16);
    if (!grown) break;
    ans = grown;
    char body[256];
    esk_api_error_json(body, sizeof(body), "SHUTTING_DOWN",
                       "the gateway is stopping; ask GET on the Location later");
    ans[n++] = (answer_t){w->req, 503, strdup(body), NULL, location_of(g, w->id)};
    w->req = NULL;
  }
  pthread_mutex_unlock(&g->mu);
  for (size_t i = 0; i < n; i++) send_answer(g, &ans[i]);
  free(ans);
  return ESK_OK;
}

/* ----------------------------------------------------------- set-up --- */

static int ready_cb(void *opaque, char *reason, size_t size) {
  esk_gateway_t *g = opaque;
  if (atomic_load(&g->stopping)) {
    snprintf(reason, size, "stopping");
    return 0;
  }
  if (!atomic_load(&g->ready)) {
    snprintf(reason, size, "reading to the end of %s and %s", g->t_results, g->t_events);
    return 0;
  }
  return 1;
}

static int kafka_client(rd_kafka_t **out, const esk_conf_t *conf, rd_kafka_type_t type,
                        esk_gateway_t *g, esk_error_t *err) {
  rd_kafka_conf_t *kc = NULL;
  int rc = esk_kafka_client_conf(&kc, type, conf, NULL, NULL, type == RD_KAFKA_PRODUCER ? g : NULL,
                                 err);
  if (rc) return rc;
  if (type == RD_KAFKA_CONSUMER) return esk_kafka_reader_new_conf(out, kc, NULL, err);
  rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
  return esk_kafka_client_new(out, type, kc, err);
}

/* The limits of gateway.* from @p conf. */
static int gateway_limits(esk_gateway_t *g, const esk_conf_t *conf, esk_error_t *err) {
  g->wait_ms = esk_conf_get_int(conf, "gateway.wait.ms");
  g->wait_max_ms = esk_conf_get_int(conf, "gateway.wait.max.ms");
  g->max_pending = esk_conf_get_int(conf, "gateway.max.pending");
  g->max_depth = (size_t)esk_conf_get_int(conf, "gateway.json.max.depth");
  g->cache_size = (size_t)esk_conf_get_int(conf, "gateway.results.cache");
  if (g->wait_ms > g->wait_max_ms)
    return esk_error_set(err, ESK_EINVAL, "gateway.wait.ms=%" PRId64 " is above "
                         "gateway.wait.max.ms=%" PRId64, g->wait_ms, g->wait_max_ms);
  /* route() decodes commands into one scratch area (g->cmd_scratch) */
  if (esk_conf_get_int(conf, "http.threads") != 1)
    return esk_error_set(err, ESK_EINVAL, "http.threads=%s: esk-gateway serves HTTP on one "
                         "thread; run more gateways to use more cores",
                         esk_conf_get(conf, "http.threads"));
  return ESK_OK;
}

/* The token key, the domain and its topics, and what serving it needs. */
static int gateway_domain(esk_gateway_t *g, const esk_conf_t *conf, esk_error_t *err) {
  const char *prefix = esk_conf_get(conf, "topic.prefix");
  const esk_domain_t *d = NULL;
  int rc;
  if ((rc = esk_token_key_load(g->key, esk_conf_get(conf, "api.token.key.file"), err)) ||
      (rc = esk_api_auth_load(&g->auth, esk_conf_get(conf, "api.auth.file"),
                              esk_conf_get(conf, "http.listen"), err)) ||
      (rc = esk_domain_lib_open(&g->dom_lib, esk_conf_get(conf, "domain.dir"),
                                esk_conf_get(conf, "domain"), err)))
    return rc;
  if (!(d = esk_domain_lib_domain(g->dom_lib)))
    return esk_error_set(err, ESK_EFATAL, "%s: no domain descriptor",
                         esk_domain_lib_path(g->dom_lib));
  if ((rc = esk_domain_inst_open(&g->dom, d, err)) ||
      (rc = esk_kafka_topic_name(g->t_commands, sizeof(g->t_commands), prefix, d->name,
                                 "commands", err)) ||
      (rc = esk_kafka_topic_name(g->t_results, sizeof(g->t_results), prefix, d->name,
                                 "command-results", err)) ||
      (rc = esk_kafka_topic_name(g->t_events, sizeof(g->t_events), prefix, d->name, "events",
                                 err)))
    return rc;
  if (!(g->cmd_scratch = calloc(1, d->command_size)) ||
      !(g->ev_scratch = calloc(1, d->event_size)) ||
      !(g->cache = calloc(g->cache_size, sizeof(*g->cache))))
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  return ESK_OK;
}

static int gateway_metrics(esk_gateway_t *g, esk_metrics_t *metrics, esk_error_t *err) {
  esk_metric_t *mp = NULL, *ml = NULL;
  int rc;
  if ((rc = esk_metrics_counter(&g->m_requests, metrics, "esk_gateway_requests_total",
                                "API requests answered, by HTTP status.", "code", 64, err)) ||
      (rc = esk_metrics_gauge(&mp, metrics, "esk_gateway_pending_commands",
                              "Commands sent and not yet complete (result and token).", NULL, 1,
                              err)) ||
      (rc = esk_metrics_histogram(&ml, metrics, "esk_gateway_command_seconds",
                                  "From a POST to its answer with the result, in seconds.", NULL,
                                  1, esk_metrics_latency_buckets, esk_metrics_latency_buckets_n,
                                  err)))
    return rc;
  g->m_pending = esk_metrics_only(mp);
  g->m_latency = esk_metrics_only(ml);
  return ESK_OK;
}

/* The partition count of the three topics, which must have one (eskctl
 * topics create). */
static int gateway_partitions(esk_gateway_t *g, esk_error_t *err) {
  const char *topics[3] = {g->t_commands, g->t_results, g->t_events};
  for (int i = 0; i < 3; i++) {
    int count = 0, rc;
    if ((rc = esk_kafka_partition_count(g->reader, topics[i], 10000, &count, err))) return rc;
    if (i && count != g->nparts)
      return esk_error_set(err, ESK_EINVAL, "%s has %d partitions and %s %d: create the topics "
                           "with eskctl topics create", topics[i], count, topics[0], g->nparts);
    g->nparts = count;
  }
  return ESK_OK;
}

/* The reader on the results from their end (every command is sent after the
 * reader is there) and on the last EVENTS_TAIL events of each partition. */
static int gateway_assign(esk_gateway_t *g, esk_error_t *err) {
  size_t np = (size_t)g->nparts;
  g->last_data_next = malloc(np * sizeof(int64_t));
  g->tail_pos = malloc(np * sizeof(int64_t));
  g->eof_results = calloc(np, 1);
  g->eof_events = calloc(np, 1);
  g->ends = calloc(np, sizeof(*g->ends));
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2 * g->nparts);
  if (!g->last_data_next || !g->tail_pos || !g->eof_results || !g->eof_events || !g->ends || !l) {
    if (l) rd_kafka_topic_partition_list_destroy(l);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  for (int32_t p = 0; p < g->nparts; p++) {
    g->last_data_next[p] = -1;
    g->tail_pos[p] = -1;
    rd_kafka_topic_partition_list_add(l, g->t_results, p)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_topic_partition_list_add(l, g->t_events, p)->offset =
        RD_KAFKA_OFFSET_TAIL(EVENTS_TAIL);
  }
  rd_kafka_resp_err_t e = rd_kafka_assign(g->reader, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e)
    return esk_error_set(err, ESK_ERETRY, "assigning %s and %s: %s", g->t_results, g->t_events,
                         rd_kafka_err2str(e));
  return ESK_OK;
}

int esk_gateway_new(esk_gateway_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                    esk_error_t *err) {
  int rc;
  esk_gateway_t *g = calloc(1, sizeof(*g));
  if (!g) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  pthread_mutex_init(&g->mu, NULL);
  esk_http_app_t app = {"/v1/", route, g, (size_t)esk_conf_get_int(conf, "gateway.body.max.bytes"),
                        "GET, HEAD, POST"};
  if ((rc = gateway_limits(g, conf, err)) || (rc = gateway_domain(g, conf, err)) ||
      (rc = gateway_metrics(g, metrics, err)) ||
      (rc = kafka_client(&g->producer, conf, RD_KAFKA_PRODUCER, g, err)) ||
      (rc = kafka_client(&g->reader, conf, RD_KAFKA_CONSUMER, g, err)) ||
      (rc = gateway_partitions(g, err)) || (rc = gateway_assign(g, err)) ||
      (rc = esk_http_start_app(&g->http, conf, metrics, ready_cb, g, &app, err))) {
    esk_gateway_destroy(g);
    return rc;
  }
  ESK_INFO(FAC, "msg=started domain=%s commands=%s results=%s events=%s partitions=%d port=%d",
           g->dom.d->name, g->t_commands, g->t_results, g->t_events, g->nparts,
           esk_http_port(g->http));
  *out = g;
  return ESK_OK;
}

int esk_gateway_port(const esk_gateway_t *g) { return esk_http_port(g->http); }

int esk_gateway_reload(esk_gateway_t *g, esk_error_t *err) {
  esk_error_t tls = {0}; /* both are tried; the first error is told */
  int rc = esk_api_auth_reload(g->auth, err), rc_tls = esk_http_reload_tls(g->http, &tls);
  if (!rc && rc_tls) *err = tls;
  return rc ? rc : rc_tls;
}

void esk_gateway_destroy(esk_gateway_t *g) {
  if (!g) return;
  atomic_store(&g->stopping, 1);
  esk_http_stop(g->http); /* run() answered every waiting request; new ones got 503 */
  if (g->producer) {
    rd_kafka_flush(g->producer, 5000);
    rd_kafka_destroy(g->producer);
  }
  if (g->reader) rd_kafka_destroy(g->reader);
  while (g->waiters) {
    waiter_t *w = g->waiters;
    g->waiters = w->next;
    waiter_free(w);
  }
  for (size_t i = 0; g->cache && i < g->cache_size; i++) {
    free(g->cache[i].id);
    free(g->cache[i].body);
    free(g->cache[i].token);
  }
  free(g->cache);
  free(g->cmd_scratch);
  free(g->ev_scratch);
  free(g->last_data_next);
  free(g->tail_pos);
  free(g->ends);
  free(g->eof_results);
  free(g->eof_events);
  esk_domain_inst_close(&g->dom);
  esk_domain_lib_close(g->dom_lib); /* after everything made from the domain */
  pthread_mutex_destroy(&g->mu);
  sodium_memzero(g->key, sizeof(g->key));
  esk_api_auth_free(g->auth);
  free(g);
}
