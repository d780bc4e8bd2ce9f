#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/buf.h"
#include "esk/pg.h"

static const char *init_sql =
    "create table if not exists esk_projection_migrations ("
    "  projection text not null, version int not null,"
    "  applied_at timestamptz not null default now(),"
    "  primary key (projection, version));"
    "create table if not exists esk_projection_positions ("
    "  projection text not null, topic text not null, partition int not null,"
    "  next_offset bigint not null check (next_offset >= 0),"
    "  updated_at timestamptz not null default now(),"
    "  primary key (projection, topic, partition));"
    "create table if not exists esk_projection_versions ("
    "  projection text not null, aggregate_id text not null,"
    "  version bigint not null check (version > 0),"
    "  primary key (projection, aggregate_id)) with (fillfactor = 50);"
    "create table if not exists esk_projection_scrubs ("
    "  projection text not null, subject text not null,"
    "  scrubbed_at timestamptz not null default now(),"
    "  primary key (projection, subject));"
    "create table if not exists esk_projection_deferred ("
    "  projection text not null, name text not null, definition text not null,"
    "  primary key (projection, name));";

static int exec_simple(PGconn *pg, const char *what, const char *sql, esk_error_t *err) {
  return esk_pg_exec(NULL, pg, what, sql, 0, NULL, err);
}

static void rollback(PGconn *pg) {
  PQclear(PQexec(pg, "rollback"));
}

int esk_store_init(PGconn *pg, esk_error_t *err) {
  int rc;
  if ((rc = exec_simple(pg, "begin", "begin", err))) return rc;
  if ((rc = exec_simple(pg, "lock for DDL", ESK_DDL_LOCK, err)) ||
      (rc = exec_simple(pg, "create esk bookkeeping tables", init_sql, err)) ||
      (rc = exec_simple(pg, "commit", "commit", err))) {
    rollback(pg);
    return rc;
  }
  return ESK_OK;
}

int esk_store_migrate(PGconn *pg, const char *projection, const char *const *migrations,
                      size_t n, int *created, esk_error_t *err) {
  int rc;
  if (created) *created = 0;
  for (size_t i = 0; i < n; i++) {
    char version[24], what[160];
    snprintf(version, sizeof(version), "%zu", i + 1);
    const char *params[] = {projection, version};
    PGresult *r = NULL;
    if ((rc = exec_simple(pg, "begin", "begin", err))) return rc;
    if ((rc = exec_simple(pg, "lock for DDL", ESK_DDL_LOCK, err)) ||
        (rc = esk_pg_exec(&r, pg, "read migrations",
                          "select 1 from esk_projection_migrations "
                          "where projection = $1 and version = $2::int",
                          2, params, err)))
      goto fail;
    int applied = PQntuples(r) > 0;
    PQclear(r);
    if (!applied) {
      snprintf(what, sizeof(what), "migration %s of projection %s", version, projection);
      if ((rc = exec_simple(pg, what, migrations[i], err)) ||
          (rc = esk_pg_exec(NULL, pg, "record migration",
                            "insert into esk_projection_migrations (projection, version) "
                            "values ($1, $2::int)",
                            2, params, err)))
        goto fail;
      if (i == 0 && created) *created = 1;
    }
    if ((rc = exec_simple(pg, "commit", "commit", err))) goto fail;
  }
  return ESK_OK;
fail:
  rollback(pg);
  return rc;
}

int esk_store_position_get(PGconn *pg, const char *projection, const char *topic,
                           int32_t partition, int64_t *next_offset, esk_error_t *err) {
  char part[16];
  snprintf(part, sizeof(part), "%d", (int)partition);
  const char *params[] = {projection, topic, part};
  PGresult *r = NULL;
  int rc = esk_pg_exec(&r, pg, "read position",
                       "select next_offset from esk_projection_positions "
                       "where projection = $1 and topic = $2 and partition = $3::int",
                       3, params, err);
  if (rc) return rc;
  *next_offset = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
  PQclear(r);
  return ESK_OK;
}

int esk_store_position_cas(PGconn *pg, const char *projection, const char *topic,
                           int32_t partition, int64_t expected, int64_t next, esk_error_t *err) {
  char part[16], exp[32], nxt[32];
  snprintf(part, sizeof(part), "%d", (int)partition);
  snprintf(exp, sizeof(exp), "%lld", (long long)expected);
  snprintf(nxt, sizeof(nxt), "%lld", (long long)next);
  PGresult *r = NULL;
  int rc;
  if (expected < 0) {
    const char *params[] = {projection, topic, part, nxt};
    rc = esk_pg_exec(&r, pg, "store first position",
                     "insert into esk_projection_positions "
                     "(projection, topic, partition, next_offset) "
                     "values ($1, $2, $3::int, $4::bigint) on conflict do nothing",
                     4, params, err);
  } else {
    const char *params[] = {projection, topic, part, exp, nxt};
    rc = esk_pg_exec(&r, pg, "store position",
                     "update esk_projection_positions set next_offset = $5::bigint, "
                     "updated_at = now() where projection = $1 and topic = $2 "
                     "and partition = $3::int and next_offset = $4::bigint",
                     5, params, err);
  }
  if (rc) return rc;
  int changed = atoi(PQcmdTuples(r));
  PQclear(r);
  if (changed != 1)
    return esk_error_set(err, ESK_ECONFLICT,
                         "position of %s %s[%d] is no longer %lld: another instance owns "
                         "the partition",
                         projection, topic, (int)partition, (long long)expected);
  return ESK_OK;
}

