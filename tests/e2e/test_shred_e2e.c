/* Crypto-shredding end to end on the real broker (docs/architecture.md,
 * "Personal data"): esk-producer -X domain=orders with a master key writes
 * OrderCreated's email and address only as ciphertext (the raw bytes of the
 * events topic, and the broker's segment files, never hold them), and each
 * customer's key once, wrapped, to <prefix>orders.subject-keys in the same
 * transaction; a keyring made from that topic decrypts them; a producer
 * restarted with kill -9 restores the orders from the encrypted events; a
 * wrong master key, or none, stops start-up with a clear error. esk-projector
 * (event_log) and eskctl events tail with the master key show the plaintext;
 * after eskctl subjects forget, they show the declared replacement for that
 * customer only, a new projector (a rebuild) too, and nothing dead-letters.
 * eskctl subjects export prints every event of a customer's orders, decrypted. */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esk/codec.h"
#include "esk/kafka.h"
#include "esk/shred.h"
#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_http.h"
#include "esk_test_projector.h"
#include "esk_test_producer.h"

#define PARTS 2
#define MASTER "5d2c7e9a0b1f3e4d6c8a7b9e0f1d2c3b4a5e6f708192a3b4c5d6e7f8091a2b3c"
#define WRONG_MASTER "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* A master key file holding @p hex, owner-only. */
static void master_file(char *path, size_t size, const char *hex) {
  esk_test_temp_file(path, size, "esk-shred-master-", hex, strlen(hex));
  cr_assert_eq(chmod(path, 0600), 0);
}

/* CreateOrder @p order of customer @p cu, email <cu>@secret.example, street "<cu> Lane". */
static void create_line(char *buf, size_t size, const char *run, const char *order,
                        const char *cu) {
  snprintf(buf, size,
           "{\"command_id\":\"c-%s-%s\",\"type\":\"CreateOrder\",\"order_id\":\"%s\","
           "\"customer_id\":\"%s\",\"customer_email\":\"%s@secret.example\","
           "\"shipping_address\":{\"name\":\"N %s\",\"street\":\"%s Lane\",\"city\":\"Berlin\","
           "\"postal_code\":\"10115\",\"country\":\"DE\"},\"items\":[{\"product_id\":\"p-1\","
           "\"quantity\":2,\"unit_price\":1250}],\"currency\":\"EUR\"}\n",
           run, order, order, cu, cu, cu, cu);
}

static void submit(const char *prefix, const char *jsonl, int want_rc) {
  char path[64], cmd[1024], out[8192];
  esk_test_temp_file(path, sizeof(path), "esk_shred_cmds_", jsonl, strlen(jsonl));
  snprintf(cmd, sizeof(cmd),
           "%s submit --domain orders --topic-prefix '%s' --file %s --timeout 60000",
           ESK_TEST_ESKCTL_BIN, prefix, path);
  int rc = esk_tp_run(cmd, 1, out, sizeof(out));
  unlink(path);
  cr_assert_eq(rc, want_rc, "%s: %s", cmd, out);
}

/* Every value of a topic's partitions, concatenated (keys too). */
typedef struct {
  esk_buf_t all;
  int n;
} raw_t;

static int on_raw(const rd_kafka_message_t *m, void *ctx) {
  raw_t *r = ctx;
  esk_error_t err = {0};
  if (m->key) cr_assert_eq(esk_buf_append(&r->all, m->key, m->key_len, &err), ESK_OK);
  if (m->payload) cr_assert_eq(esk_buf_append(&r->all, m->payload, m->len, &err), ESK_OK);
  r->n++;
  return 0;
}

static void read_raw(raw_t *r, const char *prefix, const char *kind) {
  char topic[256];
  esk_error_t err = {0};
  rd_kafka_t *rk = NULL;
  cr_assert_eq(esk_kafka_topic_name(topic, sizeof(topic), prefix, "orders", kind, &err), ESK_OK);
  cr_assert_eq(esk_kafka_reader_new(&rk, NULL, NULL, &err), ESK_OK, "%s", err.msg);
  esk_buf_init(&r->all, 64 << 20);
  r->n = 0;
  for (int p = 0; p < PARTS; p++)
    cr_assert_eq(esk_kafka_read_partition(rk, topic, p, RD_KAFKA_OFFSET_BEGINNING, 20000, on_raw,
                                          r, NULL, &err),
                 ESK_OK, "%s", err.msg);
  rd_kafka_destroy(rk);
}

