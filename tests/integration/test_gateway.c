/* esk-gateway against the real broker and an esk-producer, both run as
 * children: readiness, accepted commands with a consistency token that names
 * the command's last event, resubmissions, refusals (409, 422), bad input
 * (400, 413, 415, 404, 405), the 202 + Location of a wait that runs out, and
 * hostile input that gets a 4xx without crashing it. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/api.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_api.h"
#include "esk_test_http.h"
#include "esk_test_producer.h"

#define PARTS 3

typedef struct {
  char prefix[128], plog[256], glog[256], keyfile[256];
  pid_t producer, gateway;
  int port;
  unsigned char key[ESK_TOKEN_KEY_BYTES];
} env_t;

/* @p extra: the gateway's -X keys; @p pextra: the producer's. */
static void setup_both(env_t *e, const char *name, const char *const *extra,
                       const char *const *pextra) {
  e->producer = esk_tp_setup(e->prefix, sizeof(e->prefix), name, PARTS, e->plog, sizeof(e->plog),
                             pextra);
  esk_tp_log_path(e->glog, sizeof(e->glog), e->prefix, "g");
  esk_ta_write_key(e->keyfile, sizeof(e->keyfile), e->prefix, e->key);
  char a_prefix[256];
  const char *args[8] = {a_prefix};
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", e->prefix);
  for (size_t i = 0; extra && extra[i] && i < 6; i++) args[i + 1] = extra[i];
  e->gateway = esk_ta_start(ESK_TEST_GATEWAY_BIN, e->keyfile, e->glog, args, &e->port);
}

static void setup(env_t *e, const char *name, const char *const *extra) {
  setup_both(e, name, extra, NULL);
}

static void teardown(env_t *e) {
  if (e->gateway > 0) cr_expect_eq(esk_tp_stop(e->gateway, SIGTERM, 20000), 0, "gateway exit");
  if (e->producer > 0) esk_tp_stop(e->producer, SIGTERM, 20000);
  esk_tp_delete_topics(e->prefix);
  unlink(e->keyfile);
}

static int post(env_t *e, const char *query, const char *headers, const char *body, char *head,
                char *out, size_t size) {
  return esk_ta_post(e->port, query, headers, body, head, 4096, out, size);
}

static esk_token_t token_of(env_t *e, const char *body) {
  char text[ESK_TOKEN_MAX_CHARS + 1];
  return esk_ta_token_of(body, e->key, text, sizeof(text));
}

/* The offset + 1 of the event caused by command @p id, -1 when there is none. */
static int64_t event_next(const char *prefix, const char *id, int32_t *part) {
  esk_tp_event_t *evs = NULL;
  size_t n = esk_tp_read_events(&evs, prefix, PARTS);
  int64_t r = -1;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(evs[i].causation, id) && evs[i].offset + 1 > r) {
      r = evs[i].offset + 1;
      *part = evs[i].partition;
    }
  free(evs);
  return r;
}

/* A second gateway, whose cache is empty, sends @p cmd (command @p id, answered
 * before) to the producer: the producer repeats the first result, marked as a
 * repeat, so the gateway answers it at once (not after waiting for events in
 * this transaction, which hold none of it) with a token past the command's
 * event. */
static void resubmit_to_a_fresh_gateway(env_t *e, const char *cmd, const char *id) {
  char log[300], a_prefix[256], head[4096], body[4096];
  snprintf(log, sizeof(log), "%s.2", e->glog);
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", e->prefix);
  const char *args[] = {a_prefix, NULL};
  int port;
  pid_t g2 = esk_ta_start(ESK_TEST_GATEWAY_BIN, e->keyfile, log, args, &port);
  int64_t t0 = esk_time_mono_ms();
  int st = esk_ta_post(port, "?wait_ms=8000", NULL, cmd, head, sizeof(head), body, sizeof(body));
  int64_t took = esk_time_mono_ms() - t0;
  cr_assert_eq(st, 200, "the repeat through a fresh gateway: %d %s (see %s)", st, body, log);
  cr_expect_lt(took, 5000, "answered after %lld ms: it waited for events", (long long)took);
  int32_t part = -1;
  int64_t next = event_next(e->prefix, id, &part);
  esk_token_t t = token_of(e, body);
  cr_assert_eq(t.pos[0].partition, part);
  cr_assert_geq(t.pos[0].offset, next, "token %lld, event next %lld", (long long)t.pos[0].offset,
                (long long)next);
  cr_expect_eq(esk_tp_stop(g2, SIGTERM, 20000), 0, "second gateway exit");
  unlink(log);
}

