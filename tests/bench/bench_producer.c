/* bench_producer [COMMANDS] — esk-producer end to end on the real broker.
 *
 *  1. raw: COMMANDS messages of an event's size produced by a plain idempotent
 *     producer (acks=all), after a warm-up out of the clock: the broker's
 *     limit for this payload, the baseline;
 *  2. 1 instance: COMMANDS commands pre-loaded into a 1-partition commands
 *     topic, then build/bin/esk-producer started; commands/s from the first
 *     committed offset to the last (events + results + snapshots + offsets,
 *     one transaction per batch), and the same including start-up;
 *  3. 2 instances: the same over 2 partitions with two processes;
 *  4. restore of the 1-instance partition (COMMANDS events): with snapshots
 *     and checkpoints as the producer does it, and folding every event; the
 *     aggregate store's memory per account after it (mallinfo2), plain and
 *     packed (store.packed).
 * Accounts: COMMANDS/100 (at least 10; ESK_BENCH_ACCOUNTS: another count),
 * opened first, then deposits.
 * Prints figures and the ratios to the raw rate. Goal (issue 4): >= 50k
 * commands/s end to end on 2 cores and >= 0.25 of the raw rate.
 * Needs the local stack (ESK_KAFKA_BOOTSTRAP); topics are unique per run and
 * deleted at the end. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "aggstore.h"
#include "bank/bank_avro.h"
#include "bench_kafka.h"
#include "bank/bank_domain.h"
#include "domains.h"
#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "restore.h"

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_producer: %s: %s\n", what, msg);
  exit(1);
}

/* The baseline's settings: batches as large as the broker takes them. */
static rd_kafka_t *plain_producer(void) {
  static const char *const kv[] = {"linger.ms", "5", "batch.num.messages", "10000",
                                   "queue.buffering.max.messages", "1000000", NULL};
  return esk_bench_producer("bench_producer", kv);
}

static void send_msg(rd_kafka_t *rk, const char *topic, const char *key, const void *v, size_t n) {
  esk_bench_send("bench_producer", rk, topic, key, v, n);
}

static void create_topics(const char *prefix, int partitions) {
  esk_error_t err = {0};
  esk_topics_t t;
  rd_kafka_t *rk = plain_producer();
  if (esk_topics_init(&t, prefix, "bank", &err)) die("topics", err.msg);
  const char *names[4] = {t.commands, t.events, t.results, t.snapshots};
  for (int i = 0; i < 4; i++)
    if (esk_kafka_create_topic(rk, names[i], partitions, -1,
                               i == 3 ? esk_kafka_snapshots_config : NULL, 15000, NULL, &err))
      die("create topic", err.msg);
  for (int i = 0; i < 4; i++) { /* until the metadata shows them */
    int n = 0;
    for (int w = 0; esk_kafka_partition_count(rk, names[i], 5000, &n, &err) && w < 100; w++)
      esk_time_sleep_ms(100);
  }
  rd_kafka_destroy(rk);
}

