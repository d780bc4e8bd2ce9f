/* The esk-producer runtime (see producer.h and docs/producer.md). */
#include "producer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "aggstore.h"
#include "decider.h"
#include "domains.h"
#include "esk/buf.h"
#include "esk/codec.h"
#include "esk/domain.h"
#include "esk/hmap.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/watchdog.h"
#include "restore.h"
#include "results.h"

const esk_conf_prop_t esk_producer_props[] = {
    {"topic.prefix", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "Prepended to every topic name (<prefix><domain>.commands, ...) and to the default group "
     "and transactional ids; tests and benchmarks use a unique one."},
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
     "Command ids remembered per partition for idempotency (about 450 bytes each); a restore "
     "reads this many of the newest results."},
    {"event.max.bytes", ESK_CONF_INT, "1000000", 512, 1000000000, NULL, NULL,
     "Largest event record (value, key and headers) published; a command whose event is larger "
     "is rejected as UNPUBLISHABLE instead of failing its transaction. At most "
     "kafka.message.max.bytes (checked at start); keep it at most the events topic's "
     "max.message.bytes too: a lower broker limit is found from the delivery reports, at the "
     "cost of an aborted transaction (see docs/producer.md)."},
    {"store.max.aggregates", ESK_CONF_INT, "0", 0, 1000000000, NULL, NULL,
     "Most aggregates held in memory per partition (0: 16M)."},
    {"store.max.accounts", ESK_CONF_INT, "0", 0, 1000000000, NULL, NULL,
     "Old name of store.max.aggregates, used when that is 0."},
    {"restore.timeout.ms", ESK_CONF_INT, "30000", 1000, 3600000, NULL, NULL,
     "A restore fails, and the process stops, when the broker sends nothing for this long."},
    {"stats.interval.ms", ESK_CONF_INT, "10000", 0, 3600000, NULL, NULL,
     "Interval of the progress log line, in milliseconds (0: none)."},
    {"fence.check.interval.ms", ESK_CONF_INT, "2000", 0, 3600000, NULL, NULL,
     "While no transaction has run for this long, ask the transaction coordinator whether "
     "another instance with this transactional.id fenced this one (a transaction that only "
     "commits the committed offsets again); a fenced instance stops (exit 1) instead of "
     "holding its partitions while idle (0: never; it then learns of a fence at its next "
     "command)."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

#define FAC "producer"

typedef struct part_s {
  int active;
  int64_t next_offset;       /* offset after the last command handled, -1: none yet */
  esk_aggstore_t *store;
  esk_seen_t *seen;
  esk_hmap_t *dirty;         /* aggregates changed since the last checkpoint */
  int64_t events_since_ckpt; /* events since the last checkpoint */
  int64_t batch_next;        /* offset after the last command of the open batch, -1: none */
  int ckpt_pending;          /* this batch writes a checkpoint */
} part_t;

/* Metric series, looked up once (esk_metrics_* ignores NULL: no registry). */
typedef struct metrics_s {
  esk_metric_t *restore_f, *lag_f;
  esk_series_t *accepted, *rejected[ESK_RULE_DOMAIN + ESK_DOMAIN_MAX_RULES], *duplicates, *skipped, *batches,
      *batch_s, *aborts, *restore_events, *assigned;
  esk_series_t **restore_s, **lag_s; /* per partition, created at its first restore */
} metrics_t;

/* The open batch's commands in handling order; a message's delivery opaque is
 * its command's index + 1 (0: no command, e.g. a checkpoint). */
typedef struct cmd_ref_s {
  int32_t part;
  int64_t offset;
} cmd_ref_t;

/* A command whose messages Kafka refused for good (too large, invalid), kept
 * across the abort and rewind that follow until its offset commits. */
enum {
  V_ALONE = 1,  /* one of several commands in a refused record batch: redo it alone */
  V_REJECT = 2, /* known culprit: answer UNPUBLISHABLE instead of publishing events */
  V_SKIP = 4,   /* even its rejection was refused: consume it without a result */
};
typedef struct verdict_s {
  int32_t part;
  int64_t offset;
  int state, logged;
  int64_t round; /* judge_refusals() round that last judged it */
  char reason[ESK_RESULT_MSG_MAX - 32];
} verdict_t;

/* A refused message of the open batch: its command and why. */
typedef struct refusal_s {
  size_t idx; /* command index + 1 */
  char reason[ESK_RESULT_MSG_MAX - 32];
} refusal_t;

/* Counts of the open batch, published when it commits (an aborted batch is
 * redone, so counting at handling time would count its commands twice). */
typedef struct batch_counts_s {
  int64_t accepted, duplicates, skipped, rejected[ESK_RULE_DOMAIN + ESK_DOMAIN_MAX_RULES];
} batch_counts_t;

typedef struct stats_s {
  int64_t commands, accepted, rejected, duplicates, poison, txns, aborts;
  int64_t commit_ms; /* time spent committing (the main thread waits) */
} stats_t;

struct esk_producer_s {
  esk_topics_t topics;
  char group_id[256], txn_id[512], domain[64];
  int64_t batch_max, batch_ms, linger_ms, snapshot_every, ckpt_events, seen_max, store_max, restore_ms,
      stats_ms;
  rd_kafka_t *consumer, *producer, *reader;
  rd_kafka_topic_t *rkt_ev, *rkt_res, *rkt_snap;
  const esk_domain_t *dom;    /* the domain (docs/architecture.md, "Write side") */
  esk_domain_inst_t di;       /* its contract and instance */
  void *dom_self;             /* di.self */
  esk_codec_t *codec;         /* di.codec */
  esk_decider_t *dc;          /* scratch of its decisions */
  void *cmd;                  /* the command being handled (command_size bytes) */
  part_t *parts;
  int nparts;
  int in_txn, batch_failed;
  int batch_isolated;         /* the open batch holds one suspect command alone */
  int64_t event_max;          /* event.max.bytes */
  cmd_ref_t *cmds;            /* the open batch's commands (batch_n of them) */
  size_t cmds_cap;
  refusal_t *refused;         /* permanent refusals of the open batch */
  size_t n_refused, refused_cap;
  verdict_t *verdicts;        /* refused commands not yet committed */
  size_t n_verdicts, verdicts_cap;
  int64_t judge_round;
  esk_buf_t evbuf[ESK_DOMAIN_MAX_EVENTS]; /* a command's encoded events before publishing */
  int64_t batch_undelivered;  /* delivery failures in the open batch */
  int batch_broken;           /* a message failed other than by an abort's purge */
  rd_kafka_conf_t *prod_conf; /* a copy of the producer's, for renew_producer() */
  char batch_reason[256];     /* the first of them */
  int64_t abort_backoff_ms;   /* grows while aborts follow each other */
  int64_t batch_n, batch_deadline;
  esk_buf_t buf;
  uint8_t rnd[4096]; /* random bytes for event ids, refilled with getrandom() */
  size_t rnd_pos;
  volatile int fatal;
  esk_error_t ferr;
  stats_t st;
  metrics_t m;
  batch_counts_t bc;
  double batch_t0;             /* seconds (monotonic) at begin_batch */
  int txn_unended;             /* the transaction begun at batch_t0 is not committed or aborted */
  int64_t txn_timeout_ms;      /* the producer's transaction.timeout.ms */
  int64_t lag_next_ms;         /* next lag gauge update */
  int64_t fence_ms;            /* fence.check.interval.ms */
  int64_t fence_next_ms;       /* next fence check */
  esk_producer_health_t *health, own_health;
};

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Makes @p err fatal, keeping its message (re-formatting it into itself would
 * overlap source and destination). */
static int escalate(esk_error_t *err) {
  err->code = ESK_EFATAL;
  return ESK_EFATAL;
}

static void set_fatal(esk_producer_t *p, const esk_error_t *e) {
  if (p->fatal) return;
  p->fatal = 1;
  p->ferr = *e;
  /* the message first, then the flag: readers see it whole once fatal is 1 */
  size_t n = strnlen(e->msg, sizeof(p->health->fatal_msg) - 1); /* truncated on purpose */
  memcpy(p->health->fatal_msg, e->msg, n);
  p->health->fatal_msg[n] = '\0';
  atomic_store_explicit(&p->health->fatal, 1, memory_order_release);
  esk_watchdog_shutdown(); /* from now on the process has shutdown.timeout.ms to end */
}

/* ------------------------------------------------- refused for good --- */

/* Errors that no retry of the same message cures: the broker (or the client)
 * refuses the record itself, so redoing the batch as it was would loop. */
static int permanent_error(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
         e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
         e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE || e == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

static const char *human_bytes(char *buf, size_t size, size_t n) {
  if (n < 10000)
    snprintf(buf, size, "%zu bytes", n);
  else if (n < 10000000)
    snprintf(buf, size, "%.1f kB", (double)n / 1e3);
  else
    snprintf(buf, size, "%.1f MB", (double)n / 1e6);
  return buf;
}

/* Notes that Kafka refused for good a message of the command whose delivery
 * opaque is @p idx; finish_batch() turns the batch's refusals into verdicts.
 * @p local: refused by producev (kafka.message.max.bytes), not by the broker. */
static void note_refusal(esk_producer_t *p, uintptr_t idx, rd_kafka_topic_t *rkt, size_t len,
                         rd_kafka_resp_err_t e, int local) {
  if (idx == 0 || idx > (uintptr_t)p->batch_n) return; /* no command's (a checkpoint) */
  if (p->n_refused && p->refused[p->n_refused - 1].idx == idx) return;
  refusal_t *grown = esk_array_grow(p->refused, &p->refused_cap, p->n_refused + 1,
                                    sizeof(*p->refused), 64);
  if (!grown) return; /* unattributed: the batch is redone as before, with backoff */
  p->refused = grown;
  refusal_t *r = &p->refused[p->n_refused++];
  r->idx = idx;
  const char *what = rkt == p->rkt_ev ? "event" : rkt == p->rkt_res ? "result" : "snapshot";
  char sz[32];
  human_bytes(sz, sizeof(sz), len);
  if (local)
    snprintf(r->reason, sizeof(r->reason), "its %s of %s exceeds kafka.message.max.bytes (%s)",
             what, sz, rd_kafka_err2name(e));
  else if (e == RD_KAFKA_RESP_ERR_INVALID_RECORD)
    snprintf(r->reason, sizeof(r->reason), "the broker refused its %s of %s on topic %s as an "
             "invalid record (%s)", what, sz, rd_kafka_topic_name(rkt), rd_kafka_err2name(e));
  else
    snprintf(r->reason, sizeof(r->reason), "its %s (a value of %s, plus key, headers and "
             "batch framing) exceeds the max.message.bytes of topic %s (the broker refused it: "
             "%s)", what, sz, rd_kafka_topic_name(rkt), rd_kafka_err2name(e));
}

static verdict_t *find_verdict(esk_producer_t *p, int32_t part, int64_t offset) {
  for (size_t i = 0; i < p->n_verdicts; i++)
    if (p->verdicts[i].part == part && p->verdicts[i].offset == offset) return &p->verdicts[i];
  return NULL;
}

static verdict_t *add_verdict(esk_producer_t *p, int32_t part, int64_t offset) {
  verdict_t *v = find_verdict(p, part, offset);
  if (v) return v;
  verdict_t *grown = esk_array_grow(p->verdicts, &p->verdicts_cap, p->n_verdicts + 1,
                                    sizeof(*p->verdicts), 64);
  if (!grown) return NULL;
  p->verdicts = grown;
  v = &p->verdicts[p->n_verdicts++];
  memset(v, 0, sizeof(*v));
  v->part = part;
  v->offset = offset;
  return v;
}

/* Forgets the verdicts of @p part below @p below: committed, or the partition is gone. */
static void prune_verdicts(esk_producer_t *p, int32_t part, int64_t below) {
  size_t k = 0;
  for (size_t i = 0; i < p->n_verdicts; i++)
    if (p->verdicts[i].part != part || p->verdicts[i].offset >= below)
      p->verdicts[k++] = p->verdicts[i];
  p->n_verdicts = k;
}

/* After an abort: the batch's refusals become verdicts. The culprit is certain
 * when one command's messages were refused, or the batch held one command
 * alone; several commands refused together shared a record batch, which may
 * hold innocent ones, so each is redone alone to find out. A command moves
 * only forward (alone, reject, skip): at most three aborts each. */
static void judge_refusals(esk_producer_t *p) {
  int certain = 1;
  if (!p->batch_isolated)
    for (size_t i = 1; i < p->n_refused; i++)
      if (p->refused[i].idx != p->refused[0].idx) certain = 0;
  p->judge_round++;
  for (size_t i = 0; i < p->n_refused; i++) {
    const cmd_ref_t *c = &p->cmds[p->refused[i].idx - 1];
    verdict_t *v = add_verdict(p, c->part, c->offset);
    if (!v || v->round == p->judge_round) continue; /* out of memory, or judged already */
    v->round = p->judge_round;
    if (!certain) {
      v->state |= V_ALONE;
    } else if (v->state & V_REJECT) {
      v->state = V_SKIP;
      v->logged = 0;
    } else if (!(v->state & V_SKIP)) {
      v->state = V_REJECT;
      v->logged = 0;
      snprintf(v->reason, sizeof(v->reason), "%s", p->refused[i].reason);
    }
  }
  p->n_refused = 0;
}

/* ------------------------------------------------------------ callbacks --- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  esk_producer_t *p = opaque;
  if (m->err) {
    if (permanent_error(m->err))
      note_refusal(p, (uintptr_t)m->_private, m->rkt, m->len, m->err, 0);
    /* the transaction cannot commit now; finish_batch() aborts and rewinds
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
static int expired_not_fenced(esk_producer_t *p) {
  char es[256];
  rd_kafka_resp_err_t e = rd_kafka_fatal_error(p->producer, es, sizeof(es));
  return (e == RD_KAFKA_RESP_ERR__FENCED || e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
          e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH ||
          e == RD_KAFKA_RESP_ERR_INVALID_TXN_STATE /* its abort, already done */) &&
         p->txn_unended && p->txn_timeout_ms > 0 &&
         (mono_s() - p->batch_t0) * 1000.0 >= (double)p->txn_timeout_ms;
}

