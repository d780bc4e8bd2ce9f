/**
 * @file projection.h
 * @brief The projection API, the same for every domain (docs/projections.md,
 *        docs/architecture.md "Read side"): the event a projection gets and
 *        the callbacks it gives.
 *
 * The projector decodes each message with the contract of its domain (the
 * domain plug-in's schemas and upcasters, esk/domain.h), so a projection
 * gets, whatever the domain:
 *  - the event type and the schema version it was written in;
 *  - the shared metadata every event carries in its `meta` record (aggregate
 *    type, id and version, event id, occurred-at, correlation and causation
 *    ids, actor);
 *  - the decoded value, upcast to the latest version of its type, with field
 *    access by path (esk_event_field() and friends below: `amount.minor_units`,
 *    `items.0.quantity`), the paths declarative files use.
 *
 * Self-contained: it includes only libpq, avro-c and esk/error.h, and its
 * helpers are inline, so that a projection plug-in (esk/projection_plugin.h)
 * links no esk library.
 */
#ifndef ESK_PROJECTION_API_H
#define ESK_PROJECTION_API_H

#include <avro.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "esk/error.h"

/**
 * A decoded event: every pointer is borrowed and valid only during the call
 * it is passed to (apply()).
 */
typedef struct esk_event_s {
  const char *type;           /**< the schema name, e.g. "MoneyDeposited", "OrderCreated" */
  int schema_version;         /**< the version it was written in (before upcasting) */
  int value_version;          /**< the version of @ref value: the latest of its type */
  const char *domain;         /**< e.g. "bank", "orders" */
  /* the metadata of EventMeta (the event's `meta` record) */
  const char *aggregate_type; /**< e.g. "account", "order" */
  const char *aggregate_id;   /**< also the Kafka key */
  int64_t aggregate_version;  /**< 1, 2, ... per aggregate */
  const char *event_id;       /**< a UUID in text form */
  int64_t occurred_at_us;     /**< microseconds since the epoch, UTC */
  const char *correlation_id; /**< "" when none */
  const char *causation_id;   /**< the command id that caused it */
  const char *actor;          /**< "" when none */
  /** The whole event, decoded and upcast to value_version (meta included);
   *  NULL when the projection's own decode() read it, or from a decoder of
   *  one's own (a test's). */
  const avro_value_t *value;
  /** Decoder-specific; NULL from the domain decoder esk-projector uses. */
  const void *payload;
  /* where it was read */
  const char *topic;
  int32_t partition;
  int64_t offset;
} esk_event_t;

/**
 * A personal field of the domain's events (docs/architecture.md, "Personal
 * data"): a field marked `esk.personal` in the latest schema of its event
 * type. Handed to esk_projection_t.forget(); every pointer is borrowed.
 */
typedef struct esk_personal_mark_s {
  const char *event_type;     /**< e.g. "OrderCreated" */
  const char *field;          /**< the personal field, e.g. "customer_email" */
  const char *subject_field;  /**< the field naming the data subject, e.g. "customer_id" */
  const char *forgotten_json; /**< its declared replacement, compact JSON, e.g. "\"[forgotten]\"" */
} esk_personal_mark_t;

/**
 * The contract the projector's domain decoder reads with, as a projection's
 * decode_setup() sees it: which schemas it holds and its limits. Every
 * pointer is borrowed and valid during the call only.
 */
typedef struct esk_contract_view_s {
  const char *domain; /**< e.g. "bank" */
  /** The CRC-64-AVRO fingerprint of @p type's schema @p version, 0 when the
   *  contract has none. */
  uint64_t (*fingerprint)(const void *self, const char *type, int version);
  /** The newest version of @p type, 0 when the contract has none. */
  int (*latest)(const void *self, const char *type);
  const void *self;
  size_t max_message_bytes; /**< the decoder's limits: a message or string over */
  size_t max_string_bytes;  /**< them is poison, whoever reads it */
} esk_contract_view_t;

/**
 * A projection. Every callback runs inside the batch's open transaction on
 * @p pg; any error rolls the whole batch back. From apply(): ESK_EPOISON
 * marks the event as one that can never be applied (dead-lettered),
 * ESK_ERETRY retries the batch, any other error stops the projector.
 * Duplicates never reach apply() (the runtime's per-aggregate version guard).
 */
