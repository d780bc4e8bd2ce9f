/* esk/text.h (common/src/text.c): the UTF-8 check, decimal numbers and the
 * one JSON string writer (results, event_log payloads, schema canonical forms). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/text.h"

Test(text, i64_writes_every_magnitude_and_sign) {
  static const struct {
    int64_t v;
    const char *s;
  } cases[] = {{0, "0"},
               {7, "7"},
               {-7, "-7"},
               {1000000, "1000000"},
               {INT64_MAX, "9223372036854775807"},
               {INT64_MIN, "-9223372036854775808"}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char buf[ESK_TEXT_I64_MAX];
    memset(buf, 'x', sizeof(buf));
    size_t n = esk_text_i64(buf, cases[i].v);
    cr_expect_str_eq(buf, cases[i].s);
    cr_expect_eq(n, strlen(cases[i].s));
  }
}

/* Writes @p s as JSON and reads it back with jansson. */
static char *round_trip(const char *s, size_t n, size_t *out_len) {
  char buf[256];
  size_t len = esk_text_json_str(buf, sizeof(buf), 0, s, n);
  cr_assert_lt(len, sizeof(buf));
  json_error_t je;
  json_t *j = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  cr_assert(j, "'%.*s' is not JSON: %s", (int)len, buf, je.text);
  cr_assert(json_is_string(j));
  *out_len = json_string_length(j);
  char *r = malloc(*out_len + 1);
  memcpy(r, json_string_value(j), *out_len + 1);
  json_decref(j);
  return r;
}

Test(text, json_strings_read_back_as_written) {
  static const char *const texts[] = {"", "plain", "q\"uote", "back\\slash", "new\nline\ttab",
                                      "\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"};
  for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    size_t n = 0;
    char *r = round_trip(texts[i], strlen(texts[i]), &n);
    cr_expect_eq(n, strlen(texts[i]));
    cr_expect_str_eq(r, texts[i]);
    free(r);
  }
  size_t n = 0;
  char *r = round_trip("a\0b", 3, &n); /* U+0000 is escaped, not a terminator */
  cr_expect_eq(n, 3);
  cr_expect_eq(memcmp(r, "a\0b", 3), 0);
  free(r);
}

Test(text, json_strings_escape_controls_and_bytes_that_are_not_utf8) {
  char buf[64];
  size_t n = esk_text_json_str(buf, sizeof(buf), 0, "a\"\\\n\xff\xc3", 6);
  cr_assert_lt(n, sizeof(buf));
  buf[n] = '\0';
  cr_expect_str_eq(buf, "\"a\\\"\\\\\\n\\udcff\\udcc3\"");
  json_error_t je;
  cr_expect_null(json_loadb(buf, n, JSON_DECODE_ANY, &je), "a lone surrogate was read back");
}

Test(text, json_strings_that_do_not_fit_are_counted_not_written) {
  char buf[8];
  memset(buf, '#', sizeof(buf));
  size_t need = esk_text_json_str(buf, 4, 0, "abcdef", 6);
  cr_expect_eq(need, 8);
  cr_expect_eq(buf[4], '#', "wrote past the size");
  cr_expect_eq(esk_text_json_str(NULL, 0, 10, "\x01", 1), 10 + 8);
  /* hostile: 64 KiB of quotes, each doubled */
  size_t big = 65536;
  char *q = malloc(big);
  memset(q, '"', big);
  cr_expect_eq(esk_text_json_str(NULL, 0, 0, q, big), 2 * big + 2);
  free(q);
}

Test(text, json_buf_appends_and_refuses_past_its_maximum) {
  esk_buf_t b;
  esk_buf_init(&b, 16);
  esk_error_t err = {0};
  cr_assert_eq(esk_text_json_buf(&b, "ab", 2, &err), ESK_OK);
  cr_assert_eq(esk_text_json_buf(&b, "c\"", 2, &err), ESK_OK);
  cr_expect_eq(b.len, 4 + 5);
  cr_expect_eq(memcmp(b.data, "\"ab\"\"c\\\"\"", b.len), 0);
  cr_expect_eq(esk_text_json_buf(&b, "0123456789", 10, &err), ESK_ENOMEM);
  cr_expect_eq(b.len, 9, "a refused string left bytes behind");
  esk_buf_free(&b);
}

/* An independent reading of RFC 3629: decode the code point, then refuse
 * overlong forms, surrogates and what is over U+10FFFF. */
static size_t utf8_reference(const uint8_t *s, size_t n) {
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c == 0) return i;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || n - i < len) return i;
    uint32_t cp = c & (0x7F >> len);
    for (size_t j = 1; j < len; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return i;
      cp = cp << 6 | (s[i + j] & 0x3F);
    }
    if (cp < min[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
    i += len;
  }
  return n;
}

Test(text, utf8_check_agrees_with_a_reference_on_every_sequence_of_up_to_three_bytes) {
  uint8_t b[16];
  size_t differ = 0;
  for (uint32_t x = 0; x < (1u << 24); x++) { /* every 3-byte string */
    b[0] = (uint8_t)(x >> 16), b[1] = (uint8_t)(x >> 8), b[2] = (uint8_t)x;
    differ += esk_utf8_check(b, 3) != utf8_reference(b, 3);
  }
  memcpy(b, "abcdefg", 7); /* every 2-byte string across the first word's end */
  for (uint32_t x = 0; x < (1u << 16); x++) {
    b[7] = (uint8_t)(x >> 8), b[8] = (uint8_t)x, b[9] = 'z';
    for (size_t n = 8; n <= 10; n++) differ += esk_utf8_check(b, n) != utf8_reference(b, n);
  }
  for (uint32_t x = 0; x < 5u << 16; x++) { /* 4-byte leads F0..F4, any two bytes after */
    b[0] = (uint8_t)(0xF0 + (x >> 16)), b[1] = (uint8_t)(x >> 8), b[2] = (uint8_t)x;
    b[3] = 0x80;
    differ += esk_utf8_check(b, 4) != utf8_reference(b, 4);
    b[3] = 0x7F;
    differ += esk_utf8_check(b, 4) != utf8_reference(b, 4);
  }
  cr_assert_eq(differ, 0, "%zu strings where the two disagree", differ);
}

Test(text, pct_decode_decodes_each_escape_once_and_leaves_bad_ones) {
  static const struct { const char *in, *out; size_t len; } cases[] = {
      {"a%2Fb", "a/b", 3},      {"a%2fb", "a/b", 3},   {"%25", "%", 1},
      {"a%252F", "a%2F", 4},    {"%", "%", 1},         {"%4", "%4", 2},
      {"%zz%4g", "%zz%4g", 6},  {"", "", 0},           {"%C3%A9", "\xc3\xa9", 2},
      {"+x", "+x", 2},          {"%2F%2F", "//", 2},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%s", cases[i].in);
    cr_expect_eq(esk_text_pct_decode(buf), cases[i].len, "%s", cases[i].in);
    cr_expect_str_eq(buf, cases[i].out, "%s", cases[i].in);
  }
  char nul[] = "a%00b";
  cr_expect_eq(esk_text_pct_decode(nul), 3);
  cr_expect_eq(strlen(nul), 1, "the NUL is there for the caller to find");
}
