/* The aggregate store and the seen-command cache, both over esk_hmap (see aggstore.h). */
#include "aggstore.h"

#include <stdlib.h>
#include <string.h>

#include "esk/hmap.h"

/* ---------------------------------------------------------------- store --- */

struct esk_aggstore_s {
  esk_hmap_t *map; /* aggregate id -> state */
};

int esk_aggstore_new(esk_aggstore_t **out, size_t state_size, size_t expected, size_t max,
                     esk_error_t *err) {
  if (!out || !state_size)
    return esk_error_set(err, ESK_EINVAL, "aggregate store: out is NULL or state_size is 0");
  esk_aggstore_t *st = calloc(1, sizeof(*st));
  if (!st) return esk_error_set(err, ESK_ENOMEM, "aggregate store: out of memory");
  int rc = esk_hmap_new(&st->map, state_size, expected, max, err);
  if (rc) {
    free(st);
    return rc;
  }
  *out = st;
  return ESK_OK;
}

void esk_aggstore_destroy(esk_aggstore_t *st) {
  if (!st) return;
  esk_hmap_destroy(st->map);
  free(st);
}

const void *esk_aggstore_get(const esk_aggstore_t *st, const char *id) {
  if (!st || !id) return NULL;
  size_t n = strnlen(id, ESK_ID_MAX + 1);
  if (n > ESK_ID_MAX) return NULL;
  return esk_hmap_get(st->map, id, n);
}

int esk_aggstore_put(esk_aggstore_t *st, const char *id, const void *state, esk_error_t *err) {
  if (!st || !id || !state)
    return esk_error_set(err, ESK_EINVAL, "aggregate store: NULL argument");
  size_t n = strnlen(id, ESK_ID_MAX + 1);
  if (n == 0 || n > ESK_ID_MAX)
    return esk_error_set(err, ESK_EINVAL, "aggregate store: id is empty or over %d bytes",
                         ESK_ID_MAX);
  return esk_hmap_put(st->map, id, n, state, NULL, NULL, err);
}

int esk_aggstore_remove(esk_aggstore_t *st, const char *id) {
  if (!st || !id) return ESK_ENOTFOUND;
  size_t n = strnlen(id, ESK_ID_MAX + 1);
  if (n > ESK_ID_MAX) return ESK_ENOTFOUND;
  return esk_hmap_remove(st->map, id, n);
}

size_t esk_aggstore_count(const esk_aggstore_t *st) { return st ? esk_hmap_count(st->map) : 0; }

struct walk_ctx {
  int (*fn)(const char *, const void *, void *);
  void *ctx;
};

static int walk_one(const void *key, size_t key_len, void *value, void *ctx) {
  (void)key_len; /* hmap keys are followed by a NUL */
  struct walk_ctx *w = ctx;
  return w->fn(key, value, w->ctx);
}

int esk_aggstore_foreach(const esk_aggstore_t *st,
                         int (*fn)(const char *id, const void *state, void *ctx), void *ctx) {
  if (!st || !fn) return ESK_OK;
  struct walk_ctx w = {fn, ctx};
  return esk_hmap_foreach(st->map, walk_one, &w);
}

/* ---------------------------------------------------------------- seen --- */

/* FIFO eviction: a ring of pointers to the stored values, oldest at head.
 * The key of an evicted entry is found from its value (esk_hmap_key_of). */
struct esk_seen_s {
  esk_hmap_t *map; /* command id -> esk_result_t */
  void **ring;
  size_t max, head, count;
};

int esk_seen_new(esk_seen_t **out, size_t max_entries, esk_error_t *err) {
  if (!out || max_entries == 0)
    return esk_error_set(err, ESK_EINVAL, "seen cache: out is NULL or max_entries is 0");
  if (max_entries > SIZE_MAX / sizeof(void *))
    return esk_error_set(err, ESK_ENOMEM, "seen cache: max_entries %zu is too large",
                         max_entries);
  esk_seen_t *s = calloc(1, sizeof(*s));
  if (!s) return esk_error_set(err, ESK_ENOMEM, "seen cache: out of memory");
  int rc = ESK_OK;
  s->ring = calloc(max_entries, sizeof(void *));
  if (!s->ring) {
    rc = esk_error_set(err, ESK_ENOMEM, "seen cache: out of memory for %zu entries",
                       max_entries);
    goto cleanup;
  }
  /* the map never holds more than max: one eviction precedes each insert when full */
  rc = esk_hmap_new(&s->map, sizeof(esk_result_t), max_entries, max_entries, err);
  if (rc) goto cleanup;
  s->max = max_entries;
  *out = s;
  return ESK_OK;

cleanup:
  free(s->ring);
  free(s);
  return rc;
}

void esk_seen_destroy(esk_seen_t *s) {
  if (!s) return;
  esk_hmap_destroy(s->map);
  free(s->ring);
  free(s);
}

int esk_seen_put(esk_seen_t *s, const char *command_id, const esk_result_t *result,
                 int *inserted_out, esk_error_t *err) {
  if (!s || !command_id || !result)
    return esk_error_set(err, ESK_EINVAL, "seen cache: NULL argument");
  size_t n = strnlen(command_id, ESK_ID_MAX + 1);
  if (n == 0 || n > ESK_ID_MAX)
    return esk_error_set(err, ESK_EINVAL, "seen cache: command_id is empty or over %d bytes",
                         ESK_ID_MAX);
  if (esk_hmap_get(s->map, command_id, n)) {
    if (inserted_out) *inserted_out = 0;
    return ESK_OK;
  }
  if (s->count == s->max) {
    size_t klen = 0;
    const void *key = esk_hmap_key_of(s->map, s->ring[s->head], &klen);
    esk_hmap_remove(s->map, key, klen);
    s->ring[s->head] = NULL;
    s->head = (s->head + 1) % s->max;
    s->count--;
  }
  void *stored = NULL;
  int rc = esk_hmap_put(s->map, command_id, n, result, &stored, NULL, err);
  if (rc) return rc; /* an eviction above may have happened: the cache only forgets, never lies */
  s->ring[(s->head + s->count) % s->max] = stored;
  s->count++;
  if (inserted_out) *inserted_out = 1;
  return ESK_OK;
}

const esk_result_t *esk_seen_get(const esk_seen_t *s, const char *command_id) {
  if (!s || !command_id) return NULL;
  size_t n = strnlen(command_id, ESK_ID_MAX + 1);
  if (n > ESK_ID_MAX) return NULL;
  return esk_hmap_get(s->map, command_id, n);
}

size_t esk_seen_count(const esk_seen_t *s) { return s ? s->count : 0; }
