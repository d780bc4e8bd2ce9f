/* esk-producer against the real broker, run as a child process and driven
 * through eskctl: every bank rule, events and their headers, idempotency
 * across a restart, poison commands, and state restored from snapshots
 * equal to the fold of every event. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aggstore.h"
#include "bank/bank_avro.h"
#include "bank/bank_domain.h"
#include "domains.h"
#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_producer.h"
#include "restore.h"

#define Q "\""
#define OPEN(id, acc, owner, units, cur)                                                        \
  "{\"type\":\"OpenAccount\",\"command_id\":" Q id Q ",\"account_id\":" Q acc Q                  \
  ",\"owner_id\":" Q owner Q ",\"initial_deposit\":{\"minor_units\":" #units                     \
  ",\"currency\":" Q cur Q "}}\n"
#define MOVE(type, id, acc, units, cur)                                                         \
  "{\"type\":\"" type "\",\"command_id\":" Q id Q ",\"account_id\":" Q acc Q                     \
  ",\"amount\":{\"minor_units\":" #units ",\"currency\":" Q cur Q "}}\n"
#define MOVE_V(type, id, acc, units, cur, ver)                                                  \
  "{\"type\":\"" type "\",\"command_id\":" Q id Q ",\"account_id\":" Q acc Q                     \
  ",\"expected_version\":" #ver ",\"amount\":{\"minor_units\":" #units ",\"currency\":" Q cur Q  \
  "}}\n"
#define CLOSE(id, acc) \
  "{\"type\":\"CloseAccount\",\"command_id\":" Q id Q ",\"account_id\":" Q acc Q ",\"reason\":\"done\"}\n"

/* Splits eskctl's output into lines (in place). */
static size_t lines(char *out, char **v, size_t max) {
  size_t n = 0;
  for (char *s = strtok(out, "\n"); s && n < max; s = strtok(NULL, "\n")) v[n++] = s;
  return n;
}

static void expect(const char *line, const char *id, const char *status, const char *code) {
  char want[256];
  snprintf(want, sizeof(want), "\"command_id\":\"%s\",\"status\":\"%s\"", id, status);
  cr_expect(strstr(line, want), "%s: expected %s in %s", id, want, line);
  if (code) {
    snprintf(want, sizeof(want), "\"code\":\"%s\"", code);
    cr_expect(strstr(line, want), "%s: expected %s in %s", id, want, line);
  }
}

Test(producer, every_rule_gives_its_result_and_only_accepted_commands_publish_events,
     .timeout = 120) {
  esk_test_require_kafka();
  char prefix[128], log[256], out[16384];
  pid_t pid = esk_tp_setup(prefix, sizeof(prefix), "prod_rules", 3, log, sizeof(log), NULL);
  const char *in =
      OPEN("r01", "R1", "alice", 100, "EUR")
      OPEN("r02", "R1", "alice", 100, "EUR")
      OPEN("r03", "R2", "bob", -1, "EUR")
      OPEN("r04", "R3", "carol", 10, "eur")
      OPEN("r05", "R4", "", 10, "EUR")
      MOVE("DepositMoney", "r06", "R1", 0, "EUR")
      MOVE("DepositMoney", "r07", "NOPE", 10, "EUR")
      MOVE("DepositMoney", "r08", "R1", 10, "USD")
      MOVE("WithdrawMoney", "r09", "R1", 1000, "EUR")
      MOVE("WithdrawMoney", "r10", "R1", -5, "EUR")
      MOVE("DepositMoney", "r11", "R1", 9223372036854775807, "EUR")
      CLOSE("r12", "R1")
      MOVE_V("DepositMoney", "r13", "R1", 50, "EUR", 5)
      MOVE_V("DepositMoney", "r14", "R1", 50, "EUR", 1)
      MOVE("WithdrawMoney", "r15", "R1", 150, "EUR")
      CLOSE("r16", "R1")
      MOVE("DepositMoney", "r17", "R1", 10, "EUR")
      OPEN("r18", "R1", "alice", 0, "EUR");
  int rc = esk_tp_submit(prefix, in, 60000, out, sizeof(out));
  cr_expect_eq(rc, 1, "rejections make eskctl exit 1, got %d: %s", rc, out);
  char *v[32];
  size_t n = lines(out, v, 32);
  cr_assert_eq(n, 18, "18 result lines, got %zu", n);
  expect(v[0], "r01", "accepted", NULL);
  cr_expect(strstr(v[0], "\"aggregate_version\":1,\"events\":[{\"type\":\"AccountOpened\","
                         "\"version\":1}]"), "%s", v[0]);
  expect(v[1], "r02", "rejected", "ACCOUNT_ALREADY_EXISTS");
  cr_expect(!strstr(v[1], "\"events\""), "a rejection lists no events: %s", v[1]);
  expect(v[2], "r03", "rejected", "INVALID_AMOUNT");
  expect(v[3], "r04", "rejected", "INVALID_CURRENCY");
  expect(v[4], "r05", "rejected", "INVALID_COMMAND");
  expect(v[5], "r06", "rejected", "INVALID_AMOUNT");
  expect(v[6], "r07", "rejected", "ACCOUNT_NOT_FOUND");
  expect(v[7], "r08", "rejected", "CURRENCY_MISMATCH");
  expect(v[8], "r09", "rejected", "INSUFFICIENT_FUNDS");
  expect(v[9], "r10", "rejected", "INVALID_AMOUNT");
  expect(v[10], "r11", "rejected", "AMOUNT_OVERFLOW");
  expect(v[11], "r12", "rejected", "BALANCE_NOT_ZERO");
  expect(v[12], "r13", "rejected", "CONCURRENCY_CONFLICT");
  cr_expect(strstr(v[12], "actual version is 1"), "the conflict states the version: %s", v[12]);
  expect(v[13], "r14", "accepted", NULL);
  cr_expect(strstr(v[13], "\"aggregate_version\":2"), "%s", v[13]);
  expect(v[14], "r15", "accepted", NULL);
  expect(v[15], "r16", "accepted", NULL);
  cr_expect(strstr(v[15], "\"aggregate_version\":4"), "%s", v[15]);
  expect(v[16], "r17", "rejected", "ACCOUNT_CLOSED");
  expect(v[17], "r18", "rejected", "ACCOUNT_ALREADY_EXISTS");

  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events(&evs, prefix, 3);
  cr_assert_eq(ne, 4, "4 events (r01, r14, r15, r16), got %zu", ne);
  const char *cause[4] = {"r01", "r14", "r15", "r16"};
  const int types[4] = {ESK_BANK_EV_ACCOUNT_OPENED, ESK_BANK_EV_MONEY_DEPOSITED,
                        ESK_BANK_EV_MONEY_WITHDRAWN, ESK_BANK_EV_ACCOUNT_CLOSED};
  for (size_t i = 0; i < 4; i++) {
    cr_expect_str_eq(evs[i].causation, cause[i]);
    cr_expect_eq(evs[i].type, types[i]);
    cr_expect_eq(evs[i].version, (int64_t)i + 1);
    cr_expect_str_eq(evs[i].account, "R1");
  }
  esk_tp_check_versions(evs, ne);
  free(evs);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0, "SIGTERM ends the producer with 0");
  esk_tp_delete_topics(prefix);
}

/* Headers of every event as docs/architecture.md ("Kafka contract") lists them, equal to the
 * value's metadata. */
typedef struct hdr_ctx_s {
  esk_bank_avro_t *avro;
  int seen;
  int minimal; /* event.headers=minimal: esk.type and esk.schema_version only */
} hdr_ctx_t;

/* event.headers=minimal: the two headers a reader picks a schema by, and none other. */
static void check_minimal_headers(const rd_kafka_message_t *m) {
  static const char *const absent[] = {"esk.event_id", "esk.aggregate_version",
                                       "esk.correlation_id", "esk.causation_id", "content-type"};
  rd_kafka_headers_t *h = NULL;
  cr_assert_eq(rd_kafka_message_headers(m, &h), RD_KAFKA_RESP_ERR_NO_ERROR);
  cr_expect_eq(rd_kafka_header_cnt(h), 2, "esk.type and esk.schema_version only");
  char buf[160];
  for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
    cr_expect(!esk_kafka_header(m, absent[i], buf, sizeof(buf)), "%s is left out", absent[i]);
}

