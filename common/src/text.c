#include "esk/text.h"

#include <string.h>

/* Unicode's table 3-7 of well-formed UTF-8 byte sequences. */
size_t esk_utf8_check(const void *data, size_t n) {
  const uint8_t *s = data;
  size_t i = 0;
  for (;;) {
    /* ASCII without NUL: eight bytes at a time, then byte by byte */
    for (uint64_t w; n - i >= 8; i += 8) {
      memcpy(&w, s + i, 8);
      if ((w | ((w - 0x0101010101010101u) & ~w)) & 0x8080808080808080u) break;
    }
    while (i < n && (uint8_t)(s[i] - 1) < 0x7F) i++;
    if (i == n) return n;
    uint8_t c = s[i];
    size_t k;
    uint8_t lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) k = 1;
    else if (c == 0xE0) k = 2, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) k = 2;
    else if (c == 0xED) k = 2, hi = 0x9F;
    else if (c == 0xF0) k = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) k = 3;
    else if (c == 0xF4) k = 3, hi = 0x8F;
    else return i; /* NUL, a continuation byte, C0, C1, F5..FF */
    if (n - i <= k || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t j = 2; j <= k; j++)
      if ((s[i + j] & 0xC0) != 0x80) return i;
    i += k + 1;
  }
}

size_t esk_text_i64(char *buf, int64_t v) {
  char num[ESK_TEXT_I64_MAX], *o = num + sizeof(num);
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do {
    *--o = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--o = '-';
  size_t len = (size_t)(num + sizeof(num) - o);
  memcpy(buf, o, len);
  buf[len] = '\0';
  return len;
}

/* Appends @p k bytes, counting those that do not fit. */
static size_t put(char *buf, size_t size, size_t off, const char *s, size_t k) {
  if (off + k <= size) memcpy(buf + off, s, k);
  return off + k;
}

size_t esk_text_json_str(char *buf, size_t size, size_t off, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *c = (const unsigned char *)s, *end = c + n, *run = c;
  const unsigned char *bad = c + esk_utf8_check(c, n);
  off = put(buf, size, off, "\"", 1);
  for (; c < end; c++) {
    char esc[6] = {'\\', 'u', '0', '0', 0, 0};
    size_t k = 6;
    if (c == bad) { /* U+0000 (escaped as a control) or a byte that is not UTF-8 */
      bad = c + 1 + esk_utf8_check(c + 1, (size_t)(end - c - 1));
      if (*c) esc[2] = 'd', esc[3] = 'c';
    } else if (*c == '"' || *c == '\\') {
      esc[1] = (char)*c;
      k = 2;
    } else if (*c >= 0x20) {
      continue;
    } else if (*c && strchr("\b\f\n\r\t", *c)) { /* the short forms, as jansson writes them */
      esc[1] = "btnvfr"[*c - '\b'];
      k = 2;
    }
    esc[4] = hex[*c >> 4];
    esc[5] = hex[*c & 15];
    off = put(buf, size, off, (const char *)run, (size_t)(c - run));
    off = put(buf, size, off, esc, k);
    run = c + 1;
  }
  off = put(buf, size, off, (const char *)run, (size_t)(end - run));
  return put(buf, size, off, "\"", 1);
}

int esk_text_json_buf(esk_buf_t *b, const char *s, size_t n, esk_error_t *err) {
  size_t need = esk_text_json_str(NULL, 0, 0, s, n);
  int rc = esk_buf_reserve(b, need, err);
  if (rc) return rc;
  esk_text_json_str((char *)b->data + b->len, need, 0, s, n);
  b->len += need;
  return ESK_OK;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

size_t esk_text_pct_decode(char *s) {
  char *o = s;
  for (const char *p = s; *p; p++) {
    int hi, lo;
    if (*p == '%' && (hi = hex_digit(p[1])) >= 0 && (lo = hex_digit(p[2])) >= 0) {
      *o++ = (char)(hi << 4 | lo);
      p += 2;
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
  return (size_t)(o - s);
}
