/* esk-projector child processes under faults (see esk_test_faults.h). */
#include "esk_test_faults.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esk/pg.h"
#include "esk/time.h"
#include "esk_test.h"

#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"
#define STACK ESK_SOURCE_DIR "/deploy/local/stack"

void esk_tf_setup(esk_tf_t *f, int parts) {
  cr_assert_eq(access(PROJECTOR, X_OK), 0, "%s is not built", PROJECTOR);
  esk_test_topic_and_schema(f->topic, sizeof(f->topic), "esk.test.e2e.events", f->schema,
                            sizeof(f->schema), "esk_test_e2e", parts);
  snprintf(f->log, sizeof(f->log), "/tmp/%s.log", f->schema);
}

void esk_tf_teardown(const esk_tf_t *f) {
  esk_test_drop_schema(f->schema);
  esk_test_bank_delete_topics(f->topic);
}

pid_t esk_tf_spawn(const esk_tf_t *f, const char *log, const char *projection, const char *group,
                   const char *instance, const char *batch, const char *const *extra) {
  char a_topic[160], a_schema[96], a_group[160], a_batch[64], a_inst[160];
  snprintf(a_topic, sizeof(a_topic), "topic=%s", f->topic);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", f->schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  snprintf(a_batch, sizeof(a_batch), "batch.max.events=%s", batch);
  snprintf(a_inst, sizeof(a_inst), "kafka.consumer.group.instance.id=%s", instance ? instance : "");
  const char *xs[] = {a_topic, a_schema, a_group, a_batch, "batch.max.ms=50",
                      "progress.interval.ms=1000", "kafka.consumer.session.timeout.ms=6000",
                      "kafka.consumer.heartbeat.interval.ms=500", "pg.retry.backoff.max.ms=500",
                      instance ? a_inst : NULL, NULL};
  char *argv[48];
  int k = 0;
  argv[k++] = PROJECTOR;
  argv[k++] = "--projection";
  argv[k++] = (char *)projection;
  for (int i = 0; xs[i]; i++) {
    argv[k++] = "-X";
    argv[k++] = (char *)xs[i];
  }
  for (int i = 0; extra && extra[i] && k < 46; i++) {
    argv[k++] = "-X";
    argv[k++] = (char *)extra[i];
  }
  argv[k] = NULL;
  pid_t pid = esk_test_spawn(argv, log ? log : f->log);
  cr_assert(pid > 0, "fork failed");
  return pid;
}

void esk_tf_workload(esk_test_bank_t **bank, rd_kafka_t **prod, unsigned seed, int accounts,
                     size_t n) {
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(bank, seed, accounts, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(prod, &err), ESK_OK, "%s", err.msg);
}

void esk_tf_workload_free(esk_test_bank_t *bank, rd_kafka_t *prod) {
  if (prod) rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
}

int esk_tf_log_count(const char *path, const char *text) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[8192];
  int n = 0;
  while (fgets(line, sizeof(line), f))
    if (strstr(line, text)) n++;
  fclose(f);
  return n;
}

int esk_tf_terminate(pid_t pid) {
  int st = 0;
  kill(pid, SIGTERM);
  for (int i = 0; i < 300; i++) {
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    esk_time_sleep_ms(100);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  cr_assert_fail("esk-projector (pid %d) did not stop within 30 s of SIGTERM", (int)pid);
  return -1;
}

void esk_tf_kill9(pid_t pid) {
  int st;
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
}

long long esk_tf_positions(const esk_tf_t *f, const char *projection) {
  esk_error_t err = {0};
  PGconn *pg = NULL;
  PGresult *r = NULL;
  long long v = -1;
  if (esk_pg_connect(&pg, NULL, &err)) return -1;
  char sql[256];
  snprintf(sql, sizeof(sql), "select coalesce(sum(next_offset), 0) from \"%s\".esk_projection_positions "
                             "where projection = $1", f->schema);
  const char *params[] = {projection};
  if (!esk_pg_exec(&r, pg, "positions", sql, 1, params, &err))
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  PQfinish(pg);
  return v;
}

void esk_tf_wait_caught_up(const esk_tf_t *f, const char *projection, long long total, int seconds) {
  long long v = -1;
  for (int i = 0; i < seconds * 10; i++) {
    if ((v = esk_tf_positions(f, projection)) >= total) break;
    esk_time_sleep_ms(100);
  }
  cr_assert_eq(v, total, "%s positions cover %lld of %lld messages (log: %s)", projection, v,
               total, f->log);
}

void esk_tf_publish_step(const esk_tf_t *f, esk_test_bank_t *bank, rd_kafka_t *prod, size_t *sent,
                         size_t step, size_t n, long ms) {
  esk_error_t err = {0};
  size_t to = *sent + step < n ? *sent + step : n;
  cr_assert_eq(esk_test_bank_publish(bank, prod, f->topic, *sent, to, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_flush(prod, 30000, &err), ESK_OK, "%s", err.msg);
  *sent = to;
  esk_time_sleep_ms(ms);
}

void esk_tf_check(const esk_tf_t *f, esk_test_bank_t *bank, const char *projection, size_t n) {
  esk_error_t err = {0};
  PGconn *pg = esk_test_pg_connect_schema(f->schema);
  cr_expect_eq(esk_test_bank_check(bank, pg, projection, n, &err), ESK_OK, "%s (log: %s)",
               err.msg, f->log);
  PQfinish(pg);
}

int esk_tf_pg_stack(const char *args) {
  const char *dir = getenv("ESK_PG_STACK_DIR");
  char cmd[1024];
  if (dir && *dir)
    snprintf(cmd, sizeof(cmd),
             "env -u ESK_STACK_BROKERS ESK_STACK_DIR='%s' bash %s %s >/dev/null 2>&1", dir, STACK,
             args);
  else
    snprintf(cmd, sizeof(cmd), "bash %s %s >/dev/null 2>&1", STACK, args);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
