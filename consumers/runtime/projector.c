#include "projector.h"
#include "from_time.h"
#include "store.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esk/codec.h"
#include "esk/hmap.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/pg.h"
#include "esk/watchdog.h"
#include "esk/time.h"
#include "bulk.h"
#include "generation.h"
#include "scrub.h"

const esk_conf_prop_t esk_projector_props[] = {
    {"projection", ESK_CONF_STRING, NULL, 0, 0, NULL, NULL,
     "Name of the projection this process runs (also --projection)."},
    {"group.id", ESK_CONF_STRING, NULL, 0, 0, NULL, NULL,
     "Consumer group; default esk.projection.<projection>. Once the projection's generation "
     "exists its recorded group is used, and a group.id set to another one stops start-up "
     "(positions are kept in PostgreSQL: rebuild, or use a new pg.schema)."},
    {"topic", ESK_CONF_STRING, NULL, 0, 0, NULL, NULL,
     "Events topic to read; default <domain>.events."},
    {"batch.max.events", ESK_CONF_INT, "100000", 1, 1000000, NULL, NULL,
     "Most events applied in one PostgreSQL transaction (large batches amortise the "
     "per-aggregate version writes; batch.max.ms bounds the wait when there is no lag)."},
    {"batch.max.ms", ESK_CONF_INT, "200", 1, 60000, NULL, NULL,
     "Longest time a batch waits to fill before it is applied (a catch-up waits for a full "
     "batch up to this long; docs/projector.md, \"Batches\")."},
    {"batch.linger.ms", ESK_CONF_INT, "0", 0, 60000, NULL, NULL,
     "How long a batch that holds events waits for another one once none is ready, in "
     "milliseconds (0: it is applied as soon as the consumer has nothing more ready; under "
     "load the events that arrive during a PostgreSQL commit make the next batch). More "
     "trades latency for fewer, larger transactions at moderate rates."},
    {"guard.cache.aggregates", ESK_CONF_INT, "500000", 0, 100000000, NULL, NULL,
     "Aggregates whose last applied version the projector remembers between batches, so "
     "that a batch reads from PostgreSQL only the versions of aggregates it has not met since "
     "its partitions were assigned (0: each batch reads all of its own). Emptied at every "
     "assignment change and after a batch that did not commit; once full, newer aggregates "
     "are read each batch. 80-130 bytes each, by the ids' length (docs/projector.md, "
     "\"Version guard\")."},
    {"on_error", ESK_CONF_ENUM, "dlq", 0, 0, "dlq,stop", NULL,
     "A poison event (undecodable, version gap, permanent SQL failure): send it to "
     "<topic>.dlq.<projection> and go on, or stop the projector."},
    {"progress.interval.ms", ESK_CONF_INT, "10000", 100, 3600000, NULL, NULL,
     "Interval of the progress log line (events/s, lag per partition)."},
    {"pg.retry.backoff.max.ms", ESK_CONF_INT, "5000", 10, 600000, NULL, NULL,
     "Longest wait between retries while PostgreSQL is unreachable."},
    {"pg.check.interval.ms", ESK_CONF_INT, "2000", 100, 600000, NULL, NULL,
     "When no batch reached PostgreSQL for this long, a `select 1` checks it is still "
     "reachable (for /readyz while idle)."},
    {"ready.max.lag.events", ESK_CONF_INT, "100000", 0, 1000000000000, NULL, NULL,
     "/readyz answers not ready while the lag summed over the assigned partitions is "
     "above this many events."},
    {"generation", ESK_CONF_INT, "0", 0, 1000000, NULL, NULL,
     "Generation of the read model (blue-green rebuilds, eskctl projection rebuild). "
     "esk-projector: 0 serves the live generation and follows a switch; N fills "
     "generation N. Generation N keeps its tables in schema <pg.schema>_<projection>_g<N> "
     "(views in pg.schema name the live one) and, for N > 1, reads as group "
     "<group.id>.g<N>."},
    {"personal.scrub.interval.ms", ESK_CONF_INT, "5000", 100, 86400000, NULL, NULL,
     "How often the projector looks for data subjects forgotten since its last look (eskctl "
     "subjects forget, read from the subject-keys topic) and scrubs them from its read model: "
     "the personal columns the projection declares ([personal] sections of a declarative file, "
     "a plugin's forget(), event_log's payloads) take their declared replacement. A forget is "
     "scrubbed within about this interval plus one batch, also when it happened while the "
     "projector was down. Needs personal.master_key_file (docs/architecture.md, \"Personal "
     "data\")."},
    {"pg.schema", ESK_CONF_STRING, "public", 0, 0, NULL, NULL,
     "PostgreSQL schema of the read models and esk's bookkeeping tables (created if "
     "missing); a lower-case identifier [a-z_][a-z0-9_]*, at most 63 characters, checked "
     "at start like the projection's name."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

#define POS_UNKNOWN INT64_MIN

typedef struct part_s {
  int assigned;
  int64_t stored;   /* next offset stored in PostgreSQL, -1 none */
  int64_t batch_next; /* next offset after this batch's last message, -1 none */
  int64_t batch_ts_ms;   /* timestamp of this batch's newest message, -1 none */
  int64_t applied_ts_ms; /* timestamp of the newest applied message, -1 none */
  int64_t lag;           /* events, as of the last update_lag(); -1 unknown */
  int64_t eof_at;        /* next offset when the consumer last reached the end of the
                            partition (past transaction markers), -1 unknown */
  int64_t polled;        /* next offset after the newest message polled, -1 none since
                            the assignment or the last seek */
  esk_series_t *m_lag, *m_lag_s; /* looked up once, on the first assignment */
} part_t;

/* The metric families (all NULL without a registry: updates then do nothing). */
typedef struct pmetrics_s {
  esk_metric_t *lag, *lag_s, *dead;
  esk_series_t *applied, *batches, *duration, *retries, *skipped, *assigned, *scrubbed;
  esk_series_t *versions_read, *read_bytes;
} pmetrics_t;

struct esk_projector_s {
  const esk_conf_t *conf;
  esk_projection_t proj;
  esk_decoder_t dec;
  int read_bytes; /* the projection's decode() reads events from their bytes */
  char *name, *topic, *group, *dlq_topic;
  char *schema;      /* pg.schema: bookkeeping (positions, versions), views */
  char *data_schema; /* the generation's tables: pg.schema itself without generations */
  char *store_key;   /* the projection's key in the bookkeeping tables */
  int gen;           /* the generation served, 0 without generations */
  int deferred;      /* indexes still to build once caught up (bulk.h) */
  int64_t deferred_at_ms; /* not before this time: a failed build waits */
  int version_floor; /* a projection keeping its own versions started at a time: the
                        versions recorded before the time back up its unknown ones */
  esk_hmap_t *vcache;     /* aggregate id -> int64_t version as committed (vcache_*) */
  size_t vcache_max;      /* guard.cache.aggregates; 0: no cache */
  unsigned vcache_gen;    /* the assignment generation the cache belongs to */
  PGconn *pg;
  rd_kafka_t *consumer;
  rd_kafka_t *dlq;
  part_t *parts;
  int n_parts;
  int batch_max, batch_ms, linger_ms, on_error_stop, progress_ms, backoff_max_ms;
  volatile sig_atomic_t *stop;
  volatile int rebalanced;
  unsigned generation; /* bumped by every assignment change */
  esk_fatal_t fatal; /* the first fatal error; the loop ends on it */
  esk_projector_stats_t stats;
  rd_kafka_message_t **batch;
  unsigned *batch_gen; /* generation each batched message was received in */
  size_t n_batch;
  pmetrics_t m;
  int64_t pg_check_ms, ready_max_lag, last_pg_ms;
  int64_t scrub_ms;
  esk_scrub_t *scrub; /* NULL: no personal data decrypted, or none declared */
  esk_scrub_retired_t *scrub_retired; /* the retired generations': with scrub, when gen >= 1 */
  /* Readiness, published by the main loop, read by esk_projector_ready(). */
  atomic_int r_assigned;  /* -1 before the first assignment, else partitions */
  atomic_int r_pg_ok;     /* PostgreSQL answered at the last attempt */
  atomic_int r_dlq_ok;    /* the last dead letters were acknowledged by Kafka */
  int dlq_stalled;        /* the failed attempt failed on the dead letters, not PostgreSQL */
  int dlq_refused;        /* dead letters Kafka refused since the batch began (delivery reports) */
  char dlq_refusal[256];  /* the first refusal's reason */
  atomic_llong r_lag;     /* events, summed over the assigned partitions */
};

/* A log value quoted for key=value lines (one per log statement). */
#define LQ(s) esk_log_quote((char[ESK_ERROR_MSG_MAX + 64]){0}, ESK_ERROR_MSG_MAX + 64, (s))

/* Every session works in the configured schema (a reset connection is a new
 * session, so this runs again after each reset). */
static int pg_session_setup(esk_projector_t *p, esk_error_t *err) {
  char sql[192];
  /* the generation's tables first; the bookkeeping tables are found in pg.schema */
  if (strcmp(p->data_schema, p->schema))
    snprintf(sql, sizeof(sql), "set search_path to \"%s\", \"%s\"", p->data_schema, p->schema);
  else
    snprintf(sql, sizeof(sql), "set search_path to \"%s\"", p->schema);
  return esk_pg_exec(NULL, p->pg, "set search_path", sql, 0, NULL, err);
}

/* Makes sure the connection is usable; a broken one is reset. */
static int pg_ensure(esk_projector_t *p, esk_error_t *err) {
  if (PQstatus(p->pg) == CONNECTION_OK) return ESK_OK;
  PQreset(p->pg);
  if (PQstatus(p->pg) != CONNECTION_OK) {
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(p->pg));
    msg[strcspn(msg, "\n")] = '\0';
    atomic_store(&p->r_pg_ok, 0);
    return esk_error_set(err, ESK_ERETRY, "PostgreSQL unreachable: %s", msg);
  }
  return pg_session_setup(p, err);
}

/* Notes a PostgreSQL retry: counted, and not ready until an attempt works. */
static void pg_retry_noted(esk_projector_t *p) {
  p->stats.pg_retries++;
  esk_metrics_inc(p->m.retries);
  atomic_store(&p->r_pg_ok, 0);
}

/* While idle, checks every pg.check.interval.ms that PostgreSQL still
 * answers, so that readiness notices an outage without traffic. */
static void pg_check(esk_projector_t *p, int64_t now) {
  if (now - p->last_pg_ms < p->pg_check_ms) return;
  esk_error_t err = {0};
  int rc = pg_ensure(p, &err);
  if (!rc) rc = esk_pg_exec(NULL, p->pg, "check", "select 1", 0, NULL, &err);
  p->last_pg_ms = now;
  if (rc && atomic_load(&p->r_pg_ok))
    ESK_WARN("projector", "msg=\"PostgreSQL check failed\" projection=%s reason=%s", p->name,
             LQ(err.msg));
  else if (!rc && !atomic_load(&p->r_pg_ok))
    ESK_INFO("projector", "msg=\"PostgreSQL answers again\" projection=%s", p->name);
  atomic_store(&p->r_pg_ok, rc == ESK_OK);
}

int esk_projector_start_at(esk_projector_t *p, int64_t t_ms, esk_error_t *err) {
  if (p->proj.needs_full_history)
    return esk_error_set(err, ESK_EINVAL,
                         "--from-time: projection %s folds every event of an account into its "
                         "rows, which would be wrong without the events before the time; start "
                         "it from the beginning (without --from-time)",
                         p->name);
  int seeded = 0;
  int rc = esk_from_time_seed(p->pg, p->conf, p->store_key, p->topic, &p->dec, t_ms, &seeded, err);
  if (rc == ESK_OK && seeded && p->proj.versions_get) p->version_floor = 1;
  return rc;
}

#define IDENT_RULE "a lower-case identifier [a-z_][a-z0-9_]*, at most 63 characters"

int esk_projector_check_names(const esk_conf_t *conf, esk_error_t *err) {
  static const char *const keys[] = {"pg.schema", "projection"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
    const char *v = esk_conf_get(conf, keys[i]);
    if (!v && i == 1) continue; /* no projection: the binary says which ones exist */
    if (!esk_pg_ident_valid(v))
      return esk_error_set(err, ESK_EINVAL, "invalid value '%s' for %s: expected " IDENT_RULE,
                           v ? v : "", keys[i]);
  }
  const char *projection = esk_conf_get(conf, "projection");
  int64_t gen = esk_conf_get_int(conf, "generation");
  char schema[64];
  if (projection)
    return esk_generation_schema(schema, sizeof(schema), esk_conf_get(conf, "pg.schema"),
                                 projection, gen > 0 ? (int)gen : 1, err);
  return ESK_OK;
}

/* Creates the schema if it is missing (serialised with esk's other DDL) and
 * enters it. An existing schema is not "created if not exists": that needs
 * CREATE on the database, which a deployment's role may rightly lack. */
static int schema_create(esk_projector_t *p, const char *schema, esk_error_t *err) {
  char sql[200];
  const char *params[] = {schema};
  PGresult *r = NULL;
  int rc = esk_pg_exec(&r, p->pg, "look up schema",
                       "select 1 from pg_namespace where nspname = $1", 1, params, err);
  if (rc) return rc;
  int exists = PQntuples(r) > 0;
  PQclear(r);
  if (!exists) {
    snprintf(sql, sizeof(sql),
             "begin; select pg_advisory_xact_lock(7218300413); "
             "create schema if not exists \"%s\"; commit",
             schema);
    if ((rc = esk_pg_exec(NULL, p->pg, "create schema", sql, 0, NULL, err))) {
      PQclear(PQexec(p->pg, "rollback"));
      return rc;
    }
  }
  return ESK_OK;
}

/* Creates the schemas if they are missing and the bookkeeping tables in
 * pg.schema, then enters the generation's schema. */
static int pg_schema_init(esk_projector_t *p, esk_error_t *err) {
  char sql[128];
  int rc = schema_create(p, p->schema, err);
  if (!rc && strcmp(p->data_schema, p->schema)) rc = schema_create(p, p->data_schema, err);
  if (rc) return rc;
  /* "create table if not exists" creates in the first schema of the path */
  snprintf(sql, sizeof(sql), "set search_path to \"%s\"", p->schema);
  if ((rc = esk_pg_exec(NULL, p->pg, "set search_path", sql, 0, NULL, err)) ||
      (rc = esk_store_init(p->pg, err)))
    return rc;
  return pg_session_setup(p, err);
}

/* Makes room for @p partition in p->parts. ESK_ENOMEM (not a skipped
 * partition) when it cannot. */
static int grow_parts(esk_projector_t *p, int32_t partition, esk_error_t *err) {
  if (partition < p->n_parts) return ESK_OK;
  int n = partition + 1;
  part_t *np = realloc(p->parts, (size_t)n * sizeof(*np));
  if (!np)
    return esk_error_set(err, ESK_ENOMEM, "projector %s: out of memory growing its partition "
                         "table to %d partitions", p->name, n);
  for (int i = p->n_parts; i < n; i++) np[i] = (part_t){0, POS_UNKNOWN, -1, -1, -1, -1, -1, -1, NULL, NULL};
  p->parts = np;
  p->n_parts = n;
  return ESK_OK;
}

/* ------------------------------------------------------------ rebalance --- */

/* Looks up the partition's labelled series (once: series live as long as
 * the registry). */
static void part_metrics(esk_projector_t *p, part_t *pt, int32_t partition) {
  if (!p->m.lag || pt->m_lag) return;
  char part[16];
  snprintf(part, sizeof(part), "%d", (int)partition);
  const char *values[] = {p->name, part};
  esk_error_t err = {0};
  if (esk_metrics_series(&pt->m_lag, p->m.lag, values, &err) ||
      esk_metrics_series(&pt->m_lag_s, p->m.lag_s, values, &err))
    ESK_WARN("projector", "msg=\"no lag series for a partition\" partition=%d reason=%s",
             (int)partition, LQ(err.msg));
}

/* Publishes the number of assigned partitions (gauge and readiness). */
static void publish_assigned(esk_projector_t *p) {
  int n = 0;
  for (int i = 0; i < p->n_parts; i++) n += p->parts[i].assigned;
  atomic_store(&p->r_assigned, n);
  esk_metrics_set(p->m.assigned, n);
}

/* Reads stored positions of @p list from PostgreSQL, retrying with backoff
 * until it works or a stop is requested. Blocking here is safe: librdkafka
 * sends heartbeats from its own thread. */
static int read_positions(esk_projector_t *p, rd_kafka_topic_partition_list_t *list) {
  int backoff = 100;
  for (;;) {
    esk_error_t err = {0};
    int rc = pg_ensure(p, &err);
    for (int i = 0; !rc && i < list->cnt; i++) {
      int64_t pos = -1;
      rc = esk_store_position_get(p->pg, p->store_key, list->elems[i].topic,
                                  list->elems[i].partition, &pos, &err);
      list->elems[i].offset = pos >= 0 ? pos : RD_KAFKA_OFFSET_BEGINNING;
      if (!rc) rc = grow_parts(p, list->elems[i].partition, &err);
      if (!rc) {
        part_t *pt = &p->parts[list->elems[i].partition];
        pt->assigned = 1;
        pt->stored = pos;
        pt->batch_next = -1;
        pt->lag = -1;
        pt->eof_at = pt->polled = -1;
        part_metrics(p, pt, list->elems[i].partition);
      }
    }
    if (!rc) {
      atomic_store(&p->r_pg_ok, 1);
      return ESK_OK;
    }
    if (rc != ESK_ERETRY) return esk_watchdog_fatal(&p->fatal, &err);
    if (*p->stop) return ESK_ERETRY;
    pg_retry_noted(p);
    ESK_WARN("projector", "msg=\"cannot read positions, retrying\" projection=%s backoff_ms=%d "
                          "reason=%s", p->name, backoff, LQ(err.msg));
    esk_time_sleep_ms(backoff);
    backoff = backoff * 2 > p->backoff_max_ms ? p->backoff_max_ms : backoff * 2;
  }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *list, void *opaque) {
  esk_projector_t *p = opaque;
  p->rebalanced = 1;
  p->generation++;
  if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (ESK_WAITING("PostgreSQL: reading the positions of assigned partitions",
                    read_positions(p, list)) != ESK_OK) {
      rd_kafka_assign(rk, NULL);
      return;
    }
    for (int i = 0; i < list->cnt; i++)
      ESK_INFO("projector", "msg=\"partition assigned\" projection=%s topic=%s partition=%d "
                            "offset=%" PRId64, p->name, list->elems[i].topic,
               (int)list->elems[i].partition, list->elems[i].offset);
    rd_kafka_assign(rk, list);
    publish_assigned(p);
  } else {
    for (int i = 0; i < list->cnt; i++) {
      if (list->elems[i].partition < p->n_parts) p->parts[list->elems[i].partition].assigned = 0;
      ESK_INFO("projector", "msg=\"partition revoked\" projection=%s topic=%s partition=%d",
               p->name, list->elems[i].topic, (int)list->elems[i].partition);
    }
    rd_kafka_assign(rk, NULL);
    publish_assigned(p);
  }
}

