/**
 * @file conf.h
 * @brief Configuration of esk processes: one table per binary describes every
 *        key (name, type, range, default, description), from which values are
 *        validated and `--help` and docs/configuration.md are generated.
 *
 * Sources, later ones winning: the table's defaults, a librdkafka-style
 * `key=value` file (`#` comments, blank lines ignored), environment variables
 * (each key has one: `ESK_` + the key upper-cased with `.` as `_`, unless the
 * table names another), then `-X key=value` overrides.
 *
 * Keys starting with `kafka.` that the table does not describe pass straight
 * to librdkafka with the prefix removed (`kafka.linger.ms=5` → `linger.ms=5`);
 * librdkafka checks them when the client is created. `kafka.consumer.<property>`
 * and `kafka.producer.<property>` go only to clients of that kind (see
 * esk_kafka_conf_apply_client() in esk/kafka.h).
 *
 * A bad value stops start-up: the error names the key, the value, where it
 * came from (file and line, environment variable, or -X) and why.
 */
#ifndef ESK_CONF_H
#define ESK_CONF_H

#include <stdint.h>
#include <stdio.h>

#include "esk/error.h"

/** Default bootstrap servers: the local stack's broker. */
#define ESK_DEFAULT_KAFKA_BOOTSTRAP "127.0.0.1:39092"
/** Default libpq connection string: the local stack's PostgreSQL. */
#define ESK_DEFAULT_PG_CONNINFO "host=127.0.0.1 port=35432 user=esk dbname=esk"

/** @brief $ESK_KAFKA_BOOTSTRAP if set and non-empty, else the default: for
 *         tools and tests that need only the broker's address. */
const char *esk_conf_env_kafka_bootstrap(void);

/** @brief $ESK_PG_CONNINFO if set and non-empty, else the default. */
const char *esk_conf_env_pg_conninfo(void);

typedef enum {
  ESK_CONF_STRING,
  ESK_CONF_INT,  /**< 64-bit integer within [min, max] */
  ESK_CONF_BOOL, /**< true/false (also 1/0, yes/no, on/off) */
  ESK_CONF_ENUM, /**< one of the comma-separated `choices` */
} esk_conf_type_t;

/** One configuration key. Tables end with an entry whose name is NULL. */
typedef struct esk_conf_prop_s {
  const char *name;
  esk_conf_type_t type;
  const char *defval;  /**< default as text; NULL: no default (unset) */
  int64_t min, max;    /**< ESK_CONF_INT range */
  const char *choices; /**< ESK_CONF_ENUM: "dlq,stop" */
  const char *env;     /**< environment variable; NULL: derived from the name */
  const char *desc;    /**< one sentence, for --help and docs */
} esk_conf_prop_t;

/** The keys every esk binary has (Kafka, PostgreSQL, logging, Kafka security). */
extern const esk_conf_prop_t esk_conf_common_props[];

/**
 * The Kafka security keys (kafka.security.protocol, kafka.sasl.mechanisms,
 * kafka.sasl.username, kafka.sasl.password.file, kafka.ssl.ca.location): the
 * tail of esk_conf_common_props, a table of its own. esk_kafka_conf_new() also
 * takes them from their environment variables (ESK_KAFKA_SECURITY_PROTOCOL...),
 * so that tools and tests, which have no config file, reach a secured cluster.
 */
extern const esk_conf_prop_t *const esk_conf_kafka_security_props;

/**
 * @brief Whether the value of @p key is a secret (a password, a secret, a JAAS
 *        configuration; not a `*.file` path): such a value is refused from
 *        `-X` and never written into an error message or a log line.
 */
int esk_conf_secret_key(const char *key);

typedef struct esk_conf_s esk_conf_t;

/**
 * @brief Creates a configuration holding the defaults of @p tables.
 * @param tables @p n tables (e.g. esk_conf_common_props and the binary's own),
 *        borrowed: they must outlive the configuration.
 */
int esk_conf_new(esk_conf_t **out, const esk_conf_prop_t *const *tables, size_t n,
                 esk_error_t *err);

/** @brief Frees the configuration. NULL does nothing. */
void esk_conf_destroy(esk_conf_t *conf);

/**
 * @brief Validates and sets one key.
 * @param origin where the value came from, for error messages ("-X", "file.conf:3").
 * @returns ESK_OK or ESK_EINVAL naming key, value, origin and reason.
 */
int esk_conf_set(esk_conf_t *conf, const char *key, const char *value, const char *origin,
                 esk_error_t *err);

/** @brief Reads a `key=value` file. @returns ESK_EINVAL naming file and line. */
int esk_conf_load_file(esk_conf_t *conf, const char *path, esk_error_t *err);

/** @brief Applies every table key's environment variable that is set and non-empty. */
int esk_conf_load_env(esk_conf_t *conf, esk_error_t *err);

/**
 * @brief The usual start-up sequence: @p file (may be NULL), the environment,
 *        then @p n `key=value` overrides.
 */
int esk_conf_load(esk_conf_t *conf, const char *file, char *const *overrides, size_t n,
                  esk_error_t *err);

/** @brief The value of a table key (NULL if unset). Unknown keys abort: a programming error. */
const char *esk_conf_get(const esk_conf_t *conf, const char *key);
int64_t esk_conf_get_int(const esk_conf_t *conf, const char *key);
int esk_conf_get_bool(const esk_conf_t *conf, const char *key);

/**
 * @brief Calls @p fn for every `kafka.*` value of @p conf: first the table's
 *        keys that are set, then the pass-through keys in the order they were
 *        set; @p key without the `kafka.` prefix, @p table 1 for a table key.
 *        The configuration knows no librdkafka: esk_kafka_conf_apply() (in
 *        esk/kafka.h) hands these to a client.
 * @returns ESK_OK, or the first non-zero return of @p fn (which stops it).
 */
int esk_conf_each_kafka(const esk_conf_t *conf,
                        int (*fn)(void *opaque, const char *key, const char *value, int table),
                        void *opaque);

/**
 * @brief The command line of an esk daemon: `-c FILE`, `-X key=value`...,
 *        `--help` (@p usage to stdout), `--version`, `--help-markdown`; then
 *        the configuration loaded from @p tables (defaults, file, environment,
 *        overrides), http.* checked and the log level set.
 * @param out the configuration when the daemon should go on (destroy it).
 * @returns -1 to go on; else the exit status (0 after --help or --version, 2
 *          for a bad argument or value, named on stderr after @p prog).
 */
int esk_conf_main(esk_conf_t **out, int argc, char **argv, const char *prog,
                  const esk_conf_prop_t *const *tables, size_t n, void (*usage)(FILE *f));

/** @brief Prints the keys of @p tables as `--help` text. */
void esk_conf_print_help(FILE *f, const esk_conf_prop_t *const *tables, size_t n);

/** @brief Prints the keys of @p tables as a Markdown table (docs/configuration.md). */
void esk_conf_print_markdown(FILE *f, const esk_conf_prop_t *const *tables, size_t n);

/** @brief Writes the environment variable name of @p p into @p buf. */
const char *esk_conf_env_name(const esk_conf_prop_t *p, char *buf, size_t size);

#endif
