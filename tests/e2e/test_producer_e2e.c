/* esk-producer processes under stress against the real broker: two instances
 * sharing the partitions, and kill -9 while commands stream in. The checks
 * read the topics back with read_committed: every command has exactly one
 * result, every accepted command exactly one event, and per aggregate the
 * versions are exactly 1..n within one partition. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bank/bank_avro.h"
#include "esk/hmap.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_producer.h"

static void wait_log(const char *path, const char *needle, int timeout_ms) {
  for (int w = 0; w < timeout_ms; w += 100) {
    if (esk_tp_file_contains(path, needle)) return;
    esk_time_sleep_ms(100);
  }
  cr_assert_fail("'%s' did not appear in %s within %d ms", needle, path, timeout_ms);
}

/* The accepted= count of the last stats line of a producer log. */
static long last_accepted(const char *path) {
  FILE *f = fopen(path, "r");
  char line[4096];
  long v = -1;
  while (f && fgets(line, sizeof(line), f)) {
    const char *s = strstr(line, "msg=stats ");
    if (s && (s = strstr(s, " accepted="))) v = atol(s + 10);
  }
  if (f) fclose(f);
  return v;
}

/* Starts instance "a", and once it holds partitions, instance @p second. */
static void start_two(const char *prefix, const char *la, pid_t *a, const char *second,
                      const char *lb, pid_t *b, const char *const *extra_b) {
  *a = esk_tp_start(prefix, "a", la, NULL);
  wait_log(la, "partition restored", 30000);
  *b = esk_tp_start(prefix, second, lb, extra_b);
  wait_log(lb, "partition restored", 30000);
}

Test(producer_e2e, two_instances_split_the_partitions_and_write_versions_1_to_n,
     .timeout = 240) {
  esk_test_require_kafka();
  enum { PARTS = 4, ACCOUNTS = 120, DEPOSITS = 2880 };
  char prefix[128], la[256], lb[256];
  esk_tp_topics(prefix, sizeof(prefix), "e2e_two", PARTS);
  esk_tp_log_path(la, sizeof(la), prefix, "a");
  esk_tp_log_path(lb, sizeof(lb), prefix, "b");
  pid_t a, b;
  start_two(prefix, la, &a, "b", lb, &b, NULL);
  wait_log(la, "partition revoked", 30000);

  esk_tp_gen_t g;
  esk_tp_gen_init(&g, prefix);
  esk_tp_gen_open_accounts(&g, "acct-", ACCOUNTS);
  esk_tp_gen_flush(&g);
  for (int i = 0; i < DEPOSITS; i++)
    esk_tp_gen_deposit(&g, "acct-", i, (i * 37) % ACCOUNTS, 1 + i % 50);
  esk_tp_gen_destroy(&g);
  esk_tp_results_t r = esk_tp_wait_results(prefix, PARTS, ACCOUNTS + DEPOSITS, 90000);
  cr_assert_eq(r.distinct, ACCOUNTS + DEPOSITS, "results for every command (%zu)", r.distinct);
  cr_expect_eq(r.messages, r.distinct, "exactly one result per command");
  cr_expect_eq(r.accepted, ACCOUNTS + DEPOSITS, "all accepted");
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events_settled(&evs, prefix, PARTS, ACCOUNTS + DEPOSITS);
  cr_expect_eq(ne, ACCOUNTS + DEPOSITS, "one event per command, got %zu", ne);
  cr_expect_eq(esk_tp_check_versions(evs, ne), ACCOUNTS);
  esk_tp_check_causation_unique(evs, ne);
  free(evs);
  cr_expect_eq(esk_tp_stop(a, SIGTERM, 30000), 0);
  cr_expect_eq(esk_tp_stop(b, SIGTERM, 30000), 0);
  long acc_a = last_accepted(la), acc_b = last_accepted(lb);
  cr_expect(acc_a > 0 && acc_b > 0, "both instances handled commands (a=%ld b=%ld)", acc_a,
            acc_b);
  cr_expect_eq(acc_a + acc_b, ACCOUNTS + DEPOSITS, "and no command twice (a=%ld b=%ld)", acc_a,
               acc_b);
  esk_tp_delete_topics(prefix);
}

