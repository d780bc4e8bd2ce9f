/* The order aggregate behind the Decider interface (esk/domain.h): its Avro
 * mapping onto the contract in schemas/orders, and its descriptor. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"
#include "orders_contract.h"

/* An instance: the schemas and scratch values of every command and event. */
typedef struct orders_avro_s {
  esk_codec_t *codec;
  const esk_schema_t *event_schema[ESK_ORDERS_EV_COUNT_ + 1];
  avro_value_t event_value[ESK_ORDERS_EV_COUNT_ + 1];
} orders_avro_t;

static void destroy(void *self) {
  orders_avro_t *a = self;
  if (!a) return;
  for (int t = 1; t <= ESK_ORDERS_EV_COUNT_; t++)
    if (a->event_value[t].iface) avro_value_decref(&a->event_value[t]);
  free(a);
}

static int create(void **self, const esk_schema_set_t *set, esk_codec_t *codec,
                  esk_error_t *err) {
  orders_avro_t *a = calloc(1, sizeof(*a));
  if (!a) return esk_error_set(err, ESK_ENOMEM, "orders: out of memory");
  a->codec = codec;
  int rc = ESK_OK;
  for (int t = 1; t <= ESK_ORDERS_EV_COUNT_ && !rc; t++) {
    if (!(a->event_schema[t] = esk_schema_set_latest(set, esk_orders_event_names[t])))
      rc = esk_error_set(err, ESK_EINVAL, "orders: the contract lacks %s",
                         esk_orders_event_names[t]);
    else
      rc = esk_value_new(&a->event_value[t], a->event_schema[t], err);
  }
  for (int t = 1; t <= ESK_ORDERS_CMD_COUNT_ && !rc; t++)
    if (!esk_schema_set_latest(set, esk_orders_command_names[t]))
      rc = esk_error_set(err, ESK_EINVAL, "orders: the contract lacks %s",
                         esk_orders_command_names[t]);
  if (rc) {
    destroy(a);
    return rc;
  }
  *self = a;
  return ESK_OK;
}

/* ------------------------------------------------------- field access --- */

static const char *get_str(const avro_value_t *rec, const char *name) {
  avro_value_t f;
  const char *s = NULL;
  size_t n = 0;
  if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_string(&f, &s, &n))
    return NULL;
  return s; /* whole: the codec refuses a string holding U+0000 */
}

static int get_long(const avro_value_t *rec, const char *name, int64_t *out) {
  avro_value_t f;
  int32_t i;
  if (avro_value_get_by_name(rec, name, &f, NULL)) return -1;
  if (avro_value_get_type(&f) == AVRO_INT32) {
    if (avro_value_get_int(&f, &i)) return -1;
    *out = i;
    return 0;
  }
  return avro_value_get_long(&f, out);
}

static int get_item(const avro_value_t *rec, esk_orders_item_in_t *it) {
  it->product_id = get_str(rec, "product_id");
  return !it->product_id || get_long(rec, "quantity", &it->quantity) ||
         get_long(rec, "unit_price", &it->unit_price);
}

static int set_str(avro_value_t *rec, const char *name, const char *v) {
  avro_value_t f;
  return avro_value_get_by_name(rec, name, &f, NULL) || avro_value_set_string(&f, v ? v : "");
}

static int set_long(avro_value_t *rec, const char *name, int64_t v) {
  avro_value_t f;
  return avro_value_get_by_name(rec, name, &f, NULL) || avro_value_set_long(&f, v);
}

static int set_item(avro_value_t *rec, const esk_orders_item_t *it) {
  avro_value_t f;
  return set_str(rec, "product_id", it->product_id) ||
         avro_value_get_by_name(rec, "quantity", &f, NULL) ||
         avro_value_set_int(&f, it->quantity) || set_long(rec, "unit_price", it->unit_price);
}

/* Copies @p src whole into @p dst of @p size bytes; -1 when NULL or too long. */
static int copy_fixed(char *dst, size_t size, const char *src) {
  size_t n = src ? strnlen(src, size) : size;
  if (n == size) return -1;
  memcpy(dst, src, n + 1);
  return 0;
}

static int copy_item(esk_orders_item_t *dst, const avro_value_t *rec) {
  esk_orders_item_in_t in;
  if (get_item(rec, &in) || in.quantity < INT32_MIN || in.quantity > INT32_MAX) return -1;
  dst->quantity = (int32_t)in.quantity;
  dst->unit_price = in.unit_price;
  return copy_fixed(dst->product_id, sizeof(dst->product_id), in.product_id);
}

/* ----------------------------------------------------------- commands --- */

