#include "esk/pg.h"
#include "esk/conf.h"

#include <stdio.h>
#include <string.h>

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
  *out = c;
  return ESK_OK;
}
