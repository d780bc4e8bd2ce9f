/* esk-query: declared queries over HTTP with read-your-writes (see query.h;
 * docs/api.md; docs/architecture.md, "HTTP API").
 *
 * libmicrohttpd's thread matches the route and checks the input, then queues
 * the request; query.workers threads, each with its own PostgreSQL session and
 * prepared statements, answer it. With a consistency token, a worker first
 * waits (up to wait_ms) until the projection's stored positions (the
 * projectors' esk_projection_positions rows of its live generation, written
 * in the same transaction as the read model) have reached the token's; then
 * the read model holds the command's events. esk-query never reads Kafka. */
#include "query.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esk/api.h"
#include "esk/api_auth.h"
#include "esk/codec.h"
#include "esk/domain_lib.h"
#include "esk/http.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "esk/watchdog.h"
#include "query_decl.h"
#include "state.h"

#define FAC "query"
#define JSON_TYPE "application/json"
#define PARAM_MAX 256 /* bytes of one path parameter or cursor value */
#define ETAG_MAX 40   /* W/"<32 hex>" */

const esk_conf_prop_t esk_query_props[] = {
    {"query.file", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "File of declared queries (docs/api.md, \"Declared queries\"); several files separated "
     "by commas. Required."},
    {"pg.schema", ESK_CONF_STRING, "public", 0, 0, NULL, NULL,
     "PostgreSQL schema of the read models' views and esk's bookkeeping tables (the "
     "projectors' pg.schema)."},
    {"topic.prefix", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "Prefix of the events topic named in the projectors' positions: <prefix><domain>.events."},
    {"query.workers", ESK_CONF_INT, "4", 1, 256, NULL, NULL,
     "Threads answering queries, each with its own PostgreSQL session."},
    {"query.wait.ms", ESK_CONF_INT, "5000", 0, 600000, NULL, NULL,
     "How long a query with a consistency token waits for the read model when it gives no "
     "wait_ms; past it the answer is 503 STALE with Retry-After."},
    {"query.wait.max.ms", ESK_CONF_INT, "30000", 0, 600000, NULL, NULL,
     "Largest wait_ms a request may ask for (a larger one is answered 400)."},
    {"query.poll.ms", ESK_CONF_INT, "5", 1, 1000, NULL, NULL,
     "How often a waiting query reads the projection's positions again."},
    {"query.max.queued", ESK_CONF_INT, "1024", 1, 1000000, NULL, NULL,
     "Most queries queued or waiting at once; more are answered 503 with Retry-After."},
    ESK_DOMAIN_DIR_PROP, /* the domain's evolve and state_json: /aggregates/<id>/state */
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

typedef struct job_s {
  struct job_s *next;
  esk_http_req_t *req;
  const esk_query_decl_t *decl;
  size_t decl_index;
  char values[ESK_QUERY_MAX_PARAMS][PARAM_MAX + 1];
  int is_null[ESK_QUERY_MAX_PARAMS];
  char if_none_match[256]; /* the request's If-None-Match, cut at 255 bytes */
  int has_token;
  esk_token_t token;
  int64_t deadline_ms;
  int state;     /* /aggregates/<id>/state: values[0] is the id */
  int has_as_of; /* its as_of, when given */
  int64_t as_of_us;
} job_t;

struct esk_query_s {
  esk_query_decl_t *decls;
  size_t n_decls;
  char schema[64], topic[256], domain[64], conninfo[1024];
  unsigned char key[ESK_TOKEN_KEY_BYTES];
  int64_t wait_ms, wait_max_ms, poll_ms, max_queued;
  esk_http_t *http;
  pthread_t *threads;
  int n_threads;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job_t *head, *tail;
  int64_t queued;
  atomic_int stopping, connected;
  esk_metric_t *m_requests;
  esk_api_auth_t *auth; /* NULL: no authentication */
  esk_series_t *m_stale, *m_wait;
  esk_qstate_t *st;               /* the domain, for states; NULL when it did not load */
  char st_reason[ESK_ERROR_MSG_MAX]; /* why not */
  esk_query_decl_t state_decl;    /* its path: /v1/<domain>/aggregates/{aggregate_id}/state */
};

static void send_body(esk_query_t *q, esk_http_req_t *req, unsigned status, const char *body,
                      const char *const *headers) {
  esk_api_send(q->m_requests, req, status, body, headers);
}

static void send_error(esk_query_t *q, esk_http_req_t *req, unsigned status, const char *code,
                       const char *message) {
  esk_api_send_error(q->m_requests, req, status, code, message);
}

/* ------------------------------------------------------------- routes --- */

static int parse_i64(const char *v, int64_t min, int64_t max, int64_t *out) {
  char *end;
  long long x;
  if (!v || !*v) return -1;
  errno = 0;
  x = strtoll(v, &end, 10);
  if (*end || errno == ERANGE || x < min || x > max) return -1; /* ERANGE: not clamped */
  *out = x;
  return 0;
}

/* A path parameter into @p out; -1 with @p msg when it is not UTF-8 or too long. */
static int path_value(const esk_query_decl_t *d, int seg, const char *v, char *out, char *msg,
                      size_t size) {
  size_t n = strlen(v);
  if (n > PARAM_MAX || esk_utf8_check(v, n) != n) {
    snprintf(msg, size, "path parameter %s must be 1..%d bytes of UTF-8", d->segment[seg],
             PARAM_MAX);
    return -1;
  }
  memcpy(out, v, n + 1);
  return 0;
}

/* An int_arg from the query string (or its default) into @p out. */
static int arg_value(esk_http_req_t *req, const esk_query_arg_t *a, char *out, char *msg,
                     size_t size) {
  const char *v = esk_http_req_query(req, a->name);
  int64_t x = a->def;
  if (v && parse_i64(v, a->min, a->max, &x)) {
    snprintf(msg, size, "%s '%.32s' is not an integer in %" PRId64 "..%" PRId64, a->name, v,
             a->min, a->max);
    return -1;
  }
  snprintf(out, PARAM_MAX + 1, "%" PRId64, x);
  return 0;
}

/* The values of $1..$n from the path, the query string and the cursor (whose
 * columns are NULL on the first page). -1 with @p msg on bad input. */
static int fill_params(esk_http_req_t *req, const esk_query_decl_t *d,
                       const char *const *values, job_t *j, char *msg, size_t size) {
  char cur[ESK_QUERY_MAX_CURSOR][ESK_QUERY_CURSOR_VALUE_MAX + 1];
  int cur_null[ESK_QUERY_MAX_CURSOR];
  const char *c = esk_http_req_query(req, "cursor");
  if (c && !d->n_cursor) return snprintf(msg, size, "query %s takes no cursor", d->name), -1;
  for (size_t k = 0; k < d->n_cursor; k++) cur_null[k] = 1;
  if (c && *c) {
    esk_error_t err = {0};
    if (esk_query_cursor_decode(d, c, cur, cur_null, &err))
      return snprintf(msg, size, "%s", err.msg), -1;
  }
  for (size_t k = 0; k < d->n_params; k++) {
    int src = d->param_src[k], col = ESK_QUERY_CURSOR_OF(src);
    if (src >= 0) {
      if (path_value(d, src, values[src], j->values[k], msg, size)) return -1;
    } else if (col >= 0) {
      j->is_null[k] = cur_null[col];
      if (!cur_null[col]) memcpy(j->values[k], cur[col], strlen(cur[col]) + 1);
    } else if (arg_value(req, &d->args[-1 - src], j->values[k], msg, size)) {
      return -1;
    }
  }
  return 0;
}

/* The state route's own parameters (docs/api.md, "An aggregate's state at a
 * time"): the id within ESK_ID_MAX, and as_of when given. */
static int state_params(esk_http_req_t *req, job_t *j, char *msg, size_t size) {
  const char *v = esk_http_req_query(req, "as_of");
  esk_error_t err = {0};
  if (strlen(j->values[0]) > ESK_ID_MAX)
    return snprintf(msg, size, "path parameter aggregate_id must be 1..%d bytes of UTF-8",
                    ESK_ID_MAX), -1;
  j->state = 1;
  if (!v) return 0;
  if (esk_qstate_parse_as_of(v, &j->as_of_us, &err)) return snprintf(msg, size, "%s", err.msg), -1;
  j->has_as_of = 1;
  return 0;
}

/* The HTTP thread: match, check, queue. Never blocks on PostgreSQL. */
static void route(void *opaque, esk_http_req_t *req) {
  esk_query_t *q = opaque;
  /* matched as sent, so that a value may hold '/' as %2F (docs/api.md) */
  const char *path = esk_http_req_raw_path(req), *method = esk_http_req_method(req);
  char buf[4096], msg[ESK_ERROR_MSG_MAX + 64];
  const char *values[ESK_QUERY_MAX_SEGMENTS];
  if (atomic_load(&q->stopping)) return send_error(q, req, 503, "SHUTTING_DOWN", "stopping");
  if (esk_api_auth_require(q->auth, q->m_requests, req, ESK_SCOPE_QUERIES_READ)) return;
  size_t i = 0;
  while (i < q->n_decls && !esk_query_decl_match(&q->decls[i], path, buf, sizeof(buf), values))
    i++;
  int state = i == q->n_decls &&
              esk_query_decl_match(&q->state_decl, path, buf, sizeof(buf), values);
  if (i == q->n_decls && !state)
    return send_error(q, req, 404, "NOT_FOUND", "no declared query has this path; see docs/api.md");
  if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
    const char *allow[] = {"Allow", "GET, HEAD", NULL};
    esk_api_error_json(buf, sizeof(buf), "METHOD_NOT_ALLOWED", "queries are read with GET");
    return send_body(q, req, 405, buf, allow);
  }
  if (state && !q->st) return send_error(q, req, 501, "NOT_IMPLEMENTED", q->st_reason);
  const esk_query_decl_t *d = state ? &q->state_decl : &q->decls[i];
  job_t *j = calloc(1, sizeof(*j));
  if (!j) return send_error(q, req, 503, "OUT_OF_MEMORY", "out of memory");
  j->req = req;
  j->decl = d;
  j->decl_index = i;
  if (fill_params(req, d, values, j, msg, sizeof(msg)) ||
      (state && state_params(req, j, msg, sizeof(msg)))) {
    free(j);
    return send_error(q, req, 400, "INVALID_PARAMETER", msg);
  }
  const char *inm = esk_http_req_header(req, "If-None-Match");
  if (inm) snprintf(j->if_none_match, sizeof(j->if_none_match), "%s", inm);
  int64_t wait = q->wait_ms;
  const char *w = esk_http_req_query(req, "wait_ms");
  if (w && parse_i64(w, 0, q->wait_max_ms, &wait)) {
    snprintf(msg, sizeof(msg), "wait_ms '%.32s' is not a number of milliseconds in 0..%" PRId64,
             w, q->wait_max_ms);
    free(j);
    return send_error(q, req, 400, "INVALID_PARAMETER", msg);
  }
  const char *tok = esk_http_req_query(req, "consistency");
  if (!tok) tok = esk_http_req_header(req, "Esk-Consistency");
  if (tok) {
    esk_error_t err = {0};
    if (esk_token_decode(&j->token, tok, strlen(tok), q->key, &err)) {
      free(j);
      return send_error(q, req, 400, "INVALID_TOKEN", err.msg);
    }
    if (strcmp(j->token.domain, q->domain)) {
      snprintf(msg, sizeof(msg), "the consistency token is for domain %s, this esk-query "
               "serves %s", j->token.domain, q->domain);
      free(j);
      return send_error(q, req, 400, "INVALID_TOKEN", msg);
    }
    j->has_token = 1;
  }
  j->deadline_ms = esk_time_mono_ms() + wait;
  pthread_mutex_lock(&q->mu);
  if (q->queued >= q->max_queued || atomic_load(&q->stopping)) { /* stopping: no worker may take it */
    int stopping = atomic_load(&q->stopping);
    pthread_mutex_unlock(&q->mu);
    free(j);
    return send_error(q, req, 503, stopping ? "SHUTTING_DOWN" : "TOO_MANY_QUERIES",
                      stopping ? "stopping" : "too many queries are waiting");
  }
  if (q->tail) q->tail->next = j;
  else q->head = j;
  q->tail = j;
  q->queued++;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

/* ------------------------------------------------------------ workers --- */

typedef struct worker_s {
  esk_query_t *q;
  PGconn *pg;
  unsigned char *prepared; /* per declared query: prepared in this session */
  esk_qstate_worker_t *st; /* made at its first state query */
} worker_t;

#define POS_STMT "esk_positions"

_Static_assert(ESK_QUERY_CURSOR_VALUE_MAX <= PARAM_MAX, "a cursor value fits a param");

/* The stored positions of projection @p proj's live generation on @p topic,
 * as the FROM clause of a statement run with search_path at pg.schema (the
 * store key of generation N > 1 is "<projection>.g<N>", as
 * consumers/runtime/generation.c names it). */
#define LIVE_POSITIONS(proj, topic)                                                      \
  "from esk_projection_positions p join esk_projection_generations g on g.projection = " \
  proj " and g.state = 'live' and p.projection = case when g.generation <= 1 then "      \
  "g.projection else g.projection || '.g' || g.generation end where p.topic = " topic

/* The statement of declared query @p d: one row of (the answer's JSON, the
 * last row's cursor columns or NULL, the projection's live positions as text
 * for the ETag), all read in one snapshot. */
static int query_sql(esk_query_t *q, PGconn *pg, const esk_query_decl_t *d, char *sql,
                     size_t size, esk_error_t *err) {
  char *proj = PQescapeLiteral(pg, d->projection, strlen(d->projection));
  char *topic = PQescapeLiteral(pg, q->topic, strlen(q->topic));
  char pos[1024], last[512] = "null::text";
  int n = 0;
  if (proj && topic)
    n = snprintf(pos, sizeof(pos),
                 "(select string_agg(p.partition || ':' || p.next_offset, ',' order by "
                 "p.partition) " LIVE_POSITIONS("%s", "%s") ")", proj, topic);
  PQfreemem(proj);
  PQfreemem(topic);
  if (n <= 0 || (size_t)n >= sizeof(pos))
    return esk_error_set(err, ESK_EINVAL, "query %s: its positions query does not fit", d->name);
  if (d->n_cursor) {
    size_t o = (size_t)snprintf(last, sizeof(last), "(json_agg(json_build_array(");
    for (size_t c = 0; c < d->n_cursor; c++)
      o += (size_t)snprintf(last + o, sizeof(last) - o, "%sq.\"%s\"", c ? ", " : "", d->cursor[c]);
    snprintf(last + o, sizeof(last) - o, ")) -> -1)::text");
  }
  if (d->many)
    n = snprintf(sql, size, "select coalesce(json_agg(q), '[]'::json)::text, %s, %s from (%s) q",
                 last, pos, d->sql);
  else
    n = snprintf(sql, size, "select (select row_to_json(q)::text from (%s) q limit 1), "
                 "null::text, %s", d->sql, pos);
  if (n <= 0 || (size_t)n >= size)
    return esk_error_set(err, ESK_EINVAL, "query %s: its statement is too long", d->name);
  return ESK_OK;
}

/* Prepares declared query @p i as statement "q<i>". ESK_ERETRY when its view
 * does not exist yet (its projector has not run in the schema), ESK_EINVAL
 * when PostgreSQL refuses it otherwise. */
static int prepare_decl(esk_query_t *q, PGconn *pg, size_t i, esk_error_t *err) {
  const esk_query_decl_t *d = &q->decls[i];
  char sql[ESK_QUERY_SQL_MAX + 2048], name[32];
  int rc = query_sql(q, pg, d, sql, sizeof(sql), err);
  if (rc) return rc;
  snprintf(name, sizeof(name), "q%zu", i);
  PGresult *r = PQprepare(pg, name, sql, (int)d->n_params, NULL);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  const char *state = ok ? NULL : PQresultErrorField(r, PG_DIAG_SQLSTATE);
  int later = state && !strcmp(state, "42P01");
  if (!ok)
    esk_error_set(err, later ? ESK_ERETRY : ESK_EINVAL, "query %s: PostgreSQL refuses its "
                  "sql: %s", d->name, PQerrorMessage(pg));
  PQclear(r);
  return ok ? ESK_OK : later ? ESK_ERETRY : ESK_EINVAL;
}

/* Connects and prepares the positions statement and every declared query
 * whose view exists (@p prepared says which; the others are prepared when
 * first asked for, so one projection not yet run does not hold up the rest). */
static int prepare(esk_query_t *q, PGconn *pg, unsigned char *prepared, esk_error_t *err) {
  char sql[128];
  snprintf(sql, sizeof(sql), "set search_path to \"%s\"", q->schema);
  int rc = esk_pg_exec(NULL, pg, "search_path", sql, 0, NULL, err);
  if (rc) return rc;
  PGresult *r = PQprepare(pg, POS_STMT, "select p.partition, p.next_offset "
                          LIVE_POSITIONS("$1", "$2"), 2, NULL);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  /* no projector has created esk's tables in the schema yet: wait for one */
  const char *state = ok ? NULL : PQresultErrorField(r, PG_DIAG_SQLSTATE);
  int later = state && (!strcmp(state, "42P01") || !strcmp(state, "3F000"));
  if (!ok)
    esk_error_set(err, later ? ESK_ERETRY : ESK_EINVAL,
                  "preparing the positions query in schema %s: %s", q->schema,
                  PQerrorMessage(pg));
  PQclear(r);
  if (!ok) return later ? ESK_ERETRY : ESK_EINVAL;
  for (size_t i = 0; i < q->n_decls; i++) {
    rc = prepare_decl(q, pg, i, err);
    if (rc && rc != ESK_ERETRY) return rc;
    prepared[i] = rc == ESK_OK;
  }
  esk_error_clear(err);
  return ESK_OK;
}

/* Whether the projection's stored positions have reached the token; fills
 * @p where (the positions, for a stale answer). @returns 1, 0, or -1 on a
 * PostgreSQL fault. */
static int reached(esk_query_t *q, PGconn *pg, const job_t *j, char *where, size_t size) {
  const char *params[2] = {j->decl->projection, q->topic};
  PGresult *r = PQexecPrepared(pg, POS_STMT, 2, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return -1;
  }
  int all = 1;
  size_t o = 0;
  where[0] = '\0';
  for (size_t i = 0; i < j->token.n; i++) {
    int64_t have = -1;
    for (int t = 0; t < PQntuples(r); t++)
      if (atoi(PQgetvalue(r, t, 0)) == j->token.pos[i].partition)
        have = strtoll(PQgetvalue(r, t, 1), NULL, 10);
    if (have < j->token.pos[i].offset && j->token.pos[i].offset > 0) all = 0;
    int n = snprintf(where + o, o < size ? size - o : 0, "%s{\"partition\":%d,\"position\":%"
                     PRId64 ",\"wanted\":%" PRId64 "}", i ? "," : "",
                     (int)j->token.pos[i].partition, have, j->token.pos[i].offset);
    if (n > 0) o += (size_t)n;
  }
  PQclear(r);
  return all;
}

/* A weak ETag of the projection's live positions (@p pos, "partition:offset,...")
 * for query @p d: the rows of a query cannot change while they stay put. */
static void make_etag(char etag[ETAG_MAX], const esk_query_decl_t *d, const char *pos) {
  unsigned char h[16];
  char hex[33];
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, sizeof(h));
  crypto_generichash_update(&st, (const unsigned char *)d->name, strlen(d->name) + 1);
  crypto_generichash_update(&st, (const unsigned char *)pos, strlen(pos));
  crypto_generichash_final(&st, h, sizeof(h));
  sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
  snprintf(etag, ETAG_MAX, "W/\"%s\"", hex);
}

