#include "declarative.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/buf.h"
#include "esk/file.h"
#include "esk/pg.h"
#include "personal_columns.h"

#define MAX_DEPTH 16
#define MAX_PARAMS 100
#define MAX_FILE_BYTES ((size_t)1 << 20)

typedef struct param_s {
  int line;
  char *path;
  int n_steps;
  int steps[MAX_DEPTH]; /* field index at each level */
} param_t;

typedef struct sql_s {
  int line;     /* of the section header */
  int sql_line; /* of the first line of sql */
  char *sql;
} sql_t;

typedef struct stmt_s {
  sql_t s;
  char *type;
  param_t params[MAX_PARAMS];
  int n_params;
  char prep[32];
} stmt_t;

typedef struct pending_s {
  const stmt_t *st;
  int32_t partition;
  int64_t offset;
} pending_t;

struct esk_declarative_s {
  char *label, *name, *topic;
  sql_t *migs;
  const char **mig_sql;
  size_t n_migs;
  stmt_t **stmts;
  size_t n_stmts;
  PGconn *prepared_on;
  int prepared_pid;
  PGconn *pipe; /* in pipeline mode during a batch, else NULL */
  pending_t *pending; /* statements sent since the last sync point */
  size_t n_pending, cap_pending;
  esk_pcols_t *pcols; /* the [personal <table>] sections */
};

/* ------------------------------------------------------------- parsing --- */

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\r') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
  return s;
}

static int append(char **sql, const char *line) {
  size_t a = *sql ? strlen(*sql) : 0, b = strlen(line);
  char *n = realloc(*sql, a + b + 2);
  if (!n) return -1;
  memcpy(n + a, line, b);
  n[a + b] = '\n';
  n[a + b + 1] = '\0';
  *sql = n;
  return 0;
}

static avro_schema_t unlink_schema(avro_schema_t s) {
  while (s && is_avro_link(s)) s = avro_schema_link_target(s);
  return s;
}

/* The one non-null branch of a union (a nullable field), else NULL. */
static avro_schema_t union_value_branch(avro_schema_t u) {
  avro_schema_t found = NULL;
  for (size_t i = 0; i < avro_schema_union_size(u); i++) {
    avro_schema_t b = unlink_schema(avro_schema_union_branch(u, (int)i));
    if (is_avro_null(b)) continue;
    if (found) return NULL;
    found = b;
  }
  return found;
}

static int resolve_path(esk_declarative_t *d, const stmt_t *st, const esk_schema_t *schema,
                        param_t *p, esk_error_t *err) {
  avro_schema_t cur = unlink_schema(esk_schema_avro(schema));
  char *copy = strdup(p->path), *save = NULL, *seg;
  char at[256] = "the event";
  int rc = ESK_OK;
  if (!copy) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  p->n_steps = 0;
  for (seg = strtok_r(copy, ".", &save); seg; seg = strtok_r(NULL, ".", &save)) {
    if (is_avro_union(cur) && union_value_branch(cur)) cur = union_value_branch(cur);
    if (!is_avro_record(cur)) {
      rc = esk_error_set(err, ESK_EINVAL,
                         "%s:%d: $%d = %.100s: %s of %s v%d is a %s, not a record: no field '%.100s'",
                         d->label, p->line, (int)(p - st->params) + 1, p->path, at, st->type,
                         esk_schema_version(schema), avro_schema_type_name(cur), seg);
      goto cleanup;
    }
    int idx = avro_schema_record_field_get_index(cur, seg);
    if (idx < 0) {
      char fields[200] = "";
      size_t off = 0;
      for (size_t i = 0; i < avro_schema_record_size(cur) && off < sizeof(fields); i++)
        off += (size_t)snprintf(fields + off, sizeof(fields) - off, "%s%s", i ? ", " : "",
                                avro_schema_record_field_name(cur, (int)i));
      rc = esk_error_set(err, ESK_EINVAL,
                         "%s:%d: $%d = %.100s: %s of %s v%d has no field '%.100s' (fields: %s)",
                         d->label, p->line, (int)(p - st->params) + 1, p->path, at, st->type,
                         esk_schema_version(schema), seg, fields);
      goto cleanup;
    }
    if (p->n_steps == MAX_DEPTH) {
      rc = esk_error_set(err, ESK_EINVAL, "%s:%d: $%d = %.100s: deeper than %d fields", d->label,
                         p->line, (int)(p - st->params) + 1, p->path, MAX_DEPTH);
      goto cleanup;
    }
    p->steps[p->n_steps++] = idx;
    cur = unlink_schema(avro_schema_record_field_get_by_index(cur, idx));
    snprintf(at, sizeof(at), "field '%.*s'", (int)(seg - copy + strlen(seg)), p->path);
  }
  if (!p->n_steps)
    rc = esk_error_set(err, ESK_EINVAL, "%s:%d: $%d: empty path", d->label, p->line,
                       (int)(p - st->params) + 1);
cleanup:
  free(copy);
  return rc;
}

