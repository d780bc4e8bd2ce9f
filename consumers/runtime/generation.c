/* Generations of a projection: the registry, the per-generation schemas and the
 * views that name the live one (see generation.h). */
#include "generation.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/pg.h"
#include "esk/time.h"

#define REGISTRY "esk_projection_generations"
#define CHANNEL "esk_generation_switch" /* NOTIFY channel; the payload names the projection */

/* Identifiers here are checked by esk_pg_ident_valid() ([a-z_][a-z0-9_]*),
 * so quoting them with "" needs no escaping. */

static int registry_init(PGconn *pg, const char *base, esk_error_t *err) {
  char sql[1024], rel[128];
  snprintf(rel, sizeof(rel), "\"%s\"." REGISTRY, base);
  const char *rp[2] = {rel, base};
  PGresult *res = NULL;
  int rc = esk_pg_exec(&res, pg, "generation registry",
                       "select to_regclass($1) is not null, exists (select 1 from"
                       " information_schema.columns where table_schema = $2"
                       " and table_name = '" REGISTRY "' and column_name = 'from_ms')",
                       2, rp, err);
  if (rc) return rc;
  int exists = !strcmp(PQgetvalue(res, 0, 0), "t"), current = !strcmp(PQgetvalue(res, 0, 1), "t");
  PQclear(res);
  if (exists && current) return ESK_OK;
  /* "if not exists" races when projectors start together: serialise with the
   * lock the projector runtime takes for its own DDL. from_ms: where a
   * rebuild started (null: offset 0), so that resuming it cannot change it. */
  snprintf(sql, sizeof(sql),
           "begin; select pg_advisory_xact_lock(7218300413);"
           "create schema if not exists \"%s\";"
           "create table if not exists \"%s\"." REGISTRY " ("
           "  projection text not null, generation int not null check (generation > 0),"
           "  schema_name text not null, group_id text not null,"
           "  state text not null check (state in ('live', 'rebuilding', 'retired')),"
           "  created_at timestamptz not null default now(), switched_at timestamptz,"
           "  primary key (projection, generation));"
           "alter table \"%s\"." REGISTRY " add column if not exists from_ms bigint; commit",
           base, base, base);
  rc = esk_pg_exec(NULL, pg, "generation registry", sql, 0, NULL, err);
  if (rc) esk_pg_exec(NULL, pg, "rollback", "rollback", 0, NULL, &(esk_error_t){0});
  return rc;
}

int esk_generation_schema(char *out, size_t size, const char *base, const char *projection,
                          int gen, esk_error_t *err) {
  int n = snprintf(out, size, "%s_%s_g%d", base ? base : "", projection ? projection : "", gen);
  if (n < 0 || (size_t)n >= size || !esk_pg_ident_valid(out))
    return esk_error_set(err, ESK_EINVAL,
                         "pg.schema '%s' with projection '%s': the schema of generation %d, "
                         "'%s_%s_g%d', is not a lower-case identifier of at most 63 characters",
                         base ? base : "", projection ? projection : "", gen, base ? base : "",
                         projection ? projection : "", gen);
  return ESK_OK;
}

static int fill(esk_generation_t *out, const char *base, const char *projection, int gen,
                const char *base_group, const char *state, esk_error_t *err) {
  esk_generation_t g = {.gen = gen, .from_ms = -1};
  int rc = esk_generation_schema(g.schema, sizeof(g.schema), base, projection, gen, err);
  if (rc) return rc;
  int n = gen == 1 ? snprintf(g.group, sizeof(g.group), "%s", base_group)
                   : snprintf(g.group, sizeof(g.group), "%s.g%d", base_group, gen);
  if (n < 0 || (size_t)n >= sizeof(g.group))
    return esk_error_set(err, ESK_EINVAL, "group.id '%s' is too long", base_group);
  snprintf(g.state, sizeof(g.state), "%s", state);
  *out = g;
  return ESK_OK;
}

