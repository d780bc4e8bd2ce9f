/**
 * @file topics.h
 * @brief The topics of one domain, named from topic.prefix and the domain
 *        (<prefix><domain>.commands, .events, .command-results, .snapshots).
 */
#ifndef ESK_PRODUCER_TOPICS_H
#define ESK_PRODUCER_TOPICS_H

#include "esk/error.h"

/** The topics of one domain. */
typedef struct esk_topics_s {
  char commands[256], events[256], results[256], snapshots[256];
} esk_topics_t;

/**
 * @brief Fills @p t from the prefix and the domain (see esk_kafka_topic_name()).
 * @returns ESK_OK, or ESK_EINVAL naming the part that makes a name invalid or too long.
 */
int esk_topics_init(esk_topics_t *t, const char *prefix, const char *domain, esk_error_t *err);

#endif
