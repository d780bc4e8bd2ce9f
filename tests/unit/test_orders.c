/* The orders domain (producer/domains/orders, seed 004): its rules, decide and
 * evolve (pure), snapshots (round trip, the Avro body of OrderSnapshot v1,
 * hostile bytes), its Avro mapping, and the OrderCreated v1 -> v2 upcaster over
 * events written by Apache Avro for Python. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domains.h"
#include "esk/domain.h"
#include "orders/orders.h"
#include "orders_contract.h"

#define FIXTURES ESK_SOURCE_DIR "/tests/fixtures/avro/orders"

static esk_envelope_t env_of(const char *cmd_id, const char *order) {
  esk_envelope_t e = {cmd_id, order, 0, 0, "tester", "corr"};
  return e;
}

static esk_orders_command_t create_cmd(size_t n, int64_t price) {
  esk_orders_command_t c;
  memset(&c, 0, sizeof(c));
  c.type = ESK_ORDERS_CMD_CREATE;
  c.u.create.customer_id = "c-1";
  c.u.create.customer_email = "ada@example.org";
  c.u.create.currency = "EUR";
  static const char *const addr[] = {"Ada", "1 Main St", "Berlin", "10115", "DE"};
  for (int i = 0; i < ESK_ORDERS_ADDR_FIELDS; i++) c.u.create.address[i] = addr[i];
  c.u.create.n_items = n;
  for (size_t i = 0; i < n && i < ESK_ORDERS_MAX_ITEMS; i++)
    c.u.create.items[i] = (esk_orders_item_in_t){"p-1", 2, price};
  return c;
}

static esk_orders_command_t simple(esk_orders_command_type_t t) {
  esk_orders_command_t c;
  memset(&c, 0, sizeof(c));
  c.type = t;
  switch (t) {
  case ESK_ORDERS_CMD_ADD_ITEM: c.u.add = (esk_orders_item_in_t){"p-2", 1, 500}; break;
  case ESK_ORDERS_CMD_PROCESS_PAYMENT:
    c.u.pay.payment_id = "pay-1", c.u.pay.currency = "EUR", c.u.pay.method = "paypal";
    break;
  case ESK_ORDERS_CMD_SHIP: c.u.ship.tracking_number = "TRK-1"; break;
  case ESK_ORDERS_CMD_CANCEL: c.u.cancel.reason = "changed my mind"; break;
  default: break;
  }
  return c;
}

/* Runs validate, then decide, and on acceptance folds the event into *st. */
static int run(esk_orders_state_t *st, const esk_orders_command_t *c, esk_decision_t *d) {
  esk_envelope_t e = env_of("cmd", "o-1");
  esk_orders_validate(c, &e, d);
  if (d->rule != ESK_RULE_ACCEPTED) return d->rule;
  esk_orders_event_t ev;
  size_t n = 9;
  esk_error_t err = {0};
  cr_assert_eq(esk_orders_decide(st, c, &e, &ev, &n, d, &err), ESK_OK, "%s", err.msg);
  if (d->rule == ESK_RULE_ACCEPTED) {
    cr_assert_eq(n, 1);
    esk_orders_state_t next;
    cr_assert_eq(esk_orders_evolve(&next, st, &ev, &err), ESK_OK, "%s", err.msg);
    *st = next;
  } else {
    cr_assert_eq(n, 0);
  }
  return d->rule;
}

#define R(name) (ESK_RULE_DOMAIN + (int)ESK_ORDERS_##name)

static const char *rule_name(int r) { return esk_domain_rule_name(esk_orders_domain(), r); }

#define EXPECT_RULE(st, cmd, want)                                                        \
  do {                                                                                    \
    esk_decision_t d_;                                                                    \
    esk_orders_command_t c_ = (cmd);                                                      \
    int got_ = run((st), &c_, &d_);                                                       \
    cr_expect_eq(got_, (want), "got %s (%s), want %s", rule_name(got_), d_.message,       \
                 rule_name(want));                                                        \
  } while (0)

