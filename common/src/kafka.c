#include "esk/kafka.h"
#include "esk/watchdog.h"
#include "esk/conf.h"
#include "esk/log.h"
#include "esk/time.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A secret's value is never written into a message (docs/deployment.md). */
static const char *shown(const char *key, const char *value) {
  return esk_conf_secret_key(key) ? "(hidden)" : value;
}

#define PASSWORD_FILE_MAX 1024

/* sasl.password.file: esk's own key (librdkafka has no file form of
 * sasl.password). The first line of the file, without its line end, is the
 * password; messages name the file and never its content. */
static int set_password_file(rd_kafka_conf_t *conf, const char *path, esk_error_t *err) {
  char buf[PASSWORD_FILE_MAX + 2], reason[256];
  FILE *f = fopen(path, "r");
  if (!f)
    return esk_error_set(err, ESK_EINVAL, "kafka sasl.password.file %s: cannot open: %s", path,
                         strerror(errno));
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  int failed = ferror(f);
  fclose(f);
  buf[n] = '\0';
  char *nl = memchr(buf, '\n', n);
  size_t len = nl ? (size_t)(nl - buf) : n;
  int rc = ESK_OK;
  if (failed)
    rc = esk_error_set(err, ESK_EINVAL, "kafka sasl.password.file %s: read error", path);
  else if (!nl && n > PASSWORD_FILE_MAX)
    rc = esk_error_set(err, ESK_EINVAL, "kafka sasl.password.file %s: longer than %d bytes",
                       path, PASSWORD_FILE_MAX);
  else if (memchr(buf, '\0', len))
    rc = esk_error_set(err, ESK_EINVAL, "kafka sasl.password.file %s: holds a NUL byte", path);
  buf[len] = '\0';
  if (len && buf[len - 1] == '\r') buf[--len] = '\0';
  if (rc == ESK_OK && !len)
    rc = esk_error_set(err, ESK_EINVAL, "kafka sasl.password.file %s: the first line is empty",
                       path);
  else if (rc == ESK_OK && rd_kafka_conf_set(conf, "sasl.password", buf, reason, sizeof(reason)) !=
           RD_KAFKA_CONF_OK)
    rc = esk_error_set(err, ESK_EINVAL, "kafka sasl.password from %s refused: %s", path, reason);
  explicit_bzero(buf, sizeof(buf));
  return rc;
}

int esk_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                       esk_error_t *err) {
  char reason[256];
  if (!strcmp(key, "sasl.password.file")) return set_password_file(conf, value, err);
  if (rd_kafka_conf_set(conf, key, value, reason, sizeof(reason)) != RD_KAFKA_CONF_OK)
    return esk_error_set(err, ESK_EINVAL, "kafka property %s=%s refused: %s", key,
                         shown(key, value), reason);
  return ESK_OK;
}

const char *esk_kafka_principal(rd_kafka_t *rk, char *buf, size_t size) {
  char proto[32] = "", user[256] = "";
  size_t n = sizeof(proto), m = sizeof(user);
  const rd_kafka_conf_t *c = rk ? rd_kafka_conf(rk) : NULL;
  if (c && rd_kafka_conf_get(c, "security.protocol", proto, &n) == RD_KAFKA_CONF_OK &&
      !strncmp(proto, "sasl", 4) &&
      rd_kafka_conf_get(c, "sasl.username", user, &m) == RD_KAFKA_CONF_OK && *user)
    snprintf(buf, size, "User:%s", user);
  else
    snprintf(buf, size, "User:ANONYMOUS");
  return buf;
}

static int is_authorization(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
         e == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
         e == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
         e == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
}

/* A refusal names the principal, the operation and the resource, and what to
 * check (docs/deployment.md). */
static int refused(esk_error_t *err, rd_kafka_t *rk, const char *op, const char *topic,
                   const char *reason) {
  char who[300];
  return esk_error_set(err, ESK_EFATAL,
                       "%s may not %s topic %s (%s): grant it (eskctl acls apply, "
                       "docs/deployment.md) or check kafka.sasl.username",
                       esk_kafka_principal(rk, who, sizeof(who)), op, topic, reason);
}

/* The security keys from their environment variables (esk/conf.h), so that a
 * tool or a test reaches the cluster `deploy/local/stack env` describes. */
