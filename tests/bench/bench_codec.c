/* bench_codec [ITERATIONS] — one core, a ~150-byte MoneyDeposited event:
 *   encode (single-object) vs avro-c's avro_value_write of the same value,
 *   decode v3 -> v3 vs avro-c's avro_value_read (trusted bytes, no checks),
 *   decode v1 -> v3 (resolution with defaults, then the v2 -> v3 upcaster),
 *   the bank's mapping of the decoded value to esk_bank_event_t, each field
 *   found by name (baseline) and by the positions a reader keeps,
 *   the whole way from bytes to esk_bank_event_t: read field by field
 *   (bank_event_bytes.h) against the codec's decode and that mapping.
 * Goals: >= 1M encodes/s, >= 500k decode+resolve/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bank_contract.h"
#include "bank_event_bytes.h"
#include "esk/codec.h"
#include "esk/time.h"

static void die(const char *what, const esk_error_t *err) {
  fprintf(stderr, "bench_codec: %s: %s\n", what, err ? err->msg : avro_strerror());
  exit(1);
}

#define META \
  "\"meta\":{\"event_id\":\"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b\",\"aggregate_type\":\"account\"," \
  "\"aggregate_id\":\"acc-000000001234\",\"aggregate_version\":42,\"occurred_at\":1767225600123456," \
  "\"correlation_id\":\"c0ffee00-1111-4222-8333-444455556666\",\"causation_id\":\"cmd-7\",\"actor\":\"alice\"}"

static void report(const char *what, long n, double secs, double base_secs) {
  printf("%-44s %10.0f /s  %7.1f ns/op", what, n / secs, secs * 1e9 / n);
  if (base_secs > 0) printf("   x%.2f vs avro-c", base_secs / secs);
  printf("\n");
}

/* The bench's codec and its two values: MoneyDeposited v3 and v1. */
typedef struct {
  esk_schema_set_t *set;
  esk_codec_t *c;
  const esk_schema_t *v3, *v1;
  avro_value_t val, val1;
  esk_buf_t out, out1; /* their encodings */
} bench_t;

static void setup(bench_t *b) {
  esk_error_t err = {0};
  if (esk_schema_set_new(&b->set, &err) || esk_bank_schemas_load(b->set, &err) ||
      esk_codec_new(&b->c, b->set, NULL, &err) || esk_bank_register_upcasters(b->c, &err))
    die("setup", &err);
  b->v3 = esk_schema_set_get(b->set, "MoneyDeposited", 3);
  b->v1 = esk_schema_set_get(b->set, "MoneyDeposited", 1);
  if (esk_value_new(&b->val, b->v3, &err) ||
      esk_value_from_json(&b->val, b->v3, "{" META ",\"amount\":{\"minor_units\":125000,\"currency\":\"EUR\"},"
                                "\"description\":\"salary\"}", &err) ||
      esk_value_new(&b->val1, b->v1, &err) ||
      esk_value_from_json(&b->val1, b->v1, "{" META ",\"amount\":125000}", &err))
    die("values", &err);
  esk_buf_init(&b->out, 0);
  esk_buf_init(&b->out1, 0);
  if (esk_codec_encode(b->c, b->v3, &b->val, &b->out, &err) ||
      esk_codec_encode(b->c, b->v1, &b->val1, &b->out1, &err))
    die("encode", &err);
}

/* Baseline encode: avro-c's writer into memory, checked to write what esk
 * writes after its 10-byte header. @returns the seconds. */
static double time_avro_write(bench_t *b, long n) {
  char mem[4096] = {0}; /* avro-c takes it as const */
  avro_writer_t w = avro_writer_memory(mem, sizeof(mem));
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++) {
    avro_writer_reset(w);
    if (avro_value_write(w, &b->val)) die("avro_value_write", NULL);
  }
  double secs = esk_time_mono_s() - t0;
  size_t alen = (size_t)avro_writer_tell(w);
  avro_writer_free(w);
  if (alen != b->out.len - 10 || memcmp(mem, b->out.data + 10, alen)) {
    fprintf(stderr, "bench_codec: esk and avro-c encode differently\n");
    exit(1);
  }
  return secs;
}

static double time_encode(bench_t *b, long n) {
  esk_error_t err = {0};
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++) {
    esk_buf_reset(&b->out);
    if (esk_codec_encode(b->c, b->v3, &b->val, &b->out, &err)) die("encode", &err);
  }
  return esk_time_mono_s() - t0;
}

/* Baseline decode: avro-c's reader, same schema, no resolution, no bounds. */
static double time_avro_read(bench_t *b, long n) {
  esk_error_t err = {0};
  avro_value_t base_val;
  if (esk_value_new(&base_val, b->v3, &err)) die("value", &err);
  avro_reader_t r = avro_reader_memory((const char *)b->out.data + 10, (int64_t)b->out.len - 10);
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++) {
    avro_reader_memory_set_source(r, (const char *)b->out.data + 10, (int64_t)b->out.len - 10);
    avro_value_reset(&base_val);
    if (avro_value_read(r, &base_val)) die("avro_value_read", NULL);
  }
  double secs = esk_time_mono_s() - t0;
  avro_reader_free(r);
  avro_value_decref(&base_val);
  return secs;
}

/* @p n decodes of @p msg to version 3; the last value is checked to equal
 * @p want when it is not NULL. @returns the seconds. */
