/**
 * @file codec.h
 * @brief The versioned Avro event contract: schema sets, Parsing Canonical
 *        Form and CRC-64-AVRO fingerprints, single-object encoding, writer to
 *        reader resolution with defaults, and upcaster chains.
 *
 * Values are avro-c generic values (avro_value_t). A schema file is named
 * `<Type>.v<N>.avsc` (e.g. `MoneyDeposited.v2.avsc`); its type and version
 * come from the file name. Named types defined in other files of the same set
 * (e.g. `EventMeta`, `Money`) may be referenced by name.
 *
 * Wire format (docs/architecture.md, "Kafka contract"): `C3 01`, the 8-byte
 * little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
 * Canonical Form, then the Avro binary datum.
 *
 * Decoding a message turns the writer's version of a type into the version a
 * reader names: Avro schema resolution first (added fields take their
 * defaults, removed fields are dropped, promotions, aliases, ...), then the
 * registered upcasters, each taking version N to N+1, for the steps that
 * resolution cannot express.
 *
 * Thread-safety: a schema set is immutable once loaded and may be shared; a
 * codec (it keeps scratch values and resolution plans) belongs to one thread.
 */
#ifndef ESK_CODEC_H
#define ESK_CODEC_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/error.h"
#include "esk/text.h"

/* ----------------------------------------------------------- primitives --- */

/* esk_utf8_check(), what a string must pass to be decoded, is in esk/text.h. */

/** @brief CRC-64-AVRO (the Rabin fingerprint of the Avro specification). */
uint64_t esk_avro_crc64(const void *data, size_t len);

/**
 * @brief The Parsing Canonical Form of a schema given as JSON text.
 * @param out set on success to a NUL-terminated string the caller frees with free().
 * @returns ESK_OK or ESK_EINVAL naming the problem.
 */
int esk_avro_canonical_form(char **out, const char *schema_json, esk_error_t *err);

/* ---------------------------------------------------------- schema sets --- */

typedef struct esk_schema_s esk_schema_t; /**< one type at one version; owned by its set */
typedef struct esk_schema_set_s esk_schema_set_t;

/** @brief Creates an empty set. */
int esk_schema_set_new(esk_schema_set_t **out, esk_error_t *err);

/** @brief Frees the set and every schema in it. NULL does nothing. */
void esk_schema_set_destroy(esk_schema_set_t *set);

/**
 * @brief Adds every `*.avsc` file in @p dir (not recursive).
 * @returns ESK_OK, or ESK_EINVAL with a message naming the file and the problem.
 */
int esk_schema_set_load_dir(esk_schema_set_t *set, const char *dir, esk_error_t *err);

/**
 * @brief Adds one schema from memory (used for schemas embedded in binaries).
 * @param file_name `<Type>.v<N>.avsc`; gives type and version, and names the
 *        schema in error messages.
 * @param json the schema text (copied).
 */
int esk_schema_set_add(esk_schema_set_t *set, const char *file_name, const char *json,
                       esk_error_t *err);

/**
 * @brief Adds several schemas from memory at once, so that they may reference
 *        named types defined in each other (in any order). All or nothing: on
 *        an error none of them is added.
 * @param file_names @p n names `<Type>.v<N>.avsc`; @param jsons their texts (copied).
 * @returns ESK_OK, or ESK_EINVAL with a message naming the file and the problem.
 */
int esk_schema_set_add_many(esk_schema_set_t *set, size_t n, const char *const *file_names,
                            const char *const *jsons, esk_error_t *err);

/**
 * @brief The Parsing Canonical Form of a schema that may reference named types
 *        of @p set (which it leaves as it was).
 * @param out set on success to a string the caller frees with free().
 * @returns ESK_OK or ESK_EINVAL naming the problem.
 */
int esk_schema_set_canonical_form(esk_schema_set_t *set, char **out, const char *schema_json,
                                  esk_error_t *err);

/** @brief The schema of @p type at @p version, or NULL. */
const esk_schema_t *esk_schema_set_get(const esk_schema_set_t *set, const char *type,
                                       int version);

/** @brief The highest version of @p type, or NULL. */
const esk_schema_t *esk_schema_set_latest(const esk_schema_set_t *set, const char *type);

/** @brief The schema whose canonical form has fingerprint @p fp, or NULL. */
const esk_schema_t *esk_schema_set_by_fingerprint(const esk_schema_set_t *set, uint64_t fp);

/** @brief Number of schemas, and the i-th (sorted by type, then version). */
size_t esk_schema_set_count(const esk_schema_set_t *set);
const esk_schema_t *esk_schema_set_at(const esk_schema_set_t *set, size_t i);