Test(orders, an_order_goes_through_its_whole_life) {
  esk_orders_state_t st;
  memset(&st, 0, sizeof(st));
  EXPECT_RULE(&st, create_cmd(2, 1250), ESK_RULE_ACCEPTED);
  cr_expect_eq(st.status, ESK_ORDERS_CREATED);
  cr_expect_eq(st.total, 2 * 2 * 1250);
  cr_expect_eq(st.item_count, 2);
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_ADD_ITEM), ESK_RULE_ACCEPTED);
  cr_expect_eq(st.total, 5500);
  cr_expect_eq(st.item_count, 3);
  esk_orders_command_t pay = simple(ESK_ORDERS_CMD_PROCESS_PAYMENT);
  pay.u.pay.amount = 5500;
  EXPECT_RULE(&st, pay, ESK_RULE_ACCEPTED);
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_SHIP), ESK_RULE_ACCEPTED);
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_DELIVER), ESK_RULE_ACCEPTED);
  cr_expect_eq(st.status, ESK_ORDERS_DELIVERED);
  cr_expect_eq(st.version, 5);
  cr_expect_str_eq(st.order_id, "o-1");
  cr_expect_str_eq(st.customer_id, "c-1");
}

Test(orders, create_rules_name_the_values) {
  esk_orders_state_t st;
  memset(&st, 0, sizeof(st));
  EXPECT_RULE(&st, create_cmd(0, 100), R(NO_ITEMS));
  EXPECT_RULE(&st, create_cmd(ESK_ORDERS_MAX_ITEMS + 1, 100), R(TOO_MANY_ITEMS));
  EXPECT_RULE(&st, create_cmd(1, -1), R(INVALID_PRICE));
  esk_orders_command_t c = create_cmd(1, 100);
  c.u.create.items[0].quantity = 0;
  EXPECT_RULE(&st, c, R(INVALID_QUANTITY));
  c = create_cmd(1, 100);
  c.u.create.currency = "eur";
  EXPECT_RULE(&st, c, R(INVALID_CURRENCY));
  c = create_cmd(2, INT64_MAX / 3);
  EXPECT_RULE(&st, c, R(AMOUNT_OVERFLOW));
  c = create_cmd(1, 100);
  c.u.create.customer_email = "not-an-address";
  EXPECT_RULE(&st, c, ESK_RULE_INVALID_COMMAND);
  c = create_cmd(1, 100);
  c.u.create.customer_id = "";
  EXPECT_RULE(&st, c, ESK_RULE_INVALID_COMMAND);
  c = create_cmd(1, 100);
  c.u.create.items[0].product_id = NULL;
  EXPECT_RULE(&st, c, ESK_RULE_INVALID_COMMAND);
  char longid[ESK_ORDERS_TEXT_MAX + 2];
  memset(longid, 'x', sizeof(longid) - 1);
  longid[sizeof(longid) - 1] = '\0';
  c = create_cmd(1, 100);
  c.u.create.address[2] = longid;
  esk_decision_t d;
  cr_expect_eq(run(&st, &c, &d), ESK_RULE_INVALID_COMMAND);
  cr_expect(strstr(d.message, "shipping_address.city"), "%s", d.message);
  c = create_cmd(1, -7);
  cr_expect_eq(run(&st, &c, &d), R(INVALID_PRICE));
  cr_expect(strstr(d.message, "INVALID_PRICE") && strstr(d.message, "-7") && strstr(d.message, "p-1"),
            "%s", d.message);
  cr_expect_eq(st.version, 0, "nothing was folded");
  EXPECT_RULE(&st, create_cmd(1, 100), ESK_RULE_ACCEPTED);
  EXPECT_RULE(&st, create_cmd(1, 100), R(ORDER_ALREADY_EXISTS));
}

