#include "esk/buf.h"

#include <stdlib.h>
#include <string.h>

void esk_buf_init(esk_buf_t *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
}

void esk_buf_free(esk_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int esk_buf_reserve(esk_buf_t *b, size_t n, esk_error_t *err) {
  size_t max = b->max ? b->max : ESK_BUF_DEFAULT_MAX;
  if (n > max || b->len > max - n)
    return esk_error_set(err, ESK_ENOMEM, "buffer would exceed its maximum of %zu bytes", max);
  size_t need = b->len + n;
  if (need <= b->cap) return ESK_OK;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > max / 2 ? max : cap * 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p) return esk_error_set(err, ESK_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
  b->data = p;
  b->cap = cap;
  return ESK_OK;
}

void *esk_array_grow(void *arr, size_t *cap, size_t need, size_t elem, size_t first) {
  if (need <= *cap) return arr;
  size_t n = *cap ? *cap : first ? first : 1;
  while (n < need) {
    if (n > SIZE_MAX / 2) return NULL;
    n *= 2;
  }
  if (elem && n > SIZE_MAX / elem) return NULL;
  void *a = realloc(arr, n * elem);
  if (a) *cap = n;
  return a;
}

int esk_buf_append(esk_buf_t *b, const void *p, size_t n, esk_error_t *err) {
  int rc = esk_buf_reserve(b, n, err);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return ESK_OK;
}