/* ------------------------------------------------------------------- dlq --- */

static int dead_letter(esk_projector_t *p, const rd_kafka_message_t *m, const esk_error_t *why,
                       esk_error_t *err) {
  if (p->on_error_stop)
    return esk_error_set(err, ESK_EFATAL,
                         "poison event at %s[%d]@%" PRId64 " (on_error=stop): %s",
                         rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset, why->msg);
  rd_kafka_headers_t *h = NULL;
  const rd_kafka_headers_t *orig = NULL;
  h = rd_kafka_message_headers(m, (rd_kafka_headers_t **)&orig) == RD_KAFKA_RESP_ERR_NO_ERROR
          ? rd_kafka_headers_copy(orig)
          : rd_kafka_headers_new(8);
  char part[16], off[32];
  snprintf(part, sizeof(part), "%d", (int)m->partition);
  snprintf(off, sizeof(off), "%" PRId64, m->offset);
  rd_kafka_header_add(h, "esk.dlq.error", -1, esk_error_name(why->code), -1);
  rd_kafka_header_add(h, "esk.dlq.reason", -1, why->msg, -1);
  rd_kafka_header_add(h, "esk.dlq.projection", -1, p->name, -1);
  rd_kafka_header_add(h, "esk.dlq.topic", -1, rd_kafka_topic_name(m->rkt), -1);
  rd_kafka_header_add(h, "esk.dlq.partition", -1, part, -1);
  rd_kafka_header_add(h, "esk.dlq.offset", -1, off, -1);
  if (p->gen > 0) { /* a rebuild dead-letters the same poison events again: tells them apart */
    char gen[16];
    snprintf(gen, sizeof(gen), "%d", p->gen);
    rd_kafka_header_add(h, "esk.dlq.generation", -1, gen, -1);
  }
  rd_kafka_resp_err_t e = rd_kafka_producev(
      p->dlq, RD_KAFKA_V_TOPIC(p->dlq_topic), RD_KAFKA_V_KEY(m->key, m->key_len),
      RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
  if (e) {
    rd_kafka_headers_destroy(h);
    return esk_error_set(err, ESK_ERETRY, "dead-letter to %s: %s", p->dlq_topic,
                         rd_kafka_err2str(e));
  }
  esk_series_t *dl = NULL;
  esk_error_t ignored = {0};
  if (p->m.dead &&
      esk_metrics_series(&dl, p->m.dead, (const char *[]){p->name, esk_error_name(why->code)},
                         &ignored) == ESK_OK)
    esk_metrics_inc(dl);
  ESK_WARN("projector", "msg=\"event dead-lettered\" projection=%s topic=%s partition=%d "
                        "offset=%" PRId64 " dlq=%s error=%s reason=%s",
           p->name, rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset, p->dlq_topic,
           esk_error_name(why->code), LQ(why->msg));
  return ESK_OK;
}

/* ----------------------------------------------------------- version map --- */

/* The batch's aggregates, keyed by aggregate id (the message key) in the
 * SipHash map, since users choose the ids (docs/architecture.md, "Source
 * layout"): a hostile choice of ids cannot make the guard's lookups slow. */
typedef struct vers_s {
  int64_t stored;  /* version in PostgreSQL before the batch */
  int64_t current; /* version after the events applied so far */
  int64_t *cached; /* its entry in the version cache, NULL when it has none */
} vers_t;

typedef struct vmap_s {
  esk_hmap_t *map;
  vers_t **of; /* of[i]: the entry of the batch's message i, found once by vmap_load() */
  int own; /* the projection's versions_get() keeps them (else esk_projection_versions) */
  size_t read; /* aggregates whose versions were read from PostgreSQL (not cached) */
} vmap_t;

/* The versions of the aggregate of the batch's message @p i; NULL for a key
 * that is no aggregate id (vmap_load() left it out). */
static vers_t *vmap_get(const vmap_t *v, size_t i) { return v->of[i]; }

static void vmap_free(vmap_t *v) {
  esk_hmap_destroy(v->map);
  free(v->of);
}

#define VMAP_START 1024 /* aggregates the version map is first sized for */

/* The version cache: the versions the committed batches left, kept between
 * batches, so that a batch reads from PostgreSQL only those of aggregates it
 * has not met since the assignment (docs/architecture.md, "Version guard").
 * It is right while no one else writes the versions of the assigned
 * partitions' aggregates, so it is emptied at every assignment change and
 * after every batch that did not commit (also one whose commit's answer was
 * lost: it may have committed, and its versions are then not the cache's).
 * An instance whose partitions were given away while it was frozen cannot
 * commit a batch built on its stale cache: each partition's position
 * compare-and-set fails first. Only for a projection whose versions the
 * runtime keeps, or whose versions_get() only reads
 * (esk_projection_t.versions_cacheable). */
static int vcache_on(const esk_projector_t *p) {
  return p->vcache_max && (!p->proj.versions_get || p->proj.versions_cacheable);
}

static void vcache_clear(esk_projector_t *p) {
  esk_hmap_destroy(p->vcache);
  p->vcache = NULL;
}

/* The cache, emptied first if the assignment changed since it was filled;
 * NULL when off or not made yet. */
static esk_hmap_t *vcache_get(esk_projector_t *p) {
  if (p->vcache_gen != p->generation) {
    vcache_clear(p);
    p->vcache_gen = p->generation;
  }
  return vcache_on(p) ? p->vcache : NULL;
}

/* The batch's aggregates (list[i], slots[i]) found in @p cache take their
 * cached versions; @returns how many are left to read, moved to the front. */
static size_t vcache_lookup(const esk_hmap_t *cache, const esk_hmap_t *map, const char **list,
                            vers_t **slots, size_t k) {
  if (!cache) return k;
  size_t m = 0;
  for (size_t i = 0; i < k; i++) {
    size_t len = 0;
    esk_hmap_key_of(map, slots[i], &len);
    if ((slots[i]->cached = esk_hmap_get(cache, list[i], len))) {
      slots[i]->stored = slots[i]->current = *slots[i]->cached;
    } else {
      list[m] = list[i];
      slots[m++] = slots[i];
    }
  }
  return m;
}

static int vcache_put_one(const void *key, size_t key_len, void *value, void *ctx) {
  esk_projector_t *p = ctx;
  vers_t *e = value;
  if (e->cached) *e->cached = e->current;
  else if (esk_hmap_count(p->vcache) < p->vcache_max &&
           esk_hmap_put(p->vcache, key, key_len, &e->current, NULL, NULL, NULL))
    return 1; /* out of memory: the cache is dropped */
  return 0;
}

/* After the batch of @p v committed: the cache takes its versions. */
static void vcache_commit(esk_projector_t *p, const vmap_t *v) {
  if (!vcache_on(p)) return;
  size_t n = esk_hmap_count(v->map), expect = n < p->vcache_max ? n : p->vcache_max;
  if (!p->vcache && esk_hmap_new(&p->vcache, sizeof(int64_t), expect, p->vcache_max, NULL))
    return;
  if (esk_hmap_foreach(v->map, vcache_put_one, p)) vcache_clear(p);
}

/* Whether the batch's versions are the projection's (versions_get()): not
 * while the indexes they read are still deferred (esk_projection_t's
 * versions_need_deferred). Another instance may have built them since: asked
 * again, in the batch's transaction, each batch until then. */
static int vmap_own(esk_projector_t *p, int *own, esk_error_t *err) {
  *own = p->proj.versions_get != NULL;
  if (!*own || !p->proj.versions_need_deferred || !p->deferred) return ESK_OK;
  int rc = esk_bulk_pending(p->pg, p->store_key, &p->deferred, err);
  *own = !p->deferred;
  return rc;
}

/* Builds the map of the batch's aggregate ids (message keys) and reads their
 * stored versions in one query. */
static int vmap_load(esk_projector_t *p, vmap_t *v, rd_kafka_message_t **msgs, size_t n,
                     esk_error_t *err) {
  int rc = ESK_OK;
  const char **list = NULL;
  int64_t *vers = NULL;
  vers_t **slots = NULL;
  size_t k = 0;
  /* Sized for the aggregates, not the events, and grown as they come: a
   * table sized for 100 000 events is 4 MB of slots, which a batch's lookups
   * missed in the CPU's caches (docs/benchmarks.md, "The version map"). */
  size_t expect = n < VMAP_START ? n : VMAP_START;
  const esk_hmap_t *cache = vcache_get(p);
  if ((rc = vmap_own(p, &v->own, err)) ||
      (rc = esk_hmap_new(&v->map, sizeof(vers_t), expect, 0, err)))
    return rc;
  list = calloc(n ? n : 1, sizeof(*list));
  vers = calloc(n ? n : 1, sizeof(*vers));
  slots = calloc(n ? n : 1, sizeof(*slots));
  v->of = calloc(n ? n : 1, sizeof(*v->of));
  if (!list || !vers || !slots || !v->of) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory for a batch of %zu events", n);
    goto cleanup;
  }
  for (size_t i = 0; i < n; i++) {
    const char *key = msgs[i]->key ? msgs[i]->key : "";
    /* A key holding U+0000 or bytes that are not UTF-8 is no aggregate id (the
     * codec refuses such an id: its event is poison by the key check), and
     * PostgreSQL text cannot take it: as a C string it would be cut at the
     * NUL, and invalid UTF-8 fails the whole query (SQLSTATE 22021). Nor is
     * one over the map's key limit. */
    if (msgs[i]->key_len > ESK_HMAP_KEY_MAX ||
        esk_utf8_check(key, msgs[i]->key_len) != msgs[i]->key_len)
      continue;
    vers_t zero = {0}, *e = NULL;
    int added = 0;
    if ((rc = esk_hmap_put(v->map, key, msgs[i]->key_len, &zero, (void **)&e, &added, err)))
      goto cleanup;
    v->of[i] = e;
    if (!added) continue;
    list[k] = esk_hmap_key_of(v->map, e, NULL); /* NUL-terminated */
    slots[k++] = e;
  }
  k = vcache_lookup(cache, v->map, list, slots, k);
  v->read = k;
  p->stats.versions_read += (int64_t)k;
  esk_metrics_add(p->m.versions_read, (uint64_t)k);
  rc = v->own
           ? p->proj.versions_get(p->proj.self, p->pg, list, k, vers, err)
           : esk_store_versions_get(p->pg, p->store_key, list, k, vers, err);
  if (rc) goto cleanup;
  /* aggregates not seen since the start time: their last version before */
  if (v->own && p->version_floor) {
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
      if (vers[i] == 0) {
        list[m] = list[i];
        slots[m++] = slots[i];
      } else {
        slots[i]->stored = slots[i]->current = vers[i];
      }
    k = m;
    if (k && (rc = esk_store_versions_get(p->pg, p->store_key, list, k, vers, err)))
      goto cleanup;
  }
  for (size_t i = 0; i < k; i++) slots[i]->stored = slots[i]->current = vers[i];
cleanup:
  free(list);
  free(vers);
  free(slots);
  return rc;
}