static double time_decode(bench_t *b, long n, const esk_buf_t *msg, const avro_value_t *want) {
  esk_error_t err = {0};
  const esk_schema_t *reader;
  avro_value_t *dv = NULL;
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++)
    if (esk_codec_decode(b->c, msg->data, msg->len, 3, &reader, &dv, &err)) die("decode", &err);
  double secs = esk_time_mono_s() - t0;
  char *got = NULL, *exp = NULL;
  if (want && (esk_value_to_json(dv, &got, &err) || esk_value_to_json(want, &exp, &err)))
    die("json", &err);
  if (want && strcmp(got, exp)) {
    fprintf(stderr, "bench_codec: decoded value differs:\n %s\n %s\n", got, exp);
    exit(1);
  }
  free(got);
  free(exp);
  return secs;
}

/* @p n mappings of the v3 value to esk_bank_event_t, by the positions
 * @p reader keeps (NULL: every field by name). @returns the seconds. */
static double time_from_value(bench_t *b, long n, esk_bank_event_reader_t *reader) {
  esk_error_t err = {0};
  esk_bank_event_t ev;
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++)
    if (esk_bank_event_from_value(&ev, reader, "MoneyDeposited", &b->val, &err))
      die("from value", &err);
  double secs = esk_time_mono_s() - t0;
  if (ev.u.deposited.amount.minor_units != 125000 || strcmp(ev.account_id, "acc-000000001234")) {
    fprintf(stderr, "bench_codec: the bank event read wrong fields\n");
    exit(1);
  }
  return secs;
}

/* @p n readings of @p msg into esk_bank_event_t: field by field with @p fast,
 * else through the codec and the mapping. @returns the seconds. */
static double time_to_event(bench_t *b, long n, const esk_buf_t *msg,
                            esk_bank_event_bytes_t *fast) {
  esk_error_t err = {0};
  esk_bank_event_reader_t reader = {0};
  esk_bank_event_t ev;
  esk_bank_event_read_meta_t m;
  const esk_schema_t *rs;
  avro_value_t *dv = NULL;
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++) {
    if (fast) {
      if (esk_bank_event_bytes_read(fast, msg->data, msg->len, &ev, &m)) die("fast read", NULL);
    } else if (esk_codec_decode(b->c, msg->data, msg->len, 0, &rs, &dv, &err) ||
               esk_bank_event_from_value(&ev, &reader, esk_schema_type(rs), dv, &err)) {
      die("decode", &err);
    }
  }
  double secs = esk_time_mono_s() - t0;
  esk_bank_event_reader_clear(&reader);
  if (ev.u.deposited.amount.minor_units != 125000) die("wrong amount", NULL);
  return secs;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 2000000;
  if (n <= 0) {
    fprintf(stderr, "usage: bench_codec [ITERATIONS]\n");
    return 2;
  }
  bench_t b = {0};
  setup(&b);
  printf("MoneyDeposited v3 message: %zu bytes (v1: %zu), %ld iterations\n", b.out.len,
         b.out1.len, n);
  double base_enc = time_avro_write(&b, n);
  double enc = time_encode(&b, n);
  double base_dec = time_avro_read(&b, n);
  double dec = time_decode(&b, n, &b.out, &b.val);
  double up = time_decode(&b, n, &b.out1, NULL);
  esk_bank_event_reader_t reader = {0};
  double by_name = time_from_value(&b, n, NULL);
  double by_pos = time_from_value(&b, n, &reader);
  esk_bank_event_reader_clear(&reader);
  esk_error_t err = {0};
  esk_bank_event_bytes_t fast;
  if (esk_bank_event_bytes_init(&fast, b.set, b.c, &err)) die("fast reader", &err);
  double ev3_fast = time_to_event(&b, n, &b.out, &fast);
  double ev3_slow = time_to_event(&b, n, &b.out, NULL);
  double ev1_fast = time_to_event(&b, n, &b.out1, &fast);
  double ev1_slow = time_to_event(&b, n, &b.out1, NULL);
  esk_bank_event_bytes_free(&fast);

  report("encode v3 (esk_codec_encode)", n, enc, base_enc);
  report("  baseline avro_value_write", n, base_enc, 0);
  report("decode+resolve v3 -> v3 (esk_codec_decode)", n, dec, base_dec);
  report("  baseline avro_value_read (no checks)", n, base_dec, 0);
  report("decode v1 -> v3 (resolution + upcaster)", n, up, base_dec);
  report("bank event from the value, by position", n, by_pos, 0);
  report("  baseline: every field by name", n, by_name, 0);
  printf("%-44s x%.2f\n", "  by position against by name", by_name / by_pos);
  report("v3 bytes to the bank event, field by field", n, ev3_fast, 0);
  report("  baseline: decode, then map by position", n, ev3_slow, 0);
  report("v1 bytes to the bank event, field by field", n, ev1_fast, 0);
  report("  baseline: decode, upcast, map by position", n, ev1_slow, 0);
  int ok = n / enc >= 1e6 && n / dec >= 5e5;
  printf("goals (>= 1M encodes/s, >= 500k decodes/s): %s\n", ok ? "met" : "NOT met");

  avro_value_decref(&b.val);
  avro_value_decref(&b.val1);
  esk_buf_free(&b.out);
  esk_buf_free(&b.out1);
  esk_codec_destroy(b.c);
  esk_schema_set_destroy(b.set);
  return 0;
}
