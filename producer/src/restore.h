/**
 * @file restore.h
 * @brief Rebuilding the state of one partition of the bank aggregates from
 *        Kafka: latest snapshots, then the events after the last checkpoint,
 *        then the recent results (the idempotency cache).
 *
 * Layout of `<domain>.snapshots` (compacted; partition p holds the aggregates
 * of commands/events partition p):
 *  - key = account id, value = esk_bank_state_serialize() bytes,
 *    header `esk.type: AccountSnapshot`;
 *  - key = ESK_RESTORE_CHECKPOINT_KEY, value = "ESKCKPT1" + int64 LE offset,
 *    header `esk.type: Checkpoint`: every event of the partition below that
 *    offset is reflected in the snapshots written with it or before it.
 */
#ifndef ESK_PRODUCER_RESTORE_H
#define ESK_PRODUCER_RESTORE_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "bank/bank.h"
#include "bank/bank_avro.h"
#include "bank/hmap.h"
#include "esk/error.h"

/** Snapshot-topic key of a partition's checkpoint record; refused as an account id. */
#define ESK_RESTORE_CHECKPOINT_KEY "\001esk.checkpoint"
#define ESK_RESTORE_CHECKPOINT_MAGIC "ESKCKPT1"
#define ESK_RESTORE_CHECKPOINT_SIZE 16

/** The topics of one domain. */
typedef struct esk_topics_s {
  char commands[256], events[256], results[256], snapshots[256];
} esk_topics_t;

/** @brief Fills @p t from the prefix and the domain (see esk_kafka_topic_name()). */
int esk_topics_init(esk_topics_t *t, const char *prefix, const char *domain, esk_error_t *err);

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
  esk_bank_store_t *store;
  esk_bank_seen_t *seen; /**< NULL: results are not read */
  esk_hmap_t *dirty;     /**< NULL, or a set that gets every account events changed */
  size_t seen_max;       /**< how many of the newest results to read */
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
                          rd_kafka_t *reader, esk_bank_avro_t *avro, const esk_topics_t *topics,
                          int32_t partition, int use_snapshots, int idle_timeout_ms,
                          esk_error_t *err);

/** @brief Encodes a checkpoint value into @p out (ESK_RESTORE_CHECKPOINT_SIZE bytes). */
void esk_restore_checkpoint_encode(uint8_t *out, int64_t events_offset);

/** @brief Decodes a checkpoint value. @returns ESK_OK or ESK_EPOISON. */
int esk_restore_checkpoint_decode(int64_t *out, const void *data, size_t len, esk_error_t *err);

/**
 * @brief Writes a result as the JSON value of the results topic:
 *        `{"command_id":..,"status":"accepted","aggregate_version":N}` or
 *        `{"command_id":..,"status":"rejected","error":{"code":..,"message":..,
 *        "actual_version":N}}`.
 * @returns the length written (< size), or -1 when it does not fit.
 */
int esk_result_to_json(char *buf, size_t size, const char *command_id,
                       const esk_bank_result_t *res);

/**
 * @brief As esk_result_to_json(), for a command id of @p id_len bytes as
 *        received (it may hold U+0000, written \u0000, or bytes that are not
 *        UTF-8, each written as the lone surrogate \udcXX).
 */
int esk_result_to_json_n(char *buf, size_t size, const char *command_id, size_t id_len,
                         const esk_bank_result_t *res);

/**
 * @brief Parses a value written by esk_result_to_json(); one whose command id
 *        holds U+0000 or a lone surrogate (a refused command's answer, whose id
 *        is not remembered) is ESK_EPOISON.
 * @param command_id_out receives the command id (ESK_BANK_ID_MAX + 1 bytes).
 * @returns ESK_OK or ESK_EPOISON naming the problem.
 */
int esk_result_from_json(char *command_id_out, esk_bank_result_t *res, const void *data,
                         size_t len, esk_error_t *err);

#endif
