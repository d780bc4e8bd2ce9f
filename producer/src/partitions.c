/* Partitions: their state, restore on assignment, revocation, and the lag
 * gauges. */
#include "producer_int.h"
#include "esk/time.h"

void esk_prod_drop_part(esk_producer_t *p, int32_t id) {
  part_t *pt = &p->parts[id];
  esk_aggstore_destroy(pt->store);
  esk_seen_destroy(pt->seen);
  esk_hmap_destroy(pt->dirty);
  memset(pt, 0, sizeof(*pt));
  pt->batch_next = -1;
  pt->next_offset = -1;
}

/* The per-partition series of family @p f for partition @p id (created on
 * first use: at a restore, never per command). NULL without a registry. */
static esk_series_t *part_series(esk_series_t **arr, esk_metric_t *f, int32_t id) {
  if (!arr || !f) return NULL;
  if (!arr[id]) {
    char v[16];
    esk_error_t e = {0};
    snprintf(v, sizeof(v), "%d", (int)id);
    if (esk_metrics_series(&arr[id], f, (const char *[]){v}, &e))
      ESK_WARN(FAC, "msg=\"metric series dropped\" partition=%d reason=\"%s\"", (int)id, e.msg);
  }
  return arr[id];
}

/* Empty state for partition @p id. */
static int reset_part(esk_producer_t *p, int32_t id, esk_error_t *err) {
  esk_prod_drop_part(p, id);
  part_t *pt = &p->parts[id];
  int rc;
  const esk_aggstore_pack_t pack = {p->dom->snapshot_write, p->dom->snapshot_read};
  if ((rc = esk_aggstore_new_packed(&pt->store, p->dom->state_size,
                                    p->store_packed ? &pack : NULL, 0, (size_t)p->store_max,
                                    err)) ||
      (rc = esk_seen_new(&pt->seen, (size_t)p->seen_max, err)) ||
      (rc = esk_hmap_new(&pt->dirty, 1, 0, 0, err)))
    esk_prod_drop_part(p, id);
  return rc;
}

/* Restores partition @p id into fresh state; transient broker errors (a
 * leader moving, a topic just created) are retried from scratch until
 * restore.timeout.ms has passed. */
static int restore_retrying(esk_producer_t *p, int32_t id, esk_restore_stats_t *st,
                            esk_error_t *err) {
  part_t *pt = &p->parts[id];
  int64_t give_up = esk_time_mono_ms() + p->restore_ms;
  int rc;
  for (;;) {
    if ((rc = reset_part(p, id, err))) return rc;
    esk_restore_target_t tgt = {p->dom, p->dom_self, pt->store, pt->seen, pt->dirty,
                                (size_t)p->seen_max, p->shred, p->codec, p->di.schemas,
                                &p->shred_buf, esk_prod_shred_refresh, p};
    rc = ESK_WAITING("restoring a partition (snapshots, events, results)",
                     esk_restore_partition(st, &tgt, p->reader, &p->topics, id, 1,
                                           (int)p->restore_ms, err));
    if (rc != ESK_ERETRY || esk_time_mono_ms() >= give_up || esk_watchdog_stopping()) return rc;
    char q[512];
    ESK_WARN(FAC, "msg=\"restore failed, retrying\" partition=%d reason=%s", (int)id,
             esk_log_quote(q, sizeof(q), err->msg));
    esk_time_sleep_ms(500);
  }
}

int esk_prod_restore_part(esk_producer_t *p, int32_t id, esk_error_t *err) {
  if (id < 0 || id >= p->nparts)
    return esk_error_set(err, ESK_EFATAL,
                         "assigned partition %d of %s but the topic had %d partitions at start: "
                         "restart after changing partition counts",
                         (int)id, p->topics.commands, p->nparts);
  part_t *pt = &p->parts[id];
  esk_restore_stats_t st;
  ESK_INFO(FAC, "msg=\"restoring partition\" partition=%d", (int)id);
  double t0 = esk_time_mono_s();
  int rc = restore_retrying(p, id, &st, err);
  if (rc) {
    esk_prod_drop_part(p, id);
    return rc;
  }
  pt->events_since_ckpt = st.events_applied;
  pt->active = 1;
  /* the whole restore, retries included: what a rebalance waits for */
  esk_metrics_set(part_series(p->m.restore_s, p->m.restore_f, id), esk_time_mono_s() - t0);
  esk_metrics_add(p->m.restore_events, (uint64_t)st.events_applied);
  p->lag_next_ms = 0; /* the lag of the new partition at the next tick */
  ESK_INFO(FAC,
           "msg=\"partition restored\" partition=%d aggregates=%zu snapshots=%lld "
           "checkpoint=%lld events_read=%lld events_applied=%lld results=%lld ms=%.1f",
           (int)id, esk_aggstore_count(pt->store), (long long)st.snapshots,
           (long long)st.checkpoint, (long long)st.events_read, (long long)st.events_applied,
           (long long)st.results, st.ms_total);
  return ESK_OK;
}