static int decode_command(void *self, const esk_schema_t *type, const avro_value_t *v,
                          esk_envelope_t *env, void *cmdp, esk_error_t *err) {
  (void)self;
  const char *name = esk_schema_type(type);
  esk_orders_command_t *c = cmdp;
  memset(c, 0, offsetof(esk_orders_command_t, u));
  for (int t = 1; t <= ESK_ORDERS_CMD_COUNT_; t++)
    if (!strcmp(name, esk_orders_command_names[t])) c->type = (esk_orders_command_type_t)t;
  if (!c->type) return esk_error_set(err, ESK_EPOISON, "a %s is not an orders command", name);
  env->command_id = get_str(v, "command_id");
  env->aggregate_id = get_str(v, "order_id");
  env->actor = get_str(v, "actor");
  env->correlation_id = get_str(v, "correlation_id");
  env->has_expected_version = 0;
  env->expected_version = 0;
  avro_value_t ev, branch, f;
  int disc = 0;
  if (avro_value_get_by_name(v, "expected_version", &ev, NULL) ||
      avro_value_get_discriminant(&ev, &disc))
    return esk_error_set(err, ESK_EPOISON, "%s: no expected_version union", name);
  if (disc == 1) {
    if (avro_value_get_current_branch(&ev, &branch) ||
        avro_value_get_long(&branch, &env->expected_version))
      return esk_error_set(err, ESK_EPOISON, "%s: bad expected_version", name);
    env->has_expected_version = 1;
  }
  int bad = 0;
  switch (c->type) {
  case ESK_ORDERS_CMD_CREATE: {
    c->u.create.customer_id = get_str(v, "customer_id");
    c->u.create.customer_email = get_str(v, "customer_email");
    c->u.create.currency = get_str(v, "currency");
    bad = avro_value_get_by_name(v, "shipping_address", &f, NULL);
    for (int i = 0; i < ESK_ORDERS_ADDR_FIELDS && !bad; i++)
      c->u.create.address[i] = get_str(&f, esk_orders_address_fields[i]);
    size_t n = 0;
    bad = bad || avro_value_get_by_name(v, "items", &f, NULL) || avro_value_get_size(&f, &n);
    c->u.create.n_items = n; /* validate() refuses more than fit */
    for (size_t i = 0; i < n && i < ESK_ORDERS_MAX_ITEMS && !bad; i++) {
      avro_value_t it;
      bad = avro_value_get_by_index(&f, i, &it, NULL) || get_item(&it, &c->u.create.items[i]);
    }
    break;
  }
  case ESK_ORDERS_CMD_ADD_ITEM:
    bad = avro_value_get_by_name(v, "item", &f, NULL) || get_item(&f, &c->u.add);
    break;
  case ESK_ORDERS_CMD_PROCESS_PAYMENT:
    c->u.pay.payment_id = get_str(v, "payment_id");
    c->u.pay.currency = get_str(v, "currency");
    c->u.pay.method = get_str(v, "method");
    bad = get_long(v, "amount", &c->u.pay.amount);
    break;
  case ESK_ORDERS_CMD_SHIP: c->u.ship.tracking_number = get_str(v, "tracking_number"); break;
  case ESK_ORDERS_CMD_DELIVER: break;
  case ESK_ORDERS_CMD_CANCEL: c->u.cancel.reason = get_str(v, "reason"); break;
  }
  if (bad) return esk_error_set(err, ESK_EPOISON, "%s: a field does not have its schema's shape", name);
  return ESK_OK;
}

/* ------------------------------------------------------------- events --- */