typedef struct vmap_changed_s {
  const char **ids;
  int64_t *vers;
  size_t n;
} vmap_changed_t;

static int vmap_store_one(const void *key, size_t key_len, void *value, void *ctx) {
  vmap_changed_t *c = ctx;
  const vers_t *e = value;
  (void)key_len;
  if (e->current != e->stored) {
    c->ids[c->n] = key;
    c->vers[c->n++] = e->current;
  }
  return 0;
}

static int vmap_store(esk_projector_t *p, const vmap_t *v, esk_error_t *err) {
  if (v->own) return ESK_OK; /* the projection stored them in batch_end() */
  size_t cnt = esk_hmap_count(v->map);
  vmap_changed_t c = {calloc(cnt ? cnt : 1, sizeof(*c.ids)), calloc(cnt ? cnt : 1, sizeof(*c.vers)), 0};
  int rc;
  if (!c.ids || !c.vers) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
    goto cleanup;
  }
  esk_hmap_foreach(v->map, vmap_store_one, &c);
  rc = esk_store_versions_put(p->pg, p->store_key, c.ids, c.vers, c.n, err);
cleanup:
  free(c.ids);
  free(c.vers);
  return rc;
}

/* ----------------------------------------------------------------- batch --- */

/* The projection's abort first: it ends a COPY it may have left open
 * (esk_copy_stream()), which would refuse the rollback. */
