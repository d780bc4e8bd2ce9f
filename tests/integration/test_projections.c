/* The four bank read models built by the projector runtime in-process from
 * codec-encoded events on the real broker, compared row by row with folds
 * computed independently by the test (tests/support/esk_test_bank_check.c);
 * duplicates injected change nothing; poison events (unknown fingerprint,
 * truncated, malformed, oversized) go to the DLQ and everything after them
 * is applied. Each test has its own topic, groups and PostgreSQL schema. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bank_decoder.h"
#include "copy.h"
#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_bank.h"
#include "esk_test_uuids.h"
#include "projections.h"
#include "projector.h"

#define N_PARTS 3

static char topic[96], schema[64];

static void setup(void) {
  esk_test_topic_and_schema(topic, sizeof(topic), "esk.test.bank.events", schema, sizeof(schema),
                            "esk_test_proj", N_PARTS);
}

static void teardown(void) {
  esk_test_drop_schema(schema);
  esk_test_bank_delete_topics(topic);
}

/* A workload of @p n events over @p accounts accounts (seed @p seed). */
static esk_test_bank_t *new_bank(unsigned seed, int accounts, size_t n) {
  esk_test_bank_t *bank = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(&bank, seed, accounts, n, &err), ESK_OK, "%s", err.msg);
  return bank;
}

static rd_kafka_t *new_producer(void) {
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  return prod;
}

static esk_test_projector_t *start(const char *name, const char *batch_max, size_t max_bytes) {
  esk_test_projector_t *t = NULL;
  esk_error_t err = {0};
  char group[128];
  esk_test_unique_name(group, sizeof(group), "esk.test.group");
  const char *kv[] = {"batch.max.ms", "100", "batch.max.events", batch_max, NULL};
  cr_assert_eq(esk_test_projector_start(&t, name, topic, schema, group, max_bytes, kv, &err),
               ESK_OK, "%s", err.msg);
  return t;
}

static void wait_for(esk_test_projector_t *t, const char *name, int64_t applied, int64_t dead) {
  esk_projector_stats_t s = {0};
  esk_error_t err = {0};
  for (int i = 0; i < 900; i++) {
    cr_assert_eq(esk_test_projector_stats(t, &s, &err), ESK_OK, "%s stopped: %s", name, err.msg);
    if (s.applied >= applied && s.dead >= dead) return;
    esk_time_sleep_ms(100);
  }
  cr_assert_fail("%s stuck: applied %" PRId64 "/%" PRId64 ", dead %" PRId64 "/%" PRId64, name,
                 s.applied, applied, s.dead, dead);
}

/* Every message handled and committed, the counters settled: what the checks
 * that nothing more was applied or skipped wait for. */
static void quiet(esk_test_projector_t *t, const char *name) {
  PGconn *pg = esk_test_pg_connect_schema(schema);
  esk_test_projector_quiet(pg, name, topic, esk_test_projector_counters, t, 90);
  PQfinish(pg);
}

static void finish(esk_test_projector_t *t, const char *name, esk_projector_stats_t *s) {
  esk_error_t err = {0};
  int rc = esk_test_projector_stop(t, s, &err);
  cr_assert_eq(rc, ESK_OK, "%s ended with %s: %s", name, esk_error_name(rc), err.msg);
}

static void exec_ok(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(pg));
  PQclear(r);
}

static const char *const models[] = {"account_balances", "transaction_history",
                                     "daily_summaries", "event_log"};

/* Of events [from, to), those the bank's read models read from their bytes:
 * all but the deposits whose description is not ASCII. */
static int64_t plain(const esk_test_bank_t *bank, size_t from, size_t to) {
  int64_t n = 0;
  for (size_t i = from; i < to; i++) n += esk_test_bank_plain(bank, i);
  return n;
}