/* Bulk parameters travel as PostgreSQL array literals: nothing spliced into
 * SQL, and cheaper for the server to read than JSON. */
static int array_open(esk_buf_t *b) {
  return b->len ? esk_buf_append(b, ",", 1, NULL) : esk_buf_append(b, "{", 1, NULL);
}

int esk_store_array_add(esk_buf_t *b, const char *s, size_t n) {
  int rc = array_open(b);
  if (!rc) rc = esk_buf_append(b, "\"", 1, NULL);
  size_t run = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    if (s[i] != '"' && s[i] != '\\') continue;
    rc = esk_buf_append(b, s + run, i - run, NULL);
    if (!rc) rc = esk_buf_append(b, "\\", 1, NULL);
    run = i;
  }
  if (!rc) rc = esk_buf_append(b, s + run, n - run, NULL);
  return rc ? rc : esk_buf_append(b, "\"", 1, NULL);
}

int esk_store_array_add_i64(esk_buf_t *b, int64_t v) {
  char t[24];
  int k = snprintf(t, sizeof(t), "%lld", (long long)v);
  int rc = array_open(b);
  return rc ? rc : esk_buf_append(b, t, (size_t)k, NULL);
}

int esk_store_array_end(esk_buf_t *b) {
  int rc = b->len ? ESK_OK : esk_buf_append(b, "{", 1, NULL);
  return rc ? rc : esk_buf_append(b, "}", 2, NULL); /* with the NUL */
}

static int ids_literal(esk_buf_t *b, const char *const *ids, size_t n) {
  int rc = ESK_OK;
  for (size_t i = 0; i < n && !rc; i++) rc = esk_store_array_add(b, ids[i], strlen(ids[i]));
  return rc ? rc : esk_store_array_end(b);
}

static int versions_literal(esk_buf_t *b, const int64_t *v, size_t n) {
  int rc = ESK_OK;
  for (size_t i = 0; i < n && !rc; i++) rc = esk_store_array_add_i64(b, v[i]);
  return rc ? rc : esk_store_array_end(b);
}

int esk_store_versions_get(PGconn *pg, const char *projection, const char *const *ids,
                           size_t n, int64_t *versions, esk_error_t *err) {
  for (size_t i = 0; i < n; i++) versions[i] = 0;
  if (n == 0) return ESK_OK;
  esk_buf_t lit;
  esk_buf_init(&lit, (size_t)1 << 30);
  if (ids_literal(&lit, ids, n)) {
    esk_buf_free(&lit);
    return esk_error_set(err, ESK_ENOMEM, "out of memory encoding aggregate ids");
  }
  const char *params[] = {projection, (const char *)lit.data};
  PGresult *r = NULL;
  int rc = esk_pg_exec(&r, pg, "read aggregate versions",
                       "select x.ord - 1, v.version from unnest($2::text[]) "
                       "with ordinality as x(id, ord) join esk_projection_versions v "
                       "on v.projection = $1 and v.aggregate_id = x.id",
                       2, params, err);
  esk_buf_free(&lit);
  if (rc) return rc;
  for (int row = 0; row < PQntuples(r); row++) {
    long long i = strtoll(PQgetvalue(r, row, 0), NULL, 10);
    if (i >= 0 && (size_t)i < n) versions[i] = strtoll(PQgetvalue(r, row, 1), NULL, 10);
  }
  PQclear(r);
  return ESK_OK;
}

int esk_store_versions_any(PGconn *pg, const char *projection, int *any, esk_error_t *err) {
  const char *params[] = {projection};
  PGresult *r = NULL;
  int rc = esk_pg_exec(&r, pg, "look for recorded versions",
                       "select 1 from esk_projection_versions where projection = $1 limit 1", 1,
                       params, err);
  if (rc) return rc;
  *any = PQntuples(r) > 0;
  PQclear(r);
  return ESK_OK;
}

int esk_store_versions_put(PGconn *pg, const char *projection, const char *const *ids,
                           const int64_t *versions, size_t n, esk_error_t *err) {
  if (n == 0) return ESK_OK;
  esk_buf_t a, b;
  esk_buf_init(&a, (size_t)1 << 30);
  esk_buf_init(&b, (size_t)1 << 30);
  int rc;
  if (ids_literal(&a, ids, n) || versions_literal(&b, versions, n)) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory encoding aggregate versions");
  } else {
    const char *params[] = {projection, (const char *)a.data, (const char *)b.data};
    rc = esk_pg_exec(NULL, pg, "store aggregate versions",
                     "insert into esk_projection_versions (projection, aggregate_id, version) "
                     "select $1, x.a, x.v from unnest($2::text[], $3::bigint[]) as x(a, v) "
                     "on conflict (projection, aggregate_id) do update "
                     "set version = greatest(esk_projection_versions.version, excluded.version)",
                     3, params, err);
  }
  esk_buf_free(&a);
  esk_buf_free(&b);
  return rc;
}
