/* The bank aggregate's Avro mapping (see bank_avro.h). */
#include "bank/bank_avro.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"
#include "bank_decode.h"
#include "bank_event_bytes.h"

#define N_EVENT_TYPES 4

/* Field name -> index, by record schema and the name's address (the names are
 * literals): avro_value_get_by_name() hashes the name on every call, which
 * took ~8% of the producer's main thread. */
#define FIELD_CACHE 512
typedef struct fcache_s {
  avro_schema_t schema;
  const char *name;
  size_t index;
} fcache_t;

struct esk_bank_avro_s {
  fcache_t fc[FIELD_CACHE];
  esk_schema_set_t *set;
  esk_codec_t *codec;
  int borrowed; /* set and codec belong to the caller (esk_bank_avro_new_over) */
  const esk_schema_t *event_schema[N_EVENT_TYPES + 1];   /* by esk_bank_event_type_t */
  avro_value_t event_value[N_EVENT_TYPES + 1];
  const esk_schema_t *command_schema[N_EVENT_TYPES + 1]; /* by esk_bank_command_type_t */
  avro_value_t command_value[N_EVENT_TYPES + 1];
  /* the event type is written field by field (encode_direct()): its newest schema
   * gave the same bytes as the generic value for a probe event (check_direct()) */
  int direct[N_EVENT_TYPES + 1];
  /* commands read field by field (bank_decode.c), the types check_fastdec()
   * found equal to the codec's reading */
  esk_bank_fastdec_t fd;
  esk_bank_event_reader_t reader; /* where decoded events' fields sit */
  /* events read field by field (schemas/bank/bank_event_bytes.h), the
   * versions whose probes read the same as through the codec */
  esk_bank_event_bytes_t eb;
};

static int check_direct(esk_bank_avro_t *a, esk_error_t *err);
static int check_fastdec(esk_bank_avro_t *a, esk_error_t *err);

static const char *const command_names[N_EVENT_TYPES + 1] = {NULL, "OpenAccount", "DepositMoney",
                                                              "WithdrawMoney", "CloseAccount"};

/* The schemas and scratch values of every command and event type. */
static int load_types(esk_bank_avro_t *a, esk_error_t *err) {
  int rc;
  for (int t = 1; t <= N_EVENT_TYPES; t++) {
    const char *ev = esk_bank_event_type_name((esk_bank_event_type_t)t);
    a->event_schema[t] = esk_schema_set_latest(a->set, ev);
    a->command_schema[t] = esk_schema_set_latest(a->set, command_names[t]);
    if (!a->event_schema[t] || !a->command_schema[t])
      return esk_error_set(err, ESK_EINVAL, "bank avro: the contract lacks %s or %s", ev,
                           command_names[t]);
    if ((rc = esk_value_new(&a->event_value[t], a->event_schema[t], err))) return rc;
    if ((rc = esk_value_new(&a->command_value[t], a->command_schema[t], err))) return rc;
  }
  int rc2 = check_direct(a, err);
  if (!rc2) rc2 = check_fastdec(a, err);
  return rc2 ? rc2 : esk_bank_event_bytes_init(&a->eb, a->set, a->codec, err);
}

int esk_bank_avro_new(esk_bank_avro_t **out, esk_error_t *err) {
  esk_bank_avro_t *a = calloc(1, sizeof(*a));
  if (!a) return esk_error_set(err, ESK_ENOMEM, "bank avro: out of memory");
  int rc;
  if ((rc = esk_schema_set_new(&a->set, err)) || (rc = esk_bank_schemas_load(a->set, err)) ||
      (rc = esk_codec_new(&a->codec, a->set, NULL, err)) ||
      (rc = esk_bank_register_upcasters(a->codec, err)) || (rc = load_types(a, err)))
    goto cleanup;
  *out = a;
  return ESK_OK;
cleanup:
  esk_bank_avro_destroy(a);
  return rc;
}

int esk_bank_avro_new_over(esk_bank_avro_t **out, const esk_schema_set_t *set,
                           esk_codec_t *codec, esk_error_t *err) {
  esk_bank_avro_t *a = calloc(1, sizeof(*a));
  if (!a) return esk_error_set(err, ESK_ENOMEM, "bank avro: out of memory");
  a->borrowed = 1;
  a->set = (esk_schema_set_t *)set; /* never changed nor freed here */
  a->codec = codec;
  int rc = load_types(a, err);
  if (rc) {
    esk_bank_avro_destroy(a);
    return rc;
  }
  *out = a;
  return ESK_OK;
}

