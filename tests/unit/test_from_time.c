/* esk-projector --from-time: the RFC 3339 parser (consumers/runtime/from_time.c).
 * The start at a time itself runs against the real broker and PostgreSQL in
 * tests/integration/test_replay.c. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "from_time.h"

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

Test(from_time, rfc3339_forms) {
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

Test(from_time, formatted_times_read_back) {
  static const int64_t times[] = {0, 1768471200250, 1709164800000, 1795348800123, 999};
  char s[32];
  for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
    esk_time_format_rfc3339(s, sizeof(s), times[i]);
    cr_expect_eq(ok(s), times[i], "%s", s);
  }
  esk_time_format_rfc3339(s, sizeof(s), 1768471200250);
  cr_expect_str_eq(s, "2026-01-15T10:00:00.250Z");
}

Test(from_time, malformed_truncated_and_hostile_times_are_refused) {
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
