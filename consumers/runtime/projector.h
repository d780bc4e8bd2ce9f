/**
 * @file projector.h
 * @brief The projector runtime: one projection, one consumer group, batches
 *        of events applied to PostgreSQL in one transaction together with the
 *        projection's position per partition, Kafka offsets committed after.
 *
 * Guarantees (docs/architecture.md, "Read side"):
 * - a batch commits only if each partition's stored position still equals the
 *   one the batch started from (compare-and-set): an instance that lost a
 *   partition cannot commit;
 * - per-aggregate version guard: an event whose version is not above the
 *   aggregate's last applied version is skipped, so duplicates change nothing;
 *   a version gap, an undecodable value or a permanent SQL failure goes to the
 *   dead-letter topic (or stops the projector when on_error=stop);
 * - the Kafka offsets are committed only after the PostgreSQL commit; on
 *   assignment the consumer seeks to the position stored in PostgreSQL;
 * - PostgreSQL faults are retried with backoff while the consumer keeps
 *   serving the group (partitions paused); nothing is skipped.
 *
 * The runtime knows no domain and no codec: a decoder turns a Kafka message
 * into an esk_event_t, and a projection (esk_projection_t, esk/projection.h)
 * applies events.
 */
#ifndef ESK_PROJECTOR_H
#define ESK_PROJECTOR_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/metrics.h"
#include "event.h"

/* esk_projection_t, the projection's callbacks, is public: esk/projection.h. */

/** The projector's own configuration keys (with esk_conf_common_props). */
extern const esk_conf_prop_t esk_projector_props[];

typedef struct esk_projector_s esk_projector_t;

/**
 * @brief Creates a projector: connects to PostgreSQL, runs the projection's
 *        migrations and creates the Kafka consumer and the DLQ producer.
 * @param conf borrowed; must outlive the projector.
 * @param projection, decoder: copied (their self pointers are borrowed).
 */
int esk_projector_new(esk_projector_t **out, const esk_conf_t *conf,
                      const esk_projection_t *projection, const esk_decoder_t *decoder,
                      esk_error_t *err);

/**
 * @brief Makes a projector with no stored position start, on every partition,
 *        at the first event whose Kafka timestamp is at or after @p t_ms
 *        (esk-projector --from-time; from_time.h). Call after
 *        esk_projector_new() and before esk_projector_run(). Does nothing when
 *        positions are stored (a restart resumes from them).
 * @returns ESK_OK; ESK_EINVAL for a projection that needs its aggregates' whole
 *          history (the message says why); ESK_ERETRY when Kafka or
 *          PostgreSQL does not answer.
 */
int esk_projector_start_at(esk_projector_t *p, int64_t t_ms, esk_error_t *err);

/**
 * @brief Runs until @p *stop becomes non-zero (e.g. set by a SIGTERM handler),
 *        or a fatal error. On stop it finishes or rolls back the open batch,
 *        commits, leaves the group.
 * @returns ESK_OK on a requested stop, else the fatal error.
 */
int esk_projector_run(esk_projector_t *p, volatile sig_atomic_t *stop, esk_error_t *err);

/**
 * @brief Checks the identifiers that come from configuration and reach SQL,
 *        before anything is sent to PostgreSQL: `pg.schema` and `projection`
 *        (also the name of a declarative file or plugin) must each be a
 *        lower-case identifier (esk_pg_ident_valid()), and together
 *        they must name a valid schema for the configured generation
 *        (`<pg.schema>_<projection>_g<N>`, N at least 1).
 * @returns ESK_OK, or ESK_EINVAL naming the key, the value and what is allowed
 *          (a configuration error: the binaries exit 2).
 */
int esk_projector_check_names(const esk_conf_t *conf, esk_error_t *err);

/** @brief Frees the projector. NULL does nothing. */
void esk_projector_destroy(esk_projector_t *p);

/**
 * @brief Registers the projector's metric families in @p reg (once per
 *        registry) and updates them from then on, each series labelled
 *        `projection`: esk_projector_events_applied_total, _batches_total,
 *        _batch_duration_seconds, _lag_events{partition},
 *        _lag_seconds{partition}, _dead_letters_total{reason},
 *        _pg_retries_total, _duplicates_skipped_total, _assigned_partitions,
 *        _subjects_scrubbed_total.
 *        Optional: without it nothing is recorded. Call before
 *        esk_projector_run(); @p reg must outlive the projector.
 * @returns ESK_OK, or the registry's error (e.g. ESK_EINVAL: already registered).
 */
int esk_projector_set_metrics(esk_projector_t *p, esk_metrics_t *reg, esk_error_t *err);

/**
 * @brief Readiness, thread-safe (reads only what the running loop publishes
 *        in atomics; touches no Kafka or PostgreSQL handle), for an
 *        esk_http_ready_fn. Ready iff PostgreSQL answered at the last attempt
 *        (a batch, a position read, or the idle check every
 *        pg.check.interval.ms), the group gave this member an assignment
 *        (an empty one counts: a member beyond the partition count is an
 *        idle standby), and the lag summed over the assigned partitions is at
 *        most ready.max.lag.events.
 * @param reason when not ready, the failing condition (first one found).
 * @returns 1 ready, 0 not.
 */
int esk_projector_ready(esk_projector_t *p, char *reason, size_t size);

/** Counters, for tests and progress lines. */
typedef struct esk_projector_stats_s {
  int64_t applied;    /**< events applied */
  int64_t skipped;    /**< duplicates skipped by the version guard */
  int64_t dead;       /**< events sent to the DLQ */
  int64_t batches;    /**< batches committed */
  int64_t conflicts;  /**< batches dropped because a position moved */
  int64_t pg_retries; /**< PostgreSQL faults retried */
  int64_t scrubbed;   /**< forgotten subjects scrubbed from the read model */
  int64_t versions_read; /**< aggregates whose version a batch read from PostgreSQL
                              (the others' came from the version cache) */
  int64_t read_from_bytes; /**< events of committed batches the projection read from
                                their bytes (esk_projection_t.decode) */
} esk_projector_stats_t;

void esk_projector_stats(const esk_projector_t *p, esk_projector_stats_t *out);

#endif
