/* An aggregate's state at a time, from event_log and the domain's own evolve
 * (see state.h; docs/api.md; docs/architecture.md, "HTTP API"). */
#include "state.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/api.h"
#include "esk/codec.h"
#include "esk/domain_lib.h"
#include "esk/personal.h"
#include "esk/shred.h"
#include "esk/text.h"
#include "esk/time.h"

struct esk_qstate_s {
  esk_domain_lib_t *lib; /* NULL when compiled in */
  const esk_domain_t *d;
  esk_schema_set_t *set;
};

struct esk_qstate_worker_s {
  const esk_qstate_t *s;
  esk_codec_t *codec;
  void *self;
  esk_buf_t enc;
};

/* ----------------------------------------------------------- set-up --- */

int esk_qstate_from_domain(esk_qstate_t **out, const esk_domain_t *d, esk_error_t *err) {
  esk_qstate_t *s = calloc(1, sizeof(*s));
  if (!s) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  s->d = d;
  int rc = esk_schema_set_new(&s->set, err);
  if (!rc) rc = d->load_schemas(s->set, err);
  if (rc) {
    esk_qstate_close(s);
    return rc;
  }
  *out = s;
  return ESK_OK;
}

int esk_qstate_open(esk_qstate_t **out, const char *dir, const char *name, esk_error_t *err) {
  esk_domain_lib_t *lib = NULL;
  int rc = esk_domain_lib_open(&lib, dir, name, err);
  if (rc) return rc;
  if ((rc = esk_qstate_from_domain(out, esk_domain_lib_domain(lib), err))) {
    esk_domain_lib_close(lib);
    return rc;
  }
  (*out)->lib = lib;
  return ESK_OK;
}

void esk_qstate_close(esk_qstate_t *s) {
  if (!s) return;
  esk_schema_set_destroy(s->set);
  esk_domain_lib_close(s->lib); /* after everything made from the domain */
  free(s);
}

const esk_domain_t *esk_qstate_domain(const esk_qstate_t *s) { return s->d; }

int esk_qstate_worker_new(esk_qstate_worker_t **out, const esk_qstate_t *s, esk_error_t *err) {
  esk_qstate_worker_t *w = calloc(1, sizeof(*w));
  if (!w) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  w->s = s;
  esk_buf_init(&w->enc, 0);
  int rc = esk_codec_new(&w->codec, s->set, NULL, err);
  if (!rc) rc = s->d->register_upcasters(w->codec, err);
  if (!rc) rc = s->d->create(&w->self, s->set, w->codec, err);
  if (rc) {
    esk_qstate_worker_free(w);
    return rc;
  }
  *out = w;
  return ESK_OK;
}

void esk_qstate_worker_free(esk_qstate_worker_t *w) {
  if (!w) return;
  if (w->self) w->s->d->destroy(w->self);
  esk_codec_destroy(w->codec);
  esk_buf_free(&w->enc);
  free(w);
}

int esk_qstate_parse_as_of(const char *v, int64_t *out_us, esk_error_t *err) {
  size_t n = strnlen(v, ESK_QSTATE_AS_OF_MAX + 1);
  if (n > ESK_QSTATE_AS_OF_MAX)
    return esk_error_set(err, ESK_EINVAL, "as_of is longer than %d bytes: give an RFC 3339 "
                         "time such as 2026-01-15T10:00:00Z", ESK_QSTATE_AS_OF_MAX);
  if (esk_utf8_check(v, n) != n)
    return esk_error_set(err, ESK_EINVAL, "as_of is not UTF-8: give an RFC 3339 time such as "
                         "2026-01-15T10:00:00Z");
  esk_error_t e = {0};
  if (n > 10 && v[10] == ' ') /* RFC 3339 allows it in prose; a date-time has T */
    return esk_error_set(err, ESK_EINVAL, "as_of: a space between date and time: write T, "
                         "e.g. 2026-01-15T10:00:00Z");
  if (esk_time_parse_rfc3339_us(out_us, v, &e))
    return esk_error_set(err, ESK_EINVAL, "as_of: %s", e.msg);
  return ESK_OK;
}

/* ------------------------------------------------- a row to an event --- */

