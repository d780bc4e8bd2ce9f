#define _GNU_SOURCE /* timegm */
#include "esk/time.h"

#include <stdio.h>
#include <time.h>

static int64_t read_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t esk_time_mono_ns(void) { return read_ns(CLOCK_MONOTONIC); }
int64_t esk_time_mono_us(void) { return read_ns(CLOCK_MONOTONIC) / 1000; }
int64_t esk_time_mono_ms(void) { return read_ns(CLOCK_MONOTONIC) / 1000000; }
double esk_time_mono_s(void) { return (double)read_ns(CLOCK_MONOTONIC) / 1e9; }
int64_t esk_time_real_us(void) { return read_ns(CLOCK_REALTIME) / 1000; }
int64_t esk_time_real_ms(void) { return read_ns(CLOCK_REALTIME) / 1000000; }

void esk_time_sleep_ms(int64_t ms) {
  if (ms <= 0) return;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* The fraction after the seconds (".250"), in microseconds; digits past the
 * sixth are read and dropped. @returns the text after it, or NULL when a '.'
 * has no digits. */
static const char *parse_fraction(const char *p, int64_t *us) {
  *us = 0;
  if (*p != '.') return p;
  int digits = 0;
  for (p++; *p >= '0' && *p <= '9'; p++, digits++)
    if (digits < 6) *us = *us * 10 + (*p - '0');
  if (!digits) return NULL;
  for (; digits < 6; digits++) *us *= 10;
  return p;
}

/* The zone (Z or +hh:mm) at @p *pp into seconds east of UTC. */
static int parse_zone(const char **pp, int64_t *offset_s, const char *s, esk_error_t *err) {
  const char *p = *pp;
  int oh, om, n = 0;
  *offset_s = 0;
  if (*p == 'Z' || *p == 'z') {
    *pp = p + 1;
    return ESK_OK;
  }
  if (*p != '+' && *p != '-')
    return esk_error_set(err, ESK_EINVAL, "time '%.64s': no time zone (expected Z or +hh:mm)", s);
  if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5 || oh > 23 || om > 59)
    return esk_error_set(err, ESK_EINVAL, "time '%.64s': bad UTC offset (expected +hh:mm)", s);
  *offset_s = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
  *pp = p + 6;
  return ESK_OK;
}

/* Parses @p s into whole seconds since the epoch (@p sec_out) and the
 * fraction in microseconds (@p us_out). */
static int parse_rfc3339(int64_t *sec_out, int64_t *us_out, const char *s, esk_error_t *err) {
  struct tm tm = {0};
  int y, mo, d, h, mi, sec, n = 0;
  if (!s || sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10 ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      sscanf(s + 11, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8)
    return esk_error_set(err, ESK_EINVAL,
                         "time '%.64s': expected RFC 3339, e.g. 2026-01-15T10:00:00Z", s ? s : "");
  int64_t us, offset_s;
  const char *p = parse_fraction(s + 19, &us);
  if (!p) return esk_error_set(err, ESK_EINVAL, "time '%.64s': no digits after '.'", s);
  int rc = parse_zone(&p, &offset_s, s, err);
  if (rc) return rc;
  if (*p) return esk_error_set(err, ESK_EINVAL, "time '%.64s': unexpected '%.32s' at the end", s, p);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
    return esk_error_set(err, ESK_EINVAL, "time '%.64s': a field is out of range", s);
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  struct tm back;
  gmtime_r(&t, &back);
  if (back.tm_mday != d && sec != 60)
    return esk_error_set(err, ESK_EINVAL, "time '%.64s': no such day", s);
  *sec_out = (int64_t)t - offset_s;
  *us_out = us;
  return ESK_OK;
}

int esk_time_parse_rfc3339(int64_t *out_ms, const char *s, esk_error_t *err) {
  int64_t sec, us;
  int rc = parse_rfc3339(&sec, &us, s, err);
  if (!rc) *out_ms = sec * 1000 + us / 1000;
  return rc;
}

int esk_time_parse_rfc3339_us(int64_t *out_us, const char *s, esk_error_t *err) {
  int64_t sec, us;
  int rc = parse_rfc3339(&sec, &us, s, err);
  if (!rc) *out_us = sec * 1000000 + us;
  return rc;
}

/* @p t in units of 1/@p per_s second since the epoch, as RFC 3339 in UTC with
 * @p digits fraction digits ("?" before the epoch). */
static void format_rfc3339(char *out, size_t size, int64_t t, int64_t per_s, int digits) {
  time_t sec = (time_t)(t / per_s);
  struct tm tm;
  char s[32] = "?";
  if (t >= 0 && gmtime_r(&sec, &tm)) strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, size, "%s.%0*dZ", s, digits, (int)(t >= 0 ? t % per_s : 0));
}

void esk_time_format_rfc3339_us(char *out, size_t size, int64_t us) {
  format_rfc3339(out, size, us, 1000000, 6);
}

void esk_time_format_rfc3339(char *out, size_t size, int64_t ms) {
  format_rfc3339(out, size, ms, 1000, 3);
}
