/* Test support: esk-projector binaries as child processes under faults, on the
 * real broker and PostgreSQL (tests/e2e/test_projector_faults.c and
 * tests/cluster/test_cluster_projector_faults.c): each test has its own topic,
 * schema and log, and ends with the read models equal to the fold
 * tests/support/esk_test_bank_check.c computes independently. */
#ifndef ESK_TEST_FAULTS_H
#define ESK_TEST_FAULTS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <sys/types.h>

#include "esk_test_bank.h"

typedef struct {
  char topic[96], schema[64], log[160];
} esk_tf_t;

/** A fresh topic of @p parts partitions and schema; the log is /tmp/<schema>.log. */
void esk_tf_setup(esk_tf_t *f, int parts);
/** Drops the schema and deletes the topic. */
void esk_tf_teardown(const esk_tf_t *f);

/** Starts esk-projector for @p projection in group @p group (static member
 *  @p instance when not NULL), batch.max.events @p batch, plus the NULL-ended
 *  key=value list @p extra; its output is appended to @p log (f->log if NULL). */
pid_t esk_tf_spawn(const esk_tf_t *f, const char *log, const char *projection, const char *group,
                   const char *instance, const char *batch, const char *const *extra);
/** A bank workload of @p n events over @p accounts accounts from @p seed, and
 *  an idempotent producer for it (the test fails if either cannot be made). */
void esk_tf_workload(esk_test_bank_t **bank, rd_kafka_t **prod, unsigned seed, int accounts,
                     size_t n);
/** Frees what esk_tf_workload() made. */
void esk_tf_workload_free(esk_test_bank_t *bank, rd_kafka_t *prod);
/** Lines of the log @p path that contain @p text (0 when it cannot be read). */
int esk_tf_log_count(const char *path, const char *text);

/** SIGTERM, then the exit status; fails the test if it takes over 30 s. */
int esk_tf_terminate(pid_t pid);
/** SIGKILL and reap. */
void esk_tf_kill9(pid_t pid);

/** Sum of @p projection's stored next offsets (0 when none yet); -1 when the
 *  query fails (no schema yet, PostgreSQL restarting). */
long long esk_tf_positions(const esk_tf_t *f, const char *projection);
/** Waits up to @p seconds until the positions cover @p total messages. */
void esk_tf_wait_caught_up(const esk_tf_t *f, const char *projection, long long total, int seconds);
/** Publishes the next @p step events (from *sent, at most @p n), then waits @p ms. */
void esk_tf_publish_step(const esk_tf_t *f, esk_test_bank_t *bank, rd_kafka_t *prod, size_t *sent,
                         size_t step, size_t n, long ms);
/** The read model of @p projection equals the fold of the first @p n events. */
void esk_tf_check(const esk_tf_t *f, esk_test_bank_t *bank, const char *projection, size_t n);

/** Runs `deploy/local/stack ARGS` on the stack that owns the PostgreSQL the
 *  tests use (ESK_PG_STACK_DIR, which tests/cluster/with-cluster sets, else the
 *  environment's stack); returns its exit status. */
int esk_tf_pg_stack(const char *args);

#endif