/* 1 when If-None-Match @p inm names @p etag (or is *). */
static int etag_matches(const char *inm, const char *etag) {
  if (!inm[0]) return 0;
  if (!strcmp(inm, "*")) return 1;
  const char *bare = etag + 2; /* also without the W/ prefix */
  return strstr(inm, etag) != NULL || strstr(inm, bare) != NULL;
}

/* 200 with the rows (and the next cursor), or 304 when the client has them. */
static void send_rows(esk_query_t *q, job_t *j, PGresult *r) {
  char etag[ETAG_MAX] = "";
  if (!PQgetisnull(r, 0, 2)) make_etag(etag, j->decl, PQgetvalue(r, 0, 2));
  const char *with_etag[] = {"ETag", etag, NULL};
  const char *const *headers = etag[0] ? with_etag : NULL;
  if (etag[0] && etag_matches(j->if_none_match, etag)) {
    esk_api_count(q->m_requests, 304);
    return esk_http_respond(j->req, 304, JSON_TYPE, "", 0, headers);
  }
  if (!j->decl->n_cursor) return send_body(q, j->req, 200, PQgetvalue(r, 0, 0), headers);
  char next[ESK_QUERY_CURSOR_MAX + 3] = "null";
  esk_error_t err = {0};
  if (!PQgetisnull(r, 0, 1)) {
    next[0] = '"';
    if (esk_query_cursor_encode(PQgetvalue(r, 0, 1), next + 1, sizeof(next) - 2, &err))
      return send_error(q, j->req, 500, "CURSOR_TOO_LONG", err.msg);
    strcat(next, "\"");
  }
  const char *items = PQgetvalue(r, 0, 0);
  size_t n = strlen(items) + strlen(next) + 32;
  char *body = malloc(n);
  if (!body) return send_error(q, j->req, 503, "OUT_OF_MEMORY", "out of memory");
  snprintf(body, n, "{\"items\":%s,\"next_cursor\":%s}", items, next);
  send_body(q, j->req, 200, body, headers);
  free(body);
}

