#include "bank_event.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"

const esk_contract_t esk_bank_contract = {"bank", esk_bank_schemas_load,
                                          esk_bank_register_upcasters};

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

int esk_bank_event_view(esk_bank_event_t *e, const esk_event_t *ev, esk_error_t *err) {
  const avro_value_t *value = ev->value;
  int rc = ESK_OK;
  memset(e, 0, sizeof(*e));
  if (!value) return esk_error_set(err, ESK_EPOISON, "%s: no decoded value", ev->type);
  if (!strcmp(ev->type, "AccountOpened")) e->kind = ESK_BANK_ACCOUNT_OPENED;
  else if (!strcmp(ev->type, "MoneyDeposited")) e->kind = ESK_BANK_MONEY_DEPOSITED;
  else if (!strcmp(ev->type, "MoneyWithdrawn")) e->kind = ESK_BANK_MONEY_WITHDRAWN;
  else if (!strcmp(ev->type, "AccountClosed")) e->kind = ESK_BANK_ACCOUNT_CLOSED;
  else return esk_error_set(err, ESK_EPOISON, "'%s' is not a bank event type", ev->type);
  e->type = ev->type;
  e->writer_version = ev->schema_version;
  e->value = value;
  e->event_id = ev->event_id;
  e->aggregate_type = ev->aggregate_type;
  e->aggregate_id = ev->aggregate_id;
  e->correlation_id = ev->correlation_id;
  e->causation_id = ev->causation_id;
  e->actor = ev->actor;
  e->aggregate_version = ev->aggregate_version;
  e->occurred_at_us = ev->occurred_at_us;
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
  return ESK_OK;
}

struct esk_bank_decoder_s {
  esk_domain_decoder_t *dec;
  esk_bank_event_t ev; /* the last decoded event: the payload handed out */
};

int esk_bank_decoder_new(esk_bank_decoder_t **out, const esk_codec_limits_t *limits,
                         esk_error_t *err) {
  esk_bank_decoder_t *d = calloc(1, sizeof(*d));
  if (!d) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  int rc = esk_domain_decoder_new(&d->dec, &esk_bank_contract, limits, err);
  if (rc) {
    free(d);
    return rc;
  }
  *out = d;
  return ESK_OK;
}

void esk_bank_decoder_destroy(esk_bank_decoder_t *d) {
  if (!d) return;
  esk_domain_decoder_destroy(d->dec);
  free(d);
}

static int decode_cb(void *self, const rd_kafka_message_t *m, esk_event_t *out,
                     esk_error_t *err) {
  return esk_bank_decode(self, m, out, err);
}

esk_decoder_t esk_bank_decoder(esk_bank_decoder_t *d) {
  return (esk_decoder_t){.decode = decode_cb, .self = d};
}

int esk_bank_decode(esk_bank_decoder_t *d, const rd_kafka_message_t *m, esk_event_t *out,
                    esk_error_t *err) {
  int rc = esk_domain_decode(d->dec, m, out, err);
  if (rc == ESK_OK && (rc = esk_bank_event_view(&d->ev, out, err)) == ESK_OK) out->payload = &d->ev;
  return rc;
}
