/* The bank's events read field by field (bank_event_bytes.h). */
#include "bank_event_bytes.h"

#include <stdio.h>
#include <string.h>

#include "bank_contract.h"
#include "esk/avro_bin.h"

/* The schema versions it reads, each with a probe: the fields after `meta`
 * as JSON, every value unlike the defaults. */
enum { OPENED_1, DEPOSITED_1, DEPOSITED_2, DEPOSITED_3, WITHDRAWN_1, WITHDRAWN_2, CLOSED_1 };
typedef struct layout_s {
  esk_bank_event_type_t type;
  int version;
  const char *probe;
} layout_t;
static const layout_t layouts[ESK_BANK_EVENT_LAYOUTS] = {
    [OPENED_1] = {ESK_BANK_EV_ACCOUNT_OPENED, 1,
                  "\"owner_id\":\"owner-5\","
                  "\"initial_deposit\":{\"minor_units\":12345,\"currency\":\"SEK\"}"},
    [DEPOSITED_1] = {ESK_BANK_EV_MONEY_DEPOSITED, 1, "\"amount\":678"},
    [DEPOSITED_2] = {ESK_BANK_EV_MONEY_DEPOSITED, 2,
                     "\"amount\":679,\"currency\":\"NOK\",\"description\":\"desc-7\""},
    [DEPOSITED_3] = {ESK_BANK_EV_MONEY_DEPOSITED, 3,
                     "\"amount\":{\"minor_units\":680,\"currency\":\"ISK\"},"
                     "\"description\":\"desc-8\""},
    [WITHDRAWN_1] = {ESK_BANK_EV_MONEY_WITHDRAWN, 1, "\"amount\":91"},
    [WITHDRAWN_2] = {ESK_BANK_EV_MONEY_WITHDRAWN, 2, "\"amount\":92,\"currency\":\"DKK\""},
    [CLOSED_1] = {ESK_BANK_EV_ACCOUNT_CLOSED, 1, "\"reason\":\"why-6\""},
};

#define PROBE_META                                                                         \
  "{\"event_id\":\"00000000-0000-4000-8000-000000000001\",\"aggregate_type\":\"account\"," \
  "\"aggregate_id\":\"acc-2\",\"aggregate_version\":42,\"occurred_at\":1767225600123456,"  \
  "\"correlation_id\":\"corr-4\",\"causation_id\":\"cid-1\",\"actor\":\"actor-3\"}"

/* An amount: the generic path calls a negative one poison. */
static int64_t rd_amount(esk_avro_fast_t *r) {
  int64_t v = esk_avro_fast_long(r);
  if (v < 0) r->ok = 0;
  return v;
}

static void rd_money(esk_avro_fast_t *r, esk_bank_money_t *m) {
  m->minor_units = rd_amount(r);
  esk_avro_fast_copy(r, m->currency, sizeof(m->currency));
}

/* esk.bank.EventMeta, in its order. */
static void rd_meta(esk_avro_fast_t *r, esk_bank_event_t *e, esk_bank_event_read_meta_t *m) {
  m->event_id = esk_avro_fast_str(r);
  m->aggregate_type = esk_avro_fast_str(r);
  esk_avro_fast_copy(r, e->account_id, sizeof(e->account_id));
  e->aggregate_version = esk_avro_fast_long(r);
  m->occurred_at_us = esk_avro_fast_long(r);
  m->correlation_id = esk_avro_fast_str(r);
  m->causation_id = esk_avro_fast_str(r);
  m->actor = esk_avro_fast_str(r);
  if (e->aggregate_version < 1) r->ok = 0;
}

/* The fields after meta, as resolution (with the newer versions' defaults)
 * and the upcasters make them at the newest version. */
