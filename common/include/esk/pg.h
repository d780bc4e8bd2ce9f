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

#endif
