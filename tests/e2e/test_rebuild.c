/* Blue-green rebuild (eskctl projection rebuild) against the real broker and
 * PostgreSQL, with esk-projector and eskctl as separate processes: while events
 * keep arriving, a new generation fills from offset 0, the views switch to it
 * in one transaction (a concurrent reader never sees them go back), the live
 * projector follows the switch, and retired generations can be dropped.
 * Own topic, groups and schema. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "esk/kafka.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_bank.h"

#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"
#define ESKCTL ESK_BINARY_DIR "/bin/eskctl"
#define PROJ "account_balances"

static char prefix[96], topic[160], schema[64], group[128], logpath[160], rblog[160];
static pid_t live = -1;

static void setup(void) {
  esk_test_require_kafka();
  esk_test_require_pg();
  cr_assert_eq(access(PROJECTOR, X_OK), 0, "%s is not built", PROJECTOR);
  esk_test_unique_name(prefix, sizeof(prefix), "esk.test.rebuild");
  snprintf(topic, sizeof(topic), "%s.bank.events", prefix);
  esk_test_unique_name(schema, sizeof(schema), "esk_test_rb");
  esk_test_unique_name(group, sizeof(group), "esk.test.rebuild.group");
  snprintf(logpath, sizeof(logpath), "/tmp/%s.log", schema);
  snprintf(rblog, sizeof(rblog), "/tmp/%s.rebuild.log", schema);
  esk_test_create_topic(topic, 3);
}

static void teardown(void) {
  if (live > 0) {
    kill(live, SIGKILL);
    waitpid(live, NULL, 0);
  }
  esk_test_drop_schema(schema);
  esk_test_bank_delete_topics(topic);
}

static pid_t run(char *const argv[], const char *log) {
  pid_t pid = esk_test_spawn(argv, log);
  cr_assert(pid > 0, "fork failed");
  return pid;
}

static int wait_status(pid_t pid) {
  int st = 0;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int log_has(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char line[2048];
  int found = 0;
  while (f && !found && fgets(line, sizeof(line), f)) found = strstr(line, needle) != NULL;
  if (f) fclose(f);
  return found;
}

/* Waits until the view equals the fold of events [0, upto). */
static void wait_fold(esk_test_bank_t *b, size_t upto, int timeout_s) {
  PGconn *pg = esk_test_pg_connect_schema(schema);
  esk_error_t err = {0};
  int rc = -1;
  for (int i = 0; i < timeout_s * 5 && rc; i++) {
    rc = esk_test_bank_check(b, pg, PROJ, upto, &err);
    if (rc) esk_time_sleep_ms(200);
  }
  PQfinish(pg);
  cr_assert_eq(rc, ESK_OK, "%s after %d s: %s (log %s)", PROJ, timeout_s, err.msg, logpath);
}

/* A reader that keeps querying the view: the sum of versions (events applied)
 * must never go down, which a half-built or older generation would show. */
typedef struct reader_s {
  atomic_int stop;
  long reads, violations;
  long long first_bad_before, first_bad_after;
} reader_t;

static void *read_loop(void *arg) {
  reader_t *r = arg;
  PGconn *pg = esk_test_pg_connect_schema(schema);
  long long last = -1;
  while (!atomic_load(&r->stop)) {
    PGresult *res = PQexec(pg, "select coalesce(sum(version), 0) from account_balances");
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
      long long v = atoll(PQgetvalue(res, 0, 0));
      if (v < last && !r->violations++) {
        r->first_bad_before = last;
        r->first_bad_after = v;
      }
      if (v > last) last = v;
      r->reads++;
    }
    PQclear(res);
  }
  PQfinish(pg);
  return NULL;
}

static int generation_state_of(const char *proj, int gen, char *state, size_t size) {
  PGconn *pg = esk_test_pg_connect_schema(schema);
  char sql[256];
  snprintf(sql, sizeof(sql),
           "select state from esk_projection_generations where projection = '%s' and "
           "generation = %d",
           proj, gen);
  PGresult *res = PQexec(pg, sql);
  int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
  if (ok) snprintf(state, size, "%s", PQgetvalue(res, 0, 0));
  PQclear(res);
  PQfinish(pg);
  return ok;
}

