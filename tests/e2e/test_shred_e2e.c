/* Crypto-shredding end to end on the real broker (docs/architecture.md,
 * "Personal data"): esk-producer -X domain=orders with a master key writes
 * OrderCreated's email and address only as ciphertext (the raw bytes of the
 * events topic, and the broker's segment files, never hold them), and each
 * customer's key once, wrapped, to <prefix>orders.subject-keys in the same
 * transaction; a keyring made from that topic decrypts them; a producer
 * restarted with kill -9 restores the orders from the encrypted events; a
 * wrong master key stops start-up with a clear error. esk-projector
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

/* esk-projector event_log of the prefix's orders events into @p schema. */
static pid_t start_event_log(const char *prefix, const char *schema, const char *master,
                             const char *log) {
  char a_topic[256], a_schema[128], a_group[256], a_key[300];
  snprintf(a_topic, sizeof(a_topic), "topic=%sorders.events", prefix);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%sprojection.%s", prefix, schema);
  snprintf(a_key, sizeof(a_key), "personal.master_key_file=%s", master);
  const char *argv[] = {ESK_BINARY_DIR "/bin/esk-projector", "--projection", "event_log",
                        "-X", "domain=orders", "-X", a_topic, "-X", a_schema, "-X", a_group,
                        "-X", a_key, NULL};
  return esk_tp_spawn(argv, log);
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

Test(shred_e2e, personal_fields_leave_the_producer_encrypted_and_restore_decrypts_them,
     .timeout = 300) {
  char base[96], prefix[128], cmd[512], out[4096], log[256], master[256], wrong[256];
  esk_test_unique_name(base, sizeof(base), "shred_e2e");
  snprintf(prefix, sizeof(prefix), "%s.", base);
  snprintf(cmd, sizeof(cmd),
           "%s topics create --domain orders --topic-prefix '%s' --partitions %d "
           "--compaction-lag-ms 5000",
           ESK_TEST_ESKCTL_BIN, prefix, PARTS);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
  cr_assert(strstr(out, "orders.subject-keys"), "%s", out);
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
  /* no dead letters: forgetting is not an error */
  snprintf(cmd, sizeof(cmd), "grep -c 'dead-lettered' '%s' || true", plog);
  esk_tp_run(cmd, 0, out, sizeof(out));
  cr_expect_eq(atoi(out), 0, "dead letters (log %s)", plog);
  PQfinish(pg);
  PQfinish(pg2);
  esk_test_drop_schema(schema);
  esk_test_drop_schema(schema2);

  unlink(master);
  unlink(wrong);
  esk_buf_free(&ev.all);
  esk_buf_free(&keys.all);
}