void esk_bank_avro_destroy(esk_bank_avro_t *a) {
  if (!a) return;
  for (int t = 1; t <= N_EVENT_TYPES; t++) {
    if (a->event_value[t].iface) avro_value_decref(&a->event_value[t]);
    if (a->command_value[t].iface) avro_value_decref(&a->command_value[t]);
  }
  esk_buf_free(&a->fd.str);
  esk_bank_event_reader_clear(&a->reader);
  esk_bank_event_bytes_free(&a->eb);
  if (!a->borrowed) {
    esk_codec_destroy(a->codec);
    esk_schema_set_destroy(a->set);
  }
  free(a);
}

const esk_schema_set_t *esk_bank_avro_schemas(const esk_bank_avro_t *a) { return a->set; }
esk_codec_t *esk_bank_avro_codec(esk_bank_avro_t *a) { return a->codec; }

/* ---------------------------------------------------------- field access --- */

static int field(esk_bank_avro_t *a, const avro_value_t *rec, const char *name,
                 avro_value_t *out) {
  avro_schema_t sc = avro_value_get_schema(rec);
  /* two-way sets, by a multiplicative hash of both pointers: the xor of their
   * low bits into one direct-mapped slot made 2 of a command's ~22 lookups miss
   * (callgrind), each a strcmp walk through the record's fields */
  uint64_t h = ((uint64_t)(uintptr_t)sc ^ ((uint64_t)(uintptr_t)name * 0x9E3779B97F4A7C15u)) *
               0xC2B2AE3D27D4EB4Fu;
  fcache_t *c = &a->fc[(h >> (64 - 8)) * 2];
  if (c->schema != sc || c->name != name) {
    if (c[1].schema == sc && c[1].name == name) {
      c++;
    } else {
      int i = avro_schema_record_field_get_index(sc, name);
      if (i < 0) return -1;
      c[1] = c[0]; /* the older entry of the set makes room */
      c->schema = sc;
      c->name = name;
      c->index = (size_t)i;
    }
  }
  return avro_value_get_by_index(rec, c->index, out, NULL);
}

static const char *get_str(esk_bank_avro_t *a, const avro_value_t *rec, const char *name) {
  avro_value_t f;
  const char *s = NULL;
  size_t n = 0;
  if (field(a, rec, name, &f) || avro_value_get_string(&f, &s, &n)) return NULL;
  /* whole: the codec refuses a string holding U+0000 (or invalid UTF-8) rather
   * than let avro-c and this C string cut it at the NUL */
  return s;
}

static int get_long(esk_bank_avro_t *a, const avro_value_t *rec, const char *name,
                    int64_t *out) {
  avro_value_t f;
  return field(a, rec, name, &f) || avro_value_get_long(&f, out);
}

static int get_money(esk_bank_avro_t *a, const avro_value_t *rec, const char *name,
                     esk_bank_money_in_t *m) {
  avro_value_t f;
  if (field(a, rec, name, &f)) return -1;
  m->currency = get_str(a, &f, "currency");
  return get_long(a, &f, "minor_units", &m->minor_units) || !m->currency;
}

static int set_str(esk_bank_avro_t *a, avro_value_t *rec, const char *name, const char *v) {
  avro_value_t f;
  return field(a, rec, name, &f) || avro_value_set_string(&f, v ? v : "");
}

static int set_long(esk_bank_avro_t *a, avro_value_t *rec, const char *name, int64_t v) {
  avro_value_t f;
  return field(a, rec, name, &f) || avro_value_set_long(&f, v);
}

static int set_money(esk_bank_avro_t *a, avro_value_t *rec, const char *name, int64_t units,
                     const char *cur) {
  avro_value_t f;
  return field(a, rec, name, &f) || set_long(a, &f, "minor_units", units) ||
         set_str(a, &f, "currency", cur);
}

/* -------------------------------------------------------------- commands --- */

int esk_bank_avro_decode_command_fast(esk_bank_avro_t *a, esk_bank_command_t *cmd,
                                      const void *data, size_t len) {
  return esk_bank_fastdec_read(&a->fd, cmd, data, len);
}