#define OPEN(id, acc) "{\"type\":\"OpenAccount\",\"command_id\":\"" id "\",\"account_id\":\"" acc \
  "\",\"owner_id\":\"o\",\"initial_deposit\":{\"minor_units\":100,\"currency\":\"EUR\"}}"
#define DEP(id, acc, units) "{\"type\":\"DepositMoney\",\"command_id\":\"" id "\",\"account_id\":\"" \
  acc "\",\"amount\":{\"minor_units\":" #units ",\"currency\":\"EUR\"}}"

Test(gateway, accepted_commands_carry_a_token_at_their_last_event, .timeout = 180) {
  env_t e = {0};
  setup(&e, "gw_ok", NULL);
  char head[4096], body[4096];
  cr_assert_eq(post(&e, NULL, NULL, OPEN("o1", "A1"), head, body, sizeof(body)), 200, "%s", body);
  cr_assert(strstr(body, "\"aggregate_version\":1"), "%s", body);
  cr_assert(strstr(body, "\"events\":[{\"type\":\"AccountOpened\",\"version\":1}]"), "%s", body);
  cr_assert(strstr(head, "Esk-Consistency: "), "%s", head);
  esk_token_t t1 = token_of(&e, body);
  cr_assert_str_eq(t1.domain, "bank");
  cr_assert_eq(t1.n, 1);
  int32_t part = -1;
  int64_t next = event_next(e.prefix, "o1", &part);
  cr_assert_eq(t1.pos[0].partition, part);
  cr_assert_eq(t1.pos[0].offset, next, "token %lld, event next %lld",
               (long long)t1.pos[0].offset, (long long)next);
  for (int i = 0; i < 5; i++) {
    char cmd[512], id[32];
    snprintf(id, sizeof(id), "d%d", i);
    snprintf(cmd, sizeof(cmd), "{\"type\":\"DepositMoney\",\"command_id\":\"%s\",\"account_id\":"
             "\"A1\",\"amount\":{\"minor_units\":10,\"currency\":\"EUR\"}}", id);
    cr_assert_eq(post(&e, NULL, NULL, cmd, head, body, sizeof(body)), 200, "%s", body);
    char ev[96];
    snprintf(ev, sizeof(ev), "\"events\":[{\"type\":\"MoneyDeposited\",\"version\":%d}]", i + 2);
    cr_assert(strstr(body, ev), "%s", body);
    esk_token_t t = token_of(&e, body);
    int64_t n2 = event_next(e.prefix, id, &part);
    cr_assert_eq(t.pos[0].partition, part);
    cr_assert_eq(t.pos[0].offset, n2, "deposit %d: token %lld, event next %lld", i,
                 (long long)t.pos[0].offset, (long long)n2);
  }
  /* a resubmission answers the first result and writes nothing */
  char again[4096];
  cr_assert_eq(post(&e, NULL, NULL, DEP("d0", "A1", 10), head, again, sizeof(again)), 200);
  cr_assert(strstr(again, "\"aggregate_version\":2,\"events\":[{\"type\":\"MoneyDeposited\","
                         "\"version\":2}]"), "%s", again);
  resubmit_to_a_fresh_gateway(&e, DEP("d0", "A1", 10), "d0");
  cr_assert_eq(esk_tp_http_get(e.port, "/v1/bank/commands/d4", body, sizeof(body)), 200);
  cr_assert(strstr(body, "\"aggregate_version\":6"), "%s", body);
  cr_assert_eq(esk_tp_http_get(e.port, "/v1/bank/commands/never", body, sizeof(body)), 404);
  /* an Idempotency-Key gives the id */
  const char *no_id = "{\"type\":\"DepositMoney\",\"account_id\":\"A1\",\"amount\":"
                      "{\"minor_units\":1,\"currency\":\"EUR\"}}";
  cr_assert_eq(post(&e, NULL, "Idempotency-Key: k-1\r\n", no_id, head, body, sizeof(body)), 200,
               "%s", body);
  cr_assert(strstr(body, "\"command_id\":\"k-1\""), "%s", body);
  cr_assert_eq(esk_tp_http_get(e.port, "/metrics", body, sizeof(body)), 200);
  cr_assert(strstr(body, "esk_gateway_requests_total{code=\"200\"}"), "%s", body);
  teardown(&e);
}

