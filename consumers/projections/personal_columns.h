/**
 * @file personal_columns.h
 * @brief The `[personal <table>]` sections of a declarative projection file
 *        (docs/projections.md, "Personal data"): which columns of a table
 *        hold personal data, copied from which personal field of an event,
 *        and which column names the data subject. When a subject is
 *        forgotten, the runtime sets those columns of the subject's rows to
 *        the field's declared replacement (its `forgotten` value in the
 *        schema; docs/architecture.md, "Personal data"):
 *
 *   [personal order_summaries]
 *   subject = customer_id                         # the column naming the subject
 *   customer_email = OrderCreated.customer_email  # column = EventType.field[.sub...]
 *   shipping_address = OrderCreated.shipping_address
 *
 * A field must be marked esk.personal in the latest schema of its event
 * type; a path into a record field (`OrderCreated.shipping_address.city`)
 * takes that part of the replacement. A replacement that is a JSON string is
 * written as its text, a null as SQL NULL, anything else (a record) as JSON.
 */
#ifndef ESK_PERSONAL_COLUMNS_H
#define ESK_PERSONAL_COLUMNS_H

#include <libpq-fe.h>

#include "esk/codec.h"
#include "esk/error.h"

/** Most columns one section may declare. */
#define ESK_PCOLS_MAX_COLUMNS 32

typedef struct esk_pcols_s esk_pcols_t;

/** @brief An empty set of sections; @p label names the file in errors. */
int esk_pcols_new(esk_pcols_t **out, const char *label, esk_error_t *err);

/** @brief Frees it. NULL does nothing. */
void esk_pcols_destroy(esk_pcols_t *pc);

/**
 * @brief Opens the section `[personal <table>]` at line @p line (@p table as
 *        written after `personal`, trimmed); the previous one must be complete.
 * @returns ESK_OK; ESK_EINVAL `FILE:LINE: problem` (not an identifier, a
 *          second section for the table, an incomplete previous section).
 */
int esk_pcols_section(esk_pcols_t *pc, const char *table, int line, esk_error_t *err);

/**
 * @brief A line of the open section, split at its '=' and trimmed (the
 *        caller drops a `#` comment): `subject = <column>` or `<column> =
 *        <EventType>.<field>[.<sub>...]`, checked against @p schemas.
 * @returns ESK_OK; ESK_EINVAL `FILE:LINE: problem`.
 */
int esk_pcols_line(esk_pcols_t *pc, const char *key, const char *val, int line,
                   const esk_schema_set_t *schemas, esk_error_t *err);

/** @brief Checks that the last section is complete (a subject and a column). */
int esk_pcols_finish(esk_pcols_t *pc, esk_error_t *err);

/** @brief Number of sections. */
size_t esk_pcols_count(const esk_pcols_t *pc);

/** @brief The UPDATE of section @p i ($1 the subject, $2... the
 *         replacements in column order), or NULL. */
const char *esk_pcols_sql(const esk_pcols_t *pc, size_t i);

/** @brief The replacement text of @p column in section @p i (NULL: SQL NULL).
 *  @returns ESK_OK, or ESK_ENOTFOUND. */
int esk_pcols_replacement(const esk_pcols_t *pc, size_t i, const char *column, const char **out);

/**
 * @brief Runs each section's UPDATE on @p pg for the empty subject, inside
 *        the caller's transaction (after the migrations), which the caller
 *        rolls back: a table or column that does not exist, or a replacement
 *        the column's type refuses, stops start-up.
 * @returns ESK_OK; ESK_EINVAL `FILE:LINE: problem`; ESK_ERETRY.
 */
int esk_pcols_check(const esk_pcols_t *pc, PGconn *pg, esk_error_t *err);

/**
 * @brief Scrubs @p subject: in each table, its rows whose declared columns
 *        are not all their replacements yet get them (idempotent).
 * @returns ESK_OK, or esk_pg_error_code()'s code naming the file and line.
 */
int esk_pcols_forget(const esk_pcols_t *pc, PGconn *pg, const char *subject, esk_error_t *err);

#endif