static int check_headers(const rd_kafka_message_t *m, void *opaque) {
  hdr_ctx_t *c = opaque;
  char type[64], sver[16], eid[64], aver[32], corr[160], cause[160], ct[64];
  cr_assert(esk_kafka_header(m, "esk.type", type, sizeof(type)), "esk.type");
  cr_assert(esk_kafka_header(m, "esk.schema_version", sver, sizeof(sver)));
  if (c->minimal) {
    check_minimal_headers(m);
    c->seen++;
    return 0;
  }
  cr_assert(esk_kafka_header(m, "esk.event_id", eid, sizeof(eid)));
  cr_assert(esk_kafka_header(m, "esk.aggregate_version", aver, sizeof(aver)));
  cr_assert(esk_kafka_header(m, "esk.correlation_id", corr, sizeof(corr)));
  cr_assert(esk_kafka_header(m, "esk.causation_id", cause, sizeof(cause)));
  cr_assert(esk_kafka_header(m, "content-type", ct, sizeof(ct)));
  cr_expect_str_eq(ct, "avro/binary");
  cr_expect_eq(strlen(eid), 36, "a UUID: %s", eid);
  cr_expect(eid[14] == '4' && strchr("89ab", eid[19]) && eid[8] == '-' && eid[23] == '-',
            "a version 4 UUID: %s", eid);
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  esk_error_t err = {0};
  uint64_t fp = 0;
  cr_assert_eq(esk_codec_peek(m->payload, m->len, &fp, &err), ESK_OK);
  const esk_schema_t *ws = esk_schema_set_by_fingerprint(esk_bank_avro_schemas(c->avro), fp);
  cr_assert_not_null(ws);
  cr_expect_str_eq(type, esk_schema_type(ws));
  cr_expect_eq(atoi(sver), esk_schema_version(ws));
  cr_expect_eq(esk_schema_set_latest(esk_bank_avro_schemas(c->avro), type), ws,
               "events are written at the newest version");
  cr_assert_eq(esk_codec_decode(esk_bank_avro_codec(c->avro), m->payload, m->len, 0, &rs, &v,
                                &err),
               ESK_OK, "%s", err.msg);
  char *json = NULL;
  cr_assert_eq(esk_value_to_json(v, &json, &err), ESK_OK);
  char want[512];
  snprintf(want, sizeof(want), "\"event_id\":\"%s\"", eid);
  cr_expect(strstr(json, want), "%s in %s", want, json);
  snprintf(want, sizeof(want), "\"aggregate_version\":%s,", aver);
  cr_expect(strstr(json, want), "%s in %s", want, json);
  snprintf(want, sizeof(want), "\"correlation_id\":\"%s\",\"causation_id\":\"%s\"", corr, cause);
  cr_expect(strstr(json, want), "%s in %s", want, json);
  cr_expect(strstr(json, "\"aggregate_type\":\"account\""), "%s", json);
  cr_expect(strstr(json, "\"actor\":\"tester\""), "%s", json);
  free(json);
  c->seen++;
  return 0;
}

/* Four commands, one of each event type; their events' headers checked by
 * check_headers(), with event.headers=minimal when @p minimal. */
static void check_event_headers(const char *name, int minimal) {
  esk_test_require_kafka();
  char prefix[128], log[256], out[4096];
  static const char *const min[] = {"event.headers=minimal", NULL};
  pid_t pid = esk_tp_setup(prefix, sizeof(prefix), name, 1, log, sizeof(log),
                           minimal ? min : NULL);
  const char *in =
      "{\"type\":\"OpenAccount\",\"command_id\":\"h1\",\"account_id\":\"H\",\"owner_id\":\"o\","
      "\"initial_deposit\":{\"minor_units\":5,\"currency\":\"SEK\"},\"actor\":\"tester\","
      "\"correlation_id\":\"corr-1\"}\n"
      "{\"type\":\"DepositMoney\",\"command_id\":\"h2\",\"account_id\":\"H\",\"actor\":\"tester\","
      "\"amount\":{\"minor_units\":7,\"currency\":\"SEK\"},\"description\":\"gift\"}\n"
      "{\"type\":\"WithdrawMoney\",\"command_id\":\"h3\",\"account_id\":\"H\",\"actor\":\"tester\","
      "\"amount\":{\"minor_units\":12,\"currency\":\"SEK\"}}\n"
      "{\"type\":\"CloseAccount\",\"command_id\":\"h4\",\"account_id\":\"H\",\"actor\":\"tester\","
      "\"reason\":\"bye\"}\n";
  cr_assert_eq(esk_tp_submit(prefix, in, 60000, out, sizeof(out)), 0, "%s", out);
  hdr_ctx_t c = {.minimal = minimal};
  esk_error_t err = {0};
  rd_kafka_t *rk = NULL;
  char topic[256];
  cr_assert_eq(esk_bank_avro_new(&c.avro, &err), ESK_OK);
  cr_assert_eq(esk_kafka_reader_new(&rk, NULL, NULL, &err), ESK_OK);
  esk_kafka_topic_name(topic, sizeof(topic), prefix, "bank", "events", &err);
  cr_assert_eq(esk_kafka_read_partition(rk, topic, 0, RD_KAFKA_OFFSET_BEGINNING, 20000,
                                        check_headers, &c, NULL, &err),
               ESK_OK, "%s", err.msg);
  cr_expect_eq(c.seen, 4);
  rd_kafka_destroy(rk);
  esk_bank_avro_destroy(c.avro);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  esk_tp_delete_topics(prefix);
}

Test(producer, events_carry_the_architecture_headers_and_metadata, .timeout = 120) {
  check_event_headers("prod_hdrs", 0);
}

Test(producer, event_headers_minimal_writes_only_the_type_and_schema_version, .timeout = 120) {
  check_event_headers("prod_hdrs_min", 1);
}

Test(producer, a_command_id_seen_before_returns_its_first_result_even_after_a_restart,
     .timeout = 150) {
  esk_test_require_kafka();
  char prefix[128], log[256], out1[8192], out2[8192], out3[8192];
  pid_t pid = esk_tp_setup(prefix, sizeof(prefix), "prod_idem", 2, log, sizeof(log), NULL);
  const char *first = OPEN("i1", "I1", "ann", 100, "EUR")
      MOVE("DepositMoney", "i2", "I1", 5, "EUR")
      MOVE("WithdrawMoney", "i3", "I1", 1000, "EUR");
  cr_assert_eq(esk_tp_submit(prefix, first, 60000, out1, sizeof(out1)), 1, "%s", out1);
  /* the events written are part of the result, so of every replay below */
  cr_expect(strstr(out1, "\"aggregate_version\":2,\"events\":[{\"type\":\"MoneyDeposited\","
                         "\"version\":2}]}"), "%s", out1);
  /* the same ids again in the same session: first results, nothing new */
  cr_assert_eq(esk_tp_submit(prefix, first, 60000, out2, sizeof(out2)), 1, "%s", out2);
  cr_expect_str_eq(out2, out1);
  cr_assert_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  /* a new process restores the idempotency cache from the results topic; i2 is
   * resent with another amount and must still answer version 2 */
  pid = esk_tp_start(prefix, "a", log, NULL);
  const char *again = OPEN("i1", "I1", "ann", 100, "EUR")
      MOVE("DepositMoney", "i2", "I1", 999, "EUR")
      MOVE("WithdrawMoney", "i3", "I1", 1000, "EUR");
  cr_assert_eq(esk_tp_submit(prefix, again, 60000, out3, sizeof(out3)), 1, "%s", out3);
  cr_expect_str_eq(out3, out1);
  /* the same new id twice in one file: two lines, one event */
  cr_assert_eq(esk_tp_submit(prefix,
                             MOVE("DepositMoney", "i4", "I1", 1, "EUR")
                                 MOVE("DepositMoney", "i4", "I1", 1, "EUR"),
                             60000, out2, sizeof(out2)),
               0, "%s", out2);
  char *v[4];
  cr_assert_eq(lines(out2, v, 4), 2, "one line per submitted command");
  cr_expect(strstr(v[0], "\"aggregate_version\":3"), "the next version after a restart: %s", v[0]);
  cr_expect_str_eq(v[1], v[0]);
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events(&evs, prefix, 2);
  cr_expect_eq(ne, 3, "i1, i2, i4: one event each, got %zu", ne);
  esk_tp_check_versions(evs, ne);
  free(evs);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  /* 3 first results and their 3 replays */
  cr_expect(esk_tp_file_contains(log, "results=6"), "the restore read the 6 results (see %s)", log);
  esk_tp_delete_topics(prefix);
}