typedef struct esk_projection_s {
  const char *name;                /**< also names its group and its DLQ */
  const char *const *migrations;   /**< migrations[i] is schema version i + 1 */
  size_t n_migrations;
  int (*batch_begin)(void *self, PGconn *pg, esk_error_t *err); /**< may be NULL */
  int (*apply)(void *self, PGconn *pg, const esk_event_t *ev, esk_error_t *err);
  int (*batch_end)(void *self, PGconn *pg, esk_error_t *err);   /**< may be NULL: flush */
  /** May be NULL. Runs before the runtime rolls the batch back, so it may end
   *  a COPY its apply() left open on the connection (esk_copy_stream()). */
  void (*batch_abort)(void *self);
  /**
   * May be NULL: the runtime keeps the version guard's last applied version
   * of each aggregate in esk_projection_versions. Otherwise the projection
   * keeps them in its own tables: this reads them (versions[i] for ids[i], 0
   * for an aggregate never seen), and batch_end() must store, in the batch's
   * transaction, the version of every event passed to apply(), including
   * events that change no row. Saves a write per aggregate per batch.
   */
  int (*versions_get)(void *self, PGconn *pg, const char *const *ids, size_t n,
                      int64_t *versions, esk_error_t *err);
  void *self;
  /**
   * 1 when a row of the read model folds every event of its aggregate (a
   * balance, a running balance): such a projection cannot start at a time
   * (esk-projector --from-time refuses it), since its rows would lack what
   * came before.
   */
  int needs_full_history;
  /**
   * May be NULL. Runs at start, before the projection's pending migrations,
   * on the projector's session (search_path: the generation's schema, then
   * pg.schema): checks what the migrations and statements would do, e.g. in
   * a transaction it rolls back, so that a bad definition stops start-up with
   * a precise message (ESK_EINVAL). @p key is the projection's key in
   * esk_projection_migrations.
   */
  int (*check)(void *self, PGconn *pg, const char *key, esk_error_t *err);
  /**
   * May be NULL: the read model holds no personal data. Otherwise scrubs the
   * personal data of data subject @p subject, who was forgotten (`eskctl
   * subjects forget`): every row of the subject that holds a personal value
   * gets the value's declared replacement (@p marks, the domain's personal
   * fields, give each one's `forgotten` JSON). Runs in a transaction the
   * runtime opens and commits on @p pg (the generation's search_path), after
   * the batches that applied the subject's last decrypted events, within
   * personal.scrub.interval.ms of the forget. Must be idempotent: it runs
   * again after a restart that lost the record of it. ESK_ERETRY: tried again
   * at the next interval; any other error stops the projector. A C plugin
   * sets it through esk_projection_plugin_t.forget (esk/projection_plugin.h).
   */
  int (*forget)(void *self, PGconn *pg, const char *subject, const esk_personal_mark_t *marks,
                size_t n_marks, esk_error_t *err);
  /**
   * May be NULL. Names of indexes and constraints of the projection's tables
   * (NULL-terminated) that nothing reads while the projection applies
   * events: a fill from scratch (migrations run by this start) drops them
   * after the migrations and builds them once it has caught up, which is
   * cheaper than keeping them up to date row by row. Those its batches need
   * (an ON CONFLICT target, the version guard's lookups) must not be named,
   * unless versions_need_deferred says the guard's are among them.
   */
  const char *const *deferred_indexes;
  /**
   * 0 by default. 1: versions_get() reads an index deferred_indexes names
   * (event_log's primary key). While they are still to be built, the runtime
   * keeps the guard's versions itself (esk_projection_versions), as for a
   * projection without versions_get, and asks again each batch whether
   * another instance has built them.
   */
  int versions_need_deferred;
  /**
   * 0 by default: versions_get() is asked for every aggregate of every
   * batch. 1: versions_get() only reads (it keeps nothing for the batch's
   * apply()), so the runtime may remember the versions its committed batches
   * left and ask it only for the aggregates it holds none of
   * (`guard.cache.aggregates`, docs/architecture.md, "Version guard"). A
   * projection without versions_get is cached whatever this says: the
   * runtime keeps those versions itself.
   */
  int versions_cacheable;
  /**
   * Optional, with decode (NULL: every event goes through the domain
   * decoder). Called once before the first event with the contract the
   * domain decoder reads with; ESK_OK turns decode() on, ESK_ENOTFOUND
   * leaves it off (the projection cannot read that contract's bytes), any
   * other code stops the start. Never called for a domain with personal
   * fields: their values need the decoder's decryption.
   */
  int (*decode_setup)(void *self, const esk_contract_view_t *contract, esk_error_t *err);
  /**
   * Optional. Reads an event straight from its message value (single-object
   * Avro), without the generic value (docs/projections.md, "Reading events
   * from their bytes"): fills @p ev as the domain decoder would (type,
   * versions, domain, metadata), leaves ev->value NULL and may point
   * ev->payload at the projection's own reading. ESK_ENOTFOUND, for
   * anything it is not sure of, hands the message to the domain decoder,
   * and apply() then gets its event as usual. It never returns poison: the
   * domain decoder says what is wrong with a message.
   */
  int (*decode)(void *self, const void *data, size_t len, esk_event_t *ev);
} esk_projection_t;

/* ------------------------------------------------- field access by path --- */