static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque) {
  esk_producer_t *p = opaque;
  char q[512];
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    if (rk == p->producer && expired_not_fenced(p)) { /* finish_batch() recovers */
      ESK_WARN("kafka", "msg=\"transaction expired at the coordinator\" code=%s reason=%s",
               rd_kafka_err2name(orig), esk_log_quote(q, sizeof(q), buf));
      return;
    }
    esk_error_t e = {0};
    esk_error_set(&e, ESK_EFATAL, "kafka fatal error (%s): %s", rd_kafka_err2name(orig), buf);
    set_fatal(p, &e);
    return;
  }
  ESK_WARN("kafka", "msg=\"client error\" code=%s reason=%s",
           rd_kafka_err2name((rd_kafka_resp_err_t)code), esk_log_quote(q, sizeof(q), reason));
}

/* ---------------------------------------------------------- partitions --- */

static void drop_part(esk_producer_t *p, int32_t id) {
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
  drop_part(p, id);
  part_t *pt = &p->parts[id];
  int rc;
  if ((rc = esk_aggstore_new(&pt->store, p->dom->state_size, 0, (size_t)p->store_max, err)) ||
      (rc = esk_seen_new(&pt->seen, (size_t)p->seen_max, err)) ||
      (rc = esk_hmap_new(&pt->dirty, 1, 0, 0, err)))
    drop_part(p, id);
  return rc;
}

