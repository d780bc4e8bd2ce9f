/* esk-projector's HTTP endpoints (the real binary as a child process, the
 * real broker and PostgreSQL): /metrics scraped and parsed while events are
 * applied (counts equal to what was published, lag 0 once caught up although
 * every transaction leaves a commit marker), /readyz not ready while the lag
 * is above ready.max.lag.events and ready after catch-up,
 * not ready naming PostgreSQL while it is stopped (with the lag of the
 * events published meanwhile visible), ready again once it is back.
 * Own topic, group and PostgreSQL schema. Stops the shared PostgreSQL for a
 * few seconds (deploy/local/stack stop-pg / start-pg). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "esk/kafka.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_bank.h"

#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"
#define STACK ESK_SOURCE_DIR "/deploy/local/stack"
#define PROJ "account_balances"

static char topic[96], schema[64], group[96], logpath[160];
static pid_t child;
static int pg_stopped;

static void setup(void) {
  cr_assert_eq(access(PROJECTOR, X_OK), 0, "%s is not built", PROJECTOR);
  esk_test_topic_and_schema(topic, sizeof(topic), "esk.test.e2e.http", schema, sizeof(schema),
                            "esk_test_e2e_http", 3);
  esk_test_unique_name(group, sizeof(group), "esk.test.e2e.http.group");
  snprintf(logpath, sizeof(logpath), "/tmp/%s.log", schema);
}

static void start_pg(void) {
  if (!pg_stopped) return;
  cr_expect_eq(system(STACK " start-pg >/dev/null 2>&1"), 0, "%s start-pg failed", STACK);
  pg_stopped = 0;
}

static void teardown(void) {
  start_pg(); /* whatever failed: the stack is shared */
  if (child > 0) {
    int st;
    kill(child, SIGKILL);
    waitpid(child, &st, 0);
  }
  esk_test_drop_schema(schema);
  esk_test_bank_delete_topics(topic);
}

static pid_t spawn(void) {
  char a_topic[160], a_schema[96], a_group[160];
  snprintf(a_topic, sizeof(a_topic), "topic=%s", topic);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  char *argv[] = {PROJECTOR, "--projection", PROJ, "-X", a_topic, "-X", a_schema, "-X", a_group,
                  "-X", "http.listen=127.0.0.1:0", "-X", "batch.max.ms=50",
                  "-X", "pg.check.interval.ms=300", "-X", "pg.retry.backoff.max.ms=300",
                  "-X", "progress.interval.ms=1000", "-X", "batch.max.events=20",
                  "-X", "ready.max.lag.events=100", NULL};
  unlink(logpath); /* find_port() reads this run's line */
  pid_t pid = esk_test_spawn(argv, logpath);
  cr_assert(pid > 0, "fork failed");
  return pid;
}

/* The port from `fac=http msg="http endpoints listening" addr=127.0.0.1:PORT`. */
static int find_port(void) {
  for (int i = 0; i < 100; i++) {
    FILE *f = fopen(logpath, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
      const char *a = strstr(line, "msg=\"http endpoints listening\" addr=127.0.0.1:");
      if (a) {
        fclose(f);
        return atoi(strchr(a, ':') + 1);
      }
    }
    if (f) fclose(f);
    esk_time_sleep_ms(100);
  }
  cr_assert_fail("no 'http endpoints listening' line in %s", logpath);
  return 0;
}

/* GET @p path; the status (-1: no answer) and the body in @p body. */
static int http_get(int port, const char *path, char *body, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  body[0] = '\0';
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char req[256], *resp = malloc(1 << 20);
  size_t n = 0;
  int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     path);
  if (resp && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      write(fd, req, (size_t)len) == len) {
    ssize_t r;
    while (n < (1 << 20) - 1 && (r = read(fd, resp + n, (1 << 20) - 1 - n)) > 0) n += (size_t)r;
    resp[n] = '\0';
    const char *b = strstr(resp, "\r\n\r\n");
    if (sscanf(resp, "HTTP/1.%*d %d", &status) == 1 && b) snprintf(body, size, "%s", b + 4);
  }
  free(resp);
  close(fd);
  return status;
}

/* The value of the sample `<name>{<labels>}` (labels exactly as rendered)
 * in a scrape; -1 when absent. */
