/* The four bank read models built by the projector runtime in-process from
 * codec-encoded events on the real broker, compared row by row with folds
 * computed independently by the test (tests/support/esk_test_bank.c);
 * duplicates injected change nothing; poison events (unknown fingerprint,
 * truncated, malformed, oversized) go to the DLQ and everything after them
 * is applied. Each test has its own topic, groups and PostgreSQL schema. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bank_event.h"
#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/pg.h"
#include "esk_test.h"
#include "esk_test_bank.h"
#include "projections.h"
#include "projector.h"

#define N_PARTS 3

static char topic[96], schema[64];

static void setup(void) {
  esk_test_require_kafka();
  esk_test_require_pg();
  esk_test_unique_name(topic, sizeof(topic), "esk.test.bank.events");
  esk_test_unique_name(schema, sizeof(schema), "esk_test_proj");
  esk_test_create_topic(topic, N_PARTS);
}

static void teardown(void) {
  PGconn *pg = esk_test_pg_connect();
  char sql[128];
  snprintf(sql, sizeof(sql), "drop schema if exists \"%s\" cascade", schema);
  PQclear(PQexec(pg, sql));
  PQfinish(pg);
}

typedef struct run_s {
  const char *name;
  esk_conf_t *conf;
  esk_bank_decoder_t *dec;
  esk_projection_t proj;
  esk_projector_t *p;
  pthread_t thread;
  volatile sig_atomic_t stop;
  int rc;
  esk_error_t err;
} run_t;

static void *runner(void *arg) {
  run_t *r = arg;
  r->rc = esk_projector_run(r->p, &r->stop, &r->err);
  return NULL;
}

static void start(run_t *r, const char *name, const char *batch_max, size_t max_bytes) {
  static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_projector_props};
  esk_error_t err = {0};
  char group[128];
  memset(r, 0, sizeof(*r));
  r->name = name;
  esk_test_unique_name(group, sizeof(group), "esk.test.group");
  cr_assert_eq(esk_conf_new(&r->conf, tables, 2, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_load_env(r->conf, &err), ESK_OK, "%s", err.msg);
  const char *kv[][2] = {{"topic", topic}, {"projection", name}, {"group.id", group},
                         {"pg.schema", schema}, {"batch.max.ms", "100"},
                         {"batch.max.events", batch_max}};
  for (size_t i = 0; i < sizeof(kv) / sizeof(*kv); i++)
    cr_assert_eq(esk_conf_set(r->conf, kv[i][0], kv[i][1], "test", &err), ESK_OK, "%s", err.msg);
  esk_codec_limits_t limits = {.max_message_bytes = max_bytes};
  cr_assert_eq(esk_bank_decoder_new(&r->dec, &limits, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_bank_projection_find(name)->create(&r->proj, &err), ESK_OK, "%s", err.msg);
  esk_decoder_t d = esk_bank_decoder(r->dec);
  cr_assert_eq(esk_projector_new(&r->p, r->conf, &r->proj, &d, &err), ESK_OK, "%s", err.msg);
  pthread_create(&r->thread, NULL, runner, r);
}

static void wait_for(run_t *r, int64_t applied, int64_t dead) {
  esk_projector_stats_t s = {0};
  for (int i = 0; i < 900; i++) {
    esk_projector_stats(r->p, &s);
    if (s.applied >= applied && s.dead >= dead) return;
    usleep(100000);
  }
  cr_assert_fail("%s stuck: applied %" PRId64 "/%" PRId64 ", dead %" PRId64 "/%" PRId64, r->name,
                 s.applied, applied, s.dead, dead);
}

static void finish(run_t *r, esk_projector_stats_t *s) {
  r->stop = 1;
  pthread_join(r->thread, NULL);
  cr_assert_eq(r->rc, ESK_OK, "%s ended with %s: %s", r->name, esk_error_name(r->rc), r->err.msg);
  if (s) esk_projector_stats(r->p, s);
  esk_projector_destroy(r->p);
  esk_bank_projection_destroy(&r->proj);
  esk_bank_decoder_destroy(r->dec);
  esk_conf_destroy(r->conf);
}

static PGconn *pg_in_schema(void) {
  PGconn *pg = esk_test_pg_connect();
  char sql[128];
  snprintf(sql, sizeof(sql), "set search_path to \"%s\"", schema);
  PQclear(PQexec(pg, sql));
  return pg;
}

static const char *const models[] = {"account_balances", "transaction_history",
                                     "daily_summaries", "event_log"};

Test(projections, every_read_model_equals_the_fold_and_duplicates_change_nothing, .init = setup,
     .fini = teardown, .timeout = 240) {
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  const size_t n = 3000;
  cr_assert_eq(esk_test_bank_new(&bank, 7, 80, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, 2000, &err), ESK_OK, "%s", err.msg);
  /* Duplicates: a re-publish of a range already sent, interleaved with new events. */
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 1500, 1900, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 2000, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(bank, prod, topic, 0, 300, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

  run_t runs[4];
  for (int i = 0; i < 4; i++) start(&runs[i], models[i], "500", 0);
  PGconn *pg = pg_in_schema();
  for (int i = 0; i < 4; i++) {
    esk_projector_stats_t s;
    wait_for(&runs[i], (int64_t)n, 0);
    usleep(300000);
    finish(&runs[i], &s);
    cr_expect_eq(s.applied, (int64_t)n, "%s applied %" PRId64, models[i], s.applied);
    cr_expect_eq(s.skipped, 700, "%s skipped %" PRId64 " duplicates", models[i], s.skipped);
    cr_expect_eq(s.dead, 0, "%s dead-lettered %" PRId64, models[i], s.dead);
    cr_expect_eq(esk_test_bank_check(bank, pg, models[i], n, &err), ESK_OK, "%s", err.msg);
  }
  PQfinish(pg);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
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
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  esk_error_t err = {0};
  const size_t n = 600;
  cr_assert_eq(esk_test_bank_new(&bank, 11, 12, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(&prod, &err), ESK_OK, "%s", err.msg);
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

  run_t r;
  esk_projector_stats_t s;
  start(&r, "account_balances", "100", 2048);
  wait_for(&r, (int64_t)n, 15);
  usleep(300000);
  finish(&r, &s);
  cr_expect_eq(s.applied, (int64_t)n);
  cr_expect_eq(s.dead, 15);
  PGconn *pg = pg_in_schema();
  cr_expect_eq(esk_test_bank_check(bank, pg, "account_balances", n, &err), ESK_OK, "%s", err.msg);
  PQfinish(pg);

  /* The DLQ holds the 15, each naming its error and where it came from. */
  rd_kafka_conf_t *cc = NULL;
  char errstr[256], dlq[192], group[96];
  snprintf(dlq, sizeof(dlq), "%s.dlq.account_balances", topic);
  esk_test_unique_name(group, sizeof(group), "esk.test.dlqreader");
  cr_assert_eq(esk_kafka_conf_new(&cc, RD_KAFKA_CONSUMER, NULL, &err), ESK_OK);
  esk_kafka_conf_set(cc, "group.id", group, &err);
  esk_kafka_conf_set(cc, "auto.offset.reset", "earliest", &err);
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, sizeof(errstr));
  rd_kafka_poll_set_consumer(c);
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, dlq, RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(c, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  int got = 0, fp = 0, trunc = 0, magic = 0, big_n = 0;
  for (int i = 0; i < 40 && got < 15; i++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1000);
    if (!m) continue;
    if (!m->err) {
      rd_kafka_headers_t *h = NULL;
      const void *hv;
      size_t hn;
      char reason[600] = "", part[16] = "", off[32] = "";
      cr_assert_eq(rd_kafka_message_headers(m, &h), RD_KAFKA_RESP_ERR_NO_ERROR);
      cr_assert_eq(rd_kafka_header_get_last(h, "esk.dlq.topic", &hv, &hn), 0);
      cr_assert(hn == strlen(topic) && !memcmp(hv, topic, hn));
      cr_assert_eq(rd_kafka_header_get_last(h, "esk.dlq.error", &hv, &hn), 0);
      cr_assert(hn == strlen("ESK_EPOISON") && !memcmp(hv, "ESK_EPOISON", hn));
      cr_assert_eq(rd_kafka_header_get_last(h, "esk.dlq.partition", &hv, &hn), 0);
      snprintf(part, sizeof(part), "%.*s", (int)hn, (const char *)hv);
      cr_assert_eq(rd_kafka_header_get_last(h, "esk.dlq.offset", &hv, &hn), 0);
      snprintf(off, sizeof(off), "%.*s", (int)hn, (const char *)hv);
      cr_assert(atoi(off) >= 0 && atoi(part) >= 0 && atoi(part) < N_PARTS, "%s %s", part, off);
      cr_assert_eq(rd_kafka_header_get_last(h, "esk.dlq.reason", &hv, &hn), 0);
      snprintf(reason, sizeof(reason), "%.*s", (int)hn, (const char *)hv);
      if (strstr(reason, "fingerprint")) fp++;
      else if (strstr(reason, "over the limit")) big_n++;
      else if (strstr(reason, "magic")) magic++;
      else trunc++;
      cr_log_info("dead letter: %s", reason);
      got++;
    }
    rd_kafka_message_destroy(m);
  }
  cr_expect_eq(got, 15);
  cr_expect(fp == 3 && trunc == 6 && magic == 3 && big_n == 3,
            "fingerprint %d truncated or malformed %d magic %d oversized %d", fp, trunc, magic,
            big_n);
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  free(v);
  free(ok);
  free(oversized);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
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
  cr_assert(!esk_projector_schema_valid("Upper") && !esk_projector_schema_valid("") &&
            esk_projector_schema_valid("esk_test_1"));
  esk_bank_decoder_destroy(dec);
  esk_bank_projection_destroy(&proj);
  esk_conf_destroy(conf);
}
