#include "esk_test_producer.h"
#include "esk_test_bank.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bank/bank_avro.h"
#include "esk/hmap.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "esk_test.h"

void esk_tp_topics(char *prefix, size_t size, const char *name, int partitions) {
  char base[96], cmd[512], out[2048];
  esk_test_unique_name(base, sizeof(base), name);
  snprintf(prefix, size, "%s.", base);
  snprintf(cmd, sizeof(cmd), "%s topics create --topic-prefix '%s' --partitions %d",
           ESK_TEST_ESKCTL_BIN, prefix, partitions);
  cr_assert_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 0, "%s: %s", cmd, out);
}

rd_kafka_t *esk_tp_client(void) { return esk_test_kafka_client(); }

void esk_tp_delete_topics(const char *prefix) {
  static const char *const kinds[] = {"commands", "events", "command-results", "snapshots"};
  for (int i = 0; i < 4; i++) {
    char t[256];
    snprintf(t, sizeof(t), "%sbank.%s", prefix, kinds[i]);
    esk_test_delete_topic(t);
  }
}

pid_t esk_tp_start(const char *prefix, const char *instance, const char *log_path,
                   const char *const *extra) {
  char a_prefix[256], a_tid[256];
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", prefix);
  snprintf(a_tid, sizeof(a_tid), "transactional.id=%stx.%s", prefix, instance);
  const char *argv[64] = {ESK_TEST_PRODUCER_BIN,
                          "-X", a_prefix,
                          "-X", a_tid,
                          "-X", "kafka.consumer.session.timeout.ms=6000",
                          "-X", "batch.max.ms=20",
                          "-X", "stats.interval.ms=0"};
  size_t n = 11;
  for (size_t i = 0; extra && extra[i] && n < 60; i++) {
    argv[n++] = "-X";
    argv[n++] = extra[i];
  }
  argv[n] = NULL;
  return esk_tp_spawn(argv, log_path);
}

pid_t esk_tp_spawn(const char *const *argv, const char *log_path) {
  pid_t pid = esk_test_spawn((char *const *)argv, log_path);
  cr_assert_neq(pid, -1, "fork");
  return pid;
}

void esk_tp_log_path(char *buf, size_t size, const char *prefix, const char *what) {
  snprintf(buf, size, "/tmp/%s%s.log", prefix, what);
  unlink(buf);
}

pid_t esk_tp_setup(char *prefix, size_t size, const char *name, int partitions, char *log,
                   size_t log_size, const char *const *extra) {
  esk_tp_topics(prefix, size, name, partitions);
  esk_tp_log_path(log, log_size, prefix, "p");
  return esk_tp_start(prefix, "a", log, extra);
}

int esk_tp_stop(pid_t pid, int sig, int timeout_ms) {
  int st = 0;
  kill(pid, sig);
  for (int waited = 0; waited <= timeout_ms; waited += 20) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    esk_time_sleep_ms(20);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return -1;
}

int esk_tp_run(const char *cmd, int with_stderr, char *out, size_t size) {
  char full[8192];
  snprintf(full, sizeof(full), "%s%s", cmd, with_stderr ? " 2>&1" : "");
  FILE *p = popen(full, "r");
  cr_assert(p, "popen %s", cmd);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = 0;
  /* drain the rest: closing early would kill a long output's writer (SIGPIPE) */
  char sink[4096];
  while (fread(sink, 1, sizeof(sink), p) > 0) {
  }
  int st = pclose(p);
  cr_assert(WIFEXITED(st), "%s did not exit normally", cmd);
  return WEXITSTATUS(st);
}

int esk_tp_submit(const char *prefix, const char *jsonl, int timeout_ms, char *out, size_t size) {
  char path[64];
  esk_test_temp_file(path, sizeof(path), "esk_submit_", jsonl, strlen(jsonl));
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s submit --topic-prefix '%s' --file %s --timeout %d",
           ESK_TEST_ESKCTL_BIN, prefix, path, timeout_ms);
  int rc = esk_tp_run(cmd, 0, out, size);
  unlink(path);
  return rc;
}

/* Reads partitions 0..parts-1 of @p topic from the beginning with @p fn. Right
 * after a broker restart or a leader's death the reads may fail for a while
 * ("Not leader", watermarks unknown): the whole read is then made again, after
 * @p reset empties the context, for up to 30 s before the test fails. */