static int restore_part(esk_producer_t *p, int32_t id, esk_error_t *err) {
  if (id < 0 || id >= p->nparts)
    return esk_error_set(err, ESK_EFATAL,
                         "assigned partition %d of %s but the topic had %d partitions at start: "
                         "restart after changing partition counts",
                         (int)id, p->topics.commands, p->nparts);
  part_t *pt = &p->parts[id];
  esk_restore_stats_t st;
  ESK_INFO(FAC, "msg=\"restoring partition\" partition=%d", (int)id);
  /* transient broker errors (a leader moving, a topic just created) are retried
   * from scratch until restore.timeout.ms has passed */
  int64_t give_up = mono_ms() + p->restore_ms;
  double t0 = mono_s();
  int rc;
  for (;;) {
    if ((rc = reset_part(p, id, err))) return rc;
    esk_restore_target_t tgt = {p->dom, p->dom_self, pt->store, pt->seen, pt->dirty,
                                (size_t)p->seen_max};
    rc = ESK_WAITING("restoring a partition (snapshots, events, results)",
                     esk_restore_partition(&st, &tgt, p->reader, &p->topics, id, 1,
                                           (int)p->restore_ms, err));
    if (rc != ESK_ERETRY || mono_ms() >= give_up || esk_watchdog_stopping()) break;
    char q[512];
    ESK_WARN(FAC, "msg=\"restore failed, retrying\" partition=%d reason=%s", (int)id,
             esk_log_quote(q, sizeof(q), err->msg));
    usleep(500 * 1000);
  }
  if (rc) goto cleanup;
  pt->events_since_ckpt = st.events_applied;
  pt->active = 1;
  /* the whole restore, retries included: what a rebalance waits for */
  esk_metrics_set(part_series(p->m.restore_s, p->m.restore_f, id), mono_s() - t0);
  esk_metrics_add(p->m.restore_events, (uint64_t)st.events_applied);
  p->lag_next_ms = 0; /* the lag of the new partition at the next tick */
  ESK_INFO(FAC,
           "msg=\"partition restored\" partition=%d aggregates=%zu snapshots=%lld "
           "checkpoint=%lld events_read=%lld events_applied=%lld results=%lld ms=%.1f",
           (int)id, esk_aggstore_count(pt->store), (long long)st.snapshots,
           (long long)st.checkpoint, (long long)st.events_read, (long long)st.events_applied,
           (long long)st.results, st.ms_total);
  return ESK_OK;
cleanup:
  drop_part(p, id);
  return rc;
}

/* -------------------------------------------------------------- produce --- */

static int produce(esk_producer_t *p, rd_kafka_topic_t *rkt, int32_t part, const void *key,
                   size_t klen, const void *val, size_t vlen, rd_kafka_headers_t *hdrs,
                   void *opaque) {
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(part),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
        RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque),
        RD_KAFKA_V_END);
    if (!e) return ESK_OK;
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(p->producer, 5);
      continue;
    }
    if (hdrs) rd_kafka_headers_destroy(hdrs);
    p->batch_failed = p->batch_broken = 1;
    if (permanent_error(e)) note_refusal(p, (uintptr_t)opaque, rkt, vlen, e, 1);
    ESK_WARN(FAC, "msg=\"produce failed\" topic=%s partition=%d reason=%s",
             rd_kafka_topic_name(rkt), (int)part, rd_kafka_err2name(e));
    return ESK_ERETRY;
  }
}

/* @p v in decimal (v >= 0) into @p buf of at least 21 bytes; snprintf showed in profiles. */
static const char *i64_str(char *buf, int64_t v) {
  char *e = buf + 20, *o = e;
  uint64_t u = v < 0 ? 0 : (uint64_t)v;
  *o = '\0';
  do {
    *--o = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  return o;
}

/* A random (version 4) UUID in its 36-character text form. libuuid's
 * uuid_generate_random() reseeds random() and reads the clock on every call,
 * which cost ~12% of the producer's CPU; this takes 16 bytes of a getrandom()
 * pool instead. */
static void event_id(esk_producer_t *p, char out[37]) {
  static const char hex[] = "0123456789abcdef";
  if (p->rnd_pos == 0 || p->rnd_pos + 16 > sizeof(p->rnd)) {
    size_t got = 0;
    while (got < sizeof(p->rnd)) {
      ssize_t n = getrandom(p->rnd + got, sizeof(p->rnd) - got, 0);
      if (n > 0) got += (size_t)n;
    }
    p->rnd_pos = 0;
  }
  uint8_t *b = p->rnd + p->rnd_pos;
  p->rnd_pos += 16;
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  char *o = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
    *o++ = hex[b[i] >> 4];
    *o++ = hex[b[i] & 15];
  }
  *o = '\0';
}

/* The delivery opaque of the messages of the command being handled (its index
 * in the open batch + 1). */
static void *cmd_opaque(const esk_producer_t *p) { return (void *)(uintptr_t)p->batch_n; }

static void hdr(rd_kafka_headers_t *h, const char *name, const char *v) {
  rd_kafka_header_add(h, name, -1, v ? v : "", -1);
}

/* The result of a command, keyed by its id: @p id_len bytes exactly as received. */
static int produce_result_n(esk_producer_t *p, int32_t part, const char *command_id,
                            size_t id_len, const esk_result_t *res) {
  char json[1024];
  int n = esk_result_to_json_n(json, sizeof(json), command_id, id_len, res, p->dom);
  if (n < 0) {
    p->batch_failed = 1;
    ESK_ERROR(FAC, "msg=\"result does not fit\" partition=%d", (int)part);
    return ESK_EFATAL;
  }
  /* no headers: the value is self-describing JSON, and librdkafka's headers
   * cost ~10 allocations per message (measured: a third of the CPU of events) */
  return produce(p, p->rkt_res, part, command_id, id_len, json, (size_t)n, NULL, cmd_opaque(p));
}

static int produce_result(esk_producer_t *p, int32_t part, const char *command_id,
                          const esk_result_t *res) {
  return produce_result_n(p, part, command_id, strlen(command_id), res);
}

static int produce_snapshot(esk_producer_t *p, int32_t part, const char *id, const void *s,
                            void *opaque) {
  esk_error_t e = {0};
  esk_buf_reset(&p->buf);
  if (p->dom->snapshot_write(&p->buf, s, &e)) {
    p->batch_failed = 1;
    ESK_ERROR(FAC, "msg=\"snapshot failed\" aggregate=%s reason=\"%s\"", id, e.msg);
    return ESK_EFATAL;
  }
  char ver[24];
  rd_kafka_headers_t *h = rd_kafka_headers_new(2);
  hdr(h, "esk.type", p->dom->snapshot_type);
  hdr(h, "esk.aggregate_version", i64_str(ver, p->dom->version(s)));
  return produce(p, p->rkt_snap, part, id, strlen(id), p->buf.data, p->buf.len, h, opaque);
}

/* Encodes @p ev into p->evbuf[@p i] (published later by produce_event(), once
 * every event of the command is known to fit). */
static int encode_event(esk_producer_t *p, size_t i, const esk_schema_t **ws, char eid[37],
                        int64_t version, const esk_envelope_t *env) {
  event_id(p, eid);
  esk_event_meta_t meta = {eid,     wall_us(),           env->aggregate_id, version,
                           env->correlation_id, env->command_id, env->actor};
  esk_error_t e = {0};
  esk_buf_reset(&p->evbuf[i]);
  if (p->dom->encode_event(p->dom_self, &p->evbuf[i], ws, esk_decider_event(p->dc, i), &meta,
                           &e)) {
    p->batch_failed = 1;
    ESK_ERROR(FAC, "msg=\"event encoding failed\" reason=\"%s\"", e.msg);
    return ESK_EFATAL;
  }
  return ESK_OK;
}

/* An upper bound of the record batch an encoded event makes alone: batch header
 * (61 bytes), record framing and header names (< 160), key, value, header values. */
static size_t event_record_size(const esk_producer_t *p, size_t i, const esk_schema_t *ws,
                                const esk_envelope_t *env) {
  return 61 + 160 + 36 + 2 * 20 + strlen(env->aggregate_id) + p->evbuf[i].len +
         strlen(esk_schema_type(ws)) + (env->correlation_id ? strlen(env->correlation_id) : 0) +
         strlen(env->command_id) + strlen("avro/binary");
}

static int produce_event(esk_producer_t *p, int32_t part, size_t i, const esk_schema_t *ws,
                         const char *eid, int64_t version, const esk_envelope_t *env) {
  char ver[24], sver[24];
  rd_kafka_headers_t *h = rd_kafka_headers_new(8);
  hdr(h, "esk.type", esk_schema_type(ws));
  hdr(h, "esk.schema_version", i64_str(sver, esk_schema_version(ws)));
  hdr(h, "esk.event_id", eid);
  hdr(h, "esk.aggregate_version", i64_str(ver, version));
  hdr(h, "esk.correlation_id", env->correlation_id);
  hdr(h, "esk.causation_id", env->command_id);
  hdr(h, "content-type", "avro/binary");
  return produce(p, p->rkt_ev, part, env->aggregate_id, strlen(env->aggregate_id),
                 p->evbuf[i].data, p->evbuf[i].len, h, cmd_opaque(p));
}