static int set_security_env(rd_kafka_conf_t *conf, esk_error_t *err) {
  for (const esk_conf_prop_t *p = esk_conf_kafka_security_props; p->name; p++) {
    char name[128];
    const char *v = getenv(esk_conf_env_name(p, name, sizeof(name)));
    int rc;
    if (v && *v && (rc = esk_kafka_conf_set(conf, p->name + 6, v, err))) {
      char why[ESK_ERROR_MSG_MAX];
      snprintf(why, sizeof(why), "%s", err ? err->msg : "");
      return esk_error_set(err, rc, "environment %s: %s", name, why);
    }
  }
  return ESK_OK;
}

int esk_kafka_conf_new(rd_kafka_conf_t **out, rd_kafka_type_t type, const char *bootstrap,
                       esk_error_t *err) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int rc;
  if (!bootstrap) bootstrap = esk_conf_env_kafka_bootstrap();
  if ((rc = esk_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err)) ||
      (rc = esk_kafka_conf_set(conf, "client.id", "esk", err)) ||
      (rc = set_security_env(conf, err)))
    goto cleanup;
  /* Idempotence keeps each partition's order when a send is retried (say, on
   * a leader not yet elected for a new topic): without it librdkafka 2.0.2
   * may land a retried batch after later ones, and per-aggregate versions
   * would arrive out of order. */
  if (type == RD_KAFKA_PRODUCER &&
      ((rc = esk_kafka_conf_set(conf, "partitioner", "murmur2_random", err)) ||
       (rc = esk_kafka_conf_set(conf, "enable.idempotence", "true", err))))
    goto cleanup;
  rd_kafka_conf_set_log_cb(conf, log_cb);
  *out = conf;
  return ESK_OK;
cleanup:
  rd_kafka_conf_destroy(conf);
  return rc;
}

typedef struct apply_s {
  rd_kafka_conf_t *kc;
  int type; /* -1: a client of either kind (consumer./producer. keys are skipped) */
  esk_error_t *err;
} apply_t;

static int apply_one(void *opaque, const char *key, const char *value, int table) {
  apply_t *a = opaque;
  char reason[256];
  if (table || !strcmp(key, "sasl.password.file")) return esk_kafka_conf_set(a->kc, key, value, a->err);
  const char *name = key;
  if (!strncmp(name, "consumer.", 9)) {
    if (a->type != RD_KAFKA_CONSUMER) return ESK_OK;
    name += 9;
  } else if (!strncmp(name, "producer.", 9)) {
    if (a->type != RD_KAFKA_PRODUCER) return ESK_OK;
    name += 9;
  }
  /* the error names the key as the user wrote it (kafka.consumer.x), so a
   * value refused for one kind of client says which */
  if (rd_kafka_conf_set(a->kc, name, value, reason, sizeof(reason)) != RD_KAFKA_CONF_OK)
    return esk_error_set(a->err, ESK_EINVAL, "kafka.%s=%s refused by librdkafka: %s", key,
                         shown(key, value), reason);
  return ESK_OK;
}

int esk_kafka_conf_apply(rd_kafka_conf_t *kc, const esk_conf_t *conf, esk_error_t *err) {
  apply_t a = {kc, -1, err};
  return esk_conf_each_kafka(conf, apply_one, &a);
}

int esk_kafka_conf_apply_client(rd_kafka_conf_t *kc, const esk_conf_t *conf,
                                rd_kafka_type_t type, esk_error_t *err) {
  apply_t a = {kc, (int)type, err};
  return esk_conf_each_kafka(conf, apply_one, &a);
}

static int set_all(rd_kafka_conf_t *kc, const char *const *kv, esk_error_t *err) {
  for (size_t i = 0; kv && kv[i]; i += 2) {
    int rc = esk_kafka_conf_set(kc, kv[i], kv[i + 1], err);
    if (rc) return rc;
  }
  return ESK_OK;
}

int esk_kafka_client_conf(rd_kafka_conf_t **out, rd_kafka_type_t type, const esk_conf_t *conf,
                          const char *const *defaults, const char *const *forced, void *opaque,
                          esk_error_t *err) {
  rd_kafka_conf_t *kc = NULL;
  int rc = esk_kafka_conf_new(&kc, type, esk_conf_get(conf, "kafka.bootstrap.servers"), err);
  if (rc) return rc;
  /* kafka.<property> to both kinds, kafka.consumer.* / kafka.producer.* to one */
  if ((rc = set_all(kc, defaults, err)) || (rc = esk_kafka_conf_apply_client(kc, conf, type, err)) ||
      (rc = set_all(kc, forced, err))) {
    rd_kafka_conf_destroy(kc);
    return rc;
  }
  rd_kafka_conf_set_opaque(kc, opaque);
  *out = kc;
  return ESK_OK;
}

