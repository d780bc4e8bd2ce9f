/**
 * @file event.h
 * @brief What the read-side runtime hands a projection: a decoded event, and
 *        the decoder that makes one from a Kafka message. Apart from
 *        projector.h so that the runtime's parts (from_time.c) use them
 *        without depending on the projector.
 */
#ifndef ESK_EVENT_H
#define ESK_EVENT_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "esk/error.h"

/** A decoded event; valid only during the call it is passed to. */
typedef struct esk_event_s {
  const char *type;         /**< e.g. "MoneyDeposited" */
  const char *aggregate_id;
  int64_t aggregate_version;
  const char *event_id;
  int64_t occurred_at_us;   /**< microseconds since the epoch, UTC */
  const void *payload;      /**< decoder-specific (the codec's avro_value_t *) */
  const char *topic;
  int32_t partition;
  int64_t offset;
} esk_event_t;

/** Turns a message into an event. ESK_EPOISON: it never will be. */
typedef struct esk_decoder_s {
  int (*decode)(void *self, const rd_kafka_message_t *m, esk_event_t *out, esk_error_t *err);
  void *self;
} esk_decoder_t;

#endif