/* ------------------------------------------------------------- commands --- */

static int begin_batch(esk_producer_t *p, esk_error_t *err) {
  int rc = esk_kafka_txn_error(rd_kafka_begin_transaction(p->producer), "begin_transaction", err);
  if (rc) return escalate(err);
  p->in_txn = 1;
  p->batch_failed = 0;
  p->batch_undelivered = 0;
  p->batch_broken = 0;
  p->batch_reason[0] = '\0';
  p->batch_n = 0;
  p->batch_isolated = 0;
  p->n_refused = 0;
  p->batch_deadline = mono_ms() + p->batch_ms;
  p->batch_t0 = mono_s();
  p->txn_unended = 1;
  memset(&p->bc, 0, sizeof(p->bc));
  return ESK_OK;
}

/* The version of the aggregate's state @p cur (NULL: none yet). */
static int64_t version_of(const esk_producer_t *p, const void *cur) {
  return cur ? p->dom->version(cur) : 0;
}

/* A rejection decided by the runtime because Kafka cannot take the command's
 * messages (verdict_t). */
static void unpublishable(const esk_producer_t *p, esk_result_t *r, const void *cur,
                          const char *reason) {
  esk_result_reject(r, p->dom, ESK_RULE_UNPUBLISHABLE, version_of(p, cur), "%s", reason);
}

static int finish_batch(esk_producer_t *p, int rewind, esk_error_t *err);

/* @p n bytes for a log line: printable ASCII as it is, others as \xHH. */
static const char *escape_bytes(char *buf, size_t size, const char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 < size; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x21 && c < 0x7f && c != '"' && c != '\\')
      buf[o++] = (char)c;
    else
      o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
  }
  buf[o] = '\0';
  return buf;
}

/* When the decode failed with @p why because it refused a string: field
 * @p field of the command as written (see esk_codec_raw_string()). */
static int refused_string(esk_producer_t *p, const esk_error_t *why,
                          const rd_kafka_message_t *m, const char *field, const char **out,
                          size_t *n) {
  if (!esk_codec_refusal(p->codec, why)) return ESK_ENOTFOUND;
  return esk_codec_raw_string(p->codec, m->payload, m->len, field, out, n, NULL);
}

/* Answers a command id seen before with its first result. 1 when it was seen. */
static int answer_seen(esk_producer_t *p, int32_t part, const char *id) {
  const esk_result_t *seen = esk_seen_get(p->parts[part].seen, id);
  if (!seen) return 0;
  esk_result_t first = *seen;
  p->st.duplicates++;
  p->bc.duplicates++;
  produce_result(p, part, id, &first);
  return 1;
}

/* A command whose result Kafka refused even as UNPUBLISHABLE: consumed
 * without a result. 1 when @p v says so. */
static int skip_refused(esk_producer_t *p, const verdict_t *vc, const char *qid, int32_t part,
                        int64_t offset) {
  verdict_t *v = (verdict_t *)vc;
  if (!v || !(v->state & V_SKIP)) return 0;
  char q[512];
  p->st.poison++;
  p->bc.skipped++;
  if (!v->logged++)
    ESK_WARN(FAC, "msg=\"command skipped: Kafka refused even its UNPUBLISHABLE result\" "
             "command_id=%s partition=%d offset=%lld reason=%s", qid, (int)part,
             (long long)offset, esk_log_quote(q, sizeof(q), v->reason));
  return 1;
}

/* A command whose decode refused a string (U+0000 or invalid UTF-8: the codec
 * never cuts one short) is answered INVALID_COMMAND naming the field, under its
 * command id exactly as received; nothing is published. An id that is itself
 * refused is not remembered: the cache, and the results JSON a restore reads
 * back, hold C strings, where "edge-c32\0first" would become "edge-c32" and
 * answer that genuine id; a resubmission is refused again, the same way.
 * @returns 1 when answered, 0 when there is no usable id (skipped as undecodable). */
static int refused_command(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part,
                           const esk_error_t *why) {
  part_t *pt = &p->parts[part];
  const char *id, *acc;
  size_t n, alen;
  esk_error_t e = {0};
  if (refused_string(p, why, m, "command_id", &id, &n) || !n || n > ESK_ID_MAX) return 0;
  char idz[ESK_ID_MAX + 1], accz[ESK_ID_MAX + 1], q[512], qid[4 * ESK_ID_MAX + 8];
  memcpy(idz, id, n);
  idz[n] = '\0';
  int usable = esk_utf8_check(id, n) == n; /* remembered like any other id */
  if (usable && answer_seen(p, part, idz)) return 1;
  verdict_t *v = p->n_verdicts ? find_verdict(p, part, m->offset) : NULL;
  char qq[4 * ESK_ID_MAX + 16];
  snprintf(qq, sizeof(qq), "\"%s\"", escape_bytes(qid, sizeof(qid), id, n));
  if (skip_refused(p, v, qq, part, m->offset)) return 1;
  const void *cur = NULL; /* for actual_version, when the aggregate id is whole */
  if (!refused_string(p, why, m, p->dom->aggregate_id_field, &acc, &alen) && alen &&
      alen <= ESK_ID_MAX && esk_utf8_check(acc, alen) == alen) {
    memcpy(accz, acc, alen);
    accz[alen] = '\0';
    cur = esk_aggstore_get(pt->store, accz);
  }
  esk_result_t res;
  if (v && (v->state & V_REJECT))
    unpublishable(p, &res, cur, v->reason);
  else
    esk_result_reject(&res, p->dom, ESK_RULE_INVALID_COMMAND, version_of(p, cur), "%.340s",
                      why->msg);
  p->st.rejected++;
  p->bc.rejected[res.rule]++;
  ESK_WARN(FAC, "msg=\"command refused: a string it holds cannot be kept whole\" "
           "command_id=%s partition=%d offset=%lld reason=%s", qq, (int)part,
           (long long)m->offset, esk_log_quote(q, sizeof(q), why->msg));
  produce_result_n(p, part, id, n, &res);
  if (usable && esk_seen_put(pt->seen, idz, &res, NULL, &e)) set_fatal(p, &e);
  return 1;
}

/* The runtime's checks of where a command arrived, before the domain sees it:
 * 1 with @p res set when it is rejected. Its events would land where no
 * restore looks. */
static int misplaced(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part,
                     const esk_envelope_t *env, const void *cur, esk_result_t *res) {
  const char *acc = env->aggregate_id ? env->aggregate_id : "";
  size_t alen = strlen(acc);
  int64_t v = version_of(p, cur);
  if (!strcmp(acc, ESK_RESTORE_CHECKPOINT_KEY)) {
    esk_result_reject(res, p->dom, ESK_RULE_INVALID_COMMAND, 0, "%s id %s is reserved",
                      p->dom->aggregate_type, "\\001esk.checkpoint");
    return 1;
  }
  if (alen && (m->key_len != alen || memcmp(m->key, acc, alen))) {
    esk_result_reject(res, p->dom, ESK_RULE_INVALID_COMMAND, v,
                      "the message key is not the %s id %.128s", p->dom->aggregate_type, acc);
    return 1;
  }
  int32_t want = alen ? rd_kafka_msg_partitioner_murmur2_random(p->rkt_ev, acc, alen, p->nparts,
                                                                NULL, NULL)
                      : part;
  if (want != part) {
    esk_result_reject(res, p->dom, ESK_RULE_INVALID_COMMAND, v,
                      "%s %.128s belongs on partition %d, not %d (murmur2)",
                      p->dom->aggregate_type, acc, (int)want, (int)part);
    return 1;
  }
  return 0;
}

/* Encodes every event of the accepted command before any is published: one
 * over event.max.bytes turns @p res into UNPUBLISHABLE (publishing nothing).
 * @returns ESK_OK, or an error after which the command is dropped. */