int esk_kafka_client_new(rd_kafka_t **out, rd_kafka_type_t type, rd_kafka_conf_t *kc,
                         esk_error_t *err) {
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(type, kc, errstr, sizeof(errstr));
  if (!rk) {
    rd_kafka_conf_destroy(kc);
    return esk_error_set(err, ESK_EINVAL, "cannot create the Kafka %s: %s",
                         type == RD_KAFKA_PRODUCER ? "producer" : "consumer", errstr);
  }
  *out = rk;
  return ESK_OK;
}

/* What the check's client heard: an authentication or TLS failure says more
 * than the metadata request's "transport failure". */
typedef struct heard_s {
  rd_kafka_resp_err_t err;
  char reason[384];
} heard_t;

static void heard_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque) {
  heard_t *h = opaque;
  (void)rk;
  if (h->err == RD_KAFKA_RESP_ERR__AUTHENTICATION || h->err == RD_KAFKA_RESP_ERR__SSL) return;
  h->err = (rd_kafka_resp_err_t)e;
  snprintf(h->reason, sizeof(h->reason), "%s", reason);
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
  heard_t heard = {RD_KAFKA_RESP_ERR_NO_ERROR, ""};
  rd_kafka_conf_set_error_cb(conf, heard_cb);
  rd_kafka_conf_set_opaque(conf, &heard);
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    rc = esk_error_set(err, ESK_EFATAL, "cannot create a Kafka client: %s", errstr);
    goto cleanup;
  }
  conf = NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
  if (e) rd_kafka_poll(rk, 0); /* the error events, to heard_cb */
  char who[300];
  if (e && heard.err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
    rc = esk_error_set(err, ESK_EFATAL,
                       "Kafka at %s refused %s (%s): check kafka.sasl.username, "
                       "kafka.sasl.password.file and kafka.sasl.mechanisms",
                       bootstrap, esk_kafka_principal(rk, who, sizeof(who)), heard.reason);
  } else if (e && heard.err == RD_KAFKA_RESP_ERR__SSL) {
    rc = esk_error_set(err, ESK_EFATAL,
                       "TLS with Kafka at %s failed (%s): check kafka.ssl.ca.location (the CA "
                       "that signed the brokers' certificates) and kafka.security.protocol",
                       bootstrap, heard.reason);
  } else if (e) {
    rc = esk_error_set(err, ESK_ERETRY,
                       "Kafka broker not reachable at %s (%s after %d ms); " ESK_KAFKA_START_HINT,
                       bootstrap, rd_kafka_err2str(e), timeout_ms);
  } else {
    rc = ESK_OK;
  }
cleanup:
  if (md) rd_kafka_metadata_destroy(md);
  if (rk) rd_kafka_destroy(rk);
  if (conf) rd_kafka_conf_destroy(conf);
  return rc;
}

int esk_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions, int replication,
                           const char *const *configs, int timeout_ms, int *created,
                           esk_error_t *err) {
  char errstr[256];
  int rc = ESK_OK;
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_event_t *ev = NULL;
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, replication, errstr, sizeof(errstr));
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
  } else if (is_authorization(e)) {
    rc = refused(err, rk, "CREATE", topic, n ? rd_kafka_topic_result_error_string(tr[0]) : "");
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

/* A partition-level leader error: the client asked a broker that no longer leads. */
static int leader_moved(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
         e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
         e == RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH || e == RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH;
}

/* An explicit metadata request for one topic updates the client's cache. */
static void refresh_topic(rd_kafka_t *rk, const char *topic, int timeout_ms) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  if (!rd_kafka_metadata(rk, 0, t, &md, timeout_ms)) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
}

/* librdkafka 2.0.2 sends a watermark query to the leader in its metadata cache
 * and does not refresh that cache on a partition's NOT_LEADER answer, so after a
 * leader moved it asked the same broker again until the cache aged out (minutes;
 * found killing a broker of the three-node stack, docs/local-stack.md). A query
 * sent to a dead leader waits out socket.timeout.ms, so the topic's metadata is
 * refreshed before the first query too (one round trip; no caller is per message). */
rd_kafka_resp_err_t esk_kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                         int64_t *lo, int64_t *hi, int timeout_ms) {
  int64_t deadline = esk_time_mono_ms() + timeout_ms;
  /* first a fresh leader: one cached before a broker died would hold the query
   * until socket.timeout.ms (60 s), whatever timeout_ms says */
  refresh_topic(rk, topic, timeout_ms < 5000 ? timeout_ms : 5000);
  for (;;) {
    int left = (int)(deadline - esk_time_mono_ms());
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi, left > 0 ? left : 1);
    if (!leader_moved(e) || left <= 100) return e;
    refresh_topic(rk, topic, left);
    esk_time_sleep_ms(100);
  }
}

