/**
 * @file restore.h
 * @brief Rebuilding the state of one partition of a domain's aggregates from
 *        Kafka: latest snapshots, then the events after the last checkpoint,
 *        then the recent results (the idempotency cache).
 *
 * Layout of `<domain>.snapshots` (compacted; partition p holds the aggregates
 * of commands/events partition p):
 *  - key = aggregate id, value = the domain's snapshot_write() bytes,
 *    header `esk.type: <domain snapshot_type>` (the bank's: AccountSnapshot);
 *  - key = ESK_RESTORE_CHECKPOINT_KEY, value = "ESKCKPT1" + int64 LE offset,
 *    header `esk.type: Checkpoint`: every event of the partition below that
 *    offset is reflected in the snapshots written with it or before it.
 */
#ifndef ESK_PRODUCER_RESTORE_H
#define ESK_PRODUCER_RESTORE_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "aggstore.h"
#include "esk/domain.h"
#include "esk/error.h"
#include "esk/hmap.h"
#include "esk/shred.h"
#include "topics.h"

/** Snapshot-topic key of a partition's checkpoint record; refused as an aggregate id. */
#define ESK_RESTORE_CHECKPOINT_KEY "\001esk.checkpoint"
#define ESK_RESTORE_CHECKPOINT_MAGIC "ESKCKPT1"
#define ESK_RESTORE_CHECKPOINT_SIZE 16

/** What a restore read and how long it took. */
typedef struct esk_restore_stats_s {
  int64_t snapshots;      /**< snapshot records read */
  int64_t checkpoint;     /**< events offset the events were read from (0: from the start) */
  int64_t events_read;    /**< event records read */
  int64_t events_applied; /**< events newer than their snapshot, folded */
  int64_t results;        /**< results read into the idempotency cache */
  int64_t events_end;     /**< events offset after the restore */
  double ms_snapshots;    /**< reading the snapshots */
  double ms_events;       /**< reading and folding the events */
  double ms_total;
} esk_restore_stats_t;

/** Where a restore puts what it reads (all owned by the caller). */
typedef struct esk_restore_target_s {
  const esk_domain_t *domain;
  void *self;             /**< the domain's instance (decode_event) */
  esk_aggstore_t *store;
  esk_seen_t *seen;       /**< NULL: results are not read */
  esk_hmap_t *dirty;      /**< NULL, or a set that gets every aggregate events changed */
  size_t seen_max;        /**< how many of the newest results to read */
  /** NULL, or the keyring that decrypts personal fields before decode_event
   *  (docs/architecture.md, "Personal data"), with what it needs: */
  esk_shred_t *shred;
  esk_codec_t *codec;            /**< the domain's codec */
  const esk_schema_set_t *schemas;
  esk_buf_t *buf;                /**< scratch for the decrypted event */
  esk_shred_refresh_fn refresh;  /**< reads the subject-keys topic to its end */
  void *refresh_ctx;
} esk_restore_target_t;

/**
 * @brief Restores partition @p partition into @p tgt.
 * @param reader a consumer from esk_kafka_reader_new().
 * @param use_snapshots 0: ignore the snapshots and fold every event (for
 *        benchmarks and checks).
 * @returns ESK_OK; ESK_ERETRY (broker); ESK_EPOISON when an event or snapshot
 *          cannot be read or does not fold (the log is corrupt: stop).
 */
int esk_restore_partition(esk_restore_stats_t *stats, const esk_restore_target_t *tgt,
                          rd_kafka_t *reader, const esk_topics_t *topics, int32_t partition,
                          int use_snapshots, int idle_timeout_ms, esk_error_t *err);

/** @brief Encodes a checkpoint value into @p out (ESK_RESTORE_CHECKPOINT_SIZE bytes). */
void esk_restore_checkpoint_encode(uint8_t *out, int64_t events_offset);

/** @brief Decodes a checkpoint value. @returns ESK_OK or ESK_EPOISON. */
int esk_restore_checkpoint_decode(int64_t *out, const void *data, size_t len, esk_error_t *err);

#endif
