/**
 * @file health.h
 * @brief What esk-producer publishes for readiness checks, and the check
 *        itself (health.c). Apart from producer.h so that the runtime's
 *        internal header (producer_int.h) needs nothing of the public one.
 */
#ifndef ESK_PRODUCER_HEALTH_H
#define ESK_PRODUCER_HEALTH_H

#include <stdatomic.h>
#include <stddef.h>

#include "esk/watchdog.h"

/**
 * What the runtime publishes for readiness checks from another thread (the
 * HTTP server's): only atomics, and the fatal error written once before
 * `fatal.set` is 1. Owned by the caller, zeroed before use; it must outlive the
 * producer and every reader (esk_producer_ready()).
 */
typedef struct esk_producer_health_s {
  atomic_int running;   /**< 1 from subscribing until esk_producer_run() returns */
  atomic_int joined;    /**< 1 once the group gave this member an assignment */
  atomic_int assigned;  /**< partitions held */
  atomic_int restoring; /**< of those, partitions whose restore has not finished */
  esk_fatal_t fatal;    /**< set after a fatal error (fenced, transaction failed, ...) */
} esk_producer_health_t;

/**
 * @brief Readiness of a producer from its published health (thread-safe,
 *        touches no Kafka handle). Ready iff running, the group has assigned
 *        this member (possibly zero partitions: an idle standby when there are
 *        more instances than partitions is ready, see docs/producer.md), every
 *        held partition has finished restoring, and no fatal error occurred.
 * @param reason when not ready, one line naming the failing condition.
 * @returns 1 ready, 0 not ready.
 */
int esk_producer_ready(const esk_producer_health_t *h, char *reason, size_t size);

#endif