const char *esk_schema_type(const esk_schema_t *s);     /**< e.g. "MoneyDeposited" */
int esk_schema_version(const esk_schema_t *s);          /**< e.g. 2 */
uint64_t esk_schema_fingerprint(const esk_schema_t *s); /**< CRC-64-AVRO of the PCF */
const char *esk_schema_canonical(const esk_schema_t *s); /**< Parsing Canonical Form */
const char *esk_schema_file(const esk_schema_t *s);     /**< file name it came from */
avro_schema_t esk_schema_avro(const esk_schema_t *s);   /**< borrowed avro-c schema */

/**
 * @brief A new generic value of schema @p s, all fields at their zero value.
 * @param out on success; free with avro_value_decref().
 */
int esk_value_new(avro_value_t *out, const esk_schema_t *s, esk_error_t *err);

/**
 * @brief Field @p name of record @p rec into @p out (borrowed from @p rec).
 * @returns ESK_OK, or ESK_EPOISON naming the field and the record's type when
 *          there is no such field (a value that breaks its contract).
 */
int esk_value_field(const avro_value_t *rec, const char *name, avro_value_t *out,
                    esk_error_t *err);

/** @brief String field @p name of @p rec (NUL-terminated, borrowed from @p rec).
 *  @returns ESK_OK, or ESK_EPOISON when it is missing or not a string. */
int esk_value_field_str(const avro_value_t *rec, const char *name, const char **out,
                        esk_error_t *err);

/** @brief Long field @p name of @p rec.
 *  @returns ESK_OK, or ESK_EPOISON when it is missing or not a long. */
int esk_value_field_long(const avro_value_t *rec, const char *name, int64_t *out,
                         esk_error_t *err);

/** @brief Field number @p index of @p rec, whose name is @p name (for the
 *  message), into @p out (borrowed from @p rec): a caller that found the
 *  position once (by name) reads by it.
 *  @returns ESK_OK, or ESK_EPOISON when there is no such field (@p index < 0 too). */
int esk_value_index(const avro_value_t *rec, int index, const char *name, avro_value_t *out,
                    esk_error_t *err);

/** @brief String field number @p index of @p rec, named @p name.
 *  @returns ESK_OK, or ESK_EPOISON when it is missing or not a string. */
int esk_value_index_str(const avro_value_t *rec, int index, const char *name, const char **out,
                        esk_error_t *err);

/** @brief Long field number @p index of @p rec, named @p name.
 *  @returns ESK_OK, or ESK_EPOISON when it is missing or not a long. */
int esk_value_index_long(const avro_value_t *rec, int index, const char *name, int64_t *out,
                         esk_error_t *err);

/**
 * @brief Sets @p value, made for @p schema by esk_value_new(), from JSON text
 *        shaped like the schema (the schema, not the value, knows the
 *        defaults, which avro-c drops):
 *        records as objects, longs as integers, a union as the bare value of
 *        the first branch that accepts it (null for a null branch).
 *        Fields missing from the JSON take the schema's default; a missing
 *        field without a default is an error naming it.
 */
int esk_value_from_json(avro_value_t *value, const esk_schema_t *schema, const char *json,
                        esk_error_t *err);

/**
 * @brief Writes @p value as one line of JSON in the shape esk_value_from_json()
 *        reads. @param out set to a string the caller frees with free().
 */
int esk_value_to_json(const avro_value_t *value, char **out, esk_error_t *err);

/**
 * @brief Appends @p value to @p b as compact JSON, as esk_value_to_json()
 *        writes it (no NUL), leaving out the field @p skip (may be NULL) of a
 *        top-level record: the one Avro-to-JSON writer (event_log writes its
 *        payloads with it, without "meta").
 * @returns ESK_OK; ESK_EINVAL for a value JSON cannot hold (a union without a
 *          branch, a float that is not finite); ESK_ENOMEM past @p b's maximum.
 */
int esk_value_json_append(esk_buf_t *b, const avro_value_t *value, const char *skip,
                          esk_error_t *err);

/* --------------------------------------------------------------- codec --- */

typedef struct esk_codec_s esk_codec_t;

/** Limits on what a decoder may allocate for one message. 0 = default. */
typedef struct esk_codec_limits_s {
  size_t max_message_bytes; /**< default 1 MiB */
  size_t max_string_bytes;  /**< default 1 MiB; one string or bytes value */
  size_t max_items;         /**< default 65536; items of all arrays and maps of one message */
  int max_depth;            /**< default 32; nesting of records, arrays, maps */
} esk_codec_limits_t;

/**
 * @brief Upcaster: turns a value of (type, version N) into (type, N+1).
 * @param from value of the version-N reader schema (borrowed).
 * @param to a fresh value of the version N+1 schema to fill.
 * @returns ESK_OK, or ESK_EPOISON with a message when the value cannot be upcast.
 */
