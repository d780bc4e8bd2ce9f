/* esk-producer through a restart of the Kafka broker (one step of a rolling
 * restart, on the single-node local stack) while commands stream in and its
 * transactions stay open 200 ms: the process rides it out, and every command
 * still has exactly one result and one event, with versions 1..n per account.
 * A suite of its own, with one test: the restart would disturb any test
 * running beside it. (e2e.pipeline restarts the broker under the projectors.) */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "esk_test.h"
#include "esk_test_bank.h"
#include "esk_test_producer.h"
#include "esk/time.h"

/* The value of the last "key=N" in the producer's stats lines, or -1. */
static long last_stat(const char *path, const char *key) {
  FILE *f = fopen(path, "r");
  char line[4096], k[64];
  long v = -1;
  snprintf(k, sizeof(k), " %s=", key);
  while (f && fgets(line, sizeof(line), f)) {
    const char *s = strstr(line, "msg=stats ");
    if (s && (s = strstr(s, k))) v = atol(s + strlen(k));
  }
  if (f) fclose(f);
  return v;
}

Test(broker_restart, the_producer_rides_out_a_broker_restart_exactly_once, .timeout = 300) {
  esk_test_require_kafka();
  enum { PARTS = 2, ACCOUNTS = 60, DEPOSITS = 4000 };
  /* transactions open 200 ms, and a transaction timeout the restart outlasts:
   * the coordinator aborts the open one itself, which librdkafka 2.0.2
   * reports as this instance being fenced */
  static const char *const long_txns[] = {"batch.max.ms=200", "batch.linger.ms=200",
                                          "kafka.producer.transaction.timeout.ms=3000", NULL};
  char prefix[128], log[256], restart_log[256];
  esk_tp_topics(prefix, sizeof(prefix), "e2e_broker", PARTS);
  esk_tp_log_path(log, sizeof(log), prefix, "producer");
  esk_tp_log_path(restart_log, sizeof(restart_log), prefix, "restart");
  pid_t p = esk_tp_start(prefix, "a", log, long_txns);
  for (int w = 0; !esk_tp_file_contains(log, "partition restored"); w++) {
    cr_assert_lt(w, 300, "esk-producer got no partition in 30 s (log %s)", log);
    esk_time_sleep_ms(100);
  }

  esk_tp_gen_t g;
  esk_tp_gen_init(&g, prefix);
  esk_tp_gen_open_accounts(&g, "k-", ACCOUNTS);
  pid_t restart = -1;
  for (int i = 0; i < DEPOSITS; i++) {
    esk_tp_gen_deposit(&g, "k-", i, (i * 7) % ACCOUNTS, 1 + i % 9);
    if (i % 20 == 19) esk_time_sleep_ms(10); /* a steady stream (about 2000/s), not one burst */
    if (i == DEPOSITS / 4) {        /* the rest streams in while the broker stops and starts */
      char *const argv[] = {"/bin/bash", ESK_SOURCE_DIR "/deploy/local/stack", "restart-kafka",
                            NULL};
      restart = esk_test_spawn(argv, restart_log);
      cr_assert_gt(restart, 0, "fork");
    }
  }
  int st = 0;
  cr_assert_eq(waitpid(restart, &st, 0), restart);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "stack restart-kafka failed (log %s)",
            restart_log);
  cr_assert(esk_tp_file_contains(restart_log, "starting kafka"), "no restart in %s", restart_log);
  esk_tp_gen_destroy(&g);

  esk_tp_check_exactly_once(prefix, PARTS, ACCOUNTS, DEPOSITS);
  cr_assert_eq(waitpid(p, &st, WNOHANG), 0, "esk-producer exited during the restart (log %s)",
               log);
  cr_expect_eq(esk_tp_stop(p, SIGTERM, 30000), 0, "esk-producer did not exit 0 on SIGTERM");
  /* whether the restart caught a transaction open is up to timing: said, not asserted */
  cr_log_info("broker restart: the producer committed %ld transactions and aborted %ld; the "
              "coordinator expired one: %s",
              last_stat(log, "txns"), last_stat(log, "aborts"),
              esk_tp_file_contains(log, "aborted the transaction on its timeout") ? "yes" : "no");
  esk_tp_delete_topics(prefix);
}
