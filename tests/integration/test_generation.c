/* consumers/runtime/generation: the switch of generations is announced to
 * listening sessions (LISTEN/NOTIFY), so live projectors move at once; a
 * refresh of the live generation announces nothing; a switch waits for the
 * indexes a fill deferred (bulk.h); only the live generation is told the
 * retired ones (its projector scrubs them too). Against the real
 * PostgreSQL. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/pg.h"
#include "esk_test.h"
#include "bulk.h"
#include "generation.h"
#include "store.h"

static char base[64];

static void setup(void) {
  esk_test_require_pg();
  esk_test_unique_name(base, sizeof(base), "esk_test_gen");
}

static void teardown(void) { esk_test_drop_schema(base); }

/* A session on the base schema with the runtime's bookkeeping tables (the
 * switch locks and compares positions there). */
static PGconn *open_base(void) {
  PGconn *pg = esk_test_pg_connect();
  char sql[160];
  esk_error_t err = {0};
  snprintf(sql, sizeof(sql), "create schema if not exists \"%s\"", base);
  cr_assert_eq(esk_pg_exec(NULL, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
  snprintf(sql, sizeof(sql), "set search_path to \"%s\"", base);
  cr_assert_eq(esk_pg_exec(NULL, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_store_init(pg, &err), ESK_OK, "%s", err.msg);
  return pg;
}

Test(generation, a_switch_wakes_listeners_and_a_refresh_does_not, .init = setup,
     .fini = teardown, .timeout = 60) {
  esk_error_t err = {0};
  PGconn *pg = open_base(), *listener = esk_test_pg_connect();
  esk_generation_t g1, g2, live;
  cr_assert_eq(esk_generation_live(&g1, pg, base, "listened", "grp", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(g1.gen, 1);
  cr_assert_eq(esk_generation_listen(listener, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_wait_switch(listener, "listened", 200, &err), 0,
               "woken with no switch");
  /* another projection's switch (the payload names it) does not count */
  cr_assert_eq(esk_pg_exec(NULL, pg, "notify", "select pg_notify('esk_generation_switch', 'other')",
                           0, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_wait_switch(listener, "listened", 500, &err), 0,
               "woken by another projection's switch");

  /* publishing the live generation again only refreshes its views */
  cr_assert_eq(esk_generation_publish(pg, base, "listened", 1, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_wait_switch(listener, "listened", 300, &err), 0,
               "a refresh was announced");

  cr_assert_eq(esk_generation_rebuilding(&g2, pg, base, "listened", "grp", -1, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(g2.gen, 2);
  cr_assert_eq(esk_generation_wait_switch(listener, "listened", 200, &err), 0,
               "a rebuild that has not switched was announced");
  cr_assert_eq(esk_generation_publish(pg, base, "listened", 2, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_wait_switch(listener, "listened", 10000, &err), 1,
               "the switch was not announced");
  cr_assert_eq(esk_generation_live(&live, listener, base, "listened", "grp", &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(live.gen, 2);
  cr_assert_eq(esk_generation_wait_switch(listener, "listened", 200, &err), 0,
               "one switch, two notices");
  PQfinish(listener);
  PQfinish(pg);
}

Test(generation, a_broken_listening_session_is_reported_for_a_reconnect, .init = setup,
     .fini = teardown, .timeout = 60) {
  esk_error_t err = {0};
  PGconn *pg = esk_test_pg_connect(), *listener = esk_test_pg_connect();
  cr_assert_eq(esk_generation_listen(listener, &err), ESK_OK, "%s", err.msg);
  char sql[96];
  snprintf(sql, sizeof(sql), "select pg_terminate_backend(%d)", PQbackendPID(listener));
  cr_assert_eq(esk_pg_exec(NULL, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
  int rc = 0;
  for (int i = 0; i < 50 && rc == 0; i++)
    rc = esk_generation_wait_switch(listener, NULL, 100, &err);
  cr_assert_eq(rc, ESK_ERETRY, "got %d", rc);
  cr_assert(err.msg[0], "no reason given");
  PQfinish(listener);
  PQfinish(pg);
}

/* An interrupted rebuild resumes from its stored positions: resuming it with
 * another start (a full rebuild after a --from-time one, or another time)
 * would silently keep the first, so it is refused naming both. */
Test(generation, a_rebuild_resumes_only_from_where_it_began, .init = setup, .fini = teardown,
     .timeout = 60) {
  esk_error_t err = {0};
  PGconn *pg = open_base();
  esk_generation_t g, again;
  const int64_t t = 1795348800123; /* 2026-11-22T12:00:00.123Z */
  cr_assert_eq(esk_generation_live(&g, pg, base, "proj", "grp", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(g.from_ms, -1);
  cr_assert_eq(esk_generation_rebuilding(&g, pg, base, "proj", "grp", t, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(g.gen, 2);
  cr_assert_eq(g.from_ms, t);
  cr_assert_eq(esk_generation_rebuilding(&again, pg, base, "proj", "grp", -1, &err),
               ESK_ECONFLICT);
  cr_assert_not_null(strstr(err.msg, "from 2026-11-22T12:00:00.123Z, not from offset 0"), "%s",
                     err.msg);
  cr_assert_not_null(strstr(err.msg, "drop-generation proj 2"), "%s", err.msg);
  cr_assert_eq(esk_generation_rebuilding(&again, pg, base, "proj", "grp", t + 1, &err),
               ESK_ECONFLICT);
  err = (esk_error_t){0};
  cr_assert_eq(esk_generation_rebuilding(&again, pg, base, "proj", "grp", t, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(again.gen, 2, "resumed generation %d", again.gen);

  /* dropped, a full rebuild starts a new generation from offset 0 */
  cr_assert_eq(esk_generation_drop(pg, base, "proj", 2, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_rebuilding(&g, pg, base, "proj", "grp", -1, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(g.from_ms, -1);
  cr_assert_eq(esk_generation_rebuilding(&again, pg, base, "proj", "grp", -1, &err), ESK_OK,
               "%s", err.msg);
  cr_assert_eq(again.gen, g.gen);
  PQfinish(pg);
}

/* A registry written before from_ms existed gains the column on first use,
 * its generations read as started from offset 0. */
Test(generation, an_older_registry_gains_the_start_column, .init = setup, .fini = teardown,
     .timeout = 60) {
  esk_error_t err = {0};
  PGconn *pg = open_base();
  char sql[1024];
  snprintf(sql, sizeof(sql),
           "create table \"%s\".esk_projection_generations ("
           "  projection text not null, generation int not null check (generation > 0),"
           "  schema_name text not null, group_id text not null,"
           "  state text not null check (state in ('live', 'rebuilding', 'retired')),"
           "  created_at timestamptz not null default now(), switched_at timestamptz,"
           "  primary key (projection, generation));"
           "insert into \"%s\".esk_projection_generations values"
           " ('proj', 1, '%s_proj_g1', 'grp', 'retired', now(), now()),"
           " ('proj', 2, '%s_proj_g2', 'grp.g2', 'live', now(), now()),"
           " ('proj', 3, '%s_proj_g3', 'grp.g3', 'rebuilding', now(), null)",
           base, base, base, base, base);
  cr_assert_eq(esk_pg_exec(NULL, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
  esk_generation_t g;
  cr_assert_eq(esk_generation_live(&g, pg, base, "proj", "grp", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(g.gen, 2);
  cr_assert_eq(esk_generation_rebuilding(&g, pg, base, "proj", "grp", -1, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(g.gen, 3);
  cr_assert_eq(g.from_ms, -1);
  PQfinish(pg);
}

Test(generation, an_explicit_group_must_be_the_one_the_generation_was_recorded_with) {
  esk_generation_t g = {.gen = 1, .schema = "b_p_g1", .group = "grp", .state = "live"};
  esk_error_t err = {0};
  cr_assert_eq(esk_generation_check_group(&g, "b", "p", NULL, &err), ESK_OK, "unset passes");
  cr_assert_eq(esk_generation_check_group(&g, "b", "p", "", &err), ESK_OK, "empty passes");
  cr_assert_eq(esk_generation_check_group(&g, "b", "p", "grp", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_check_group(&g, "b", "p", "other", &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "group.id 'other'") && strstr(err.msg, "recorded with group 'grp'") &&
                strstr(err.msg, "eskctl projection rebuild p --schema b"),
            "%s", err.msg);
  /* generation N > 1 reads as <group.id>.g<N> */
  g = (esk_generation_t){.gen = 3, .schema = "b_p_g3", .group = "grp.g3", .state = "live"};
  cr_assert_eq(esk_generation_check_group(&g, "b", "p", "grp", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_check_group(&g, "b", "p", "grp.g3", &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "(group 'grp.g3.g3' for generation 3)"), "%s", err.msg);
}

/* The number of indexes on the tables of @p schema. */
static int index_count(PGconn *pg, const char *schema) {
  PGresult *r = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_pg_exec(&r, pg, "indexes", "select count(*) from pg_indexes where schemaname = $1",
                           1, &schema, &err),
               ESK_OK, "%s", err.msg);
  int n = atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  return n;
}

Test(generation, a_switch_waits_for_the_indexes_a_fill_deferred, .init = setup, .fini = teardown,
     .timeout = 60) {
  esk_error_t err = {0};
  PGconn *pg = open_base();
  esk_generation_t g1, g2;
  cr_assert_eq(esk_generation_live(&g1, pg, base, "proj", "grp", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_rebuilding(&g2, pg, base, "proj", "grp", -1, &err), ESK_OK, "%s",
               err.msg);
  char sql[512];
  snprintf(sql, sizeof(sql),
           "create schema \"%s\"; create table \"%s\".t (id int primary key, v int);"
           " create index t_v on \"%s\".t (v)",
           g2.schema, g2.schema, g2.schema);
  cr_assert_eq(esk_pg_exec(NULL, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
  static const char *const names[] = {"t_pkey", "t_v", "not_there", NULL};
  cr_assert_eq(esk_bulk_defer(pg, g2.schema, "proj.g2", names, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(index_count(pg, g2.schema), 0, "the deferred indexes were not dropped");
  int n = -1;
  cr_assert_eq(esk_bulk_pending(pg, "proj.g2", &n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(n, 2);
  cr_assert_eq(esk_generation_publish(pg, base, "proj", 2, &err), ESK_ERETRY,
               "a generation without its indexes was switched to");
  cr_assert(strstr(err.msg, "deferred"), "%s", err.msg);

  cr_assert_eq(esk_bulk_finish(pg, "proj.g2", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(index_count(pg, g2.schema), 2, "the deferred indexes were not built");
  cr_assert_eq(esk_bulk_pending(pg, "proj.g2", &n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(n, 0);
  snprintf(sql, sizeof(sql), "insert into \"%s\".t values (1, 1), (1, 2)", g2.schema);
  cr_assert_neq(esk_pg_exec(NULL, pg, sql, sql, 0, NULL, &err), ESK_OK,
                "the primary key built again does not hold");
  cr_assert_eq(esk_generation_publish(pg, base, "proj", 2, &err), ESK_OK, "%s", err.msg);
  PQfinish(pg);
}

Test(generation, only_the_live_generation_is_told_the_retired_ones, .init = setup,
     .fini = teardown, .timeout = 60) {
  esk_error_t err = {0};
  PGconn *pg = open_base();
  esk_generation_t g1, g2, ret[4];
  size_t n = 9;
  cr_assert_eq(esk_generation_live(&g1, pg, base, "proj", "grp", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_retired(pg, base, "proj", 1, ret, 4, &n, &err), ESK_OK, "%s",
               err.msg);
  cr_expect_eq(n, 0, "none retired yet");
  cr_assert_eq(esk_generation_rebuilding(&g2, pg, base, "proj", "grp", -1, &err), ESK_OK, "%s",
               err.msg);
  /* the registry after a switch, written here: a switch's NOTIFY would wake
   * the listener of the test beside this one */
  char sql[512];
  snprintf(sql, sizeof(sql),
           "update \"%s\".esk_projection_generations set state = case generation when 1 then"
           " 'retired' else 'live' end where projection = 'proj'", base);
  cr_assert_eq(esk_pg_exec(NULL, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_generation_retired(pg, base, "proj", 2, ret, 4, &n, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(n, 1, "the live generation is told one retired generation, not %zu", n);
  cr_expect_eq(ret[0].gen, 1);
  cr_expect_str_eq(ret[0].schema, g1.schema);
  cr_expect_str_eq(ret[0].state, "retired");
  /* the retired generation's own projector, not yet moved, scrubs no other */
  cr_assert_eq(esk_generation_retired(pg, base, "proj", 1, ret, 4, &n, &err), ESK_OK, "%s",
               err.msg);
  cr_expect_eq(n, 0);
  cr_assert_eq(esk_generation_retired(pg, base, "other", 2, ret, 4, &n, &err), ESK_OK, "%s",
               err.msg);
  cr_expect_eq(n, 0, "another projection's");
  PQfinish(pg);
}
