/**
 * @file event.h
 * @brief What the read-side runtime hands a projection: a decoded event
 *        (esk_event_t, public in esk/projection.h), and the decoder that makes
 *        one from a Kafka message. Apart from projector.h so that the
 *        runtime's parts (from_time.c) use them without depending on the
 *        projector.
 */
#ifndef ESK_EVENT_H
#define ESK_EVENT_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "esk/error.h"
#include "esk/projection.h"

/** Turns a message into an event. ESK_EPOISON: it never will be. */
typedef struct esk_decoder_s {
  int (*decode)(void *self, const rd_kafka_message_t *m, esk_event_t *out, esk_error_t *err);
  void *self;
} esk_decoder_t;

#endif