/**
 * @brief The value at @p path in @p v: field names separated by dots, a
 *        decimal segment indexes an array (`items.0.product_id`). A nullable
 *        field (a union with null) is followed into its branch.
 * @param out set to the value (borrowed from @p v).
 * @returns ESK_OK; ESK_ENOTFOUND when a field is missing, an index is out of
 *          range, or a null is met before the path ends; ESK_EINVAL for an
 *          empty path or a segment longer than 127 bytes.
 */
static inline int esk_value_at(const avro_value_t *v, const char *path, avro_value_t *out) {
  avro_value_t cur = *v, next;
  const char *p = path;
  if (!path || !*path) return ESK_EINVAL;
  for (;;) {
    char seg[128];
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (!n || n >= sizeof(seg)) return ESK_EINVAL;
    memcpy(seg, p, n);
    seg[n] = '\0';
    if (avro_value_get_type(&cur) == AVRO_UNION) {
      if (avro_value_get_current_branch(&cur, &next)) return ESK_ENOTFOUND;
      cur = next;
    }
    avro_type_t t = avro_value_get_type(&cur);
    if (t == AVRO_RECORD) {
      if (avro_value_get_by_name(&cur, seg, &next, NULL)) return ESK_ENOTFOUND;
    } else if (t == AVRO_ARRAY) {
      char *end = NULL;
      unsigned long i = strtoul(seg, &end, 10);
      size_t size = 0;
      if (seg[0] < '0' || seg[0] > '9' || *end || avro_value_get_size(&cur, &size) || i >= size ||
          avro_value_get_by_index(&cur, (size_t)i, &next, NULL))
        return ESK_ENOTFOUND;
    } else if (t == AVRO_MAP) {
      if (avro_value_get_by_name(&cur, seg, &next, NULL)) return ESK_ENOTFOUND;
    } else {
      return ESK_ENOTFOUND;
    }
    cur = next;
    if (!dot) break;
    p = dot + 1;
  }
  if (avro_value_get_type(&cur) == AVRO_UNION) {
    if (avro_value_get_current_branch(&cur, &next)) return ESK_ENOTFOUND;
    cur = next;
  }
  *out = cur;
  return ESK_OK;
}

/** @brief esk_value_at() on the event's value (ESK_ENOTFOUND when it has none). */
static inline int esk_event_field(const esk_event_t *ev, const char *path, avro_value_t *out) {
  return ev->value ? esk_value_at(ev->value, path, out) : ESK_ENOTFOUND;
}

/**
 * @brief The string at @p path (NUL-terminated, borrowed: valid during apply()).
 *        An enum gives its symbol.
 * @returns ESK_OK; ESK_ENOTFOUND (see esk_value_at()); ESK_EPOISON when the
 *          value there is not a string or an enum.
 */
static inline int esk_event_get_str(const esk_event_t *ev, const char *path, const char **out) {
  avro_value_t v;
  size_t n;
  int rc = esk_event_field(ev, path, &v), sym;
  if (rc) return rc;
  if (avro_value_get_type(&v) == AVRO_STRING)
    return avro_value_get_string(&v, out, &n) ? ESK_EPOISON : ESK_OK;
  if (avro_value_get_type(&v) == AVRO_ENUM) {
    const char *s;
    if (avro_value_get_enum(&v, &sym) ||
        !(s = avro_schema_enum_get(avro_value_get_schema(&v), sym)))
      return ESK_EPOISON;
    *out = s;
    return ESK_OK;
  }
  return ESK_EPOISON;
}

/**
 * @brief The integer at @p path (an Avro int or long).
 * @returns ESK_OK; ESK_ENOTFOUND; ESK_EPOISON when it is not an integer.
 */
static inline int esk_event_get_long(const esk_event_t *ev, const char *path, int64_t *out) {
  avro_value_t v;
  int32_t i;
  int rc = esk_event_field(ev, path, &v);
  if (rc) return rc;
  if (avro_value_get_type(&v) == AVRO_INT64)
    return avro_value_get_long(&v, out) ? ESK_EPOISON : ESK_OK;
  if (avro_value_get_type(&v) == AVRO_INT32) {
    if (avro_value_get_int(&v, &i)) return ESK_EPOISON;
    *out = i;
    return ESK_OK;
  }
  return ESK_EPOISON;
}

/**
 * @brief The number of elements of the array (or entries of the map) at @p path.
 * @returns ESK_OK; ESK_ENOTFOUND; ESK_EPOISON when it is neither.
 */
static inline int esk_event_get_size(const esk_event_t *ev, const char *path, size_t *out) {
  avro_value_t v;
  int rc = esk_event_field(ev, path, &v);
  if (rc) return rc;
  if (avro_value_get_type(&v) != AVRO_ARRAY && avro_value_get_type(&v) != AVRO_MAP)
    return ESK_EPOISON;
  return avro_value_get_size(&v, out) ? ESK_EPOISON : ESK_OK;
}

#endif
