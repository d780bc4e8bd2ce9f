#include "esk/hmap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* An entry: header, value (value_len bytes, max_align_t aligned), key, NUL. */
typedef struct entry_s {
  uint64_t hash;
  uint32_t key_len;   /* <= ESK_HMAP_KEY_MAX */
  uint32_t value_len; /* the map's value_size, or this value's own length */
  _Alignas(max_align_t) unsigned char value[];
} entry_t;

typedef struct slot_s {
  uint64_t hash;
  entry_t *e; /* NULL: empty */
} slot_t;

struct esk_hmap_s {
  slot_t *slots;
  size_t mask; /* capacity - 1; capacity is a power of two */
  size_t count;
  size_t value_size; /* 0: each value has its own length (esk_hmap_put_n) */
  size_t max_entries;
  uint64_t k0, k1; /* SipHash key */
};

/* ------------------------------------------------------------ SipHash-2-4 */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
  do {                                                                                             \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                      \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                         \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                         \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                      \
  } while (0)

static uint64_t siphash24(const void *data, size_t len, uint64_t k0, uint64_t k1) {
  const unsigned char *p = data;
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  uint64_t b = (uint64_t)len << 56;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m = 0;
    for (int j = 0; j < 8; j++) m |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  for (int j = 0; i + (size_t)j < len; j++) b |= (uint64_t)p[i + j] << (8 * j);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------ map */

static size_t capacity_for(size_t entries) {
  /* keep the load factor at or below 1/2: short probe runs for linear probing */
  size_t cap = 16;
  while (cap / 2 < entries) {
    if (cap > SIZE_MAX / 4) return 0;
    cap *= 2;
  }
  return cap;
}

int esk_hmap_new(esk_hmap_t **out, size_t value_size, size_t expected_entries,
                 size_t max_entries, esk_error_t *err) {
  if (!out || value_size > ESK_HMAP_VALUE_MAX)
    return esk_error_set(err, ESK_EINVAL, "hmap: out is NULL or value_size is over %d",
                         ESK_HMAP_VALUE_MAX);
  if (max_entries == 0) max_entries = ESK_HMAP_DEFAULT_MAX_ENTRIES;
  if (expected_entries > max_entries) expected_entries = max_entries;
  size_t cap = capacity_for(expected_entries);
  if (cap == 0 || cap > SIZE_MAX / sizeof(slot_t))
    return esk_error_set(err, ESK_ENOMEM, "hmap: %zu expected entries is too many",
                         expected_entries);
  esk_hmap_t *m = calloc(1, sizeof(*m));
  if (!m) return esk_error_set(err, ESK_ENOMEM, "hmap: out of memory");
  m->slots = calloc(cap, sizeof(slot_t));
  if (!m->slots) {
    free(m);
    return esk_error_set(err, ESK_ENOMEM, "hmap: out of memory for %zu slots", cap);
  }
  m->mask = cap - 1;
  m->value_size = value_size;
  m->max_entries = max_entries;
  uint64_t k[2];
  if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
    /* no entropy yet (early boot): still distinct per map, just guessable */
    k[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)m;
    k[1] = (uint64_t)clock() ^ ((uint64_t)(uintptr_t)m->slots << 7);
  }
  m->k0 = k[0];
  m->k1 = k[1];
  *out = m;
  return ESK_OK;
}

void esk_hmap_destroy(esk_hmap_t *m) {
  if (!m) return;
  for (size_t i = 0; i <= m->mask; i++) free(m->slots[i].e);
  free(m->slots);
  free(m);
}

static const unsigned char *entry_key(const entry_t *e) { return e->value + e->value_len; }

/* The slot holding the key, or the empty slot where it would go. */
static size_t find(const esk_hmap_t *m, uint64_t h, const void *key, size_t key_len) {
  size_t i = (size_t)h & m->mask;
  for (;;) {
    const slot_t *s = &m->slots[i];
    if (!s->e) return i;
    if (s->hash == h && s->e->key_len == key_len &&
        memcmp(entry_key(s->e), key, key_len) == 0)
      return i;
    i = (i + 1) & m->mask;
  }
}

