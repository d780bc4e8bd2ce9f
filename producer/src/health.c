/* esk-producer's readiness from its published health (health.h). */
#include "health.h"

#include <stdio.h>

int esk_producer_ready(const esk_producer_health_t *h, char *reason, size_t size) {
  int restoring = atomic_load(&h->restoring), assigned = atomic_load(&h->assigned);
  if (esk_watchdog_is_fatal(&h->fatal)) {
    snprintf(reason, size, "fatal error: %s", h->fatal.err.msg);
    return 0;
  }
  if (!atomic_load(&h->running)) {
    snprintf(reason, size, "not running (starting up or stopping)");
    return 0;
  }
  if (!atomic_load(&h->joined)) {
    snprintf(reason, size, "no partition assignment from the consumer group yet");
    return 0;
  }
  if (restoring > 0) {
    snprintf(reason, size, "restoring %d of %d assigned partitions", restoring, assigned);
    return 0;
  }
  return 1;
}
