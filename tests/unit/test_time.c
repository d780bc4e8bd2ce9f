/* esk/time.h (common/src/time.c): the clocks, sleeping and the RFC 3339 parser
 * and formatter that esk-projector --from-time and the log use. The start at a
 * time itself runs against the real broker and PostgreSQL in
 * tests/integration/test_replay.c. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "esk/time.h"

static int64_t ok(const char *s) {
  int64_t ms = -1;
  esk_error_t err = {0};
  cr_assert_eq(esk_time_parse_rfc3339(&ms, s, &err), ESK_OK, "%s: %s", s, err.msg);
  return ms;
}

static void bad(const char *s, const char *needle) {
  int64_t ms = 42;
  esk_error_t err = {0};
  cr_assert_eq(esk_time_parse_rfc3339(&ms, s, &err), ESK_EINVAL, "accepted '%s'", s);
  cr_expect_eq(ms, 42, "'%s' changed the output", s);
  cr_expect(strstr(err.msg, needle), "'%s': message '%s' lacks '%s'", s, err.msg, needle);
}

Test(time, rfc3339_forms) {
  cr_expect_eq(ok("2026-01-15T10:00:00Z"), INT64_C(1768471200000));
  cr_expect_eq(ok("2026-01-15t10:00:00z"), INT64_C(1768471200000));
  cr_expect_eq(ok("2026-01-15 10:00:00Z"), INT64_C(1768471200000));
  cr_expect_eq(ok("2026-01-15T11:00:00+01:00"), INT64_C(1768471200000));
  cr_expect_eq(ok("2026-01-15T08:30:00-01:30"), INT64_C(1768471200000));
  cr_expect_eq(ok("2026-01-15T10:00:00.25Z"), INT64_C(1768471200250));
  cr_expect_eq(ok("2026-01-15T10:00:00.123456789Z"), INT64_C(1768471200123));
  cr_expect_eq(ok("1970-01-01T00:00:00Z"), 0);
  cr_expect_eq(ok("2024-02-29T00:00:00Z"), INT64_C(1709164800000));
}

Test(time, formatted_times_read_back) {
  static const int64_t times[] = {0, 1768471200250, 1709164800000, 1795348800123, 999};
  char s[32];
  for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
    esk_time_format_rfc3339(s, sizeof(s), times[i]);
    cr_expect_eq(ok(s), times[i], "%s", s);
  }
  esk_time_format_rfc3339(s, sizeof(s), 1768471200250);
  cr_expect_str_eq(s, "2026-01-15T10:00:00.250Z");
}

Test(time, malformed_truncated_and_hostile_times_are_refused) {
  bad(NULL, "expected RFC 3339");
  bad("", "expected RFC 3339");
  bad("2026-01-15", "expected RFC 3339");
  bad("2026-01-15T10:00", "expected RFC 3339");
  bad("2026-01-15T10:00:00", "no time zone");
  bad("2026-01-15T10:00:00.Z", "no digits");
  bad("2026-01-15T10:00:00+1:00", "bad UTC offset");
  bad("2026-01-15T10:00:00+25:00", "bad UTC offset");
  bad("2026-01-15T10:00:00Zjunk", "unexpected");
  bad("2026-13-01T00:00:00Z", "out of range");
  bad("2026-02-30T00:00:00Z", "no such day");
  bad("2026-01-15T24:00:00Z", "out of range");
  bad("1969-12-31T23:59:59Z", "out of range");
  bad("+2026-01-15T10:00:00Z", "expected RFC 3339");
  bad("20260115T100000Z", "expected RFC 3339");
  char *big = malloc(100000);
  memset(big, '9', 99999);
  big[99999] = '\0';
  bad(big, "expected RFC 3339");
  free(big);
}

Test(time, clocks_agree_and_sleep_waits_at_least_its_time) {
  int64_t ns = esk_time_mono_ns(), us = esk_time_mono_us(), ms = esk_time_mono_ms();
  cr_expect(us >= ns / 1000 && ms >= ns / 1000000, "monotonic clocks out of step");
  cr_expect(esk_time_real_ms() > INT64_C(1768471200000) - 366LL * 86400 * 1000 * 10,
            "the wall clock reads %lld ms", (long long)esk_time_real_ms());
  esk_time_sleep_ms(0);
  esk_time_sleep_ms(-5);
  int64_t t0 = esk_time_mono_ms();
  esk_time_sleep_ms(30);
  int64_t waited = esk_time_mono_ms() - t0;
  cr_expect(waited >= 30, "slept %lld ms of 30", (long long)waited);
  double s0 = esk_time_mono_s();
  cr_expect(s0 * 1000 >= (double)t0, "seconds and milliseconds disagree");
}
