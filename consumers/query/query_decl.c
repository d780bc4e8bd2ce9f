/* Declared queries (see query_decl.h). */
#include "query_decl.h"

#include "esk/file.h"
#include "esk/text.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_MAX ((size_t)1 << 20)

static int is_ident(const char *s, size_t n) {
  if (n == 0 || n > ESK_QUERY_NAME_MAX) return 0;
  if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) return 0;
  for (size_t i = 1; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
  return 1;
}

int esk_query_decl_is_name(const char *s) { return is_ident(s, strlen(s)); }

static int is_literal(const char *s, size_t n) {
  if (n == 0 || n > ESK_QUERY_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
          s[i] == '-' || (s[i] == '.' && n > 2)))
      return 0;
  return 1;
}

static void trim(const char **s, size_t *n) {
  while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r')) (*n)--;
}

#define BAD(...) esk_error_set(err, ESK_EINVAL, __VA_ARGS__)

static int set_path(esk_query_decl_t *d, const char *v, size_t n, const char *origin, int line,
                    esk_error_t *err) {
  if (n >= sizeof(d->path) || n < 2 || v[0] != '/')
    return BAD("%s:%d: path must start with / and be shorter than %zu", origin, line,
               sizeof(d->path));
  memcpy(d->path, v, n);
  d->path[n] = '\0';
  d->n_segments = 0;
  const char *p = d->path + 1;
  while (*p) {
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (d->n_segments == ESK_QUERY_MAX_SEGMENTS)
      return BAD("%s:%d: path has more than %d segments", origin, line, ESK_QUERY_MAX_SEGMENTS);
    size_t i = d->n_segments++;
    if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
      if (!is_ident(p + 1, len - 2))
        return BAD("%s:%d: path parameter '%.*s' is not a name [a-z_][a-z0-9_]*", origin, line,
                   (int)len, p);
      for (size_t k = 0; k < i; k++)
        if (d->is_param[k] && strlen(d->segment[k]) == len - 2 &&
            !memcmp(d->segment[k], p + 1, len - 2))
          return BAD("%s:%d: path parameter '%.*s' appears twice", origin, line, (int)len, p);
      d->is_param[i] = 1;
      memcpy(d->segment[i], p + 1, len - 2);
      d->segment[i][len - 2] = '\0';
    } else {
      if (!is_literal(p, len))
        return BAD("%s:%d: path segment '%.*s' is neither a literal [a-z0-9_.-] nor a {param}",
                   origin, line, (int)len, p);
      d->is_param[i] = 0;
      memcpy(d->segment[i], p, len);
      d->segment[i][len] = '\0';
    }
    if (!end) break;
    p = end + 1;
    if (!*p) return BAD("%s:%d: path ends with /", origin, line);
  }
  return ESK_OK;
}

static int set_arg(esk_query_decl_t *d, const char *v, size_t n, const char *origin, int line,
                   esk_error_t *err) {
  char buf[256], name[ESK_QUERY_NAME_MAX + 2];
  long long mn, mx, df;
  int used = 0;
  if (n >= sizeof(buf)) return BAD("%s:%d: int_arg too long", origin, line);
  memcpy(buf, v, n);
  buf[n] = '\0';
  if (sscanf(buf, "%64s %lld %lld %lld %n", name, &mn, &mx, &df, &used) != 4 || buf[used] ||
      !is_ident(name, strlen(name)) || mn > mx || df < mn || df > mx)
    return BAD("%s:%d: int_arg '%s': expected 'name min max default' with min <= default <= max",
               origin, line, buf);
  if (d->n_args == ESK_QUERY_MAX_ARGS)
    return BAD("%s:%d: more than %d int_arg lines", origin, line, ESK_QUERY_MAX_ARGS);
  size_t len = strlen(name); /* a copy of known length: gcc -O0 with ASan saw a truncation */
  if (len > ESK_QUERY_NAME_MAX)
    return BAD("%s:%d: int_arg name '%s' is longer than %d characters", origin, line, name,
               ESK_QUERY_NAME_MAX);
  esk_query_arg_t *a = &d->args[d->n_args++];
  memcpy(a->name, name, len + 1);
  a->min = mn;
  a->max = mx;
  a->def = df;
  return ESK_OK;
}

/* The next item of the comma-separated list at *@p v (*@p n bytes left),
 * trimmed, into @p item / @p len. @returns 0 when the list is done. */