Test(projections, every_read_model_equals_the_fold_and_duplicates_change_nothing, .init = setup,
     .fini = teardown, .timeout = 240) {
  esk_error_t err = {0};
  const size_t n = 3000;
  esk_test_bank_t *bank = new_bank(7, 80, n);
  rd_kafka_t *prod = new_producer();
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, 2000, &err), ESK_OK, "%s", err.msg);
  /* Duplicates: a re-publish of a range already sent, interleaved with new events. */
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 1500, 1900, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 2000, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, 300, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

  /* what account_balances, transaction_history and daily_summaries read from
   * the bytes, the rest going through the domain decoder (event_log: all) */
  int64_t fast = plain(bank, 0, 2000) + plain(bank, 1500, 1900) + plain(bank, 2000, n) +
                 plain(bank, 0, 300);
  cr_assert_lt(fast, (int64_t)n + 700, "every event is plain: the fallback is not tested");
  esk_test_projector_t *runs[4];
  for (int i = 0; i < 4; i++) runs[i] = start(models[i], "500", 0);
  PGconn *pg = esk_test_pg_connect_schema(schema);
  for (int i = 0; i < 4; i++) {
    esk_projector_stats_t s;
    wait_for(runs[i], models[i], (int64_t)n, 0);
    quiet(runs[i], models[i]);
    finish(runs[i], models[i], &s);
    cr_expect_eq(s.applied, (int64_t)n, "%s applied %" PRId64, models[i], s.applied);
    cr_expect_eq(s.skipped, 700, "%s skipped %" PRId64 " duplicates", models[i], s.skipped);
    cr_expect_eq(s.dead, 0, "%s dead-lettered %" PRId64, models[i], s.dead);
    cr_expect_eq(s.read_from_bytes, i == 3 ? 0 : fast, "%s read %" PRId64 " from their bytes",
                 models[i], s.read_from_bytes);
    cr_expect_eq(esk_test_bank_check(bank, pg, models[i], n, &err), ESK_OK, "%s", err.msg);
  }
  PQfinish(pg);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