int esk_generation_check_group(const esk_generation_t *g, const char *base,
                               const char *projection, const char *group, esk_error_t *err) {
  if (!group || !*group) return ESK_OK;
  esk_generation_t want;
  int rc = fill(&want, base, projection, g->gen, group, g->state, err);
  if (rc || !strcmp(want.group, g->group)) return rc;
  char as[300] = "";
  if (g->gen > 1) snprintf(as, sizeof(as), " (group '%s' for generation %d)", want.group, g->gen);
  return esk_error_set(err, ESK_EINVAL,
                       "group.id '%s'%s conflicts with generation %d of projection %s in "
                       "pg.schema %s, recorded with group '%s'; its positions are in PostgreSQL, "
                       "so another group would not read the topic again: to rebuild from offset "
                       "0 run 'eskctl projection rebuild %s --schema %s', for a separate copy use "
                       "a new pg.schema, or leave group.id unset",
                       group, as, g->gen, projection, base, g->group, projection, base);
}

static int row(esk_generation_t *out, PGresult *res, int i) {
  esk_generation_t g = {0};
  g.gen = atoi(PQgetvalue(res, i, 0));
  snprintf(g.schema, sizeof(g.schema), "%s", PQgetvalue(res, i, 1));
  snprintf(g.group, sizeof(g.group), "%s", PQgetvalue(res, i, 2));
  snprintf(g.state, sizeof(g.state), "%s", PQgetvalue(res, i, 3));
  g.from_ms = PQgetisnull(res, i, 4) ? -1 : strtoll(PQgetvalue(res, i, 4), NULL, 10);
  *out = g;
  return ESK_OK;
}

/* The projection's generation in @p state (or number @p gen when state is NULL). */
static int find(esk_generation_t *out, PGconn *pg, const char *base, const char *projection,
                const char *state, int gen, esk_error_t *err) {
  char sql[512], num[16];
  snprintf(num, sizeof(num), "%d", gen);
  snprintf(sql, sizeof(sql),
           "select generation, schema_name, group_id, state, from_ms from \"%s\"." REGISTRY
           " where projection = $1 and %s order by generation desc limit 1",
           base, state ? "state = $2" : "generation = $2::int");
  const char *params[2] = {projection, state ? state : num};
  PGresult *res = NULL;
  int rc = esk_pg_exec(&res, pg, "generation lookup", sql, 2, params, err);
  if (rc) return rc;
  if (PQntuples(res) == 0) {
    PQclear(res);
    if (state)
      return esk_error_set(err, ESK_ENOTFOUND, "projection %s has no %s generation in schema %s",
                           projection, state, base);
    return esk_error_set(err, ESK_ENOTFOUND, "projection %s has no generation %d in schema %s",
                         projection, gen, base);
  }
  row(out, res, 0);
  PQclear(res);
  return ESK_OK;
}

static int insert(PGconn *pg, const char *base, const char *projection,
                  const esk_generation_t *g, esk_error_t *err) {
  char sql[512], num[16], from[32];
  snprintf(num, sizeof(num), "%d", g->gen);
  snprintf(from, sizeof(from), "%" PRId64, g->from_ms);
  snprintf(sql, sizeof(sql),
           "insert into \"%s\"." REGISTRY
           " (projection, generation, schema_name, group_id, state, from_ms)"
           " values ($1, $2::int, $3, $4, $5, $6::bigint) on conflict do nothing",
           base);
  const char *params[6] = {projection, num, g->schema, g->group, g->state,
                           g->from_ms >= 0 ? from : NULL};
  return esk_pg_exec(NULL, pg, "generation insert", sql, 6, params, err);
}

int esk_generation_get(esk_generation_t *out, PGconn *pg, const char *base,
                       const char *projection, int gen, esk_error_t *err) {
  int rc = registry_init(pg, base, err);
  return rc ? rc : find(out, pg, base, projection, NULL, gen, err);
}