static void rollback(esk_projector_t *p) {
  if (p->proj.batch_abort) p->proj.batch_abort(p->proj.self);
  if (PQstatus(p->pg) == CONNECTION_OK) PQclear(PQexec(p->pg, "rollback"));
}

/* What a batch did with its events, counted when it commits. */
typedef struct tally_s {
  int64_t applied, skipped, dead;
  int64_t read_bytes; /* decoded by the projection's decode(), not the domain decoder */
} tally_t;

/* Decodes @p m into @p ev and finds its aggregate's versions (*s): poison when
 * the message key is not the event's aggregate id, or the id is over the
 * map's key limit. */
static int decode_event(esk_projector_t *p, const vmap_t *v, size_t i,
                        const rd_kafka_message_t *m, esk_event_t *ev, vers_t **s, tally_t *t,
                        esk_error_t *why) {
  int drc = ESK_ENOTFOUND;
  /* the projection's own reading first, when it has one (esk_projection_t.decode) */
  if (p->read_bytes && (drc = p->proj.decode(p->proj.self, m->payload, m->len, ev)) == ESK_OK)
    t->read_bytes++;
  if (drc != ESK_OK) drc = p->dec.decode(p->dec.self, m, ev, why);
  *s = vmap_get(v, i);
  if (drc != ESK_OK) return drc;
  if (!ev->aggregate_id || m->key_len != strlen(ev->aggregate_id) ||
      memcmp(m->key, ev->aggregate_id, m->key_len))
    return esk_error_set(why, ESK_EPOISON,
                         "message key does not equal the event's aggregate id %s",
                         ev->aggregate_id ? ev->aggregate_id : "(none)");
  if (!*s)
    return esk_error_set(why, ESK_EPOISON, "aggregate id of %zu bytes is over the maximum of %d",
                         m->key_len, ESK_HMAP_KEY_MAX);
  ev->topic = rd_kafka_topic_name(m->rkt);
  ev->partition = m->partition;
  ev->offset = m->offset;
  return ESK_OK;
}

/* The projection's apply() of one event, its verdict in *verdict. Isolating
 * (one event per transaction), a savepoint keeps the transaction usable for
 * the dead letter and the position. @returns an error that fails the batch. */
static int project_event(esk_projector_t *p, const esk_event_t *ev, int isolate, int *verdict,
                         esk_error_t *why, esk_error_t *err) {
  int rc;
  if (isolate &&
      (rc = esk_pg_exec(NULL, p->pg, "savepoint", "savepoint esk_event", 0, NULL, err)))
    return rc;
  int drc = p->proj.apply(p->proj.self, p->pg, ev, why);
  /* A projection that buffers writes until batch_end must flush inside
   * the savepoint, or its failure could not be pinned on this event. */
  if (isolate && drc == ESK_OK && p->proj.batch_end)
    drc = p->proj.batch_end(p->proj.self, p->pg, why);
  if (isolate && drc == ESK_EPOISON) {
    if (p->proj.batch_abort) p->proj.batch_abort(p->proj.self);
    if ((rc = esk_pg_exec(NULL, p->pg, "rollback to savepoint", "rollback to savepoint esk_event",
                          0, NULL, err)))
      return rc;
  }
  *verdict = drc;
  return ESK_OK;
}

/* Message @p i of the batch: passed over when its partition is not held or it
 * was committed already (a retry after part of the batch went in), skipped
 * when applied before (a duplicate), applied, or dead-lettered when poison
 * (a version gap; with @p isolate, also what apply() calls poison).
 * @returns an error that fails the batch. */
static int apply_one(esk_projector_t *p, vmap_t *v, rd_kafka_message_t **msgs, size_t i,
                     int isolate, tally_t *t, esk_error_t *err) {
  rd_kafka_message_t *m = msgs[i];
  esk_event_t ev = {0};
  esk_error_t why; /* cleared, not zeroed: 516 bytes per event (docs/benchmarks.md) */
  esk_error_clear(&why);
  vers_t *s = NULL;
  int rc;
  if (m->partition >= p->n_parts || !p->parts[m->partition].assigned) return ESK_OK;
  if (m->offset < p->parts[m->partition].stored) return ESK_OK;
  int drc = decode_event(p, v, i, m, &ev, &s, t, &why);
  if (drc == ESK_OK) {
    if (ev.aggregate_version <= s->current) {
      t->skipped++;
      return ESK_OK;
    }
    if (ev.aggregate_version != s->current + 1) {
      drc = esk_error_set(&why, ESK_EPOISON,
                          "version gap for aggregate %s: event version %" PRId64 " after %" PRId64,
                          ev.aggregate_id, ev.aggregate_version, s->current);
    } else {
      if ((rc = project_event(p, &ev, isolate, &drc, &why, err))) return rc;
      if (drc == ESK_OK) {
        s->current = ev.aggregate_version;
        t->applied++;
        return ESK_OK;
      }
      if (drc != ESK_EPOISON || !isolate) { /* fails the batch (poison: isolate it) */
        *err = why;
        return drc;
      }
    }
  }
  if (drc == ESK_EPOISON) {
    if ((rc = dead_letter(p, m, &why, err))) return rc;
    t->dead++;
    return ESK_OK;
  }
  *err = why;
  return drc;
}

/* Moves each partition's stored position past the batch's messages, if it
 * still holds the one the batch started from (compare-and-set). */
static int store_positions(esk_projector_t *p, rd_kafka_message_t **msgs, size_t n,
                           esk_error_t *err) {
  int rc;
  for (size_t i = 0; i < n; i++) {
    part_t *pt = msgs[i]->partition < p->n_parts ? &p->parts[msgs[i]->partition] : NULL;
    if (pt && pt->assigned && msgs[i]->offset + 1 > pt->stored) {
      pt->batch_next = msgs[i]->offset + 1;
      pt->batch_ts_ms = rd_kafka_message_timestamp(msgs[i], NULL);
    }
  }
  for (int i = 0; i < p->n_parts; i++) {
    part_t *pt = &p->parts[i];
    if (pt->batch_next < 0) continue;
    if ((rc = esk_store_position_cas(p->pg, p->store_key, p->topic, i, pt->stored, pt->batch_next,
                                     err)))
      return rc;
  }
  return ESK_OK;
}

/* Dead letters must be durable before the position moves past them: ESK_ERETRY
 * when Kafka did not acknowledge them all. */
static int dead_letters_durable(esk_projector_t *p, int64_t dead, esk_error_t *err) {
  if (dead && rd_kafka_flush(p->dlq, 30000)) {
    p->dlq_stalled = 1;
    return esk_error_set(err, ESK_ERETRY, "dead letters to %s not acknowledged by Kafka within 30 s",
                         p->dlq_topic);
  }
  if (p->dlq_refused) { /* lost dead letters would lose their events: retry the batch */
    p->dlq_stalled = 1;
    int rc = esk_error_set(err, ESK_ERETRY, "%d dead letter%s refused by Kafka on %s: %s",
                           p->dlq_refused, p->dlq_refused == 1 ? "" : "s", p->dlq_topic,
                           p->dlq_refusal);
    p->dlq_refused = 0;
    return rc;
  }
  return ESK_OK;
}

/* After the commit: counters, metrics, readiness and the positions now stored. */
static void batch_committed(esk_projector_t *p, const tally_t *t, int64_t t0) {
  p->stats.applied += t->applied;
  p->stats.skipped += t->skipped;
  p->stats.dead += t->dead;
  p->stats.batches++;
  p->stats.read_from_bytes += t->read_bytes;
  esk_metrics_add(p->m.applied, (uint64_t)t->applied);
  esk_metrics_add(p->m.read_bytes, (uint64_t)t->read_bytes);
  esk_metrics_add(p->m.skipped, (uint64_t)t->skipped);
  esk_metrics_inc(p->m.batches);
  esk_metrics_observe(p->m.duration, (double)(esk_time_mono_us() - t0) / 1e6);
  atomic_store(&p->r_pg_ok, 1);
  atomic_store(&p->r_dlq_ok, 1);
  p->last_pg_ms = esk_time_mono_ms();
  for (int i = 0; i < p->n_parts; i++) {
    if (p->parts[i].batch_next < 0) continue;
    p->parts[i].stored = p->parts[i].batch_next;
    p->parts[i].batch_next = -1;
    if (p->parts[i].batch_ts_ms >= 0) p->parts[i].applied_ts_ms = p->parts[i].batch_ts_ms;
  }
}

