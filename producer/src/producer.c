/* The esk-producer runtime (see producer.h and docs/producer.md), producer.c:
 * configuration, set-up, the Kafka callbacks, readiness and
 * the run loop. */
#include "producer.h"
#include "producer_int.h"

const esk_conf_prop_t esk_producer_props[] = {
    {"topic.prefix", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "Prepended to every topic name (<prefix><domain>.commands, ...) and to the default group "
     "and transactional ids; tests and benchmarks use a unique one."},
    ESK_DOMAIN_DIR_PROP,
    {"group.id", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "Consumer group of the command handlers; empty: <topic.prefix>esk.<domain>.command-handlers."},
    {"instance", ESK_CONF_STRING, "0", 0, 0, NULL, NULL,
     "Name of this instance, part of the default transactional.id."},
    {"transactional.id", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "Stable transactional id of this instance (a restart with the same id fences the old "
     "process); empty: <topic.prefix>esk-producer.<domain>.<host name>.<instance>. Two live "
     "instances must not share one."},
    {"batch.max.commands", ESK_CONF_INT, "10000", 1, 1000000, NULL, NULL,
     "Most commands handled in one Kafka transaction."},
    {"batch.max.ms", ESK_CONF_INT, "100", 1, 60000, NULL, NULL,
     "Longest time a transaction stays open collecting commands, in milliseconds."},
    {"batch.linger.ms", ESK_CONF_INT, "0", 0, 60000, NULL, NULL,
     "How long an open transaction waits for another command once none is ready, in "
     "milliseconds (0: it commits as soon as the consumer has nothing more ready, so a "
     "command waits for one commit, not for batch.max.ms; under load the commands that "
     "arrive during a commit make the next batch). More trades latency for fewer, larger "
     "transactions at moderate rates."},
    {"snapshot.every", ESK_CONF_INT, "100", 0, 1000000000, NULL, NULL,
     "Snapshot an aggregate every this many of its events (0: never)."},
    {"checkpoint.events", ESK_CONF_INT, "100000", 0, 1000000000, NULL, NULL,
     "After this many events on a partition, snapshot every aggregate changed since the last "
     "checkpoint and record the events offset, so a restore reads only the events after it "
     "(0: never; restores then read every event)."},
    {"seen.max", ESK_CONF_INT, "100000", 1, 100000000, NULL, NULL,
     "Command ids remembered per partition for idempotency (about 100 bytes each with "
     "36-character ids and short results); a restore reads this many of the newest results."},
    {"event.max.bytes", ESK_CONF_INT, "1000000", 512, 1000000000, NULL, NULL,
     "Largest event record (value, key and headers) published; a command whose event is larger "
     "is rejected as UNPUBLISHABLE instead of failing its transaction. At most "
     "kafka.message.max.bytes (checked at start); keep it at most the events topic's "
     "max.message.bytes too: a lower broker limit is found from the delivery reports, at the "
     "cost of an aborted transaction (see docs/producer.md)."},
    {"event.headers", ESK_CONF_ENUM, "full", 0, 0, "full,minimal", NULL,
     "Kafka headers of an event: full (esk.type, esk.schema_version, esk.event_id, "
     "esk.aggregate_version, esk.correlation_id, esk.causation_id, content-type) or minimal "
     "(esk.type and esk.schema_version). The value carries every one of them in its EventMeta "
     "either way; minimal saves the producer and the broker their per-record work "
     "(docs/benchmarks.md, \"Issue 18: the producer\")."},
    {"store.max.aggregates", ESK_CONF_INT, "0", 0, 1000000000, NULL, NULL,
     "Most aggregates held in memory per partition (0: 16M)."},
    {"store.max.accounts", ESK_CONF_INT, "0", 0, 1000000000, NULL, NULL,
     "Old name of store.max.aggregates, used when that is 0."},
    {"store.packed", ESK_CONF_BOOL, "true", 0, 0, NULL, NULL,
     "Keep each aggregate's state in memory as its snapshot bytes (the domain's "
     "snapshot_write), unpacked when a command needs it: a third to a half of the memory per "
     "aggregate of a fixed-size state, for one pack and one unpack per command (false: the "
     "domain's state_size bytes each; docs/benchmarks.md, \"The packed store by default\")."},
    {"restore.timeout.ms", ESK_CONF_INT, "30000", 1000, 3600000, NULL, NULL,
     "A restore fails, and the process stops, when the broker sends nothing for this long."},
    {"stats.interval.ms", ESK_CONF_INT, "10000", 0, 3600000, NULL, NULL,
     "Interval of the progress log line, in milliseconds (0: none)."},
    {"txn.offsets.first.ms", ESK_CONF_INT, "100", 0, 60000, NULL, NULL,
     "A batch begun less than this many milliseconds after the previous transaction ended "
     "sends its consumed offsets before its first record, so that the coordinator, still "
     "writing that transaction's markers, refuses AddOffsetsToTxn (retried after "
     "kafka.retry.backoff.ms) rather than AddPartitionsToTxn (retried after a fixed 20 ms "
     "by librdkafka 2.0.2); costs one more offsets commit per transaction (0: never)."},
    {"fence.check.interval.ms", ESK_CONF_INT, "2000", 0, 3600000, NULL, NULL,
     "While no transaction has run for this long, ask the transaction coordinator whether "
     "another instance with this transactional.id fenced this one (a transaction that only "
     "commits the committed offsets again); a fenced instance stops (exit 1) instead of "
     "holding its partitions while idle (0: never; it then learns of a fence at its next "
     "command)."},
    {"personal.master_key_file", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "File holding the master key (64 hex digits, readable by its owner only) that wraps the "
     "subject keys of personal data: with it, every personal field (esk.personal in the "
     "schemas) leaves the process encrypted, and the keys go to <prefix><domain>.subject-keys "
     "(docs/architecture.md, \"Personal data\"). Empty: esk-producer refuses to start for a "
     "domain with personal fields, unless personal.plaintext is true."},
    {"personal.plaintext", ESK_CONF_BOOL, "false", 0, 0, NULL, NULL,
     "Write personal fields in plaintext when personal.master_key_file is empty (a warning says "
     "so at start): for trials only, since such events can never be forgotten."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

/* Makes @p err fatal, keeping its message (re-formatting it into itself would
 * overlap source and destination). */
int esk_prod_escalate(esk_error_t *err) {
  err->code = ESK_EFATAL;
  return ESK_EFATAL;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  esk_producer_t *p = opaque;
  if (m->err) {
    if (esk_refusals_permanent(m->err))
      esk_prod_note_refusal(p, (uintptr_t)m->_private, m->rkt, m->len, m->err, 0);
    /* the transaction cannot commit now; esk_prod_finish_batch() aborts and rewinds
     * (one log line per batch there, not one per message) */
    p->batch_failed = 1;
    if (m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
      p->batch_broken = 1;
    if (p->batch_undelivered++ == 0)
      snprintf(p->batch_reason, sizeof(p->batch_reason), "delivery to %s [%d] failed: %s",
               rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
  }
}

/* A transaction left open longer than transaction.timeout.ms (a broker
 * outage or restart outlived it) is aborted by the coordinator itself, which
 * bumps the producer epoch; librdkafka 2.0.2 then reports this instance as
 * fenced although no other instance is (or INVALID_TXN_STATE, when ending the
 * transaction the coordinator already aborted). Not a zombie: a new producer
 * with the same transactional.id and a rewind carry on. A fence within the
 * timeout is another instance's, and stays fatal. */
int esk_prod_expired_not_fenced(esk_producer_t *p) {
  char es[256];
  rd_kafka_resp_err_t e = rd_kafka_fatal_error(p->producer, es, sizeof(es));
  return (e == RD_KAFKA_RESP_ERR__FENCED || e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
          e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH ||
          e == RD_KAFKA_RESP_ERR_INVALID_TXN_STATE /* its abort, already done */) &&
         p->txn_unended && p->txn_timeout_ms > 0 &&
         (esk_time_mono_s() - p->batch_t0) * 1000.0 >= (double)p->txn_timeout_ms;
}

static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque) {
  esk_producer_t *p = opaque;
  char q[512];
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    if (rk == p->producer && esk_prod_expired_not_fenced(p)) { /* finish_batch() recovers */
      ESK_WARN("kafka", "msg=\"transaction expired at the coordinator\" code=%s reason=%s",
               rd_kafka_err2name(orig), esk_log_quote(q, sizeof(q), buf));
      return;
    }
    esk_error_t e = {0};
    esk_error_set(&e, ESK_EFATAL, "kafka fatal error (%s): %s", rd_kafka_err2name(orig), buf);
    esk_watchdog_fatal(&p->health->fatal, &e);
    return;
  }
  ESK_WARN("kafka", "msg=\"client error\" code=%s reason=%s",
           rd_kafka_err2name((rd_kafka_resp_err_t)code), esk_log_quote(q, sizeof(q), reason));
}

/* The producer's Kafka settings checked against esk's: an event between
 * event.max.bytes and kafka.message.max.bytes would fail its transaction in
 * producev instead of being rejected before it (docs/producer.md), and a
 * batch must commit well within the transaction timeout. */
static int check_producer_conf(esk_producer_t *p, rd_kafka_conf_t *c, esk_error_t *err) {
  char tt[32], mb[32];
  size_t sz = sizeof(tt), msz = sizeof(mb);
  if (rd_kafka_conf_get(c, "message.max.bytes", mb, &msz) == RD_KAFKA_CONF_OK &&
      p->event_max > atoll(mb))
    return esk_error_set(err, ESK_EINVAL,
                         "event.max.bytes=%lld: must be at most kafka.message.max.bytes (%s)",
                         (long long)p->event_max, mb);
  if (rd_kafka_conf_get(c, "transaction.timeout.ms", tt, &sz) == RD_KAFKA_CONF_OK)
    p->txn_timeout_ms = atoll(tt);
  if (p->txn_timeout_ms && p->batch_ms * 2 > p->txn_timeout_ms)
    return esk_error_set(err, ESK_EINVAL,
                         "batch.max.ms=%lld: must be at most half of "
                         "kafka.transaction.timeout.ms (%s)",
                         (long long)p->batch_ms, tt);
  return ESK_OK;
}

/* The commands consumer needs an eager assignor (docs/producer.md). */
static int check_consumer_conf(rd_kafka_conf_t *c, esk_error_t *err) {
  char strat[128];
  size_t sz = sizeof(strat);
  if (rd_kafka_conf_get(c, "partition.assignment.strategy", strat, &sz) == RD_KAFKA_CONF_OK &&
      strstr(strat, "cooperative"))
    return esk_error_set(err, ESK_EINVAL,
                         "kafka.partition.assignment.strategy=%s: esk-producer needs an eager "
                         "assignor (range or roundrobin)",
                         strat);
  return ESK_OK;
}

/* A Kafka client of @p type with esk's callbacks and checks. @p keep: if not
 * NULL, set to a copy of the client's configuration. */
static int checked_client(rd_kafka_t **out, rd_kafka_conf_t **keep, esk_producer_t *p,
                          const esk_conf_t *conf, rd_kafka_type_t type,
                          const char *const *defaults, const char *const *forced,
                          esk_error_t *err) {
  rd_kafka_conf_t *c = NULL;
  int rc = esk_kafka_client_conf(&c, type, conf, defaults, forced, p, err);
  if (rc) return rc;
  rd_kafka_conf_set_error_cb(c, error_cb);
  if (type == RD_KAFKA_PRODUCER) {
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    if ((rc = check_producer_conf(p, c, err))) goto cleanup;
  }
  if (type == RD_KAFKA_CONSUMER && forced) {
    rd_kafka_conf_set_rebalance_cb(c, esk_prod_rebalance_cb);
    if ((rc = check_consumer_conf(c, err))) goto cleanup;
  }
  if (keep && !(*keep = rd_kafka_conf_dup(c))) {
    rc = esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
    goto cleanup;
  }
  return esk_kafka_client_new(out, type, c, err);
cleanup:
  rd_kafka_conf_destroy(c);
  return rc;
}

static int check_topics(esk_producer_t *p, esk_error_t *err) {
  const char *names[4] = {p->topics.commands, p->topics.events, p->topics.results,
                          p->topics.snapshots};
  int counts[4] = {0};
  for (int i = 0; i < 4; i++) {
    int rc = esk_kafka_partition_count(p->producer, names[i], 10000, &counts[i], err);
    if (rc == ESK_ENOTFOUND)
      return esk_error_set(err, ESK_EINVAL,
                           "topic %s does not exist: create the topics with eskctl topics create "
                           "--domain %s --partitions N",
                           names[i], p->domain);
    if (rc) return rc;
    if (counts[i] != counts[0])
      return esk_error_set(err, ESK_EINVAL,
                           "topic %s has %d partitions but %s has %d: the domain's topics must "
                           "be co-partitioned (eskctl topics create)",
                           names[i], counts[i], names[0], counts[0]);
  }
  p->nparts = counts[0];
  return ESK_OK;
}

/* Registers the esk_producer_* families (docs/deployment.md lists them) and
 * looks up every series the hot path updates. */
static int register_metrics(esk_producer_t *p, esk_metrics_t *reg, esk_error_t *err) {
  metrics_t *m = &p->m;
  esk_metric_t *f;
  int rc;
#define ESK_ONLY_(kind, out, name, help)                                                        \
  if ((rc = esk_metrics_##kind(&f, reg, name, help, NULL, 0, err))) return rc;                  \
  (out) = esk_metrics_only(f)
  ESK_ONLY_(counter, m->accepted, "esk_producer_commands_accepted_total",
            "Commands that produced events (counted when their transaction commits).");
  ESK_ONLY_(counter, m->duplicates, "esk_producer_commands_duplicate_total",
            "Command ids seen before: the first result was returned again.");
  ESK_ONLY_(counter, m->skipped, "esk_producer_commands_skipped_total",
            "Commands skipped without a result: undecodable, without a usable command_id, or Kafka "
            "refused even their UNPUBLISHABLE result.");
  ESK_ONLY_(counter, m->batches, "esk_producer_batches_total", "Transactions committed.");
  ESK_ONLY_(counter, m->aborts, "esk_producer_transaction_aborts_total",
            "Transactions aborted on an abortable error (the batch is redone).");
  ESK_ONLY_(counter, m->restore_events, "esk_producer_state_restore_events_total",
            "Events replayed while restoring partitions.");
  ESK_ONLY_(gauge, m->assigned, "esk_producer_assigned_partitions",
            "Partitions of the commands topic this member holds.");
#undef ESK_ONLY_
  if ((rc = esk_metrics_counter(&f, reg, "esk_producer_commands_rejected_total",
                                "Commands rejected, by rule code.", "code", 64, err)))
    return rc;
  for (int r = 1; r < esk_domain_rule_count(p->dom); r++) {
    const char *code = esk_domain_rule_name(p->dom, r);
    if ((rc = esk_metrics_series(&m->rejected[r], f, &code, err))) return rc;
  }
  if ((rc = esk_metrics_histogram(&f, reg, "esk_producer_batch_duration_seconds",
                                  "One batch: from its first command to its committed "
                                  "transaction.",
                                  NULL, 0, esk_metrics_latency_buckets,
                                  esk_metrics_latency_buckets_n, err)))
    return rc;
  m->batch_s = esk_metrics_only(f);
  size_t maxp = p->nparts > 0 ? (size_t)p->nparts : 1;
  if ((rc = esk_metrics_gauge(&m->restore_f, reg, "esk_producer_state_restore_seconds",
                              "Time the last restore of a partition took (snapshots, events, "
                              "results; retries included).",
                              "partition", maxp, err)) ||
      (rc = esk_metrics_gauge(&m->lag_f, reg, "esk_producer_lag_commands",
                              "Commands waiting in a held partition of the commands topic "
                              "(cached high watermark minus the next offset to handle).",
                              "partition", maxp, err)))
    return rc;
  m->restore_s = calloc(maxp, sizeof(*m->restore_s));
  m->lag_s = calloc(maxp, sizeof(*m->lag_s));
  if (!m->restore_s || !m->lag_s) return esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
  return ESK_OK;
}

/* The domain's contract (schemas, upcasters) in a codec of the runtime's, its
 * instance, and the scratch of its decisions. */
static int open_domain(esk_producer_t *p, esk_error_t *err) {
  int rc;
  if ((rc = esk_domain_inst_open(&p->di, p->dom, err)) ||
      (rc = esk_decider_new(&p->dc, p->dom, err)))
    return rc;
  p->codec = p->di.codec;
  p->dom_self = p->di.self;
  p->decode_fast = esk_domain_decode_command_bytes(p->dom);
  if (!(p->cmd = calloc(1, p->dom->command_size)))
    return esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
  return ESK_OK;
}

static void close_domain(esk_producer_t *p) {
  free(p->cmd);
  esk_decider_destroy(p->dc);
  esk_domain_inst_close(&p->di);
}

/* The group and transactional ids: configured, or made from the prefix,
 * the domain, the host name and the instance. */
static void name_ids(esk_producer_t *p, const esk_conf_t *conf, const char *prefix,
                     const char *domain) {
  const char *gid = esk_conf_get(conf, "group.id");
  if (gid && *gid)
    snprintf(p->group_id, sizeof(p->group_id), "%s", gid);
  else
    snprintf(p->group_id, sizeof(p->group_id), "%sesk.%s.command-handlers", prefix, domain);
  const char *tid = esk_conf_get(conf, "transactional.id");
  if (tid && *tid) {
    snprintf(p->txn_id, sizeof(p->txn_id), "%s", tid);
  } else {
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    snprintf(p->txn_id, sizeof(p->txn_id), "%sesk-producer.%s.%s.%s", prefix, domain, host,
             esk_conf_get(conf, "instance"));
  }
}

/* The producer's own keys (the table above), checked by esk_conf already. */
static void read_limits(esk_producer_t *p, const esk_conf_t *conf) {
  p->batch_max = esk_conf_get_int(conf, "batch.max.commands");
  p->batch_ms = esk_conf_get_int(conf, "batch.max.ms");
  p->linger_ms = esk_conf_get_int(conf, "batch.linger.ms");
  p->snapshot_every = esk_conf_get_int(conf, "snapshot.every");
  p->ckpt_events = esk_conf_get_int(conf, "checkpoint.events");
  p->seen_max = esk_conf_get_int(conf, "seen.max");
  p->store_max = esk_conf_get_int(conf, "store.max.aggregates");
  if (!p->store_max) p->store_max = esk_conf_get_int(conf, "store.max.accounts"); /* old name */
  p->store_packed = esk_conf_get_bool(conf, "store.packed");
  p->restore_ms = esk_conf_get_int(conf, "restore.timeout.ms");
  p->stats_ms = esk_conf_get_int(conf, "stats.interval.ms");
  p->event_max = esk_conf_get_int(conf, "event.max.bytes");
  p->headers_minimal = !strcmp(esk_conf_get(conf, "event.headers"), "minimal");
  p->fence_ms = esk_conf_get_int(conf, "fence.check.interval.ms");
  p->offsets_first_ms = esk_conf_get_int(conf, "txn.offsets.first.ms");
}

/* The transactional producer and the consumer of the commands, with esk's
 * defaults (which kafka.* keys override) and what esk forces. */
static int make_clients(esk_producer_t *p, const esk_conf_t *conf, esk_error_t *err) {
  int rc;
  /* only failed deliveries call back: the reports of successful ones cost
   * ~15% of the main thread and nothing needs them */
  /* retry.backoff.ms: a transaction begun while the coordinator still writes
   * the previous one's markers (1-3 ms here) is answered
   * CONCURRENT_TRANSACTIONS, and librdkafka waits this long before
   * AddOffsetsToTxn again, which txn.offsets.first.ms sends first (100 ms by
   * default: a command then waited over 100 ms at 200 commands/s) */
  static const char *const prod_defaults[] = {"delivery.report.only.error", "true",
                                              "linger.ms", "5",
                                              "retry.backoff.ms", "2",
                                              "transaction.timeout.ms", "10000",
                                              "batch.num.messages", "10000",
                                              "queue.buffering.max.messages", "1000000",
                                              NULL};
  const char *prod_forced[] = {"transactional.id", p->txn_id, "enable.idempotence", "true", NULL};
  static const char *const cons_defaults[] = {"session.timeout.ms", "10000",
                                              "partition.assignment.strategy", "range",
                                              "fetch.wait.max.ms", "20",
                                              NULL};
  const char *cons_forced[] = {"group.id", p->group_id,
                               "isolation.level", "read_committed",
                               "enable.auto.commit", "false",
                               "enable.auto.offset.store", "false",
                               "auto.offset.reset", "earliest",
                               NULL};
  if ((rc = checked_client(&p->producer, &p->prod_conf, p, conf, RD_KAFKA_PRODUCER,
                           prod_defaults, prod_forced, err)))
    return rc;
  if ((rc = checked_client(&p->consumer, NULL, p, conf, RD_KAFKA_CONSUMER, cons_defaults,
                           cons_forced, err)))
    return rc;
  return ESK_OK;
}

/* The restore reader: a consumer too, with the same kafka.* and
 * kafka.consumer.* settings (security, bootstrap), its own read settings on top. */
static int make_reader(esk_producer_t *p, const esk_conf_t *conf, esk_error_t *err) {
  rd_kafka_conf_t *rconf = NULL;
  int rc = esk_kafka_client_conf(&rconf, RD_KAFKA_CONSUMER, conf, NULL, NULL, NULL, err);
  return rc ? rc : esk_kafka_reader_new_conf(&p->reader, rconf, NULL, err);
}

int esk_producer_new(esk_producer_t **out, const esk_conf_t *conf, esk_metrics_t *metrics,
                     esk_producer_health_t *health, esk_error_t *err) {
  esk_producer_t *p = calloc(1, sizeof(*p));
  if (!p) return esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
  p->health = health ? health : &p->own_health;
  int rc;
  const char *prefix = esk_conf_get(conf, "topic.prefix");
  const char *domain = esk_conf_get(conf, "domain");
  esk_buf_init(&p->buf, 1 << 20);
  for (size_t i = 0; i < ESK_DOMAIN_MAX_EVENTS; i++) esk_buf_init(&p->evbuf[i], 1 << 20);
  if ((rc = esk_domain_lib_open(&p->dom_lib, esk_conf_get(conf, "domain.dir"), domain, err)))
    goto cleanup;
  p->dom = esk_domain_lib_domain(p->dom_lib);
  snprintf(p->domain, sizeof(p->domain), "%s", domain);
  if ((rc = esk_topics_init(&p->topics, prefix, domain, err))) goto cleanup;
  name_ids(p, conf, prefix, domain);
  read_limits(p, conf);
  if ((rc = open_domain(p, err)) || (rc = make_clients(p, conf, err)) ||
      (rc = check_topics(p, err)))
    goto cleanup;
  p->parts = calloc((size_t)p->nparts, sizeof(*p->parts));
  if (!p->parts) {
    rc = esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
    goto cleanup;
  }
  for (int i = 0; i < p->nparts; i++) p->parts[i].batch_next = p->parts[i].next_offset = -1;
  if (metrics && (rc = register_metrics(p, metrics, err))) goto cleanup;
  if ((rc = make_reader(p, conf, err)) || (rc = esk_prod_shred_open(p, conf, err)) ||
      (rc = esk_prod_init_transactions(p, err)))
    goto cleanup;
  *out = p;
  return ESK_OK;
cleanup:
  esk_producer_destroy(p);
  return rc;
}

void esk_producer_destroy(esk_producer_t *p) {
  if (!p) return;
  for (int i = 0; i < p->nparts && p->parts; i++) esk_prod_drop_part(p, i);
  free(p->parts);
  free(p->m.restore_s);
  free(p->m.lag_s);
  esk_watchdog_doing("rd_kafka_destroy (the consumers)");
  if (p->consumer) rd_kafka_destroy(p->consumer);
  if (p->reader) rd_kafka_destroy(p->reader);
  esk_prod_drop_producer(p);
  esk_watchdog_doing(NULL);
  if (p->prod_conf) rd_kafka_conf_destroy(p->prod_conf);
  close_domain(p);
  esk_domain_lib_close(p->dom_lib); /* after everything made from the domain */
  esk_buf_free(&p->buf);
  for (size_t i = 0; i < ESK_DOMAIN_MAX_EVENTS; i++) esk_buf_free(&p->evbuf[i]);
  free(p->cmds);
  esk_refusals_free(&p->rf);
  esk_shred_destroy(p->shred);
  esk_buf_free(&p->shred_buf);
  free(p);
}

/* Once per turn of the run loop that reads the clock (every 64 commands, or
 * when idle): the heartbeat /healthz reads, and the fence check. */
static void keep_alive(esk_producer_t *p, int64_t now) {
  esk_watchdog_beat();
  esk_prod_check_fence(p, now);
  esk_prod_shred_tick(p, now);
}

/* The watchdog's wake callback (its thread): the run loop's poll returns. */
static void wake_poll(void *queue) { rd_kafka_queue_yield(queue); }

static void log_stats(esk_producer_t *p, const stats_t *prev, int64_t ms) {
  double secs = ms > 0 ? (double)ms / 1000.0 : 1.0;
  ESK_INFO(FAC,
           "msg=stats commands=%lld accepted=%lld rejected=%lld duplicates=%lld poison=%lld "
           "txns=%lld aborts=%lld commit_ms=%lld commands_per_s=%.0f",
           (long long)p->st.commands, (long long)p->st.accepted, (long long)p->st.rejected,
           (long long)p->st.duplicates, (long long)p->st.poison, (long long)p->st.txns,
           (long long)p->st.aborts, (long long)p->st.commit_ms,
           (double)(p->st.commands - prev->commands) / secs);
}

/* The main loop's poll: idle, it waits for the next command (100 ms, to look
 * at the stop flag and the stats); with a batch open, only batch.linger.ms and
 * never past the batch's deadline (docs/producer.md, "Batches"). */
static int poll_timeout(const esk_producer_t *p, int64_t now) {
  if (!p->in_txn) return 100;
  int64_t left = p->batch_deadline - now;
  if (left > p->linger_ms) left = p->linger_ms;
  return left > 0 ? (int)left : 0;
}

/* One message of the consumer: a command, or an error (a fatal one stops the loop). */
static void handle_message(esk_producer_t *p, const rd_kafka_message_t *m) {
  if (!m->err) {
    esk_prod_handle_command(p, m);
  } else if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
    esk_error_t fe = {0};
    esk_error_set(&fe, ESK_EFATAL, "consumer: %s", rd_kafka_message_errstr(m));
    esk_watchdog_fatal(&p->health->fatal, &fe);
  } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    char q[256];
    ESK_WARN(FAC, "msg=\"consumer error\" reason=%s",
             esk_log_quote(q, sizeof(q), rd_kafka_message_errstr(m)));
  }
}

/* Adaptive batching: the open batch closes when no command is ready (@p got
 * is 0: the poll came back empty), when it is full, or at its deadline.
 * @returns the clock after it. */
static int64_t close_batch_if_due(esk_producer_t *p, int got, int64_t now) {
  if (!p->in_txn || esk_prod_fatal(p) ||
      (got && p->batch_n < p->batch_max && now < p->batch_deadline))
    return now;
  esk_error_t fe = {0};
  if (esk_prod_finish_batch(p, 1, &fe)) esk_watchdog_fatal(&p->health->fatal, &fe);
  return esk_time_mono_ms();
}

/* Subscribes to the commands, and lets a stop wake the run loop's poll (it may
 * wait up to batch.max.ms with a batch open). */
static int start_run(esk_producer_t *p, rd_kafka_queue_t **cq, esk_error_t *err) {
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, p->topics.commands, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(p->consumer, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  if (e) return esk_error_set(err, ESK_EFATAL, "subscribe %s: %s", p->topics.commands,
                              rd_kafka_err2str(e));
  *cq = rd_kafka_queue_get_consumer(p->consumer);
  esk_watchdog_set_wake(wake_poll, *cq);
  ESK_INFO(FAC, "msg=started commands=%s events=%s group=%s partitions=%d", p->topics.commands,
           p->topics.events, p->group_id, p->nparts);
  atomic_store(&p->health->running, 1);
  return ESK_OK;
}

/* After the loop: the open batch completed (unless fatal), the group left. */
static void end_run(esk_producer_t *p, rd_kafka_queue_t *cq) {
  if (!esk_prod_fatal(p) && p->in_txn) {
    esk_error_t fe = {0};
    const char *was = esk_watchdog_doing("finishing the open batch");
    if (esk_prod_finish_batch(p, 0, &fe)) esk_watchdog_fatal(&p->health->fatal, &fe);
    esk_watchdog_doing(was);
  }
  if (esk_prod_fatal(p)) p->in_txn = 0; /* nothing more goes into a broken transaction */
  esk_watchdog_set_wake(NULL, NULL);
  rd_kafka_queue_destroy(cq);
  atomic_store(&p->health->running, 0);
  /* no timeout in librdkafka 2.0.2 (it runs the revocation, then leaves the
   * group): the watchdog bounds it */
  (void)ESK_WAITING("rd_kafka_consumer_close (revoking, leaving the group)",
                    rd_kafka_consumer_close(p->consumer));
}

int esk_producer_run(esk_producer_t *p, volatile sig_atomic_t *stop, esk_error_t *err) {
  rd_kafka_queue_t *cq = NULL;
  int rc = start_run(p, &cq, err);
  if (rc) return rc;
  stats_t prev = p->st;
  int64_t now = esk_time_mono_ms(), last_stats = now;
  uint64_t iter = 0;
  while (!*stop && !esk_prod_fatal(p)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, poll_timeout(p, now));
    if (m) {
      handle_message(p, m);
      rd_kafka_message_destroy(m);
    }
    /* while commands keep coming without a wait, delivery reports and the
     * clock every 64 commands (both showed in profiles when done per command);
     * a poll that may have waited (linger) is followed by a look at the clock */
    if (m && !p->linger_ms && (++iter & 63) && p->batch_n < p->batch_max) continue;
    rd_kafka_poll(p->producer, 0);
    now = close_batch_if_due(p, m != NULL, esk_time_mono_ms());
    esk_prod_update_lag(p, now);
    keep_alive(p, now);
    if (p->stats_ms && now - last_stats >= p->stats_ms) {
      log_stats(p, &prev, now - last_stats);
      prev = p->st;
      last_stats = now;
    }
  }
  end_run(p, cq);
  log_stats(p, &prev, esk_time_mono_ms() - last_stats);
  if (esk_prod_fatal(p)) {
    *err = p->health->fatal.err;
    return ESK_EFATAL;
  }
  ESK_INFO(FAC, "msg=stopped");
  return ESK_OK;
}
