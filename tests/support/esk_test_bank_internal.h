/* Inside the bank workload's test support (not for suites): the workload's
 * state and the derived strings that the workload generator, the publisher
 * (esk_test_bank_publish.c) and the fold (esk_test_bank_check.c) share. */
#ifndef ESK_TEST_BANK_INTERNAL_H
#define ESK_TEST_BANK_INTERNAL_H

#include <avro.h>

#include "esk/codec.h"
#include "esk_test_bank.h"

#define ESK_TEST_BANK_N_KINDS 5
#define ESK_TEST_BANK_N_VERS 4

struct esk_test_bank_s {
  esk_schema_set_t *set;
  esk_codec_t *codec;
  avro_value_t values[ESK_TEST_BANK_N_KINDS][ESK_TEST_BANK_N_VERS];
  const esk_schema_t *schemas[ESK_TEST_BANK_N_KINDS][ESK_TEST_BANK_N_VERS];
  esk_test_bank_event_t *ev;
  uint8_t *skipped;
  size_t n;
  int n_accounts;
  esk_buf_t buf; /**< the last event encoded by esk_test_bank_encode_buf() */
};

/** The event type name of kind @p kind (esk_bank_event_type_t). */
const char *esk_test_bank_kind_type(int kind);
/** The currency of account @p account. */
const char *esk_test_bank_currency_of(int account);
/** The event id of @p e as a UUID string into @p buf (37 bytes). */
void esk_test_bank_event_id(const esk_test_bank_event_t *e, char *buf);
/** The generated description of event @p i. */
void esk_test_bank_description(size_t i, char *buf, size_t size);
/** Encodes event @p i into b->buf (@p desc NULL: the generated description). */
int esk_test_bank_encode_buf(esk_test_bank_t *b, size_t i, const char *desc, esk_error_t *err);

#endif
