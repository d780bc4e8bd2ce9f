/* common/personal: the esk.personal marks (docs/architecture.md, "Personal
 * data"): the orders contract's, malformed and hostile marks, and marks that
 * change between versions. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/codec.h"
#include "esk/personal.h"

#define ORDERS_DIR ESK_SOURCE_DIR "/schemas/orders"

/* A record Ev (namespace t) with a string subject `cid` and the fields @p fields
 * (JSON text after them, without a leading comma). */
static char *record(const char *fields) {
  size_t n = strlen(fields) + 256;
  char *s = malloc(n);
  cr_assert(s);
  snprintf(s, n,
           "{\"type\":\"record\",\"name\":\"Ev\",\"namespace\":\"t\",\"fields\":["
           "{\"name\":\"cid\",\"type\":\"string\"},%s]}",
           fields);
  return s;
}

/* Adds Ev.v1 made of @p fields to a fresh set; returns the rc, the message in @p msg. */
static int load(const char *fields, char *msg, size_t size, esk_schema_set_t **keep) {
  esk_schema_set_t *set = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  char *json = record(fields);
  int rc = esk_schema_set_add(set, "Ev.v1.avsc", json, &err);
  free(json);
  snprintf(msg, size, "%s", err.msg);
  if (keep && !rc)
    *keep = set;
  else
    esk_schema_set_destroy(set);
  return rc;
}

/* Asserts that @p fields are refused with a message holding @p want. */
static void refused(const char *fields, const char *want) {
  char msg[1024];
  int rc = load(fields, msg, sizeof(msg), NULL);
  cr_assert_eq(rc, ESK_EINVAL, "accepted: %s", fields);
  cr_assert(strstr(msg, want), "message '%s' lacks '%s'", msg, want);
  cr_assert(strstr(msg, "Ev.v1.avsc"), "message '%s' names no file", msg);
}

#define MARK(x) "\"esk.personal\":" x

Test(personal, orders_created_v2_marks_the_email_and_the_address_with_the_customer_as_subject) {
  esk_schema_set_t *set = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_schema_set_load_dir(set, ORDERS_DIR, &err), ESK_OK, "%s", err.msg);
  size_t n = 0;
  const esk_personal_field_t *pf =
      esk_schema_personal(esk_schema_set_get(set, "OrderCreated", 2), &n);
  cr_assert_eq(n, 2);
  cr_expect_str_eq(pf[0].name, "customer_email");
  cr_expect_str_eq(pf[0].subject, "customer_id");
  cr_expect_str_eq(pf[0].forgotten_json, "\"[forgotten]\"");
  cr_expect_str_eq(pf[1].name, "shipping_address");
  cr_expect_eq(pf[1].subject_index, 1);
  cr_expect(strstr(pf[1].forgotten_json, "\"city\":\"[forgotten]\""), "%s", pf[1].forgotten_json);
  /* unmarked types have none */
  cr_expect_null(esk_schema_personal(esk_schema_set_get(set, "OrderCreated", 1), &n));
  cr_expect_eq(n, 0);
  cr_expect_null(esk_schema_personal(esk_schema_set_latest(set, "OrderShipped"), &n));
  esk_schema_set_destroy(set);
}

Test(personal, a_mark_changes_no_fingerprint) {
  char msg[512];
  esk_schema_set_t *marked = NULL, *plain = NULL;
  cr_assert_eq(load("{\"name\":\"email\",\"type\":\"string\"," MARK(
                        "{\"subject\":\"cid\",\"forgotten\":\"-\"}") "}",
                    msg, sizeof(msg), &marked),
               ESK_OK, "%s", msg);
  cr_assert_eq(load("{\"name\":\"email\",\"type\":\"string\"}", msg, sizeof(msg), &plain), ESK_OK,
               "%s", msg);
  cr_expect_eq(esk_schema_fingerprint(esk_schema_set_get(marked, "Ev", 1)),
               esk_schema_fingerprint(esk_schema_set_get(plain, "Ev", 1)));
  esk_schema_set_destroy(marked);
  esk_schema_set_destroy(plain);
}

