/**
 * @file avro_bin.h
 * @brief The few pieces of Avro's binary encoding that a domain needs to
 *        write and read a small record without a codec: longs (zig-zag
 *        varints) and strings (a long length, then the bytes). Domains write
 *        their snapshots' Avro bodies with them (`<Aggregate>Snapshot.vN.avsc`,
 *        docs/domains.md), field by field in schema order.
 *
 * Reading is bounded: every length is checked against what is left and
 * against the caller's buffer, and nothing is allocated.
 */
#ifndef ESK_AVRO_BIN_H
#define ESK_AVRO_BIN_H

#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"

/** @brief Appends @p v as an Avro long. @returns ESK_OK or esk_buf_append()'s error. */
int esk_avro_put_long(esk_buf_t *b, int64_t v);

/** @brief Appends the NUL-terminated @p s as an Avro string. @returns as esk_avro_put_long(). */
int esk_avro_put_string(esk_buf_t *b, const char *s);

/** A position in Avro binary input: [p, end). */
typedef struct esk_avro_in_s {
  const uint8_t *p, *end;
} esk_avro_in_t;

/**
 * @brief Reads an Avro long and advances.
 * @returns ESK_OK; ESK_EPOISON when the input ends inside it or it is longer
 *          than 64 bits.
 */
int esk_avro_get_long(esk_avro_in_t *in, int64_t *out);

/**
 * @brief Reads an Avro string into @p dst (NUL-terminated) and advances.
 * @returns ESK_OK; ESK_EPOISON for a negative length, one of @p size bytes
 *          or more, one past the input's end, or a string holding U+0000.
 */
int esk_avro_get_string(esk_avro_in_t *in, char *dst, size_t size);

/**
 * @brief As esk_avro_get_string(), for a fast path that leaves anything
 *        unusual to the codec: only plain ASCII without U+0000 (which is
 *        valid UTF-8 too), at most @p max bytes long.
 * @returns ESK_OK, or ESK_ENOTFOUND (nothing is said about why).
 */
int esk_avro_get_ascii(esk_avro_in_t *in, char *dst, size_t size, size_t max);

#endif