/* 1 when @p v holds a string in the encrypted wire form (esk/shred.h). */
static int holds_ciphertext(const json_t *v) {
  if (json_is_string(v))
    return !strncmp(json_string_value(v), ESK_SHRED_PREFIX, strlen(ESK_SHRED_PREFIX));
  const char *k;
  json_t *m;
  if (json_is_object(v))
    json_object_foreach((json_t *)v, k, m) if (holds_ciphertext(m)) return 1;
  return 0;
}

/* Personal fields of @p payload held encrypted take their `forgotten` value:
 * esk-query has no subject keys (state.h). */
static void forget_ciphertext(json_t *payload, const esk_schema_t *schema) {
  size_t n = 0;
  const esk_personal_field_t *f = esk_schema_personal(schema, &n);
  for (size_t i = 0; i < n; i++) {
    json_t *v = json_object_get(payload, f[i].name);
    if (!v || !holds_ciphertext(v)) continue;
    json_t *forgotten = json_loads(f[i].forgotten_json, JSON_DECODE_ANY, NULL);
    if (forgotten) json_object_set_new(payload, f[i].name, forgotten);
  }
}

/* The row's whole record as JSON text (payload plus meta), or NULL. */
static char *record_json(const esk_qstate_t *s, const esk_qstate_row_t *row,
                         const esk_schema_t *schema, esk_error_t *err) {
  json_error_t je;
  json_t *p = json_loads(row->payload, 0, &je);
  if (!json_is_object(p)) {
    json_decref(p);
    esk_error_set(err, ESK_EPOISON, "its payload is not a JSON object: %s", je.text);
    return NULL;
  }
  forget_ciphertext(p, schema);
  json_t *meta = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "event_id",
                           row->event_id, "aggregate_type", s->d->aggregate_type,
                           "aggregate_id", row->aggregate_id, "aggregate_version",
                           (json_int_t)row->aggregate_version, "occurred_at",
                           (json_int_t)row->occurred_at_us, "correlation_id",
                           row->correlation_id, "causation_id", row->causation_id, "actor",
                           row->actor);
  char *text = NULL;
  if (meta && !json_object_set_new(p, "meta", meta))
    text = json_dumps(p, JSON_COMPACT);
  json_decref(p);
  if (!text) esk_error_set(err, ESK_EPOISON, "its metadata are not UTF-8");
  return text;
}

int esk_qstate_event_from_row(esk_qstate_worker_t *w, const esk_qstate_row_t *row, void *event,
                              esk_error_t *err) {
  const esk_qstate_t *s = w->s;
  const esk_schema_t *schema = esk_schema_set_latest(s->set, row->event_type);
  esk_error_t e = {0};
  avro_value_t v = {0};
  esk_event_ref_t ref = {0};
  int rc = ESK_EPOISON;
  char *text = NULL;
  if (!schema) {
    esk_error_set(&e, ESK_EPOISON, "the %s contract has no such type", s->d->name);
  } else if ((text = record_json(s, row, schema, &e)) && !esk_value_new(&v, schema, &e) &&
             !esk_value_from_json(&v, schema, text, &e)) {
    esk_buf_reset(&w->enc);
    if (!esk_codec_encode(w->codec, schema, &v, &w->enc, &e) &&
        !s->d->decode_event(w->self, event, &ref, w->enc.data, w->enc.len, &e)) {
      rc = ESK_OK;
      if (ref.aggregate_version != row->aggregate_version || !ref.aggregate_id ||
          strcmp(ref.aggregate_id, row->aggregate_id))
        rc = esk_error_set(&e, ESK_EPOISON, "the domain read it as another aggregate or "
                           "version");
    }
  }
  if (v.iface) avro_value_decref(&v);
  free(text);
  if (rc)
    esk_error_set(err, ESK_EPOISON, "event_log row %.64s v%" PRId64 " (%.64s): %s",
                  row->aggregate_id, row->aggregate_version, row->event_type, e.msg);
  return rc;
}

/* ------------------------------------------------------------ the fold --- */