static int generation_state(int gen, char *state, size_t size) {
  return generation_state_of(PROJ, gen, state, size);
}

/* A bank workload of @p n events over @p accounts, its producer, and its
 * first @p first events published to the topic. */
static void bank_start(esk_test_bank_t **b, rd_kafka_t **prod, unsigned seed, int accounts,
                       size_t n, size_t first) {
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(b, seed, accounts, n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_producer(prod, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_publish(*b, *prod, topic, 0, first, &err), ESK_OK, "%s", err.msg);
}

Test(rebuild, a_rebuild_under_live_traffic_switches_atomically_and_the_live_projector_follows,
     .init = setup, .fini = teardown, .timeout = 240) {
  enum { ACCOUNTS = 300, BEFORE = 6000, DURING = 3000, AFTER = 1000 };
  esk_error_t err = {0};
  esk_test_bank_t *b = NULL;
  rd_kafka_t *prod = NULL;
  bank_start(&b, &prod, 7, ACCOUNTS, BEFORE + DURING + AFTER, BEFORE);
  rd_kafka_flush(prod, 30000);

  char a_topic[200], a_schema[96], a_group[160];
  snprintf(a_topic, sizeof(a_topic), "topic=%s", topic);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  char *pargv[] = {PROJECTOR, "--projection", PROJ, "-X", a_topic, "-X", a_schema, "-X", a_group,
                   "-X", "batch.max.ms=50", "-X", "batch.max.events=500",
                   "-X", "kafka.consumer.session.timeout.ms=6000", NULL};
  live = run(pargv, logpath);
  wait_fold(b, BEFORE, 60);
  char state[16];
  cr_assert(generation_state(1, state, sizeof(state)) && !strcmp(state, "live"),
            "generation 1 is live after the first start");

  reader_t r = {0};
  pthread_t reader;
  cr_assert_eq(pthread_create(&reader, NULL, read_loop, &r), 0);

  /* the rebuild runs while more events arrive */
  char a_prefix[128];
  snprintf(a_prefix, sizeof(a_prefix), "%s.", prefix);
  /* two esk-projectors in the new generation's group, for its three partitions */
  char *rargv[] = {ESKCTL, "projection", "rebuild", PROJ, "--schema", schema, "--topic-prefix",
                   a_prefix, "--group", group, "--log", rblog, "--timeout", "120",
                   "--instances", "2", "-X", "batch.max.events=2000", NULL};
  pid_t rb = run(rargv, rblog);
  for (size_t i = BEFORE; i < BEFORE + DURING; i += 500) {
    cr_assert_eq(esk_test_bank_publish(b, prod, topic, i, i + 500, &err), ESK_OK, "%s", err.msg);
    rd_kafka_flush(prod, 30000);
    esk_time_sleep_ms(100);
  }
  cr_assert_eq(wait_status(rb), 0, "eskctl projection rebuild failed: see %s", rblog);
  cr_assert(log_has(rblog, "switched: the views"), "no switch line in %s", rblog);
  char rblog2[sizeof(rblog) + 8];
  snprintf(rblog2, sizeof(rblog2), "%s.2", rblog);
  /* which of them gets which partitions is the group's (here the first to join
   * may take all three and finish before the other joins) */
  cr_expect(log_has(rblog, "generation=2 state=rebuilding") &&
                log_has(rblog2, "generation=2 state=rebuilding"),
            "both instances served generation 2 (%s, %s)", rblog, rblog2);
  cr_assert(generation_state(2, state, sizeof(state)) && !strcmp(state, "live"), "gen 2 live");
  cr_assert(generation_state(1, state, sizeof(state)) && !strcmp(state, "retired"),
            "gen 1 retired");

  /* the live projector moves to generation 2 by itself and keeps it current */
  for (int i = 0; i < 100 && !log_has(logpath, "moving to the live one"); i++) esk_time_sleep_ms(100);
  cr_assert(log_has(logpath, "moving to the live one"), "the live projector did not follow (%s)",
            logpath);
  cr_assert_eq(esk_test_bank_publish(b, prod, topic, BEFORE + DURING, BEFORE + DURING + AFTER,
                                     &err),
               ESK_OK, "%s", err.msg);
  rd_kafka_flush(prod, 30000);
  wait_fold(b, BEFORE + DURING + AFTER, 60);

  atomic_store(&r.stop, 1);
  pthread_join(reader, NULL);
  cr_expect_gt(r.reads, 10, "the reader ran (%ld reads)", r.reads);
  cr_expect_eq(r.violations, 0, "the view went back %ld times (first: %lld events, then %lld)",
               r.violations, r.first_bad_before, r.first_bad_after);

  /* eskctl projection status shows the new generation and its own group */
  char stlog[200], gg[200];
  snprintf(stlog, sizeof(stlog), "%s.status", rblog);
  snprintf(gg, sizeof(gg), "\"group\": \"%s.g2\"", group);
  char *st[] = {ESKCTL, "projection", "status", PROJ, "--schema", schema, "--topic", topic,
                "--group", group, "--json", NULL};
  cr_expect_eq(wait_status(run(st, stlog)), 0, "eskctl projection status (%s)", stlog);
  cr_expect(log_has(stlog, "\"generation\": 2"), "status names generation 2 (%s)", stlog);
  cr_expect(log_has(stlog, gg), "and its group %s.g2 (%s)", group, stlog);

  /* generation 1 can go, generation 2 (live) cannot */
  char g1[] = "1", g2[] = "2";
  char *d1[] = {ESKCTL, "projection", "drop-generation", PROJ, g1, "--schema", schema, NULL};
  char *d2[] = {ESKCTL, "projection", "drop-generation", PROJ, g2, "--schema", schema, NULL};
  cr_expect_eq(wait_status(run(d1, rblog)), 0, "dropping retired generation 1 (%s)", rblog);
  cr_expect_eq(wait_status(run(d2, rblog)), 1, "the live generation is refused (%s)", rblog);
  cr_expect(log_has(rblog, "is the live generation"), "the refusal says why");
  cr_expect_not(generation_state(1, state, sizeof(state)), "generation 1 is gone");

  kill(live, SIGTERM);
  cr_expect_eq(wait_status(live), 0, "esk-projector exits 0 on SIGTERM");
  live = -1;
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(b);
}

Test(rebuild, refuses_a_projection_without_a_live_generation_and_bad_arguments, .init = setup,
     .fini = teardown, .timeout = 60) {
  char a_prefix[128];
  snprintf(a_prefix, sizeof(a_prefix), "%s.", prefix);
  char *none[] = {ESKCTL, "projection", "rebuild", PROJ, "--schema", schema, "--topic-prefix",
                  a_prefix, "--log", rblog, NULL};
  cr_expect_eq(wait_status(run(none, rblog)), 1);
  cr_expect(log_has(rblog, "has no live generation"), "says why (%s)", rblog);
  char *bad[] = {ESKCTL, "projection", "rebuild", "Bad-Name", NULL};
  cr_expect_eq(wait_status(run(bad, rblog)), 2);
  char *lag[] = {ESKCTL, "projection", "rebuild", PROJ, "--max-lag", "-3", NULL};
  cr_expect_eq(wait_status(run(lag, rblog)), 2);
  char *gen[] = {ESKCTL, "projection", "drop-generation", PROJ, "0", NULL};
  cr_expect_eq(wait_status(run(gen, rblog)), 2);
  char *inst0[] = {ESKCTL, "projection", "rebuild", PROJ, "--instances", "0", NULL};
  cr_expect_eq(wait_status(run(inst0, rblog)), 2);
  char *inst17[] = {ESKCTL, "projection", "rebuild", PROJ, "--instances", "17", NULL};
  cr_expect_eq(wait_status(run(inst17, rblog)), 2);
  cr_expect(log_has(rblog, "--instances"), "the refusal names the option (%s)", rblog);
}

static int64_t count_rows(const char *sql) {
  PGconn *pg = esk_test_pg_connect_schema(schema);
  PGresult *res = PQexec(pg, sql);
  int64_t n = PQresultStatus(res) == PGRES_TUPLES_OK ? atoll(PQgetvalue(res, 0, 0)) : -1;
  PQclear(res);
  PQfinish(pg);
  return n;
}

/* event_log keeps its versions in its own table: a rebuild started at a time
 * finds there nothing for the accounts opened before it, and must fall back to
 * the versions recorded before the time instead of dead-lettering a "gap". */
Test(rebuild, a_rebuild_from_a_time_holds_only_later_events_without_gaps, .init = setup,
     .fini = teardown, .timeout = 180) {
  enum { ACCOUNTS = 100, BEFORE = 3000, AFTER = 2000 };
  esk_error_t err = {0};
  esk_test_bank_t *b = NULL;
  rd_kafka_t *prod = NULL;
  bank_start(&b, &prod, 11, ACCOUNTS, BEFORE + AFTER, BEFORE);
  cr_assert_eq(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  /* --from-time T: the next whole second, later than the timestamp of every
   * event published so far (taken when it was produced, on this clock); the
   * later events are produced once the clock has reached T */
  int64_t t_ms = (esk_time_real_ms() / 1000 + 1) * 1000;
  while (esk_time_real_ms() < t_ms) esk_time_sleep_ms(1);
  time_t t = (time_t)(t_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char from[40];
  strftime(from, sizeof(from), "%Y-%m-%dT%H:%M:%SZ", &tm);
  cr_assert_eq(esk_test_bank_publish(b, prod, topic, BEFORE, BEFORE + AFTER, &err), ESK_OK, "%s",
               err.msg);
  rd_kafka_flush(prod, 30000);

  char a_topic[200], a_schema[96], a_group[160];
  snprintf(a_topic, sizeof(a_topic), "topic=%s", topic);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  char *pargv[] = {PROJECTOR, "--projection", "event_log", "-X", a_topic, "-X", a_schema,
                   "-X", a_group, "-X", "batch.max.ms=50", NULL};
  live = run(pargv, logpath);
  for (int i = 0; i < 600 && count_rows("select count(*) from event_log") != BEFORE + AFTER; i++)
    esk_time_sleep_ms(100);
  cr_assert_eq(count_rows("select count(*) from event_log"), BEFORE + AFTER,
               "generation 1 holds every event (%s)", logpath);

  char a_prefix[128];
  snprintf(a_prefix, sizeof(a_prefix), "%s.", prefix);
  char *rargv[] = {ESKCTL, "projection", "rebuild", "event_log", "--schema", schema,
                   "--topic-prefix", a_prefix, "--group", group, "--log", rblog,
                   "--from-time", from, "--timeout", "120", NULL};
  cr_assert_eq(wait_status(run(rargv, rblog)), 0, "rebuild --from-time %s failed: see %s", from,
               rblog);
  char state[16];
  cr_assert(generation_state_of("event_log", 2, state, sizeof(state)) && !strcmp(state, "live"),
            "gen 2 live");
  /* the view now names generation 2: only the events at or after the time */
  cr_expect_eq(count_rows("select count(*) from event_log"), AFTER, "events after %s", from);
  cr_expect_gt(count_rows("select count(*) from event_log where aggregate_version > 1 and "
                          "event_type <> 'AccountOpened'"),
               0, "accounts opened before the time got their later events");
  char dlq[200];
  snprintf(dlq, sizeof(dlq), "%s.dlq.event_log", topic);
  cr_expect_eq(esk_test_consume(dlq, 1, 3, NULL, NULL), 0, "no event was dead-lettered (%s)",
               rblog);

  /* a projection folding whole histories refuses a start time, saying why */
  char *bal[] = {ESKCTL, "projection", "rebuild", "account_balances", "--schema", schema,
                 "--topic-prefix", a_prefix, "--group", group, "--log", rblog,
                 "--from-time", from, "--timeout", "60", NULL};
  char *bal_live[] = {PROJECTOR, "--projection", "account_balances", "-X", a_topic, "-X",
                      a_schema, "-X", "group.id=esk.test.rebuild.balances", NULL};
  char ablog[200];
  snprintf(ablog, sizeof(ablog), "%s.balances", logpath);
  pid_t ab = run(bal_live, ablog);
  for (int i = 0; i < 300 && count_rows("select count(*) from account_balances") <= 0; i++)
    esk_time_sleep_ms(100);
  char rlog[200];
  snprintf(rlog, sizeof(rlog), "%s.out", rblog);
  cr_expect_eq(wait_status(run(bal, rlog)), 1, "account_balances from a time (%s)", rlog);
  cr_expect(log_has(rlog, "folds every event of an account"), "the refusal says why (%s)", rlog);
  char *badtime[] = {ESKCTL, "projection", "rebuild", "event_log", "--from-time", "yesterday",
                     NULL};
  cr_expect_eq(wait_status(run(badtime, rlog)), 2);
  cr_expect(log_has(rlog, "--from-time: time 'yesterday'"), "names the bad time (%s)", rlog);
  kill(ab, SIGTERM);
  cr_expect_eq(wait_status(ab), 0);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(b);
}

/* A declarative projection with a bug, fixed in its file and rebuilt
 * blue-green: events_per_account must count every event of an account, but
 * the first version of the file forgets withdrawals. */
static const char *const counts_file =
    "name = events_per_account\n[migration]\n"
    "create table events_per_account_rows (account_id text primary key, n bigint not null,\n"
    "  last_version bigint not null);\n"
    "create view events_per_account as select account_id, n, last_version\n"
    "  from events_per_account_rows;\n"
    "[on AccountOpened]\n$1 = meta.aggregate_id\n$2 = meta.aggregate_version\n"
    "insert into events_per_account_rows values ($1, 1, $2)\n"
    "[on MoneyDeposited]\n$1 = meta.aggregate_id\n$2 = meta.aggregate_version\n"
    "update events_per_account_rows set n = n + 1, last_version = $2 where account_id = $1\n"
    "%s"
    "[on AccountClosed]\n$1 = meta.aggregate_id\n$2 = meta.aggregate_version\n"
    "update events_per_account_rows set n = n + 1, last_version = $2 where account_id = $1\n";

static const char *const withdrawals =
    "[on MoneyWithdrawn]\n$1 = meta.aggregate_id\n$2 = meta.aggregate_version\n"
    "update events_per_account_rows set n = n + 1, last_version = $2 where account_id = $1\n";

/* Appends the message's esk.dlq.generation header to the string @p arg. */
static void dlq_generation(const rd_kafka_message_t *m, void *arg) {
  char v[16];
  char *gens = arg;
  esk_test_header(m, "esk.dlq.generation", v, sizeof(v));
  size_t n = strlen(gens);
  if (n + 1 < 8 && v[0]) {
    gens[n] = v[0];
    gens[n + 1] = '\0';
  }
}

static void write_counts(const char *path, int fixed) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fprintf(f, counts_file, fixed ? withdrawals : "");
  fclose(f);
}

Test(rebuild, a_declarative_projection_fixed_in_its_file_is_rebuilt_and_followed, .init = setup,
     .fini = teardown, .timeout = 180) {
  enum { ACCOUNTS = 80, BEFORE = 4000, AFTER = 1000 };
  esk_error_t err = {0};
  esk_test_bank_t *b = NULL;
  rd_kafka_t *prod = NULL;
  bank_start(&b, &prod, 13, ACCOUNTS, BEFORE + AFTER, BEFORE);
  /* one poison message: each generation dead-letters it, saying which it is */
  cr_assert_eq(esk_test_bank_publish_raw(prod, topic, "poison", "not avro", 8, &err), ESK_OK, "%s",
               err.msg);
  rd_kafka_flush(prod, 30000);

  char file[200];
  snprintf(file, sizeof(file), "/tmp/%s.events_per_account.conf", schema);
  write_counts(file, 0);
  char a_topic[200], a_schema[96], a_group[160];
  snprintf(a_topic, sizeof(a_topic), "topic=%s", topic);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  char *pargv[] = {PROJECTOR, "--projection-file", file, "-X", a_topic, "-X", a_schema,
                   "-X", a_group, "-X", "batch.max.ms=50", NULL};
  live = run(pargv, logpath);
  /* caught up: its stored positions add up to the events published */
  const char *pos = "select coalesce(sum(next_offset), 0) from esk_projection_positions"
                    " where projection = 'events_per_account'";
  for (int i = 0; i < 600 && count_rows(pos) != BEFORE + 1; i++) esk_time_sleep_ms(100);
  cr_assert_eq(count_rows(pos), BEFORE + 1, "generation 1 followed every event (%s)", logpath);
  int64_t wrong = count_rows("select count(*) from events_per_account where n <> last_version");
  cr_assert_gt(wrong, 0, "the buggy file miscounts some accounts");

  /* fix the file, rebuild from it */
  write_counts(file, 1);
  char a_prefix[128];
  snprintf(a_prefix, sizeof(a_prefix), "%s.", prefix);
  char *rargv[] = {ESKCTL, "projection", "rebuild", "events_per_account", "--schema", schema,
                   "--topic-prefix", a_prefix, "--group", group, "--log", rblog,
                   "--projection-file", file, "--timeout", "120", NULL};
  cr_assert_eq(wait_status(run(rargv, rblog)), 0, "rebuild failed: see %s", rblog);
  char state[16];
  cr_assert(generation_state_of("events_per_account", 2, state, sizeof(state)) &&
                !strcmp(state, "live"),
            "gen 2 live");
  cr_expect_eq(count_rows("select count(*) from events_per_account where n <> last_version"), 0,
               "the rebuilt view counts every event");
  cr_expect_eq(count_rows("select coalesce(sum(n), 0) from events_per_account"), BEFORE);

  /* the live projector moves to generation 2, reads the fixed file and follows */
  for (int i = 0; i < 100 && !log_has(logpath, "moving to the live one"); i++) esk_time_sleep_ms(100);
  cr_assert(log_has(logpath, "moving to the live one"), "the live projector did not follow (%s)",
            logpath);
  cr_assert_eq(esk_test_bank_publish(b, prod, topic, BEFORE, BEFORE + AFTER, &err), ESK_OK, "%s",
               err.msg);
  rd_kafka_flush(prod, 30000);
  const char *last = "select coalesce(sum(last_version), 0) from events_per_account";
  for (int i = 0; i < 600 && count_rows(last) != BEFORE + AFTER; i++) esk_time_sleep_ms(100);
  cr_expect_eq(count_rows(last), BEFORE + AFTER, "the view follows live events (%s)", logpath);
  cr_expect_eq(count_rows("select count(*) from events_per_account where n <> last_version"), 0,
               "with the fixed statements");
  cr_expect_eq(count_rows("select coalesce(sum(n), 0) from events_per_account"), BEFORE + AFTER);
  kill(live, SIGTERM);
  cr_expect_eq(wait_status(live), 0, "esk-projector exits 0 on SIGTERM");
  live = -1;
  unlink(file);
  char dlq[200];
  snprintf(dlq, sizeof(dlq), "%s.dlq.events_per_account", topic);
  char gens[8] = "";
  cr_expect_eq(esk_test_consume(dlq, 2, 20, dlq_generation, gens), 2,
               "the poison message, once per generation");
  cr_expect(strchr(gens, '1') && strchr(gens, '2'), "esk.dlq.generation 1 and 2, got '%s'", gens);
  esk_test_delete_topic(dlq);
  rd_kafka_destroy(prod);
  esk_test_bank_destroy(b);
}
