/**
 * @file store.h
 * @brief What a projection keeps in PostgreSQL besides its read models: its
 *        schema migrations, its position per partition, and the last applied
 *        version of every aggregate (the guard that makes re-application a
 *        no-op). All of it in esk's own tables, created on first use:
 *
 *   esk_projection_migrations (projection, version, applied_at)
 *   esk_projection_positions  (projection, topic, partition, next_offset, updated_at)
 *   esk_projection_versions   (projection, aggregate_id, version)
 *   esk_projection_deferred   (projection, name, definition): indexes a fill
 *                             builds at its end (bulk.h)
 */
#ifndef ESK_STORE_H
#define ESK_STORE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/error.h"

/** @brief Creates esk's bookkeeping tables if they are missing. */
int esk_store_init(PGconn *pg, esk_error_t *err);

/**
 * @brief Applies the migrations of @p projection not yet applied, in order,
 *        each in its own transaction with its bookkeeping row. Concurrent
 *        instances are serialised by an advisory lock, so each runs once.
 * @param migrations SQL texts; migrations[i] is version i + 1. Never edit a
 *        released one: add a new version.
 * @param created out (may be NULL): 1 when this call applied version 1, that
 *        is, created the projection's tables; of instances started together
 *        exactly one is told so.
 */
int esk_store_migrate(PGconn *pg, const char *projection, const char *const *migrations,
                      size_t n, int *created, esk_error_t *err);

/* One advisory lock key for all of esk's DDL, taken in the transaction that
 * makes it: creation of the bookkeeping tables, migrations, deferred indexes
 * (bulk.h). DDL is rare, and `create table if not exists` races. */
#define ESK_DDL_LOCK "select pg_advisory_xact_lock(7218300413)"

/**
 * @brief The stored next offset of a partition.
 * @param next_offset set to the offset to resume from, or -1 when none is stored.
 */
int esk_store_position_get(PGconn *pg, const char *projection, const char *topic,
                           int32_t partition, int64_t *next_offset, esk_error_t *err);

/**
 * @brief In the open transaction, moves the stored position from @p expected
 *        (-1: none stored) to @p next. The row lock it takes makes concurrent
 *        writers wait and then fail.
 * @returns ESK_OK, or ESK_ECONFLICT when the stored position is no longer
 *          @p expected (another instance owns the partition now): roll back.
 */
int esk_store_position_cas(PGconn *pg, const char *projection, const char *topic,
                           int32_t partition, int64_t expected, int64_t next, esk_error_t *err);

/**
 * @brief Looks up the last applied version of @p n aggregates at once.
 * @param versions out: versions[i] for ids[i], 0 for an aggregate never seen.
 */
int esk_store_versions_get(PGconn *pg, const char *projection, const char *const *ids,
                           size_t n, int64_t *versions, esk_error_t *err);

/** @brief @p *any = 1 when versions are recorded for @p projection, else 0. */
int esk_store_versions_any(PGconn *pg, const char *projection, int *any, esk_error_t *err);

/**
 * @brief Builds a PostgreSQL array literal (`{"a","b\"c"}`) for a `$n::text[]`
 *        or `$n::bigint[]` parameter: each element quoted and escaped, so any
 *        text is safe. Start with an empty buffer; esk_store_array_end() closes
 *        it with a NUL, ready to pass as a text parameter.
 * @returns ESK_OK or ESK_ENOMEM.
 */
int esk_store_array_add(esk_buf_t *b, const char *s, size_t n);
int esk_store_array_add_i64(esk_buf_t *b, int64_t v);
int esk_store_array_end(esk_buf_t *b);

/** @brief In the open transaction, records the last applied version of @p n aggregates. */
int esk_store_versions_put(PGconn *pg, const char *projection, const char *const *ids,
                           const int64_t *versions, size_t n, esk_error_t *err);

#endif
