/**
 * @file producer_int.h
 * @brief What the files of the esk-producer runtime share: the producer's
 *        struct, its parts, and the functions one file calls in another
 *        (esk_prod_*; internal, not for tests or other binaries).
 */
#ifndef ESK_PRODUCER_INT_H
#define ESK_PRODUCER_INT_H

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
#include "esk/domain_lib.h"
#include "esk/hmap.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/shred.h"
#include "esk/watchdog.h"
#include "esk/time.h"
#include "esk/conf.h"
#include "esk/error.h"
#include "esk/metrics.h"
#include "health.h"
#include "refusals.h"
#include "restore.h"
#include "results.h"
#include <librdkafka/rdkafka.h>

#define FAC "producer"

/* As in producer.h (C11 allows the repeated typedef): the files of the runtime
 * that only share its struct need not include the public header. */
typedef struct esk_producer_s esk_producer_t;

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
  esk_series_t *accepted, *rejected[ESK_RULE_DOMAIN + ESK_DOMAIN_MAX_RULES], *duplicates,
      *skipped, *batches, *batch_s, *aborts, *restore_events, *assigned;
  esk_series_t **restore_s, **lag_s; /* per partition, created at its first restore */
} metrics_t;

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
  int64_t batch_max, batch_ms, linger_ms, snapshot_every, ckpt_events, seen_max, store_max,
      restore_ms, stats_ms;
  int store_packed; /* store.packed: states kept as their snapshots */
  rd_kafka_t *consumer, *producer, *reader;
  rd_kafka_topic_t *rkt_ev, *rkt_res, *rkt_snap;
  esk_domain_lib_t *dom_lib;  /* the shared object the domain came from */
  const esk_domain_t *dom;    /* the domain (docs/architecture.md, "Write side") */
  esk_domain_inst_t di;       /* its contract and instance */
  void *dom_self;             /* di.self */
  /* the domain's decode_command_bytes, or NULL */
  int (*decode_fast)(void *, const void *, size_t, esk_envelope_t *, void *);
  esk_codec_t *codec;         /* di.codec */
  esk_decider_t *dc;          /* scratch of its decisions */
  void *cmd;                  /* the command being handled (command_size bytes) */
  part_t *parts;
  int nparts;
  int in_txn, batch_failed;
  int batch_isolated;         /* the open batch holds one suspect command alone */
  int64_t event_max;          /* event.max.bytes */
  int headers_minimal;        /* event.headers=minimal: esk.type and esk.schema_version only */
  cmd_ref_t *cmds;            /* the open batch's commands (batch_n of them) */
  size_t cmds_cap;
  esk_refusals_t rf;          /* refused messages and verdicts (refusals.h) */
  esk_buf_t evbuf[ESK_DOMAIN_MAX_EVENTS]; /* a command's encoded events before publishing */
  int64_t batch_undelivered;  /* delivery failures in the open batch */
  int batch_broken;           /* a message failed other than by an abort's purge */
  rd_kafka_conf_t *prod_conf; /* a copy of the producer's, for esk_prod_renew_producer() */
  char batch_reason[256];     /* the first of them */
  int64_t abort_backoff_ms;   /* grows while aborts follow each other */
  int64_t batch_n, batch_deadline;
  esk_buf_t buf;
  uint8_t rnd[4096]; /* random bytes for event ids, refilled with getrandom() */
  size_t rnd_pos;
  stats_t st;
  metrics_t m;
  batch_counts_t bc;
  double batch_t0;             /* seconds (monotonic) at esk_prod_begin_batch */
  int txn_unended;             /* the transaction begun at batch_t0 is not committed or aborted */
  int64_t txn_timeout_ms;      /* the producer's transaction.timeout.ms */
  int64_t lag_next_ms;         /* next lag gauge update */
  int64_t offsets_first_ms;    /* txn.offsets.first.ms */
  int64_t txn_end_ms;          /* monotonic ms when the last transaction ended */
  int64_t fence_ms;            /* fence.check.interval.ms */
  int64_t fence_next_ms;       /* next fence check */
  esk_producer_health_t *health, own_health;
  /* personal data (docs/architecture.md, "Personal data"): NULL when off */
  esk_shred_t *shred;
  char keys_topic[256];      /* <prefix><domain>.subject-keys */
  rd_kafka_topic_t *rkt_keys;
  esk_buf_t shred_buf;       /* an event re-encoded with its personal fields encrypted */
  int64_t shred_next_ms;     /* next read of the subject-keys topic (forgotten subjects) */
};

