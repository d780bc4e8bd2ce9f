#include "esk/config.h"

#include <stdlib.h>

static const char *env_or(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return v && *v ? v : fallback;
}

const char *esk_config_kafka_bootstrap(void) {
  return env_or("ESK_KAFKA_BOOTSTRAP", ESK_DEFAULT_KAFKA_BOOTSTRAP);
}

const char *esk_config_pg_conninfo(void) {
  return env_or("ESK_PG_CONNINFO", ESK_DEFAULT_PG_CONNINFO);
}
