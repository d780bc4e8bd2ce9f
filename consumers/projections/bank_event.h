/**
 * @file bank_event.h
 * @brief The bank domain's decoder for the projector: a Kafka message (Avro
 *        single-object encoding) becomes an esk_event_t whose payload is an
 *        esk_bank_event_t, decoded and upcast to the latest version of its type
 *        (the version every bank projection reads).
 */
#ifndef ESK_BANK_EVENT_H
#define ESK_BANK_EVENT_H

#include <stdint.h>

#include "esk/codec.h"
#include "projector.h"

typedef enum {
  ESK_BANK_ACCOUNT_OPENED = 1,
  ESK_BANK_MONEY_DEPOSITED = 2,
  ESK_BANK_MONEY_WITHDRAWN = 3,
  ESK_BANK_ACCOUNT_CLOSED = 4,
} esk_bank_kind_t;

/**
 * A decoded bank event (esk_event_t.payload). Strings point into the codec's
 * value: valid only during the call the event is passed to.
 */
typedef struct esk_bank_event_s {
  esk_bank_kind_t kind;
  const char *type;          /**< "MoneyDeposited", ... */
  int writer_version;        /**< the version it was written in */
  const avro_value_t *value; /**< the whole event at the latest version */
  /* EventMeta */
  const char *event_id, *aggregate_type, *aggregate_id, *correlation_id, *causation_id, *actor;
  int64_t aggregate_version, occurred_at_us;
  /* the type's fields ("" / 0 when the type has none) */
  const char *owner_id;    /**< AccountOpened */
  int64_t amount;          /**< minor units: initial deposit, deposit, withdrawal */
  const char *currency;    /**< of the amount */
  const char *description; /**< MoneyDeposited */
  const char *reason;      /**< AccountClosed */
} esk_bank_event_t;

typedef struct esk_bank_decoder_s esk_bank_decoder_t;

/**
 * @brief Creates the decoder: the embedded bank schemas, a codec with the
 *        bank upcasters and @p limits (NULL: the codec's defaults).
 */
int esk_bank_decoder_new(esk_bank_decoder_t **out, const esk_codec_limits_t *limits,
                         esk_error_t *err);

/** @brief Frees the decoder. NULL does nothing. */
void esk_bank_decoder_destroy(esk_bank_decoder_t *d);

/** @brief The esk_decoder_t to hand to esk_projector_new() (borrows @p d). */
esk_decoder_t esk_bank_decoder(esk_bank_decoder_t *d);

/**
 * @brief Decodes one message (what the esk_decoder_t calls).
 * @returns ESK_OK, or ESK_EPOISON naming the reason: too large, wrong magic,
 *          unknown fingerprint, truncated or malformed datum, a type that is not
 *          a bank event, a non-positive aggregate version, a negative amount.
 */
int esk_bank_decode(esk_bank_decoder_t *d, const rd_kafka_message_t *m, esk_event_t *out,
                    esk_error_t *err);


#endif