int esk_generation_live(esk_generation_t *out, PGconn *pg, const char *base,
                        const char *projection, const char *base_group, esk_error_t *err) {
  int rc = registry_init(pg, base, err);
  if (rc) return rc;
  rc = find(out, pg, base, projection, "live", 0, err);
  if (rc != ESK_ENOTFOUND) return rc;
  esk_generation_t g;
  if ((rc = fill(&g, base, projection, 1, base_group, "live", err))) return rc;
  /* Two instances starting at once both insert; "on conflict do nothing" and
   * the lookup after it make them agree. */
  if ((rc = insert(pg, base, projection, &g, err))) return rc;
  return find(out, pg, base, projection, "live", 0, err);
}

/* "from offset 0" or "from 2026-11-23T10:00:00.000Z" */
static void describe_start(char *out, size_t size, int64_t from_ms) {
  char t[32];
  if (from_ms >= 0) esk_time_format_rfc3339(t, sizeof(t), from_ms);
  snprintf(out, size, "from %s", from_ms < 0 ? "offset 0" : t);
}

int esk_generation_rebuilding(esk_generation_t *out, PGconn *pg, const char *base,
                              const char *projection, const char *base_group, int64_t from_ms,
                              esk_error_t *err) {
  int rc = registry_init(pg, base, err);
  if (rc) return rc;
  rc = find(out, pg, base, projection, "rebuilding", 0, err);
  if (rc == ESK_OK && out->from_ms != (from_ms < 0 ? -1 : from_ms)) {
    /* resuming would keep the stored positions, and so the other start */
    char was[64], asked[64];
    describe_start(was, sizeof(was), out->from_ms);
    describe_start(asked, sizeof(asked), from_ms);
    return esk_error_set(err, ESK_ECONFLICT,
                         "generation %d of projection %s is being rebuilt %s, not %s: resume it "
                         "as it began, or drop it first (eskctl projection drop-generation %s %d)",
                         out->gen, projection, was, asked, projection, out->gen);
  }
  if (rc != ESK_ENOTFOUND) return rc;
  esk_generation_t live, g;
  if ((rc = find(&live, pg, base, projection, "live", 0, err))) return rc;
  char sql[256];
  PGresult *res = NULL;
  snprintf(sql, sizeof(sql),
           "select coalesce(max(generation), 0) + 1 from \"%s\"." REGISTRY " where projection = $1",
           base);
  if ((rc = esk_pg_exec(&res, pg, "generation next", sql, 1, &projection, err))) return rc;
  int next = atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  if ((rc = fill(&g, base, projection, next, base_group, "rebuilding", err))) return rc;
  g.from_ms = from_ms < 0 ? -1 : from_ms;
  if ((rc = insert(pg, base, projection, &g, err))) return rc;
  return find(out, pg, base, projection, "rebuilding", 0, err);
}

/* Drops the views in @p base that name tables of schema @p old which @p keep
 * (NULL: none) has no table of the same name for. */
static int drop_stale_views(PGconn *pg, const char *base, const char *old, const char *keep,
                            esk_error_t *err) {
  const char *params[2] = {old, keep ? keep : ""};
  PGresult *res = NULL;
  int rc = esk_pg_exec(&res, pg, "generation tables",
                       "select table_name from information_schema.tables t"
                       " where table_schema = $1 and table_type in ('BASE TABLE', 'VIEW')"
                       "   and table_name not like 'esk\\_%'"
                       "   and not exists (select 1 from information_schema.tables k"
                       "                    where k.table_schema = $2"
                       "                      and k.table_name = t.table_name)",
                       2, params, err);
  if (rc) return rc;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    char sql[256];
    snprintf(sql, sizeof(sql), "drop view if exists \"%s\".\"%s\"", base, PQgetvalue(res, i, 0));
    rc = esk_pg_exec(NULL, pg, "drop view", sql, 0, NULL, err);
  }
  PQclear(res);
  return rc;
}

void esk_generation_store_key(char *out, size_t size, const char *projection, int gen) {
  if (gen <= 1) snprintf(out, size, "%s", projection);
  else snprintf(out, size, "%s.g%d", projection, gen);
}

