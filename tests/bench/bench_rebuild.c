/* bench_rebuild [EVENTS] [PROJECTION] — blue-green rebuild time on the local
 * stack, beside the live path's rate measured in the same run:
 *
 *   live     esk-projector --projection PROJECTION (default account_balances)
 *            started on a topic holding EVENTS bank events (default 1000000,
 *            over EVENTS/100 accounts, 3 partitions): seconds until generation
 *            1 has applied all of them;
 *   rebuild  eskctl projection rebuild PROJECTION (--instances
 *            $ESK_BENCH_REBUILD_INSTANCES, default 1): seconds until generation 2
 *            has been filled from offset 0 and the views switched to it.
 *
 * Both are the real binaries as child processes (their logs in /tmp). Each run
 * uses its own topic, groups and PostgreSQL schema, dropped at the end. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "esk/kafka.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "esk_test_bank.h"

#define N_PARTS 3

static void fail(const char *what, const char *why) {
  fprintf(stderr, "bench_rebuild: %s: %s\n", what, why);
  exit(1);
}

static pid_t spawn(char *const argv[], const char *log) {
  pid_t pid = esk_test_spawn(argv, log);
  if (pid < 0) fail("fork", "failed");
  return pid;
}

/* Events applied by the generation whose positions are kept under @p key. */
static int64_t applied(PGconn *pg, const char *schema, const char *key) {
  char sql[256];
  snprintf(sql, sizeof(sql),
           "select coalesce(sum(next_offset), 0) from \"%s\".esk_projection_positions"
           " where projection = $1",
           schema);
  const char *params[1] = {key};
  PGresult *r = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
  int64_t n = PQresultStatus(r) == PGRES_TUPLES_OK ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
  PQclear(r);
  return n;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
  const char *proj = argc > 2 ? argv[2] : "account_balances";
  if (n < 1000 || n > 100000000) fail("EVENTS", "expected 1000..100000000");
  char tag[32], prefix[64], topic[128], schema[64], group[128], a_topic[160], a_schema[96],
      a_group[160], a_prefix[80], log1[160], log2[160], log3[160];
  snprintf(tag, sizeof(tag), "%d_%ld", (int)getpid(), (long)time(NULL));
  snprintf(prefix, sizeof(prefix), "esk.bench.rebuild_%s", tag);
  snprintf(topic, sizeof(topic), "%s.bank.events", prefix);
  snprintf(schema, sizeof(schema), "esk_bench_rb_%s", tag);
  snprintf(group, sizeof(group), "esk.bench.rebuild_%s.%s", tag, proj);
  snprintf(a_topic, sizeof(a_topic), "topic=%s", topic);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  snprintf(a_prefix, sizeof(a_prefix), "%s.", prefix);
  snprintf(log1, sizeof(log1), "/tmp/%s.live.log", schema);
  snprintf(log2, sizeof(log2), "/tmp/%s.rebuild.log", schema);
  snprintf(log3, sizeof(log3), "/tmp/%s.rebuild-projector.log", schema);

  esk_error_t err = {0};
  esk_test_bank_t *bank = NULL;
  rd_kafka_t *prod = NULL;
  PGconn *pg = NULL;
  int accounts = (int)(n / 100 > 0 ? n / 100 : 1);
  if (esk_test_bank_new(&bank, 71, accounts, (size_t)n, &err) ||
      esk_test_bank_producer(&prod, &err) ||
      esk_kafka_create_topic(prod, topic, N_PARTS, -1, NULL, 15000, NULL, &err) ||
      esk_pg_connect(&pg, NULL, &err))
    fail("setup", err.msg);
  printf("bench_rebuild: %ld events over %d accounts, %d partitions, projection %s; CPU shared "
         "with whatever else runs on this machine\n", n, accounts, N_PARTS, proj);
  double t0 = esk_time_mono_s();
  if (esk_test_bank_publish(bank, prod, topic, 0, (size_t)n, &err)) fail("publish", err.msg);
  rd_kafka_flush(prod, 60000);
  printf("%-34s %8.2f s  %10.0f events/s\n", "publish (encode + produce)", esk_time_mono_s() - t0,
         (double)n / (esk_time_mono_s() - t0));

  /* live: generation 1 from offset 0 */
  char *live_argv[] = {ESK_BINARY_DIR "/bin/esk-projector", "--projection", (char *)proj,
                       "-X", a_topic, "-X", a_schema, "-X", a_group, NULL};
  t0 = esk_time_mono_s();
  pid_t live = spawn(live_argv, log1);
  while (applied(pg, schema, proj) < n) {
    if (waitpid(live, NULL, WNOHANG) == live) fail("esk-projector exited", log1);
    if (esk_time_mono_s() - t0 > 600) fail("live catch-up", "not done in 600 s");
    esk_time_sleep_ms(50);
  }
  double live_s = esk_time_mono_s() - t0;
  kill(live, SIGTERM);
  waitpid(live, NULL, 0);
  printf("%-34s %8.2f s  %10.0f events/s\n", "live: generation 1 from offset 0", live_s,
         (double)n / live_s);

  /* rebuild: generation 2, then the switch */
  /* ESK_BENCH_REBUILD_INSTANCES: the rebuild's --instances (default 1) */
  const char *inst = getenv("ESK_BENCH_REBUILD_INSTANCES");
  char *rb_argv[] = {ESK_BINARY_DIR "/bin/eskctl", "projection", "rebuild", (char *)proj,
                     "--schema", schema, "--topic-prefix", a_prefix, "--group", group,
                     "--log", log3, "--timeout", "600", "--instances",
                     (char *)(inst && *inst ? inst : "1"), NULL};
  t0 = esk_time_mono_s();
  pid_t rb = spawn(rb_argv, log2);
  int st = 0;
  waitpid(rb, &st, 0);
  double rb_s = esk_time_mono_s() - t0;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("eskctl projection rebuild failed", log2);
  printf("%-34s %8.2f s  %10.0f events/s  (x%.2f of the live path's rate)\n",
         "rebuild: generation 2 + switch", rb_s, (double)n / rb_s, live_s / rb_s);

  char sql[256];
  for (int g = 1; g <= 2; g++) {
    snprintf(sql, sizeof(sql), "drop schema if exists \"%s_%s_g%d\" cascade", schema, proj, g);
    PQclear(PQexec(pg, sql));
  }
  snprintf(sql, sizeof(sql), "drop schema if exists \"%s\" cascade", schema);
  PQclear(PQexec(pg, sql));
  PQfinish(pg);
  esk_test_bank_delete_topics(topic);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(bank);
  unlink(log1);
  unlink(log2);
  unlink(log3);
  return 0;
}