static void stmt_free(stmt_t *st) {
  if (!st) return;
  free(st->s.sql);
  free(st->type);
  for (int i = 0; i < st->n_params; i++) free(st->params[i].path);
  free(st);
}

void esk_declarative_destroy(esk_declarative_t *d) {
  if (!d) return;
  for (size_t i = 0; i < d->n_migs; i++) free(d->migs[i].sql);
  free(d->migs);
  free(d->mig_sql);
  free(d->pending);
  for (size_t i = 0; i < d->n_stmts; i++) stmt_free(d->stmts[i]);
  free(d->stmts);
  esk_pcols_destroy(d->pcols);
  free(d->label);
  free(d->name);
  free(d->topic);
  free(d);
}

enum { IN_HEADER, IN_MIGRATION, IN_PARAMS, IN_SQL, IN_PERSONAL };

/* Ends the open section: its SQL must not be empty; a [personal] section
 * must be complete. */
static int close_section(esk_declarative_t *d, int state, sql_t *s, esk_error_t *err) {
  if (state == IN_HEADER) return ESK_OK;
  if (state == IN_PERSONAL) return esk_pcols_finish(d->pcols, err);
  const char *p = s->sql ? s->sql : "";
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (!*p)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: the section has no SQL", d->label, s->line);
  return ESK_OK;
}

/* Where parse_lines() is in the file. */
typedef struct parser_s {
  esk_declarative_t *d;
  int state, line_no;
  sql_t *cur;  /* the open section's SQL */
  stmt_t *st;  /* the open [on ...] section */
} parser_t;

static int nomem(const parser_t *ps, esk_error_t *err) {
  return esk_error_set(err, ESK_ENOMEM, "%s:%d: out of memory", ps->d->label, ps->line_no);
}

/* Opens [on <type>]: one statement per event type, prepared as esk_decl_<n>. */
static int open_on_section(parser_t *ps, const char *type, esk_error_t *err) {
  esk_declarative_t *d = ps->d;
  for (size_t i = 0; i < d->n_stmts; i++)
    if (!strcmp(d->stmts[i]->type, type))
      return esk_error_set(err, ESK_EINVAL, "%s:%d: a second [on %s] (the first is at line %d)",
                           d->label, ps->line_no, type, d->stmts[i]->s.line);
  stmt_t **ns = realloc(d->stmts, (d->n_stmts + 1) * sizeof(*ns));
  if (!ns) return nomem(ps, err);
  d->stmts = ns;
  stmt_t *st = calloc(1, sizeof(*st));
  if (!st || !(st->type = strdup(type))) {
    stmt_free(st);
    return nomem(ps, err);
  }
  d->stmts[d->n_stmts] = st;
  snprintf(st->prep, sizeof(st->prep), "esk_decl_%zu", d->n_stmts);
  d->n_stmts++;
  st->s.line = ps->line_no;
  ps->st = st;
  ps->cur = &st->s;
  ps->state = IN_PARAMS;
  return ESK_OK;
}