/* A probe command of type @p t whose every field differs from the others. */
static void probe_command(esk_bank_command_t *c, int t) {
  *c = (esk_bank_command_t){.type = (esk_bank_command_type_t)t, .command_id = "cid-1",
                            .account_id = "acc-2", .has_expected_version = true,
                            .expected_version = 42, .actor = "actor-3",
                            .correlation_id = "corr-4"};
  if (t == ESK_BANK_CMD_OPEN_ACCOUNT) {
    c->u.open.owner_id = "owner-5";
    c->u.open.initial_deposit = (esk_bank_money_in_t){12345, "SEK"};
  } else if (t == ESK_BANK_CMD_CLOSE_ACCOUNT) {
    c->u.close.reason = "why-6";
  } else {
    c->u.deposit.amount = (esk_bank_money_in_t){-678, "NOK"};
    if (t == ESK_BANK_CMD_DEPOSIT_MONEY) c->u.deposit.description = "desc-7";
  }
}

/* Turns on the field-by-field reading of each command type whose probe it
 * reads as the codec does (the probe written by the generic path): a contract
 * whose newest command schemas differ keeps the codec's path. */
static int check_fastdec(esk_bank_avro_t *a, esk_error_t *err) {
  const esk_codec_limits_t *lim = esk_codec_get_limits(a->codec);
  a->fd.max_message = lim->max_message_bytes;
  a->fd.max_string = lim->max_string_bytes;
  esk_buf_init(&a->fd.str, lim->max_message_bytes);
  esk_buf_t b;
  esk_buf_init(&b, 0);
  int rc = ESK_OK;
  for (int t = 1; t <= N_EVENT_TYPES && !rc; t++) {
    esk_bank_command_t probe, slow, fast;
    probe_command(&probe, t);
    esk_buf_reset(&b);
    const esk_schema_t *rs = NULL;
    avro_value_t *v = NULL;
    if ((rc = esk_bank_avro_encode_command(a, &b, &probe, err)) ||
        (rc = esk_codec_decode(a->codec, b.data, b.len, 0, &rs, &v, err)) ||
        (rc = esk_bank_avro_command_from_value(a, &slow, rs, v, err)))
      break;
    a->fd.fp[t] = esk_schema_fingerprint(a->command_schema[t]);
    if (esk_bank_fastdec_read(&a->fd, &fast, b.data, b.len) || rs != a->command_schema[t] ||
        !esk_bank_command_equal(&slow, &fast))
      a->fd.fp[t] = 0;
  }
  esk_buf_free(&b);
  return rc;
}

int esk_bank_avro_decode_command(esk_bank_avro_t *a, esk_bank_command_t *cmd, const void *data,
                                 size_t len, esk_error_t *err) {
  if (esk_bank_fastdec_read(&a->fd, cmd, data, len) == ESK_OK) return ESK_OK;
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  int rc = esk_codec_decode(a->codec, data, len, 0, &rs, &v, err);
  if (rc) return rc;
  return esk_bank_avro_command_from_value(a, cmd, rs, v, err);
}

int esk_bank_avro_command_from_value(esk_bank_avro_t *a, esk_bank_command_t *cmd,
                                     const esk_schema_t *rs, const avro_value_t *v,
                                     esk_error_t *err) {
  const char *type = esk_schema_type(rs);
  esk_bank_command_t c;
  memset(&c, 0, sizeof(c));
  for (int t = 1; t <= N_EVENT_TYPES; t++)
    if (!strcmp(type, command_names[t])) c.type = (esk_bank_command_type_t)t;
  if (!c.type)
    return esk_error_set(err, ESK_EPOISON, "a %s is not a bank command", type);
  c.command_id = get_str(a, v, "command_id");
  c.account_id = get_str(a, v, "account_id");
  c.actor = get_str(a, v, "actor");
  c.correlation_id = get_str(a, v, "correlation_id");
  avro_value_t ev, branch;
  int disc = 0;
  if (field(a, v, "expected_version", &ev) ||
      avro_value_get_discriminant(&ev, &disc))
    return esk_error_set(err, ESK_EPOISON, "%s: no expected_version union", type);
  if (disc == 1) {
    if (avro_value_get_current_branch(&ev, &branch) ||
        avro_value_get_long(&branch, &c.expected_version))
      return esk_error_set(err, ESK_EPOISON, "%s: bad expected_version", type);
    c.has_expected_version = true;
  }
  int bad = 0;
  switch (c.type) {
  case ESK_BANK_CMD_OPEN_ACCOUNT:
    c.u.open.owner_id = get_str(a, v, "owner_id");
    bad = get_money(a, v, "initial_deposit", &c.u.open.initial_deposit);
    break;
  case ESK_BANK_CMD_DEPOSIT_MONEY:
    bad = get_money(a, v, "amount", &c.u.deposit.amount);
    c.u.deposit.description = get_str(a, v, "description");
    break;
  case ESK_BANK_CMD_WITHDRAW_MONEY:
    bad = get_money(a, v, "amount", &c.u.withdraw.amount);
    break;
  case ESK_BANK_CMD_CLOSE_ACCOUNT:
    c.u.close.reason = get_str(a, v, "reason");
    break;
  }
  if (bad) return esk_error_set(err, ESK_EPOISON, "%s: the amount is not a Money record", type);
  *cmd = c;
  return ESK_OK;
}