/* records.c */
void esk_prod_note_refusal(esk_producer_t *p, uintptr_t idx, rd_kafka_topic_t *rkt, size_t len,
                           rd_kafka_resp_err_t e, int local);
void *esk_prod_cmd_opaque(const esk_producer_t *p);
int esk_prod_encode_event(esk_producer_t *p, size_t i, const esk_schema_t **ws, char eid[37],
                          int64_t version, const esk_envelope_t *env);
size_t esk_prod_event_record_size(const esk_producer_t *p, size_t i, const esk_schema_t *ws,
                                  const esk_envelope_t *env);
void esk_prod_hdr(rd_kafka_headers_t *h, const char *name, const char *v);
int esk_prod_produce(esk_producer_t *p, rd_kafka_topic_t *rkt, int32_t part, const void *key,
                     size_t klen, const void *val, size_t vlen, rd_kafka_headers_t *hdrs,
                     void *opaque);
int esk_prod_produce_event(esk_producer_t *p, int32_t part, size_t i, const esk_schema_t *ws,
                           const char *eid, int64_t version, const esk_envelope_t *env);
int esk_prod_produce_result(esk_producer_t *p, int32_t part, const char *command_id,
                            const esk_result_t *res);
int esk_prod_produce_result_n(esk_producer_t *p, int32_t part, const char *command_id,
                              size_t id_len, const esk_result_t *res);
/* A command id seen before: its first result again, marked ESK_KAFKA_HDR_DUPLICATE. */
int esk_prod_produce_duplicate(esk_producer_t *p, int32_t part, const char *command_id,
                               const esk_result_t *first);
int esk_prod_produce_snapshot(esk_producer_t *p, int32_t part, const char *id, const void *s,
                              void *opaque);

/* shredding.c: personal data */
int esk_prod_shred_open(esk_producer_t *p, const esk_conf_t *conf, esk_error_t *err);
int esk_prod_shred_event(esk_producer_t *p, size_t i, esk_error_t *err);
int esk_prod_shred_refresh(void *p, esk_error_t *err);
void esk_prod_shred_tick(esk_producer_t *p, int64_t now_ms);

/* intake.c */
void esk_prod_handle_command(esk_producer_t *p, const rd_kafka_message_t *m);

/* txn.c */
int esk_prod_begin_batch(esk_producer_t *p, int32_t part, int64_t offset, esk_error_t *err);
void esk_prod_check_fence(esk_producer_t *p, int64_t now);
void esk_prod_drop_producer(esk_producer_t *p);
int esk_prod_finish_batch(esk_producer_t *p, int rewind, esk_error_t *err);
int esk_prod_init_transactions(esk_producer_t *p, esk_error_t *err);
int esk_prod_renew_producer(esk_producer_t *p, esk_error_t *err);

/* partitions.c */
void esk_prod_drop_part(esk_producer_t *p, int32_t id);
void esk_prod_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                           rd_kafka_topic_partition_list_t *parts, void *opaque);
int esk_prod_restore_part(esk_producer_t *p, int32_t id, esk_error_t *err);
void esk_prod_update_lag(esk_producer_t *p, int64_t now);

/* producer.c */
int esk_prod_escalate(esk_error_t *err);
int esk_prod_expired_not_fenced(esk_producer_t *p);
/* 1 once a fatal error was recorded (esk_watchdog_fatal(&p->health->fatal, ...)):
 * the main loop ends and nothing more goes into a transaction. */
static inline int esk_prod_fatal(const esk_producer_t *p) {
  return esk_watchdog_is_fatal(&p->health->fatal);
}

#endif
