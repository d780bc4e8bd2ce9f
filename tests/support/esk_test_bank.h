/* Test and bench support: a reproducible bank workload, published to Kafka as
 * the producer will (Avro single-object values written in several schema
 * versions, key = account id, the headers of docs/architecture.md, "Kafka
 * contract"), and the read models each projection must produce, folded here
 * independently of the projector and compared with what is in PostgreSQL.
 * No Criterion: the bench links it. */
#ifndef ESK_TEST_BANK_H
#define ESK_TEST_BANK_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/error.h"

/** One generated event (strings are derived from the fields when needed). */
typedef struct esk_test_bank_event_s {
  int64_t amount;         /**< minor units (initial deposit for an opening) */
  int64_t occurred_at_us;
  uint64_t id_hi, id_lo;  /**< event id (a version-4 UUID) */
  int32_t account;        /**< account index */
  int32_t version;        /**< aggregate version */
  uint8_t kind;           /**< esk_bank_kind_t */
  uint8_t writer_version; /**< schema version it is encoded with */
} esk_test_bank_event_t;

typedef struct esk_test_bank_s esk_test_bank_t;

/** @brief A workload of @p n_events over @p n_accounts accounts, from @p seed. */
int esk_test_bank_new(esk_test_bank_t **out, unsigned seed, int n_accounts, size_t n_events,
                      esk_error_t *err);
void esk_test_bank_destroy(esk_test_bank_t *b);

size_t esk_test_bank_count(const esk_test_bank_t *b);
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

/* ------------------------------------------- a projector in a thread --- */

#include "projector.h"

typedef struct esk_test_projector_s esk_test_projector_t;

/**
 * @brief Starts bank projection @p name (esk-projector's code, in a thread)
 *        on @p topic, in PostgreSQL schema @p schema, as consumer group @p group.
 * @param max_bytes the decoder's value limit (0: default).
 * @param kv NULL or a NULL-terminated list of extra key, value pairs.
 */
int esk_test_projector_start(esk_test_projector_t **out, const char *name, const char *topic,
                             const char *schema, const char *group, size_t max_bytes,
                             const char *const *kv, esk_error_t *err);

/**
 * @brief As esk_test_projector_start(), for a projection built by the caller
 *        (declarative file, plugin), which stays the caller's to free after
 *        esk_test_projector_stop(). Its name is the projection's name.
 */
int esk_test_projector_start_with(esk_test_projector_t **out, const esk_projection_t *proj,
                                  const char *topic, const char *schema, const char *group,
                                  const char *const *kv, esk_error_t *err);

/** @brief The running projector's counters; returns its run's error code if it ended. */
int esk_test_projector_stats(esk_test_projector_t *t, esk_projector_stats_t *s, esk_error_t *err);

/** @brief esk_test_projector_stats() in the shape of esk_test_projector_quiet()'s
 *         counters (@p t an esk_test_projector_t); a run that ended shows in the stop. */
void esk_test_projector_counters(void *t, esk_projector_stats_t *s);

/** @brief Stops (as SIGTERM would), joins and frees it; the final counters in @p s.
 *  @returns the run's code (ESK_OK on the requested stop). */
int esk_test_projector_stop(esk_test_projector_t *t, esk_projector_stats_t *s, esk_error_t *err);

/** @brief Deletes @p topic and its dead-letter topics (one per bank projection);
 *         errors are ignored (cleanup). */
void esk_test_bank_delete_topics(const char *topic);

#include <sys/types.h>

/**
 * @brief Starts the binary argv[0] with @p argv as a child process, its
 *        stdout and stderr appended to @p log, stdin closed. The caller waits
 *        for it (waitpid); it is killed if the calling thread's process ends
 *        first (a failed assertion). @returns its pid, or -1 when fork failed.
 */
pid_t esk_test_spawn(char *const argv[], const char *log);

#endif
