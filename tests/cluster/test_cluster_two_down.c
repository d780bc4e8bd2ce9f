/* esk-producer on a three-node cluster (replication factor 3,
 * min.insync.replicas=2) when two of the three brokers are killed with SIGKILL:
 * the quorum is lost and no write can reach two replicas, so the producer must
 * wait rather than lose or double anything; it carries on once one returns.
 * A suite of its own; tests/cluster/with-cluster points it at the cluster. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include "esk_test.h"
#include "esk_test_producer.h"

static void stack_node(const char *cmd, int node, const char *log) {
  char args[64];
  snprintf(args, sizeof(args), "%s %d", cmd, node);
  esk_tp_stack(args, log);
}

/* The logs of the run, shown by ctest only when the test fails: CI keeps no /tmp. */
static char producer_log[256], stack_log[256];
static void print_logs(void) {
  esk_tp_print_log_tail(producer_log, 40, 1);
  esk_tp_print_log_tail(producer_log, 30, 0);
  esk_tp_print_log_tail(stack_log, 20, 0);
}

Test(cluster_two_down, with_two_brokers_dead_the_producer_waits_and_then_resumes_exactly_once,
     .fini = print_logs, .timeout = 400) {
  esk_test_require_kafka();
  enum { PARTS = 2, ACCOUNTS = 40, DEPOSITS = 1000 };
  char prefix[128], events[256], *log = producer_log;
  esk_tp_topics(prefix, sizeof(prefix), "cl_two", PARTS);
  snprintf(events, sizeof(events), "%sbank.events", prefix);
  esk_tp_log_path(log, sizeof(producer_log), prefix, "producer");
  esk_tp_log_path(stack_log, sizeof(stack_log), prefix, "stack");
  pid_t p = esk_tp_start(prefix, "a", log, NULL);

  esk_tp_gen_t g;
  esk_tp_gen_init(&g, prefix);
  esk_tp_gen_open_accounts(&g, "k-", ACCOUNTS);
  for (int i = 0; i < DEPOSITS / 2; i++) esk_tp_gen_deposit(&g, "k-", i, i % ACCOUNTS, 1 + i % 9);
  esk_tp_gen_flush(&g);
  esk_tp_results_t r = esk_tp_wait_results(prefix, PARTS, ACCOUNTS + DEPOSITS / 2, 60000);
  cr_assert_eq(r.distinct, (size_t)(ACCOUNTS + DEPOSITS / 2), "first half: %zu results",
               r.distinct);

  /* the leader of the events and one other node */
  int a = esk_tp_leader_of(events, 0), b = a % 3 + 1;
  cr_log_info("killing nodes %d and %d", a, b);
  stack_node("kill-broker", a, stack_log);
  stack_node("kill-broker", b, stack_log);
  /* the second half is sent while only one broker lives (the generator's own
   * sends wait in its queue, as any client's would) */
  for (int i = DEPOSITS / 2; i < DEPOSITS; i++)
    esk_tp_gen_deposit(&g, "k-", i, i % ACCOUNTS, 1 + i % 9);
  /* the producer has seen the outage before one broker comes back */
  for (int64_t t0 = esk_time_mono_ms(); !esk_tp_file_contains(log, "Connection refused");
       esk_time_sleep_ms(100))
    cr_assert_lt(esk_time_mono_ms() - t0, 60000, "esk-producer never saw the outage (log %s)",
                 log);
  int st = 0;
  cr_assert_eq(waitpid(p, &st, WNOHANG), 0, "esk-producer exited with two brokers down (log %s)",
               log);
  stack_node("start-broker", a, stack_log);
  esk_tp_gen_destroy(&g);

  esk_tp_check_exactly_once(prefix, PARTS, ACCOUNTS, DEPOSITS);
  cr_assert_eq(waitpid(p, &st, WNOHANG), 0, "esk-producer exited during the outage (log %s)", log);
  cr_expect_eq(esk_tp_stop(p, SIGTERM, 30000), 0, "esk-producer did not exit 0 on SIGTERM");
  stack_node("start-broker", b, stack_log); /* the cluster whole again for what follows */
  esk_tp_delete_topics(prefix);
}
