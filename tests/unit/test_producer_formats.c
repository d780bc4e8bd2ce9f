/* The producer's own record formats: results (JSON on the results topic) and
 * checkpoints (snapshots topic), with truncated, malformed, oversized and
 * hostile input. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "bank/bank_avro.h"
#include "bank/bank_domain.h"
#include "esk/kafka.h"
#include "esk_test_producer.h"
#include "restore.h"
#include "results.h"

/* The bank's code INSUFFICIENT_FUNDS, as the runtime numbers it. */
static int insufficient_funds(void) {
  int rule = -1;
  cr_assert_eq(esk_domain_rule_from_name(esk_bank_domain(), "INSUFFICIENT_FUNDS", &rule), ESK_OK);
  return rule;
}

Test(producer_formats, results_round_trip) {
  char json[1024], id[ESK_ID_MAX + 1];
  esk_result_t r = {.rule = ESK_RULE_ACCEPTED, .version = 7}, back;
  esk_error_t err = {0};
  int n = esk_result_to_json(json, sizeof(json), "c-1", &r, esk_bank_domain());
  cr_assert_gt(n, 0);
  cr_expect_str_eq(json, "{\"command_id\":\"c-1\",\"status\":\"accepted\",\"aggregate_version\":7,"
                         "\"events\":[]}");
  cr_assert_eq(esk_result_from_json(id, &back, json, (size_t)n, esk_bank_domain(), &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(id, "c-1");
  cr_expect_eq(back.rule, ESK_RULE_ACCEPTED);
  cr_expect_eq(back.version, 7);

  esk_result_t rej = {.rule = insufficient_funds(), .version = 3};
  snprintf(rej.message, sizeof(rej.message),
           "INSUFFICIENT_FUNDS: \"quoted\"\n\\ and more\x01\x1f \xc3\xa9t\xc3\xa9 \xe2\x82\xac");
  n = esk_result_to_json(json, sizeof(json), "c\"2", &rej, esk_bank_domain());
  cr_assert_gt(n, 0);
  cr_assert_eq(esk_result_from_json(id, &back, json, (size_t)n, esk_bank_domain(), &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(id, "c\"2");
  cr_expect_eq(back.rule, insufficient_funds());
  cr_expect_eq(back.version, 3);
  cr_expect_str_eq(back.message, rej.message);
}

Test(producer_formats, an_accepted_result_lists_its_events_and_reads_them_back) {
  char json[2048], id[ESK_ID_MAX + 1];
  esk_result_t r = {.rule = ESK_RULE_ACCEPTED, .version = 9}, back;
  esk_error_t err = {0};
  const char *types[] = {"AccountOpened", "MoneyDeposited"};
  esk_result_set_events(&r, types, 2);
  int n = esk_result_to_json(json, sizeof(json), "c-9", &r, esk_bank_domain());
  cr_assert_gt(n, 0);
  cr_expect_str_eq(json, "{\"command_id\":\"c-9\",\"status\":\"accepted\",\"aggregate_version\":9,"
                         "\"events\":[{\"type\":\"AccountOpened\",\"version\":8},"
                         "{\"type\":\"MoneyDeposited\",\"version\":9}]}");
  cr_assert_eq(esk_result_from_json(id, &back, json, (size_t)n, esk_bank_domain(), &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(back.n_events, 2);
  cr_expect_str_eq(back.message, "AccountOpened,MoneyDeposited");
  /* written again from what was read (a resubmission's answer): the same text */
  char again[2048];
  cr_expect_eq(esk_result_to_json(again, sizeof(again), "c-9", &back, esk_bank_domain()), n);
  cr_expect_str_eq(again, json);

  /* a result written before results listed events: read as unknown, written without */
  const char *old = "{\"command_id\":\"c-o\",\"status\":\"accepted\",\"aggregate_version\":4}";
  cr_assert_eq(esk_result_from_json(id, &back, old, strlen(old), esk_bank_domain(), &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(back.n_events, -1);
  n = esk_result_to_json(again, sizeof(again), "c-o", &back, esk_bank_domain());
  cr_expect_str_eq(again, old);
}

Test(producer_formats, event_names_that_do_not_fit_are_left_out_but_counted) {
  char json[2048], id[ESK_ID_MAX + 1], longname[378];
  memset(longname, 'A', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  const char *types[ESK_DOMAIN_MAX_EVENTS] = {"Short", longname, "Short", "Short"};
  esk_result_t r = {.rule = ESK_RULE_ACCEPTED, .version = 4}, back;
  esk_error_t err = {0};
  esk_result_set_events(&r, types, 3); /* 5 + 1 + 377 fit; ",Short" does not after them */
  cr_expect_eq(r.n_events, 3);
  cr_expect_eq(strlen(r.message), 5 + 1 + 377);
  types[1] = "Has,Comma"; /* never kept: it would split */
  esk_result_set_events(&r, types, 3);
  cr_expect_str_eq(r.message, "Short");
  int n = esk_result_to_json(json, sizeof(json), "c-l", &r, esk_bank_domain());
  cr_assert_gt(n, 0);
  cr_expect(strstr(json, "\"events\":[{\"type\":\"Short\",\"version\":2},{\"version\":3},"
                         "{\"version\":4}]"), "%s", json);
  cr_assert_eq(esk_result_from_json(id, &back, json, (size_t)n, esk_bank_domain(), &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(back.n_events, 3);
  cr_expect_str_eq(back.message, "Short");
  /* the most events, each with a long name: the producer's buffer holds them */
  for (int i = 0; i < ESK_DOMAIN_MAX_EVENTS; i++) types[i] = longname + 350;
  r.version = 100;
  esk_result_set_events(&r, types, ESK_DOMAIN_MAX_EVENTS);
  char id128[ESK_ID_MAX + 1];
  memset(id128, '\x01', ESK_ID_MAX); /* each escaped as \u0001 */
  id128[ESK_ID_MAX] = '\0';
  cr_expect_gt(esk_result_to_json(json, sizeof(json), id128, &r, esk_bank_domain()), 0);
}

Test(producer_formats, a_refused_id_is_written_whole_and_never_read_back_as_its_prefix) {
  char json[1024], id[ESK_ID_MAX + 1];
  esk_result_t r = {.rule = ESK_RULE_INVALID_COMMAND}, back;
  esk_error_t err = {0};
  snprintf(r.message, sizeof(r.message), "INVALID_COMMAND: string field 'command_id' ...");
  int n = esk_result_to_json_n(json, sizeof(json), "edge-c32\0first", 14, &r, esk_bank_domain());
  cr_assert_gt(n, 0);
  const char *nul = "{\"command_id\":\"edge-c32\\u0000first\",\"status\":\"rejected\"";
  cr_expect(!strncmp(json, nul, strlen(nul)), "%s", json);
  /* read back, it would be the C string "edge-c32": the restore must not remember it */
  cr_expect_eq(esk_result_from_json(id, &back, json, (size_t)n, esk_bank_domain(), &err), ESK_EPOISON, "read as %s", id);
  /* bytes that are not UTF-8 (C0 80, then a valid é) as lone surrogates, never as a valid id */
  n = esk_result_to_json_n(json, sizeof(json), "u-\xc0\x80\xc3\xa9\xff", 7, &r, esk_bank_domain());
  cr_assert_gt(n, 0);
  const char *want = "{\"command_id\":\"u-\\udcc0\\udc80\xc3\xa9\\udcff\",";
  cr_expect(!strncmp(json, want, strlen(want)), "%s", json);
  cr_expect_eq(esk_result_from_json(id, &back, json, (size_t)n, esk_bank_domain(), &err), ESK_EPOISON, "read as %s", id);
}

Test(producer_formats, a_result_that_does_not_fit_is_refused) {
  char small[20];
  esk_result_t r = {.rule = ESK_RULE_ACCEPTED, .version = 1};
  cr_expect_eq(esk_result_to_json(small, sizeof(small), "a-long-command-id", &r, esk_bank_domain()),
               ESK_ENOMEM);
}

static void expect_bad_result(const char *text, size_t len) {
  char id[ESK_ID_MAX + 1];
  esk_result_t r;
  esk_error_t err = {0};
  cr_expect_eq(esk_result_from_json(id, &r, text, len, esk_bank_domain(), &err), ESK_EPOISON, "accepted: %.*s",
               (int)len, text);
  cr_expect(strstr(err.msg, "result"), "the message names the record: %s", err.msg);
}

Test(producer_formats, malformed_truncated_and_hostile_results_are_poison) {
  const char *bad[] = {
      "",
      "{",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":",
      "[]",
      "{\"command_id\":\"c\"}",
      "{\"command_id\":\"\",\"status\":\"accepted\",\"aggregate_version\":1}",
      "{\"command_id\":\"c\",\"status\":\"accepted\"}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":-1}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":\"1\"}",
      "{\"command_id\":\"c\",\"status\":\"maybe\",\"aggregate_version\":1}",
      "{\"command_id\":\"c\",\"status\":\"rejected\",\"error\":{\"code\":\"NO_SUCH_RULE\","
      "\"message\":\"m\",\"actual_version\":1}}",
      "{\"command_id\":\"c\",\"status\":\"rejected\",\"error\":{\"code\":\"ACCEPTED\","
      "\"message\":\"m\",\"actual_version\":1}}",
      "{\"command_id\":\"c\",\"status\":\"rejected\",\"error\":{\"code\":\"INVALID_AMOUNT\"}}",
      "{\"command_id\":\"c\",\"command_id\":\"d\",\"status\":\"accepted\",\"aggregate_version\":1}",
      "{\"command_id\":7,\"status\":\"accepted\",\"aggregate_version\":1}",
      /* events that are not the aggregate's last versions, or not events */
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":{}}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":[1]}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":"
      "[{\"version\":2}]}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":2,\"events\":"
      "[{\"version\":2},{\"version\":1}]}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":"
      "[{\"version\":0},{\"version\":1}]}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":"
      "[{\"type\":7,\"version\":1}]}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":"
      "[{\"type\":\"\",\"version\":1}]}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":"
      "[{\"type\":\"A,B\",\"version\":1}]}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":"
      "[{\"type\":\"A\",\"version\":\"1\"}]}",
      "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,\"events\":"
      "[{\"type\":\"A\"}]}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) expect_bad_result(bad[i], strlen(bad[i]));
  const char nul[] = "{\"command_id\":\"c\\u0000x\",\"status\":\"accepted\",\"aggregate_version\":1}";
  expect_bad_result(nul, sizeof(nul) - 1);
  char big[600];
  int n = snprintf(big, sizeof(big), "{\"command_id\":\"%0200d\",\"status\":\"accepted\","
                                      "\"aggregate_version\":1}", 0);
  expect_bad_result(big, (size_t)n);
  const char nul_type[] = "{\"command_id\":\"c\",\"status\":\"accepted\",\"aggregate_version\":1,"
                          "\"events\":[{\"type\":\"A\\u0000B\",\"version\":1}]}";
  expect_bad_result(nul_type, sizeof(nul_type) - 1);
  /* more events than a command may yield */
  char many[4096];
  n = snprintf(many, sizeof(many), "{\"command_id\":\"c\",\"status\":\"accepted\","
                                    "\"aggregate_version\":100,\"events\":[");
  for (int i = 0; i <= ESK_DOMAIN_MAX_EVENTS; i++)
    n += snprintf(many + n, sizeof(many) - (size_t)n, "%s{\"version\":%d}", i ? "," : "",
                  100 - ESK_DOMAIN_MAX_EVENTS + i);
  n += snprintf(many + n, sizeof(many) - (size_t)n, "]}");
  expect_bad_result(many, (size_t)n);
}

Test(producer_formats, checkpoints_round_trip_and_refuse_bad_bytes) {
  uint8_t v[ESK_RESTORE_CHECKPOINT_SIZE];
  int64_t off = 0;
  esk_error_t err = {0};
  esk_restore_checkpoint_encode(v, 1234567890123LL);
  cr_assert_eq(esk_restore_checkpoint_decode(&off, v, sizeof(v), &err), ESK_OK);
  cr_expect_eq(off, 1234567890123LL);
  cr_expect_eq(esk_restore_checkpoint_decode(&off, v, sizeof(v) - 1, &err), ESK_EPOISON);
  cr_expect_eq(esk_restore_checkpoint_decode(&off, v, 0, &err), ESK_EPOISON);
  cr_expect_eq(esk_restore_checkpoint_decode(&off, NULL, 16, &err), ESK_EPOISON);
  uint8_t longer[32] = {0};
  memcpy(longer, v, sizeof(v));
  cr_expect_eq(esk_restore_checkpoint_decode(&off, longer, sizeof(longer), &err), ESK_EPOISON);
  v[0] = 'X';
  cr_expect_eq(esk_restore_checkpoint_decode(&off, v, sizeof(v), &err), ESK_EPOISON);
  esk_restore_checkpoint_encode(v, -5);
  cr_expect_eq(esk_restore_checkpoint_decode(&off, v, sizeof(v), &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "negative"), "%s", err.msg);
}

/* ------------------------------------------------- the bank Avro mapping --- */

Test(producer_formats, commands_round_trip_through_avro_for_every_type) {
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK, "%s", err.msg);
  esk_bank_command_t in[4] = {
      {.type = ESK_BANK_CMD_OPEN_ACCOUNT, .command_id = "c1", .account_id = "A",
       .actor = "me", .correlation_id = "k", .u.open = {"owner", {7, "EUR"}}},
      {.type = ESK_BANK_CMD_DEPOSIT_MONEY, .command_id = "c2", .account_id = "A",
       .has_expected_version = true, .expected_version = 1, .actor = "me",
       .correlation_id = "k", .u.deposit = {{5, "EUR"}, "salary"}},
      {.type = ESK_BANK_CMD_WITHDRAW_MONEY, .command_id = "c3", .account_id = "A",
       .actor = "", .correlation_id = "", .u.withdraw = {{3, "SEK"}, NULL}},
      {.type = ESK_BANK_CMD_CLOSE_ACCOUNT, .command_id = "c4", .account_id = "A",
       .has_expected_version = true, .expected_version = 0, .actor = "me",
       .correlation_id = "k", .u.close = {"bye"}},
  };
  for (int round = 0; round < 2; round++) /* twice: the field cache is warm the second time */
    for (int i = 0; i < 4; i++) {
      esk_bank_command_t out;
      esk_buf_reset(&b);
      cr_assert_eq(esk_bank_avro_encode_command(a, &b, &in[i], &err), ESK_OK, "%s", err.msg);
      cr_assert_eq(esk_bank_avro_decode_command(a, &out, b.data, b.len, &err), ESK_OK, "%s",
                   err.msg);
      cr_expect_eq(out.type, in[i].type);
      cr_expect_str_eq(out.command_id, in[i].command_id);
      cr_expect_str_eq(out.account_id, in[i].account_id);
      cr_expect_str_eq(out.actor, in[i].actor);
      cr_expect_eq(out.has_expected_version, in[i].has_expected_version);
      cr_expect_eq(out.expected_version, in[i].expected_version);
      if (in[i].type == ESK_BANK_CMD_OPEN_ACCOUNT) {
        cr_expect_str_eq(out.u.open.owner_id, "owner");
        cr_expect_eq(out.u.open.initial_deposit.minor_units, 7);
        cr_expect_str_eq(out.u.open.initial_deposit.currency, "EUR");
      } else if (in[i].type == ESK_BANK_CMD_DEPOSIT_MONEY) {
        cr_expect_str_eq(out.u.deposit.description, "salary");
        cr_expect_eq(out.u.deposit.amount.minor_units, 5);
      } else if (in[i].type == ESK_BANK_CMD_WITHDRAW_MONEY) {
        cr_expect_str_eq(out.u.withdraw.amount.currency, "SEK");
      } else {
        cr_expect_str_eq(out.u.close.reason, "bye");
      }
    }
  esk_buf_free(&b);
  esk_bank_avro_destroy(a);
}

/* The codec's reading of a command: esk_codec_decode() and the bank's mapping
 * of the value, without the field-by-field fast path. */
static int slow_decode(esk_bank_avro_t *a, esk_bank_command_t *out, const void *data, size_t len,
                       esk_error_t *err) {
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  int rc = esk_codec_decode(esk_bank_avro_codec(a), data, len, 0, &rs, &v, err);
  return rc ? rc : esk_bank_avro_command_from_value(a, out, rs, v, err);
}

/* Commands of every type, with and without an expected version, empty and long
 * strings, and longs at the ends of what the fast path reads (nine bytes). */
static size_t fast_cases(esk_bank_command_t *c, char *longstr, size_t longlen) {
  memset(longstr, 'x', longlen - 1);
  longstr[longlen - 1] = '\0';
  const int64_t big = ((int64_t)1 << 62) - 1;
  size_t n = 0;
  c[n++] = (esk_bank_command_t){.type = ESK_BANK_CMD_OPEN_ACCOUNT, .command_id = "c1",
                                .account_id = "A", .actor = "me", .correlation_id = "k",
                                .u.open = {"owner", {0, "EUR"}}};
  c[n++] = (esk_bank_command_t){.type = ESK_BANK_CMD_OPEN_ACCOUNT, .command_id = longstr,
                                .account_id = "acc/..%00", .has_expected_version = true,
                                .expected_version = 0, .actor = "", .correlation_id = "",
                                .u.open = {longstr, {big, "SEK"}}};
  c[n++] = (esk_bank_command_t){.type = ESK_BANK_CMD_DEPOSIT_MONEY, .command_id = "c2",
                                .account_id = "A", .has_expected_version = true,
                                .expected_version = big, .actor = "me", .correlation_id = "k",
                                .u.deposit = {{-big, "EUR"}, "salary"}};
  c[n++] = (esk_bank_command_t){.type = ESK_BANK_CMD_DEPOSIT_MONEY, .command_id = "c3",
                                .account_id = "A", .actor = "a", .correlation_id = "b",
                                .u.deposit = {{1, "E"}, ""}};
  c[n++] = (esk_bank_command_t){.type = ESK_BANK_CMD_WITHDRAW_MONEY, .command_id = "c4",
                                .account_id = "A", .has_expected_version = true,
                                .expected_version = -1, .actor = "x", .correlation_id = "y",
                                .u.withdraw = {{-1, "SEK"}, NULL}};
  c[n++] = (esk_bank_command_t){.type = ESK_BANK_CMD_CLOSE_ACCOUNT, .command_id = "c5",
                                .account_id = longstr, .actor = "me", .correlation_id = "k",
                                .u.close = {"bye"}};
  c[n++] = (esk_bank_command_t){.type = ESK_BANK_CMD_CLOSE_ACCOUNT, .command_id = "c6",
                                .account_id = "B", .actor = "me", .correlation_id = "k",
                                .u.close = {""}};
  return n;
}

Test(producer_formats, commands_read_field_by_field_equal_the_codecs_reading) {
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK, "%s", err.msg);
  esk_bank_command_t in[8];
  char longstr[3000];
  size_t n = fast_cases(in, longstr, sizeof(longstr));
  for (size_t i = 0; i < n; i++) {
    esk_bank_command_t fast, slow;
    esk_buf_reset(&b);
    cr_assert_eq(esk_bank_avro_encode_command(a, &b, &in[i], &err), ESK_OK, "%s", err.msg);
    cr_assert_eq(slow_decode(a, &slow, b.data, b.len, &err), ESK_OK, "%zu: %s", i, err.msg);
    cr_assert_eq(esk_bank_avro_decode_command_fast(a, &fast, b.data, b.len), ESK_OK,
                 "case %zu: the fast path left a plain command to the codec", i);
    cr_expect(esk_bank_command_equal(&fast, &slow), "case %zu read differently", i);
    cr_expect(esk_bank_command_equal(&fast, &in[i]) || in[i].type == ESK_BANK_CMD_WITHDRAW_MONEY,
              "case %zu is not what was written", i);
  }
  esk_buf_free(&b);
  esk_bank_avro_destroy(a);
}

/* Every single-byte change of @p msg: whatever the fast path reads, the codec
 * reads the same; returns how many it read. */
static size_t mutations_agree(esk_bank_avro_t *a, const uint8_t *msg, size_t len) {
  uint8_t m[512];
  size_t read = 0;
  cr_assert_leq(len, sizeof(m));
  for (size_t at = 0; at < len; at++)
    for (int v = 0; v < 256; v++) {
      memcpy(m, msg, len);
      m[at] = (uint8_t)v;
      esk_bank_command_t fast, slow;
      esk_error_t err = {0};
      if (esk_bank_avro_decode_command_fast(a, &fast, m, len) != ESK_OK) continue;
      read++;
      cr_assert_eq(slow_decode(a, &slow, m, len, &err), ESK_OK,
                   "byte %zu set to %d: the fast path read what the codec refuses: %s", at, v,
                   err.msg);
      cr_assert(esk_bank_command_equal(&fast, &slow), "byte %zu set to %d: read differently", at,
                v);
    }
  return read;
}

Test(producer_formats, commands_the_fast_path_is_unsure_of_go_to_the_codec) {
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK, "%s", err.msg);
  esk_bank_command_t c = {.type = ESK_BANK_CMD_DEPOSIT_MONEY, .command_id = "c-1",
                          .account_id = "acc-1", .has_expected_version = true,
                          .expected_version = 3, .actor = "me", .correlation_id = "k",
                          .u.deposit = {{250, "EUR"}, "rent"}},
                     out;
  cr_assert_eq(esk_bank_avro_encode_command(a, &b, &c, &err), ESK_OK, "%s", err.msg);
  /* cut short anywhere, or one byte too many: the codec refuses it and says why */
  for (size_t k = 0; k < b.len; k++) {
    cr_expect_eq(esk_bank_avro_decode_command_fast(a, &out, b.data, k), ESK_ENOTFOUND, "%zu", k);
    cr_expect_eq(esk_bank_avro_decode_command(a, &out, b.data, k, &err), ESK_EPOISON, "%zu", k);
  }
  uint8_t more[256];
  memcpy(more, b.data, b.len);
  more[b.len] = 0;
  cr_expect_eq(esk_bank_avro_decode_command_fast(a, &out, more, b.len + 1), ESK_ENOTFOUND);
  cr_expect_eq(esk_bank_avro_decode_command(a, &out, more, b.len + 1, &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "trailing"), "%s", err.msg);
  /* every one-byte change: read by the fast path only where the codec agrees
   * (the change of a string's letter, of a long's low bits) */
  size_t read = mutations_agree(a, b.data, b.len);
  cr_expect_gt(read, 10 * b.len, "only %zu of the %zu changes were read fast", read, 256 * b.len);
  /* a non-ASCII string and a long of ten bytes: the codec's path, same result */
  c.u.deposit.description = "løn ✓";
  c.expected_version = INT64_MIN;
  esk_buf_reset(&b);
  cr_assert_eq(esk_bank_avro_encode_command(a, &b, &c, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(esk_bank_avro_decode_command_fast(a, &out, b.data, b.len), ESK_ENOTFOUND);
  cr_assert_eq(esk_bank_avro_decode_command(a, &out, b.data, b.len, &err), ESK_OK, "%s", err.msg);
  cr_expect(esk_bank_command_equal(&out, &c));
  esk_buf_free(&b);
  esk_bank_avro_destroy(a);
}

Test(producer_formats, the_bank_decider_reads_commands_fast_into_the_envelope) {
  const esk_domain_t *d = esk_bank_domain();
  int (*fast)(void *, const void *, size_t, esk_envelope_t *, void *) =
      esk_domain_decode_command_bytes(d);
  cr_assert_not_null(fast);
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK, "%s", err.msg);
  esk_bank_command_t c = {.type = ESK_BANK_CMD_WITHDRAW_MONEY, .command_id = "w-9",
                          .account_id = "acc-9", .has_expected_version = true,
                          .expected_version = 7, .actor = "teller", .correlation_id = "corr",
                          .u.withdraw = {{40, "DKK"}, NULL}},
                     out;
  esk_envelope_t env = {0};
  cr_assert_eq(esk_bank_avro_encode_command(a, &b, &c, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(fast(a, b.data, b.len, &env, &out), ESK_OK);
  cr_expect_str_eq(env.command_id, "w-9");
  cr_expect_str_eq(env.aggregate_id, "acc-9");
  cr_expect(env.has_expected_version && env.expected_version == 7);
  cr_expect_str_eq(env.actor, "teller");
  cr_expect_str_eq(env.correlation_id, "corr");
  cr_expect(esk_bank_command_equal(&out, &c));
  uint8_t junk[] = {0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8};
  cr_expect_eq(fast(a, junk, sizeof(junk), &env, &out), ESK_ENOTFOUND);
  esk_buf_free(&b);
  esk_bank_avro_destroy(a);
}

Test(producer_formats, events_round_trip_through_avro_for_every_type) {
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK, "%s", err.msg);
  esk_bank_event_t in[4];
  esk_tp_sample_events(in); /* 10 EUR, 20 USD, 30 SEK */
  esk_bank_event_meta_t meta = {"00000000-0000-4000-8000-000000000000", 1, "corr", "cause", "me"};
  for (int i = 0; i < 4; i++) {
    esk_bank_event_t out;
    const esk_schema_t *ws = NULL;
    const char *cause = NULL;
    esk_buf_reset(&b);
    cr_assert_eq(esk_bank_avro_encode_event(a, &b, &ws, &in[i], &meta, &err), ESK_OK, "%s",
                 err.msg);
    cr_expect_eq(ws, esk_schema_set_latest(esk_bank_avro_schemas(a), esk_schema_type(ws)));
    cr_assert_eq(esk_bank_avro_decode_event(a, &out, &cause, b.data, b.len, &err), ESK_OK,
                 "%s", err.msg);
    cr_expect(memcmp(&out, &in[i], sizeof(out)) == 0, "event %d differs after a round trip", i);
    cr_expect_str_eq(cause, "cause");
    /* truncated, and a command where an event is expected */
    cr_expect_eq(esk_bank_avro_decode_event(a, &out, NULL, b.data, b.len - 1, &err), ESK_EPOISON);
    esk_bank_command_t c;
    cr_expect_eq(esk_bank_avro_decode_command(a, &c, b.data, b.len, &err), ESK_EPOISON);
    cr_expect(strstr(err.msg, "is not a bank command"), "%s", err.msg);
  }
  esk_buf_free(&b);
  esk_bank_avro_destroy(a);
}

/* The bank writes its events field by field (bank_avro.c, encode_direct()):
 * the bytes are those of the generic path, a value of the writer schema
 * encoded by esk_codec_encode(), for every type, odd values included. */
Test(producer_formats, events_written_field_by_field_equal_the_generic_encoding) {
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  esk_buf_t b, g;
  esk_buf_init(&b, 0);
  esk_buf_init(&g, 0);
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK, "%s", err.msg);
  esk_bank_event_t in[4];
  esk_tp_sample_events(in);
  in[1].u.deposited.amount.minor_units = INT64_MAX;
  in[2].aggregate_version = INT64_MIN;
  snprintf(in[3].u.closed.reason, sizeof(in[3].u.closed.reason), "d\xc3\xa9m\xc3\xa9nag\xc3\xa9");
  esk_bank_event_meta_t metas[2] = {
      {"00000000-0000-4000-8000-000000000000", -1, "corr", "cause", "me"},
      {"", INT64_MAX, NULL, "c", NULL}};
  for (int m = 0; m < 2; m++)
    for (int i = 0; i < 4; i++) {
      const esk_schema_t *ws = NULL, *rs = NULL;
      avro_value_t *v = NULL;
      esk_buf_reset(&b);
      esk_buf_reset(&g);
      cr_assert_eq(esk_bank_avro_encode_event(a, &b, &ws, &in[i], &metas[m], &err), ESK_OK, "%s",
                   err.msg);
      cr_assert_eq(esk_codec_decode(esk_bank_avro_codec(a), b.data, b.len, 0, &rs, &v, &err),
                   ESK_OK, "%s", err.msg);
      cr_assert_eq(esk_codec_encode(esk_bank_avro_codec(a), ws, v, &g, &err), ESK_OK, "%s",
                   err.msg);
      cr_expect(g.len == b.len && !memcmp(g.data, b.data, b.len),
                "event %d, meta %d: %zu bytes, the generic path %zu", i, m, b.len, g.len);
    }
  esk_buf_free(&b);
  esk_buf_free(&g);
  esk_bank_avro_destroy(a);
}

Test(producer_formats, an_event_with_fields_longer_than_the_aggregate_allows_is_poison) {
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK);
  const esk_schema_t *s = esk_schema_set_latest(esk_bank_avro_schemas(a), "AccountOpened");
  avro_value_t v;
  char json[1024], owner[201];
  memset(owner, 'o', 200);
  owner[200] = 0;
  snprintf(json, sizeof(json),
           "{\"meta\":{\"event_id\":\"x\",\"aggregate_type\":\"account\",\"aggregate_id\":\"A\","
           "\"aggregate_version\":1,\"occurred_at\":1,\"correlation_id\":\"\",\"causation_id\":"
           "\"\",\"actor\":\"\"},\"owner_id\":\"%s\",\"initial_deposit\":{\"minor_units\":1,"
           "\"currency\":\"EURO\"}}",
           owner);
  cr_assert_eq(esk_value_new(&v, s, &err), ESK_OK);
  cr_assert_eq(esk_value_from_json(&v, s, json, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_codec_encode(esk_bank_avro_codec(a), s, &v, &b, &err), ESK_OK);
  esk_bank_event_t ev;
  cr_expect_eq(esk_bank_avro_decode_event(a, &ev, NULL, b.data, b.len, &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "longer than the aggregate allows"), "%s", err.msg);
  avro_value_decref(&v);
  esk_buf_free(&b);
  esk_bank_avro_destroy(a);
}

/* The refused fixtures of every command and event type (tests/fixtures/avro/
 * generate_refused.py): a command is refused naming the field, and its id is
 * found exactly as written, to answer it under; an event is refused naming the field. */

static size_t refused_unhex(const char *hex, uint8_t *out, size_t max) {
  size_t n = strlen(hex) / 2;
  cr_assert_leq(n, max);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
    out[i] = (uint8_t)v;
  }
  return n;
}

Test(producer_formats, a_command_or_event_with_a_refused_string_is_poison_naming_the_field) {
  static const char *const files[] = {"OpenAccount.v1", "DepositMoney.v1", "WithdrawMoney.v1",
                                      "CloseAccount.v1", "AccountOpened.v1", "MoneyDeposited.v1",
                                      "MoneyDeposited.v2", "MoneyDeposited.v3",
                                      "MoneyWithdrawn.v1", "MoneyWithdrawn.v2",
                                      "AccountClosed.v1"};
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK, "%s", err.msg);
  size_t cases = 0;
  for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/avro/refused/%s.json", ESK_SOURCE_DIR,
             files[f]);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    cr_assert(doc, "%s: %s", path, je.text);
    int is_command = f < 4;
    size_t i;
    json_t *cs;
    json_array_foreach(json_object_get(doc, "cases"), i, cs) {
      uint8_t msg[2048], str[256];
      size_t len = refused_unhex(json_string_value(json_object_get(cs, "single_object_hex")), msg,
                                 sizeof(msg));
      size_t slen = refused_unhex(json_string_value(json_object_get(cs, "string_hex")), str,
                                  sizeof(str));
      const char *field = json_string_value(json_object_get(cs, "field"));
      char quoted[128];
      snprintf(quoted, sizeof(quoted), "'%s'", field);
      const char *id = NULL;
      size_t idlen = 0;
      if (is_command) {
        esk_bank_command_t c;
        cr_assert_eq(esk_bank_avro_decode_command(a, &c, msg, len, &err), ESK_EPOISON,
                     "%s %s decoded", files[f], field);
        cr_expect(strstr(err.msg, quoted), "%s: %s", files[f], err.msg);
        cr_assert_eq(esk_bank_avro_refused_string(a, &err, msg, len, "command_id", &id, &idlen),
                     ESK_OK,
                     "%s %s: no command id", files[f], field);
        if (!strcmp(field, "command_id"))
          cr_expect(idlen == slen && !memcmp(id, str, slen), "%s: the id is not as written",
                    files[f]);
        else
          cr_expect(idlen == strlen("command_id — ünïcødé ✓") &&
                        !memcmp(id, "command_id — ünïcødé ✓", idlen),
                    "%s %s: id %.*s", files[f], field, (int)idlen, id);
      } else {
        esk_bank_event_t ev;
        cr_assert_eq(esk_bank_avro_decode_event(a, &ev, NULL, msg, len, &err), ESK_EPOISON,
                     "%s %s decoded", files[f], field);
        cr_expect(strstr(err.msg, quoted), "%s: %s", files[f], err.msg);
        cr_expect_eq(esk_bank_avro_refused_string(a, &err, msg, len, "command_id", &id, &idlen),
                     ESK_ENOTFOUND);
      }
      cases++;
    }
    json_decref(doc);
  }
  cr_expect_eq(cases, 2 * (6 + 6 + 5 + 5 + 8 + 6 + 8 + 8 + 7 + 7 + 7), "%zu cases", cases);
  /* a command refused for another reason has no refused string to answer under */
  uint8_t junk[] = {0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8};
  esk_bank_command_t c;
  const char *id;
  size_t idlen;
  cr_assert_eq(esk_bank_avro_decode_command(a, &c, junk, sizeof(junk), &err), ESK_EPOISON);
  cr_expect_eq(esk_bank_avro_refused_string(a, &err, junk, sizeof(junk), "command_id", &id, &idlen),
               ESK_ENOTFOUND);
  esk_bank_avro_destroy(a);
}
