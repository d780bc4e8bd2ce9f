/* esk-projector on the three-node cluster (tests/cluster/with-cluster), under
 * the read side's faults: PostgreSQL crashed (pg_ctl stop -m immediate) mid-run
 * three times in a row, and a projector frozen (SIGSTOP) past its session
 * timeout while a second instance takes its partitions, then thawed (SIGCONT).
 * Each ends with the read model equal to the fold of the events: positions are
 * never ahead of the data, nothing is applied twice (docs/architecture.md,
 * "Position compare-and-set"). A suite of its own: it crashes the PostgreSQL
 * every suite shares. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_bank.h"
#include "esk_test_faults.h"

static esk_tf_t f;

static void setup4(void) { esk_tf_setup(&f, 4); }
static void teardown(void) { esk_tf_teardown(&f); }

Test(cluster_projector_faults, postgresql_crashed_three_times_mid_run_loses_and_repeats_nothing,
     .init = setup4, .fini = teardown, .timeout = 240) {
  const size_t n = 9000, step = 300;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  char group[96];
  esk_test_unique_name(group, sizeof(group), "esk.test.cl.pgcrash");
  esk_tf_workload(&bank, &prod, 17, 120, n);
  pid_t p = esk_tf_spawn(&f, NULL, "account_balances", group, NULL, "100", NULL);
  size_t sent = 0;
  int crashes = 0;
  while (sent < n) {
    esk_tf_publish_step(&f, bank, prod, &sent, step, n, 150);
    if (crashes < 3 && sent >= (size_t)(crashes + 1) * n / 4) {
      /* mid-run: a batch is in flight or about to be */
      cr_assert_eq(esk_tf_pg_stack("crash-pg"), 0, "deploy/local/stack crash-pg failed");
      crashes++;
      cr_assert_gt(esk_tf_positions(&f, "account_balances"), -1, "PostgreSQL is not back");
    }
  }
  esk_tf_wait_caught_up(&f, "account_balances", (long long)n, 120);
  int st = 0;
  cr_expect_eq(waitpid(p, &st, WNOHANG), 0, "esk-projector exited during a crash (log %s)", f.log);
  cr_expect_eq(esk_tf_terminate(p), 0);
  esk_tf_check(&f, bank, "account_balances", n);
  cr_expect_geq(esk_tf_log_count(f.log, "retrying") + esk_tf_log_count(f.log, "PostgreSQL check failed"), 1,
                "no retry logged across %d crashes (log %s)", crashes, f.log);
  esk_tf_workload_free(bank, prod);
}

Test(cluster_projector_faults, a_projector_frozen_past_its_session_timeout_applies_nothing_twice,
     .init = setup4, .fini = teardown, .timeout = 240) {
  const size_t n = 12000, step = 200;
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  char group[96], log_a[192], log_b[192];
  esk_test_unique_name(group, sizeof(group), "esk.test.cl.frozen");
  snprintf(log_a, sizeof(log_a), "%s.a", f.log);
  snprintf(log_b, sizeof(log_b), "%s.b", f.log);
  esk_tf_workload(&bank, &prod, 19, 150, n);
  /* A keeps its batches open for seconds (linger), so the freeze lands mid-batch */
  const char *slow[] = {"batch.linger.ms=2000", "batch.max.ms=6000", NULL};
  pid_t a = esk_tf_spawn(&f, log_a, "transaction_history", group, NULL, "100000", slow);
  pid_t b = esk_tf_spawn(&f, log_b, "transaction_history", group, NULL, "100", NULL);
  size_t sent = 0;
  /* both hold partitions and A has applied some: the group is settled */
  for (int64_t t0 = esk_time_mono_ms();
       esk_tf_log_count(log_a, "partition assigned") < 1 || esk_tf_log_count(log_b, "partition assigned") < 1 ||
       esk_tf_positions(&f, "transaction_history") < 1;) {
    esk_tf_publish_step(&f, bank, prod, &sent, step / 4, n / 3, 100);
    cr_assert_lt(esk_time_mono_ms() - t0, 60000, "the two instances did not settle (%s, %s)",
                 log_a, log_b);
  }
  /* fresh events well within A's linger: A's batch is open when it freezes */
  cr_assert_lt(sent, n / 2);
  esk_tf_publish_step(&f, bank, prod, &sent, step, n / 2, 300);
  int assigned_b = esk_tf_log_count(log_b, "partition assigned");
  kill(a, SIGSTOP);
  /* past A's session timeout (6 s) B is given every partition (eager: all four anew) */
  for (int64_t t0 = esk_time_mono_ms(); esk_tf_log_count(log_b, "partition assigned") < assigned_b + 4;) {
    esk_tf_publish_step(&f, bank, prod, &sent, step, 2 * n / 3, 200);
    cr_assert_lt(esk_time_mono_ms() - t0, 60000, "B did not take A's partitions (%s)", log_b);
  }
  while (sent < 2 * n / 3) esk_tf_publish_step(&f, bank, prod, &sent, step, 2 * n / 3, 20);
  esk_tf_wait_caught_up(&f, "transaction_history", (long long)sent, 90); /* B applied A's share */
  int dropped = esk_tf_log_count(log_a, "batch dropped: a position moved");
  int reassigned = esk_tf_log_count(log_a, "batch dropped: partitions reassigned");
  int revoked = esk_tf_log_count(log_a, "partition revoked");
  kill(a, SIGCONT);
  /* the zombie wakes and learns it lost its partitions: its open batch, if it
   * still had one, is refused by the positions' compare-and-set if it gets to
   * commit, or dropped when the rebalance reaches it first; its log says so */
  for (int64_t t0 = esk_time_mono_ms(); esk_tf_log_count(log_a, "partition revoked") == revoked;
       esk_time_sleep_ms(100))
    cr_assert_lt(esk_time_mono_ms() - t0, 60000, "the thawed instance never logged that it lost "
                                                  "its partitions (%s)", log_a);
  cr_log_info("the thawed instance: batches refused by the compare-and-set %d, dropped on the "
              "reassignment %d",
              esk_tf_log_count(log_a, "batch dropped: a position moved") - dropped,
              esk_tf_log_count(log_a, "batch dropped: partitions reassigned") - reassigned);
  while (sent < n) esk_tf_publish_step(&f, bank, prod, &sent, step, n, 20);
  esk_tf_wait_caught_up(&f, "transaction_history", (long long)n, 90);
  int st = 0;
  cr_expect_eq(waitpid(a, &st, WNOHANG), 0, "the thawed instance exited (log %s)", log_a);
  cr_expect_eq(esk_tf_terminate(a), 0, "A did not exit 0 on SIGTERM (%s)", log_a);
  cr_expect_eq(esk_tf_terminate(b), 0, "B did not exit 0 on SIGTERM (%s)", log_b);
  esk_tf_check(&f, bank, "transaction_history", n);
  esk_tf_workload_free(bank, prod);
}