Test(personal, a_nullable_string_and_an_inline_record_of_strings_may_be_personal) {
  char msg[512];
  esk_schema_set_t *set = NULL;
  cr_assert_eq(
      load("{\"name\":\"phone\",\"type\":[\"null\",\"string\"],\"default\":null," MARK(
               "{\"subject\":\"cid\",\"forgotten\":null}") "},"
           "{\"name\":\"who\",\"type\":{\"type\":\"record\",\"name\":\"Who\",\"fields\":["
           "{\"name\":\"first\",\"type\":\"string\"},{\"name\":\"nick\",\"type\":[\"null\","
           "\"string\"]}]}," MARK("{\"subject\":\"cid\",\"forgotten\":{\"first\":\"?\","
                                  "\"nick\":null}}") "}",
           msg, sizeof(msg), &set),
      ESK_OK, "%s", msg);
  size_t n;
  const esk_personal_field_t *pf = esk_schema_personal(esk_schema_set_get(set, "Ev", 1), &n);
  cr_assert_eq(n, 2);
  cr_expect_str_eq(pf[0].forgotten_json, "null");
  cr_expect_eq(pf[1].index, 2);
  esk_schema_set_destroy(set);
}

Test(personal, malformed_marks_are_refused_naming_the_field_and_the_reason) {
  static const struct { const char *fields, *want; } cases[] = {
      {"{\"name\":\"email\",\"type\":\"string\"," MARK("true") "}", "must be an object"},
      {"{\"name\":\"email\",\"type\":\"string\"," MARK("\"cid\"") "}", "must be an object"},
      {"{\"name\":\"email\",\"type\":\"string\"," MARK("{\"forgotten\":\"-\"}") "}",
          "needs \"subject\""},
      {"{\"name\":\"email\",\"type\":\"string\"," MARK("{\"subject\":7,\"forgotten\":\"-\"}") "}",
          "needs \"subject\""},
      {"{\"name\":\"email\",\"type\":\"string\"," MARK("{\"subject\":\"cid\"}") "}",
          "needs \"forgotten\""},
      {"{\"name\":\"email\",\"type\":\"string\"," MARK(
              "{\"subject\":\"cid\",\"forgotten\":\"-\",\"key\":\"00\"}") "}",
          "unknown member 'key'"},
      {"{\"name\":\"email\",\"type\":\"string\"," MARK(
              "{\"subject\":\"nobody\",\"forgotten\":\"-\"}") "}",
          "subject field 'nobody' is not a field of t.Ev"},
      {"{\"name\":\"email\",\"type\":\"string\"," MARK(
              "{\"subject\":\"email\",\"forgotten\":\"-\"}") "}",
          "cannot be its own subject"},
      {"{\"name\":\"n\",\"type\":\"long\"},{\"name\":\"email\",\"type\":\"string\"," MARK(
              "{\"subject\":\"n\",\"forgotten\":\"-\"}") "}",
          "subject field 'n' must be a string, not long"},
      {"{\"name\":\"email\",\"type\":\"string\"," MARK(
              "{\"subject\":\"cid\",\"forgotten\":null}") "}",
          "\"forgotten\" is not a value of the field's type"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) refused(cases[i].fields, cases[i].want);
}

Test(personal, types_that_cannot_hold_ciphertext_are_refused) {
  refused("{\"name\":\"age\",\"type\":\"long\"," MARK("{\"subject\":\"cid\",\"forgotten\":0}") "}",
          "field 'age' cannot be personal (long)");
  refused("{\"name\":\"pic\",\"type\":\"bytes\"," MARK("{\"subject\":\"cid\",\"forgotten\":\"\"}") "}",
          "cannot be personal (bytes)");
  refused("{\"name\":\"x\",\"type\":[\"null\",\"long\"]," MARK(
              "{\"subject\":\"cid\",\"forgotten\":null}") "}",
          "a union may hold only null and string");
  refused("{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"}," MARK(
              "{\"subject\":\"cid\",\"forgotten\":[]}") "}",
          "cannot be personal (array)");
  /* a record with one field that cannot: named */
  refused("{\"name\":\"addr\",\"type\":{\"type\":\"record\",\"name\":\"A\",\"fields\":["
          "{\"name\":\"street\",\"type\":\"string\"},{\"name\":\"number\",\"type\":\"int\"}]}," MARK(
              "{\"subject\":\"cid\",\"forgotten\":{\"street\":\"-\",\"number\":0}}") "}",
          "field 'addr' cannot be personal (number: int)");
}