static int encode_event(void *self, esk_buf_t *out, const esk_schema_t **schema_out,
                        const void *event, const esk_event_meta_t *meta, esk_error_t *err) {
  orders_avro_t *a = self;
  const esk_orders_event_t *ev = event;
  if (ev->type < 1 || ev->type > ESK_ORDERS_EV_COUNT_)
    return esk_error_set(err, ESK_EINVAL, "orders: unknown event type %d", (int)ev->type);
  avro_value_t *v = &a->event_value[ev->type], m, f, it;
  int bad = avro_value_get_by_name(v, "meta", &m, NULL) ||
            set_str(&m, "event_id", meta->event_id) ||
            set_str(&m, "aggregate_type", ESK_ORDERS_AGGREGATE_TYPE) ||
            set_str(&m, "aggregate_id", ev->order_id) ||
            set_long(&m, "aggregate_version", ev->aggregate_version) ||
            set_long(&m, "occurred_at", meta->occurred_at_us) ||
            set_str(&m, "correlation_id", meta->correlation_id) ||
            set_str(&m, "causation_id", meta->causation_id) || set_str(&m, "actor", meta->actor);
  switch (ev->type) {
  case ESK_ORDERS_EV_CREATED:
    bad = bad || set_str(v, "customer_id", ev->u.created.customer_id) ||
          set_str(v, "customer_email", ev->u.created.customer_email) ||
          set_long(v, "total", ev->u.created.total) ||
          set_str(v, "currency", ev->u.created.currency) ||
          avro_value_get_by_name(v, "shipping_address", &f, NULL);
    for (int i = 0; i < ESK_ORDERS_ADDR_FIELDS && !bad; i++)
      bad = set_str(&f, esk_orders_address_fields[i], ev->u.created.address[i]);
    bad = bad || avro_value_get_by_name(v, "items", &f, NULL) || avro_value_reset(&f);
    for (size_t i = 0; i < ev->u.created.n_items && !bad; i++)
      bad = avro_value_append(&f, &it, NULL) || set_item(&it, &ev->u.created.items[i]);
    break;
  case ESK_ORDERS_EV_ITEM_ADDED:
    bad = bad || avro_value_get_by_name(v, "item", &f, NULL) || set_item(&f, &ev->u.added);
    break;
  case ESK_ORDERS_EV_PAID:
    bad = bad || set_str(v, "payment_id", ev->u.paid.payment_id) ||
          set_long(v, "amount", ev->u.paid.amount) || set_str(v, "currency", ev->u.paid.currency) ||
          set_str(v, "method", ev->u.paid.method);
    break;
  case ESK_ORDERS_EV_SHIPPED:
    bad = bad || set_str(v, "tracking_number", ev->u.shipped.tracking_number);
    break;
  case ESK_ORDERS_EV_DELIVERED: break;
  case ESK_ORDERS_EV_CANCELLED: bad = bad || set_str(v, "reason", ev->u.cancelled.reason); break;
  }
  if (bad)
    return esk_error_set(err, ESK_EINVAL, "orders: cannot fill a %s value: %s",
                         esk_orders_event_names[ev->type], avro_strerror());
  if (schema_out) *schema_out = a->event_schema[ev->type];
  return esk_codec_encode(a->codec, a->event_schema[ev->type], v, out, err);
}

static int decode_event(void *self, void *event, esk_event_ref_t *ref, const void *data,
                        size_t len, esk_error_t *err) {
  orders_avro_t *a = self;
  esk_orders_event_t *ev = event;
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL, m, f, it;
  int rc = esk_codec_decode(a->codec, data, len, 0, &rs, &v, err);
  if (rc) return rc;
  const char *type = esk_schema_type(rs);
  memset(ev, 0, offsetof(esk_orders_event_t, u));
  for (int t = 1; t <= ESK_ORDERS_EV_COUNT_; t++)
    if (!strcmp(type, esk_orders_event_names[t])) ev->type = (esk_orders_event_type_t)t;
  if (!ev->type) return esk_error_set(err, ESK_EPOISON, "a %s is not an orders event", type);
  int bad = avro_value_get_by_name(v, "meta", &m, NULL) ||
            copy_fixed(ev->order_id, sizeof(ev->order_id), get_str(&m, "aggregate_id")) ||
            get_long(&m, "aggregate_version", &ev->aggregate_version);
  size_t n = 0;
  switch (ev->type) {
  case ESK_ORDERS_EV_CREATED:
    bad = bad ||
          copy_fixed(ev->u.created.customer_id, sizeof(ev->u.created.customer_id),
                     get_str(v, "customer_id")) ||
          copy_fixed(ev->u.created.customer_email, sizeof(ev->u.created.customer_email),
                     get_str(v, "customer_email")) ||
          get_long(v, "total", &ev->u.created.total) ||
          copy_fixed(ev->u.created.currency, sizeof(ev->u.created.currency),
                     get_str(v, "currency")) ||
          avro_value_get_by_name(v, "shipping_address", &f, NULL);
    for (int i = 0; i < ESK_ORDERS_ADDR_FIELDS && !bad; i++)
      bad = copy_fixed(ev->u.created.address[i], sizeof(ev->u.created.address[i]),
                       get_str(&f, esk_orders_address_fields[i]));
    bad = bad || avro_value_get_by_name(v, "items", &f, NULL) || avro_value_get_size(&f, &n) ||
          n > ESK_ORDERS_MAX_ITEMS;
    ev->u.created.n_items = n;
    for (size_t i = 0; i < n && !bad; i++)
      bad = avro_value_get_by_index(&f, i, &it, NULL) || copy_item(&ev->u.created.items[i], &it);
    break;
  case ESK_ORDERS_EV_ITEM_ADDED:
    bad = bad || avro_value_get_by_name(v, "item", &f, NULL) || copy_item(&ev->u.added, &f);
    break;
  case ESK_ORDERS_EV_PAID:
    bad = bad ||
          copy_fixed(ev->u.paid.payment_id, sizeof(ev->u.paid.payment_id),
                     get_str(v, "payment_id")) ||
          get_long(v, "amount", &ev->u.paid.amount) ||
          copy_fixed(ev->u.paid.currency, sizeof(ev->u.paid.currency), get_str(v, "currency")) ||
          copy_fixed(ev->u.paid.method, sizeof(ev->u.paid.method), get_str(v, "method"));
    break;
  case ESK_ORDERS_EV_SHIPPED:
    bad = bad || copy_fixed(ev->u.shipped.tracking_number, sizeof(ev->u.shipped.tracking_number),
                            get_str(v, "tracking_number"));
    break;
  case ESK_ORDERS_EV_DELIVERED: break;
  case ESK_ORDERS_EV_CANCELLED:
    bad = bad || copy_fixed(ev->u.cancelled.reason, sizeof(ev->u.cancelled.reason),
                            get_str(v, "reason"));
    break;
  }
  if (bad)
    return esk_error_set(err, ESK_EPOISON,
                         "%s v%d: a field is missing or longer than the order allows", type,
                         esk_schema_version(rs));
  ref->aggregate_id = ev->order_id;
  ref->aggregate_version = ev->aggregate_version;
  return ESK_OK;
}

