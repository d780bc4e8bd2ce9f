/* The bank contract: embedded schemas and upcasters. */
#include "bank_contract.h"

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