/* Opens [personal <table>] (personal_columns.h). */
static int open_personal_section(parser_t *ps, const char *table, esk_error_t *err) {
  int rc = esk_pcols_section(ps->d->pcols, table, ps->line_no, err);
  if (rc) return rc;
  ps->cur = NULL;
  ps->st = NULL;
  ps->state = IN_PERSONAL;
  return ESK_OK;
}

#define SECTIONS "[migration], [on <EventType>] or [personal <table>]"

/* A section line, @p t trimmed: [migration], [on <EventType>] or [personal <table>]. */
static int parse_section(parser_t *ps, char *t, esk_error_t *err) {
  esk_declarative_t *d = ps->d;
  int rc;
  if ((rc = close_section(d, ps->state, ps->cur, err))) return rc;
  char *end = strchr(t, ']');
  if (!end || *trim(end + 1))
    return esk_error_set(err, ESK_EINVAL, "%s:%d: expected " SECTIONS ", got '%.100s'",
                         d->label, ps->line_no, t);
  *end = '\0';
  char *inner = trim(t + 1);
  if (!strcmp(inner, "migration")) {
    sql_t *m = realloc(d->migs, (d->n_migs + 1) * sizeof(*m));
    if (!m) return nomem(ps, err);
    d->migs = m;
    ps->cur = &d->migs[d->n_migs++];
    *ps->cur = (sql_t){.line = ps->line_no};
    ps->state = IN_MIGRATION;
    return ESK_OK;
  }
  if (!strncmp(inner, "personal", 8) && (!inner[8] || inner[8] == ' ' || inner[8] == '\t'))
    return open_personal_section(ps, trim(inner + 8), err);
  if (strncmp(inner, "on", 2) || (inner[2] != ' ' && inner[2] != '\t'))
    return esk_error_set(err, ESK_EINVAL, "%s:%d: expected " SECTIONS ", got '[%.100s]'",
                         d->label, ps->line_no, inner);
  return open_on_section(ps, trim(inner + 3), err);
}

/* Splits `key = value  # comment` in place into trimmed @p key and @p val.
 * Returns -1 when there is no '='. */
static int split_key_value(char *t, char **key, char **val) {
  char *eq = strchr(t, '=');
  if (!eq) return -1;
  *eq = '\0';
  char *hash = strchr(eq + 1, '#');
  if (hash) *hash = '\0';
  *key = trim(t);
  *val = trim(eq + 1);
  return 0;
}

/* A line of a [personal <table>] section, @p t trimmed and not empty. */
static int parse_personal_line(parser_t *ps, char *t, const esk_schema_set_t *schemas,
                               esk_error_t *err) {
  char *key, *val;
  if (split_key_value(t, &key, &val))
    return esk_error_set(err, ESK_EINVAL,
                         "%s:%d: [personal]: expected subject = <column> or <column> = "
                         "<EventType>.<field>, got '%.100s'",
                         ps->d->label, ps->line_no, t);
  return esk_pcols_line(ps->d->pcols, key, val, ps->line_no, schemas, err);
}

/* A line before the first section, @p t trimmed and not empty: name = ... or
 * topic = ..., each once. */
static int parse_header_line(parser_t *ps, char *t, esk_error_t *err) {
  esk_declarative_t *d = ps->d;
  int line_no = ps->line_no;
  char *key, *val;
  if (split_key_value(t, &key, &val))
    return esk_error_set(err, ESK_EINVAL, "%s:%d: expected key = value or a [section], got '%.100s'",
                         d->label, line_no, t);
  char **slot = !strcmp(key, "name") ? &d->name : !strcmp(key, "topic") ? &d->topic : NULL;
  if (!slot)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: unknown key '%s' (expected name or topic)",
                         d->label, line_no, key);
  if (*slot)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: '%s' given twice", d->label, line_no, key);
  if (!*val)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: '%s' has no value", d->label, line_no, key);
  if (slot == &d->name && !esk_pg_ident_valid(val))
    return esk_error_set(err, ESK_EINVAL,
                         "%s:%d: name '%s': expected a lower-case identifier "
                         "[a-z_][a-z0-9_]*, at most 63 characters",
                         d->label, line_no, val);
  if (!(*slot = strdup(val))) return nomem(ps, err);
  return ESK_OK;
}