Test(producer, an_undecodable_or_misrouted_command_is_skipped_and_the_next_one_is_handled,
     .timeout = 120) {
  esk_test_require_kafka();
  char prefix[128], log[256], out[4096], topic[256];
  esk_tp_topics(prefix, sizeof(prefix), "prod_poison", 1);
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  esk_error_t err = {0};
  esk_kafka_topic_name(topic, sizeof(topic), prefix, "bank", "commands", &err);
  rd_kafka_t *rk = esk_tp_client();
  const char *junk[] = {"", "\xc3\x01", "\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00garbage",
                        "{\"type\":\"OpenAccount\"}"};
  for (size_t i = 0; i < 4; i++)
    cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("P", 1),
                                   RD_KAFKA_V_VALUE((void *)junk[i], strlen(junk[i]) + (i == 2)),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                 0);
  /* a valid command whose key is not its account id */
  esk_bank_avro_t *avro = NULL;
  esk_buf_t b = {0};
  cr_assert_eq(esk_bank_avro_new(&avro, &err), ESK_OK);
  esk_bank_command_t c = {.type = ESK_BANK_CMD_OPEN_ACCOUNT, .command_id = "k1",
                          .account_id = "REAL", .actor = "t", .correlation_id = "t"};
  c.u.open.owner_id = "o";
  c.u.open.initial_deposit.currency = "EUR";
  cr_assert_eq(esk_bank_avro_encode_command(avro, &b, &c, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("OTHER", 5),
                                 RD_KAFKA_V_VALUE(b.data, b.len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
               0);
  cr_assert_eq(rd_kafka_flush(rk, 10000), 0);
  rd_kafka_destroy(rk);
  esk_buf_free(&b);
  esk_bank_avro_destroy(avro);
  pid_t pid = esk_tp_start(prefix, "a", log, NULL);
  cr_assert_eq(esk_tp_submit(prefix, OPEN("p1", "P", "o", 1, "EUR"), 60000, out, sizeof(out)), 0,
               "%s", out);
  cr_expect(strstr(out, "\"aggregate_version\":1"), "%s", out);
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events(&evs, prefix, 1);
  cr_expect_eq(ne, 1, "only p1 published, got %zu", ne);
  free(evs);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  cr_expect(esk_tp_file_contains(log, "undecodable command skipped"), "see %s", log);
  esk_tp_delete_topics(prefix);
}

Test(producer, refuses_to_start_without_its_topics_or_with_uneven_partitions, .timeout = 60) {
  esk_test_require_kafka();
  char prefix[128], log[256], cmd[512], out[16384];
  esk_test_unique_name(prefix, sizeof(prefix) - 1, "prod_missing");
  strcat(prefix, ".");
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  pid_t pid = esk_tp_start(prefix, "a", log, NULL);
  int st = esk_tp_stop(pid, 0, 20000); /* signal 0: just wait */
  cr_expect(st != 0 && st != -1, "exits non-zero by itself, got %d", st);
  cr_expect(esk_tp_file_contains(log, "bank.commands does not exist"), "see %s", log);
  /* bad values stop start-up naming the key */
  cr_expect_eq(esk_tp_run(ESK_TEST_PRODUCER_BIN " -X batch.max.commands=0", 1, out, sizeof(out)),
               2, "%s", out);
  cr_expect(strstr(out, "batch.max.commands"), "%s", out);
  cr_expect_eq(esk_tp_run(ESK_TEST_PRODUCER_BIN " -X batch.max.ms=6000", 1, out, sizeof(out)), 1,
               "%s", out);
  cr_expect(strstr(out, "at most half of kafka.transaction.timeout.ms"), "%s", out);
  cr_expect_eq(esk_tp_run(ESK_TEST_PRODUCER_BIN " -X kafka.producer.message.max.bytes=100000", 1,
                          out, sizeof(out)),
               1, "%s", out);
  cr_expect(strstr(out, "event.max.bytes=1000000: must be at most kafka.message.max.bytes"), "%s",
            out);
  cr_expect_eq(esk_tp_run(ESK_TEST_PRODUCER_BIN " -X kafka.partition.assignment.strategy="
                          "cooperative-sticky", 1, out, sizeof(out)),
               1, "%s", out);
  cr_expect(strstr(out, "needs an eager assignor"), "%s", out);
  cr_expect_eq(esk_tp_run(ESK_TEST_PRODUCER_BIN " --help", 1, out, sizeof(out)), 0);
  cr_expect(strstr(out, "checkpoint.events"), "--help lists the keys");
  cr_expect_eq(esk_tp_run(ESK_TEST_PRODUCER_BIN " --version", 1, out, sizeof(out)), 0);
  cr_expect(strstr(out, "esk-producer "), "%s", out);
  /* commands with 2 partitions, events with 3 */
  char t[256];
  snprintf(t, sizeof(t), "%sbank.events", prefix);
  esk_test_create_topic(t, 3);
  snprintf(cmd, sizeof(cmd), "%s topics create --topic-prefix '%s' --partitions 2",
           ESK_TEST_ESKCTL_BIN, prefix);
  cr_expect_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 1, "%s", out);
  cr_expect(strstr(out, "exists with 3 partitions, not 2"), "%s", out);
  /* a replication factor the single local broker cannot meet: the broker's reason */
  char other[sizeof(prefix) + 4];
  snprintf(other, sizeof(other), "%srf.", prefix);
  snprintf(cmd, sizeof(cmd), "%s topics create --topic-prefix '%s' --partitions 1 "
           "--replication-factor 3", ESK_TEST_ESKCTL_BIN, other);
  cr_expect_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 1, "%s", out);
  cr_expect(strstr(out, "replication factor of 3"), "%s", out);
  snprintf(cmd, sizeof(cmd), "%s topics create --partitions 1 --replication-factor 0",
           ESK_TEST_ESKCTL_BIN);
  cr_expect_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 2, "%s", out);
  cr_expect(strstr(out, "--replication-factor '0'"), "%s", out);
  esk_tp_delete_topics(prefix);
}

/* Waits until the log at @p log shows the run loop started (fails the test after 30 s). */
static void wait_started(const char *log) {
  for (int w = 0; !esk_tp_file_contains(log, "msg=started"); w++) {
    cr_assert_lt(w, 300, "not started within 30 s (see %s)", log);
    esk_time_sleep_ms(100);
  }
}

/* kafka.consumer.* reaches only the command consumer, kafka.producer.* only the
 * transactional producer: no CONFWARN for a key the other client does not know,
 * and a value refused for the consumer names the key and stops start-up. */
Test(producer, kafka_consumer_and_producer_keys_reach_only_their_client, .timeout = 90) {
  esk_test_require_kafka();
  char prefix[128], log[256], log2[256];
  static const char *const split[] = {"kafka.consumer.fetch.wait.max.ms=25",
                                      "kafka.producer.linger.ms=7", NULL};
  pid_t pid = esk_tp_setup(prefix, sizeof(prefix), "prod_kconf", 1, log, sizeof(log), split);
  wait_started(log);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  cr_expect(!esk_tp_file_contains(log, "CONFWARN"), "a split key reached the wrong client (see %s)",
            log);
  /* the control: the same property unprefixed reaches the producer too, which warns */
  static const char *const both[] = {"kafka.fetch.wait.max.ms=25", NULL};
  esk_tp_log_path(log2, sizeof(log2), prefix, "p2");
  pid = esk_tp_start(prefix, "b", log2, both);
  wait_started(log2);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  cr_expect(esk_tp_file_contains(log2, "CONFWARN") &&
                esk_tp_file_contains(log2, "fetch.wait.max.ms"),
            "an unprefixed consumer property warns in the producer (see %s)", log2);
  /* a value the consumer refuses: start-up fails naming the consumer key (the
   * producer client, created first, did not get it) */
  static const char *const bad[] = {"kafka.consumer.fetch.wait.max.ms=-5", NULL};
  esk_tp_log_path(log2, sizeof(log2), prefix, "p3");
  pid = esk_tp_start(prefix, "c", log2, bad);
  int st = esk_tp_stop(pid, 0, 20000);
  cr_expect(st != 0 && st != -1, "exits non-zero, got %d", st);
  cr_expect(esk_tp_file_contains(log2, "kafka.consumer.fetch.wait.max.ms=-5 refused"), "see %s",
            log2);
  /* and the same value for the producer only is not the consumer's business: the
   * producer refuses it, naming its own key */
  static const char *const badp[] = {"kafka.producer.linger.ms=-5", NULL};
  esk_tp_log_path(log2, sizeof(log2), prefix, "p4");
  pid = esk_tp_start(prefix, "d", log2, badp);
  st = esk_tp_stop(pid, 0, 20000);
  cr_expect(st != 0 && st != -1, "exits non-zero, got %d", st);
  cr_expect(esk_tp_file_contains(log2, "kafka.producer.linger.ms=-5 refused"), "see %s", log2);
  /* the restore reader is a consumer too: with kafka.bootstrap.servers unreachable
   * and the real broker given per kind of client, the partition restores (the
   * reader got kafka.consumer.bootstrap.servers) and a command is answered */
  char cons[300], prod[300], out[4096];
  snprintf(cons, sizeof(cons), "kafka.consumer.bootstrap.servers=%s",
           esk_conf_env_kafka_bootstrap());
  snprintf(prod, sizeof(prod), "kafka.producer.bootstrap.servers=%s",
           esk_conf_env_kafka_bootstrap());
  const char *const per_kind[] = {"kafka.bootstrap.servers=127.0.0.1:1", cons, prod,
                                  "restore.timeout.ms=3000", NULL};
  esk_tp_log_path(log2, sizeof(log2), prefix, "p5");
  pid = esk_tp_start(prefix, "e", log2, per_kind);
  cr_expect_eq(esk_tp_submit(prefix, OPEN("k1", "K1", "o", 5, "EUR"), 30000, out, sizeof(out)), 0,
               "%s (see %s)", out, log2);
  cr_expect(esk_tp_file_contains(log2, "partition restored"), "see %s", log2);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0, "see %s", log2);
  esk_tp_delete_topics(prefix);
}

