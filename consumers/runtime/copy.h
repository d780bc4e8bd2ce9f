/**
 * @file copy.h
 * @brief Rows for PostgreSQL's COPY ... FROM STDIN, in text or binary format,
 *        built in a buffer and sent in one go: how projections write a batch
 *        set-wise.
 *
 * A row is a sequence of esk_copy_*() field calls closed by esk_copy_row_end().
 * Text fields are escaped (backslash, tab, newline, carriage return), so any
 * string is safe; nothing is ever spliced into SQL.
 *
 * In binary format (esk_copy_binary(), before a batch's first row) each field
 * is written as the column's binary value, so the column types must be
 * exactly: text for esk_copy_text, bigint for esk_copy_i64, int for
 * esk_copy_i32, timestamptz for esk_copy_ts_us, date for esk_copy_day_us, uuid
 * for esk_copy_uuid, jsonb for esk_copy_jsonb. PostgreSQL then parses no
 * numbers, times or uuids (docs/benchmarks.md, "Binary COPY").
 */
#ifndef ESK_COPY_H
#define ESK_COPY_H

#include <libpq-fe.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/error.h"

/** A COPY text buffer. Zero-initialise; free with esk_copy_free(). */
typedef struct esk_copy_s {
  esk_buf_t buf;
  size_t rows;
  int failed; /**< set when a field did not fit (out of memory or over the maximum) */
  int binary; /**< PostgreSQL's binary COPY format (esk_copy_binary()) */
  size_t row_start; /**< binary: where the current row's field count goes */
  int fields;       /**< binary: fields of the current row so far */
  PGconn *streaming; /**< the connection of a COPY started by esk_copy_stream() */
  int lost;          /**< sending to a started COPY failed */
} esk_copy_t;

/**
 * @brief Chooses the format of the rows to come: binary (1) or text (0). Call
 *        it with no row buffered (after esk_copy_reset() or a send).
 */
void esk_copy_binary(esk_copy_t *c, int binary);

/**
 * @brief Whether @p s is a uuid esk_copy_uuid() can write in binary format:
 *        exactly the strings PostgreSQL's uuid text input reads (32 hex digits
 *        of either case, optionally in braces, an optional hyphen after any
 *        group of four digits but the last). PostgreSQL refuses every other
 *        string as a uuid (SQLSTATE 22P02).
 */
int esk_copy_uuid_binary_ok(const char *s);

/** @brief A uuid field from its text (text format: as is; binary: 16 bytes). */
void esk_copy_uuid(esk_copy_t *c, const char *s);

/** @brief A text field (NULL writes SQL NULL). @p len -1: strlen. */
void esk_copy_text(esk_copy_t *c, const char *s, long len);
/** @brief An integer field. */
void esk_copy_i64(esk_copy_t *c, int64_t v);
/** @brief An int (int4) field. */
void esk_copy_i32(esk_copy_t *c, int32_t v);
/** @brief A jsonb field from its JSON text (binary: jsonb's version byte, then the text;
 *         PostgreSQL parses the JSON either way). @p len -1: strlen. */
void esk_copy_jsonb(esk_copy_t *c, const char *json, long len);
/** @brief A timestamptz field from microseconds since the epoch (UTC). */
void esk_copy_ts_us(esk_copy_t *c, int64_t us);
/** @brief A date field (the UTC day of @p us microseconds since the epoch). */
void esk_copy_day_us(esk_copy_t *c, int64_t us);
/** @brief A NULL field. */
void esk_copy_null(esk_copy_t *c);
/** @brief Ends the current row. */
void esk_copy_row_end(esk_copy_t *c);

/** @brief Drops the buffered rows, keeps the storage. */
void esk_copy_reset(esk_copy_t *c);
/** @brief Frees the storage. */
void esk_copy_free(esk_copy_t *c);

/**
 * @brief Sends the buffered rows with @p copy_sql (`copy t (a, b) from stdin`,
 *        to which binary format adds `with (format binary)`), ends the COPY and
 *        resets the buffer. Nothing buffered and no COPY started: does nothing.
 * @returns ESK_OK, or esk_pg_error_code()'s code (ESK_EPOISON for data the
 *          table refuses, ESK_ERETRY for a lost connection) with PostgreSQL's
 *          message prefixed by @p what; ESK_ENOMEM when a field did not fit, or
 *          a uuid was not one esk_copy_uuid_binary_ok() takes in binary format.
 */
int esk_copy_send(esk_copy_t *c, PGconn *pg, const char *what, const char *copy_sql,
                  esk_error_t *err);

/** Bytes of rows a projection buffers before it streams them (esk_copy_stream()). */
#define ESK_COPY_STREAM_BYTES ((size_t)256 << 10)

/**
 * @brief Sends the rows buffered so far, starting the COPY on @p pg if this is
 *        the first part, and leaves it open: PostgreSQL writes them while the
 *        caller builds the next ones (docs/projector.md, "A batch's rows are
 *        streamed"). esk_copy_send() sends the rest and ends it; until then,
 *        @p pg runs nothing else. A refused row is reported by esk_copy_send().
 * @returns ESK_OK, or an error of starting the COPY (esk_copy_send()'s codes);
 *          the buffer is empty either way.
 */
int esk_copy_stream(esk_copy_t *c, PGconn *pg, const char *what, const char *copy_sql,
                    esk_error_t *err);

/** @brief Drops the buffered rows and makes PostgreSQL refuse a started COPY
 *         (its transaction is then to be rolled back). */
void esk_copy_abort(esk_copy_t *c);

#endif