/* eskctl events tail --exit-at-end of the prefix's orders events, with the
 * master key file @p master (NULL: none), into @p out. */
static void tail_events(const char *prefix, const char *master, char *out, size_t size) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "ESK_MASTER_KEY_FILE='%s' %s events tail --domain orders --topic-prefix '%s' "
           "--from-beginning --exit-at-end",
           master ? master : "", ESK_TEST_ESKCTL_BIN, prefix);
  cr_assert_eq(esk_tp_run(cmd, 1, out, size), 0, "%s: %s", cmd, out);
}

/* esk-projector of the prefix's orders events into @p schema, with the master
 * key file @p master: @p proj is {"--projection", "event_log"} or
 * {"--projection-file", FILE}; @p group names its consumer group. Forgotten
 * subjects are scrubbed every 300 ms. */
static pid_t start_projector(const char *prefix, const char *schema, const char *const proj[2],
                             const char *group, const char *master, const char *log) {
  char a_topic[256], a_schema[128], a_group[256], a_key[300];
  snprintf(a_topic, sizeof(a_topic), "topic=%sorders.events", prefix);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  snprintf(a_key, sizeof(a_key), "personal.master_key_file=%s", master);
  const char *argv[] = {ESK_BINARY_DIR "/bin/esk-projector", proj[0], proj[1],
                        "-X", "domain=orders", "-X", a_topic, "-X", a_schema, "-X", a_group,
                        "-X", a_key, "-X", "personal.scrub.interval.ms=300", NULL};
  return esk_tp_spawn(argv, log);
}

/* esk-projector event_log of the prefix's orders events into @p schema. */
static pid_t start_event_log(const char *prefix, const char *schema, const char *master,
                             const char *log) {
  static const char *const proj[2] = {"--projection", "event_log"};
  char group[256];
  snprintf(group, sizeof(group), "%sprojection.%s", prefix, schema);
  return start_projector(prefix, schema, proj, group, master, log);
}

/* The email in event_log's payload of order @p order, once the row exists. */
static void event_log_email(PGconn *pg, const char *order, char *out, size_t size) {
  const char *params[] = {order};
  out[0] = '\0';
  for (int i = 0; i < 1500 && !out[0]; i++) {
    PGresult *r = PQexecParams(pg,
                               "select payload->>'customer_email' from event_log where "
                               "aggregate_id = $1 and aggregate_version = 1",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
      snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!out[0]) esk_time_sleep_ms(20);
  }
  cr_assert(out[0], "no event_log row for %s", order);
}