/* ------------------------------------------------------ the Decider --- */

static void init_state(void *state) { memset(state, 0, sizeof(esk_orders_state_t)); }

static int64_t version(const void *state) { return ((const esk_orders_state_t *)state)->version; }

static void validate(const void *cmd, const esk_envelope_t *env, esk_decision_t *out) {
  esk_orders_validate(cmd, env, out);
}

static int decide(const void *state, const void *cmd, const esk_envelope_t *env, void *events,
                  size_t *n_out, esk_decision_t *out, esk_error_t *err) {
  return esk_orders_decide(state, cmd, env, events, n_out, out, err);
}

static int evolve(void *next, const void *state, const void *event, esk_error_t *err) {
  return esk_orders_evolve(next, state, event, err);
}

static int snapshot_write(esk_buf_t *out, const void *state, esk_error_t *err) {
  return esk_orders_snapshot_write(out, state, err);
}

static int snapshot_read(void *state, const void *data, size_t len, esk_error_t *err) {
  return esk_orders_snapshot_read(state, data, len, err);
}

/* The order as JSON (esk_domain_t::state_json): every field of the state.
 * It holds no personal data: the customer's email and address are in
 * OrderCreated's payload only, never in the state. */
static int state_json(esk_buf_t *out, const void *state, esk_error_t *err) {
  const esk_orders_state_t *s = state;
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I}", "order_id", s->order_id,
                        "status", esk_orders_status_name(s->status), "customer_id",
                        s->customer_id, "currency", s->currency, "item_count",
                        (int)s->item_count, "total", (json_int_t)s->total, "version",
                        (json_int_t)s->version);
  char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  if (!text)
    return esk_error_set(err, ESK_EINVAL, "orders: order '%.64s' at version %lld cannot be "
                         "rendered as JSON (a field is not UTF-8)", s->order_id,
                         (long long)s->version);
  int rc = esk_buf_append(out, text, strlen(text), err);
  free(text);
  return rc;
}

static const esk_domain_t orders = {
    .abi = ESK_DOMAIN_ABI,
    .struct_size = sizeof(esk_domain_t),
    .name = "orders",
    .aggregate_type = ESK_ORDERS_AGGREGATE_TYPE,
    .snapshot_type = "OrderSnapshot",
    .aggregate_id_field = "order_id",
    .command_types = esk_orders_command_names + 1,
    .rules = esk_orders_rule_names,
    .n_rules = ESK_ORDERS_RULE_COUNT_,
    .command_size = sizeof(esk_orders_command_t),
    .event_size = sizeof(esk_orders_event_t),
    .state_size = sizeof(esk_orders_state_t),
    .max_events = 1,
    .snapshot_max = ESK_ORDERS_SNAPSHOT_MAX,
    .load_schemas = esk_orders_schemas_load,
    .register_upcasters = esk_orders_register_upcasters,
    .create = create,
    .destroy = destroy,
    .decode_command = decode_command,
    .init_state = init_state,
    .version = version,
    .validate = validate,
    .decide = decide,
    .evolve = evolve,
    .snapshot_write = snapshot_write,
    .snapshot_read = snapshot_read,
    .encode_event = encode_event,
    .decode_event = decode_event,
    .state_json = state_json,
};

const esk_domain_t *esk_orders_domain(void) { return &orders; }