Test(personal, marks_out_of_place_are_refused) {
  /* on a field of a nested record */
  refused("{\"name\":\"addr\",\"type\":{\"type\":\"record\",\"name\":\"A\",\"fields\":["
          "{\"name\":\"street\",\"type\":\"string\"," MARK(
              "{\"subject\":\"cid\",\"forgotten\":\"-\"}") "}]}}",
          "field 'street' of the nested record A");
  /* inside an array's record */
  refused("{\"name\":\"xs\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","
          "\"name\":\"X\",\"fields\":[{\"name\":\"s\",\"type\":\"string\"," MARK(
              "{\"subject\":\"cid\",\"forgotten\":\"-\"}") "}]}}}",
          "nested record X");
  /* on a type rather than a field */
  refused("{\"name\":\"email\",\"type\":{\"type\":\"string\"," MARK(
              "{\"subject\":\"cid\",\"forgotten\":\"-\"}") "}}",
          "a mark goes on a field of the top-level record, not on a type");
  /* a subject that is itself personal */
  refused("{\"name\":\"email\",\"type\":\"string\"," MARK(
              "{\"subject\":\"alias\",\"forgotten\":\"-\"}") "},"
          "{\"name\":\"alias\",\"type\":\"string\"," MARK("{\"subject\":\"cid\",\"forgotten\":\"-\"}") "}",
          "is itself personal");
}

Test(personal, a_mark_in_a_shared_types_file_is_refused) {
  esk_schema_set_t *set = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  const char *json =
      "{\"type\":\"record\",\"name\":\"Addr\",\"namespace\":\"t\",\"fields\":["
      "{\"name\":\"owner\",\"type\":\"string\"},"
      "{\"name\":\"street\",\"type\":\"string\"," MARK("{\"subject\":\"owner\",\"forgotten\":\"-\"}") "}]}";
  /* a file of its own is a top-level record: accepted there... */
  cr_assert_eq(esk_schema_set_add(set, "Addr.v1.avsc", json, &err), ESK_OK, "%s", err.msg);
  /* ...but a type that holds it would not inherit the marks: refused */
  const char *ev = "{\"type\":\"record\",\"name\":\"Ev\",\"namespace\":\"t\",\"fields\":["
                   "{\"name\":\"a\",\"type\":[\"null\",\"t.Addr\"]}]}";
  cr_assert_eq(esk_schema_set_add(set, "Ev.v1.avsc", ev, &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "Ev.v1.avsc: field 'a' holds t.Addr, whose file Addr.v1.avsc marks"),
            "%s", err.msg);
  cr_expect_null(esk_schema_set_get(set, "Ev", 1));
  esk_schema_set_destroy(set);
}

