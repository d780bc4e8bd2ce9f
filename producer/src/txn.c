/* Transactions: one per batch (begin, checkpoints, offsets, commit, abort
 * and rewind), the transactional producer, and the fence check. */
#include "producer_int.h"
#include "esk/time.h"

/* Opens the transaction on the coordinator before the batch's first record,
 * when the previous transaction ended less than txn.offsets.first.ms ago
 * (docs/producer.md, "Latency"). Until the coordinator has written that
 * transaction's markers (a few ms after commit_transaction returned) it
 * refuses the next one's first request with CONCURRENT_TRANSACTIONS, and
 * librdkafka 2.0.2 retries a refused AddPartitionsToTxn (sent with the first
 * record) only after a fixed 20 ms, but AddOffsetsToTxn after
 * retry.backoff.ms. So the batch first sends the offsets of @p part as they
 * stand before its first command (@p offset: nothing of the batch consumed,
 * what is committed already), and its records find the transaction open.
 * The batch's own offsets replace these at the commit. An error here is left
 * to that send, which meets the same transaction state and handles it. */
static void offsets_first(esk_producer_t *p, int32_t part, int64_t offset) {
  if (!p->offsets_first_ms || esk_time_mono_ms() - p->txn_end_ms >= p->offsets_first_ms) return;
  rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(offs, p->topics.commands, part)->offset = offset;
  rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(p->consumer);
  rd_kafka_error_t *e = ESK_WAITING("send_offsets_to_transaction (before the batch's records)",
                                    rd_kafka_send_offsets_to_transaction(p->producer, offs, md,
                                                                         30000));
  if (e) {
    ESK_DEBUG(FAC, "msg=\"offsets before the records not sent\" reason=\"%s\"",
              rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_consumer_group_metadata_destroy(md);
  rd_kafka_topic_partition_list_destroy(offs);
}

int esk_prod_begin_batch(esk_producer_t *p, int32_t part, int64_t offset, esk_error_t *err) {
  int rc = esk_kafka_txn_error(rd_kafka_begin_transaction(p->producer), "begin_transaction", err);
  if (rc) return esk_prod_escalate(err);
  offsets_first(p, part, offset);
  if (p->shred) esk_shred_txn_begin(p->shred);
  p->in_txn = 1;
  p->batch_failed = 0;
  p->batch_undelivered = 0;
  p->batch_broken = 0;
  p->batch_reason[0] = '\0';
  p->batch_n = 0;
  p->batch_isolated = 0;
  p->rf.n_refused = 0;
  p->batch_deadline = esk_time_mono_ms() + p->batch_ms;
  p->batch_t0 = esk_time_mono_s();
  p->txn_unended = 1;
  memset(&p->bc, 0, sizeof(p->bc));
  return ESK_OK;
}

typedef struct ckpt_ctx_s {
  esk_producer_t *p;
  int32_t part;
} ckpt_ctx_t;

static int snapshot_dirty(const void *key, size_t klen, void *value, void *opaque) {
  (void)klen;
  (void)value;
  ckpt_ctx_t *c = opaque;
  const void *s = esk_aggstore_get(c->p->parts[c->part].store, key);
  return s ? esk_prod_produce_snapshot(c->p, c->part, key, s, NULL) : ESK_OK;
}

static int write_checkpoints(esk_producer_t *p) {
  int due = 0;
  for (int32_t i = 0; i < p->nparts; i++)
    due |= p->parts[i].active && p->ckpt_events && p->parts[i].events_since_ckpt >= p->ckpt_events;
  if (!due) return ESK_OK;
  /* Wait until this batch's events are written (the commit would wait for
   * them anyway); then every event of the partition below its high watermark
   * is in our state, or belongs to an aborted transaction, or to the open
   * transaction of a dead instance, which cannot commit (its offsets carry an
   * old group generation): the high watermark is a safe checkpoint. */
  if (ESK_WAITING("rd_kafka_flush (before a checkpoint)", rd_kafka_flush(p->producer, 60000)))
    return ESK_ERETRY;
  for (int32_t i = 0; i < p->nparts; i++) {
    part_t *pt = &p->parts[i];
    if (!pt->active || !p->ckpt_events || pt->events_since_ckpt < p->ckpt_events) continue;
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = esk_kafka_watermarks(p->producer, p->topics.events, i,
                                                             &lo, &hi, 10000);
    if (e) { /* no checkpoint this time: the next batch tries again */
      ESK_WARN(FAC, "msg=\"checkpoint skipped\" partition=%d reason=\"%s\"", (int)i,
               rd_kafka_err2str(e));
      continue;
    }
    ckpt_ctx_t c = {p, i};
    int rc = esk_hmap_foreach(pt->dirty, snapshot_dirty, &c);
    if (rc) return rc;
    uint8_t v[ESK_RESTORE_CHECKPOINT_SIZE];
    esk_restore_checkpoint_encode(v, hi);
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    esk_prod_hdr(h, "esk.type", "Checkpoint");
    if ((rc = esk_prod_produce(p, p->rkt_snap, i, ESK_RESTORE_CHECKPOINT_KEY,
                      sizeof(ESK_RESTORE_CHECKPOINT_KEY) - 1, v, sizeof(v), h, NULL)))
      return rc;
    pt->ckpt_pending = 1;
    ESK_DEBUG(FAC, "msg=\"checkpoint\" partition=%d events_offset=%lld accounts=%zu", (int)i,
              (long long)hi, esk_hmap_count(pt->dirty));
  }
  return ESK_OK;
}

/* The committed batch's counts and duration into the metrics. */
static void publish_batch(esk_producer_t *p) {
  const batch_counts_t *c = &p->bc;
  if (c->accepted) esk_metrics_add(p->m.accepted, (uint64_t)c->accepted);
  if (c->duplicates) esk_metrics_add(p->m.duplicates, (uint64_t)c->duplicates);
  if (c->skipped) esk_metrics_add(p->m.skipped, (uint64_t)c->skipped);
  for (int r = 0; r < esk_domain_rule_count(p->dom); r++)
    if (c->rejected[r]) esk_metrics_add(p->m.rejected[r], (uint64_t)c->rejected[r]);
  esk_metrics_inc(p->m.batches);
  esk_metrics_observe(p->m.batch_s, esk_time_mono_s() - p->batch_t0);
}

/* Waits (at most @p timeout_ms) until Kafka acknowledged every message sent.
 * commit_transaction() flushes too, but librdkafka 2.0.2's flush sleeps in
 * 10 ms slices on the delivery report queue, and with
 * delivery.report.only.error nothing wakes it at the last acknowledgement:
 * every commit took 10 ms longer than its messages did. Flushed here in 1 ms
 * slices, the commit's own flush finds nothing left (docs/producer.md). A
 * flush, unlike a poll, also sends at once what still lingers (linger.ms):
 * polled, the batch's last records waited out linger.ms before the commit. */
static void await_acks(esk_producer_t *p, int64_t timeout_ms) {
  int64_t until = esk_time_mono_ms() + timeout_ms;
  while (rd_kafka_outq_len(p->producer) > 0 && esk_time_mono_ms() < until)
    (void)rd_kafka_flush(p->producer, 1); /* ERR__TIMED_OUT after each slice */
}

static int rewind_all(esk_producer_t *p, esk_error_t *err);

/* The batch's consumed offsets into its transaction, with the consumer
 * group's metadata (so that a zombie of an older generation cannot commit). */
static int send_batch_offsets(esk_producer_t *p, esk_error_t *err) {
  int rc = ESK_OK;
  rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(p->nparts);
  for (int32_t i = 0; i < p->nparts; i++)
    if (p->parts[i].batch_next >= 0)
      rd_kafka_topic_partition_list_add(offs, p->topics.commands, i)->offset =
          p->parts[i].batch_next;
  if (offs->cnt) {
    rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(p->consumer);
    for (int tries = 0; tries < 5; tries++) {
      rc = esk_kafka_txn_error(
          ESK_WAITING("send_offsets_to_transaction",
                      rd_kafka_send_offsets_to_transaction(p->producer, offs, md, 30000)),
          "send_offsets_to_transaction", err);
      if (rc != ESK_ERETRY) break;
    }
    rd_kafka_consumer_group_metadata_destroy(md);
  }
  rd_kafka_topic_partition_list_destroy(offs);
  return rc;
}

/* Waits for the batch's acknowledgements, then commits its transaction. */
static int commit_batch(esk_producer_t *p, esk_error_t *err) {
  int rc = ESK_OK;
  await_acks(p, 60000);
  for (int tries = 0; tries < 5; tries++) {
    rc = esk_kafka_txn_error(ESK_WAITING("commit_transaction",
                                         rd_kafka_commit_transaction(p->producer, 60000)),
                             "commit_transaction", err);
    if (rc != ESK_ERETRY) break;
  }
  if (rc == ESK_OK && p->batch_failed) rc = ESK_ECONFLICT; /* cannot happen: belt and braces */
  return rc;
}

/* After the commit: counts, metrics, and a fresh dirty set where a checkpoint
 * was written. */
static int batch_committed(esk_producer_t *p, esk_error_t *err) {
  if (p->shred) esk_shred_txn_committed(p->shred);
  p->txn_unended = 0;
  p->st.txns++;
  p->abort_backoff_ms = 0;
  publish_batch(p);
  for (int32_t i = 0; i < p->nparts; i++) {
    part_t *pt = &p->parts[i];
    if (!pt->ckpt_pending) continue;
    pt->ckpt_pending = 0;
    pt->events_since_ckpt = 0;
    esk_hmap_destroy(pt->dirty);
    pt->dirty = NULL;
    int rc = esk_hmap_new(&pt->dirty, 1, 0, 0, err);
    if (rc) return rc;
  }
  return ESK_OK;
}

/* Logs the abort and backs off: a cause that persists (a broker down, a
 * topic's min.insync.replicas out of reach) must not spin; refused messages
 * are judged after the abort instead. */
static void abort_backoff(esk_producer_t *p, const esk_error_t *err) {
  char q[512];
  ESK_WARN(FAC, "msg=\"aborting transaction\" commands=%lld undelivered=%lld retry_in_ms=%lld "
           "reason=%s", (long long)p->batch_n, (long long)p->batch_undelivered,
           (long long)p->abort_backoff_ms, esk_log_quote(q, sizeof(q), err->msg));
  p->st.aborts++;
  esk_metrics_inc(p->m.aborts);
  if (p->abort_backoff_ms) esk_time_sleep_ms(p->abort_backoff_ms);
  p->abort_backoff_ms = p->abort_backoff_ms ? p->abort_backoff_ms * 2 : 100;
  if (p->abort_backoff_ms > 10000) p->abort_backoff_ms = 10000;
}

/* Aborts the transaction, unless @p *expired (the coordinator aborted it on
 * its timeout), which a fenced answer here may also reveal. */
static int abort_txn(esk_producer_t *p, int *expired, esk_error_t *err) {
  for (int tries = 0; !*expired; tries++) {
    int rc = esk_kafka_txn_error(ESK_WAITING("abort_transaction",
                                             rd_kafka_abort_transaction(p->producer, 60000)),
                                 "abort_transaction", err);
    if (rc == ESK_OK) return ESK_OK;
    if (rc == ESK_EFATAL && (*expired = esk_prod_expired_not_fenced(p))) break;
    if (rc != ESK_ERETRY || tries == 5) return esk_prod_escalate(err);
  }
  ESK_WARN(FAC, "msg=\"the coordinator aborted the transaction on its timeout; carrying on "
           "with a new producer\" open_ms=%.0f transaction_timeout_ms=%lld",
           (esk_time_mono_s() - p->batch_t0) * 1000.0, (long long)p->txn_timeout_ms);
  esk_error_clear(err);
  return ESK_OK;
}

/* The batch failed with @p rc: abort (unless fatal), judge its refusals, and
 * redo it from the committed offsets when @p rewind. */
static int batch_failed(esk_producer_t *p, int rc, int rewind, esk_error_t *err) {
  for (int32_t i = 0; i < p->nparts; i++) p->parts[i].ckpt_pending = 0;
  int expired = rc == ESK_EFATAL && esk_prod_expired_not_fenced(p);
  if (rc == ESK_EFATAL && !expired) return rc;
  if (!err->msg[0])
    esk_error_set(err, ESK_ECONFLICT, "%s",
                  p->batch_reason[0] ? p->batch_reason : "produce failed");
  abort_backoff(p, err);
  esk_error_clear(err);
  if ((rc = abort_txn(p, &expired, err))) return rc;
  /* before the redo: it must treat the refused commands differently */
  esk_refusals_judge(&p->rf, p->cmds, p->batch_isolated);
  if ((p->batch_broken || expired) && (rc = esk_prod_renew_producer(p, err)))
    return esk_prod_escalate(err);
  p->txn_unended = 0; /* aborted, or its producer replaced */
  p->batch_failed = 0; /* after the purged messages' reports */
  return rewind ? rewind_all(p, err) : ESK_OK;
}

/* Commits the open batch. On an abortable error: abort, and when @p rewind,
 * restore the held partitions and go back to the committed offsets. */
int esk_prod_finish_batch(esk_producer_t *p, int rewind, esk_error_t *err) {
  if (!p->in_txn) return ESK_OK;
  int rc = p->batch_failed ? ESK_ECONFLICT : write_checkpoints(p);
  if (rc == ESK_ERETRY || (rc == ESK_OK && p->batch_failed)) rc = ESK_ECONFLICT;
  if (rc == ESK_OK) rc = send_batch_offsets(p, err);
  int64_t t_commit = esk_time_mono_ms();
  if (rc == ESK_OK) rc = commit_batch(p, err);
  p->in_txn = 0;
  p->txn_end_ms = esk_time_mono_ms();
  p->st.commit_ms += p->txn_end_ms - t_commit;
  for (int32_t i = 0; i < p->nparts; i++) {
    if (rc == ESK_OK && p->rf.n_verdicts && p->parts[i].batch_next >= 0)
      esk_refusals_prune(&p->rf, i, p->parts[i].batch_next); /* answered and committed */
    p->parts[i].batch_next = -1;
  }
  return rc == ESK_OK ? batch_committed(p, err) : batch_failed(p, rc, rewind, err);
}

static int rewind_all(esk_producer_t *p, esk_error_t *err) {
  rd_kafka_topic_partition_list_t *cur = NULL;
  rd_kafka_resp_err_t e = rd_kafka_assignment(p->consumer, &cur);
  if (e) return esk_error_set(err, ESK_EFATAL, "assignment: %s", rd_kafka_err2str(e));
  rd_kafka_assign(p->consumer, NULL);
  int rc = ESK_OK;
  atomic_store(&p->health->restoring, cur->cnt);
  for (int i = 0; i < cur->cnt && rc == ESK_OK; i++) {
    cur->elems[i].offset = RD_KAFKA_OFFSET_INVALID; /* back to the committed offset */
    rc = esk_prod_restore_part(p, cur->elems[i].partition, err);
    if (rc == ESK_OK) atomic_fetch_sub(&p->health->restoring, 1);
  }
  if (rc == ESK_OK && (e = rd_kafka_assign(p->consumer, cur)))
    rc = esk_error_set(err, ESK_EFATAL, "re-assigning after an abort: %s", rd_kafka_err2str(e));
  rd_kafka_topic_partition_list_destroy(cur);
  if (rc) return esk_prod_escalate(err);
  ESK_INFO(FAC, "msg=\"rewound to the committed offsets after an abort\"");
  return ESK_OK;
}

/* The producer's topic handles, then its transactions (which fences an older
 * instance with the same transactional.id, or bumps our own epoch). */
int esk_prod_init_transactions(esk_producer_t *p, esk_error_t *err) {
  int rc;
  p->rkt_ev = rd_kafka_topic_new(p->producer, p->topics.events, NULL);
  p->rkt_res = rd_kafka_topic_new(p->producer, p->topics.results, NULL);
  p->rkt_snap = rd_kafka_topic_new(p->producer, p->topics.snapshots, NULL);
  if (p->shred) p->rkt_keys = rd_kafka_topic_new(p->producer, p->keys_topic, NULL);
  if (!p->rkt_ev || !p->rkt_res || !p->rkt_snap || (p->shred && !p->rkt_keys))
    return esk_error_set(err, ESK_EFATAL, "topic handles: %s",
                         rd_kafka_err2str(rd_kafka_last_error()));
  ESK_INFO(FAC, "msg=\"initialising transactions\" transactional_id=%s", p->txn_id);
  for (int tries = 0;; tries++) {
    rc = esk_kafka_txn_error(ESK_WAITING("init_transactions",
                                         rd_kafka_init_transactions(p->producer, 60000)),
                             "init_transactions", err);
    if (rc != ESK_ERETRY || tries == 3) break;
    /* most often the coordinator still finishing this id's previous
     * transaction (CONCURRENT_TRANSACTIONS in librdkafka's log): say so */
    char q[512];
    ESK_WARN(FAC, "msg=\"transactions not initialised yet, trying again\" attempt=%d of=4 "
                  "transactional_id=%s reason=%s hint=\"the coordinator may be unable to "
                  "finish this id's previous transaction: see the broker's log\"",
             tries + 1, p->txn_id, esk_log_quote(q, sizeof(q), err->msg));
  }
  return rc;
}

void esk_prod_drop_producer(esk_producer_t *p) {
  if (p->rkt_ev) rd_kafka_topic_destroy(p->rkt_ev);
  if (p->rkt_res) rd_kafka_topic_destroy(p->rkt_res);
  if (p->rkt_snap) rd_kafka_topic_destroy(p->rkt_snap);
  if (p->rkt_keys) rd_kafka_topic_destroy(p->rkt_keys);
  p->rkt_ev = p->rkt_res = p->rkt_snap = p->rkt_keys = NULL;
  if (p->producer) {
    const char *was = esk_watchdog_doing("rd_kafka_flush, rd_kafka_destroy (the producer)");
    rd_kafka_flush(p->producer, 5000);
    rd_kafka_destroy(p->producer); /* no timeout in librdkafka 2.0.2: the watchdog bounds it */
    p->producer = NULL;
    esk_watchdog_doing(was);
  }
}

/* A new producer after an abort in which messages failed. librdkafka 2.0.2
 * does not always bump the epoch when aborting then: the next transaction
 * fails on "skipped sequence numbers", or its messages time out and the abort
 * after them hangs on CONCURRENT_TRANSACTIONS. esk_prod_init_transactions() of a new
 * handle with the same transactional.id starts clean (about 10 ms here). */
int esk_prod_renew_producer(esk_producer_t *p, esk_error_t *err) {
  char errstr[512];
  rd_kafka_purge(p->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  esk_prod_drop_producer(p);
  rd_kafka_conf_t *c = rd_kafka_conf_dup(p->prod_conf);
  if (!c) return esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
  if (!(p->producer = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr)))) {
    rd_kafka_conf_destroy(c);
    return esk_error_set(err, ESK_EFATAL, "re-creating the Kafka producer: %s", errstr);
  }
  return esk_prod_init_transactions(p, err);
}

#define FENCE_CALL_MS 10000 /* each call of a fence check */

/* The committed offsets of the held partitions, or NULL when none is known
 * (nothing committed yet, or the group coordinator did not answer). */
static rd_kafka_topic_partition_list_t *held_committed(esk_producer_t *p) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(p->nparts);
  for (int32_t i = 0; i < p->nparts; i++)
    if (p->parts[i].active) rd_kafka_topic_partition_list_add(l, p->topics.commands, i);
  int known = 0;
  if (l->cnt && !ESK_WAITING("rd_kafka_committed (fence check)",
                             rd_kafka_committed(p->consumer, l, FENCE_CALL_MS)))
    for (int i = 0; i < l->cnt; i++) known += !l->elems[i].err && l->elems[i].offset >= 0;
  if (known) return l;
  rd_kafka_topic_partition_list_destroy(l);
  return NULL;
}