/* Assigned @p parts: each restored before it is handed to the consumer. */
static void assigned(esk_producer_t *p, const rd_kafka_topic_partition_list_t *parts) {
  atomic_store(&p->health->assigned, parts->cnt);
  atomic_store(&p->health->restoring, parts->cnt);
  atomic_store(&p->health->joined, 1);
  esk_metrics_set(p->m.assigned, parts->cnt);
  if (parts->cnt == 0)
    ESK_WARN(FAC, "msg=\"no partition assigned: idle standby (more instances than "
             "partitions?)\" partitions=%d", p->nparts);
  for (int i = 0; i < parts->cnt && !esk_prod_fatal(p); i++) {
    esk_error_t err = {0};
    if (!esk_prod_restore_part(p, parts->elems[i].partition, &err)) {
      atomic_fetch_sub(&p->health->restoring, 1);
      continue;
    }
    if (esk_watchdog_stopping()) break; /* interrupted by a stop: not an error */
    esk_error_t e2 = {0};
    esk_error_set(&e2, ESK_EFATAL, "restoring partition %d: %s",
                  (int)parts->elems[i].partition, err.msg);
    esk_watchdog_fatal(&p->health->fatal, &e2);
  }
}

/* Revoked @p parts: what was done for them is committed while the generation
 * is still ours, then their state dropped. */
static void revoked(esk_producer_t *p, const rd_kafka_topic_partition_list_t *parts) {
  esk_error_t err = {0};
  if (p->in_txn && !esk_prod_fatal(p) && esk_prod_finish_batch(p, 0, &err) == ESK_EFATAL)
    esk_watchdog_fatal(&p->health->fatal, &err);
  p->in_txn = 0;
  for (int i = 0; i < parts->cnt; i++) {
    int32_t id = parts->elems[i].partition;
    if (id >= 0 && id < p->nparts) {
      esk_prod_drop_part(p, id);
      esk_refusals_prune(&p->rf, id, INT64_MAX); /* the next owner finds its own */
      /* another member reports it from now on */
      esk_metrics_set(p->m.lag_s ? p->m.lag_s[id] : NULL, 0);
    }
    ESK_INFO(FAC, "msg=\"partition revoked\" partition=%d", (int)id);
  }
  atomic_store(&p->health->assigned, 0);
  atomic_store(&p->health->restoring, 0);
  esk_metrics_set(p->m.assigned, 0);
}

void esk_prod_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                           rd_kafka_topic_partition_list_t *parts, void *opaque) {
  esk_producer_t *p = opaque;
  if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    assigned(p, parts);
    rd_kafka_assign(rk, parts);
  } else {
    revoked(p, parts);
    rd_kafka_assign(rk, NULL);
  }
}

/* Lag gauges of the held partitions from the consumer's cached watermarks (no
 * broker request), at most once a second. */
void esk_prod_update_lag(esk_producer_t *p, int64_t now) {
  if (!p->m.lag_s || now < p->lag_next_ms) return;
  p->lag_next_ms = now + 1000;
  for (int32_t i = 0; i < p->nparts; i++) {
    part_t *pt = &p->parts[i];
    if (!pt->active) continue;
    int64_t lo = -1, hi = -1, pos = pt->next_offset;
    if (rd_kafka_get_watermark_offsets(p->consumer, p->topics.commands, i, &lo, &hi) || hi < 0)
      continue;
    if (pos < 0) { /* nothing handled yet: the fetch position (local) */
      rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(l, p->topics.commands, i);
      if (!rd_kafka_position(p->consumer, l)) pos = l->elems[0].offset;
      rd_kafka_topic_partition_list_destroy(l);
      if (pos < 0) pos = lo; /* no position yet either */
    }
    if (pos < 0) continue;
    esk_metrics_set(part_series(p->m.lag_s, p->m.lag_f, i), hi > pos ? (double)(hi - pos) : 0);
  }
}
