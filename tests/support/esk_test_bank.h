/* Test and bench support: a reproducible bank workload, published to Kafka as
 * the producer will (Avro single-object values written in several schema
 * versions, key = account id, the headers of docs/architecture.md, "Kafka
 * contract"), and the read models each projection must produce, folded here
 * independently of the projector and compared with what is in PostgreSQL.
 * The generator is in esk_test_bank_workload.c, publishing in
 * esk_test_bank_publish.c, the fold and the comparison in esk_test_bank_check.c.
 * No Criterion: the bench links it. */
#ifndef ESK_TEST_BANK_H
#define ESK_TEST_BANK_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/error.h"
/* the suites and benches of the bank workload run it with these two */
#include "esk_test_projector.h"
#include "esk_test_spawn.h"

/** One generated event (strings are derived from the fields when needed). */
typedef struct esk_test_bank_event_s {
  int64_t amount;         /**< minor units (initial deposit for an opening) */
  int64_t occurred_at_us;
  uint64_t id_hi, id_lo;  /**< event id (a version-4 UUID) */
  int32_t account;        /**< account index */
  int32_t version;        /**< aggregate version */
  uint8_t kind;           /**< esk_bank_event_type_t */
  uint8_t writer_version; /**< schema version it is encoded with */
} esk_test_bank_event_t;

typedef struct esk_test_bank_s esk_test_bank_t;

/** @brief A workload of @p n_events over @p n_accounts accounts, from @p seed. */
int esk_test_bank_new(esk_test_bank_t **out, unsigned seed, int n_accounts, size_t n_events,
                      esk_error_t *err);
void esk_test_bank_destroy(esk_test_bank_t *b);

size_t esk_test_bank_count(const esk_test_bank_t *b);
/** @brief 1 when every string of event @p i is plain ASCII (the bank's
 *  field-by-field reader takes it), 0 for a deposit whose description is not. */
int esk_test_bank_plain(const esk_test_bank_t *b, size_t i);
const esk_test_bank_event_t *esk_test_bank_event(const esk_test_bank_t *b, size_t i);
/** @brief The id of account @p i ("acct-<i>") into @p buf. */
const char *esk_test_bank_account_id(int i, char *buf, size_t size);

/** @brief A producer on the test broker (murmur2_random, idempotent, batching). */
int esk_test_bank_producer(rd_kafka_t **out, esk_error_t *err);

/**
 * @brief Publishes events [from, to) to @p topic (not flushed).
 *        Waits when the producer's queue is full.
 */
int esk_test_bank_publish(esk_test_bank_t *b, rd_kafka_t *producer, const char *topic,
                          size_t from, size_t to, esk_error_t *err);

/**
 * @brief Flushes @p producer, then fails (ESK_EFATAL, naming the first) if any
 *        message of a test producer (esk_test_bank_producer()) was not delivered:
 *        rd_kafka_flush() alone says nothing of messages Kafka refused.
 */
int esk_test_bank_flush(rd_kafka_t *producer, int timeout_ms, esk_error_t *err);

/** Names a message whose delivery failed, for a test's message: its key (64
 *  bytes at most), topic, partition and error. */
void esk_test_describe_undelivered(char *out, size_t size, const rd_kafka_message_t *m);

/** @brief Publishes raw bytes with key @p key (poison injection). */
int esk_test_bank_publish_raw(rd_kafka_t *producer, const char *topic, const char *key,
                              const void *value, size_t len, esk_error_t *err);

/**
 * @brief Encodes event @p i (single-object encoding) into a malloc'd buffer.
 * @param description NULL: the generated one.
 */
int esk_test_bank_encode(esk_test_bank_t *b, size_t i, const char *description, void **out,
                         size_t *len, esk_error_t *err);

/**
 * @brief Compares read model @p projection ("account_balances", ...) in the
 *        current search_path of @p pg with the fold of events [0, upto) of
 *        the workload minus those marked skipped.
 * @returns ESK_OK, or ESK_EINVAL describing the first difference and the row counts.
 */
int esk_test_bank_check(esk_test_bank_t *b, PGconn *pg, const char *projection, size_t upto,
                        esk_error_t *err);

/** @brief Marks event @p i as one the read models must not contain (it was not published). */
void esk_test_bank_skip(esk_test_bank_t *b, size_t i);

/** @brief Deletes @p topic and its dead-letter topics (one per bank projection);
 *         errors are ignored (cleanup). */
void esk_test_bank_delete_topics(const char *topic);

#endif