static void rd_body(esk_avro_fast_t *r, int k, esk_bank_event_t *e) {
  esk_bank_money_t *moved = &e->u.deposited.amount; /* withdrawn's too */
  switch (k) {
  case OPENED_1:
    esk_avro_fast_copy(r, e->u.opened.owner_id, sizeof(e->u.opened.owner_id));
    rd_money(r, &e->u.opened.initial_deposit);
    break;
  case DEPOSITED_1:
  case WITHDRAWN_1: /* v2's currency defaults to USD */
    moved->minor_units = rd_amount(r);
    memcpy(moved->currency, "USD", 4);
    break;
  case DEPOSITED_2:
  case WITHDRAWN_2:
    moved->minor_units = rd_amount(r);
    esk_avro_fast_copy(r, moved->currency, sizeof(moved->currency));
    if (k == DEPOSITED_2)
      esk_avro_fast_copy(r, e->u.deposited.description, sizeof(e->u.deposited.description));
    break;
  case DEPOSITED_3:
    rd_money(r, moved);
    esk_avro_fast_copy(r, e->u.deposited.description, sizeof(e->u.deposited.description));
    break;
  case CLOSED_1: esk_avro_fast_copy(r, e->u.closed.reason, sizeof(e->u.closed.reason)); break;
  }
}

/* The layout whose writer fingerprint the header names and is on, or -1. */
static int layout_of(const esk_bank_event_bytes_t *r, const void *data, size_t len) {
  uint64_t fp = 0;
  if (esk_codec_peek(data, len, &fp, NULL)) return -1;
  for (int k = 0; k < ESK_BANK_EVENT_LAYOUTS; k++)
    if (r->fp[k] && r->fp[k] == fp) return k;
  return -1;
}

int esk_bank_event_bytes_read(esk_bank_event_bytes_t *r, const void *data, size_t len,
                              esk_bank_event_t *ev, esk_bank_event_read_meta_t *meta) {
  int k = data && len <= r->max_message ? layout_of(r, data, len) : -1;
  if (k < 0) return ESK_ENOTFOUND;
  esk_avro_fast_t rd;
  if (esk_avro_fast_start(&rd, data, len, 10, &r->str, r->max_string)) return ESK_ENOTFOUND;
  memset(ev, 0, sizeof(*ev));
  ev->type = layouts[k].type;
  rd_meta(&rd, ev, meta);
  rd_body(&rd, k, ev);
  if (!rd.ok || rd.in.p != rd.in.end) return ESK_ENOTFOUND;
  meta->type = esk_bank_event_type_name(ev->type);
  meta->schema_version = layouts[k].version;
  meta->value_version = esk_bank_event_mapped_version(ev->type);
  return ESK_OK;
}

int esk_bank_event_bytes_agree(const esk_bank_event_t *ev, const esk_bank_event_read_meta_t *m,
                               const esk_schema_t *rs, const avro_value_t *v) {
  static const char *const names[] = {"event_id", "aggregate_type", "correlation_id",
                                      "causation_id", "actor"};
  const char *const mine[] = {m->event_id, m->aggregate_type, m->correlation_id,
                              m->causation_id, m->actor};
  esk_bank_event_t slow;
  avro_value_t meta;
  int64_t at = 0;
  const char *s = NULL;
  if (esk_bank_event_from_value(&slow, NULL, esk_schema_type(rs), v, NULL) ||
      memcmp(&slow, ev, sizeof(slow)) || strcmp(esk_schema_type(rs), m->type) ||
      esk_schema_version(rs) != m->value_version || esk_value_field(v, "meta", &meta, NULL) ||
      esk_value_field_long(&meta, "occurred_at", &at, NULL) || at != m->occurred_at_us)
    return 0;
  for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
    if (esk_value_field_str(&meta, names[i], &s, NULL) || strcmp(s, mine[i])) return 0;
  return 1;
}

/* Turns layout @p k on (fp[k]) when its probe, written in @p w, reads the
 * same field by field as through @p codec and the contract's mapping. */
