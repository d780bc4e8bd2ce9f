/* bench_latency [SECONDS] [RATE ...] — what a client waits for, open loop.
 *
 * Starts build/bin/esk-producer (or those of $ESK_BENCH_BIN_DIR) and one esk-projector (account_balances) with
 * their defaults, on fresh topics (2 partitions) and a fresh schema, opens
 * ACCOUNTS accounts, then for each RATE (default 2 20 200 2000 10000
 * commands/s) for SECONDS (default 10) each:
 *
 *  1. baseline: plain messages of a command's size, produced at RATE by an
 *     idempotent producer to a 2-partition topic and consumed back
 *     (read_committed) through the same broker, no esk in between;
 *  2. esk: DepositMoney commands produced at RATE to the commands topic, each
 *     timed from its scheduled send time (open loop: a sender that falls
 *     behind does not hide the delay) to its result on the results topic
 *     (read_committed), and to its account's new version in account_balances
 *     (polled from PostgreSQL every POLL_MS; the projector's committed state).
 *
 * Prints p50/p90/p99/max per rate, the producer's commands per transaction
 * (from its /metrics), and the goals of issue 19: result p99 <= 50 ms and
 * visible p99 <= 150 ms at every rate up to 2000/s. Exits 1 when a command
 * gets no result or never becomes visible within 30 s. Needs the local stack. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bank/bank_avro.h"
#include "bench_kafka.h"
#include "bench_util.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "esk_test_http.h"

#define ACCOUNTS 200
#define POLL_MS 2
#define SETTLE_S 30

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_latency: %s: %s\n", what, msg);
  exit(1);
}

/* ------------------------------------------------------------ samples --- */

typedef esk_bench_samples_t samples_t;
#define add_sample esk_bench_add
#define pct esk_bench_pct

static void summary(char *buf, size_t size, samples_t *s) {
  esk_bench_sort(s);
  snprintf(buf, size, "%6.1f %6.1f %6.1f %7.1f", pct(s, 50), pct(s, 90), pct(s, 99),
           s->n ? s->ms[s->n - 1] : NAN);
}

/* -------------------------------------------------------------- state --- */

/* One phase: a rate, its commands (or baseline messages) and their timings. */
typedef struct phase_s {
  int id, baseline;
  long n;                  /* messages to send */
  _Atomic int64_t *due_ns; /* scheduled send time of each; 0: not sent yet */
  atomic_long sent;
  samples_t result, visible; /* guarded by mu */
  atomic_long results, visibles;
} phase_t;

static struct {
  char prefix[96], schema[64], commands[160], results[160], baseline[160], events[160];
  pthread_mutex_t mu;
  phase_t *_Atomic cur;
  atomic_int stop;
  int64_t base_version[ACCOUNTS]; /* each account's version before the phase */
  long next_k[ACCOUNTS];          /* its next deposit of the phase not yet seen */
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Keys are "<kind><phase>-<i>": kind o (open), d (deposit), b (baseline). */
static void record(phase_t *ph, long i, int64_t now, int visible) {
  int64_t due = atomic_load(&ph->due_ns[i]);
  if (!due) return;
  pthread_mutex_lock(&S.mu);
  add_sample(visible ? &ph->visible : &ph->result, (double)(now - due) / 1e6);
  pthread_mutex_unlock(&S.mu);
  atomic_fetch_add(visible ? &ph->visibles : &ph->results, 1);
}

/* ------------------------------------------------------------ clients --- */

static void send_msg(rd_kafka_t *rk, const char *topic, const char *key, const void *v, size_t n) {
  esk_bench_send("bench_latency", rk, topic, key, v, n);
}

/* A read_committed consumer on the results and baseline topics, from their
 * current ends. */
static rd_kafka_t *tail_consumer(void) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256], group[200];
  snprintf(group, sizeof(group), "%slatency", S.prefix);
  if (esk_kafka_conf_new(&conf, RD_KAFKA_CONSUMER, NULL, &err) ||
      esk_kafka_conf_set(conf, "group.id", group, &err) ||
      esk_kafka_conf_set(conf, "enable.auto.commit", "false", &err))
    die("consumer config", err.msg);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (!rk) die("consumer", errstr);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
  const char *topics[] = {S.results, S.baseline};
  for (int t = 0; t < 2; t++)
    for (int p = 0; p < 2; p++) {
      int64_t lo = 0, hi = 0;
      rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topics[t], p, &lo, &hi, 10000);
      if (e) die(topics[t], rd_kafka_err2str(e));
      rd_kafka_topic_partition_list_add(l, topics[t], p)->offset = hi;
    }
  if (rd_kafka_assign(rk, l)) die("assign", S.results);
  rd_kafka_topic_partition_list_destroy(l);
  return rk;
}