/* Ends the fence check's transaction, whose offsets call returned @p rc:
 * commits it (a retriable offsets call leaves it empty, which commits too),
 * or aborts it after an abortable error; one that cannot end is fatal. */
static int fence_txn_end(esk_producer_t *p, int rc, esk_error_t *err) {
  for (int tries = 0; (rc == ESK_OK || rc == ESK_ERETRY) && tries < 3; tries++) {
    rc = esk_kafka_txn_error(ESK_WAITING("commit_transaction (fence check)",
                                         rd_kafka_commit_transaction(p->producer, FENCE_CALL_MS)),
                             "commit_transaction", err);
    if (rc != ESK_ERETRY) break;
  }
  if (rc == ESK_OK || rc == ESK_EFATAL) return rc;
  esk_error_t ae = {0};
  for (int tries = 0; tries < 3; tries++) {
    int arc = esk_kafka_txn_error(ESK_WAITING("abort_transaction (fence check)",
                                              rd_kafka_abort_transaction(p->producer,
                                                                         FENCE_CALL_MS)),
                                  "abort_transaction", &ae);
    if (arc == ESK_OK) return rc;
    if (arc != ESK_ERETRY) break;
  }
  return esk_error_set(err, ESK_EFATAL, "%s; then %s", err->msg, ae.msg);
}

