/**
 * @file time.h
 * @brief Clocks, sleeping and RFC 3339 times: the one place esk reads a clock.
 *
 * Monotonic time measures durations and deadlines (it never jumps); real time
 * (the wall clock) stamps what is shown to people or stored. Each function is
 * safe to call from any thread.
 */
#ifndef ESK_TIME_H
#define ESK_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "esk/error.h"

/** @brief Nanoseconds of CLOCK_MONOTONIC (durations, deadlines). */
int64_t esk_time_mono_ns(void);

/** @brief Microseconds of CLOCK_MONOTONIC. */
int64_t esk_time_mono_us(void);

/** @brief Milliseconds of CLOCK_MONOTONIC. */
int64_t esk_time_mono_ms(void);

/** @brief Seconds of CLOCK_MONOTONIC, for durations reported in seconds. */
double esk_time_mono_s(void);

/** @brief Microseconds since the epoch (CLOCK_REALTIME). */
int64_t esk_time_real_us(void);

/** @brief Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t esk_time_real_ms(void);

/** @brief Sleeps @p ms milliseconds (nothing when @p ms <= 0); a signal may
 *         end it early. Only for pacing and back-off, never to synchronise. */
void esk_time_sleep_ms(int64_t ms);

/**
 * @brief Parses an RFC 3339 date-time (`2026-01-15T10:00:00Z`,
 *        `2026-01-15T10:00:00.250+01:00`; `t` or a space may separate date and
 *        time) into milliseconds since the epoch.
 * @returns ESK_OK or ESK_EINVAL naming the text and what is wrong; @p out_ms
 *          is set only on success.
 */
int esk_time_parse_rfc3339(int64_t *out_ms, const char *s, esk_error_t *err);

/**
 * @brief As esk_time_parse_rfc3339(), into microseconds since the epoch
 *        (digits of the fraction past the sixth are dropped).
 */
int esk_time_parse_rfc3339_us(int64_t *out_us, const char *s, esk_error_t *err);

/** @brief Writes @p us (microseconds since the epoch, >= 0) as RFC 3339 in
 *         UTC with microseconds, `2026-01-15T10:00:00.250000Z`; @p size of 32
 *         is enough. */
void esk_time_format_rfc3339_us(char *out, size_t size, int64_t us);

/** @brief Writes @p ms (milliseconds since the epoch, >= 0) as RFC 3339 in
 *         UTC with milliseconds, `2026-01-15T10:00:00.250Z`, which
 *         esk_time_parse_rfc3339() reads back; @p size of 32 is enough. */
void esk_time_format_rfc3339(char *out, size_t size, int64_t ms);

#endif
