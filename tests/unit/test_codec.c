/* common/codec: canonical form, fingerprints, single-object encoding,
 * resolution, upcasters, bad input; interop against the fixtures that Apache
 * Avro for Python generated (tests/fixtures/avro/generate.py). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"
#include "esk/codec.h"

#define FIXTURES ESK_SOURCE_DIR "/tests/fixtures/avro"
#define BANK_DIR ESK_SOURCE_DIR "/schemas/bank"

/* ---------------------------------------------------------------- helpers */

static esk_schema_set_t *bank_set(void) {
  esk_schema_set_t *set = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_schema_set_load_dir(set, BANK_DIR, &err), ESK_OK, "%s", err.msg);
  return set;
}

static esk_codec_t *bank_codec(const esk_schema_set_t *set, const esk_codec_limits_t *lim) {
  esk_codec_t *c = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_new(&c, set, lim, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_bank_register_upcasters(c, &err), ESK_OK, "%s", err.msg);
  return c;
}

static esk_codec_t *bank_codec_plain(const esk_schema_set_t *set) {
  esk_codec_t *c = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_new(&c, set, NULL, &err), ESK_OK, "%s", err.msg);
  return c;
}

static size_t unhex(const char *hex, uint8_t **out) {
  size_t n = strlen(hex) / 2;
  uint8_t *b = malloc(n + 1);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
    b[i] = (uint8_t)v;
  }
  *out = b;
  return n;
}

/* Asserts that the value, written as JSON, equals @p want (a JSON value). */
static void assert_value_is(const avro_value_t *v, json_t *want, const char *what) {
  char *got = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_value_to_json(v, &got, &err), ESK_OK, "%s: %s", what, err.msg);
  json_t *g = json_loads(got, JSON_DECODE_ANY, NULL);
  char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
  cr_expect(json_equal(g, want), "%s:\n got  %s\n want %s", what, got, w);
  free(w);
  free(got);
  json_decref(g);
}

/* Decodes @p msg at @p version and asserts its value. */
static void assert_decodes_to(esk_codec_t *c, const uint8_t *msg, size_t len, int version,
                              json_t *want, const char *what) {
  const esk_schema_t *reader = NULL;
  avro_value_t *v = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_decode(c, msg, len, version, &reader, &v, &err), ESK_OK, "%s: %s",
               what, err.msg);
  assert_value_is(v, want, what);
}

typedef void (*fixture_fn)(json_t *fixture, void *ctx);

static size_t each_fixture(fixture_fn fn, void *ctx) {
  DIR *d = opendir(FIXTURES);
  cr_assert(d, "cannot open %s", FIXTURES);
  struct dirent *e;
  size_t n = 0;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 6 || strcmp(e->d_name + len - 5, ".json")) continue;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", FIXTURES, e->d_name);
    json_error_t jerr;
    json_t *f = json_load_file(path, 0, &jerr);
    cr_assert(f, "%s: %s", path, jerr.text);
    fn(f, ctx);
    json_decref(f);
    n++;
  }
  closedir(d);
  return n;
}

/* ------------------------------------------------------------ primitives */

Test(codec, crc64_matches_the_specification_for_the_empty_input_and_a_known_schema) {
  cr_assert_eq(esk_avro_crc64("", 0), 0xc15d213aa4d7a795ULL);
  /* "int" -> 0x7275d51a3f395c8f in the Avro test suite (java SchemaNormalization) */
  cr_assert_eq(esk_avro_crc64("\"int\"", 5), 0x7275d51a3f395c8fULL);
}

Test(codec, canonical_form_applies_fullnames_strip_order_and_primitives) {
  char *pcf = NULL;
  esk_error_t err = {0};
  const char *in =
      "{\"doc\": \"x\", \"fields\": [\n"
      "  {\"type\": {\"type\": \"int\"}, \"name\": \"a\", \"default\": 1, \"aliases\": [\"z\"]},\n"
      "  {\"name\": \"b\", \"type\": {\"type\": \"fixed\", \"name\": \"F\", \"size\": 16}},\n"
      "  {\"name\": \"c\", \"type\": {\"type\": \"enum\", \"name\": \"other.E\", \"symbols\": [\"X\", \"Y\"]}},\n"
      "  {\"name\": \"d\", \"type\": [\"null\", \"F\", \"other.E\", {\"type\": \"long\", \"logicalType\": \"timestamp-micros\"}]},\n"
      "  {\"name\": \"e\", \"type\": {\"type\": \"map\", \"values\": {\"type\": \"array\", \"items\": \"string\"}}}\n"
      "], \"type\": \"record\", \"name\": \"R\", \"namespace\": \"ns\"}";
  cr_assert_eq(esk_avro_canonical_form(&pcf, in, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(
      pcf,
      "{\"name\":\"ns.R\",\"type\":\"record\",\"fields\":["
      "{\"name\":\"a\",\"type\":\"int\"},"
      "{\"name\":\"b\",\"type\":{\"name\":\"ns.F\",\"type\":\"fixed\",\"size\":16}},"
      "{\"name\":\"c\",\"type\":{\"name\":\"other.E\",\"type\":\"enum\",\"symbols\":[\"X\",\"Y\"]}},"
      "{\"name\":\"d\",\"type\":[\"null\",\"ns.F\",\"other.E\",\"long\"]},"
      "{\"name\":\"e\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":\"string\"}}}]}");
  free(pcf);
}

Test(codec, canonical_form_rejects_a_schema_naming_an_unknown_type) {
  char *pcf = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_avro_canonical_form(&pcf, "{\"type\":\"record\",\"name\":\"R\",\"fields\":"
                                              "[{\"name\":\"a\",\"type\":\"Nope\"}]}", &err),
               ESK_EINVAL);
  cr_assert(strstr(err.msg, "unknown type 'Nope'"), "%s", err.msg);
  cr_assert_null(pcf);
}

/* --------------------------------------------------- fixtures (interop) */

typedef struct {
  esk_schema_set_t *set;
  esk_codec_t *codec;
  size_t datums;
} fx_ctx_t;

static void check_fixture(json_t *f, void *vctx) {
  fx_ctx_t *ctx = vctx;
  const char *type = json_string_value(json_object_get(f, "type"));
  int version = (int)json_integer_value(json_object_get(f, "version"));
  const esk_schema_t *s = esk_schema_set_get(ctx->set, type, version);
  cr_assert(s, "no schema %s v%d", type, version);
  cr_expect_str_eq(esk_schema_canonical(s), json_string_value(json_object_get(f, "canonical_form")),
                   "%s v%d canonical form", type, version);
  char fp[17];
  snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)esk_schema_fingerprint(s));
  cr_expect_str_eq(fp, json_string_value(json_object_get(f, "fingerprint")), "%s v%d fingerprint",
                   type, version);
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(f, "datums"), i, d) {
    char what[128];
    uint8_t *msg;
    size_t len = unhex(json_string_value(json_object_get(d, "single_object_hex")), &msg);
    snprintf(what, sizeof(what), "%s v%d datum %zu as v%d", type, version, i, version);
    assert_decodes_to(ctx->codec, msg, len, version, json_object_get(d, "value"), what);
    int latest = (int)json_integer_value(json_object_get(d, "latest_version"));
    snprintf(what, sizeof(what), "%s v%d datum %zu as v%d", type, version, i, latest);
    assert_decodes_to(ctx->codec, msg, len, 0, json_object_get(d, "latest_value"), what);

    /* our encoding of the same value is byte for byte Python's */
    avro_value_t v;
    esk_buf_t out;
    esk_error_t err = {0};
    esk_buf_init(&out, 0);
    char *vj = json_dumps(json_object_get(d, "value"), JSON_COMPACT);
    cr_assert_eq(esk_value_new(&v, s, &err), ESK_OK);
    cr_assert_eq(esk_value_from_json(&v, s, vj, &err), ESK_OK, "%s: %s", what, err.msg);
    cr_assert_eq(esk_codec_encode(ctx->codec, s, &v, &out, &err), ESK_OK, "%s", err.msg);
    cr_expect(out.len == len && !memcmp(out.data, msg, len), "%s: encoding differs from Python's",
              what);
    avro_value_decref(&v);
    esk_buf_free(&out);
    free(vj);
    free(msg);
    ctx->datums++;
  }
}