void *esk_hmap_get(const esk_hmap_t *m, const void *key, size_t key_len) {
  if (!m || (!key && key_len)) return NULL;
  uint64_t h = siphash24(key, key_len, m->k0, m->k1);
  size_t i = find(m, h, key, key_len);
  return m->slots[i].e ? m->slots[i].e->value : NULL;
}

static int grow(esk_hmap_t *m, esk_error_t *err) {
  size_t old_cap = m->mask + 1;
  if (old_cap > SIZE_MAX / 2 / sizeof(slot_t))
    return esk_error_set(err, ESK_ENOMEM, "hmap: cannot grow past %zu slots", old_cap);
  size_t cap = old_cap * 2;
  slot_t *slots = calloc(cap, sizeof(slot_t));
  if (!slots) return esk_error_set(err, ESK_ENOMEM, "hmap: out of memory for %zu slots", cap);
  for (size_t i = 0; i < old_cap; i++) {
    if (!m->slots[i].e) continue;
    size_t j = (size_t)m->slots[i].hash & (cap - 1);
    while (slots[j].e) j = (j + 1) & (cap - 1);
    slots[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = slots;
  m->mask = cap - 1;
  return ESK_OK;
}

/* A new entry for @p key holding @p value (@p value_len bytes). */
static entry_t *entry_new(uint64_t h, const void *key, size_t key_len, const void *value,
                          size_t value_len) {
  entry_t *e = malloc(sizeof(entry_t) + value_len + key_len + 1);
  if (!e) return NULL;
  e->hash = h;
  e->key_len = (uint32_t)key_len;
  e->value_len = (uint32_t)value_len;
  if (value_len) memcpy(e->value, value, value_len);
  if (key_len) memcpy(e->value + value_len, key, key_len);
  e->value[value_len + key_len] = '\0'; /* string keys can be read back as C strings */
  return e;
}

/* Replaces the value of the entry in slot @p i: in place when the length is
 * the same, else in a new entry. */
static int replace(esk_hmap_t *m, size_t i, const void *value, size_t value_len,
                   esk_error_t *err) {
  entry_t *e = m->slots[i].e;
  if (e->value_len != value_len) {
    entry_t *n = entry_new(e->hash, entry_key(e), e->key_len, value, value_len);
    if (!n) return esk_error_set(err, ESK_ENOMEM, "hmap: out of memory for an entry");
    free(e);
    m->slots[i].e = n;
    return ESK_OK;
  }
  memcpy(e->value, value, value_len);
  return ESK_OK;
}

static int put(esk_hmap_t *m, const void *key, size_t key_len, const void *value,
               size_t value_len, void **stored_out, int *inserted_out, esk_error_t *err) {
  if (!m || (!value && value_len) || (!key && key_len))
    return esk_error_set(err, ESK_EINVAL, "hmap: NULL map, key or value");
  if (key_len > ESK_HMAP_KEY_MAX)
    return esk_error_set(err, ESK_EINVAL, "hmap: key of %zu bytes is over the maximum of %d",
                         key_len, ESK_HMAP_KEY_MAX);
  uint64_t h = siphash24(key, key_len, m->k0, m->k1);
  size_t i = find(m, h, key, key_len);
  int rc, inserted = !m->slots[i].e;
  if (!inserted) {
    if ((rc = replace(m, i, value, value_len, err))) return rc;
  } else {
    if (m->count >= m->max_entries)
      return esk_error_set(err, ESK_ENOMEM, "hmap: full at its maximum of %zu entries",
                           m->max_entries);
    if ((m->count + 1) > (m->mask + 1) / 2) {
      if ((rc = grow(m, err))) return rc;
      i = find(m, h, key, key_len);
    }
    entry_t *e = entry_new(h, key, key_len, value, value_len);
    if (!e) return esk_error_set(err, ESK_ENOMEM, "hmap: out of memory for an entry");
    m->slots[i].hash = h;
    m->slots[i].e = e;
    m->count++;
  }
  if (stored_out) *stored_out = m->slots[i].e->value;
  if (inserted_out) *inserted_out = inserted;
  return ESK_OK;
}

int esk_hmap_put(esk_hmap_t *m, const void *key, size_t key_len, const void *value,
                 void **stored_out, int *inserted_out, esk_error_t *err) {
  if (m && !m->value_size)
    return esk_error_set(err, ESK_EINVAL, "hmap: a map of values of their own length takes "
                                          "esk_hmap_put_n");
  return put(m, key, key_len, value, m ? m->value_size : 0, stored_out, inserted_out, err);
}

int esk_hmap_put_n(esk_hmap_t *m, const void *key, size_t key_len, const void *value,
                   size_t value_len, void **stored_out, int *inserted_out, esk_error_t *err) {
  if (m && m->value_size)
    return esk_error_set(err, ESK_EINVAL, "hmap: a map of %zu-byte values takes esk_hmap_put",
                         m->value_size);
  if (value_len > ESK_HMAP_VALUE_MAX)
    return esk_error_set(err, ESK_EINVAL, "hmap: value of %zu bytes is over the maximum of %d",
                         value_len, ESK_HMAP_VALUE_MAX);
  return put(m, key, key_len, value, value_len, stored_out, inserted_out, err);
}

int esk_hmap_remove(esk_hmap_t *m, const void *key, size_t key_len) {
  if (!m || (!key && key_len)) return ESK_ENOTFOUND;
  uint64_t h = siphash24(key, key_len, m->k0, m->k1);
  size_t i = find(m, h, key, key_len);
  if (!m->slots[i].e) return ESK_ENOTFOUND;
  free(m->slots[i].e);
  m->slots[i].e = NULL;
  m->count--;
  /* backward-shift: move later members of the probe run into the hole when
   * the hole lies between their home slot and where they are */
  size_t hole = i, j = i;
  for (;;) {
    j = (j + 1) & m->mask;
    if (!m->slots[j].e) break;
    size_t home = (size_t)m->slots[j].hash & m->mask;
    size_t dist_j = (j - home) & m->mask;     /* how far j is from home */
    size_t dist_hole = (hole - home) & m->mask; /* how far the hole is from home */
    if (dist_hole < dist_j) {
      m->slots[hole] = m->slots[j];
      m->slots[j].e = NULL;
      hole = j;
    }
  }
  return ESK_OK;
}

size_t esk_hmap_count(const esk_hmap_t *m) { return m ? m->count : 0; }

size_t esk_hmap_probe_max(const esk_hmap_t *m) {
  size_t max = 0;
  for (size_t i = 0; m && i <= m->mask; i++) {
    if (!m->slots[i].e) continue;
    size_t dist = (i - ((size_t)m->slots[i].hash & m->mask)) & m->mask;
    if (dist > max) max = dist;
  }
  return max;
}

const void *esk_hmap_key_of(const esk_hmap_t *m, const void *stored, size_t *key_len) {
  if (!m || !stored) return NULL;
  const entry_t *e =
      (const entry_t *)(const void *)((const unsigned char *)stored - offsetof(entry_t, value));
  if (key_len) *key_len = e->key_len;
  return entry_key(e);
}

size_t esk_hmap_value_len(const void *stored) {
  if (!stored) return 0;
  const entry_t *e =
      (const entry_t *)(const void *)((const unsigned char *)stored - offsetof(entry_t, value));
  return e->value_len;
}

int esk_hmap_foreach(const esk_hmap_t *m,
                     int (*fn)(const void *key, size_t key_len, void *value, void *ctx),
                     void *ctx) {
  if (!m || !fn) return ESK_OK;
  for (size_t i = 0; i <= m->mask; i++) {
    entry_t *e = m->slots[i].e;
    if (!e) continue;
    int rc = fn(entry_key(e), e->key_len, e->value, ctx);
    if (rc) return rc;
  }
  return ESK_OK;
}
