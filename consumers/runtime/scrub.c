/* Scrubbing forgotten data subjects from a read model (scrub.h). */
#include "scrub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/hmap.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "generation.h"

/* Longest a run keeps the projector's loop from polling Kafka (at least one
 * subject is scrubbed per run); what is left is scrubbed at the next turn of
 * the loop, not the next interval. */
#define RUN_BUDGET_MS 1000

struct esk_scrub_s {
  const esk_forgets_t *src;
  esk_projection_t proj;
  int64_t interval_ms, next_ms;
  size_t cursor;    /* the source's subjects before it are scrubbed */
  esk_hmap_t *done; /* subjects recorded under the key; NULL until read */
};

int esk_scrub_new(esk_scrub_t **out, const esk_forgets_t *forgets, const esk_projection_t *proj,
                  int64_t interval_ms, esk_error_t *err) {
  esk_scrub_t *s = calloc(1, sizeof(*s));
  if (!s) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  s->src = forgets;
  s->proj = *proj;
  s->interval_ms = interval_ms;
  *out = s;
  return ESK_OK;
}

void esk_scrub_destroy(esk_scrub_t *s) {
  if (!s) return;
  esk_hmap_destroy(s->done);
  free(s);
}

/* The subjects recorded under @p key, read once. */
static int load_done(esk_scrub_t *s, PGconn *pg, const char *key, esk_error_t *err) {
  PGresult *r = NULL;
  const char *params[] = {key};
  int rc = esk_pg_exec(&r, pg, "read scrubbed subjects",
                       "select subject from esk_projection_scrubs where projection = $1", 1,
                       params, err);
  if (rc) return rc;
  char one = 1;
  if (!(rc = esk_hmap_new(&s->done, sizeof(one), (size_t)PQntuples(r), 0, err)))
    for (int i = 0; i < PQntuples(r) && !rc; i++)
      rc = esk_hmap_put(s->done, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), &one, NULL,
                        NULL, err);
  PQclear(r);
  if (rc) {
    esk_hmap_destroy(s->done);
    s->done = NULL;
  }
  return rc;
}

static void rollback(PGconn *pg) { PQclear(PQexec(pg, "rollback")); }

/* One subject: the projection's forget() and the record, in one transaction. */
static int scrub_one(esk_scrub_t *s, PGconn *pg, const char *key, const char *subject,
                     esk_error_t *err) {
  const char *params[] = {key, subject};
  int rc = esk_pg_exec(NULL, pg, "begin", "begin", 0, NULL, err);
  if (rc) return rc;
  if ((rc = s->proj.forget(s->proj.self, pg, subject, s->src->marks, s->src->n_marks, err)) ||
      (rc = esk_pg_exec(NULL, pg, "record the scrub",
                        "insert into esk_projection_scrubs (projection, subject) values ($1, $2) "
                        "on conflict do nothing",
                        2, params, err)) ||
      (rc = esk_pg_exec(NULL, pg, "commit", "commit", 0, NULL, err))) {
    rollback(pg);
    return rc;
  }
  char one = 1;
  return esk_hmap_put(s->done, subject, strlen(subject), &one, NULL, NULL, err);
}

int esk_scrub_due(const esk_scrub_t *s, int64_t now_ms) { return now_ms >= s->next_ms; }

/* esk_scrub_run(), reading the subject-keys topic again first only when
 * @p refresh (a retired generation's scrubber runs right after the live
 * one's, which has just read it). */
static int scrub_run(esk_scrub_t *s, PGconn *pg, const char *key, int64_t now_ms, int refresh,
                     int64_t *scrubbed, esk_error_t *err) {
  if (!esk_scrub_due(s, now_ms)) return ESK_OK;
  int behind = s->next_ms < 0; /* the last run stopped at its budget */
  s->next_ms = now_ms + s->interval_ms;
  int rc = behind || !refresh ? ESK_OK : s->src->refresh(s->src->self, err);
  if (!rc && !s->done) rc = load_done(s, pg, key, err);
  for (size_t n = s->src->count(s->src->self); !rc && s->cursor < n; s->cursor++) {
    const char *subject = s->src->subject(s->src->self, s->cursor);
    if (esk_hmap_get(s->done, subject, strlen(subject))) continue;
    if (esk_time_mono_ms() - now_ms >= RUN_BUDGET_MS) {
      s->next_ms = -1; /* due at once */
      break;
    }
    if ((rc = scrub_one(s, pg, key, subject, err))) break;
    if (scrubbed) ++*scrubbed;
  }
  return rc;
}