Test(codec, every_fixture_matches_python_fingerprint_canonical_form_bytes_and_values) {
  fx_ctx_t ctx = {bank_set(), NULL, 0};
  ctx.codec = bank_codec(ctx.set, NULL);
  size_t n = each_fixture(check_fixture, &ctx);
  cr_assert_eq(n, esk_schema_set_count(ctx.set), "a fixture for every schema (%zu of %zu)", n,
               esk_schema_set_count(ctx.set));
  cr_assert_gt(ctx.datums, n);
  esk_codec_destroy(ctx.codec);
  esk_schema_set_destroy(ctx.set);
}

Test(codec, money_deposited_v1_v2_v3_all_decode_into_the_v3_shape) {
  esk_schema_set_t *set = bank_set();
  esk_codec_t *c = bank_codec(set, NULL);
  const char *want[] = {
      /* v1: currency and description from v2's defaults, then the v2->v3 upcaster */
      "{\"minor_units\":123456789012,\"currency\":\"USD\"}|\"\"",
      "{\"minor_units\":123456789012,\"currency\":\"EUR\"}|\"description — ünïcødé ✓\"",
      "{\"minor_units\":123456789012,\"currency\":\"EUR\"}|\"description — ünïcødé ✓\""};
  for (int v = 1; v <= 3; v++) {
    char path[512], *dup = strdup(want[v - 1]), *bar = strchr(dup, '|');
    *bar = 0;
    snprintf(path, sizeof(path), "%s/MoneyDeposited.v%d.json", FIXTURES, v);
    json_t *f = json_load_file(path, 0, NULL);
    cr_assert(f, "%s", path);
    uint8_t *msg;
    size_t len = unhex(
        json_string_value(json_object_get(json_array_get(json_object_get(f, "datums"), 0),
                                          "single_object_hex")),
        &msg);
    const esk_schema_t *reader;
    avro_value_t *val, field;
    esk_error_t err = {0};
    cr_assert_eq(esk_codec_decode(c, msg, len, 3, &reader, &val, &err), ESK_OK, "v%d: %s", v,
                 err.msg);
    cr_assert_eq(esk_schema_version(reader), 3);
    avro_value_get_by_name(val, "amount", &field, NULL);
    json_t *amount = json_loads(dup, 0, NULL), *desc = json_loads(bar + 1, JSON_DECODE_ANY, NULL);
    assert_value_is(&field, amount, "amount");
    avro_value_get_by_name(val, "description", &field, NULL);
    assert_value_is(&field, desc, "description");
    json_decref(amount);
    json_decref(desc);
    json_decref(f);
    free(msg);
    free(dup);
  }
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}

Test(codec, embedded_bank_schemas_equal_the_schema_files) {
  esk_schema_set_t *files = bank_set(), *emb = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&emb, &err), ESK_OK);
  cr_assert_eq(esk_bank_schemas_load(emb, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_schema_set_count(emb), esk_schema_set_count(files));
  for (size_t i = 0; i < esk_schema_set_count(files); i++) {
    const esk_schema_t *a = esk_schema_set_at(files, i), *b = esk_schema_set_at(emb, i);
    cr_expect_str_eq(esk_schema_file(a), esk_schema_file(b));
    cr_expect_eq(esk_schema_fingerprint(a), esk_schema_fingerprint(b));
  }
  cr_assert_eq(esk_schema_version(esk_schema_set_latest(emb, "MoneyDeposited")), 3);
  esk_schema_set_destroy(files);
  esk_schema_set_destroy(emb);
}

/* ------------------------------------------------------------ resolution */

/* A set of two versions of type T, given the field lists of each. */
static esk_schema_set_t *two_versions(const char *extra_types, const char *v1_fields,
                                      const char *v2_fields) {
  char j1[4096], j2[4096];
  snprintf(j1, sizeof(j1),
           "{\"type\":\"record\",\"name\":\"T\",\"namespace\":\"t\",\"fields\":[%s]}", v1_fields);
  snprintf(j2, sizeof(j2),
           "{\"type\":\"record\",\"name\":\"T\",\"namespace\":\"t\",\"aliases\":[\"OldT\"],"
           "\"fields\":[%s]}", v2_fields);
  const char *names[] = {"Extra.v1.avsc", "T.v1.avsc", "T.v2.avsc"};
  const char *texts[] = {extra_types, j1, j2};
  esk_schema_set_t *set = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_schema_set_add_many(set, 3, names, texts, &err), ESK_OK, "%s", err.msg);
  return set;
}

static const char *EXTRA =
    "{\"type\":\"record\",\"name\":\"t.Extra\",\"fields\":["
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"Color\",\"symbols\":[\"RED\",\"GREEN\",\"BLUE\"]}},"
    "{\"name\":\"e2\",\"type\":{\"type\":\"enum\",\"name\":\"Size\",\"symbols\":[\"S\",\"M\",\"L\"]}}]}";

