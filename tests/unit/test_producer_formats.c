/* The producer's own record formats: results (JSON on the results topic) and
 * checkpoints (snapshots topic), with truncated, malformed, oversized and
 * hostile input; and the topic names derived from the configuration. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "esk/kafka.h"
#include "restore.h"

Test(producer_formats, results_round_trip) {
  char json[1024], id[ESK_BANK_ID_MAX + 1];
  esk_bank_result_t r = {.rule = ESK_BANK_ACCEPTED, .version = 7}, back;
  esk_error_t err = {0};
  int n = esk_result_to_json(json, sizeof(json), "c-1", &r);
  cr_assert_gt(n, 0);
  cr_expect_str_eq(json, "{\"command_id\":\"c-1\",\"status\":\"accepted\",\"aggregate_version\":7}");
  cr_assert_eq(esk_result_from_json(id, &back, json, (size_t)n, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(id, "c-1");
  cr_expect_eq(back.rule, ESK_BANK_ACCEPTED);
  cr_expect_eq(back.version, 7);

  esk_bank_result_t rej = {.rule = ESK_BANK_INSUFFICIENT_FUNDS, .version = 3};
  snprintf(rej.message, sizeof(rej.message),
           "INSUFFICIENT_FUNDS: \"quoted\"\n\\ and more\x01\x1f \xc3\xa9t\xc3\xa9 \xe2\x82\xac");
  n = esk_result_to_json(json, sizeof(json), "c\"2", &rej);
  cr_assert_gt(n, 0);
  cr_assert_eq(esk_result_from_json(id, &back, json, (size_t)n, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(id, "c\"2");
  cr_expect_eq(back.rule, ESK_BANK_INSUFFICIENT_FUNDS);
  cr_expect_eq(back.version, 3);
  cr_expect_str_eq(back.message, rej.message);
}

Test(producer_formats, a_result_that_does_not_fit_is_refused) {
  char small[20];
  esk_bank_result_t r = {.rule = ESK_BANK_ACCEPTED, .version = 1};
  cr_expect_eq(esk_result_to_json(small, sizeof(small), "a-long-command-id", &r), -1);
}

static void expect_bad_result(const char *text, size_t len) {
  char id[ESK_BANK_ID_MAX + 1];
  esk_bank_result_t r;
  esk_error_t err = {0};
  cr_expect_eq(esk_result_from_json(id, &r, text, len, &err), ESK_EPOISON, "accepted: %.*s",
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
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) expect_bad_result(bad[i], strlen(bad[i]));
  const char nul[] = "{\"command_id\":\"c\\u0000x\",\"status\":\"accepted\",\"aggregate_version\":1}";
  expect_bad_result(nul, sizeof(nul) - 1);
  char big[600];
  int n = snprintf(big, sizeof(big), "{\"command_id\":\"%0200d\",\"status\":\"accepted\","
                                      "\"aggregate_version\":1}", 0);
  expect_bad_result(big, (size_t)n);
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

Test(producer_formats, topic_names_come_from_prefix_and_domain) {
  esk_topics_t t;
  esk_error_t err = {0};
  cr_assert_eq(esk_topics_init(&t, "", "bank", &err), ESK_OK);
  cr_expect_str_eq(t.commands, "bank.commands");
  cr_expect_str_eq(t.events, "bank.events");
  cr_expect_str_eq(t.results, "bank.command-results");
  cr_expect_str_eq(t.snapshots, "bank.snapshots");
  cr_assert_eq(esk_topics_init(&t, "t1.", "bank", &err), ESK_OK);
  cr_expect_str_eq(t.events, "t1.bank.events");
  cr_expect_eq(esk_topics_init(&t, "bad/", "bank", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "'/'"), "%s", err.msg);
  cr_expect_eq(esk_topics_init(&t, "", "", &err), ESK_EINVAL);
  char longp[300];
  memset(longp, 'a', sizeof(longp) - 1);
  longp[sizeof(longp) - 1] = 0;
  cr_expect_eq(esk_topics_init(&t, longp, "bank", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "longer than"), "%s", err.msg);
}
