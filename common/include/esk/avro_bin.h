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
#include <string.h>

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

/**
 * A fast path's reading of one datum (a domain's field-by-field reader of
 * its own records): the first thing it is not sure of clears ok, and every
 * read after that is a no-op, so a reader reads every field and looks at ok
 * once. Strings are copied into [out, out_end), NUL-terminated.
 */
typedef struct esk_avro_fast_s {
  esk_avro_in_t in;
  char *out, *out_end;
  size_t max_string; /**< the codec's limit */
  int ok;
} esk_avro_fast_t;

/**
 * @brief Starts reading the datum data[skip, len) (skip: a header before it),
 *        its strings kept in @p str (reset and given room for all of them:
 *        each string's NUL takes the place of at least its length's byte).
 * @returns ESK_OK, or ESK_ENOTFOUND when @p str cannot hold @p len bytes.
 */
int esk_avro_fast_start(esk_avro_fast_t *r, const void *data, size_t len, size_t skip,
                        esk_buf_t *str, size_t max_string);

/** @brief A long, as the codec reads it; 0 once ok is cleared. */
static inline int64_t esk_avro_fast_long(esk_avro_fast_t *r) {
  int64_t v = 0;
  if (r->ok && esk_avro_get_long(&r->in, &v)) r->ok = 0;
  return v;
}

/** @brief A string of plain ASCII without U+0000 into dst[size]. */
static inline void esk_avro_fast_copy(esk_avro_fast_t *r, char *dst, size_t size) {
  if (r->ok && esk_avro_get_ascii(&r->in, dst, size, r->max_string)) r->ok = 0;
}

/** @brief A string of plain ASCII without U+0000, kept in [out, out_end);
 *  "" once ok is cleared. */
static inline const char *esk_avro_fast_str(esk_avro_fast_t *r) {
  char *s = r->out;
  esk_avro_fast_copy(r, s, (size_t)(r->out_end - s));
  if (!r->ok) return "";
  r->out += strlen(s) + 1;
  return s;
}

#endif