static void read_all(const char *topic, int parts, const char *const *conf, esk_kafka_msg_fn fn,
                     void *ctx, void (*reset)(void *)) {
  int64_t deadline = esk_time_mono_ms() + 30000;
  for (;;) {
    esk_error_t err = {0};
    rd_kafka_t *rk = NULL;
    int rc = esk_kafka_reader_new(&rk, NULL, conf, &err);
    for (int p = 0; rc == ESK_OK && p < parts; p++)
      rc = esk_kafka_read_partition(rk, topic, p, RD_KAFKA_OFFSET_BEGINNING, 20000, fn, ctx, NULL,
                                    &err);
    if (rk) rd_kafka_destroy(rk);
    if (rc == ESK_OK) return;
    cr_assert(rc == ESK_ERETRY && esk_time_mono_ms() < deadline, "reading %s: %s", topic, err.msg);
    reset(ctx);
    esk_time_sleep_ms(500);
  }
}

typedef struct read_ctx_s {
  esk_bank_avro_t *avro;
  esk_tp_event_t *evs;
  size_t n, cap;
} read_ctx_t;

static int on_event(const rd_kafka_message_t *m, void *opaque) {
  read_ctx_t *c = opaque;
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 1024;
    c->evs = realloc(c->evs, c->cap * sizeof(*c->evs));
    cr_assert_not_null(c->evs);
  }
  esk_bank_event_t ev;
  const char *causation = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_bank_avro_decode_event(c->avro, &ev, &causation, m->payload, m->len, &err),
               ESK_OK, "event at %d/%lld: %s", (int)m->partition, (long long)m->offset, err.msg);
  esk_tp_event_t *e = &c->evs[c->n++];
  memset(e, 0, sizeof(*e));
  e->partition = m->partition;
  e->offset = m->offset;
  e->type = ev.type;
  e->version = ev.aggregate_version;
  snprintf(e->account, sizeof(e->account), "%s", ev.account_id);
  snprintf(e->causation, sizeof(e->causation), "%s", causation ? causation : "");
  cr_assert(m->key_len == strlen(ev.account_id) && !memcmp(m->key, ev.account_id, m->key_len),
            "event key is not the account id %s", ev.account_id);
  return 0;
}

static void reset_events(void *opaque) { ((read_ctx_t *)opaque)->n = 0; }

size_t esk_tp_read_events(esk_tp_event_t **out, const char *prefix, int partitions) {
  esk_error_t err = {0};
  read_ctx_t c = {0};
  char topic[256];
  cr_assert_eq(esk_bank_avro_new(&c.avro, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_topic_name(topic, sizeof(topic), prefix, "bank", "events", &err), ESK_OK);
  read_all(topic, partitions, NULL, on_event, &c, reset_events);
  esk_bank_avro_destroy(c.avro);
  *out = c.evs;
  return c.n;
}

typedef struct ver_s {
  int64_t version;
  int32_t partition;
} ver_t;

size_t esk_tp_check_versions(const esk_tp_event_t *evs, size_t n) {
  esk_hmap_t *m = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_hmap_new(&m, sizeof(ver_t), n, 0, &err), ESK_OK);
  for (size_t i = 0; i < n; i++) {
    const esk_tp_event_t *e = &evs[i];
    ver_t *v = esk_hmap_get(m, e->account, strlen(e->account));
    if (!v) {
      ver_t z = {0, e->partition};
      cr_assert_eq(esk_hmap_put(m, e->account, strlen(e->account), &z, (void **)&v, NULL, &err),
                   ESK_OK);
    }
    cr_assert_eq(v->partition, e->partition, "account %s has events in partitions %d and %d",
                 e->account, v->partition, e->partition);
    cr_assert_eq(e->version, v->version + 1,
                 "account %s: version %lld follows %lld (partition %d offset %lld)", e->account,
                 (long long)e->version, (long long)v->version, (int)e->partition,
                 (long long)e->offset);
    v->version = e->version;
  }
  size_t accounts = esk_hmap_count(m);
  esk_hmap_destroy(m);
  return accounts;
}

int esk_tp_file_contains(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof(line), f)) found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