static void delete_topics(const char *const *names, int n) {
  rd_kafka_t *rk = plain_producer();
  char errstr[256];
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(o, 10000, errstr, sizeof(errstr));
  rd_kafka_DeleteTopic_t *dt[8];
  for (int i = 0; i < n; i++) dt[i] = rd_kafka_DeleteTopic_new(names[i]);
  rd_kafka_DeleteTopics(rk, dt, (size_t)n, o, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_DeleteTopic_destroy_array(dt, (size_t)n);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}

/* Pre-loads @p n commands: accounts opened first, then deposits. */
static void load_commands(esk_bank_avro_t *avro, const char *prefix, long n, long accounts) {
  esk_error_t err = {0};
  esk_topics_t t;
  esk_buf_t b;
  esk_buf_init(&b, 0);
  if (esk_topics_init(&t, prefix, "bank", &err)) die("topics", err.msg);
  rd_kafka_t *rk = plain_producer();
  char cid[32], acc[32];
  for (long i = 0; i < n; i++) {
    esk_bank_command_t c = {.command_id = cid, .account_id = acc, .actor = "bench",
                            .correlation_id = "bench"};
    snprintf(cid, sizeof(cid), "cmd-%ld", i);
    snprintf(acc, sizeof(acc), "acc-%08ld", i % accounts);
    if (i < accounts) {
      c.type = ESK_BANK_CMD_OPEN_ACCOUNT;
      c.u.open.owner_id = "owner";
      c.u.open.initial_deposit = (esk_bank_money_in_t){100, "EUR"};
    } else {
      c.type = ESK_BANK_CMD_DEPOSIT_MONEY;
      c.u.deposit.amount = (esk_bank_money_in_t){1 + i % 1000, "EUR"};
      c.u.deposit.description = "bench";
    }
    esk_buf_reset(&b);
    if (esk_bank_avro_encode_command(avro, &b, &c, &err)) die("encode", err.msg);
    send_msg(rk, t.commands, acc, b.data, b.len);
  }
  if (rd_kafka_flush(rk, 120000)) die("flush", "commands not acknowledged");
  rd_kafka_destroy(rk);
  esk_buf_free(&b);
}

static double raw_rate(const char *topic, long n, size_t size) {
  char *payload = malloc(size);
  memset(payload, 'v', size);
  rd_kafka_t *rk = plain_producer();
  char key[32];
  /* start-up out of the clock, as the end-to-end figures leave it out: the
   * producer id, metadata, and each partition's leader (a new topic) */
  for (long i = 0; i < 100; i++) {
    snprintf(key, sizeof(key), "warm-%ld", i);
    send_msg(rk, topic, key, payload, size);
  }
  if (rd_kafka_flush(rk, 120000)) die("flush", "warm-up messages not acknowledged");
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++) {
    snprintf(key, sizeof(key), "acc-%08ld", i % 10000);
    send_msg(rk, topic, key, payload, size);
  }
  if (rd_kafka_flush(rk, 120000)) die("flush", "raw messages not acknowledged");
  double secs = esk_time_mono_s() - t0;
  rd_kafka_destroy(rk);
  free(payload);
  return (double)n / secs;
}

static pid_t start_producer(const char *prefix, const char *instance) {
  char a_prefix[256], a_tid[256];
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", prefix);
  snprintf(a_tid, sizeof(a_tid), "transactional.id=%stx.%s", prefix, instance);
  pid_t pid = fork();
  if (pid == 0) {
    const char *lvl = getenv("ESK_BENCH_LOG_LEVEL");
    char a_lvl[64];
    snprintf(a_lvl, sizeof(a_lvl), "log.level=%s", lvl ? lvl : "warn");
    /* ESK_BENCH_PRODUCER_X: one more -X key=value, for tuning experiments;
     * ESK_BENCH_PRODUCER_WRAP: a command the producer runs under, split at
     * spaces (a profiler: "valgrind --tool=callgrind") */
    const char *x = getenv("ESK_BENCH_PRODUCER_X");
    char *wrap = getenv("ESK_BENCH_PRODUCER_WRAP") ? strdup(getenv("ESK_BENCH_PRODUCER_WRAP")) : NULL;
    char *argv[32];
    int n = 0;
    for (char *w = wrap ? strtok(wrap, " ") : NULL; w && n < 20; w = strtok(NULL, " ")) argv[n++] = w;
    const char *rest[] = {ESK_PRODUCER_BIN, "-X", a_prefix, "-X", a_tid, "-X", a_lvl,
                          x && *x ? "-X" : NULL, x, NULL};
    for (int i = 0; rest[i]; i++) argv[n++] = (char *)rest[i];
    argv[n] = NULL;
    execvp(argv[0], argv);
    _exit(127);
  }
  if (pid < 0) die("fork", "failed");
  return pid;
}