/* Applies msgs[0..n) in one transaction with the positions and the version
 * guard. With @p isolate, an event that apply() calls poison is dead-lettered
 * instead of failing the batch (used one event at a time). */
static int apply_batch(esk_projector_t *p, rd_kafka_message_t **msgs, size_t n, int isolate,
                       esk_error_t *err) {
  vmap_t v = {0};
  tally_t t = {0};
  int rc;
  p->dlq_refused = 0;
  if ((rc = pg_ensure(p, err))) return rc;
  int64_t t0 = esk_time_mono_us(), t1, t2, t3, t4;
  if ((rc = esk_pg_exec(NULL, p->pg, "begin", "begin", 0, NULL, err))) return rc;
  if ((rc = vmap_load(p, &v, msgs, n, err))) goto fail;
  t1 = esk_time_mono_us();
  if (p->proj.batch_begin && (rc = p->proj.batch_begin(p->proj.self, p->pg, err))) goto fail;
  for (size_t i = 0; i < n; i++)
    if ((rc = apply_one(p, &v, msgs, i, isolate, &t, err))) goto fail;
  t2 = esk_time_mono_us();
  if (p->proj.batch_end && (rc = p->proj.batch_end(p->proj.self, p->pg, err))) goto fail;
  t3 = esk_time_mono_us();
  if ((rc = vmap_store(p, &v, err))) goto fail;
  t4 = esk_time_mono_us();
  if ((rc = store_positions(p, msgs, n, err)) || (rc = dead_letters_durable(p, t.dead, err)) ||
      (rc = esk_pg_exec(NULL, p->pg, "commit", "commit", 0, NULL, err)))
    goto fail;
  ESK_DEBUG("projector", "msg=\"batch committed\" projection=%s events=%zu aggregates=%zu "
            "versions_read=%zu versions_read_us=%" PRId64 " apply_us=%" PRId64 " flush_us=%"
            PRId64 " versions_write_us=%" PRId64 " commit_us=%" PRId64, p->name, n,
            esk_hmap_count(v.map), v.read, t1 - t0, t2 - t1, t3 - t2, t4 - t3,
            esk_time_mono_us() - t4);
  batch_committed(p, &t, t0);
  vcache_commit(p, &v);
  vmap_free(&v);
  return ESK_OK;
fail:
  for (int i = 0; i < p->n_parts; i++) p->parts[i].batch_next = -1;
  rollback(p);
  vcache_clear(p);
  vmap_free(&v);
  return rc;
}

#define COMMIT_WAIT_MS 10000 /* for the group coordinator's answer to an offset commit */

/* Commits @p l and waits at most COMMIT_WAIT_MS for the answer (a synchronous
 * rd_kafka_commit() waits as long as the coordinator takes). @returns the
 * first error, RD_KAFKA_RESP_ERR__TIMED_OUT when no answer came in time. */
static rd_kafka_resp_err_t commit_within(esk_projector_t *p,
                                         const rd_kafka_topic_partition_list_t *l) {
  rd_kafka_queue_t *q = rd_kafka_queue_new(p->consumer);
  rd_kafka_resp_err_t e = rd_kafka_commit_queue(p->consumer, l, q, NULL, NULL);
  rd_kafka_event_t *ev =
      e ? NULL : ESK_WAITING("rd_kafka_commit (offsets)", rd_kafka_queue_poll(q, COMMIT_WAIT_MS));
  if (!e && !ev) e = RD_KAFKA_RESP_ERR__TIMED_OUT;
  if (ev && !(e = rd_kafka_event_error(ev))) {
    const rd_kafka_topic_partition_list_t *r = rd_kafka_event_topic_partition_list(ev);
    for (int i = 0; r && !e && i < r->cnt; i++) e = r->elems[i].err;
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  return e;
}

/* After PostgreSQL committed: tell Kafka (best effort: PostgreSQL is the
 * truth, and a new owner seeks to the stored position anyway). */
static void commit_offsets(esk_projector_t *p) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(p->n_parts);
  for (int i = 0; i < p->n_parts; i++)
    if (p->parts[i].assigned && p->parts[i].stored >= 0)
      rd_kafka_topic_partition_list_add(l, p->topic, i)->offset = p->parts[i].stored;
  rd_kafka_resp_err_t e = l->cnt ? commit_within(p, l) : RD_KAFKA_RESP_ERR_NO_ERROR;
  if (e)
    ESK_WARN("projector", "msg=\"offset commit failed (positions are safe in PostgreSQL)\" "
                          "projection=%s error=%s wait_ms=%d", p->name, LQ(rd_kafka_err2str(e)),
             COMMIT_WAIT_MS);
  rd_kafka_topic_partition_list_destroy(l);
}

/* Pauses or resumes every assigned partition. */
static void set_paused(esk_projector_t *p, int pause) {
  rd_kafka_topic_partition_list_t *l = NULL;
  if (rd_kafka_assignment(p->consumer, &l) || !l) return;
  if (pause) rd_kafka_pause_partitions(p->consumer, l);
  else rd_kafka_resume_partitions(p->consumer, l);
  rd_kafka_topic_partition_list_destroy(l);
}

/* Seeks every assigned partition to its stored position (after messages
 * were discarded while PostgreSQL was away, or after a lost CAS). */
static void seek_to_stored(esk_projector_t *p) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(p->n_parts);
  for (int i = 0; i < p->n_parts; i++) p->parts[i].eof_at = p->parts[i].polled = -1;
  for (int i = 0; i < p->n_parts; i++)
    if (p->parts[i].assigned)
      rd_kafka_topic_partition_list_add(l, p->topic, i)->offset =
          p->parts[i].stored >= 0 ? p->parts[i].stored : RD_KAFKA_OFFSET_BEGINNING;
  if (l->cnt) {
    rd_kafka_error_t *e = rd_kafka_seek_partitions(p->consumer, l, 10000);
    if (e) {
      ESK_WARN("projector", "msg=\"seek failed\" error=%s", LQ(rd_kafka_error_string(e)));
      rd_kafka_error_destroy(e);
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
}

static void update_lag(esk_projector_t *p);

static void drop_batch(esk_projector_t *p) {
  for (size_t i = 0; i < p->n_batch; i++) rd_kafka_message_destroy(p->batch[i]);
  p->n_batch = 0;
}

/* Serves the group while waiting: messages that arrive are discarded (the
 * partitions are re-read from the stored positions afterwards). */
static void wait_serving(esk_projector_t *p, int ms) {
  int64_t until = esk_time_mono_ms() + ms;
  while (!*p->stop && esk_time_mono_ms() < until) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, 100);
    if (m) rd_kafka_message_destroy(m);
  }
}

/* Finds the events that cannot be applied by halving: halves that apply
 * commit (in order, so positions only move forward), a failing half is split
 * again, and a single event is applied alone with its poison dead-lettered.
 * k poison events in n cost about 2k log2(n) transactions. */
static int apply_bisecting(esk_projector_t *p, rd_kafka_message_t **msgs, size_t n,
                           esk_error_t *err) {
  int rc = apply_batch(p, msgs, n, n == 1, err);
  if (rc != ESK_EPOISON || n == 1) return rc;
  size_t half = n / 2;
  if ((rc = apply_bisecting(p, msgs, half, err))) return rc;
  return apply_bisecting(p, msgs + half, n - half, err);
}

/* An open batch that a rebalance overtook loses the events read before it
 * (docs/architecture.md, "Position compare-and-set"): say so. */
static void log_reassigned_drop(const esk_projector_t *p, size_t dropped, size_t kept) {
  ESK_WARN("projector", "msg=\"batch dropped: partitions reassigned\" projection=%s "
                        "events=%zu kept=%zu", p->name, dropped, kept);
}

/* Messages received before an assignment change belong to the old one: drops
 * them (the new assignment starts from the stored positions), keeps those
 * received since. */
static void keep_current_generation(esk_projector_t *p) {
  size_t k = 0;
  for (size_t i = 0; i < p->n_batch; i++) {
    if (p->batch_gen[i] == p->generation) p->batch[k++] = p->batch[i];
    else rd_kafka_message_destroy(p->batch[i]);
  }
  if (k < p->n_batch) log_reassigned_drop(p, p->n_batch - k, k);
  p->n_batch = k;
}