void esk_tp_print_log_tail(const char *path, int max, int problems) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[1024], **ring = calloc((size_t)max, sizeof(char *));
  size_t n = 0;
  while (ring && fgets(line, sizeof(line), f)) {
    if (problems && !strstr(line, "level=warn") && !strstr(line, "level=error")) continue;
    free(ring[n % (size_t)max]);
    ring[n++ % (size_t)max] = strdup(line);
  }
  fclose(f);
  size_t first = n > (size_t)max ? n - (size_t)max : 0;
  fprintf(stderr, "---- %s: the last %zu of %zu%s lines\n", path, n - first, n,
          problems ? " warn/error" : "");
  for (size_t i = first; ring && i < n; i++) fprintf(stderr, "%s", ring[i % (size_t)max]);
  for (int i = 0; ring && i < max; i++) free(ring[i]);
  free(ring);
}

typedef struct res_ctx_s {
  esk_hmap_t *ids;
  esk_tp_results_t r;
} res_ctx_t;

static int on_result(const rd_kafka_message_t *m, void *opaque) {
  res_ctx_t *c = opaque;
  json_error_t je;
  json_t *o = json_loadb(m->payload, m->len, 0, &je);
  cr_assert_not_null(o, "result at %d/%lld is not JSON", (int)m->partition, (long long)m->offset);
  const char *id = json_string_value(json_object_get(o, "command_id"));
  const char *st = json_string_value(json_object_get(o, "status"));
  cr_assert(id && st, "result without command_id or status");
  c->r.messages++;
  int inserted = 0;
  char one = 1;
  esk_error_t err = {0};
  cr_assert_eq(esk_hmap_put(c->ids, id, strlen(id), &one, NULL, &inserted, &err), ESK_OK);
  if (inserted) {
    c->r.distinct++;
    if (!strcmp(st, "accepted")) c->r.accepted++;
  }
  json_decref(o);
  return 0;
}

static void reset_results(void *opaque) {
  res_ctx_t *c = opaque;
  esk_error_t err = {0};
  esk_hmap_destroy(c->ids);
  cr_assert_eq(esk_hmap_new(&c->ids, 1, 0, 0, &err), ESK_OK);
  memset(&c->r, 0, sizeof(c->r));
}

esk_tp_results_t esk_tp_count_results(const char *prefix, int partitions) {
  esk_error_t err = {0};
  res_ctx_t c;
  memset(&c, 0, sizeof(c));
  char topic[256];
  cr_assert_eq(esk_hmap_new(&c.ids, 1, 0, 0, &err), ESK_OK);
  esk_kafka_topic_name(topic, sizeof(topic), prefix, "bank", "command-results", &err);
  read_all(topic, partitions, NULL, on_result, &c, reset_results);
  esk_hmap_destroy(c.ids);
  return c.r;
}

esk_tp_results_t esk_tp_wait_results(const char *prefix, int partitions, size_t distinct,
                                     int timeout_ms) {
  esk_tp_results_t r;
  for (int waited = 0;; waited += 500) {
    r = esk_tp_count_results(prefix, partitions);
    if (r.distinct >= distinct || waited >= timeout_ms) return r;
    esk_time_sleep_ms(500);
  }
}

int esk_tp_http_port(const char *path, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 50) {
    FILE *f = fopen(path, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
      const char *a = strstr(line, "msg=\"http endpoints listening\" addr=");
      const char *colon = a ? strchr(a + 37, ' ') : NULL;
      if (!colon) continue;
      while (colon > a && colon[-1] != ':') colon--; /* the last ':' of the address */
      fclose(f);
      return atoi(colon);
    }
    if (f) fclose(f);
    esk_time_sleep_ms(50);
  }
  cr_assert_fail("no 'http endpoints listening' line in %s within %d ms", path, timeout_ms);
  return -1;
}

/* ------------------------------------------------- commands and checks --- */

/* Delivery reports of the generator's commands, served by rd_kafka_poll() and
 * rd_kafka_flush() on the test's thread; the opaque is the generator. */
static void gen_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  esk_tp_gen_t *g = opaque;
  if (!m->err) return;
  if (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION || m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
    if (g->n_unsent == g->cap_unsent) {
      g->cap_unsent = g->cap_unsent ? 2 * g->cap_unsent : 64;
      g->unsent = realloc(g->unsent, g->cap_unsent * sizeof(*g->unsent));
      cr_assert_not_null(g->unsent);
    }
    struct esk_tp_unsent_s *u = &g->unsent[g->n_unsent++];
    u->key = malloc(m->key_len + 1);
    u->value = malloc(m->len + 1);
    cr_assert(u->key && u->value);
    memcpy(u->key, m->key, m->key_len);
    memcpy(u->value, m->payload, m->len);
    u->key_len = m->key_len;
    u->value_len = m->len;
    return;
  }
  if (!g->undelivered++) esk_test_describe_undelivered(g->first, sizeof(g->first), m);
}

