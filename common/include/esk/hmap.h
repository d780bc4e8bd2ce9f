/**
 * @file hmap.h
 * @brief A generic hash map from byte-string keys to fixed-size values, or
 *        to values of their own length (value_size 0, esk_hmap_put_n()).
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), keyed SipHash-2-4 with a per-map random key so that hostile
 * keys (account or command ids chosen by users) cannot force collisions.
 * get/put/remove are O(1) expected.
 *
 * Each entry is one allocation holding the value, then the key. A pointer
 * returned by esk_hmap_get() or esk_hmap_put() stays valid until that key is
 * removed or the map is destroyed: growing the table moves only slot
 * pointers, never entries. In a map of values of their own length, a put
 * that changes a value's length moves that entry: the put's stored_out is
 * its new place.
 *
 * The one hash table of esk for tables keyed by ids that users choose
 * (aggregate ids, command ids): docs/architecture.md, "Source layout".
 *
 * Thread-safety: none; a map belongs to one thread.
 */
#ifndef ESK_HMAP_H
#define ESK_HMAP_H

#include <stddef.h>
#include <stdint.h>

#include "esk/error.h"

typedef struct esk_hmap_s esk_hmap_t;

/** Largest key accepted, in bytes. */
#define ESK_HMAP_KEY_MAX 4096
/** Largest value accepted, in bytes. */
#define ESK_HMAP_VALUE_MAX (1 << 24)
/** Default for @p max_entries of esk_hmap_new(). */
#define ESK_HMAP_DEFAULT_MAX_ENTRIES ((size_t)16 << 20)

/**
 * @brief Creates an empty map.
 * @param out set on success; free with esk_hmap_destroy().
 * @param value_size bytes copied in by esk_hmap_put() (at most
 *        ESK_HMAP_VALUE_MAX); 0: each value has its own length, put with
 *        esk_hmap_put_n() and read with esk_hmap_value_len().
 * @param expected_entries pre-sizes the table so that this many entries fit
 *        without growing (0 for a small table).
 * @param max_entries hard limit on entries (0 for ESK_HMAP_DEFAULT_MAX_ENTRIES);
 *        a put beyond it fails with ESK_ENOMEM.
 * @returns ESK_OK, ESK_EINVAL or ESK_ENOMEM.
 */
int esk_hmap_new(esk_hmap_t **out, size_t value_size, size_t expected_entries,
                 size_t max_entries, esk_error_t *err);

/** @brief Frees the map and every entry. NULL does nothing. */
void esk_hmap_destroy(esk_hmap_t *m);

/**
 * @brief Looks a key up.
 * @returns the stored value (owned by the map, writable by the caller), or NULL.
 */
void *esk_hmap_get(const esk_hmap_t *m, const void *key, size_t key_len);

/**
 * @brief Inserts or replaces the value of @p key (both are copied).
 * @param stored_out if not NULL, set on success to the stored value.
 * @param inserted_out if not NULL, set on success to 1 for a new key, 0 for a replacement.
 * @returns ESK_OK; ESK_EINVAL for a key over ESK_HMAP_KEY_MAX; ESK_ENOMEM when
 *          the map is full (max_entries) or memory runs out. The map is
 *          unchanged on error.
 */
int esk_hmap_put(esk_hmap_t *m, const void *key, size_t key_len, const void *value,
                 void **stored_out, int *inserted_out, esk_error_t *err);

/**
 * @brief esk_hmap_put() for a map of values of their own length (value_size 0).
 * @param value_len bytes of @p value (0 is allowed; at most ESK_HMAP_VALUE_MAX).
 * @returns as esk_hmap_put(); ESK_EINVAL on a map of fixed-size values.
 */
int esk_hmap_put_n(esk_hmap_t *m, const void *key, size_t key_len, const void *value,
                   size_t value_len, void **stored_out, int *inserted_out, esk_error_t *err);

/** @brief The length of a stored value (one returned by get/put/foreach); 0 for NULL. */
size_t esk_hmap_value_len(const void *stored);

/** @brief Removes a key. @returns ESK_OK, or ESK_ENOTFOUND. */
int esk_hmap_remove(esk_hmap_t *m, const void *key, size_t key_len);

/** @brief Number of entries. */
size_t esk_hmap_count(const esk_hmap_t *m);

/**
 * @brief The longest probe run: how many slots past its home slot the
 *        farthest entry lies (0 when every entry is in its home slot). A
 *        measure of how well the keys spread, for tests and diagnostics.
 */
size_t esk_hmap_probe_max(const esk_hmap_t *m);

/**
 * @brief The key of a stored value (one returned by get/put/foreach of @p m).
 * @param key_len if not NULL, set to the key's length. The key is followed by
 *        a NUL byte, so string keys can be read as C strings.
 */
const void *esk_hmap_key_of(const esk_hmap_t *m, const void *stored, size_t *key_len);

/**
 * @brief Calls @p fn for every entry, in no particular order. The map must
 *        not be changed during the walk. A non-zero return from @p fn stops
 *        the walk and is returned.
 */
int esk_hmap_foreach(const esk_hmap_t *m,
                     int (*fn)(const void *key, size_t key_len, void *value, void *ctx),
                     void *ctx);

#endif
