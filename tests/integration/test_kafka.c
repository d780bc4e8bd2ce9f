/* The real broker: keyed messages with headers, a consumer group that commits
 * offsets, and a second consumer that resumes from them. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "esk/error.h"
#include "esk/kafka.h"
#include "esk_test.h"

#define N_MESSAGES 30
#define N_FIRST 20
#define N_PARTITIONS 3

/* Java's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), written out
 * here independently of librdkafka to check that keys land where a Java
 * producer would put them. */
static int32_t java_murmur2(const char *data, int length) {
  const uint32_t m = 0x5bd1e995;
  const int r = 24;
  uint32_t h = 0x9747b28cu ^ (uint32_t)length;
  int length4 = length / 4;
  for (int i = 0; i < length4; i++) {
    int i4 = i * 4;
    uint32_t k = ((uint32_t)(uint8_t)data[i4 + 0]) | ((uint32_t)(uint8_t)data[i4 + 1] << 8) |
                 ((uint32_t)(uint8_t)data[i4 + 2] << 16) | ((uint32_t)(uint8_t)data[i4 + 3] << 24);
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
  }
  switch (length % 4) {
  case 3: h ^= (uint32_t)(uint8_t)data[(length & ~3) + 2] << 16; /* fall through */
  case 2: h ^= (uint32_t)(uint8_t)data[(length & ~3) + 1] << 8; /* fall through */
  case 1: h ^= (uint32_t)(uint8_t)data[length & ~3]; h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return (int32_t)h;
}

static int delivered_partition[N_MESSAGES];
static int delivery_errors;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  intptr_t i = (intptr_t)m->_private;
  if (m->err) delivery_errors++;
  else delivered_partition[i] = m->partition;
}

static void produce_all(const char *topic) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256];
  cr_assert_eq(esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_conf_set(conf, "enable.idempotence", "true", &err), ESK_OK, "%s", err.msg);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  cr_assert_not_null(p, "%s", errstr);
  for (intptr_t i = 0; i < N_MESSAGES; i++) {
    char key[32], val[32], id[32];
    snprintf(key, sizeof(key), "acct-%d", (int)(i % 7));
    snprintf(val, sizeof(val), "value-%d", (int)i);
    snprintf(id, sizeof(id), "%d", (int)i);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER("esk.type", "TestEvent", -1), RD_KAFKA_V_HEADER("esk.event_id", id, -1),
        RD_KAFKA_V_OPAQUE((void *)i), RD_KAFKA_V_END);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
  }
  cr_assert_eq(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR, "flush timed out");
  cr_assert_eq(delivery_errors, 0);
  rd_kafka_destroy(p);
}

static rd_kafka_t *group_consumer(const char *topic, const char *group) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  char errstr[256];
  cr_assert_eq(esk_kafka_conf_new(&conf, RD_KAFKA_CONSUMER, NULL, &err), ESK_OK, "%s", err.msg);
  const char *props[][2] = {{"group.id", group},
                            {"auto.offset.reset", "earliest"},
                            {"enable.auto.commit", "false"},
                            {"enable.auto.offset.store", "false"},
                            {"isolation.level", "read_committed"},
                            {"partition.assignment.strategy", "range"},
                            {"session.timeout.ms", "6000"}};
  for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
    cr_assert_eq(esk_kafka_conf_set(conf, props[i][0], props[i][1], &err), ESK_OK, "%s", err.msg);
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  cr_assert_not_null(c, "%s", errstr);
  rd_kafka_poll_set_consumer(c);
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
  cr_assert_eq(rd_kafka_subscribe(c, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(sub);
  return c;
}

static const char *header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size) {
  rd_kafka_headers_t *hdrs = NULL;
  const void *v;
  size_t n;
  if (rd_kafka_message_headers(m, &hdrs) || rd_kafka_header_get_last(hdrs, name, &v, &n))
    return NULL;
  snprintf(buf, size, "%.*s", (int)n, (const char *)v);
  return buf;
}

/* Consumes up to `want` messages, marking seen[i]; stores the next offset of
 * each (offset + 1, as librdkafka expects) and commits them synchronously. */