/* How many partitions the client's metadata gives the commands topic, every
 * one with a leader; 0 if it does not within @p timeout_ms. */
static int gen_partitions(esk_tp_gen_t *g, int timeout_ms) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(g->rk, g->topic, NULL);
  int n = 0;
  for (int64_t t0 = esk_time_mono_ms(); !n && esk_time_mono_ms() - t0 < timeout_ms;) {
    const struct rd_kafka_metadata *md = NULL;
    if (!rd_kafka_metadata(g->rk, 0, rkt, &md, 5000) && md->topic_cnt == 1 &&
        !md->topics[0].err) {
      n = md->topics[0].partition_cnt;
      for (int i = 0; i < md->topics[0].partition_cnt; i++)
        if (md->topics[0].partitions[i].err || md->topics[0].partitions[i].leader < 0) n = 0;
    }
    if (md) rd_kafka_metadata_destroy(md);
    if (!n) esk_time_sleep_ms(100);
  }
  rd_kafka_topic_destroy(rkt);
  return n;
}

/* Sends again the commands that never left (gen_delivered), in their order. */
static void gen_resend(esk_tp_gen_t *g) {
  size_t n = g->n_unsent;
  struct esk_tp_unsent_s *u = g->unsent;
  g->unsent = NULL;
  g->n_unsent = g->cap_unsent = 0;
  int parts = gen_partitions(g, 60000);
  cr_assert_eq(parts, g->partitions, "topic %s: %d partitions with leaders, not %d, 60 s after "
               "%zu commands were refused as to an unknown partition", g->topic, parts,
               g->partitions, n);
  cr_log_warn("%zu commands were refused by this client as to an unknown partition of %s (a "
              "broker just restarted lags behind the metadata): sent again", n, g->topic);
  for (size_t i = 0; i < n; i++) {
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(g->rk, RD_KAFKA_V_TOPIC(g->topic),
                                  RD_KAFKA_V_KEY(u[i].key, u[i].key_len),
                                  RD_KAFKA_V_VALUE(u[i].value, u[i].value_len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(g->rk, 10);
    cr_assert_eq(e, 0, "%s", rd_kafka_err2str(e));
    free(u[i].key);
    free(u[i].value);
  }
  free(u);
  g->resent += n;
}

void esk_tp_gen_init(esk_tp_gen_t *g, const char *prefix) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256];
  memset(g, 0, sizeof(*g));
  esk_kafka_topic_name(g->topic, sizeof(g->topic), prefix, "bank", "commands", &err);
  cr_assert_eq(esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK, "%s", err.msg);
  rd_kafka_conf_set_dr_msg_cb(conf, gen_delivered);
  rd_kafka_conf_set_opaque(conf, g);
  g->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  cr_assert_not_null(g->rk, "rd_kafka_new: %s", errstr);
  g->partitions = gen_partitions(g, 10000);
  cr_assert_gt(g->partitions, 0, "topic %s: no partitions with leaders in 10 s", g->topic);
  cr_assert_eq(esk_bank_avro_new(&g->avro, &err), ESK_OK);
}