static int stop_producer(pid_t pid) {
  int st = 0;
  kill(pid, SIGTERM);
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Polls the group's committed offsets until they reach the end of the
 * commands topic; returns commands/s over the part of the run it saw, from
 * the first answer that showed progress to the end, and in *total_out the
 * commands/s from @p t_start. The first answer counted is one that came
 * within 0.1 s of its ask, dated when the ask began, and the commands it
 * already showed are left out: an ask can block or fail (up to 10 s while the
 * group's coordinator loads), and counting from 0 at a late first answer once
 * made a window of a few seconds read 856k commands/s for 5M. */
static double wait_committed(const char *prefix, int partitions, long n, double t_start,
                             double *total_out) {
  esk_error_t err = {0};
  esk_topics_t t;
  char group[300], errstr[256];
  if (esk_topics_init(&t, prefix, "bank", &err)) die("topics", err.msg);
  snprintf(group, sizeof(group), "%sesk.bank.command-handlers", prefix);
  rd_kafka_conf_t *conf = NULL;
  if (esk_kafka_conf_new(&conf, RD_KAFKA_CONSUMER, NULL, &err) ||
      esk_kafka_conf_set(conf, "group.id", group, &err))
    die("consumer config", err.msg);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (!rk) die("consumer", errstr);
  double first = 0, last_print = esk_time_mono_s();
  long done = 0, base = 0;
  for (;;) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) rd_kafka_topic_partition_list_add(l, t.commands, p);
    done = 0;
    double t_ask = esk_time_mono_s();
    if (!rd_kafka_committed(rk, l, 10000))
      for (int i = 0; i < l->cnt; i++)
        if (l->elems[i].offset > 0) done += l->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(l);
    double tn = esk_time_mono_s();
    if (done > 0 && !first && tn - t_ask < 0.1) { /* a quick answer: dated within 0.1 s */
      first = t_ask;
      base = done;
      if (base > n / 10 && base <= n / 2)
        fprintf(stderr, "  (the first committed offsets seen already count %ld of %ld commands: "
                        "the rate is over the rest)\n", base, n);
    }
    if (done >= n) break;
    if (tn - last_print > 5) {
      fprintf(stderr, "  ... %ld of %ld commands committed\n", done, n);
      last_print = tn;
    }
    if (tn - t_start > 600) die("end to end", "not all commands committed within 600 s");
    esk_time_sleep_ms(50);
  }
  rd_kafka_destroy(rk);
  double end = esk_time_mono_s();
  *total_out = (double)n / (end - t_start);
  /* no quick answer, or one from past half-way: too little of the run to tell its rate */
  return first > 0 && base <= n / 2 && end > first ? (double)(n - base) / (end - first) : -1;
}

/* CPU seconds (user + system) of the children waited for so far. */
static double children_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double end_to_end(esk_bank_avro_t *avro, const char *prefix, int instances, long n,
                         long accounts, double *total_rate, double *cpu_us) {
  create_topics(prefix, instances);
  load_commands(avro, prefix, n, accounts);
  pid_t pids[2];
  double t0 = esk_time_mono_s(), total = 0;
  for (int i = 0; i < instances; i++) pids[i] = start_producer(prefix, i ? "b" : "a");
  double rate = wait_committed(prefix, instances, n, t0, &total);
  double cpu0 = children_cpu();
  for (int i = 0; i < instances; i++)
    if (stop_producer(pids[i])) die("esk-producer", "did not exit 0 on SIGTERM");
  *cpu_us = (children_cpu() - cpu0) * 1e6 / (double)n;
  *total_rate = total;
  return rate;
}

/* One end-to-end figure; @p rate < 0: no answer of the committed offsets came
 * within 0.1 s of its ask before half-way, too late to tell the rate. */
