/* The consistency token and the JSON command reader (esk/api.h,
 * esk/command_json.h) with good, truncated, malformed, oversized and hostile input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank/bank_domain.h"
#include "domains.h"
#include "esk/api.h"
#include "esk/command_json.h"
#include "esk_test.h"
#include <sodium.h>
#include <unistd.h>

static unsigned char key[ESK_TOKEN_KEY_BYTES], other[ESK_TOKEN_KEY_BYTES];

static void keys(void) {
  for (int i = 0; i < ESK_TOKEN_KEY_BYTES; i++) {
    key[i] = (unsigned char)(i * 7 + 1);
    other[i] = (unsigned char)(i * 7 + 2);
  }
}

static void make(char *out, size_t size, const esk_token_t *t) {
  esk_error_t err = {0};
  cr_assert_eq(esk_token_encode(out, size, t, key, &err), ESK_OK, "%s", err.msg);
}

static esk_token_t sample(void) {
  esk_token_t t;
  esk_error_t err = {0};
  memset(&t, 0, sizeof(t));
  snprintf(t.domain, sizeof(t.domain), "bank");
  cr_assert_eq(esk_token_merge(&t, 3, 1000, &err), ESK_OK);
  cr_assert_eq(esk_token_merge(&t, 0, 5, &err), ESK_OK);
  cr_assert_eq(esk_token_merge(&t, 3, 999, &err), ESK_OK); /* lower: kept at 1000 */
  return t;
}

Test(api, a_token_round_trips_with_its_positions_sorted, .init = keys) {
  esk_token_t t = sample(), back;
  char text[ESK_TOKEN_MAX_CHARS + 1];
  esk_error_t err = {0};
  make(text, sizeof(text), &t);
  cr_assert_eq(esk_token_decode(&back, text, strlen(text), key, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(back.domain, "bank");
  cr_assert_eq(back.n, 2);
  cr_assert_eq(back.pos[0].partition, 0);
  cr_assert_eq(back.pos[0].offset, 5);
  cr_assert_eq(back.pos[1].partition, 3);
  cr_assert_eq(back.pos[1].offset, 1000);
  for (const char *c = text; *c; c++) /* URL-safe as it is */
    cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c));
}

Test(api, a_token_under_another_key_is_refused_naming_the_mac, .init = keys) {
  esk_token_t t = sample(), back;
  char text[ESK_TOKEN_MAX_CHARS + 1];
  esk_error_t err = {0};
  make(text, sizeof(text), &t);
  cr_assert_eq(esk_token_decode(&back, text, strlen(text), other, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "MAC"), "%s", err.msg);
}

Test(api, every_changed_character_of_a_token_is_refused, .init = keys) {
  esk_token_t t = sample(), back;
  char text[ESK_TOKEN_MAX_CHARS + 1];
  make(text, sizeof(text), &t);
  size_t n = strlen(text);
  for (size_t i = 0; i < n; i++) {
    char copy[ESK_TOKEN_MAX_CHARS + 1];
    memcpy(copy, text, n + 1);
    copy[i] = copy[i] == 'A' ? 'B' : 'A';
    esk_error_t err = {0};
    cr_assert_eq(esk_token_decode(&back, copy, n, key, &err), ESK_EINVAL, "changed at %zu", i);
  }
}

Test(api, every_truncation_of_a_token_is_refused, .init = keys) {
  esk_token_t t = sample(), back;
  char text[ESK_TOKEN_MAX_CHARS + 1];
  make(text, sizeof(text), &t);
  for (size_t n = 0; n < strlen(text); n++) {
    esk_error_t err = {0};
    cr_assert_eq(esk_token_decode(&back, text, n, key, &err), ESK_EINVAL, "length %zu", n);
    cr_assert(err.msg[0]);
  }
}

Test(api, hostile_token_texts_are_refused_with_the_reason, .init = keys) {
  esk_token_t back;
  esk_error_t err = {0};
  static char huge[ESK_TOKEN_MAX_CHARS + 2];
  memset(huge, 'A', sizeof(huge) - 1);
  cr_assert_eq(esk_token_decode(&back, huge, strlen(huge), key, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "too long"), "%s", err.msg);
  cr_assert_eq(esk_token_decode(&back, "", 0, key, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "empty"), "%s", err.msg);
  cr_assert_eq(esk_token_decode(&back, "AQ==", 4, key, &err), ESK_EINVAL); /* padding */
  cr_assert(strstr(err.msg, "base64url"), "%s", err.msg);
  cr_assert_eq(esk_token_decode(&back, "a/b+c", 5, key, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "base64url"), "%s", err.msg);
  cr_assert_eq(esk_token_decode(&back, "AQ\0AA", 5, key, &err), ESK_EINVAL);
  cr_assert_eq(esk_token_decode(&back, "' or 1=1 --", 11, key, &err), ESK_EINVAL);
  cr_assert_eq(esk_token_decode(&back, "AAAA", 4, key, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "truncated"), "%s", err.msg);
}