static int process_batch(esk_projector_t *p, esk_error_t *err) {
  int backoff = 100, paused = 0, rc;
  for (;;) {
    p->rebalanced = 0;
    rc = ESK_WAITING("PostgreSQL: applying a batch", apply_batch(p, p->batch, p->n_batch, 0, err));
    if (rc == ESK_EPOISON) {
      ESK_WARN("projector", "msg=\"batch failed on a poison event, isolating\" projection=%s "
                            "events=%zu reason=%s", p->name, p->n_batch, LQ(err->msg));
      rc = apply_bisecting(p, p->batch, p->n_batch, err);
    }
    if (rc != ESK_ERETRY) break;
    if (p->dlq_stalled) /* Kafka's fault, not PostgreSQL's: readiness says so */
      atomic_store(&p->r_dlq_ok, 0);
    else
      pg_retry_noted(p);
    p->dlq_stalled = 0;
    ESK_WARN("projector", "msg=\"batch not applied, retrying\" projection=%s backoff_ms=%d "
                          "reason=%s", p->name, backoff, LQ(err->msg));
    if (!paused) {
      set_paused(p, 1);
      paused = 1;
    }
    wait_serving(p, backoff);
    update_lag(p); /* the high watermark is the last one fetched (partitions paused) */
    backoff = backoff * 2 > p->backoff_max_ms ? p->backoff_max_ms : backoff * 2;
    if (*p->stop || p->rebalanced) {
      rc = ESK_OK; /* nothing committed; the next owner starts from the stored position */
      if (p->rebalanced) log_reassigned_drop(p, p->n_batch, 0);
      break;
    }
  }
  if (rc == ESK_ECONFLICT) {
    p->stats.conflicts++;
    ESK_WARN("projector", "msg=\"batch dropped: a position moved\" projection=%s reason=%s",
             p->name, LQ(err->msg));
    /* Re-read the positions and continue from them. */
    rd_kafka_topic_partition_list_t *l = NULL;
    if (!rd_kafka_assignment(p->consumer, &l) && l) {
      read_positions(p, l);
      rd_kafka_topic_partition_list_destroy(l);
    }
    seek_to_stored(p);
    rc = ESK_OK;
  }
  drop_batch(p);
  if (rc == ESK_OK) commit_offsets(p);
  if (paused) {
    seek_to_stored(p);
    set_paused(p, 0);
  }
  return rc;
}

/* The events of partition @p i past offset @p pos (none read: from the
 * beginning), by the high watermark of its last fetch (a local read); -1
 * when no fetch has answered since the assignment. */
static int64_t events_after(const esk_projector_t *p, int i, int64_t pos) {
  int64_t lo = 0, hi = 0;
  if (rd_kafka_get_watermark_offsets(p->consumer, p->topic, i, &lo, &hi) || hi < 0) return -1;
  if (pos < 0) pos = lo;
  return hi > pos ? hi - pos : 0;
}

/* Lag per assigned partition: the cached high watermark (the last stable
 * offset under read_committed) minus the next offset to apply. A
 * transactional producer's commit marker takes the offset after its last
 * event, so the next offset to apply is the larger of the stored position
 * and where the consumer last reached the end of the partition (which is
 * past the markers): a caught-up partition reads 0. */
static void update_lag(esk_projector_t *p) {
  int64_t total = 0, wall = esk_time_real_ms();
  esk_watchdog_beat(); /* called once per turn of the run loop, and per retry */
  for (int i = 0; i < p->n_parts; i++) {
    part_t *pt = &p->parts[i];
    if (!pt->assigned) continue;
    /* With a batch in flight (a PostgreSQL retry), the end reached may be
     * past events not applied yet: count from the stored position only. */
    int64_t pos = !p->n_batch && pt->eof_at > pt->stored ? pt->eof_at : pt->stored;
    if ((pt->lag = events_after(p, i, pos)) < 0) continue;
    total += pt->lag;
    esk_metrics_set(pt->m_lag, (double)pt->lag);
    esk_metrics_set(pt->m_lag_s, pt->lag > 0 && pt->applied_ts_ms > 0 && wall > pt->applied_ts_ms
                                     ? (double)(wall - pt->applied_ts_ms) / 1000.0
                                     : 0.0);
  }
  atomic_store(&p->r_lag, total);
}

static void log_progress(esk_projector_t *p, int64_t *last_ms, int64_t *last_applied) {
  int64_t t = esk_time_mono_ms();
  double secs = (double)(t - *last_ms) / 1000.0;
  double rate = secs > 0 ? (double)(p->stats.applied - *last_applied) / secs : 0;
  char lag[512] = "";
  size_t o = 0;
  for (int i = 0; i < p->n_parts && o < sizeof(lag) - 40; i++) {
    if (!p->parts[i].assigned || p->parts[i].lag < 0) continue;
    o += (size_t)snprintf(lag + o, sizeof(lag) - o, "%s%d:%" PRId64, o ? "," : "", i,
                          p->parts[i].lag);
  }
  ESK_INFO("projector", "msg=progress projection=%s events_per_s=%.0f applied=%" PRId64
                        " skipped=%" PRId64 " dead=%" PRId64 " lag=%s",
           p->name, rate, p->stats.applied, p->stats.skipped, p->stats.dead,
           o ? lag : "none");
  *last_ms = t;
  *last_applied = p->stats.applied;
}

/* After the live generation's scrub: the retired generations' tables
 * (scrub.h), in their schemas, then the projector's own search_path again.
 * Their failures are logged and tried at the next interval: an old
 * generation must not stop the live projection. Not getting the search_path
 * back on a working connection stops the projector: no batch may run in
 * another generation's schema (a broken connection is set up again by the
 * next pg_ensure). */
static int scrub_retired(esk_projector_t *p, int64_t t0, int64_t *n, esk_error_t *err) {
  esk_error_t why = {0};
  int failed = 0;
  int rc = esk_scrub_retired_run(p->scrub_retired, p->pg, p->gen, t0, n, &failed, &why);
  if (rc || failed)
    ESK_WARN("projector", "msg=\"scrubbing a retired generation failed, retrying at the next "
                          "interval\" projection=%s generation=%d reason=%s", p->name, failed,
             LQ(why.msg));
  int back = pg_session_setup(p, err);
  return back && PQstatus(p->pg) != CONNECTION_OK ? ESK_ERETRY : back;
}

/* Between batches, when due: the subjects forgotten since are scrubbed from
 * the read model (scrub.h), and from its retired generations. PostgreSQL or
 * Kafka faults wait for the next interval; a forget() that fails otherwise
 * stops the projector. */
static int scrub_turn(esk_projector_t *p, esk_error_t *err) {
  int64_t t0 = esk_time_mono_ms(), n = 0;
  if (!esk_scrub_due(p->scrub, t0)) return ESK_OK;
  esk_error_t why = {0};
  int rc = pg_ensure(p, &why);
  if (!rc) rc = esk_scrub_run(p->scrub, p->pg, p->store_key, t0, &n, &why);
  if (!rc && p->scrub_retired) rc = scrub_retired(p, t0, &n, &why);
  p->stats.scrubbed += n;
  esk_metrics_add(p->m.scrubbed, (uint64_t)n);
  if (n)
    ESK_INFO("projector", "msg=\"forgotten subjects scrubbed\" projection=%s subjects=%" PRId64
                          " ms=%" PRId64, p->name, n, esk_time_mono_ms() - t0);
  if (rc == ESK_ERETRY) {
    ESK_WARN("projector", "msg=\"scrubbing forgotten subjects failed, retrying at the next "
                          "interval\" projection=%s reason=%s", p->name, LQ(why.msg));
    return ESK_OK;
  }
  if (rc) *err = why;
  return rc;
}

#define CAUGHT_UP_LAG 100 /* events per partition; eskctl projection rebuild's --max-lag default */
/* the least lag that makes a catch-up, whatever room is left in the batch:
 * the last events of a topic and transaction markers are not one */
#define CATCH_UP_MIN 1000

/* Once every assigned partition is caught up (within CAUGHT_UP_LAG: under
 * steady traffic the lag is seldom 0), builds the indexes a fill from scratch
 * deferred (bulk.h); a failure is tried again pg.retry.backoff.max.ms later. */
static void build_deferred(esk_projector_t *p) {
  int assigned = 0;
  for (int i = 0; i < p->n_parts; i++) {
    if (!p->parts[i].assigned) continue;
    if (p->parts[i].lag < 0 || p->parts[i].lag > CAUGHT_UP_LAG) return;
    assigned++;
  }
  int64_t t0 = esk_time_mono_ms();
  if (!assigned || t0 < p->deferred_at_ms) return;
  esk_error_t err = {0};
  int rc = pg_ensure(p, &err);
  if (!rc) rc = esk_bulk_finish(p->pg, p->store_key, &err);
  if (rc) {
    p->deferred_at_ms = esk_time_mono_ms() + p->backoff_max_ms;
    ESK_WARN("projector", "msg=\"building deferred indexes failed, retrying\" projection=%s "
                          "backoff_ms=%d reason=%s", p->name, p->backoff_max_ms, LQ(err.msg));
    return;
  }
  ESK_INFO("projector", "msg=\"deferred indexes built\" projection=%s indexes=%d ms=%" PRId64,
           p->name, p->deferred, esk_time_mono_ms() - t0);
  p->deferred = 0;
}

/* 1 when the broker holds at least @p want events of the assigned partitions
 * past those polled (by the high watermarks of the last fetches, a local
 * read), or a partition's first fetch has not answered yet: a catch-up, such
 * as a rebuild or a projector back from a stop. Its batch waits for them
 * rather than being applied whenever the consumer's queue runs dry for a
 * moment, so it fills to batch.max.events and the per-batch work (versions,
 * merges, commit) is spread over more events (docs/projector.md, "Batches").
 * At the live edge the lag is far below @p want and nothing changes. */
static int catching_up(esk_projector_t *p, int64_t want) {
  int64_t behind = 0;
  for (int i = 0; i < p->n_parts; i++) {
    const part_t *pt = &p->parts[i];
    if (!pt->assigned) continue;
    int64_t pos = pt->polled > pt->eof_at ? pt->polled : pt->eof_at;
    int64_t after = events_after(p, i, pos > pt->stored ? pos : pt->stored);
    if (after < 0) return 1; /* no fetch answered since the assignment: its end is to come */
    behind += after;
  }
  return behind >= want;
}

/* The next message for the open batch, or NULL when the batch is to be
 * applied: nothing ready within @p left ms (batch.linger.ms once it holds
 * events), unless a catch-up is still bringing events, which it waits for
 * until @p deadline. */