/* A parameter line of an [on] section, @p t trimmed: $N = path, numbered from
 * $1 in order. */
static int parse_param(parser_t *ps, char *t, esk_error_t *err) {
  esk_declarative_t *d = ps->d;
  stmt_t *st = ps->st;
  int line_no = ps->line_no;
  char *end = NULL, *eq;
  errno = 0;
  long n = strtol(t + 1, &end, 10);
  eq = end ? strchr(end, '=') : NULL;
  if (errno || end == t + 1 || !eq || *trim(end) != '=')
    return esk_error_set(err, ESK_EINVAL, "%s:%d: expected $%d = <path>, got '%.100s'", d->label,
                         line_no, st->n_params + 1, t);
  if (n != st->n_params + 1)
    return esk_error_set(err, ESK_EINVAL,
                         "%s:%d: parameters are numbered from $1 in order: expected $%d, "
                         "got $%ld",
                         d->label, line_no, st->n_params + 1, n);
  if (st->n_params == MAX_PARAMS)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: more than %d parameters", d->label, line_no,
                         MAX_PARAMS);
  char *path = trim(eq + 1);
  if (!*path || strstr(path, "..") || path[0] == '.' || path[strlen(path) - 1] == '.' ||
      strpbrk(path, " \t"))
    return esk_error_set(err, ESK_EINVAL,
                         "%s:%d: $%ld = '%.100s': expected a path of field names "
                         "separated by dots (e.g. meta.aggregate_id)",
                         d->label, line_no, n, path);
  param_t *p = &st->params[st->n_params++];
  p->line = line_no;
  if (!(p->path = strdup(path))) return nomem(ps, err);
  return ESK_OK;
}

static int parse_lines(esk_declarative_t *d, char *text, const esk_schema_set_t *schemas,
                       esk_error_t *err) {
  parser_t ps = {.d = d, .state = IN_HEADER};
  int rc = ESK_OK;
  for (char *line = text, *next; line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    ps.line_no++;
    char *t = trim(line);
    if (t[0] == '#') { /* a comment; an empty line inside SQL keeps the line numbers */
      if (ps.cur && ps.cur->sql && append(&ps.cur->sql, "")) return nomem(&ps, err);
      continue;
    }
    if (line[0] == '[') {
      if ((rc = parse_section(&ps, t, err))) return rc;
      continue;
    }
    if (ps.state == IN_HEADER) {
      if (*t && (rc = parse_header_line(&ps, t, err))) return rc;
      continue;
    }
    if (ps.state == IN_PERSONAL) {
      if (*t && (rc = parse_personal_line(&ps, t, schemas, err))) return rc;
      continue;
    }
    if (ps.state == IN_PARAMS) {
      if (!*t) continue;
      if (t[0] == '$') {
        if ((rc = parse_param(&ps, t, err))) return rc;
        continue;
      }
      ps.state = IN_SQL; /* the first line of the statement */
    }
    if (!ps.cur->sql) {
      if (!*t) continue; /* blank lines before the SQL */
      ps.cur->sql_line = ps.line_no;
    }
    if (append(&ps.cur->sql, line)) return nomem(&ps, err);
  }
  if ((rc = close_section(d, ps.state, ps.cur, err))) return rc;
  if (!d->name) return esk_error_set(err, ESK_EINVAL, "%s:1: no 'name = ...' line", d->label);
  if (!d->n_stmts)
    return esk_error_set(err, ESK_EINVAL, "%s:%d: no [on <EventType>] section", d->label,
                         ps.line_no);
  return ESK_OK;
}