Test(api, a_token_with_a_valid_mac_but_a_bad_shape_is_refused, .init = keys) {
  /* as if the key had leaked into a forger's hands: the shape is still checked */
  unsigned char raw[64];
  size_t o = 0;
  raw[o++] = 1;
  raw[o++] = 4;
  memcpy(raw + o, "bank", 4);
  o += 4;
  raw[o++] = 0;
  raw[o++] = 2; /* two positions announced, none given */
  crypto_auth_hmacsha256(raw + o, raw, o, key);
  o += crypto_auth_hmacsha256_BYTES;
  char text[200];
  sodium_bin2base64(text, sizeof(text), raw, o, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  esk_token_t back;
  esk_error_t err = {0};
  cr_assert_eq(esk_token_decode(&back, text, strlen(text), key, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "malformed"), "%s", err.msg);
}

Test(api, merge_refuses_negative_values_and_more_partitions_than_fit) {
  esk_token_t t;
  esk_error_t err = {0};
  memset(&t, 0, sizeof(t));
  cr_assert_eq(esk_token_merge(&t, -1, 5, &err), ESK_EINVAL);
  cr_assert_eq(esk_token_merge(&t, 1, -5, &err), ESK_EINVAL);
  for (int i = 0; i < ESK_TOKEN_MAX_PARTS; i++) cr_assert_eq(esk_token_merge(&t, i, 1, &err), 0);
  cr_assert_eq(esk_token_merge(&t, ESK_TOKEN_MAX_PARTS, 1, &err), ESK_EINVAL);
}

Test(api, the_key_file_must_hold_64_hex_characters) {
  char path[64];
  const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
  esk_test_temp_file(path, sizeof(path), "esk_api_key", hex, strlen(hex));
  unsigned char k[ESK_TOKEN_KEY_BYTES];
  esk_error_t err = {0};
  cr_assert_eq(esk_token_key_load(k, path, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(k[0], 0x01);
  FILE *f = fopen(path, "w");
  fputs("0123456789abcdef", f);
  fclose(f);
  cr_assert_eq(esk_token_key_load(k, path, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "64 hexadecimal") && strstr(err.msg, path), "%s", err.msg);
  f = fopen(path, "w");
  fputs("zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", f);
  fclose(f);
  cr_assert_eq(esk_token_key_load(k, path, &err), ESK_EINVAL);
  unlink(path);
  cr_assert_eq(esk_token_key_load(k, path, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "cannot open"), "%s", err.msg);
  cr_assert_eq(esk_token_key_load(k, "", &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "not set"), "%s", err.msg);
}

Test(api, an_error_body_is_json_even_for_a_message_that_is_not_utf8) {
  char buf[128];
  esk_api_error_json(buf, sizeof(buf), "X", "a \"quoted\" message");
  cr_assert_str_eq(buf, "{\"error\":{\"code\":\"X\",\"message\":\"a \\\"quoted\\\" message\"}}");
  esk_api_error_json(buf, sizeof(buf), "X", "bad \xff byte");
  cr_assert(strstr(buf, "\"code\":\"X\""), "%s", buf);
  char tiny[16];
  esk_api_error_json(tiny, sizeof(tiny), "X", "a long message that does not fit");
  cr_assert(strlen(tiny) < sizeof(tiny));
}

/* ------------------------------------------------------- command JSON --- */

static esk_domain_inst_t dom;

static void open_bank(void) {
  esk_error_t err = {0};
  cr_assert_eq(esk_domain_inst_open(&dom, esk_bank_domain(), &err), ESK_OK, "%s", err.msg);
}

static void close_bank(void) { esk_domain_inst_close(&dom); }

static int parse(const char *json, size_t len, const char *idem, esk_command_json_t *c,
                 esk_error_t *err) {
  esk_command_json_opts_t o = {NULL, "account_id", "tester", idem, 8};
  return esk_command_json_parse(c, json, len, dom.schemas, dom.codec, &o, err);
}

static void refused(const char *json, size_t len, const char *idem, const char *needle) {
  esk_command_json_t c;
  esk_error_t err = {0};
  memset(&c, 0, sizeof(c));
  cr_expect_eq(parse(json, len, idem, &c, &err), ESK_EINVAL, "accepted: %.80s", json);
  cr_expect(strstr(err.msg, needle), "'%s' does not name '%s'", err.msg, needle);
  esk_command_json_free(&c);
}

#define DEPOSIT "{\"type\":\"DepositMoney\",\"command_id\":\"c1\",\"account_id\":\"A1\"," \
                "\"amount\":{\"minor_units\":500,\"currency\":\"EUR\"}}"

Test(api, a_command_encodes_with_its_key_id_and_defaults, .init = open_bank, .fini = close_bank) {
  esk_command_json_t c;
  esk_error_t err = {0};
  memset(&c, 0, sizeof(c));
  cr_assert_eq(parse(DEPOSIT, strlen(DEPOSIT), NULL, &c, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(c.command_id, "c1");
  cr_assert_str_eq(c.key, "A1");
  cr_assert_str_eq(esk_schema_type(c.schema), "DepositMoney");
  cr_assert_gt(c.value.len, 10);
  cr_assert_eq((unsigned char)c.value.data[0], 0xC3);
  esk_command_json_free(&c);
}

Test(api, an_idempotency_key_gives_the_id_and_must_match_a_given_one, .init = open_bank,
     .fini = close_bank) {
  const char *no_id = "{\"type\":\"DepositMoney\",\"account_id\":\"A1\","
                      "\"amount\":{\"minor_units\":5,\"currency\":\"EUR\"}}";
  esk_command_json_t c;
  esk_error_t err = {0};
  memset(&c, 0, sizeof(c));
  cr_assert_eq(parse(no_id, strlen(no_id), "k-9", &c, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(c.command_id, "k-9");
  esk_command_json_free(&c);
  refused(DEPOSIT, strlen(DEPOSIT), "other", "Idempotency-Key");
  refused(no_id, strlen(no_id), NULL, "command_id");
}

Test(api, every_truncation_of_a_command_is_refused, .init = open_bank, .fini = close_bank) {
  for (size_t n = 0; n < strlen(DEPOSIT); n++) refused(DEPOSIT, n, NULL, "");
}

Test(api, malformed_and_hostile_commands_are_refused_naming_the_problem, .init = open_bank,
     .fini = close_bank) {
  refused("[1,2]", 5, NULL, "JSON object");
  refused("{\"type\":\"Nope\"}", 15, NULL, "unknown command type");
  refused("{\"command_id\":\"c\"}", 18, NULL, "\"type\"");
  const char *extra = "{\"type\":\"DepositMoney\",\"command_id\":\"c1\",\"account_id\":\"A1\","
                      "\"amount\":{\"minor_units\":5,\"currency\":\"EUR\"},\"evil\":1}";
  refused(extra, strlen(extra), NULL, "no field 'evil'");
  const char *nul = "{\"type\":\"DepositMoney\",\"command_id\":\"c\\u0000x\",\"account_id\":\"A1\","
                    "\"amount\":{\"minor_units\":5,\"currency\":\"EUR\"}}";
  refused(nul, strlen(nul), NULL, "command_id holds U+0000");
  const char *bad_utf8 = "{\"type\":\"DepositMoney\",\"command_id\":\"c\xff\",\"account_id\":\"A1\","
                         "\"amount\":{\"minor_units\":5,\"currency\":\"EUR\"}}";
  refused(bad_utf8, strlen(bad_utf8), NULL, "JSON");
  const char *huge = "{\"type\":\"DepositMoney\",\"command_id\":\"c1\",\"account_id\":\"A1\","
                     "\"amount\":{\"minor_units\":123456789012345678901234567890,"
                     "\"currency\":\"EUR\"}}";
  refused(huge, strlen(huge), NULL, "");
  const char *dup = "{\"type\":\"DepositMoney\",\"command_id\":\"c1\",\"command_id\":\"c2\"}";
  refused(dup, strlen(dup), NULL, "duplicate");
  const char *sql = "{\"type\":\"DepositMoney\",\"command_id\":\"c1\",\"account_id\":\"A1\","
                    "\"amount\":{\"minor_units\":\"1; drop table x\",\"currency\":\"EUR\"}}";
  refused(sql, strlen(sql), NULL, "DepositMoney");
  /* nesting beyond max_depth (8), and beyond what jansson itself takes */
  char deep[20000];
  size_t o = (size_t)snprintf(deep, sizeof(deep), "{\"type\":\"DepositMoney\",\"x\":");
  for (int i = 0; i < 5000; i++) deep[o++] = '[';
  for (int i = 0; i < 5000; i++) deep[o++] = ']';
  deep[o++] = '}';
  refused(deep, o, NULL, "");
  o = (size_t)snprintf(deep, sizeof(deep), "{\"type\":\"DepositMoney\",\"x\":");
  for (int i = 0; i < 10; i++) deep[o++] = '[';
  for (int i = 0; i < 10; i++) deep[o++] = ']';
  deep[o++] = '}';
  refused(deep, o, NULL, "nested deeper than 8");
}
