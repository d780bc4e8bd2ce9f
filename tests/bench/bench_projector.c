/* bench_projector [EVENTS] — the projector end to end on the local stack
 * (Kafka + PostgreSQL), EVENTS bank events (default 1000000) over EVENTS/100
 * accounts (ESK_BENCH_ACCOUNTS: another count), published with the codec to a
 * fresh topic. Side by side in one run:
 *
 *   batched   account_balances + transaction_history projectors (two
 *             consumer groups, run at once) from offset 0 until both applied
 *             every event: events/s end to end;
 *   naive     one PostgreSQL transaction per event (balance upsert + history
 *             insert), as the seed designs esk started from do, on the first
 *             min(EVENTS, 20000) events (docs/architecture.md, "Read side");
 *   raw COPY  the same rows (the history rows and the balance rows the batched
 *             run produced) COPYed into empty copies of the same tables in the
 *             same PostgreSQL: the limit;
 *   all four  the four read models built at once from the same topic.
 *
 * Goals (issue 5): >= 50k events/s batched, >= 20x naive, >= 0.2 of raw COPY,
 * all four models from 1M events in <= 30 s. Each run uses its own topic,
 * groups and PostgreSQL schemas, dropped at the end. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bank_decoder.h"
#include "bank_projection.h"
#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "esk_test_bank.h"
#include "projections.h"
#include "projector.h"

#define N_PARTS 3

static void die(const char *what, const esk_error_t *err) {
  fprintf(stderr, "bench_projector: %s: %s\n", what, err ? err->msg : "failed");
  exit(1);
}

static char topic[128], tag[24];

static void unique(char *buf, size_t size, const char *prefix) {
  snprintf(buf, size, "%s_%s", prefix, tag);
}

/* ------------------------------------------------------------ projectors --- */

static esk_test_projector_t *start(const char *name, const char *schema) {
  esk_test_projector_t *t = NULL;
  esk_error_t err = {0};
  char group[160];
  snprintf(group, sizeof(group), "esk.bench.%s.%s", schema, name);
  const char *batch = getenv("ESK_BENCH_BATCH");
  /* ESK_BENCH_PROJECTOR_X=key=value: one more setting, for tuning experiments */
  const char *x = getenv("ESK_BENCH_PROJECTOR_X");
  static char xk[128];
  const char *xv = x && strchr(x, '=') ? strchr(x, '=') + 1 : NULL;
  if (xv) snprintf(xk, sizeof(xk), "%.*s", (int)(xv - 1 - x), x);
  const char *kv[7] = {"progress.interval.ms", "5000"};
  int k = 2;
  if (batch) kv[k++] = "batch.max.events", kv[k++] = batch;
  if (xv) kv[k++] = xk, kv[k++] = xv;
  if (esk_test_projector_start(&t, name, topic, schema, group, 0, kv, &err)) die(name, &err);
  return t;
}

/* 1 when projection @p name in @p schema has no index left to build (a fill
 * from scratch builds its deferred indexes once caught up). */
static int indexes_built(PGconn *pg, const char *schema, const char *name) {
  char sql[200];
  snprintf(sql, sizeof(sql),
           "select count(*) from \"%s\".esk_projection_deferred where projection = $1", schema);
  PGresult *r = NULL;
  esk_error_t err = {0};
  if (esk_pg_exec(&r, pg, "deferred indexes", sql, 1, &name, &err)) die("deferred", &err);
  int built = !strcmp(PQgetvalue(r, 0, 0), "0");
  PQclear(r);
  return built;
}

/* A checkpoint before each timed phase, so that the dirty pages and WAL of
 * the one before are not written during it (a full run's all-four phase came
 * after the raw COPY's and took 13.3 s against 10.3-11.9 s alone). Needs the
 * pg_checkpoint role or a superuser: without, the phases run unsettled. */
static void settle(void) {
  static int warned;
  esk_error_t err = {0};
  PGconn *pg = NULL;
  if (esk_pg_connect(&pg, NULL, &err) ||
      esk_pg_exec(NULL, pg, "checkpoint", "checkpoint", 0, NULL, &err)) {
    if (!warned++) fprintf(stderr, "bench_projector: no checkpoint between phases: %s\n", err.msg);
  }
  PQfinish(pg);
}

/* The CPU seconds this process has used, all threads: the projectors run
 * here, so a phase's share tells their work apart from PostgreSQL's and from
 * waiting (wall time on two shared cores varies by 5-10% from run to run). */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Starts the named projections at once in @p schema; returns the seconds
 * until every one applied @p n events and built its indexes. */
