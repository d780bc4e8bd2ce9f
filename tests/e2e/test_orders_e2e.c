/* The orders domain end to end (issue 11): esk-producer -X domain=orders
 * (orders.so) against the real broker, fed with eskctl submit --domain orders:
 * every command gets the result its rules demand, per order the events have
 * versions exactly 1..n, each accepted command has exactly one event (also
 * when the whole workload is sent again to a restarted producer that restored
 * the orders from snapshots and events), and a v1 OrderCreated written by an
 * older service (Apache Avro for Python) before the producer started is
 * restored as v2. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domains.h"
#include "esk/kafka.h"
#include "esk_test.h"
#include "esk_test_producer.h"
#include "orders/orders.h"

#define PARTS 2
#define ORDERS 12
#define MAX_CMDS 128
#define FIXTURE ESK_SOURCE_DIR "/tests/fixtures/avro/orders/OrderCreated.v1.ok.bin"

typedef struct workload_s {
  char *jsonl;
  size_t len, cap;
  size_t n;
  char ids[MAX_CMDS][48];
  const char *want[MAX_CMDS]; /* the result code's name */
} workload_t;

static void add(workload_t *w, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add(workload_t *w, const char *want, const char *fmt, ...) {
  char line[2048], id[48];
  cr_assert_lt(w->n, MAX_CMDS);
  snprintf(id, sizeof(id), "oc-%zu", w->n);
  va_list ap;
  va_start(ap, fmt);
  int k = snprintf(line, sizeof(line), "{\"command_id\":\"%s\",", id);
  k += vsnprintf(line + k, sizeof(line) - (size_t)k, fmt, ap);
  va_end(ap);
  snprintf(line + k, sizeof(line) - (size_t)k, "}\n");
  size_t n = strlen(line);
  if (w->len + n + 1 > w->cap) {
    w->cap = (w->len + n + 1) * 2;
    w->jsonl = realloc(w->jsonl, w->cap);
    cr_assert_not_null(w->jsonl);
  }
  memcpy(w->jsonl + w->len, line, n + 1);
  w->len += n;
  snprintf(w->ids[w->n], sizeof(w->ids[w->n]), "%s", id);
  w->want[w->n++] = want;
}

#define ADDR                                                                             \
  "\"shipping_address\":{\"name\":\"Ada\",\"street\":\"1 Main St\",\"city\":\"Berlin\"," \
  "\"postal_code\":\"10115\",\"country\":\"DE\"}"

static void create(workload_t *w, const char *want, const char *order, int qty) {
  add(w, want,
      "\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"customer_id\":\"cu-%s\","
      "\"customer_email\":\"%s@example.org\"," ADDR ",\"items\":[{\"product_id\":\"p-1\","
      "\"quantity\":%d,\"unit_price\":1250},{\"product_id\":\"p-2\",\"quantity\":1,"
      "\"unit_price\":99}],\"currency\":\"EUR\"",
      order, order, order, qty);
}

static void pay(workload_t *w, const char *want, const char *order, long amount,
                const char *currency, const char *method) {
  add(w, want,
      "\"type\":\"ProcessPayment\",\"order_id\":\"%s\",\"payment_id\":\"pay-%s\",\"amount\":%ld,"
      "\"currency\":\"%s\",\"method\":\"%s\"",
      order, order, amount, currency, method);
}

static void simple(workload_t *w, const char *want, const char *type, const char *order,
                   const char *extra) {
  add(w, want, "\"type\":\"%s\",\"order_id\":\"%s\"%s", type, order, extra ? extra : "");
}

/* Every command with the code its rules demand (create: 2 x 1250 + 99 = 2599). */
static void build(workload_t *w, const char *run) {
  char o[64];
  for (int i = 0; i < ORDERS; i++) {
    snprintf(o, sizeof(o), "o-%s-%d", run, i);
    switch (i % 3) {
    case 0: /* the whole life, with a rejection at each step */
      create(w, "ACCEPTED", o, 2);
      simple(w, "ACCEPTED", "AddItem", o,
             ",\"item\":{\"product_id\":\"p-3\",\"quantity\":1,\"unit_price\":401}");
      pay(w, "PAYMENT_MISMATCH", o, 2999, "EUR", "credit_card");
      pay(w, "ACCEPTED", o, 3000, "EUR", "credit_card");
      simple(w, "ORDER_NOT_OPEN", "AddItem", o,
             ",\"item\":{\"product_id\":\"p-4\",\"quantity\":1,\"unit_price\":1}");
      simple(w, "ACCEPTED", "ShipOrder", o, ",\"tracking_number\":\"TRK-1\"");
      simple(w, "ORDER_ALREADY_SHIPPED", "CancelOrder", o, ",\"reason\":\"late\"");
      simple(w, "ACCEPTED", "DeliverOrder", o, NULL);
      break;
    case 1: /* cancelled before payment */
      create(w, "ACCEPTED", o, 1);
      simple(w, "ORDER_NOT_PAID", "ShipOrder", o, ",\"tracking_number\":\"TRK-2\"");
      simple(w, "ACCEPTED", "CancelOrder", o, ",\"reason\":\"changed my mind\"");
      pay(w, "ORDER_CANCELLED", o, 1349, "EUR", "paypal");
      create(w, "ORDER_ALREADY_EXISTS", o, 1);
      break;
    default: /* refused shapes, a stale expected version, then paid */
      create(w, "INVALID_QUANTITY", o, 0);
      create(w, "ACCEPTED", o, 3);
      pay(w, "INVALID_PAYMENT_METHOD", o, 3849, "EUR", "cash");
      simple(w, "CONCURRENCY_CONFLICT", "DeliverOrder", o, ",\"expected_version\":7");
      pay(w, "ACCEPTED", o, 3849, "EUR", "bank_transfer");
      simple(w, "ORDER_NOT_SHIPPED", "DeliverOrder", o, NULL);
      break;
    }
  }
  snprintf(o, sizeof(o), "o-%s-none", run);
  simple(w, "ORDER_NOT_FOUND", "DeliverOrder", o, NULL);
  /* the order an older service created (the v1 fixture): its lines come to
   * 4124 USD cents (its totalAmount, 41.23, was rounded from unrounded prices) */
  pay(w, "ACCEPTED", "o-legacy-1", 4124, "USD", "paypal");
}

/* Submits the workload and checks each result against its expected code. */
static size_t submit_and_check(workload_t *w, const char *prefix) {
  char path[64], cmd[1024];
  esk_test_temp_file(path, sizeof(path), "esk_orders_", w->jsonl, w->len);
  snprintf(cmd, sizeof(cmd), "%s submit --domain orders --topic-prefix '%s' --file %s --timeout 60000",
           ESK_TEST_ESKCTL_BIN, prefix, path);
  size_t size = 1 << 20, accepted = 0;
  char *out = malloc(size);
  int rc = esk_tp_run(cmd, 0, out, size);
  unlink(path);
  cr_assert_eq(rc, 1, "some commands are rejected, so exit 1; got %d: %.2000s", rc, out);
  char *save = NULL, *line = strtok_r(out, "\n", &save);
  for (size_t i = 0; i < w->n; i++, line = strtok_r(NULL, "\n", &save)) {
    cr_assert_not_null(line, "no result line for %s", w->ids[i]);
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    cr_assert_not_null(o, "not JSON: %s", line);
    const char *id = json_string_value(json_object_get(o, "command_id"));
    const char *st = json_string_value(json_object_get(o, "status"));
    const char *code = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
    cr_assert(id && st, "%s", line);
    cr_expect_str_eq(id, w->ids[i]);
    const char *got = !strcmp(st, "accepted") ? "ACCEPTED" : code ? code : st;
    cr_expect_str_eq(got, w->want[i], "%s: %s", w->ids[i], line);
    accepted += !strcmp(st, "accepted");
    json_decref(o);
  }
  free(out);
  return accepted;
}

typedef struct events_s {
  esk_domain_inst_t in;
  size_t n;
  char order[MAX_CMDS * 2][64];
  int64_t version[MAX_CMDS * 2];
  char causation[MAX_CMDS * 2][64];
  int32_t partition[MAX_CMDS * 2];
} events_t;

static int on_event(const rd_kafka_message_t *m, void *opaque) {
  events_t *e = opaque;
  esk_orders_event_t ev;
  esk_event_ref_t ref;
  esk_error_t err = {0};
  cr_assert_lt(e->n, MAX_CMDS * 2);
  cr_assert_eq(e->in.d->decode_event(e->in.self, &ev, &ref, m->payload, m->len, &err), ESK_OK,
               "event at %d/%lld: %s", (int)m->partition, (long long)m->offset, err.msg);
  snprintf(e->order[e->n], sizeof(e->order[0]), "%s", ref.aggregate_id);
  e->version[e->n] = ref.aggregate_version;
  e->partition[e->n] = m->partition;
  if (!esk_kafka_header(m, "esk.causation_id", e->causation[e->n], sizeof(e->causation[0])))
    e->causation[e->n][0] = '\0';
  e->n++;
  return 0;
}

static void read_events(events_t *e, const char *prefix) {
  esk_error_t err = {0};
  char topic[256];
  rd_kafka_t *rk = NULL;
  e->n = 0;
  cr_assert_eq(esk_kafka_topic_name(topic, sizeof(topic), prefix, "orders", "events", &err), ESK_OK);
  cr_assert_eq(esk_kafka_reader_new(&rk, NULL, NULL, &err), ESK_OK, "%s", err.msg);
  for (int p = 0; p < PARTS; p++)
    cr_assert_eq(esk_kafka_read_partition(rk, topic, p, RD_KAFKA_OFFSET_BEGINNING, 20000, on_event,
                                          e, NULL, &err),
                 ESK_OK, "%s", err.msg);
  rd_kafka_destroy(rk);
}

/* Per order: one partition, versions 1..n in order. @returns the number of orders. */
static size_t check_versions(const events_t *e) {
  size_t orders = 0;
  for (size_t i = 0; i < e->n; i++) {
    int64_t want = 1;
    int seen_before = 0;
    for (size_t j = 0; j < i; j++) seen_before |= !strcmp(e->order[j], e->order[i]);
    if (seen_before) continue;
    orders++;
    for (size_t j = i; j < e->n; j++) {
      if (strcmp(e->order[j], e->order[i])) continue;
      cr_expect_eq(e->partition[j], e->partition[i], "order %s in two partitions", e->order[i]);
      cr_expect_eq(e->version[j], want, "order %s: version %lld where %lld was due", e->order[i],
                   (long long)e->version[j], (long long)want);
      want = e->version[j] + 1;
    }
  }
  return orders;
}

static void produce_v1_fixture(const char *prefix) {
  uint8_t buf[4096];
  FILE *f = fopen(FIXTURE, "rb");
  cr_assert_not_null(f);
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  char topic[256];
  esk_error_t err = {0};
  cr_assert_eq(esk_kafka_topic_name(topic, sizeof(topic), prefix, "orders", "events", &err), ESK_OK);
  rd_kafka_t *rk = esk_tp_client(); /* the partitioner every esk client uses */
  cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("o-legacy-1", 10),
                                 RD_KAFKA_V_VALUE(buf, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END),
               RD_KAFKA_RESP_ERR_NO_ERROR);
  cr_assert_eq(rd_kafka_flush(rk, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
}

Test(orders_e2e, commands_in_events_and_results_out_exactly_once, .timeout = 600) {
  char base[96], prefix[128], cmd[512], out[4096], log[256];
  esk_test_unique_name(base, sizeof(base), "orders_e2e");
  snprintf(prefix, sizeof(prefix), "%s.", base);
  snprintf(cmd, sizeof(cmd), "%s topics create --domain orders --topic-prefix '%s' --partitions %d",
           ESK_TEST_ESKCTL_BIN, prefix, PARTS);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
  cr_expect(strstr(out, "orders.events"), "%s", out);
  produce_v1_fixture(prefix);

  esk_tp_log_path(log, sizeof(log), prefix, "p");
  static const char *const extra[] = {"domain=orders", "snapshot.every=2", NULL};
  pid_t p = esk_tp_start(prefix, "a", log, extra);

  workload_t w;
  memset(&w, 0, sizeof(w));
  build(&w, "r1");
  size_t accepted = submit_and_check(&w, prefix);
  cr_assert_gt(accepted, ORDERS);

  events_t *e = calloc(1, sizeof(*e));
  esk_error_t err = {0};
  cr_assert_eq(esk_domain_inst_open(&e->in, esk_orders_domain(), &err), ESK_OK, "%s", err.msg);
  read_events(e, prefix);
  cr_expect_eq(e->n, accepted + 1, "the accepted commands' events and the v1 fixture");
  cr_expect_eq(check_versions(e), ORDERS + 1);
  /* exactly once: each accepted command caused one event */
  for (size_t i = 0; i < e->n; i++)
    for (size_t j = i + 1; j < e->n; j++)
      if (e->causation[i][0])
        cr_expect(strcmp(e->causation[i], e->causation[j]), "command %s caused two events",
                  e->causation[i]);

  /* kill -9 and a new instance with the same transactional id: it restores
   * the orders from their snapshots (snapshot.every=2) and events, and the
   * results; the same commands again get the same results and no new event */
  cr_expect_eq(esk_tp_stop(p, SIGKILL, 30000), 128 + SIGKILL);
  p = esk_tp_start(prefix, "a", log, extra);
  size_t again = submit_and_check(&w, prefix);
  cr_expect_eq(again, accepted);
  read_events(e, prefix);
  cr_expect_eq(e->n, accepted + 1, "a resubmitted command made an event");

  cr_expect_eq(esk_tp_stop(p, SIGTERM, 30000), 0, "esk-producer did not exit 0 on SIGTERM (log %s)",
               log);
  esk_domain_inst_close(&e->in);
  free(e);
  free(w.jsonl);
}