/* Encodes @p json as T v1, decodes as T v2 and compares with @p want. */
static void assert_resolves(esk_schema_set_t *set, const char *json, const char *want,
                            int check_ok) {
  esk_codec_t *c = NULL;
  esk_error_t err = {0};
  avro_value_t v;
  esk_buf_t out;
  esk_buf_init(&out, 0);
  cr_assert_eq(esk_codec_new(&c, set, NULL, &err), ESK_OK);
  const esk_schema_t *w = esk_schema_set_get(set, "T", 1);
  cr_assert_eq(esk_value_new(&v, w, &err), ESK_OK);
  cr_assert_eq(esk_value_from_json(&v, w, json, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_codec_encode(c, w, &v, &out, &err), ESK_OK, "%s", err.msg);
  json_t *wj = json_loads(want, 0, NULL);
  cr_assert(wj, "bad expected JSON %s", want);
  assert_decodes_to(c, out.data, out.len, 2, wj, json);
  cr_assert_eq(esk_codec_check_readable(c, w, esk_schema_set_get(set, "T", 2), &err),
               check_ok ? ESK_OK : ESK_EINVAL, "%s", err.msg);
  json_decref(wj);
  avro_value_decref(&v);
  esk_buf_free(&out);
  esk_codec_destroy(c);
}

Test(codec, resolution_promotes_numbers_and_converts_string_and_bytes) {
  esk_schema_set_t *set = two_versions(
      EXTRA,
      "{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"b\",\"type\":\"int\"},"
      "{\"name\":\"c\",\"type\":\"long\"},{\"name\":\"d\",\"type\":\"float\"},"
      "{\"name\":\"s\",\"type\":\"string\"},{\"name\":\"y\",\"type\":\"bytes\"}",
      "{\"name\":\"a\",\"type\":\"long\"},{\"name\":\"b\",\"type\":\"double\"},"
      "{\"name\":\"c\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"double\"},"
      "{\"name\":\"s\",\"type\":\"bytes\"},{\"name\":\"y\",\"type\":\"string\"}");
  assert_resolves(set, "{\"a\":-7,\"b\":3,\"c\":1099511627776,\"d\":0.5,\"s\":\"hi\",\"y\":\"yo\"}",
                  "{\"a\":-7,\"b\":3.0,\"c\":1099511627776.0,\"d\":0.5,\"s\":\"hi\",\"y\":\"yo\"}", 1);
  esk_schema_set_destroy(set);
}

Test(codec, resolution_fills_defaults_drops_removed_fields_and_follows_aliases) {
  esk_schema_set_t *set = two_versions(
      EXTRA,
      "{\"name\":\"keep\",\"type\":\"string\"},"
      "{\"name\":\"gone\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":[\"null\",\"t.Extra\"]}}},"
      "{\"name\":\"old_name\",\"type\":\"long\"},{\"name\":\"gone2\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":3}}",
      "{\"name\":\"keep\",\"type\":\"string\"},"
      "{\"name\":\"new_name\",\"type\":\"long\",\"aliases\":[\"old_name\"]},"
      "{\"name\":\"n\",\"type\":[\"null\",\"long\"],\"default\":null},"
      "{\"name\":\"rec\",\"type\":\"t.Extra\",\"default\":{\"e\":\"GREEN\",\"e2\":\"L\"}},"
      "{\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"int\"},\"default\":[1,2]}");
  assert_resolves(set,
                  "{\"keep\":\"k\",\"gone\":{\"x\":[null,{\"e\":\"RED\",\"e2\":\"S\"}]},"
                  "\"old_name\":42,\"gone2\":\"abc\"}",
                  "{\"keep\":\"k\",\"new_name\":42,\"n\":null,\"rec\":{\"e\":\"GREEN\",\"e2\":\"L\"},"
                  "\"arr\":[1,2]}", 1);
  esk_schema_set_destroy(set);
}

Test(codec, resolution_matches_union_branches_and_enum_symbols) {
  esk_schema_set_t *set = two_versions(
      EXTRA
      /* a second enum in the reader's namespace is defined in T.v2 itself */,
      "{\"name\":\"u\",\"type\":[\"null\",\"int\",\"string\"]},"
      "{\"name\":\"w\",\"type\":\"int\"},"
      "{\"name\":\"x\",\"type\":{\"type\":\"enum\",\"name\":\"Mood\",\"symbols\":[\"HAPPY\",\"SAD\",\"MEH\"]}}",
      "{\"name\":\"u\",\"type\":[\"string\",\"long\",\"null\"]},"
      "{\"name\":\"w\",\"type\":[\"null\",\"double\"]},"
      "{\"name\":\"x\",\"type\":{\"type\":\"enum\",\"name\":\"Mood\",\"symbols\":[\"UNKNOWN\",\"SAD\",\"HAPPY\"],\"default\":\"UNKNOWN\"}}");
  assert_resolves(set, "{\"u\":5,\"w\":2,\"x\":\"HAPPY\"}", "{\"u\":5,\"w\":2.0,\"x\":\"HAPPY\"}", 1);
  assert_resolves(set, "{\"u\":null,\"w\":2,\"x\":\"MEH\"}", "{\"u\":null,\"w\":2.0,\"x\":\"UNKNOWN\"}", 1);
  assert_resolves(set, "{\"u\":\"s\",\"w\":2,\"x\":\"SAD\"}", "{\"u\":\"s\",\"w\":2.0,\"x\":\"SAD\"}", 1);
  esk_schema_set_destroy(set);
}

Test(codec, a_writer_union_branch_the_reader_cannot_read_is_poison_only_when_it_occurs) {
  esk_schema_set_t *set = two_versions(EXTRA, "{\"name\":\"u\",\"type\":[\"null\",\"long\"]}",
                                       "{\"name\":\"u\",\"type\":\"long\"}");
  assert_resolves(set, "{\"u\":9}", "{\"u\":9}", 0);
  esk_codec_t *c = NULL;
  esk_error_t err = {0};
  const esk_schema_t *reader;
  avro_value_t *out;
  cr_assert_eq(esk_codec_new(&c, set, NULL, &err), ESK_OK);
  uint64_t fp = esk_schema_fingerprint(esk_schema_set_get(set, "T", 1));
  uint8_t msg[11] = {0xC3, 0x01};
  for (int i = 0; i < 8; i++) msg[2 + i] = (uint8_t)(fp >> (8 * i));
  msg[10] = 0; /* branch 0: null */
  cr_assert_eq(esk_codec_decode(c, msg, sizeof(msg), 2, &reader, &out, &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "branch 0 (null) cannot be read"), "%s", err.msg);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}

/* Booleans, floats, doubles and fixed are read (read_prim) or skipped (skip) through
 * rd_fixed(), whose pointer gcc -O3 once took for unset after a failure (issue 14): every
 * cut of such a message, the header's included, is poison, and the whole one decodes. */
