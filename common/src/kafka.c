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
