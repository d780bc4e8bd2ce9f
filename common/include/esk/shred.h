/**
 * @file shred.h
 * @brief Crypto-shredding of personal fields (docs/architecture.md,
 *        "Personal data"): the master key, the subject keys, the wire form of
 *        an encrypted value, and encrypting and decrypting the personal
 *        fields (esk/personal.h) of a decoded value.
 *
 * A keyring holds the master key (32 bytes from a file) and the subject keys
 * it learnt from the records of `<domain>.subject-keys`
 * (esk_shred_apply_record()) or made itself (esk_shred_encrypt_value()).
 * Record keys: `<subject id>/<key id, 32 hex digits>` for a wrapped key (a
 * tombstone destroys it) and `<subject id>/forgotten` for a forgotten subject.
 *
 * No function logs, and no error message holds, a key, a plaintext or a
 * ciphertext. Keys are wiped from memory when dropped.
 *
 * Thread-safety: none; a keyring belongs to one thread.
 */
#ifndef ESK_SHRED_H
#define ESK_SHRED_H

#include <avro.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/codec.h"
#include "esk/error.h"

/** The prefix of an encrypted string value. */
#define ESK_SHRED_PREFIX "esk:p1:"
/** Bytes of a key id, of a subject key, of the master key. */
#define ESK_SHRED_KEY_ID_BYTES 16
#define ESK_SHRED_KEY_BYTES 32
/** The suffix of a forgotten subject's record key. */
#define ESK_SHRED_FORGOTTEN "forgotten"
/** Longest subject id, in bytes. */
#define ESK_SHRED_SUBJECT_MAX 1024
/** The kind of the subject-keys topic (esk_kafka_topic_name()). */
#define ESK_SHRED_TOPIC_KIND "subject-keys"

typedef struct esk_shred_s esk_shred_t;

/**
 * @brief Creates a keyring with the master key read from @p path: 64 hex
 *        digits (a final newline allowed), in a file that only its owner may
 *        read or write.
 * @returns ESK_OK; ESK_EINVAL naming the file and the reason (missing,
 *          readable by others, not 64 hex digits), never the key.
 */
int esk_shred_new(esk_shred_t **out, const char *path, esk_error_t *err);

/** @brief Wipes and frees the keyring. NULL does nothing. */
void esk_shred_destroy(esk_shred_t *sh);

/**
 * @brief Applies one record of the subject-keys topic: a wrapped key (learnt),
 *        a tombstone (the key destroyed), or a forgotten mark.
 * @param value NULL for a tombstone.
 * @returns ESK_OK; ESK_EFATAL when a key does not unwrap with this master key
 *          (a wrong master key file: the message says so, naming no key);
 *          ESK_EPOISON for a record that is not one of the three forms.
 */
int esk_shred_apply_record(esk_shred_t *sh, const void *key, size_t key_len, const void *value,
                           size_t value_len, esk_error_t *err);

/**
 * @brief Reads every partition of the subject-keys topic @p topic from where
 *        the last call stopped (the beginning, the first time) to its end, and
 *        applies each record (esk_shred_apply_record()).
 * @param reader a consumer made by esk_kafka_reader_new() (read_committed).
 * @returns ESK_OK; ESK_EFATAL for a wrong master key; ESK_ERETRY naming the
 *          topic when it cannot be read (missing, broker down, idle for
 *          @p idle_timeout_ms). A malformed record is skipped and counted
 *          in @p skipped (may be NULL).
 */
int esk_shred_catch_up(esk_shred_t *sh, rd_kafka_t *reader, const char *topic,
                       int idle_timeout_ms, size_t *skipped, esk_error_t *err);

/** @brief Whether @p subject is marked forgotten. */
int esk_shred_forgotten(const esk_shred_t *sh, const char *subject);

/**
 * @brief Number of subjects marked forgotten, counted once each, in the order
 *        their marks were first read: an index into esk_shred_forgotten_at()
 *        that only grows (a reader remembers how far it has got).
 */
size_t esk_shred_forgotten_count(const esk_shred_t *sh);

/** @brief The @p i-th forgotten subject (owned by the keyring), or NULL past the end. */
const char *esk_shred_forgotten_at(const esk_shred_t *sh, size_t i);

/** @brief Number of subject keys held. */
size_t esk_shred_key_count(const esk_shred_t *sh);