Test(personal, hostile_marks_are_refused_without_harm) {
  /* a duplicated attribute (JSON that a lax parser would take the last of) */
  refused("{\"name\":\"email\",\"type\":\"string\"," MARK("{\"subject\":\"cid\",\"forgotten\":\"-\"}")
          "," MARK("{\"subject\":\"cid\",\"forgotten\":\"-\"}") "}",
          "duplicate");
  /* an oversized subject name: the message stays bounded */
  size_t big = 1 << 20;
  char *name = malloc(big + 1);
  cr_assert(name);
  memset(name, 'z', big);
  name[big] = 0;
  size_t n = big + 256;
  char *fields = malloc(n);
  cr_assert(fields);
  snprintf(fields, n,
           "{\"name\":\"email\",\"type\":\"string\"," MARK("{\"subject\":\"%s\",\"forgotten\":\"-\"}") "}",
           name);
  refused(fields, "is not a field of t.Ev");
  free(fields);
  free(name);
  /* truncated JSON */
  refused("{\"name\":\"email\",\"type\":\"string\"," MARK("{\"subject\":\"cid\",\"forgot") "}",
          "line 1");
}

/* Two versions of Ev with the email field as given (v2 adds a field too: a mark
 * alone changes no fingerprint, and two versions cannot share one); the
 * check's rc and message. */
static int versions(const char *v1_email, const char *v2_email, char *msg, size_t size) {
  esk_schema_set_t *set = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  char v2[1024];
  snprintf(v2, sizeof(v2), "%s,{\"name\":\"added\",\"type\":\"string\",\"default\":\"\"}",
           v2_email);
  char *j1 = record(v1_email), *j2 = record(v2);
  const char *names[] = {"Ev.v1.avsc", "Ev.v2.avsc"};
  const char *jsons[] = {j1, j2};
  cr_assert_eq(esk_schema_set_add_many(set, 2, names, jsons, &err), ESK_OK, "%s", err.msg);
  int rc = esk_personal_check_versions(esk_schema_set_get(set, "Ev", 1),
                                       esk_schema_set_get(set, "Ev", 2), &err);
  snprintf(msg, size, "%s", err.msg);
  free(j1);
  free(j2);
  esk_schema_set_destroy(set);
  return rc;
}

#define EMAIL_PLAIN "{\"name\":\"email\",\"type\":\"string\"}"
#define EMAIL_MARKED(subject, forgotten)                                                          \
  "{\"name\":\"email\",\"type\":\"string\"," MARK("{\"subject\":\"" subject                       \
                                                  "\",\"forgotten\":\"" forgotten "\"}") "}"

Test(personal, a_fields_mark_cannot_change_between_versions) {
  char msg[512];
  cr_expect_eq(versions(EMAIL_PLAIN, EMAIL_MARKED("cid", "-"), msg, sizeof(msg)), ESK_EINVAL);
  cr_expect(strstr(msg, "Ev: field 'email' is personal in v2 but not in v1"), "%s", msg);
  cr_expect_eq(versions(EMAIL_MARKED("cid", "-"), EMAIL_PLAIN, msg, sizeof(msg)), ESK_EINVAL);
  cr_expect(strstr(msg, "personal in v1 but not in v2"), "%s", msg);
  cr_expect_eq(versions(EMAIL_MARKED("cid", "-"),
                        "{\"name\":\"cid2\",\"type\":\"string\",\"default\":\"\"}," EMAIL_MARKED(
                            "cid2", "-"),
                        msg, sizeof(msg)),
               ESK_EINVAL);
  cr_expect(strstr(msg, "has subject 'cid' in v1 but 'cid2' in v2"), "%s", msg);
  /* the replacement may change; a renamed field (alias) keeps its mark */
  cr_expect_eq(versions(EMAIL_MARKED("cid", "-"), EMAIL_MARKED("cid", "[gone]"), msg, sizeof(msg)),
               ESK_OK, "%s", msg);
  cr_expect_eq(versions(EMAIL_MARKED("cid", "-"),
                        "{\"name\":\"mail\",\"aliases\":[\"email\"],\"type\":\"string\"}", msg,
                        sizeof(msg)),
               ESK_EINVAL);
  cr_expect(strstr(msg, "field 'mail' is personal in v1 but not in v2"), "%s", msg);
}
