/* SIGTERM in every phase of both daemons (the real binaries as child
 * processes, the real broker and PostgreSQL), each with shutdown.timeout.ms
 * set to BOUND_MS: the process must be gone within BOUND_MS plus a second.
 * Where the phase can end cleanly the exit status is 0 (a status 3 would mean
 * the watchdog had to end a hang, which must fail the test); the projector
 * blocked on a PostgreSQL lock cannot end cleanly and exits 3 naming the wait,
 * after /healthz said the loop was stalled. Stops the shared PostgreSQL for a
 * few seconds (deploy/local/stack stop-pg / start-pg). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bank/bank.h"
#include "bank/bank_avro.h"
#include "esk/buf.h"
#include "esk/kafka.h"
#include "esk_test.h"
#include "esk_test_bank.h"
#include "esk_test_producer.h"

#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"
#define STACK ESK_SOURCE_DIR "/deploy/local/stack"
#define BOUND_MS 4000


/* Waits up to @p timeout_ms for @p needle in the file at @p path. */
static void wait_log(const char *path, const char *needle, int timeout_ms) {
  int64_t end = esk_time_mono_ms() + timeout_ms;
  while (!esk_tp_file_contains(path, needle)) {
    cr_assert_lt(esk_time_mono_ms(), end, "'%s' did not appear in %s within %d ms", needle, path,
                 timeout_ms);
    esk_time_sleep_ms(50);
  }
}

/* SIGTERM to @p pid, then waits for its end until BOUND_MS plus a second
 * (killed then). @returns its exit status (128+signal when killed by one, -1
 * when it did not end in time) and the time it took in @p ms. */
static int sigterm(pid_t pid, int64_t *ms) {
  int64_t t0 = esk_time_mono_ms();
  int st = esk_tp_stop(pid, SIGTERM, BOUND_MS + 1000);
  *ms = esk_time_mono_ms() - t0;
  return st;
}

static void expect_clean_exit(pid_t pid, const char *log) {
  int64_t ms = 0;
  int st = sigterm(pid, &ms);
  cr_expect_eq(st, 0, "exit status %d after %lld ms, expected 0 within %d ms (log: %s)", st,
               (long long)ms, BOUND_MS + 1000, log);
  cr_expect_leq(ms, BOUND_MS + 1000, "ended after %lld ms (log: %s)", (long long)ms, log);
}

/* ------------------------------------------------------------ producer --- */

static const char *const producer_bound[] = {"shutdown.timeout.ms=4000", NULL};

/* Event @p i of 500 accounts' histories (opened, then deposits): valid folds. */
static void fill_event(esk_bank_event_t *ev, int i) {
  memset(ev, 0, sizeof(*ev));
  snprintf(ev->account_id, sizeof(ev->account_id), "r-%d", i % 500);
  ev->aggregate_version = i / 500 + 1;
  if (ev->aggregate_version == 1) {
    ev->type = ESK_BANK_EV_ACCOUNT_OPENED;
    snprintf(ev->u.opened.owner_id, sizeof(ev->u.opened.owner_id), "o");
    snprintf(ev->u.opened.initial_deposit.currency, 4, "EUR");
  } else {
    ev->type = ESK_BANK_EV_MONEY_DEPOSITED;
    ev->u.deposited.amount.minor_units = 1;
    snprintf(ev->u.deposited.amount.currency, 4, "EUR");
  }
}

/* Writes @p n events to events partition 0, as a producer would have: a
 * restore of a few seconds to interrupt. */
