/**
 * @file domain_decoder.h
 * @brief The projector's decoder for any domain: a Kafka message (Avro
 *        single-object encoding) becomes an esk_event_t (esk/projection.h)
 *        through the domain's contract, its schemas and upcasters (the domain
 *        plug-in's load_schemas and register_upcasters, esk/domain.h): the
 *        type, the version it was written in, the metadata of its `meta`
 *        record, and the value upcast to the latest version of its type.
 *        Nothing here knows a domain (docs/architecture.md, "Read side").
 */
#ifndef ESK_DOMAIN_DECODER_H
#define ESK_DOMAIN_DECODER_H

#include "esk/codec.h"
#include "esk/error.h"
#include "esk/shred.h"
#include "event.h"

/** A domain's contract, as the read side needs it (esk_domain_t has these fields). */
typedef struct esk_contract_s {
  const char *domain; /**< e.g. "bank" (copied) */
  /** @brief Adds the domain's schemas to @p set. */
  int (*load_schemas)(esk_schema_set_t *set, esk_error_t *err);
  /** @brief Registers the domain's upcasters in @p codec. */
  int (*register_upcasters)(esk_codec_t *codec, esk_error_t *err);
} esk_contract_t;

typedef struct esk_domain_decoder_s esk_domain_decoder_t;

/**
 * @brief Creates the decoder: a schema set with the contract's schemas, a
 *        codec with its upcasters and @p limits (NULL: the codec's defaults).
 * @returns ESK_OK, or the contract's error (ESK_EINVAL naming the schema).
 */
int esk_domain_decoder_new(esk_domain_decoder_t **out, const esk_contract_t *contract,
                           const esk_codec_limits_t *limits, esk_error_t *err);

/**
 * @brief Decrypts personal fields from now on (docs/architecture.md,
 *        "Personal data"): a keyring over the master key in @p master_key_file,
 *        fed from the subject-keys topic @p keys_topic through @p reader (a
 *        consumer from esk_kafka_reader_new*(), taken over), read to its end
 *        now and again whenever an event names a key not held yet. A value
 *        whose key is destroyed takes the field's `forgotten` value.
 * @returns ESK_OK; ESK_EINVAL for the master key file; ESK_EFATAL for a wrong
 *          master key; ESK_ERETRY when the topic cannot be read.
 */
int esk_domain_decoder_personal(esk_domain_decoder_t *d, const char *master_key_file,
                                rd_kafka_t *reader, const char *keys_topic, int timeout_ms,
                                esk_error_t *err);

/** @brief Frees the decoder. NULL does nothing. */
void esk_domain_decoder_destroy(esk_domain_decoder_t *d);

/** @brief The esk_decoder_t to hand to esk_projector_new() (borrows @p d).
 *         Its forgets (NULL for a domain without personal fields) follow the
 *         keyring's forgotten subjects when personal data is on
 *         (esk_domain_decoder_personal()); otherwise only the marks are set. */
esk_decoder_t esk_domain_decoder(esk_domain_decoder_t *d);

/** @brief The contract's schemas (borrowed; declarative files resolve paths in them). */
const esk_schema_set_t *esk_domain_decoder_schemas(const esk_domain_decoder_t *d);

/**
 * @brief Decodes one message (what the esk_decoder_t calls). The event's
 *        strings and value live until the next call on @p d.
 * @returns ESK_OK, or ESK_EPOISON naming the reason: too large, wrong magic,
 *          unknown fingerprint, truncated or malformed datum, a value that is
 *          not an event (no `meta` record: a command, a snapshot), a metadata
 *          field missing, a non-positive aggregate version, a personal value
 *          that fails authentication; ESK_ERETRY when the subject-keys topic
 *          cannot be read.
 */
int esk_domain_decode(esk_domain_decoder_t *d, const rd_kafka_message_t *m, esk_event_t *out,
                      esk_error_t *err);

#endif
