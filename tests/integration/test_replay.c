/* New projections on a topic that already holds events (issue 6): a
 * declarative file and a C plugin run by the projector runtime against the
 * real broker and PostgreSQL. A new projection catches up from offset 0 and
 * then follows live events while an existing projection's positions do not
 * move; a file whose SQL is bad fails at start naming the file and the line.
 * Small scale (20k events); the 1M-event run is a bench, not done here. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bank_contract.h"
#include "bank_decoder.h"
#include "declarative.h"
#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_bank.h"
#include "plugin.h"
#include "projections.h"
#include "projector.h"

#define N_PARTS 3

static char topic[96], schema[64];

static void setup(void) {
  esk_test_topic_and_schema(topic, sizeof(topic), "esk.test.replay.events", schema, sizeof(schema),
                            "esk_test_replay", N_PARTS);
}

static void teardown(void) {
  char dlq[160];
  esk_test_drop_schema(schema);
  esk_test_bank_delete_topics(topic);
  snprintf(dlq, sizeof(dlq), "%s.dlq.accounts_by_owner", topic);
  esk_test_delete_topic(dlq);
  snprintf(dlq, sizeof(dlq), "%s.dlq.large_deposits", topic);
  esk_test_delete_topic(dlq);
}

static void wait_for(esk_test_projector_t *t, const char *name, int64_t applied) {
  esk_projector_stats_t s = {0};
  esk_error_t err = {0};
  int64_t last = -1;
  /* fails after 60 s without progress, however long the whole catch-up takes */
  for (int idle = 0; idle < 600; idle++) {
    cr_assert_eq(esk_test_projector_stats(t, &s, &err), ESK_OK, "%s stopped: %s", name, err.msg);
    if (s.applied >= applied) return;
    if (s.applied + s.skipped != last) {
      last = s.applied + s.skipped;
      idle = 0;
    }
    esk_time_sleep_ms(100);
  }
  cr_assert_fail("%s stuck: applied %" PRId64 "/%" PRId64, name, s.applied, applied);
}

/* Every message handled and committed, the counters settled: what the checks
 * that nothing more was applied, skipped or moved wait for. */
static void quiet(esk_test_projector_t *t, const char *name) {
  PGconn *pg = esk_test_pg_connect_schema(schema);
  esk_test_projector_quiet(pg, name, topic, esk_test_projector_counters, t, 90);
  PQfinish(pg);
}

static void finish(esk_test_projector_t *t, const char *name, esk_projector_stats_t *s) {
  esk_error_t err = {0};
  int rc = esk_test_projector_stop(t, s, &err);
  cr_assert_eq(rc, ESK_OK, "%s ended with %s: %s", name, esk_error_name(rc), err.msg);
}

static const char *const kv[] = {"batch.max.ms", "100", "batch.max.events", "2000", NULL};

static esk_test_projector_t *start_bank(const char *name) {
  esk_test_projector_t *t = NULL;
  esk_error_t err = {0};
  char group[128];
  esk_test_unique_name(group, sizeof(group), "esk.test.replay.group");
  cr_assert_eq(esk_test_projector_start(&t, name, topic, schema, group, 0, kv, &err), ESK_OK,
               "%s", err.msg);
  return t;
}

static esk_test_projector_t *start_with(const esk_projection_t *p) {
  esk_test_projector_t *t = NULL;
  esk_error_t err = {0};
  char group[128];
  esk_test_unique_name(group, sizeof(group), "esk.test.replay.group");
  cr_assert_eq(esk_test_projector_start_with(&t, p, topic, schema, group, kv, &err), ESK_OK,
               "%s", err.msg);
  return t;
}

/* "partition:next_offset,..." of @p projection's stored positions. */
static void positions(PGconn *pg, const char *projection, char *out, size_t size) {
  PGresult *r = NULL;
  esk_error_t err = {0};
  const char *params[] = {projection};
  cr_assert_eq(esk_pg_exec(&r, pg, "positions",
                           "select coalesce(string_agg(partition || ':' || next_offset, ',' "
                           "order by partition), '') from esk_projection_positions "
                           "where projection = $1",
                           1, params, &err),
               ESK_OK, "%s", err.msg);
  snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
}

static int64_t query_i64(PGconn *pg, const char *sql) {
  PGresult *r = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_pg_exec(&r, pg, "query", sql, 0, NULL, &err), ESK_OK, "%s: %s", sql, err.msg);
  int64_t v = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return v;
}

typedef struct loaded_decl_s {
  esk_schema_set_t *set;
  esk_declarative_t *d;
} loaded_decl_t;

/* A session in the test's schema, as the projector's (the check runs there). */
static PGconn *check_conn(void) {
  PGconn *pg = esk_test_pg_connect();
  char sql[160];
  snprintf(sql, sizeof(sql), "create schema if not exists \"%s\"", schema);
  PGresult *r = PQexec(pg, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(pg));
  PQclear(r);
  PQfinish(pg);
  return esk_test_pg_connect_schema(schema);
}

static void decl_load(loaded_decl_t *l, const char *path) {
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&l->set, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_bank_schemas_load(l->set, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_declarative_load(&l->d, path, l->set, &err), ESK_OK, "%s", err.msg);
}

