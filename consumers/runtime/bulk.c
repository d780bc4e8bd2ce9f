/* Deferred indexes of a fill from scratch (see bulk.h). */
#include "bulk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/buf.h"
#include "esk/pg.h"
#include "store.h"

/* The statement that makes @p name again and the one that drops it, from the
 * catalogues: a constraint (primary key, unique) or else a plain index. */
static int definition(PGconn *pg, const char *schema, const char *name, esk_buf_t *make,
                      esk_buf_t *drop, int *found, esk_error_t *err) {
  const char *params[] = {schema, name};
  PGresult *r = NULL;
  int rc = esk_pg_exec(&r, pg, "read a deferrable constraint",
                       "select format('alter table %I.%I add constraint %I %s', n.nspname,"
                       "   t.relname, c.conname, pg_get_constraintdef(c.oid)),"
                       " format('alter table %I.%I drop constraint %I', n.nspname, t.relname,"
                       "   c.conname)"
                       " from pg_constraint c join pg_class t on t.oid = c.conrelid"
                       " join pg_namespace n on n.oid = t.relnamespace"
                       " where n.nspname = $1 and c.conname = $2"
                       " union all "
                       "select pg_get_indexdef(i.indexrelid), format('drop index %I.%I',"
                       "   n.nspname, x.relname)"
                       " from pg_index i join pg_class x on x.oid = i.indexrelid"
                       " join pg_namespace n on n.oid = x.relnamespace"
                       " where n.nspname = $1 and x.relname = $2"
                       "   and not exists (select 1 from pg_constraint c where c.conindid ="
                       "     i.indexrelid)",
                       2, params, err);
  if (rc) return rc;
  *found = PQntuples(r) > 0;
  esk_buf_reset(make);
  esk_buf_reset(drop);
  if (*found &&
      (esk_buf_append(make, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0) + 1, err) ||
       esk_buf_append(drop, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1) + 1, err)))
    rc = ESK_ENOMEM;
  PQclear(r);
  return rc;
}

static int defer_one(PGconn *pg, const char *schema, const char *key, const char *name,
                     esk_buf_t *make, esk_buf_t *drop, esk_error_t *err) {
  int found = 0;
  int rc = definition(pg, schema, name, make, drop, &found, err);
  if (rc || !found) return rc;
  const char *params[] = {key, name, (const char *)make->data};
  if ((rc = esk_pg_exec(NULL, pg, "record a deferred index",
                        "insert into esk_projection_deferred (projection, name, definition)"
                        " values ($1, $2, $3)",
                        3, params, err)))
    return rc;
  return esk_pg_exec(NULL, pg, "drop a deferred index", (const char *)drop->data, 0, NULL, err);
}

int esk_bulk_defer(PGconn *pg, const char *schema, const char *key, const char *const *names,
                   esk_error_t *err) {
  if (!names || !*names) return ESK_OK;
  esk_buf_t make, drop;
  esk_buf_init(&make, 1 << 16);
  esk_buf_init(&drop, 1 << 16);
  int rc = esk_pg_exec(NULL, pg, "begin", "begin", 0, NULL, err);
  if (!rc) rc = esk_pg_exec(NULL, pg, "lock for DDL", ESK_DDL_LOCK, 0, NULL, err);
  for (size_t i = 0; !rc && names[i]; i++)
    rc = defer_one(pg, schema, key, names[i], &make, &drop, err);
  if (!rc) rc = esk_pg_exec(NULL, pg, "commit", "commit", 0, NULL, err);
  if (rc) PQclear(PQexec(pg, "rollback"));
  esk_buf_free(&make);
  esk_buf_free(&drop);
  return rc;
}

int esk_bulk_pending(PGconn *pg, const char *key, int *n, esk_error_t *err) {
  PGresult *r = NULL;
  int rc = esk_pg_exec(&r, pg, "count deferred indexes",
                       "select count(*) from esk_projection_deferred where projection = $1", 1,
                       &key, err);
  if (rc) return rc;
  *n = atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  return ESK_OK;
}

int esk_bulk_finish(PGconn *pg, const char *key, esk_error_t *err) {
  PGresult *r = NULL;
  int rc = esk_pg_exec(NULL, pg, "begin", "begin", 0, NULL, err);
  if (!rc)
    rc = esk_pg_exec(NULL, pg, "index build memory", "set local maintenance_work_mem = '256MB'",
                     0, NULL, err);
  if (!rc)
    rc = esk_pg_exec(&r, pg, "read deferred indexes",
                     "delete from esk_projection_deferred where projection = $1"
                     " returning definition",
                     1, &key, err);
  for (int i = 0; !rc && i < PQntuples(r); i++)
    rc = esk_pg_exec(NULL, pg, "build a deferred index", PQgetvalue(r, i, 0), 0, NULL, err);
  PQclear(r);
  if (!rc) rc = esk_pg_exec(NULL, pg, "commit", "commit", 0, NULL, err);
  if (rc) PQclear(PQexec(pg, "rollback"));
  return rc;
}
