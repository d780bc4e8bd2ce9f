/* The [personal <table>] sections of a declarative file (personal_columns.h). */
#include "personal_columns.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/buf.h"
#include "esk/personal.h"
#include "esk/pg.h"

typedef struct pcol_s {
  char *column;
  char *value; /* the replacement as text; NULL: SQL NULL */
  int line;
} pcol_t;

typedef struct psec_s {
  char *table, *subject;
  int line;
  pcol_t cols[ESK_PCOLS_MAX_COLUMNS];
  int n_cols;
  char *sql; /* the UPDATE, built when the section is complete */
} psec_t;

struct esk_pcols_s {
  char *label;
  psec_t *secs;
  size_t n_secs, cap_secs;
};

#define IDENT_RULE "a lower-case identifier [a-z_][a-z0-9_]*, at most 63 characters"

int esk_pcols_new(esk_pcols_t **out, const char *label, esk_error_t *err) {
  esk_pcols_t *pc = calloc(1, sizeof(*pc));
  if (!pc || !(pc->label = strdup(label))) {
    free(pc);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  *out = pc;
  return ESK_OK;
}

void esk_pcols_destroy(esk_pcols_t *pc) {
  if (!pc) return;
  for (size_t i = 0; i < pc->n_secs; i++) {
    psec_t *s = &pc->secs[i];
    for (int k = 0; k < s->n_cols; k++) {
      free(s->cols[k].column);
      free(s->cols[k].value);
    }
    free(s->table);
    free(s->subject);
    free(s->sql);
  }
  free(pc->secs);
  free(pc->label);
  free(pc);
}

size_t esk_pcols_count(const esk_pcols_t *pc) { return pc ? pc->n_secs : 0; }

const char *esk_pcols_sql(const esk_pcols_t *pc, size_t i) {
  return i < esk_pcols_count(pc) ? pc->secs[i].sql : NULL;
}

int esk_pcols_replacement(const esk_pcols_t *pc, size_t i, const char *column,
                          const char **out) {
  for (int k = 0; i < esk_pcols_count(pc) && k < pc->secs[i].n_cols; k++)
    if (!strcmp(pc->secs[i].cols[k].column, column)) {
      *out = pc->secs[i].cols[k].value;
      return ESK_OK;
    }
  return ESK_ENOTFOUND;
}

/* Appends a short formatted piece (identifiers and parameter numbers). */
static int appendf(esk_buf_t *b, esk_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int appendf(esk_buf_t *b, esk_error_t *err, const char *fmt, ...) {
  char piece[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(piece, sizeof(piece), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(piece))
    return esk_error_set(err, ESK_EINVAL, "a piece of SQL longer than %zu bytes", sizeof(piece));
  return esk_buf_append(b, piece, (size_t)n, err);
}

/* update "t" set "c1" = $2, ... where "subject" = $1 and ("c1" is distinct
 * from $2 or ...): rows already scrubbed are not written again. */
static int build_sql(psec_t *s, esk_error_t *err) {
  esk_buf_t b;
  esk_buf_init(&b, 64 << 10);
  int rc = appendf(&b, err, "update \"%s\" set ", s->table);
  for (int k = 0; k < s->n_cols && !rc; k++)
    rc = appendf(&b, err, "%s\"%s\" = $%d", k ? ", " : "", s->cols[k].column, k + 2);
  if (!rc) rc = appendf(&b, err, " where \"%s\" = $1 and (", s->subject);
  for (int k = 0; k < s->n_cols && !rc; k++)
    rc = appendf(&b, err, "%s\"%s\" is distinct from $%d", k ? " or " : "",
                        s->cols[k].column, k + 2);
  if (!rc) rc = appendf(&b, err, ")");
  if (!rc) rc = esk_buf_append(&b, "", 1, err);
  if (rc) {
    esk_buf_free(&b);
    return rc;
  }
  s->sql = (char *)b.data; /* the buffer's bytes, NUL-terminated, are the string */
  return ESK_OK;
}

int esk_pcols_finish(esk_pcols_t *pc, esk_error_t *err) {
  if (!pc->n_secs) return ESK_OK;
  psec_t *s = &pc->secs[pc->n_secs - 1];
  if (s->sql) return ESK_OK;
  if (!s->subject)
    return esk_error_set(err, ESK_EINVAL,
                         "%s:%d: [personal %s]: no 'subject = <column>' line (the column that "
                         "names the data subject)",
                         pc->label, s->line, s->table);
  if (!s->n_cols)
    return esk_error_set(err, ESK_EINVAL,
                         "%s:%d: [personal %s]: no personal column (<column> = "
                         "<EventType>.<field>)",
                         pc->label, s->line, s->table);
  return build_sql(s, err);
}

int esk_pcols_section(esk_pcols_t *pc, const char *table, int line, esk_error_t *err) {
  int rc = esk_pcols_finish(pc, err);
  if (rc) return rc;
  if (!esk_pg_ident_valid(table))
    return esk_error_set(err, ESK_EINVAL, "%s:%d: [personal %.100s]: the table must be %s",
                         pc->label, line, table, IDENT_RULE);
  for (size_t i = 0; i < pc->n_secs; i++)
    if (!strcmp(pc->secs[i].table, table))
      return esk_error_set(err, ESK_EINVAL,
                           "%s:%d: a second [personal %s] (the first is at line %d)", pc->label,
                           line, table, pc->secs[i].line);
  psec_t *grown = esk_array_grow(pc->secs, &pc->cap_secs, pc->n_secs + 1, sizeof(*grown), 4);
  if (!grown) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  pc->secs = grown;
  psec_t *s = &pc->secs[pc->n_secs];
  *s = (psec_t){.line = line};
  if (!(s->table = strdup(table))) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  pc->n_secs++;
  return ESK_OK;
}

/* The replacement at @p rest (a dotted path, or "") inside the forgotten
 * JSON @p json, as text into @p out (NULL for null). */
static int replacement(esk_pcols_t *pc, int line, const char *where, const char *json,
                       const char *rest, char **out, esk_error_t *err) {
  json_error_t je;
  json_t *root = json_loads(json, JSON_DECODE_ANY, &je), *cur = root;
  char seg[128];
  int rc = root ? ESK_OK : esk_error_set(err, ESK_EINVAL, "%s:%d: %s: its replacement is not "
                                         "JSON", pc->label, line, where);
  for (const char *p = rest; !rc && *p && !json_is_null(cur);) {
    size_t n = strcspn(p, ".");
    if (!n || n >= sizeof(seg) || !json_is_object(cur)) {
      rc = esk_error_set(err, ESK_EINVAL, "%s:%d: %s: no field '%.*s' in the replacement %.200s",
                         pc->label, line, where, (int)(n < 100 ? n : 100), p, json);
      break;
    }
    memcpy(seg, p, n);
    seg[n] = '\0';
    if (!(cur = json_object_get(cur, seg)))
      rc = esk_error_set(err, ESK_EINVAL, "%s:%d: %s: no field '%s' in the replacement %.200s",
                         pc->label, line, where, seg, json);
    p += n;
    if (*p == '.' && !*++p)
      rc = esk_error_set(err, ESK_EINVAL, "%s:%d: %s: the path ends in a dot", pc->label, line,
                         where);
  }
  *out = NULL;
  if (!rc && json_is_string(cur)) *out = strdup(json_string_value(cur));
  else if (!rc && !json_is_null(cur)) *out = json_dumps(cur, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!rc && !json_is_null(cur) && !*out) rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
  json_decref(root);
  return rc;
}

/* The personal field named by `EventType.field[.sub...]` (@p ref) and its
 * replacement into @p col. */
static int resolve_ref(esk_pcols_t *pc, int line, const char *column, const char *ref,
                       const esk_schema_set_t *schemas, pcol_t *col, esk_error_t *err) {
  char type[128], field[128], where[400];
  size_t tn = strcspn(ref, "."), fn = ref[tn] ? strcspn(ref + tn + 1, ".") : 0;
  size_t len = strlen(ref);
  if (!tn || !ref[tn] || !fn || tn >= sizeof(type) || fn >= sizeof(field) || strstr(ref, "..") ||
      ref[len - 1] == '.' || strpbrk(ref, " \t"))
    return esk_error_set(err, ESK_EINVAL,
                         "%s:%d: %s = '%.100s': expected <EventType>.<field> (e.g. "
                         "OrderCreated.customer_email)",
                         pc->label, line, column, ref);
  snprintf(type, sizeof(type), "%.*s", (int)tn, ref);
  snprintf(field, sizeof(field), "%.*s", (int)fn, ref + tn + 1);
  const char *rest = ref + tn + 1 + fn;
  const esk_schema_t *s = esk_schema_set_latest(schemas, type);
  if (!s)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: %s = %.100s: no event type '%s' in the schemas",
                         pc->label, line, column, ref, type);
  size_t n = 0;
  const esk_personal_field_t *pf = esk_schema_personal(s, &n);
  for (size_t i = 0; i < n; i++) {
    if (strcmp(pf[i].name, field)) continue;
    snprintf(where, sizeof(where), "%s = %.200s", column, ref);
    return replacement(pc, line, where, pf[i].forgotten_json, *rest ? rest + 1 : rest,
                       &col->value, err);
  }
  return esk_error_set(err, ESK_EINVAL,
                       "%s:%d: %s = %.100s: field '%s' of %s v%d is not personal (it has no "
                       "esk.personal mark, so no declared replacement)",
                       pc->label, line, column, ref, field, type, esk_schema_version(s));
}

/* `<column> = <EventType>.<field>...` of section @p s. */
static int add_column(esk_pcols_t *pc, psec_t *s, int line, const char *column, const char *ref,
                      const esk_schema_set_t *schemas, esk_error_t *err) {
  if ((s->subject && !strcmp(s->subject, column)))
    return esk_error_set(err, ESK_EINVAL, "%s:%d: '%s' is the subject column; it cannot be "
                         "scrubbed too", pc->label, line, column);
  for (int k = 0; k < s->n_cols; k++)
    if (!strcmp(s->cols[k].column, column))
      return esk_error_set(err, ESK_EINVAL, "%s:%d: column '%s' given twice (first at line %d)",
                           pc->label, line, column, s->cols[k].line);
  if (s->n_cols == ESK_PCOLS_MAX_COLUMNS)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: [personal %s]: more than %d columns",
                         pc->label, line, s->table, ESK_PCOLS_MAX_COLUMNS);
  pcol_t col = {.line = line};
  int rc = resolve_ref(pc, line, column, ref, schemas, &col, err);
  if (!rc && !(col.column = strdup(column))) rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
  if (rc) {
    free(col.value);
    return rc;
  }
  s->cols[s->n_cols++] = col;
  return ESK_OK;
}

int esk_pcols_line(esk_pcols_t *pc, const char *key, const char *val, int line,
                   const esk_schema_set_t *schemas, esk_error_t *err) {
  psec_t *s = &pc->secs[pc->n_secs - 1];
  int is_subject = !strcmp(key, "subject");
  const char *bad = !esk_pg_ident_valid(key) ? key : is_subject && !esk_pg_ident_valid(val) ? val
                                                                                          : NULL;
  if (bad)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: column '%.100s': expected %s", pc->label, line,
                         bad, IDENT_RULE);
  if (!is_subject) return add_column(pc, s, line, key, val, schemas, err);
  if (s->subject)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: [personal %s]: 'subject' given twice",
                         pc->label, line, s->table);
  for (int k = 0; k < s->n_cols; k++)
    if (!strcmp(s->cols[k].column, val))
      return esk_error_set(err, ESK_EINVAL, "%s:%d: '%s' is a personal column (line %d); the "
                           "subject column cannot be scrubbed too", pc->label, line, val,
                           s->cols[k].line);
  if (!(s->subject = strdup(val))) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  return ESK_OK;
}

