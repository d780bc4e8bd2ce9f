/* Helpers shared by the Criterion suites. */
#ifndef ESK_TEST_H
#define ESK_TEST_H

#include <libpq-fe.h>
#include <stddef.h>

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

/** Creates a topic on the test broker (fails the test on error). */
void esk_test_create_topic(const char *topic, int partitions);

/** Deletes a topic; errors are ignored (cleanup). */
void esk_test_delete_topic(const char *topic);

#endif