Test(orders, the_lifecycle_rules_hold) {
  esk_orders_state_t none, st;
  memset(&none, 0, sizeof(none));
  st = none;
  for (int t = ESK_ORDERS_CMD_ADD_ITEM; t <= ESK_ORDERS_CMD_CANCEL; t++) {
    esk_orders_command_t c = simple((esk_orders_command_type_t)t);
    EXPECT_RULE(&none, c, R(ORDER_NOT_FOUND));
  }
  EXPECT_RULE(&st, create_cmd(1, 1000), ESK_RULE_ACCEPTED); /* total 2000 */
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_SHIP), R(ORDER_NOT_PAID));
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_DELIVER), R(ORDER_NOT_SHIPPED));
  esk_orders_command_t pay = simple(ESK_ORDERS_CMD_PROCESS_PAYMENT);
  pay.u.pay.amount = 1999;
  EXPECT_RULE(&st, pay, R(PAYMENT_MISMATCH));
  pay.u.pay.amount = 2000;
  pay.u.pay.currency = "USD";
  EXPECT_RULE(&st, pay, R(PAYMENT_MISMATCH));
  pay.u.pay.currency = "EUR";
  pay.u.pay.method = "cash";
  EXPECT_RULE(&st, pay, R(INVALID_PAYMENT_METHOD));
  pay.u.pay.method = "credit_card";
  EXPECT_RULE(&st, pay, ESK_RULE_ACCEPTED);
  EXPECT_RULE(&st, pay, R(ORDER_NOT_OPEN));
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_ADD_ITEM), R(ORDER_NOT_OPEN));
  esk_orders_state_t paid = st;
  EXPECT_RULE(&paid, simple(ESK_ORDERS_CMD_CANCEL), ESK_RULE_ACCEPTED); /* paid: still cancellable */
  EXPECT_RULE(&paid, simple(ESK_ORDERS_CMD_CANCEL), R(ORDER_CANCELLED));
  EXPECT_RULE(&paid, simple(ESK_ORDERS_CMD_SHIP), R(ORDER_CANCELLED));
  esk_orders_command_t ship = simple(ESK_ORDERS_CMD_SHIP);
  ship.u.ship.tracking_number = "";
  EXPECT_RULE(&st, ship, ESK_RULE_INVALID_COMMAND);
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_SHIP), ESK_RULE_ACCEPTED);
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_CANCEL), R(ORDER_ALREADY_SHIPPED));
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_DELIVER), ESK_RULE_ACCEPTED);
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_CANCEL), R(ORDER_ALREADY_SHIPPED));
  EXPECT_RULE(&st, simple(ESK_ORDERS_CMD_DELIVER), R(ORDER_NOT_SHIPPED));
}

Test(orders, adding_items_stops_at_the_line_limit_and_before_overflow) {
  esk_orders_state_t st;
  memset(&st, 0, sizeof(st));
  EXPECT_RULE(&st, create_cmd(1, 1), ESK_RULE_ACCEPTED);
  esk_orders_command_t big = simple(ESK_ORDERS_CMD_ADD_ITEM);
  big.u.add.quantity = INT32_MAX;
  big.u.add.unit_price = INT64_MAX / 2;
  EXPECT_RULE(&st, big, R(AMOUNT_OVERFLOW));
  esk_orders_state_t full = st;
  full.item_count = ESK_ORDERS_MAX_LINES;
  EXPECT_RULE(&full, simple(ESK_ORDERS_CMD_ADD_ITEM), R(TOO_MANY_ITEMS));
}

Test(orders, decide_validate_and_evolve_never_change_their_inputs) {
  esk_orders_state_t st, st0;
  memset(&st, 0, sizeof(st));
  esk_decision_t d;
  esk_orders_command_t c = create_cmd(3, 700);
  run(&st, &c, &d);
  esk_orders_command_t cmds[] = {simple(ESK_ORDERS_CMD_ADD_ITEM), simple(ESK_ORDERS_CMD_SHIP),
                                 simple(ESK_ORDERS_CMD_CANCEL), create_cmd(1, 1)};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    esk_orders_command_t c0 = cmds[i];
    esk_envelope_t e = env_of("c", "o-1"), e0 = e;
    st0 = st;
    esk_orders_event_t ev;
    size_t n;
    esk_error_t err = {0};
    esk_orders_validate(&cmds[i], &e, &d);
    cr_assert_eq(esk_orders_decide(&st, &cmds[i], &e, &ev, &n, &d, &err), ESK_OK);
    cr_expect_eq(memcmp(&st, &st0, sizeof(st)), 0, "decide changed the state");
    cr_expect_eq(memcmp(&cmds[i], &c0, sizeof(c0)), 0, "decide changed the command");
    cr_expect_eq(memcmp(&e, &e0, sizeof(e)), 0, "decide changed the envelope");
    if (n) {
      esk_orders_event_t ev0 = ev;
      esk_orders_state_t next;
      cr_assert_eq(esk_orders_evolve(&next, &st, &ev, &err), ESK_OK, "%s", err.msg);
      cr_expect_eq(memcmp(&st, &st0, sizeof(st)), 0, "evolve changed the state");
      cr_expect_eq(memcmp(&ev, &ev0, sizeof(ev)), 0, "evolve changed the event");
    }
  }
}

