/* esk-projector (the real binary, run as child processes) under faults, on
 * the real broker and PostgreSQL: kill -9 at random moments, a rebalance
 * storm between two instances, and a PostgreSQL restart mid-run. Each ends
 * with the read models equal to the folds the test computes independently
 * (tests/support/esk_test_bank_check.c): nothing applied twice, nothing skipped.
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
#include "esk_test_faults.h"

static esk_tf_t f;

static void setup3(void) { esk_tf_setup(&f, 3); }
static void setup6(void) { esk_tf_setup(&f, 6); }
static void teardown(void) { esk_tf_teardown(&f); }

static unsigned rnd(unsigned n) {
  unsigned r = 0;
  if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) r = (unsigned)rand();
  return n ? r % n : r;
}

static pid_t spawn(const char *projection, const char *group, const char *instance,
                   const char *batch) {
  return esk_tf_spawn(&f, NULL, projection, group, instance, batch, NULL);
}

Test(projector_faults, kill_9_at_random_moments_in_20_runs_ends_equal_to_the_fold,
     .init = setup3, .fini = teardown, .timeout = 170) {
  const int runs = 20, per_run = 3000;
  const size_t n = (size_t)runs * per_run;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  char g_bal[96], g_hist[96], i_bal[112], i_hist[112];
  esk_test_unique_name(g_bal, sizeof(g_bal), "esk.test.e2e.balances");
  esk_test_unique_name(g_hist, sizeof(g_hist), "esk.test.e2e.history");
  /* Static membership: a restarted instance takes over its killed
   * predecessor's partitions at once instead of after the session timeout. */
  snprintf(i_bal, sizeof(i_bal), "%s.i", g_bal);
  snprintf(i_hist, sizeof(i_hist), "%s.i", g_hist);
  esk_tf_workload(&bank, &prod, 5, 150, n);
  esk_error_t err = {0};
  int mid_bal = 0, mid_hist = 0;
  for (int r = 0; r < runs; r++) {
    /* New events before every run, so every kill can hit work in flight. */
    cr_assert_eq(esk_test_bank_publish(bank, prod, f.topic, (size_t)r * per_run,
                                       (size_t)(r + 1) * per_run, &err), ESK_OK, "%s", err.msg);
    cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    long long before = esk_tf_positions(&f, "account_balances");
    pid_t b = spawn("account_balances", g_bal, i_bal, "20");
    pid_t h = spawn("transaction_history", g_hist, i_hist, "30");
    if (r % 2 == 0) {
      esk_time_sleep_ms(rnd(1500)); /* anywhere: start-up, assignment, mid-batch */
    } else {
      /* just after a commit of this run: wait for the position to move */
      for (int i = 0; i < 250 && esk_tf_positions(&f, "account_balances") <= before; i++) esk_time_sleep_ms(20);
      esk_time_sleep_ms(rnd(150));
    }
    esk_tf_kill9(b);
    esk_time_sleep_ms(rnd(300));
    esk_tf_kill9(h);
    long long pb = esk_tf_positions(&f, "account_balances"), ph = esk_tf_positions(&f, "transaction_history");
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
  esk_tf_wait_caught_up(&f, "account_balances", (long long)n, 60);
  esk_tf_wait_caught_up(&f, "transaction_history", (long long)n, 60);
  cr_expect_eq(esk_tf_terminate(b), 0, "esk-projector did not exit 0 on SIGTERM");
  cr_expect_eq(esk_tf_terminate(h), 0, "esk-projector did not exit 0 on SIGTERM");
  esk_tf_check(&f, bank, "account_balances", n);
  esk_tf_check(&f, bank, "transaction_history", n);
  esk_tf_workload_free(bank, prod);
}

Test(projector_faults, two_instances_under_a_rebalance_storm_apply_everything_exactly_once,
     .init = setup6, .fini = teardown, .timeout = 170) {
  const size_t n = 24000, step = 600;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  char group[96];
  esk_test_unique_name(group, sizeof(group), "esk.test.e2e.storm");
  esk_tf_workload(&bank, &prod, 9, 300, n);
  pid_t a = spawn("transaction_history", group, NULL, "100"), b = 0;
  size_t sent = 0;
  int tick = 0;
  /* Events keep arriving while an instance joins or leaves every ~2 s. */
  while (sent < n) {
    esk_tf_publish_step(&f, bank, prod, &sent, step, n, 250);
    if (++tick % 8 == 0) {
      switch ((tick / 8) % 4) {
      case 1: b = spawn("transaction_history", group, NULL, "100"); break;
      case 2: cr_expect_eq(esk_tf_terminate(a), 0); a = 0; break;
      case 3: a = spawn("transaction_history", group, NULL, "100"); break;
      case 0: cr_expect_eq(esk_tf_terminate(b), 0); b = 0; break;
      }
    }
  }
  if (!a) a = spawn("transaction_history", group, NULL, "100");
  esk_tf_wait_caught_up(&f, "transaction_history", (long long)n, 90);
  cr_expect_eq(esk_tf_terminate(a), 0);
  if (b) cr_expect_eq(esk_tf_terminate(b), 0);
  esk_tf_check(&f, bank, "transaction_history", n);
  esk_tf_workload_free(bank, prod);
}

Test(projector_faults, a_postgresql_restart_mid_run_loses_and_repeats_nothing, .init = setup3,
     .fini = teardown, .timeout = 170) {
  const size_t n = 12000, step = 500;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  char group[96];
  esk_test_unique_name(group, sizeof(group), "esk.test.e2e.pgrestart");
  esk_tf_workload(&bank, &prod, 13, 120, n);
  pid_t p = spawn("account_balances", group, NULL, "100");
  size_t sent = 0;
  int restarted = 0;
  while (sent < n) {
    esk_tf_publish_step(&f, bank, prod, &sent, step, n, 200);
    if (!restarted && sent >= n / 2) {
      cr_assert_eq(esk_tf_pg_stack("restart-pg"), 0, "deploy/local/stack restart-pg failed");
      restarted = 1;
    }
  }
  esk_tf_wait_caught_up(&f, "account_balances", (long long)n, 90);
  int st = 0;
  cr_expect_eq(waitpid(p, &st, WNOHANG), 0, "esk-projector exited during the restart (log: %s)",
               f.log);
  cr_expect_eq(esk_tf_terminate(p), 0);
  esk_tf_check(&f, bank, "account_balances", n);
  /* It noticed: the log names the retry, or the failed connection check that
   * reset the connection before the next batch needed it (CI saw the second
   * when the restart fell between batches). */
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "grep -Eq 'retrying|PostgreSQL check failed' %s", f.log);
  cr_expect_eq(system(cmd), 0, "neither a retry nor a failed check logged in %s", f.log);
  /* Progress lines came at the configured interval, with lag per partition. */
  snprintf(cmd, sizeof(cmd),
           "test $(grep -c 'msg=progress projection=account_balances events_per_s=[0-9]* .*"
           "lag=0:[0-9]*,1:[0-9]*,2:[0-9]*' %s) -ge 5", f.log);
  cr_expect_eq(system(cmd), 0, "fewer than 5 progress lines with lag per partition in %s",
               f.log);
  esk_tf_workload_free(bank, prod);
}
