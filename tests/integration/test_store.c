/* consumers/runtime/store: migrations, positions (compare-and-set) and the
 * per-aggregate version guard, against the real PostgreSQL. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/pg.h"
#include "esk/time.h"
#include "esk_test.h"
#include "store.h"

static PGconn *open_store(void) {
  esk_error_t err = {0};
  PGconn *pg = esk_test_pg_connect();
  cr_assert_eq(esk_store_init(pg, &err), ESK_OK, "%s", err.msg);
  return pg;
}

static void exec_ok(PGconn *pg, const char *sql) {
  esk_error_t err = {0};
  cr_assert_eq(esk_pg_exec(NULL, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
}

static long long count(PGconn *pg, const char *sql) {
  PGresult *r = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_pg_exec(&r, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
  long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return n;
}

Test(store, migrations_run_once_each_in_order, .init = esk_test_require_pg) {
  PGconn *pg = open_store();
  esk_error_t err = {0};
  char proj[64], table[80], m1[200], m2[200], sql[200];
  esk_test_unique_name(proj, sizeof(proj), "test_mig");
  snprintf(table, sizeof(table), "%s_t", proj);
  snprintf(m1, sizeof(m1), "create table %s (id int primary key)", table);
  snprintf(m2, sizeof(m2), "alter table %s add column note text not null default 'n'", table);
  const char *migs[] = {m1, m2};
  int created = -1;
  cr_assert_eq(esk_store_migrate(pg, proj, migs, 1, &created, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(created, 1, "the call that applied version 1 is told it created the tables");
  cr_assert_eq(esk_store_migrate(pg, proj, migs, 2, &created, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(created, 0, "a later call that applied only version 2 did not create them");
  /* Running all of them again changes nothing and does not fail. */
  cr_assert_eq(esk_store_migrate(pg, proj, migs, 2, NULL, &err), ESK_OK, "%s", err.msg);
  snprintf(sql, sizeof(sql), "insert into %s (id) values (1) returning 1", table);
  exec_ok(pg, sql);
  snprintf(sql, sizeof(sql),
           "select count(*) from esk_projection_migrations where projection = '%s'", proj);
  cr_assert_eq(count(pg, sql), 2);
  /* A failing migration rolls back whole and says which one it was. */
  const char *bad[] = {m1, m2, "create tabel oops"};
  cr_assert_eq(esk_store_migrate(pg, proj, bad, 3, NULL, &err), ESK_EFATAL);
  cr_assert_not_null(strstr(err.msg, "migration 3 of projection"), "%s", err.msg);
  cr_assert_not_null(strstr(err.msg, "42601"), "%s", err.msg);
  cr_assert_eq(count(pg, sql), 2);
  snprintf(sql, sizeof(sql), "drop table %s", table);
  exec_ok(pg, sql);
  PQfinish(pg);
}