int esk_generation_retired(PGconn *pg, const char *base, const char *projection, int live,
                           esk_generation_t *out, size_t max, size_t *n, esk_error_t *err) {
  char sql[768], num[16];
  *n = 0;
  snprintf(num, sizeof(num), "%d", live);
  snprintf(sql, sizeof(sql),
           "select generation, schema_name, group_id, state, from_ms from \"%s\"." REGISTRY
           " where projection = $1 and state = 'retired' and exists (select 1 from \"%s\"."
           REGISTRY " l where l.projection = $1 and l.generation = $2::int and"
           " l.state = 'live') order by generation",
           base, base);
  const char *params[2] = {projection, num};
  PGresult *res = NULL;
  int rc = esk_pg_exec(&res, pg, "retired generations", sql, 2, params, err);
  if (rc) return rc;
  for (int i = 0; i < PQntuples(res) && *n < max; i++) row(&out[(*n)++], res, i);
  PQclear(res);
  return ESK_OK;
}

/* In the open transaction: locks the live generation's positions (its batches
 * wait until the switch commits) and checks that the new generation has
 * reached every one of them, so the views never go back in the stream. */
static int not_behind(PGconn *pg, const char *base, const char *projection, int old_gen,
                      int new_gen, esk_error_t *err) {
  char sql[768], old_key[256], new_key[256];
  esk_generation_store_key(old_key, sizeof(old_key), projection, old_gen);
  esk_generation_store_key(new_key, sizeof(new_key), projection, new_gen);
  const char *params[2] = {old_key, new_key};
  PGresult *res = NULL;
  snprintf(sql, sizeof(sql),
           "select 1 from \"%s\".esk_projection_positions where projection = $1 for update",
           base);
  int rc = esk_pg_exec(&res, pg, "lock positions", sql, 1, params, err);
  PQclear(res);
  if (rc) return rc;
  snprintf(sql, sizeof(sql),
           "select o.topic, o.partition, o.next_offset, coalesce(n.next_offset, -1)"
           "  from \"%s\".esk_projection_positions o"
           "  left join \"%s\".esk_projection_positions n"
           "    on n.projection = $2 and n.topic = o.topic and n.partition = o.partition"
           " where o.projection = $1 and coalesce(n.next_offset, -1) < o.next_offset"
           " limit 1",
           base, base);
  if ((rc = esk_pg_exec(&res, pg, "compare positions", sql, 2, params, err))) return rc;
  if (PQntuples(res) > 0)
    rc = esk_error_set(err, ESK_ERETRY,
                       "generation %d is behind generation %d on %s [%s]: at %s, the live one "
                       "at %s",
                       new_gen, old_gen, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
                       PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 2));
  PQclear(res);
  return rc;
}

/* ESK_ERETRY while generation @p gen still has deferred indexes to build
 * (bulk.h): its projector builds them once caught up. */