Test(codec, every_truncation_of_booleans_floats_doubles_and_fixed_is_poison) {
  esk_schema_set_t *set = two_versions(
      "{\"type\":\"fixed\",\"name\":\"t.X\",\"size\":4}",
      "{\"name\":\"b\",\"type\":\"boolean\"},{\"name\":\"f\",\"type\":\"float\"},"
      "{\"name\":\"d\",\"type\":\"double\"},{\"name\":\"x\",\"type\":\"t.X\"},"
      "{\"name\":\"gb\",\"type\":\"boolean\"},{\"name\":\"gf\",\"type\":\"float\"},"
      "{\"name\":\"gd\",\"type\":\"double\"},{\"name\":\"gx\",\"type\":\"t.X\"}",
      "{\"name\":\"b\",\"type\":\"boolean\"},{\"name\":\"f\",\"type\":\"float\"},"
      "{\"name\":\"d\",\"type\":\"double\"},{\"name\":\"x\",\"type\":\"t.X\"}");
  esk_codec_t *c = NULL;
  esk_error_t err = {0};
  avro_value_t v;
  esk_buf_t msg;
  esk_buf_init(&msg, 0);
  cr_assert_eq(esk_codec_new(&c, set, NULL, &err), ESK_OK, "%s", err.msg);
  const esk_schema_t *w = esk_schema_set_get(set, "T", 1);
  cr_assert_eq(esk_value_new(&v, w, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_value_from_json(&v, w,
                                   "{\"b\":true,\"f\":0.5,\"d\":-2.25,\"x\":\"abcd\","
                                   "\"gb\":false,\"gf\":1.5,\"gd\":3.0,\"gx\":\"wxyz\"}",
                                   &err),
               ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_codec_encode(c, w, &v, &msg, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(msg.len, 10 + 1 + 4 + 8 + 4 + 1 + 4 + 8 + 4);
  for (size_t n = 0; n < msg.len; n++) {
    const esk_schema_t *reader = NULL;
    avro_value_t *out = NULL;
    esk_error_clear(&err);
    cr_assert_eq(esk_codec_decode(c, msg.data, n, 0, &reader, &out, &err), ESK_EPOISON,
                 "truncated to %zu bytes", n);
    cr_assert(err.msg[0], "truncated to %zu bytes", n);
    cr_assert_null(out, "truncated to %zu bytes", n);
  }
  json_t *want = json_loads("{\"b\":true,\"f\":0.5,\"d\":-2.25,\"x\":\"abcd\"}", 0, NULL);
  assert_decodes_to(c, msg.data, msg.len, 2, want, "the whole message");
  json_decref(want);
  avro_value_decref(&v);
  esk_buf_free(&msg);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}

Test(codec, check_readable_names_type_versions_and_field_without_default) {
  esk_schema_set_t *set = two_versions(EXTRA, "{\"name\":\"a\",\"type\":\"long\"}",
                                       "{\"name\":\"a\",\"type\":\"long\"},"
                                       "{\"name\":\"inner\",\"type\":{\"type\":\"record\",\"name\":\"In\",\"fields\":["
                                       "{\"name\":\"z\",\"type\":\"string\"}]},\"default\":{\"z\":\"\"}},"
                                       "{\"name\":\"added\",\"type\":\"string\"}");
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_check_readable(NULL, esk_schema_set_get(set, "T", 1),
                                        esk_schema_set_get(set, "T", 2), &err),
               ESK_EINVAL);
  cr_assert(strstr(err.msg, "T v1 cannot be read as v2") && strstr(err.msg, "'added'"), "%s",
            err.msg);
  esk_schema_set_destroy(set);
}

Test(codec, money_deposited_v1_needs_the_bank_upcaster_to_reach_v3) {
  esk_schema_set_t *set = bank_set();
  esk_codec_t *plain = NULL, *bank = bank_codec(set, NULL);
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_new(&plain, set, NULL, &err), ESK_OK);
  const esk_schema_t *v1 = esk_schema_set_get(set, "MoneyDeposited", 1),
                     *v3 = esk_schema_set_get(set, "MoneyDeposited", 3);
  cr_assert_eq(esk_codec_check_readable(bank, v1, v3, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_codec_check_readable(plain, v1, v3, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "MoneyDeposited v1 cannot be read as v3") && strstr(err.msg, "amount"),
            "%s", err.msg);
  esk_codec_destroy(plain);
  esk_codec_destroy(bank);
  esk_schema_set_destroy(set);
}

static int failing_upcaster(const avro_value_t *from, avro_value_t *to, esk_error_t *err) {
  (void)from;
  (void)to;
  return esk_error_set(err, ESK_EPOISON, "refused on purpose");
}

Test(codec, a_failing_upcaster_makes_the_message_poison_and_says_which_step) {
  esk_schema_set_t *set = bank_set();
  esk_codec_t *c = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_new(&c, set, NULL, &err), ESK_OK);
  cr_assert_eq(esk_codec_register_upcaster(c, "MoneyDeposited", 2, failing_upcaster, &err), ESK_OK);
  cr_assert_eq(esk_codec_register_upcaster(c, "MoneyDeposited", 2, failing_upcaster, &err),
               ESK_EINVAL);
  cr_assert_eq(esk_codec_register_upcaster(c, "MoneyDeposited", 3, failing_upcaster, &err),
               ESK_ENOTFOUND);
  char path[512];
  snprintf(path, sizeof(path), "%s/MoneyDeposited.v1.bin", FIXTURES);
  FILE *f = fopen(path, "rb");
  cr_assert(f);
  uint8_t buf[4096];
  size_t len = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  const esk_schema_t *reader;
  avro_value_t *out;
  cr_assert_eq(esk_codec_decode(c, buf, len, 0, &reader, &out, &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "MoneyDeposited v2 -> v3") && strstr(err.msg, "refused on purpose"),
            "%s", err.msg);
  /* v1 as v2 needs no upcaster */
  cr_assert_eq(esk_codec_decode(c, buf, len, 2, &reader, &out, &err), ESK_OK, "%s", err.msg);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}

/* ------------------------------------------------------------- bad input */

typedef struct {
  esk_schema_set_t *set;
  esk_codec_t *c;
  uint8_t msg[4096];
  size_t len;
} bad_t;

static void bad_setup(bad_t *b, const esk_codec_limits_t *lim) {
  b->set = bank_set();
  b->c = bank_codec(b->set, lim);
  char path[512];
  snprintf(path, sizeof(path), "%s/MoneyDeposited.v2.bin", FIXTURES);
  FILE *f = fopen(path, "rb");
  cr_assert(f, "%s", path);
  b->len = fread(b->msg, 1, sizeof(b->msg), f);
  fclose(f);
}

static void bad_teardown(bad_t *b) {
  esk_codec_destroy(b->c);
  esk_schema_set_destroy(b->set);
}

static int decode_rc(bad_t *b, size_t len, esk_error_t *err) {
  const esk_schema_t *reader;
  avro_value_t *out;
  return esk_codec_decode(b->c, b->msg, len, 0, &reader, &out, err);
}

Test(codec, every_truncation_of_a_message_is_poison) {
  bad_t b;
  bad_setup(&b, NULL);
  for (size_t n = 0; n < b.len; n++) {
    esk_error_t err = {0};
    cr_assert_eq(decode_rc(&b, n, &err), ESK_EPOISON, "truncated to %zu bytes", n);
    cr_assert(err.msg[0]);
  }
  esk_error_t err = {0};
  cr_assert_eq(decode_rc(&b, b.len, &err), ESK_OK, "%s", err.msg);
  bad_teardown(&b);
}

Test(codec, wrong_magic_unknown_fingerprint_and_trailing_bytes_are_poison) {
  bad_t b;
  esk_error_t err = {0};
  bad_setup(&b, NULL);
  b.msg[b.len] = 0;
  cr_assert_eq(decode_rc(&b, b.len + 1, &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "1 trailing bytes"), "%s", err.msg);
  b.msg[5] ^= 0x40;
  cr_assert_eq(decode_rc(&b, b.len, &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "unknown writer schema fingerprint"), "%s", err.msg);
  b.msg[0] = 0xC4;
  cr_assert_eq(decode_rc(&b, b.len, &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "wrong magic"), "%s", err.msg);
  bad_teardown(&b);
}

/* Replaces the datum with: an EventMeta whose first string has length @p len. */
static size_t with_first_length(bad_t *b, int64_t len) {
  uint64_t z = ((uint64_t)len << 1) ^ (uint64_t)(len >> 63);
  size_t n = 10;
  do {
    b->msg[n++] = (uint8_t)((z & 0x7f) | (z > 0x7f ? 0x80 : 0));
    z >>= 7;
  } while (z);
  memcpy(b->msg + n, "abc", 3);
  return n + 3;
}

Test(codec, negative_and_huge_lengths_are_poison_and_never_allocated) {
  bad_t b;
  esk_codec_limits_t lim = {.max_string_bytes = 1000};
  esk_error_t err = {0};
  bad_setup(&b, &lim);
  cr_assert_eq(decode_rc(&b, with_first_length(&b, -5), &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "negative length"), "%s", err.msg);
  cr_assert_eq(decode_rc(&b, with_first_length(&b, INT64_MAX), &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "over the limit"), "%s", err.msg);
  cr_assert_eq(decode_rc(&b, with_first_length(&b, 1001), &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "over the limit of 1000"), "%s", err.msg);
  cr_assert_eq(decode_rc(&b, with_first_length(&b, 500), &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "runs past the end"), "%s", err.msg);
  /* an 11-byte varint */
  memset(b.msg + 10, 0xff, 11);
  cr_assert_eq(decode_rc(&b, 10 + 12, &err), ESK_EPOISON);
  bad_teardown(&b);
}

Test(codec, arrays_and_maps_over_the_item_limit_and_deep_nesting_are_poison) {
  const char *names[] = {"L.v1.avsc"};
  const char *texts[] = {
      "{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"next\",\"type\":[\"null\",\"L\"]},"
      "{\"name\":\"xs\",\"type\":{\"type\":\"array\",\"items\":\"null\"}}]}"};
  esk_schema_set_t *set = NULL;
  esk_codec_t *c = NULL;
  esk_error_t err = {0};
  esk_codec_limits_t lim = {.max_items = 100, .max_depth = 5};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_schema_set_add_many(set, 1, names, texts, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_codec_new(&c, set, &lim, &err), ESK_OK);
  uint64_t fp = esk_schema_fingerprint(esk_schema_set_get(set, "L", 1));
  uint8_t msg[64] = {0xC3, 0x01};
  for (int i = 0; i < 8; i++) msg[2 + i] = (uint8_t)(fp >> (8 * i));
  const esk_schema_t *reader;
  avro_value_t *out;
  /* next = null; xs = one block of 2^20 nulls (3 bytes claim a million items) */
  uint8_t many[] = {0x00, 0x80, 0x80, 0x80, 0x01, 0x00};
  memcpy(msg + 10, many, sizeof(many));
  cr_assert_eq(esk_codec_decode(c, msg, 10 + sizeof(many), 1, &reader, &out, &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "over 100 items"), "%s", err.msg);
  /* six levels of next */
  size_t n = 10;
  for (int i = 0; i < 6; i++) msg[n++] = 0x02;
  msg[n++] = 0x00;
  for (int i = 0; i < 7; i++) msg[n++] = 0x00;
  cr_assert_eq(esk_codec_decode(c, msg, n, 1, &reader, &out, &err), ESK_EPOISON);
  cr_assert(strstr(err.msg, "deeper than the limit of 5"), "%s", err.msg);
  /* three levels and 2 items decode */
  n = 10;
  for (int i = 0; i < 3; i++) msg[n++] = 0x02;
  msg[n++] = 0x00;
  msg[n++] = 0x04; /* innermost xs: 2 nulls */
  msg[n++] = 0x00;
  for (int i = 0; i < 3; i++) msg[n++] = 0x00;
  cr_assert_eq(esk_codec_decode(c, msg, n, 1, &reader, &out, &err), ESK_OK, "%s", err.msg);
  char *js = NULL;
  cr_assert_eq(esk_value_to_json(out, &js, &err), ESK_OK);
  cr_assert_str_eq(js, "{\"next\":{\"next\":{\"next\":{\"next\":null,\"xs\":[null,null]},\"xs\":[]},"
                       "\"xs\":[]},\"xs\":[]}");
  free(js);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}

typedef struct {
  const char *file, *json, *expect;
} bad_schema_t;

Test(codec, invalid_schema_files_are_einval_naming_the_file_and_the_problem) {
  static const bad_schema_t cases[] = {
      {"A.v1.avsc", "{\"type\":\"record\",\"name\":\"A\",\"fields\":[", "A.v1.avsc: line"},
      {"A.v1.avsc", "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\",\"type\":\"esk.Nope\"}]}",
       "A.v1.avsc: unknown type 'esk.Nope'"},
      {"A.v1.avsc", "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\",\"type\":\"long\",\"default\":\"1\"}]}",
       "A.v1.avsc: field 'x' of A: the default does not match"},
      {"A.v1.avsc", "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\",\"type\":[\"null\",\"long\"],\"default\":1}]}",
       "(its first branch)"},
      {"A.v1.avsc", "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\",\"type\":\"long\"},{\"name\":\"x\",\"type\":\"int\"}]}",
       "declared twice"},
      {"A.v1.avsc", "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"A\"]}", "appears twice"},
      {"A.v1.avsc", "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"u\",\"type\":[\"long\",\"long\"]}]}",
       "two long branches"},
      {"A.v1.avsc", "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"u\",\"type\":{\"type\":\"array\"}}]}",
       "array without \"items\""},
      {"A.v1.avsc", "{\"type\":\"record\",\"name\":\"9A\",\"fields\":[]}", "needs a valid \"name\""},
      {"A.avsc", "\"long\"", "A.avsc: the file name must be <Type>.v<N>.avsc"},
      {"A.v0.avsc", "\"long\"", "A.v0.avsc: the file name"},
      {"A.v1.avsc", "{\"type\":\"nonsense\"}", "unknown type 'nonsense'"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    esk_schema_set_t *set = NULL;
    esk_error_t err = {0};
    cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
    cr_expect_eq(esk_schema_set_add(set, cases[i].file, cases[i].json, &err), ESK_EINVAL,
                 "case %zu", i);
    cr_expect(strstr(err.msg, cases[i].expect), "case %zu: '%s' lacks '%s'", i, err.msg,
              cases[i].expect);
    cr_expect_eq(esk_schema_set_count(set), 0);
    esk_schema_set_destroy(set);
  }
}

Test(codec, a_named_type_defined_in_two_files_is_an_ambiguous_reference) {
  const char *names[] = {"X.v1.avsc", "X.v2.avsc", "User.v1.avsc"};
  const char *texts[] = {"{\"type\":\"fixed\",\"name\":\"X\",\"size\":1}",
                         "{\"type\":\"fixed\",\"name\":\"X\",\"size\":2}",
                         "{\"type\":\"record\",\"name\":\"U\",\"fields\":[{\"name\":\"x\",\"type\":\"X\"}]}"};
  esk_schema_set_t *set = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_schema_set_add_many(set, 3, names, texts, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "User.v1.avsc: type 'X' is defined in both"), "%s", err.msg);
  cr_assert_eq(esk_schema_set_add_many(set, 2, names, texts, &err), ESK_OK, "%s", err.msg);
  esk_schema_set_destroy(set);
}

Test(codec, field_getters_read_fields_and_name_a_missing_or_mistyped_one) {
  esk_schema_set_t *set = bank_set();
  const esk_schema_t *s = esk_schema_set_get(set, "DepositMoney", 1);
  avro_value_t v, amount;
  esk_error_t err = {0};
  cr_assert_eq(esk_value_new(&v, s, &err), ESK_OK);
  cr_assert_eq(esk_value_from_json(&v, s, "{\"command_id\":\"c-1\",\"account_id\":\"a\","
                                       "\"amount\":{\"minor_units\":5,\"currency\":\"EUR\"},"
                                       "\"actor\":\"me\",\"correlation_id\":\"k\"}", &err),
               ESK_OK, "%s", err.msg);
  const char *id = NULL, *cur = NULL;
  int64_t units = 0;
  cr_assert_eq(esk_value_field_str(&v, "command_id", &id, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(id, "c-1");
  cr_assert_eq(esk_value_field(&v, "amount", &amount, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_value_field_long(&amount, "minor_units", &units, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(units, 5);
  cr_assert_eq(esk_value_field_str(&amount, "currency", &cur, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(cur, "EUR");
  cr_expect_eq(esk_value_field(&v, "nope", &amount, &err), ESK_EPOISON);
  cr_expect_str_eq(err.msg, "no field 'nope' in DepositMoney");
  cr_expect_eq(esk_value_field_long(&v, "command_id", &units, &err), ESK_EPOISON);
  cr_expect_str_eq(err.msg, "field 'command_id' is not a long");
  cr_expect_eq(esk_value_field_str(&v, "amount", &cur, &err), ESK_EPOISON);
  cr_expect_str_eq(err.msg, "field 'amount' is not a string");
  avro_value_decref(&v);
  esk_schema_set_destroy(set);
}

Test(codec, value_from_json_takes_defaults_and_names_a_missing_field) {
  esk_schema_set_t *set = bank_set();
  const esk_schema_t *s = esk_schema_set_get(set, "DepositMoney", 1);
  avro_value_t v;
  esk_error_t err = {0};
  char *js = NULL;
  cr_assert_eq(esk_value_new(&v, s, &err), ESK_OK);
  cr_assert_eq(esk_value_from_json(&v, s, "{\"command_id\":\"c\",\"account_id\":\"a\","
                                       "\"amount\":{\"minor_units\":5,\"currency\":\"EUR\"},"
                                       "\"actor\":\"me\",\"correlation_id\":\"k\"}", &err),
               ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_value_to_json(&v, &js, &err), ESK_OK);
  cr_assert_str_eq(js, "{\"command_id\":\"c\",\"account_id\":\"a\",\"amount\":{\"minor_units\":5,"
                       "\"currency\":\"EUR\"},\"description\":\"\",\"expected_version\":null,"
                       "\"actor\":\"me\",\"correlation_id\":\"k\"}");
  free(js);
  cr_assert_eq(esk_value_from_json(&v, s, "{\"command_id\":\"c\",\"account_id\":\"a\","
                                       "\"amount\":{\"minor_units\":5},"
                                       "\"actor\":\"me\",\"correlation_id\":\"k\"}", &err),
               ESK_EINVAL);
  cr_assert_str_eq(err.msg, "amount.currency: missing, and the field has no default");
  /* the schema given must be the value's: another one, or none, is refused */
  const esk_schema_t *other = esk_schema_set_get(set, "WithdrawMoney", 1);
  cr_assert_not_null(other);
  cr_assert_eq(esk_value_from_json(&v, other, "{}", &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "not of the schema given"), "%s", err.msg);
  cr_assert_eq(esk_value_from_json(&v, NULL, "{}", &err), ESK_EINVAL);
  avro_value_decref(&v);
  esk_schema_set_destroy(set);
}

Test(codec, decoded_strings_are_nul_terminated_where_avro_c_says_they_end) {
  bad_t b;
  bad_setup(&b, NULL); /* MoneyDeposited v2 */
  const esk_schema_t *reader;
  avro_value_t *out, meta, f;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_decode(b.c, b.msg, b.len, 2, &reader, &out, &err), ESK_OK, "%s", err.msg);
  avro_value_get_by_name(out, "meta", &meta, NULL);
  const char *names[] = {"aggregate_type", "aggregate_id", "actor"};
  for (size_t i = 0; i < 3; i++) {
    const char *s;
    size_t size;
    cr_assert_eq(avro_value_get_by_name(&meta, names[i], &f, NULL), 0, "%s", names[i]);
    cr_assert_eq(avro_value_get_string(&f, &s, &size), 0, "%s is not a string", names[i]);
    cr_assert_gt(size, 1);
    cr_assert_eq(s[size - 1], '\0', "%s", names[i]);
    cr_assert_eq(strlen(s), size - 1, "%s", names[i]);
  }
  bad_teardown(&b);
}

/* ------------------------------------- strings C cannot keep (issue 17) */

#define REFUSED ESK_SOURCE_DIR "/tests/fixtures/avro/refused"

typedef struct {
  esk_schema_set_t *set;
  esk_codec_t *codec;
  size_t cases, files;
  size_t fields_with_nul; /* distinct (file, field) pairs refused for U+0000 */
} refused_ctx_t;

/* Decodes one refused case at @p version and checks the refusal names it. */
static void assert_refused(esk_codec_t *c, const uint8_t *msg, size_t len, int version,
                           json_t *cs, const char *what) {
  const char *field = json_string_value(json_object_get(cs, "field"));
  int nul = !strcmp(json_string_value(json_object_get(cs, "kind")), "nul");
  size_t at = (size_t)json_integer_value(json_object_get(cs, "at"));
  uint8_t *str;
  size_t slen = unhex(json_string_value(json_object_get(cs, "string_hex")), &str);
  const esk_schema_t *reader = NULL;
  avro_value_t *v = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_decode(c, msg, len, version, &reader, &v, &err), ESK_EPOISON,
               "%s: decoded instead of refused", what);
  const esk_codec_refusal_t *r = esk_codec_refusal(c, &err);
  cr_assert(r, "%s: refused, but not as a string: %s", what, err.msg);
  cr_expect_str_eq(r->path, field, "%s", what);
  cr_expect_eq(r->nul, nul, "%s", what);
  cr_expect_eq(r->at, at, "%s", what);
  cr_expect_eq(r->length, slen, "%s", what);
  cr_assert_lt(r->offset, len, "%s", what);
  cr_expect_eq(msg[r->offset], str[at], "%s: the offset is not the offending byte", what);
  char quoted[256];
  snprintf(quoted, sizeof(quoted), "'%s'", field);
  cr_expect(strstr(err.msg, quoted) && strstr(err.msg, nul ? "U+0000" : "not valid UTF-8"),
            "%s: the message does not name the field and the problem: %s", what, err.msg);
  free(str);
}

static void check_refused_file(refused_ctx_t *ctx, const char *path) {
  json_error_t jerr;
  json_t *f = json_load_file(path, 0, &jerr);
  cr_assert(f, "%s: %s", path, jerr.text);
  const char *type = json_string_value(json_object_get(f, "type"));
  int version = (int)json_integer_value(json_object_get(f, "version"));
  cr_assert(esk_schema_set_get(ctx->set, type, version), "no schema %s v%d", type, version);
  size_t i;
  json_t *cs;
  json_array_foreach(json_object_get(f, "cases"), i, cs) {
    char what[256];
    uint8_t *msg;
    size_t len = unhex(json_string_value(json_object_get(cs, "single_object_hex")), &msg);
    const char *field = json_string_value(json_object_get(cs, "field"));
    const char *kind = json_string_value(json_object_get(cs, "kind"));
    snprintf(what, sizeof(what), "%s v%d %s (%s) as v%d", type, version, field, kind, version);
    assert_refused(ctx->codec, msg, len, version, cs, what);
    snprintf(what, sizeof(what), "%s v%d %s (%s) as the latest", type, version, field, kind);
    assert_refused(ctx->codec, msg, len, 0, cs, what);
    if (!strcmp(kind, "nul")) ctx->fields_with_nul++;
    ctx->cases++;
    free(msg);
  }
  json_decref(f);
  ctx->files++;
}

Test(codec, every_string_field_of_every_type_with_u0000_or_bad_utf8_is_refused_by_name) {
  refused_ctx_t ctx = {bank_set(), NULL, 0, 0, 0};
  ctx.codec = bank_codec(ctx.set, NULL);
  DIR *d = opendir(REFUSED);
  cr_assert(d, "cannot open %s", REFUSED);
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 6 || strcmp(e->d_name + len - 5, ".json")) continue;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", REFUSED, e->d_name);
    check_refused_file(&ctx, path);
  }
  closedir(d);
  cr_assert_eq(ctx.files, esk_schema_set_count(ctx.set), "a refused fixture for every schema");
  /* 4 commands (6, 6, 5, 5 strings), 6 event versions, EventMeta, Money: 80 fields;
   * AccountSnapshot (account_id, owner_id, currency): 3 */
  cr_assert_eq(ctx.fields_with_nul, 83, "%zu fields", ctx.fields_with_nul);
  cr_assert_eq(ctx.cases, 2 * ctx.fields_with_nul);
  /* after a refusal, a good message decodes; a failure of another kind is no refusal */
  uint8_t buf[4096];
  FILE *f = fopen(FIXTURES "/DepositMoney.v1.bin", "rb");
  cr_assert(f);
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  const esk_schema_t *reader;
  avro_value_t *v;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_decode(ctx.codec, buf, n, 0, &reader, &v, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_codec_decode(ctx.codec, buf, n - 1, 0, &reader, &v, &err), ESK_EPOISON);
  cr_assert_null(esk_codec_refusal(ctx.codec, &err), "%s", err.msg);
  cr_assert_eq(esk_codec_decode(ctx.codec, buf, 3, 0, &reader, &v, &err), ESK_EPOISON);
  cr_assert_null(esk_codec_refusal(ctx.codec, &err), "%s", err.msg);
  esk_codec_destroy(ctx.codec);
  esk_schema_set_destroy(ctx.set);
}

/* A set with one type S: a string s, an array of strings a, a map of strings m. */
static esk_schema_set_t *strings_set(void) {
  const char *names[] = {"S.v1.avsc"};
  const char *texts[] = {
      "{\"type\":\"record\",\"name\":\"S\",\"namespace\":\"t\",\"fields\":["
      "{\"name\":\"s\",\"type\":\"string\"},"
      "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
      "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"string\"]}},"
      "{\"name\":\"b\",\"type\":\"bytes\"}]}"};
  esk_schema_set_t *set = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_schema_set_add_many(set, 1, names, texts, &err), ESK_OK, "%s", err.msg);
  return set;
}

/* Writes an S message by hand: s, then the array's items, the map's (key,
 * value) pairs and b, each as a length and its bytes. */
static size_t s_message(const esk_schema_t *s, uint8_t *out, const char *str, size_t slen,
                        const char *const *items, size_t nitems, const char *key, size_t klen,
                        const char *val, size_t vlen) {
  uint64_t fp = esk_schema_fingerprint(s);
  size_t o = 0;
  out[o++] = 0xC3;
  out[o++] = 0x01;
  for (int i = 0; i < 8; i++) out[o++] = (uint8_t)(fp >> (8 * i));
#define PUTLEN(n) (out[o++] = (uint8_t)(2 * (n))) /* zig-zag, lengths below 64 */
  PUTLEN(slen);
  memcpy(out + o, str, slen);
  o += slen;
  if (nitems) {
    PUTLEN(nitems);
    for (size_t i = 0; i < nitems; i++) {
      size_t n = strlen(items[i]);
      PUTLEN(n);
      memcpy(out + o, items[i], n);
      o += n;
    }
  }
  out[o++] = 0;
  if (key) {
    PUTLEN(1);
    PUTLEN(klen);
    memcpy(out + o, key, klen);
    o += klen;
    out[o++] = 2; /* union branch 1: string */
    PUTLEN(vlen);
    memcpy(out + o, val, vlen);
    o += vlen;
  }
  out[o++] = 0;
  PUTLEN(3);
  memcpy(out + o, "b\0b", 3); /* bytes may hold anything */
  o += 3;
#undef PUTLEN
  return o;
}

Test(codec, refused_strings_in_arrays_maps_and_map_keys_are_named_by_their_path) {
  esk_schema_set_t *set = strings_set();
  esk_codec_t *c = bank_codec_plain(set);
  const esk_schema_t *s = esk_schema_set_get(set, "S", 1);
  const char *items[] = {"ok", "caf\xc3\xa9", "x\xc3"};
  uint8_t msg[512];
  size_t len = s_message(s, msg, "fine", 4, items, 3, NULL, 0, NULL, 0);
  const esk_schema_t *reader;
  avro_value_t *v;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_decode(c, msg, len, 0, &reader, &v, &err), ESK_EPOISON);
  cr_assert(esk_codec_refusal(c, &err));
  cr_expect_str_eq(esk_codec_refusal(c, &err)->path, "a[2]");
  cr_expect_eq(esk_codec_refusal(c, &err)->nul, 0);
  cr_expect_eq(esk_codec_refusal(c, &err)->at, 1);

  len = s_message(s, msg, "fine", 4, items, 2, "k\xc3\xa9y", 4, "v\0w", 3);
  cr_assert_eq(esk_codec_decode(c, msg, len, 0, &reader, &v, &err), ESK_EPOISON);
  cr_assert(esk_codec_refusal(c, &err), "%s", err.msg);
  cr_expect_str_eq(esk_codec_refusal(c, &err)->path, "m[\"k\xc3\xa9y\"]");
  cr_expect_eq(esk_codec_refusal(c, &err)->nul, 1);
  cr_expect(strstr(err.msg, "'m[\"k\xc3\xa9y\"]' holds U+0000 at byte 1 of its 3"), "%s", err.msg);

  len = s_message(s, msg, "fine", 4, items, 2, "k\0y", 3, "v", 1);
  cr_assert_eq(esk_codec_decode(c, msg, len, 0, &reader, &v, &err), ESK_EPOISON);
  cr_assert(esk_codec_refusal(c, &err), "%s", err.msg);
  cr_expect_str_eq(esk_codec_refusal(c, &err)->path, "m[key of entry 0]");

  len = s_message(s, msg, "\0", 1, items, 2, "k", 1, "v", 1);
  cr_assert_eq(esk_codec_decode(c, msg, len, 0, &reader, &v, &err), ESK_EPOISON);
  cr_assert(esk_codec_refusal(c, &err), "%s", err.msg);
  cr_expect_str_eq(esk_codec_refusal(c, &err)->path, "s");
  cr_expect_eq(esk_codec_refusal(c, &err)->offset, 11, "the byte after the header and the length");

  /* bytes with a NUL, and valid strings, decode whole */
  len = s_message(s, msg, "fine", 4, items, 2, "k", 1, "v", 1);
  cr_assert_eq(esk_codec_decode(c, msg, len, 0, &reader, &v, &err), ESK_OK, "%s", err.msg);
  avro_value_t b;
  const void *bp;
  size_t bn;
  cr_assert_eq(avro_value_get_by_name(v, "b", &b, NULL), 0, "no field b");
  cr_assert_eq(avro_value_get_bytes(&b, &bp, &bn), 0, "b is not bytes");
  cr_expect(bn == 3 && !memcmp(bp, "b\0b", 3));

  /* not a truncation or a structural error: no refusal */
  cr_assert_eq(esk_codec_decode(c, msg, len - 1, 0, &reader, &v, &err), ESK_EPOISON);
  cr_assert_null(esk_codec_refusal(c, &err));
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}

Test(codec, well_formed_utf8_up_to_u10ffff_is_kept_and_every_ill_formed_sequence_refused) {
  esk_schema_set_t *set = strings_set();
  esk_codec_t *c = bank_codec_plain(set);
  const esk_schema_t *s = esk_schema_set_get(set, "S", 1);
  const char *items[] = {"x"};
  static const struct {
    const char *bytes;
    size_t len;
    long bad_at; /* -1: valid */
  } t[] = {
      {"", 0, -1},
      {"plain ascii, longer than a word", 31, -1},
      {"\xc2\x80\xdf\xbf", 4, -1},                 /* U+0080, U+07FF */
      {"\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80", 9, -1}, /* U+0800, U+D7FF, U+E000 */
      {"\xef\xbf\xbf\xf0\x90\x80\x80", 7, -1},     /* U+FFFF, U+10000 */
      {"abcdefgh\xf4\x8f\xbf\xbf", 12, -1},        /* after a word of ASCII: U+10FFFF */
      {"abcdefg\0", 8, 7},                         /* NUL in the last byte of a word */
      {"abcdefghijklmno\0p", 17, 15},
      {"\xc0\x80", 2, 0},                          /* overlong NUL (modified UTF-8) */
      {"\xc1\xbf", 2, 0},
      {"a\xe0\x9f\xbf", 4, 1},                     /* overlong 3-byte */
      {"ab\xed\xa0\x80", 5, 2},                    /* surrogate U+D800 */
      {"\xed\xbf\xbf", 3, 0},                      /* surrogate U+DFFF */
      {"\xf0\x8f\xbf\xbf", 4, 0},                  /* overlong 4-byte */
      {"\xf4\x90\x80\x80", 4, 0},                  /* U+110000 */
      {"\xf5\x80\x80\x80", 4, 0},
      {"\xff", 1, 0},
      {"abcdefgh\x80", 9, 8},                      /* stray continuation after a word */
      {"\xe2\x82", 2, 0},                          /* truncated at the end */
      {"\xe2\x82z", 3, 0},                         /* a continuation missing */
      {"\xf0\x9f\x98", 3, 0},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    uint8_t msg[512];
    size_t len = s_message(s, msg, t[i].bytes, t[i].len, items, 1, NULL, 0, NULL, 0);
    const esk_schema_t *reader;
    avro_value_t *v;
    esk_error_t err = {0};
    int rc = esk_codec_decode(c, msg, len, 0, &reader, &v, &err);
    if (t[i].bad_at < 0) {
      cr_expect_eq(rc, ESK_OK, "case %zu: %s", i, err.msg);
      if (rc) continue;
      avro_value_t f;
      const char *str;
      size_t size;
      cr_assert_eq(avro_value_get_by_name(v, "s", &f, NULL), 0, "case %zu: no field s", i);
      cr_assert_eq(avro_value_get_string(&f, &str, &size), 0, "case %zu: s is not a string", i);
      cr_expect(size == t[i].len + 1 && !memcmp(str, t[i].bytes, t[i].len), "case %zu", i);
    } else {
      cr_expect_eq(rc, ESK_EPOISON, "case %zu decoded", i);
      const esk_codec_refusal_t *r = esk_codec_refusal(c, &err);
      cr_expect(r && r->at == (size_t)t[i].bad_at && r->nul == (t[i].bytes[t[i].bad_at] == 0),
                "case %zu: %s", i, err.msg);
    }
  }
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}

Test(codec, raw_string_gives_a_top_level_field_exactly_as_written) {
  esk_schema_set_t *set = strings_set();
  esk_codec_t *c = bank_codec_plain(set);
  const esk_schema_t *s = esk_schema_set_get(set, "S", 1);
  const char *items[] = {"x"};
  uint8_t msg[512];
  size_t len = s_message(s, msg, "id\0tail", 7, items, 1, NULL, 0, NULL, 0);
  const char *raw = NULL;
  size_t n = 0;
  esk_error_t err = {0};
  cr_assert_eq(esk_codec_raw_string(c, msg, len, "s", &raw, &n, &err), ESK_OK, "%s", err.msg);
  cr_assert(n == 7 && !memcmp(raw, "id\0tail", 7));
  cr_assert_eq(esk_codec_raw_string(c, msg, len, "a", &raw, &n, &err), ESK_ENOTFOUND);
  cr_assert_eq(esk_codec_raw_string(c, msg, len, "nope", &raw, &n, &err), ESK_ENOTFOUND);
  cr_assert_eq(esk_codec_raw_string(c, msg, 12, "s", &raw, &n, &err), ESK_EPOISON);
  msg[0] = 0;
  cr_assert_eq(esk_codec_raw_string(c, msg, len, "s", &raw, &n, &err), ESK_EPOISON);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}