/* --------------------------------------------------- snapshots vs fold --- */

typedef struct cmp_ctx_s {
  const esk_aggstore_t *other;
  size_t compared;
} cmp_ctx_t;

static int compare_state(const char *id, const void *state, void *opaque) {
  cmp_ctx_t *c = opaque;
  const esk_bank_state_t *s = state;
  cr_expect_str_eq(id, s->account_id, "stored under its account id");
  const esk_bank_state_t *o = esk_aggstore_get(c->other, s->account_id);
  cr_assert_not_null(o, "account %s missing from the fold", s->account_id);
  cr_expect(esk_bank_state_equal(s, o), "account %s: snapshot restore v%lld balance %lld, fold "
            "v%lld balance %lld", s->account_id, (long long)s->version, (long long)s->balance,
            (long long)o->version, (long long)o->balance);
  c->compared++;
  return 0;
}

/* Writes an account's state as an old producer did: a format-1 snapshot
 * (the bank's binary layout before AccountSnapshot), to partition c->partition. */
typedef struct old_snap_ctx_s {
  rd_kafka_t *rk;
  const char *topic;
  int32_t partition;
} old_snap_ctx_t;

static int write_old_snapshot(const char *id, const void *state, void *opaque) {
  old_snap_ctx_t *c = opaque;
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_bank_state_serialize(&b, state, NULL), ESK_OK);
  cr_assert_eq(b.data[0], ESK_BANK_SNAPSHOT_FORMAT);
  cr_assert_eq(rd_kafka_producev(c->rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_PARTITION(c->partition),
                                 RD_KAFKA_V_KEY(id, strlen(id)), RD_KAFKA_V_VALUE(b.data, b.len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
               0);
  esk_buf_free(&b);
  return 0;
}

/* @p packed: the producer keeps its states packed (store.packed) */
static void check_restore_equals_fold(const char *name, int packed) {
  esk_test_require_kafka();
  char prefix[128], log[256], out[1 << 16];
  const char *x[] = {"snapshot.every=3", "checkpoint.events=25", "batch.max.commands=20",
                     packed ? "store.packed=true" : "store.packed=false", NULL};
  pid_t pid = esk_tp_setup(prefix, sizeof(prefix), name, 2, log, sizeof(log), x);
  /* 12 accounts, then 240 deposits and withdrawals spread over them */
  size_t cap = 1 << 16, len = 0;
  char *in = malloc(cap);
  int64_t balance[12] = {0};
  for (int a = 0; a < 12; a++)
    len += (size_t)snprintf(in + len, cap - len,
                            "{\"type\":\"OpenAccount\",\"command_id\":\"o%d\",\"account_id\":"
                            "\"S%d\",\"owner_id\":\"x\",\"initial_deposit\":{\"minor_units\":"
                            "1000,\"currency\":\"EUR\"}}\n",
                            a, a);
  for (int a = 0; a < 12; a++) balance[a] = 1000;
  for (int i = 0; i < 240; i++) {
    int a = (i * 7) % 12, amt = 1 + i % 13;
    int dep = i % 3 != 0;
    balance[a] += dep ? amt : -amt;
    len += (size_t)snprintf(in + len, cap - len,
                            "{\"type\":\"%s\",\"command_id\":\"m%d\",\"account_id\":\"S%d\","
                            "\"amount\":{\"minor_units\":%d,\"currency\":\"EUR\"}}\n",
                            dep ? "DepositMoney" : "WithdrawMoney", i, a, amt);
  }
  cr_assert_eq(esk_tp_submit(prefix, in, 90000, out, sizeof(out)), 0, "%.2000s", out);
  free(in);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);

  esk_topics_t topics;
  esk_error_t err = {0};
  esk_domain_inst_t bank;
  rd_kafka_t *rk = NULL;
  cr_assert_eq(esk_topics_init(&topics, prefix, "bank", &err), ESK_OK);
  cr_assert_eq(esk_domain_inst_open(&bank, esk_bank_domain(), &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_reader_new(&rk, NULL, NULL, &err), ESK_OK);
  /* topics an older producer left: format-1 snapshots and a checkpoint at the
   * (empty) events' end; restoring them must give the fold's states */
  char old_prefix[128], old_snaps[256];
  esk_topics_t old_topics;
  esk_tp_topics(old_prefix, sizeof(old_prefix), "prod_snap_old", 2);
  cr_assert_eq(esk_topics_init(&old_topics, old_prefix, "bank", &err), ESK_OK);
  esk_kafka_topic_name(old_snaps, sizeof(old_snaps), old_prefix, "bank", "snapshots", &err);
  rd_kafka_t *old_rk = esk_tp_client();
  size_t total = 0;
  int64_t snaps = 0, ckpts = 0;
  for (int32_t p = 0; p < 2; p++) {
    esk_aggstore_t *with = NULL, *fold = NULL;
    esk_seen_t *seen = NULL;
    cr_assert_eq(esk_aggstore_new(&with, sizeof(esk_bank_state_t), 0, 0, &err), ESK_OK);
    cr_assert_eq(esk_aggstore_new(&fold, sizeof(esk_bank_state_t), 0, 0, &err), ESK_OK);
    cr_assert_eq(esk_seen_new(&seen, 1000, &err), ESK_OK);
    esk_restore_target_t t1 = {.domain = bank.d, .self = bank.self, .store = with, .seen = seen,
                               .seen_max = 1000},
                         t2 = {.domain = bank.d, .self = bank.self, .store = fold};
    esk_restore_stats_t s1, s2;
    cr_assert_eq(esk_restore_partition(&s1, &t1, rk, &topics, p, 1, 20000, &err), ESK_OK, "%s",
                 err.msg);
    cr_assert_eq(esk_restore_partition(&s2, &t2, rk, &topics, p, 0, 20000, &err), ESK_OK, "%s",
                 err.msg);
    cmp_ctx_t c = {fold, 0};
    esk_aggstore_foreach(with, compare_state, &c);
    cr_expect_eq(c.compared, esk_aggstore_count(fold), "same accounts both ways");
    cr_expect_eq(s2.events_applied, s2.events_read, "the fold applies every event");
    cr_expect_lt(s1.events_read, s2.events_read,
                 "with a checkpoint fewer events are read (%lld vs %lld)",
                 (long long)s1.events_read, (long long)s2.events_read);
    for (int a = 0; a < 12; a++) {
      char id[8];
      snprintf(id, sizeof(id), "S%d", a);
      const esk_bank_state_t *s = esk_aggstore_get(fold, id);
      if (s) cr_expect_eq(s->balance, balance[a], "%s balance", id);
    }
    total += c.compared;
    snaps += s1.snapshots;
    ckpts += s1.checkpoint > 0;
    old_snap_ctx_t oc = {old_rk, old_snaps, p};
    esk_aggstore_foreach(fold, write_old_snapshot, &oc);
    uint8_t ck[ESK_RESTORE_CHECKPOINT_SIZE];
    esk_restore_checkpoint_encode(ck, 0);
    cr_assert_eq(rd_kafka_producev(old_rk, RD_KAFKA_V_TOPIC(old_snaps), RD_KAFKA_V_PARTITION(p),
                                   RD_KAFKA_V_KEY(ESK_RESTORE_CHECKPOINT_KEY,
                                                  sizeof(ESK_RESTORE_CHECKPOINT_KEY) - 1),
                                   RD_KAFKA_V_VALUE(ck, sizeof(ck)),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                 0);
    cr_assert_eq(rd_kafka_flush(old_rk, 10000), 0);
    esk_aggstore_t *from_old = NULL;
    cr_assert_eq(esk_aggstore_new(&from_old, sizeof(esk_bank_state_t), 0, 0, &err), ESK_OK);
    esk_restore_target_t t3 = {.domain = bank.d, .self = bank.self, .store = from_old};
    esk_restore_stats_t s3;
    cr_assert_eq(esk_restore_partition(&s3, &t3, rk, &old_topics, p, 1, 20000, &err), ESK_OK,
                 "format-1 snapshots: %s", err.msg);
    cmp_ctx_t c3 = {fold, 0};
    esk_aggstore_foreach(from_old, compare_state, &c3);
    cr_expect_eq(c3.compared, esk_aggstore_count(fold), "every account from format-1 snapshots");
    cr_expect_eq(s3.snapshots, (int64_t)esk_aggstore_count(fold));
    cr_expect_eq(s3.events_read, 0);
    esk_aggstore_destroy(from_old);
    esk_aggstore_destroy(with);
    esk_aggstore_destroy(fold);
    esk_seen_destroy(seen);
  }
  cr_expect_eq(total, 12, "all 12 accounts restored, got %zu", total);
  cr_expect_gt(snaps, 0, "snapshots were written");
  cr_expect_eq(ckpts, 2, "both partitions have a checkpoint");
  rd_kafka_destroy(old_rk);
  esk_tp_delete_topics(old_prefix);
  rd_kafka_destroy(rk);
  esk_domain_inst_close(&bank);
  esk_tp_delete_topics(prefix);
}

Test(producer, state_restored_from_snapshots_equals_the_fold_of_all_events, .timeout = 150) {
  check_restore_equals_fold("prod_snap", 0);
}

/* every decision made against a state unpacked from its snapshot bytes */
Test(producer, a_packed_store_decides_as_the_plain_one_and_restores_to_the_fold,
     .timeout = 150) {
  check_restore_equals_fold("prod_snap_packed", 1);
}

Test(producer, events_tail_decodes_old_versions_and_flags_undecodable_events, .timeout = 60) {
  esk_test_require_kafka();
  char prefix[128], topic[256], cmd[512], out[16384];
  esk_tp_topics(prefix, sizeof(prefix), "prod_tail", 1);
  esk_error_t err = {0};
  esk_kafka_topic_name(topic, sizeof(topic), prefix, "bank", "events", &err);
  esk_bank_avro_t *avro = NULL;
  cr_assert_eq(esk_bank_avro_new(&avro, &err), ESK_OK);
  /* a MoneyDeposited written at v1, as an old producer would have */
  const esk_schema_t *v1 =
      esk_schema_set_get(esk_bank_avro_schemas(avro), "MoneyDeposited", 1);
  avro_value_t val;
  esk_buf_t b = {0};
  cr_assert_eq(esk_value_new(&val, v1, &err), ESK_OK);
  cr_assert_eq(esk_value_from_json(&val, v1,
                                   "{\"meta\":{\"event_id\":\"00000000-0000-4000-8000-000000000001\","
                                   "\"aggregate_type\":\"account\",\"aggregate_id\":\"T\","
                                   "\"aggregate_version\":2,\"occurred_at\":1,\"correlation_id\":"
                                   "\"x\",\"causation_id\":\"y\",\"actor\":\"z\"},\"amount\":42}",
                                   &err),
               ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_codec_encode(esk_bank_avro_codec(avro), v1, &val, &b, &err), ESK_OK);
  avro_value_decref(&val);
  rd_kafka_t *rk = esk_tp_client();
  cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("T", 1),
                                 RD_KAFKA_V_VALUE(b.data, b.len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
               0);
  cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("T", 1),
                                 RD_KAFKA_V_VALUE("\xc3\x01junk", 6),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
               0);
  cr_assert_eq(rd_kafka_flush(rk, 10000), 0);
  rd_kafka_destroy(rk);
  esk_buf_free(&b);
  esk_bank_avro_destroy(avro);
  snprintf(cmd, sizeof(cmd), "%s events tail --topic-prefix '%s' --from-beginning --exit-at-end",
           ESK_TEST_ESKCTL_BIN, prefix);
  cr_expect_eq(esk_tp_run(cmd, 0, out, sizeof(out)), 1, "an undecodable event makes it exit 1");
  char *v[4];
  size_t n = lines(out, v, 4);
  cr_assert_eq(n, 2, "two lines: %s", out);
  cr_expect(strstr(v[0], "\"offset\":0,\"key\":\"T\",\"type\":\"MoneyDeposited\",\"writer_version\":1,"
                         "\"reader_version\":3"),
            "%s", v[0]);
  cr_expect(strstr(v[0], "\"amount\":{\"minor_units\":42,\"currency\":\"USD\"}"),
            "v1 upcast to v3 (USD): %s", v[0]);
  cr_expect(strstr(v[0], "\"causation_id\":\"y\""), "metadata printed: %s", v[0]);
  cr_expect(strstr(v[1], "\"offset\":1") && strstr(v[1], "\"error\":"), "%s", v[1]);
  snprintf(cmd, sizeof(cmd), "%s events tail --topic-prefix '%s' --from-beginning --max 1",
           ESK_TEST_ESKCTL_BIN, prefix);
  cr_expect_eq(esk_tp_run(cmd, 0, out, sizeof(out)), 0);
  cr_expect_eq(lines(out, v, 4), 1, "--max 1 prints one event");
  esk_tp_delete_topics(prefix);
}

/* Lines of the file at @p path that contain @p needle. */
static int count_lines(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof(line), f))
    if (strstr(line, needle)) n++;
  fclose(f);
  return n;
}