int esk_declarative_parse(esk_declarative_t **out, const char *label, const char *text,
                          const esk_schema_set_t *schemas, esk_error_t *err) {
  int rc;
  esk_declarative_t *d = calloc(1, sizeof(*d));
  char *copy = strdup(text);
  if (!d || !copy || !(d->label = strdup(label))) {
    free(d);
    free(copy);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  if (strlen(text) > MAX_FILE_BYTES) {
    rc = esk_error_set(err, ESK_EINVAL, "%s: larger than %zu bytes", label, MAX_FILE_BYTES);
    goto fail;
  }
  if ((rc = esk_pcols_new(&d->pcols, label, err)) || (rc = parse_lines(d, copy, schemas, err)))
    goto fail;
  for (size_t i = 0; i < d->n_stmts; i++) {
    stmt_t *st = d->stmts[i];
    const esk_schema_t *s = esk_schema_set_latest(schemas, st->type);
    if (!s || !is_avro_record(unlink_schema(esk_schema_avro(s)))) {
      rc = esk_error_set(err, ESK_EINVAL, "%s:%d: [on %s]: no event type '%s' in the schemas",
                         label, st->s.line, st->type, st->type);
      goto fail;
    }
    for (int k = 0; k < st->n_params; k++)
      if ((rc = resolve_path(d, st, s, &st->params[k], err))) goto fail;
  }
  if (!(d->mig_sql = calloc(d->n_migs + 1, sizeof(*d->mig_sql)))) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < d->n_migs; i++) d->mig_sql[i] = d->migs[i].sql;
  free(copy);
  *out = d;
  return ESK_OK;
fail:
  free(copy);
  esk_declarative_destroy(d);
  return rc;
}

int esk_declarative_load(esk_declarative_t **out, const char *path,
                         const esk_schema_set_t *schemas, esk_error_t *err) {
  char *text;
  size_t n;
  int rc = esk_file_read_text(&text, &n, path, MAX_FILE_BYTES, path, err);
  if (rc) return rc;
  rc = esk_declarative_parse(out, path, text, schemas, err);
  free(text);
  return rc;
}

const char *esk_declarative_name(const esk_declarative_t *d) { return d->name; }
const char *esk_declarative_topic(const esk_declarative_t *d) { return d->topic; }
const esk_pcols_t *esk_declarative_personal(const esk_declarative_t *d) { return d->pcols; }

/* ----------------------------------------------------------------- SQL --- */

/* The file line PostgreSQL's error position points at in @p s. */
static int error_line(const sql_t *s, const PGresult *r) {
  const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
  int line = s->sql_line;
  long p = pos ? strtol(pos, NULL, 10) : 0;
  for (long i = 0; i < p - 1 && s->sql[i]; i++)
    if (s->sql[i] == '\n') line++;
  return line;
}

static int sql_error(const esk_declarative_t *d, PGconn *pg, PGresult *r, const sql_t *s,
                     const char *what, esk_error_t *err) {
  int code = esk_pg_error_code(pg, r);
  const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  esk_error_set(err, code == ESK_ERETRY ? ESK_ERETRY : ESK_EINVAL, "%s:%d: %s: %s (SQLSTATE %s)",
                d->label, error_line(s, r), what, msg ? msg : PQerrorMessage(pg),
                state ? state : "none");
  PQclear(r);
  return err ? err->code : ESK_EINVAL;
}

static int exec_ok(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  return ok;
}

