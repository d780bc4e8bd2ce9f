/* The aggregate store and the seen-command cache, both over esk_hmap (see aggstore.h). */
#include "aggstore.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "esk/hmap.h"
#include "esk/log.h"

/* ---------------------------------------------------------------- store --- */

struct esk_aggstore_s {
  esk_hmap_t *map; /* aggregate id -> state, or its packed bytes */
  esk_aggstore_pack_t pack; /* both NULL: states are kept as they are */
  esk_buf_t buf;   /* put's packing */
  void *state;     /* get's unpacking (state_size bytes) */
};

int esk_aggstore_new(esk_aggstore_t **out, size_t state_size, size_t expected, size_t max,
                     esk_error_t *err) {
  return esk_aggstore_new_packed(out, state_size, NULL, expected, max, err);
}

int esk_aggstore_new_packed(esk_aggstore_t **out, size_t state_size,
                            const esk_aggstore_pack_t *pack, size_t expected, size_t max,
                            esk_error_t *err) {
  if (!out || !state_size || (pack && (!pack->pack || !pack->unpack)))
    return esk_error_set(err, ESK_EINVAL,
                         "aggregate store: out is NULL, state_size is 0 or a packing "
                         "function is missing");
  esk_aggstore_t *st = calloc(1, sizeof(*st));
  if (!st || (pack && !(st->state = calloc(1, state_size)))) {
    free(st);
    return esk_error_set(err, ESK_ENOMEM, "aggregate store: out of memory");
  }
  if (pack) st->pack = *pack;
  esk_buf_init(&st->buf, 0);
  int rc = esk_hmap_new(&st->map, pack ? 0 : state_size, expected, max, err);
  if (rc) {
    esk_aggstore_destroy(st);
    return rc;
  }
  *out = st;
  return ESK_OK;
}

void esk_aggstore_destroy(esk_aggstore_t *st) {
  if (!st) return;
  esk_hmap_destroy(st->map);
  esk_buf_free(&st->buf);
  free(st->state);
  free(st);
}

/* The state of a stored value: the value itself, or unpacked into st->state.
 * What the store packed it must read back; if it cannot, deciding on would
 * judge commands against a wrong state, so the process stops. */
static const void *state_of(const esk_aggstore_t *st, const void *v, const char *id) {
  if (!v || !st->pack.unpack) return v;
  esk_error_t e = {0};
  if (st->pack.unpack(st->state, v, esk_hmap_value_len(v), &e)) {
    ESK_ERROR("aggstore", "msg=\"a packed state does not read back; stopping\" "
              "aggregate_id=\"%.128s\" reason=\"%s\"", id, e.msg);
    abort();
  }
  return st->state;
}

const void *esk_aggstore_get(const esk_aggstore_t *st, const char *id) {
  if (!st || !id) return NULL;
  size_t n = strnlen(id, ESK_ID_MAX + 1);
  if (n > ESK_ID_MAX) return NULL;
  return state_of(st, esk_hmap_get(st->map, id, n), id);
}

int esk_aggstore_put(esk_aggstore_t *st, const char *id, const void *state, esk_error_t *err) {
  if (!st || !id || !state)
    return esk_error_set(err, ESK_EINVAL, "aggregate store: NULL argument");
  size_t n = strnlen(id, ESK_ID_MAX + 1);
  if (n == 0 || n > ESK_ID_MAX)
    return esk_error_set(err, ESK_EINVAL, "aggregate store: id is empty or over %d bytes",
                         ESK_ID_MAX);
  if (!st->pack.pack) return esk_hmap_put(st->map, id, n, state, NULL, NULL, err);
  esk_buf_reset(&st->buf);
  int rc = st->pack.pack(&st->buf, state, err);
  return rc ? rc : esk_hmap_put_n(st->map, id, n, st->buf.data, st->buf.len, NULL, NULL, err);
}

int esk_aggstore_remove(esk_aggstore_t *st, const char *id) {
  if (!st || !id) return ESK_ENOTFOUND;
  size_t n = strnlen(id, ESK_ID_MAX + 1);
  if (n > ESK_ID_MAX) return ESK_ENOTFOUND;
  return esk_hmap_remove(st->map, id, n);
}

size_t esk_aggstore_count(const esk_aggstore_t *st) { return st ? esk_hmap_count(st->map) : 0; }

struct walk_ctx {
  const esk_aggstore_t *st;
  int (*fn)(const char *, const void *, void *);
  void *ctx;
};

static int walk_one(const void *key, size_t key_len, void *value, void *ctx) {
  (void)key_len; /* hmap keys are followed by a NUL */
  struct walk_ctx *w = ctx;
  return w->fn(key, state_of(w->st, value, key), w->ctx);
}

int esk_aggstore_foreach(const esk_aggstore_t *st,
                         int (*fn)(const char *id, const void *state, void *ctx), void *ctx) {
  if (!st || !fn) return ESK_OK;
  struct walk_ctx w = {st, fn, ctx};
  return esk_hmap_foreach(st->map, walk_one, &w);
}

/* ---------------------------------------------------------------- seen --- */

/* FIFO eviction: a ring of pointers to the stored values, oldest at head.
 * The key of an evicted entry is found from its value (esk_hmap_key_of).
 * A result is stored up to its message's NUL (most messages are short), and
 * esk_seen_get() copies it whole into @c got. */
struct esk_seen_s {
  esk_hmap_t *map; /* command id -> esk_result_t up to its message's NUL */
  void **ring;
  size_t max, head, count;
  esk_result_t *got;
};

#define RESULT_HEAD offsetof(esk_result_t, message)

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
  s->got = calloc(1, sizeof(*s->got));
  if (!s->ring || !s->got) {
    rc = esk_error_set(err, ESK_ENOMEM, "seen cache: out of memory for %zu entries",
                       max_entries);
    goto cleanup;
  }
  /* the map never holds more than max: one eviction precedes each insert when full */
  rc = esk_hmap_new(&s->map, 0, max_entries, max_entries, err);
  if (rc) goto cleanup;
  s->max = max_entries;
  *out = s;
  return ESK_OK;

cleanup:
  free(s->ring);
  free(s->got);
  free(s);
  return rc;
}

void esk_seen_destroy(esk_seen_t *s) {
  if (!s) return;
  esk_hmap_destroy(s->map);
  free(s->ring);
  free(s->got);
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
  size_t len = RESULT_HEAD + strnlen(result->message, ESK_RESULT_MSG_MAX - 1) + 1;
  int rc = esk_hmap_put_n(s->map, command_id, n, result, len, &stored, NULL, err);
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
  const void *v = esk_hmap_get(s->map, command_id, n);
  if (!v) return NULL;
  size_t len = esk_hmap_value_len(v);
  memcpy(s->got, v, len);
  s->got->message[len - RESULT_HEAD - 1] = '\0'; /* a message cut at the maximum */
  return s->got;
}

size_t esk_seen_count(const esk_seen_t *s) { return s ? s->count : 0; }
