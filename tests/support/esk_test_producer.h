/* Helpers for the suites that run esk-producer and eskctl against the real
 * broker: unique topic sets, the producer as a child process, submitting
 * JSON lines through eskctl, and reading the events topic back. */
#ifndef ESK_TEST_PRODUCER_H
#define ESK_TEST_PRODUCER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>

#include "bank/bank_avro.h"
#include "esk/buf.h"
#include "esk_test_http.h"

#define ESK_TEST_PRODUCER_BIN ESK_BINARY_DIR "/bin/esk-producer"
#define ESK_TEST_ESKCTL_BIN ESK_BINARY_DIR "/bin/eskctl"

/** A plain producer handle on the test broker (also for admin requests). */
rd_kafka_t *esk_tp_client(void);

/** Deletes the four bank topics under @p prefix (errors ignored: cleanup). */
void esk_tp_delete_topics(const char *prefix);

/** Makes a unique topic prefix "<name>_<pid>_<rand>." and creates the bank
 *  topics under it with eskctl topics create (fails the test on error). */
void esk_tp_topics(char *prefix, size_t size, const char *name, int partitions);

/**
 * Starts build/bin/esk-producer with -X topic.prefix=@p prefix,
 * transactional.id=<prefix>tx.<instance>, kafka.consumer.session.timeout.ms=6000,
 * batch.max.ms=20, stats off, then the NULL-terminated @p extra -X values.
 * Its stderr goes to @p log_path. @returns the child's pid.
 */
pid_t esk_tp_start(const char *prefix, const char *instance, const char *log_path,
                   const char *const *extra);

/** Runs @p argv (NULL-terminated, argv[0] a path) as a child, stdout and stderr
 *  appended to @p log_path. @returns its pid. */
pid_t esk_tp_spawn(const char *const *argv, const char *log_path);

/** "/tmp/<prefix><what>.log" into @p buf, the file removed. */
void esk_tp_log_path(char *buf, size_t size, const char *prefix, const char *what);

/** esk_tp_topics(), then esk_tp_start() of instance "a" logging to @p log
 *  (esk_tp_log_path(.., "p")). @returns its pid. */
pid_t esk_tp_setup(char *prefix, size_t size, const char *name, int partitions, char *log,
                   size_t log_size, const char *const *extra);

/** Sends @p sig and waits up to @p timeout_ms. @returns the exit status, 128+signal
 *  when killed by a signal, or -1 when it did not end in time (it is then killed). */
int esk_tp_stop(pid_t pid, int sig, int timeout_ms);

/** Runs a shell command; stdout (and stderr when @p with_stderr) into @p out.
 *  @returns the exit status (fails the test if it did not exit normally). */
int esk_tp_run(const char *cmd, int with_stderr, char *out, size_t size);

/** Writes @p jsonl to a temporary file and runs eskctl submit on it.
 *  @returns eskctl's exit status; its stdout is in @p out. */
int esk_tp_submit(const char *prefix, const char *jsonl, int timeout_ms, char *out, size_t size);

/** One event read back from the events topic. */
typedef struct esk_tp_event_s {
  int32_t partition;
  int64_t offset;
  int type; /* esk_bank_event_type_t */
  char account[129];
  int64_t version;
  char causation[129];
} esk_tp_event_t;

/** Reads every committed event of <prefix>bank.events (read_committed). The caller
 *  frees *out. @returns the count. */
size_t esk_tp_read_events(esk_tp_event_t **out, const char *prefix, int partitions);

/** Checks (with Criterion asserts) that for every account the versions of its events
 *  are exactly 1..n in order within its one partition. @returns the number of accounts. */
size_t esk_tp_check_versions(const esk_tp_event_t *evs, size_t n);

/** What the results topic holds. */
typedef struct esk_tp_results_s {
  size_t messages; /* result messages */
  size_t distinct; /* distinct command ids */
  size_t accepted; /* distinct ids whose first result is accepted */
} esk_tp_results_t;

/** Reads every committed result of <prefix>bank.command-results. */
esk_tp_results_t esk_tp_count_results(const char *prefix, int partitions);

/** Polls esk_tp_count_results() until @p distinct ids have a result or @p timeout_ms
 *  passes. @returns the last count. */
esk_tp_results_t esk_tp_wait_results(const char *prefix, int partitions, size_t distinct,
                                     int timeout_ms);

/** Returns 1 when @p path contains @p needle. */
int esk_tp_file_contains(const char *path, const char *needle);