static void *tail_thread(void *arg) {
  rd_kafka_t *rk = arg;
  while (!atomic_load(&S.stop)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
    if (!m) continue;
    int64_t now = esk_time_mono_ns();
    phase_t *ph = atomic_load(&S.cur);
    char key[64];
    int id = -1;
    long i = -1;
    char kind = 0;
    if (!m->err && m->key_len < sizeof(key)) {
      memcpy(key, m->key, m->key_len);
      key[m->key_len] = '\0';
      if (sscanf(key, "%c%d-%ld", &kind, &id, &i) != 3) id = -1;
    }
    if (ph && id == ph->id && (kind == 'd' || kind == 'b') && i >= 0 && i < ph->n)
      record(ph, i, now, 0);
    rd_kafka_message_destroy(m);
  }
  return NULL;
}

/* Polls account_balances; a deposit is visible once its account's version
 * reached the one it makes (deposits are all accepted, in order per account). */
static void *visible_thread(void *arg) {
  PGconn *pg = arg;
  char sql[256];
  snprintf(sql, sizeof(sql), "select account_id, version from \"%s\".account_balances", S.schema);
  while (!atomic_load(&S.stop)) {
    phase_t *ph = atomic_load(&S.cur);
    if (!ph || ph->baseline) {
      esk_time_sleep_ms(POLL_MS);
      continue;
    }
    PGresult *r = PQexec(pg, sql);
    int64_t now = esk_time_mono_ns();
    long sent = atomic_load(&ph->sent);
    for (int row = 0; PQresultStatus(r) == PGRES_TUPLES_OK && row < PQntuples(r); row++) {
      int a = atoi(PQgetvalue(r, row, 0) + 1); /* "A<n>" */
      int64_t v = strtoll(PQgetvalue(r, row, 1), NULL, 10);
      if (a < 0 || a >= ACCOUNTS) continue;
      for (long k = S.next_k[a], idx = k * ACCOUNTS + a;
           idx < sent && S.base_version[a] + k + 1 <= v; k++, idx += ACCOUNTS) {
        record(ph, idx, now, 1);
        S.next_k[a] = k + 1;
      }
    }
    PQclear(r);
    esk_time_sleep_ms(POLL_MS);
  }
  return NULL;
}

/* ------------------------------------------------------------ sending --- */

/* Sends @p ph->n messages at @p rate per second, each at its scheduled time. */
static void send_phase(rd_kafka_t *rk, esk_bank_avro_t *avro, phase_t *ph, double rate) {
  esk_error_t err = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  char cid[64], acc[32];
  int64_t t0 = esk_time_mono_ns() + 1000000;
  for (long i = 0; i < ph->n;) {
    int64_t due = t0 + (int64_t)((double)i * 1e9 / rate), now = esk_time_mono_ns();
    if (due > now) {
      struct timespec ts = {due / 1000000000, due % 1000000000};
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
      continue;
    }
    int a = (int)(i % ACCOUNTS);
    snprintf(acc, sizeof(acc), "A%d", a);
    snprintf(cid, sizeof(cid), "%c%d-%ld", ph->baseline ? 'b' : 'd', ph->id, i);
    esk_bank_command_t c = {.type = ESK_BANK_CMD_DEPOSIT_MONEY, .command_id = cid,
                            .account_id = acc, .actor = "bench", .correlation_id = cid};
    c.u.deposit.amount = (esk_bank_money_in_t){1, "EUR"};
    esk_buf_reset(&b);
    if (esk_bank_avro_encode_command(avro, &b, &c, &err)) die("encode", err.msg);
    atomic_store(&ph->due_ns[i], due);
    atomic_store(&ph->sent, i + 1);
    send_msg(rk, ph->baseline ? S.baseline : S.commands, ph->baseline ? cid : acc, b.data, b.len);
    rd_kafka_poll(rk, 0);
    i++;
  }
  esk_buf_free(&b);
}

/* Waits until every message of @p ph has its result (and, for esk, is visible). */
static int settle(const phase_t *ph) {
  int64_t until = esk_time_mono_ns() + (int64_t)SETTLE_S * 1000000000;
  while (esk_time_mono_ns() < until) {
    if (atomic_load(&ph->results) == ph->n && (ph->baseline || atomic_load(&ph->visibles) == ph->n))
      return 0;
    esk_time_sleep_ms(10);
  }
  return -1;
}

/* --------------------------------------------------------- processes --- */

