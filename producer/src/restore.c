/* Restoring one partition of a domain's aggregates (see restore.h). */
#include "restore.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/time.h"
#include "results.h"

void esk_restore_checkpoint_encode(uint8_t *out, int64_t events_offset) {
  memcpy(out, ESK_RESTORE_CHECKPOINT_MAGIC, 8);
  uint64_t v = (uint64_t)events_offset;
  for (int i = 0; i < 8; i++) out[8 + i] = (uint8_t)(v >> (8 * i));
}

int esk_restore_checkpoint_decode(int64_t *out, const void *data, size_t len, esk_error_t *err) {
  const uint8_t *p = data;
  if (!p || len != ESK_RESTORE_CHECKPOINT_SIZE || memcmp(p, ESK_RESTORE_CHECKPOINT_MAGIC, 8))
    return esk_error_set(err, ESK_EPOISON, "checkpoint: expected %d bytes starting with %s, got %zu",
                         ESK_RESTORE_CHECKPOINT_SIZE, ESK_RESTORE_CHECKPOINT_MAGIC, len);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[8 + i] << (8 * i);
  if ((int64_t)v < 0)
    return esk_error_set(err, ESK_EPOISON, "checkpoint: negative offset %lld", (long long)v);
  *out = (int64_t)v;
  return ESK_OK;
}

/* ---------------------------------------------------------------- restore --- */

typedef struct ctx_s {
  const esk_restore_target_t *tgt;
  esk_restore_stats_t *st;
  int32_t partition;
  esk_error_t *err;
  void *state, *next, *event; /* scratch of the domain's sizes */
} ctx_t;

static int on_snapshot(const rd_kafka_message_t *m, void *opaque) {
  ctx_t *c = opaque;
  const esk_domain_t *d = c->tgt->domain;
  if (!m->payload) return ESK_OK; /* a tombstone */
  if (m->key_len == sizeof(ESK_RESTORE_CHECKPOINT_KEY) - 1 &&
      !memcmp(m->key, ESK_RESTORE_CHECKPOINT_KEY, m->key_len))
    return esk_restore_checkpoint_decode(&c->st->checkpoint, m->payload, m->len, c->err);
  char id[ESK_ID_MAX + 1];
  if (!m->key || !m->key_len || m->key_len > ESK_ID_MAX || memchr(m->key, 0, m->key_len))
    return esk_error_set(c->err, ESK_EPOISON, "snapshot at offset %lld: key is not an aggregate id",
                         (long long)m->offset);
  memcpy(id, m->key, m->key_len);
  id[m->key_len] = '\0';
  int rc = d->snapshot_read(c->state, m->payload, m->len, c->err);
  if (rc) {
    esk_error_t e = *c->err;
    return esk_error_set(c->err, rc, "snapshot at offset %lld: %s", (long long)m->offset, e.msg);
  }
  c->st->snapshots++;
  const void *cur = esk_aggstore_get(c->tgt->store, id);
  if (cur && d->version(cur) >= d->version(c->state)) return ESK_OK;
  return esk_aggstore_put(c->tgt->store, id, c->state, c->err);
}

static int on_event(const rd_kafka_message_t *m, void *opaque) {
  ctx_t *c = opaque;
  const esk_domain_t *d = c->tgt->domain;
  esk_event_ref_t ref;
  esk_error_t e = {0};
  c->st->events_read++;
  const void *data = m->payload;
  size_t len = m->len;
  int rc = ESK_OK;
  if (c->tgt->shred &&
      (rc = esk_shred_message(c->tgt->shred, 0, c->tgt->codec, c->tgt->schemas, m->payload,
                              m->len, c->tgt->refresh, c->tgt->refresh_ctx, c->tgt->buf, &data,
                              &len, &e)) &&
      rc != ESK_EPOISON)
    return esk_error_set(c->err, rc, "event at offset %lld: %s", (long long)m->offset, e.msg);
  if (!rc) rc = d->decode_event(c->tgt->self, c->event, &ref, data, len, &e);
  if (rc)
    return esk_error_set(c->err, ESK_EPOISON, "event at offset %lld: %s", (long long)m->offset,
                         e.msg);
  const void *cur = esk_aggstore_get(c->tgt->store, ref.aggregate_id);
  if (cur && ref.aggregate_version <= d->version(cur)) return ESK_OK; /* in the snapshot */
  if (!cur) {
    d->init_state(c->state);
    cur = c->state;
  }
  if ((rc = d->evolve(c->next, cur, c->event, &e)))
    return esk_error_set(c->err, ESK_EPOISON, "event at offset %lld does not fold: %s",
                         (long long)m->offset, e.msg);
  c->st->events_applied++;
  if ((rc = esk_aggstore_put(c->tgt->store, ref.aggregate_id, c->next, c->err))) return rc;
  if (c->tgt->dirty) {
    char one = 1;
    return esk_hmap_put(c->tgt->dirty, ref.aggregate_id, strlen(ref.aggregate_id), &one, NULL,
                        NULL, c->err);
  }
  return ESK_OK;
}

