/* The watchdog: bounded shutdown and the main loop's heartbeat (watchdog.h). */
#include "esk/watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "esk/log.h"
#include "esk/time.h"

const esk_conf_prop_t esk_watchdog_props[] = {
    {"shutdown.timeout.ms", ESK_CONF_INT, "25000", 1000, 3600000, NULL, NULL,
     "Longest time from SIGTERM/SIGINT or a fatal error to the end of the process; past it, "
     "the process logs what it was waiting for and exits 3. Keep it below the supervisor's "
     "grace period (Kubernetes: terminationGracePeriodSeconds, 30 s by default)."},
    {"liveness.timeout.ms", ESK_CONF_INT, "120000", 1000, 86400000, NULL, NULL,
     "/healthz answers 503 once the main loop has made no progress for this long, so a "
     "liveness probe restarts a stuck process; keep it above the longest single wait (60 s "
     "for esk-producer's Kafka transaction calls)."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

#define TICK_MS 50

static struct {
  atomic_int started, quit, shutdown;
  _Atomic int_least64_t beat_ms;
  _Atomic(const char *) doing;
  int64_t shutdown_ms, liveness_ms;
  volatile sig_atomic_t *stop;
  pthread_t thread;
  pthread_mutex_t wake_lock; /* held while the wake callback is set or runs */
  void (*wake)(void *);
  void *wake_opaque;
} wd = {.wake_lock = PTHREAD_MUTEX_INITIALIZER};

static const char *doing_now(void) {
  const char *d = atomic_load(&wd.doing);
  return d ? d : "the main loop (no blocking call)";
}

/* Past the deadline: one line naming the wait, then the end, without
 * running atexit handlers or destructors that might wait too. */
static void expire(int64_t since) {
  char q[300];
  ESK_ERROR("watchdog", "msg=\"shutdown timed out: exiting\" waited_ms=%lld "
            "shutdown.timeout.ms=%lld waiting_for=%s exit_status=%d",
            (long long)(esk_time_mono_ms() - since), (long long)wd.shutdown_ms,
            esk_log_quote(q, sizeof(q), doing_now()), ESK_WATCHDOG_EXIT);
  _exit(ESK_WATCHDOG_EXIT);
}

static void wake_main(void) {
  pthread_mutex_lock(&wd.wake_lock);
  if (wd.wake) wd.wake(wd.wake_opaque);
  pthread_mutex_unlock(&wd.wake_lock);
}

static void *watch(void *arg) {
  (void)arg;
  int64_t since = -1;
  while (!atomic_load(&wd.quit)) {
    if (since < 0 && esk_watchdog_stopping()) {
      since = esk_time_mono_ms();
      wake_main();
    }
    if (since >= 0 && esk_time_mono_ms() - since >= wd.shutdown_ms) expire(since);
    esk_time_sleep_ms(TICK_MS);
  }
  return NULL;
}

int esk_watchdog_start(const esk_conf_t *conf, volatile sig_atomic_t *stop, esk_error_t *err) {
  if (atomic_load(&wd.started))
    return esk_error_set(err, ESK_EINVAL, "watchdog: already started");
  wd.shutdown_ms = esk_conf_get_int(conf, "shutdown.timeout.ms");
  wd.liveness_ms = esk_conf_get_int(conf, "liveness.timeout.ms");
  wd.stop = stop;
  atomic_store(&wd.quit, 0);
  atomic_store(&wd.shutdown, 0);
  atomic_store(&wd.doing, NULL);
  atomic_store(&wd.beat_ms, esk_time_mono_ms());
  if (pthread_create(&wd.thread, NULL, watch, NULL))
    return esk_error_set(err, ESK_EFATAL, "watchdog: cannot create its thread");
  atomic_store(&wd.started, 1);
  return ESK_OK;
}

void esk_watchdog_stop(void) {
  if (!atomic_load(&wd.started)) return;
  atomic_store(&wd.quit, 1);
  pthread_join(wd.thread, NULL);
  atomic_store(&wd.started, 0);
  wd.stop = NULL;
}

void esk_watchdog_set_wake(void (*fn)(void *opaque), void *opaque) {
  pthread_mutex_lock(&wd.wake_lock);
  wd.wake = fn;
  wd.wake_opaque = opaque;
  pthread_mutex_unlock(&wd.wake_lock);
}

void esk_watchdog_shutdown(void) { atomic_store(&wd.shutdown, 1); }

int esk_watchdog_fatal(esk_fatal_t *f, const esk_error_t *e) {
  if (!atomic_load_explicit(&f->set, memory_order_relaxed)) {
    f->err = *e;
    atomic_store_explicit(&f->set, 1, memory_order_release);
  }
  esk_watchdog_shutdown();
  return ESK_EFATAL;
}

int esk_watchdog_stopping(void) {
  return atomic_load(&wd.shutdown) || (wd.stop && *wd.stop);
}

void esk_watchdog_beat(void) {
  if (atomic_load_explicit(&wd.started, memory_order_relaxed))
    atomic_store_explicit(&wd.beat_ms, esk_time_mono_ms(), memory_order_relaxed);
}

const char *esk_watchdog_doing(const char *what) { return atomic_exchange(&wd.doing, what); }

int esk_watchdog_live(char *reason, size_t size) {
  if (!atomic_load(&wd.started)) return 1;
  int64_t stalled = esk_time_mono_ms() - atomic_load(&wd.beat_ms);
  if (stalled <= wd.liveness_ms) return 1;
  snprintf(reason, size,
           "main loop stalled for %lld ms (liveness.timeout.ms=%lld), waiting for: %s",
           (long long)stalled, (long long)wd.liveness_ms, doing_now());
  return 0;
}