/* Polls @p sql (one count) until it reads @p want, for up to 30 s. */
static void wait_count(PGconn *pg, const char *sql, long want) {
  long got = -1;
  for (int i = 0; i < 300 && got != want; i++) {
    if (i) esk_time_sleep_ms(100);
    PGresult *r = PQexec(pg, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(pg));
    got = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  cr_assert_eq(got, want, "%s read %ld, not %ld", sql, got, want);
}

/* event_log's fill from scratch drops its primary key, which its version guard
 * reads: until the key is built the guard's versions are kept in
 * esk_projection_versions, and after it event_log reads them from itself.
 * Duplicates are skipped in both, those of events of the fill included, and
 * nothing is dead-lettered. */
Test(projections, event_log_fills_without_its_primary_key_and_its_guard_holds_across_the_build,
     .init = setup, .fini = teardown, .timeout = 240) {
  esk_error_t err = {0};
  esk_projector_stats_t s;
  const size_t n = 3000;
  esk_test_bank_t *bank = new_bank(11, 80, n);
  rd_kafka_t *prod = new_producer();
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, 2000, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 1500, 1900, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  esk_test_projector_t *t = start("event_log", "500", 0);
  wait_for(t, "event_log", 2000, 0);
  PGconn *pg = esk_test_pg_connect_schema(schema);
  char sql[512];
  snprintf(sql, sizeof(sql), "select count(*) from esk_projection_versions"
           " where projection like '%%event_log%%'");
  PGresult *r = PQexec(pg, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(pg));
  cr_expect_eq(atol(PQgetvalue(r, 0, 0)), 80, "the fill's guard kept the 80 accounts' versions");
  PQclear(r);
  snprintf(sql, sizeof(sql), "select count(*) from pg_indexes where indexname = 'event_log_pkey'"
           " and (schemaname = '%s' or starts_with(schemaname, '%s_'))", schema, schema);
  wait_count(pg, sql, 1);
  /* After the build: new events, and duplicates of the fill's and of the new. */
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 2000, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, 300, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 2500, 2600, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  wait_for(t, "event_log", (int64_t)n, 0);
  quiet(t, "event_log");
  finish(t, "event_log", &s);
  cr_expect_eq(s.applied, (int64_t)n, "applied %" PRId64, s.applied);
  cr_expect_eq(s.skipped, 800, "skipped %" PRId64 " duplicates", s.skipped);
  cr_expect_eq(s.dead, 0, "dead-lettered %" PRId64, s.dead);
  cr_expect_eq(esk_test_bank_check(bank, pg, "event_log", n, &err), ESK_OK, "%s", err.msg);
  PQfinish(pg);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

typedef struct dlq_count_s {
  int fp, trunc, magic, big;
} dlq_count_t;

static void count_dead_letter(const rd_kafka_message_t *m, void *arg) {
  dlq_count_t *c = arg;
  char v[600];
  cr_assert_str_eq(esk_test_header(m, "esk.dlq.topic", v, sizeof(v)), topic);
  cr_assert_str_eq(esk_test_header(m, "esk.dlq.error", v, sizeof(v)), "ESK_EPOISON");
  int part = atoi(esk_test_header(m, "esk.dlq.partition", v, sizeof(v)));
  cr_assert(v[0] && part >= 0 && part < N_PARTS, "partition header '%s'", v);
  cr_assert(esk_test_header(m, "esk.dlq.offset", v, sizeof(v))[0] && atoll(v) >= 0);
  esk_test_header(m, "esk.dlq.reason", v, sizeof(v));
  cr_log_info("dead letter: %s", v);
  if (strstr(v, "fingerprint")) c->fp++;
  else if (strstr(v, "over the limit")) c->big++;
  else if (strstr(v, "magic")) c->magic++;
  else c->trunc++;
}

static void first_reason(const rd_kafka_message_t *m, void *arg) {
  esk_test_header(m, "esk.dlq.reason", arg, 600);
}

/* A v3 deposit's bytes with the fingerprint changed: no schema has it. */
static void *unknown_fingerprint(esk_test_bank_t *bank, size_t i, size_t *len) {
  void *v = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_encode(bank, i, NULL, &v, len, &err), ESK_OK, "%s", err.msg);
  ((unsigned char *)v)[2] ^= 0x5a;
  return v;
}

Test(projections, poison_events_go_to_the_dlq_and_everything_after_them_is_applied,
     .init = setup, .fini = teardown, .timeout = 240) {
  esk_error_t err = {0};
  const size_t n = 600;
  esk_test_bank_t *bank = new_bank(11, 12, n);
  rd_kafka_t *prod = new_producer();
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, 300, &err), ESK_OK, "%s", err.msg);
  /* Mid-stream, keyed like real accounts so they land between real events. */
  size_t len = 0;
  void *v = unknown_fingerprint(bank, 10, &len);
  char big[3000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  void *ok = NULL, *oversized = NULL;
  size_t ok_len = 0, over_len = 0;
  cr_assert_eq(esk_test_bank_encode(bank, 20, NULL, &ok, &ok_len, &err), ESK_OK, "%s", err.msg);
  /* event 20's bytes with a 3 kB description: over the 2 kB limit below. The
   * decoder must refuse it before decoding; its aggregate version is a
   * duplicate, so were it decoded it would be skipped, not dead-lettered. */
  const esk_test_bank_event_t *e20 = esk_test_bank_event(bank, 20);
  cr_assert_eq(esk_test_bank_encode(bank, 20, e20->kind == 2 ? big : NULL, &oversized, &over_len,
                                    &err), ESK_OK, "%s", err.msg);
  if (over_len <= 2048) { /* not a deposit: pad with a junk tail instead (also poison) */
    free(oversized);
    oversized = calloc(1, 4096);
    memcpy(oversized, ok, ok_len);
    over_len = 4096;
  }
  char k[32];
  for (int a = 0; a < 12; a++) {
    esk_test_bank_account_id(a, k, sizeof(k));
    switch (a % 4) {
    case 0: esk_test_bank_publish_raw(prod, topic, k, v, len, &err); break;          /* fingerprint */
    case 1: esk_test_bank_publish_raw(prod, topic, k, ok, ok_len / 2, &err); break;  /* truncated */
    case 2: esk_test_bank_publish_raw(prod, topic, k, "\xc3\x02 not single-object encoding", 30,
                                      &err); break; /* wrong magic */
    case 3: esk_test_bank_publish_raw(prod, topic, k, oversized, over_len, &err); break;
    }
  }
  /* Malformed datum: a valid header, then bytes that are no datum of the type. */
  unsigned char bad[40];
  memcpy(bad, ok, 10);
  memset(bad + 10, 0xff, sizeof(bad) - 10);
  for (int a = 0; a < 3; a++) {
    esk_test_bank_account_id(a, k, sizeof(k));
    esk_test_bank_publish_raw(prod, topic, k, bad, sizeof(bad), &err);
  }
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 300, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

  esk_projector_stats_t s;
  esk_test_projector_t *t = start("account_balances", "100", 2048);
  wait_for(t, "account_balances", (int64_t)n, 15);
  quiet(t, "account_balances");
  finish(t, "account_balances", &s);
  cr_expect_eq(s.applied, (int64_t)n);
  cr_expect_eq(s.dead, 15);
  PGconn *pg = esk_test_pg_connect_schema(schema);
  cr_expect_eq(esk_test_bank_check(bank, pg, "account_balances", n, &err), ESK_OK, "%s", err.msg);
  PQfinish(pg);

  /* The DLQ holds the 15, each naming its error and where it came from. */
  char dlq[192];
  snprintf(dlq, sizeof(dlq), "%s.dlq.account_balances", topic);
  dlq_count_t c = {0};
  cr_expect_eq(esk_test_consume(dlq, 15, 40, count_dead_letter, &c), 15);
  cr_expect(c.fp == 3 && c.trunc == 6 && c.magic == 3 && c.big == 3,
            "fingerprint %d truncated or malformed %d magic %d oversized %d", c.fp, c.trunc,
            c.magic, c.big);
  free(v);
  free(ok);
  free(oversized);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

static int moves_money(const esk_test_bank_event_t *e) { return e->kind == 2 || e->kind == 3; }

/* A deposit written at v2 or later (v1 has no description). */
static int described_deposit(const esk_test_bank_event_t *e) {
  return e->kind == 2 && e->writer_version >= 2;
}

/* The index of an event in the second half of the workload that is the last
 * of its account (nothing after it depends on it) and satisfies @p want. */
static long last_event_of_its_account(esk_test_bank_t *bank, size_t n,
                                      int (*want)(const esk_test_bank_event_t *)) {
  for (long i = (long)n / 2; i < (long)n; i++) {
    const esk_test_bank_event_t *e = esk_test_bank_event(bank, (size_t)i);
    int last = 1;
    for (size_t j = (size_t)i + 1; j < n && last; j++)
      if (esk_test_bank_event(bank, j)->account == e->account) last = 0;
    if (last && want(e)) return i;
  }
  cr_assert_fail("no suitable event in the workload");
  return -1;
}

/* Publishes the workload's @p n events with event @p bad replaced by the
 * bytes @p v (keyed by its account), and takes it out of the expected state.
 * @returns the producer, for the caller to destroy. */
static rd_kafka_t *publish_with_poison(esk_test_bank_t *bank, size_t n, size_t bad,
                                       const void *v, size_t len) {
  esk_error_t err = {0};
  rd_kafka_t *prod = NULL;
  char key[32];
  esk_test_bank_account_id(esk_test_bank_event(bank, bad)->account, key, sizeof(key));
  prod = new_producer();
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, bad, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish_raw(prod, topic, key, v, len, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, bad + 1, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  esk_test_bank_skip(bank, bad);
  return prod;
}

/* An event id that is no UUID in the middle of big batches: transaction_history
 * and event_log COPY in binary format, so each finds it before PostgreSQL
 * would refuse it (22P02); the batch is bisected down to that event, which
 * goes to the DLQ naming the id; every other event is applied. */
Test(projections, an_event_id_that_is_no_uuid_is_isolated_and_dead_lettered, .init = setup,
     .fini = teardown, .timeout = 240) {
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  const size_t n = 4000;
  esk_test_bank_t *bank = new_bank(23, 50, n);
  /* The last event of its account, one that moves money (so it writes a row). */
  long bad = last_event_of_its_account(bank, n, moves_money);
  void *v = NULL;
  size_t len = 0;
  cr_assert_eq(esk_test_bank_encode(bank, (size_t)bad, NULL, &v, &len, &err), ESK_OK, "%s", err.msg);
  /* Overwrite the 36-character UUID text in place: the Avro stays valid. */
  unsigned char *b = v, *hit = NULL;
  for (size_t k = 0; k + 36 <= len && !hit; k++)
    if (b[k + 8] == '-' && b[k + 13] == '-' && b[k + 18] == '-' && b[k + 23] == '-') hit = b + k;
  cr_assert_not_null(hit);
  memset(hit, 'z', 8);
  prod = publish_with_poison(bank, n, (size_t)bad, v, len);

  static const char *const refusing[] = {"transaction_history", "event_log"};
  PGconn *pg = esk_test_pg_connect_schema(schema);
  for (int i = 0; i < 2; i++) {
    esk_projector_stats_t s;
    esk_test_projector_t *t = start(refusing[i], "100000", 0);
    wait_for(t, refusing[i], (int64_t)n - 1, 1);
    quiet(t, refusing[i]);
    finish(t, refusing[i], &s);
    cr_expect_eq(s.applied, (int64_t)n - 1, "%s applied %" PRId64, refusing[i], s.applied);
    cr_expect_eq(s.dead, 1, "%s dead-lettered %" PRId64, refusing[i], s.dead);
    cr_expect_eq(esk_test_bank_check(bank, pg, refusing[i], n, &err), ESK_OK, "%s", err.msg);
    char dlq[192], reason[600];
    snprintf(dlq, sizeof(dlq), "%s.dlq.%s", topic, refusing[i]);
    cr_expect_eq(esk_test_consume(dlq, 1, 30, first_reason, reason), 1);
    cr_expect(strstr(reason, "event id \"zzzzzzzz-") && strstr(reason, "is not a uuid"),
              "%s reason: %s", refusing[i], reason);
  }
  PQfinish(pg);
  free(v);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

/* A row PostgreSQL itself refuses, in the middle of big batches streamed
 * through an open COPY: a check the test adds to transaction_history refuses
 * one deposit's description. The COPY fails as a whole when it ends, the
 * batch is bisected down to that event, which goes to the DLQ naming
 * PostgreSQL's SQLSTATE (23514); every other event is applied. */
Test(projections, a_row_the_database_refuses_is_isolated_and_dead_lettered, .init = setup,
     .fini = teardown, .timeout = 240) {
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  esk_projector_stats_t s;
  const size_t n = 4000;
  esk_test_bank_t *bank = new_bank(29, 50, n);
  long bad = last_event_of_its_account(bank, n, described_deposit);
  void *v = NULL;
  size_t len = 0;
  cr_assert_eq(esk_test_bank_encode(bank, (size_t)bad, "refused by the test", &v, &len, &err),
               ESK_OK, "%s", err.msg);
  /* Started before any event is published: its tables exist, for the check. */
  esk_test_projector_t *t = start("transaction_history", "100000", 0);
  PGconn *pg = esk_test_pg_connect_schema(schema);
  char sql[512];
  snprintf(sql, sizeof(sql), "select quote_ident(table_schema) from information_schema.tables"
           " where table_name = 'transaction_history' and table_type = 'BASE TABLE'"
           " and (table_schema = '%s' or starts_with(table_schema, '%s_'))", schema, schema);
  PGresult *r = PQexec(pg, sql);
  cr_assert_eq(PQntuples(r), 1, "%s", PQerrorMessage(pg));
  snprintf(sql, sizeof(sql), "alter table %s.transaction_history add constraint test_refuses"
           " check (description <> 'refused by the test')", PQgetvalue(r, 0, 0));
  PQclear(r);
  exec_ok(pg, sql);
  prod = publish_with_poison(bank, n, (size_t)bad, v, len);
  wait_for(t, "transaction_history", (int64_t)n - 1, 1);
  quiet(t, "transaction_history");
  finish(t, "transaction_history", &s);
  cr_expect_eq(s.applied, (int64_t)n - 1, "applied %" PRId64, s.applied);
  cr_expect_eq(s.dead, 1, "dead-lettered %" PRId64, s.dead);
  cr_expect_eq(esk_test_bank_check(bank, pg, "transaction_history", n, &err), ESK_OK, "%s",
               err.msg);
  PQfinish(pg);
  char dlq[192], reason[600];
  snprintf(dlq, sizeof(dlq), "%s.dlq.transaction_history", topic);
  cr_expect_eq(esk_test_consume(dlq, 1, 30, first_reason, reason), 1);
  cr_expect_not_null(strstr(reason, "23514"), "reason: %s", reason);
  free(v);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

/* Binary COPY writes an event id as 16 bytes only when esk_copy_uuid_binary_ok()
 * takes it, and event_log dead-letters the others itself: so that function must
 * take exactly the strings PostgreSQL's text input reads. The server judges the
 * table the unit suite checks the function against. */
Test(projections, the_uuids_binary_copy_takes_are_the_ones_postgresql_reads) {
  PGconn *pg = esk_test_pg_connect();
  for (int i = 0; esk_test_uuid_texts[i].s; i++) {
    const char *params[] = {esk_test_uuid_texts[i].s};
    PGresult *r = PQexecParams(pg, "select $1::uuid", 1, NULL, params, NULL, NULL, 0);
    int read = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!read) cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "22P02", "'%s'", params[0]);
    cr_expect_eq(read, esk_test_uuid_texts[i].ok, "'%s': PostgreSQL %s it", params[0],
                 read ? "reads" : "refuses");
    PQclear(r);
  }
  PQfinish(pg);
}

/* COPY rows of (n, s) into t: row @p bad (if >= 0) holds what t's check refuses;
 * the rows go in parts of 100 (esk_copy_stream()), the rest with esk_copy_send(). */
static int stream_rows(PGconn *pg, int n, int bad, int send, esk_error_t *err) {
  esk_copy_t c = {0};
  esk_buf_init(&c.buf, 1 << 20);
  esk_copy_binary(&c, 1);
  int rc = ESK_OK;
  for (int i = 0; i < n && rc == ESK_OK; i++) {
    esk_copy_i64(&c, i);
    esk_copy_text(&c, i == bad ? "refused" : "row", -1);
    esk_copy_row_end(&c);
    if (i % 100 == 99) rc = esk_copy_stream(&c, pg, "stream test", "copy t (n, s) from stdin", err);
  }
  cr_expect(rc || c.streaming, "the COPY was started by the first part");
  if (rc == ESK_OK && send) rc = esk_copy_send(&c, pg, "stream test", "copy t (n, s) from stdin", err);
  if (!send) esk_copy_abort(&c);
  cr_expect_null(c.streaming);
  esk_copy_free(&c);
  return rc;
}

static int64_t count_rows(PGconn *pg) {
  PGresult *r = PQexec(pg, "select count(*) from t");
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(pg));
  int64_t n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return n;
}


/* A COPY streamed in parts while its batch is built: all parts land; a row
 * the table refuses in an early part fails the whole COPY when it ends, with
 * PostgreSQL's SQLSTATE; an abandoned one leaves a connection that rolls back
 * and runs the next statement. */
Test(projections, a_streamed_copy_lands_whole_or_fails_whole, .init = setup, .fini = teardown) {
  PGconn *pg = esk_test_pg_connect_schema(schema);
  esk_error_t err = {0};
  char sql[160];
  snprintf(sql, sizeof(sql), "create schema \"%s\"", schema);
  exec_ok(pg, sql);
  exec_ok(pg, "create table t (n bigint primary key, s text not null check (s <> 'refused'))");
  exec_ok(pg, "begin");
  cr_expect_eq(stream_rows(pg, 1050, 150, 1, &err), ESK_EPOISON, "%s", err.msg);
  cr_expect_not_null(strstr(err.msg, "23514"), "%s", err.msg);
  exec_ok(pg, "rollback");
  exec_ok(pg, "begin");
  cr_expect_eq(stream_rows(pg, 1050, -1, 0, &err), ESK_OK, "%s", err.msg);
  exec_ok(pg, "rollback");
  cr_expect_eq(count_rows(pg), 0);
  exec_ok(pg, "begin");
  cr_expect_eq(stream_rows(pg, 1050, -1, 1, &err), ESK_OK, "%s", err.msg);
  exec_ok(pg, "commit");
  cr_expect_eq(count_rows(pg), 1050);
  PQfinish(pg);
}

Test(projections, a_bad_pg_schema_is_refused_naming_the_key, .init = setup, .fini = teardown) {
  static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_projector_props};
  esk_conf_t *conf = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_new(&conf, tables, 2, &err), ESK_OK);
  esk_conf_set(conf, "topic", topic, "test", &err);
  esk_conf_set(conf, "pg.schema", "x\"; drop table y; --", "test", &err);
  esk_projection_t proj = {0};
  cr_assert_eq(esk_bank_projection_find("event_log")->create(&proj, &err), ESK_OK);
  esk_bank_decoder_t *dec = NULL;
  cr_assert_eq(esk_bank_decoder_new(&dec, NULL, &err), ESK_OK);
  esk_decoder_t d = esk_bank_decoder(dec);
  esk_projector_t *p = NULL;
  cr_assert_eq(esk_projector_new(&p, conf, &proj, &d, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "pg.schema"), "%s", err.msg);
  cr_assert(!esk_pg_ident_valid("Upper") && !esk_pg_ident_valid("") &&
            esk_pg_ident_valid("esk_test_1"));
  esk_bank_decoder_destroy(dec);
  esk_bank_projection_destroy(&proj);
  esk_conf_destroy(conf);
}