/* A child that dies with the bench (die() leaves no daemon behind). */
static pid_t spawn(char *const argv[], const char *log) {
  return esk_bench_spawn("bench_latency", argv, log);
}

#define stop_child esk_bench_stop

static void run_cmd(const char *cmd) {
  if (system(cmd) != 0) die("command failed", cmd);
}

/* esk-producer's transactions so far, from its /metrics (-1: unknown). */
static double producer_batches(int port) {
  static char body[256 * 1024];
  double v = -1;
  if (esk_tp_http_get(port, "/metrics", body, sizeof(body)) != 200 ||
      !esk_tp_metric(body, "esk_producer_batches_total", &v))
    return -1;
  return v;
}

/* The port of the `http endpoints listening` line in @p log. */
static int log_port(const char *log) { return esk_bench_log_port("bench_latency", log); }

/* ---------------------------------------------------------------- main --- */

static void run_phase(phase_t *ph, rd_kafka_t *rk, esk_bank_avro_t *avro, double rate) {
  ph->due_ns = calloc((size_t)ph->n, sizeof(*ph->due_ns));
  if (!ph->due_ns) die("phase", "out of memory");
  for (int a = 0; a < ACCOUNTS; a++) S.next_k[a] = 0;
  atomic_store(&S.cur, ph);
  send_phase(rk, avro, ph, rate);
  if (settle(ph)) {
    fprintf(stderr, "bench_latency: rate %.0f/s%s: %ld of %ld results, %ld of %ld visible after "
            "%d s\n", rate, ph->baseline ? " (baseline)" : "", atomic_load(&ph->results), ph->n,
            atomic_load(&ph->visibles), ph->n, SETTLE_S);
    exit(1);
  }
  atomic_store(&S.cur, NULL);
  if (!ph->baseline)
    for (long i = 0; i < ph->n; i++) S.base_version[i % ACCOUNTS]++;
}

/* Opens the accounts (phase 0) and waits until all are visible. */
static void open_accounts(rd_kafka_t *rk, esk_bank_avro_t *avro) {
  esk_error_t err = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  phase_t ph = {.id = 0, .n = ACCOUNTS};
  ph.due_ns = calloc(ACCOUNTS, sizeof(*ph.due_ns));
  atomic_store(&S.cur, &ph);
  for (int a = 0; a < ACCOUNTS; a++) {
    char cid[32], acc[32];
    snprintf(cid, sizeof(cid), "d0-%d", a); /* deposit-shaped key: timed like one */
    snprintf(acc, sizeof(acc), "A%d", a);
    S.base_version[a] = 0;
    esk_bank_command_t c = {.type = ESK_BANK_CMD_OPEN_ACCOUNT, .command_id = cid,
                            .account_id = acc, .actor = "bench", .correlation_id = cid};
    c.u.open.owner_id = "bench";
    c.u.open.initial_deposit = (esk_bank_money_in_t){0, "EUR"};
    esk_buf_reset(&b);
    if (esk_bank_avro_encode_command(avro, &b, &c, &err)) die("encode", err.msg);
    atomic_store(&ph.due_ns[a], esk_time_mono_ns());
    atomic_store(&ph.sent, a + 1);
    send_msg(rk, S.commands, acc, b.data, b.len);
  }
  rd_kafka_flush(rk, 10000);
  /* start-up (producer id, group join, restore) is left out of every figure */
  int64_t until = esk_time_mono_ns() + 120 * (int64_t)1000000000;
  while (atomic_load(&ph.visibles) < ACCOUNTS || atomic_load(&ph.results) < ACCOUNTS) {
    if (esk_time_mono_ns() > until) die("start-up", "accounts not opened and visible within 120 s");
    esk_time_sleep_ms(20);
  }
  atomic_store(&S.cur, NULL);
  for (int a = 0; a < ACCOUNTS; a++) S.base_version[a] = 1;
  free(ph.due_ns);
  free(ph.result.ms);
  free(ph.visible.ms);
  esk_buf_free(&b);
}

/* The command line: SECONDS and the RATEs. @returns -1 to go on, else the
 * exit status. */
static int parse_args(int argc, char **argv, double *seconds, double rates[16], int *nrates) {
  static const double dflt[] = {2, 20, 200, 2000, 10000};
  *seconds = argc > 1 ? atof(argv[1]) : 10;
  *nrates = 5;
  memcpy(rates, dflt, sizeof(dflt));
  if (argc > 2) {
    *nrates = 0;
    for (int i = 2; i < argc && *nrates < 16; i++) rates[(*nrates)++] = atof(argv[i]);
  }
  if (*seconds <= 0 || argc > 18) {
    fprintf(stderr, "usage: bench_latency [SECONDS > 0] [RATE ...] (default 10 s; rates 2 20 200 "
                    "2000 10000 commands/s)\n");
    return 2;
  }
  for (int i = 0; i < *nrates; i++)
    if (rates[i] <= 0 || rates[i] > 100000) die("rate", "must be in (0, 100000] commands/s");
  return -1;
}

