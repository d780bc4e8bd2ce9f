/* COPY text rows (consumers/runtime/copy.c): escaping, timestamps, days, the
 * buffer's maximum. No server: the bytes are compared. */
#include <criterion/criterion.h>
#include <string.h>

#include "copy.h"

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