static void print_rate(const char *what, double rate, double raw, double total, double cpu) {
  if (rate < 0)
    printf("%-52s %10s cmd/s  (no quick answer of the committed offsets before half-way; "
           "%.0f/s with start-up; %.1f us CPU/cmd)\n", what, "n/a", total, cpu);
  else
    printf("%-52s %10.0f cmd/s  x%.2f of raw  (%.0f/s with start-up; %.1f us CPU/cmd)\n", what,
           rate, rate / raw, total, cpu);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  if (n < 100 || argc > 2) {
    fprintf(stderr, "usage: bench_producer [COMMANDS >= 100] (default 1000000)\n");
    return 2;
  }
  long accounts = n / 100 < 10 ? 10 : n / 100;
  /* ESK_BENCH_ACCOUNTS: another account count, to tell the cost of more
   * commands from that of more aggregates */
  if (getenv("ESK_BENCH_ACCOUNTS") && atol(getenv("ESK_BENCH_ACCOUNTS")) > 0)
    accounts = atol(getenv("ESK_BENCH_ACCOUNTS"));
  if (accounts > n) accounts = n; /* each is opened by one of the commands */
  esk_error_t err = {0};
  if (esk_kafka_check_broker(NULL, 10000, &err)) die("broker", err.msg);
  esk_bank_avro_t *avro = NULL;
  if (esk_bank_avro_new(&avro, &err)) die("schemas", err.msg);

  /* the payload size of a MoneyDeposited event as the producer writes it */
  esk_bank_event_t ev = {.type = ESK_BANK_EV_MONEY_DEPOSITED, .aggregate_version = 42};
  snprintf(ev.account_id, sizeof(ev.account_id), "acc-00001234");
  ev.u.deposited.amount = (esk_bank_money_t){500, "EUR"};
  snprintf(ev.u.deposited.description, sizeof(ev.u.deposited.description), "bench");
  esk_bank_event_meta_t meta = {"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b", 1767225600123456, "bench",
                                "cmd-123456", "bench"};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  if (esk_bank_avro_encode_event(avro, &b, NULL, &ev, &meta, &err)) die("encode", err.msg);
  size_t size = b.len;
  esk_buf_free(&b);

  char run[64], p1[96], p2[96], raw[128];
  snprintf(run, sizeof(run), "bench_%ld_%ld", (long)getpid(), (long)time(NULL));
  snprintf(p1, sizeof(p1), "%s.one.", run);
  snprintf(p2, sizeof(p2), "%s.two.", run);
  snprintf(raw, sizeof(raw), "%s.raw", run);
  printf("bench_producer: %ld commands, %ld accounts, event payload %zu bytes, librdkafka %s\n",
         n, accounts, size, rd_kafka_version_str());
  printf("(figures are noisy when other work shares the CPU)\n");

  rd_kafka_t *adm = plain_producer();
  if (esk_kafka_create_topic(adm, raw, 2, -1, NULL, 15000, NULL, &err)) die("raw topic", err.msg);
  rd_kafka_destroy(adm);
  double r_raw = raw_rate(raw, n, size);
  printf("%-52s %10.0f msg/s\n", "raw produce (idempotent, acks=all, 2 partitions)", r_raw);

  double tot1 = 0, tot2 = 0, cpu1 = 0, cpu2 = 0;
  double r1 = end_to_end(avro, p1, 1, n, accounts, &tot1, &cpu1);
  print_rate("end to end, 1 instance, 1 partition", r1, r_raw, tot1, cpu1);
  double r2 = end_to_end(avro, p2, 2, n, accounts, &tot2, &cpu2);
  print_rate("end to end, 2 instances, 2 partitions", r2, r_raw, tot2, cpu2);

  /* restore of the 1-instance partition: n events */
  esk_topics_t t;
  rd_kafka_t *reader = NULL;
  esk_domain_inst_t bank;
  if (esk_topics_init(&t, p1, "bank", &err) || esk_kafka_reader_new(&reader, NULL, NULL, &err) ||
      esk_domain_inst_open(&bank, esk_bank_domain(), &err))
    die("reader", err.msg);
  /* 0, 1: with snapshots twice (the first read of a topic can pay for the
   * broker loading it; the figure printed is the second); 2: folding every
   * event; 3: with snapshots into a packed store (store.packed) */
  static const int snaps[4] = {1, 1, 0, 1}, packed[4] = {0, 0, 0, 1};
  double ms[4] = {0}, per_agg[4] = {0};
  esk_restore_stats_t st[4];
  const esk_aggstore_pack_t pack = {bank.d->snapshot_write, bank.d->snapshot_read};
  for (int i = 0; i < 4; i++) {
    esk_aggstore_t *store = NULL;
    size_t heap0 = mallinfo2().uordblks; /* this thread's arena: the store's */
    if (esk_aggstore_new_packed(&store, sizeof(esk_bank_state_t), packed[i] ? &pack : NULL,
                                (size_t)accounts, 0, &err))
      die("store", err.msg);
    esk_restore_target_t tgt = {.domain = bank.d, .self = bank.self, .store = store};
    double t0 = esk_time_mono_s();
    if (esk_restore_partition(&st[i], &tgt, reader, &t, 0, snaps[i], 30000, &err))
      die("restore", err.msg);
    ms[i] = (esk_time_mono_s() - t0) * 1000;
    if (esk_aggstore_count(store) != (size_t)accounts) die("restore", "accounts missing");
    per_agg[i] = (double)(mallinfo2().uordblks - heap0) / (double)accounts;
    esk_aggstore_destroy(store);
  }
  printf("%-52s %10.0f ms  (first read)\n", "restore with snapshots + checkpoint", ms[0]);
  printf("%-52s %10.0f ms  (%lld snapshots read in %.0f ms, %lld events read from offset "
         "%lld in %.0f ms)\n",
         "restore with snapshots + checkpoint", ms[1], (long long)st[1].snapshots,
         st[1].ms_snapshots, (long long)st[1].events_read, (long long)st[1].checkpoint,
         st[1].ms_events);
  printf("%-52s %10.0f ms  (%lld events folded)  x%.1f slower\n", "restore folding every event",
         ms[2], (long long)st[2].events_read, ms[2] / (ms[1] > 0 ? ms[1] : 1));
  printf("%-52s %10.0f ms\n", "restore with snapshots, packed store", ms[3]);
  printf("%-52s %10.0f bytes per account  (%ld accounts; malloc'd in the restoring thread's "
         "arena, state %zu bytes)\n", "aggregate store after the restore", per_agg[2], accounts,
         sizeof(esk_bank_state_t));
  printf("%-52s %10.0f bytes per account  (x%.2f)\n", "packed aggregate store (store.packed)",
         per_agg[3], per_agg[3] / (per_agg[2] > 0 ? per_agg[2] : 1));
  printf("goal: >= 50000 cmd/s end to end and >= 0.25 of raw: 1 instance %s, 2 instances %s\n",
         r1 >= 50000 && r1 / r_raw >= 0.25 ? "met" : "NOT met",
         r2 >= 50000 && r2 / r_raw >= 0.25 ? "met" : "NOT met");
  rd_kafka_destroy(reader);
  esk_domain_inst_close(&bank);
  esk_bank_avro_destroy(avro);

  if (getenv("ESK_BENCH_KEEP_TOPICS")) { /* for inspection after the run */
    printf("topics kept: %s*, %s*, %s\n", p1, p2, raw);
    return 0;
  }
  esk_topics_t t2;
  esk_topics_init(&t2, p2, "bank", &err);
  const char *names[] = {raw, t.commands, t.events, t.results, t.snapshots,
                         t2.commands, t2.events, t2.results};
  delete_topics(names, 8);
  const char *more[] = {t2.snapshots};
  delete_topics(more, 1);
  return 0;
}