/* This run's topics (created, with the baseline's) and schema, named in S. */
static void name_run(const char *bin, rd_kafka_t *rk) {
  esk_error_t err = {0};
  char cmd[1024];
  long run = (long)getpid();
  snprintf(S.prefix, sizeof(S.prefix), "latency_%ld_%ld.", run, (long)time(NULL));
  snprintf(S.schema, sizeof(S.schema), "latency_%ld_%ld", run, (long)time(NULL));
  esk_kafka_topic_name(S.commands, sizeof(S.commands), S.prefix, "bank", "commands", &err);
  esk_kafka_topic_name(S.results, sizeof(S.results), S.prefix, "bank", "command-results", &err);
  esk_kafka_topic_name(S.events, sizeof(S.events), S.prefix, "bank", "events", &err);
  snprintf(S.baseline, sizeof(S.baseline), "%sbaseline", S.prefix);
  snprintf(cmd, sizeof(cmd), "%s/eskctl topics create --topic-prefix '%s' --partitions 2 "
           ">/dev/null", bin, S.prefix);
  run_cmd(cmd);
  if (esk_kafka_create_topic(rk, S.baseline, 2, -1, NULL, 15000, NULL, &err))
    die("baseline topic", err.msg);
}

/* The daemons measured, from @p bin, with their logs. */
typedef struct {
  pid_t prod, proj;
  char plog[256], jlog[256];
  int port; /* esk-producer's HTTP port */
} daemons_t;

/* esk-producer with its defaults (and $ESK_BENCH_PRODUCER_X: more -X
 * key=value, space-separated, for tuning experiments) and esk-projector of
 * account_balances. */
static void start_daemons(daemons_t *d, const char *bin) {
  static char prod_bin[512], proj_bin[512], a_pre[160], a_tid[200], a_topic[200], a_schema[100],
      a_group[200], px[512];
  snprintf(prod_bin, sizeof(prod_bin), "%s/esk-producer", bin);
  snprintf(proj_bin, sizeof(proj_bin), "%s/esk-projector", bin);
  snprintf(d->plog, sizeof(d->plog), "/tmp/%sproducer.log", S.prefix);
  snprintf(d->jlog, sizeof(d->jlog), "/tmp/%sprojector.log", S.prefix);
  snprintf(a_pre, sizeof(a_pre), "topic.prefix=%s", S.prefix);
  snprintf(a_tid, sizeof(a_tid), "transactional.id=%stx", S.prefix);
  snprintf(a_topic, sizeof(a_topic), "topic=%s", S.events);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", S.schema);
  snprintf(a_group, sizeof(a_group), "group.id=%sbalances", S.prefix);
  char *pargv[32] = {prod_bin, "-X", a_pre, "-X", a_tid, "-X", "http.listen=127.0.0.1:0"};
  snprintf(px, sizeof(px), "%s", getenv("ESK_BENCH_PRODUCER_X") ? getenv("ESK_BENCH_PRODUCER_X") : "");
  int pn = 7;
  for (char *sv = NULL, *kv = strtok_r(px, " ", &sv); kv && pn < 29; kv = strtok_r(NULL, " ", &sv)) {
    pargv[pn++] = "-X";
    pargv[pn++] = kv;
  }
  char *jargv[] = {proj_bin, "--projection", "account_balances",
                   "-X", a_topic, "-X", a_schema, "-X", a_group, "-X", "log.level=warn", NULL};
  d->prod = spawn(pargv, d->plog);
  d->proj = spawn(jargv, d->jlog);
  d->port = log_port(d->plog);
}

/* One rate: the baseline, then esk, and a line of the table. @returns 1
 * when the rate has a goal and misses it. */