rd_kafka_resp_err_t esk_kafka_watermarks_quick(rd_kafka_t *rk, const char *topic,
                                               int32_t partition, int64_t *lo, int64_t *hi,
                                               int quick_ms, int timeout_ms) {
  int64_t t0 = esk_time_mono_ms();
  rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
      rk, topic, partition, lo, hi, quick_ms < timeout_ms ? quick_ms : timeout_ms);
  int left = timeout_ms - (int)(esk_time_mono_ms() - t0);
  if (!e || left <= 0) return e;
  return esk_kafka_watermarks(rk, topic, partition, lo, hi, left);
}

static int partition_count_once(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count,
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
  else if (is_authorization(md->topics[0].err))
    rc = refused(err, rk, "DESCRIBE", topic, rd_kafka_err2str(md->topics[0].err));
  else if (md->topics[0].err)
    rc = esk_error_set(err, ESK_ERETRY, "metadata of topic %s: %s", topic,
                       rd_kafka_err2str(md->topics[0].err));
  else
    *count = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  return rc;
}

/* In a cluster, a topic created a moment ago reaches each broker's metadata
 * cache on its own time, so a broker that has not heard of it yet is asked again
 * for a short grace before "does not exist" is believed (docs/local-stack.md). */
#define TOPIC_GRACE_MS 3000

int esk_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count,
                              esk_error_t *err) {
  for (int64_t until = esk_time_mono_ms() + TOPIC_GRACE_MS;;) {
    int rc = partition_count_once(rk, topic, timeout_ms, count, err);
    if (rc != ESK_ENOTFOUND || esk_time_mono_ms() >= until) return rc;
    esk_time_sleep_ms(100); /* not a poll: rk may be a consumer */
  }
}

const char *const esk_kafka_snapshots_config[] = {
    "cleanup.policy",        "compact", "segment.bytes", "16777216", "segment.ms", "3600000",
    "max.compaction.lag.ms", "3600000", NULL};

int esk_kafka_topic_name(char *buf, size_t size, const char *prefix, const char *domain,
                         const char *kind, esk_error_t *err) {
  if (!domain || !*domain || !kind || !*kind)
    return esk_error_set(err, ESK_EINVAL, "topic name: the domain and the kind must be non-empty");
  int n = snprintf(buf, size, "%s%s.%s", prefix ? prefix : "", domain, kind);
  if (n < 0 || (size_t)n >= size || n > 249)
    return esk_error_set(err, ESK_EINVAL, "topic name %s%s.%s is longer than %d characters",
                         prefix ? prefix : "", domain, kind, size - 1 < 249 ? (int)size - 1 : 249);
  for (const char *c = buf; *c; c++) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          *c == '.' || *c == '_' || *c == '-'))
      return esk_error_set(err, ESK_EINVAL,
                           "topic name '%s' holds '%c': Kafka allows only letters, digits, "
                           "'.', '_' and '-'",
                           buf, *c >= 0x20 && *c < 0x7f ? *c : '?');
  }
  return ESK_OK;
}

