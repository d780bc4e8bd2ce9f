/* Kafka helpers shared by the benches (bench_producer, bench_latency). */
#ifndef ESK_BENCH_KAFKA_H
#define ESK_BENCH_KAFKA_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/** An idempotent producer (esk_kafka_conf_new()) with the NULL-terminated
 *  key/value pairs @p kv on top (may be NULL); exits naming @p who on error. */
rd_kafka_t *esk_bench_producer(const char *who, const char *const *kv);

/** Produces a copy of @p v to @p topic keyed by the string @p key, waiting while
 *  the queue is full; exits naming @p who on error. */
void esk_bench_send(const char *who, rd_kafka_t *rk, const char *topic, const char *key,
                    const void *v, size_t n);

#endif