static rd_kafka_message_t *next_message(esk_projector_t *p, int64_t left, int64_t deadline) {
  if (p->n_batch && left > p->linger_ms) left = p->linger_ms;
  rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, (int)left);
  if (m || !p->n_batch) return m;
  int64_t want = (int64_t)p->batch_max - (int64_t)p->n_batch;
  left = deadline - esk_time_mono_ms();
  if (left <= 0 || !catching_up(p, want < CATCH_UP_MIN ? CATCH_UP_MIN : want)) return NULL;
  return rd_kafka_consumer_poll(p->consumer, (int)left);
}

/* The watchdog's wake callback (its thread): the run loop's poll returns. */
static void wake_poll(void *queue) { rd_kafka_queue_yield(queue); }

int esk_projector_run(esk_projector_t *p, volatile sig_atomic_t *stop, esk_error_t *err) {
  p->stop = stop;
  /* a stop wakes the poll, which may wait up to batch.max.ms for a batch to fill */
  rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(p->consumer);
  esk_watchdog_set_wake(wake_poll, cq);
  int64_t last_progress = esk_time_mono_ms(), last_applied = 0;
  int rc = ESK_OK;
  while (!*stop && !esk_watchdog_is_fatal(&p->fatal)) {
    int64_t deadline = esk_time_mono_ms() + p->batch_ms;
    p->rebalanced = 0;
    rd_kafka_poll(p->dlq, 0); /* its errors and reports when they happen, not at exit */
    while (p->n_batch < (size_t)p->batch_max && !*stop) {
      /* adaptive: a batch that holds events waits only batch.linger.ms for
       * more, and is applied once nothing more is ready */
      int64_t left = deadline - esk_time_mono_ms();
      if (left <= 0) break;
      rd_kafka_message_t *m = next_message(p, left, deadline);
      if (!m && p->n_batch) break;
      if (!m) continue;
      if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          if (m->partition >= 0 && m->partition < p->n_parts && p->parts[m->partition].assigned)
            p->parts[m->partition].eof_at = m->offset;
        } else
          ESK_WARN("projector", "msg=\"consumer error\" projection=%s error=%s", p->name,
                   LQ(rd_kafka_message_errstr(m)));
        rd_kafka_message_destroy(m);
        continue;
      }
      if (m->partition >= 0 && m->partition < p->n_parts)
        p->parts[m->partition].polled = m->offset + 1;
      p->batch_gen[p->n_batch] = p->generation;
      p->batch[p->n_batch++] = m;
    }
    if (p->rebalanced) keep_current_generation(p);
    if (p->n_batch && (rc = process_batch(p, err)) != ESK_OK) break;
    if (p->scrub && (rc = scrub_turn(p, err)) != ESK_OK) break;
    update_lag(p);
    if (p->deferred) build_deferred(p);
    pg_check(p, esk_time_mono_ms());
    if (esk_time_mono_ms() - last_progress >= p->progress_ms) log_progress(p, &last_progress, &last_applied);
  }
  drop_batch(p);
  if (esk_watchdog_is_fatal(&p->fatal)) {
    *err = p->fatal.err;
    rc = ESK_EFATAL;
  }
  esk_watchdog_set_wake(NULL, NULL);
  rd_kafka_queue_destroy(cq);
  update_lag(p);
  log_progress(p, &last_progress, &last_applied);
  /* no timeout in librdkafka 2.0.2: the watchdog bounds it */
  (void)ESK_WAITING("rd_kafka_consumer_close (revoking, leaving the group)",
                    rd_kafka_consumer_close(p->consumer));
  return rc;
}

/* ------------------------------------------------------------- lifecycle --- */

static char *dupf(const char *fmt, const char *a, const char *b) {
  size_t n = strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, fmt, a, b ? b : "");
  return s;
}

/* Delivery report of a dead letter (served by rd_kafka_flush() on the main
 * thread): a refused one must stop the position from moving past its event. */
static void dlq_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  esk_projector_t *p = opaque;
  if (!m->err) return;
  if (!p->dlq_refused++)
    snprintf(p->dlq_refusal, sizeof(p->dlq_refusal), "%s", rd_kafka_err2str(m->err));
}

static int projector_client(rd_kafka_t **out, rd_kafka_type_t type, const esk_conf_t *conf,
                            const char *const *props, void *opaque, esk_error_t *err) {
  rd_kafka_conf_t *kc = NULL;
  int rc = esk_kafka_client_conf(&kc, type, conf, props, NULL, opaque, err);
  if (rc) return rc;
  if (type == RD_KAFKA_CONSUMER) rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
  else rd_kafka_conf_set_dr_msg_cb(kc, dlq_delivered);
  return esk_kafka_client_new(out, type, kc, err);
}

/* The names and settings read from the configuration, and the batch arrays. */
static int read_settings(esk_projector_t *p, const esk_conf_t *conf, esk_error_t *err) {
  const char *name = esk_conf_get(conf, "projection");
  if (!name) name = p->proj.name;
  const char *domain = esk_conf_get(conf, "domain");
  p->name = strdup(name);
  p->topic = esk_conf_get(conf, "topic") ? strdup(esk_conf_get(conf, "topic"))
                                         : dupf("%s.events%s", domain, NULL);
  p->group = esk_conf_get(conf, "group.id") ? strdup(esk_conf_get(conf, "group.id"))
                                            : dupf("esk.projection.%s%s", name, NULL);
  p->dlq_topic = p->topic ? dupf("%s.dlq.%s", p->topic, name) : NULL;
  p->batch_max = (int)esk_conf_get_int(conf, "batch.max.events");
  p->batch_ms = (int)esk_conf_get_int(conf, "batch.max.ms");
  p->linger_ms = (int)esk_conf_get_int(conf, "batch.linger.ms");
  p->vcache_max = (size_t)esk_conf_get_int(conf, "guard.cache.aggregates");
  p->progress_ms = (int)esk_conf_get_int(conf, "progress.interval.ms");
  p->backoff_max_ms = (int)esk_conf_get_int(conf, "pg.retry.backoff.max.ms");
  p->on_error_stop = !strcmp(esk_conf_get(conf, "on_error"), "stop");
  p->pg_check_ms = esk_conf_get_int(conf, "pg.check.interval.ms");
  p->scrub_ms = esk_conf_get_int(conf, "personal.scrub.interval.ms");
  p->ready_max_lag = esk_conf_get_int(conf, "ready.max.lag.events");
  if (!esk_pg_ident_valid(esk_conf_get(conf, "pg.schema")))
    return esk_error_set(err, ESK_EINVAL, "invalid value '%s' for pg.schema: expected " IDENT_RULE,
                         esk_conf_get(conf, "pg.schema"));
  p->schema = strdup(esk_conf_get(conf, "pg.schema"));
  int rc, gen = p->gen = (int)esk_conf_get_int(conf, "generation");
  char ds[64], key[256];
  esk_generation_store_key(key, sizeof(key), name, gen);
  if (gen > 0 &&
      (rc = esk_generation_schema(ds, sizeof(ds), p->schema ? p->schema : "", name, gen, err)))
    return rc;
  p->data_schema = gen > 0 ? strdup(ds) : p->schema ? strdup(p->schema) : NULL;
  p->store_key = strdup(key);
  p->batch = calloc((size_t)p->batch_max, sizeof(*p->batch));
  p->batch_gen = calloc((size_t)p->batch_max, sizeof(*p->batch_gen));
  if (!p->schema || !p->data_schema || !p->store_key || !p->batch_gen || !p->name || !p->topic ||
      !p->group || !p->dlq_topic || !p->batch)
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  return ESK_OK;
}

/* PostgreSQL: the session, the schemas, the projection's own check and
 * migrations, and whether versions were stored before (the version floor). */
static int open_store(esk_projector_t *p, const esk_conf_t *conf, esk_error_t *err) {
  const esk_projection_t *proj = &p->proj;
  int rc, created = 0;
  if ((rc = esk_pg_connect(&p->pg, esk_conf_get(conf, "pg.conninfo"), err)) ||
      (rc = pg_schema_init(p, err)) ||
      (proj->check && (rc = proj->check(proj->self, p->pg, p->store_key, err))) ||
      (rc = esk_store_migrate(p->pg, p->store_key, proj->migrations, proj->n_migrations,
                              &created, err)) ||
      /* tables this start created fill faster without their deferrable indexes
       * (of instances started together, only the one that created them) */
      (created && (rc = esk_bulk_defer(p->pg, p->data_schema, p->store_key,
                                       proj->deferred_indexes, err))) ||
      (rc = esk_bulk_pending(p->pg, p->store_key, &p->deferred, err)) ||
      (proj->versions_get &&
       (rc = esk_store_versions_any(p->pg, p->store_key, &p->version_floor, err))))
    return rc;
  return ESK_OK;
}

/* Kafka: the consumer in the projection's group and the dead-letter producer,
 * the dead-letter topic (as many partitions as the events topic), and the
 * subscription. */
