/**
 * @file bank_event.h
 * @brief The bank's read-side view of an event: the typed fields its
 *        compiled-in projections read (account_balances, transaction_history,
 *        daily_summaries), taken from the domain-neutral esk_event_t that the
 *        projector decodes with the bank's contract (domain_decoder.h).
 *
 * esk_bank_decoder_*() remain for tests and benchmarks: the domain decoder
 * over the compiled-in bank contract, plus this view as the event's payload.
 */
#ifndef ESK_BANK_EVENT_H
#define ESK_BANK_EVENT_H

#include <stdint.h>

#include "domain_decoder.h"
#include "esk/codec.h"
#include "projector.h"

typedef enum {
  ESK_BANK_ACCOUNT_OPENED = 1,
  ESK_BANK_MONEY_DEPOSITED = 2,
  ESK_BANK_MONEY_WITHDRAWN = 3,
  ESK_BANK_ACCOUNT_CLOSED = 4,
} esk_bank_kind_t;

/**
 * A bank event's fields. Strings point into the event's value: valid only
 * during the call the event is passed to.
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

/** The bank's contract (schemas/bank) for esk_domain_decoder_new(). */
extern const esk_contract_t esk_bank_contract;

/**
 * @brief Reads the bank fields of @p ev (decoded with the bank's contract).
 * @returns ESK_OK, or ESK_EPOISON: a type that is not a bank event, a field
 *          missing, a negative amount.
 */
int esk_bank_event_view(esk_bank_event_t *out, const esk_event_t *ev, esk_error_t *err);

typedef struct esk_bank_decoder_s esk_bank_decoder_t;

/** @brief The domain decoder over the bank's contract, with @p limits (NULL: defaults). */
int esk_bank_decoder_new(esk_bank_decoder_t **out, const esk_codec_limits_t *limits,
                         esk_error_t *err);

/** @brief Frees the decoder. NULL does nothing. */
void esk_bank_decoder_destroy(esk_bank_decoder_t *d);

/** @brief The esk_decoder_t to hand to esk_projector_new() (borrows @p d). */
esk_decoder_t esk_bank_decoder(esk_bank_decoder_t *d);

/**
 * @brief Decodes one message: esk_domain_decode(), then esk_bank_event_view()
 *        into the decoder's esk_bank_event_t, which becomes out->payload.
 * @returns ESK_OK, or ESK_EPOISON naming the reason (as both functions say).
 */
int esk_bank_decode(esk_bank_decoder_t *d, const rd_kafka_message_t *m, esk_event_t *out,
                    esk_error_t *err);

#endif
