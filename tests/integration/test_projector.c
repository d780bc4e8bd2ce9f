/* The projector runtime against the real broker and PostgreSQL, with a test
 * decoder (value "aggregate_id|version|amount") and a test projection that
 * keeps a total per aggregate. The runtime's guarantees are what is tested:
 * the fold, the version guard, dead letters, positions and resumption. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "esk_test.h"
#include "projector.h"
#include "store.h"

#define N_PARTS 3

typedef struct fixture_s {
  char topic[96], name[64], table[96];
} fixture_t;

/* ---- test decoder: "id|version|amount"; anything else is poison ---- */
static int test_decode(void *self, const rd_kafka_message_t *m, esk_event_t *ev,
                       esk_error_t *err) {
  static __thread char buf[256], id[128];
  (void)self;
  if (m->len >= sizeof(buf)) return esk_error_set(err, ESK_EPOISON, "value too long");
  memcpy(buf, m->payload, m->len);
  buf[m->len] = '\0';
  long long v, amount;
  if (sscanf(buf, "%127[^|]|%lld|%lld", id, &v, &amount) != 3)
    return esk_error_set(err, ESK_EPOISON, "undecodable value '%s'", buf);
  static __thread long long amount_box;
  amount_box = amount;
  ev->type = "Test";
  ev->aggregate_id = id;
  ev->aggregate_version = v;
  ev->payload = &amount_box;
  return ESK_OK;
}

/* ---- test projection: totals per aggregate; amount must be >= 0 ---- */
static int test_apply(void *self, PGconn *pg, const esk_event_t *ev, esk_error_t *err) {
  const fixture_t *f = self;
  char sql[640], amount[32], ver[32];
  snprintf(sql, sizeof(sql),
           "insert into %s (id, total, events, last_version) values ($1, $2::bigint, 1, $3::bigint) "
           "on conflict (id) do update set total = %s.total + excluded.total, "
           "events = %s.events + 1, last_version = excluded.last_version",
           f->table, f->table, f->table);
  snprintf(amount, sizeof(amount), "%lld", *(const long long *)ev->payload);
  snprintf(ver, sizeof(ver), "%" PRId64, ev->aggregate_version);
  const char *params[] = {ev->aggregate_id, amount, ver};
  return esk_pg_exec(NULL, pg, "apply test event", sql, 3, params, err);
}

static fixture_t fx;
static char migration[512];
static const char *migrations[1];

static void setup(void) {
  esk_test_require_kafka();
  esk_test_require_pg();
  esk_test_unique_name(fx.topic, sizeof(fx.topic), "esk.test.events");
  esk_test_unique_name(fx.name, sizeof(fx.name), "test_proj");
  snprintf(fx.table, sizeof(fx.table), "%s_totals", fx.name);
  snprintf(migration, sizeof(migration),
           "create table %s (id text primary key, total bigint not null check (total >= 0), "
           "events int not null, last_version bigint not null)", fx.table);
  migrations[0] = migration;
  esk_test_create_topic(fx.topic, N_PARTS);
}