/* Creates <prefix>bank.<what> with @p config (NULL-terminated key, value pairs)
 * and one partition, then the other topics with eskctl. */
static void topics_with_config(const char *prefix, const char *what, const char *const *config) {
  char topic[256], cmd[1024], out[4096];
  snprintf(topic, sizeof(topic), "%sbank.%s", prefix, what);
  esk_error_t err = {0};
  rd_kafka_t *adm = esk_tp_client();
  cr_assert_eq(esk_kafka_create_topic(adm, topic, 1, -1, config, 15000, NULL, &err), ESK_OK, "%s",
               err.msg);
  rd_kafka_destroy(adm);
  snprintf(cmd, sizeof(cmd), "%s topics create --topic-prefix '%s' --partitions 1",
           ESK_TEST_ESKCTL_BIN, prefix);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s", out);
}

/* A deposit whose description makes its event about 1.2 kB. */
static char *big_deposit(const char *id, const char *acc, int units) {
  char big[1001];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  char *s = malloc(2048);
  snprintf(s, 2048,
           "{\"type\":\"DepositMoney\",\"command_id\":\"%s\",\"account_id\":\"%s\",\"amount\":"
           "{\"minor_units\":%d,\"currency\":\"EUR\"},\"description\":\"%s\"}\n",
           id, acc, units, big);
  return s;
}

/* A cause that is no command's (the snapshots topic refuses the checkpoint
 * every batch writes: its max.message.bytes is below a snapshot's size): the
 * producer aborts, forgets the batch's state, rewinds and retries with backoff
 * until the cause is gone; then every command is handled exactly once, and
 * none is rejected. */