int esk_declarative_check_sql(esk_declarative_t *d, PGconn *pg, const char *key,
                              esk_error_t *err) {
  char what[128];
  int rc = ESK_OK;
  int64_t applied = 0;
  PGresult *r = NULL;
  const char *params[] = {key ? key : d->name};
  if ((rc = esk_pg_exec(NULL, pg, "begin", "begin", 0, NULL, err))) return rc;
  if ((rc = esk_pg_exec(&r, pg, "read applied migrations",
                        "select case when to_regclass('esk_projection_migrations') is null "
                        "then 0 else 1 end",
                        0, NULL, err)))
    goto cleanup;
  int has_store = PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 0), "1");
  PQclear(r);
  r = NULL;
  if (has_store) {
    if ((rc = esk_pg_exec(&r, pg, "read applied migrations",
                          "select coalesce(max(version), 0) from esk_projection_migrations "
                          "where projection = $1",
                          1, params, err)))
      goto cleanup;
    applied = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    r = NULL;
  }
  for (size_t i = (size_t)applied; i < d->n_migs; i++) {
    r = PQexec(pg, d->migs[i].sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      snprintf(what, sizeof(what), "[migration] %zu fails", i + 1);
      rc = sql_error(d, pg, r, &d->migs[i], what, err);
      r = NULL;
      goto cleanup;
    }
    PQclear(r);
  }
  r = NULL;
  for (size_t i = 0; i < d->n_stmts; i++) {
    stmt_t *st = d->stmts[i];
    snprintf(what, sizeof(what), "[on %s]: the statement does not prepare", st->type);
    r = PQprepare(pg, "", st->s.sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      rc = sql_error(d, pg, r, &st->s, what, err);
      r = NULL;
      goto cleanup;
    }
    PQclear(r);
    r = PQdescribePrepared(pg, "");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      rc = sql_error(d, pg, r, &st->s, what, err);
      r = NULL;
      goto cleanup;
    }
    int used = PQnparams(r);
    PQclear(r);
    r = NULL;
    if (used != st->n_params) {
      rc = esk_error_set(err, ESK_EINVAL,
                         "%s:%d: [on %s]: the statement uses %d parameter%s, %d declared "
                         "($1 = ... lines)",
                         d->label, st->s.sql_line, st->type, used, used == 1 ? "" : "s",
                         st->n_params);
      goto cleanup;
    }
  }
  rc = esk_pcols_check(d->pcols, pg, err);
cleanup:
  PQclear(r);
  if (!exec_ok(pg, "rollback") && rc == ESK_OK)
    rc = esk_error_set(err, ESK_ERETRY, "rollback: %s", PQerrorMessage(pg));
  return rc;
}

/* ---------------------------------------------------------- projection --- */

/* One parameter as text (NULL for a null), into @p buf or @p *json (freed by the caller). */
static int param_text(const avro_value_t *root, const param_t *p, char *buf, size_t size,
                      char **json, const char **out, esk_error_t *err) {
  avro_value_t v = *root, next;
  *out = NULL;
  for (int i = 0;; i++) {
    if (avro_value_get_type(&v) == AVRO_UNION) {
      if (avro_value_get_current_branch(&v, &next)) goto bad;
      v = next;
    }
    if (avro_value_get_type(&v) == AVRO_NULL) return ESK_OK;
    if (i == p->n_steps) break;
    if (avro_value_get_by_index(&v, (size_t)p->steps[i], &next, NULL)) goto bad;
    v = next;
  }
  const char *s = NULL;
  size_t n = 0;
  int32_t i32;
  int64_t i64;
  double dbl;
  float flt;
  int b;
  switch (avro_value_get_type(&v)) {
  case AVRO_STRING:
    if (avro_value_get_string(&v, &s, &n)) goto bad;
    *out = s;
    return ESK_OK;
  case AVRO_INT64:
    if (avro_value_get_long(&v, &i64)) goto bad;
    snprintf(buf, size, "%" PRId64, i64);
    break;
  case AVRO_INT32:
    if (avro_value_get_int(&v, &i32)) goto bad;
    snprintf(buf, size, "%" PRId32, i32);
    break;
  case AVRO_DOUBLE:
    if (avro_value_get_double(&v, &dbl)) goto bad;
    snprintf(buf, size, "%.17g", dbl);
    break;
  case AVRO_FLOAT:
    if (avro_value_get_float(&v, &flt)) goto bad;
    snprintf(buf, size, "%.9g", (double)flt);
    break;
  case AVRO_BOOLEAN:
    if (avro_value_get_boolean(&v, &b)) goto bad;
    snprintf(buf, size, "%s", b ? "true" : "false");
    break;
  case AVRO_ENUM: {
    avro_schema_t es = avro_value_get_schema(&v);
    if (avro_value_get_enum(&v, &i32) || !(s = avro_schema_enum_get(es, i32))) goto bad;
    *out = s;
    return ESK_OK;
  }
  default: { /* records, arrays, maps, bytes, fixed: as JSON */
    int rc = esk_value_to_json(&v, json, err);
    if (rc) return rc == ESK_ENOMEM ? rc : ESK_EPOISON;
    *out = *json;
    return ESK_OK;
  }
  }
  *out = buf;
  return ESK_OK;
bad:
  return esk_error_set(err, ESK_EPOISON, "cannot read %s of the event", p->path);
}

