/* bench_codec [ITERATIONS] — one core, a ~150-byte MoneyDeposited event:
 *   encode (single-object) vs avro-c's avro_value_write of the same value,
 *   decode v3 -> v3 vs avro-c's avro_value_read (trusted bytes, no checks),
 *   decode v1 -> v3 (resolution with defaults, then the v2 -> v3 upcaster).
 * Goals: >= 1M encodes/s, >= 500k decode+resolve/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bank_contract.h"
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

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 2000000;
  if (n <= 0) {
    fprintf(stderr, "usage: bench_codec [ITERATIONS]\n");
    return 2;
  }
  esk_error_t err = {0};
  esk_schema_set_t *set = NULL;
  esk_codec_t *c = NULL;
  if (esk_schema_set_new(&set, &err) || esk_bank_schemas_load(set, &err) ||
      esk_codec_new(&c, set, NULL, &err) || esk_bank_register_upcasters(c, &err))
    die("setup", &err);
  const esk_schema_t *v3 = esk_schema_set_get(set, "MoneyDeposited", 3);
  const esk_schema_t *v1 = esk_schema_set_get(set, "MoneyDeposited", 1);
  avro_value_t val, val1;
  if (esk_value_new(&val, v3, &err) ||
      esk_value_from_json(&val, v3, "{" META ",\"amount\":{\"minor_units\":125000,\"currency\":\"EUR\"},"
                                "\"description\":\"salary\"}", &err) ||
      esk_value_new(&val1, v1, &err) ||
      esk_value_from_json(&val1, v1, "{" META ",\"amount\":125000}", &err))
    die("values", &err);

  esk_buf_t out, out1;
  esk_buf_init(&out, 0);
  esk_buf_init(&out1, 0);
  if (esk_codec_encode(c, v3, &val, &out, &err) || esk_codec_encode(c, v1, &val1, &out1, &err))
    die("encode", &err);
  printf("MoneyDeposited v3 message: %zu bytes (v1: %zu), %ld iterations\n", out.len, out1.len, n);

  /* baseline encode: avro-c's writer into memory */
  char mem[4096];
  avro_writer_t w = avro_writer_memory(mem, sizeof(mem));
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++) {
    avro_writer_reset(w);
    if (avro_value_write(w, &val)) die("avro_value_write", NULL);
  }
  double base_enc = esk_time_mono_s() - t0;
  size_t alen = (size_t)avro_writer_tell(w);
  if (alen != out.len - 10 || memcmp(mem, out.data + 10, alen)) {
    fprintf(stderr, "bench_codec: esk and avro-c encode differently\n");
    return 1;
  }

  t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++) {
    esk_buf_reset(&out);
    if (esk_codec_encode(c, v3, &val, &out, &err)) die("encode", &err);
  }
  double enc = esk_time_mono_s() - t0;

  /* baseline decode: avro-c's reader, same schema, no resolution, no bounds */
  avro_value_t base_val;
  esk_value_new(&base_val, v3, &err);
  avro_reader_t r = avro_reader_memory((const char *)out.data + 10, (int64_t)out.len - 10);
  t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++) {
    avro_reader_memory_set_source(r, (const char *)out.data + 10, (int64_t)out.len - 10);
    avro_value_reset(&base_val);
    if (avro_value_read(r, &base_val)) die("avro_value_read", NULL);
  }
  double base_dec = esk_time_mono_s() - t0;

  const esk_schema_t *reader;
  avro_value_t *dv;
  t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++)
    if (esk_codec_decode(c, out.data, out.len, 3, &reader, &dv, &err)) die("decode", &err);
  double dec = esk_time_mono_s() - t0;
  char *got = NULL, *want = NULL;
  if (esk_value_to_json(dv, &got, &err) || esk_value_to_json(&val, &want, &err)) die("json", &err);
  if (strcmp(got, want)) {
    fprintf(stderr, "bench_codec: decoded value differs:\n %s\n %s\n", got, want);
    return 1;
  }
  free(got);
  free(want);

  t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++)
    if (esk_codec_decode(c, out1.data, out1.len, 3, &reader, &dv, &err)) die("decode v1", &err);
  double up = esk_time_mono_s() - t0;

  report("encode v3 (esk_codec_encode)", n, enc, base_enc);
  report("  baseline avro_value_write", n, base_enc, 0);
  report("decode+resolve v3 -> v3 (esk_codec_decode)", n, dec, base_dec);
  report("  baseline avro_value_read (no checks)", n, base_dec, 0);
  report("decode v1 -> v3 (resolution + upcaster)", n, up, base_dec);
  int ok = n / enc >= 1e6 && n / dec >= 5e5;
  printf("goals (>= 1M encodes/s, >= 500k decodes/s): %s\n", ok ? "met" : "NOT met");

  avro_reader_free(r);
  avro_writer_free(w);
  avro_value_decref(&base_val);
  avro_value_decref(&val);
  avro_value_decref(&val1);
  esk_buf_free(&out);
  esk_buf_free(&out1);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
  return 0;
}
