/**
 * @file buf.h
 * @brief A growable byte buffer with a hard maximum size.
 */
#ifndef ESK_BUF_H
#define ESK_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "esk/error.h"

/** A byte buffer. Zero-initialise, or use esk_buf_init(); free with esk_buf_free(). */
typedef struct esk_buf_s {
  uint8_t *data;
  size_t len;
  size_t cap;
  size_t max; /**< never grows beyond this; 0 means ESK_BUF_DEFAULT_MAX */
} esk_buf_t;

#define ESK_BUF_DEFAULT_MAX ((size_t)64 << 20)

/** @brief Empties @p b and sets its maximum (0 for the default). */
void esk_buf_init(esk_buf_t *b, size_t max);

/** @brief Frees the storage; @p b may be reused after esk_buf_init(). */
void esk_buf_free(esk_buf_t *b);

/** @brief Makes room for @p n more bytes.
 *  @returns ESK_OK, or ESK_ENOMEM when the maximum or memory would be exceeded. */
int esk_buf_reserve(esk_buf_t *b, size_t n, esk_error_t *err);

/** @brief Appends @p n bytes. @returns as esk_buf_reserve(). */
int esk_buf_append(esk_buf_t *b, const void *p, size_t n, esk_error_t *err);

/** @brief Sets the length to 0 and keeps the storage. */
static inline void esk_buf_reset(esk_buf_t *b) { b->len = 0; }

/**
 * @brief Grows the array @p arr (of @p elem -byte elements, @p *cap of them
 *        allocated) to hold at least @p need, doubling from @p first.
 * @returns the array, moved or not (then @p *cap is updated); NULL when out
 *          of memory, with @p arr and @p *cap unchanged.
 */
void *esk_array_grow(void *arr, size_t *cap, size_t need, size_t elem, size_t first);

#endif
