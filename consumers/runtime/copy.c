#include "copy.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "esk/pg.h"

static void put(esk_copy_t *c, const void *p, size_t n) {
  if (!c->failed && esk_buf_append(&c->buf, p, n, NULL) != ESK_OK) c->failed = 1;
}

/* ---------------------------------------------------------- binary format --- */

/* PostgreSQL's epoch (2000-01-01) in Unix microseconds and days. */
#define PG_EPOCH_US 946684800000000LL
#define PG_EPOCH_DAYS 10957

void esk_copy_binary(esk_copy_t *c, int binary) { c->binary = binary != 0; }

static void put_be(esk_copy_t *c, uint64_t v, int bytes) {
  uint8_t b[8];
  for (int i = 0; i < bytes; i++) b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
  put(c, b, (size_t)bytes);
}

/* A binary field's length word, after the row's field count on its first. */
static void field(esk_copy_t *c, int32_t len) {
  if (!c->fields++) {
    c->row_start = c->buf.len;
    put_be(c, 0, 2); /* the count, written by esk_copy_row_end() */
  }
  put_be(c, (uint32_t)len, 4);
}

static int hex(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* The 16 bytes of @p s into @p out; 0 when it is not a uuid PostgreSQL's text
 * input reads. That input (string_to_uuid() in its uuid.c) takes 32 hex digits
 * of either case, optionally in braces, with an optional hyphen after any group
 * of four digits but the last: so a string taken here is one PostgreSQL would
 * take as text, and one refused here it would refuse too (22P02). */
static int uuid_bytes(uint8_t out[16], const char *s) {
  if (!s) return 0;
  int braces = *s == '{';
  s += braces;
  for (int i = 0; i < 16; i++) {
    int hi = hex((unsigned char)s[0]), lo = hi < 0 ? -1 : hex((unsigned char)s[1]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = (uint8_t)(hi << 4 | lo);
    s += 2;
    if (*s == '-' && i % 2 == 1 && i < 15) s++;
  }
  if (braces && *s++ != '}') return 0;
  return *s == '\0';
}

int esk_copy_uuid_binary_ok(const char *s) {
  uint8_t b[16];
  return uuid_bytes(b, s);
}

void esk_copy_uuid(esk_copy_t *c, const char *s) {
  uint8_t b[16];
  if (!c->binary || !s) {
    esk_copy_text(c, s, -1);
    return;
  }
  if (!uuid_bytes(b, s)) { /* the caller was to choose text for this batch */
    c->failed = 1;
    return;
  }
  field(c, 16);
  put(c, b, 16);
}


void esk_copy_text(esk_copy_t *c, const char *s, long len) {
  if (!s) {
    esk_copy_null(c);
    return;
  }
  size_t n = len < 0 ? strlen(s) : (size_t)len;
  if (c->binary) {
    if (n > INT32_MAX) {
      c->failed = 1;
      return;
    }
    field(c, (int32_t)n);
    put(c, s, n);
    return;
  }
  /* Worst case every byte doubles; reserve once, then write directly. */
  if (c->failed || esk_buf_reserve(&c->buf, 2 * n + 1, NULL) != ESK_OK) {
    c->failed = 1;
    return;
  }
  uint8_t *o = c->buf.data + c->buf.len;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    switch (ch) {
    case '\\': *o++ = '\\'; *o++ = '\\'; break;
    case '\t': *o++ = '\\'; *o++ = 't'; break;
    case '\n': *o++ = '\\'; *o++ = 'n'; break;
    case '\r': *o++ = '\\'; *o++ = 'r'; break;
    default: *o++ = ch;
    }
  }
  *o++ = '\t';
  c->buf.len = (size_t)(o - c->buf.data);
}

/* Integers and dates by hand: snprintf() was the largest part of a batch's
 * row building (docs/benchmarks.md, "Issue 18"). */

/* The decimal digits of @p v at @p o (no sign); returns the end. */
static char *digits(char *o, uint64_t v) {
  char t[20];
  int n = 0;
  do {
    t[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *o++ = t[--n];
  return o;
}

/* @p v as exactly @p width digits (zero-padded) at @p o; returns the end. */
static char *padded(char *o, unsigned v, int width) {
  for (int i = width - 1; i >= 0; i--, v /= 10) o[i] = (char)('0' + v % 10);
  return o + width;
}

void esk_copy_i64(esk_copy_t *c, int64_t v) {
  if (c->binary) {
    field(c, 8);
    put_be(c, (uint64_t)v, 8);
    return;
  }
  char b[24], *o = b;
  if (v < 0) *o++ = '-';
  o = digits(o, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
  *o++ = '\t';
  put(c, b, (size_t)(o - b));
}

void esk_copy_i32(esk_copy_t *c, int32_t v) {
  if (!c->binary) {
    esk_copy_i64(c, v);
    return;
  }
  field(c, 4);
  put_be(c, (uint32_t)v, 4);
}

void esk_copy_jsonb(esk_copy_t *c, const char *json, long len) {
  if (!c->binary || !json) {
    esk_copy_text(c, json, len);
    return;
  }
  size_t n = len < 0 ? strlen(json) : (size_t)len;
  if (n >= INT32_MAX) {
    c->failed = 1;
    return;
  }
  field(c, (int32_t)n + 1);
  put(c, "\1", 1); /* jsonb_recv's format version, then the JSON text */
  put(c, json, n);
}

/* Splits @p us into days since the epoch and microseconds of the day (>= 0). */
static void split_us(int64_t us, int64_t *days, int64_t *of_day) {
  const int64_t per_day = 86400LL * 1000000;
  *days = us / per_day;
  *of_day = us % per_day;
  if (*of_day < 0) {
    *of_day += per_day;
    (*days)--;
  }
}

/* YYYY-MM-DD of @p days since 1970-01-01 at @p o (the proleptic Gregorian
 * calendar, H. Hinnant's civil_from_days) into at least 32 bytes; returns the end. */
static char *civil(char *o, int64_t days) {
  int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = (int64_t)yoe + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
  unsigned m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  if (y < 0 || y > 9999) /* outside what four digits hold: let the C library say it */
    return o + snprintf(o, 32, "%04lld-%02u-%02u", (long long)y, m, d);
  o = padded(o, (unsigned)y, 4);
  *o++ = '-';
  o = padded(o, m, 2);
  *o++ = '-';
  return padded(o, d, 2);
}

void esk_copy_ts_us(esk_copy_t *c, int64_t us) {
  if (c->binary) {
    field(c, 8);
    put_be(c, (uint64_t)(us - PG_EPOCH_US), 8);
    return;
  }
  int64_t days, t;
  char b[64], *o;
  split_us(us, &days, &t);
  o = civil(b, days);
  *o++ = ' ';
  o = padded(o, (unsigned)(t / 3600000000LL), 2);
  *o++ = ':';
  o = padded(o, (unsigned)(t / 60000000 % 60), 2);
  *o++ = ':';
  o = padded(o, (unsigned)(t / 1000000 % 60), 2);
  *o++ = '.';
  o = padded(o, (unsigned)(t % 1000000), 6);
  memcpy(o, "+00\t", 4);
  put(c, b, (size_t)(o + 4 - b));
}

void esk_copy_day_us(esk_copy_t *c, int64_t us) {
  int64_t days, t;
  char b[48], *o;
  split_us(us, &days, &t);
  if (c->binary) {
    field(c, 4);
    put_be(c, (uint32_t)(int32_t)(days - PG_EPOCH_DAYS), 4);
    return;
  }
  o = civil(b, days);
  *o++ = '\t';
  put(c, b, (size_t)(o - b));
}

void esk_copy_null(esk_copy_t *c) {
  if (c->binary)
    field(c, -1);
  else
    put(c, "\\N\t", 3);
}

void esk_copy_row_end(esk_copy_t *c) {
  if (c->binary) {
    if (!c->failed && c->fields) {
      c->buf.data[c->row_start] = (uint8_t)(c->fields >> 8);
      c->buf.data[c->row_start + 1] = (uint8_t)c->fields;
    }
    c->fields = 0;
  } else if (!c->failed && c->buf.len && c->buf.data[c->buf.len - 1] == '\t') {
    c->buf.data[c->buf.len - 1] = '\n';
  }
  c->rows++;
}

void esk_copy_reset(esk_copy_t *c) {
  esk_buf_reset(&c->buf);
  c->rows = 0;
  c->failed = 0;
  c->fields = 0;
}

void esk_copy_free(esk_copy_t *c) {
  esk_copy_abort(c);
  esk_buf_free(&c->buf);
  c->rows = 0;
  c->failed = 0;
  c->fields = 0;
}

/* PostgreSQL's refusal of @p r (or the lost connection) as an esk error. */
static int refused(PGconn *pg, PGresult *r, const char *what, esk_error_t *err) {
  int code = esk_pg_error_code(pg, r);
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  char msg[ESK_ERROR_MSG_MAX];
  snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
  msg[strcspn(msg, "\n")] = '\0';
  return esk_error_set(err, code, "%s: %s%s%s", what, state ? state : "", state ? " " : "",
                       msg[0] ? msg : "connection lost");
}

/* Starts the COPY on @p pg: the statement, then (binary) the file header. */
static int start(esk_copy_t *c, PGconn *pg, const char *what, const char *copy_sql,
                 esk_error_t *err) {
  char sql[1024];
  if (c->binary && snprintf(sql, sizeof(sql), "%s with (format binary)", copy_sql) >=
                       (int)sizeof(sql))
    return esk_error_set(err, ESK_EINVAL, "%s: COPY statement too long", what);
  PGresult *r = PQexec(pg, c->binary ? sql : copy_sql);
  int rc = PQresultStatus(r) == PGRES_COPY_IN ? ESK_OK : refused(pg, r, what, err);
  PQclear(r);
  if (rc) return rc;
  c->streaming = pg;
  /* binary: the signature, flags and header extension */
  static const char head[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};
  if (c->binary && PQputCopyData(pg, head, sizeof(head)) != 1) c->lost = 1;
  return ESK_OK;
}

/* Sends the buffered bytes of a started COPY and empties the buffer. */
static void put_buffered(esk_copy_t *c) {
  if (c->buf.len && !c->lost &&
      PQputCopyData(c->streaming, (const char *)c->buf.data, (int)c->buf.len) != 1)
    c->lost = 1;
  esk_buf_reset(&c->buf);
}

/* Ends a started COPY (@p abort_msg non-NULL: makes the server refuse it) and
 * reads its outcome. */
static int finish(esk_copy_t *c, const char *what, const char *abort_msg, esk_error_t *err) {
  PGconn *pg = c->streaming;
  int ok = !c->lost && (abort_msg || !c->binary || PQputCopyData(pg, "\377\377", 2) == 1);
  const char *why = abort_msg ? abort_msg : ok ? NULL : "client could not send the rows";
  ok = PQputCopyEnd(pg, why) == 1 && ok;
  int rc = ESK_OK;
  PGresult *r;
  while ((r = PQgetResult(pg))) {
    if (rc == ESK_OK && PQresultStatus(r) != PGRES_COMMAND_OK && !abort_msg)
      rc = refused(pg, r, what, err);
    PQclear(r);
    if (PQstatus(pg) != CONNECTION_OK) break;
  }
  if (rc == ESK_OK && !ok && !abort_msg)
    rc = esk_error_set(err, ESK_ERETRY, "%s: sending rows failed: %s", what, PQerrorMessage(pg));
  c->streaming = NULL;
  c->lost = 0;
  esk_copy_reset(c);
  return rc;
}

static int over(esk_copy_t *c, const char *what, esk_error_t *err) {
  if (c->streaming) finish(c, what, "a field did not fit", NULL); /* and resets */
  else esk_copy_reset(c);
  return esk_error_set(err, ESK_ENOMEM,
                       "%s: batch rows exceed the buffer's maximum, or a field does not "
                       "take the batch's format (esk_copy_uuid in binary)", what);
}

int esk_copy_stream(esk_copy_t *c, PGconn *pg, const char *what, const char *copy_sql,
                    esk_error_t *err) {
  if (c->failed) return over(c, what, err);
  if (!c->buf.len) return ESK_OK;
  int rc;
  if (!c->streaming && (rc = start(c, pg, what, copy_sql, err))) {
    esk_copy_reset(c);
    return rc;
  }
  put_buffered(c);
  return ESK_OK;
}

int esk_copy_send(esk_copy_t *c, PGconn *pg, const char *what, const char *copy_sql,
                  esk_error_t *err) {
  if (!c->failed && !c->rows && !c->streaming) return ESK_OK;
  int rc = esk_copy_stream(c, pg, what, copy_sql, err);
  return rc ? rc : finish(c, what, NULL, err);
}

void esk_copy_abort(esk_copy_t *c) {
  if (c->streaming) finish(c, "", "the batch was abandoned", NULL);
  esk_copy_reset(c);
}
