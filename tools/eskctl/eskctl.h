/* eskctl: entry points of the subcommands that live in their own files, and
 * what the Kafka subcommands share. */
#ifndef ESKCTL_H
#define ESKCTL_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "esk/codec.h"
#include "esk/domain.h"
#include "esk/error.h"
#include "esk/shred.h"

/** @brief `eskctl schemas ...`; argv[0] is "schemas". @returns the exit status. */
int eskctl_schemas_main(int argc, char **argv);

/** @brief `eskctl acls apply|show ...`; argv[0] is "acls". */
int eskctl_acls_main(int argc, char **argv);

/** @brief `eskctl topics create ...`; argv[0] is "topics". */
int eskctl_topics_main(int argc, char **argv);

/** @brief `eskctl submit ...`; argv[0] is "submit". */
int eskctl_submit_main(int argc, char **argv);

/** @brief `eskctl events tail ...`; argv[0] is "events". */
int eskctl_events_main(int argc, char **argv);

/** @brief `eskctl projection rebuild ...`; argv[0] is "rebuild". */
int eskctl_rebuild_main(int argc, char **argv);

/** @brief `eskctl projection drop-generation ...`; argv[0] is "drop-generation". */
int eskctl_drop_generation_main(int argc, char **argv);

/** Options every Kafka subcommand takes: --domain, --topic-prefix. */
typedef struct eskctl_common_s {
  const char *prefix;      /**< --topic-prefix, default $ESK_TOPIC_PREFIX or "" */
  const char *domain_name; /**< --domain, default $ESK_DOMAIN or "bank" */
  const esk_domain_t *domain; /**< loaded by eskctl_domain_find() */
} eskctl_common_t;

void eskctl_common_init(eskctl_common_t *c);

/**
 * @brief The domain called @p name, loaded from <dir>/<name>.so ($ESK_DOMAIN_DIR,
 *        default ESK_DOMAIN_DIR_DEFAULT, esk/domain_lib.h), or NULL after a
 *        message naming @p cmd. It stays loaded until the process ends.
 */
const esk_domain_t *eskctl_domain_find(const char *name, const char *cmd);

/** @brief Loads the domain's schemas and codec. @returns 0, or 1 after a message. */
int eskctl_domain_open(esk_schema_set_t **set, esk_codec_t **codec, const esk_domain_t *d,
                       const char *cmd);

/** @brief `<prefix><domain>.<kind>` into @p buf. @returns 0, or 1 after a message. */
int eskctl_topic(char *buf, size_t size, const eskctl_common_t *c, const char *kind);

/**
 * @brief Bounds the end of a long command: once @p flag (set by its signal
 *        handler) is set, the process has $ESK_SHUTDOWN_TIMEOUT_MS (default
 *        40000) to end, else the watchdog names the wait and exits 3
 *        (esk/watchdog.h). Stop it with esk_watchdog_stop().
 * @returns 0, or 1 after a message naming @p cmd (a bad value, no thread).
 */
int eskctl_watchdog(volatile sig_atomic_t *flag, const char *cmd);

/**
 * @brief Parses @p v, the value of option @p opt, as a whole number in
 *        @p min..@p max into @p out (set only on success).
 * @returns 0, or 1 after the message "eskctl <cmd>: <opt> '<v>': expected <expected>".
 */
int eskctl_parse_long(long *out, const char *cmd, const char *opt, const char *v, long min,
                      long max, const char *expected);

/** Set by SIGINT and SIGTERM once eskctl_interruptible() has run. */
extern volatile sig_atomic_t eskctl_interrupted;

/**
 * @brief For a long command: SIGINT and SIGTERM set eskctl_interrupted (which
 *        the command's loop reads), and eskctl_watchdog() bounds the end.
 * @returns 0, or 1 after a message naming @p cmd.
 */
int eskctl_interruptible(const char *cmd);

/** @brief Parses milliseconds in 1..3600000. @returns 0, or 1 after a message. */
int eskctl_parse_ms(const char *cmd, const char *opt, const char *v, int *out);

/** @brief For `eskctl <noun> <verb>`: -1 when argv[1] is @p verb (go on), else the
 *         exit status after printing @p usage (0 for --help, 2 otherwise). */
int eskctl_verb(int argc, char **argv, const char *verb, void (*usage)(FILE *f));
/** @brief `eskctl subjects forget ...`; argv[0] is "subjects". */
int eskctl_subjects_main(int argc, char **argv);

/** eskctl's keyring for personal fields (docs/architecture.md, "Personal data"). */
typedef struct eskctl_keys_s {
  esk_shred_t *sh; /**< NULL: no $ESK_MASTER_KEY_FILE, values are shown as written */
  rd_kafka_t *reader;
  char topic[256];
} eskctl_keys_t;

/** @brief With $ESK_MASTER_KEY_FILE, a keyring read from the domain's
 *         subject-keys topic. @returns 0, or 1 after a message. */
int eskctl_keys_open(eskctl_keys_t *k, const eskctl_common_t *c, const char *cmd);
/** @brief Reads the subject-keys topic to its end (an esk_shred_refresh_fn). */
int eskctl_keys_refresh(void *k, esk_error_t *err);
void eskctl_keys_close(eskctl_keys_t *k);

/** @brief Prints event @p m as a JSON line (events tail's form), its personal
 *         fields decrypted when @p keys holds a keyring. @returns 0, or 1 when
 *         it could not be decoded (the line then holds "error"). */
int eskctl_print_event(const rd_kafka_message_t *m, esk_codec_t *codec,
                       const esk_schema_set_t *set, eskctl_keys_t *keys);

/** @brief `eskctl projection status ...`; argv[0] is "projection". @returns the exit status. */
int eskctl_projection_main(int argc, char **argv);

#endif