/* Section @p s's UPDATE for @p subject, with its replacements. */
static PGresult *exec_scrub(const psec_t *s, PGconn *pg, const char *subject) {
  const char *params[ESK_PCOLS_MAX_COLUMNS + 1] = {subject};
  for (int k = 0; k < s->n_cols; k++) params[k + 1] = s->cols[k].value;
  return PQexecParams(pg, s->sql, s->n_cols + 1, NULL, params, NULL, NULL, 0);
}

int esk_pcols_check(const esk_pcols_t *pc, PGconn *pg, esk_error_t *err) {
  for (size_t i = 0; pc && i < pc->n_secs; i++) {
    const psec_t *s = &pc->secs[i];
    /* run for real in the caller's transaction, which it rolls back: a
     * missing table or column, and a replacement the column's type does
     * not take (text into jsonb), stop start-up */
    PGresult *r = exec_scrub(s, pg, "");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      int code = esk_pg_error_code(pg, r);
      const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
      esk_error_set(err, code == ESK_ERETRY ? ESK_ERETRY : ESK_EINVAL,
                    "%s:%d: [personal %s]: the scrub fails: %s", pc->label, s->line, s->table,
                    msg ? msg : PQerrorMessage(pg));
      PQclear(r);
      return err ? err->code : ESK_EINVAL;
    }
    PQclear(r);
  }
  return ESK_OK;
}

int esk_pcols_forget(const esk_pcols_t *pc, PGconn *pg, const char *subject, esk_error_t *err) {
  for (size_t i = 0; i < pc->n_secs; i++) {
    const psec_t *s = &pc->secs[i];
    PGresult *r = exec_scrub(s, pg, subject);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
      esk_error_set(err, esk_pg_error_code(pg, r), "%s:%d: [personal %s]: scrub: %s", pc->label,
                    s->line, s->table, msg ? msg : PQerrorMessage(pg));
      PQclear(r);
      return err ? err->code : ESK_EFATAL;
    }
    PQclear(r);
  }
  return ESK_OK;
}
