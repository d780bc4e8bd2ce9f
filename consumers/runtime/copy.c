#include "copy.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "esk/pg.h"

static void put(esk_copy_t *c, const void *p, size_t n) {
  if (!c->failed && esk_buf_append(&c->buf, p, n, NULL) != ESK_OK) c->failed = 1;
}


void esk_copy_text(esk_copy_t *c, const char *s, long len) {
  if (!s) {
    esk_copy_null(c);
    return;
  }
  size_t n = len < 0 ? strlen(s) : (size_t)len;
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

void esk_copy_i64(esk_copy_t *c, int64_t v) {
  char b[24];
  int n = snprintf(b, sizeof(b), "%" PRId64 "\t", v);
  put(c, b, (size_t)n);
}

static void split_us(int64_t us, struct tm *tm, long *frac) {
  int64_t secs = us / 1000000, f = us % 1000000;
  if (f < 0) {
    f += 1000000;
    secs--;
  }
  time_t t = (time_t)secs;
  gmtime_r(&t, tm);
  *frac = (long)f;
}

void esk_copy_ts_us(esk_copy_t *c, int64_t us) {
  struct tm tm;
  long frac;
  char b[48];
  split_us(us, &tm, &frac);
  int n = snprintf(b, sizeof(b), "%04d-%02d-%02d %02d:%02d:%02d.%06ld+00\t", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  put(c, b, (size_t)n);
}

void esk_copy_day_us(esk_copy_t *c, int64_t us) {
  struct tm tm;
  long frac;
  char b[24];
  split_us(us, &tm, &frac);
  int n = snprintf(b, sizeof(b), "%04d-%02d-%02d\t", tm.tm_year + 1900, tm.tm_mon + 1,
                   tm.tm_mday);
  put(c, b, (size_t)n);
}

void esk_copy_null(esk_copy_t *c) { put(c, "\\N\t", 3); }

void esk_copy_row_end(esk_copy_t *c) {
  if (!c->failed && c->buf.len && c->buf.data[c->buf.len - 1] == '\t')
    c->buf.data[c->buf.len - 1] = '\n';
  c->rows++;
}

void esk_copy_reset(esk_copy_t *c) {
  esk_buf_reset(&c->buf);
  c->rows = 0;
  c->failed = 0;
}

void esk_copy_free(esk_copy_t *c) {
  esk_buf_free(&c->buf);
  c->rows = 0;
  c->failed = 0;
}

int esk_copy_send(esk_copy_t *c, PGconn *pg, const char *what, const char *copy_sql,
                  esk_error_t *err) {
  if (c->failed) {
    esk_copy_reset(c);
    return esk_error_set(err, ESK_ENOMEM, "%s: batch rows exceed the buffer's maximum", what);
  }
  if (!c->rows) return ESK_OK;
  PGresult *r = PQexec(pg, copy_sql);
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    int code = esk_pg_error_code(pg, r);
    char msg[ESK_ERROR_MSG_MAX];
    snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
    msg[strcspn(msg, "\n")] = '\0';
    PQclear(r);
    esk_copy_reset(c);
    return esk_error_set(err, code, "%s: %s", what, msg[0] ? msg : "connection lost");
  }
  PQclear(r);
  int ok = PQputCopyData(pg, (const char *)c->buf.data, (int)c->buf.len) == 1;
  ok = PQputCopyEnd(pg, ok ? NULL : "client could not send the rows") == 1 && ok;
  int rc = ESK_OK;
  while ((r = PQgetResult(pg))) {
    if (rc == ESK_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
      int code = esk_pg_error_code(pg, r);
      const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      char msg[ESK_ERROR_MSG_MAX];
      snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
      msg[strcspn(msg, "\n")] = '\0';
      rc = esk_error_set(err, code, "%s: %s%s%s", what, state ? state : "", state ? " " : "",
                         msg[0] ? msg : "connection lost");
    }
    PQclear(r);
    if (PQstatus(pg) != CONNECTION_OK) break;
  }
  if (rc == ESK_OK && !ok)
    rc = esk_error_set(err, ESK_ERETRY, "%s: sending rows failed: %s", what, PQerrorMessage(pg));
  esk_copy_reset(c);
  return rc;
}