static int encode_events(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part,
                         const esk_envelope_t *env, const void *cur, esk_result_t *res,
                         const esk_schema_t **ws, char (*eids)[37], size_t n) {
  int64_t v0 = version_of(p, cur);
  for (size_t i = 0; res->rule == ESK_RULE_ACCEPTED && i < n; i++) {
    if (encode_event(p, i, &ws[i], eids[i], v0 + 1 + (int64_t)i, env)) return ESK_EFATAL;
    size_t sz = event_record_size(p, i, ws[i], env);
    if (sz <= (size_t)p->event_max) continue;
    char hb[32];
    verdict_t *v = add_verdict(p, part, m->offset);
    if (!v) {
      esk_error_t e = {0};
      esk_error_set(&e, ESK_ENOMEM, "producer: out of memory");
      set_fatal(p, &e);
      return ESK_ENOMEM;
    }
    v->state = V_REJECT;
    snprintf(v->reason, sizeof(v->reason), "its %s event of about %s exceeds event.max.bytes=%lld",
             esk_schema_type(ws[i]), human_bytes(hb, sizeof(hb), sz), (long long)p->event_max);
    unpublishable(p, res, cur, v->reason);
  }
  return ESK_OK;
}

/* Publishes the accepted command's events and takes its next state. */
static int publish_accepted(esk_producer_t *p, int32_t part, const esk_envelope_t *env,
                            const void *cur, const esk_schema_t **ws, char (*eids)[37],
                            size_t n) {
  part_t *pt = &p->parts[part];
  esk_error_t e = {0};
  int64_t v0 = version_of(p, cur);
  const void *next = esk_decider_next(p->dc);
  for (size_t i = 0; i < n; i++) /* a failure marks the batch for abort */
    produce_event(p, part, i, ws[i], eids[i], v0 + 1 + (int64_t)i, env);
  char one = 1;
  if (esk_aggstore_put(pt->store, env->aggregate_id, next, &e) ||
      /* a checkpoint that missed this aggregate would lose its events */
      esk_hmap_put(pt->dirty, env->aggregate_id, strlen(env->aggregate_id), &one, NULL, NULL,
                   &e)) {
    set_fatal(p, &e);
    return ESK_EFATAL;
  }
  pt->events_since_ckpt += (int64_t)n;
  int64_t ver = p->dom->version(next);
  if (p->snapshot_every && n && ver % p->snapshot_every == 0)
    produce_snapshot(p, part, env->aggregate_id, next, cmd_opaque(p));
  p->st.accepted++;
  p->bc.accepted++;
  return ESK_OK;
}

/* Decides a decoded command with a usable id, publishes what it yields and
 * answers it. */
static void decide_one(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part,
                       const esk_envelope_t *env) {
  part_t *pt = &p->parts[part];
  esk_error_t e = {0};
  verdict_t *v = p->n_verdicts ? find_verdict(p, part, m->offset) : NULL;
  if (skip_refused(p, v, env->command_id, part, m->offset)) return;
  const char *acc = env->aggregate_id ? env->aggregate_id : "";
  const void *cur = *acc ? esk_aggstore_get(pt->store, acc) : NULL;
  esk_result_t res;
  const esk_schema_t *ws[ESK_DOMAIN_MAX_EVENTS];
  char eids[ESK_DOMAIN_MAX_EVENTS][37];
  size_t n = 0;
  if (v && (v->state & V_REJECT)) {
    unpublishable(p, &res, cur, v->reason);
  } else if (!misplaced(p, m, part, env, cur, &res)) {
    if (esk_decider_run(p->dc, cur, env, p->cmd, &res, &e)) { /* the domain contradicts itself */
      set_fatal(p, &e);
      return;
    }
    if (res.rule == ESK_RULE_ACCEPTED) esk_decider_events(p->dc, &n);
  }
  if (encode_events(p, m, part, env, cur, &res, ws, eids, n)) return;
  if (res.rule == ESK_RULE_ACCEPTED) {
    if (publish_accepted(p, part, env, cur, ws, eids, n)) return;
  } else {
    p->st.rejected++;
    if (res.rule >= 0 && res.rule < esk_domain_rule_count(p->dom)) p->bc.rejected[res.rule]++;
    v = p->n_verdicts ? find_verdict(p, part, m->offset) : NULL;
    if (v && (v->state & V_REJECT) && !v->logged++) {
      char q[512];
      ESK_WARN(FAC, "msg=\"command answered UNPUBLISHABLE: Kafka cannot take its messages\" "
               "command_id=%s partition=%d offset=%lld reason=%s", env->command_id, (int)part,
               (long long)m->offset, esk_log_quote(q, sizeof(q), v->reason));
    }
  }
  produce_result(p, part, env->command_id, &res);
  if (esk_seen_put(pt->seen, env->command_id, &res, NULL, &e)) set_fatal(p, &e);
}

/* Adds the command at @p m to the open batch (opening one). 0 on success. */
static int enqueue(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part) {
  part_t *pt = &p->parts[part];
  esk_error_t e = {0};
  if (!p->in_txn && begin_batch(p, &e)) {
    set_fatal(p, &e);
    return -1;
  }
  cmd_ref_t *cmds = esk_array_grow(p->cmds, &p->cmds_cap, (size_t)p->batch_n + 1,
                                   sizeof(*p->cmds), 64);
  if (!cmds) {
    esk_error_set(&e, ESK_ENOMEM, "producer: out of memory");
    set_fatal(p, &e);
    return -1;
  }
  p->cmds = cmds;
  p->cmds[p->batch_n].part = part;
  p->cmds[p->batch_n].offset = m->offset;
  pt->batch_next = m->offset + 1;
  pt->next_offset = m->offset + 1;
  p->batch_n++; /* from here on cmd_opaque() names this command */
  p->st.commands++;
  return 0;
}

/* Decodes one command of partition @p part (held) in the open batch, and
 * hands it on unless it is answered or skipped here. */
static void handle_one(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part) {
  esk_error_t e = {0};
  if (enqueue(p, m, part)) return;
  esk_envelope_t env;
  const esk_schema_t *rs = NULL;
  avro_value_t *val = NULL;
  memset(&env, 0, sizeof(env));
  int rc = esk_codec_decode(p->codec, m->payload, m->len, 0, &rs, &val, &e);
  if (rc == ESK_OK) rc = p->dom->decode_command(p->dom_self, rs, val, &env, p->cmd, &e);
  if (rc) {
    if (refused_command(p, m, part, &e)) return;
    /* no command id to answer under: the offset moves on, the line says why */
    char q[512];
    p->st.poison++;
    p->bc.skipped++;
    ESK_WARN(FAC, "msg=\"undecodable command skipped\" partition=%d offset=%lld reason=%s",
             (int)part, (long long)m->offset, esk_log_quote(q, sizeof(q), e.msg));
    return;
  }
  if (!env.command_id || !*env.command_id || strlen(env.command_id) > ESK_ID_MAX) {
    p->st.poison++;
    p->bc.skipped++;
    ESK_WARN(FAC, "msg=\"command without a usable command_id skipped\" partition=%d offset=%lld",
             (int)part, (long long)m->offset);
    return;
  }
  if (answer_seen(p, part, env.command_id)) return;
  decide_one(p, m, part, &env);
}

static void handle_command(esk_producer_t *p, const rd_kafka_message_t *m) {
  int32_t part = m->partition;
  if (part < 0 || part >= p->nparts || !p->parts[part].active) {
    ESK_WARN(FAC, "msg=\"command from a partition not held, ignored\" partition=%d offset=%lld",
             (int)part, (long long)m->offset);
    return;
  }
  const verdict_t *v = p->n_verdicts ? find_verdict(p, part, m->offset) : NULL;
  if (!v || (v->state & V_SKIP) || !(v->state & V_ALONE)) {
    handle_one(p, m, part);
    return;
  }
  /* a suspect (possibly an already rejected one whose result was refused with
   * others'): commit the commands before it, then it alone in its own
   * transaction, so a refusal now names it for certain */
  esk_error_t e = {0};
  int64_t aborts = p->st.aborts;
  if (p->in_txn && finish_batch(p, 1, &e)) {
    set_fatal(p, &e);
    return;
  }
  if (p->st.aborts != aborts) return; /* rewound: this command comes again */
  handle_one(p, m, part);
  if (!p->in_txn || p->fatal) return;
  p->batch_isolated = 1;
  if (finish_batch(p, 1, &e)) set_fatal(p, &e);
}

/* -------------------------------------------------------- transactions --- */

typedef struct ckpt_ctx_s {
  esk_producer_t *p;
  int32_t part;
} ckpt_ctx_t;