static void decl_free(loaded_decl_t *l) {
  esk_declarative_destroy(l->d);
  esk_schema_set_destroy(l->set);
}

#define EXAMPLE ESK_SOURCE_DIR "/deploy/projections/accounts_by_owner.conf"

Test(replay, a_new_declarative_projection_catches_up_then_follows_while_others_stay,
     .init = setup, .fini = teardown, .timeout = 900) {
  /* 1M events on the topic (the scale); ESK_TEST_NEW_PROJECTION_EVENTS
   * makes it smaller for a quick local run */
  const char *env = getenv("ESK_TEST_NEW_PROJECTION_EVENTS");
  const size_t n_old = env && atol(env) >= 20000 ? (size_t)atol(env) : 1000000, n = n_old + 2000;
  const size_t dup_from = n_old - 5000; /* 1000 duplicates of events already sent */
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  esk_projector_stats_t s;
  char before[256], after[256];
  cr_assert_eq(esk_test_bank_new(&bank, 23, (int)(n_old / 50), n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, n_old, &err), ESK_OK, "%s", err.msg);
  /* duplicates of a range already sent: the version guard must skip them */
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, dup_from, dup_from + 1000, &err), ESK_OK,
               "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);

  /* An existing projection, caught up, keeps running throughout. */
  esk_test_projector_t *old = start_bank("account_balances");
  wait_for(old, "account_balances", (int64_t)n_old);
  quiet(old, "account_balances");
  PGconn *pg = esk_test_pg_connect_schema(schema);
  esk_projector_stats_t old_s;
  cr_assert_eq(esk_test_projector_stats(old, &old_s, &err), ESK_OK, "%s", err.msg);
  positions(pg, "account_balances", before, sizeof(before));
  cr_assert(before[0], "account_balances stored no position");

  /* The new projection, from its file, on a topic holding n_old + 1000 messages. */
  loaded_decl_t l = {0};
  decl_load(&l, EXAMPLE);
  PGconn *check = check_conn();
  cr_assert_eq(esk_declarative_check_sql(l.d, check, NULL, &err), ESK_OK, "%s", err.msg);
  PQfinish(check);
  esk_projection_t proj = esk_declarative_projection(l.d);
  double t0 = (esk_time_real_ms() / 1e3);
  esk_test_projector_t *neu = start_with(&proj);
  wait_for(neu, "accounts_by_owner", (int64_t)n_old);
  double catch_up = (esk_time_real_ms() / 1e3) - t0;
  cr_log_info("accounts_by_owner caught up on %zu events (+1000 duplicates) in %.1f s: %.0f "
              "events/s (shared machine: noisy)",
              n_old, catch_up, (double)n_old / catch_up);

  /* The existing projection did not move meanwhile: same positions, nothing re-applied. */
  positions(pg, "account_balances", after, sizeof(after));
  cr_expect_str_eq(after, before, "account_balances moved while the new projection caught up");
  cr_assert_eq(esk_test_projector_stats(old, &s, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(s.applied, old_s.applied);
  cr_expect_eq(s.skipped, old_s.skipped);

  /* Live events reach both. */
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, n_old, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
  wait_for(neu, "accounts_by_owner", (int64_t)n);
  wait_for(old, "account_balances", (int64_t)n);
  quiet(neu, "accounts_by_owner");
  quiet(old, "account_balances");
  finish(neu, "accounts_by_owner", &s);
  cr_expect_eq(s.applied, (int64_t)n);
  cr_expect_eq(s.skipped, 1000, "skipped %" PRId64 " duplicates", s.skipped);
  cr_expect_eq(s.dead, 0);
  finish(old, "account_balances", &s);
  positions(pg, "account_balances", after, sizeof(after));
  cr_expect_str_neq(after, before, "account_balances did not follow the live events");

  /* account_balances equals the test's own fold, and accounts_by_owner its aggregate. */
  cr_expect_eq(esk_test_bank_check(bank, pg, "account_balances", n, &err), ESK_OK, "%s", err.msg);
  const char *agg = "select owner_id, currency, count(*) as accounts,"
                    " count(*) filter (where status = 'open') as open_accounts,"
                    " sum(balance)::bigint as balance from account_balances group by 1, 2";
  char sql[1024];
  snprintf(sql, sizeof(sql),
           "select count(*) from ((select owner_id, currency, accounts, open_accounts, balance "
           "from accounts_by_owner except %s) union all (%s except select owner_id, currency, "
           "accounts, open_accounts, balance from accounts_by_owner)) x",
           agg, agg);
  cr_expect_eq(query_i64(pg, sql), 0, "accounts_by_owner differs from the aggregate");
  int64_t rows = query_i64(pg, "select count(*) from accounts_by_owner");
  cr_expect(rows > 10, "only %" PRId64 " rows", rows);
  cr_expect_eq(query_i64(pg, "select sum(accounts) from accounts_by_owner"),
               query_i64(pg, "select count(*) from account_balances"));
  PQfinish(pg);
  decl_free(&l);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

/* ----------------------------------------------------------- bad SQL --- */

static char *write_file(const char *text) {
  static char path[64];
  esk_test_temp_file(path, sizeof(path), "esk_replay_", text, strlen(text));
  return path;
}

/* esk_declarative_check_sql must refuse @p text with "FILE:LINE:" and @p needle. */
static void sql_refused(const char *text, int line, const char *needle) {
  loaded_decl_t l = {0};
  esk_error_t err = {0};
  char *path = write_file(text);
  decl_load(&l, path);
  PGconn *pg = check_conn();
  int rc = esk_declarative_check_sql(l.d, pg, NULL, &err);
  cr_assert_eq(rc, ESK_EINVAL, "%s: %s", esk_error_name(rc), err.msg);
  char where[96];
  snprintf(where, sizeof(where), "%s:%d: ", path, line);
  cr_expect(strstr(err.msg, where), "message '%s' lacks '%s'", err.msg, where);
  cr_expect(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
  /* nothing was changed: the check's transaction was rolled back */
  PGresult *r = PQexec(pg, "select 1 from information_schema.tables where table_name = 'decl_t'");
  cr_expect_eq(PQntuples(r), 0, "the check left table decl_t behind");
  PQclear(r);
  PQfinish(pg);
  decl_free(&l);
  unlink(path);
}

#define MIG "name = decl_t\n[migration]\ncreate table decl_t (a text primary key, n bigint);\n"

Test(replay, bad_sql_in_a_statement_names_the_file_and_the_line, .init = setup, .fini = teardown) {
  sql_refused(MIG "\n[on MoneyDeposited]\n$1 = meta.aggregate_id\n$2 = amount.minor_units\n"
                  "insert into decl_t (a, n)\n  valuez ($1, $2)\n",
              9, "syntax error at or near \"valuez\"");
  sql_refused(MIG "[on MoneyDeposited]\n$1 = meta.aggregate_id\nupdate decl_t\n set nn = 1\n"
                  " where a = $1\n",
              7, "column \"nn\" of relation \"decl_t\" does not exist");
  sql_refused(MIG "[on MoneyDeposited]\n$1 = meta.aggregate_id\nupdate no_such_table set n = 1 "
                  "where a = $1\n",
              6, "relation \"no_such_table\" does not exist");
}

Test(replay, a_parameter_count_mismatch_names_the_file_and_the_line, .init = setup,
     .fini = teardown) {
  sql_refused(MIG "[on MoneyDeposited]\n$1 = meta.aggregate_id\n$2 = amount.minor_units\n"
                  "update decl_t set n = 1 where a = $1\n",
              7, "uses 1 parameter, 2 declared");
  sql_refused(MIG "[on MoneyDeposited]\n$1 = meta.aggregate_id\n"
                  "update decl_t set n = $2 where a = $1\n",
              6, "uses 2 parameters, 1 declared");
}

Test(replay, a_bad_migration_names_the_file_and_the_line, .init = setup, .fini = teardown) {
  sql_refused("name = decl_t\n[migration]\ncreate table decl_t (a text);\n\n[migration]\n"
              "alter table decl_t\n  add column b nosuchtype;\n[on AccountOpened]\nselect 1\n",
              7, "type \"nosuchtype\" does not exist");
}

/* The amounts of the deposits among the first @p n events, in order (at least 100). */
static size_t deposit_amounts(esk_test_bank_t *bank, size_t n, int64_t *out) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (esk_test_bank_event(bank, i)->kind == ESK_BANK_EV_MONEY_DEPOSITED)
      out[k++] = esk_test_bank_event(bank, i)->amount;
  cr_assert(k > 100, "%zu deposits", k);
  return k;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The @p pct th percentile of @p a (left as it is). */
static int64_t percentile(const int64_t *a, size_t n, int pct) {
  int64_t *sorted = malloc(n * sizeof(*sorted));
  cr_assert_not_null(sorted);
  memcpy(sorted, a, n * sizeof(*sorted));
  qsort(sorted, n, sizeof(*sorted), cmp_i64);
  int64_t v = sorted[n * (size_t)pct / 100];
  free(sorted);
  return v;
}

/* ------------------------------------------------------------- plugin --- */

Test(replay, the_example_plugin_builds_its_table_from_the_topic, .init = setup, .fini = teardown,
     .timeout = 300) {
  const size_t n = 4000;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(&bank, 31, 60, n, &err), ESK_OK, "%s", err.msg);
  /* The threshold: the median deposit, so both sides are populated. */
  int64_t amounts[4000];
  size_t n_dep = deposit_amounts(bank, n, amounts);
  int64_t min = percentile(amounts, n_dep, 50);
  int64_t want_n = 0, want_sum = 0;
  for (size_t i = 0; i < n_dep; i++)
    if (amounts[i] >= min) {
      want_n++;
      want_sum += amounts[i];
    }
  char env[32];
  snprintf(env, sizeof(env), "%" PRId64, min);
  setenv("ESK_LARGE_DEPOSITS_MIN", env, 1);

  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, 500, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);

  esk_plugin_t *pl = NULL;
  esk_projection_t proj = {0};
  cr_assert_eq(esk_plugin_open(&pl, &proj, ESK_BINARY_DIR "/plugins/example_large_deposits.so",
                               "bank", &err),
               ESK_OK, "%s", err.msg);
  esk_test_projector_t *t = start_with(&proj);
  wait_for(t, "large_deposits", (int64_t)n);
  quiet(t, "large_deposits");
  esk_projector_stats_t s;
  finish(t, "large_deposits", &s);
  cr_expect_eq(s.applied, (int64_t)n);
  cr_expect_eq(s.skipped, 500);
  cr_expect_eq(s.dead, 0);
  PGconn *pg = esk_test_pg_connect_schema(schema);
  cr_expect_eq(query_i64(pg, "select count(*) from large_deposits"), want_n);
  cr_expect_eq(query_i64(pg, "select sum(amount) from large_deposits"), want_sum);
  char sql[128];
  snprintf(sql, sizeof(sql), "select count(*) from large_deposits where amount < %" PRId64, min);
  cr_expect_eq(query_i64(pg, sql), 0);
  PQfinish(pg);
  esk_plugin_close(pl);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

/* ------------------------------------------------- eskctl projection status --- */

#define ESKCTL ESK_BINARY_DIR "/bin/eskctl"

/* Runs eskctl with @p args and the stderr redirection @p stderr_to; its
 * output into @p out; returns its exit status. */
static int eskctl_run(char *out, size_t size, const char *args, const char *stderr_to) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s %s %s", ESKCTL, args, stderr_to);
  FILE *p = popen(cmd, "r");
  cr_assert(p, "popen %s", cmd);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* eskctl's stdout and stderr together into @p out. */
static int eskctl(char *out, size_t size, const char *args) {
  return eskctl_run(out, size, args, "2>&1");
}

static json_t *status_json(const char *group, const char *extra) {
  static char out[1 << 16];
  char args[512];
  snprintf(args, sizeof(args),
           "projection status account_balances --json --schema %s --group %s %s", schema, group,
           extra);
  /* stdout alone is the JSON: librdkafka may log to stderr (a coordinator
   * connection closing on a SASL listener) */
  if (eskctl_run(out, sizeof(out), args, "2>/dev/null") != 0) {
    int st = eskctl(out, sizeof(out), args); /* again, with its stderr, to say why */
    cr_assert_fail("eskctl %s: exit %d:\n%s", args, st, out);
  }
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  cr_assert(j && json_is_array(j) && json_array_size(j) == 1, "not one projection: %s", out);
  return j;
}

static int64_t jint(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  cr_assert(json_is_integer(v), "%s is not an integer", key);
  return json_integer_value(v);
}

/* The status once the group shows @p members members and @p lag events of
 * lag (the group's leave and the new high watermarks reach the broker's
 * answers in their own time), or the last one after 30 s: the checks that
 * follow then say what differs. */
static json_t *status_when(const char *group, int64_t members, int64_t lag) {
  for (int64_t end = esk_time_mono_ms() + 30000;; esk_time_sleep_ms(200)) {
    json_t *j = status_json(group, "");
    json_t *p = json_array_get(j, 0);
    json_t *m = json_object_get(p, "members"), *l = json_object_get(p, "lag_events");
    if ((json_is_integer(m) && json_integer_value(m) == members && json_is_integer(l) &&
         json_integer_value(l) == lag) ||
        esk_time_mono_ms() >= end)
      return j;
    json_decref(j);
  }
}

Test(replay, eskctl_projection_status_reports_positions_lag_state_and_dead_letters,
     .init = setup, .fini = teardown, .timeout = 300) {
  const size_t n = 3000, more = 500, in_txn = 100;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(&bank, 5, 50, n + more + in_txn, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, n, &err), ESK_OK, "%s", err.msg);
  char k[32];
  for (int a = 0; a < 2; a++) /* two poison events: wrong magic */
    esk_test_bank_publish_raw(prod, topic, esk_test_bank_account_id(a, k, sizeof(k)),
                              "not an avro message", 19, &err);
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);

  esk_test_projector_t *t = NULL;
  char group[128];
  esk_test_unique_name(group, sizeof(group), "esk.test.replay.group");
  cr_assert_eq(esk_test_projector_start(&t, "account_balances", topic, schema, group, 0, kv, &err),
               ESK_OK, "%s", err.msg);
  esk_projector_stats_t s = {0};
  for (int i = 0; i < 600 && (s.applied < (int64_t)n || s.dead < 2); i++) {
    cr_assert_eq(esk_test_projector_stats(t, &s, &err), ESK_OK, "%s", err.msg);
    esk_time_sleep_ms(100);
  }
  cr_assert_eq(s.applied, (int64_t)n);
  quiet(t, "account_balances");

  /* running and caught up */
  json_t *j = status_json(group, "");
  json_t *p = json_array_get(j, 0);
  cr_expect_str_eq(json_string_value(json_object_get(p, "projection")), "account_balances");
  cr_expect_str_eq(json_string_value(json_object_get(p, "group")), group);
  cr_expect_str_eq(json_string_value(json_object_get(p, "topic")), topic);
  cr_expect_str_eq(json_string_value(json_object_get(p, "state")), "live");
  cr_expect_eq(jint(p, "generation"), 1);
  cr_expect_eq(jint(p, "members"), 1);
  cr_expect_eq(jint(p, "lag_events"), 0);
  cr_expect_eq(jint(p, "dlq_count"), 2);
  json_t *parts = json_object_get(p, "partitions");
  cr_assert_eq(json_array_size(parts), N_PARTS);
  int64_t total = 0;
  for (size_t i = 0; i < N_PARTS; i++) {
    json_t *pt = json_array_get(parts, i);
    cr_expect_eq(jint(pt, "partition"), (int64_t)i);
    cr_expect_eq(jint(pt, "position"), jint(pt, "high_watermark"));
    total += jint(pt, "position");
  }
  cr_expect_eq(total, (int64_t)n + 2, "positions sum to %" PRId64, total);
  json_decref(j);

  /* stopped, with events it has not applied */
  cr_assert_eq(esk_test_projector_stop(t, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, n, n + more, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
  j = status_when(group, 0, (int64_t)more);
  p = json_array_get(j, 0);
  cr_expect_str_eq(json_string_value(json_object_get(p, "state")), "stopped");
  cr_expect_eq(jint(p, "members"), 0);
  cr_expect_eq(jint(p, "lag_events"), (int64_t)more);
  json_t *lag_s = json_object_get(p, "lag_seconds");
  cr_expect(json_is_real(lag_s) && json_real_value(lag_s) >= 0 && json_real_value(lag_s) < 120,
            "lag_seconds %f", json_real_value(lag_s));
  json_decref(j);

  /* a member in the group that applies nothing: catching-up over the lag threshold */
  rd_kafka_conf_t *kc = NULL;
  char errstr[256];
  cr_assert_eq(esk_kafka_conf_new(&kc, RD_KAFKA_CONSUMER, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_conf_set(kc, "group.id", group, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_conf_set(kc, "enable.auto.commit", "false", &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *member = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
  cr_assert(member, "%s", errstr);
  rd_kafka_poll_set_consumer(member);
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
  cr_assert_eq(rd_kafka_subscribe(member, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(sub);
  rd_kafka_topic_partition_list_t *asg = NULL;
  for (int i = 0; i < 300; i++) { /* until it joined and got its partitions */
    rd_kafka_message_t *m = rd_kafka_consumer_poll(member, 100);
    if (m) rd_kafka_message_destroy(m);
    rd_kafka_assignment(member, &asg);
    int got = asg && asg->cnt > 0;
    if (asg) rd_kafka_topic_partition_list_destroy(asg);
    asg = NULL;
    if (got) break;
  }
  j = status_json(group, "--live-lag 100");
  p = json_array_get(j, 0);
  cr_expect_str_eq(json_string_value(json_object_get(p, "state")), "catching-up");
  cr_expect_eq(jint(p, "members"), 1);
  json_decref(j);
  j = status_json(group, "--live-lag 1000");
  p = json_array_get(j, 0);
  cr_expect_str_eq(json_string_value(json_object_get(p, "state")), "live");
  json_decref(j);
  rd_kafka_consumer_close(member);
  rd_kafka_destroy(member);

  /* caught up on a transaction: the high watermark is one past the position
   * (the commit marker), yet nothing is left to apply: lag 0, at once */
  rd_kafka_conf_t *tc = NULL;
  char txid[160];
  snprintf(txid, sizeof(txid), "%s.tx", group);
  cr_assert_eq(esk_kafka_conf_new(&tc, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_conf_set(tc, "transactional.id", txid, &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *tp = rd_kafka_new(RD_KAFKA_PRODUCER, tc, errstr, sizeof(errstr));
  cr_assert(tp, "%s", errstr);
  cr_assert_null(rd_kafka_init_transactions(tp, 30000));
  cr_assert_null(rd_kafka_begin_transaction(tp));
  cr_assert_eq(esk_test_bank_publish(bank, tp, topic, n + more, n + more + in_txn, &err), ESK_OK,
               "%s", err.msg);
  cr_assert_null(rd_kafka_commit_transaction(tp, 30000));
  rd_kafka_destroy(tp);
  cr_assert_eq(esk_test_projector_start(&t, "account_balances", topic, schema, group, 0, kv, &err),
               ESK_OK, "%s", err.msg);
  s = (esk_projector_stats_t){0};
  for (int i = 0; i < 600 && s.applied < (int64_t)(more + in_txn); i++) {
    cr_assert_eq(esk_test_projector_stats(t, &s, &err), ESK_OK, "%s", err.msg);
    esk_time_sleep_ms(100);
  }
  cr_assert_eq(s.applied, (int64_t)(more + in_txn));
  cr_assert_eq(esk_test_projector_stop(t, NULL, &err), ESK_OK, "%s", err.msg);
  double t0 = esk_time_mono_s();
  j = status_json(group, "");
  double took = esk_time_mono_s() - t0;
  p = json_array_get(j, 0);
  cr_expect_eq(jint(p, "lag_events"), 0, "a commit marker counted as lag");
  parts = json_object_get(p, "partitions");
  int64_t past = 0;
  for (size_t i = 0; i < json_array_size(parts); i++) {
    json_t *pt = json_array_get(parts, i);
    past += jint(pt, "high_watermark") - jint(pt, "position");
    cr_expect_eq(jint(pt, "lag_events"), 0);
  }
  cr_expect_gt(past, 0, "no marker behind the positions: the check checked nothing");
  /* logged, not asserted (speed is measured, not tested): it used to wait out
   * a 5 s fetch timeout per partition stopped on a marker */
  cr_log_info("status of a projection caught up on a transaction: %.2f s", took);
  json_decref(j);

  /* the text form, and failures */
  static char out[1 << 16];
  char args[512];
  snprintf(args, sizeof(args), "projection status --schema %s", schema);
  cr_expect_eq(eskctl(out, sizeof(out), args), 0, "%s", out);
  cr_expect(strstr(out, "account_balances") && strstr(out, "stopped") && strstr(out, topic), "%s",
            out);
  snprintf(args, sizeof(args), "projection status no_such_projection --schema %s", schema);
  cr_expect_eq(eskctl(out, sizeof(out), args), 1, "%s", out);
  cr_expect(strstr(out, "no stored position for projection 'no_such_projection'"), "%s", out);
  cr_expect_eq(eskctl(out, sizeof(out), "projection status --schema 'Bad;drop'"), 2, "%s", out);
  cr_expect_eq(eskctl(out, sizeof(out), "projection status --group g"), 2, "%s", out);
  cr_expect_eq(eskctl(out, sizeof(out), "projection frobnicate"), 2, "%s", out);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

/* ------------------------------------------------ declarative + the DLQ --- */

Test(replay, a_declarative_statement_failing_on_data_dead_letters_only_that_event,
     .init = setup, .fini = teardown, .timeout = 300) {
  const size_t n = 3000;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(&bank, 41, 40, n, &err), ESK_OK, "%s", err.msg);
  /* Deposits at or over the 95th percentile violate the table's check constraint. */
  int64_t amounts[3000];
  size_t n_dep = deposit_amounts(bank, n, amounts);
  int64_t limit = percentile(amounts, n_dep, 95);
  /* A dead-lettered event's version is not recorded, so every later event of
   * its account is a version gap and is dead-lettered too (the runtime's guard). */
  int64_t want_dead = 0, want_rows = 0;
  int poisoned[40] = {0};
  for (size_t i = 0; i < n; i++) {
    const esk_test_bank_event_t *e = esk_test_bank_event(bank, i);
    cr_assert(e->account >= 0 && e->account < 40);
    if (!poisoned[e->account] && e->kind == ESK_BANK_EV_MONEY_DEPOSITED && e->amount >= limit)
      poisoned[e->account] = 1;
    if (poisoned[e->account]) want_dead++;
    else if (e->kind == ESK_BANK_EV_MONEY_DEPOSITED) want_rows++;
  }
  cr_assert(want_dead > 0 && want_rows > 0);

  char text[1024];
  snprintf(text, sizeof(text),
           "name = small_deposits\n[migration]\n"
           "create table small_deposits (event_id text primary key,\n"
           "  amount bigint not null check (amount < %" PRId64 "));\n"
           "[on MoneyDeposited]\n$1 = meta.event_id\n$2 = amount.minor_units\n"
           "insert into small_deposits values ($1, $2)\n",
           limit);
  char *path = write_file(text);
  loaded_decl_t l = {0};
  decl_load(&l, path);
  unlink(path);

  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
  esk_projection_t proj = esk_declarative_projection(l.d);
  esk_test_projector_t *t = start_with(&proj);
  esk_projector_stats_t s = {0};
  for (int i = 0; i < 1200 && s.applied + s.dead < (int64_t)n; i++) {
    cr_assert_eq(esk_test_projector_stats(t, &s, &err), ESK_OK, "stopped: %s", err.msg);
    esk_time_sleep_ms(100);
  }
  quiet(t, "small_deposits");
  finish(t, "small_deposits", &s);
  cr_expect_eq(s.dead, want_dead, "dead %" PRId64 ", want %" PRId64, s.dead, want_dead);
  cr_expect_eq(s.applied, (int64_t)n - want_dead);
  PGconn *pg = esk_test_pg_connect_schema(schema);
  cr_expect_eq(query_i64(pg, "select count(*) from small_deposits"), want_rows);
  PQfinish(pg);
  char dlq[160];
  snprintf(dlq, sizeof(dlq), "%s.dlq.small_deposits", topic);
  esk_test_delete_topic(dlq);
  decl_free(&l);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

/* ------------------------------------ esk-projector refuses bad files at start --- */

#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"

/* Runs esk-projector --projection-file on @p text; its exit status, its output in @p out. */
static int projector_on(const char *text, char *out, size_t size, char **path_out) {
  char *path = write_file(text);
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "%s --projection-file %s -X pg.schema=%s -X topic=%s 2>&1",
           PROJECTOR, path, schema, topic);
  FILE *p = popen(cmd, "r");
  cr_assert(p, "popen %s", cmd);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  *path_out = path;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void projector_refuses(const char *text, int line, const char *needle) {
  char out[4096], where[96], *path = NULL;
  int st = projector_on(text, out, sizeof(out), &path);
  snprintf(where, sizeof(where), "%s:%d: ", path, line);
  cr_expect_eq(st, 2, "exit %d:\n%s", st, out);
  cr_expect(strstr(out, where), "output lacks '%s':\n%s", where, out);
  cr_expect(strstr(out, needle), "output lacks '%s':\n%s", needle, out);
  cr_expect(!strstr(out, "msg=started"), "it started:\n%s", out);
  unlink(path);
}

Test(replay, esk_projector_refuses_a_file_with_a_bad_path_at_start, .init = setup,
     .fini = teardown) {
  projector_refuses(MIG "[on MoneyWithdrawn]\n$1 = meta.aggregate_id\n$2 = amount.minor_units\n"
                        "update decl_t set n = n - $2 where a = $1\n",
                    6, "field 'amount' of MoneyWithdrawn v2 is a long, not a record");
}

Test(replay, esk_projector_refuses_a_file_with_bad_sql_at_start, .init = setup, .fini = teardown) {
  projector_refuses(MIG "[on MoneyWithdrawn]\n$1 = meta.aggregate_id\n$2 = amount\n"
                        "update decl_t\n   set n = n - $2\n where aa = $1\n",
                    9, "aa\\\" does not exist (SQLSTATE 42703)");
}

Test(replay, esk_projector_refuses_a_file_with_a_syntax_error_at_start, .init = setup,
     .fini = teardown) {
  projector_refuses(MIG "[on MoneyWithdrawn\n$1 = meta.aggregate_id\nselect $1\n", 4,
                    "expected [migration], [on <EventType>] or [personal <table>]");
}

Test(replay, esk_projector_refuses_a_bad_plugin_at_start, .init = setup, .fini = teardown) {
  char cmd[1024], out[4096];
  const char *cases[][2] = {
      {"--plugin /nonexistent/p.so", "plugin /nonexistent/p.so: cannot load"},
      {"--plugin " ESK_BINARY_DIR "/plugins/esk_test_plugin_wrong_abi.so", "built for plugin ABI 3"},
      {"--plugin " ESK_BINARY_DIR "/plugins/esk_test_plugin_no_symbol.so", "no symbol"},
      {"--plugin " ESK_BINARY_DIR "/plugins/esk_test_plugin_obsolete_v1.so",
       "the obsolete plugin ABI 1 (bank events only): port it to esk/projection_plugin.h"},
      {"--plugin " ESK_BINARY_DIR "/plugins/esk_test_plugin_other_domain.so",
       "projects events of domain 'orders', this projector reads domain 'bank'"},
      {"--projection account_balances -X domain=orders",
       "projection account_balances reads domain bank, not domain=orders"},
      {"--projection event_log -X domain=nosuch", "nosuch.so"},
      {"--projection-file " ESK_SOURCE_DIR "/deploy/projections/order_summaries.conf",
       "no event type 'OrderCreated' in the schemas (domain=bank; a file of another domain"},
      {"--plugin /x.so --projection-file /y.conf", "give one of --projection-file and --plugin"},
      {"-X domain=orders --projection-file " ESK_SOURCE_DIR
       "/tests/fixtures/projections/personal_refused_type.conf",
       "personal_refused_type.conf:10: [personal personal_refused_type]: the scrub fails: "
       "invalid input syntax for type json"},
      {"-X domain=orders --projection-file " ESK_SOURCE_DIR
       "/tests/fixtures/projections/personal_missing_column.conf",
       "personal_missing_column.conf:10: [personal personal_missing_column]: the scrub fails: "
       "column \\\"mail\\\" does not exist"}, /* quoted in the log line */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    snprintf(cmd, sizeof(cmd), "%s %s -X pg.schema=%s -X topic=%s 2>&1", PROJECTOR, cases[i][0],
             schema, topic);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s: exit %d\n%s", cases[i][0], st, out);
    cr_expect(strstr(out, cases[i][1]), "%s: output lacks '%s':\n%s", cases[i][0], cases[i][1], out);
  }
}

/* ------------------------------------------------------------ --from-time --- */

static const char *const since_file =
    "name = events_since\n[migration]\n"
    "create table events_since (event_id text primary key, kind text not null,\n"
    "  account_id text not null, version bigint not null);\n"
    "[on AccountOpened]\n$1 = meta.event_id\n$2 = meta.aggregate_id\n$3 = meta.aggregate_version\n"
    "insert into events_since values ($1, 'opened', $2, $3)\n"
    "[on MoneyDeposited]\n$1 = meta.event_id\n$2 = meta.aggregate_id\n$3 = meta.aggregate_version\n"
    "insert into events_since values ($1, 'deposited', $2, $3)\n"
    "[on MoneyWithdrawn]\n$1 = meta.event_id\n$2 = meta.aggregate_id\n$3 = meta.aggregate_version\n"
    "insert into events_since values ($1, 'withdrawn', $2, $3)\n"
    "[on AccountClosed]\n$1 = meta.event_id\n$2 = meta.aggregate_id\n$3 = meta.aggregate_version\n"
    "insert into events_since values ($1, 'closed', $2, $3)\n";

Test(replay, a_new_projection_started_at_a_time_applies_only_later_events_without_gaps,
     .init = setup, .fini = teardown, .timeout = 300) {
  const size_t n_before = 3000, n = 5000;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(&bank, 53, 60, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, n_before, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
  /* every event so far was stamped (CreateTime, the same wall clock) before
   * flush returned, so at or before now; later ones are sent once the clock
   * has passed t_ms */
  int64_t t_ms = esk_time_real_ms() + 1;
  while (esk_time_real_ms() <= t_ms) esk_time_sleep_ms(1);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, n_before, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);

  char *path = write_file(since_file);
  loaded_decl_t l = {0};
  decl_load(&l, path);
  unlink(path);
  esk_projection_t proj = esk_declarative_projection(l.d);

  /* the configuration esk-projector would have */
  static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_projector_props};
  esk_conf_t *conf = NULL;
  cr_assert_eq(esk_conf_new(&conf, tables, 2, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_load_env(conf, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_set(conf, "topic", topic, "test", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_set(conf, "pg.schema", schema, "test", &err), ESK_OK, "%s", err.msg);
  esk_bank_decoder_t *dec = NULL;
  cr_assert_eq(esk_bank_decoder_new(&dec, NULL, &err), ESK_OK, "%s", err.msg);
  esk_decoder_t d = esk_bank_decoder(dec);
  char group[128];
  esk_test_unique_name(group, sizeof(group), "esk.test.replay.group");
  cr_assert_eq(esk_conf_set(conf, "group.id", group, "test", &err), ESK_OK, "%s", err.msg);
  esk_projector_t *seeder = NULL;
  cr_assert_eq(esk_projector_new(&seeder, conf, &proj, &d, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_projector_start_at(seeder, t_ms, &err), ESK_OK, "%s", err.msg);
  esk_projector_destroy(seeder);

  PGconn *pg = esk_test_pg_connect_schema(schema);
  char seeded[256], again[256];
  positions(pg, "events_since", seeded, sizeof(seeded));
  cr_assert(seeded[0], "no position stored");
  int64_t start_total = query_i64(pg, "select sum(next_offset) from esk_projection_positions "
                                      "where projection = 'events_since'");
  cr_expect_eq(start_total, (int64_t)n_before, "starts after %" PRId64 " events", start_total);
  cr_expect(query_i64(pg, "select count(*) from esk_projection_versions "
                          "where projection = 'events_since'") > 0);

  /* a second start at another time (a restart with the same arguments) changes nothing */
  cr_assert_eq(esk_projector_new(&seeder, conf, &proj, &d, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_projector_start_at(seeder, t_ms - 3600000, &err), ESK_OK, "%s", err.msg);
  esk_projector_destroy(seeder);
  positions(pg, "events_since", again, sizeof(again));
  cr_expect_str_eq(again, seeded);

  esk_test_projector_t *t = start_with(&proj);
  wait_for(t, "events_since", (int64_t)(n - n_before));
  quiet(t, "events_since");
  esk_projector_stats_t s;
  finish(t, "events_since", &s);
  cr_expect_eq(s.applied, (int64_t)(n - n_before));
  cr_expect_eq(s.dead, 0, "%" PRId64 " events dead-lettered (version gaps?)", s.dead);
  cr_expect_eq(query_i64(pg, "select count(*) from events_since"), (int64_t)(n - n_before));
  /* accounts opened before the time still get their later events */
  cr_expect(query_i64(pg, "select count(*) from events_since where version > 1") > 0);

  /* a projection whose rows fold an account's whole history cannot start at a time */
  const esk_bank_projection_def_t *def = esk_bank_projection_find("account_balances");
  esk_projection_t bal = {0};
  cr_assert_eq(def->create(&bal, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_set(conf, "projection", "account_balances", "test", &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(esk_projector_new(&seeder, conf, &bal, &d, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(esk_projector_start_at(seeder, t_ms, &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "folds every event of an account"), "%s", err.msg);
  esk_projector_destroy(seeder);
  esk_bank_projection_destroy(&bal);

  /* the binary refuses a malformed time */
  char cmd[512], out[2048];
  snprintf(cmd, sizeof(cmd), "%s --projection account_balances --from-time 2026-01-15 2>&1",
           PROJECTOR);
  FILE *p = popen(cmd, "r");
  size_t got = fread(out, 1, sizeof(out) - 1, p);
  out[got] = '\0';
  int st = pclose(p);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "exit %d: %s", st, out);
  cr_expect(strstr(out, "--from-time: time '2026-01-15'"), "%s", out);

  char dlq[160];
  snprintf(dlq, sizeof(dlq), "%s.dlq.events_since", topic);
  esk_test_delete_topic(dlq);
  PQfinish(pg);
  esk_bank_decoder_destroy(dec);
  esk_conf_destroy(conf);
  decl_free(&l);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}