/* @p batch: the most messages in one record batch ("" for librdkafka's) */
static rd_kafka_t *producer_batching(const char *batch) {
  esk_error_t err = {0};
  rd_kafka_conf_t *c = NULL;
  char errstr[256];
  cr_assert_eq(esk_kafka_conf_new(&c, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK);
  if (*batch)
    cr_assert_eq(rd_kafka_conf_set(c, "batch.num.messages", batch, errstr, sizeof(errstr)),
                 RD_KAFKA_CONF_OK, "%s", errstr);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
  cr_assert_not_null(p, "%s", errstr);
  return p;
}

static rd_kafka_t *producer(void) { return producer_batching(""); }

static void send_raw(rd_kafka_t *p, const char *key, const char *value) {
  cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(fx.topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                 RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
               RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void send_event(rd_kafka_t *p, const char *id, long long version, long long amount) {
  char v[160];
  snprintf(v, sizeof(v), "%s|%lld|%lld", id, version, amount);
  send_raw(p, id, v);
}

typedef struct run_s {
  esk_projector_t *proj;
  volatile sig_atomic_t stop;
  int rc;
  esk_error_t err;
} run_t;

static void *runner(void *arg) {
  run_t *r = arg;
  r->rc = esk_projector_run(r->proj, &r->stop, &r->err);
  return NULL;
}

static esk_conf_t *make_conf(const char *on_error) {
  static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_projector_props};
  esk_conf_t *conf = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_new(&conf, tables, 2, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_load_env(conf, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_set(conf, "topic", fx.topic, "test", &err), ESK_OK);
  cr_assert_eq(esk_conf_set(conf, "projection", fx.name, "test", &err), ESK_OK);
  cr_assert_eq(esk_conf_set(conf, "batch.max.ms", "100", "test", &err), ESK_OK);
  cr_assert_eq(esk_conf_set(conf, "batch.max.events", "50", "test", &err), ESK_OK);
  cr_assert_eq(esk_conf_set(conf, "on_error", on_error, "test", &err), ESK_OK);
  if (getenv("ESK_TEST_KAFKA_DEBUG")) esk_log_set_level("debug");
  if (getenv("ESK_TEST_KAFKA_DEBUG")) esk_conf_set(conf, "kafka.debug", getenv("ESK_TEST_KAFKA_DEBUG"), "test", &err);
  return conf;
}

/* esk_projector_new() with the test projection and decoder; its result. */
static int try_start(run_t *r, esk_conf_t *conf) {
  esk_projection_t proj = {.name = fx.name, .migrations = migrations, .n_migrations = 1,
                           .apply = test_apply, .self = &fx};
  esk_decoder_t dec = {.decode = test_decode};
  memset(r, 0, sizeof(*r));
  return esk_projector_new(&r->proj, conf, &proj, &dec, &r->err);
}

static void start(run_t *r, esk_conf_t *conf) {
  cr_assert_eq(try_start(r, conf), ESK_OK, "%s", r->err.msg);
}

static long long query_ll(PGconn *pg, const char *sql) {
  PGresult *res = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_pg_exec(&res, pg, sql, sql, 0, NULL, &err), ESK_OK, "%s", err.msg);
  long long v = PQntuples(res) && !PQgetisnull(res, 0, 0) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
  PQclear(res);
  return v;
}

/* Waits until the projection has applied @p applied events, dead-lettered
 * @p dead, and handled (applied or dead-lettered) @p handled in all (or 60 s). */
static void wait_until(run_t *r, int64_t applied, int64_t dead, int64_t handled) {
  esk_projector_stats_t s;
  for (int i = 0; i < 600; i++) {
    esk_projector_stats(r->proj, &s);
    if (s.applied >= applied && s.dead >= dead && s.applied + s.dead >= handled) return;
    esk_time_sleep_ms(100);
  }
  cr_assert_fail("projection stuck: applied %" PRId64 "/%" PRId64 ", dead %" PRId64 "/%" PRId64
                 ", handled %" PRId64 "/%" PRId64,
                 s.applied, applied, s.dead, dead, s.applied + s.dead, handled);
}

static void wait_applied(run_t *r, int64_t applied, int64_t dead) {
  wait_until(r, applied, dead, 0);
}

static void run_stats(void *arg, esk_projector_stats_t *s) {
  esk_projector_stats(((run_t *)arg)->proj, s);
}

/* Every message handled and committed, the counters settled: what the checks
 * that nothing more happened (no re-apply, no extra skip) wait for. */
static esk_projector_stats_t quiet(run_t *r) {
  PGconn *pg = esk_test_pg_connect();
  esk_projector_stats_t s = esk_test_projector_quiet(pg, fx.name, fx.topic, run_stats, r, 60);
  PQfinish(pg);
  return s;
}

static void stop_run(run_t *r, pthread_t t) {
  r->stop = 1;
  pthread_join(t, NULL);
  cr_assert_eq(r->rc, ESK_OK, "run ended with %s: %s", esk_error_name(r->rc), r->err.msg);
}

typedef struct reasons_s {
  int gap, undecodable, refused;
} reasons_t;

static void count_reason(const rd_kafka_message_t *m, void *arg) {
  reasons_t *r = arg;
  char v[512];
  cr_assert_str_eq(esk_test_header(m, "esk.dlq.topic", v, sizeof(v)), fx.topic);
  cr_assert(esk_test_header(m, "esk.dlq.offset", v, sizeof(v))[0]);
  cr_assert(esk_test_header(m, "esk.dlq.partition", v, sizeof(v))[0]);
  esk_test_header(m, "esk.dlq.reason", v, sizeof(v));
  if (strstr(v, "version gap for aggregate acct-6")) r->gap++;
  if (strstr(v, "undecodable value 'not an event'")) r->undecodable++;
  if (strstr(v, "23514")) r->refused++;
}

#define N_AGG 20
#define N_VER 10

Test(projector, folds_events_skips_duplicates_and_dead_letters_poison, .init = setup,
     .timeout = 240) {
  rd_kafka_t *prod = producer();
  long long expect[N_AGG] = {0};
  char id[32];
  /* 20 aggregates x 10 versions, amounts known to the test. */
  for (int v = 1; v <= N_VER; v++)
    for (int a = 0; a < N_AGG; a++) {
      snprintf(id, sizeof(id), "acct-%d", a);
      send_event(prod, id, v, a * 100 + v);
      expect[a] += a * 100 + v;
    }
  /* Duplicates of events already sent (a re-publish): change nothing. */
  send_event(prod, "acct-3", 4, 999999);
  send_event(prod, "acct-4", 10, 999999);
  /* Poison: undecodable, a version gap, a value the read model refuses. */
  send_raw(prod, "acct-5", "not an event");
  send_event(prod, "acct-6", 13, 1);
  send_event(prod, "acct-7", 11, -5000);
  /* Events after the poison in the same partitions are still applied. */
  for (int a = 0; a < N_AGG; a++) {
    if (a == 7) continue; /* acct-7 v11 went to the DLQ: its v12 would be a gap */
    snprintf(id, sizeof(id), "acct-%d", a);
    send_event(prod, id, N_VER + 1, 7);
    expect[a] += 7;
  }
  cr_assert_eq(rd_kafka_flush(prod, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);

  esk_conf_t *conf = make_conf("dlq");
  run_t r;
  pthread_t t;
  start(&r, conf);
  pthread_create(&t, NULL, runner, &r);
  wait_applied(&r, N_AGG * N_VER + N_AGG - 1, 3);
  esk_projector_stats_t s = quiet(&r);
  stop_run(&r, t);
  cr_assert_eq(s.applied, N_AGG * N_VER + N_AGG - 1);
  cr_assert_eq(s.skipped, 2, "duplicates skipped: %" PRId64, s.skipped);
  cr_assert_eq(s.dead, 3, "dead letters: %" PRId64, s.dead);
  esk_projector_destroy(r.proj);

  PGconn *pg = esk_test_pg_connect();
  char sql[256];
  for (int a = 0; a < N_AGG; a++) {
    snprintf(sql, sizeof(sql), "select total from %s where id = 'acct-%d'", fx.table, a);
    cr_assert_eq(query_ll(pg, sql), expect[a], "total of acct-%d", a);
  }
  /* The stored positions cover every message of the topic. */
  snprintf(sql, sizeof(sql),
           "select sum(next_offset) from esk_projection_positions where projection = '%s'",
           fx.name);
  cr_assert_eq(query_ll(pg, sql), N_AGG * N_VER + 5 + N_AGG - 1);

  /* The dead letters carry the original coordinates and the reason. */
  char dlq[192];
  snprintf(dlq, sizeof(dlq), "%s.dlq.%s", fx.topic, fx.name);
  reasons_t rs = {0};
  cr_assert_eq(esk_test_consume(dlq, 3, 30, count_reason, &rs), 3);
  cr_assert_eq(rs.gap + rs.undecodable + rs.refused, 3, "gap %d undecodable %d refused %d",
               rs.gap, rs.undecodable, rs.refused);
  PQfinish(pg);
  esk_conf_destroy(conf);
  rd_kafka_destroy(prod);
}

/* A catch-up (here 40,000 events of about 170 bytes, in record batches of
 * 40, fetched 8 KB per partition at a time) fills its batches to
 * batch.max.events instead of applying whatever the fetches brought: the
 * first batch holds 20,000 events (applied at the first dry queue, it held
 * what the first fetches brought: 160 events, or a whole partition when the
 * fetcher ran ahead), the second all but the last few hundred. At the live
 * edge nothing waits: one more event is applied at once, not after
 * batch.max.ms (10 s here). */
Test(projector, a_catch_up_fills_its_batches_and_the_live_edge_does_not_wait, .init = setup,
     .timeout = 240) {
  /* record batches of 40 messages: a fetch returns whole record batches, so
   * librdkafka's default (up to 10,000) would let one fetch bring thousands */
  rd_kafka_t *prod = producer_batching("40");
  enum { N = 40000 };
  char v[256];
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "agg-%d", i % 50);
    int n = snprintf(v, sizeof(v), "%s|%d|1|", id, i / 50 + 1);
    memset(v + n, 'x', 150);
    v[n + 150] = '\0';
    send_raw(prod, id, v);
    if (i % 5000 == 4999) rd_kafka_poll(prod, 0);
  }
  cr_assert_eq(rd_kafka_flush(prod, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
  esk_conf_t *conf = make_conf("stop");
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_set(conf, "batch.max.events", "20000", "test", &err), ESK_OK);
  cr_assert_eq(esk_conf_set(conf, "batch.max.ms", "10000", "test", &err), ESK_OK);
  /* small fetches, and a prefetch queue that stops at 200 messages: without
   * the rule the queue runs dry every few hundred events */
  cr_assert_eq(esk_conf_set(conf, "kafka.max.partition.fetch.bytes", "8192", "test", &err),
               ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_set(conf, "kafka.queued.min.messages", "200", "test", &err), ESK_OK,
               "%s", err.msg);
  run_t r;
  pthread_t t;
  start(&r, conf);
  pthread_create(&t, NULL, runner, &r);
  /* a batch commits at once: the first count seen is the first batch (the
   * next one takes seconds to apply, an upsert per event) */
  esk_projector_stats_t s = {0};
  for (int64_t end = esk_time_mono_ms() + 60000; !s.applied && esk_time_mono_ms() < end;
       esk_time_sleep_ms(5))
    esk_projector_stats(r.proj, &s);
  cr_assert_eq(s.applied, 20000, "the first batch held %" PRId64 " events", s.applied);
  /* the next holds all but the last few hundred (under 1,000, no catch-up) */
  for (int64_t end = esk_time_mono_ms() + 60000; s.applied == 20000 && esk_time_mono_ms() < end;
       esk_time_sleep_ms(5))
    esk_projector_stats(r.proj, &s);
  cr_assert_geq(s.applied - 20000, 19000, "the second batch held %" PRId64 " events",
                s.applied - 20000);
  wait_applied(&r, N, 0);
  s = quiet(&r);
  cr_assert_eq(s.applied, N);

  send_event(prod, "agg-0", N / 50 + 1, 1);
  rd_kafka_flush(prod, 20000);
  int64_t t0 = esk_time_mono_ms();
  wait_applied(&r, N + 1, 0);
  int64_t took = esk_time_mono_ms() - t0;
  cr_assert_lt(took, 5000, "one event at the live edge waited %" PRId64 " ms", took);
  stop_run(&r, t);
  esk_projector_destroy(r.proj);
  esk_conf_destroy(conf);
  rd_kafka_destroy(prod);
}

Test(projector, a_restarted_projector_resumes_from_the_stored_position, .init = setup,
     .timeout = 240) {
  rd_kafka_t *prod = producer();
  for (int v = 1; v <= 5; v++) send_event(prod, "solo", v, 10);
  rd_kafka_flush(prod, 20000);
  esk_conf_t *conf = make_conf("stop");
  run_t r;
  pthread_t t;
  start(&r, conf);
  pthread_create(&t, NULL, runner, &r);
  wait_applied(&r, 5, 0);
  stop_run(&r, t);
  esk_projector_destroy(r.proj);

  for (int v = 6; v <= 8; v++) send_event(prod, "solo", v, 1);
  rd_kafka_flush(prod, 20000);
  start(&r, conf);
  pthread_create(&t, NULL, runner, &r);
  wait_applied(&r, 3, 0);
  esk_projector_stats_t s = quiet(&r);
  stop_run(&r, t);
  cr_assert_eq(s.applied, 3, "the second run re-applied or skipped: %" PRId64, s.applied);
  cr_assert_eq(s.skipped, 0, "the second run re-read applied events");
  esk_projector_destroy(r.proj);

  PGconn *pg = esk_test_pg_connect();
  char sql[256];
  snprintf(sql, sizeof(sql), "select total * 1000 + events from %s where id = 'solo'", fx.table);
  cr_assert_eq(query_ll(pg, sql), 53 * 1000 + 8);
  PQfinish(pg);
  esk_conf_destroy(conf);
  rd_kafka_destroy(prod);
}

Test(projector, on_error_stop_stops_at_the_poison_event_without_moving_past_it, .init = setup,
     .timeout = 240) {
  rd_kafka_t *prod = producer();
  send_event(prod, "p", 1, 1);
  send_raw(prod, "p", "garbage");
  send_event(prod, "p", 2, 1);
  rd_kafka_flush(prod, 20000);
  esk_conf_t *conf = make_conf("stop");
  run_t r;
  start(&r, conf);
  r.rc = esk_projector_run(r.proj, &r.stop, &r.err);
  cr_assert_eq(r.rc, ESK_EFATAL);
  cr_assert_not_null(strstr(r.err.msg, "on_error=stop"), "%s", r.err.msg);
  cr_assert_not_null(strstr(r.err.msg, "undecodable value 'garbage'"), "%s", r.err.msg);
  esk_projector_destroy(r.proj);
  PGconn *pg = esk_test_pg_connect();
  char sql[256];
  snprintf(sql, sizeof(sql), "select coalesce(sum(next_offset), 0) from esk_projection_positions "
                             "where projection = '%s'", fx.name);
  cr_assert_eq(query_ll(pg, sql), 0, "a position moved past or onto the poison event");
  PQfinish(pg);
  esk_conf_destroy(conf);
  rd_kafka_destroy(prod);
}

/* The log (stderr: the projector runs in this test's process) copied into a
 * file while a test counts lines in it. */
typedef struct log_capture_s {
  char path[64];
  int saved; /* the test's own stderr */
} log_capture_t;

static void capture_log(log_capture_t *c) {
  esk_test_temp_file(c->path, sizeof(c->path), "esk_test_projector_log_", "", 0);
  fflush(stderr);
  c->saved = dup(2);
  int fd = open(c->path, O_WRONLY | O_APPEND);
  cr_assert(c->saved >= 0 && fd >= 0, "cannot redirect stderr to %s", c->path);
  dup2(fd, 2);
  close(fd);
}

/* Gives stderr back, with what was logged meanwhile. */
static void end_capture(log_capture_t *c) {
  fflush(stderr);
  dup2(c->saved, 2);
  close(c->saved);
  FILE *f = fopen(c->path, "r");
  char buf[4096];
  for (size_t n; f && (n = fread(buf, 1, sizeof(buf), f)) > 0;) fwrite(buf, 1, n, stderr);
  if (f) fclose(f);
  unlink(c->path);
}

/* Lines of the file at @p path that hold @p needle. */
static int64_t count_lines(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char line[8192];
  int64_t n = 0;
  while (f && fgets(line, sizeof(line), f))
    if (strstr(line, needle)) n++;
  if (f) fclose(f);
  return n;
}

/* A dead letter Kafka refuses (here: the DLQ topic's max.message.bytes is too
 * small) must not let the position move past its event: the batch is retried,
 * /readyz says why, and once the topic takes it everything is applied. */
Test(projector, a_refused_dead_letter_holds_the_position_until_kafka_takes_it, .init = setup,
     .timeout = 120) {
  char dlq[192];
  snprintf(dlq, sizeof(dlq), "%s.dlq.%s", fx.topic, fx.name);
  rd_kafka_t *prod = producer();
  static const char *const tiny[] = {"max.message.bytes", "64", NULL};
  esk_error_t err = {0};
  cr_assert_eq(esk_kafka_create_topic(prod, dlq, N_PARTS, -1, tiny, 15000, NULL, &err), ESK_OK,
               "%s", err.msg);
  send_event(prod, "q", 1, 1);
  send_raw(prod, "q", "garbage that cannot be decoded");
  send_event(prod, "q", 2, 1);
  cr_assert_eq(rd_kafka_flush(prod, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);

  log_capture_t log;
  capture_log(&log);
  esk_conf_t *conf = make_conf("dlq");
  run_t r;
  pthread_t t;
  start(&r, conf);
  pthread_create(&t, NULL, runner, &r);
  char reason[512] = "";
  int refused = 0;
  for (int i = 0; i < 300 && !refused; i++) {
    refused = !esk_projector_ready(r.proj, reason, sizeof(reason)) &&
              strstr(reason, "dead letters to") != NULL;
    if (!refused) esk_time_sleep_ms(100);
  }
  cr_assert(refused, "readiness never named the dead letters (last: %s)", reason);
  PGconn *pg = esk_test_pg_connect();
  char sql[256];
  snprintf(sql, sizeof(sql), "select coalesce(sum(next_offset), 0) from esk_projection_positions "
                             "where projection = '%s'", fx.name);
  /* readiness names the refusal once an attempt at the batch was rolled back;
   * it still does, with the position held, after each of three more attempts
   * (counted in the log: each ends with a "retrying" line, written after its
   * rollback), so the checks run after retries that could have moved it */
  int64_t tried = count_lines(log.path, "batch not applied, retrying");
  for (int still = 0; still < 3; still++) {
    for (int64_t end = esk_time_mono_ms() + 30000;
         count_lines(log.path, "batch not applied, retrying") <= tried; esk_time_sleep_ms(20))
      cr_assert_lt(esk_time_mono_ms(), end, "no further attempt at the batch within 30 s");
    tried = count_lines(log.path, "batch not applied, retrying");
    cr_expect_leq(query_ll(pg, sql), 1,
                  "a position moved past the event whose dead letter was lost");
    cr_assert(!esk_projector_ready(r.proj, reason, sizeof(reason)) &&
                  strstr(reason, "dead letters to"),
              "the refusal cleared while the topic still refuses it (%s)", reason);
  }
  cr_expect_leq(query_ll(pg, sql), 1, "a position moved past the event whose dead letter was lost");
  esk_projector_stats_t s;
  esk_projector_stats(r.proj, &s);
  cr_expect_eq(s.dead, 0, "a refused dead letter was counted as written");

  esk_test_alter_topic(dlq, "max.message.bytes", "1048576");
  wait_applied(&r, 2, 1);
  for (int i = 0; i < 50 && !esk_projector_ready(r.proj, reason, sizeof(reason)); i++)
    esk_time_sleep_ms(100);
  cr_expect(esk_projector_ready(r.proj, reason, sizeof(reason)), "ready again: %s", reason);
  stop_run(&r, t);
  esk_projector_destroy(r.proj);
  cr_expect_eq(query_ll(pg, sql), 3, "every message behind the position");
  cr_expect_eq(esk_test_consume(dlq, 2, 10, NULL, NULL) >= 1, 1, "the dead letter is in %s", dlq);
  esk_test_delete_topic(dlq);
  end_capture(&log);
  PQfinish(pg);
  esk_conf_destroy(conf);
  rd_kafka_destroy(prod);
}

/* Started before the domain's topics exist: a clear error naming the topic
 * and the command that creates it, and no DLQ topic made on the way. */
Test(projector, a_missing_events_topic_is_refused_naming_it_and_the_fix, .init = setup,
     .timeout = 60) {
  char missing[128];
  esk_test_unique_name(missing, sizeof(missing), "esk.test.no_such_events");
  esk_conf_t *conf = make_conf("dlq");
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_set(conf, "topic", missing, "test", &err), ESK_OK);
  run_t r;
  cr_assert_eq(try_start(&r, conf), ESK_EINVAL, "%s", r.err.msg);
  cr_assert_null(r.proj);
  cr_assert_not_null(strstr(r.err.msg, missing), "%s", r.err.msg);
  cr_assert_not_null(strstr(r.err.msg, "eskctl topics create"), "%s", r.err.msg);
  rd_kafka_t *prod = producer();
  char dlq[256];
  int n = 0;
  snprintf(dlq, sizeof(dlq), "%s.dlq.%s", missing, fx.name);
  cr_assert_eq(esk_kafka_partition_count(prod, dlq, 5000, &n, &err), ESK_ENOTFOUND,
               "a DLQ topic was created for a missing events topic");
  rd_kafka_destroy(prod);
  esk_conf_destroy(conf);
}

static void send_round(rd_kafka_t *prod, int n_agg, int version) {
  char id[32];
  for (int a = 0; a < n_agg; a++) {
    snprintf(id, sizeof(id), "acct-%d", a);
    send_event(prod, id, version, 1);
  }
  cr_assert_eq(rd_kafka_flush(prod, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* The version cache (guard.cache.aggregates): a batch reads from PostgreSQL
 * only the versions of aggregates not met since the assignment, and at most
 * that many are remembered. */
Test(projector, batches_read_only_the_versions_of_aggregates_not_met_before, .init = setup,
     .timeout = 240) {
  rd_kafka_t *prod = producer();
  esk_conf_t *conf = make_conf("stop");
  run_t r;
  pthread_t t;
  start(&r, conf);
  pthread_create(&t, NULL, runner, &r);
  send_round(prod, N_AGG, 1);
  wait_applied(&r, N_AGG, 0);
  esk_projector_stats_t s = quiet(&r);
  cr_assert_eq(s.versions_read, N_AGG, "first round read %" PRId64, s.versions_read);
  for (int v = 2; v <= 4; v++) send_round(prod, N_AGG, v);
  wait_applied(&r, 4 * N_AGG, 0);
  s = quiet(&r);
  stop_run(&r, t);
  cr_assert_eq(s.versions_read, N_AGG, "later rounds read %" PRId64 " more",
               s.versions_read - N_AGG);
  esk_projector_destroy(r.proj);

  /* A cache of 5: the other 15 are read again each batch after the first. */
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_set(conf, "guard.cache.aggregates", "5", "test", &err), ESK_OK);
  start(&r, conf);
  pthread_create(&t, NULL, runner, &r);
  for (int v = 5; v <= 6; v++) {
    send_round(prod, N_AGG, v);
    wait_applied(&r, (v - 4) * N_AGG, 0);
    s = quiet(&r);
  }
  stop_run(&r, t);
  cr_assert_eq(s.applied, 2 * N_AGG);
  /* each aggregate once per round, in whatever batches: 20, then the 15 not kept */
  cr_assert_eq(s.versions_read, N_AGG + (N_AGG - 5), "read %" PRId64, s.versions_read);
  esk_projector_destroy(r.proj);
  esk_conf_destroy(conf);
  rd_kafka_destroy(prod);
}

/* Two instances trade partitions: A remembers every aggregate, B takes some
 * of them over and applies their next events, then leaves. A must not trust
 * what it remembered from before the rebalance: its next events for B's
 * aggregates would look like a version gap and be dead-lettered. */
Test(projector, an_instance_forgets_the_versions_it_remembered_when_partitions_move,
     .init = setup, .timeout = 240) {
  rd_kafka_t *prod = producer();
  esk_conf_t *conf = make_conf("dlq");
  run_t a, b;
  pthread_t ta, tb;
  start(&a, conf);
  pthread_create(&ta, NULL, runner, &a);
  for (int v = 1; v <= 3; v++) send_round(prod, N_AGG, v);
  wait_applied(&a, 3 * N_AGG, 0);

  start(&b, conf);
  pthread_create(&tb, NULL, runner, &b);
  char why[256];
  for (int i = 0; i < 600 && !esk_projector_ready(b.proj, why, sizeof(why)); i++)
    esk_time_sleep_ms(100);
  cr_assert(esk_projector_ready(b.proj, why, sizeof(why)), "B never ready: %s", why);
  send_round(prod, N_AGG, 4);
  for (int i = 0; i < 600; i++) {
    esk_projector_stats_t sa, sb;
    esk_projector_stats(a.proj, &sa);
    esk_projector_stats(b.proj, &sb);
    if (sa.applied + sb.applied + sa.dead + sb.dead >= 4 * N_AGG) break;
    esk_time_sleep_ms(100);
  }
  esk_projector_stats_t sb = quiet(&b);
  stop_run(&b, tb);
  cr_assert_gt(sb.applied, 0, "B applied nothing: the partitions never moved");
  cr_assert_eq(sb.dead, 0);

  send_round(prod, N_AGG, 5);
  /* applied or dead-lettered: a wrong guard shows as dead letters, not a timeout */
  wait_until(&a, 0, 0, 5 * N_AGG - sb.applied);
  esk_projector_stats_t sa = quiet(&a);
  stop_run(&a, ta);
  cr_assert_eq(sa.dead, 0, "A dead-lettered %" PRId64 " events", sa.dead);
  cr_assert_eq(sa.applied + sb.applied, 5 * N_AGG);
  PGconn *pg = esk_test_pg_connect();
  char sql[256];
  snprintf(sql, sizeof(sql), "select count(*) from %s where events = 5 and last_version = 5",
           fx.table);
  cr_assert_eq(query_ll(pg, sql), N_AGG);
  PQfinish(pg);
  esk_projector_destroy(b.proj);
  esk_projector_destroy(a.proj);
  esk_conf_destroy(conf);
  rd_kafka_destroy(prod);
}
