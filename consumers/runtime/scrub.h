/**
 * @file scrub.h
 * @brief Scrubbing forgotten data subjects from a read model (docs/
 *        architecture.md, "Personal data"): every personal.scrub.interval.ms
 *        the projector reads what the subject-keys topic got (esk_forgets_t),
 *        and for each subject forgotten since and not yet scrubbed under the
 *        projection's key, runs the projection's forget() and records the
 *        subject in esk_projection_scrubs, in one transaction per subject.
 *
 * Restarts: the keyring reads the topic from its start, so every forgotten
 * subject is met again; those recorded under the key are skipped (one query
 * at the first run), the others (forgotten while the projector was down) are
 * scrubbed. A rebuild's generation has a key of its own, so it scrubs (or
 * finds nothing to scrub in) its own tables.
 */
#ifndef ESK_SCRUB_H
#define ESK_SCRUB_H

#include <libpq-fe.h>
#include <stdint.h>

#include "esk/error.h"
#include "event.h"

typedef struct esk_scrub_s esk_scrub_t;

/**
 * @brief A scrubber of @p proj (its forget() and self, borrowed) fed by
 *        @p forgets (borrowed), due every @p interval_ms.
 */
int esk_scrub_new(esk_scrub_t **out, const esk_forgets_t *forgets, const esk_projection_t *proj,
                  int64_t interval_ms, esk_error_t *err);

/** @brief Whether esk_scrub_run() would do anything at @p now_ms. */
int esk_scrub_due(const esk_scrub_t *s, int64_t now_ms);

/**
 * @brief When due (@p now_ms, a monotonic clock, at or past the last run
 *        plus the interval, or at once when the last run stopped at its time
 *        budget of 1 s): scrubs the subjects forgotten since, on @p pg
 *        (no transaction open; the generation's search_path), recording
 *        them under @p key. Call between batches, so that every event
 *        decoded before the subject-keys topic was read is committed.
 * @param scrubbed add the number of subjects scrubbed (may be NULL).
 * @returns ESK_OK; ESK_ERETRY (the topic or PostgreSQL; the subjects left
 *          are tried at the next run); another error from forget().
 */
int esk_scrub_run(esk_scrub_t *s, PGconn *pg, const char *key, int64_t now_ms,
                  int64_t *scrubbed, esk_error_t *err);

/** @brief Frees it. NULL does nothing. */
void esk_scrub_destroy(esk_scrub_t *s);

/**
 * The retired generations of a projection (generation.h), scrubbed by the
 * projector that serves the live one: their tables stay until
 * `drop-generation` (a way back), so a forgotten subject's plaintext must go
 * from them too. One scrubber per retired generation, under that generation's
 * key, in that generation's schema.
 */
typedef struct esk_scrub_retired_s esk_scrub_retired_t;

/** @brief For @p proj (borrowed) of @p projection in base schema @p base, fed by @p forgets. */
int esk_scrub_retired_new(esk_scrub_retired_t **out, const esk_forgets_t *forgets,
                          const esk_projection_t *proj, const char *base,
                          const char *projection, int64_t interval_ms, esk_error_t *err);

/**
 * @brief When generation @p live is the live one: looks up the retired
 *        generations and runs each one's scrubber (as esk_scrub_run, but
 *        without reading the subject-keys topic again: call it right after
 *        the live generation's esk_scrub_run) with the search_path set to its
 *        schema and @p base. The caller sets its own search_path again
 *        afterwards.
 * @param failed set to the first generation whose scrub failed (0: none); its
 *        error in @p err. The others still run: one old generation whose
 *        tables a later migration changed must not keep the rest unscrubbed.
 * @returns ESK_OK, or the registry lookup's error.
 */
int esk_scrub_retired_run(esk_scrub_retired_t *r, PGconn *pg, int live, int64_t now_ms,
                          int64_t *scrubbed, int *failed, esk_error_t *err);

/** @brief Frees it. NULL does nothing. */
void esk_scrub_retired_destroy(esk_scrub_retired_t *r);

#endif