/* A state query (state.h) once its token, if any, is reached. @returns -1
 * for a PostgreSQL fault (not answered yet), 0 when answered. */
static int answer_state(worker_t *w, job_t *j) {
  esk_query_t *q = w->q;
  esk_error_t err = {0};
  if (!w->st && esk_qstate_worker_new(&w->st, q->st, &err)) {
    send_error(q, j->req, 503, "UNAVAILABLE", err.msg);
    return 0;
  }
  esk_qstate_ask_t ask = {j->values[0], j->has_as_of, j->as_of_us};
  char head[ESK_ID_MAX + 96], etag[ETAG_MAX] = "";
  int has = esk_qstate_head(w->st, w->pg, &ask, head, sizeof(head));
  if (has < 0) return -1;
  if (has == 0) make_etag(etag, j->decl, head);
  const char *with_etag[] = {"ETag", etag, NULL};
  if (etag[0] && etag_matches(j->if_none_match, etag)) { /* the client has it: no fold */
    esk_api_count(q->m_requests, 304);
    esk_http_respond(j->req, 304, JSON_TYPE, "", 0, with_etag);
    return 0;
  }
  esk_buf_t body;
  esk_buf_init(&body, 0);
  int status = esk_qstate_answer(w->st, w->pg, &ask, &body);
  if (status > 0)
    send_body(q, j->req, (unsigned)status, (const char *)body.data,
              status == 200 && etag[0] ? with_etag : NULL);
  esk_buf_free(&body);
  return status < 0 ? -1 : 0;
}