static int next_item(const char **v, size_t *n, const char **item, size_t *len) {
  if (!*v) return 0;
  const char *comma = memchr(*v, ',', *n);
  size_t l = comma ? (size_t)(comma - *v) : *n;
  *item = *v;
  *len = l;
  trim(item, len);
  if (comma) {
    *n -= l + 1;
    *v = comma + 1;
  } else {
    *v = NULL;
  }
  return 1;
}

/* cursor = a, b: the keyset columns, at most ESK_QUERY_MAX_CURSOR. */
static int set_cursor(esk_query_decl_t *d, const char *v, size_t n, const char *origin, int line,
                      esk_error_t *err) {
  const char *name;
  size_t nl;
  d->n_cursor = 0;
  if (!n) v = NULL;
  while (next_item(&v, &n, &name, &nl)) {
    if (!is_ident(name, nl))
      return BAD("%s:%d: cursor column '%.*s' is not a name [a-z_][a-z0-9_]*", origin, line,
                 (int)nl, name);
    if (d->n_cursor == ESK_QUERY_MAX_CURSOR)
      return BAD("%s:%d: more than %d cursor columns", origin, line, ESK_QUERY_MAX_CURSOR);
    memcpy(d->cursor[d->n_cursor], name, nl);
    d->cursor[d->n_cursor++][nl] = '\0';
  }
  return ESK_OK;
}

/* The source of param @p name: a path parameter, an int_arg or cursor.<col>;
 * 1 when found. */
static int param_source(const esk_query_decl_t *d, const char *name, size_t nl, int *src) {
  for (size_t i = 0; i < d->n_segments; i++)
    if (d->is_param[i] && strlen(d->segment[i]) == nl && !memcmp(d->segment[i], name, nl))
      return *src = (int)i, 1;
  for (size_t i = 0; i < d->n_args; i++)
    if (strlen(d->args[i].name) == nl && !memcmp(d->args[i].name, name, nl))
      return *src = -1 - (int)i, 1;
  if (nl > 7 && !memcmp(name, "cursor.", 7))
    for (size_t i = 0; i < d->n_cursor; i++)
      if (strlen(d->cursor[i]) == nl - 7 && !memcmp(d->cursor[i], name + 7, nl - 7))
        return *src = ESK_QUERY_SRC_CURSOR(i), 1;
  return 0;
}

/* params = a, b: each a path parameter, an int_arg or cursor.<col>, in $ order. */
static int set_params(esk_query_decl_t *d, const char *v, size_t n, const char *origin, int line,
                      esk_error_t *err) {
  const char *name;
  size_t nl;
  d->n_params = 0;
  if (!n) v = NULL;
  while (next_item(&v, &n, &name, &nl)) {
    if (d->n_params == ESK_QUERY_MAX_PARAMS)
      return BAD("%s:%d: more than %d params", origin, line, ESK_QUERY_MAX_PARAMS);
    int src = 0;
    if (!param_source(d, name, nl, &src))
      return BAD("%s:%d: param '%.*s' is neither a {parameter} of the path, an int_arg nor "
                 "cursor.<column> (declare path, int_arg and cursor before params)", origin,
                 line, (int)nl, name);
    d->param_src[d->n_params++] = src;
  }
  return ESK_OK;
}

static int finish(const esk_query_decl_t *d, const char *origin, esk_error_t *err) {
  if (!d->path[0]) return BAD("%s: query %s has no path", origin, d->name);
  if (!d->projection[0]) return BAD("%s: query %s has no projection", origin, d->name);
  if (!d->sql[0]) return BAD("%s: query %s has no sql", origin, d->name);
  /* every $i of the SQL is declared, and no more are declared than used */
  size_t highest = 0;
  for (const char *p = d->sql; (p = strchr(p, '$'));) {
    char *end;
    long k = strtol(++p, &end, 10);
    if (end != p && k > 0 && (size_t)k > highest) highest = (size_t)k;
  }
  if (highest != d->n_params)
    return BAD("%s: query %s: its sql uses $1..$%zu but params names %zu", origin, d->name,
               highest, d->n_params);
  if (d->n_cursor && !d->many)
    return BAD("%s: query %s: a cursor needs result = many", origin, d->name);
  for (size_t c = 0; c < d->n_cursor; c++) {
    size_t k = 0;
    while (k < d->n_params && d->param_src[k] != ESK_QUERY_SRC_CURSOR(c)) k++;
    if (k == d->n_params)
      return BAD("%s: query %s: params does not use cursor.%s, so a page could not go on from "
                 "the last one", origin, d->name, d->cursor[c]);
  }
  return ESK_OK;
}

