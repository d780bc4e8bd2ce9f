/* Test and bench support: publishing the bank workload to Kafka as the
 * producer does (Avro single-object values, key = account id, the headers of
 * docs/architecture.md, "Kafka contract"), and deleting its topics. */
#include "esk_test_bank.h"

#include <stdio.h>
#include <string.h>

#include "esk/kafka.h"
#include "esk_test_bank_internal.h"
#include "projections.h"

/* Messages the test producers could not deliver: the count and the first one.
 * Delivery reports come from rd_kafka_poll() and rd_kafka_flush(), on the
 * calling thread. */
static struct {
  int failed;
  char first[320];
} undelivered;

void esk_test_describe_undelivered(char *out, size_t size, const rd_kafka_message_t *m) {
  snprintf(out, size, "key %.*s to %s [%d]: %s", (int)(m->key_len < 64 ? m->key_len : 64),
           m->key ? (const char *)m->key : "", rd_kafka_topic_name(m->rkt), (int)m->partition,
           rd_kafka_err2str(m->err));
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (!m->err) return;
  if (!undelivered.failed++)
    esk_test_describe_undelivered(undelivered.first, sizeof(undelivered.first), m);
}

int esk_test_bank_flush(rd_kafka_t *producer, int timeout_ms, esk_error_t *err) {
  rd_kafka_resp_err_t e = rd_kafka_flush(producer, timeout_ms);
  if (e) return esk_error_set(err, ESK_ERETRY, "flush: %s", rd_kafka_err2str(e));
  if (undelivered.failed)
    return esk_error_set(err, ESK_EFATAL,
                         "%d event%s not delivered (the first: %s): the read models would miss "
                         "them", undelivered.failed, undelivered.failed == 1 ? "" : "s",
                         undelivered.first);
  return ESK_OK;
}

int esk_test_bank_producer(rd_kafka_t **out, esk_error_t *err) {
  rd_kafka_conf_t *c = NULL;
  char errstr[256];
  int rc;
  if ((rc = esk_kafka_conf_new(&c, RD_KAFKA_PRODUCER, NULL, err))) return rc;
  if ((rc = esk_kafka_conf_set(c, "linger.ms", "20", err)) ||
      (rc = esk_kafka_conf_set(c, "batch.size", "1000000", err)) ||
      (rc = esk_kafka_conf_set(c, "queue.buffering.max.messages", "1000000", err))) {
    rd_kafka_conf_destroy(c);
    return rc;
  }
  rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
  if (!(*out = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr)))) {
    rd_kafka_conf_destroy(c);
    return esk_error_set(err, ESK_EINVAL, "producer: %s", errstr);
  }
  return ESK_OK;
}

static int produce(rd_kafka_t *p, const char *topic, const char *key, const void *value,
                   size_t len, rd_kafka_headers_t *h, esk_error_t *err) {
  /* a topic just created may be unknown for a moment to a broker that has just
   * come back (a cluster's node restarted by the suite before): up to 30 s */
  for (int unknown = 0;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL ||
        ((e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) &&
         unknown++ < 300)) {
      rd_kafka_poll(p, e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? 50 : 100);
      continue;
    }
    if (e) {
      if (h) rd_kafka_headers_destroy(h);
      return esk_error_set(err, ESK_ERETRY, "produce to %s: %s", topic, rd_kafka_err2str(e));
    }
    return ESK_OK;
  }
}

int esk_test_bank_publish(esk_test_bank_t *b, rd_kafka_t *producer, const char *topic,
                          size_t from, size_t to, esk_error_t *err) {
  int rc;
  for (size_t i = from; i < to && i < b->n; i++) {
    const esk_test_bank_event_t *e = &b->ev[i];
    if ((rc = esk_test_bank_encode_buf(b, i, NULL, err))) return rc;
    char acct[32], id[40], ver[24], agv[24], corr[40], cause[40];
    esk_test_bank_account_id(e->account, acct, sizeof(acct));
    esk_test_bank_event_id(e, id);
    snprintf(ver, sizeof(ver), "%d", e->writer_version);
    snprintf(agv, sizeof(agv), "%d", e->version);
    snprintf(corr, sizeof(corr), "corr-%zu", i);
    snprintf(cause, sizeof(cause), "cmd-%zu", i);
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    rd_kafka_header_add(h, "esk.type", -1, esk_test_bank_kind_type(e->kind), -1);
    rd_kafka_header_add(h, "esk.schema_version", -1, ver, -1);
    rd_kafka_header_add(h, "esk.event_id", -1, id, -1);
    rd_kafka_header_add(h, "esk.aggregate_version", -1, agv, -1);
    rd_kafka_header_add(h, "esk.correlation_id", -1, corr, -1);
    rd_kafka_header_add(h, "esk.causation_id", -1, cause, -1);
    rd_kafka_header_add(h, "content-type", -1, "avro/binary", -1);
    if ((rc = produce(producer, topic, acct, b->buf.data, b->buf.len, h, err))) return rc;
    if (i % 1024 == 0) rd_kafka_poll(producer, 0);
  }
  return ESK_OK;
}

int esk_test_bank_publish_raw(rd_kafka_t *producer, const char *topic, const char *key,
                              const void *value, size_t len, esk_error_t *err) {
  return produce(producer, topic, key, value, len, NULL, err);
}

void esk_test_bank_delete_topics(const char *topic) {
  char errstr[256], names[8][256];
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_DeleteTopic_t *dt[8];
  size_t n = 0;
  if (esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, NULL)) return;
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return;
  }
  snprintf(names[n], sizeof(names[n]), "%s", topic);
  dt[n] = rd_kafka_DeleteTopic_new(names[n]);
  n++;
  for (const esk_bank_projection_def_t *d = esk_bank_projection_defs; d->name && n < 8; d++, n++) {
    snprintf(names[n], sizeof(names[n]), "%s.dlq.%s", topic, d->name);
    dt[n] = rd_kafka_DeleteTopic_new(names[n]);
  }
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, errstr, sizeof(errstr));
  rd_kafka_DeleteTopics(rk, dt, n, opts, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_DeleteTopic_destroy_array(dt, n);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}