static void answer_query(worker_t *w, job_t *j) {
  esk_query_t *q = w->q;
  char name[32], where[2048];
  int64_t started = esk_time_mono_ms();
  if (j->has_token) {
    int r;
    while ((r = reached(q, w->pg, j, where, sizeof(where))) == 0 && esk_time_mono_ms() < j->deadline_ms &&
           !atomic_load(&q->stopping)) {
      esk_time_sleep_ms(q->poll_ms);
    }
    esk_metrics_observe(q->m_wait, (double)(esk_time_mono_ms() - started) / 1000.0);
    if (r < 0) goto pg_fault;
    if (r == 0) {
      char body[3072];
      esk_metrics_inc(q->m_stale);
      snprintf(body, sizeof(body), "{\"error\":{\"code\":\"STALE\",\"message\":\"the read "
               "model of projection %s has not reached the consistency token yet\","
               "\"projection\":\"%s\",\"positions\":[%s]}}", j->decl->projection,
               j->decl->projection, where);
      const char *retry[] = {"Retry-After", "1", NULL};
      return send_body(q, j->req, 503, body, retry);
    }
  }
  if (j->state) {
    if (answer_state(w, j) < 0) goto pg_fault;
    return;
  }
  const char *params[ESK_QUERY_MAX_PARAMS];
  for (size_t k = 0; k < j->decl->n_params; k++) params[k] = j->is_null[k] ? NULL : j->values[k];
  if (!w->prepared[j->decl_index]) {
    esk_error_t err = {0};
    int rc = prepare_decl(q, w->pg, j->decl_index, &err);
    if (rc == ESK_ERETRY) {
      char msg[600];
      snprintf(msg, sizeof(msg), "the read model of projection %s has no view in schema %s "
               "yet: its esk-projector has not run there", j->decl->projection, q->schema);
      return send_error(q, j->req, 503, "NOT_READY", msg);
    }
    if (rc) goto pg_fault;
    w->prepared[j->decl_index] = 1;
  }
  snprintf(name, sizeof(name), "q%zu", j->decl_index);
  PGresult *r = PQexecPrepared(w->pg, name, (int)j->decl->n_params, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state && !strncmp(state, "22", 2)) { /* a parameter PostgreSQL cannot take */
      char msg[600];
      snprintf(msg, sizeof(msg), "a parameter of query %s is refused: %s", j->decl->name,
               PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
      PQclear(r);
      return send_error(q, j->req, 400, "INVALID_PARAMETER", msg);
    }
    PQclear(r);
    goto pg_fault;
  }
  if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0)) {
    PQclear(r);
    return send_error(q, j->req, 404, "NOT_FOUND", "no such row");
  }
  send_rows(q, j, r);
  PQclear(r);
  return;
