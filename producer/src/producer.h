/**
 * @file producer.h
 * @brief The esk-producer runtime: consumes `<domain>.commands` in the
 *        consumer group, restores the aggregates of each assigned partition,
 *        and handles commands in batches, each batch one Kafka transaction
 *        holding its events, results, snapshots and consumed offsets.
 */
#ifndef ESK_PRODUCER_H
#define ESK_PRODUCER_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/metrics.h"
#include "esk/watchdog.h"
#include "health.h"

/** The esk-producer keys (besides esk_conf_common_props). */
extern const esk_conf_prop_t esk_producer_props[];

typedef struct esk_producer_s esk_producer_t;

/**
 * @brief Validates the configuration, checks the topics (present,
 *        co-partitioned) and creates the Kafka clients; initialises the
 *        transactions (which fences an older instance with the same
 *        transactional.id and aborts its open transaction).
 * @param conf borrowed for the call.
 * @param metrics registry for the esk_producer_* families (registered here,
 *        updated by esk_producer_run()); may be NULL. Must outlive @p out.
 * @param health  published state for esk_producer_ready(); may be NULL. Must
 *        outlive @p out.
 * @returns ESK_OK, ESK_EINVAL (configuration, topics), ESK_ERETRY (broker),
 *          ESK_EFATAL.
 */
int esk_producer_new(esk_producer_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                     esk_producer_health_t *health, esk_error_t *err);

/**
 * @brief Runs until @p stop becomes non-zero (then completes the open batch,
 *        leaves the group and returns ESK_OK) or a fatal error (fenced,
 *        corrupt log, broker gone for longer than the restore timeout).
 */
int esk_producer_run(esk_producer_t *p, volatile sig_atomic_t *stop, esk_error_t *err);

/** @brief Frees everything. NULL does nothing. */
void esk_producer_destroy(esk_producer_t *p);

#endif