/* An event from a producer other than esk whose description holds U+0000
 * (issue 17): decoded, it would have been stored as the text before the NUL.
 * It is dead-lettered with a reason naming the field, and every event after
 * it is applied. */
Test(projections, an_event_with_u0000_in_a_string_is_dead_lettered_naming_the_field,
     .init = setup, .fini = teardown, .timeout = 240) {
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  const size_t n = 1000;
  esk_test_bank_t *bank = new_bank(29, 20, n);
  /* the last event of its account, a deposit: nothing after it depends on it */
  long bad = last_event_of_its_account(bank, n, described_deposit);
  void *v = NULL;
  size_t len = 0;
  cr_assert_eq(esk_test_bank_encode(bank, (size_t)bad, "before~after", &v, &len, &err), ESK_OK,
               "%s", err.msg);
  unsigned char *b = v, *hit = NULL;
  for (size_t k = 0; k + 12 <= len && !hit; k++)
    if (!memcmp(b + k, "before~after", 12)) hit = b + k;
  cr_assert_not_null(hit);
  hit[6] = '\0'; /* the bytes a Java client writes for "before\u0000after" */
  prod = publish_with_poison(bank, n, (size_t)bad, v, len);

  static const char *const names[] = {"transaction_history", "event_log"};
  PGconn *pg = esk_test_pg_connect_schema(schema);
  for (int i = 0; i < 2; i++) {
    esk_projector_stats_t s;
    esk_test_projector_t *t = start(names[i], "100", 0);
    wait_for(t, names[i], (int64_t)n - 1, 1);
    finish(t, names[i], &s);
    cr_expect_eq(s.applied, (int64_t)n - 1, "%s applied %" PRId64, names[i], s.applied);
    cr_expect_eq(s.dead, 1, "%s dead-lettered %" PRId64, names[i], s.dead);
    cr_expect_eq(esk_test_bank_check(bank, pg, names[i], n, &err), ESK_OK, "%s", err.msg);
    char dlq[192], reason[600] = "";
    snprintf(dlq, sizeof(dlq), "%s.dlq.%s", topic, names[i]);
    cr_expect_eq(esk_test_consume(dlq, 1, 30, first_reason, reason), 1);
    cr_expect(strstr(reason, "string field 'description' holds U+0000 at byte 6 of its 12"),
              "reason: %s", reason);
  }
  PQfinish(pg);
  free(v);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

static void publish_keyed(rd_kafka_t *prod, const char *key, size_t klen, const void *v,
                          size_t len) {
  cr_assert_eq(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, klen),
                                 RD_KAFKA_V_VALUE((void *)v, len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
               0);
}

/* Kafka keys are bytes: one holding U+0000 or bytes that are not UTF-8 is no
 * aggregate id, and PostgreSQL text cannot take it (a C string stops at the
 * NUL; invalid UTF-8 failed the batch's version query with SQLSTATE 22021,
 * and the projector stopped). Such an event is dead-lettered like any key
 * that is not its aggregate id, and everything after it is applied (issue 17). */
Test(projections, an_event_whose_key_is_not_text_is_dead_lettered_not_fatal, .init = setup,
     .fini = teardown, .timeout = 240) {
  esk_error_t err = {0};
  const size_t n = 600;
  esk_test_bank_t *bank = new_bank(31, 10, n);
  rd_kafka_t *prod = new_producer();
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, n / 2, &err), ESK_OK, "%s", err.msg);
  void *v = NULL;
  size_t len = 0;
  cr_assert_eq(esk_test_bank_encode(bank, 0, NULL, &v, &len, &err), ESK_OK, "%s", err.msg);
  char acc[32], key[48];
  esk_test_bank_account_id(esk_test_bank_event(bank, 0)->account, acc, sizeof(acc));
  size_t alen = strlen(acc);
  memcpy(key, acc, alen);
  memcpy(key + alen, "\0x", 2); /* the account id, a NUL, more */
  for (int p = 0; p < N_PARTS; p++) { /* reach every partition, whatever the hash */
    key[alen + 1] = (char)('x' + p);
    publish_keyed(prod, key, alen + 2, v, len);
  }
  memcpy(key + alen, "\xff", 1); /* the account id and a byte never in UTF-8 */
  for (int p = 0; p < N_PARTS; p++) {
    key[alen + 1] = (char)('a' + p);
    publish_keyed(prod, key, alen + 2, v, len);
  }
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, n / 2, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

  static const char *const names[] = {"account_balances", "daily_summaries"};
  PGconn *pg = esk_test_pg_connect_schema(schema);
  for (int i = 0; i < 2; i++) {
    esk_projector_stats_t s;
    esk_test_projector_t *t = start(names[i], "100", 0);
    wait_for(t, names[i], (int64_t)n, 2 * N_PARTS);
    finish(t, names[i], &s);
    cr_expect_eq(s.applied, (int64_t)n, "%s applied %" PRId64, names[i], s.applied);
    cr_expect_eq(s.dead, 2 * N_PARTS, "%s dead-lettered %" PRId64, names[i], s.dead);
    cr_expect_eq(esk_test_bank_check(bank, pg, names[i], n, &err), ESK_OK, "%s", err.msg);
    char dlq[192], reason[600] = "";
    snprintf(dlq, sizeof(dlq), "%s.dlq.%s", topic, names[i]);
    cr_expect_eq(esk_test_consume(dlq, 1, 30, first_reason, reason), 1);
    cr_expect(strstr(reason, "message key does not equal the event's aggregate id"),
              "reason: %s", reason);
  }
  PQfinish(pg);
  free(v);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}