int esk_scrub_run(esk_scrub_t *s, PGconn *pg, const char *key, int64_t now_ms,
                  int64_t *scrubbed, esk_error_t *err) {
  return scrub_run(s, pg, key, now_ms, 1, scrubbed, err);
}

/* ------------------------------------------------- retired generations --- */

#define MAX_RETIRED 32 /* generations looked at per run; more wait for a drop */

typedef struct retired_s {
  int gen;
  char schema[64];
  esk_scrub_t *s;
} retired_t;

struct esk_scrub_retired_s {
  const esk_forgets_t *src;
  esk_projection_t proj;
  char base[64], projection[128];
  int64_t interval_ms;
  retired_t slot[MAX_RETIRED];
  size_t n;
};

int esk_scrub_retired_new(esk_scrub_retired_t **out, const esk_forgets_t *forgets,
                          const esk_projection_t *proj, const char *base,
                          const char *projection, int64_t interval_ms, esk_error_t *err) {
  esk_scrub_retired_t *r = calloc(1, sizeof(*r));
  if (!r) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  r->src = forgets;
  r->proj = *proj;
  snprintf(r->base, sizeof(r->base), "%s", base);
  snprintf(r->projection, sizeof(r->projection), "%s", projection);
  r->interval_ms = interval_ms;
  *out = r;
  return ESK_OK;
}

void esk_scrub_retired_destroy(esk_scrub_retired_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n; i++) esk_scrub_destroy(r->slot[i].s);
  free(r);
}

/* The slots again, one per generation of @p g (kept where they were, new
 * ones made, those of dropped generations freed). */
static int resync(esk_scrub_retired_t *r, const esk_generation_t *g, size_t n, esk_error_t *err) {
  retired_t next[MAX_RETIRED] = {0};
  int rc = ESK_OK;
  for (size_t i = 0; i < n && !rc; i++) {
    next[i].gen = g[i].gen;
    snprintf(next[i].schema, sizeof(next[i].schema), "%s", g[i].schema);
    for (size_t j = 0; j < r->n && !next[i].s; j++)
      if (r->slot[j].s && r->slot[j].gen == g[i].gen) {
        next[i].s = r->slot[j].s;
        r->slot[j].s = NULL;
      }
    if (!next[i].s) rc = esk_scrub_new(&next[i].s, r->src, &r->proj, r->interval_ms, err);
  }
  for (size_t j = 0; j < r->n; j++) esk_scrub_destroy(r->slot[j].s);
  memcpy(r->slot, next, sizeof(next));
  r->n = n;
  return rc;
}

/* One retired generation's scrubber, in its schema. */
static int run_one(esk_scrub_retired_t *r, retired_t *t, PGconn *pg, int64_t now_ms,
                   int64_t *scrubbed, esk_error_t *err) {
  char sql[192], key[160];
  snprintf(sql, sizeof(sql), "set search_path to \"%s\", \"%s\"", t->schema, r->base);
  esk_generation_store_key(key, sizeof(key), r->projection, t->gen);
  int rc = esk_pg_exec(NULL, pg, "set search_path", sql, 0, NULL, err);
  return rc ? rc : scrub_run(t->s, pg, key, now_ms, 0, scrubbed, err);
}

int esk_scrub_retired_run(esk_scrub_retired_t *r, PGconn *pg, int live, int64_t now_ms,
                          int64_t *scrubbed, int *failed, esk_error_t *err) {
  esk_generation_t g[MAX_RETIRED];
  size_t n = 0;
  *failed = 0;
  int rc = esk_generation_retired(pg, r->base, r->projection, live, g, MAX_RETIRED, &n, err);
  if (!rc) rc = resync(r, g, n, err);
  for (size_t i = 0; i < r->n && !rc; i++) {
    esk_error_t one = {0};
    if (run_one(r, &r->slot[i], pg, now_ms, scrubbed, &one) && !*failed) {
      *failed = r->slot[i].gen;
      *err = one;
    }
  }
  return rc;
}