static int consume(rd_kafka_t *c, int want, int *seen) {
  int got = 0, idle = 0;
  while (got < want && idle < 30) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1000);
    if (!m) {
      idle++;
      continue;
    }
    cr_assert_eq(m->err, RD_KAFKA_RESP_ERR_NO_ERROR, "consume: %s", rd_kafka_message_errstr(m));
    char id[32], type[32], key[32], val[32];
    cr_assert_not_null(header(m, "esk.event_id", id, sizeof(id)), "no esk.event_id header");
    cr_assert_str_eq(header(m, "esk.type", type, sizeof(type)), "TestEvent");
    int i = atoi(id);
    cr_assert(i >= 0 && i < N_MESSAGES);
    snprintf(key, sizeof(key), "acct-%d", i % 7);
    snprintf(val, sizeof(val), "value-%d", i);
    cr_assert_eq(m->key_len, strlen(key));
    cr_assert(memcmp(m->key, key, m->key_len) == 0, "key of message %d", i);
    cr_assert(m->len == strlen(val) && memcmp(m->payload, val, m->len) == 0);
    cr_assert_eq(m->partition, delivered_partition[i], "message %d read from another partition", i);
    cr_assert_eq(seen[i], 0, "message %d consumed twice", i);
    seen[i] = 1;
    rd_kafka_topic_partition_list_t *o = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(o, rd_kafka_topic_name(m->rkt), m->partition)->offset =
        m->offset + 1;
    cr_assert_eq(rd_kafka_offsets_store(c, o), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(o);
    rd_kafka_message_destroy(m);
    got++;
  }
  rd_kafka_resp_err_t e = rd_kafka_commit(c, NULL, 0);
  cr_assert(e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR__NO_OFFSET, "commit: %s",
            rd_kafka_err2str(e));
  return got;
}

Test(kafka, consumer_resumes_from_committed_offsets, .init = esk_test_require_kafka) {
  char topic[96], group[96];
  esk_test_unique_name(topic, sizeof(topic), "esk.test.kafka");
  esk_test_unique_name(group, sizeof(group), "esk.test.group");
  esk_test_create_topic(topic, N_PARTITIONS);
  produce_all(topic);

  /* murmur2_random puts each key where Java's default partitioner would. */
  for (int i = 0; i < N_MESSAGES; i++) {
    char key[32];
    snprintf(key, sizeof(key), "acct-%d", i % 7);
    int expect = (java_murmur2(key, (int)strlen(key)) & 0x7fffffff) % N_PARTITIONS;
    cr_assert_eq(delivered_partition[i], expect, "key %s went to partition %d, Java's is %d", key,
                 delivered_partition[i], expect);
  }

  int seen[N_MESSAGES] = {0};
  rd_kafka_t *c1 = group_consumer(topic, group);
  cr_assert_eq(consume(c1, N_FIRST, seen), N_FIRST, "first consumer got too few messages");
  cr_assert_eq(rd_kafka_consumer_close(c1), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(c1);

  /* A second member of the group starts where the first one committed: it
   * receives exactly the messages the first did not. */
  rd_kafka_t *c2 = group_consumer(topic, group);
  cr_assert_eq(consume(c2, N_MESSAGES - N_FIRST, seen), N_MESSAGES - N_FIRST,
               "second consumer did not get the rest");
  rd_kafka_message_t *extra = rd_kafka_consumer_poll(c2, 2000);
  cr_assert_null(extra, "second consumer got a message beyond the end (offset %lld)",
                 extra ? (long long)extra->offset : -1LL);

  /* The committed offsets add up to every message. */
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(N_PARTITIONS);
  for (int p = 0; p < N_PARTITIONS; p++) rd_kafka_topic_partition_list_add(parts, topic, p);
  cr_assert_eq(rd_kafka_committed(c2, parts, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  int64_t total = 0;
  for (int p = 0; p < parts->cnt; p++) {
    cr_assert_eq(parts->elems[p].err, RD_KAFKA_RESP_ERR_NO_ERROR);
    if (parts->elems[p].offset > 0) total += parts->elems[p].offset;
  }
  cr_assert_eq(total, N_MESSAGES, "committed offsets sum to %lld", (long long)total);
  rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_consumer_close(c2);
  rd_kafka_destroy(c2);
  for (int i = 0; i < N_MESSAGES; i++) cr_assert_eq(seen[i], 1, "message %d never consumed", i);
  esk_test_delete_topic(topic);
}
