/**
 * @file kafka.h
 * @brief librdkafka set-up shared by every esk process and tool.
 */
#ifndef ESK_KAFKA_H
#define ESK_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "esk/conf.h"
#include "esk/error.h"

/** The hint every "broker not reachable" message ends with. */
#define ESK_KAFKA_START_HINT "start the local stack with: deploy/local/stack up"

/** Header of an event: its aggregate's version after it, in decimal. */
#define ESK_KAFKA_HDR_AGGREGATE_VERSION "esk.aggregate_version"
/** Header of a result that repeats a command's first result (a command id
 *  seen before): the command's events, if any, are in an earlier transaction.
 *  Its value is "1"; a first result carries no header. */
#define ESK_KAFKA_HDR_DUPLICATE "esk.duplicate"

/**
 * @brief Creates a librdkafka configuration with esk's defaults:
 *        bootstrap.servers, librdkafka's log routed through esk's logger and,
 *        for a producer, `partitioner=murmur2_random` (Java's, so other
 *        clients put a key where esk does) and `enable.idempotence=true`
 *        (a retried send keeps its place in the partition). The Kafka
 *        security keys (esk_conf_kafka_security_props) whose environment
 *        variables are set apply too (ESK_KAFKA_SECURITY_PROTOCOL, ...), so a
 *        tool reaches the cluster `deploy/local/stack env` describes; a
 *        process's own configuration, applied later, wins.
 * @param type RD_KAFKA_PRODUCER or RD_KAFKA_CONSUMER.
 * @param out set to the new configuration on success; the caller owns it
 *        (rd_kafka_new() takes ownership on success).
 * @param bootstrap host:port list; NULL for esk_conf_env_kafka_bootstrap().
 * @returns ESK_OK, or ESK_EINVAL naming the property that was refused.
 */
int esk_kafka_conf_new(rd_kafka_conf_t **out, rd_kafka_type_t type, const char *bootstrap,
                       esk_error_t *err);

/**
 * @brief The principal @p rk authenticates as, for messages: "User:<sasl.username>"
 *        under SASL, else "User:ANONYMOUS". @returns @p buf.
 */
const char *esk_kafka_principal(rd_kafka_t *rk, char *buf, size_t size);

/**
 * @brief Sets one librdkafka property on @p conf. `sasl.password.file` is
 *        esk's: the first line of that file (at most 1024 bytes, without its
 *        line end) becomes `sasl.password`.
 * @returns ESK_OK, or ESK_EINVAL with librdkafka's reason, the key and the
 *          value (a secret's value shows as "(hidden)"; a password file's
 *          message names the file, never its content).
 */
int esk_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                       esk_error_t *err);

/**
 * @brief Copies every `kafka.*` key of @p conf (table keys with a librdkafka
 *        name and pass-through keys) onto @p kc.
 * @returns ESK_EINVAL naming the key and librdkafka's reason.
 */
int esk_kafka_conf_apply(rd_kafka_conf_t *kc, const esk_conf_t *conf, esk_error_t *err);

/**
 * @brief As esk_kafka_conf_apply(), for a client of one @p type: pass-through
 *        keys `kafka.consumer.<property>` go only to consumers and
 *        `kafka.producer.<property>` only to producers (without that prefix),
 *        so a process with both kinds gives each only its own properties.
 *        esk_kafka_conf_apply() skips both kinds.
 */
int esk_kafka_conf_apply_client(rd_kafka_conf_t *kc, const esk_conf_t *conf,
                                rd_kafka_type_t type, esk_error_t *err);

/**
 * @brief The configuration of one client of a process: esk_kafka_conf_new()
 *        with the process's kafka.bootstrap.servers, then @p defaults, then
 *        every `kafka.*` key of @p conf for a client of @p type
 *        (esk_kafka_conf_apply_client()), then @p forced, and @p opaque as
 *        the callbacks' opaque. Callbacks are the caller's to set.
 * @param defaults, forced NULL-terminated key, value lists; either may be NULL.
 * @param out set on success; the caller owns it (see esk_kafka_client_new()).
 * @returns ESK_OK, or ESK_EINVAL naming the property that was refused.
 */
int esk_kafka_client_conf(rd_kafka_conf_t **out, rd_kafka_type_t type, const esk_conf_t *conf,
                          const char *const *defaults, const char *const *forced, void *opaque,
                          esk_error_t *err);

/**
 * @brief rd_kafka_new() with an esk error: takes ownership of @p kc whether
 *        it succeeds or not.
 * @returns ESK_OK, or ESK_EINVAL with librdkafka's reason.
 */
int esk_kafka_client_new(rd_kafka_t **out, rd_kafka_type_t type, rd_kafka_conf_t *kc,
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
 * @param replication replicas per partition; -1: the broker's
 *        default.replication.factor.
 * @param configs NULL-terminated list of name, value pairs (e.g.
 *        {"retention.ms", "-1", NULL}); may be NULL.
 * @param created set to 1 when this call created it (may be NULL).
 * @returns ESK_OK, or ESK_ERETRY / ESK_EINVAL with the broker's reason.
 */
int esk_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions, int replication,
                           const char *const *configs, int timeout_ms, int *created,
                           esk_error_t *err);

