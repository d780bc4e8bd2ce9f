/* The orders domain end to end (issue 11): esk-producer -X domain=orders
 * (orders.so) against the real broker, fed with eskctl submit --domain orders:
 * every command gets the result its rules demand, per order the events have
 * versions exactly 1..n, each accepted command has exactly one event (also
 * when the whole workload is sent again to a restarted producer that restored
 * the orders from snapshots and events), and a v1 OrderCreated written by an
 * older service (Apache Avro for Python) before the producer started is
 * restored as v2. Its read models (order_summaries, customer_statistics: the
 * declarative files of deploy/projections, run by esk-projector -X
 * domain=orders) equal an independent fold of the accepted commands, the v1
 * order included, through kill -9 of both projectors and of the producer; so
 * does every order's state through esk-query (orders.so's evolve folding
 * event_log: /v1/orders/aggregates/<id>/state). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domains.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_api.h"
#include "esk_test_http.h"
#include "esk_test_producer.h"
#include "orders/orders.h"

#define PARTS 2
#define ORDERS 12
#define MAX_CMDS 128
#define FIXTURE ESK_SOURCE_DIR "/tests/fixtures/avro/orders/OrderCreated.v1.ok.bin"

typedef struct workload_s {
  char run[16]; /* in every command id: two workloads never share one */
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
  snprintf(id, sizeof(id), "oc-%s-%zu", w->run, w->n);
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

