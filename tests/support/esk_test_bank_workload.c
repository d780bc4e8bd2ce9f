/* Test and bench support: the bank workload generator (a reproducible list
 * of events over accounts, from a seed) and its single-object encoding. */
#include "esk_test_bank.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"
#include "esk/codec.h"
#include "esk_test_bank_internal.h"

#define BASE_US INT64_C(1767225600000000) /* 2026-01-01T00:00:00Z */

typedef struct acct_s {
  int64_t balance;
  int32_t version;
  uint8_t closed;
} acct_t;

const char *esk_test_bank_kind_type(int kind) {
  static const char *t[] = {"", "AccountOpened", "MoneyDeposited", "MoneyWithdrawn",
                            "AccountClosed"};
  return t[kind];
}

static uint64_t next_rand(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

const char *esk_test_bank_account_id(int i, char *buf, size_t size) {
  snprintf(buf, size, "acct-%d", i);
  return buf;
}

const char *esk_test_bank_currency_of(int account) { return account % 5 == 0 ? "EUR" : "USD"; }

void esk_test_bank_event_id(const esk_test_bank_event_t *e, char *buf) {
  snprintf(buf, 37, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64,
           e->id_hi >> 32, (e->id_hi >> 16) & 0xffff, e->id_hi & 0xffff, e->id_lo >> 48,
           e->id_lo & UINT64_C(0xffffffffffff));
}

/* Descriptions include characters COPY must escape, and some that are not
 * ASCII (which the bank's field-by-field reader leaves to the codec). */
void esk_test_bank_description(size_t i, char *buf, size_t size) {
  if (i % 7 == 3) snprintf(buf, size, "tab\there back\\slash\nnew line \"q\" #%zu", i);
  else if (i % 11 == 5) snprintf(buf, size, "caf\xc3\xa9 #%zu", i);
  else snprintf(buf, size, "deposit #%zu", i);
}

size_t esk_test_bank_count(const esk_test_bank_t *b) { return b->n; }

int esk_test_bank_plain(const esk_test_bank_t *b, size_t i) {
  char d[128];
  const esk_test_bank_event_t *e = &b->ev[i];
  if (e->kind != ESK_BANK_EV_MONEY_DEPOSITED || e->writer_version < 2) return 1;
  esk_test_bank_description(i, d, sizeof(d));
  for (const char *p = d; *p; p++)
    if ((unsigned char)*p > 0x7f) return 0;
  return 1;
}
const esk_test_bank_event_t *esk_test_bank_event(const esk_test_bank_t *b, size_t i) {
  return &b->ev[i];
}
void esk_test_bank_skip(esk_test_bank_t *b, size_t i) { b->skipped[i] = 1; }

int esk_test_bank_new(esk_test_bank_t **out, unsigned seed, int n_accounts, size_t n_events,
                      esk_error_t *err) {
  int rc;
  esk_test_bank_t *b = calloc(1, sizeof(*b));
  acct_t *acc = calloc((size_t)n_accounts, sizeof(*acc));
  if (!b || !acc) {
    free(b);
    free(acc);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  b->n_accounts = n_accounts;
  b->ev = calloc(n_events ? n_events : 1, sizeof(*b->ev));
  b->skipped = calloc(n_events ? n_events : 1, 1);
  if (!b->ev || !b->skipped) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory for %zu events", n_events);
    goto fail;
  }
  if ((rc = esk_schema_set_new(&b->set, err)) || (rc = esk_bank_schemas_load(b->set, err)) ||
      (rc = esk_codec_new(&b->codec, b->set, NULL, err)))
    goto fail;
  for (int k = 1; k < ESK_TEST_BANK_N_KINDS; k++)
    for (int v = 1; v < ESK_TEST_BANK_N_VERS; v++) {
      const esk_schema_t *s = esk_schema_set_get(b->set, esk_test_bank_kind_type(k), v);
      if (!s) continue;
      if ((rc = esk_value_new(&b->values[k][v], s, err))) goto fail;
      b->schemas[k][v] = s;
    }
  uint64_t rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)seed * 0x100000001b3ULL) ^ 1;
  int64_t step = n_events ? (INT64_C(86400000000) * 30) / (int64_t)n_events : 1;
  if (step < 1) step = 1;
  int closes = 0;
  for (size_t i = 0; i < n_events; i++) {
    esk_test_bank_event_t *e = &b->ev[i];
    int a = (int)(next_rand(&rng) % (uint64_t)n_accounts);
    for (int t = 0; acc[a].closed && t < n_accounts; t++) a = (a + 1) % n_accounts;
    acct_t *s = &acc[a];
    uint64_t r = next_rand(&rng);
    int usd = esk_test_bank_currency_of(a)[0] == 'U';
    e->account = a;
    e->occurred_at_us = BASE_US + (int64_t)i * step + (int64_t)(r % 997);
    e->id_hi = next_rand(&rng);
    e->id_lo = next_rand(&rng);
    e->id_hi = (e->id_hi & ~UINT64_C(0xf000)) | UINT64_C(0x4000);
    e->id_lo = (e->id_lo & ~(UINT64_C(0xc) << 60)) | (UINT64_C(0x8) << 60);
    if (s->version == 0) {
      e->kind = ESK_BANK_EV_ACCOUNT_OPENED;
      e->writer_version = 1;
      e->amount = r % 4 == 0 ? 0 : (int64_t)(r >> 8) % 10000;
    } else if (r % 1000 < 3 && closes < n_accounts / 10 && i + 1 < n_events) {
      e->kind = ESK_BANK_EV_ACCOUNT_CLOSED;
      e->writer_version = 1;
      s->closed = 1;
      closes++;
    } else if (r % 100 < 60 || s->balance == 0) {
      e->kind = ESK_BANK_EV_MONEY_DEPOSITED;
      e->writer_version = usd ? (uint8_t)(1 + (r >> 20) % 3) : 3;
      e->amount = 1 + (int64_t)((r >> 24) % 100000);
    } else {
      e->kind = ESK_BANK_EV_MONEY_WITHDRAWN;
      e->writer_version = usd ? (uint8_t)(1 + (r >> 20) % 2) : 2;
      e->amount = 1 + (int64_t)((r >> 24) % (uint64_t)s->balance);
    }
    if (e->kind == ESK_BANK_EV_MONEY_WITHDRAWN) s->balance -= e->amount;
    else s->balance += e->amount;
    e->version = ++s->version;
  }
  b->n = n_events;
  free(acc);
  *out = b;
  return ESK_OK;