int esk_bank_avro_refused_string(esk_bank_avro_t *a, const esk_error_t *why, const void *data,
                                 size_t len, const char *field, const char **out,
                                 size_t *out_len) {
  if (!esk_codec_refusal(a->codec, why)) return ESK_ENOTFOUND;
  return esk_codec_raw_string(a->codec, data, len, field, out, out_len, NULL);
}

int esk_bank_avro_encode_command(esk_bank_avro_t *a, esk_buf_t *out,
                                 const esk_bank_command_t *cmd, esk_error_t *err) {
  if (cmd->type < 1 || cmd->type > N_EVENT_TYPES)
    return esk_error_set(err, ESK_EINVAL, "bank avro: unknown command type %d", (int)cmd->type);
  avro_value_t *v = &a->command_value[cmd->type];
  avro_value_t ev, branch;
  int bad = set_str(a, v, "command_id", cmd->command_id) ||
            set_str(a, v, "account_id", cmd->account_id) || set_str(a, v, "actor", cmd->actor) ||
            set_str(a, v, "correlation_id", cmd->correlation_id) ||
            field(a, v, "expected_version", &ev) ||
            avro_value_set_branch(&ev, cmd->has_expected_version ? 1 : 0, &branch) ||
            (cmd->has_expected_version ? avro_value_set_long(&branch, cmd->expected_version)
                                       : avro_value_set_null(&branch));
  switch (cmd->type) {
  case ESK_BANK_CMD_OPEN_ACCOUNT:
    bad = bad || set_str(a, v, "owner_id", cmd->u.open.owner_id) ||
          set_money(a, v, "initial_deposit", cmd->u.open.initial_deposit.minor_units,
                    cmd->u.open.initial_deposit.currency);
    break;
  case ESK_BANK_CMD_DEPOSIT_MONEY:
    bad = bad || set_str(a, v, "description", cmd->u.deposit.description) ||
          set_money(a, v, "amount", cmd->u.deposit.amount.minor_units,
                    cmd->u.deposit.amount.currency);
    break;
  case ESK_BANK_CMD_WITHDRAW_MONEY:
    bad = bad || set_money(a, v, "amount", cmd->u.withdraw.amount.minor_units,
                           cmd->u.withdraw.amount.currency);
    break;
  case ESK_BANK_CMD_CLOSE_ACCOUNT:
    bad = bad || set_str(a, v, "reason", cmd->u.close.reason);
    break;
  }
  if (bad)
    return esk_error_set(err, ESK_EINVAL, "bank avro: cannot fill a %s value",
                         command_names[cmd->type]);
  return esk_codec_encode(a->codec, a->command_schema[cmd->type], v, out, err);
}

/* ---------------------------------------------------------------- events --- */

/* One field of an event written by encode_direct(): a string (s), else a long (v). */
typedef struct item_s {
  const char *s;
  int64_t v;
} item_t;

/* The fields of @p ev in the order of the bank's newest event schemas
 * (EventMeta, then the event's own); returns how many. */
static size_t event_items(item_t *it, const esk_bank_event_t *ev, const esk_bank_event_meta_t *m) {
#define S(x) (item_t){(x) ? (x) : "", 0} /* NULL as "", as set_str() */
#define L(x) (item_t){NULL, (x)}
  size_t n = 0;
  it[n++] = S(m->event_id);
  it[n++] = S(ESK_BANK_AGGREGATE_TYPE);
  it[n++] = S(ev->account_id);
  it[n++] = L(ev->aggregate_version);
  it[n++] = L(m->occurred_at_us);
  it[n++] = S(m->correlation_id);
  it[n++] = S(m->causation_id);
  it[n++] = S(m->actor);
  const esk_bank_money_t *mo = esk_bank_event_money(ev);
  if (ev->type == ESK_BANK_EV_ACCOUNT_OPENED) it[n++] = S(ev->u.opened.owner_id);
  if (mo) {
    it[n++] = L(mo->minor_units);
    it[n++] = S(mo->currency);
  }
  if (ev->type == ESK_BANK_EV_MONEY_DEPOSITED) it[n++] = S(ev->u.deposited.description);
  if (ev->type == ESK_BANK_EV_ACCOUNT_CLOSED) it[n++] = S(ev->u.closed.reason);
  return n;
#undef S
#undef L
}