Test(producer, an_aborted_transaction_is_redone_from_the_committed_state, .timeout = 150) {
  esk_test_require_kafka();
  char base[96], prefix[128], topic[256], log[256], out[16384];
  esk_test_unique_name(base, sizeof(base), "prod_abort");
  snprintf(prefix, sizeof(prefix), "%s.", base);
  snprintf(topic, sizeof(topic), "%sbank.snapshots", prefix);
  static const char *const small[] = {"max.message.bytes", "150", "cleanup.policy", "compact",
                                      NULL};
  topics_with_config(prefix, "snapshots", small);
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  static const char *const ckpt[] = {"checkpoint.events=1", NULL};
  pid_t pid = esk_tp_start(prefix, "a", log, ckpt);
  const char *in = OPEN("a1", "AB", "o", 10, "EUR") MOVE("DepositMoney", "a2", "AB", 1, "EUR")
      MOVE("DepositMoney", "a3", "AB", 2, "EUR") MOVE("DepositMoney", "a4", "AB", 3, "EUR")
          MOVE("WithdrawMoney", "a5", "AB", 16, "EUR");
  /* eskctl waits in a child while this process lifts the requirement */
  char path[] = "/tmp/esk_abort_out_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  pid_t sub = fork();
  if (sub == 0) {
    int rc = esk_tp_submit(prefix, in, 90000, out, sizeof(out));
    FILE *f = fopen(path, "w");
    fprintf(f, "%d\n%s", rc, out);
    fclose(f);
    _exit(0);
  }
  for (int w = 0; count_lines(log, "aborting transaction") < 2; w++) {
    cr_assert_lt(w, 600, "not two aborts within 60 s (see %s)", log);
    esk_time_sleep_ms(100);
  }
  esk_test_alter_topic(topic, "max.message.bytes", "1048588");
  int st = 0;
  waitpid(sub, &st, 0);
  FILE *f = fopen(path, "r");
  size_t n = fread(out, 1, sizeof(out) - 1, f);
  out[n] = 0;
  fclose(f);
  unlink(path);
  cr_expect_eq(atoi(out), 0, "all accepted once the cause is gone: %s", out);
  cr_expect(strstr(out, "\"command_id\":\"a5\",\"status\":\"accepted\",\"aggregate_version\":5"),
            "%s", out);
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events(&evs, prefix, 1);
  cr_expect_eq(ne, 5, "one event per command, got %zu", ne);
  esk_tp_check_versions(evs, ne);
  free(evs);
  esk_tp_results_t r = esk_tp_count_results(prefix, 1);
  cr_expect_eq(r.messages, 5, "one committed result per command, got %zu", r.messages);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  cr_expect(esk_tp_file_contains(log, "rewound to the committed offsets"), "see %s", log);
  cr_expect(!esk_tp_file_contains(log, "UNPUBLISHABLE"), "a transient cause rejects nothing");
  esk_tp_delete_topics(prefix);
}

/* The broker refuses an event for good (over the topic's max.message.bytes,
 * below event.max.bytes): the command gets an UNPUBLISHABLE result naming the
 * limit, the others of its batch are redone and accepted, its offset is
 * consumed, and the producer does not loop. */
Test(producer, a_command_whose_event_the_broker_refuses_is_rejected_and_the_next_accepted,
     .timeout = 120) {
  esk_test_require_kafka();
  char base[96], prefix[128], log[256], out[16384];
  esk_test_unique_name(base, sizeof(base), "prod_toolarge");
  snprintf(prefix, sizeof(prefix), "%s.", base);
  static const char *const small[] = {"max.message.bytes", "600", "retention.ms", "-1", NULL};
  topics_with_config(prefix, "events", small);
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  static const char *const http[] = {"http.listen=127.0.0.1:0", NULL};
  pid_t pid = esk_tp_start(prefix, "a", log, http);
  int port = esk_tp_http_port(log, 30000);
  char *big = big_deposit("b3", "AB", 2);
  char in[4096];
  snprintf(in, sizeof(in), "%s%s%s",
           OPEN("b1", "AB", "o", 10, "EUR") MOVE("DepositMoney", "b2", "AB", 1, "EUR"), big,
           MOVE("DepositMoney", "b4", "AB", 3, "EUR"));
  int rc = esk_tp_submit(prefix, in, 60000, out, sizeof(out));
  cr_expect_neq(rc, 0, "a rejected command makes eskctl fail: %s", out);
  char *v[8];
  char copy[16384];
  snprintf(copy, sizeof(copy), "%s", out);
  size_t nl = lines(copy, v, 8);
  cr_assert_eq(nl, 4, "one result per command: %s", out);
  expect(v[0], "b1", "accepted", NULL);
  expect(v[1], "b2", "accepted", NULL);
  expect(v[2], "b3", "rejected", "UNPUBLISHABLE");
  cr_expect(strstr(v[2], "max.message.bytes of topic") && strstr(v[2], "bank.events"),
            "the reason names the limit: %s", v[2]);
  cr_expect(strstr(v[3], "\"command_id\":\"b4\",\"status\":\"accepted\",\"aggregate_version\":3"),
            "the next command is accepted: %s", v[3]);
  /* answered once, events exactly 1..3, one result each */
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events(&evs, prefix, 1);
  cr_expect_eq(ne, 3, "no event for the refused command, got %zu", ne);
  esk_tp_check_versions(evs, ne);
  for (size_t i = 0; i < ne; i++) cr_expect_str_neq(evs[i].causation, "b3");
  free(evs);
  esk_tp_results_t r = esk_tp_count_results(prefix, 1);
  cr_expect_eq(r.messages, 4, "one committed result per command, got %zu", r.messages);
  /* bounded: the culprit is certain after the first abort, or after a second
   * when its event shared a record batch with others (then each is redone
   * alone); librdkafka 2.0.2 fails the next transaction once after each
   * refusal ("skipped sequence numbers, requires epoch bump"): at most 4 */
  int aborts = count_lines(log, "aborting transaction");
  cr_expect(aborts >= 1 && aborts <= 4, "aborts: %d (see %s)", aborts, log);
  cr_expect_eq(count_lines(log, "command_id=b3"), 1, "one WARN line names it (see %s)", log);
  char body[65536];
  double val = -1;
  cr_assert_eq(esk_tp_http_get(port, "/metrics", body, sizeof(body)), 200);
  cr_expect(esk_tp_metric(body, "esk_producer_commands_rejected_total{code=\"UNPUBLISHABLE\"}",
                          &val) && val == 1,
            "counted once: %g", val);
  cr_expect(esk_tp_metric(body, "esk_producer_transaction_aborts_total", &val) && val == aborts,
            "aborts metric %g", val);
  /* the command id again: its first result, nothing new, no abort */
  rc = esk_tp_submit(prefix, big, 30000, out, sizeof(out));
  cr_expect(strstr(out, "\"command_id\":\"b3\",\"status\":\"rejected\"") &&
                strstr(out, "UNPUBLISHABLE"),
            "%s", out);
  cr_expect_eq(count_lines(log, "aborting transaction"), aborts, "(see %s)", log);
  free(big);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  esk_tp_delete_topics(prefix);
}

/* event.max.bytes: the size check before producing rejects the command at once,
 * without a failed transaction. */
Test(producer, an_event_over_event_max_bytes_is_rejected_without_an_abort, .timeout = 90) {
  esk_test_require_kafka();
  char prefix[128], log[256], out[16384];
  static const char *const limit[] = {"event.max.bytes=1024", NULL};
  pid_t pid = esk_tp_setup(prefix, sizeof(prefix), "prod_evmax", 1, log, sizeof(log), limit);
  char *big = big_deposit("m2", "MB", 2);
  char in[4096];
  snprintf(in, sizeof(in), "%s%s%s", OPEN("m1", "MB", "o", 10, "EUR"), big,
           MOVE("DepositMoney", "m3", "MB", 3, "EUR"));
  free(big);
  esk_tp_submit(prefix, in, 60000, out, sizeof(out));
  char *v[8];
  cr_assert_eq(lines(out, v, 8), 3, "%s", out);
  expect(v[0], "m1", "accepted", NULL);
  expect(v[1], "m2", "rejected", "UNPUBLISHABLE");
  cr_expect(strstr(v[1], "exceeds event.max.bytes=1024") && strstr(v[1], "MoneyDeposited"), "%s",
            v[1]);
  cr_expect(strstr(v[2], "\"command_id\":\"m3\",\"status\":\"accepted\",\"aggregate_version\":2"),
            "%s", v[2]);
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events(&evs, prefix, 1);
  cr_expect_eq(ne, 2, "got %zu", ne);
  free(evs);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  cr_expect(!esk_tp_file_contains(log, "aborting transaction"), "no abort (see %s)", log);
  cr_expect_eq(count_lines(log, "command_id=m2"), 1, "one WARN line names it (see %s)", log);
  esk_tp_delete_topics(prefix);
}

