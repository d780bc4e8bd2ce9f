/* The order aggregate's rules, fold and snapshots (see orders.h). */
#include "orders.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "esk/avro_bin.h"

const char *const esk_orders_rule_names[ESK_ORDERS_RULE_COUNT_] = {
    "INVALID_CURRENCY",    "INVALID_QUANTITY",        "INVALID_PRICE",
    "NO_ITEMS",            "TOO_MANY_ITEMS",          "AMOUNT_OVERFLOW",
    "INVALID_PAYMENT_METHOD", "ORDER_ALREADY_EXISTS", "ORDER_NOT_FOUND",
    "ORDER_NOT_OPEN",      "PAYMENT_MISMATCH",        "ORDER_NOT_PAID",
    "ORDER_NOT_SHIPPED",   "ORDER_ALREADY_SHIPPED",   "ORDER_CANCELLED"};

const char *const esk_orders_command_names[ESK_ORDERS_CMD_COUNT_ + 2] = {
    NULL, "CreateOrder", "AddItem", "ProcessPayment", "ShipOrder", "DeliverOrder", "CancelOrder",
    NULL};

const char *const esk_orders_event_names[ESK_ORDERS_EV_COUNT_ + 2] = {
    NULL,           "OrderCreated",   "OrderItemAdded", "PaymentProcessed",
    "OrderShipped", "OrderDelivered", "OrderCancelled", NULL};

const char *const esk_orders_address_fields[ESK_ORDERS_ADDR_FIELDS] = {
    "name", "street", "city", "postal_code", "country"};

static const char *const methods[] = {"credit_card", "paypal", "bank_transfer"};

const char *esk_orders_status_name(esk_orders_status_t s) {
  static const char *const names[] = {"NONE", "CREATED", "PAID", "SHIPPED", "DELIVERED",
                                      "CANCELLED"};
  return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "UNKNOWN";
}

/* ------------------------------------------------------------ decisions --- */