/* Transactions that stay open 200 ms (batch.linger.ms: waiting for more
 * commands) while their records are already sent (linger.ms 5): a kill at a
 * random moment most likely hits one. */
static const char *const long_txns[] = {"batch.max.ms=200", "batch.linger.ms=200", NULL};

static int count_in_file(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char line[4096];
  int n = 0;
  while (f && fgets(line, sizeof(line), f)) n += strstr(line, needle) != NULL;
  if (f) fclose(f);
  return n;
}

/* Streams deposits (about 2000/s) while @p victim is killed with SIGKILL at 1/3
 * and 2/3 (with @p restart: restarted each time, and the stream goes on only
 * once the new process holds its @p parts partitions again, so that the
 * second kill also hits a working process), or once at 1/2 without restart. */
static void stream_with_kills(const char *prefix, int parts, int accounts, int deposits,
                              pid_t *victim, const char *victim_log, int restart) {
  esk_tp_gen_t g;
  esk_tp_gen_init(&g, prefix);
  esk_tp_gen_open_accounts(&g, "k-", accounts);
  int kills = restart ? 2 : 1;
  for (int i = 0; i < deposits; i++) {
    esk_tp_gen_deposit(&g, "k-", i, (i * 13) % accounts, 1 + i % 9);
    if (i % 20 == 19) esk_time_sleep_ms(10); /* a steady stream, not one burst */
    for (int k = 1; k <= kills; k++) {
      if (i != deposits * k / (kills + 1)) continue;
      cr_assert_eq(esk_tp_stop(*victim, SIGKILL, 10000), 128 + SIGKILL);
      if (!restart) continue;
      *victim = esk_tp_start(prefix, "victim", victim_log, long_txns);
      for (int w = 0; count_in_file(victim_log, "partition restored") < parts * (k + 1); w++) {
        cr_assert_lt(w, 600, "the restarted producer did not get its partitions in 60 s");
        esk_time_sleep_ms(100);
      }
    }
  }
  esk_tp_gen_destroy(&g);
}



Test(producer_e2e, kill_9_while_commands_stream_in_then_restart_loses_and_doubles_nothing,
     .timeout = 300) {
  esk_test_require_kafka();
  enum { PARTS = 2, ACCOUNTS = 100, DEPOSITS = 6000 };
  char prefix[128], lv[256];
  esk_tp_topics(prefix, sizeof(prefix), "e2e_kill", PARTS);
  esk_tp_log_path(lv, sizeof(lv), prefix, "victim");
  pid_t v = esk_tp_start(prefix, "victim", lv, long_txns);
  wait_log(lv, "partition restored", 30000);
  stream_with_kills(prefix, PARTS, ACCOUNTS, DEPOSITS, &v, lv, 1);
  esk_tp_check_exactly_once(prefix, PARTS, ACCOUNTS, DEPOSITS);
  size_t all = esk_tp_count_uncommitted_events(prefix, PARTS);
  cr_expect_gt(all, (size_t)(ACCOUNTS + DEPOSITS),
               "a kill hit an open transaction: the log holds aborted events (%zu records)", all);
  cr_expect_eq(esk_tp_stop(v, SIGTERM, 30000), 0);
  esk_tp_delete_topics(prefix);
}