fail:
  free(acc);
  esk_test_bank_destroy(b);
  return rc;
}

void esk_test_bank_destroy(esk_test_bank_t *b) {
  if (!b) return;
  for (int k = 0; k < ESK_TEST_BANK_N_KINDS; k++)
    for (int v = 0; v < ESK_TEST_BANK_N_VERS; v++)
      if (b->schemas[k][v]) avro_value_decref(&b->values[k][v]);
  esk_codec_destroy(b->codec);
  esk_schema_set_destroy(b->set);
  esk_buf_free(&b->buf);
  free(b->ev);
  free(b->skipped);
  free(b);
}

static int set_str(avro_value_t *rec, const char *name, const char *s) {
  avro_value_t f;
  return avro_value_get_by_name(rec, name, &f, NULL) || avro_value_set_string(&f, s);
}

static int set_long(avro_value_t *rec, const char *name, int64_t v) {
  avro_value_t f;
  return avro_value_get_by_name(rec, name, &f, NULL) || avro_value_set_long(&f, v);
}

static int set_money(avro_value_t *rec, const char *name, int64_t amount, const char *cur) {
  avro_value_t m;
  return avro_value_get_by_name(rec, name, &m, NULL) || set_long(&m, "minor_units", amount) ||
         set_str(&m, "currency", cur);
}