int esk_query_decl_parse(esk_query_decl_t **decls, size_t *n, const char *text, size_t len,
                         const char *origin, esk_error_t *err) {
  esk_query_decl_t *cur = NULL;
  int line = 0, rc = ESK_OK, in_sql = 0;
  if (memchr(text, '\0', len)) return BAD("%s: holds a NUL byte", origin);
  size_t start_n = *n;
  for (size_t off = 0; off < len && !rc;) {
    const char *l = text + off, *nl = memchr(l, '\n', len - off);
    size_t ll = nl ? (size_t)(nl - l) : len - off;
    off += ll + 1;
    line++;
    const char *s = l;
    size_t sn = ll;
    int indented = sn && (s[0] == ' ' || s[0] == '\t');
    trim(&s, &sn);
    if (in_sql && indented && sn && s[0] != '#') { /* the SQL goes on */
      size_t have = strlen(cur->sql);
      if (have + 1 + sn >= sizeof(cur->sql)) {
        rc = BAD("%s:%d: sql longer than %d bytes", origin, line, ESK_QUERY_SQL_MAX - 1);
        break;
      }
      cur->sql[have] = '\n';
      memcpy(cur->sql + have + 1, s, sn);
      cur->sql[have + 1 + sn] = '\0';
      continue;
    }
    in_sql = 0;
    if (!sn || s[0] == '#') continue;
    if (s[0] == '[') {
      if (cur && (rc = finish(cur, origin, err))) break;
      if (sn < 9 || strncmp(s, "[query ", 7) || s[sn - 1] != ']' || !is_ident(s + 7, sn - 8)) {
        rc = BAD("%s:%d: expected [query <name>] with a name [a-z_][a-z0-9_]*", origin, line);
        break;
      }
      for (size_t i = 0; i < *n; i++)
        if (strlen((*decls)[i].name) == sn - 8 && !memcmp((*decls)[i].name, s + 7, sn - 8)) {
          rc = BAD("%s:%d: query %.*s is declared twice", origin, line, (int)(sn - 8), s + 7);
          break;
        }
      if (rc) break;
      esk_query_decl_t *grown = realloc(*decls, (*n + 1) * sizeof(**decls));
      if (!grown) {
        rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
        break;
      }
      *decls = grown;
      cur = &grown[(*n)++];
      memset(cur, 0, sizeof(*cur));
      memcpy(cur->name, s + 7, sn - 8);
      continue;
    }
    const char *eq = memchr(s, '=', sn);
    if (!cur || !eq) {
      rc = BAD("%s:%d: expected key = value inside a [query <name>] section", origin, line);
      break;
    }
    const char *k = s, *v = eq + 1;
    size_t kn = (size_t)(eq - s), vn = sn - kn - 1;
    trim(&k, &kn);
    trim(&v, &vn);
#define KEY(lit) (kn == sizeof(lit) - 1 && !memcmp(k, lit, kn))
    if (KEY("path")) {
      rc = set_path(cur, v, vn, origin, line, err);
    } else if (KEY("projection")) {
      if (!is_ident(v, vn))
        rc = BAD("%s:%d: projection '%.*s' is not a name [a-z_][a-z0-9_]*", origin, line,
                 (int)vn, v);
      else
        memcpy(cur->projection, v, vn);
    } else if (KEY("result")) {
      if (vn == 3 && !memcmp(v, "one", 3)) cur->many = 0;
      else if (vn == 4 && !memcmp(v, "many", 4)) cur->many = 1;
      else rc = BAD("%s:%d: result must be one or many", origin, line);
    } else if (KEY("int_arg")) {
      rc = set_arg(cur, v, vn, origin, line, err);
    } else if (KEY("cursor")) {
      rc = set_cursor(cur, v, vn, origin, line, err);
    } else if (KEY("params")) {
      rc = set_params(cur, v, vn, origin, line, err);
    } else if (KEY("sql")) {
      if (vn >= sizeof(cur->sql)) {
        rc = BAD("%s:%d: sql longer than %d bytes", origin, line, ESK_QUERY_SQL_MAX - 1);
      } else {
        memcpy(cur->sql, v, vn);
        cur->sql[vn] = '\0';
        in_sql = 1;
      }
    } else {
      rc = BAD("%s:%d: unknown key '%.*s' (path, projection, result, int_arg, cursor, params, sql)",
               origin, line, (int)kn, k);
    }
#undef KEY
  }
  if (!rc && cur) rc = finish(cur, origin, err);
  if (!rc && *n == start_n) rc = BAD("%s: declares no [query <name>]", origin);
  if (rc) *n = start_n;
  return rc;
}