static int holds(const esk_buf_t *b, const char *s) {
  return b->len && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/* Whether a segment file of a partition of @p topic, in the local stack's
 * broker data directory (ESK_STACK_DIR, default .local/), holds @p needle. */
static int segments_hold(const char *topic, const char *needle) {
  char dir[1024], part[1200], cmd[4096], out[4096];
  const char *state = getenv("ESK_STACK_DIR");
  snprintf(dir, sizeof(dir), "%s/kafka/data", state && *state ? state : ESK_SOURCE_DIR "/.local");
  snprintf(part, sizeof(part), "%s/%s-0", dir, topic);
  struct stat st;
  cr_assert_eq(stat(part, &st), 0, "no partition directory %s: is the stack elsewhere?", part);
  snprintf(cmd, sizeof(cmd), "grep -rlF '%s' '%s'/'%s'-* 2>/dev/null || true", needle, dir, topic);
  esk_tp_run(cmd, 0, out, sizeof(out));
  return out[0] != '\0';
}

/* A unique prefix in @p prefix (from @p name) and its orders topics. */
static void make_topics(char *prefix, size_t size, const char *name) {
  char base[96], cmd[512], out[4096];
  esk_test_unique_name(base, sizeof(base), name);
  snprintf(prefix, size, "%s.", base);
  snprintf(cmd, sizeof(cmd),
           "%s topics create --domain orders --topic-prefix '%s' --partitions %d "
           "--compaction-lag-ms 5000",
           ESK_TEST_ESKCTL_BIN, prefix, PARTS);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
  cr_assert(strstr(out, "orders.subject-keys"), "%s", out);
}

/* No dead letters in the projectors' log @p plog: forgetting is not an error. */
static void expect_no_dead_letters(const char *plog) {
  char cmd[512], out[64];
  snprintf(cmd, sizeof(cmd), "grep -c 'dead-lettered' '%s' || true", plog);
  esk_tp_run(cmd, 0, out, sizeof(out));
  cr_expect_eq(atoi(out), 0, "dead letters (log %s)", plog);
}

Test(shred_e2e, personal_fields_leave_the_producer_encrypted_and_restore_decrypts_them,
     .timeout = 300) {
  char prefix[128], cmd[512], out[4096], log[256], master[256], wrong[256];
  make_topics(prefix, sizeof(prefix), "shred_e2e");
  master_file(master, sizeof(master), MASTER);
  master_file(wrong, sizeof(wrong), WRONG_MASTER);
  char opt[300];
  snprintf(opt, sizeof(opt), "personal.master_key_file=%s", master);
  const char *extra[] = {"domain=orders", "snapshot.every=1000", opt, NULL};
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  pid_t p = esk_tp_start(prefix, "a", log, extra);

  /* three orders of two customers (cu-x twice) */
  char run[16], jsonl[4096], line[1024];
  snprintf(run, sizeof(run), "%d", (int)getpid());
  jsonl[0] = '\0';
  const char *orders[][2] = {{"o-1", "cu-x"}, {"o-2", "cu-y"}, {"o-3", "cu-x"}};
  for (int i = 0; i < 3; i++) {
    create_line(line, sizeof(line), run, orders[i][0], orders[i][1]);
    strcat(jsonl, line);
  }
  submit(prefix, jsonl, 0);

  raw_t ev, keys;
  read_raw(&ev, prefix, "events");
  cr_expect_eq(ev.n, 3);
  cr_expect(!holds(&ev.all, "secret.example") && !holds(&ev.all, " Lane") &&
                !holds(&ev.all, "Berlin"),
            "plaintext personal data in the events topic");
  cr_expect(holds(&ev.all, ESK_SHRED_PREFIX) && holds(&ev.all, "cu-x"), "no ciphertext");
  read_raw(&keys, prefix, "subject-keys");
  cr_expect_eq(keys.n, 2, "one key per customer, written once");

  /* a keyring from the topic and the master key decrypts every event */
  esk_error_t err = {0};
  esk_shred_t *sh = NULL;
  rd_kafka_t *rk = NULL;
  char ktopic[256], etopic[256];
  cr_assert_eq(esk_shred_new(&sh, master, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_reader_new(&rk, NULL, NULL, &err), ESK_OK, "%s", err.msg);
  esk_kafka_topic_name(ktopic, sizeof(ktopic), prefix, "orders", ESK_SHRED_TOPIC_KIND, &err);
  esk_kafka_topic_name(etopic, sizeof(etopic), prefix, "orders", "events", &err);
  cr_assert_eq(esk_shred_catch_up(sh, rk, ktopic, 20000, NULL, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(esk_shred_key_count(sh), 2);
  esk_shred_destroy(sh);
  rd_kafka_destroy(rk);

  /* kill -9; the new instance restores the orders from the encrypted events:
   * an item added to o-1 is accepted (o-1 exists), a second create refused */
  cr_expect_eq(esk_tp_stop(p, SIGKILL, 30000), 128 + SIGKILL);
  p = esk_tp_start(prefix, "a", log, extra);
  snprintf(jsonl, sizeof(jsonl),
           "{\"command_id\":\"c-%s-add\",\"type\":\"AddItem\",\"order_id\":\"o-1\","
           "\"item\":{\"product_id\":\"p-2\",\"quantity\":1,\"unit_price\":5}}\n",
           run);
  submit(prefix, jsonl, 0);
  create_line(jsonl, sizeof(jsonl), run, "o-2", "cu-y");
  memcpy(strstr(jsonl, "c-"), "d-", 2); /* a new command id */
  submit(prefix, jsonl, 1);
  cr_expect_eq(esk_tp_stop(p, SIGTERM, 30000), 0, "esk-producer did not exit 0 (log %s)", log);

  /* the broker's segment files of the events topic hold no plaintext either */
  cr_expect(!segments_hold(etopic, "secret.example"),
            "plaintext in the events topic's segment files");
  cr_expect(segments_hold(etopic, "cu-x"), "the check cannot see the segment files");

  /* a wrong master key: start-up stops with a clear error */
  snprintf(opt, sizeof(opt), "personal.master_key_file=%s", wrong);
  char wlog[256];
  esk_tp_log_path(wlog, sizeof(wlog), prefix, "wrong");
  pid_t w = esk_tp_start(prefix, "w", wlog, extra);
  int st = esk_tp_stop(w, 0, 60000);
  cr_expect(st != 0 && st != -1, "esk-producer with a wrong master key exited %d", st);
  snprintf(cmd, sizeof(cmd), "cat '%s'", wlog);
  esk_tp_run(cmd, 0, out, sizeof(out));
  cr_expect(strstr(out, "wrong master key file"), "%s", out);
  cr_expect(!strstr(out, WRONG_MASTER) && !strstr(out, MASTER), "a key in the log: %s", out);

  /* no master key: refused too, unless personal.plaintext says otherwise */
  const char *bare[] = {"domain=orders", NULL};
  esk_tp_log_path(wlog, sizeof(wlog), prefix, "nokey");
  w = esk_tp_start(prefix, "n", wlog, bare);
  st = esk_tp_stop(w, 0, 60000);
  cr_expect(st != 0 && st != -1, "esk-producer without a master key exited %d", st);
  snprintf(cmd, sizeof(cmd), "cat '%s'", wlog);
  esk_tp_run(cmd, 0, out, sizeof(out));
  cr_expect(strstr(out, "domain orders has personal fields") &&
                strstr(out, "personal.master_key_file is not set") &&
                strstr(out, "personal.plaintext=true"),
            "%s", out);

  /* the read side with the master key sees the plaintext */
  static char tail[1 << 16];
  tail_events(prefix, master, tail, sizeof(tail));
  cr_expect(strstr(tail, "\"customer_email\":\"cu-x@secret.example\"") &&
                strstr(tail, "\"street\":\"cu-y Lane\""),
            "%s", tail);
  tail_events(prefix, NULL, tail, sizeof(tail));
  cr_expect(!strstr(tail, "secret.example") && strstr(tail, ESK_SHRED_PREFIX),
            "without the key: %s", tail);
  esk_test_require_pg();
  char schema[96], schema2[96], plog[256], email[256];
  esk_test_unique_name(schema, sizeof(schema), "esk_shred");
  esk_test_unique_name(schema2, sizeof(schema2), "esk_shred_rb");
  esk_tp_log_path(plog, sizeof(plog), prefix, "projector");
  pid_t pj = start_event_log(prefix, schema, master, plog);
  PGconn *pg = esk_test_pg_connect_schema(schema);
  event_log_email(pg, "o-3", email, sizeof(email));
  cr_expect_str_eq(email, "cu-x@secret.example");

  /* export: every event of cu-x's orders (o-1: created, item added; o-3), decrypted */
  snprintf(cmd, sizeof(cmd),
           "ESK_MASTER_KEY_FILE='%s' %s subjects export --topic-prefix '%s' orders cu-x", master,
           ESK_TEST_ESKCTL_BIN, prefix);
  cr_assert_eq(esk_tp_run(cmd, 1, tail, sizeof(tail)), 0, "%s: %s", cmd, tail);
  int lines = 0;
  for (const char *c = tail; (c = strchr(c, '\n')); c++) lines++;
  cr_expect_eq(lines, 3, "%s", tail);
  cr_expect(strstr(tail, "\"OrderItemAdded\"") && strstr(tail, "cu-x@secret.example") &&
                !strstr(tail, "cu-y"),
            "%s", tail);

  /* forget cu-x (twice: idempotent) */
  snprintf(cmd, sizeof(cmd),
           "%s subjects forget --topic-prefix '%s' --grace-ms 200 orders cu-x",
           ESK_TEST_ESKCTL_BIN, prefix);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
  cr_expect(strstr(out, "forgotten orders subject=cu-x keys_destroyed=1"), "%s", out);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
  cr_expect(strstr(out, "keys_destroyed=0"), "again: %s", out);

  /* readers show the replacement for cu-x, the plaintext for cu-y */
  tail_events(prefix, master, tail, sizeof(tail));
  cr_expect(!strstr(tail, "cu-x@secret.example") && !strstr(tail, "cu-x Lane") &&
                strstr(tail, "\"customer_email\":\"[forgotten]\"") &&
                strstr(tail, "cu-y@secret.example"),
            "after forget: %s", tail);
  cr_expect(!strstr(tail, "\"error\""), "%s", tail);
  /* a new order of cu-x goes through, and a rebuilt read model forgets too */
  snprintf(opt, sizeof(opt), "personal.master_key_file=%s", master);
  p = esk_tp_start(prefix, "a", log, extra);
  create_line(jsonl, sizeof(jsonl), run, "o-4", "cu-x");
  submit(prefix, jsonl, 0);
  pid_t pj2 = start_event_log(prefix, schema2, master, plog);
  PGconn *pg2 = esk_test_pg_connect_schema(schema2);
  event_log_email(pg2, "o-1", email, sizeof(email));
  cr_expect_str_eq(email, "[forgotten]");
  event_log_email(pg2, "o-4", email, sizeof(email));
  cr_expect_str_eq(email, "[forgotten]");
  event_log_email(pg2, "o-2", email, sizeof(email));
  cr_expect_str_eq(email, "cu-y@secret.example");
  esk_buf_free(&ev.all);
  read_raw(&ev, prefix, "events");
  cr_expect(!holds(&ev.all, "secret.example"), "plaintext in the events topic after forget");
  cr_expect_eq(esk_tp_stop(pj, SIGTERM, 30000), 0, "esk-projector did not exit 0 (log %s)", plog);
  cr_expect_eq(esk_tp_stop(pj2, SIGTERM, 30000), 0, "esk-projector did not exit 0 (log %s)", plog);
  cr_expect_eq(esk_tp_stop(p, SIGTERM, 30000), 0, "esk-producer did not exit 0 (log %s)", log);
  expect_no_dead_letters(plog);
  PQfinish(pg);
  PQfinish(pg2);
  esk_test_drop_schema(schema);
  esk_test_drop_schema(schema2);

  unlink(master);
  unlink(wrong);
  esk_buf_free(&ev.all);
  esk_buf_free(&keys.all);
}

/* ---------------------------------------------- scrubbing the read models --- */

/* How many rows of every table of @p schema and its generations'
 * (<schema>_<projection>_g<N>) hold @p needle in their text. */
static long rows_holding(PGconn *pg, const char *schema, const char *needle) {
  const char *params[] = {schema, needle};
  PGresult *r = PQexecParams(
      pg,
      "select coalesce(sum((xpath('/row/n/text()', query_to_xml(format("
      "'select count(*) as n from %I.%I x where strpos(x::text, %L) > 0',"
      " table_schema, table_name, $2::text), false, true, '')))[1]::text::bigint), 0)"
      " from information_schema.tables where table_type = 'BASE TABLE' and"
      " (table_schema = $1 or table_schema like replace($1, '_', '\\_') || '\\_%\\_g%')",
      2, NULL, params, NULL, NULL, 0);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(pg));
  long n = atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  return n;
}

/* The single value of @p sql (one parameter, @p param), into @p out. */
static void sql_value(PGconn *pg, const char *sql, const char *param, char *out, size_t size) {
  const char *params[] = {param};
  PGresult *r = PQexecParams(pg, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(pg));
  cr_assert_eq(PQntuples(r), 1, "%s", sql);
  snprintf(out, size, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
  PQclear(r);
}

/* Waits up to @p secs for @p sql (one parameter) to give @p want. */
static int wait_value(PGconn *pg, const char *sql, const char *param, const char *want,
                      int secs) {
  char got[256] = "";
  for (int i = 0; i < secs * 10; i++) {
    PGresult *r = PQexecParams(pg, sql, param ? 1 : 0, NULL, (const char *[]){param}, NULL, NULL,
                               0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
             !strcmp(PQgetvalue(r, 0, 0), want);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
      snprintf(got, sizeof(got), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (ok) return 1;
    esk_time_sleep_ms(100);
  }
  cr_log_warn("%s ($1=%s): %s, not %s after %d s", sql, param ? param : "", got, want, secs);
  return 0;
}

/* Waits up to @p secs until no row of @p schema's tables holds @p needle. */
static int wait_scrubbed(PGconn *pg, const char *schema, const char *needle, int secs) {
  for (int i = 0; i < secs * 10; i++) {
    if (rows_holding(pg, schema, needle) == 0) return 1;
    esk_time_sleep_ms(100);
  }
  return 0;
}

/* Everything the read models hold of customers other than @p a and @p b, and
 * every total, as one text. */
#define OTHERS_SQL                                                                              \
  "select (select string_agg(x::text, E'\\n' order by order_id) from order_summaries x"         \
  "         where customer_id not in ($1, $2)) || E'\\n' ||"                                     \
  "       (select string_agg(x::text, E'\\n' order by customer_id, currency)"                   \
  "          from customer_statistics x) || E'\\n' ||"                                          \
  "       (select string_agg(e.aggregate_id || '/' || e.aggregate_version || ' ' ||"            \
  "                          e.payload::text, E'\\n' order by e.aggregate_id, e.aggregate_version)" \
  "          from event_log e where e.aggregate_id in (select order_id from order_summaries"    \
  "                                                   where customer_id not in ($1, $2))) ||"    \
  "       E'\\n' || (select count(*) || ' ' || sum(total) || ' ' || sum(item_count)"            \
  "                    from order_summaries)"

static void others(PGconn *pg, const char *a, const char *b, char **out) {
  const char *params[] = {a, b};
  PGresult *r = PQexecParams(pg, OTHERS_SQL, 2, NULL, params, NULL, NULL, 0);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(pg));
  *out = strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
}

/* eskctl subjects forget orders @p customer. */
static void forget(const char *prefix, const char *customer) {
  char cmd[512], out[1024];
  snprintf(cmd, sizeof(cmd), "%s subjects forget --topic-prefix '%s' --grace-ms 200 orders %s",
           ESK_TEST_ESKCTL_BIN, prefix, customer);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
}

#define SUMMARIES_FILE ESK_SOURCE_DIR "/deploy/projections/order_summaries.conf"
#define STATISTICS_FILE ESK_SOURCE_DIR "/deploy/projections/customer_statistics.conf"
#define N_CUSTOMERS 4
#define ORDERS_EACH 3

/* The three orders read models, started under the test's prefix and schema,
 * each with its own log (<plog>.<i>). */
typedef struct {
  pid_t pid[3];
  char group[3][256];
  char log[3][300];
} models_t;

static const char *const model_proj[3][2] = {{"--projection", "event_log"},
                                             {"--projection-file", SUMMARIES_FILE},
                                             {"--projection-file", STATISTICS_FILE}};

static void start_models(models_t *m, const char *prefix, const char *schema, const char *master,
                         const char *plog) {
  for (int i = 0; i < 3; i++) {
    snprintf(m->group[i], sizeof(m->group[i]), "%sprojection.%s.%d", prefix, schema, i);
    snprintf(m->log[i], sizeof(m->log[i]), "%s.%d", plog, i);
    unlink(m->log[i]); /* a restart's log alone: its HTTP port is the first one logged */
    m->pid[i] = start_projector(prefix, schema, model_proj[i], m->group[i], master, m->log[i]);
  }
}

static void stop_models(models_t *m) {
  for (int i = 0; i < 3; i++) {
    cr_expect_eq(esk_tp_stop(m->pid[i], SIGTERM, 30000), 0, "esk-projector %d did not exit 0 "
                 "(log %s)", i, m->log[i]);
    expect_no_dead_letters(m->log[i]);
  }
}

/* esk_projector_subjects_scrubbed_total of model @p i (from its /metrics),
 * once it is @p want or after 10 s (the counter moves just after the commit). */
static double scrubbed_metric(const models_t *m, int i, const char *projection, double want) {
  static char body[1 << 18];
  char series[160];
  double v = -1;
  int port = esk_tp_http_port(m->log[i], 10000);
  cr_assert_gt(port, 0, "no HTTP port in %s", m->log[i]);
  snprintf(series, sizeof(series), "esk_projector_subjects_scrubbed_total{projection=\"%s\"}",
           projection);
  for (int k = 0; k < 100 && v != want; k++) {
    if (k) esk_time_sleep_ms(100);
    cr_assert_eq(esk_tp_http_get(port, "/metrics", body, sizeof(body)), 200);
    esk_tp_metric(body, series, &v);
  }
  return v;
}

/* N_CUSTOMERS customers with ORDERS_EACH orders each, every order paid. */
static void place_orders(const char *prefix, const char *run) {
  static char jsonl[1 << 16];
  char line[1024];
  size_t off = 0;
  for (int c = 0; c < N_CUSTOMERS; c++)
    for (int o = 0; o < ORDERS_EACH; o++) {
      char order[32], cu[16];
      snprintf(order, sizeof(order), "so-%d-%d", c, o);
      snprintf(cu, sizeof(cu), "scu-%d", c);
      create_line(line, sizeof(line), run, order, cu);
      off += (size_t)snprintf(jsonl + off, sizeof(jsonl) - off, "%s", line);
      off += (size_t)snprintf(jsonl + off, sizeof(jsonl) - off,
                              "{\"command_id\":\"pay-%s-%s\",\"type\":\"ProcessPayment\","
                              "\"order_id\":\"%s\",\"payment_id\":\"pm-%s\",\"amount\":2500,"
                              "\"currency\":\"EUR\",\"method\":\"credit_card\"}\n",
                              run, order, order, order);
    }
  submit(prefix, jsonl, 0);
}

Test(shred_e2e, read_models_holding_a_forgotten_subjects_plaintext_are_scrubbed, .timeout = 400) {
  char prefix[128], cmd[4096], out[4096], log[256], plog[256], master[256];
  char schema[96], run[16], opt[300];
  make_topics(prefix, sizeof(prefix), "scrub_e2e");
  master_file(master, sizeof(master), MASTER);
  snprintf(opt, sizeof(opt), "personal.master_key_file=%s", master);
  const char *extra[] = {"domain=orders", opt, NULL};
  esk_tp_log_path(log, sizeof(log), prefix, "p");
  esk_tp_log_path(plog, sizeof(plog), prefix, "projectors");
  pid_t p = esk_tp_start(prefix, "a", log, extra);
  snprintf(run, sizeof(run), "%d", (int)getpid());
  esk_test_require_pg();
  esk_test_unique_name(schema, sizeof(schema), "esk_scrub");
  models_t m;
  start_models(&m, prefix, schema, master, plog);
  place_orders(prefix, run);
  PGconn *pg = esk_test_pg_connect_schema(schema);
  char n_orders[16], n_events[16];
  snprintf(n_orders, sizeof(n_orders), "%d", N_CUSTOMERS * ORDERS_EACH);
  snprintf(n_events, sizeof(n_events), "%d", 2 * N_CUSTOMERS * ORDERS_EACH);
  cr_assert(wait_value(pg, "select count(*) from order_summaries where status = 'PAID' and $1 = $1",
                       "x", n_orders, 60), "order_summaries never caught up (logs %s.*)", plog);
  cr_assert(wait_value(pg, "select count(*) from event_log where $1 = $1", "x", n_events, 60),
            "event_log never caught up (logs %s.*)", plog);
  cr_assert(wait_value(pg, "select sum(orders) from customer_statistics where $1 = $1", "x",
                       n_orders, 60), "customer_statistics never caught up (logs %s.*)", plog);
  /* the plaintext is there, and the check sees it: in order_summaries and event_log */
  cr_expect_eq(rows_holding(pg, schema, "scu-0@secret.example"), 2 * ORDERS_EACH);
  cr_expect_eq(rows_holding(pg, schema, "scu-0 Lane"), 2 * ORDERS_EACH);
  char *before = NULL, *after = NULL;
  others(pg, "scu-0", "scu-1", &before);

  /* forget scu-0 while the projectors run: scrubbed within the interval */
  int64_t t0 = esk_time_mono_ms();
  forget(prefix, "scu-0");
  cr_expect(wait_scrubbed(pg, schema, "scu-0@secret.example", 60) &&
                wait_scrubbed(pg, schema, "scu-0 Lane", 10),
            "scu-0's plaintext still in %ld rows (logs %s.*)",
            rows_holding(pg, schema, "scu-0@secret.example"), plog);
  cr_log_info("scrubbed %d ms after the forget began", (int)(esk_time_mono_ms() - t0));
  cr_expect_eq(scrubbed_metric(&m, 1, "order_summaries", 1), 1);
  cr_expect_eq(scrubbed_metric(&m, 0, "event_log", 1), 1);
  char v[256];
  sql_value(pg, "select string_agg(distinct customer_email || ' ' || (shipping_address->>'street'),"
                " ',') from order_summaries where customer_id = $1", "scu-0", v, sizeof(v));
  cr_expect_str_eq(v, "[forgotten] [forgotten]");
  sql_value(pg, "select string_agg(distinct payload->>'customer_email', ',') from event_log"
                " where payload->>'customer_id' = $1", "scu-0", v, sizeof(v));
  cr_expect_str_eq(v, "[forgotten]");
  cr_expect_eq(rows_holding(pg, schema, "scu-1@secret.example"), 2 * ORDERS_EACH,
               "another customer's rows changed");
  others(pg, "scu-0", "scu-1", &after);
  cr_expect_str_eq(after, before, "other customers' rows or the totals changed");
  free(after);

  /* forget scu-1 while the projectors are down: scrubbed when they come back */
  stop_models(&m);
  forget(prefix, "scu-1");
  cr_expect_eq(rows_holding(pg, schema, "scu-1@secret.example"), 2 * ORDERS_EACH);
  start_models(&m, prefix, schema, master, plog);
  cr_expect(wait_scrubbed(pg, schema, "scu-1@secret.example", 60) &&
                wait_scrubbed(pg, schema, "scu-1 Lane", 10),
            "scu-1's plaintext still in %ld rows after a restart (logs %s.*)",
            rows_holding(pg, schema, "scu-1@secret.example"), plog);
  cr_expect_eq(rows_holding(pg, schema, "scu-2@secret.example"), 2 * ORDERS_EACH);
  others(pg, "scu-0", "scu-1", &after);
  cr_expect_str_eq(after, before, "other customers' rows or the totals changed");
  free(after);
  sql_value(pg, "select count(*) from esk_projection_scrubs where subject = $1", "scu-1", v,
            sizeof(v));
  cr_expect_str_eq(v, "2", "event_log and order_summaries record the scrub once each");

  /* a blue-green rebuild of order_summaries: the new generation never holds
   * the forgotten customers' plaintext, the others' is there */
  char rlog[300];
  snprintf(rlog, sizeof(rlog), "%s.rebuild", plog);
  snprintf(cmd, sizeof(cmd),
           "%s projection rebuild order_summaries --projection-file %s --schema %s --group %s "
           "--domain orders --topic-prefix '%s' --log %s --timeout 120 -X domain=orders -X %s "
           "-X personal.scrub.interval.ms=300",
           ESK_TEST_ESKCTL_BIN, SUMMARIES_FILE, schema, m.group[1], prefix, rlog, opt);
  cr_expect_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
  cr_expect(wait_value(pg, "select count(*) from order_summaries where customer_email = $1",
                       "scu-2@secret.example", "3", 30), "the rebuilt generation (log %s)", rlog);
  cr_expect_eq(rows_holding(pg, schema, "scu-0@secret.example"), 0);
  cr_expect_eq(rows_holding(pg, schema, "scu-1@secret.example"), 0);
  others(pg, "scu-0", "scu-1", &after);
  cr_expect_str_eq(after, before, "after the rebuild");
  free(after);
  free(before);

  /* forget scu-2 after the rebuild: the retired generation, kept until
   * drop-generation, holds its plaintext too, and is scrubbed with the live one */
  cr_expect_eq(rows_holding(pg, schema, "scu-2@secret.example"), 3 * ORDERS_EACH,
               "event_log, the live and the retired order_summaries");
  forget(prefix, "scu-2");
  cr_expect(wait_scrubbed(pg, schema, "scu-2@secret.example", 60) &&
                wait_scrubbed(pg, schema, "scu-2 Lane", 10),
            "scu-2's plaintext still in %ld rows after the rebuild (logs %s.*)",
            rows_holding(pg, schema, "scu-2@secret.example"), plog);
  sql_value(pg, "select string_agg(projection, ',' order by projection) from"
                " esk_projection_scrubs where subject = $1", "scu-2", v, sizeof(v));
  cr_expect_str_eq(v, "event_log,order_summaries,order_summaries.g2",
                   "event_log and both generations record the scrub");
  cr_expect_eq(rows_holding(pg, schema, "scu-3@secret.example"), 3 * ORDERS_EACH);

  stop_models(&m);
  cr_expect_eq(esk_tp_stop(p, SIGTERM, 30000), 0, "esk-producer did not exit 0 (log %s)", log);
  PQfinish(pg);
  esk_test_drop_schema(schema);
  unlink(master);
}