static void create(workload_t *w, const char *want, const char *order, const char *customer,
                   int qty) {
  add(w, want,
      "\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"customer_id\":\"%s\","
      "\"customer_email\":\"%s@example.org\"," ADDR ",\"items\":[{\"product_id\":\"p-1\","
      "\"quantity\":%d,\"unit_price\":1250},{\"product_id\":\"p-2\",\"quantity\":1,"
      "\"unit_price\":99}],\"currency\":\"EUR\"",
      order, customer, customer, qty);
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

/* Every command with the code its rules demand (create: 2 x 1250 + 99 = 2599).
 * Orders i and i + 4 share a customer. With @p legacy, ends with the payment
 * of the order the v1 fixture created; with @p refund, adds an order of
 * customer 0 cancelled after its payment (its value no longer counts). */
static void build_with(workload_t *w, const char *run, int legacy, int refund) {
  char o[64], cu[64];
  snprintf(w->run, sizeof(w->run), "%s", run);
  for (int i = 0; i < ORDERS; i++) {
    snprintf(o, sizeof(o), "o-%s-%d", run, i);
    snprintf(cu, sizeof(cu), "cu-%s-%d", run, i % 4);
    switch (i % 3) {
    case 0: /* the whole life, with a rejection at each step */
      create(w, "ACCEPTED", o, cu, 2);
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
      create(w, "ACCEPTED", o, cu, 1);
      simple(w, "ORDER_NOT_PAID", "ShipOrder", o, ",\"tracking_number\":\"TRK-2\"");
      simple(w, "ACCEPTED", "CancelOrder", o, ",\"reason\":\"changed my mind\"");
      pay(w, "ORDER_CANCELLED", o, 1349, "EUR", "paypal");
      create(w, "ORDER_ALREADY_EXISTS", o, cu, 1);
      break;
    default: /* refused shapes, a stale expected version, then paid */
      create(w, "INVALID_QUANTITY", o, cu, 0);
      create(w, "ACCEPTED", o, cu, 3);
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
  if (legacy) pay(w, "ACCEPTED", "o-legacy-1", 4124, "USD", "paypal");
  if (refund) {
    snprintf(o, sizeof(o), "o-%s-refund", run);
    snprintf(cu, sizeof(cu), "cu-%s-0", run);
    create(w, "ACCEPTED", o, cu, 2);
    pay(w, "ACCEPTED", o, 2599, "EUR", "credit_card");
    simple(w, "ACCEPTED", "CancelOrder", o, ",\"reason\":\"refund\"");
  }
}

static void build(workload_t *w, const char *run) { build_with(w, run, 1, 0); }

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
  /* plaintext personal fields: the crypto is e2e.shred_e2e's */
  static const char *const extra[] = {"domain=orders", "snapshot.every=2",
                                      "personal.plaintext=true", NULL};
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

/* ------------------------------------------------------------ read models --- */

/* The read models of domain orders (the .conf files of deploy/projections), run by the
 * real esk-projector, against an independent fold of the accepted commands. */

#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"
#define MAX_ORDERS 64
#define ROW_MAX 400 /* one expected row as text */

typedef struct fold_order_s {
  char id[64], customer[64], status[16], currency[4], tracking[64];
  long items, total, paid, version;
} fold_order_t;

typedef struct fold_s {
  fold_order_t o[MAX_ORDERS];
  size_t n;
} fold_t;

static fold_order_t *fold_find(fold_t *f, const char *id) {
  for (size_t i = 0; i < f->n; i++)
    if (!strcmp(f->o[i].id, id)) return &f->o[i];
  return NULL;
}

static long lines_total(json_t *items) {
  long total = 0;
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) total += (long)json_integer_value(json_object_get(it, "quantity")) *
                                            (long)json_integer_value(json_object_get(it, "unit_price"));
  return total;
}

/* Folds the commands of @p w whose result is ACCEPTED (submit_and_check()
 * checked every result against w->want). Written from the commands and the
 * rules alone: no SQL, no event. */
static void fold_accepted(fold_t *f, const workload_t *w) {
  char *copy = strdup(w->jsonl), *save = NULL;
  size_t i = 0;
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
    cr_assert_lt(i, w->n);
    if (strcmp(w->want[i], "ACCEPTED")) continue;
    json_error_t je;
    json_t *c = json_loads(line, 0, &je);
    cr_assert_not_null(c, "%s", line);
    const char *type = json_string_value(json_object_get(c, "type"));
    const char *id = json_string_value(json_object_get(c, "order_id"));
    fold_order_t *o = fold_find(f, id);
    if (o) o->version++; /* one event per accepted command */
    if (!strcmp(type, "CreateOrder")) {
      cr_assert_null(o, "%s created twice", id);
      cr_assert_lt(f->n, MAX_ORDERS);
      o = &f->o[f->n++];
      memset(o, 0, sizeof(*o));
      snprintf(o->id, sizeof(o->id), "%s", id);
      snprintf(o->customer, sizeof(o->customer), "%s",
               json_string_value(json_object_get(c, "customer_id")));
      snprintf(o->currency, sizeof(o->currency), "%s",
               json_string_value(json_object_get(c, "currency")));
      snprintf(o->status, sizeof(o->status), "CREATED");
      o->items = (long)json_array_size(json_object_get(c, "items"));
      o->version = 1;
      o->total = lines_total(json_object_get(c, "items"));
    } else {
      cr_assert_not_null(o, "%s: an accepted %s of an order never created", id, type);
      if (!strcmp(type, "AddItem")) {
        json_t *it = json_object_get(c, "item");
        o->items++;
        o->total += (long)json_integer_value(json_object_get(it, "quantity")) *
                    (long)json_integer_value(json_object_get(it, "unit_price"));
      } else if (!strcmp(type, "ProcessPayment")) {
        snprintf(o->status, sizeof(o->status), "PAID");
        o->paid += (long)json_integer_value(json_object_get(c, "amount"));
      } else if (!strcmp(type, "ShipOrder")) {
        snprintf(o->status, sizeof(o->status), "SHIPPED");
        snprintf(o->tracking, sizeof(o->tracking), "%s",
                 json_string_value(json_object_get(c, "tracking_number")));
      } else if (!strcmp(type, "DeliverOrder")) {
        snprintf(o->status, sizeof(o->status), "DELIVERED");
      } else if (!strcmp(type, "CancelOrder")) {
        snprintf(o->status, sizeof(o->status), "CANCELLED");
      } else {
        cr_assert_fail("unknown command type %s", type);
      }
    }
    json_decref(c);
  }
  free(copy);
}

static int by_string(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The expected rows, one string each, sorted ('|' between columns). */
static size_t fold_rows(const fold_t *f, int stats, char rows[][ROW_MAX]) {
  size_t n = 0;
  if (!stats) {
    for (size_t i = 0; i < f->n; i++) {
      const fold_order_t *o = &f->o[i];
      snprintf(rows[n++], ROW_MAX, "%s|%s|%s|%ld|%ld|%s|%s", o->id, o->customer, o->status,
               o->items, o->total, o->currency, o->tracking);
    }
  } else {
    for (size_t i = 0; i < f->n; i++) {
      const fold_order_t *o = &f->o[i];
      int seen = 0;
      for (size_t j = 0; j < i; j++)
        seen |= !strcmp(f->o[j].customer, o->customer) && !strcmp(f->o[j].currency, o->currency);
      if (seen) continue;
      long orders = 0, cancelled = 0, value = 0;
      for (size_t j = i; j < f->n; j++) {
        const fold_order_t *p = &f->o[j];
        if (strcmp(p->customer, o->customer) || strcmp(p->currency, o->currency)) continue;
        orders++;
        if (!strcmp(p->status, "CANCELLED")) cancelled++;
        else value += p->paid;
      }
      snprintf(rows[n++], ROW_MAX, "%s|%s|%ld|%ld|%ld", o->customer, o->currency, orders,
               cancelled, value);
    }
  }
  char *ptrs[MAX_ORDERS];
  char sorted[MAX_ORDERS][ROW_MAX];
  for (size_t i = 0; i < n; i++) ptrs[i] = rows[i];
  qsort(ptrs, n, sizeof(*ptrs), by_string);
  for (size_t i = 0; i < n; i++) memcpy(sorted[i], ptrs[i], ROW_MAX);
  memcpy(rows, sorted, n * ROW_MAX);
  return n;
}

static const char *const summaries_sql =
    "select r from (select order_id || '|' || customer_id || '|' || status || '|' || item_count"
    " || '|' || total || '|' || currency || '|' || coalesce(tracking_number, '') as r"
    " from order_summaries where created_at <= updated_at) x order by r collate \"C\"";
static const char *const stats_sql =
    "select r from (select customer_id || '|' || currency || '|' || orders || '|' ||"
    " cancelled_orders || '|' || lifetime_value as r from customer_statistics) x"
    " order by r collate \"C\"";

/* 1 when the read model (rows of @p sql) equals @p want; else the first
 * difference in @p diff. */
static int model_equals(PGconn *pg, const char *sql, char want[][ROW_MAX], size_t n, char *diff,
                        size_t size) {
  PGresult *r = PQexec(pg, sql);
  int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) snprintf(diff, size, "%s", PQerrorMessage(pg));
  else if ((size_t)PQntuples(r) != n) {
    ok = 0;
    snprintf(diff, size, "%d rows, the fold has %zu (first: %s)", PQntuples(r), n,
             PQntuples(r) ? PQgetvalue(r, 0, 0) : "none");
  }
  for (size_t i = 0; ok && i < n; i++)
    if (strcmp(PQgetvalue(r, (int)i, 0), want[i])) {
      ok = 0;
      snprintf(diff, size, "row %zu: read model '%s', fold '%s'", i, PQgetvalue(r, (int)i, 0),
               want[i]);
    }
  PQclear(r);
  return ok;
}

static long count_rows(PGconn *pg, const char *table) {
  char sql[128];
  snprintf(sql, sizeof(sql), "select count(*) from %s", table);
  PGresult *r = PQexec(pg, sql);
  long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  return n;
}

/* esk-projector of the declarative read model @p file (deploy/projections), or
 * of the built-in event_log when @p file is "event_log". */
static pid_t start_projector(const char *prefix, const char *schema, const char *file,
                             const char *log) {
  char a_file[512], a_topic[256], a_schema[128], a_group[256];
  int builtin = !strcmp(file, "event_log");
  snprintf(a_file, sizeof(a_file), builtin ? "%s" : "%s/deploy/projections/%s.conf",
           builtin ? file : ESK_SOURCE_DIR, file);
  snprintf(a_topic, sizeof(a_topic), "topic=%sorders.events", prefix);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%sprojection.%s", prefix, file);
  const char *argv[] = {PROJECTOR, builtin ? "--projection" : "--projection-file", a_file,
                        "-X", "domain=orders",
                        "-X", a_topic, "-X", a_schema, "-X", a_group,
                        /* small batches: a kill -9 lands between and inside them */
                        "-X", "batch.max.events=2", "-X", "batch.max.ms=50",
                        "-X", "kafka.consumer.session.timeout.ms=6000",
                        "-X", "kafka.consumer.heartbeat.interval.ms=500", NULL};
  return esk_tp_spawn(argv, log);
}

/* The state of order @p o through esk-query on @p port, once it has o->version
 * events (60 s): 1 when it equals the fold, else the difference in @p diff. */
static int state_equals(int port, const fold_order_t *o, char *diff, size_t size) {
  char path[256];
  static char body[8192];
  snprintf(path, sizeof(path), "/v1/orders/aggregates/%s/state", o->id);
  json_t *doc = NULL, *st = NULL;
  for (int i = 0; i < 1500; i++) {
    int code = esk_tp_http_get(port, path, body, sizeof(body));
    json_decref(doc);
    doc = code == 200 ? json_loads(body, 0, NULL) : NULL;
    st = json_object_get(doc, "state");
    if (json_integer_value(json_object_get(st, "version")) >= o->version) break;
    esk_time_sleep_ms(40);
  }
  snprintf(diff, size, "%s: state %.600s, fold %s|%s|%ld|%ld|%s|%ld", o->id, body, o->status,
           o->customer, o->items, o->total, o->currency, o->version);
  const char *status = json_string_value(json_object_get(st, "status"));
  const char *customer = json_string_value(json_object_get(st, "customer_id"));
  const char *currency = json_string_value(json_object_get(st, "currency"));
  int ok = status && customer && currency && !strcmp(status, o->status) &&
           !strcmp(customer, o->customer) && !strcmp(currency, o->currency) &&
           json_integer_value(json_object_get(st, "item_count")) == o->items &&
           json_integer_value(json_object_get(st, "total")) == o->total &&
           json_integer_value(json_object_get(st, "version")) == o->version;
  json_decref(doc);
  return ok;
}

/* Every folded order's state through esk-query (domain=orders: orders.so's
 * evolve folding event_log) equals the test's own fold. */
static void states_equal_the_fold(const fold_t *f, const char *prefix, const char *schema,
                                  const char *log) {
  char keyfile[256], a_prefix[256], a_schema[128], diff[1200];
  unsigned char key[ESK_TOKEN_KEY_BYTES];
  esk_ta_write_key(keyfile, sizeof(keyfile), prefix, key);
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", prefix);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  const char *qargs[] = {"domain=orders", a_prefix, a_schema,
                         "query.file=" ESK_SOURCE_DIR "/deploy/queries/orders.queries", NULL};
  int port;
  pid_t q = esk_ta_start(ESK_TEST_QUERY_BIN, keyfile, log, qargs, &port);
  for (size_t i = 0; i < f->n; i++)
    cr_expect(state_equals(port, &f->o[i], diff, sizeof(diff)), "%s (log %s)", diff, log);
  cr_expect_eq(esk_tp_stop(q, SIGTERM, 30000), 0, "esk-query did not exit 0 (log %s)", log);
  unlink(keyfile);
}

