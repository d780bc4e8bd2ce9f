/* bench_shred_cpu [ITERATIONS] - one core, orders' OrderCreated v2 (~300
 * bytes; the email and the five address strings personal): the CPU cost of
 * crypto-shredding per event (docs/architecture.md, "Personal data"):
 *   decode (what every reader pays),
 *   re-encode with the personal fields encrypted (esk-producer's extra work),
 *   decode, decrypt, re-encode (esk-producer's restore; esk-projector pays
 *   decode and decrypt). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esk/codec.h"
#include "esk/shred.h"
#include "esk/time.h"

static void die(const char *what, const esk_error_t *err) {
  fprintf(stderr, "bench_shred_cpu: %s: %s\n", what, err->msg);
  exit(1);
}

static void report(const char *what, long n, double secs) {
  printf("%-52s %9.0f /s  %7.0f ns/op\n", what, n / secs, secs * 1e9 / n);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000;
  if (n <= 0 || (argc > 1 && !strcmp(argv[1], "--help"))) {
    printf("usage: bench_shred_cpu [ITERATIONS]\n");
    return argc > 1 && !strcmp(argv[1], "--help") ? 0 : 2;
  }
  esk_error_t err = {0};
  esk_schema_set_t *set = NULL;
  esk_codec_t *c = NULL;
  if (esk_schema_set_new(&set, &err) ||
      esk_schema_set_load_dir(set, ESK_SOURCE_DIR "/schemas/orders", &err) ||
      esk_codec_new(&c, set, NULL, &err))
    die("schemas", &err);
  const esk_schema_t *s = esk_schema_set_get(set, "OrderCreated", 2);
  char key[] = "/tmp/bench-shred-XXXXXX";
  int fd = mkstemp(key);
  if (fd < 0 || write(fd, "5d2c7e9a0b1f3e4d6c8a7b9e0f1d2c3b4a5e6f708192a3b4c5d6e7f8091a2b3c", 64) != 64)
    return 1;
  close(fd);
  esk_shred_t *sh = NULL;
  if (esk_shred_new(&sh, key, &err)) die("master key", &err);
  unlink(key);
  avro_value_t v;
  if (esk_value_new(&v, s, &err) ||
      esk_value_from_json(
          &v, s,
          "{\"meta\":{\"event_id\":\"6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b\",\"aggregate_type\":"
          "\"Order\",\"aggregate_id\":\"o-000000001234\",\"aggregate_version\":1,\"occurred_at\":"
          "1767225600123456,\"correlation_id\":\"c0ffee00-1111-4222-8333-444455556666\","
          "\"causation_id\":\"cmd-7\",\"actor\":\"alice\"},\"customer_id\":\"cu-00042\","
          "\"customer_email\":\"ada.lovelace@example.org\",\"shipping_address\":{\"name\":"
          "\"Ada Lovelace\",\"street\":\"12 St James's Square\",\"city\":\"London\","
          "\"postal_code\":\"SW1Y 4JH\",\"country\":\"GB\"},\"items\":[{\"product_id\":\"p-1\","
          "\"quantity\":2,\"unit_price\":1250}],\"total\":2500,\"currency\":\"EUR\"}",
          &err))
    die("value", &err);
  esk_buf_t plain = {0}, enc = {0}, scratch = {0};
  esk_buf_init(&plain, 1 << 20);
  esk_buf_init(&enc, 1 << 20);
  esk_buf_init(&scratch, 1 << 20);
  if (esk_codec_encode(c, s, &v, &plain, &err)) die("encode", &err);
  const void *out = NULL;
  size_t len = 0;
  if (esk_shred_message(sh, 1, c, set, plain.data, plain.len, NULL, NULL, &scratch, &out, &len,
                        &err) ||
      esk_buf_append(&enc, out, len, &err))
    die("encrypt", &err);
  printf("OrderCreated v2: %zu bytes plain, %zu bytes with its personal fields encrypted\n",
         plain.len, enc.len);

  const esk_schema_t *rs;
  avro_value_t *dv;
  double t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++)
    if (esk_codec_decode(c, plain.data, plain.len, 0, &rs, &dv, &err)) die("decode", &err);
  report("decode (plain)", n, esk_time_mono_s() - t0);
  t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++)
    if (esk_shred_message(sh, 1, c, set, plain.data, plain.len, NULL, NULL, &scratch, &out, &len,
                          &err))
      die("encrypt", &err);
  report("decode, encrypt 6 strings, encode (producer)", n, esk_time_mono_s() - t0);
  t0 = esk_time_mono_s();
  for (long i = 0; i < n; i++)
    if (esk_codec_decode(c, enc.data, enc.len, 0, &rs, &dv, &err) ||
        esk_shred_decrypt_value(sh, rs, dv, 0, &err))
      die("decrypt", &err);
  report("decode, decrypt 6 strings (projector)", n, esk_time_mono_s() - t0);
  avro_value_decref(&v);
  esk_buf_free(&plain);
  esk_buf_free(&enc);
  esk_buf_free(&scratch);
  esk_shred_destroy(sh);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
  return 0;
}
