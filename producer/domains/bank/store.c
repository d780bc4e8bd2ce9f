/* The aggregate store and the seen-command cache, both over esk_hmap. */
#include <stdlib.h>
#include <string.h>

#include "bank/bank.h"
#include "hmap.h"

/* ---------------------------------------------------------------- store --- */

struct esk_bank_store_s {
  esk_hmap_t *map; /* account id -> esk_bank_state_t */
};

int esk_bank_store_new(esk_bank_store_t **out, size_t expected_accounts, size_t max_accounts,
                       esk_error_t *err) {
  if (!out) return esk_error_set(err, ESK_EINVAL, "bank store: out is NULL");
  esk_bank_store_t *st = calloc(1, sizeof(*st));
  if (!st) return esk_error_set(err, ESK_ENOMEM, "bank store: out of memory");
  int rc = esk_hmap_new(&st->map, sizeof(esk_bank_state_t), expected_accounts, max_accounts, err);
  if (rc) {
    free(st);
    return rc;
  }
  *out = st;
  return ESK_OK;
}

void esk_bank_store_destroy(esk_bank_store_t *st) {
  if (!st) return;
  esk_hmap_destroy(st->map);
  free(st);
}

const esk_bank_state_t *esk_bank_store_get(const esk_bank_store_t *st, const char *account_id) {
  if (!st || !account_id) return NULL;
  size_t n = strnlen(account_id, ESK_BANK_ID_MAX + 1);
  if (n > ESK_BANK_ID_MAX) return NULL;
  return esk_hmap_get(st->map, account_id, n);
}

int esk_bank_store_put(esk_bank_store_t *st, const esk_bank_state_t *state, esk_error_t *err) {
  if (!st || !state) return esk_error_set(err, ESK_EINVAL, "bank store: NULL argument");
  size_t n = strnlen(state->account_id, sizeof(state->account_id));
  if (n == 0 || n > ESK_BANK_ID_MAX)
    return esk_error_set(err, ESK_EINVAL, "bank store: account_id is empty or over %d bytes",
                         ESK_BANK_ID_MAX);
  return esk_hmap_put(st->map, state->account_id, n, state, NULL, NULL, err);
}

int esk_bank_store_remove(esk_bank_store_t *st, const char *account_id) {
  if (!st || !account_id) return ESK_ENOTFOUND;
  size_t n = strnlen(account_id, ESK_BANK_ID_MAX + 1);
  if (n > ESK_BANK_ID_MAX) return ESK_ENOTFOUND;
  return esk_hmap_remove(st->map, account_id, n);
}

size_t esk_bank_store_count(const esk_bank_store_t *st) { return st ? esk_hmap_count(st->map) : 0; }

struct walk_ctx {
  int (*fn)(const esk_bank_state_t *, void *);
  void *ctx;
};

static int walk_one(const void *key, size_t key_len, void *value, void *ctx) {
  (void)key;
  (void)key_len;
  struct walk_ctx *w = ctx;
  return w->fn(value, w->ctx);
}

int esk_bank_store_foreach(const esk_bank_store_t *st,
                           int (*fn)(const esk_bank_state_t *state, void *ctx), void *ctx) {
  if (!st || !fn) return ESK_OK;
  struct walk_ctx w = {fn, ctx};
  return esk_hmap_foreach(st->map, walk_one, &w);
}

/* ---------------------------------------------------------------- seen --- */

/* FIFO eviction: a ring of pointers to the stored values, oldest at head.
 * The key of an evicted entry is found from its value (esk_hmap_key_of). */
struct esk_bank_seen_s {
  esk_hmap_t *map; /* command id -> esk_bank_result_t */
  void **ring;
  size_t max, head, count;
};

int esk_bank_seen_new(esk_bank_seen_t **out, size_t max_entries, esk_error_t *err) {
  if (!out || max_entries == 0)
    return esk_error_set(err, ESK_EINVAL, "bank seen: out is NULL or max_entries is 0");
  if (max_entries > SIZE_MAX / sizeof(void *))
    return esk_error_set(err, ESK_ENOMEM, "bank seen: max_entries %zu is too large", max_entries);
  esk_bank_seen_t *s = calloc(1, sizeof(*s));
  if (!s) return esk_error_set(err, ESK_ENOMEM, "bank seen: out of memory");
  int rc = ESK_OK;
  s->ring = calloc(max_entries, sizeof(void *));
  if (!s->ring) {
    rc = esk_error_set(err, ESK_ENOMEM, "bank seen: out of memory for %zu entries", max_entries);
    goto cleanup;
  }
  /* the map never holds more than max: one eviction precedes each insert when full */
  rc = esk_hmap_new(&s->map, sizeof(esk_bank_result_t), max_entries, max_entries, err);
  if (rc) goto cleanup;
  s->max = max_entries;
  *out = s;
  return ESK_OK;

cleanup:
  free(s->ring);
  free(s);
  return rc;
}

void esk_bank_seen_destroy(esk_bank_seen_t *s) {
  if (!s) return;
  esk_hmap_destroy(s->map);
  free(s->ring);
  free(s);
}

int esk_bank_seen_put(esk_bank_seen_t *s, const char *command_id, const esk_bank_result_t *result,
                      int *inserted_out, esk_error_t *err) {
  if (!s || !command_id || !result)
    return esk_error_set(err, ESK_EINVAL, "bank seen: NULL argument");
  size_t n = strnlen(command_id, ESK_BANK_ID_MAX + 1);
  if (n == 0 || n > ESK_BANK_ID_MAX)
    return esk_error_set(err, ESK_EINVAL, "bank seen: command_id is empty or over %d bytes",
                         ESK_BANK_ID_MAX);
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

const esk_bank_result_t *esk_bank_seen_get(const esk_bank_seen_t *s, const char *command_id) {
  if (!s || !command_id) return NULL;
  size_t n = strnlen(command_id, ESK_BANK_ID_MAX + 1);
  if (n > ESK_BANK_ID_MAX) return NULL;
  return esk_hmap_get(s->map, command_id, n);
}

size_t esk_bank_seen_count(const esk_bank_seen_t *s) { return s ? s->count : 0; }