int esk_kafka_txn_error(rd_kafka_error_t *e, const char *op, esk_error_t *err) {
  if (!e) return ESK_OK;
  int rc;
  if (rd_kafka_error_is_fatal(e))
    rc = esk_error_set(err, ESK_EFATAL, "%s: fatal (fenced or unrecoverable): %s", op,
                       rd_kafka_error_string(e));
  else if (rd_kafka_error_txn_requires_abort(e))
    rc = esk_error_set(err, ESK_ECONFLICT, "%s: the transaction must be aborted: %s", op,
                       rd_kafka_error_string(e));
  else if (rd_kafka_error_is_retriable(e))
    rc = esk_error_set(err, ESK_ERETRY, "%s: retriable: %s", op, rd_kafka_error_string(e));
  else
    rc = esk_error_set(err, ESK_EFATAL, "%s: %s", op, rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return rc;
}

int esk_kafka_reader_new(rd_kafka_t **out, const char *bootstrap, const char *const *extra,
                         esk_error_t *err) {
  rd_kafka_conf_t *conf = NULL;
  int rc = esk_kafka_conf_new(&conf, RD_KAFKA_CONSUMER, bootstrap, err);
  return rc ? rc : esk_kafka_reader_new_conf(out, conf, extra, err);
}

int esk_kafka_reader_new_conf(rd_kafka_t **out, rd_kafka_conf_t *conf, const char *const *extra,
                              esk_error_t *err) {
  char errstr[256];
  int rc;
  /* assign() and consumer_poll() need a group handle; nothing joins or commits. */
  static const char *const base[] = {"group.id", "esk.reader",
                                     "isolation.level", "read_committed",
                                     "enable.partition.eof", "true",
                                     "enable.auto.commit", "false",
                                     "enable.auto.offset.store", "false",
                                     /* measured on 300k-record partitions: 16 MB
                                      * partition fetches made some topics 10x
                                      * slower to read; librdkafka's 1 MB default and
                                      * a short wait (the end of a partition costs
                                      * one wait) read any of them in ~0.2 s */
                                     "queued.max.messages.kbytes", "262144",
                                     "fetch.wait.max.ms", "10",
                                     NULL};
  for (size_t i = 0; base[i]; i += 2)
    if ((rc = esk_kafka_conf_set(conf, base[i], base[i + 1], err))) goto cleanup;
  for (size_t i = 0; extra && extra[i] && extra[i + 1]; i += 2)
    if ((rc = esk_kafka_conf_set(conf, extra[i], extra[i + 1], err))) goto cleanup;
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (!rk) {
    rc = esk_error_set(err, ESK_EFATAL, "cannot create a Kafka consumer: %s", errstr);
    goto cleanup;
  }
  *out = rk;
  return ESK_OK;
cleanup:
  rd_kafka_conf_destroy(conf);
  return rc;
}

int esk_kafka_read_partition(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t from,
                             int idle_timeout_ms, esk_kafka_msg_fn fn, void *ctx,
                             int64_t *end_out, esk_error_t *err) {
  int64_t lo = 0, hi = 0;
  rd_kafka_resp_err_t e =
      esk_kafka_watermarks(rk, topic, partition, &lo, &hi, idle_timeout_ms);
  if (e)
    return esk_error_set(err, ESK_ERETRY, "watermarks of %s [%d]: %s", topic, (int)partition,
                         rd_kafka_err2str(e));
  if (from < lo) from = lo; /* RD_KAFKA_OFFSET_BEGINNING, or an offset deleted since */
  if (from >= hi) {
    if (end_out) *end_out = from;
    return ESK_OK;
  }
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = from;
  e = rd_kafka_assign(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  if (e)
    return esk_error_set(err, ESK_ERETRY, "assigning %s [%d]: %s", topic, (int)partition,
                         rd_kafka_err2str(e));
  int rc = ESK_OK;
  int64_t pos = from;
  int idle = 0;
  for (int64_t n = 0;; n++) {
    /* a long read is progress for the watchdog, and a stop ends it */
    if ((n & 1023) == 0) esk_watchdog_beat();
    if (esk_watchdog_stopping()) {
      rc = esk_error_set(err, ESK_ERETRY, "reading %s [%d]: stopped at offset %lld (end %lld)",
                         topic, (int)partition, (long long)pos, (long long)hi);
      break;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (!m) {
      n |= 1023; /* idle: beat at the next turn */
      if ((idle += 100) >= idle_timeout_ms) {
        rc = esk_error_set(err, ESK_ERETRY,
                           "reading %s [%d]: no message for %d ms at offset %lld (end %lld)",
                           topic, (int)partition, idle_timeout_ms, (long long)pos,
                           (long long)hi);
        break;
      }
      continue;
    }
    idle = 0;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (m->offset > pos) pos = m->offset;
      rd_kafka_message_destroy(m);
      break;
    }
    if (m->err) {
      if (is_authorization(m->err))
        rc = refused(err, rk, "READ", topic, rd_kafka_message_errstr(m));
      else
        rc = esk_error_set(err, ESK_ERETRY, "reading %s [%d]: %s", topic, (int)partition,
                           rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      break;
    }
    pos = m->offset + 1;
    rc = fn ? fn(m, ctx) : ESK_OK;
    rd_kafka_message_destroy(m);
    if (rc) break;
  }
  rd_kafka_assign(rk, NULL);
  if (rc == ESK_OK && end_out) *end_out = pos;
  return rc;
}

int esk_kafka_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size) {
  rd_kafka_headers_t *h = NULL;
  const void *v = NULL;
  size_t n = 0;
  if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &n)) return 0;
  if (size == 0) return 1;
  if (n >= size) n = size - 1;
  if (v) memcpy(buf, v, n);
  buf[n] = '\0';
  return 1;
}
