/* Avro binary longs and strings without a codec (see esk/avro_bin.h). */
#include "esk/avro_bin.h"

#include <string.h>

#include "esk/error.h"

int esk_avro_put_long(esk_buf_t *b, int64_t v) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n] = (uint8_t)(z & 0x7f);
    z >>= 7;
    if (z) tmp[n] |= 0x80;
    n++;
  } while (z);
  return esk_buf_append(b, tmp, n, NULL);
}

int esk_avro_put_string(esk_buf_t *b, const char *s) {
  size_t n = strlen(s);
  int rc = esk_avro_put_long(b, (int64_t)n);
  return rc ? rc : esk_buf_append(b, s, n, NULL);
}

int esk_avro_get_long(esk_avro_in_t *in, int64_t *out) {
  uint64_t z = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (in->p >= in->end) return ESK_EPOISON;
    uint8_t c = *in->p++;
    if (shift == 63 && (c & 0x7e)) return ESK_EPOISON; /* more than 64 bits */
    z |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
      return ESK_OK;
    }
  }
  return ESK_EPOISON;
}

int esk_avro_get_string(esk_avro_in_t *in, char *dst, size_t size) {
  int64_t n;
  if (esk_avro_get_long(in, &n) || n < 0 || (uint64_t)n >= size || n > in->end - in->p ||
      memchr(in->p, 0, (size_t)n))
    return ESK_EPOISON;
  memcpy(dst, in->p, (size_t)n);
  dst[n] = '\0';
  in->p += n;
  return ESK_OK;
}

int esk_avro_fast_start(esk_avro_fast_t *r, const void *data, size_t len, size_t skip,
                        esk_buf_t *str, size_t max_string) {
  const uint8_t *b = data;
  esk_buf_reset(str);
  if (skip > len || esk_buf_reserve(str, len, NULL)) return ESK_ENOTFOUND;
  *r = (esk_avro_fast_t){{b + skip, b + len}, (char *)str->data, (char *)str->data + len,
                         max_string, 1};
  return ESK_OK;
}

int esk_avro_get_ascii(esk_avro_in_t *in, char *dst, size_t size, size_t max) {
  int64_t n;
  if (esk_avro_get_long(in, &n) || n < 0 || (uint64_t)n >= size || (uint64_t)n > max ||
      n > in->end - in->p)
    return ESK_ENOTFOUND;
  /* eight bytes at a time: a byte with its high bit set, or a zero byte */
  size_t i = 0, len = (size_t)n;
  for (uint64_t w; len - i >= 8; i += 8) {
    memcpy(&w, in->p + i, 8);
    if ((w | ((w - 0x0101010101010101u) & ~w)) & 0x8080808080808080u) return ESK_ENOTFOUND;
  }
  for (; i < len; i++)
    if (in->p[i] == 0 || in->p[i] > 0x7f) return ESK_ENOTFOUND;
  memcpy(dst, in->p, len);
  dst[n] = '\0';
  in->p += n;
  return ESK_OK;
}
