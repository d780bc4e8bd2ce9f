#include "from_time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esk/buf.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "store.h"

#define TIMEOUT_MS 15000
#define STALL_S 60
#define VERSIONS_CHUNK 50000

typedef struct seen_s {
  char *id;
  int64_t version;
} seen_t;

typedef struct scan_s {
  seen_t *v;
  size_t n, cap;
} scan_t;

static int seen_add(scan_t *s, const char *id, int64_t version) {
  seen_t *nv = esk_array_grow(s->v, &s->cap, s->n + 1, sizeof(*nv), 4096);
  if (!nv) return -1;
  s->v = nv;
  if (!(s->v[s->n].id = strdup(id))) return -1;
  s->v[s->n++].version = version;
  return 0;
}

static int seen_cmp(const void *a, const void *b) {
  const seen_t *x = a, *y = b;
  int c = strcmp(x->id, y->id);
  return c ? c : (x->version > y->version) - (x->version < y->version);
}

static void scan_free(scan_t *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i].id);
  free(s->v);
}

/* Reads every partition from its start up to target[p], collecting versions. */
static int scan(rd_kafka_t *rk, const char *topic, const char *name, int parts,
                const int64_t *low, const int64_t *target, const esk_decoder_t *dec, scan_t *out,
                esk_error_t *err) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
  int open = 0, rc = ESK_OK;
  int64_t read = 0, total = 0;
  char *done = calloc((size_t)parts, 1);
  if (!done) {
    rd_kafka_topic_partition_list_destroy(l);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  for (int p = 0; p < parts; p++) {
    if (target[p] <= low[p]) {
      done[p] = 1;
      continue;
    }
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = low[p];
    total += target[p] - low[p];
    open++;
  }
  if (open && rd_kafka_assign(rk, l)) {
    rc = esk_error_set(err, ESK_ERETRY, "assign %s", topic);
    open = 0;
  }
  double last_progress = esk_time_mono_s(), last_log = esk_time_mono_s();
  while (open > 0) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (m && !m->err && m->partition < parts && !done[m->partition]) {
      last_progress = esk_time_mono_s();
      if (m->offset < target[m->partition]) {
        esk_event_t ev = {0};
        esk_error_t why = {0};
        read++;
        if (dec->decode(dec->self, m, &ev, &why) == ESK_OK && ev.aggregate_id &&
            seen_add(out, ev.aggregate_id, ev.aggregate_version)) {
          rd_kafka_message_destroy(m);
          rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
          break;
        }
      }
      if (m->offset + 1 >= target[m->partition]) {
        done[m->partition] = 1;
        open--;
      }
    }
    if (m) rd_kafka_message_destroy(m);
    if (!m) { /* idle: transaction markers may end a partition without a message */
      rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_copy(l);
      if (!rd_kafka_position(rk, pos))
        for (int i = 0; i < pos->cnt; i++) {
          int p = pos->elems[i].partition;
          if (!done[p] && pos->elems[i].offset >= target[p]) {
            done[p] = 1;
            open--;
          }
        }
      rd_kafka_topic_partition_list_destroy(pos);
    }
    if (open > 0 && esk_time_mono_s() - last_progress > STALL_S) {
      rc = esk_error_set(err, ESK_ERETRY, "reading %s before the start time: no message for %d s",
                         topic, STALL_S);
      break;
    }
    if (esk_time_mono_s() - last_log > 10) {
      last_log = esk_time_mono_s();
      ESK_INFO("projector", "msg=\"reading versions before the start time\" projection=%s "
                            "read=%" PRId64 " of=%" PRId64, name, read, total);
    }
  }
  rd_kafka_assign(rk, NULL);
  rd_kafka_topic_partition_list_destroy(l);
  free(done);
  return rc;
}

/* A consumer for the scan: the process's kafka.* settings (security,
 * bootstrap) with its own read settings on top. */
static int open_reader(rd_kafka_t **rk, const esk_conf_t *conf, const char *key,
                       esk_error_t *err) {
  rd_kafka_conf_t *kc = NULL;
  char group[300];
  snprintf(group, sizeof(group), "esk.from-time.%s", key);
  const char *const forced[] = {"group.id", group, "enable.auto.commit", "false",
                                "isolation.level", "read_committed", "enable.partition.eof",
                                "false", NULL};
  int rc = esk_kafka_client_conf(&kc, RD_KAFKA_CONSUMER, conf, NULL, forced, NULL, err);
  if (!rc) rc = esk_kafka_client_new(rk, RD_KAFKA_CONSUMER, kc, err);
  if (!rc) rd_kafka_poll_set_consumer(*rk);
  return rc;
}

/* @p *stored 1 when a position is stored on a partition: the projection
 * resumes there and the time is ignored. */
static int any_position(PGconn *pg, const char *key, const char *topic, int parts, int *stored,
                        esk_error_t *err) {
  *stored = 0;
  for (int p = 0; p < parts && !*stored; p++) {
    int64_t next = -1;
    int rc = esk_store_position_get(pg, key, topic, p, &next, err);
    if (rc) return rc;
    *stored = next >= 0;
  }
  return ESK_OK;
}

/* Per partition, the first offset (@p low) and the offset of the first event
 * at or after @p t_ms (@p target; the end when there is none). */
