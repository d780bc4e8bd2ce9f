/* esk-projector (the real binary, run as child processes) under faults, on
 * the real broker and PostgreSQL: kill -9 at random moments, a rebalance
 * storm between two instances, and a PostgreSQL restart mid-run. Each ends
 * with the read models equal to the folds the test computes independently
 * (tests/support/esk_test_bank.c): nothing applied twice, nothing skipped.
 * Each test has its own topic, groups and PostgreSQL schema. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "esk/kafka.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_bank.h"

#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"
#define STACK ESK_SOURCE_DIR "/deploy/local/stack"

static char topic[96], schema[64], logpath[160];

static void setup_parts(int parts) {
  cr_assert_eq(access(PROJECTOR, X_OK), 0, "%s is not built", PROJECTOR);
  esk_test_topic_and_schema(topic, sizeof(topic), "esk.test.e2e.events", schema, sizeof(schema),
                            "esk_test_e2e", parts);
  snprintf(logpath, sizeof(logpath), "/tmp/%s.log", schema);
}

static void setup3(void) { setup_parts(3); }
static void setup6(void) { setup_parts(6); }

static void teardown(void) {
  esk_test_drop_schema(schema);
  esk_test_bank_delete_topics(topic);
}

static unsigned rnd(unsigned n) {
  unsigned r = 0;
  if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) r = (unsigned)rand();
  return n ? r % n : r;
}

/* Starts esk-projector for @p projection; stderr appended to logpath. */
static pid_t spawn(const char *projection, const char *group, const char *instance,
                   const char *batch) {
  char a_topic[160], a_schema[96], a_group[160], a_batch[64], a_inst[160];
  snprintf(a_topic, sizeof(a_topic), "topic=%s", topic);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  snprintf(a_batch, sizeof(a_batch), "batch.max.events=%s", batch);
  snprintf(a_inst, sizeof(a_inst), "kafka.consumer.group.instance.id=%s", instance ? instance : "");
  char *argv[32];
  int k = 0;
  argv[k++] = PROJECTOR;
  argv[k++] = "--projection";
  argv[k++] = (char *)projection;
  char *xs[] = {a_topic, a_schema, a_group, a_batch, "batch.max.ms=50",
                "progress.interval.ms=1000", "kafka.consumer.session.timeout.ms=6000",
                "kafka.consumer.heartbeat.interval.ms=500", "pg.retry.backoff.max.ms=500", NULL};
  for (int i = 0; xs[i]; i++) {
    argv[k++] = "-X";
    argv[k++] = xs[i];
  }
  if (instance) {
    argv[k++] = "-X";
    argv[k++] = a_inst;
  }
  argv[k] = NULL;
  pid_t pid = esk_test_spawn(argv, logpath);
  cr_assert(pid > 0, "fork failed");
  return pid;
}