/* Without the esk.aggregate_version header (event.headers=minimal) the gateway
 * reads an event's version from its value: tokens still name the last event. */
Test(gateway, tokens_reach_the_last_event_when_events_carry_minimal_headers, .timeout = 180) {
  env_t e = {0};
  static const char *const minimal[] = {"event.headers=minimal", NULL};
  setup_both(&e, "gw_min", NULL, minimal);
  char head[4096], body[4096];
  cr_assert_eq(post(&e, NULL, NULL, OPEN("m1", "M1"), head, body, sizeof(body)), 200, "%s", body);
  cr_assert_eq(post(&e, NULL, NULL, DEP("m2", "M1", 10), head, body, sizeof(body)), 200, "%s",
               body);
  cr_assert(strstr(body, "\"aggregate_version\":2"), "%s", body);
  esk_token_t t = token_of(&e, body);
  int32_t part = -1;
  int64_t next = event_next(e.prefix, "m2", &part);
  cr_assert_eq(t.pos[0].partition, part);
  cr_assert_eq(t.pos[0].offset, next, "token %lld, event next %lld", (long long)t.pos[0].offset,
               (long long)next);
  teardown(&e);
}

Test(gateway, refusals_and_bad_input_get_their_status_naming_the_reason, .timeout = 180) {
  env_t e = {0};
  const char *extra[] = {"gateway.body.max.bytes=2048", NULL};
  setup(&e, "gw_bad", extra);
  char head[4096], body[8192];
  cr_assert_eq(post(&e, NULL, NULL, OPEN("o1", "B1"), head, body, sizeof(body)), 200, "%s", body);
  cr_assert_eq(post(&e, NULL, NULL,
                    "{\"type\":\"WithdrawMoney\",\"command_id\":\"w1\",\"account_id\":\"B1\","
                    "\"amount\":{\"minor_units\":999999,\"currency\":\"EUR\"}}",
                    head, body, sizeof(body)), 422, "%s", body);
  cr_assert(strstr(body, "INSUFFICIENT_FUNDS"), "%s", body);
  cr_assert_eq(post(&e, NULL, NULL,
                    "{\"type\":\"DepositMoney\",\"command_id\":\"x1\",\"account_id\":\"B1\","
                    "\"expected_version\":7,\"amount\":{\"minor_units\":1,\"currency\":\"EUR\"}}",
                    head, body, sizeof(body)), 409, "%s", body);
  cr_assert(strstr(body, "CONCURRENCY_CONFLICT") && strstr(body, "\"actual_version\":1"), "%s",
            body);
  cr_assert_eq(post(&e, NULL, "Content-Type: text/plain\r\n", OPEN("o2", "B2"), head, body,
                    sizeof(body)), 415, "%s", body);
  cr_assert_eq(post(&e, NULL, NULL, "{\"type\":", head, body, sizeof(body)), 400);
  cr_assert(strstr(body, "not valid JSON"), "%s", body);
  cr_assert_eq(post(&e, "?wait_ms=abc", NULL, OPEN("o3", "B3"), head, body, sizeof(body)), 400);
  cr_assert(strstr(body, "wait_ms"), "%s", body);
  cr_assert_eq(post(&e, "?wait_ms=99999999", NULL, OPEN("o3", "B3"), head, body, sizeof(body)),
               400);
  cr_assert_eq(post(&e, NULL, NULL, "{\"type\":\"MoneyDeposited\"}", head, body, sizeof(body)),
               400, "%s", body);
  static char big[4096];
  memset(big, ' ', sizeof(big) - 1);
  big[0] = '{';
  big[sizeof(big) - 2] = '}';
  cr_assert_eq(post(&e, NULL, NULL, big, head, body, sizeof(body)), 413, "%s", body);
  cr_assert_eq(esk_tp_http_request(e.port, "DELETE", "/v1/bank/commands", NULL, NULL, 0, head,
                                   sizeof(head), body, sizeof(body)), 405);
  cr_assert(strstr(head, "Allow: POST"), "%s", head);
  cr_assert_eq(esk_tp_http_get(e.port, "/v1/orders/commands", body, sizeof(body)), 404);
  cr_assert_eq(esk_tp_http_get(e.port, "/v1/bank/commands", body, sizeof(body)), 405);
  /* hostile: each a 4xx, and the gateway still answers afterwards */
  const char *hostile[] = {
      "{\"type\":\"DepositMoney\",\"command_id\":\"c\\u0000x\",\"account_id\":\"B1\","
      "\"amount\":{\"minor_units\":1,\"currency\":\"EUR\"}}",
      "{\"type\":\"DepositMoney\",\"command_id\":\"c\xc3\x28\",\"account_id\":\"B1\"}",
      "{\"type\":\"DepositMoney\",\"command_id\":\"c1\",\"account_id\":\"B1\",\"amount\":"
      "{\"minor_units\":1e400,\"currency\":\"EUR\"}}",
      "{\"type\":\"DepositMoney\",\"command_id\":\"c1\",\"account_id\":\"B1\",\"amount\":"
      "{\"minor_units\":\"1' or '1'='1\",\"currency\":\"EUR\"}}",
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]]]]]]]]]]]]]]]]]]]]]]]",
      "{\"type\":\"DepositMoney\",\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{\"i\":{"
      "\"j\":{\"k\":{\"l\":{\"m\":{\"n\":{\"o\":{\"p\":{\"q\":1}}}}}}}}}}}}}}}}}",
      "",
      "null",
      "\"just a string\"",
  };
  for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
    int st = post(&e, NULL, NULL, hostile[i], head, body, sizeof(body));
    cr_expect_eq(st, 400, "hostile %zu: %d %s", i, st, body);
    cr_expect(strstr(body, "\"error\""), "hostile %zu: %s", i, body);
  }
  /* ids with / and .. are ids like any other, found again by their percent-encoded path */
  cr_assert_eq(post(&e, NULL, NULL, DEP("a/../b", "B1", 1), head, body, sizeof(body)), 200, "%s",
               body);
  cr_assert_eq(esk_tp_http_get(e.port, "/v1/bank/commands/a%2F..%2Fb", body, sizeof(body)), 200,
               "%s", body);
  char longid[300];
  memset(longid, 'x', 200);
  longid[200] = '\0';
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "{\"type\":\"DepositMoney\",\"command_id\":\"%s\",\"account_id\":"
           "\"B1\",\"amount\":{\"minor_units\":1,\"currency\":\"EUR\"}}", longid);
  cr_assert_eq(post(&e, NULL, NULL, cmd, head, body, sizeof(body)), 400, "%s", body);
  cr_assert_eq(post(&e, NULL, "Idempotency-Key: \r\n", "{}", head, body, sizeof(body)), 400);
  cr_assert_eq(esk_tp_http_get(e.port, "/healthz", body, sizeof(body)), 200);
  teardown(&e);
}

