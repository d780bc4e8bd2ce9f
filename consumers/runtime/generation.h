/**
 * @file generation.h
 * @brief Generations of a projection, for blue-green rebuilds.
 *
 * Every generation of a projection keeps its tables, and its own positions and
 * versions, in a schema of its own, `<base>_<projection>_g<N>`; the stable query
 * names (`account_balances`, ...) are views in the base schema (`pg.schema`)
 * over the live generation's tables. A registry table in the base schema,
 * `esk_projection_generations`, says which generation is live, which is being
 * rebuilt and which are retired:
 *
 * - a projector started without a generation serves the live one (generation 1
 *   is created, live, the first time);
 * - `eskctl projection rebuild` creates generation N+1 (state `rebuilding`,
 *   consumer group `<group>.g<N+1>`), fills it from offset 0 with an
 *   esk-projector of that generation, and once it has caught up switches the
 *   views to it and marks it live in one transaction (esk_generation_publish),
 *   so a reader sees the old or the new generation, never a half-built one;
 * - a projector serving a generation that is no longer live notices within
 *   seconds and moves to the live one;
 * - `eskctl projection drop-generation` drops a retired generation's schema.
 */
#ifndef ESK_GENERATION_H
#define ESK_GENERATION_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/error.h"

/** One generation of a projection. */
typedef struct esk_generation_s {
  int gen;          /**< 1, 2, ... */
  char schema[64];  /**< its tables, positions and versions */
  char group[256];  /**< its consumer group */
  char state[16];   /**< "live", "rebuilding" or "retired" */
  int64_t from_ms;  /**< where its rebuild started: a time (ms since the epoch), or -1 for offset 0 */
} esk_generation_t;

/**
 * @brief The schema of generation @p gen: `<base>_<projection>_g<gen>`.
 * @returns ESK_OK, or ESK_EINVAL when it would not be a valid identifier of at
 *          most 63 characters (the message names the base schema and projection).
 */
int esk_generation_schema(char *out, size_t size, const char *base, const char *projection,
                          int gen, esk_error_t *err);

/**
 * @brief The key of generation @p gen in the bookkeeping tables of the base
 *        schema (positions, versions, migrations): `<projection>` for
 *        generation 1 (and without generations, gen 0), `<projection>.g<N>` else.
 */
void esk_generation_store_key(char *out, size_t size, const char *projection, int gen);

/**
 * @brief The retired generations of @p projection (at most @p max, in *n),
 *        when generation @p live is the live one; none otherwise (a rebuild's
 *        projector, or one that has not moved yet). The registry must exist
 *        (a projector serving generation 1 or more has made it).
 */
int esk_generation_retired(PGconn *pg, const char *base, const char *projection, int live,
                           esk_generation_t *out, size_t max, size_t *n, esk_error_t *err);

/**
 * @brief The live generation of @p projection in @p base, created (generation 1,
 *        live) with the registry if there is none.
 * @param base_group the projection's consumer group; generation N > 1 uses
 *        `<base_group>.g<N>`.
 */
int esk_generation_live(esk_generation_t *out, PGconn *pg, const char *base,
                        const char *projection, const char *base_group, esk_error_t *err);

/**
 * @brief Checks an explicit `group.id` against the group generation @p g was
 *        recorded with: generation 1 reads as `group.id`, generation N > 1 as
 *        `<group.id>.g<N>`. A generation's positions are kept in PostgreSQL
 *        (its schema and key), not in Kafka, so another group would neither
 *        read the topic again nor keep its own positions: it would share the
 *        generation's positions with the recorded group's members and fight
 *        them over every partition.
 * @param group the configured `group.id`; NULL or empty (the default) passes.
 * @returns ESK_OK, or ESK_EINVAL with one line naming both groups and what to
 *          do instead (`eskctl projection rebuild`, a new `pg.schema`).
 */
int esk_generation_check_group(const esk_generation_t *g, const char *base,
                               const char *projection, const char *group, esk_error_t *err);

/** @brief Generation @p gen of @p projection; ESK_ENOTFOUND if there is none. */
int esk_generation_get(esk_generation_t *out, PGconn *pg, const char *base,
                       const char *projection, int gen, esk_error_t *err);

/**
 * @brief The generation being rebuilt, or a new one (live + 1, state
 *        `rebuilding`) when none is. ESK_ENOTFOUND when the projection has no
 *        live generation yet (nothing to rebuild: start it first).
 * @param from_ms where the rebuild starts: a time (ms since the epoch,
 *        `--from-time`) or -1 for offset 0. Resuming a generation whose
 *        rebuild began elsewhere is ESK_ECONFLICT, naming both starts: its
 *        stored positions would silently keep the other start.
 */
int esk_generation_rebuilding(esk_generation_t *out, PGconn *pg, const char *base,
                              const char *projection, const char *base_group, int64_t from_ms,
                              esk_error_t *err);

/**
 * @brief Makes @p gen the live generation in one transaction: the views in
 *        @p base name its tables and views (views of ones it no longer has are
 *        dropped), the generation that was live becomes `retired`. Publishing
 *        the live generation again only refreshes its views.
 * @returns ESK_ERETRY when @p gen has not yet reached the live generation's
 *          position on every partition (the views must never go back in the
 *          stream): call again a little later. A switch also notifies the
 *          waiters of esk_generation_wait_switch() when it commits.
 */
int esk_generation_publish(PGconn *pg, const char *base, const char *projection, int gen,
                           esk_error_t *err);

/** @brief Subscribes session @p pg to the switches esk_generation_publish()
 *         announces (a PostgreSQL LISTEN; once per session). */
int esk_generation_listen(PGconn *pg, esk_error_t *err);

/**
 * @brief Waits up to @p timeout_ms for a switch of generations announced by
 *        esk_generation_publish() (a NOTIFY delivered on commit) on a session
 *        that called esk_generation_listen(). A notice is a hint to look
 *        again (it names the projection, not the base schema), not the
 *        answer: read the registry with esk_generation_live() after it, and
 *        after a timeout too.
 * @param projection only a switch of this projection counts (NULL: any);
 *        others are consumed and ignored.
 * @returns 1 when a switch was announced, 0 on timeout, or ESK_ERETRY when
 *          the session broke (reconnect, listen and call again).
 */
int esk_generation_wait_switch(PGconn *pg, const char *projection, int timeout_ms,
                               esk_error_t *err);

/**
 * @brief Drops a generation that is not live: its schema (tables, positions,
 *        versions) and its registry row. ESK_ECONFLICT for the live one,
 *        ESK_ENOTFOUND for an unknown one.
 */
int esk_generation_drop(PGconn *pg, const char *base, const char *projection, int gen,
                        esk_error_t *err);

#endif