/* Fills the cached value of the event's writer schema. */
static int fill(esk_test_bank_t *b, size_t i, const char *desc_override, avro_value_t **out,
                esk_error_t *err) {
  const esk_test_bank_event_t *e = &b->ev[i];
  avro_value_t *v = &b->values[e->kind][e->writer_version], meta;
  char id[40], acct[32], corr[40], cause[40], actor[32], desc[96];
  if (!b->schemas[e->kind][e->writer_version])
    return esk_error_set(err, ESK_EINVAL, "no schema %s v%d", esk_test_bank_kind_type(e->kind),
                         e->writer_version);
  esk_test_bank_event_id(e, id);
  esk_test_bank_account_id(e->account, acct, sizeof(acct));
  snprintf(corr, sizeof(corr), "corr-%zu", i);
  snprintf(cause, sizeof(cause), "cmd-%zu", i);
  snprintf(actor, sizeof(actor), "actor-%d", e->account % 3);
  esk_test_bank_description(i, desc, sizeof(desc));
  const char *d = desc_override ? desc_override : desc;
  const char *cur = esk_test_bank_currency_of(e->account);
  int bad = avro_value_get_by_name(v, "meta", &meta, NULL) || set_str(&meta, "event_id", id) ||
            set_str(&meta, "aggregate_type", "account") || set_str(&meta, "aggregate_id", acct) ||
            set_long(&meta, "aggregate_version", e->version) ||
            set_long(&meta, "occurred_at", e->occurred_at_us) ||
            set_str(&meta, "correlation_id", corr) || set_str(&meta, "causation_id", cause) ||
            set_str(&meta, "actor", actor);
  switch (e->kind) {
  case ESK_BANK_EV_ACCOUNT_OPENED: {
    char owner[32];
    snprintf(owner, sizeof(owner), "owner-%d", e->account % 97);
    bad = bad || set_str(v, "owner_id", owner) || set_money(v, "initial_deposit", e->amount, cur);
    break;
  }
  case ESK_BANK_EV_MONEY_DEPOSITED:
    if (e->writer_version == 1) bad = bad || set_long(v, "amount", e->amount);
    else if (e->writer_version == 2)
      bad = bad || set_long(v, "amount", e->amount) || set_str(v, "currency", cur) ||
            set_str(v, "description", d);
    else bad = bad || set_money(v, "amount", e->amount, cur) || set_str(v, "description", d);
    break;
  case ESK_BANK_EV_MONEY_WITHDRAWN:
    bad = bad || set_long(v, "amount", e->amount);
    if (e->writer_version == 2) bad = bad || set_str(v, "currency", cur);
    break;
  case ESK_BANK_EV_ACCOUNT_CLOSED: bad = bad || set_str(v, "reason", "customer request"); break;
  }
  if (bad) return esk_error_set(err, ESK_EINVAL, "cannot fill event %zu: %s", i, avro_strerror());
  *out = v;
  return ESK_OK;
}

int esk_test_bank_encode_buf(esk_test_bank_t *b, size_t i, const char *desc, esk_error_t *err) {
  avro_value_t *v = NULL;
  const esk_test_bank_event_t *e = &b->ev[i];
  int rc = fill(b, i, desc, &v, err);
  if (rc) return rc;
  esk_buf_reset(&b->buf);
  return esk_codec_encode(b->codec, b->schemas[e->kind][e->writer_version], v, &b->buf, err);
}

int esk_test_bank_encode(esk_test_bank_t *b, size_t i, const char *description, void **out,
                         size_t *len, esk_error_t *err) {
  int rc = esk_test_bank_encode_buf(b, i, description, err);
  if (rc) return rc;
  if (!(*out = malloc(b->buf.len ? b->buf.len : 1)))
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  memcpy(*out, b->buf.data, b->buf.len);
  *len = b->buf.len;
  return ESK_OK;
}
