#include "esk/kafka.h"
#include "esk/conf.h"
#include "esk/log.h"

#include <stdio.h>

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  /* syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug */
  esk_log_level_t l = level <= 3 ? ESK_LOG_ERROR
                      : level == 4 ? ESK_LOG_WARN
                      : level <= 6 ? ESK_LOG_INFO
                                   : ESK_LOG_DEBUG;
  char q[1024];
  ESK_LOG(l, "rdkafka", "rdfac=%s msg=%s", fac, esk_log_quote(q, sizeof(q), buf));
}

int esk_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                       esk_error_t *err) {
  char reason[256];
  if (rd_kafka_conf_set(conf, key, value, reason, sizeof(reason)) != RD_KAFKA_CONF_OK)
    return esk_error_set(err, ESK_EINVAL, "kafka property %s=%s refused: %s", key, value,
                         reason);
  return ESK_OK;
}

int esk_kafka_conf_new(rd_kafka_conf_t **out, rd_kafka_type_t type, const char *bootstrap,
                       esk_error_t *err) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int rc;
  if (!bootstrap) bootstrap = esk_conf_env_kafka_bootstrap();
  if ((rc = esk_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err)) ||
      (rc = esk_kafka_conf_set(conf, "client.id", "esk", err)))
    goto cleanup;
  if (type == RD_KAFKA_PRODUCER &&
      (rc = esk_kafka_conf_set(conf, "partitioner", "murmur2_random", err)))
    goto cleanup;
  rd_kafka_conf_set_log_cb(conf, log_cb);
  *out = conf;
  return ESK_OK;
cleanup:
  rd_kafka_conf_destroy(conf);
  return rc;
}

int esk_kafka_check_broker(const char *bootstrap, int timeout_ms, esk_error_t *err) {
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_t *rk = NULL;
  const struct rd_kafka_metadata *md = NULL;
  char errstr[256];
  int rc;
  if (!bootstrap) bootstrap = esk_conf_env_kafka_bootstrap();
  if ((rc = esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, bootstrap, err))) return rc;
  /* A refused connection is the expected answer here: keep it out of the log. */
  if ((rc = esk_kafka_conf_set(conf, "log_level", "0", err))) goto cleanup;
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    rc = esk_error_set(err, ESK_EFATAL, "cannot create a Kafka client: %s", errstr);
    goto cleanup;
  }
  conf = NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
  if (e) {
    rc = esk_error_set(err, ESK_ERETRY,
                       "Kafka broker not reachable at %s (%s after %d ms); " ESK_KAFKA_START_HINT,
                       bootstrap, rd_kafka_err2str(e), timeout_ms);
    goto cleanup;
  }
  rc = ESK_OK;
cleanup:
  if (md) rd_kafka_metadata_destroy(md);
  if (rk) rd_kafka_destroy(rk);
  if (conf) rd_kafka_conf_destroy(conf);
  return rc;
}

int esk_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions,
                           const char *const *configs, int timeout_ms, int *created,
                           esk_error_t *err) {
  char errstr[256];
  int rc = ESK_OK;
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_event_t *ev = NULL;
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof(errstr));
  if (created) *created = 0;
  if (!nt) {
    rc = esk_error_set(err, ESK_EINVAL, "topic %s: %s", topic, errstr);
    goto cleanup;
  }
  for (size_t i = 0; configs && configs[i] && configs[i + 1]; i += 2) {
    if (rd_kafka_NewTopic_set_config(nt, configs[i], configs[i + 1])) {
      rc = esk_error_set(err, ESK_EINVAL, "topic %s: bad config %s=%s", topic, configs[i],
                         configs[i + 1]);
      goto cleanup;
    }
  }
  rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, sizeof(errstr));
  rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof(errstr));
  rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
  ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
  if (!ev) {
    rc = esk_error_set(err, ESK_ERETRY, "creating topic %s: no answer within %d ms", topic,
                       timeout_ms);
    goto cleanup;
  }
  if (rd_kafka_event_error(ev)) {
    rc = esk_error_set(err, ESK_ERETRY, "creating topic %s: %s", topic,
                       rd_kafka_event_error_string(ev));
    goto cleanup;
  }
  size_t n = 0;
  const rd_kafka_topic_result_t **tr =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
  rd_kafka_resp_err_t e = n ? rd_kafka_topic_result_error(tr[0]) : RD_KAFKA_RESP_ERR_UNKNOWN;
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (created) *created = 1;
  } else if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    rc = esk_error_set(err, e == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT ? ESK_ERETRY : ESK_EINVAL,
                       "creating topic %s: %s", topic,
                       n ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
  }
cleanup:
  if (ev) rd_kafka_event_destroy(ev);
  if (nt) rd_kafka_NewTopic_destroy(nt);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  return rc;
}

int esk_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count,
                              esk_error_t *err) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
  rd_kafka_topic_destroy(t);
  if (e) return esk_error_set(err, ESK_ERETRY, "metadata of topic %s: %s", topic,
                              rd_kafka_err2str(e));
  int rc = ESK_OK;
  if (md->topic_cnt < 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    rc = esk_error_set(err, ESK_ENOTFOUND, "topic %s does not exist", topic);
  else if (md->topics[0].err)
    rc = esk_error_set(err, ESK_ERETRY, "metadata of topic %s: %s", topic,
                       rd_kafka_err2str(md->topics[0].err));
  else
    *count = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  return rc;
}