/* One fold in progress: two states (the one read and the next) and an event. */
typedef struct fold_s {
  esk_qstate_worker_t *w;
  unsigned char *state, *next, *event;
  int64_t version, last_at_us;
  esk_error_t err;
} fold_t;

/* the aggregate's rows at or before as_of ($3, microseconds since the epoch;
 * NULL: every row) */
#define ROWS_SQL                                                                            \
  " from event_log where aggregate_id = $1 and aggregate_type = $2 and ($3::bigint is "    \
  "null or occurred_at <= timestamptz 'epoch' + $3::bigint * interval '1 microsecond')"

#define PAGE_SQL                                                                            \
  "select aggregate_version, event_type, event_id::text, "                                 \
  "floor(extract(epoch from occurred_at))::bigint * 1000000 + "                            \
  "(extract(microseconds from occurred_at)::bigint % 1000000), correlation_id, "          \
  "causation_id, actor, payload::text" ROWS_SQL " and aggregate_version > $4::bigint "     \
  "order by aggregate_version limit " ESK_QSTATE_PAGE_TEXT

#define HEAD_SQL "select count(*), coalesce(max(aggregate_version), 0)" ROWS_SQL

#define ESK_QSTATE_PAGE_TEXT "500"
_Static_assert(ESK_QSTATE_PAGE == 500, "PAGE_SQL's limit");

/* Applies the page's rows in order. @returns the number applied, or -1 with
 * f->err set (a row the domain refuses). Stops at a version that does not
 * follow (an event past as_of was left out before it). */
static int apply_page(fold_t *f, const esk_qstate_ask_t *ask, PGresult *r) {
  const esk_domain_t *d = f->w->s->d;
  int applied = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    esk_qstate_row_t row = {ask->aggregate_id, strtoll(PQgetvalue(r, i, 0), NULL, 10),
                            PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                            strtoll(PQgetvalue(r, i, 3), NULL, 10), PQgetvalue(r, i, 4),
                            PQgetvalue(r, i, 5), PQgetvalue(r, i, 6), PQgetvalue(r, i, 7)};
    if (row.aggregate_version != f->version + 1) return applied;
    if (esk_qstate_event_from_row(f->w, &row, f->event, &f->err) ||
        d->evolve(f->next, f->state, f->event, &f->err))
      return -1;
    unsigned char *t = f->state;
    f->state = f->next;
    f->next = t;
    f->version = row.aggregate_version;
    f->last_at_us = row.occurred_at_us;
    applied++;
  }
  return applied;
}