static int prepare_all(esk_declarative_t *d, PGconn *pg, esk_error_t *err) {
  for (size_t i = 0; i < d->n_stmts; i++) {
    stmt_t *st = d->stmts[i];
    PGresult *r = PQprepare(pg, st->prep, st->s.sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      int code = esk_pg_error_code(pg, r);
      esk_error_set(err, code == ESK_EPOISON ? ESK_EFATAL : code, "%s:%d: [on %s]: prepare: %s",
                    d->label, error_line(&st->s, r), st->type, PQerrorMessage(pg));
      PQclear(r);
      return err ? err->code : ESK_EFATAL;
    }
    PQclear(r);
  }
  d->prepared_on = pg;
  d->prepared_pid = PQbackendPID(pg);
  return ESK_OK;
}

/* Statements are sent in pipeline mode and their results read at a sync
 * point every SYNC_EVERY statements and at batch_end(): one round trip per
 * SYNC_EVERY events instead of one per event. The bound keeps the results
 * the server writes back small enough never to fill the socket buffers
 * while libpq is still writing (the deadlock libpq's documentation warns of). */
#define SYNC_EVERY 256

/* Reads the results of the statements sent since the last sync point; the
 * first failure is the batch's error (the transaction is then aborted). With
 * @p leave, ends pipeline mode. */
static int pipeline_drain(esk_declarative_t *d, int leave, esk_error_t *err) {
  PGconn *pg = d->pipe;
  int rc = ESK_OK, nulls = 0;
  size_t i = 0;
  if (!pg) return ESK_OK;
  if (d->n_pending && PQpipelineSync(pg) != 1) {
    rc = esk_error_set(err, ESK_ERETRY, "%s: pipeline sync: %s", d->label, PQerrorMessage(pg));
    goto done;
  }
  while (d->n_pending) {
    PGresult *r = PQgetResult(pg);
    if (!r) {
      if (PQstatus(pg) != CONNECTION_OK || ++nulls > 1) {
        if (rc == ESK_OK)
          rc = esk_error_set(err, ESK_ERETRY, "%s: pipeline: connection lost: %s", d->label,
                             PQerrorMessage(pg));
        break;
      }
      continue;
    }
    nulls = 0;
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      break;
    }
    if (s == PGRES_FATAL_ERROR && rc == ESK_OK && i < d->n_pending) {
      const pending_t *pd = &d->pending[i];
      const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
      const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      rc = esk_error_set(err, esk_pg_error_code(pg, r),
                         "%s:%d: [on %s] at partition %" PRId32 " offset %" PRId64
                         ": %s (SQLSTATE %s)",
                         d->label, pd->st->s.sql_line, pd->st->type, pd->partition, pd->offset,
                         msg ? msg : PQerrorMessage(pg), state ? state : "none");
    }
    i++;
    PQclear(r);
  }
done:
  d->n_pending = 0;
  if (leave) {
    if (PQexitPipelineMode(pg) != 1 && rc == ESK_OK)
      rc = esk_error_set(err, ESK_ERETRY, "%s: leave pipeline mode: %s", d->label,
                         PQerrorMessage(pg));
    d->pipe = NULL;
  }
  return rc;
}

