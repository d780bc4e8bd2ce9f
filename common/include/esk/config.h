/**
 * @file config.h
 * @brief Where esk finds its servers by default.
 *
 * Every binary and test reads the environment variables that
 * `deploy/local/stack env` prints; without them it falls back to the local
 * stack's default addresses.
 */
#ifndef ESK_CONFIG_H
#define ESK_CONFIG_H

/** Default bootstrap servers: the local stack's broker. */
#define ESK_DEFAULT_KAFKA_BOOTSTRAP "127.0.0.1:39092"
/** Default libpq connection string: the local stack's PostgreSQL. */
#define ESK_DEFAULT_PG_CONNINFO "host=127.0.0.1 port=35432 user=esk dbname=esk"

/** @brief $ESK_KAFKA_BOOTSTRAP if set and non-empty, else the default. */
const char *esk_config_kafka_bootstrap(void);

/** @brief $ESK_PG_CONNINFO if set and non-empty, else the default. */
const char *esk_config_pg_conninfo(void);

#endif
