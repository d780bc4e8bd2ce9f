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

/**
 * Where the runtime learns which data subjects were forgotten (docs/
 * architecture.md, "Personal data"): the domain decoder's keyring, fed from
 * the subject-keys topic. Called on the thread that decodes. Without
 * decryption (no master key) only the marks are set: the functions are NULL.
 */
typedef struct esk_forgets_s {
  /** @brief Reads what the subject-keys topic got since the last read.
   *  ESK_ERETRY: the topic cannot be read now. */
  int (*refresh)(void *self, esk_error_t *err);
  /** @brief Forgotten subjects known, in the order learnt: only grows. */
  size_t (*count)(void *self);
  /** @brief The @p i-th of them (borrowed, valid while @p self). */
  const char *(*subject)(void *self, size_t i);
  const esk_personal_mark_t *marks; /**< the domain's personal fields */
  size_t n_marks;
  void *self;
} esk_forgets_t;

/** Turns a message into an event. ESK_EPOISON: it never will be. */
typedef struct esk_decoder_s {
  int (*decode)(void *self, const rd_kafka_message_t *m, esk_event_t *out, esk_error_t *err);
  void *self;
  /** NULL: the domain has no personal fields. */
  const esk_forgets_t *forgets;
  /** What it reads with, for a projection's decode_setup(); NULL: nothing to
   *  offer (a decoder of one's own), so projections do not read bytes. */
  const esk_contract_view_t *contract;
} esk_decoder_t;

#endif