static int snapshot_dirty(const void *key, size_t klen, void *value, void *opaque) {
  (void)klen;
  (void)value;
  ckpt_ctx_t *c = opaque;
  const void *s = esk_aggstore_get(c->p->parts[c->part].store, key);
  return s ? produce_snapshot(c->p, c->part, key, s, NULL) : ESK_OK;
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
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(p->producer, p->topics.events, i,
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
    hdr(h, "esk.type", "Checkpoint");
    if ((rc = produce(p, p->rkt_snap, i, ESK_RESTORE_CHECKPOINT_KEY,
                      sizeof(ESK_RESTORE_CHECKPOINT_KEY) - 1, v, sizeof(v), h, NULL)))
      return rc;
    pt->ckpt_pending = 1;
    ESK_DEBUG(FAC, "msg=\"checkpoint\" partition=%d events_offset=%lld accounts=%zu", (int)i,
              (long long)hi, esk_hmap_count(pt->dirty));
  }
  return ESK_OK;
}

static int rewind_all(esk_producer_t *p, esk_error_t *err);
static int renew_producer(esk_producer_t *p, esk_error_t *err);

/* The committed batch's counts and duration into the metrics. */
static void publish_batch(esk_producer_t *p) {
  const batch_counts_t *c = &p->bc;
  if (c->accepted) esk_metrics_add(p->m.accepted, (uint64_t)c->accepted);
  if (c->duplicates) esk_metrics_add(p->m.duplicates, (uint64_t)c->duplicates);
  if (c->skipped) esk_metrics_add(p->m.skipped, (uint64_t)c->skipped);
  for (int r = 0; r < esk_domain_rule_count(p->dom); r++)
    if (c->rejected[r]) esk_metrics_add(p->m.rejected[r], (uint64_t)c->rejected[r]);
  esk_metrics_inc(p->m.batches);
  esk_metrics_observe(p->m.batch_s, mono_s() - p->batch_t0);
}

/* Commits the open batch. On an abortable error: abort, and when @p rewind,
 * restore the held partitions and go back to the committed offsets. */
/* Waits (at most @p timeout_ms) until Kafka acknowledged every message sent.
 * commit_transaction() flushes too, but librdkafka 2.0.2's flush sleeps in
 * 10 ms slices on the delivery report queue, and with
 * delivery.report.only.error nothing wakes it at the last acknowledgement:
 * every commit took 10 ms longer than its messages did. Polled here in 1 ms
 * slices, the commit's own flush finds nothing left (docs/producer.md). */
static void await_acks(esk_producer_t *p, int64_t timeout_ms) {
  int64_t until = mono_ms() + timeout_ms;
  while (rd_kafka_outq_len(p->producer) > 0 && mono_ms() < until) rd_kafka_poll(p->producer, 1);
}

static int finish_batch(esk_producer_t *p, int rewind, esk_error_t *err) {
  if (!p->in_txn) return ESK_OK;
  int rc = p->batch_failed ? ESK_ECONFLICT : write_checkpoints(p);
  if (rc == ESK_ERETRY || (rc == ESK_OK && p->batch_failed)) rc = ESK_ECONFLICT;
  if (rc == ESK_OK) {
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
  }
  int64_t t_commit = mono_ms();
  if (rc == ESK_OK) {
    await_acks(p, 60000);
    for (int tries = 0; tries < 5; tries++) {
      rc = esk_kafka_txn_error(ESK_WAITING("commit_transaction",
                                           rd_kafka_commit_transaction(p->producer, 60000)),
                               "commit_transaction", err);
      if (rc != ESK_ERETRY) break;
    }
    if (rc == ESK_OK && p->batch_failed) rc = ESK_ECONFLICT; /* cannot happen: belt and braces */
  }
  p->in_txn = 0;
  p->st.commit_ms += mono_ms() - t_commit;
  for (int32_t i = 0; i < p->nparts; i++) {
    if (rc == ESK_OK && p->n_verdicts && p->parts[i].batch_next >= 0)
      prune_verdicts(p, i, p->parts[i].batch_next); /* answered and committed */
    p->parts[i].batch_next = -1;
  }
  if (rc == ESK_OK) {
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
      if ((rc = esk_hmap_new(&pt->dirty, 1, 0, 0, err))) return rc;
    }
    return ESK_OK;
  }
  for (int32_t i = 0; i < p->nparts; i++) p->parts[i].ckpt_pending = 0;
  int expired = rc == ESK_EFATAL && expired_not_fenced(p);
  if (rc == ESK_EFATAL && !expired) return rc;
  /* abortable (or retries exhausted): abort, forget the batch's state, redo it */
  char q[512];
  if (!err->msg[0])
    esk_error_set(err, ESK_ECONFLICT, "%s", p->batch_reason[0] ? p->batch_reason : "produce failed");
  ESK_WARN(FAC, "msg=\"aborting transaction\" commands=%lld undelivered=%lld retry_in_ms=%lld "
           "reason=%s", (long long)p->batch_n, (long long)p->batch_undelivered,
           (long long)p->abort_backoff_ms, esk_log_quote(q, sizeof(q), err->msg));
  p->st.aborts++;
  esk_metrics_inc(p->m.aborts);
  /* a cause that persists (a broker down, a topic's min.insync.replicas out of
   * reach) must not spin; refused messages are judged below instead */
  if (p->abort_backoff_ms) usleep((useconds_t)p->abort_backoff_ms * 1000);
  p->abort_backoff_ms = p->abort_backoff_ms ? p->abort_backoff_ms * 2 : 100;
  if (p->abort_backoff_ms > 10000) p->abort_backoff_ms = 10000;
  esk_error_clear(err);
  for (int tries = 0; !expired; tries++) {
    rc = esk_kafka_txn_error(ESK_WAITING("abort_transaction",
                                         rd_kafka_abort_transaction(p->producer, 60000)),
                             "abort_transaction", err);
    if (rc == ESK_OK) break;
    if (rc == ESK_EFATAL && (expired = expired_not_fenced(p))) break;
    if (rc != ESK_ERETRY || tries == 5) return escalate(err);
  }
  if (expired) {
    ESK_WARN(FAC, "msg=\"the coordinator aborted the transaction on its timeout; carrying on "
             "with a new producer\" open_ms=%.0f transaction_timeout_ms=%lld",
             (mono_s() - p->batch_t0) * 1000.0, (long long)p->txn_timeout_ms);
    esk_error_clear(err);
  }
  judge_refusals(p); /* before the redo: it must treat the refused commands differently */
  if ((p->batch_broken || expired) && (rc = renew_producer(p, err))) return escalate(err);
  p->txn_unended = 0; /* aborted, or its producer replaced */
  p->batch_failed = 0; /* after the purged messages' reports */
  return rewind ? rewind_all(p, err) : ESK_OK;
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
    rc = restore_part(p, cur->elems[i].partition, err);
    if (rc == ESK_OK) atomic_fetch_sub(&p->health->restoring, 1);
  }
  if (rc == ESK_OK && (e = rd_kafka_assign(p->consumer, cur)))
    rc = esk_error_set(err, ESK_EFATAL, "re-assigning after an abort: %s", rd_kafka_err2str(e));
  rd_kafka_topic_partition_list_destroy(cur);
  if (rc) return escalate(err);
  ESK_INFO(FAC, "msg=\"rewound to the committed offsets after an abort\"");
  return ESK_OK;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  esk_producer_t *p = opaque;
  esk_error_t err = {0};
  if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    atomic_store(&p->health->assigned, parts->cnt);
    atomic_store(&p->health->restoring, parts->cnt);
    atomic_store(&p->health->joined, 1);
    esk_metrics_set(p->m.assigned, parts->cnt);
    if (parts->cnt == 0)
      ESK_WARN(FAC, "msg=\"no partition assigned: idle standby (more instances than "
               "partitions?)\" partitions=%d", p->nparts);
    for (int i = 0; i < parts->cnt && !p->fatal; i++) {
      if (restore_part(p, parts->elems[i].partition, &err)) {
        if (esk_watchdog_stopping()) break; /* interrupted by a stop: not an error */
        esk_error_t e2 = {0};
        esk_error_set(&e2, ESK_EFATAL, "restoring partition %d: %s",
                      (int)parts->elems[i].partition, err.msg);
        set_fatal(p, &e2);
      } else {
        atomic_fetch_sub(&p->health->restoring, 1);
      }
    }
    rd_kafka_assign(rk, parts);
    return;
  }
  /* revoked: commit what was done for them while the generation is still ours */
  if (p->in_txn && !p->fatal && finish_batch(p, 0, &err) == ESK_EFATAL) set_fatal(p, &err);
  p->in_txn = 0;
  for (int i = 0; i < parts->cnt; i++) {
    int32_t id = parts->elems[i].partition;
    if (id >= 0 && id < p->nparts) {
      drop_part(p, id);
      prune_verdicts(p, id, INT64_MAX); /* the next owner finds its own */
      /* another member reports it from now on */
      esk_metrics_set(p->m.lag_s ? p->m.lag_s[id] : NULL, 0);
    }
    ESK_INFO(FAC, "msg=\"partition revoked\" partition=%d", (int)id);
  }
  atomic_store(&p->health->assigned, 0);
  atomic_store(&p->health->restoring, 0);
  esk_metrics_set(p->m.assigned, 0);
  rd_kafka_assign(rk, NULL);
}