/* SIGTERM, then the exit status (the process must leave within 30 s). */
static int terminate(pid_t pid) {
  int st = 0;
  kill(pid, SIGTERM);
  for (int i = 0; i < 300; i++) {
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    esk_time_sleep_ms(100);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  cr_assert_fail("esk-projector (pid %d) did not stop within 30 s of SIGTERM", (int)pid);
  return -1;
}

static void kill9(pid_t pid) {
  int st;
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
}

/* Sum of the stored next offsets of @p projection (0 when none yet). A
 * failing query (the schema is not created yet, PostgreSQL restarting) is -1. */
static long long positions(const char *projection) {
  esk_error_t err = {0};
  PGconn *pg = NULL;
  PGresult *r = NULL;
  long long v = -1;
  if (esk_pg_connect(&pg, NULL, &err)) return -1;
  char sql[256];
  snprintf(sql, sizeof(sql), "select coalesce(sum(next_offset), 0) from \"%s\".esk_projection_positions "
                             "where projection = $1", schema);
  const char *params[] = {projection};
  if (!esk_pg_exec(&r, pg, "positions", sql, 1, params, &err))
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  PQfinish(pg);
  return v;
}

/* Waits until @p projection's positions cover @p total messages. */
static void wait_caught_up(const char *projection, long long total, int seconds) {
  long long v = -1;
  for (int i = 0; i < seconds * 10; i++) {
    if ((v = positions(projection)) >= total) break;
    esk_time_sleep_ms(100);
  }
  cr_assert_eq(v, total, "%s positions cover %lld of %lld messages (log: %s)", projection, v,
               total, logpath);
}

/* Publishes the next @p step events (from *sent), then waits @p ms. */
static void publish_step(esk_test_bank_t *bank, rd_kafka_t *prod, size_t *sent, size_t step,
                         size_t n, long ms) {
  esk_error_t err = {0};
  size_t to = *sent + step < n ? *sent + step : n;
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, *sent, to, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  *sent = to;
  esk_time_sleep_ms(ms);
}

static void check(esk_test_bank_t *bank, const char *projection, size_t n) {
  esk_error_t err = {0};
  PGconn *pg = esk_test_pg_connect_schema(schema);
  cr_expect_eq(esk_test_bank_check(bank, pg, projection, n, &err), ESK_OK, "%s (log: %s)",
               err.msg, logpath);
  PQfinish(pg);
}

Test(projector_faults, kill_9_at_random_moments_in_20_runs_ends_equal_to_the_fold,
     .init = setup3, .fini = teardown, .timeout = 170) {
  const int runs = 20, per_run = 3000;
  const size_t n = (size_t)runs * per_run;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  char g_bal[96], g_hist[96], i_bal[112], i_hist[112];
  esk_test_unique_name(g_bal, sizeof(g_bal), "esk.test.e2e.balances");
  esk_test_unique_name(g_hist, sizeof(g_hist), "esk.test.e2e.history");
  /* Static membership: a restarted instance takes over its killed
   * predecessor's partitions at once instead of after the session timeout. */
  snprintf(i_bal, sizeof(i_bal), "%s.i", g_bal);
  snprintf(i_hist, sizeof(i_hist), "%s.i", g_hist);
  cr_assert_eq(esk_test_bank_new(&bank, 5, 150, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  int mid_bal = 0, mid_hist = 0;
  for (int r = 0; r < runs; r++) {
    /* New events before every run, so every kill can hit work in flight. */
    cr_assert_eq(esk_test_bank_publish(bank, prod, topic, (size_t)r * per_run,
                                       (size_t)(r + 1) * per_run, &err), ESK_OK, "%s", err.msg);
    cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    long long before = positions("account_balances");
    pid_t b = spawn("account_balances", g_bal, i_bal, "20");
    pid_t h = spawn("transaction_history", g_hist, i_hist, "30");
    if (r % 2 == 0) {
      esk_time_sleep_ms(rnd(1500)); /* anywhere: start-up, assignment, mid-batch */
    } else {
      /* just after a commit of this run: wait for the position to move */
      for (int i = 0; i < 250 && positions("account_balances") <= before; i++) esk_time_sleep_ms(20);
      esk_time_sleep_ms(rnd(150));
    }
    kill9(b);
    esk_time_sleep_ms(rnd(300));
    kill9(h);
    long long pb = positions("account_balances"), ph = positions("transaction_history");
    long long published = (long long)(r + 1) * per_run;
    if (pb > 0 && pb < published) mid_bal++;
    if (ph > 0 && ph < published) mid_hist++;
  }
  cr_log_info("runs killed with events still to apply: balances %d, history %d", mid_bal,
              mid_hist);
  cr_expect(mid_bal + mid_hist >= 10,
            "too few kills landed while events were still being applied (%d, %d): the test "
            "did not exercise crashes mid-stream", mid_bal, mid_hist);
  pid_t b = spawn("account_balances", g_bal, i_bal, "500");
  pid_t h = spawn("transaction_history", g_hist, i_hist, "500");
  wait_caught_up("account_balances", (long long)n, 60);
  wait_caught_up("transaction_history", (long long)n, 60);
  cr_expect_eq(terminate(b), 0, "esk-projector did not exit 0 on SIGTERM");
  cr_expect_eq(terminate(h), 0, "esk-projector did not exit 0 on SIGTERM");
  check(bank, "account_balances", n);
  check(bank, "transaction_history", n);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

Test(projector_faults, two_instances_under_a_rebalance_storm_apply_everything_exactly_once,
     .init = setup6, .fini = teardown, .timeout = 170) {
  const size_t n = 24000, step = 600;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  char group[96];
  esk_test_unique_name(group, sizeof(group), "esk.test.e2e.storm");
  cr_assert_eq(esk_test_bank_new(&bank, 9, 300, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  pid_t a = spawn("transaction_history", group, NULL, "100"), b = 0;
  size_t sent = 0;
  int tick = 0;
  /* Events keep arriving while an instance joins or leaves every ~2 s. */
  while (sent < n) {
    publish_step(bank, prod, &sent, step, n, 250);
    if (++tick % 8 == 0) {
      switch ((tick / 8) % 4) {
      case 1: b = spawn("transaction_history", group, NULL, "100"); break;
      case 2: cr_expect_eq(terminate(a), 0); a = 0; break;
      case 3: a = spawn("transaction_history", group, NULL, "100"); break;
      case 0: cr_expect_eq(terminate(b), 0); b = 0; break;
      }
    }
  }
  if (!a) a = spawn("transaction_history", group, NULL, "100");
  wait_caught_up("transaction_history", (long long)n, 90);
  cr_expect_eq(terminate(a), 0);
  if (b) cr_expect_eq(terminate(b), 0);
  check(bank, "transaction_history", n);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

Test(projector_faults, a_postgresql_restart_mid_run_loses_and_repeats_nothing, .init = setup3,
     .fini = teardown, .timeout = 170) {
  const size_t n = 12000, step = 500;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  char group[96];
  esk_test_unique_name(group, sizeof(group), "esk.test.e2e.pgrestart");
  cr_assert_eq(esk_test_bank_new(&bank, 13, 120, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  pid_t p = spawn("account_balances", group, NULL, "100");
  size_t sent = 0;
  int restarted = 0;
  while (sent < n) {
    publish_step(bank, prod, &sent, step, n, 200);
    if (!restarted && sent >= n / 2) {
      cr_assert_eq(system(STACK " restart-pg >/dev/null 2>&1"), 0, "%s restart-pg failed", STACK);
      restarted = 1;
    }
  }
  wait_caught_up("account_balances", (long long)n, 90);
  int st = 0;
  cr_expect_eq(waitpid(p, &st, WNOHANG), 0, "esk-projector exited during the restart (log: %s)",
               logpath);
  cr_expect_eq(terminate(p), 0);
  check(bank, "account_balances", n);
  /* It noticed: the log names the retry, or the failed connection check that
   * reset the connection before the next batch needed it (CI saw the second
   * when the restart fell between batches). */
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "grep -Eq 'retrying|PostgreSQL check failed' %s", logpath);
  cr_expect_eq(system(cmd), 0, "neither a retry nor a failed check logged in %s", logpath);
  /* Progress lines came at the configured interval, with lag per partition. */
  snprintf(cmd, sizeof(cmd),
           "test $(grep -c 'msg=progress projection=account_balances events_per_s=[0-9]* .*"
           "lag=0:[0-9]*,1:[0-9]*,2:[0-9]*' %s) -ge 5", logpath);
  cr_expect_eq(system(cmd), 0, "fewer than 5 progress lines with lag per partition in %s",
               logpath);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}