int esk_query_decl_load(esk_query_decl_t **decls, size_t *n, const char *path, esk_error_t *err) {
  char what[600], *text;
  size_t len;
  snprintf(what, sizeof(what), "query file %s", path);
  int rc = esk_file_read_text(&text, &len, path, FILE_MAX, what, err);
  if (rc) return rc;
  rc = esk_query_decl_parse(decls, n, text, len, path, err);
  free(text);
  return rc;
}

int esk_query_decl_match(const esk_query_decl_t *d, const char *path, char *buf, size_t size,
                         const char *values[ESK_QUERY_MAX_SEGMENTS]) {
  size_t len = strlen(path);
  if (len == 0 || path[0] != '/' || len >= size) return 0;
  memcpy(buf, path + 1, len);
  char *p = buf;
  for (size_t i = 0; i < d->n_segments; i++) {
    char *end = strchr(p, '/');
    if (i + 1 < d->n_segments ? !end : end != NULL) return 0;
    if (end) *end = '\0';
    if (!*p || esk_text_pct_decode(p) != strlen(p) || !*p) return 0;
    if (!d->is_param[i] && strcmp(p, d->segment[i])) return 0;
    values[i] = p;
    if (end) p = end + 1;
  }
  return d->n_segments > 0;
}

/* ------------------------------------------------------------ cursors --- */

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

int esk_query_cursor_encode(const char *last, char *out, size_t size, esk_error_t *err) {
  size_t n = strlen(last);
  if (sodium_base64_encoded_len(n, B64) > size || sodium_base64_encoded_len(n, B64) >
      ESK_QUERY_CURSOR_MAX + 1)
    return BAD("the last row's cursor columns (%zu bytes) make a cursor over %d characters", n,
               ESK_QUERY_CURSOR_MAX);
  sodium_bin2base64(out, size, (const unsigned char *)last, n, B64);
  return ESK_OK;
}

/* One cursor value as PostgreSQL's text form. */
static int cursor_value(const json_t *v, char *out, int *is_null, size_t c, esk_error_t *err) {
  *is_null = json_is_null(v);
  if (*is_null) return ESK_OK;
  const char *text = NULL;
  char num[64];
  if (json_is_string(v)) { /* jansson refuses \u0000 without JSON_ALLOW_NUL */
    text = json_string_value(v);
  } else if (json_is_integer(v)) {
    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    text = num;
  } else if (json_is_real(v)) {
    snprintf(num, sizeof(num), "%.17g", json_real_value(v));
    text = num;
  } else {
    return BAD("cursor value %zu is not a string, a number or null", c + 1);
  }
  size_t n = strlen(text);
  if (n > ESK_QUERY_CURSOR_VALUE_MAX)
    return BAD("cursor value %zu is longer than %d bytes", c + 1, ESK_QUERY_CURSOR_VALUE_MAX);
  memcpy(out, text, n + 1);
  return ESK_OK;
}

int esk_query_cursor_decode(const esk_query_decl_t *d, const char *cursor,
                            char values[ESK_QUERY_MAX_CURSOR][ESK_QUERY_CURSOR_VALUE_MAX + 1],
                            int is_null[ESK_QUERY_MAX_CURSOR], esk_error_t *err) {
  unsigned char raw[ESK_QUERY_CURSOR_MAX];
  size_t n = 0, len = strlen(cursor);
  if (!d->n_cursor) return BAD("query %s takes no cursor", d->name);
  if (len > ESK_QUERY_CURSOR_MAX)
    return BAD("the cursor is longer than %d characters", ESK_QUERY_CURSOR_MAX);
  if (sodium_base642bin(raw, sizeof(raw), cursor, len, NULL, &n, NULL, B64) || n == 0)
    return BAD("the cursor is not one this query gave (not base64url)");
  json_error_t je;
  json_t *a = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, &je);
  int rc = ESK_OK;
  if (!a || !json_is_array(a) || json_array_size(a) != d->n_cursor)
    rc = BAD("the cursor is not one this query gave (expected %zu values)", d->n_cursor);
  for (size_t c = 0; !rc && c < d->n_cursor; c++)
    rc = cursor_value(json_array_get(a, c), values[c], &is_null[c], c, err);
  json_decref(a);
  return rc;
}