int esk_qstate_head(const esk_qstate_worker_t *w, PGconn *pg, const esk_qstate_ask_t *ask,
                    char *out, size_t size) {
  char as_of[24];
  snprintf(as_of, sizeof(as_of), "%" PRId64, ask->as_of_us);
  const char *params[3] = {ask->aggregate_id, w->s->d->aggregate_type,
                           ask->has_as_of ? as_of : NULL};
  PGresult *r = PQexecParams(pg, HEAD_SQL, 3, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    int no_view = st && !strcmp(st, "42P01"); /* esk_qstate_answer() says NOT_READY */
    PQclear(r);
    return no_view ? 1 : -1;
  }
  int none = !strcmp(PQgetvalue(r, 0, 0), "0");
  snprintf(out, size, "%s\n%s\n%s:%s", ask->aggregate_id, ask->has_as_of ? as_of : "-",
           PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
  PQclear(r);
  return none;
}

/* Folds every page. @returns 0, 1 when a row was refused (f->err), or -1
 * for a PostgreSQL fault (@p sqlstate copied). */
static int fold_all(fold_t *f, PGconn *pg, const esk_qstate_ask_t *ask, char sqlstate[6]) {
  char as_of[24], after[24];
  snprintf(as_of, sizeof(as_of), "%" PRId64, ask->as_of_us);
  const char *params[4] = {ask->aggregate_id, f->w->s->d->aggregate_type,
                           ask->has_as_of ? as_of : NULL, after};
  for (;;) {
    snprintf(after, sizeof(after), "%" PRId64, f->version);
    PGresult *r = PQexecParams(pg, PAGE_SQL, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      snprintf(sqlstate, 6, "%s", st ? st : "");
      PQclear(r);
      return -1;
    }
    int n = PQntuples(r), applied = apply_page(f, ask, r);
    PQclear(r);
    if (applied < 0) return 1;
    if (applied < n || n < ESK_QSTATE_PAGE) return 0;
  }
}

/* An error answer into @p body. @returns @p status. */
static int error_body(esk_buf_t *body, int status, const char *code, const char *msg) {
  char buf[ESK_ERROR_MSG_MAX + 256];
  size_t n = esk_api_error_json(buf, sizeof(buf), code, msg);
  esk_buf_reset(body);
  if (esk_buf_append(body, buf, n + 1, NULL)) return 503;
  return status;
}

/* The 200 answer: where and when, then the domain's rendering of the state. */
static int render(const fold_t *f, const esk_qstate_ask_t *ask, esk_buf_t *body) {
  const esk_domain_t *d = f->w->s->d;
  esk_buf_t state;
  esk_error_t err = {0};
  char as_of[40] = "", last[40];
  esk_buf_init(&state, 0);
  if (esk_domain_state_json(d)(&state, f->state, &err) ||
      esk_buf_append(&state, "", 1, &err)) {
    esk_buf_free(&state);
    return error_body(body, 500, "STATE_NOT_RENDERED", err.msg);
  }
  json_t *s = json_loads((const char *)state.data, 0, NULL);
  esk_buf_free(&state);
  if (!json_is_object(s)) {
    json_decref(s);
    return error_body(body, 500, "STATE_NOT_RENDERED", "the domain's state_json did not "
                      "write a JSON object");
  }
  if (ask->has_as_of) esk_time_format_rfc3339_us(as_of, sizeof(as_of), ask->as_of_us);
  esk_time_format_rfc3339_us(last, sizeof(last), f->last_at_us);
  json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:I, s:s, s:o}", "domain", d->name,
                        "aggregate_type", d->aggregate_type, "aggregate_id", ask->aggregate_id,
                        "as_of", ask->has_as_of ? json_string(as_of) : json_null(), "version",
                        (json_int_t)f->version, "last_event_at", last, "state", s);
  char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  esk_buf_reset(body);
  int rc = text ? esk_buf_append(body, text, strlen(text) + 1, NULL) : ESK_ENOMEM;
  free(text);
  return rc ? error_body(body, 503, "OUT_OF_MEMORY", "out of memory") : 200;
}

int esk_qstate_answer(esk_qstate_worker_t *w, PGconn *pg, const esk_qstate_ask_t *ask,
                      esk_buf_t *body) {
  const esk_domain_t *d = w->s->d;
  if (!esk_domain_state_json(d))
    return error_body(body, 501, "NOT_IMPLEMENTED", "this domain's plug-in has no state_json: "
                      "it cannot render states (docs/domains.md)");
  fold_t f = {w, malloc(d->state_size), malloc(d->state_size), malloc(d->event_size), 0, 0,
              {0}};
  int status;
  char sqlstate[6] = "", msg[ESK_ERROR_MSG_MAX + 64];
  if (!f.state || !f.next || !f.event) {
    status = error_body(body, 503, "OUT_OF_MEMORY", "out of memory");
    goto out;
  }
  d->init_state(f.state);
  int rc = fold_all(&f, pg, ask, sqlstate);
  if (rc < 0 && !strcmp(sqlstate, "42P01")) {
    status = error_body(body, 503, "NOT_READY", "event_log has no view in pg.schema yet: its "
                        "esk-projector has not run there");
  } else if (rc < 0) {
    status = -1;
  } else if (rc > 0) {
    snprintf(msg, sizeof(msg), "the events cannot be folded: %s", f.err.msg);
    status = error_body(body, 500, "EVENT_UNREADABLE", msg);
  } else if (f.version == 0) {
    snprintf(msg, sizeof(msg), "%s has no event %s", d->aggregate_type,
             ask->has_as_of ? "at or before as_of" : "in event_log");
    status = error_body(body, 404, "NOT_FOUND", msg);
  } else {
    status = render(&f, ask, body);
  }
out:
  free(f.state);
  free(f.next);
  free(f.event);
  return status;
}