static double sample(const char *scrape, const char *name, const char *labels) {
  char key[256];
  snprintf(key, sizeof(key), "\n%s{%s} ", name, labels);
  const char *s = strstr(scrape, key);
  return s ? strtod(s + strlen(key), NULL) : -1;
}

static char scrape[1 << 20];

static void get_metrics(int port) {
  cr_assert_eq(http_get(port, "/metrics", scrape, sizeof(scrape)), 200, "GET /metrics (log: %s)",
               logpath);
}

static double lag_sum(int port, int *found) {
  double total = 0;
  *found = 0;
  get_metrics(port);
  for (int i = 0; i < 3; i++) {
    char l[128];
    snprintf(l, sizeof(l), "projection=\"" PROJ "\",partition=\"%d\"", i);
    double v = sample(scrape, "esk_projector_lag_events", l);
    if (v >= 0) {
      total += v;
      (*found)++;
    }
  }
  return total;
}

/* Publishes events [from, to) in one transaction (leaving commit markers). */
static void publish_tx(esk_test_bank_t *bank, rd_kafka_t *prod, size_t from, size_t to) {
  esk_error_t err = {0};
  rd_kafka_error_t *e = rd_kafka_begin_transaction(prod);
  cr_assert_null(e, "begin_transaction: %s", e ? rd_kafka_error_string(e) : "");
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, from, to, &err), ESK_OK, "%s", err.msg);
  e = rd_kafka_commit_transaction(prod, 30000);
  cr_assert_null(e, "commit_transaction: %s", e ? rd_kafka_error_string(e) : "");
}

#define L "projection=\"" PROJ "\""