/* An Avro long (zig-zag varint) at @p o; returns the end. */
static uint8_t *put_long(uint8_t *o, int64_t v) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  while (z > 0x7f) {
    *o++ = (uint8_t)((z & 0x7f) | 0x80);
    z >>= 7;
  }
  *o++ = (uint8_t)z;
  return o;
}

/* Single-object encoding of @p ev, written field by field without a generic
 * value (filling and walking one cost a third of the producer's CPU per
 * command): the header as esk_codec_encode() frames it, then the fields, into
 * one reservation of @p out. */
static int encode_direct(esk_bank_avro_t *a, esk_buf_t *out, const esk_bank_event_t *ev,
                         const esk_bank_event_meta_t *meta, esk_error_t *err) {
  item_t it[16];
  size_t len[16], n = event_items(it, ev, meta), need = 10;
  for (size_t i = 0; i < n; i++) {
    len[i] = it[i].s ? strlen(it[i].s) : 0;
    need += 10 + len[i];
  }
  int rc = esk_buf_reserve(out, need, err);
  if (rc) return rc;
  uint8_t *o = out->data + out->len;
  uint64_t fp = esk_schema_fingerprint(a->event_schema[ev->type]);
  *o++ = 0xC3;
  *o++ = 0x01;
  for (int i = 0; i < 8; i++) *o++ = (uint8_t)(fp >> (8 * i));
  for (size_t i = 0; i < n; i++) {
    o = put_long(o, it[i].s ? (int64_t)len[i] : it[i].v);
    if (it[i].s) memcpy(o, it[i].s, len[i]);
    o += len[i];
  }
  out->len = (size_t)(o - out->data);
  return ESK_OK;
}

static int encode_generic(esk_bank_avro_t *a, esk_buf_t *out, const esk_bank_event_t *ev,
                          const esk_bank_event_meta_t *meta, esk_error_t *err);

int esk_bank_avro_encode_event(esk_bank_avro_t *a, esk_buf_t *out,
                               const esk_schema_t **schema_out, const esk_bank_event_t *ev,
                               const esk_bank_event_meta_t *meta, esk_error_t *err) {
  if (ev->type < 1 || ev->type > N_EVENT_TYPES)
    return esk_error_set(err, ESK_EINVAL, "bank avro: unknown event type %d", (int)ev->type);
  if (schema_out) *schema_out = a->event_schema[ev->type];
  if (a->direct[ev->type]) return encode_direct(a, out, ev, meta, err);
  return encode_generic(a, out, ev, meta, err);
}

/* A probe event of type @p t whose every field differs from the others. */
static void probe_event(esk_bank_event_t *ev, esk_bank_event_meta_t *m, int t) {
  memset(ev, 0, sizeof(*ev));
  ev->type = (esk_bank_event_type_t)t;
  ev->aggregate_version = 3;
  snprintf(ev->account_id, sizeof(ev->account_id), "acc");
  *m = (esk_bank_event_meta_t){"0f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b", 1234567, "corr-id",
                               "cause-of-it", "an actor"};
  switch (ev->type) {
  case ESK_BANK_EV_ACCOUNT_OPENED:
    snprintf(ev->u.opened.owner_id, sizeof(ev->u.opened.owner_id), "owner/5");
    ev->u.opened.initial_deposit = (esk_bank_money_t){77, "SEK"};
    break;
  case ESK_BANK_EV_MONEY_DEPOSITED:
    ev->u.deposited.amount = (esk_bank_money_t){-91, "NOK"};
    snprintf(ev->u.deposited.description, sizeof(ev->u.deposited.description), "gift 3");
    break;
  case ESK_BANK_EV_MONEY_WITHDRAWN:
    ev->u.withdrawn.amount = (esk_bank_money_t){65, "DKK"};
    break;
  default:
    snprintf(ev->u.closed.reason, sizeof(ev->u.closed.reason), "moved abroad");
  }
}

