/**
 * @file kafka.h
 * @brief librdkafka set-up shared by every esk process and tool.
 */
#ifndef ESK_KAFKA_H
#define ESK_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "esk/error.h"

/** The hint every "broker not reachable" message ends with. */
#define ESK_KAFKA_START_HINT "start the local stack with: deploy/local/stack up"

/**
 * @brief Creates a librdkafka configuration with esk's defaults:
 *        bootstrap.servers, librdkafka's log routed through esk's logger and,
 *        for a producer, `partitioner=murmur2_random` (Java's, so other
 *        clients put a key where esk does).
 * @param type RD_KAFKA_PRODUCER or RD_KAFKA_CONSUMER.
 * @param out set to the new configuration on success; the caller owns it
 *        (rd_kafka_new() takes ownership on success).
 * @param bootstrap host:port list; NULL for esk_conf_env_kafka_bootstrap().
 * @returns ESK_OK, or ESK_EINVAL naming the property that was refused.
 */
int esk_kafka_conf_new(rd_kafka_conf_t **out, rd_kafka_type_t type, const char *bootstrap,
                       esk_error_t *err);

/**
 * @brief Sets one librdkafka property on @p conf.
 * @returns ESK_OK, or ESK_EINVAL with librdkafka's reason, the key and the value.
 */
int esk_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                       esk_error_t *err);

/**
 * @brief Asks the brokers at @p bootstrap for cluster metadata.
 * @returns ESK_OK when a broker answered within @p timeout_ms, else ESK_ERETRY
 *          with a message naming the address, the reason and how to start the
 *          local stack.
 */
int esk_kafka_check_broker(const char *bootstrap, int timeout_ms, esk_error_t *err);

/**
 * @brief Creates a topic, or leaves an existing one as it is.
 * @param rk any client handle (used for the admin request).
 * @param configs NULL-terminated list of name, value pairs (e.g.
 *        {"retention.ms", "-1", NULL}); may be NULL.
 * @param created set to 1 when this call created it (may be NULL).
 * @returns ESK_OK, or ESK_ERETRY / ESK_EINVAL with the broker's reason.
 */
int esk_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions,
                           const char *const *configs, int timeout_ms, int *created,
                           esk_error_t *err);

/**
 * @brief The number of partitions of @p topic.
 * @returns ESK_OK, ESK_ENOTFOUND when the topic does not exist, or ESK_ERETRY.
 */
int esk_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count,
                              esk_error_t *err);

#endif