/**
 * The snapshots topic's configuration, as name, value pairs ending in NULL
 * (for esk_kafka_create_topic()): compacted, with segments that close at
 * 16 MiB or after an hour and a compaction lag of at most an hour. A restore
 * reads the partition from its start, and the log cleaner never compacts the
 * active segment: with one segment of 1 GiB (the broker's default) a restore
 * read every snapshot written since the partition began. With these, it reads
 * about one snapshot per aggregate, as many again not yet compacted, and one
 * segment (docs/architecture.md, "Write side": restore).
 */
extern const char *const esk_kafka_snapshots_config[];

/**
 * @brief The number of partitions of @p topic.
 * @returns ESK_OK, ESK_ENOTFOUND when the topic does not exist, or ESK_ERETRY.
 */
int esk_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count,
                              esk_error_t *err);

/**
 * @brief Writes the name of one of a domain's topics into @p buf:
 *        `<prefix><domain>.<kind>`, e.g. ("", "bank", "events") → "bank.events".
 * @param prefix prepended as is (tests and benches use a unique one); may be NULL.
 * @returns ESK_OK, or ESK_EINVAL when the name is empty, does not fit, is longer
 *          than Kafka's 249 characters or holds a character Kafka refuses
 *          (allowed: ASCII letters, digits, '.', '_', '-').
 */
int esk_kafka_topic_name(char *buf, size_t size, const char *prefix, const char *domain,
                         const char *kind, esk_error_t *err);

/**
 * @brief Classifies the outcome of a librdkafka transactional call and frees @p e.
 * @param e the call's error (NULL: success); destroyed here.
 * @param op the call's name, for the message ("commit_transaction").
 * @returns ESK_OK; ESK_ERETRY when the same call may simply be made again
 *          (retriable); ESK_ECONFLICT when the transaction must be aborted
 *          (abortable: abort, rewind, redo); ESK_EFATAL when the producer is
 *          fenced or in a fatal state and the process must stop.
 */
int esk_kafka_txn_error(rd_kafka_error_t *e, const char *op, esk_error_t *err);

/**
 * @brief Creates a consumer for reading partitions directly (no group, no
 *        commits): `isolation.level=read_committed`, `enable.partition.eof=true`,
 *        large fetches. For restores and tools.
 * @param bootstrap NULL for esk_conf_env_kafka_bootstrap().
 * @param extra NULL-terminated name, value pairs applied last (may be NULL).
 */
int esk_kafka_reader_new(rd_kafka_t **out, const char *bootstrap, const char *const *extra,
                         esk_error_t *err);

/**
 * @brief As esk_kafka_reader_new(), on a configuration the caller prepared
 *        (from esk_kafka_conf_new(), with the process's consumer settings:
 *        security, client id, ...); the reader's own settings go on top, so a
 *        daemon's restore reader reaches the brokers as its consumer does.
 * @param conf taken over: used or freed, also on failure.
 */
int esk_kafka_reader_new_conf(rd_kafka_t **out, rd_kafka_conf_t *conf, const char *const *extra,
                              esk_error_t *err);

/**
 * @brief rd_kafka_query_watermark_offsets(), asked again after a metadata refresh
 *        while the answer is that the partition's leader moved (librdkafka 2.0.2
 *        keeps asking a stale leader otherwise), for up to @p timeout_ms.
 */
rd_kafka_resp_err_t esk_kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                         int64_t *lo, int64_t *hi, int timeout_ms);

/**
 * @brief esk_kafka_watermarks() for a hot path: asks the cached leader first,
 *        for up to @p quick_ms, and only when that fails (a leader that moved or
 *        died) refreshes the metadata and asks again until @p timeout_ms. A
 *        healthy cluster answers in one round trip instead of three.
 */
rd_kafka_resp_err_t esk_kafka_watermarks_quick(rd_kafka_t *rk, const char *topic,
                                               int32_t partition, int64_t *lo, int64_t *hi,
                                               int quick_ms, int timeout_ms);

/** Called for each message esk_kafka_read_partition() reads; non-zero stops the read
 *  and is returned (the message is borrowed for the call). */
typedef int (*esk_kafka_msg_fn)(const rd_kafka_message_t *m, void *ctx);

/**
 * @brief Reads one partition of @p topic from offset @p from to its end as it was
 *        when the call started (the last stable offset for read_committed
 *        readers), calling @p fn for each message.
 * @param rk a consumer made by esk_kafka_reader_new().
 * @param from an offset, or RD_KAFKA_OFFSET_BEGINNING.
 * @param idle_timeout_ms fail when no message arrives for this long.
 * @param end_out if not NULL, set to the offset after the last one read (the
 *        position at the end).
 * @returns ESK_OK; @p fn's non-zero return; ESK_ERETRY naming topic and
 *          partition on a broker error, a timeout, or a stop requested from
 *          the watchdog (esk_watchdog_stopping(); the read also beats its
 *          heartbeat).
 */
int esk_kafka_read_partition(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t from,
                             int idle_timeout_ms, esk_kafka_msg_fn fn, void *ctx,
                             int64_t *end_out, esk_error_t *err);

/**
 * @brief The value of the last header named @p name as a NUL-terminated copy in
 *        @p buf (truncated to fit). @returns 1 when found, 0 otherwise.
 */
int esk_kafka_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size);

#endif