Test(orders_e2e, read_models_equal_a_fold_of_the_accepted_commands_through_kill_9, .timeout = 600) {
  char base[96], prefix[128], schema[96], cmd[512], out[4096], log[256], plog[256];
  esk_test_require_pg();
  esk_test_unique_name(base, sizeof(base), "orders_rm");
  snprintf(prefix, sizeof(prefix), "%s.", base);
  esk_test_unique_name(schema, sizeof(schema), "esk_orders_rm");
  snprintf(cmd, sizeof(cmd), "%s topics create --domain orders --topic-prefix '%s' --partitions %d",
           ESK_TEST_ESKCTL_BIN, prefix, PARTS);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
  /* a v1 OrderCreated (Apache Avro for Python) already on the topic: read as v2 */
  produce_v1_fixture(prefix);

  esk_tp_log_path(log, sizeof(log), prefix, "p");
  esk_tp_log_path(plog, sizeof(plog), prefix, "projectors");
  /* plaintext personal fields: the crypto is e2e.shred_e2e's */
  static const char *const extra[] = {"domain=orders", "snapshot.every=2",
                                      "personal.plaintext=true", NULL};
  pid_t p = esk_tp_start(prefix, "a", log, extra);
  pid_t ps = start_projector(prefix, schema, "order_summaries", plog);
  pid_t pc = start_projector(prefix, schema, "customer_statistics", plog);
  pid_t pe = start_projector(prefix, schema, "event_log", plog);

  workload_t w1, w2;
  memset(&w1, 0, sizeof(w1));
  memset(&w2, 0, sizeof(w2));
  build_with(&w1, "m1", 1, 1);
  build_with(&w2, "m2", 0, 1);
  submit_and_check(&w1, prefix);

  /* kill -9 of both projectors while they apply w1's events, in batches of 2 */
  PGconn *pg = esk_test_pg_connect_schema(schema);
  for (int i = 0; i < 3000 && count_rows(pg, "order_summaries") < 1; i++) esk_time_sleep_ms(20);
  cr_assert_gt(count_rows(pg, "order_summaries"), 0, "order_summaries never got a row (log %s)",
               plog);
  cr_expect_eq(esk_tp_stop(ps, SIGKILL, 30000), 128 + SIGKILL);
  cr_expect_eq(esk_tp_stop(pc, SIGKILL, 30000), 128 + SIGKILL);
  long at_kill = count_rows(pg, "order_summaries");

  /* more commands while they are down; then kill -9 of the producer, and the
   * whole workload again to its restarted instance: same results, no event */
  submit_and_check(&w2, prefix);
  cr_expect_eq(esk_tp_stop(p, SIGKILL, 30000), 128 + SIGKILL);
  p = esk_tp_start(prefix, "a", log, extra);
  submit_and_check(&w1, prefix);
  submit_and_check(&w2, prefix);

  ps = start_projector(prefix, schema, "order_summaries", plog);
  pc = start_projector(prefix, schema, "customer_statistics", plog);

  fold_t *f = calloc(1, sizeof(*f));
  /* the order the v1 fixture created: 2 x 19.99 + 1 x 0.125 + 3 x 0.375 in
   * USD, upcast to minor units half to even (1999, 12, 38) */
  fold_order_t *legacy = &f->o[f->n++];
  *legacy = (fold_order_t){.id = "o-legacy-1", .customer = "c-9", .status = "CREATED",
                           .currency = "USD", .items = 3, .total = 4124, .version = 1};
  fold_accepted(f, &w1);
  fold_accepted(f, &w2);
  cr_assert_eq(legacy->paid, 4124, "w1 pays the legacy order");
  static char want_s[MAX_ORDERS][ROW_MAX], want_c[MAX_ORDERS][ROW_MAX];
  size_t ns = fold_rows(f, 0, want_s), nc = fold_rows(f, 1, want_c);
  cr_assert_lt((size_t)at_kill, ns, "the restarted projectors had no order left to apply");

  char diff_s[512] = "", diff_c[512] = "";
  int ok = 0;
  for (int i = 0; i < 1500 && !ok; i++) {
    snprintf(diff_s, sizeof(diff_s), "equal");
    snprintf(diff_c, sizeof(diff_c), "equal");
    int a = model_equals(pg, summaries_sql, want_s, ns, diff_s, sizeof(diff_s));
    int b = model_equals(pg, stats_sql, want_c, nc, diff_c, sizeof(diff_c));
    ok = a && b;
    if (!ok) esk_time_sleep_ms(40);
  }
  cr_expect(ok, "read models differ from the fold after 60 s: order_summaries: %s; "
                "customer_statistics: %s (log %s)", diff_s, diff_c, plog);
  /* the legacy order's created_at is the v1 event's occurred_at, to the microsecond */
  PGresult *r = PQexec(pg, "select (extract(epoch from created_at) * 1000000)::bigint"
                           " from order_summaries where order_id = 'o-legacy-1'");
  cr_expect(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                !strcmp(PQgetvalue(r, 0, 0), "1767225600123456"),
            "o-legacy-1's created_at: %s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "no row");
  PQclear(r);
  char qlog[256];
  esk_tp_log_path(qlog, sizeof(qlog), prefix, "query");
  states_equal_the_fold(f, prefix, schema, qlog);

  cr_expect_eq(esk_tp_stop(pe, SIGTERM, 30000), 0, "esk-projector did not exit 0 (log %s)", plog);
  cr_expect_eq(esk_tp_stop(ps, SIGTERM, 30000), 0, "esk-projector did not exit 0 (log %s)", plog);
  cr_expect_eq(esk_tp_stop(pc, SIGTERM, 30000), 0, "esk-projector did not exit 0 (log %s)", plog);
  cr_expect_eq(esk_tp_stop(p, SIGTERM, 30000), 0, "esk-producer did not exit 0 (log %s)", log);
  PQfinish(pg);
  char gen[ROW_MAX];
  snprintf(gen, sizeof(gen), "%s_order_summaries_g1", schema);
  esk_test_drop_schema(gen);
  snprintf(gen, sizeof(gen), "%s_customer_statistics_g1", schema);
  esk_test_drop_schema(gen);
  snprintf(gen, sizeof(gen), "%s_event_log_g1", schema);
  esk_test_drop_schema(gen);
  esk_test_drop_schema(schema);
  free(f);
  free(w1.jsonl);
  free(w2.jsonl);
}