Test(orders, evolve_refuses_an_event_that_does_not_follow) {
  esk_orders_state_t st, next;
  memset(&st, 0, sizeof(st));
  esk_decision_t d;
  esk_orders_command_t c = create_cmd(1, 10);
  run(&st, &c, &d);
  esk_orders_event_t ev;
  memset(&ev, 0, sizeof(ev));
  esk_error_t err = {0};
  strcpy(ev.order_id, "o-1");
  ev.type = ESK_ORDERS_EV_SHIPPED; /* not paid */
  ev.aggregate_version = 2;
  cr_expect_eq(esk_orders_evolve(&next, &st, &ev, &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "OrderShipped") && strstr(err.msg, "CREATED"), "%s", err.msg);
  ev.type = ESK_ORDERS_EV_PAID;
  ev.aggregate_version = 3; /* a gap */
  cr_expect_eq(esk_orders_evolve(&next, &st, &ev, &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "version 3"), "%s", err.msg);
  ev.aggregate_version = 2;
  strcpy(ev.order_id, "o-2");
  cr_expect_eq(esk_orders_evolve(&next, &st, &ev, &err), ESK_EPOISON);
  ev.type = (esk_orders_event_type_t)42;
  strcpy(ev.order_id, "o-1");
  cr_expect_eq(esk_orders_evolve(&next, &st, &ev, &err), ESK_EPOISON);
  cr_expect_eq(esk_orders_evolve(&st, &st, &ev, &err), ESK_EINVAL, "next aliases state");
}

/* ------------------------------------------------------------ snapshots --- */

static esk_orders_state_t paid_state(void) {
  esk_orders_state_t st;
  memset(&st, 0, sizeof(st));
  strcpy(st.order_id, "o-\xc3\xa9t\xc3\xa9");
  strcpy(st.customer_id, "c-1");
  strcpy(st.currency, "JPY");
  st.status = ESK_ORDERS_PAID;
  st.item_count = 7;
  st.total = 123456789012345;
  st.version = 9;
  return st;
}

