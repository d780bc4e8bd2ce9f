#include "esk_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/kafka.h"
#include "esk/pg.h"

void esk_test_unique_name(char *buf, size_t size, const char *prefix) {
  uint32_t r = 0;
  if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) r = (uint32_t)rand();
  snprintf(buf, size, "%s_%ld_%08x", prefix, (long)getpid(), r);
}

void esk_test_require_kafka(void) {
  esk_error_t err = {0};
  if (esk_kafka_check_broker(NULL, 10000, &err) != ESK_OK) cr_assert_fail("%s", err.msg);
}

void esk_test_require_pg(void) {
  esk_error_t err = {0};
  PGconn *c = NULL;
  if (esk_pg_connect(&c, NULL, &err) != ESK_OK) cr_assert_fail("%s", err.msg);
  PQfinish(c);
}

PGconn *esk_test_pg_connect(void) {
  esk_error_t err = {0};
  PGconn *c = NULL;
  cr_assert_eq(esk_pg_connect(&c, NULL, &err), ESK_OK, "%s", err.msg);
  return c;
}

void esk_test_topic_and_schema(char *topic, size_t tsize, const char *topic_prefix, char *schema,
                               size_t ssize, const char *schema_prefix, int partitions) {
  esk_test_require_kafka();
  esk_test_require_pg();
  esk_test_unique_name(topic, tsize, topic_prefix);
  esk_test_unique_name(schema, ssize, schema_prefix);
  esk_test_create_topic(topic, partitions);
}

esk_conf_t *esk_test_conf_with(const esk_conf_prop_t *const *tables, size_t n,
                               const char *const *kv) {
  esk_conf_t *c = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_new(&c, tables, n, &err), ESK_OK, "%s", err.msg);
  for (; kv && *kv; kv += 2)
    cr_assert_eq(esk_conf_set(c, kv[0], kv[1], "test", &err), ESK_OK, "%s", err.msg);
  return c;
}

void esk_test_temp_file(char *path, size_t size, const char *prefix, const void *data,
                        size_t len) {
  int n = snprintf(path, size, "/tmp/%sXXXXXX", prefix);
  cr_assert(n > 0 && (size_t)n < size, "temp file name /tmp/%sXXXXXX too long", prefix);
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0, "mkstemp %s: %s", path, strerror(errno));
  cr_assert_eq(write(fd, data, len), (ssize_t)len, "writing %s", path);
  close(fd);
}

rd_kafka_t *esk_test_kafka_client(void) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256];
  cr_assert_eq(esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  cr_assert_not_null(rk, "rd_kafka_new: %s", errstr);
  return rk;
}

/* Whether the broker at @p host:@p port lists @p topic with @p partitions
 * partitions, each with a leader. A client bootstrapped from that one broker
 * asks it (its other brokers are learnt but not connected: sparse connections). */
