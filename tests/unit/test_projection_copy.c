/* COPY text rows (consumers/runtime/copy.c): escaping, timestamps, days, the
 * buffer's maximum. No server: the bytes are compared. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "copy.h"
#include "esk_test_uuids.h"

static char *text(esk_copy_t *c) {
  static char buf[512];
  snprintf(buf, sizeof(buf), "%.*s", (int)c->buf.len, (const char *)c->buf.data);
  return buf;
}

Test(projection_copy, fields_are_escaped_and_rows_end_with_a_newline) {
  esk_copy_t c = {0};
  esk_copy_text(&c, "a\tb\\c\nd\re", -1);
  esk_copy_i64(&c, -42);
  esk_copy_null(&c);
  esk_copy_text(&c, "xyz", 2);
  esk_copy_row_end(&c);
  cr_assert_str_eq(text(&c), "a\\tb\\\\c\\nd\\re\t-42\t\\N\txy\n");
  cr_assert_eq(c.rows, 1);
  esk_copy_free(&c);
}

Test(projection_copy, timestamps_and_days_are_utc_with_microseconds) {
  esk_copy_t c = {0};
  esk_copy_ts_us(&c, 1767225600123456LL); /* 2026-01-01T00:00:00.123456Z */
  esk_copy_ts_us(&c, -1);                  /* one microsecond before the epoch */
  esk_copy_day_us(&c, 1767225599999999LL);
  esk_copy_row_end(&c);
  cr_assert_str_eq(text(&c), "2026-01-01 00:00:00.123456+00\t1969-12-31 23:59:59.999999+00\t"
                             "2025-12-31\n");
  esk_copy_free(&c);
}

/* The hand-written formatting against the C library's, over dates from
 * 1900 to 2200 and both signs of integers. */
Test(projection_copy, integers_timestamps_and_days_read_as_the_c_library_writes_them) {
  static const int64_t ints[] = {0, 1, -1, 9, 10, 99, -100, 1234567890123LL, INT64_MAX, INT64_MIN};
  for (size_t i = 0; i < sizeof(ints) / sizeof(*ints); i++) {
    esk_copy_t c = {0};
    char want[32];
    esk_copy_i64(&c, ints[i]);
    snprintf(want, sizeof(want), "%lld\t", (long long)ints[i]);
    cr_assert_str_eq(text(&c), want);
    esk_copy_free(&c);
  }
  for (int64_t s = -2208988800LL; s < 7258118400LL; s += 7777777) { /* 1900 .. 2200 */
    esk_copy_t c = {0};
    int64_t us = s * 1000000 + (s % 1000000 + 1000000) % 1000000;
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    char want[96];
    snprintf(want, sizeof(want), "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00\t%04d-%02d-%02d\t",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long long)(us - s * 1000000), tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    esk_copy_ts_us(&c, us);
    esk_copy_day_us(&c, us);
    cr_assert_str_eq(text(&c), want, "at %lld s", (long long)s);
    esk_copy_free(&c);
  }
}

Test(projection_copy, a_row_over_the_maximum_fails_the_send_without_io) {
  esk_copy_t c = {0};
  esk_buf_init(&c.buf, 64);
  char big[100];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  esk_copy_text(&c, big, -1);
  esk_copy_row_end(&c);
  cr_assert(c.failed);
  esk_error_t err = {0};
  cr_assert_eq(esk_copy_send(&c, NULL, "test", "copy t from stdin", &err), ESK_ENOMEM);
  cr_assert_not_null(strstr(err.msg, "maximum"), "%s", err.msg);
  cr_assert_eq(c.rows, 0);
  esk_copy_free(&c);
}

/* Binary format: a field count per row, then each field's length and its
 * value as PostgreSQL's binary input reads it (big-endian; times from
 * 2000-01-01). */
Test(projection_copy, binary_rows_are_counted_fields_of_length_and_value) {
  esk_copy_t c = {0};
  esk_copy_binary(&c, 1);
  esk_copy_text(&c, "a\tb", -1);
  esk_copy_i64(&c, -2);
  esk_copy_null(&c);
  esk_copy_ts_us(&c, 946684800000001LL); /* 2000-01-01T00:00:00.000001Z */
  esk_copy_day_us(&c, 946684800000000LL - 1); /* 1999-12-31 */
  esk_copy_uuid(&c, "{00112233-4455-6677-8899AABB-CCDDEEFF}");
  esk_copy_i32(&c, -3);
  esk_copy_jsonb(&c, "{}", -1);
  esk_copy_row_end(&c);
  static const unsigned char want[] = {
      0, 8,                                                  /* fields */
      0, 0, 0, 3, 'a', '\t', 'b',                            /* text, unescaped */
      0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, /* bigint -2 */
      0xff, 0xff, 0xff, 0xff,                                /* NULL */
      0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1,                    /* timestamptz */
      0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff,                    /* date: day -1 */
      0, 0, 0, 16, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
      0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,         /* uuid */
      0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfd,                    /* int -3 */
      0, 0, 0, 3, 1, '{', '}'};                              /* jsonb: version 1, text */
  cr_assert_eq(c.buf.len, sizeof(want));
  cr_assert_eq(memcmp(c.buf.data, want, sizeof(want)), 0);
  cr_assert_eq(c.rows, 1);
  cr_assert_not(c.failed);
  esk_copy_reset(&c);
  esk_copy_i64(&c, 7); /* the format holds across a reset */
  esk_copy_row_end(&c);
  cr_assert_eq(c.buf.len, 2 + 4 + 8);
  esk_copy_free(&c);
}

/* The uuids PostgreSQL's text input reads (its uuid.c, string_to_uuid()), and
 * only those: integration.projections asks the server about the same strings. */
Test(projection_copy, uuids_in_binary_are_the_ones_postgresql_reads) {
  for (int i = 0; esk_test_uuid_texts[i].s; i++)
    cr_expect_eq(esk_copy_uuid_binary_ok(esk_test_uuid_texts[i].s), esk_test_uuid_texts[i].ok,
                 "'%s'", esk_test_uuid_texts[i].s);
  cr_assert_not(esk_copy_uuid_binary_ok(NULL));
  esk_copy_t c = {0};
  esk_copy_binary(&c, 1);
  esk_copy_uuid(&c, "not-a-uuid"); /* the caller was to choose text */
  cr_assert(c.failed);
  esk_copy_free(&c);
  esk_copy_t t = {0};
  esk_copy_uuid(&t, "not-a-uuid"); /* text: PostgreSQL judges it */
  esk_copy_row_end(&t);
  cr_assert_str_eq(text(&t), "not-a-uuid\n");
  esk_copy_free(&t);
}
