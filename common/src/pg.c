#include "esk/pg.h"
#include "esk/conf.h"
#include "esk/log.h"

#include <stdio.h>
#include <string.h>

/* Server notices ("relation already exists, skipping") go to the debug log
 * instead of libpq's default of stderr. */
static void notice_to_log(void *arg, const char *message) {
  (void)arg;
  char q[512];
  ESK_DEBUG("pg", "msg=%s", esk_log_quote(q, sizeof(q), message));
}

int esk_pg_connect(PGconn **out, const char *conninfo, esk_error_t *err) {
  if (!conninfo) conninfo = esk_conf_env_pg_conninfo();
  /* Keywords are processed in order and the expanded conninfo comes last, so
   * a connect_timeout or application_name the user wrote wins over ours. */
  const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *vals[] = {"10", "esk", conninfo, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c) return esk_error_set(err, ESK_ENOMEM, "out of memory connecting to PostgreSQL");
  if (PQstatus(c) != CONNECTION_OK) {
    char msg[ESK_ERROR_MSG_MAX];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
    msg[strcspn(msg, "\n")] = '\0';
    PQfinish(c);
    return esk_error_set(err, ESK_ERETRY,
                         "PostgreSQL not reachable at '%s': %s; start the local stack "
                         "with: deploy/local/stack up",
                         conninfo, msg);
  }
  PQsetNoticeProcessor(c, notice_to_log, NULL);
  *out = c;
  return ESK_OK;
}

int esk_pg_error_code(PGconn *c, const PGresult *r) {
  if (PQstatus(c) != CONNECTION_OK) return ESK_ERETRY;
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if (!state) return ESK_ERETRY; /* no server answer: the connection failed */
  if (!strncmp(state, "08", 2) || !strncmp(state, "53", 2) || !strncmp(state, "57", 2) ||
      !strcmp(state, "40001") || !strcmp(state, "40P01") || !strncmp(state, "58", 2))
    return ESK_ERETRY;
  if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2)) return ESK_EPOISON;
  return ESK_EFATAL;
}

int esk_pg_exec(PGresult **out, PGconn *c, const char *what, const char *sql, int nparams,
                const char *const *params, esk_error_t *err) {
  /* Without parameters use the simple protocol, which allows several statements. */
  PGresult *r = nparams ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0)
                        : PQexec(c, sql);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    if (out) *out = r;
    else PQclear(r);
    return ESK_OK;
  }
  int code = esk_pg_error_code(c, r);
  /* Copied: both point into r, which is freed before the message is built. */
  const char *sqlstate = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  char state[8] = "", msg[ESK_ERROR_MSG_MAX];
  if (sqlstate) snprintf(state, sizeof(state), "%s", sqlstate);
  snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
  msg[strcspn(msg, "\n")] = '\0';
  PQclear(r);
  return esk_error_set(err, code, "%s: %s%s%s", what, state, state[0] ? " " : "",
                       msg[0] ? msg : "connection lost");
}

int esk_pg_ident_valid(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) return 0;
  for (size_t i = 1; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
      return 0;
  return 1;
}

int esk_pg_table_exists(int *out, PGconn *c, const char *what, const char *schema,
                        const char *table, esk_error_t *err) {
  char rel[200];
  int n = snprintf(rel, sizeof(rel), "\"%s\".%s", schema, table);
  if (n < 0 || (size_t)n >= sizeof(rel))
    return esk_error_set(err, ESK_EINVAL, "%s: table name %s.%s too long", what, schema, table);
  const char *params[1] = {rel};
  PGresult *r = NULL;
  int rc = esk_pg_exec(&r, c, what, "select to_regclass($1) is not null", 1, params, err);
  if (rc) return rc;
  *out = !strcmp(PQgetvalue(r, 0, 0), "t");
  PQclear(r);
  return ESK_OK;
}