Test(orders, a_snapshot_round_trips_and_its_body_is_an_avro_order_snapshot_v1) {
  esk_orders_state_t st = paid_state(), back;
  esk_buf_t b;
  esk_buf_init(&b, ESK_ORDERS_SNAPSHOT_MAX);
  esk_error_t err = {0};
  cr_assert_eq(esk_orders_snapshot_write(&b, &st, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(b.data[0], ESK_ORDERS_SNAPSHOT_FORMAT);
  memset(&back, 0x5a, sizeof(back));
  cr_assert_eq(esk_orders_snapshot_read(&back, b.data, b.len, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(back.order_id, st.order_id);
  cr_expect_str_eq(back.customer_id, st.customer_id);
  cr_expect_str_eq(back.currency, st.currency);
  cr_expect_eq(back.status, st.status);
  cr_expect_eq(back.item_count, st.item_count);
  cr_expect_eq(back.total, st.total);
  cr_expect_eq(back.version, st.version);
  /* avro-c reads the body with the schema of schemas/orders */
  esk_schema_set_t *set = NULL;
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_orders_schemas_load(set, &err), ESK_OK, "%s", err.msg);
  const esk_schema_t *s = esk_schema_set_latest(set, "OrderSnapshot");
  cr_assert_not_null(s);
  avro_value_t v, f;
  cr_assert_eq(esk_value_new(&v, s, &err), ESK_OK, "%s", err.msg);
  avro_reader_t r = avro_reader_memory((const char *)b.data + 1, (int64_t)(b.len - 1));
  cr_assert_eq(avro_value_read(r, &v), 0, "%s", avro_strerror());
  int64_t total = 0;
  const char *id = NULL;
  size_t n;
  cr_assert_eq(avro_value_get_by_name(&v, "total", &f, NULL), 0);
  avro_value_get_long(&f, &total);
  cr_expect_eq(total, st.total);
  cr_assert_eq(avro_value_get_by_name(&v, "order_id", &f, NULL), 0);
  avro_value_get_string(&f, &id, &n);
  cr_expect_str_eq(id, st.order_id);
  avro_reader_free(r);
  avro_value_decref(&v);
  esk_schema_set_destroy(set);
  esk_buf_free(&b);
}

Test(orders, hostile_snapshots_are_poison_and_change_nothing) {
  esk_orders_state_t st = paid_state(), out;
  esk_buf_t b;
  esk_buf_init(&b, 4096);
  esk_error_t err = {0};
  cr_assert_eq(esk_orders_snapshot_write(&b, &st, &err), ESK_OK);
  memset(&out, 0x77, sizeof(out));
  esk_orders_state_t out0 = out;
  for (size_t cut = 0; cut < b.len; cut++)
    cr_expect_eq(esk_orders_snapshot_read(&out, b.data, cut, &err), ESK_EPOISON, "cut at %zu", cut);
  uint8_t big[ESK_ORDERS_SNAPSHOT_MAX + 1];
  memcpy(big, b.data, b.len);
  big[b.len] = 0;
  cr_expect_eq(esk_orders_snapshot_read(&out, big, b.len + 1, &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "trailing"), "%s", err.msg);
  memset(big, 0, sizeof(big));
  big[0] = ESK_ORDERS_SNAPSHOT_FORMAT;
  cr_expect_eq(esk_orders_snapshot_read(&out, big, sizeof(big), &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "at most"), "%s", err.msg);
  uint8_t other[8];
  memcpy(other, b.data, sizeof(other));
  other[0] = 2;
  cr_expect_eq(esk_orders_snapshot_read(&out, other, sizeof(other), &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "format 2"), "%s", err.msg);
  /* a string length beyond the input, a negative one, a varint of 11 bytes */
  static const uint8_t huge_len[] = {1, 0xfe, 0xff, 0xff, 0xff, 0x0f, 'a'};
  static const uint8_t neg_len[] = {1, 0x01, 'a'};
  static const uint8_t long_varint[] = {1, 2, 'a', 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  cr_expect_eq(esk_orders_snapshot_read(&out, huge_len, sizeof(huge_len), &err), ESK_EPOISON);
  cr_expect_eq(esk_orders_snapshot_read(&out, neg_len, sizeof(neg_len), &err), ESK_EPOISON);
  cr_expect_eq(esk_orders_snapshot_read(&out, long_varint, sizeof(long_varint), &err), ESK_EPOISON);
  cr_expect_eq(esk_orders_snapshot_read(&out, NULL, 0, &err), ESK_EPOISON);
  /* valid encodings of states that cannot be */
  esk_orders_state_t bad[5];
  for (int i = 0; i < 5; i++) bad[i] = st;
  bad[0].status = (esk_orders_status_t)9;
  bad[1].total = -1;
  strcpy(bad[2].currency, "eu");
  bad[3].item_count = 0;
  bad[4].status = ESK_ORDERS_NONE; /* with version 9 */
  for (int i = 0; i < 5; i++) {
    esk_buf_reset(&b);
    cr_expect_eq(esk_orders_snapshot_write(&b, &bad[i], &err), ESK_EINVAL, "bad state %d written", i);
  }
  /* a NUL inside the order id, written by hand */
  uint8_t nul[64];
  esk_buf_reset(&b);
  cr_assert_eq(esk_orders_snapshot_write(&b, &st, &err), ESK_OK);
  memcpy(nul, b.data, b.len);
  nul[3] = 0; /* inside the order id's bytes */
  cr_expect_eq(esk_orders_snapshot_read(&out, nul, b.len, &err), ESK_EPOISON);
  cr_expect_eq(memcmp(&out, &out0, sizeof(out)), 0, "a refused snapshot changed the state");
  esk_buf_free(&b);
}

/* ----------------------------------------------------- the Avro mapping --- */

static esk_domain_inst_t in;

static void open_orders(void) {
  esk_error_t err = {0};
  cr_assert_eq(esk_domain_check(esk_orders_domain(), "test", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_domain_inst_open(&in, esk_orders_domain(), &err), ESK_OK, "%s", err.msg);
}

static void close_orders(void) { esk_domain_inst_close(&in); }

/* A command value of @p type from JSON, encoded and decoded as the runtime does. */
static int decode_json_command(const char *type, const char *json, esk_envelope_t *env,
                               esk_orders_command_t *c, esk_error_t *err) {
  const esk_schema_t *s = esk_schema_set_latest(in.schemas, type);
  cr_assert_not_null(s, "%s", type);
  avro_value_t v, *dv = NULL;
  esk_buf_t b;
  esk_buf_init(&b, 1 << 16);
  const esk_schema_t *rs = NULL;
  cr_assert_eq(esk_value_new(&v, s, err), ESK_OK, "%s", err->msg);
  cr_assert_eq(esk_value_from_json(&v, s, json, err), ESK_OK, "%s", err->msg);
  cr_assert_eq(esk_codec_encode(in.codec, s, &v, &b, err), ESK_OK, "%s", err->msg);
  cr_assert_eq(esk_codec_decode(in.codec, b.data, b.len, 0, &rs, &dv, err), ESK_OK, "%s", err->msg);
  int rc = in.d->decode_command(in.self, rs, dv, env, c, err);
  avro_value_decref(&v);
  esk_buf_free(&b);
  return rc;
}

Test(orders, commands_decode_into_the_envelope_and_the_command, .init = open_orders,
     .fini = close_orders) {
  esk_envelope_t e;
  esk_orders_command_t c;
  esk_error_t err = {0};
  cr_assert_eq(decode_json_command("CreateOrder",
                                   "{\"command_id\":\"c-1\",\"order_id\":\"o-1\",\"customer_id\":"
                                   "\"cu-1\",\"customer_email\":\"a@b.c\",\"shipping_address\":{"
                                   "\"name\":\"A\",\"street\":\"S\",\"city\":\"C\",\"postal_code\":"
                                   "\"P\",\"country\":\"DE\"},\"items\":[{\"product_id\":\"p-1\","
                                   "\"quantity\":2,\"unit_price\":150},{\"product_id\":\"p-2\","
                                   "\"quantity\":1,\"unit_price\":99}],\"currency\":\"EUR\","
                                   "\"expected_version\":0,\"actor\":\"me\","
                                   "\"correlation_id\":\"k\"}",
                                   &e, &c, &err),
               ESK_OK, "%s", err.msg);
  cr_expect_str_eq(e.command_id, "c-1");
  cr_expect_str_eq(e.aggregate_id, "o-1");
  cr_expect(e.has_expected_version && e.expected_version == 0);
  cr_expect_eq(c.type, ESK_ORDERS_CMD_CREATE);
  cr_expect_eq(c.u.create.n_items, 2);
  cr_expect_str_eq(c.u.create.items[1].product_id, "p-2");
  cr_expect_eq(c.u.create.items[0].unit_price, 150);
  cr_expect_str_eq(c.u.create.address[4], "DE");
  cr_assert_eq(decode_json_command("ProcessPayment",
                                   "{\"command_id\":\"c-2\",\"order_id\":\"o-1\",\"payment_id\":"
                                   "\"p\",\"amount\":399,\"currency\":\"EUR\",\"method\":\"paypal\","
                                   "\"actor\":\"me\",\"correlation_id\":\"k\"}",
                                   &e, &c, &err),
               ESK_OK, "%s", err.msg);
  cr_expect(!e.has_expected_version);
  cr_expect_eq(c.u.pay.amount, 399);
  cr_expect_str_eq(c.u.pay.method, "paypal");
  /* an event is not a command */
  cr_expect_eq(decode_json_command("OrderDelivered",
                                   "{\"meta\":{\"event_id\":\"e\",\"aggregate_type\":\"order\","
                                   "\"aggregate_id\":\"o\",\"aggregate_version\":1,\"occurred_at\":"
                                   "0,\"correlation_id\":\"\",\"causation_id\":\"\",\"actor\":\"\"}}",
                                   &e, &c, &err),
               ESK_EPOISON);
  cr_expect(strstr(err.msg, "OrderDelivered is not an orders command"), "%s", err.msg);
}

Test(orders, every_event_round_trips_through_its_schema, .init = open_orders,
     .fini = close_orders) {
  esk_orders_state_t st;
  memset(&st, 0, sizeof(st));
  esk_orders_command_t pay = simple(ESK_ORDERS_CMD_PROCESS_PAYMENT);
  pay.u.pay.amount = 3 * 2 * 333 + 500;
  esk_orders_command_t cmds[] = {create_cmd(3, 333), simple(ESK_ORDERS_CMD_ADD_ITEM), pay,
                                 simple(ESK_ORDERS_CMD_SHIP), simple(ESK_ORDERS_CMD_DELIVER)};
  esk_orders_state_t cancel_from = st;
  esk_buf_t b;
  esk_buf_init(&b, 1 << 16);
  for (size_t i = 0; i <= sizeof(cmds) / sizeof(cmds[0]); i++) {
    esk_orders_command_t c = i < 5 ? cmds[i] : simple(ESK_ORDERS_CMD_CANCEL);
    esk_orders_state_t *from = i < 5 ? &st : &cancel_from;
    esk_envelope_t e = env_of("c", "o-1");
    esk_orders_event_t ev, back;
    esk_decision_t d;
    size_t n = 0;
    esk_error_t err = {0};
    cr_assert_eq(esk_orders_decide(from, &c, &e, &ev, &n, &d, &err), ESK_OK);
    cr_assert_eq(n, 1, "%zu: %s", i, d.message);
    esk_event_meta_t m = {"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b", 1767225600123456, "o-1",
                          ev.aggregate_version, "corr", "c", "tester"};
    const esk_schema_t *ws = NULL;
    esk_buf_reset(&b);
    cr_assert_eq(in.d->encode_event(in.self, &b, &ws, &ev, &m, &err), ESK_OK, "%s", err.msg);
    cr_expect_str_eq(esk_schema_type(ws), esk_orders_event_names[ev.type]);
    esk_event_ref_t ref;
    memset(&back, 0, sizeof(back));
    cr_assert_eq(in.d->decode_event(in.self, &back, &ref, b.data, b.len, &err), ESK_OK, "%s",
                 err.msg);
    cr_expect_str_eq(ref.aggregate_id, "o-1");
    cr_expect_eq(ref.aggregate_version, ev.aggregate_version);
    esk_orders_state_t a, z;
    cr_assert_eq(esk_orders_evolve(&a, from, &ev, &err), ESK_OK, "%s", err.msg);
    cr_assert_eq(esk_orders_evolve(&z, from, &back, &err), ESK_OK, "%s", err.msg);
    cr_expect_eq(memcmp(&a, &z, sizeof(a)), 0, "%s folds differently after the round trip",
                 esk_orders_event_names[ev.type]);
    if (ev.type == ESK_ORDERS_EV_CREATED) {
      cr_expect_str_eq(back.u.created.customer_email, "ada@example.org");
      cr_expect_str_eq(back.u.created.address[1], "1 Main St");
      cr_expect_eq(back.u.created.n_items, 3);
      cr_expect_eq(back.u.created.total, 1998);
      cancel_from = a;
    }
    *from = a;
  }
  /* truncated events are poison */
  esk_orders_event_t back;
  esk_event_ref_t ref;
  esk_error_t err = {0};
  for (size_t cut = 0; cut < b.len; cut++)
    cr_expect_neq(in.d->decode_event(in.self, &back, &ref, b.data, cut, &err), ESK_OK, "cut %zu",
                  cut);
  esk_buf_free(&b);
}

Test(orders, major_units_round_half_to_even_and_refuse_what_is_no_amount) {
  int64_t m = -1;
  esk_error_t err = {0};
  static const struct {
    double major;
    int64_t minor;
  } ok[] = {{0, 0}, {0.125, 12}, {0.375, 38}, {19.99, 1999}, {0.005, 0}, {0.015, 2}, {1e6, 100000000}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    cr_expect_eq(esk_orders_minor_units(&m, ok[i].major, "x", &err), ESK_OK, "%g: %s", ok[i].major,
                 err.msg);
    cr_expect_eq(m, ok[i].minor, "%g -> %lld, want %lld", ok[i].major, (long long)m,
                 (long long)ok[i].minor);
  }
  static const double bad[] = {-0.01, NAN, INFINITY, -INFINITY, 1e300};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_expect_eq(esk_orders_minor_units(&m, bad[i], "item 0's price", &err), ESK_EPOISON, "%g",
                 bad[i]);
    cr_expect(strstr(err.msg, "item 0's price"), "%s", err.msg);
  }
}

/* A fixture written by Apache Avro for Python (tests/fixtures/avro/orders/generate.py). */
static size_t read_fixture(const char *name, uint8_t *buf, size_t size) {
  char path[512];
  snprintf(path, sizeof(path), FIXTURES "/%s", name);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  size_t n = fread(buf, 1, size, f);
  fclose(f);
  return n;
}

Test(orders, v1_order_created_written_by_python_is_read_as_v2, .init = open_orders,
     .fini = close_orders) {
  uint8_t buf[4096];
  size_t n = read_fixture("OrderCreated.v1.ok.bin", buf, sizeof(buf));
  esk_orders_event_t ev;
  esk_event_ref_t ref;
  esk_error_t err = {0};
  cr_assert_eq(in.d->decode_event(in.self, &ev, &ref, buf, n, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(ev.type, ESK_ORDERS_EV_CREATED);
  cr_expect_str_eq(ref.aggregate_id, "o-legacy-1");
  cr_expect_eq(ref.aggregate_version, 1);
  cr_expect_str_eq(ev.u.created.customer_id, "c-9");
  cr_expect_str_eq(ev.u.created.currency, ESK_ORDERS_V1_CURRENCY);
  cr_expect_str_eq(ev.u.created.customer_email, "");
  cr_assert_eq(ev.u.created.n_items, 3);
  cr_expect_str_eq(ev.u.created.items[0].product_id, "p-1");
  cr_expect_eq(ev.u.created.items[0].unit_price, 1999);
  cr_expect_eq(ev.u.created.items[1].unit_price, 12, "0.125 rounds half to even");
  cr_expect_eq(ev.u.created.items[2].unit_price, 38, "0.375 rounds half to even");
  cr_expect_eq(ev.u.created.items[2].quantity, 3);
  cr_expect_eq(ev.u.created.total, 4123);
  esk_orders_state_t none, st;
  memset(&none, 0, sizeof(none));
  cr_assert_eq(esk_orders_evolve(&st, &none, &ev, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(st.total, 2 * 1999 + 12 + 3 * 38, "the state's total is the lines' sum");
  static const char *const poison[] = {"OrderCreated.v1.nan.bin", "OrderCreated.v1.infinite_total.bin",
                                       "OrderCreated.v1.negative.bin"};
  for (size_t i = 0; i < sizeof(poison) / sizeof(poison[0]); i++) {
    n = read_fixture(poison[i], buf, sizeof(buf));
    cr_expect_eq(in.d->decode_event(in.self, &ev, &ref, buf, n, &err), ESK_EPOISON, "%s", poison[i]);
    cr_expect(strstr(err.msg, "OrderCreated v1"), "%s: %s", poison[i], err.msg);
  }
}