static double build(const char *const *names, int k, const char *schema, int64_t n) {
  esk_test_projector_t *runs[4];
  esk_error_t err = {0};
  PGconn *pg = NULL;
  settle();
  if (esk_pg_connect(&pg, NULL, &err)) die("connect", &err);
  double t0 = esk_time_mono_s(), c0 = cpu_s(), each[4] = {0};
  for (int i = 0; i < k; i++) runs[i] = start(names[i], schema);
  for (;;) {
    int done = 1;
    for (int i = 0; i < k; i++) {
      esk_projector_stats_t s;
      if (esk_test_projector_stats(runs[i], &s, &err)) die(names[i], &err);
      if (s.applied + s.skipped + s.dead < n || !indexes_built(pg, schema, names[i])) done = 0;
      else if (!each[i]) each[i] = esk_time_mono_s() - t0;
    }
    if (done) break;
    esk_time_sleep_ms(20);
  }
  PQfinish(pg);
  double secs = esk_time_mono_s() - t0;
  printf("  (done after:");
  for (int i = 0; i < k; i++) printf(" %s %.1f s", names[i], each[i]);
  printf("; the projectors' process used %.2f s of CPU)\n", cpu_s() - c0);
  for (int i = 0; i < k; i++)
    if (esk_test_projector_stop(runs[i], NULL, &err)) die(names[i], &err);
  return secs;
}

/* ----------------------------------------------------------------- naive --- */

static PGconn *connect_schema(const char *schema) {
  esk_error_t err = {0};
  PGconn *pg = NULL;
  char sql[200];
  if (esk_pg_connect(&pg, NULL, &err)) die("connect", &err);
  snprintf(sql, sizeof(sql), "create schema if not exists \"%s\"; set search_path to \"%s\"",
           schema, schema);
  if (esk_pg_exec(NULL, pg, "schema", sql, 0, NULL, &err)) die("schema", &err);
  return pg;
}

static void exec(PGconn *pg, const char *sql, int n, const char *const *params) {
  esk_error_t err = {0};
  if (esk_pg_exec(NULL, pg, sql, sql, n, params, &err)) die("naive", &err);
}

/* Reads the first @p n events of the topic and applies each in its own
 * transaction, as the seed designs do (a balance statement, a history insert
 * with the balance read back, commit). */
static double naive(const char *schema, int64_t n) {
  PGconn *pg = connect_schema(schema);
  exec(pg, esk_bank_account_balances_spec.migrations[0], 0, NULL);
  exec(pg, esk_bank_transaction_history_spec.migrations[0], 0, NULL);
  esk_error_t err = {0};
  esk_bank_decoder_t *dec = NULL;
  rd_kafka_conf_t *kc = NULL;
  char errstr[256];
  if (esk_bank_decoder_new(&dec, NULL, &err) ||
      esk_kafka_conf_new(&kc, RD_KAFKA_CONSUMER, NULL, &err) ||
      esk_kafka_conf_set(kc, "group.id", schema, &err) ||
      esk_kafka_conf_set(kc, "isolation.level", "read_committed", &err))
    die("naive consumer", &err);
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
  if (!c) die(errstr, NULL);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(N_PARTS);
  for (int i = 0; i < N_PARTS; i++)
    rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(c, l);
  rd_kafka_topic_partition_list_destroy(l);
  int64_t done = 0;
  double t0 = esk_time_mono_s();
  while (done < n) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1000);
    if (!m) continue;
    esk_event_t ev = {0};
    if (m->err || esk_bank_decode(dec, m, &ev, &err)) {
      rd_kafka_message_destroy(m);
      continue;
    }
    const esk_bank_event_t *b = ev.payload;
    const esk_bank_money_t *money = esk_bank_event_money(b);
    int64_t b_amount = money ? money->minor_units : 0;
    const char *b_currency = money ? money->currency : "";
    char amount[24], ver[24], ts[24];
    snprintf(amount, sizeof(amount), "%" PRId64,
             b->type == ESK_BANK_EV_MONEY_WITHDRAWN ? -b_amount : b_amount);
    snprintf(ver, sizeof(ver), "%" PRId64, ev.aggregate_version);
    snprintf(ts, sizeof(ts), "%" PRId64, ev.occurred_at_us);
    exec(pg, "begin", 0, NULL);
    if (b->type == ESK_BANK_EV_ACCOUNT_OPENED) {
      const char *p[] = {ev.aggregate_id, b->u.opened.owner_id, amount, b_currency, ver, ts};
      exec(pg, "insert into account_balances (account_id, owner_id, balance, currency, status, "
               "version, opened_at, updated_at) values ($1, $2, $3::bigint, $4, 'open', "
               "$5::bigint, to_timestamp($6::bigint / 1000000.0), to_timestamp($6::bigint / "
               "1000000.0)) on conflict do nothing", 6, p);
    } else {
      const char *p[] = {ev.aggregate_id, amount, ver, ts};
      exec(pg, "update account_balances set balance = balance + $2::bigint, version = "
               "$3::bigint, updated_at = to_timestamp($4::bigint / 1000000.0) "
               "where account_id = $1", 4, p);
    }
    if (b->type != ESK_BANK_EV_ACCOUNT_CLOSED && !(b->type == ESK_BANK_EV_ACCOUNT_OPENED && !b_amount)) {
      const char *kind = b->type == ESK_BANK_EV_ACCOUNT_OPENED ? "opening"
                         : b->type == ESK_BANK_EV_MONEY_DEPOSITED ? "deposit" : "withdrawal";
      snprintf(amount, sizeof(amount), "%" PRId64, b_amount);
      const char *p[] = {ev.event_id, ev.aggregate_id, ver, kind, amount, b_currency,
                         b->type == ESK_BANK_EV_MONEY_DEPOSITED ? b->u.deposited.description : "",
                         ts};
      exec(pg, "insert into transaction_history (event_id, account_id, version, kind, amount, "
               "currency, description, balance_after, occurred_at) select $1::uuid, $2, "
               "$3::bigint, $4, $5::bigint, $6, $7, balance, to_timestamp($8::bigint / 1000000.0) "
               "from account_balances where account_id = $2", 8, p);
    }
    exec(pg, "commit", 0, NULL);
    done++;
    rd_kafka_message_destroy(m);
  }
  double secs = esk_time_mono_s() - t0;
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  esk_bank_decoder_destroy(dec);
  PQfinish(pg);
  return secs;
}

