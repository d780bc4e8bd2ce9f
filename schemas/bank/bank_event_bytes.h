/**
 * @file bank_event_bytes.h
 * @brief The bank's events read field by field from their single-object
 *        bytes into esk_bank_event_t, without the codec's generic value: the
 *        fast path beside esk_codec_decode() and esk_bank_event_from_value()
 *        (docs/architecture.md, "Kafka contract"; docs/benchmarks.md, "Bank
 *        events read from their bytes").
 *
 * It knows the field order of every bank event schema version in
 * schemas/bank and what resolution and the upcasters make of each at the
 * newest version. It reads only what it is sure of:
 * - a (type, version) whose probe event it reads as the codec and the
 *   contract's mapping do, in the schema set it was set up with, and only
 *   while the newest version of the type is the one it was written for
 *   (esk_bank_event_bytes_init() checks both);
 * - strings of plain ASCII without U+0000, within the codec's limit;
 * - nothing past the datum's end, and the codec's message limit.
 *
 * Anything else, and anything the generic path calls poison (an id or text
 * longer than the aggregate allows, a negative amount, a version below 1),
 * is ESK_ENOTFOUND: the caller decodes the message the generic way, which
 * says what is wrong with it.
 */
#ifndef ESK_BANK_EVENT_BYTES_H
#define ESK_BANK_EVENT_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "bank_event.h"
#include "esk/buf.h"
#include "esk/codec.h"

/** The bank event schema versions it knows (AccountOpened v1, MoneyDeposited
 *  v1-v3, MoneyWithdrawn v1-v2, AccountClosed v1). */
#define ESK_BANK_EVENT_LAYOUTS 7

/** The metadata beside the event (its aggregate id and version are in
 *  esk_bank_event_t). The strings live in the reader until its next read. */
typedef struct esk_bank_event_read_meta_s {
  const char *type;           /**< the type's name, e.g. "MoneyDeposited" */
  int schema_version;         /**< the version it was written in */
  int value_version;          /**< the newest version of its type */
  const char *event_id;
  const char *aggregate_type;
  int64_t occurred_at_us;
  const char *correlation_id;
  const char *causation_id;
  const char *actor;
} esk_bank_event_read_meta_t;

/** A reader. esk_bank_event_bytes_init() sets it up; free with esk_bank_event_bytes_free(). */
typedef struct esk_bank_event_bytes_s {
  /** by layout: the writer schema's fingerprint while the layout is on, else 0 */
  uint64_t fp[ESK_BANK_EVENT_LAYOUTS];
  size_t max_message, max_string; /**< the codec's limits */
  esk_buf_t str;                  /**< the last event's metadata strings */
} esk_bank_event_bytes_t;

/**
 * @brief Sets @p r up for the bank schemas in @p set, as @p codec (over
 *        @p set, with the bank's upcasters) decodes them: each layout whose
 *        probe reads the same both ways is on; the others stay off, and
 *        their events take the generic path.
 * @returns ESK_OK (also when no layout is on); ESK_ENOMEM.
 */
int esk_bank_event_bytes_init(esk_bank_event_bytes_t *r, const esk_schema_set_t *set,
                              esk_codec_t *codec, esk_error_t *err);

/**
 * @brief Turns off every layout whose schema another contract (the one the
 *        events are decoded with) does not hold alike: @p fingerprint of the
 *        type and version differs, or @p latest names another newest version.
 *        Both return 0 for what the contract lacks.
 */
void esk_bank_event_bytes_keep(esk_bank_event_bytes_t *r,
                               uint64_t (*fingerprint)(const void *ctx, const char *type,
                                                       int version),
                               int (*latest)(const void *ctx, const char *type), const void *ctx);

/** @brief Frees what @p r holds and turns every layout off. */
void esk_bank_event_bytes_free(esk_bank_event_bytes_t *r);

/**
 * @brief 1 when @p ev and @p meta, read field by field, are what the codec's
 *        value @p v of the same message (read as @p rs) and the contract's
 *        mapping make of it: the check of esk_bank_event_bytes_init()'s
 *        probes, and of the decoder fuzzer.
 */
int esk_bank_event_bytes_agree(const esk_bank_event_t *ev, const esk_bank_event_read_meta_t *meta,
                               const esk_schema_t *rs, const avro_value_t *v);

/** @brief How many layouts are on. */
int esk_bank_event_bytes_count(const esk_bank_event_bytes_t *r);

/**
 * @brief Reads one event from its single-object bytes.
 * @param ev, meta set on ESK_OK; undefined after ESK_ENOTFOUND.
 * @returns ESK_OK, or ESK_ENOTFOUND for a message the generic path must decode.
 */
int esk_bank_event_bytes_read(esk_bank_event_bytes_t *r, const void *data, size_t len,
                              esk_bank_event_t *ev, esk_bank_event_read_meta_t *meta);

#endif