Test(producer_e2e, kill_9_of_one_of_two_instances_lets_the_other_take_over_exactly_once,
     .timeout = 300) {
  esk_test_require_kafka();
  enum { PARTS = 4, ACCOUNTS = 80, DEPOSITS = 4000 };
  char prefix[128], la[256], lv[256];
  esk_tp_topics(prefix, sizeof(prefix), "e2e_takeover", PARTS);
  esk_tp_log_path(la, sizeof(la), prefix, "a");
  esk_tp_log_path(lv, sizeof(lv), prefix, "victim");
  pid_t a, v;
  start_two(prefix, la, &a, "victim", lv, &v, long_txns);
  stream_with_kills(prefix, PARTS, ACCOUNTS, DEPOSITS, &v, lv, 0);
  esk_tp_check_exactly_once(prefix, PARTS, ACCOUNTS, DEPOSITS);
  cr_expect_eq(esk_tp_stop(a, SIGTERM, 30000), 0);
  esk_tp_delete_topics(prefix);
}

/* The exit status of @p pid if it has exited (128+signal when killed), else -1. */
static int exited(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, WNOHANG) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Waits until @p pid exits or @p deadline (esk_time_mono_ms()) passes; @returns its status, or -1
 * (then it is killed). */
static int exit_by(pid_t pid, int64_t deadline) {
  int st;
  while ((st = exited(pid)) < 0 && esk_time_mono_ms() < deadline) esk_time_sleep_ms(20);
  if (st < 0) esk_tp_stop(pid, SIGKILL, 5000);
  return st;
}

/* How long a fenced instance may take to exit, from its successor's
 * init_transactions: the successor's retries while the fenced one ends its
 * open transaction (CONCURRENT_TRANSACTIONS, 500 ms each), then one
 * fence.check.interval.ms (2 s) if it is idle, then its shutdown. */
#define FENCED_EXIT_MS 8000

/* A second process with the same transactional.id (configured from a file)
 * fences the first: the first exits non-zero with one fatal line within a
 * few seconds, whether commands still come to it or not (it may have handled
 * all of them before the fence: issue 21), the second carries on, and every
 * command still has exactly one result and event. */
Test(producer_e2e, a_fenced_instance_exits_non_zero_and_its_successor_carries_on,
     .timeout = 240) {
  esk_test_require_kafka();
  enum { PARTS = 2, ACCOUNTS = 40, DEPOSITS = 2000 };
  char prefix[128], la[256], lb[256], conf[256];
  esk_tp_topics(prefix, sizeof(prefix), "e2e_fence", PARTS);
  esk_tp_log_path(la, sizeof(la), prefix, "a");
  esk_tp_log_path(lb, sizeof(lb), prefix, "b");
  pid_t a = esk_tp_start(prefix, "same", la, NULL);
  wait_log(la, "partition restored", 30000);
  snprintf(conf, sizeof(conf), "/tmp/%sproducer.conf", prefix);
  FILE *f = fopen(conf, "w");
  cr_assert_not_null(f);
  fprintf(f, "# the successor, configured from a file\ntopic.prefix=%s\ntransactional.id=%stx.same\n"
             "kafka.consumer.session.timeout.ms = 6000\nbatch.max.ms=20\nstats.interval.ms=0\n",
          prefix, prefix);
  fclose(f);
  esk_tp_gen_t g;
  esk_tp_gen_init(&g, prefix);
  char cid[32], acc[32];
  pid_t fenced = -1;
  int fenced_st = -1;
  int64_t t_fence = 0, t_exit = 0;
  for (int i = 0; i < ACCOUNTS + DEPOSITS; i++) {
    snprintf(cid, sizeof(cid), "f%d", i);
    snprintf(acc, sizeof(acc), "f-%d", i % ACCOUNTS);
    esk_tp_gen_send(&g, i < ACCOUNTS ? ESK_BANK_CMD_OPEN_ACCOUNT : ESK_BANK_CMD_DEPOSIT_MONEY, cid, acc,
             1);
    if (i % 20 == 19) {
      esk_time_sleep_ms(10);
      if (fenced > 0 && fenced_st < 0 && (fenced_st = exited(fenced)) >= 0) t_exit = esk_time_mono_ms();
    }
    if (i == (ACCOUNTS + DEPOSITS) / 3) {
      const char *argv[] = {ESK_TEST_PRODUCER_BIN, "-c", conf, NULL};
      pid_t b = esk_tp_spawn(argv, lb);
      wait_log(lb, "initialising transactions", 30000);
      t_fence = esk_time_mono_ms();
      /* a is fenced at its next transaction if the commands still to come
       * give it one, else by its fence check while idle: it must stop by itself */
      fenced = a;
      a = b;
    }
  }
  esk_tp_gen_destroy(&g);
  if (fenced_st < 0) {
    fenced_st = exit_by(fenced, t_fence + FENCED_EXIT_MS);
    t_exit = esk_time_mono_ms();
  }
  cr_expect(fenced_st > 0 && fenced_st < 128, "the fenced instance exits non-zero (got %d)",
            fenced_st);
  cr_expect_leq(t_exit - t_fence, FENCED_EXIT_MS,
                "within %d ms of its successor's init_transactions (took %lld ms)",
                FENCED_EXIT_MS, (long long)(t_exit - t_fence));
  cr_expect(esk_tp_file_contains(la, "stopping on a fatal error"), "see %s", la);
  size_t n = ACCOUNTS + DEPOSITS;
  esk_tp_results_t r = esk_tp_wait_results(prefix, PARTS, n, 120000);
  cr_expect_eq(r.distinct, n, "results for every command (%zu)", r.distinct);
  cr_expect_eq(r.messages, n, "exactly one committed result per command (%zu)", r.messages);
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events_settled(&evs, prefix, PARTS, ACCOUNTS + DEPOSITS);
  cr_expect_eq(ne, n, "one event per command (%zu)", ne);
  esk_tp_check_causation_unique(evs, ne);
  esk_tp_check_versions(evs, ne);
  free(evs);
  cr_expect_eq(esk_tp_stop(a, SIGTERM, 30000), 0);
  unlink(conf);
  esk_tp_delete_topics(prefix);
}

