/**
 * @file watchdog.h
 * @brief Bounded shutdown and a main-loop heartbeat for an esk daemon.
 *
 * A daemon must never hang silently: not on SIGTERM, not after a fatal
 * error, not in a call that does not return (librdkafka 2.0.2's
 * rd_kafka_consumer_close() and rd_kafka_destroy() take no timeout; a
 * PostgreSQL statement waits for a lock as long as it is held). The
 * watchdog is a thread that
 *
 * - once a stop is requested (the flag a signal handler sets) or
 *   esk_watchdog_shutdown() was called (a fatal error, the exit path), gives
 *   the process `shutdown.timeout.ms` to end; past it, it logs
 *   `msg="shutdown timed out"` with what the main thread was waiting for
 *   (esk_watchdog_doing()) and ends the process with exit status
 *   ESK_WATCHDOG_EXIT;
 * - keeps the time of the main loop's last progress (esk_watchdog_beat():
 *   a turn of the loop, a blocking call that returned), which `/healthz` reads
 *   (esk_watchdog_live()): not live once there was none for
 *   `liveness.timeout.ms`, so a liveness probe restarts a stuck process.
 *
 * The state is per process, like the logger's: a daemon has one main loop,
 * and the beats and labels come from code (restores, reads, Kafka and
 * PostgreSQL calls) that has no handle to pass one around. Without
 * esk_watchdog_start() (tools, tests) every function is a cheap no-op and
 * esk_watchdog_live() says live.
 */
#ifndef ESK_WATCHDOG_H
#define ESK_WATCHDOG_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

#include "esk/conf.h"
#include "esk/error.h"

/** Exit status when the shutdown outlives shutdown.timeout.ms. */
#define ESK_WATCHDOG_EXIT 3

/**
 * The keys `shutdown.timeout.ms` and `liveness.timeout.ms`; append this table
 * to a daemon's tables.
 */
extern const esk_conf_prop_t esk_watchdog_props[];

/**
 * @brief Starts the watchdog thread.
 * @param conf read during the call; must hold esk_watchdog_props.
 * @param stop the flag the signal handler sets; borrowed, must live until
 *        the process ends (a static).
 * @returns ESK_OK, or ESK_EFATAL when the thread cannot be created. A second
 *          start without esk_watchdog_stop() is refused (ESK_EINVAL).
 */
int esk_watchdog_start(const esk_conf_t *conf, volatile sig_atomic_t *stop, esk_error_t *err);

/** @brief Stops and joins the thread (at most 50 ms); without a start, nothing. */
void esk_watchdog_stop(void);

/**
 * @brief Starts the shutdown clock without a signal: a fatal error, or the
 *        exit path of main(). Idempotent: the first call (or the stop flag,
 *        whichever comes first) starts the clock.
 */
void esk_watchdog_shutdown(void);

/**
 * The first fatal error of a daemon's main loop, which other threads (the
 * readiness probe) may read: `err` is written once, before `set` becomes 1,
 * and never after. Zero it before use.
 */
typedef struct esk_fatal_s {
  atomic_int set;  /**< 1 once `err` holds the first fatal error */
  esk_error_t err; /**< that error */
} esk_fatal_t;

/**
 * @brief Records @p e in @p f unless @p f already holds an error (the first
 *        one is kept), then starts the shutdown clock (esk_watchdog_shutdown()):
 *        from now on the process has shutdown.timeout.ms to end. Call it from
 *        the thread that owns @p f.
 * @returns ESK_EFATAL, so that `return esk_watchdog_fatal(&f, &e);` reads naturally.
 */
int esk_watchdog_fatal(esk_fatal_t *f, const esk_error_t *e);

/** @brief 1 once @p f holds an error, whose `err` is then whole. Thread-safe. */
static inline int esk_watchdog_is_fatal(const esk_fatal_t *f) {
  return atomic_load_explicit(&f->set, memory_order_acquire);
}

/**
 * @brief Registers @p fn, which the watchdog thread calls (once, with
 *        @p opaque) when it first sees a stop or a shutdown: it wakes the main
 *        thread from a long wait, e.g. rd_kafka_queue_yield() on the queue of
 *        a rd_kafka_consumer_poll() that would wait up to batch.max.ms.
 *        NULL unregisters; after that returns, @p fn is not running and will
 *        not be called. One at a time (the last registered).
 */
void esk_watchdog_set_wake(void (*fn)(void *opaque), void *opaque);

/** @returns 1 once a stop was requested or esk_watchdog_shutdown() was called. */
int esk_watchdog_stopping(void);

/** @brief The main loop made progress now (an atomic store of the clock). */
void esk_watchdog_beat(void);

/**
 * @brief Names what the main thread waits for from now on (a string literal:
 *        it is kept, not copied), for the shutdown line and `/healthz`.
 * @param what e.g. "commit_transaction"; NULL: nothing in particular.
 * @returns the previous label, to restore when the wait is over.
 */
const char *esk_watchdog_doing(const char *what);

/**
 * @brief `/healthz`'s answer (thread-safe): live unless the watchdog runs and
 *        the last beat is older than `liveness.timeout.ms`.
 * @param reason when not live, one line: how long the loop has stalled and
 *        what it waits for.
 * @returns 1 live, 0 not.
 */
int esk_watchdog_live(char *reason, size_t size);

/**
 * Evaluates the blocking call @p call (an expression with a value) with
 * @p what as the label of esk_watchdog_doing(), restoring the previous one.
 * A call that returned is progress (each has a finite timeout; retries of
 * one beat each time): it beats the heartbeat.
 */
#define ESK_WAITING(what, call)                                                                \
  __extension__({                                                                              \
    const char *esk_was_ = esk_watchdog_doing(what);                                           \
    __typeof__(call) esk_r_ = (call);                                                          \
    esk_watchdog_doing(esk_was_);                                                              \
    esk_watchdog_beat();                                                                       \
    esk_r_;                                                                                    \
  })

#endif
