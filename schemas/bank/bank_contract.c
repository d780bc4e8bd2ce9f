/* The bank contract: embedded schemas, upcasters, and the event type both
 * sides share with its one Avro mapping. */
#include "bank_contract.h"

#include <inttypes.h>
#include <string.h>

extern const size_t esk_bank_schema_count;
extern const char *const esk_bank_schema_names[];
extern const char *const esk_bank_schema_texts[];

int esk_bank_schemas_load(esk_schema_set_t *set, esk_error_t *err) {
  return esk_schema_set_add_many(set, esk_bank_schema_count, esk_bank_schema_names,
                                 esk_bank_schema_texts, err);
}

int esk_bank_upcast_money_deposited_v2(const avro_value_t *from, avro_value_t *to,
                                       esk_error_t *err) {
  avro_value_t fmeta, tmeta, famount, fcurrency, fdesc, tamount, tminor, tcurrency, tdesc;
  int rc;
  if ((rc = esk_value_field(from, "meta", &fmeta, err)) ||
      (rc = esk_value_field(to, "meta", &tmeta, err)) ||
      (rc = esk_value_field(from, "amount", &famount, err)) ||
      (rc = esk_value_field(from, "currency", &fcurrency, err)) ||
      (rc = esk_value_field(from, "description", &fdesc, err)) ||
      (rc = esk_value_field(to, "amount", &tamount, err)) ||
      (rc = esk_value_field(&tamount, "minor_units", &tminor, err)) ||
      (rc = esk_value_field(&tamount, "currency", &tcurrency, err)) ||
      (rc = esk_value_field(to, "description", &tdesc, err)))
    return rc;
  int64_t minor = 0;
  const char *s;
  size_t size;
  if (avro_value_copy_fast(&tmeta, &fmeta) || avro_value_get_long(&famount, &minor) ||
      avro_value_set_long(&tminor, minor) || avro_value_get_string(&fcurrency, &s, &size) ||
      avro_value_set_string_len(&tcurrency, s, size) ||
      avro_value_get_string(&fdesc, &s, &size) || avro_value_set_string_len(&tdesc, s, size))
    return esk_error_set(err, ESK_EPOISON, "MoneyDeposited v2 -> v3: %s", avro_strerror());
  return ESK_OK;
}

int esk_bank_register_upcasters(esk_codec_t *codec, esk_error_t *err) {
  return esk_codec_register_upcaster(codec, "MoneyDeposited", 2,
                                     esk_bank_upcast_money_deposited_v2, err);
}

/* ---------------------------------------------------------------- events --- */

static const char *const event_names[] = {NULL, "AccountOpened", "MoneyDeposited",
                                          "MoneyWithdrawn", "AccountClosed"};
#define N_EVENT_TYPES ((int)(sizeof(event_names) / sizeof(*event_names)) - 1)

const char *esk_bank_event_type_name(esk_bank_event_type_t type) {
  return (int)type >= 1 && (int)type <= N_EVENT_TYPES ? event_names[type] : "UNKNOWN";
}

esk_bank_event_type_t esk_bank_event_type_of(const char *name) {
  for (int t = 1; name && t <= N_EVENT_TYPES; t++)
    if (!strcmp(name, event_names[t])) return (esk_bank_event_type_t)t;
  return (esk_bank_event_type_t)0;
}

const esk_bank_money_t *esk_bank_event_money(const esk_bank_event_t *ev) {
  switch (ev->type) {
  case ESK_BANK_EV_ACCOUNT_OPENED: return &ev->u.opened.initial_deposit;
  case ESK_BANK_EV_MONEY_DEPOSITED: return &ev->u.deposited.amount;
  case ESK_BANK_EV_MONEY_WITHDRAWN: return &ev->u.withdrawn.amount;
  case ESK_BANK_EV_ACCOUNT_CLOSED: break;
  }
  return NULL;
}

/* Copies string field @p name of @p rec into dst[size]. */
static int copy_str(const avro_value_t *rec, const char *name, char *dst, size_t size,
                    esk_error_t *err) {
  const char *s = NULL;
  int rc = esk_value_field_str(rec, name, &s, err);
  if (rc) return rc;
  size_t n = strlen(s);
  if (n >= size)
    return esk_error_set(err, ESK_EPOISON,
                         "'%s' of %zu bytes is longer than the aggregate allows (%zu)", name, n,
                         size - 1);
  memcpy(dst, s, n + 1);
  return ESK_OK;
}

static int check_amount(const char *name, int64_t amount, esk_error_t *err) {
  if (amount < 0)
    return esk_error_set(err, ESK_EPOISON, "negative amount %" PRId64 " in '%s'", amount, name);
  return ESK_OK;
}

/* A Money record field (minor_units, currency). */
static int copy_money(const avro_value_t *rec, const char *name, esk_bank_money_t *m,
                      esk_error_t *err) {
  avro_value_t f;
  int rc;
  if ((rc = esk_value_field(rec, name, &f, err)) ||
      (rc = esk_value_field_long(&f, "minor_units", &m->minor_units, err)) ||
      (rc = copy_str(&f, "currency", m->currency, sizeof(m->currency), err)))
    return rc;
  return check_amount(name, m->minor_units, err);
}

int esk_bank_event_from_value(esk_bank_event_t *out, const char *type, const avro_value_t *value,
                              esk_error_t *err) {
  esk_bank_event_t *e = out;
  avro_value_t meta;
  int rc;
  memset(e, 0, sizeof(*e));
  if (!(e->type = esk_bank_event_type_of(type)))
    return esk_error_set(err, ESK_EPOISON, "'%s' is not a bank event type", type ? type : "");
  if (!value) return esk_error_set(err, ESK_EPOISON, "%s: no decoded value", type);
  if ((rc = esk_value_field(value, "meta", &meta, err)) ||
      (rc = copy_str(&meta, "aggregate_id", e->account_id, sizeof(e->account_id), err)) ||
      (rc = esk_value_field_long(&meta, "aggregate_version", &e->aggregate_version, err)))
    return rc;
  switch (e->type) {
  case ESK_BANK_EV_ACCOUNT_OPENED:
    if ((rc = copy_str(value, "owner_id", e->u.opened.owner_id, sizeof(e->u.opened.owner_id),
                       err)) ||
        (rc = copy_money(value, "initial_deposit", &e->u.opened.initial_deposit, err)))
      return rc;
    break;
  case ESK_BANK_EV_MONEY_DEPOSITED: /* v3: amount is a Money */
    if ((rc = copy_money(value, "amount", &e->u.deposited.amount, err)) ||
        (rc = copy_str(value, "description", e->u.deposited.description,
                       sizeof(e->u.deposited.description), err)))
      return rc;
    break;
  case ESK_BANK_EV_MONEY_WITHDRAWN: /* v2: amount and currency */
    if ((rc = esk_value_field_long(value, "amount", &e->u.withdrawn.amount.minor_units, err)) ||
        (rc = copy_str(value, "currency", e->u.withdrawn.amount.currency,
                       sizeof(e->u.withdrawn.amount.currency), err)) ||
        (rc = check_amount("amount", e->u.withdrawn.amount.minor_units, err)))
      return rc;
    break;
  case ESK_BANK_EV_ACCOUNT_CLOSED:
    if ((rc = copy_str(value, "reason", e->u.closed.reason, sizeof(e->u.closed.reason), err)))
      return rc;
    break;
  }
  return ESK_OK;
}