/* Turns on encode_direct() for each event type whose probe it encodes to the
 * very bytes of the generic path: a contract whose newest schemas differ
 * (esk_bank_avro_new_over() with other versions) keeps the generic path. */
static int check_direct(esk_bank_avro_t *a, esk_error_t *err) {
  esk_buf_t g, d;
  esk_buf_init(&g, 0);
  esk_buf_init(&d, 0);
  int rc = ESK_OK;
  for (int t = 1; t <= N_EVENT_TYPES && !rc; t++) {
    esk_bank_event_t ev;
    esk_bank_event_meta_t m;
    probe_event(&ev, &m, t);
    esk_buf_reset(&g);
    esk_buf_reset(&d);
    if ((rc = encode_generic(a, &g, &ev, &m, err))) break;
    a->direct[t] = !encode_direct(a, &d, &ev, &m, err) && d.len == g.len &&
                   !memcmp(d.data, g.data, g.len);
  }
  esk_buf_free(&g);
  esk_buf_free(&d);
  return rc;
}

/* The event through the type's generic value and esk_codec_encode(). */
static int encode_generic(esk_bank_avro_t *a, esk_buf_t *out, const esk_bank_event_t *ev,
                          const esk_bank_event_meta_t *meta, esk_error_t *err) {
  avro_value_t *v = &a->event_value[ev->type];
  avro_value_t m;
  int bad = field(a, v, "meta", &m) ||
            set_str(a, &m, "event_id", meta->event_id) ||
            set_str(a, &m, "aggregate_type", ESK_BANK_AGGREGATE_TYPE) ||
            set_str(a, &m, "aggregate_id", ev->account_id) ||
            set_long(a, &m, "aggregate_version", ev->aggregate_version) ||
            set_long(a, &m, "occurred_at", meta->occurred_at_us) ||
            set_str(a, &m, "correlation_id", meta->correlation_id) ||
            set_str(a, &m, "causation_id", meta->causation_id) || set_str(a, &m, "actor", meta->actor);
  switch (ev->type) {
  case ESK_BANK_EV_ACCOUNT_OPENED:
    bad = bad || set_str(a, v, "owner_id", ev->u.opened.owner_id) ||
          set_money(a, v, "initial_deposit", ev->u.opened.initial_deposit.minor_units,
                    ev->u.opened.initial_deposit.currency);
    break;
  case ESK_BANK_EV_MONEY_DEPOSITED: /* v3: amount is a Money */
    bad = bad ||
          set_money(a, v, "amount", ev->u.deposited.amount.minor_units,
                    ev->u.deposited.amount.currency) ||
          set_str(a, v, "description", ev->u.deposited.description);
    break;
  case ESK_BANK_EV_MONEY_WITHDRAWN: /* v2: amount and currency */
    bad = bad || set_long(a, v, "amount", ev->u.withdrawn.amount.minor_units) ||
          set_str(a, v, "currency", ev->u.withdrawn.amount.currency);
    break;
  case ESK_BANK_EV_ACCOUNT_CLOSED:
    bad = bad || set_str(a, v, "reason", ev->u.closed.reason);
    break;
  }
  if (bad)
    return esk_error_set(err, ESK_EINVAL,
                         "bank avro: the %s schema does not have the fields the mapping writes",
                         esk_bank_event_type_name(ev->type));
  return esk_codec_encode(a->codec, a->event_schema[ev->type], v, out, err);
}

int esk_bank_avro_decode_event(esk_bank_avro_t *a, esk_bank_event_t *ev,
                               const char **causation_out, const void *data, size_t len,
                               esk_error_t *err) {
  esk_bank_event_read_meta_t meta;
  if (esk_bank_event_bytes_read(&a->eb, data, len, ev, &meta) == ESK_OK) {
    if (causation_out) *causation_out = meta.causation_id;
    return ESK_OK;
  }
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  int rc = esk_codec_decode(a->codec, data, len, 0, &rs, &v, err);
  if (rc) return rc;
  /* the contract's one mapping, as the read side's (bank_contract.h) */
  esk_error_t why = {0};
  if ((rc = esk_bank_event_from_value(ev, &a->reader, esk_schema_type(rs), v, &why)))
    return esk_error_set(err, rc, "%s v%d: %.400s", esk_schema_type(rs), esk_schema_version(rs),
                         why.msg);
  avro_value_t m;
  if (causation_out) *causation_out = field(a, v, "meta", &m) ? NULL : get_str(a, &m, "causation_id");
  return ESK_OK;
}
