/* libFuzzer harness for esk_codec_decode (build: -DESK_FUZZ=ON with clang; run: tests/fuzz/run).
 * Input: a whole single-object message for the bank schemas, or 'F' followed
 * by a bare datum of the harness's own schema below (arrays, maps, unions,
 * enums, fixed, recursion), which the fuzzer could not reach by guessing a
 * 64-bit fingerprint. A decoded value is written as JSON and re-encoded, and
 * every string in it must be as long as on the wire (check_strings). A bank
 * event that the field-by-field reader (bank_event_bytes.h) accepts must decode
 * through the codec and the contract's mapping to the same fields
 * (esk_bank_event_bytes_agree). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"
#include "bank_event_bytes.h"
#include "esk/codec.h"

static const char FUZZ_V1[] =
    "{\"type\":\"record\",\"name\":\"Fuzz\",\"namespace\":\"esk.fuzz\",\"fields\":["
    "{\"name\":\"next\",\"type\":[\"null\",\"Fuzz\"]},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":[\"null\",\"int\",\"string\",\"bytes\"]}}},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\",\"C\"]}},"
    "{\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F4\",\"size\":4}},"
    "{\"name\":\"d\",\"type\":\"double\"},{\"name\":\"g\",\"type\":\"float\"},{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"gone\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"map\",\"values\":\"long\"}}}]}";
/* v2 reads v1: drops "gone", promotes, adds defaults, maps enum symbols */
static const char FUZZ_V2[] =
    "{\"type\":\"record\",\"name\":\"Fuzz\",\"namespace\":\"esk.fuzz\",\"fields\":["
    "{\"name\":\"next\",\"type\":[\"null\",\"Fuzz\"]},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":[\"null\",\"long\",\"bytes\",\"string\"]}}},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"C\",\"A\",\"Z\"],\"default\":\"Z\"}},"
    "{\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F4\",\"size\":4}},"
    "{\"name\":\"d\",\"type\":\"double\"},{\"name\":\"g\",\"type\":\"double\"},{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"added\",\"type\":[\"string\",\"null\"],\"default\":\"x\"}]}";

/* avro-c puts a generic value 4 bytes into its allocation (its reference
 * count comes first), so the pointers inside a decoded value sit on 4-byte
 * boundaries; LeakSanitizer's default scan reads aligned words only, misses
 * them and now and then reports the strings a live value holds as leaked. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "use_unaligned=1"; }

static esk_schema_set_t *set;
static esk_codec_t *codec;
static const esk_schema_t *fuzz_v1;
static esk_bank_event_bytes_t fast;

static void teardown(void) {
  esk_bank_event_bytes_free(&fast);
  esk_codec_destroy(codec);
  esk_schema_set_destroy(set);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  esk_error_t err = {0};
  esk_codec_limits_t lim = {.max_message_bytes = 64 << 10, .max_string_bytes = 4096,
                            .max_items = 1024, .max_depth = 16};
  const char *names[] = {"Fuzz.v1.avsc", "Fuzz.v2.avsc"};
  const char *texts[] = {FUZZ_V1, FUZZ_V2};
  if (esk_schema_set_new(&set, &err) || esk_bank_schemas_load(set, &err) ||
      esk_schema_set_add_many(set, 2, names, texts, &err) ||
      esk_codec_new(&codec, set, &lim, &err) || esk_bank_register_upcasters(codec, &err))
    abort();
  fuzz_v1 = esk_schema_set_get(set, "Fuzz", 1);
  if (esk_bank_event_bytes_init(&fast, set, codec, &err) || !esk_bank_event_bytes_count(&fast))
    abort();
  atexit(teardown); /* so that leak checking at exit sees only real leaks */
  return 0;
}

/* Every string of a decoded value is whole (issue 17): the length C sees
 * (strlen) is the length avro-c holds, which is the length on the wire, so no
 * U+0000 is inside; and it is UTF-8. A map key is a C string in avro-c: it must
 * be UTF-8 too (one with a NUL would have been cut before this). The codec
 * refuses such strings; it must never hand one out cut short. */
static void check_strings(const avro_value_t *v) {
  switch (avro_value_get_type(v)) {
  case AVRO_STRING: {
    const char *s = NULL;
    size_t n = 0;
    if (avro_value_get_string(v, &s, &n) || !s || n == 0 || s[n - 1] != '\0') abort();
    if (strlen(s) != n - 1) abort(); /* shorter than on the wire: cut at a NUL */
    if (esk_utf8_check(s, n - 1) != n - 1) abort();
    return;
  }
  case AVRO_RECORD:
  case AVRO_ARRAY:
  case AVRO_MAP: {
    size_t n = 0;
    avro_value_get_size(v, &n);
    for (size_t i = 0; i < n; i++) {
      avro_value_t item;
      const char *key = NULL;
      avro_value_get_by_index(v, i, &item, &key);
      if (avro_value_get_type(v) == AVRO_MAP &&
          (!key || esk_utf8_check(key, strlen(key)) != strlen(key)))
        abort();
      check_strings(&item);
    }
    return;
  }
  case AVRO_UNION: {
    avro_value_t br;
    if (!avro_value_get_current_branch(v, &br)) check_strings(&br);
    return;
  }
  default: return;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  esk_error_t err = {0};
  const esk_schema_t *reader;
  avro_value_t *v;
  uint8_t *msg = NULL;
  int version = 0;
  if (size >= 1 && data[0] == 'F') {
    msg = malloc(size + 9);
    if (!msg) return 0;
    uint64_t fp = esk_schema_fingerprint(fuzz_v1);
    msg[0] = 0xC3;
    msg[1] = 0x01;
    for (int i = 0; i < 8; i++) msg[2 + i] = (uint8_t)(fp >> (8 * i));
    memcpy(msg + 10, data + 1, size - 1);
    data = msg;
    size += 9;
    version = size % 2 ? 1 : 2; /* both the identity plan and the resolving one */
  }
  esk_bank_event_t fast_ev;
  esk_bank_event_read_meta_t fast_meta;
  int fast_ok = !msg && esk_bank_event_bytes_read(&fast, data, size, &fast_ev, &fast_meta) == ESK_OK;
  if (esk_codec_decode(codec, data, size, version, &reader, &v, &err) == ESK_OK) {
    char *json = NULL;
    check_strings(v);
    if (fast_ok && !esk_bank_event_bytes_agree(&fast_ev, &fast_meta, reader, v))
      abort(); /* the field-by-field reader read other fields than the codec */
    esk_buf_t out;
    esk_buf_init(&out, 1 << 20);
    if (esk_value_to_json(v, &json, &err) == ESK_OK) free(json);
    if (esk_codec_encode(codec, reader, v, &out, &err) != ESK_OK) abort(); /* a decoded value must encode */
    esk_buf_free(&out);
  } else if (err.msg[0] == '\0' || fast_ok) {
    abort(); /* every failure says why; the fast path accepts nothing the codec refuses */
  }
  free(msg);
  return 0;
}