/* ---------------------------------------------------------------- set-up --- */

static int set_all(rd_kafka_conf_t *c, const char *const *kv, esk_error_t *err) {
  for (size_t i = 0; kv[i]; i += 2) {
    int rc = esk_kafka_conf_set(c, kv[i], kv[i + 1], err);
    if (rc) return rc;
  }
  return ESK_OK;
}

/* @p keep: if not NULL, set to a copy of the client's configuration. */
static int make_client(rd_kafka_t **out, rd_kafka_conf_t **keep, esk_producer_t *p,
                       const esk_conf_t *conf, rd_kafka_type_t type, const char *const *defaults,
                       const char *const *forced, esk_error_t *err) {
  rd_kafka_conf_t *c = NULL;
  char errstr[512];
  int rc = esk_kafka_conf_new(&c, type, esk_conf_get(conf, "kafka.bootstrap.servers"), err);
  if (rc) return rc;
  /* kafka.<property> to both clients, kafka.consumer.* / kafka.producer.* to one */
  if ((rc = set_all(c, defaults, err)) ||
      (rc = esk_conf_apply_kafka_client(conf, c, type, err)) || (rc = set_all(c, forced, err)))
    goto cleanup;
  rd_kafka_conf_set_opaque(c, p);
  rd_kafka_conf_set_error_cb(c, error_cb);
  if (type == RD_KAFKA_PRODUCER) {
    char tt[32], mb[32];
    size_t sz = sizeof(tt), msz = sizeof(mb);
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    /* an event between the two limits would fail its transaction in producev
     * instead of being rejected before it (docs/producer.md) */
    if (rd_kafka_conf_get(c, "message.max.bytes", mb, &msz) == RD_KAFKA_CONF_OK &&
        p->event_max > atoll(mb)) {
      rc = esk_error_set(err, ESK_EINVAL,
                         "event.max.bytes=%lld: must be at most kafka.message.max.bytes (%s)",
                         (long long)p->event_max, mb);
      goto cleanup;
    }
    /* a batch must commit well within the transaction timeout */
    if (rd_kafka_conf_get(c, "transaction.timeout.ms", tt, &sz) == RD_KAFKA_CONF_OK)
      p->txn_timeout_ms = atoll(tt);
    if (p->txn_timeout_ms && p->batch_ms * 2 > p->txn_timeout_ms) {
      rc = esk_error_set(err, ESK_EINVAL,
                         "batch.max.ms=%lld: must be at most half of "
                         "kafka.transaction.timeout.ms (%s)",
                         (long long)p->batch_ms, tt);
      goto cleanup;
    }
  }
  if (type == RD_KAFKA_CONSUMER && forced) {
    char strat[128];
    size_t sz = sizeof(strat);
    rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
    if (rd_kafka_conf_get(c, "partition.assignment.strategy", strat, &sz) == RD_KAFKA_CONF_OK &&
        strstr(strat, "cooperative")) {
      rc = esk_error_set(err, ESK_EINVAL,
                         "kafka.partition.assignment.strategy=%s: esk-producer needs an eager "
                         "assignor (range or roundrobin)",
                         strat);
      goto cleanup;
    }
  }
  if (keep && !(*keep = rd_kafka_conf_dup(c))) {
    rc = esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
    goto cleanup;
  }
  *out = rd_kafka_new(type, c, errstr, sizeof(errstr));
  if (!*out) {
    rc = esk_error_set(err, ESK_EINVAL, "cannot create the Kafka %s: %s",
                       type == RD_KAFKA_PRODUCER ? "producer" : "consumer", errstr);
    goto cleanup;
  }
  return ESK_OK;
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

int esk_producer_ready(const esk_producer_health_t *h, char *reason, size_t size) {
  int restoring = atomic_load(&h->restoring), assigned = atomic_load(&h->assigned);
  if (atomic_load_explicit(&h->fatal, memory_order_acquire)) {
    snprintf(reason, size, "fatal error: %s", h->fatal_msg);
    return 0;
  }
  if (!atomic_load(&h->running)) {
    snprintf(reason, size, "not running (starting up or stopping)");
    return 0;
  }
  if (!atomic_load(&h->joined)) {
    snprintf(reason, size, "no partition assignment from the consumer group yet");
    return 0;
  }
  if (restoring > 0) {
    snprintf(reason, size, "restoring %d of %d assigned partitions", restoring, assigned);
    return 0;
  }
  return 1;
}

/* Lag gauges of the held partitions from the consumer's cached watermarks (no
 * broker request), at most once a second. */
static void update_lag(esk_producer_t *p, int64_t now) {
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

/* The producer's topic handles, then its transactions (which fences an older
 * instance with the same transactional.id, or bumps our own epoch). */
static int init_transactions(esk_producer_t *p, esk_error_t *err) {
  int rc;
  p->rkt_ev = rd_kafka_topic_new(p->producer, p->topics.events, NULL);
  p->rkt_res = rd_kafka_topic_new(p->producer, p->topics.results, NULL);
  p->rkt_snap = rd_kafka_topic_new(p->producer, p->topics.snapshots, NULL);
  if (!p->rkt_ev || !p->rkt_res || !p->rkt_snap)
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

static void drop_producer(esk_producer_t *p) {
  if (p->rkt_ev) rd_kafka_topic_destroy(p->rkt_ev);
  if (p->rkt_res) rd_kafka_topic_destroy(p->rkt_res);
  if (p->rkt_snap) rd_kafka_topic_destroy(p->rkt_snap);
  p->rkt_ev = p->rkt_res = p->rkt_snap = NULL;
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
 * after them hangs on CONCURRENT_TRANSACTIONS. init_transactions() of a new
 * handle with the same transactional.id starts clean (about 10 ms here). */
static int renew_producer(esk_producer_t *p, esk_error_t *err) {
  char errstr[512];
  rd_kafka_purge(p->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  drop_producer(p);
  rd_kafka_conf_t *c = rd_kafka_conf_dup(p->prod_conf);
  if (!c) return esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
  if (!(p->producer = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr)))) {
    rd_kafka_conf_destroy(c);
    return esk_error_set(err, ESK_EFATAL, "re-creating the Kafka producer: %s", errstr);
  }
  return init_transactions(p, err);
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
  if (!(p->cmd = calloc(1, p->dom->command_size)))
    return esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
  return ESK_OK;
}

static void close_domain(esk_producer_t *p) {
  free(p->cmd);
  esk_decider_destroy(p->dc);
  esk_domain_inst_close(&p->di);
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
  if ((rc = esk_producer_domain_find(&p->dom, domain, err))) goto cleanup;
  snprintf(p->domain, sizeof(p->domain), "%s", domain);
  if ((rc = esk_topics_init(&p->topics, prefix, domain, err))) goto cleanup;
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
  p->batch_max = esk_conf_get_int(conf, "batch.max.commands");
  p->batch_ms = esk_conf_get_int(conf, "batch.max.ms");
  p->linger_ms = esk_conf_get_int(conf, "batch.linger.ms");
  p->snapshot_every = esk_conf_get_int(conf, "snapshot.every");
  p->ckpt_events = esk_conf_get_int(conf, "checkpoint.events");
  p->seen_max = esk_conf_get_int(conf, "seen.max");
  p->store_max = esk_conf_get_int(conf, "store.max.aggregates");
  if (!p->store_max) p->store_max = esk_conf_get_int(conf, "store.max.accounts"); /* old name */
  p->restore_ms = esk_conf_get_int(conf, "restore.timeout.ms");
  p->stats_ms = esk_conf_get_int(conf, "stats.interval.ms");
  p->event_max = esk_conf_get_int(conf, "event.max.bytes");
  p->fence_ms = esk_conf_get_int(conf, "fence.check.interval.ms");
  for (size_t i = 0; i < ESK_DOMAIN_MAX_EVENTS; i++) esk_buf_init(&p->evbuf[i], 1 << 20);

  if ((rc = open_domain(p, err))) goto cleanup;
  /* only failed deliveries call back: the reports of successful ones cost
   * ~15% of the main thread and nothing needs them */
  /* retry.backoff.ms: a transaction begun while the coordinator still writes
   * the previous one's markers is answered CONCURRENT_TRANSACTIONS, and
   * librdkafka waits this long before AddOffsetsToTxn again (100 ms by
   * default: a command then waited over 100 ms at 200 commands/s) */
  static const char *const prod_defaults[] = {"delivery.report.only.error", "true",
                                              "linger.ms", "5",
                                              "retry.backoff.ms", "10",
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
  if ((rc = make_client(&p->producer, &p->prod_conf, p, conf, RD_KAFKA_PRODUCER, prod_defaults,
                        prod_forced, err)))
    goto cleanup;
  if ((rc = make_client(&p->consumer, NULL, p, conf, RD_KAFKA_CONSUMER, cons_defaults,
                        cons_forced, err)))
    goto cleanup;
  if ((rc = check_topics(p, err))) goto cleanup;
  p->parts = calloc((size_t)p->nparts, sizeof(*p->parts));
  if (!p->parts) {
    rc = esk_error_set(err, ESK_ENOMEM, "producer: out of memory");
    goto cleanup;
  }
  for (int i = 0; i < p->nparts; i++) p->parts[i].batch_next = p->parts[i].next_offset = -1;
  if (metrics && (rc = register_metrics(p, metrics, err))) goto cleanup;
  /* the restore reader is a consumer too: the same kafka.* and kafka.consumer.*
   * settings (security, bootstrap), its own read settings on top */
  rd_kafka_conf_t *rconf = NULL;
  if ((rc = esk_kafka_conf_new(&rconf, RD_KAFKA_CONSUMER,
                               esk_conf_get(conf, "kafka.bootstrap.servers"), err)))
    goto cleanup;
  if ((rc = esk_conf_apply_kafka_client(conf, rconf, RD_KAFKA_CONSUMER, err))) {
    rd_kafka_conf_destroy(rconf);
    goto cleanup;
  }
  if ((rc = esk_kafka_reader_new_conf(&p->reader, rconf, NULL, err))) goto cleanup;
  if ((rc = init_transactions(p, err))) goto cleanup;
  *out = p;
  return ESK_OK;
cleanup:
  esk_producer_destroy(p);
  return rc;
}

void esk_producer_destroy(esk_producer_t *p) {
  if (!p) return;
  for (int i = 0; i < p->nparts && p->parts; i++) drop_part(p, i);
  free(p->parts);
  free(p->m.restore_s);
  free(p->m.lag_s);
  esk_watchdog_doing("rd_kafka_destroy (the consumers)");
  if (p->consumer) rd_kafka_destroy(p->consumer);
  if (p->reader) rd_kafka_destroy(p->reader);
  drop_producer(p);
  esk_watchdog_doing(NULL);
  if (p->prod_conf) rd_kafka_conf_destroy(p->prod_conf);
  close_domain(p);
  esk_buf_free(&p->buf);
  for (size_t i = 0; i < ESK_DOMAIN_MAX_EVENTS; i++) esk_buf_free(&p->evbuf[i]);
  free(p->cmds);
  free(p->refused);
  free(p->verdicts);
  free(p);
}

/* ---------------------------------------------------------- fence check --- */

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
  return rc == ESK_EFATAL ? rc : fence_txn_end(p, rc, err);
}

/* librdkafka learns that another instance with this transactional.id fenced
 * this one only from the coordinator's answer to a transactional request, and
 * sends none while no transaction is open: an idle zombie stayed in the
 * group, holding its partitions and ready, until a command came (issue 21).
 * So while no transaction has run for fence.check.interval.ms, one that
 * commits the committed offsets again asks; a fenced instance stops. */
static void check_fence(esk_producer_t *p, int64_t now) {
  if (!p->fence_ms || p->in_txn || p->fatal || now < p->fence_next_ms) return;
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
    set_fatal(p, &fe);
    return;
  }
  ESK_WARN(FAC, "msg=\"fence check failed; trying again later\" reason=%s",
           esk_log_quote(q, sizeof(q), e.msg));
}

/* Once per turn of the run loop that reads the clock (every 64 commands, or
 * when idle): the heartbeat /healthz reads, and the fence check. */
static void keep_alive(esk_producer_t *p, int64_t now) {
  esk_watchdog_beat();
  check_fence(p, now);
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

int esk_producer_run(esk_producer_t *p, volatile sig_atomic_t *stop, esk_error_t *err) {
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, p->topics.commands, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(p->consumer, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  if (e) return esk_error_set(err, ESK_EFATAL, "subscribe %s: %s", p->topics.commands,
                              rd_kafka_err2str(e));
  /* a stop wakes the poll, which may wait up to batch.max.ms with a batch open */
  rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(p->consumer);
  esk_watchdog_set_wake(wake_poll, cq);
  ESK_INFO(FAC, "msg=started commands=%s events=%s group=%s partitions=%d", p->topics.commands,
           p->topics.events, p->group_id, p->nparts);
  atomic_store(&p->health->running, 1);
  stats_t prev = p->st;
  int64_t last_stats = mono_ms();
  uint64_t iter = 0;
  int64_t now = mono_ms();
  while (!*stop && !p->fatal) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, poll_timeout(p, now));
    if (m) {
      if (!m->err) {
        handle_command(p, m);
      } else if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        esk_error_t fe = {0};
        esk_error_set(&fe, ESK_EFATAL, "consumer: %s", rd_kafka_message_errstr(m));
        set_fatal(p, &fe);
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        char q[256];
        ESK_WARN(FAC, "msg=\"consumer error\" reason=%s",
                 esk_log_quote(q, sizeof(q), rd_kafka_message_errstr(m)));
      }
      rd_kafka_message_destroy(m);
    }
    /* while commands keep coming without a wait, delivery reports and the
     * clock every 64 commands (both showed in profiles when done per command);
     * a poll that may have waited (linger) is followed by a look at the clock */
    if (m && !p->linger_ms && (++iter & 63) && p->batch_n < p->batch_max) continue;
    rd_kafka_poll(p->producer, 0);
    now = mono_ms();
    /* adaptive batching: the batch closes when no command is ready (the poll
     * above came back empty), when it is full, or at its deadline */
    if (p->in_txn && !p->fatal &&
        (!m || p->batch_n >= p->batch_max || now >= p->batch_deadline)) {
      esk_error_t fe = {0};
      if (finish_batch(p, 1, &fe)) set_fatal(p, &fe);
      now = mono_ms();
    }
    update_lag(p, now);
    keep_alive(p, now);
    if (p->stats_ms && now - last_stats >= p->stats_ms) {
      log_stats(p, &prev, now - last_stats);
      prev = p->st;
      last_stats = now;
    }
  }
  if (!p->fatal && p->in_txn) {
    esk_error_t fe = {0};
    const char *was = esk_watchdog_doing("finishing the open batch");
    if (finish_batch(p, 0, &fe)) set_fatal(p, &fe);
    esk_watchdog_doing(was);
  }
  if (p->fatal) p->in_txn = 0; /* nothing more goes into a broken transaction */
  esk_watchdog_set_wake(NULL, NULL);
  rd_kafka_queue_destroy(cq);
  atomic_store(&p->health->running, 0);
  /* no timeout in librdkafka 2.0.2 (it runs the revocation, then leaves the
   * group): the watchdog bounds it */
  (void)ESK_WAITING("rd_kafka_consumer_close (revoking, leaving the group)",
                    rd_kafka_consumer_close(p->consumer));
  log_stats(p, &prev, mono_ms() - last_stats);
  if (p->fatal) {
    *err = p->ferr;
    return ESK_EFATAL;
  }
  ESK_INFO(FAC, "msg=stopped");
  return ESK_OK;
}
