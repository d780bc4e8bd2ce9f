/**
 * @file bank_decoder.h
 * @brief The domain decoder over the compiled-in bank contract, for tests and
 *        benchmarks: esk_domain_decode(), then the contract's
 *        esk_bank_event_from_value() into the decoder's esk_bank_event_t
 *        (schemas/bank/bank_event.h, the type both sides share), which
 *        becomes the event's payload. esk-projector itself decodes with the
 *        domain plug-in's contract (domain_decoder.h).
 */
#ifndef ESK_BANK_DECODER_H
#define ESK_BANK_DECODER_H

#include "bank_contract.h"
#include "domain_decoder.h"
#include "esk/codec.h"
#include "projector.h"

/** The bank's contract (schemas/bank) for esk_domain_decoder_new(). */
extern const esk_contract_t esk_bank_contract;

typedef struct esk_bank_decoder_s esk_bank_decoder_t;

/** @brief The domain decoder over the bank's contract, with @p limits (NULL: defaults). */
int esk_bank_decoder_new(esk_bank_decoder_t **out, const esk_codec_limits_t *limits,
                         esk_error_t *err);

/** @brief Frees the decoder. NULL does nothing. */
void esk_bank_decoder_destroy(esk_bank_decoder_t *d);

/** @brief The esk_decoder_t to hand to esk_projector_new() (borrows @p d). */
esk_decoder_t esk_bank_decoder(esk_bank_decoder_t *d);

/**
 * @brief Decodes one message: esk_domain_decode(), then
 *        esk_bank_event_from_value() into the decoder's esk_bank_event_t,
 *        which becomes out->payload (valid until the next decode on @p d).
 * @returns ESK_OK, or ESK_EPOISON naming the reason (as both functions say).
 */
int esk_bank_decode(esk_bank_decoder_t *d, const rd_kafka_message_t *m, esk_event_t *out,
                    esk_error_t *err);

#endif