/* The value of @p key in @p topic's configuration, via DescribeConfigs. */
static void topic_config(const char *topic, const char *key, char *out, size_t size) {
  rd_kafka_t *rk = esk_tp_client();
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
  rd_kafka_DescribeConfigs(rk, &cr, 1, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
  cr_assert_not_null(ev);
  cr_assert_eq(rd_kafka_event_error(ev), 0, "%s", rd_kafka_event_error_string(ev));
  size_t n = 0;
  const rd_kafka_ConfigResource_t **res =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
  cr_assert_eq(n, 1);
  size_t nc = 0;
  const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(res[0], &nc);
  out[0] = 0;
  for (size_t i = 0; i < nc; i++)
    if (!strcmp(rd_kafka_ConfigEntry_name(entries[i]), key))
      snprintf(out, size, "%s", rd_kafka_ConfigEntry_value(entries[i]) ? rd_kafka_ConfigEntry_value(entries[i]) : "");
  rd_kafka_event_destroy(ev);
  rd_kafka_ConfigResource_destroy(cr);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}

Test(producer, topics_create_keeps_events_forever_commands_a_day_and_compacts_snapshots,
     .timeout = 60) {
  esk_test_require_kafka();
  char prefix[128], topic[256], v[64];
  esk_tp_topics(prefix, sizeof(prefix), "prod_topics", 3);
  static const char *const want[][3] = {
      {"events", "retention.ms", "-1"},
      {"events", "retention.bytes", "-1"},
      {"snapshots", "cleanup.policy", "compact"},
      /* small segments and a compaction lag: what a restore reads stays near
       * one snapshot per aggregate (docs/producer.md, "Restore") */
      {"snapshots", "segment.bytes", "16777216"},
      {"snapshots", "segment.ms", "3600000"},
      {"snapshots", "max.compaction.lag.ms", "3600000"},
      {"commands", "cleanup.policy", "delete"},
      /* commands carry personal data in plaintext: a day, in segments of an hour */
      {"commands", "retention.ms", "86400000"},
      {"commands", "segment.ms", "3600000"}};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    snprintf(topic, sizeof(topic), "%sbank.%s", prefix, want[i][0]);
    topic_config(topic, want[i][1], v, sizeof(v));
    cr_expect_str_eq(v, want[i][2], "%s %s", topic, want[i][1]);
  }
  const char *kinds[] = {"commands", "events", "command-results", "snapshots"};
  rd_kafka_t *rk = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_kafka_reader_new(&rk, NULL, NULL, &err), ESK_OK);
  for (int i = 0; i < 4; i++) {
    int n = 0;
    snprintf(topic, sizeof(topic), "%sbank.%s", prefix, kinds[i]);
    cr_assert_eq(esk_kafka_partition_count(rk, topic, 10000, &n, &err), ESK_OK, "%s", err.msg);
    cr_expect_eq(n, 3, "%s has 3 partitions", topic);
  }
  rd_kafka_destroy(rk);
  esk_tp_delete_topics(prefix);
}

Test(producer, submit_without_a_running_producer_reports_no_result_and_fails, .timeout = 60) {
  esk_test_require_kafka();
  char prefix[128], out[4096];
  esk_tp_topics(prefix, sizeof(prefix), "prod_noresult", 2);
  int rc = esk_tp_submit(prefix, OPEN("n1", "N", "o", 1, "EUR") OPEN("n2", "M", "o", 1, "EUR"),
                         1500, out, sizeof(out));
  cr_expect_eq(rc, 1, "%s", out);
  char *v[4];
  cr_assert_eq(lines(out, v, 4), 2, "one line per command");
  cr_expect(strstr(v[0], "\"command_id\":\"n1\",\"status\":\"no_result\""), "%s", v[0]);
  cr_expect(strstr(v[1], "\"command_id\":\"n2\",\"status\":\"no_result\""), "%s", v[1]);
  cr_expect(strstr(v[1], "\"code\":\"TIMEOUT\""), "%s", v[1]);
  esk_tp_delete_topics(prefix);
}

/* Kafka refuses even the result (here: the results topic takes no record of a
 * result's size): the command cannot be answered, so it is consumed without a
 * result and publishes nothing (answering UNPUBLISHABLE is tried first, and
 * refused too), the producer neither loops nor exits, and the skip is logged
 * and counted. Once the topic takes results again, the same command id is
 * handled as new: it was never answered. */
Test(producer, a_command_whose_result_kafka_refuses_is_skipped_and_publishes_nothing,
     .timeout = 150) {
  esk_test_require_kafka();
  char base[96], prefix[128], results[256], log[256], out[16384];
  esk_test_unique_name(base, sizeof(base), "prod_noresult");
  snprintf(prefix, sizeof(prefix), "%s.", base);
  snprintf(results, sizeof(results), "%sbank.command-results", prefix);
  static const char *const tiny[] = {"max.message.bytes", "100", NULL}; /* a marker fits */
  topics_with_config(prefix, "command-results", tiny);
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  static const char *const http[] = {"http.listen=127.0.0.1:0", NULL};
  pid_t pid = esk_tp_start(prefix, "a", log, http);
  int port = esk_tp_http_port(log, 30000);

  const char *in = OPEN("s1", "AS", "o", 10, "EUR") MOVE("DepositMoney", "s2", "AS", 5, "EUR");
  int rc = esk_tp_submit(prefix, in, 5000, out, sizeof(out));
  cr_expect_neq(rc, 0, "no result, so eskctl fails: %s", out);
  for (int w = 0; count_lines(log, "refused even its UNPUBLISHABLE result") < 2; w++) {
    cr_assert_lt(w, 900, "the two commands were not skipped within 90 s (see %s)", log);
    esk_time_sleep_ms(100);
  }
  char body[65536];
  double val = -1;
  cr_assert_eq(esk_tp_http_get(port, "/metrics", body, sizeof(body)), 200);
  cr_expect(esk_tp_metric(body, "esk_producer_commands_skipped_total", &val) && val == 2,
            "skipped counted: %g", val);
  esk_tp_event_t *evs = NULL;
  cr_expect_eq(esk_tp_read_events(&evs, prefix, 1), 0, "a skipped command published events");
  free(evs);
  cr_expect_eq(esk_tp_count_results(prefix, 1).messages, 0);

  /* results are taken again: the producer goes on, and s1 is new to it */
  esk_test_alter_topic(results, "max.message.bytes", "1048588");
  rc = esk_tp_submit(prefix, OPEN("s1", "AS", "o", 10, "EUR") OPEN("s3", "AT", "o", 1, "EUR"),
                     60000, out, sizeof(out));
  cr_expect_eq(rc, 0, "%s", out);
  cr_expect(strstr(out, "\"command_id\":\"s1\",\"status\":\"accepted\",\"aggregate_version\":1"),
            "%s", out);
  cr_expect(strstr(out, "\"command_id\":\"s3\",\"status\":\"accepted\",\"aggregate_version\":1"),
            "%s", out);
  size_t ne = esk_tp_read_events(&evs, prefix, 1);
  cr_expect_eq(ne, 2, "one event each for s1 and s3, got %zu", ne);
  cr_expect_eq(esk_tp_check_versions(evs, ne), 2);
  free(evs);
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  esk_tp_delete_topics(prefix);
}

/* ------------------------------------------- U+0000 in strings (issue 17) */

/* Every committed message of one partition: key and value bytes as received. */
typedef struct {
  size_t n;
  char key[64][160];
  size_t klen[64];
  char val[64][2048];
  size_t vlen[64];
} nul_msgs_t;

static int nul_collect(const rd_kafka_message_t *m, void *ctx) {
  nul_msgs_t *r = ctx;
  if (r->n == 64 || m->key_len >= sizeof(r->key[0]) || m->len >= sizeof(r->val[0])) return 0;
  memcpy(r->key[r->n], m->key, m->key_len);
  r->klen[r->n] = m->key_len;
  memcpy(r->val[r->n], m->payload, m->len);
  r->val[r->n][m->len] = '\0';
  r->vlen[r->n] = m->len;
  r->n++;
  return 0;
}

static void nul_read(nul_msgs_t *r, const char *prefix, const char *what) {
  char topic[256];
  esk_error_t err = {0};
  rd_kafka_t *rk = NULL;
  memset(r, 0, sizeof(*r));
  esk_kafka_topic_name(topic, sizeof(topic), prefix, "bank", what, &err);
  cr_assert_eq(esk_kafka_reader_new(&rk, NULL, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_read_partition(rk, topic, 0, RD_KAFKA_OFFSET_BEGINNING, 20000,
                                        nul_collect, r, NULL, &err),
               ESK_OK, "%s", err.msg);
  rd_kafka_destroy(rk);
}

/* The results keyed by exactly @p key (@p klen bytes): how many, the last one's value. */
static size_t nul_results(const nul_msgs_t *r, const char *key, size_t klen, const char **val) {
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++) {
    if (r->klen[i] != klen || memcmp(r->key[i], key, klen)) continue;
    n++;
    *val = r->val[i];
  }
  return n;
}

/* Polls the results until one is keyed @p key, 60 s at most. */
static void nul_wait_result(nul_msgs_t *r, const char *prefix, const char *key) {
  const char *v;
  for (int w = 0;; w++) {
    nul_read(r, prefix, "command-results");
    if (nul_results(r, key, strlen(key), &v)) return;
    cr_assert_lt(w, 600, "no result for %s within 60 s", key);
    esk_time_sleep_ms(100);
  }
}

