/**
 * @file log.h
 * @brief One line per event, key=value pairs, to stderr.
 *
 * A line looks like
 *   ts=2026-11-22T10:00:00.123Z level=info fac=kafka msg="partition assigned" partition=3
 * The level is checked before the arguments are evaluated: use the macros.
 */
#ifndef ESK_LOG_H
#define ESK_LOG_H

#include <stdio.h>

typedef enum {
  ESK_LOG_DEBUG = 0,
  ESK_LOG_INFO = 1,
  ESK_LOG_WARN = 2,
  ESK_LOG_ERROR = 3,
} esk_log_level_t;

/** The current threshold; lines below it are not formatted. */
extern esk_log_level_t esk_log_threshold;

/** @brief Sets the threshold from a name ("debug", "info", "warn", "error").
 *  @returns 0, or ESK_EINVAL for an unknown name. */
int esk_log_set_level(const char *name);

/**
 * @brief Writes one line: ts, level and fac, then the caller's key=value text.
 * @param fac the facility (module), a bare word.
 * @param fmt printf format of the remaining pairs, e.g. "msg=%s topic=%s".
 *        Values that may hold spaces or quotes should go through %s with
 *        esk_log_quote().
 */
void esk_log_write(esk_log_level_t level, const char *fac, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * @brief Quotes @p s for a log value into @p buf: bare when it is one plain
 *        word, otherwise in double quotes with `"` and `\` escaped and control
 *        characters as \n, \t or \xNN. Truncates to fit @p size.
 * @returns buf.
 */
const char *esk_log_quote(char *buf, size_t size, const char *s);

#define ESK_LOG(level, fac, ...)                                              \
  do {                                                                        \
    if ((level) >= esk_log_threshold) esk_log_write((level), (fac), __VA_ARGS__); \
  } while (0)
#define ESK_DEBUG(fac, ...) ESK_LOG(ESK_LOG_DEBUG, fac, __VA_ARGS__)
#define ESK_INFO(fac, ...) ESK_LOG(ESK_LOG_INFO, fac, __VA_ARGS__)
#define ESK_WARN(fac, ...) ESK_LOG(ESK_LOG_WARN, fac, __VA_ARGS__)
#define ESK_ERROR(fac, ...) ESK_LOG(ESK_LOG_ERROR, fac, __VA_ARGS__)

#endif