/** Prints to stderr the last @p max lines of the log at @p path (only its warn
 *  and error lines when @p problems), under its name: what a failed fault test
 *  shows of its daemons when the logs under /tmp are gone (a CI run). */
void esk_tp_print_log_tail(const char *path, int max, int problems);

/** Waits up to @p timeout_ms for the `http endpoints listening` line in the log
 *  at @p path and returns its port (fails the test if it does not appear). */
int esk_tp_http_port(const char *path, int timeout_ms);

/** Commands produced straight to a prefix's commands topic, as any client
 *  would (key = account id), from one idempotent producer. */
typedef struct esk_tp_gen_s {
  rd_kafka_t *rk;
  esk_bank_avro_t *avro;
  esk_buf_t buf;
  char topic[256];
  int partitions;      /**< of the commands topic */
  int undelivered;     /**< commands whose delivery report was an error */
  char first[320];     /**< the first of them: key, partition and error */
  /** Commands refused before they left this client (the topic or partition
   *  unknown to a lagging broker): resent by esk_tp_gen_flush(). */
  struct esk_tp_unsent_s {
    char *key, *value;
    size_t key_len, value_len;
  } *unsent;
  size_t n_unsent, cap_unsent, resent;
} esk_tp_gen_t;

void esk_tp_gen_init(esk_tp_gen_t *g, const char *prefix);

/** Sends an OpenAccount (@p units its initial deposit) or a DepositMoney of
 *  @p units EUR with command id @p cid for account @p acc. */
void esk_tp_gen_send(esk_tp_gen_t *g, esk_bank_command_type_t type, const char *cid,
                     const char *acc, int64_t units);

/** Opens accounts `<acc_prefix>0` .. `<acc_prefix><n-1>` (command ids o0 ..),
 *  no initial deposit. */
void esk_tp_gen_open_accounts(esk_tp_gen_t *g, const char *acc_prefix, int n);

/** Deposit number @p i (command id d<i>) of @p units EUR into account
 *  `<acc_prefix><account>`. */
void esk_tp_gen_deposit(esk_tp_gen_t *g, const char *acc_prefix, int i, int account,
                        int64_t units);

/** Waits (20 s at most, else the test fails) until every command was
 *  acknowledged, and fails the test if any delivery report was an error (a
 *  command the producer under test could never have seen). Commands that never
 *  left this client because a broker just restarted said their topic did not
 *  exist (librdkafka 2.0.2 then fails what it had queued with "Local: Unknown
 *  partition") are sent again once the client sees the topic with its leaders,
 *  as any client would: they cannot have been written. */
void esk_tp_gen_flush(esk_tp_gen_t *g);

/** Flushes, then frees the generator. */
void esk_tp_gen_destroy(esk_tp_gen_t *g);

/** Fails the test unless every event's causation id is a distinct command id. */
/** One bank event of each type (AccountOpened .. AccountClosed, accounts
 *  acc-0 .. acc-3, versions 1 .. 4), every byte set (zeroed, then filled), so
 *  that decoded copies compare equal with memcmp(). */
void esk_tp_sample_events(esk_bank_event_t in[4]);

void esk_tp_check_causation_unique(const esk_tp_event_t *evs, size_t n);

/** The committed events, read again until @p want are visible or 30 s pass (a
 *  commit's markers reach the results and the events partitions one after
 *  the other). More than @p want is returned at once. */
size_t esk_tp_read_events_settled(esk_tp_event_t **evs, const char *prefix, int parts,
                                  size_t want);

/** After @p accounts openings and @p deposits deposits: every command has
 *  exactly one committed result, all accepted, one event each (none missing,
 *  none doubled) and every account's versions are 1..n. */
void esk_tp_check_exactly_once(const char *prefix, int parts, int accounts, int deposits);

/** Event records in <prefix>bank.events of @p parts partitions, committed or
 *  not (read_uncommitted: those of aborted and open transactions too). */
size_t esk_tp_count_uncommitted_events(const char *prefix, int parts);

/** The node id of the leader of @p topic [@p partition], asked again for up to
 *  30 s while the partition has no leader (fails the test after that). */
int32_t esk_tp_leader_of(const char *topic, int32_t partition);

/** Runs `deploy/local/stack ARGS` (ESK_STACK_* from the environment), its output
 *  appended to @p log_path; fails the test unless it exits 0. */
void esk_tp_stack(const char *args, const char *log_path);

/** The node id of the active KRaft controller (deploy/local/stack
 *  controller-leader: the quorum leader every running node agrees on, waited
 *  for up to 30 s); its messages go to @p log_path. Fails the test if none. */
int esk_tp_controller_leader(const char *log_path);

#endif