Test(store, position_moves_only_from_the_expected_value, .init = esk_test_require_pg) {
  PGconn *pg = open_store();
  esk_error_t err = {0};
  char proj[64];
  esk_test_unique_name(proj, sizeof(proj), "test_pos");
  int64_t pos = 0;
  cr_assert_eq(esk_store_position_get(pg, proj, "bank.events", 2, &pos, &err), ESK_OK);
  cr_assert_eq(pos, -1);
  cr_assert_eq(esk_store_position_cas(pg, proj, "bank.events", 2, -1, 10, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(esk_store_position_cas(pg, proj, "bank.events", 2, -1, 11, &err), ESK_ECONFLICT);
  cr_assert_eq(esk_store_position_cas(pg, proj, "bank.events", 2, 9, 12, &err), ESK_ECONFLICT);
  cr_assert_not_null(strstr(err.msg, "another instance owns"), "%s", err.msg);
  cr_assert_eq(esk_store_position_cas(pg, proj, "bank.events", 2, 10, 20, &err), ESK_OK);
  cr_assert_eq(esk_store_position_get(pg, proj, "bank.events", 2, &pos, &err), ESK_OK);
  cr_assert_eq(pos, 20);
  cr_assert_eq(esk_store_position_get(pg, proj, "bank.events", 3, &pos, &err), ESK_OK);
  cr_assert_eq(pos, -1, "partitions are independent");
  PQfinish(pg);
}

/* Two instances race for one partition from the same starting position:
 * exactly one commits, the other's transaction fails its compare-and-set.
 * The first to move the position holds its row lock until the other waits for
 * it, so the two really overlap. */
struct racer {
  const char *proj;
  int rc;
  atomic_int pid; /* its PostgreSQL backend, once connected */
  struct racer *other;
  int saw_wait; /* the winner saw the other wait for the row lock */
};

/* 1 once backend @p pid waits for a lock (pg_locks is read anew at every query). */
static int waits_for_lock(PGconn *pg, int pid) {
  char p[16];
  snprintf(p, sizeof(p), "%d", pid);
  const char *params[] = {p};
  PGresult *r =
      PQexecParams(pg, "select count(*) from pg_locks where pid = $1::int and not granted", 1,
                   NULL, params, NULL, NULL, 0);
  int w = PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) > 0;
  PQclear(r);
  return w;
}

static void *race(void *arg) {
  struct racer *r = arg;
  esk_error_t err = {0};
  PGconn *pg = NULL;
  if (esk_pg_connect(&pg, NULL, &err)) {
    r->rc = -100;
    return NULL;
  }
  atomic_store(&r->pid, PQbackendPID(pg));
  PQclear(PQexec(pg, "begin"));
  r->rc = esk_store_position_cas(pg, r->proj, "bank.events", 0, 5, 50, &err);
  /* the winner holds the row lock while the other instance tries */
  for (int64_t end = esk_time_mono_ms() + 30000; r->rc == ESK_OK && !r->saw_wait &&
                                                 esk_time_mono_ms() < end;) {
    int other = atomic_load(&r->other->pid);
    if (!(r->saw_wait = other && waits_for_lock(pg, other))) esk_time_sleep_ms(10);
  }
  PQclear(PQexec(pg, r->rc == ESK_OK ? "commit" : "rollback"));
  PQfinish(pg);
  return NULL;
}

Test(store, two_instances_cannot_both_move_a_position, .init = esk_test_require_pg) {
  PGconn *pg = open_store();
  esk_error_t err = {0};
  char proj[64];
  esk_test_unique_name(proj, sizeof(proj), "test_race");
  cr_assert_eq(esk_store_position_cas(pg, proj, "bank.events", 0, -1, 5, &err), ESK_OK);
  struct racer a = {.proj = proj, .rc = 1}, b = {.proj = proj, .rc = 1};
  a.other = &b;
  b.other = &a;
  pthread_t ta, tb;
  pthread_create(&ta, NULL, race, &a);
  pthread_create(&tb, NULL, race, &b);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  cr_assert(a.saw_wait || b.saw_wait,
            "the second instance never waited for the row lock (rc a=%d b=%d)", a.rc, b.rc);
  cr_assert((a.rc == ESK_OK) != (b.rc == ESK_OK), "rc a=%d b=%d", a.rc, b.rc);
  cr_assert(a.rc == ESK_ECONFLICT || b.rc == ESK_ECONFLICT);
  PQfinish(pg);
}

Test(store, aggregate_versions_round_trip_and_never_go_back, .init = esk_test_require_pg) {
  PGconn *pg = open_store();
  esk_error_t err = {0};
  char proj[64];
  esk_test_unique_name(proj, sizeof(proj), "test_ver");
  const char *ids[] = {" a,{b} ", "quote'\"and\\slash", "NULL", "\xc3\xa9t\xc3\xa9"};
  int64_t put[] = {3, 7, 1, 2}, got[4];
  cr_assert_eq(esk_store_versions_get(pg, proj, ids, 4, got, &err), ESK_OK, "%s", err.msg);
  for (int i = 0; i < 4; i++) cr_assert_eq(got[i], 0);
  cr_assert_eq(esk_store_versions_put(pg, proj, ids, put, 4, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_store_versions_get(pg, proj, ids, 4, got, &err), ESK_OK);
  for (int i = 0; i < 4; i++) cr_assert_eq(got[i], put[i], "id %s", ids[i]);
  int64_t lower[] = {1, 1, 1, 1};
  cr_assert_eq(esk_store_versions_put(pg, proj, ids, lower, 4, &err), ESK_OK);
  cr_assert_eq(esk_store_versions_get(pg, proj, ids, 4, got, &err), ESK_OK);
  for (int i = 0; i < 4; i++) cr_assert_eq(got[i], put[i], "version of %s went back", ids[i]);
  PQfinish(pg);
}