/* Issue 21: an instance fenced while it has nothing to do (its successor
 * started after its last command) exits by its fence check, within two
 * fence.check.interval.ms (2 s by default) and its shutdown, instead of
 * holding its partitions in the group, ready, until a command comes. */
Test(producer_e2e, an_idle_fenced_instance_exits_within_its_fence_check_interval,
     .timeout = 120) {
  esk_test_require_kafka();
  char prefix[128], la[256], lb[256];
  esk_tp_topics(prefix, sizeof(prefix), "e2e_idle_fence", 2);
  esk_tp_log_path(la, sizeof(la), prefix, "a");
  esk_tp_log_path(lb, sizeof(lb), prefix, "b");
  pid_t a = esk_tp_start(prefix, "same", la, NULL);
  wait_log(la, "partition restored", 30000);
  esk_tp_gen_t g;
  esk_tp_gen_init(&g, prefix);
  esk_tp_gen_open_accounts(&g, "i-", 8); /* committed offsets for the check to send */
  esk_tp_gen_destroy(&g);
  cr_assert_eq(esk_tp_wait_results(prefix, 2, 8, 30000).distinct, 8);
  pid_t b = esk_tp_start(prefix, "same", lb, NULL);
  wait_log(lb, "msg=started", 30000); /* its init_transactions has fenced a */
  int64_t t0 = esk_time_mono_ms();
  int st = exit_by(a, t0 + 6000);
  cr_expect_eq(st, 1, "the idle fenced instance exits 1 within 6 s (got %d after %lld ms)", st,
               (long long)(esk_time_mono_ms() - t0));
  cr_expect(esk_tp_file_contains(la, "fence check: "), "its fatal line names the check: see %s",
            la);
  cr_expect_eq(esk_tp_stop(b, SIGTERM, 30000), 0);
  esk_tp_delete_topics(prefix);
}
