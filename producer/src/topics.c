/* The topics of one domain (see topics.h). */
#include "topics.h"

#include "esk/kafka.h"

int esk_topics_init(esk_topics_t *t, const char *prefix, const char *domain, esk_error_t *err) {
  int rc;
  if ((rc = esk_kafka_topic_name(t->commands, sizeof(t->commands), prefix, domain, "commands",
                                 err)) ||
      (rc = esk_kafka_topic_name(t->events, sizeof(t->events), prefix, domain, "events", err)) ||
      (rc = esk_kafka_topic_name(t->results, sizeof(t->results), prefix, domain,
                                 "command-results", err)) ||
      (rc = esk_kafka_topic_name(t->snapshots, sizeof(t->snapshots), prefix, domain, "snapshots",
                                 err)))
    return rc;
  return ESK_OK;
}
