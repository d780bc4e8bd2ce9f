/**
 * @file text.h
 * @brief Text esk writes without printf (paths that run once per command or
 *        event): decimal numbers, JSON strings, and the UTF-8 check.
 */
#ifndef ESK_TEXT_H
#define ESK_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/error.h"

/** Bytes esk_text_i64() needs: "-9223372036854775808" and its NUL. */
#define ESK_TEXT_I64_MAX 21

/**
 * @brief The offset of the first byte of @p s[0..n) that is U+0000 or does not
 *        start a well-formed UTF-8 sequence (RFC 3629: no overlong forms,
 *        surrogates or code points over U+10FFFF); @p n when there is none.
 *        What a string must pass to be decoded (see esk_codec_refusal()).
 */
size_t esk_utf8_check(const void *s, size_t n);

/**
 * @brief Writes @p v in decimal, NUL-terminated, at the start of @p buf (at
 *        least ESK_TEXT_I64_MAX bytes).
 * @returns its length without the NUL.
 */
size_t esk_text_i64(char *buf, int64_t v);

/**
 * @brief Appends the @p n bytes at @p s as a quoted JSON string to @p buf at
 *        @p off, like snprintf: bytes past @p size are counted, not written
 *        (no NUL is written). Quotes, backslashes and control characters
 *        (U+0000 too) are escaped, `\n`, `\t`, `\r`, `\b`, `\f` or else `\u00XX`
 *        (as jansson writes them); UTF-8 is kept as it is. JSON
 *        cannot hold a byte that is not UTF-8: each such byte is written
 *        `\udcXX`, a lone surrogate, as Python's surrogateescape does, so that
 *        it names no valid text (jansson refuses to read it).
 * @returns @p off plus the length of the JSON string.
 */
size_t esk_text_json_str(char *buf, size_t size, size_t off, const char *s, size_t n);

/**
 * @brief Percent-decodes the NUL-terminated @p s in place: each `%HH` (two
 *        hexadecimal digits, either case) becomes its byte; a `%` not
 *        followed by two such digits stays as it is, as libmicrohttpd leaves
 *        it. `+` is not a space (this is for paths).
 * @returns the decoded length; the result may hold NUL bytes (from `%00`),
 *          so compare it with strlen() to find them.
 */
size_t esk_text_pct_decode(char *s);

/** @brief esk_text_json_str() appended to @p b.
 *  @returns ESK_OK, or ESK_ENOMEM when @p b would pass its maximum. */
int esk_text_json_buf(esk_buf_t *b, const char *s, size_t n, esk_error_t *err);

#endif