Test(gateway, a_wait_that_runs_out_answers_202_with_where_to_ask, .timeout = 180) {
  env_t e = {0};
  setup(&e, "gw_wait", NULL);
  char head[4096], body[4096];
  /* the producer stopped: no result can come */
  cr_assert_eq(esk_tp_stop(e.producer, SIGTERM, 20000), 0);
  e.producer = -1;
  cr_assert_eq(post(&e, "?wait_ms=300", NULL, OPEN("o1", "C1"), head, body, sizeof(body)), 202,
               "%s", body);
  cr_assert(strstr(head, "Location: /v1/bank/commands/o1"), "%s", head);
  cr_assert_eq(esk_tp_http_get(e.port, "/v1/bank/commands/o1", body, sizeof(body)), 202, "%s",
               body);
  cr_assert(strstr(body, "pending"), "%s", body);
  /* a producer again: the command gets its result, found at the Location */
  e.producer = esk_tp_start(e.prefix, "a", e.plog, NULL);
  int st = 0;
  int64_t until = esk_time_mono_ms() + 60000;
  while ((st = esk_tp_http_get(e.port, "/v1/bank/commands/o1", body, sizeof(body))) != 200 &&
         esk_time_mono_ms() < until)
    esk_time_sleep_ms(100);
  cr_assert_eq(st, 200, "%s", body);
  cr_assert(strstr(body, "consistency_token"), "%s", body);
  /* wait_ms=0 answers at once */
  cr_assert_eq(post(&e, "?wait_ms=0", NULL, OPEN("o2", "C2"), head, body, sizeof(body)), 202);
  /* an id holding '/' and '%' is found at its Location (percent-encoded); %00 is 400 */
  cr_assert_eq(post(&e, "?wait_ms=0", NULL, OPEN("o/3%", "C3"), head, body, sizeof(body)), 202);
  cr_assert(strstr(head, "Location: /v1/bank/commands/o%2F3%25\r\n"), "%s", head);
  until = esk_time_mono_ms() + 60000;
  while ((st = esk_tp_http_get(e.port, "/v1/bank/commands/o%2F3%25", body, sizeof(body))) != 200 &&
         esk_time_mono_ms() < until)
    esk_time_sleep_ms(100);
  cr_assert_eq(st, 200, "%s", body);
  cr_assert(strstr(body, "\"command_id\":\"o/3%\""), "%s", body);
  cr_assert_eq(esk_tp_http_get(e.port, "/v1/bank/commands/o2%00x", body, sizeof(body)), 400,
               "%s", body);
  teardown(&e);
}

Test(gateway, bad_configuration_stops_start_up_with_exit_2_naming_the_key) {
  char out[4096];
  int st = esk_tp_run(ESK_TEST_GATEWAY_BIN " -X api.token.key.file=/nonexistent 2>&1", 1, out,
                      sizeof(out));
  cr_assert_eq(st, 2, "%s", out);
  cr_assert(strstr(out, "api.token.key.file"), "%s", out);
  st = esk_tp_run(ESK_TEST_GATEWAY_BIN " -X gateway.wait.ms=-5 2>&1", 1, out, sizeof(out));
  cr_assert_eq(st, 2, "%s", out);
  cr_assert(strstr(out, "gateway.wait.ms"), "%s", out);
  st = esk_tp_run(ESK_TEST_GATEWAY_BIN " -X http.threads=2 2>&1", 1, out, sizeof(out));
  cr_assert_eq(st, 2, "%s", out);
  cr_assert(strstr(out, "http.threads=2: esk-gateway serves HTTP on one thread"), "%s", out);
  st = esk_tp_run(ESK_TEST_GATEWAY_BIN " --help", 0, out, sizeof(out));
  cr_assert_eq(st, 0);
  cr_assert(strstr(out, "POST /v1/<domain>/commands"), "%s", out);
}