static void check_layout(esk_bank_event_bytes_t *r, esk_codec_t *codec, const esk_schema_t *w,
                         const esk_buf_t *b, int k) {
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  esk_bank_event_t fast;
  esk_bank_event_read_meta_t m;
  if (esk_codec_decode(codec, b->data, b->len, 0, &rs, &v, NULL)) return;
  r->fp[k] = esk_schema_fingerprint(w);
  if (esk_bank_event_bytes_read(r, b->data, b->len, &fast, &m) ||
      m.schema_version != esk_schema_version(w) || !esk_bank_event_bytes_agree(&fast, &m, rs, v))
    r->fp[k] = 0;
}

/* Layout @p k's probe, written by the codec in its schema in @p set, if the
 * set has it and the type's newest version is the one the mapping reads. */
static int probe_layout(esk_bank_event_bytes_t *r, const esk_schema_set_t *set,
                        esk_codec_t *codec, int k, esk_error_t *err) {
  const layout_t *l = &layouts[k];
  const char *name = esk_bank_event_type_name(l->type);
  const esk_schema_t *w = esk_schema_set_get(set, name, l->version);
  const esk_schema_t *latest = esk_schema_set_latest(set, name);
  if (!w || !latest || esk_schema_version(latest) != esk_bank_event_mapped_version(l->type)) return ESK_OK;
  char json[512];
  snprintf(json, sizeof(json), "{\"meta\":%s,%s}", PROBE_META, l->probe);
  avro_value_t v = {0};
  esk_buf_t b;
  esk_buf_init(&b, 0);
  esk_error_t why = {0};
  int rc = esk_value_new(&v, w, &why);
  if (rc == ESK_OK && esk_value_from_json(&v, w, json, &why) == ESK_OK &&
      esk_codec_encode(codec, w, &v, &b, &why) == ESK_OK)
    check_layout(r, codec, w, &b, k);
  if (v.iface) avro_value_decref(&v);
  esk_buf_free(&b);
  /* a probe the schema does not take leaves its layout off; memory is an error */
  return rc == ESK_ENOMEM || why.code == ESK_ENOMEM ? esk_error_set(err, ESK_ENOMEM, "%s", why.msg)
                                                    : ESK_OK;
}

int esk_bank_event_bytes_init(esk_bank_event_bytes_t *r, const esk_schema_set_t *set,
                              esk_codec_t *codec, esk_error_t *err) {
  memset(r, 0, sizeof(*r));
  const esk_codec_limits_t *lim = esk_codec_get_limits(codec);
  r->max_message = lim->max_message_bytes;
  r->max_string = lim->max_string_bytes;
  esk_buf_init(&r->str, r->max_message);
  for (int k = 0; k < ESK_BANK_EVENT_LAYOUTS; k++) {
    int rc = probe_layout(r, set, codec, k, err);
    if (rc) {
      esk_bank_event_bytes_free(r);
      return rc;
    }
  }
  return ESK_OK;
}

void esk_bank_event_bytes_keep(esk_bank_event_bytes_t *r,
                               uint64_t (*fingerprint)(const void *ctx, const char *type,
                                                       int version),
                               int (*latest)(const void *ctx, const char *type), const void *ctx) {
  for (int k = 0; k < ESK_BANK_EVENT_LAYOUTS; k++) {
    const char *name = esk_bank_event_type_name(layouts[k].type);
    if (r->fp[k] && (fingerprint(ctx, name, layouts[k].version) != r->fp[k] ||
                     latest(ctx, name) != esk_bank_event_mapped_version(layouts[k].type)))
      r->fp[k] = 0;
  }
}

void esk_bank_event_bytes_free(esk_bank_event_bytes_t *r) {
  if (!r) return;
  esk_buf_free(&r->str);
  memset(r->fp, 0, sizeof(r->fp));
}

int esk_bank_event_bytes_count(const esk_bank_event_bytes_t *r) {
  int n = 0;
  for (int k = 0; k < ESK_BANK_EVENT_LAYOUTS; k++) n += r->fp[k] != 0;
  return n;
}
