/**
 * @file bank_avro.h
 * @brief The bank aggregate's Avro mapping: commands from and events to the
 *        versioned contract of schemas/bank (single-object encoding, via the
 *        codec of esk/codec.h). Kept apart from bank.h, which stays pure C.
 *
 * Commands are read at the newest version of their type; events are written
 * at the newest version of theirs and read from any version (resolution and
 * the bank upcasters turn old ones into the newest shape).
 *
 * Thread-safety: a mapping belongs to one thread (it owns a codec).
 */
#ifndef ESK_BANK_AVRO_H
#define ESK_BANK_AVRO_H

#include <stdint.h>

#include "bank/bank.h"
#include "esk/buf.h"
#include "esk/codec.h"
#include "esk/error.h"

/** The aggregate type written into EventMeta.aggregate_type. */
#define ESK_BANK_AGGREGATE_TYPE "account"

typedef struct esk_bank_avro_s esk_bank_avro_t;

/** The metadata of an event that the aggregate does not decide (strings borrowed). */
typedef struct esk_bank_event_meta_s {
  const char *event_id;       /**< a UUID in its 36-character text form */
  int64_t occurred_at_us;     /**< microseconds since the Unix epoch, UTC */
  const char *correlation_id; /**< NULL is written as "" */
  const char *causation_id;   /**< the command id */
  const char *actor;          /**< NULL is written as "" */
} esk_bank_event_meta_t;

/** @brief Loads the bank schemas and upcasters into a new mapping. */
int esk_bank_avro_new(esk_bank_avro_t **out, esk_error_t *err);

/**
 * @brief A mapping over a schema set and codec that the caller made and owns
 *        (they must hold the bank contract and outlive the mapping): how the
 *        Decider instance of the bank (bank_domain.h) shares the runtime's codec.
 */
int esk_bank_avro_new_over(esk_bank_avro_t **out, const esk_schema_set_t *set,
                           esk_codec_t *codec, esk_error_t *err);

/** @brief Frees the mapping. NULL does nothing. */
void esk_bank_avro_destroy(esk_bank_avro_t *a);

/** @brief The schema set (borrowed; lives as long as the mapping). */
const esk_schema_set_t *esk_bank_avro_schemas(const esk_bank_avro_t *a);

/** @brief The codec (borrowed; lives as long as the mapping). */
esk_codec_t *esk_bank_avro_codec(esk_bank_avro_t *a);

/**
 * @brief Decodes a single-object encoded command (OpenAccount, DepositMoney,
 *        WithdrawMoney or CloseAccount, any version).
 * @param cmd set on success; its strings point into the mapping's decoded
 *        value and stay valid until the next decode call on @p a.
 * @returns ESK_OK, or ESK_EPOISON naming the problem (undecodable, not a
 *          command type, a string holding U+0000 or invalid UTF-8: then
 *          esk_bank_avro_refused_string() gives its fields as written).
 */
int esk_bank_avro_decode_command(esk_bank_avro_t *a, esk_bank_command_t *cmd, const void *data,
                                 size_t len, esk_error_t *err);

/**
 * @brief The fast path of esk_bank_avro_decode_command() alone: a command of a
 *        newest schema, every string plain ASCII (bank_decode.h), read field
 *        by field without the codec.
 * @returns ESK_OK (@p cmd set, its strings valid until the next decode on
 *          @p a), or ESK_ENOTFOUND for any other message: the codec's path
 *          then decodes it, or says what is wrong with it.
 */
int esk_bank_avro_decode_command_fast(esk_bank_avro_t *a, esk_bank_command_t *cmd,
                                      const void *data, size_t len);

/**
 * @brief As esk_bank_avro_decode_command(), for a value the caller decoded
 *        with the mapping's codec (@p type its reader schema).
 */
int esk_bank_avro_command_from_value(esk_bank_avro_t *a, esk_bank_command_t *cmd,
                                     const esk_schema_t *type, const avro_value_t *value,
                                     esk_error_t *err);

/**
 * @brief When esk_bank_avro_decode_command() failed with @p why because it
 *        refused a string of the command (U+0000 or invalid UTF-8, see
 *        esk_codec_refusal(); it never cuts one short): the bytes of its field
 *        @p field (e.g. "command_id") exactly as written, so that the command
 *        can be answered under its exact id.
 * @param out set to point into @p data; @param out_len its length.
 * @returns ESK_OK; ESK_ENOTFOUND when @p why is no such refusal, or the
 *          command has no such string field; ESK_EPOISON when the message
 *          cannot be read as far as the field.
 */
int esk_bank_avro_refused_string(esk_bank_avro_t *a, const esk_error_t *why, const void *data,
                                 size_t len, const char *field, const char **out,
                                 size_t *out_len);

/**
 * @brief Appends the single-object encoding of @p cmd (at the newest version
 *        of its type) to @p out. For tools, tests and benchmarks.
 */
int esk_bank_avro_encode_command(esk_bank_avro_t *a, esk_buf_t *out,
                                 const esk_bank_command_t *cmd, esk_error_t *err);

/**
 * @brief Appends the single-object encoding of @p ev with @p meta to @p out,
 *        at the newest version of the event's type.
 * @param schema_out if not NULL, set to the writer schema (for the headers).
 */
int esk_bank_avro_encode_event(esk_bank_avro_t *a, esk_buf_t *out,
                               const esk_schema_t **schema_out, const esk_bank_event_t *ev,
                               const esk_bank_event_meta_t *meta, esk_error_t *err);

/**
 * @brief Decodes an event of any version into @p ev.
 * @param causation_out if not NULL, set to the event's causation id (borrowed,
 *        valid until the next decode call on @p a).
 * @returns ESK_OK, or ESK_EPOISON naming the problem.
 */
int esk_bank_avro_decode_event(esk_bank_avro_t *a, esk_bank_event_t *ev,
                               const char **causation_out, const void *data, size_t len,
                               esk_error_t *err);

#endif