/**
 * @brief Encrypts, in place, every personal field of @p value, a value of
 *        @p schema: each string inside it becomes ESK_SHRED_PREFIX and the
 *        base64 of key id, nonce and ciphertext; a forgotten subject's field
 *        takes its `forgotten` value. A subject without a key gets a new one,
 *        which esk_shred_take_records() then hands out.
 * @returns ESK_OK; ESK_EPOISON when the subject field is missing or empty, or
 *          over ESK_SHRED_SUBJECT_MAX; ESK_ENOMEM.
 */
int esk_shred_encrypt_value(esk_shred_t *sh, const esk_schema_t *schema, avro_value_t *value,
                            esk_error_t *err);

/**
 * @brief Starts a transaction's worth of key records: a key made or used since
 *        the last esk_shred_txn_committed() is handed out again by
 *        esk_shred_take_records() the first time it is used after this call.
 */
void esk_shred_txn_begin(esk_shred_t *sh);

/** @brief The transaction that held the records handed out since
 *         esk_shred_txn_begin() committed: those keys are published. */
void esk_shred_txn_committed(esk_shred_t *sh);

/** Called by esk_shred_take_records() with a record to write (borrowed). */
typedef int (*esk_shred_record_fn)(const char *key, size_t key_len, const void *value,
                                   size_t value_len, void *ctx);

/**
 * @brief Hands out, once each, the records of keys used since
 *        esk_shred_txn_begin() that are not published yet, to be written in the
 *        same transaction as the events encrypted with them.
 * @returns ESK_OK, or @p fn's non-zero return.
 */
int esk_shred_take_records(esk_shred_t *sh, esk_shred_record_fn fn, void *ctx);

/**
 * @brief Decrypts, in place, the personal fields of @p value, a value of
 *        @p schema. A string without ESK_SHRED_PREFIX is left as it is
 *        (written before the field was marked).
 * @param forget_missing 0: a value whose key this keyring does not hold makes
 *        the call return ESK_ENOTFOUND, changing nothing (the caller reads the
 *        subject-keys topic to its end and asks again); 1: such a field takes
 *        its `forgotten` value (the key was destroyed).
 * @returns ESK_OK; ESK_ENOTFOUND (above); ESK_EPOISON for a value that has the
 *          prefix but is malformed, or fails authentication with a key held
 *          (tampered); the message names the field, not the value.
 */
int esk_shred_decrypt_value(esk_shred_t *sh, const esk_schema_t *schema, avro_value_t *value,
                            int forget_missing, esk_error_t *err);

/** Reads the subject-keys topic to its end (esk_shred_catch_up()); ESK_OK or an error. */
typedef int (*esk_shred_refresh_fn)(void *ctx, esk_error_t *err);

/**
 * @brief A single-object encoded message of @p set with its personal fields
 *        encrypted (@p encrypt 1) or decrypted (0), re-encoded in its writer's
 *        schema into @p b. A message of a schema without personal fields is
 *        left as it is.
 * @param refresh when decrypting: called once when a key is missing, before
 *        the missing keys' fields take their `forgotten` value (may be NULL).
 * @param out, @p out_len set to @p b's bytes, or to @p data when nothing changed.
 * @returns ESK_OK; ESK_EPOISON (undecodable message, tampered value; as
 *          esk_codec_decode() and esk_shred_decrypt_value()); the refresh's error.
 */
int esk_shred_message(esk_shred_t *sh, int encrypt, esk_codec_t *c, const esk_schema_set_t *set,
                      const void *data, size_t len, esk_shred_refresh_fn refresh, void *ctx,
                      esk_buf_t *b, const void **out, size_t *out_len, esk_error_t *err);

/**
 * @brief Decrypts @p value of @p schema: esk_shred_decrypt_value(), and when a
 *        key is missing, @p refresh (may be NULL) then the `forgotten` values.
 */
int esk_shred_decrypt_refreshing(esk_shred_t *sh, const esk_schema_t *schema, avro_value_t *value,
                                 esk_shred_refresh_fn refresh, void *ctx, esk_error_t *err);

/**
 * @brief The record of a new key for @p subject, wrapped by the master key, as
 *        a producer writes it (for tools and tests).
 * @param key_out, @p value_out set to buffers the caller frees with free().
 */
int esk_shred_new_key_record(esk_shred_t *sh, const char *subject, char **key_out,
                             size_t *key_len, uint8_t **value_out, size_t *value_len,
                             esk_error_t *err);

#endif