static int on_result(const rd_kafka_message_t *m, void *opaque) {
  ctx_t *c = opaque;
  char id[ESK_ID_MAX + 1];
  esk_result_t r;
  esk_error_t e = {0};
  if (!m->payload || esk_result_from_json(id, &r, m->payload, m->len, c->tgt->domain, &e)) {
    /* a result we cannot read only weakens idempotency for that one id: say so, go on */
    char q[256];
    ESK_WARN("restore", "msg=\"unreadable result skipped\" partition=%d offset=%lld reason=%s",
             (int)c->partition, (long long)m->offset, esk_log_quote(q, sizeof(q), e.msg));
    return ESK_OK;
  }
  c->st->results++;
  return esk_seen_put(c->tgt->seen, id, &r, NULL, c->err);
}

/* The three reads of a restore (see esk_restore_partition()). */
static int read_all(ctx_t *c, rd_kafka_t *reader, const esk_topics_t *topics, int use_snapshots,
                    int idle_timeout_ms) {
  esk_restore_stats_t *st = c->st;
  int32_t partition = c->partition;
  esk_error_t *err = c->err;
  int64_t t0 = esk_time_mono_ns();
  int rc;
  if (use_snapshots &&
      (rc = esk_kafka_read_partition(reader, topics->snapshots, partition,
                                     RD_KAFKA_OFFSET_BEGINNING, idle_timeout_ms, on_snapshot, c,
                                     NULL, err)))
    return rc;
  int64_t t1 = esk_time_mono_ns();
  st->ms_snapshots = (double)(t1 - t0) / 1e6;
  if ((rc = esk_kafka_read_partition(reader, topics->events, partition,
                                     st->checkpoint > 0 ? st->checkpoint : RD_KAFKA_OFFSET_BEGINNING,
                                     idle_timeout_ms, on_event, c, &st->events_end, err)))
    return rc;
  st->ms_events = (double)(esk_time_mono_ns() - t1) / 1e6;
  if (c->tgt->seen) {
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = esk_kafka_watermarks(reader, topics->results, partition,
                                                             &lo, &hi, idle_timeout_ms);
    if (e)
      return esk_error_set(err, ESK_ERETRY, "watermarks of %s [%d]: %s", topics->results,
                           (int)partition, rd_kafka_err2str(e));
    int64_t from = hi - (int64_t)c->tgt->seen_max;
    if (from < lo) from = lo;
    if ((rc = esk_kafka_read_partition(reader, topics->results, partition, from,
                                       idle_timeout_ms, on_result, c, NULL, err)))
      return rc;
  }
  st->ms_total = (double)(esk_time_mono_ns() - t0) / 1e6;
  return ESK_OK;
}

int esk_restore_partition(esk_restore_stats_t *stats, const esk_restore_target_t *tgt,
                          rd_kafka_t *reader, const esk_topics_t *topics, int32_t partition,
                          int use_snapshots, int idle_timeout_ms, esk_error_t *err) {
  const esk_domain_t *d = tgt->domain;
  esk_restore_stats_t st;
  memset(&st, 0, sizeof(st));
  ctx_t c = {tgt, &st, partition, err, NULL, NULL, NULL};
  unsigned char *scratch = calloc(1, 2 * d->state_size + d->event_size);
  if (!scratch) return esk_error_set(err, ESK_ENOMEM, "restore: out of memory");
  c.state = scratch;
  c.next = scratch + d->state_size;
  c.event = scratch + 2 * d->state_size;
  int rc = read_all(&c, reader, topics, use_snapshots, idle_timeout_ms);
  free(scratch);
  if (rc) return rc;
  *stats = st;
  return ESK_OK;
}