/* -------------------------------------------------------------- raw COPY --- */

/* COPYs @p table from schema @p from out to memory, then into an empty copy
 * of it in @p to; returns the seconds of the COPY in. */
static double copy_table(const char *from, const char *to, const char *table,
                         const char *migration, size_t *rows) {
  PGconn *src = connect_schema(from), *dst = connect_schema(to);
  esk_error_t err = {0};
  char sql[256];
  esk_buf_t buf;
  esk_buf_init(&buf, (size_t)4 << 30);
  snprintf(sql, sizeof(sql), "copy %s to stdout", table);
  PGresult *r = PQexec(src, sql);
  if (PQresultStatus(r) != PGRES_COPY_OUT) die(PQerrorMessage(src), NULL);
  PQclear(r);
  char *line;
  int len;
  *rows = 0;
  while ((len = PQgetCopyData(src, &line, 0)) > 0) {
    if (esk_buf_append(&buf, line, (size_t)len, &err)) die("copy out", &err);
    PQfreemem(line);
    (*rows)++;
  }
  PQclear(PQgetResult(src));
  exec(dst, migration, 0, NULL);
  double t0 = esk_time_mono_s();
  snprintf(sql, sizeof(sql), "copy %s from stdin", table);
  r = PQexec(dst, sql);
  if (PQresultStatus(r) != PGRES_COPY_IN) die(PQerrorMessage(dst), NULL);
  PQclear(r);
  for (size_t o = 0; o < buf.len; o += 1 << 20) {
    size_t k = buf.len - o < (1u << 20) ? buf.len - o : (1u << 20);
    PQputCopyData(dst, (const char *)buf.data + o, (int)k);
  }
  PQputCopyEnd(dst, NULL);
  r = PQgetResult(dst);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die(PQresultErrorMessage(r), NULL);
  PQclear(r);
  double secs = esk_time_mono_s() - t0;
  esk_buf_free(&buf);
  PQfinish(src);
  PQfinish(dst);
  return secs;
}

static void drop_schema(const char *schema) {
  esk_error_t err = {0};
  PGconn *pg = NULL;
  char sql[160];
  if (esk_pg_connect(&pg, NULL, &err)) return;
  snprintf(sql, sizeof(sql), "drop schema if exists \"%s\" cascade", schema);
  PQclear(PQexec(pg, sql));
  PQfinish(pg);
}