static void decision(esk_decision_t *out, int rule, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void decision(esk_decision_t *out, int rule, const char *fmt, ...) {
  va_list ap;
  out->rule = rule;
  size_t n = 0;
  if (rule >= ESK_RULE_DOMAIN)
    n = (size_t)snprintf(out->message, sizeof(out->message), "%s: ",
                         esk_orders_rule_names[rule - ESK_RULE_DOMAIN]);
  else if (rule == ESK_RULE_INVALID_COMMAND)
    n = (size_t)snprintf(out->message, sizeof(out->message), "INVALID_COMMAND: ");
  va_start(ap, fmt);
  if (n < sizeof(out->message)) vsnprintf(out->message + n, sizeof(out->message) - n, fmt, ap);
  va_end(ap);
}

#define RULE(r) (ESK_RULE_DOMAIN + (int)ESK_ORDERS_##r)

static int currency_valid(const char *c) {
  return c && strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' &&
         c[2] >= 'A' && c[2] <= 'Z';
}

/* A required string of at most @p max bytes; names the field when not. */
static int bad_text(esk_decision_t *out, const char *what, const char *s, size_t max,
                    int required) {
  if (!s || (required && !*s)) {
    decision(out, ESK_RULE_INVALID_COMMAND, "%s is required", what);
    return 1;
  }
  if (strnlen(s, max + 1) > max) {
    decision(out, ESK_RULE_INVALID_COMMAND, "%s is longer than %zu bytes", what, max);
    return 1;
  }
  return 0;
}

static int bad_item(esk_decision_t *out, const esk_orders_item_in_t *it, size_t i) {
  char what[48];
  snprintf(what, sizeof(what), "item %zu's product_id", i);
  if (bad_text(out, what, it->product_id, ESK_ORDERS_ID_MAX, 1)) return 1;
  if (it->quantity <= 0 || it->quantity > INT32_MAX) {
    decision(out, RULE(INVALID_QUANTITY), "item %zu (%s) has quantity %" PRId64 ", expected > 0",
             i, it->product_id, it->quantity);
    return 1;
  }
  if (it->unit_price < 0) {
    decision(out, RULE(INVALID_PRICE), "item %zu (%s) has unit price %" PRId64 ", expected >= 0",
             i, it->product_id, it->unit_price);
    return 1;
  }
  return 0;
}

/* *total += quantity * unit_price; 1 on overflow. */
static int add_line(int64_t *total, int64_t quantity, int64_t unit_price) {
  int64_t line;
  return __builtin_mul_overflow(quantity, unit_price, &line) ||
         __builtin_add_overflow(*total, line, total);
}

void esk_orders_validate(const esk_orders_command_t *cmd, const esk_envelope_t *env,
                         esk_decision_t *out) {
  (void)env; /* the runtime checked the envelope */
  out->rule = ESK_RULE_ACCEPTED;
  out->message[0] = '\0';
  switch (cmd->type) {
  case ESK_ORDERS_CMD_CREATE: {
    const char *email = cmd->u.create.customer_email;
    if (bad_text(out, "customer_id", cmd->u.create.customer_id, ESK_ORDERS_ID_MAX, 1) ||
        bad_text(out, "customer_email", email, ESK_ORDERS_TEXT_MAX, 1))
      return;
    if (!strchr(email, '@') || email[0] == '@' || !strchr(email, '@')[1]) {
      decision(out, ESK_RULE_INVALID_COMMAND, "customer_email '%s' is not an address", email);
      return;
    }
    for (int i = 0; i < ESK_ORDERS_ADDR_FIELDS; i++) {
      char what[48];
      snprintf(what, sizeof(what), "shipping_address.%s", esk_orders_address_fields[i]);
      if (bad_text(out, what, cmd->u.create.address[i], ESK_ORDERS_TEXT_MAX, 0)) return;
    }
    if (!currency_valid(cmd->u.create.currency)) {
      decision(out, RULE(INVALID_CURRENCY), "'%.8s' is not three upper-case letters",
               cmd->u.create.currency ? cmd->u.create.currency : "");
      return;
    }
    if (cmd->u.create.n_items == 0) {
      decision(out, RULE(NO_ITEMS), "an order needs at least one item");
      return;
    }
    if (cmd->u.create.n_items > ESK_ORDERS_MAX_ITEMS) {
      decision(out, RULE(TOO_MANY_ITEMS), "%zu items, at most %d in one CreateOrder",
               cmd->u.create.n_items, ESK_ORDERS_MAX_ITEMS);
      return;
    }
    int64_t total = 0;
    for (size_t i = 0; i < cmd->u.create.n_items; i++) {
      const esk_orders_item_in_t *it = &cmd->u.create.items[i];
      if (bad_item(out, it, i)) return;
      if (add_line(&total, it->quantity, it->unit_price)) {
        decision(out, RULE(AMOUNT_OVERFLOW), "the total exceeds %" PRId64 " at item %zu (%s)",
                 INT64_MAX, i, it->product_id);
        return;
      }
    }
    return;
  }
  case ESK_ORDERS_CMD_ADD_ITEM: bad_item(out, &cmd->u.add, 0); return;
  case ESK_ORDERS_CMD_PROCESS_PAYMENT: {
    if (bad_text(out, "payment_id", cmd->u.pay.payment_id, ESK_ORDERS_ID_MAX, 1)) return;
    if (!currency_valid(cmd->u.pay.currency)) {
      decision(out, RULE(INVALID_CURRENCY), "'%.8s' is not three upper-case letters",
               cmd->u.pay.currency ? cmd->u.pay.currency : "");
      return;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
      known |= cmd->u.pay.method && !strcmp(cmd->u.pay.method, methods[i]);
    if (!known)
      decision(out, RULE(INVALID_PAYMENT_METHOD),
               "'%.32s' is not credit_card, paypal or bank_transfer",
               cmd->u.pay.method ? cmd->u.pay.method : "");
    return;
  }
  case ESK_ORDERS_CMD_SHIP:
    bad_text(out, "tracking_number", cmd->u.ship.tracking_number, ESK_ORDERS_TEXT_MAX, 1);
    return;
  case ESK_ORDERS_CMD_DELIVER: return;
  case ESK_ORDERS_CMD_CANCEL:
    bad_text(out, "reason", cmd->u.cancel.reason, ESK_ORDERS_TEXT_MAX, 0);
    return;
  }
  decision(out, ESK_RULE_INVALID_COMMAND, "unknown command type %d", (int)cmd->type);
}

static void copy_text(char *dst, size_t size, const char *src) {
  size_t n = src ? strnlen(src, size - 1) : 0;
  if (n) memcpy(dst, src, n);
  dst[n] = '\0';
}

static void copy_item(esk_orders_item_t *dst, const esk_orders_item_in_t *src) {
  copy_text(dst->product_id, sizeof(dst->product_id), src->product_id);
  dst->quantity = (int32_t)src->quantity;
  dst->unit_price = src->unit_price;
}

/* One function a command: each fills @p ev and returns 1, or writes the
 * refusal to @p out and returns 0. @p id is the order, @p status its state's
 * name. */
typedef int (*decide_fn)(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                         const char *id, const char *status, esk_orders_event_t *ev,
                         esk_decision_t *out);

static int decide_create(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                         const char *id, const char *status, esk_orders_event_t *ev,
                         esk_decision_t *out) {
  (void)st, (void)id, (void)status, (void)out;
  ev->type = ESK_ORDERS_EV_CREATED;
  copy_text(ev->u.created.customer_id, sizeof(ev->u.created.customer_id),
            cmd->u.create.customer_id);
  copy_text(ev->u.created.customer_email, sizeof(ev->u.created.customer_email),
            cmd->u.create.customer_email);
  for (int i = 0; i < ESK_ORDERS_ADDR_FIELDS; i++)
    copy_text(ev->u.created.address[i], sizeof(ev->u.created.address[i]),
              cmd->u.create.address[i]);
  int64_t total = 0;
  ev->u.created.n_items = cmd->u.create.n_items;
  for (size_t i = 0; i < cmd->u.create.n_items; i++) {
    copy_item(&ev->u.created.items[i], &cmd->u.create.items[i]);
    add_line(&total, cmd->u.create.items[i].quantity, cmd->u.create.items[i].unit_price);
  }
  ev->u.created.total = total; /* validate() refused an overflow */
  copy_text(ev->u.created.currency, sizeof(ev->u.created.currency), cmd->u.create.currency);
  return 1;
}

static int decide_add_item(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                           const char *id, const char *status, esk_orders_event_t *ev,
                           esk_decision_t *out) {
  if (st->status != ESK_ORDERS_CREATED) {
    decision(out, RULE(ORDER_NOT_OPEN), "order %s is %s: items are added only before payment",
             id, status);
    return 0;
  }
  if (st->item_count >= ESK_ORDERS_MAX_LINES) {
    decision(out, RULE(TOO_MANY_ITEMS), "order %s has %d lines, at most %d", id,
             (int)st->item_count, ESK_ORDERS_MAX_LINES);
    return 0;
  }
  int64_t total = st->total;
  if (add_line(&total, cmd->u.add.quantity, cmd->u.add.unit_price)) {
    decision(out, RULE(AMOUNT_OVERFLOW),
             "adding %" PRId64 " x %" PRId64 " to order %s's total %" PRId64 " %s overflows",
             cmd->u.add.quantity, cmd->u.add.unit_price, id, st->total, st->currency);
    return 0;
  }
  ev->type = ESK_ORDERS_EV_ITEM_ADDED;
  copy_item(&ev->u.added, &cmd->u.add);
  return 1;
}

static int decide_pay(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                      const char *id, const char *status, esk_orders_event_t *ev,
                      esk_decision_t *out) {
  if (st->status != ESK_ORDERS_CREATED) {
    decision(out, RULE(ORDER_NOT_OPEN), "order %s is %s: it is paid once, before shipping", id,
             status);
    return 0;
  }
  if (cmd->u.pay.amount != st->total || strcmp(cmd->u.pay.currency, st->currency)) {
    decision(out, RULE(PAYMENT_MISMATCH),
             "payment of %" PRId64 " %s (minor units) for order %s whose total is %" PRId64 " %s",
             cmd->u.pay.amount, cmd->u.pay.currency, id, st->total, st->currency);
    return 0;
  }
  ev->type = ESK_ORDERS_EV_PAID;
  copy_text(ev->u.paid.payment_id, sizeof(ev->u.paid.payment_id), cmd->u.pay.payment_id);
  ev->u.paid.amount = cmd->u.pay.amount;
  copy_text(ev->u.paid.currency, sizeof(ev->u.paid.currency), cmd->u.pay.currency);
  copy_text(ev->u.paid.method, sizeof(ev->u.paid.method), cmd->u.pay.method);
  return 1;
}

static int decide_ship(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                       const char *id, const char *status, esk_orders_event_t *ev,
                       esk_decision_t *out) {
  if (st->status != ESK_ORDERS_PAID) {
    decision(out, RULE(ORDER_NOT_PAID), "order %s is %s: only a paid order ships", id, status);
    return 0;
  }
  ev->type = ESK_ORDERS_EV_SHIPPED;
  copy_text(ev->u.shipped.tracking_number, sizeof(ev->u.shipped.tracking_number),
            cmd->u.ship.tracking_number);
  return 1;
}

static int decide_deliver(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                          const char *id, const char *status, esk_orders_event_t *ev,
                          esk_decision_t *out) {
  (void)cmd;
  if (st->status != ESK_ORDERS_SHIPPED) {
    decision(out, RULE(ORDER_NOT_SHIPPED), "order %s is %s: only a shipped order is delivered",
             id, status);
    return 0;
  }
  ev->type = ESK_ORDERS_EV_DELIVERED;
  return 1;
}

static int decide_cancel(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                         const char *id, const char *status, esk_orders_event_t *ev,
                         esk_decision_t *out) {
  if (st->status == ESK_ORDERS_SHIPPED || st->status == ESK_ORDERS_DELIVERED) {
    decision(out, RULE(ORDER_ALREADY_SHIPPED), "order %s is %s: too late to cancel", id,
             status);
    return 0;
  }
  ev->type = ESK_ORDERS_EV_CANCELLED;
  copy_text(ev->u.cancelled.reason, sizeof(ev->u.cancelled.reason), cmd->u.cancel.reason);
  return 1;
}

/* What any command needs of the order's state: CreateOrder a new order, the
 * others one that exists and is not cancelled. @returns 1, or 0 after the
 * refusal in @p out. */
static int order_state_allows(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                              const char *id, const char *status, esk_decision_t *out) {
  if (cmd->type == ESK_ORDERS_CMD_CREATE) {
    if (st->status == ESK_ORDERS_NONE) return 1;
    decision(out, RULE(ORDER_ALREADY_EXISTS), "order %s exists (%s, version %" PRId64 ")", id,
             status, st->version);
    return 0;
  }
  if (st->status == ESK_ORDERS_NONE) {
    decision(out, RULE(ORDER_NOT_FOUND), "no order %s", id);
    return 0;
  }
  if (st->status == ESK_ORDERS_CANCELLED) {
    decision(out, RULE(ORDER_CANCELLED), "order %s is cancelled", id);
    return 0;
  }
  return 1;
}

static decide_fn decider_of(esk_orders_command_type_t type) {
  switch (type) {
  case ESK_ORDERS_CMD_CREATE: return decide_create;
  case ESK_ORDERS_CMD_ADD_ITEM: return decide_add_item;
  case ESK_ORDERS_CMD_PROCESS_PAYMENT: return decide_pay;
  case ESK_ORDERS_CMD_SHIP: return decide_ship;
  case ESK_ORDERS_CMD_DELIVER: return decide_deliver;
  case ESK_ORDERS_CMD_CANCEL: return decide_cancel;
  }
  return NULL;
}

int esk_orders_decide(const esk_orders_state_t *st, const esk_orders_command_t *cmd,
                      const esk_envelope_t *env, esk_orders_event_t *events, size_t *n_out,
                      esk_decision_t *out, esk_error_t *err) {
  if (!st || !cmd || !env || !env->aggregate_id || !events || !n_out || !out)
    return esk_error_set(err, ESK_EINVAL, "orders decide: NULL argument");
  *n_out = 0;
  const char *id = env->aggregate_id;
  const char *status = esk_orders_status_name(st->status);
  if (!order_state_allows(st, cmd, id, status, out)) return ESK_OK;
  esk_orders_event_t *ev = events;
  memset(ev, 0, offsetof(esk_orders_event_t, u));
  decide_fn decide = decider_of(cmd->type);
  if (!decide) {
    decision(out, ESK_RULE_INVALID_COMMAND, "unknown command type %d", (int)cmd->type);
    return ESK_OK;
  }
  if (!decide(st, cmd, id, status, ev, out)) return ESK_OK;
  copy_text(ev->order_id, sizeof(ev->order_id), id);
  ev->aggregate_version = st->version + 1;
  *n_out = 1;
  decision(out, ESK_RULE_ACCEPTED, "%s", "");
  out->message[0] = '\0';
  return ESK_OK;
}

/* ----------------------------------------------------------------- fold --- */

int esk_orders_evolve(esk_orders_state_t *next, const esk_orders_state_t *st,
                      const esk_orders_event_t *ev, esk_error_t *err) {
  if (!next || !st || !ev || next == st)
    return esk_error_set(err, ESK_EINVAL, "orders evolve: bad arguments");
  const char *type = (unsigned)ev->type - 1 < ESK_ORDERS_EV_COUNT_ ? esk_orders_event_names[ev->type]
                                                                   : "an unknown event";
  if (ev->aggregate_version != st->version + 1)
    return esk_error_set(err, ESK_EPOISON,
                         "order %s: %s has version %" PRId64 ", the order is at %" PRId64,
                         ev->order_id, type, ev->aggregate_version, st->version);
  if (st->status != ESK_ORDERS_NONE && strcmp(st->order_id, ev->order_id))
    return esk_error_set(err, ESK_EPOISON, "order %s: %s of order %s", st->order_id, type,
                         ev->order_id);
  esk_orders_status_t from = st->status, want = ESK_ORDERS_CREATED;
  *next = *st;
  switch (ev->type) {
  case ESK_ORDERS_EV_CREATED: {
    want = ESK_ORDERS_NONE;
    if (from != want) break;
    if (ev->u.created.n_items < 1 || ev->u.created.n_items > ESK_ORDERS_MAX_ITEMS ||
        !currency_valid(ev->u.created.currency))
      return esk_error_set(err, ESK_EPOISON, "order %s: OrderCreated with %zu items in '%s'",
                           ev->order_id, ev->u.created.n_items, ev->u.created.currency);
    int64_t total = 0;
    for (size_t i = 0; i < ev->u.created.n_items; i++)
      if (ev->u.created.items[i].quantity <= 0 || ev->u.created.items[i].unit_price < 0 ||
          add_line(&total, ev->u.created.items[i].quantity, ev->u.created.items[i].unit_price))
        return esk_error_set(err, ESK_EPOISON, "order %s: OrderCreated item %zu is not valid",
                             ev->order_id, i);
    copy_text(next->order_id, sizeof(next->order_id), ev->order_id);
    copy_text(next->customer_id, sizeof(next->customer_id), ev->u.created.customer_id);
    memcpy(next->currency, ev->u.created.currency, sizeof(next->currency));
    next->item_count = (int32_t)ev->u.created.n_items;
    next->total = total; /* the lines' sum: a v1 total rounded on its own may differ */
    next->status = ESK_ORDERS_CREATED;
    break;
  }
  case ESK_ORDERS_EV_ITEM_ADDED:
    if (from != want) break;
    if (ev->u.added.quantity <= 0 || ev->u.added.unit_price < 0 ||
        next->item_count >= ESK_ORDERS_MAX_LINES ||
        add_line(&next->total, ev->u.added.quantity, ev->u.added.unit_price))
      return esk_error_set(err, ESK_EPOISON, "order %s: OrderItemAdded %s is not valid here",
                           ev->order_id, ev->u.added.product_id);
    next->item_count++;
    break;
  case ESK_ORDERS_EV_PAID:
    if (from != want) break;
    next->status = ESK_ORDERS_PAID;
    break;
  case ESK_ORDERS_EV_SHIPPED:
    want = ESK_ORDERS_PAID;
    if (from != want) break;
    next->status = ESK_ORDERS_SHIPPED;
    break;
  case ESK_ORDERS_EV_DELIVERED:
    want = ESK_ORDERS_SHIPPED;
    if (from != want) break;
    next->status = ESK_ORDERS_DELIVERED;
    break;
  case ESK_ORDERS_EV_CANCELLED:
    if (from == ESK_ORDERS_PAID) want = from;
    if (from != want) break;
    next->status = ESK_ORDERS_CANCELLED;
    break;
  default:
    *next = *st;
    return esk_error_set(err, ESK_EPOISON, "order %s: unknown event type %d", ev->order_id,
                         (int)ev->type);
  }
  if (from != want) {
    *next = *st;
    return esk_error_set(err, ESK_EPOISON, "order %s: %s (version %" PRId64 ") on an order that is %s",
                         ev->order_id, type, ev->aggregate_version, esk_orders_status_name(from));
  }
  next->version = ev->aggregate_version;
  return ESK_OK;
}

/* ------------------------------------------------------------ snapshots --- */

/* The Avro body: esk/avro_bin.h, field by field in OrderSnapshot.v1's order. */

/* The checks esk_orders_snapshot_read() makes of what it read. */
static const char *state_problem(const esk_orders_state_t *s) {
  if (s->version < 0) return "a negative version";
  if ((unsigned)s->status > ESK_ORDERS_CANCELLED) return "an unknown status";
  if ((s->status == ESK_ORDERS_NONE) != (s->version == 0)) return "status and version disagree";
  if (s->status == ESK_ORDERS_NONE) return NULL;
  if (!s->order_id[0] || !s->customer_id[0]) return "an empty id";
  if (!currency_valid(s->currency)) return "a bad currency";
  if (s->item_count < 1 || s->item_count > ESK_ORDERS_MAX_LINES) return "a bad item count";
  if (s->total < 0) return "a negative total";
  return NULL;
}

int esk_orders_snapshot_write(esk_buf_t *out, const esk_orders_state_t *s, esk_error_t *err) {
  const char *why = state_problem(s);
  if (why) return esk_error_set(err, ESK_EINVAL, "order %s: not snapshotted: %s", s->order_id, why);
  size_t mark = out->len;
  uint8_t format = ESK_ORDERS_SNAPSHOT_FORMAT;
  int rc;
  if ((rc = esk_buf_append(out, &format, 1, NULL)) || (rc = esk_avro_put_string(out, s->order_id)) ||
      (rc = esk_avro_put_long(out, s->version)) || (rc = esk_avro_put_long(out, s->status)) ||
      (rc = esk_avro_put_string(out, s->customer_id)) || (rc = esk_avro_put_string(out, s->currency)) ||
      (rc = esk_avro_put_long(out, s->item_count)) || (rc = esk_avro_put_long(out, s->total))) {
    out->len = mark;
    return esk_error_set(err, rc, "order %s: snapshot: out of memory", s->order_id);
  }
  return ESK_OK;
}

int esk_orders_snapshot_read(esk_orders_state_t *out, const void *data, size_t len,
                             esk_error_t *err) {
  if (!data || len == 0) return esk_error_set(err, ESK_EPOISON, "order snapshot: empty");
  if (len > ESK_ORDERS_SNAPSHOT_MAX)
    return esk_error_set(err, ESK_EPOISON, "order snapshot: %zu bytes, at most %d", len,
                         ESK_ORDERS_SNAPSHOT_MAX);
  const uint8_t *p = data;
  if (p[0] != ESK_ORDERS_SNAPSHOT_FORMAT)
    return esk_error_set(err, ESK_EPOISON, "order snapshot: unknown format %u", p[0]);
  esk_avro_in_t r = {p + 1, p + len};
  esk_orders_state_t s;
  memset(&s, 0, sizeof(s));
  int64_t status = 0, items = 0;
  if (esk_avro_get_string(&r, s.order_id, sizeof(s.order_id)) ||
      esk_avro_get_long(&r, &s.version) || esk_avro_get_long(&r, &status) ||
      esk_avro_get_string(&r, s.customer_id, sizeof(s.customer_id)) ||
      esk_avro_get_string(&r, s.currency, sizeof(s.currency)) ||
      esk_avro_get_long(&r, &items) || esk_avro_get_long(&r, &s.total))
    return esk_error_set(err, ESK_EPOISON,
                         "order snapshot: truncated or a field out of range at byte %zu",
                         (size_t)(r.p - p));
  if (r.p != r.end)
    return esk_error_set(err, ESK_EPOISON, "order snapshot: %zu trailing bytes",
                         (size_t)(r.end - r.p));
  if (status < 0 || status > ESK_ORDERS_CANCELLED || items < 0 || items > ESK_ORDERS_MAX_LINES)
    return esk_error_set(err, ESK_EPOISON, "order snapshot: status %" PRId64 " or %" PRId64 " items out of range",
                         status, items);
  s.status = (esk_orders_status_t)status;
  s.item_count = (int32_t)items;
  const char *why = state_problem(&s);
  if (why) return esk_error_set(err, ESK_EPOISON, "order snapshot of %s: %s", s.order_id, why);
  *out = s;
  return ESK_OK;
}