static int open_kafka(esk_projector_t *p, const esk_conf_t *conf, esk_error_t *err) {
  const char *consumer_props[] = {"group.id", p->group,
                                  "enable.auto.commit", "false",
                                  "enable.auto.offset.store", "false",
                                  "auto.offset.reset", "earliest",
                                  "isolation.level", "read_committed",
                                  "partition.assignment.strategy", "range",
                                  "enable.partition.eof", "true", /* lag past markers */
                                  NULL};
  const char *producer_props[] = {"enable.idempotence", "true", "linger.ms", "5", NULL};
  int rc, parts = 0;
  if ((rc = projector_client(&p->consumer, RD_KAFKA_CONSUMER, conf, consumer_props, p, err)) ||
      (rc = projector_client(&p->dlq, RD_KAFKA_PRODUCER, conf, producer_props, p, err)))
    return rc;
  rd_kafka_poll_set_consumer(p->consumer);
  if ((rc = esk_kafka_partition_count(p->dlq, p->topic, 10000, &parts, err))) {
    if (rc == ESK_ENOTFOUND) /* a deploy ordering mistake: say what to do */
      rc = esk_error_set(err, ESK_EINVAL,
                         "events topic %s does not exist: create the domain's topics first "
                         "(eskctl topics create --domain DOMAIN --partitions N)", p->topic);
    return rc;
  }
  if ((rc = esk_kafka_create_topic(p->dlq, p->dlq_topic, parts, -1, NULL, 15000, NULL, err)))
    return rc;
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, p->topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(p->consumer, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  if (e) return esk_error_set(err, ESK_EFATAL, "subscribe to %s: %s", p->topic, rd_kafka_err2str(e));
  return ESK_OK;
}

/* Personal data: scrubbing when the decoder follows forgets and the
 * projection declares where it keeps personal data. */
static int open_scrub(esk_projector_t *p, esk_error_t *err) {
  const esk_forgets_t *f = p->dec.forgets;
  if (!p->proj.forget || !f || !f->n_marks) return ESK_OK; /* no personal data to scrub */
  if (!f->refresh) {
    ESK_WARN("projector", "msg=\"personal fields are not decrypted, and forgotten subjects are "
                          "not scrubbed, without personal.master_key_file\" projection=%s",
             p->name);
    return ESK_OK;
  }
  int rc = esk_scrub_new(&p->scrub, p->dec.forgets, &p->proj, p->scrub_ms, err);
  if (!rc && p->gen >= 1)
    rc = esk_scrub_retired_new(&p->scrub_retired, p->dec.forgets, &p->proj, p->schema, p->name,
                               p->scrub_ms, err);
  return rc;
}

/* Turns on the projection's reading of events from their bytes when it has
 * one and takes the decoder's contract (never for personal data: that needs
 * the decoder's decryption). */
static int open_read_bytes(esk_projector_t *p, esk_error_t *err) {
  if (!p->proj.decode || !p->proj.decode_setup || !p->dec.contract || p->dec.forgets)
    return ESK_OK;
  int rc = p->proj.decode_setup(p->proj.self, p->dec.contract, err);
  if (rc == ESK_ENOTFOUND) esk_error_clear(err);
  p->read_bytes = rc == ESK_OK;
  return rc == ESK_ENOTFOUND ? ESK_OK : rc;
}

int esk_projector_new(esk_projector_t **out, const esk_conf_t *conf,
                      const esk_projection_t *projection, const esk_decoder_t *decoder,
                      esk_error_t *err) {
  int rc;
  esk_projector_t *p = calloc(1, sizeof(*p));
  if (!p) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  p->conf = conf;
  p->proj = *projection;
  p->dec = *decoder;
  p->last_pg_ms = esk_time_mono_ms();
  atomic_init(&p->r_assigned, -1);
  atomic_init(&p->r_pg_ok, 1);
  atomic_init(&p->r_dlq_ok, 1);
  atomic_init(&p->r_lag, 0);
  if ((rc = read_settings(p, conf, err)) || (rc = open_store(p, conf, err)) ||
      (rc = open_kafka(p, conf, err)) || (rc = open_scrub(p, err)) ||
      (rc = open_read_bytes(p, err))) {
    esk_projector_destroy(p);
    return rc;
  }
  ESK_INFO("projector", "msg=started projection=%s topic=%s group=%s dlq=%s schema=%s "
                        "batch_max=%d batch_ms=%d on_error=%s read_bytes=%s",
           p->name, p->topic, p->group, p->dlq_topic, p->schema, p->batch_max, p->batch_ms,
           p->on_error_stop ? "stop" : "dlq", p->read_bytes ? "on" : "off");
  *out = p;
  return ESK_OK;
}

void esk_projector_destroy(esk_projector_t *p) {
  if (!p) return;
  drop_batch(p);
  const char *was = esk_watchdog_doing("rd_kafka_destroy, rd_kafka_flush (the Kafka clients)");
  if (p->consumer) rd_kafka_destroy(p->consumer);
  if (p->dlq) {
    rd_kafka_flush(p->dlq, 10000);
    rd_kafka_destroy(p->dlq);
  }
  esk_watchdog_doing(was);
  if (p->pg) PQfinish(p->pg);
  esk_scrub_destroy(p->scrub);
  esk_scrub_retired_destroy(p->scrub_retired);
  free(p->batch);
  free(p->batch_gen);
  free(p->parts);
  free(p->name);
  free(p->topic);
  free(p->group);
  free(p->dlq_topic);
  free(p->schema);
  free(p->data_schema);
  free(p->store_key);
  vcache_clear(p);
  free(p);
}

void esk_projector_stats(const esk_projector_t *p, esk_projector_stats_t *out) {
  *out = p->stats;
}

int esk_projector_set_metrics(esk_projector_t *p, esk_metrics_t *reg, esk_error_t *err) {
  pmetrics_t m = {0};
  esk_metric_t *applied, *batches, *duration, *retries, *skipped, *assigned, *scrubbed, *vread;
  esk_metric_t *rbytes;
  const char *v[] = {p->name};
  int rc;
  if ((rc = esk_metrics_counter(&applied, reg, "esk_projector_events_applied_total",
                                "Events applied to PostgreSQL (committed).", "projection", 8,
                                err)) ||
      (rc = esk_metrics_counter(&batches, reg, "esk_projector_batches_total",
                                "Batches committed.", "projection", 8, err)) ||
      (rc = esk_metrics_histogram(&duration, reg, "esk_projector_batch_duration_seconds",
                                  "Decode + apply + commit time of one batch.", "projection", 8,
                                  esk_metrics_latency_buckets, esk_metrics_latency_buckets_n,
                                  err)) ||
      (rc = esk_metrics_gauge(&m.lag, reg, "esk_projector_lag_events",
                              "High watermark (last stable offset) minus the next offset to "
                              "apply; 0 when caught up, transaction markers included.",
                              "projection,partition", 1024, err)) ||
      (rc = esk_metrics_gauge(&m.lag_s, reg, "esk_projector_lag_seconds",
                              "Age of the newest applied event when the partition is behind, "
                              "else 0.", "projection,partition", 1024, err)) ||
      (rc = esk_metrics_counter(&m.dead, reg, "esk_projector_dead_letters_total",
                                "Events sent to the dead-letter topic, by error.",
                                "projection,reason", 32, err)) ||
      (rc = esk_metrics_counter(&retries, reg, "esk_projector_pg_retries_total",
                                "PostgreSQL retries (outage or restart).", "projection", 8, err)) ||
      (rc = esk_metrics_counter(&skipped, reg, "esk_projector_duplicates_skipped_total",
                                "Events skipped by the version guard (applied before).",
                                "projection", 8, err)) ||
      (rc = esk_metrics_gauge(&assigned, reg, "esk_projector_assigned_partitions",
                              "Partitions assigned to this instance.", "projection", 8, err)) ||
      (rc = esk_metrics_counter(&scrubbed, reg, "esk_projector_subjects_scrubbed_total",
                                "Forgotten data subjects scrubbed from the read model.",
                                "projection", 8, err)) ||
      (rc = esk_metrics_counter(&vread, reg, "esk_projector_versions_read_total",
                                "Aggregate versions batches read from PostgreSQL (not those the "
                                "version cache held).", "projection", 8, err)) ||
      (rc = esk_metrics_counter(&rbytes, reg, "esk_projector_events_read_from_bytes_total",
                                "Events the projection read straight from their bytes (its own "
                                "decode), not through the domain decoder's generic value.",
                                "projection", 8, err)) ||
      (rc = esk_metrics_series(&m.applied, applied, v, err)) ||
      (rc = esk_metrics_series(&m.batches, batches, v, err)) ||
      (rc = esk_metrics_series(&m.duration, duration, v, err)) ||
      (rc = esk_metrics_series(&m.retries, retries, v, err)) ||
      (rc = esk_metrics_series(&m.skipped, skipped, v, err)) ||
      (rc = esk_metrics_series(&m.assigned, assigned, v, err)) ||
      (rc = esk_metrics_series(&m.scrubbed, scrubbed, v, err)) ||
      (rc = esk_metrics_series(&m.versions_read, vread, v, err)) ||
      (rc = esk_metrics_series(&m.read_bytes, rbytes, v, err)))
    return rc;
  /* Counts from before (none in practice: called before esk_projector_run()). */
  esk_metrics_add(m.applied, (uint64_t)p->stats.applied);
  esk_metrics_add(m.batches, (uint64_t)p->stats.batches);
  esk_metrics_add(m.retries, (uint64_t)p->stats.pg_retries);
  esk_metrics_add(m.skipped, (uint64_t)p->stats.skipped);
  esk_metrics_add(m.scrubbed, (uint64_t)p->stats.scrubbed);
  esk_metrics_add(m.versions_read, (uint64_t)p->stats.versions_read);
  esk_metrics_add(m.read_bytes, (uint64_t)p->stats.read_from_bytes);
  p->m = m;
  for (int i = 0; i < p->n_parts; i++)
    if (p->parts[i].assigned) part_metrics(p, &p->parts[i], i);
  if (atomic_load(&p->r_assigned) >= 0) publish_assigned(p);
  return ESK_OK;
}

int esk_projector_ready(esk_projector_t *p, char *reason, size_t size) {
  int assigned = atomic_load(&p->r_assigned);
  long long lag = atomic_load(&p->r_lag);
  if (!atomic_load(&p->r_pg_ok)) {
    snprintf(reason, size, "PostgreSQL unreachable at the last attempt (retrying)");
    return 0;
  }
  if (!atomic_load(&p->r_dlq_ok)) {
    snprintf(reason, size, "dead letters to %s not acknowledged by Kafka (retrying)",
             p->dlq_topic);
    return 0;
  }
  if (assigned < 0) {
    snprintf(reason, size, "no partition assignment from consumer group %s yet", p->group);
    return 0;
  }
  if (lag > p->ready_max_lag) {
    snprintf(reason, size, "lag %lld events is above ready.max.lag.events=%lld", lag,
             (long long)p->ready_max_lag);
    return 0;
  }
  return 1;
}