Test(projector_http, metrics_and_readiness_through_catch_up_and_a_postgresql_outage,
     .init = setup, .fini = teardown, .timeout = 90) {
  const size_t n1 = 3000, n2 = 600;
  esk_test_bank_t *bank = NULL;
  rd_kafka_conf_t *kc = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  char errstr[256], txid[128], body[4096];
  cr_assert_eq(esk_test_bank_new(&bank, 21, 80, n1 + n2, &err), ESK_OK, "%s", err.msg);
  snprintf(txid, sizeof(txid), "%s.tx", topic);
  cr_assert_eq(esk_kafka_conf_new(&kc, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_conf_set(kc, "transactional.id", txid, &err), ESK_OK, "%s", err.msg);
  cr_assert_not_null(prod = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr)), "%s",
                     errstr);
  rd_kafka_error_t *e = rd_kafka_init_transactions(prod, 30000);
  cr_assert_null(e, "init_transactions: %s", e ? rd_kafka_error_string(e) : "");
  publish_tx(bank, prod, 0, n1 / 2);
  publish_tx(bank, prod, n1 / 2, n1);

  child = spawn();
  int port = find_port();
  cr_assert_gt(port, 0);
  cr_expect_eq(http_get(port, "/healthz", body, sizeof(body)), 200);

  /* Catch-up in batches of 20: not ready while the lag is above 100 (the
   * reason says so); then every published event applied and lag 0 on every
   * partition (each ends with a commit marker: hw - next offset would read 1). */
  double applied = -1, lag = -1;
  int found = 0, lag_not_ready = 0;
  for (int i = 0; i < 1500; i++) {
    if (http_get(port, "/readyz", body, sizeof(body)) == 503 &&
        strstr(body, "above ready.max.lag.events=100"))
      lag_not_ready++;
    lag = lag_sum(port, &found);
    applied = sample(scrape, "esk_projector_events_applied_total", L);
    if (applied == (double)n1 && found == 3 && lag == 0) break;
    esk_time_sleep_ms(20);
  }
  cr_expect_gt(lag_not_ready, 0, "/readyz never said the lag was above ready.max.lag.events "
                                 "during catch-up (log: %s)", logpath);
  cr_assert_eq(applied, (double)n1, "events_applied_total %.0f, published %zu (log: %s)", applied,
               n1, logpath);
  cr_assert_eq(found, 3, "lag_events series for %d of 3 partitions", found);
  cr_assert_eq(lag, 0, "lag_events sums to %.0f after catch-up (log: %s)", lag, logpath);
  for (int i = 0; i < 3; i++) {
    char l[128];
    snprintf(l, sizeof(l), L ",partition=\"%d\"", i);
    cr_expect_eq(sample(scrape, "esk_projector_lag_seconds", l), 0, "lag_seconds partition %d", i);
  }
  double batches = sample(scrape, "esk_projector_batches_total", L);
  cr_expect_geq(batches, 1);
  cr_expect_eq(sample(scrape, "esk_projector_batch_duration_seconds_count", L), batches,
               "one duration observation per batch");
  cr_expect_gt(sample(scrape, "esk_projector_batch_duration_seconds_sum", L), 0);
  cr_expect_eq(sample(scrape, "esk_projector_assigned_partitions", L), 3);
  cr_expect_eq(sample(scrape, "esk_projector_duplicates_skipped_total", L), 0);
  /* 80 accounts over 150-odd batches: each account's version read once, the
   * version cache holding it after (one read per batch and account without) */
  double vread = sample(scrape, "esk_projector_versions_read_total", L);
  cr_expect(vread >= 1 && vread <= 80, "versions_read_total %.0f, 80 accounts", vread);
  cr_expect_eq(sample(scrape, "esk_projector_pg_retries_total", L), 0);
  cr_expect_null(strstr(scrape, "\nesk_projector_dead_letters_total{"), "no dead letters");
  cr_expect_not_null(strstr(scrape, "# TYPE esk_projector_batch_duration_seconds histogram"));
  int st = 0;
  for (int i = 0; i < 50 && (st = http_get(port, "/readyz", body, sizeof(body))) != 200; i++)
    esk_time_sleep_ms(100);
  cr_assert_eq(st, 200, "/readyz after catch-up: %d %s", st, body);
  cr_expect_eq(strncmp(body, "ready", 5), 0, "%s", body);

  /* Outage: not ready, naming PostgreSQL; events published meanwhile show as lag. */
  cr_assert_eq(system(STACK " stop-pg >/dev/null 2>&1"), 0, "%s stop-pg failed", STACK);
  pg_stopped = 1;
  for (int i = 0; i < 50 && (st = http_get(port, "/readyz", body, sizeof(body))) == 200; i++)
    esk_time_sleep_ms(100);
  cr_expect_eq(st, 503, "/readyz with PostgreSQL stopped: %d %s", st, body);
  cr_expect_not_null(strstr(body, "PostgreSQL"), "reason does not name PostgreSQL: %s", body);
  publish_tx(bank, prod, n1, n1 + n2);
  for (int i = 0; i < 50 && (lag = lag_sum(port, &found)) < (double)n2; i++) esk_time_sleep_ms(100);
  cr_expect_geq(lag, (double)n2, "lag_events %.0f during the outage, %zu published", lag, n2);
  cr_expect_eq(http_get(port, "/readyz", body, sizeof(body)), 503, "%s", body);
  start_pg();

  /* Back: ready again, everything applied, lag 0, the retries counted. */
  for (int i = 0; i < 200; i++) {
    lag = lag_sum(port, &found);
    applied = sample(scrape, "esk_projector_events_applied_total", L);
    st = http_get(port, "/readyz", body, sizeof(body));
    if (st == 200 && applied == (double)(n1 + n2) && lag == 0) break;
    esk_time_sleep_ms(100);
  }
  cr_expect_eq(st, 200, "/readyz after PostgreSQL returned: %d %s (log: %s)", st, body, logpath);
  cr_expect_eq(applied, (double)(n1 + n2), "events_applied_total %.0f, published %zu", applied,
               n1 + n2);
  cr_expect_eq(lag, 0, "lag_events %.0f after recovery", lag);
  cr_expect_geq(sample(scrape, "esk_projector_pg_retries_total", L), 1);

  kill(child, SIGTERM);
  int exited = 0;
  for (int i = 0; i < 300 && !(exited = waitpid(child, &st, WNOHANG) == child); i++) esk_time_sleep_ms(100);
  cr_expect(exited && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "esk-projector did not exit 0 within 30 s of SIGTERM");
  if (exited) child = 0;
  PGconn *pg = esk_test_pg_connect_schema(schema);
  cr_expect_eq(esk_test_bank_check(bank, pg, PROJ, n1 + n2, &err), ESK_OK, "%s", err.msg);
  PQfinish(pg);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}
