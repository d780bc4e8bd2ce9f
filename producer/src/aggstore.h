/**
 * @file aggstore.h
 * @brief The runtime's in-memory tables of one partition, whatever the
 *        domain: the aggregate store (aggregate id -> state) and the
 *        idempotency cache (command id -> first result). Both are over the
 *        SipHash map of esk/hmap.h, since users choose the ids.
 */
#ifndef ESK_PRODUCER_AGGSTORE_H
#define ESK_PRODUCER_AGGSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/domain.h"
#include "esk/error.h"

/** The result of one command: what the results topic carries. */
typedef struct esk_result_s {
  int rule; /**< ESK_RULE_ACCEPTED, a runtime code, or ESK_RULE_DOMAIN + i (esk/domain.h) */
  /** Accepted: how many events the command wrote, with the versions
   *  version - n_events + 1 .. version; -1 when not known (a result written
   *  before results listed their events). Rejected: 0. */
  int n_events;
  /** Accepted: the aggregate version after the command's events.
   *  Rejected: the aggregate version the command was judged against. */
  int64_t version;
  /** Rejected: names the rule and the values. Accepted: the events' types,
   *  in order, separated by ',' (esk_result_add_event(); the names that did
   *  not fit are left out at the end). */
  char message[ESK_RESULT_MSG_MAX];
} esk_result_t;

/* ---------------------------------------------------------------- store --- */

/**
 * The aggregate store: aggregate id -> a domain state of state_size bytes,
 * copied in and out. A pointer from esk_aggstore_get() stays valid until that
 * aggregate is removed or the store destroyed. Ids are 1..ESK_ID_MAX bytes.
 */
typedef struct esk_aggstore_s esk_aggstore_t;

/**
 * How a packed store keeps its states: the domain's snapshot functions (or
 * any pair that reads back what it writes). A packed state takes its
 * snapshot's bytes instead of state_size (the bank's: about 60-90 bytes for
 * ids of 10-36 characters, against 288), for one pack per put and one unpack
 * per get (docs/architecture.md, "Write side").
 */
typedef struct esk_aggstore_pack_s {
  int (*pack)(esk_buf_t *out, const void *state, esk_error_t *err);
  int (*unpack)(void *state, const void *data, size_t len, esk_error_t *err);
} esk_aggstore_pack_t;

/**
 * @brief Creates an empty store.
 * @param expected pre-sizes the table (0: small).
 * @param max hard limit of aggregates (0: 16M); a put of a new one beyond it fails.
 */
int esk_aggstore_new(esk_aggstore_t **out, size_t state_size, size_t expected, size_t max,
                     esk_error_t *err);

/**
 * @brief Creates an empty packed store (see esk_aggstore_pack_t); @p pack NULL
 *        is esk_aggstore_new(). A pointer from esk_aggstore_get() or a state
 *        given to esk_aggstore_foreach()'s callback then stays valid only until
 *        the next call on the store. A stored state that does not unpack stops
 *        the process (abort), after logging the aggregate and the reason.
 * @returns ESK_OK; ESK_EINVAL for a NULL out, state_size 0 or a pack with a
 *          NULL function; ESK_ENOMEM.
 */
int esk_aggstore_new_packed(esk_aggstore_t **out, size_t state_size,
                            const esk_aggstore_pack_t *pack, size_t expected, size_t max,
                            esk_error_t *err);

/** @brief Frees the store. NULL does nothing. */
void esk_aggstore_destroy(esk_aggstore_t *st);

/** @brief The state of @p id, or NULL if the store has none. */
const void *esk_aggstore_get(const esk_aggstore_t *st, const char *id);

/**
 * @brief Stores a copy of @p state under @p id (inserting or replacing).
 * @returns ESK_OK; ESK_EINVAL for an empty or over-long id, or a state a packed
 *          store's pack refuses (with its reason); ESK_ENOMEM when full.
 */
int esk_aggstore_put(esk_aggstore_t *st, const char *id, const void *state, esk_error_t *err);

/** @brief Drops an aggregate. @returns ESK_OK or ESK_ENOTFOUND. */
int esk_aggstore_remove(esk_aggstore_t *st, const char *id);

/** @brief Number of aggregates held. */
size_t esk_aggstore_count(const esk_aggstore_t *st);

/**
 * @brief Calls @p fn for every aggregate (no order). Do not change the store
 *        during the walk; a non-zero return from @p fn stops it and is returned.
 */
int esk_aggstore_foreach(const esk_aggstore_t *st,
                         int (*fn)(const char *id, const void *state, void *ctx), void *ctx);

/* --------------------------------------------------- idempotency cache --- */

/**
 * The seen-command cache: command id -> the first result of that command.
 *
 * Bounded: it holds at most max_entries ids; inserting a new id when full
 * evicts the oldest inserted one (FIFO by first insertion, not LRU: a lookup
 * does not refresh an entry). A retry that arrives after more than
 * max_entries newer commands is therefore decided again: size the cache to
 * cover the retry window. Memory: about 100 bytes per entry with 36-character
 * ids and the bank's results (a result is kept up to its message's end).
 */
typedef struct esk_seen_s esk_seen_t;

/** @brief Creates an empty cache holding at most @p max_entries (> 0) ids. */
int esk_seen_new(esk_seen_t **out, size_t max_entries, esk_error_t *err);

/** @brief Frees the cache. NULL does nothing. */
void esk_seen_destroy(esk_seen_t *s);

/**
 * @brief Records the result of @p command_id, unless the id is already known:
 *        the first result wins and the entry keeps its age.
 * @param inserted_out if not NULL, set on success to 1 if recorded, 0 if already known.
 * @returns ESK_OK; ESK_EINVAL for an empty or over-long id (ESK_ID_MAX); ESK_ENOMEM.
 */
int esk_seen_put(esk_seen_t *s, const char *command_id, const esk_result_t *result,
                 int *inserted_out, esk_error_t *err);

/** @brief The first result of @p command_id (a copy owned by the cache; valid until the
 *         next get or put), or NULL. */
const esk_result_t *esk_seen_get(const esk_seen_t *s, const char *command_id);

/** @brief Number of ids held (<= max_entries). */
size_t esk_seen_count(const esk_seen_t *s);

#endif