static int apply_cb(void *self, PGconn *pg, const esk_event_t *ev, esk_error_t *err) {
  esk_declarative_t *d = self;
  stmt_t *st = NULL;
  int rc = ESK_OK;
  for (size_t i = 0; i < d->n_stmts && !st; i++)
    if (!strcmp(d->stmts[i]->type, ev->type)) st = d->stmts[i];
  if (!st) return ESK_OK; /* a type this projection does not handle */
  if (!d->pipe) {
    if ((d->prepared_on != pg || d->prepared_pid != PQbackendPID(pg)) &&
        (rc = prepare_all(d, pg, err)))
      return rc;
    if (PQenterPipelineMode(pg) != 1)
      return esk_error_set(err, ESK_ERETRY, "%s: enter pipeline mode: %s", d->label,
                           PQerrorMessage(pg));
    d->pipe = pg;
  }
  pending_t *np = esk_array_grow(d->pending, &d->cap_pending, d->n_pending + 1, sizeof(*np), 64);
  if (!np) {
    pipeline_drain(d, 1, NULL);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  d->pending = np;
  const char *values[MAX_PARAMS];
  char bufs[MAX_PARAMS][40];
  char *json[MAX_PARAMS] = {0};
  if (!ev->value)
    rc = esk_error_set(err, ESK_EPOISON, "%s: [on %s]: the event has no decoded value", d->label,
                       st->type);
  for (int i = 0; i < st->n_params && !rc; i++)
    rc = param_text(ev->value, &st->params[i], bufs[i], sizeof(bufs[i]), &json[i], &values[i], err);
  if (rc == ESK_OK) {
    if (PQsendQueryPrepared(pg, st->prep, st->n_params, values, NULL, NULL, 0) != 1)
      rc = esk_error_set(err, ESK_ERETRY, "%s: send [on %s]: %s", d->label, st->type,
                         PQerrorMessage(pg));
    else
      d->pending[d->n_pending++] = (pending_t){st, ev->partition, ev->offset};
  }
  for (int i = 0; i < st->n_params; i++) free(json[i]);
  if (rc != ESK_OK) {
    pipeline_drain(d, 1, NULL); /* back to normal mode for the runtime's rollback */
    return rc;
  }
  if (d->n_pending >= SYNC_EVERY && (rc = pipeline_drain(d, 0, err))) pipeline_drain(d, 1, NULL);
  return rc;
}

static int batch_end_cb(void *self, PGconn *pg, esk_error_t *err) {
  (void)pg;
  return pipeline_drain(self, 1, err);
}

/* The runtime rolled back (its rollback fails while the connection is in
 * pipeline mode): end pipeline mode, then roll back here. */
static void batch_abort_cb(void *self) {
  esk_declarative_t *d = self;
  PGconn *pg = d->pipe;
  if (!pg) return;
  pipeline_drain(d, 1, NULL);
  if (PQstatus(pg) == CONNECTION_OK) PQclear(PQexec(pg, "rollback"));
}

static int check_cb(void *self, PGconn *pg, const char *key, esk_error_t *err) {
  return esk_declarative_check_sql(self, pg, key, err);
}

static int forget_cb(void *self, PGconn *pg, const char *subject,
                     const esk_personal_mark_t *marks, size_t n_marks, esk_error_t *err) {
  (void)marks, (void)n_marks; /* the sections resolved their replacements at load */
  return esk_pcols_forget(((esk_declarative_t *)self)->pcols, pg, subject, err);
}

esk_projection_t esk_declarative_projection(esk_declarative_t *d) {
  return (esk_projection_t){.name = d->name,
                            .migrations = d->mig_sql,
                            .n_migrations = d->n_migs,
                            .apply = apply_cb,
                            .batch_end = batch_end_cb,
                            .batch_abort = batch_abort_cb,
                            .self = d,
                            .check = check_cb,
                            .forget = esk_pcols_count(d->pcols) ? forget_cb : NULL};
}