static int measure_rate(int r, double rate, double seconds, rd_kafka_t *rk,
                        esk_bank_avro_t *avro, int port) {
  long n = (long)(rate * seconds);
  if (n < 1) n = 1;
  phase_t base = {.id = 2 * r + 1, .baseline = 1, .n = n};
  phase_t esk = {.id = 2 * r + 2, .n = n};
  run_phase(&base, rk, avro, rate);
  double b0 = producer_batches(port);
  run_phase(&esk, rk, avro, rate);
  double txns = producer_batches(port) - b0;
  char sb[64], sr[64], sv[64];
  summary(sb, sizeof(sb), &base.result);
  summary(sr, sizeof(sr), &esk.result);
  summary(sv, sizeof(sv), &esk.visible);
  const char *goal = "-";
  int missed = 0;
  if (rate <= 2000) {
    missed = !(pct(&esk.result, 99) <= 50 && pct(&esk.visible, 99) <= 150);
    goal = missed ? "NOT met" : "met";
  }
  printf("%8.0f | %-30s | %-30s | %-30s | %8.1f | %s\n", rate, sb, sr, sv,
         txns > 0 ? (double)n / txns : NAN, goal);
  fflush(stdout);
  free(base.due_ns);
  free(esk.due_ns);
  free(base.result.ms);
  free(esk.result.ms);
  free(esk.visible.ms);
  return missed;
}

int main(int argc, char **argv) {
  double seconds, rates[16];
  int nrates, st = parse_args(argc, argv, &seconds, rates, &nrates);
  if (st >= 0) return st;
  esk_error_t err = {0};
  if (esk_kafka_check_broker(NULL, 10000, &err)) die("broker", err.msg);
  const char *ci = getenv("ESK_PG_CONNINFO");
  PGconn *pg = PQconnectdb(ci ? ci : "host=127.0.0.1 port=35432 user=esk dbname=esk");
  if (PQstatus(pg) != CONNECTION_OK) die("postgresql", PQerrorMessage(pg));
  esk_bank_avro_t *avro = NULL;
  if (esk_bank_avro_new(&avro, &err)) die("schemas", err.msg);
  /* ESK_BENCH_BIN_DIR: the binaries of another build (today's, for a before
   * and after in one run) */
  const char *bin = getenv("ESK_BENCH_BIN_DIR") ? getenv("ESK_BENCH_BIN_DIR") : ESK_BINARY_DIR "/bin";
  rd_kafka_t *rk = esk_bench_producer("bench_latency", NULL);
  name_run(bin, rk);
  daemons_t d;
  start_daemons(&d, bin);

  pthread_t tt, vt;
  rd_kafka_t *tail = tail_consumer();
  pthread_create(&tt, NULL, tail_thread, tail);
  pthread_create(&vt, NULL, visible_thread, pg);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("bench_latency: %.0f s per rate, %d accounts, 2 partitions, esk-producer and "
         "esk-projector of %s with their defaults, librdkafka %s\n",
         seconds, ACCOUNTS, bin, rd_kafka_version_str());
  printf("(ms from the scheduled send; visible: polled every %d ms; figures are noisy when other "
         "work shares the CPU)\n", POLL_MS);
  open_accounts(rk, avro);
  /* the baseline topic's first messages wait for its metadata: not measured */
  phase_t warm = {.id = 2 * nrates + 1, .baseline = 1, .n = 20};
  run_phase(&warm, rk, avro, 100);
  free(warm.due_ns);
  free(warm.result.ms);

  printf("%8s | %-30s | %-30s | %-30s | %8s | %s\n", "rate/s", "baseline p50 p90 p99 max",
         "result p50 p90 p99 max", "visible p50 p90 p99 max", "cmd/txn", "goal");
  int missed = 0;
  for (int r = 0; r < nrates; r++) missed += measure_rate(r, rates[r], seconds, rk, avro, d.port);
  printf("goal (issue 19): result p99 <= 50 ms and visible p99 <= 150 ms up to 2000/s: %s\n",
         missed ? "NOT met" : "met");

  atomic_store(&S.stop, 1);
  pthread_join(tt, NULL);
  pthread_join(vt, NULL);
  int pst = stop_child(d.prod), jst = stop_child(d.proj);
  rd_kafka_consumer_close(tail);
  rd_kafka_destroy(tail);
  rd_kafka_destroy(rk);
  esk_bank_avro_destroy(avro);
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "set client_min_messages = warning; drop schema if exists \"%s\" "
           "cascade", S.schema);
  PQclear(PQexec(pg, cmd));
  PQfinish(pg);
  if (pst || jst) {
    fprintf(stderr, "bench_latency: esk-producer exited %d, esk-projector %d on SIGTERM (logs: %s, "
            "%s)\n", pst, jst, d.plog, d.jlog);
    return 1;
  }
  if (getenv("ESK_BENCH_KEEP_LOGS")) /* for a timeline of where the time goes */
    printf("logs kept: %s %s\n", d.plog, d.jlog);
  else {
    unlink(d.plog);
    unlink(d.jlog);
  }
  return 0;
}
