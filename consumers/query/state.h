/**
 * @file state.h
 * @brief esk-query's `GET /v1/<domain>/aggregates/<id>/state?as_of=<time>`:
 *        an aggregate's state at a time, folded from event_log with the
 *        domain's own evolve and rendered with its state_json (docs/api.md,
 *        "An aggregate's state at a time"; docs/architecture.md, "HTTP API").
 *
 * The domain comes from its shared object through common's domain_lib
 * (esk/domain_lib.h), so the read side links nothing of the write side.
 * event_log's payload is the event's fields at the latest schema version, as
 * JSON without `meta`: a row becomes the domain's event struct by rebuilding
 * the whole record (meta from the row's columns), encoding it with the codec
 * and decoding it with the domain's decode_event.
 *
 * Personal data: esk-query holds no subject keys. A personal field that
 * event_log holds encrypted (`esk:p1:...`) is folded as its `forgotten`
 * value, as a reader whose key is destroyed sees it; plaintext (a projector
 * that decrypts) is folded as event_log holds it.
 */
#ifndef ESK_QUERY_STATE_H
#define ESK_QUERY_STATE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/domain.h"
#include "esk/error.h"

/** Longest as_of accepted, in bytes (`2026-01-15T10:00:00.123456789+01:00` is 35). */
#define ESK_QSTATE_AS_OF_MAX 64

/** Events read from event_log in one page while folding. */
#define ESK_QSTATE_PAGE 500

/** The domain, loaded once and shared by the workers (immutable). */
typedef struct esk_qstate_s esk_qstate_t;

/** One worker's codec and domain instance (a codec belongs to one thread). */
typedef struct esk_qstate_worker_s esk_qstate_worker_t;

/**
 * @brief Loads domain @p name from @p dir (esk_domain_lib_open()) and its
 *        schemas.
 * @returns ESK_OK; the loader's error (ESK_ENOTFOUND: no such file;
 *          ESK_EINVAL: refused) naming the file and the reason.
 */
int esk_qstate_open(esk_qstate_t **out, const char *dir, const char *name, esk_error_t *err);

/** @brief Wraps an already checked descriptor @p d (compiled in: tests). */
int esk_qstate_from_domain(esk_qstate_t **out, const esk_domain_t *d, esk_error_t *err);

/** @brief Frees it (after every worker context). NULL does nothing. */
void esk_qstate_close(esk_qstate_t *s);

/** @brief The descriptor. */
const esk_domain_t *esk_qstate_domain(const esk_qstate_t *s);

/** @brief A worker's context over @p s (borrowed; it outlives the context). */
int esk_qstate_worker_new(esk_qstate_worker_t **out, const esk_qstate_t *s, esk_error_t *err);

/** @brief Frees it. NULL does nothing. */
void esk_qstate_worker_free(esk_qstate_worker_t *w);

/** One event_log row, as the fold reads it (strings borrowed). */
typedef struct esk_qstate_row_s {
  const char *aggregate_id;
  int64_t aggregate_version;
  const char *event_type;
  const char *event_id;
  int64_t occurred_at_us;
  const char *correlation_id, *causation_id, *actor;
  const char *payload; /**< JSON object: the fields other than meta, latest version */
} esk_qstate_row_t;

/**
 * @brief Turns @p row back into the domain's event struct @p event
 *        (event_size bytes): payload and meta as one record of the latest
 *        schema of its type, personal ciphertext replaced by `forgotten`,
 *        encoded, then the domain's decode_event.
 * @returns ESK_OK; ESK_EPOISON naming the type, the version and the reason
 *          (unknown type, payload not matching the schema, refused by the
 *          domain, another aggregate or version than the row's).
 */
int esk_qstate_event_from_row(esk_qstate_worker_t *w, const esk_qstate_row_t *row, void *event,
                              esk_error_t *err);

/** The time an answer is asked for. */
typedef struct esk_qstate_ask_s {
  const char *aggregate_id;
  int has_as_of; /**< 0: every event (the current state) */
  int64_t as_of_us;
} esk_qstate_ask_t;

/**
 * @brief Answers @p ask from event_log on @p pg (search_path at pg.schema):
 *        folds the aggregate's events from the domain's initial state, in
 *        version order, stopping at the first one past as_of, and writes the
 *        whole JSON answer into @p body (NUL-terminated).
 * @returns the HTTP status: 200 with the answer; 404, 500, 501 or 503 with an
 *          error body; -1 for a PostgreSQL fault (nothing written; the
 *          caller answers 503 and reconnects).
 */
int esk_qstate_answer(esk_qstate_worker_t *w, PGconn *pg, const esk_qstate_ask_t *ask,
                      esk_buf_t *body);

/**
 * @brief What @p ask's answer depends on, for its ETag: the id, as_of, and
 *        the number and highest version of the aggregate's event_log rows at
 *        or before as_of (rows are only ever added, so any change to the
 *        answer changes these), written into @p out. Read before the fold,
 *        so an ETag never names rows its answer lacks.
 * @returns 0; 1 when there is no such row or no event_log view (no ETag:
 *          esk_qstate_answer() answers 404 or 503); -1 for a PostgreSQL fault.
 */
int esk_qstate_head(const esk_qstate_worker_t *w, PGconn *pg, const esk_qstate_ask_t *ask,
                    char *out, size_t size);

/**
 * @brief Reads an `as_of` query parameter: RFC 3339 with a time zone, at most
 *        ESK_QSTATE_AS_OF_MAX bytes, years 1970..9999.
 * @returns ESK_OK with @p out_us; ESK_EINVAL with a message naming `as_of`.
 */
int esk_qstate_parse_as_of(const char *v, int64_t *out_us, esk_error_t *err);

#endif