static int start_offsets(rd_kafka_t *rk, const char *topic, int parts, int64_t t_ms,
                         int64_t *low, int64_t *target, esk_error_t *err) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
  for (int p = 0; p < parts; p++) rd_kafka_topic_partition_list_add(l, topic, p)->offset = t_ms;
  rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, l, TIMEOUT_MS);
  for (int p = 0; !e && p < parts; p++) {
    int64_t lo = 0, hi = 0;
    e = esk_kafka_watermarks(rk, topic, p, &lo, &hi, TIMEOUT_MS);
    if (!e) e = l->elems[p].err;
    low[p] = lo;
    target[p] = l->elems[p].offset < 0 ? hi : l->elems[p].offset;
  }
  rd_kafka_topic_partition_list_destroy(l);
  if (e)
    return esk_error_set(err, ESK_ERETRY, "offsets of %s for the start time: %s", topic,
                         rd_kafka_err2str(e));
  return ESK_OK;
}

/* Keeps in @p seen only the last version of each aggregate; @returns how many. */
static size_t last_versions(scan_t *seen) {
  if (seen->n) qsort(seen->v, seen->n, sizeof(*seen->v), seen_cmp); /* v is NULL when 0 */
  size_t k = 0;
  for (size_t i = 0; i < seen->n; i++) {
    if (i + 1 < seen->n && !strcmp(seen->v[i].id, seen->v[i + 1].id)) continue;
    seen->v[k].version = seen->v[i].version;
    if (k != i) {
      char *tmp = seen->v[k].id;
      seen->v[k].id = seen->v[i].id;
      seen->v[i].id = tmp;
    }
    k++;
  }
  return k;
}

/* Stores the @p k versions of @p seen and the starting positions in one
 * transaction; @p *seeded 1 when this call stored them (0: another instance
 * stored positions first). */
static int store_seed(PGconn *pg, const char *key, const char *topic, int parts,
                      const int64_t *target, const scan_t *seen, size_t k, int *seeded,
                      esk_error_t *err) {
  const char **ids = calloc(k ? k : 1, sizeof(*ids));
  int64_t *vers = calloc(k ? k : 1, sizeof(*vers));
  int rc = ESK_OK;
  if (!ids || !vers) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < k; i++) {
    ids[i] = seen->v[i].id;
    vers[i] = seen->v[i].version;
  }
  if ((rc = esk_pg_exec(NULL, pg, "begin", "begin", 0, NULL, err))) goto cleanup;
  for (size_t i = 0; i < k && !rc; i += VERSIONS_CHUNK)
    rc = esk_store_versions_put(pg, key, ids + i, vers + i,
                                k - i < VERSIONS_CHUNK ? k - i : VERSIONS_CHUNK, err);
  for (int p = 0; p < parts && !rc; p++)
    rc = esk_store_position_cas(pg, key, topic, p, -1, target[p], err);
  if (!rc) rc = esk_pg_exec(NULL, pg, "commit", "commit", 0, NULL, err);
  if (rc) PQclear(PQexec(pg, "rollback"));
  if (rc == ESK_ECONFLICT) {
    ESK_INFO("projector", "msg=\"--from-time: another instance stored the positions first\" "
                          "projection=%s", key);
    rc = ESK_OK;
  } else if (!rc) {
    *seeded = 1;
  }
cleanup:
  free(ids);
  free(vers);
  return rc;
}

int esk_from_time_seed(PGconn *pg, const esk_conf_t *conf, const char *key, const char *topic,
                       const esk_decoder_t *dec, int64_t t_ms, int *seeded, esk_error_t *err) {
  rd_kafka_t *rk = NULL;
  int64_t *low = NULL, *target = NULL;
  scan_t seen = {0};
  int rc, parts = 0, stored = 0;
  *seeded = 0;
  if ((rc = open_reader(&rk, conf, key, err)) ||
      (rc = esk_kafka_partition_count(rk, topic, TIMEOUT_MS, &parts, err)))
    goto cleanup;
  low = calloc((size_t)parts, sizeof(*low));
  target = calloc((size_t)parts, sizeof(*target));
  if (!low || !target) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
    goto cleanup;
  }
  if ((rc = any_position(pg, key, topic, parts, &stored, err))) goto cleanup;
  if (stored) {
    ESK_INFO("projector", "msg=\"--from-time ignored: the projection has stored positions and "
                          "resumes from them\" projection=%s topic=%s",
             key, topic);
    goto cleanup;
  }
  double t0 = esk_time_mono_s();
  if ((rc = start_offsets(rk, topic, parts, t_ms, low, target, err)) ||
      (rc = scan(rk, topic, key, parts, low, target, dec, &seen, err)))
    goto cleanup;
  size_t k = last_versions(&seen);
  if (!(rc = store_seed(pg, key, topic, parts, target, &seen, k, seeded, err)) && *seeded)
    ESK_INFO("projector", "msg=\"starting at a time\" projection=%s topic=%s from_ms=%" PRId64
                          " aggregates=%zu events_read=%zu seconds=%.1f",
             key, topic, t_ms, k, seen.n, esk_time_mono_s() - t0);
cleanup:
  scan_free(&seen);
  free(low);
  free(target);
  if (rk) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  return rc;
}