static int broker_knows_topic(const char *host, int port, const char *topic, int partitions) {
  char addr[300], errstr[256];
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  snprintf(addr, sizeof(addr), "%s:%d", host, port);
  cr_assert_eq(esk_kafka_conf_new(&conf, RD_KAFKA_CONSUMER, addr, &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  cr_assert_not_null(rk, "rd_kafka_new: %s", errstr);
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  int ok = 0;
  if (!rd_kafka_metadata(rk, 0, rkt, &md, 5000) && md->topic_cnt == 1 && !md->topics[0].err &&
      md->topics[0].partition_cnt == partitions) {
    ok = 1;
    for (int i = 0; i < partitions; i++)
      if (md->topics[0].partitions[i].err || md->topics[0].partitions[i].leader < 0) ok = 0;
  }
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return ok;
}

/* Waits until every broker of the cluster lists @p topic. A broker that lags
 * behind the metadata log (one just restarted, on a busy machine) answers that
 * a new topic does not exist; librdkafka 2.0.2 then drops the partitions of a
 * topic it knew and fails the messages queued for them ("Local: Unknown
 * partition"), so a producer that starts right after the creation loses its
 * first events. */
static void wait_topic_everywhere(rd_kafka_t *rk, const char *topic, int partitions) {
  const struct rd_kafka_metadata *md = NULL;
  cr_assert_eq(rd_kafka_metadata(rk, 0, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR,
               "metadata of the cluster: no answer");
  for (int b = 0; b < md->broker_cnt; b++) {
    int64_t t0 = esk_time_mono_ms(), waited = 0;
    while (!broker_knows_topic(md->brokers[b].host, md->brokers[b].port, topic, partitions)) {
      cr_assert_lt(esk_time_mono_ms() - t0, 30000, "broker %d (%s:%d) does not list topic %s "
                   "with %d partitions and their leaders 30 s after its creation",
                   (int)md->brokers[b].id, md->brokers[b].host, md->brokers[b].port, topic,
                   partitions);
      esk_time_sleep_ms(100);
      waited = esk_time_mono_ms() - t0;
    }
    if (waited)
      cr_log_info("broker %d listed topic %s only %lld ms after its creation",
                  (int)md->brokers[b].id, topic, (long long)waited);
  }
  rd_kafka_metadata_destroy(md);
}

void esk_test_create_topic(const char *topic, int partitions) {
  esk_error_t err = {0};
  int created = 0;
  rd_kafka_t *rk = esk_test_kafka_client();
  cr_assert_eq(esk_kafka_create_topic(rk, topic, partitions, -1, NULL, 15000, &created, &err), ESK_OK,
               "%s", err.msg);
  cr_assert(created, "topic %s existed already", topic);
  wait_topic_everywhere(rk, topic, partitions);
  rd_kafka_destroy(rk);
}

void esk_test_alter_topic(const char *topic, const char *key, const char *value) {
  rd_kafka_t *rk = esk_test_kafka_client();
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
  cr_assert_eq(rd_kafka_ConfigResource_set_config(res, key, value), 0);
  rd_kafka_AlterConfigs(rk, &res, 1, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
  cr_assert_not_null(ev, "AlterConfigs %s: no answer", topic);
  cr_assert_eq(rd_kafka_event_error(ev), 0, "AlterConfigs %s: %s", topic,
               rd_kafka_event_error_string(ev));
  rd_kafka_event_destroy(ev);
  rd_kafka_ConfigResource_destroy(res);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}

void esk_test_delete_topic(const char *topic) {
  char errstr[256];
  rd_kafka_t *rk = esk_test_kafka_client();
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, errstr, sizeof(errstr));
  rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
  rd_kafka_DeleteTopics(rk, &dt, 1, opts, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_DeleteTopic_destroy(dt);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}

PGconn *esk_test_pg_connect_schema(const char *schema) {
  PGconn *pg = esk_test_pg_connect();
  char sql[160];
  snprintf(sql, sizeof(sql), "set search_path to \"%s\"", schema);
  PQclear(PQexec(pg, sql));
  return pg;
}

void esk_test_drop_schema(const char *schema) {
  PGconn *pg = esk_test_pg_connect();
  char sql[160];
  snprintf(sql, sizeof(sql), "drop schema if exists \"%s\" cascade", schema);
  PQclear(PQexec(pg, sql));
  /* and the schemas of its projections' generations, <schema>_<projection>_g<N> */
  const char *params[] = {schema};
  PGresult *r = PQexecParams(pg,
                             "select nspname from pg_namespace where nspname like"
                             " replace($1, '_', '\\_') || '\\_%\\_g%'",
                             1, NULL, params, NULL, NULL, 0);
  for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
    snprintf(sql, sizeof(sql), "drop schema if exists \"%s\" cascade", PQgetvalue(r, i, 0));
    PQclear(PQexec(pg, sql));
  }
  PQclear(r);
  PQfinish(pg);
}

int esk_test_consume(const char *topic, int n, int timeout_s,
                     void (*fn)(const rd_kafka_message_t *m, void *arg), void *arg) {
  esk_error_t err = {0};
  rd_kafka_conf_t *cc = NULL;
  char errstr[256], group[96];
  esk_test_unique_name(group, sizeof(group), "esk.test.reader");
  cr_assert_eq(esk_kafka_conf_new(&cc, RD_KAFKA_CONSUMER, NULL, &err), ESK_OK, "%s", err.msg);
  esk_kafka_conf_set(cc, "group.id", group, &err);
  esk_kafka_conf_set(cc, "auto.offset.reset", "earliest", &err);
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, sizeof(errstr));
  cr_assert_not_null(c, "%s", errstr);
  rd_kafka_poll_set_consumer(c);
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(c, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  int got = 0;
  for (int i = 0; i < timeout_s && got < n; i++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1000);
    if (!m) continue;
    if (!m->err) {
      if (fn) fn(m, arg);
      got++;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  return got;
}

const char *esk_test_header(const rd_kafka_message_t *m, const char *name, char *buf,
                            size_t size) {
  rd_kafka_headers_t *h = NULL;
  const void *v = NULL;
  size_t n = 0;
  buf[0] = '\0';
  if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
      rd_kafka_header_get_last(h, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR)
    snprintf(buf, size, "%.*s", (int)n, (const char *)v);
  return buf;
}

int64_t esk_test_high_watermarks(const char *topic) {
  esk_error_t err = {0};
  rd_kafka_t *rk = esk_test_kafka_client();
  int parts = 0;
  cr_assert_eq(esk_kafka_partition_count(rk, topic, 10000, &parts, &err), ESK_OK, "%s", err.msg);
  int64_t sum = 0;
  for (int32_t p = 0; p < parts; p++) {
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks of %s [%d]: %s", topic, (int)p,
                 rd_kafka_err2str(e));
    sum += hi;
  }
  rd_kafka_destroy(rk);
  return sum;
}

static int64_t stored_positions(PGconn *pg, const char *projection, const char *topic) {
  PGresult *r = NULL;
  esk_error_t err = {0};
  const char *params[] = {projection, topic};
  cr_assert_eq(esk_pg_exec(&r, pg, "positions",
                           "select coalesce(sum(next_offset), 0) from esk_projection_positions "
                           "where projection = $1 and topic = $2",
                           2, params, &err),
               ESK_OK, "%s", err.msg);
  int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return v;
}

static int same_stats(const esk_projector_stats_t *a, const esk_projector_stats_t *b) {
  return a->applied == b->applied && a->skipped == b->skipped && a->dead == b->dead &&
         a->batches == b->batches && a->conflicts == b->conflicts;
}

esk_projector_stats_t esk_test_projector_quiet(PGconn *pg, const char *projection,
                                               const char *topic, esk_test_stats_fn stats,
                                               void *arg, int timeout_s) {
  int64_t end = esk_time_mono_ms() + (int64_t)timeout_s * 1000;
  int64_t want = esk_test_high_watermarks(topic), at = -1;
  while ((at = stored_positions(pg, projection, topic)) < want && esk_time_mono_ms() < end)
    esk_time_sleep_ms(100);
  cr_assert_geq(at, want, "%s: positions at %lld of %s's %lld messages after %d s", projection,
                (long long)at, topic, (long long)want, timeout_s);
  esk_projector_stats_t last = {0}, now = {0};
  if (!stats) return last;
  stats(arg, &last);
  for (int same = 0; same < 3;) {
    cr_assert_lt(esk_time_mono_ms(), end, "%s: counters still changing after %d s", projection,
                 timeout_s);
    esk_time_sleep_ms(100);
    stats(arg, &now);
    same = same_stats(&now, &last) ? same + 1 : 0;
    last = now;
  }
  return last;
}