typedef int (*esk_upcaster_fn)(const avro_value_t *from, avro_value_t *to, esk_error_t *err);

/**
 * @brief Creates a codec over @p set (borrowed: it must outlive the codec).
 * @param limits NULL for the defaults.
 */
int esk_codec_new(esk_codec_t **out, const esk_schema_set_t *set,
                  const esk_codec_limits_t *limits, esk_error_t *err);

/** @brief Frees the codec. NULL does nothing. */
void esk_codec_destroy(esk_codec_t *c);

/** @brief The codec's limits, defaults filled in (a decoder of its own, such
 *         as a domain's fast path, keeps to the same ones). */
const esk_codec_limits_t *esk_codec_get_limits(const esk_codec_t *c);

/** @brief Registers the upcaster from (type, from_version) to from_version + 1. */
int esk_codec_register_upcaster(esk_codec_t *c, const char *type, int from_version,
                                esk_upcaster_fn fn, esk_error_t *err);

/**
 * @brief Appends the single-object encoding of @p value (a value of @p writer)
 *        to @p out.
 */
int esk_codec_encode(esk_codec_t *c, const esk_schema_t *writer, const avro_value_t *value,
                     esk_buf_t *out, esk_error_t *err);

/**
 * @brief Reads the header of a single-object encoded message.
 * @returns ESK_OK with the writer's fingerprint in @p fp, or ESK_EPOISON
 *          (too short, wrong magic).
 */
int esk_codec_peek(const void *data, size_t len, uint64_t *fp, esk_error_t *err);

/**
 * @brief Decodes a single-object encoded message into the shape of
 *        @p reader_version of the writer's type (0 = the latest version in the
 *        set): resolution, then upcasters.
 * @param reader_out set to the reader schema.
 * @param value_out set to the decoded value. It is owned by the codec and
 *        valid until the next decode call on this codec.
 * @returns ESK_OK; ESK_EPOISON for a message that can never be decoded
 *          (wrong magic, unknown fingerprint, truncated, trailing bytes, a
 *          length over the limits, no resolution or upcaster path, a string
 *          holding U+0000 or invalid UTF-8: see esk_codec_refusal()), with a
 *          message naming the reason.
 */
int esk_codec_decode(esk_codec_t *c, const void *data, size_t len, int reader_version,
                     const esk_schema_t **reader_out, avro_value_t **value_out,
                     esk_error_t *err);

/** Why a decode refused a string (see esk_codec_refusal()). */
typedef struct esk_codec_refusal_s {
  char path[200];  /**< the field, e.g. `meta.correlation_id`, `items[2]`, `m["k"]` */
  int nul;         /**< 1: the string holds U+0000; 0: it is not valid UTF-8 */
  size_t at;       /**< offset of the offending byte in the string */
  size_t length;   /**< the string's length in bytes, as written */
  size_t offset;   /**< offset of the offending byte in the message (header included) */
} esk_codec_refusal_t;

/**
 * @brief Whether the error @p err of an esk_codec_decode() on @p c is the
 *        refusal of a string, and where.
 *
 * A string (or map key) read as an Avro string must be UTF-8 (RFC 3629: no
 * overlong forms, surrogates or code points over U+10FFFF) without U+0000:
 * avro-c and every C caller keep a string only up to its first NUL, so such
 * a value could only be cut short. The decode then fails with ESK_EPOISON and
 * a message naming the field path and the offsets; it never truncates.
 *
 * @param err the error the failed decode wrote (passed up unchanged).
 * @returns the refusal (owned by @p c, valid until its next decode), or NULL
 *          when @p err is no such refusal.
 */
const esk_codec_refusal_t *esk_codec_refusal(const esk_codec_t *c, const esk_error_t *err);

/**
 * @brief The bytes of a top-level string field of a single-object encoded
 *        record exactly as written, without decoding the rest or checking the
 *        string (it may hold U+0000 or be invalid UTF-8). For answering a
 *        message whose decode was refused under the id it carries.
 * @param out set to point into @p data; @param out_len its length.
 * @returns ESK_OK; ESK_ENOTFOUND when the writer's record has no such string
 *          field; ESK_EPOISON when the message is unreadable up to it.
 */
int esk_codec_raw_string(esk_codec_t *c, const void *data, size_t len, const char *field,
                         const char **out, size_t *out_len, esk_error_t *err);

/**
 * @brief Checks that the reader version of a type can read the writer version:
 *        resolution, plus upcasters registered in @p c (may be NULL: resolution only).
 * @returns ESK_OK or ESK_EINVAL naming the type, the versions and the field.
 */
int esk_codec_check_readable(esk_codec_t *c, const esk_schema_t *writer,
                             const esk_schema_t *reader, esk_error_t *err);

#endif