int main(int argc, char **argv) {
  /* Environment: ESK_BENCH_BATCH (batch.max.events, default: the projector's),
   * ESK_BENCH_PHASES (default "batched,naive,raw,all"), ESK_BENCH_LOG (log level). */
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  if (n < 1000 || argc > 2) {
    fprintf(stderr, "usage: bench_projector [EVENTS >= 1000]   (default 1000000)\n");
    return 2;
  }
  esk_log_set_level(getenv("ESK_BENCH_LOG") ? getenv("ESK_BENCH_LOG") : "warn");
  snprintf(tag, sizeof(tag), "%ld_%ld", (long)getpid(), (long)time(NULL) % 100000);
  snprintf(topic, sizeof(topic), "esk.bench.events_%s", tag);
  char s_batched[64], s_naive[64], s_raw[64], s_all[64];
  unique(s_batched, sizeof(s_batched), "esk_bench_batched");
  unique(s_naive, sizeof(s_naive), "esk_bench_naive");
  unique(s_raw, sizeof(s_raw), "esk_bench_raw");
  unique(s_all, sizeof(s_all), "esk_bench_all");
  esk_error_t err = {0};
  int accounts = n / 100 < 100 ? 100 : (int)(n / 100);
  /* ESK_BENCH_ACCOUNTS: another account count, to tell the cost of more
   * events from that of more aggregates per batch */
  if (getenv("ESK_BENCH_ACCOUNTS") && atoi(getenv("ESK_BENCH_ACCOUNTS")) > 0)
    accounts = atoi(getenv("ESK_BENCH_ACCOUNTS"));
  long n_naive = n < 20000 ? n : 20000;

  printf("bench_projector: %ld events over %d accounts, %d partitions; CPU shared with "
         "whatever else runs on this machine\n", n, accounts, N_PARTS);
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL, *admin = NULL;
  double t0 = esk_time_mono_s();
  if (esk_test_bank_new(&bank, 42, accounts, (size_t)n, &err) ||
      esk_test_bank_producer(&prod, &err))
    die("workload", &err);
  admin = prod;
  if (esk_kafka_create_topic(admin, topic, N_PARTS, -1, NULL, 15000, NULL, &err)) die("topic", &err);
  if (esk_test_bank_publish(bank, prod, topic, 0, (size_t)n, &err)) die("publish", &err);
  if (rd_kafka_flush(prod, 120000)) die("flush", NULL);
  printf("%-34s %8.2f s  %10.0f events/s\n", "publish (encode + produce)", esk_time_mono_s() - t0,
         n / (esk_time_mono_s() - t0));

  const char *phases = getenv("ESK_BENCH_PHASES") ? getenv("ESK_BENCH_PHASES")
                                                  : "batched,naive,raw,all";
  static const char *const two[] = {"account_balances", "transaction_history"};
  static const char *const four[] = {"account_balances", "transaction_history",
                                     "daily_summaries", "event_log"};
  /* The batched run always happens: the raw COPY copies its rows. */
  double t_batched = build(two, 2, s_batched, n);
  double r_batched = n / t_batched;
  printf("%-34s %8.2f s  %10.0f events/s\n", "batched: balances + history", t_batched,
         r_batched);

  double r_naive = 0, r_raw = 0, t_all = 0;
  if (strstr(phases, "naive")) {
    double t = naive(s_naive, n_naive);
    r_naive = n_naive / t;
    printf("%-34s %8.2f s  %10.0f events/s  (first %ld events)\n",
           "naive: one transaction per event", t, r_naive, n_naive);
  }
  if (strstr(phases, "raw")) {
    size_t rows_h = 0, rows_b = 0;
    settle();
    double t = copy_table(s_batched, s_raw, "transaction_history",
                          esk_bank_transaction_history_spec.migrations[0], &rows_h) +
               copy_table(s_batched, s_raw, "account_balances",
                          esk_bank_account_balances_spec.migrations[0], &rows_b);
    r_raw = n / t;
    printf("%-34s %8.2f s  %10.0f events/s  (%zu history + %zu balance rows)\n",
           "raw COPY of the same rows", t, r_raw, rows_h, rows_b);
  }
  if (strstr(phases, "all")) {
    t_all = build(four, 4, s_all, n);
    printf("%-34s %8.2f s  %10.0f events/s\n", "all four read models at once", t_all,
           n / t_all);
  }

  printf("\nbatched %.0f events/s (goal >= 50000)", r_batched);
  if (r_naive > 0) printf(", x%.1f naive (goal >= 20)", r_batched / r_naive);
  /* issue 18's goals; the first ones were >= 0.2 and <= 30 s */
  if (r_raw > 0) printf(", %.2f of raw COPY (goal >= 0.75)", r_batched / r_raw);
  if (t_all > 0) printf(", all four in %.1f s (goal <= 10 s)", t_all);
  printf("%s\n", n == 1000000 ? "" : "; the goals are for 1M events");

  drop_schema(s_batched);
  drop_schema(s_naive);
  drop_schema(s_raw);
  drop_schema(s_all);
  esk_test_bank_delete_topics(topic);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
  return 0;
}