static void fill_events(const char *prefix, int n) {
  esk_bank_avro_t *avro = NULL;
  esk_error_t err = {0};
  esk_buf_t buf;
  char topic[256];
  snprintf(topic, sizeof(topic), "%sbank.events", prefix);
  esk_buf_init(&buf, 1 << 16);
  cr_assert_eq(esk_bank_avro_new(&avro, &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *rk = esk_tp_client();
  esk_bank_event_meta_t meta = {"00000000-0000-4000-8000-000000000000", 0, "c", "c", "t"};
  for (int i = 0; i < n; i++) {
    esk_bank_event_t ev;
    const esk_schema_t *ws = NULL;
    fill_event(&ev, i);
    esk_buf_reset(&buf);
    cr_assert_eq(esk_bank_avro_encode_event(avro, &buf, &ws, &ev, &meta, &err), ESK_OK, "%s",
                 err.msg);
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(ev.account_id, strlen(ev.account_id)),
                                  RD_KAFKA_V_VALUE(buf.data, buf.len), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 10);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(e));
  }
  cr_assert_eq(rd_kafka_flush(rk, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
  esk_bank_avro_destroy(avro);
  esk_buf_free(&buf);
}

Test(shutdown, producer_sigterm_during_a_restore_exits_0_within_the_bound, .timeout = 180) {
  esk_test_require_kafka();
  char prefix[128], log[256];
  esk_tp_topics(prefix, sizeof(prefix), "sd_restore", 1);
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  fill_events(prefix, 400000);
  pid_t p = esk_tp_start(prefix, "a", log, producer_bound);
  wait_log(log, "restoring partition", 30000);
  expect_clean_exit(p, log);
  cr_expect(!esk_tp_file_contains(log, "partition restored"),
            "the restore ended before the SIGTERM: make it longer (see %s)", log);
  cr_expect(esk_tp_file_contains(log, "msg=stopped"), "see %s", log);
  esk_tp_delete_topics(prefix);
}


Test(shutdown, producer_sigterm_with_a_transaction_open_commits_it_and_exits_0_within_the_bound,
     .timeout = 120) {
  esk_test_require_kafka();
  enum { ACCOUNTS = 30 };
  char prefix[128], log[256];
  esk_tp_topics(prefix, sizeof(prefix), "sd_txn", 1);
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  /* a batch stays open 8 s (waiting for more commands): the SIGTERM comes while it is */
  static const char *const extra[] = {"shutdown.timeout.ms=4000", "batch.max.ms=8000",
                                      "batch.linger.ms=8000",
                                      "kafka.producer.transaction.timeout.ms=30000", NULL};
  pid_t p = esk_tp_start(prefix, "a", log, extra);
  wait_log(log, "partition restored", 30000);
  esk_tp_gen_t g;
  esk_tp_gen_init(&g, prefix);
  esk_tp_gen_open_accounts(&g, "t-", ACCOUNTS);
  esk_tp_gen_destroy(&g);
  for (int64_t end = esk_time_mono_ms() + 5000; esk_tp_count_uncommitted_events(prefix, 1) < ACCOUNTS;)
    cr_assert_lt(esk_time_mono_ms(), end, "the open transaction's events were not written (log: %s)", log);
  cr_assert_eq(esk_tp_count_results(prefix, 1).distinct, 0, "the transaction is still open");
  expect_clean_exit(p, log);
  cr_expect_eq(esk_tp_wait_results(prefix, 1, ACCOUNTS, 10000).distinct, ACCOUNTS,
               "the open batch was committed on the way out");
  esk_tp_delete_topics(prefix);
}

Test(shutdown, producer_sigterm_during_a_rebalance_exits_0_within_the_bound, .timeout = 120) {
  esk_test_require_kafka();
  char prefix[128], la[256], lb[256];
  esk_tp_topics(prefix, sizeof(prefix), "sd_rebal", 2);
  esk_tp_log_path(la, sizeof(la), prefix, "a");
  esk_tp_log_path(lb, sizeof(lb), prefix, "b");
  pid_t a = esk_tp_start(prefix, "a", la, producer_bound);
  wait_log(la, "partition restored", 30000);
  pid_t b = esk_tp_start(prefix, "b", lb, producer_bound);
  wait_log(la, "partition revoked", 30000); /* b joins: the group rebalances */
  expect_clean_exit(a, la);
  wait_log(lb, "partition restored", 30000);
  expect_clean_exit(b, lb);
  esk_tp_delete_topics(prefix);
}

Test(shutdown, eskctl_events_tail_ends_on_sigterm_within_its_bound, .timeout = 60) {
  esk_test_require_kafka();
  char prefix[128], log[256];
  esk_tp_topics(prefix, sizeof(prefix), "sd_tail", 1);
  esk_tp_log_path(log, sizeof(log), prefix, "tail");
  fill_events(prefix, 3);
  const char *argv[] = {ESK_TEST_ESKCTL_BIN, "events", "tail", "--topic-prefix", prefix,
                        "--from-beginning", NULL};
  setenv("ESK_SHUTDOWN_TIMEOUT_MS", "4000", 1);
  pid_t p = esk_tp_spawn(argv, log);
  wait_log(log, "\"aggregate_id\":\"r-2\"", 30000); /* following, past the third event */
  expect_clean_exit(p, log);
  esk_tp_delete_topics(prefix);
}

/* ----------------------------------------------------------- projector --- */

/* One projector test's names; static so that .fini cleans up after a failed
 * assertion too (PostgreSQL started again: the stack is shared). */
static struct {
  char topic[96], schema[64], group[96], log[160];
  int pg_stopped;
} T;

static void publish(unsigned seed, size_t events) {
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(&bank, seed, 20, events, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, T.topic, 0, events, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

/* Criterion runs the tests of a suite in parallel processes: the projector
 * tests take turns (one stops PostgreSQL, one holds a lock in it). The lock
 * goes with the process (close-on-exec: no child, PostgreSQL started again
 * included, keeps it). */
static void take_turn(void) {
  int fd = open("/tmp/esk-test-shutdown-pg.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  cr_assert_geq(fd, 0, "lock file: %s", strerror(errno));
  cr_assert_eq(flock(fd, LOCK_EX), 0, "flock: %s", strerror(errno));
}

static void proj_init(void) {
  take_turn();
  cr_assert_eq(access(PROJECTOR, X_OK), 0, "%s is not built", PROJECTOR);
  esk_test_topic_and_schema(T.topic, sizeof(T.topic), "esk.test.sd", T.schema, sizeof(T.schema),
                            "esk_test_sd", 2);
  esk_test_unique_name(T.group, sizeof(T.group), "esk.test.sd.group");
  snprintf(T.log, sizeof(T.log), "/tmp/%s.log", T.schema);
  unlink(T.log);
  publish(7, 200);
}

static void proj_fini(void) {
  if (T.pg_stopped) cr_expect_eq(system(STACK " start-pg >/dev/null 2>&1"), 0, "start-pg failed");
  T.pg_stopped = 0;
  esk_test_drop_schema(T.schema);
  esk_test_bank_delete_topics(T.topic);
}

/* esk-projector of account_balances on T's topic, schema and group, its log
 * in @p log (unlinked first). */
static pid_t proj_spawn(const char *log) {
  char a_topic[160], a_schema[96], a_group[160];
  snprintf(a_topic, sizeof(a_topic), "topic=%s", T.topic);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", T.schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", T.group);
  char *argv[] = {PROJECTOR, "--projection", "account_balances", "-X", a_topic, "-X", a_schema,
                  "-X", a_group, "-X", "http.listen=127.0.0.1:0", "-X", "batch.max.ms=50",
                  "-X", "pg.retry.backoff.max.ms=300", "-X", "shutdown.timeout.ms=4000",
                  "-X", "liveness.timeout.ms=2000",
                  "-X", "kafka.consumer.session.timeout.ms=6000", NULL};
  unlink(log);
  pid_t pid = esk_test_spawn(argv, log);
  cr_assert(pid > 0, "fork failed");
  return pid;
}

Test(shutdown, projector_sigterm_during_a_postgresql_retry_exits_0_within_the_bound,
     .init = proj_init, .fini = proj_fini, .timeout = 120) {
  pid_t p = proj_spawn(T.log);
  wait_log(T.log, "partition assigned", 30000);
  cr_assert_eq(system(STACK " stop-pg >/dev/null 2>&1"), 0, "stop-pg failed");
  T.pg_stopped = 1;
  publish(8, 50);
  wait_log(T.log, "msg=\"batch not applied, retrying\"", 30000);
  expect_clean_exit(p, T.log);
}

Test(shutdown, projector_sigterm_during_a_rebalance_exits_0_within_the_bound, .init = proj_init,
     .fini = proj_fini, .timeout = 120) {
  char log_b[200];
  snprintf(log_b, sizeof(log_b), "%s.b", T.log);
  pid_t a = proj_spawn(T.log);
  wait_log(T.log, "partition assigned", 30000);
  pid_t b = proj_spawn(log_b);
  wait_log(T.log, "partition revoked", 30000); /* b joins: the group rebalances */
  expect_clean_exit(a, T.log);
  wait_log(log_b, "partition assigned", 30000);
  expect_clean_exit(b, log_b);
}

/* Waits until a batch has committed a position (the table exists and has a row). */
static void wait_position(PGconn *pg) {
  for (int64_t end = esk_time_mono_ms() + 30000;; esk_time_sleep_ms(50)) {
    PGresult *r = PQexec(pg, "select count(*) from esk_projection_positions");
    int n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    if (n > 0) return;
    cr_assert_lt(esk_time_mono_ms(), end, "no position committed in 30 s (log: %s)", T.log);
  }
}

/* A main loop blocked for good (a statement waiting on a lock the test
 * holds): /healthz turns 503 within liveness.timeout.ms (2 s) naming the
 * wait, and SIGTERM cannot end the batch, so the watchdog ends the process
 * at shutdown.timeout.ms with status 3, naming the wait. */
Test(shutdown, projector_blocked_on_a_postgresql_lock_fails_healthz_then_exits_3_naming_it,
     .init = proj_init, .fini = proj_fini, .timeout = 120) {
  pid_t p = proj_spawn(T.log);
  int port = esk_tp_http_port(T.log, 30000);
  PGconn *pg = esk_test_pg_connect_schema(T.schema);
  wait_position(pg);
  PQclear(PQexec(pg, "begin"));
  PGresult *r = PQexec(pg, "lock table esk_projection_positions in access exclusive mode");
  cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(pg));
  PQclear(r);
  publish(9, 50);
  char body[512] = "";
  int code = 200;
  int64_t t0 = esk_time_mono_ms();
  while ((code = esk_tp_http_get(port, "/healthz", body, sizeof(body))) == 200 &&
         esk_time_mono_ms() - t0 < 10000)
    esk_time_sleep_ms(100);
  cr_expect_eq(code, 503, "/healthz still %d 10 s after the lock (log: %s)", code, T.log);
  cr_expect(strstr(body, "waiting for: PostgreSQL: applying a batch") != NULL, "%s", body);
  int64_t ms = 0;
  int st = sigterm(p, &ms);
  cr_expect_eq(st, 3, "exit status %d after %lld ms (log: %s)", st, (long long)ms, T.log);
  cr_expect_geq(ms, BOUND_MS - 100, "the watchdog waited shutdown.timeout.ms (%lld ms)",
                (long long)ms);
  cr_expect_leq(ms, BOUND_MS + 1000, "ended after %lld ms", (long long)ms);
  cr_expect(esk_tp_file_contains(T.log, "waiting_for=\"PostgreSQL: applying a batch\""), "see %s",
            T.log);
  PQclear(PQexec(pg, "rollback"));
  PQfinish(pg);
}
