/* Helpers shared by the Criterion suites. */
#ifndef ESK_TEST_H
#define ESK_TEST_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/conf.h"
#include "esk/time.h"
#include "projector.h"

/**
 * Writes "<prefix>.<pid>.<random>" into buf: names of topics, groups, tables
 * and databases that no other test run (or parallel test) uses.
 * For SQL identifiers use a prefix of [a-z_] only; the result is then
 * [a-z0-9_.] with '.' replaced by '_'.
 */
void esk_test_unique_name(char *buf, size_t size, const char *prefix);

/** Fails the current test, with the reason and how to start the broker,
 *  unless a Kafka broker answers within 10 s. */
void esk_test_require_kafka(void);

/** Fails the current test unless PostgreSQL answers. */
void esk_test_require_pg(void);

/** Connects to the test PostgreSQL (fails the test, with the reason, if it
 *  cannot). The caller PQfinish()es the connection. */
PGconn *esk_test_pg_connect(void);

/** Connects to the test PostgreSQL with search_path set to @p schema. */
PGconn *esk_test_pg_connect_schema(const char *schema);

/** Drops @p schema and everything in it (cleanup; errors ignored). */
void esk_test_drop_schema(const char *schema);

/**
 * Reads @p topic from its beginning with a fresh consumer group until @p n
 * messages arrived or @p timeout_s passed, calling @p fn (may be NULL) for each (the
 * message lives during the call). Returns how many.
 */
int esk_test_consume(const char *topic, int n, int timeout_s,
                     void (*fn)(const rd_kafka_message_t *m, void *arg), void *arg);

/** The value of header @p name of @p m as a string in @p buf ("" if absent). */
const char *esk_test_header(const rd_kafka_message_t *m, const char *name, char *buf,
                            size_t size);

/**
 * @brief A configuration of the properties of @p tables (@p n of them) with
 *        the NULL-terminated key, value pairs @p kv set (source "test"); a
 *        key or value refused fails the test. The caller destroys it.
 */
esk_conf_t *esk_test_conf_with(const esk_conf_prop_t *const *tables, size_t n,
                               const char *const *kv);

/**
 * @brief Writes @p len bytes of @p data to a new file /tmp/<prefix>XXXXXX and
 *        its name into @p path (fails the test on error). The caller unlinks it.
 */
void esk_test_temp_file(char *path, size_t size, const char *prefix, const void *data,
                        size_t len);

/** @brief A plain producer handle on the test broker (also an admin client); the caller destroys it. */
rd_kafka_t *esk_test_kafka_client(void);

/**
 * @brief The fixture of a suite on its own topic and PostgreSQL schema: fails
 *        the test unless Kafka and PostgreSQL answer, names both with
 *        esk_test_unique_name() (@p topic_prefix, @p schema_prefix) and
 *        creates the topic with @p partitions partitions.
 */
void esk_test_topic_and_schema(char *topic, size_t tsize, const char *topic_prefix, char *schema,
                               size_t ssize, const char *schema_prefix, int partitions);

/** Creates a topic on the test broker (fails the test on error). */
void esk_test_create_topic(const char *topic, int partitions);

/** Deletes a topic; errors are ignored (cleanup). */
void esk_test_delete_topic(const char *topic);

/** Sets one config of @p topic on the test broker (AlterConfigs; fails the test on error). */
void esk_test_alter_topic(const char *topic, const char *key, const char *value);

/** The sum of @p topic's high watermarks (the offset after its last message), over
 *  all its partitions (fails the test when Kafka does not answer). */
int64_t esk_test_high_watermarks(const char *topic);

/** A projector's counters, for esk_test_projector_quiet(): @p arg is the caller's. */
typedef void (*esk_test_stats_fn)(void *arg, esk_projector_stats_t *s);

/**
 * Waits until a projector has nothing left to do, what a check that something
 * did *not* happen must wait for: the positions of @p projection on @p topic
 * stored in the bookkeeping tables @p pg finds sum to the topic's high
 * watermarks (every message handled and its batch committed; non-transactional
 * publishers), and then its counters, read by @p stats, stayed the same over
 * three polls 100 ms apart. Fails the test after @p timeout_s seconds.
 * @returns the counters it saw last.
 */
esk_projector_stats_t esk_test_projector_quiet(PGconn *pg, const char *projection,
                                               const char *topic, esk_test_stats_fn stats,
                                               void *arg, int timeout_s);

#endif