static int indexes_built(PGconn *pg, const char *base, const char *projection, int gen,
                         esk_error_t *err) {
  char sql[256], key[256], rel[160];
  esk_generation_store_key(key, sizeof(key), projection, gen);
  snprintf(rel, sizeof(rel), "\"%s\".esk_projection_deferred", base);
  const char *rp[1] = {rel}, *kp[1] = {key};
  PGresult *res = NULL;
  int rc = esk_pg_exec(&res, pg, "deferred indexes table", "select to_regclass($1) is not null",
                       1, rp, err);
  if (rc) return rc;
  int exists = !strcmp(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  if (!exists) return ESK_OK;
  snprintf(sql, sizeof(sql), "select count(*) from %s where projection = $1", rel);
  if ((rc = esk_pg_exec(&res, pg, "deferred indexes", sql, 1, kp, err))) return rc;
  int n = atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  if (n)
    return esk_error_set(err, ESK_ERETRY,
                         "generation %d of projection %s is still building %d deferred index%s",
                         gen, projection, n, n == 1 ? "" : "es");
  return ESK_OK;
}

int esk_generation_publish(PGconn *pg, const char *base, const char *projection, int gen,
                           esk_error_t *err) {
  esk_generation_t g, live = {0};
  int rc = registry_init(pg, base, err), have_live = 0;
  if (rc) return rc;
  if ((rc = esk_pg_exec(NULL, pg, "begin", "begin", 0, NULL, err))) return rc;
  char sql[512], num[16];
  /* One switch at a time, and none while another publishes the same views. */
  snprintf(sql, sizeof(sql), "lock table \"%s\"." REGISTRY " in share row exclusive mode", base);
  if ((rc = esk_pg_exec(NULL, pg, "lock registry", sql, 0, NULL, err))) goto cleanup;
  if ((rc = find(&g, pg, base, projection, NULL, gen, err))) goto cleanup;
  if (!strcmp(g.state, "retired")) {
    rc = esk_error_set(err, ESK_ECONFLICT,
                       "generation %d of projection %s is retired; rebuild instead", gen,
                       projection);
    goto cleanup;
  }
  rc = find(&live, pg, base, projection, "live", 0, err);
  if (rc && rc != ESK_ENOTFOUND) goto cleanup;
  have_live = rc == ESK_OK && live.gen != gen;
  rc = ESK_OK;
  if (have_live && (rc = indexes_built(pg, base, projection, gen, err))) goto cleanup;
  if (have_live && (rc = not_behind(pg, base, projection, live.gen, gen, err))) goto cleanup;
  if (have_live && (rc = drop_stale_views(pg, base, live.schema, g.schema, err))) goto cleanup;
  /* On a switch every view is made anew; when the live generation starts again
   * only a view that is missing or whose columns differ from its table's (a
   * migration added one) is, so a restart takes no lock on the views. */
  PGresult *res = NULL;
  const char *tp[3] = {g.schema, base, have_live ? "t" : "f"};
  rc = esk_pg_exec(&res, pg, "generation tables",
                   "select t.table_name from information_schema.tables t"
                   " where t.table_schema = $1 and t.table_type in ('BASE TABLE', 'VIEW')"
                   "   and t.table_name not like 'esk\\_%'"
                   "   and ($3::bool or (select count(*) from information_schema.columns c"
                   "                      where c.table_schema = $2"
                   "                        and c.table_name = t.table_name)"
                   "                 <> (select count(*) from information_schema.columns c"
                   "                      where c.table_schema = $1"
                   "                        and c.table_name = t.table_name))"
                   " order by 1",
                   3, tp, err);
  if (rc) goto cleanup;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    const char *t = PQgetvalue(res, i, 0);
    /* drop + create, not "create or replace": a new generation may change columns */
    snprintf(sql, sizeof(sql),
             "drop view if exists \"%s\".\"%s\"; create view \"%s\".\"%s\" as select * from "
             "\"%s\".\"%s\"",
             base, t, base, t, g.schema, t);
    rc = esk_pg_exec(NULL, pg, "create view", sql, 0, NULL, err);
  }
  PQclear(res);
  if (rc) goto cleanup;
  snprintf(num, sizeof(num), "%d", gen);
  snprintf(sql, sizeof(sql),
           "update \"%s\"." REGISTRY " set state = case when generation = $2::int then 'live'"
           " else 'retired' end, switched_at = case when generation = $2::int and state <> 'live'"
           " then now() else switched_at end"
           " where projection = $1 and (generation = $2::int or state = 'live')",
           base);
  const char *params[2] = {projection, num};
  if ((rc = esk_pg_exec(NULL, pg, "switch generation", sql, 2, params, err))) goto cleanup;
  /* delivered at commit: live projectors move now rather than at their next look */
  if (have_live && (rc = esk_pg_exec(NULL, pg, "announce switch",
                                     "select pg_notify('" CHANNEL "', $1)", 1, params, err)))
    goto cleanup;
  rc = esk_pg_exec(NULL, pg, "commit", "commit", 0, NULL, err);
  if (!rc) return ESK_OK;
cleanup:
  esk_pg_exec(NULL, pg, "rollback", "rollback", 0, NULL, &(esk_error_t){0});
  return rc;
}