void esk_tp_gen_send(esk_tp_gen_t *g, esk_bank_command_type_t type, const char *cid,
                     const char *acc, int64_t units) {
  esk_error_t err = {0};
  esk_bank_command_t c = {.type = type, .command_id = cid, .account_id = acc, .actor = "e2e",
                          .correlation_id = cid};
  if (type == ESK_BANK_CMD_OPEN_ACCOUNT) {
    c.u.open.owner_id = "owner";
    c.u.open.initial_deposit = (esk_bank_money_in_t){units, "EUR"};
  } else {
    c.u.deposit.amount = (esk_bank_money_in_t){units, "EUR"};
  }
  esk_buf_reset(&g->buf);
  cr_assert_eq(esk_bank_avro_encode_command(g->avro, &g->buf, &c, &err), ESK_OK, "%s", err.msg);
  rd_kafka_resp_err_t e;
  while ((e = rd_kafka_producev(g->rk, RD_KAFKA_V_TOPIC(g->topic),
                                RD_KAFKA_V_KEY(acc, strlen(acc)),
                                RD_KAFKA_V_VALUE(g->buf.data, g->buf.len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
         RD_KAFKA_RESP_ERR__QUEUE_FULL)
    rd_kafka_poll(g->rk, 10);
  cr_assert_eq(e, 0, "%s", rd_kafka_err2str(e));
  rd_kafka_poll(g->rk, 0);
}

void esk_tp_gen_open_accounts(esk_tp_gen_t *g, const char *acc_prefix, int n) {
  char cid[32], acc[96];
  for (int i = 0; i < n; i++) {
    snprintf(cid, sizeof(cid), "o%d", i);
    snprintf(acc, sizeof(acc), "%s%d", acc_prefix, i);
    esk_tp_gen_send(g, ESK_BANK_CMD_OPEN_ACCOUNT, cid, acc, 0);
  }
}

void esk_tp_gen_deposit(esk_tp_gen_t *g, const char *acc_prefix, int i, int account,
                        int64_t units) {
  char cid[32], acc[96];
  snprintf(cid, sizeof(cid), "d%d", i);
  snprintf(acc, sizeof(acc), "%s%d", acc_prefix, account);
  esk_tp_gen_send(g, ESK_BANK_CMD_DEPOSIT_MONEY, cid, acc, units);
}

void esk_tp_gen_flush(esk_tp_gen_t *g) {
  for (int round = 0;; round++) {
    rd_kafka_resp_err_t e = rd_kafka_flush(g->rk, 20000);
    cr_assert_eq(e, 0, "the test's commands were not all acknowledged in 20 s: %s",
                 rd_kafka_err2str(e));
    cr_assert_eq(g->undelivered, 0,
                 "%d of the test's commands were not delivered to %s (the first: %s): the "
                 "producer under test never saw them", g->undelivered, g->topic, g->first);
    if (!g->n_unsent) return;
    cr_assert_lt(round, 5, "%zu commands still refused as to an unknown partition of %s after "
                 "5 rounds", g->n_unsent, g->topic);
    gen_resend(g);
  }
}

void esk_tp_gen_destroy(esk_tp_gen_t *g) {
  esk_tp_gen_flush(g);
  rd_kafka_destroy(g->rk);
  free(g->unsent);
  esk_bank_avro_destroy(g->avro);
  esk_buf_free(&g->buf);
}

/* Every event's causation id is a distinct command id. */
void esk_tp_check_causation_unique(const esk_tp_event_t *evs, size_t n) {
  esk_hmap_t *m = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_hmap_new(&m, 1, n, 0, &err), ESK_OK);
  for (size_t i = 0; i < n; i++) {
    int inserted = 0;
    char one = 1;
    cr_assert_eq(esk_hmap_put(m, evs[i].causation, strlen(evs[i].causation), &one, NULL,
                              &inserted, &err),
                 ESK_OK);
    cr_assert(inserted, "command %s has more than one event (partition %d offset %lld)",
              evs[i].causation, (int)evs[i].partition, (long long)evs[i].offset);
  }
  esk_hmap_destroy(m);
}

/* The committed events, read again until @p want are visible or 30 s pass: a
 * commit's markers reach the results and events partitions one after the other,
 * so right after the last result is readable its events may still be behind the
 * last stable offset for a moment. More than @p want is returned at once. */
size_t esk_tp_read_events_settled(esk_tp_event_t **evs, const char *prefix, int parts,
                                  size_t want) {
  size_t ne = 0;
  for (int i = 0; i < 60; i++) {
    ne = esk_tp_read_events(evs, prefix, parts);
    if (ne >= want) break;
    free(*evs);
    *evs = NULL;
    esk_time_sleep_ms(500);
  }
  if (!*evs) ne = esk_tp_read_events(evs, prefix, parts);
  return ne;
}

void esk_tp_check_exactly_once(const char *prefix, int parts, int accounts, int deposits) {
  size_t n = (size_t)(accounts + deposits);
  esk_tp_results_t r = esk_tp_wait_results(prefix, parts, n, 120000);
  cr_assert_eq(r.distinct, n, "results for every command (%zu of %zu)", r.distinct, n);
  cr_expect_eq(r.messages, n, "exactly one committed result per command (%zu)", r.messages);
  cr_expect_eq(r.accepted, n, "all accepted");
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events_settled(&evs, prefix, parts, n);
  cr_expect_eq(ne, n, "one event per accepted command: none missing, none doubled (%zu)", ne);
  esk_tp_check_causation_unique(evs, ne);
  cr_expect_eq(esk_tp_check_versions(evs, ne), (size_t)accounts);
  free(evs);
}

static int count_msg(const rd_kafka_message_t *m, void *opaque) {
  (void)m;
  (*(size_t *)opaque)++;
  return 0;
}

static void reset_count(void *opaque) { *(size_t *)opaque = 0; }

/* Event records in the log including those of aborted transactions. */
size_t esk_tp_count_uncommitted_events(const char *prefix, int parts) {
  static const char *const ru[] = {"isolation.level", "read_uncommitted", NULL};
  esk_error_t err = {0};
  char topic[256];
  size_t n = 0;
  esk_kafka_topic_name(topic, sizeof(topic), prefix, "bank", "events", &err);
  read_all(topic, parts, ru, count_msg, &n, reset_count);
  return n;
}

static int32_t leader_once(rd_kafka_t *rk, const char *topic, int32_t partition) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  int32_t leader = -1;
  if (!rd_kafka_metadata(rk, 0, t, &md, 5000)) {
    if (md->topic_cnt == 1 && !md->topics[0].err && partition < md->topics[0].partition_cnt)
      leader = md->topics[0].partitions[partition].leader;
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(t);
  return leader;
}

int32_t esk_tp_leader_of(const char *topic, int32_t partition) {
  rd_kafka_t *rk = esk_test_kafka_client();
  int32_t leader = -1;
  for (int64_t deadline = esk_time_mono_ms() + 30000; leader < 0; esk_time_sleep_ms(200)) {
    leader = leader_once(rk, topic, partition);
    cr_assert(leader >= 0 || esk_time_mono_ms() < deadline, "%s [%d] has no leader after 30 s",
              topic, (int)partition);
  }
  rd_kafka_destroy(rk);
  return leader;
}

int esk_tp_controller_leader(const char *log_path) {
  char cmd[1024], out[64];
  snprintf(cmd, sizeof(cmd), "bash %s/deploy/local/stack controller-leader 30 2>>%s",
           ESK_SOURCE_DIR, log_path);
  int rc = esk_tp_run(cmd, 0, out, sizeof(out));
  cr_assert_eq(rc, 0, "deploy/local/stack controller-leader exited %d (log %s)", rc, log_path);
  char *end = NULL;
  long id = strtol(out, &end, 10);
  cr_assert(end != out && id > 0, "controller-leader printed '%s'", out);
  return (int)id;
}

void esk_tp_stack(const char *args, const char *log_path) {
  char cmd[1024], out[64];
  snprintf(cmd, sizeof(cmd), "bash %s/deploy/local/stack %s >>%s 2>&1", ESK_SOURCE_DIR, args,
           log_path);
  int rc = esk_tp_run(cmd, 0, out, sizeof(out));
  cr_assert_eq(rc, 0, "deploy/local/stack %s exited %d (log %s)", args, rc, log_path);
}

void esk_tp_sample_events(esk_bank_event_t in[4]) {
  static const char *const currency[] = {"EUR", "USD", "SEK"};
  memset(in, 0, 4 * sizeof(*in));
  for (int i = 0; i < 4; i++) {
    in[i].type = (esk_bank_event_type_t)(i + 1);
    snprintf(in[i].account_id, sizeof(in[i].account_id), "acc-%d", i);
    in[i].aggregate_version = i + 1;
    esk_bank_money_t *m = (esk_bank_money_t *)esk_bank_event_money(&in[i]);
    if (!m) continue;
    m->minor_units = 10 * (i + 1); /* field by field: no padding left unset */
    memcpy(m->currency, currency[i], 4);
  }
  snprintf(in[0].u.opened.owner_id, sizeof(in[0].u.opened.owner_id), "owner");
  snprintf(in[1].u.deposited.description, sizeof(in[1].u.deposited.description), "d");
  snprintf(in[3].u.closed.reason, sizeof(in[3].u.closed.reason), "r");
}
