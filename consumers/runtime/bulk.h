/**
 * @file bulk.h
 * @brief A fill from scratch loads its tables before their deferrable
 *        indexes (the standard bulk-load order): the indexes and constraints
 *        a projection names in esk_projection_t.deferred_indexes are dropped
 *        right after the migrations created them, recorded with their
 *        definitions in esk_projection_deferred (pg.schema), and built again
 *        in one transaction once the projector has caught up. A restart
 *        finds the record and builds them at its own catch-up; a switch to a
 *        generation that still has some is refused (esk_generation_publish).
 */
#ifndef ESK_BULK_H
#define ESK_BULK_H

#include <libpq-fe.h>
#include <stddef.h>

#include "esk/error.h"

/**
 * @brief Drops the named indexes and constraints of @p schema's tables and
 *        records their definitions under projection key @p key, in one
 *        transaction. A name that exists in neither catalogue is passed over.
 * @param names NULL-terminated list (may be NULL: nothing to do).
 */
int esk_bulk_defer(PGconn *pg, const char *schema, const char *key, const char *const *names,
                   esk_error_t *err);

/** @brief How many deferred indexes @p key has still to build (*n). */
int esk_bulk_pending(PGconn *pg, const char *key, int *n, esk_error_t *err);

/**
 * @brief Builds every deferred index of @p key and removes its record, in
 *        one transaction (with a larger maintenance_work_mem).
 */
int esk_bulk_finish(PGconn *pg, const char *key, esk_error_t *err);

#endif
