/**
 * @file error.h
 * @brief esk's error codes and the caller-owned error buffer.
 *
 * Every fallible esk function returns an int: ESK_OK (0) on success or one of
 * the negative codes below, which are the few outcomes a caller acts on. The
 * human-readable reason goes into an esk_error_t that the caller owns; it is
 * written once, where the error happens, and passed up unchanged.
 */
#ifndef ESK_ERROR_H
#define ESK_ERROR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#define ESK_OK 0
/** A transient fault (broker or database unreachable, timeout): retry later. */
#define ESK_ERETRY -1
/** This input can never be processed (undecodable, unknown schema, ...). */
#define ESK_EPOISON -2
/** Unrecoverable: the process should stop (fenced producer, corrupt state). */
#define ESK_EFATAL -3
/** A bad argument, configuration value or file given by the user. */
#define ESK_EINVAL -4
/** The thing looked up does not exist. */
#define ESK_ENOTFOUND -5
/** Out of memory, or a configured size limit would be exceeded. */
#define ESK_ENOMEM -6
/** A compare-and-set lost: someone else changed the value first (e.g. a
 *  projector that lost its partition tries to store a position). */
#define ESK_ECONFLICT -7

#define ESK_ERROR_MSG_MAX 512

/** Caller-owned error: a code and a one-line message. Zero-initialise it. */
typedef struct esk_error_s {
  int code;
  char msg[ESK_ERROR_MSG_MAX];
} esk_error_t;

/**
 * @brief esk_error_set() with a va_list: the one writer of an error. Inline,
 *        so that code that links no esk library has it too (projection
 *        plug-ins: esk_plugin_error(), esk/projection_plugin.h).
 */
static inline int esk_error_vset(esk_error_t *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static inline int esk_error_vset(esk_error_t *err, int code, const char *fmt, va_list ap) {
  if (err) {
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  }
  return code;
}

/**
 * @brief Records an error in @p err (may be NULL) and returns @p code, so that
 *        `return esk_error_set(err, ESK_EINVAL, "...", ...);` reads naturally.
 */
int esk_error_set(esk_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** @brief Clears @p err (may be NULL). */
void esk_error_clear(esk_error_t *err);

/** @brief The symbolic name of an esk error code, e.g. "ESK_ERETRY". */
const char *esk_error_name(int code);

#endif
