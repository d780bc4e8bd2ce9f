/**
 * @file declarative.h
 * @brief A projection written as a file instead of C (docs/projections.md):
 *        its name, optionally its topic, its DDL migrations and, per event
 *        type, one parameterised SQL statement whose parameters are paths
 *        into the decoded event at the latest version of its type
 *        (`meta.aggregate_id`, `amount.minor_units`, ...).
 *
 *   name = accounts_by_owner
 *   topic = bank.events            # optional: default <domain>.events
 *
 *   [migration]                    # version 1, 2, ... in file order
 *   create table ... ;
 *
 *   [on MoneyDeposited]
 *   $1 = meta.aggregate_id
 *   $2 = amount.minor_units
 *   update ... where account_id = $1;
 *
 * It runs as an ordinary esk_projection_t, so the runtime's guarantees hold:
 * batches in one transaction with the positions, the version guard (kept in
 * esk_projection_versions), the DLQ for events whose statement fails with a
 * data or integrity error.
 */
#ifndef ESK_DECLARATIVE_H
#define ESK_DECLARATIVE_H

#include <libpq-fe.h>

#include "esk/codec.h"
#include "esk/error.h"
#include "projector.h"

typedef struct esk_declarative_s esk_declarative_t;

/**
 * @brief Parses @p path and checks every parameter path against the latest
 *        schema of its event type in @p schemas (borrowed; must outlive the
 *        result).
 * @returns ESK_OK, or ESK_EINVAL with a message `FILE:LINE: problem`.
 */
int esk_declarative_load(esk_declarative_t **out, const char *path,
                         const esk_schema_set_t *schemas, esk_error_t *err);

/** @brief As esk_declarative_load(), from @p text; @p label names it in errors. */
int esk_declarative_parse(esk_declarative_t **out, const char *label, const char *text,
                          const esk_schema_set_t *schemas, esk_error_t *err);

/**
 * @brief Checks the SQL against PostgreSQL without changing anything: in one
 *        transaction that is rolled back, runs the migrations not yet applied
 *        under @p key (NULL: the projection's name) and prepares every
 *        statement, comparing its parameter count with the parameters
 *        declared. Runs where @p pg's search_path points: its first schema
 *        must exist (the projector's session: the generation's schema, then
 *        pg.schema). esk_declarative_projection()'s check() calls it.
 * @returns ESK_OK; ESK_EINVAL with `FILE:LINE: problem` (LINE of the SQL
 *          text PostgreSQL points at); ESK_ERETRY when PostgreSQL is unreachable.
 */
int esk_declarative_check_sql(esk_declarative_t *d, PGconn *pg, const char *key,
                              esk_error_t *err);

/** @brief The projection's name (the file's `name =`). */
const char *esk_declarative_name(const esk_declarative_t *d);

/** @brief The file's [personal <table>] sections (personal_columns.h; borrowed). */
const struct esk_pcols_s *esk_declarative_personal(const esk_declarative_t *d);

/** @brief The file's `topic =`, or NULL. */
const char *esk_declarative_topic(const esk_declarative_t *d);

/**
 * @brief The projection to hand to esk_projector_new() (borrows @p d).
 *        It reads esk_event_t.value (the domain decoder's, any domain).
 */
esk_projection_t esk_declarative_projection(esk_declarative_t *d);

/** @brief Frees it. NULL does nothing. */
void esk_declarative_destroy(esk_declarative_t *d);

#endif