/* One transaction holding only @p offs (already committed): the coordinator
 * checks the producer epoch when the offsets are added. */
static int fence_txn(esk_producer_t *p, const rd_kafka_topic_partition_list_t *offs,
                     esk_error_t *err) {
  int rc = esk_kafka_txn_error(rd_kafka_begin_transaction(p->producer), "begin_transaction", err);
  if (rc) return rc;
  rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(p->consumer);
  rc = esk_kafka_txn_error(ESK_WAITING("send_offsets_to_transaction (fence check)",
                                       rd_kafka_send_offsets_to_transaction(
                                           p->producer, offs, md, FENCE_CALL_MS)),
                           "send_offsets_to_transaction", err);
  rd_kafka_consumer_group_metadata_destroy(md);
  if (rc != ESK_EFATAL) rc = fence_txn_end(p, rc, err);
  p->txn_end_ms = esk_time_mono_ms(); /* its markers delay the next batch as any commit's */
  return rc;
}

/* librdkafka learns that another instance with this transactional.id fenced
 * this one only from the coordinator's answer to a transactional request, and
 * sends none while no transaction is open: an idle zombie stayed in the
 * group, holding its partitions and ready, until a command came (issue 21).
 * So while no transaction has run for fence.check.interval.ms, one that
 * commits the committed offsets again asks; a fenced instance stops. */
void esk_prod_check_fence(esk_producer_t *p, int64_t now) {
  if (!p->fence_ms || p->in_txn || esk_prod_fatal(p) || now < p->fence_next_ms) return;
  p->fence_next_ms = now + p->fence_ms;
  if ((double)now - p->batch_t0 * 1000.0 < (double)p->fence_ms) return; /* a batch asked */
  rd_kafka_topic_partition_list_t *offs = held_committed(p);
  if (!offs) return; /* nothing to commit again: the next command asks */
  esk_error_t e = {0};
  int rc = fence_txn(p, offs, &e);
  rd_kafka_topic_partition_list_destroy(offs);
  if (rc == ESK_OK) return;
  char q[600];
  esk_error_t fe = {0};
  esk_error_set(&fe, ESK_EFATAL, "fence check: %s", e.msg);
  if (rc == ESK_EFATAL) {
    esk_watchdog_fatal(&p->health->fatal, &fe);
    return;
  }
  ESK_WARN(FAC, "msg=\"fence check failed; trying again later\" reason=%s",
           esk_log_quote(q, sizeof(q), e.msg));
}