pg_fault : {
  char msg[600], qm[700];
  snprintf(msg, sizeof(msg), "PostgreSQL: %s", PQerrorMessage(w->pg));
  ESK_WARN(FAC, "msg=\"query failed\" query=%s reason=%s", j->decl->name,
           esk_log_quote(qm, sizeof(qm), msg));
  send_error(q, j->req, 503, "UNAVAILABLE", "the read models cannot be read now");
  if (PQstatus(w->pg) != CONNECTION_OK) { /* the next job connects again */
    PQfinish(w->pg);
    w->pg = NULL;
    atomic_fetch_sub(&q->connected, 1);
  }
}
}

/* A session with every statement prepared, when @p w has none. */
static void connect_worker(worker_t *w) {
  esk_error_t err = {0};
  if (w->pg) return;
  if (esk_pg_connect(&w->pg, w->q->conninfo, &err) ||
      prepare(w->q, w->pg, w->prepared, &err)) {
    char qm[700];
    ESK_WARN(FAC, "msg=\"not connected to PostgreSQL\" reason=%s",
             esk_log_quote(qm, sizeof(qm), err.msg));
    if (w->pg) PQfinish(w->pg);
    w->pg = NULL;
  } else {
    atomic_fetch_add(&w->q->connected, 1);
  }
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  esk_query_t *q = w->q;
  for (;;) {
    pthread_mutex_lock(&q->mu);
    while (!q->head && !atomic_load(&q->stopping)) {
      if (!w->pg) { /* idle and not connected: try again every second, so /readyz turns */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        if (q->head || atomic_load(&q->stopping)) break;
        pthread_mutex_unlock(&q->mu);
        connect_worker(w);
        pthread_mutex_lock(&q->mu);
      } else {
        pthread_cond_wait(&q->cv, &q->mu);
      }
    }
    job_t *j = q->head;
    if (j) {
      q->head = j->next;
      if (!q->head) q->tail = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    if (!j) break; /* stopping and nothing queued */
    connect_worker(w);
    if (!w->pg) send_error(q, j->req, 503, "UNAVAILABLE", "PostgreSQL cannot be reached now");
    else if (atomic_load(&q->stopping)) send_error(q, j->req, 503, "SHUTTING_DOWN", "stopping");
    else answer_query(w, j);
    pthread_mutex_lock(&q->mu);
    q->queued--;
    pthread_mutex_unlock(&q->mu);
    free(j);
  }
  if (w->pg) PQfinish(w->pg);
  esk_qstate_worker_free(w->st);
  free(w->prepared);
  free(w);
  return NULL;
}

/* ----------------------------------------------------------- set-up --- */

static int ready_cb(void *opaque, char *reason, size_t size) {
  esk_query_t *q = opaque;
  if (atomic_load(&q->stopping)) {
    snprintf(reason, size, "stopping");
    return 0;
  }
  if (atomic_load(&q->connected) <= 0) {
    snprintf(reason, size, "no worker is connected to PostgreSQL");
    return 0;
  }
  return 1;
}

static int load_files(esk_query_t *q, const char *files, esk_error_t *err) {
  char list[4096];
  if (!files || !*files)
    return esk_error_set(err, ESK_EINVAL, "query.file is not set: name the file of declared "
                         "queries (e.g. deploy/queries/bank.queries)");
  snprintf(list, sizeof(list), "%s", files);
  for (char *save = NULL, *f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
    while (*f == ' ') f++;
    int rc = esk_query_decl_load(&q->decls, &q->n_decls, f, err);
    if (rc) return rc;
  }
  return ESK_OK;
}

/* The settings, the token key, the bearer tokens and the declared queries. */
static int read_settings(esk_query_t *q, const esk_conf_t *conf, esk_error_t *err) {
  q->wait_ms = esk_conf_get_int(conf, "query.wait.ms");
  q->wait_max_ms = esk_conf_get_int(conf, "query.wait.max.ms");
  q->poll_ms = esk_conf_get_int(conf, "query.poll.ms");
  q->max_queued = esk_conf_get_int(conf, "query.max.queued");
  const char *schema = esk_conf_get(conf, "pg.schema");
  snprintf(q->domain, sizeof(q->domain), "%s", esk_conf_get(conf, "domain"));
  snprintf(q->conninfo, sizeof(q->conninfo), "%s", esk_conf_get(conf, "pg.conninfo"));
  if (!esk_query_decl_is_name(schema))
    return esk_error_set(err, ESK_EINVAL, "pg.schema=%s: not a lower-case identifier "
                         "[a-z_][a-z0-9_]* of at most 63 characters", schema);
  snprintf(q->schema, sizeof(q->schema), "%s", schema);
  if (q->wait_ms > q->wait_max_ms)
    return esk_error_set(err, ESK_EINVAL, "query.wait.ms=%" PRId64 " is above "
                         "query.wait.max.ms=%" PRId64, q->wait_ms, q->wait_max_ms);
  int rc;
  if ((rc = esk_kafka_topic_name(q->topic, sizeof(q->topic), esk_conf_get(conf, "topic.prefix"),
                                 q->domain, "events", err)) ||
      (rc = esk_token_key_load(q->key, esk_conf_get(conf, "api.token.key.file"), err)) ||
      (rc = esk_api_auth_load(&q->auth, esk_conf_get(conf, "api.auth.file"),
                              esk_conf_get(conf, "http.listen"), err)) ||
      (rc = load_files(q, esk_conf_get(conf, "query.file"), err)))
    return rc;
  return ESK_OK;
}

/* The state route of this domain, and the domain's shared object behind it.
 * A domain that does not load is no error: its states are answered 501 with
 * the reason (docs/api.md, "An aggregate's state at a time"). */
static void load_domain(esk_query_t *q, const esk_conf_t *conf) {
  esk_query_decl_t *d = &q->state_decl;
  static const char *const segs[] = {"v1", NULL, "aggregates", "aggregate_id", "state"};
  snprintf(d->name, sizeof(d->name), "aggregate_state");
  snprintf(d->projection, sizeof(d->projection), "event_log");
  snprintf(d->path, sizeof(d->path), "/v1/%s/aggregates/{aggregate_id}/state", q->domain);
  d->n_segments = 5;
  for (size_t i = 0; i < 5; i++)
    snprintf(d->segment[i], sizeof(d->segment[i]), "%s", segs[i] ? segs[i] : q->domain);
  d->is_param[3] = 1;
  d->n_params = 1;
  d->param_src[0] = 3;
  esk_error_t err = {0};
  if (esk_qstate_open(&q->st, esk_conf_get(conf, "domain.dir"), q->domain, &err)) {
    char qm[700];
    snprintf(q->st_reason, sizeof(q->st_reason), "the %.64s domain's plug-in is not loaded, so "
             "its states cannot be rendered: %.360s", q->domain, err.msg);
    ESK_WARN(FAC, "msg=\"aggregate states are not served\" reason=%s",
             esk_log_quote(qm, sizeof(qm), q->st_reason));
    q->st = NULL;
  } else if (!esk_domain_state_json(esk_qstate_domain(q->st))) {
    snprintf(q->st_reason, sizeof(q->st_reason), "the %.64s domain's plug-in has no state_json "
             "(built before it existed): it cannot render states (docs/domains.md)", q->domain);
    ESK_WARN(FAC, "msg=\"aggregate states are not served\" reason=\"%s\"", q->st_reason);
    esk_qstate_close(q->st);
    q->st = NULL;
  }
}

static int register_metrics(esk_query_t *q, esk_metrics_t *metrics, esk_error_t *err) {
  esk_metric_t *ms = NULL, *mw = NULL;
  int rc;
  if ((rc = esk_metrics_counter(&q->m_requests, metrics, "esk_query_requests_total",
                                "API requests answered, by HTTP status.", "code", 64, err)) ||
      (rc = esk_metrics_counter(&ms, metrics, "esk_query_stale_total",
                                "Queries whose read model had not reached their token in time.",
                                NULL, 1, err)) ||
      (rc = esk_metrics_histogram(&mw, metrics, "esk_query_token_wait_seconds",
                                  "Time queries with a token waited for their read model.", NULL,
                                  1, esk_metrics_latency_buckets, esk_metrics_latency_buckets_n,
                                  err)))
    return rc;
  q->m_stale = esk_metrics_only(ms);
  q->m_wait = esk_metrics_only(mw);
  return ESK_OK;
}

/* One session first: a declaration PostgreSQL refuses stops start-up here.
 * PostgreSQL down, or no projector run yet, is not an error: *pg stays NULL
 * and the workers connect later (not ready until then). @p first: which
 * declarations the session prepared. */
static int first_session(esk_query_t *q, PGconn **pg, unsigned char *first, esk_error_t *err) {
  int rc;
  if ((rc = esk_pg_connect(pg, q->conninfo, err)) || (rc = prepare(q, *pg, first, err))) {
    if (*pg) PQfinish(*pg);
    *pg = NULL;
    if (rc != ESK_ERETRY) return rc;
    char qm[700];
    ESK_WARN(FAC, "msg=\"not ready yet\" reason=%s", esk_log_quote(qm, sizeof(qm), err->msg));
  }
  return ESK_OK;
}

/* query.workers threads; the first keeps the checked session. */
static int start_workers(esk_query_t *q, const esk_conf_t *conf, esk_error_t *err) {
  PGconn *pg = NULL;
  unsigned char *first = calloc(q->n_decls, 1);
  if (!first) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  int rc = first_session(q, &pg, first, err);
  if (rc) {
    free(first);
    return rc;
  }
  int n = (int)esk_conf_get_int(conf, "query.workers");
  if (!(q->threads = calloc((size_t)n, sizeof(pthread_t)))) {
    PQfinish(pg);
    free(first);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    worker_t *w = calloc(1, sizeof(*w));
    unsigned char *prepared = i == 0 ? first : calloc(q->n_decls, 1);
    if (!w || !prepared) {
      if (pg) PQfinish(pg);
      free(w);
      free(prepared); /* first, when i is 0; worker 0 owns it otherwise */
      return esk_error_set(err, ESK_ENOMEM, "out of memory");
    }
    w->q = q;
    w->prepared = prepared;
    w->pg = pg; /* the first worker keeps the checked session */
    if (pg) atomic_fetch_add(&q->connected, 1);
    pg = NULL;
    if (pthread_create(&q->threads[i], NULL, worker_main, w)) {
      if (w->pg) PQfinish(w->pg);
      free(w->prepared);
      free(w);
      return esk_error_set(err, ESK_EFATAL, "cannot start a worker thread");
    }
    q->n_threads++;
  }
  return ESK_OK;
}

int esk_query_new(esk_query_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                  esk_error_t *err) {
  int rc;
  esk_query_t *q = calloc(1, sizeof(*q));
  if (!q) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  /* a body is read (and ignored) only to answer 405 to a method with one */
  esk_http_app_t app = {"/v1/", route, q, 4096, "GET, HEAD"};
  if (!(rc = read_settings(q, conf, err))) load_domain(q, conf);
  if (rc || (rc = register_metrics(q, metrics, err)) ||
      (rc = start_workers(q, conf, err)) ||
      (rc = esk_http_start_app(&q->http, conf, metrics, ready_cb, q, &app, err))) {
    esk_query_destroy(q);
    return rc;
  }
  ESK_INFO(FAC, "msg=started queries=%zu schema=%s topic=%s workers=%d port=%d", q->n_decls,
           q->schema, q->topic, q->n_threads, esk_http_port(q->http));
  *out = q;
  return ESK_OK;
}

int esk_query_port(const esk_query_t *q) { return esk_http_port(q->http); }

int esk_query_run(esk_query_t *q, volatile sig_atomic_t *stop, esk_error_t *err) {
  (void)err;
  (void)q;
  while (!*stop) {
    esk_watchdog_beat();
    esk_time_sleep_ms(100);
  }
  return ESK_OK;
}

int esk_query_reload(esk_query_t *q, esk_error_t *err) {
  esk_error_t tls = {0}; /* both are tried; the first error is told */
  int rc = esk_api_auth_reload(q->auth, err), rc_tls = esk_http_reload_tls(q->http, &tls);
  if (!rc && rc_tls) *err = tls;
  return rc ? rc : rc_tls;
}

void esk_query_destroy(esk_query_t *q) {
  if (!q) return;
  /* the workers answer what is queued (503) and end; then no request is suspended */
  pthread_mutex_lock(&q->mu);
  atomic_store(&q->stopping, 1);
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  for (int i = 0; i < q->n_threads; i++) pthread_join(q->threads[i], NULL);
  esk_http_stop(q->http); /* a request that came meanwhile was answered 503 by route() */
  free(q->threads);
  free(q->decls);
  esk_qstate_close(q->st); /* after the workers' contexts */
  esk_api_auth_free(q->auth);
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  free(q);
}