int esk_generation_listen(PGconn *pg, esk_error_t *err) {
  return esk_pg_exec(NULL, pg, "listen for switches", "listen " CHANNEL, 0, NULL, err);
}

int esk_generation_wait_switch(PGconn *pg, const char *projection, int timeout_ms,
                               esk_error_t *err) {
  struct pollfd fd = {.fd = PQsocket(pg), .events = POLLIN};
  if (fd.fd < 0 || PQstatus(pg) != CONNECTION_OK)
    return esk_error_set(err, ESK_ERETRY, "the registry session is closed");
  int n = poll(&fd, 1, timeout_ms);
  if (n < 0 && errno != EINTR)
    return esk_error_set(err, ESK_ERETRY, "waiting on the registry session: %s", strerror(errno));
  if (n > 0 && !PQconsumeInput(pg))
    return esk_error_set(err, ESK_ERETRY, "registry session: %s", PQerrorMessage(pg));
  int notified = 0;
  for (PGnotify *nt; (nt = PQnotifies(pg)) != NULL; PQfreemem(nt))
    if (!projection || !strcmp(nt->extra, projection)) notified = 1;
  return notified;
}

int esk_generation_drop(PGconn *pg, const char *base, const char *projection, int gen,
                        esk_error_t *err) {
  esk_generation_t g;
  int rc = esk_generation_get(&g, pg, base, projection, gen, err);
  if (rc) return rc;
  if (!strcmp(g.state, "live"))
    return esk_error_set(err, ESK_ECONFLICT,
                         "generation %d is the live generation of projection %s; rebuild and "
                         "switch to another one first",
                         gen, projection);
  if (!esk_pg_ident_valid(g.schema))
    return esk_error_set(err, ESK_EINVAL, "registry names an invalid schema '%s'", g.schema);
  char sql[256], num[16];
  snprintf(num, sizeof(num), "%d", gen);
  const char *params[2] = {projection, num};
  if ((rc = esk_pg_exec(NULL, pg, "begin", "begin", 0, NULL, err))) return rc;
  snprintf(sql, sizeof(sql), "drop schema if exists \"%s\" cascade", g.schema);
  if (!(rc = esk_pg_exec(NULL, pg, "drop generation schema", sql, 0, NULL, err))) {
    snprintf(sql, sizeof(sql),
             "delete from \"%s\"." REGISTRY " where projection = $1 and generation = $2::int",
             base);
    rc = esk_pg_exec(NULL, pg, "drop generation", sql, 2, params, err);
  }
  /* its rows in the bookkeeping tables of the base schema (see esk_projector_props) */
  char key[256];
  esk_generation_store_key(key, sizeof(key), projection, gen);
  const char *kp[1] = {key};
  static const char *const books[] = {"esk_projection_positions", "esk_projection_versions",
                                      "esk_projection_migrations", "esk_projection_deferred"};
  for (size_t i = 0; i < sizeof(books) / sizeof(*books) && !rc; i++) {
    char rel[160];
    snprintf(rel, sizeof(rel), "\"%s\".%s", base, books[i]);
    const char *rp[1] = {rel};
    PGresult *res = NULL;
    if ((rc = esk_pg_exec(&res, pg, "bookkeeping table", "select to_regclass($1) is not null", 1,
                          rp, err)))
      break;
    int exists = !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    if (!exists) continue;
    snprintf(sql, sizeof(sql), "delete from %s where projection = $1", rel);
    rc = esk_pg_exec(NULL, pg, "drop generation bookkeeping", sql, 1, kp, err);
  }
  if (!rc) rc = esk_pg_exec(NULL, pg, "commit", "commit", 0, NULL, err);
  if (rc) esk_pg_exec(NULL, pg, "rollback", "rollback", 0, NULL, &(esk_error_t){0});
  return rc;
}