/* Sends a command given as JSON, key @p key. The @p n bytes @p from in the
 * encoded value, if any, are then replaced by @p to: U+0000 or bytes that are
 * not UTF-8, which esk_value_from_json() does not take. The string's length
 * prefix stays right, so the value is byte for byte what a Java or Python
 * client writes for such a string (U+0000 is one 00 byte in UTF-8). */
static void nul_send(rd_kafka_t *rk, esk_bank_avro_t *avro, const char *topic, const char *type,
                     const char *json, const char *key, const char *from, const char *to,
                     size_t n) {
  esk_error_t err = {0};
  const esk_schema_t *s = esk_schema_set_latest(esk_bank_avro_schemas(avro), type);
  avro_value_t v;
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_value_new(&v, s, &err), ESK_OK);
  cr_assert_eq(esk_value_from_json(&v, s, json, &err), ESK_OK, "%s: %s", json, err.msg);
  cr_assert_eq(esk_codec_encode(esk_bank_avro_codec(avro), s, &v, &b, &err), ESK_OK, "%s",
               err.msg);
  if (from) {
    uint8_t *at = NULL;
    for (size_t i = 0; !at && i + n <= b.len; i++)
      if (!memcmp(b.data + i, from, n)) at = b.data + i;
    cr_assert(at, "%s not in the encoding", from);
    memcpy(at, to, n);
  }
  cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                 RD_KAFKA_V_VALUE(b.data, b.len),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
               0);
  avro_value_decref(&v);
  esk_buf_free(&b);
}

#define NUL_DEPOSIT(id, acc, units, desc)                                                    \
  "{\"command_id\":\"" id "\",\"account_id\":\"" acc "\",\"amount\":{\"minor_units\":" #units \
  ",\"currency\":\"EUR\"},\"description\":\"" desc "\",\"expected_version\":null,"           \
  "\"actor\":\"java\",\"correlation_id\":\"k\"}"

/* The case found by an independent Java client: an id "edge-c32\u0000first" was
 * answered as "edge-c32", and the genuine "edge-c32" after it was taken for a
 * resubmission and never applied. */
Test(producer, a_command_with_u0000_is_answered_invalid_under_its_exact_id_and_loses_no_other,
     .timeout = 180) {
  esk_test_require_kafka();
  char prefix[128], log[256], topic[256];
  esk_error_t err = {0};
  esk_tp_topics(prefix, sizeof(prefix), "prod_nul", 1);
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  esk_kafka_topic_name(topic, sizeof(topic), prefix, "bank", "commands", &err);
  esk_bank_avro_t *avro = NULL;
  cr_assert_eq(esk_bank_avro_new(&avro, &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *rk = esk_tp_client();
  nul_send(rk, avro, topic, "OpenAccount",
           "{\"command_id\":\"open-1\",\"account_id\":\"E\",\"owner_id\":\"o\",\"initial_deposit\":"
           "{\"minor_units\":0,\"currency\":\"EUR\"},\"expected_version\":null,\"actor\":\"java\","
           "\"correlation_id\":\"k\"}", "E", NULL, NULL, 0);
  nul_send(rk, avro, topic, "DepositMoney", NUL_DEPOSIT("edge-c32~first", "E", 100, "d"), "E",
           "edge-c32~first", "edge-c32\0first", 14);
  nul_send(rk, avro, topic, "DepositMoney", NUL_DEPOSIT("edge-c32", "E", 200, "d"), "E", NULL,
           NULL, 0);
  nul_send(rk, avro, topic, "OpenAccount",
           "{\"command_id\":\"own-1\",\"account_id\":\"F\",\"owner_id\":\"own~er\","
           "\"initial_deposit\":{\"minor_units\":0,\"currency\":\"EUR\"},\"expected_version\":null,"
           "\"actor\":\"java\",\"correlation_id\":\"k\"}", "F", "own~er", "own\0er", 6);
  nul_send(rk, avro, topic, "DepositMoney", NUL_DEPOSIT("desc-1", "E", 5, "before~after"), "E",
           "before~after", "before\0after", 12);
  /* invalid UTF-8 in the id, made by hand: C0 80 is Java's modified-UTF-8 NUL */
  nul_send(rk, avro, topic, "DepositMoney", NUL_DEPOSIT("utf8-xy", "E", 7, "d"), "E", "utf8-xy",
           "utf8-\xc0\x80", 7);
  nul_send(rk, avro, topic, "DepositMoney", NUL_DEPOSIT("r~x", "E", 3, "d"), "E", "r~x", "r\0x",
           3);
  nul_send(rk, avro, topic, "DepositMoney", NUL_DEPOSIT("last", "E", 1, "d"), "E", NULL, NULL, 0);
  cr_assert_eq(rd_kafka_flush(rk, 10000), 0);

  pid_t pid = esk_tp_start(prefix, "a", log, NULL);
  nul_msgs_t *r = malloc(sizeof(*r));
  nul_wait_result(r, prefix, "last");
  const char *v = NULL;
  cr_expect_eq(nul_results(r, "edge-c32\0first", 14, &v), 1,
               "one result under the exact id edge-c32\\0first");
  if (v) {
    cr_expect(strstr(v, "\"command_id\":\"edge-c32\\u0000first\",\"status\":\"rejected\""), "%s", v);
    cr_expect(strstr(v, "\"code\":\"INVALID_COMMAND\"") && strstr(v, "'command_id'") &&
                  strstr(v, "U+0000"), "the answer names the field: %s", v);
  }
  v = NULL;
  cr_expect_eq(nul_results(r, "edge-c32", 8, &v), 1, "one result for the genuine edge-c32");
  cr_expect(v && strstr(v, "\"status\":\"accepted\",\"aggregate_version\":2"),
            "the genuine edge-c32 is new, not a resubmission: %s", v ? v : "(none)");
  v = NULL;
  cr_expect_eq(nul_results(r, "own-1", 5, &v), 1);
  cr_expect(v && strstr(v, "INVALID_COMMAND") && strstr(v, "'owner_id'"), "%s", v ? v : "");
  v = NULL;
  cr_expect_eq(nul_results(r, "desc-1", 6, &v), 1);
  cr_expect(v && strstr(v, "INVALID_COMMAND") && strstr(v, "'description'"), "%s", v ? v : "");
  v = NULL;
  cr_expect_eq(nul_results(r, "utf8-\xc0\x80", 7, &v), 1, "one result under the exact bytes");
  cr_expect(v && strstr(v, "INVALID_COMMAND") && strstr(v, "'command_id' is not valid UTF-8"),
            "%s", v ? v : "");
  cr_expect_eq(nul_results(r, "r\0x", 3, &v), 1);
  cr_expect_eq(r->n, 8, "one result per command, got %zu", r->n);

  /* only open-1, edge-c32 (its own 200) and last published; nothing of the refused */
  nul_msgs_t *e = malloc(sizeof(*e));
  nul_read(e, prefix, "events");
  cr_expect_eq(e->n, 3, "events: %zu", e->n);
  const char *want[] = {"open-1", "edge-c32", "last"};
  for (size_t i = 0; i < e->n && i < 3; i++) {
    esk_bank_event_t ev;
    const char *cause = NULL;
    cr_assert_eq(esk_bank_avro_decode_event(avro, &ev, &cause, e->val[i], e->vlen[i], &err),
                 ESK_OK, "%s", err.msg);
    cr_expect_str_eq(cause, want[i]);
    cr_expect_eq(ev.aggregate_version, (int64_t)i + 1);
    if (i == 1) cr_expect_eq(ev.u.deposited.amount.minor_units, 200);
  }

  /* restart: the restore reads the results again; "r" is still new, not r\0x's */
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  pid = esk_tp_start(prefix, "a", log, NULL);
  nul_send(rk, avro, topic, "DepositMoney", NUL_DEPOSIT("r", "E", 11, "d"), "E", NULL, NULL, 0);
  cr_assert_eq(rd_kafka_flush(rk, 10000), 0);
  nul_wait_result(r, prefix, "r");
  v = NULL;
  cr_expect_eq(nul_results(r, "r", 1, &v), 1);
  cr_expect(v && strstr(v, "\"status\":\"accepted\",\"aggregate_version\":4"), "%s", v ? v : "");
  cr_expect_eq(esk_tp_stop(pid, SIGTERM, 20000), 0);
  free(r);
  free(e);
  rd_kafka_destroy(rk);
  esk_bank_avro_destroy(avro);
  esk_tp_delete_topics(prefix);
}
