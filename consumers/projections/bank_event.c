#include "bank_event.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"

struct esk_bank_decoder_s {
  esk_schema_set_t *set;
  esk_codec_t *codec;
  size_t max_bytes;
  esk_bank_event_t ev; /* the last decoded event: the payload handed out */
};

int esk_bank_decoder_new(esk_bank_decoder_t **out, const esk_codec_limits_t *limits,
                         esk_error_t *err) {
  int rc;
  esk_bank_decoder_t *d = calloc(1, sizeof(*d));
  if (!d) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  if ((rc = esk_schema_set_new(&d->set, err)) || (rc = esk_bank_schemas_load(d->set, err)) ||
      (rc = esk_codec_new(&d->codec, d->set, limits, err)) ||
      (rc = esk_bank_register_upcasters(d->codec, err))) {
    esk_bank_decoder_destroy(d);
    return rc;
  }
  d->max_bytes = limits && limits->max_message_bytes ? limits->max_message_bytes : 1 << 20;
  *out = d;
  return ESK_OK;
}

void esk_bank_decoder_destroy(esk_bank_decoder_t *d) {
  if (!d) return;
  esk_codec_destroy(d->codec);
  esk_schema_set_destroy(d->set);
  free(d);
}


static int decode_cb(void *self, const rd_kafka_message_t *m, esk_event_t *out,
                     esk_error_t *err) {
  return esk_bank_decode(self, m, out, err);
}

esk_decoder_t esk_bank_decoder(esk_bank_decoder_t *d) {
  return (esk_decoder_t){.decode = decode_cb, .self = d};
}

static int get_money(const avro_value_t *rec, const char *name, int64_t *amount,
                     const char **currency, esk_error_t *err) {
  avro_value_t money;
  int rc;
  if ((rc = esk_value_field(rec, name, &money, err)) ||
      (rc = esk_value_field_long(&money, "minor_units", amount, err)) ||
      (rc = esk_value_field_str(&money, "currency", currency, err)))
    return rc;
  if (*amount < 0)
    return esk_error_set(err, ESK_EPOISON, "negative amount %" PRId64 " in '%s'", *amount, name);
  return ESK_OK;
}

int esk_bank_decode(esk_bank_decoder_t *d, const rd_kafka_message_t *m, esk_event_t *out,
                    esk_error_t *err) {
  esk_bank_event_t *e = &d->ev;
  const esk_schema_t *reader = NULL, *writer;
  avro_value_t *value = NULL, meta;
  uint64_t fp = 0;
  int rc;
  if (m->len > d->max_bytes)
    return esk_error_set(err, ESK_EPOISON, "value of %zu bytes is over the limit of %zu bytes",
                         m->len, d->max_bytes);
  if ((rc = esk_codec_peek(m->payload, m->len, &fp, err))) return rc;
  if ((rc = esk_codec_decode(d->codec, m->payload, m->len, 0, &reader, &value, err))) return rc;
  memset(e, 0, sizeof(*e));
  writer = esk_schema_set_by_fingerprint(d->set, fp);
  e->writer_version = writer ? esk_schema_version(writer) : esk_schema_version(reader);
  e->type = esk_schema_type(reader);
  e->value = value;
  if (!strcmp(e->type, "AccountOpened")) e->kind = ESK_BANK_ACCOUNT_OPENED;
  else if (!strcmp(e->type, "MoneyDeposited")) e->kind = ESK_BANK_MONEY_DEPOSITED;
  else if (!strcmp(e->type, "MoneyWithdrawn")) e->kind = ESK_BANK_MONEY_WITHDRAWN;
  else if (!strcmp(e->type, "AccountClosed")) e->kind = ESK_BANK_ACCOUNT_CLOSED;
  else return esk_error_set(err, ESK_EPOISON, "'%s' is not a bank event type", e->type);
  if ((rc = esk_value_field(value, "meta", &meta, err)) ||
      (rc = esk_value_field_str(&meta, "event_id", &e->event_id, err)) ||
      (rc = esk_value_field_str(&meta, "aggregate_type", &e->aggregate_type, err)) ||
      (rc = esk_value_field_str(&meta, "aggregate_id", &e->aggregate_id, err)) ||
      (rc = esk_value_field_long(&meta, "aggregate_version", &e->aggregate_version, err)) ||
      (rc = esk_value_field_long(&meta, "occurred_at", &e->occurred_at_us, err)) ||
      (rc = esk_value_field_str(&meta, "correlation_id", &e->correlation_id, err)) ||
      (rc = esk_value_field_str(&meta, "causation_id", &e->causation_id, err)) ||
      (rc = esk_value_field_str(&meta, "actor", &e->actor, err)))
    return rc;
  if (e->aggregate_version < 1)
    return esk_error_set(err, ESK_EPOISON, "%s of %s has aggregate version %" PRId64
                         " (versions start at 1)", e->type, e->aggregate_id, e->aggregate_version);
  e->owner_id = e->currency = e->description = e->reason = "";
  switch (e->kind) {
  case ESK_BANK_ACCOUNT_OPENED:
    if ((rc = esk_value_field_str(value, "owner_id", &e->owner_id, err)) ||
        (rc = get_money(value, "initial_deposit", &e->amount, &e->currency, err)))
      return rc;
    break;
  case ESK_BANK_MONEY_DEPOSITED:
    if ((rc = get_money(value, "amount", &e->amount, &e->currency, err)) ||
        (rc = esk_value_field_str(value, "description", &e->description, err)))
      return rc;
    break;
  case ESK_BANK_MONEY_WITHDRAWN:
    if ((rc = esk_value_field_long(value, "amount", &e->amount, err)) ||
        (rc = esk_value_field_str(value, "currency", &e->currency, err)))
      return rc;
    if (e->amount < 0)
      return esk_error_set(err, ESK_EPOISON, "negative amount %" PRId64 " in MoneyWithdrawn",
                           e->amount);
    break;
  case ESK_BANK_ACCOUNT_CLOSED:
    if ((rc = esk_value_field_str(value, "reason", &e->reason, err))) return rc;
    break;
  }
  out->type = e->type;
  out->aggregate_id = e->aggregate_id;
  out->aggregate_version = e->aggregate_version;
  out->event_id = e->event_id;
  out->occurred_at_us = e->occurred_at_us;
  out->payload = e;
  return ESK_OK;
}
