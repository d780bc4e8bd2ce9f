/**
 * @file pg.h
 * @brief PostgreSQL connections through libpq.
 */
#ifndef ESK_PG_H
#define ESK_PG_H

#include <libpq-fe.h>

#include "esk/error.h"

/**
 * @brief Opens a connection and checks it.
 * @param out set on success; the caller closes it with PQfinish().
 * @param conninfo libpq connection string; NULL for esk_conf_env_pg_conninfo().
 *        A connect_timeout is added when the string has none.
 * @returns ESK_OK, or ESK_ERETRY with a message naming the server and
 *          libpq's reason.
 */
int esk_pg_connect(PGconn **out, const char *conninfo, esk_error_t *err);

/**
 * @brief The esk error code for a failed command: ESK_ERETRY for faults that
 *        pass (connection lost, server shutting down, serialization failure,
 *        deadlock, lack of resources), ESK_EPOISON for data that can never be
 *        written (SQLSTATE classes 22 data exception and 23 integrity
 *        violation), ESK_EFATAL for the rest (bad SQL, missing privileges).
 * @param r the result (may be NULL: the connection failed).
 */
int esk_pg_error_code(PGconn *c, const PGresult *r);

/**
 * @brief Runs a parameterised statement (text parameters, text results).
 *        With @p nparams 0, @p sql may hold several statements (DDL, migrations).
 * @param out set to the result on success when not NULL (caller PQclear()s
 *        it); otherwise the result is cleared.
 * @returns ESK_OK, or esk_pg_error_code()'s code with a message holding the
 *          SQLSTATE and PostgreSQL's message, prefixed by @p what.
 */
int esk_pg_exec(PGresult **out, PGconn *c, const char *what, const char *sql, int nparams,
                const char *const *params, esk_error_t *err);

/**
 * @brief 1 when @p s is an identifier esk accepts from configuration for SQL
 *        (pg.schema, projection names, schemas built from them):
 *        [a-z_][a-z0-9_]*, at most 63 characters, so that it is quoted in SQL
 *        as it is and PostgreSQL keeps it whole.
 */
int esk_pg_ident_valid(const char *s);

/**
 * @brief Whether table @p table of schema @p schema exists, into @p out (1 or
 *        0). @p schema is quoted as it is: give an esk_pg_ident_valid() name.
 * @returns ESK_OK, ESK_EINVAL for names too long, or esk_pg_exec()'s code
 *          with a message prefixed by @p what.
 */
int esk_pg_table_exists(int *out, PGconn *c, const char *what, const char *schema,
                        const char *table, esk_error_t *err);

#endif
