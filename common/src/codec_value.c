/* Generic values <-> JSON, in the shape of Avro's default values (a union is
 * the bare value of its branch; bytes and fixed are strings of code points
 * 0..255). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "esk/codec.h"
#include "esk/text.h"

/* Decodes a UTF-8 string of code points <= 255 into bytes, in place. Returns
 * the length, or -1 if a code point is above 255 or the UTF-8 is bad. */
static long latin1_from_utf8(const char *s, size_t len, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      out[o++] = (char)c;
    } else if ((c & 0xe0) == 0xc0 && i + 1 < len && c <= 0xc3) {
      out[o++] = (char)(((c & 0x1f) << 6) | ((unsigned char)s[++i] & 0x3f));
    } else {
      return -1;
    }
  }
  return (long)o;
}

static int bytes_json_ok(json_t *j, long want) {
  if (!json_is_string(j)) return 0;
  size_t len = json_string_length(j);
  char *tmp = malloc(len + 1);
  if (!tmp) return 0;
  long n = latin1_from_utf8(json_string_value(j), len, tmp);
  free(tmp);
  return n >= 0 && (want < 0 || n == want);
}

int esk_json_matches(const esk_node_t *n, json_t *j, int is_default) {
  switch (n->kind) {
  case EN_NULL: return json_is_null(j);
  case EN_BOOLEAN: return json_is_boolean(j);
  case EN_INT:
    return json_is_integer(j) && json_integer_value(j) >= INT32_MIN &&
           json_integer_value(j) <= INT32_MAX;
  case EN_LONG: return json_is_integer(j);
  case EN_FLOAT:
  case EN_DOUBLE: return json_is_number(j);
  case EN_STRING: return json_is_string(j);
  case EN_BYTES: return bytes_json_ok(j, -1);
  case EN_FIXED: return bytes_json_ok(j, (long)n->size);
  case EN_ENUM:
    if (!json_is_string(j)) return 0;
    for (size_t i = 0; i < n->nsymbols; i++)
      if (!strcmp(n->symbols[i], json_string_value(j))) return 1;
    return 0;
  case EN_ARRAY:
    if (!json_is_array(j)) return 0;
    for (size_t i = 0; i < json_array_size(j); i++)
      if (!esk_json_matches(n->items, json_array_get(j, i), 0)) return 0;
    return 1;
  case EN_MAP: {
    const char *k;
    json_t *v;
    if (!json_is_object(j)) return 0;
    json_object_foreach(j, k, v) if (!esk_json_matches(n->items, v, 0)) return 0;
    return 1;
  }
  case EN_RECORD: {
    if (!json_is_object(j)) return 0;
    size_t known = 0;
    for (size_t i = 0; i < n->nfields; i++) {
      json_t *f = json_object_get(j, n->fields[i].name);
      if (f) {
        known++;
        if (!esk_json_matches(n->fields[i].type, f, 0)) return 0;
      } else if (!n->fields[i].dflt) {
        return 0;
      }
    }
    return known == json_object_size(j);
  }
  case EN_UNION:
    if (is_default) return n->nbranches && esk_json_matches(n->branches[0], j, 1);
    for (size_t i = 0; i < n->nbranches; i++)
      if (esk_json_matches(n->branches[i], j, 0)) return 1;
    return 0;
  }
  return 0;
}

#define BAD(what) \
  esk_error_set(err, ESK_EINVAL, "%s: expected %s", *path ? path : "value", what)

static int set_bytes(avro_value_t *v, json_t *j, int fixed, const char *path, esk_error_t *err) {
  size_t len = json_string_length(j);
  char *tmp = malloc(len + 1);
  if (!tmp) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  long n = latin1_from_utf8(json_string_value(j), len, tmp);
  int rc = ESK_OK;
  if (n < 0)
    rc = BAD("a string of code points 0..255");
  else if (fixed ? avro_value_set_fixed(v, tmp, (size_t)n) : avro_value_set_bytes(v, tmp, (size_t)n))
    rc = esk_error_set(err, ESK_EINVAL, "%s: %s", path, avro_strerror());
  free(tmp);
  return rc;
}

static int set_enum(const esk_node_t *n, avro_value_t *v, json_t *j, const char *path,
                    esk_error_t *err) {
  for (size_t i = 0; json_is_string(j) && i < n->nsymbols; i++) {
    if (!strcmp(n->symbols[i], json_string_value(j))) {
      avro_value_set_enum(v, (int)i);
      return ESK_OK;
    }
  }
  return BAD("a symbol of the enum");
}

static int set_array(const esk_node_t *n, avro_value_t *v, json_t *j, const char *path,
                     esk_error_t *err) {
  char sub[512];
  if (!json_is_array(j)) return BAD("an array");
  avro_value_reset(v);
  for (size_t i = 0; i < json_array_size(j); i++) {
    avro_value_t item;
    if (avro_value_append(v, &item, NULL))
      return esk_error_set(err, ESK_ENOMEM, "%s: %s", path, avro_strerror());
    snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
    int rc = esk_value_set_json(n->items, &item, json_array_get(j, i), 0, sub, err);
    if (rc) return rc;
  }
  return ESK_OK;
}

static int set_map(const esk_node_t *n, avro_value_t *v, json_t *j, const char *path,
                   esk_error_t *err) {
  char sub[512];
  const char *k;
  json_t *jv;
  if (!json_is_object(j)) return BAD("an object");
  avro_value_reset(v);
  json_object_foreach(j, k, jv) {
    avro_value_t item;
    if (avro_value_add(v, k, &item, NULL, NULL))
      return esk_error_set(err, ESK_ENOMEM, "%s: %s", path, avro_strerror());
    snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
    int rc = esk_value_set_json(n->items, &item, jv, 0, sub, err);
    if (rc) return rc;
  }
  return ESK_OK;
}

/* The member of object @p j that is no field of record @p n, as an error. */
static int unknown_field(const esk_node_t *n, json_t *j, const char *path, esk_error_t *err) {
  const char *k;
  json_t *jv;
  json_object_foreach(j, k, jv) {
    size_t i;
    for (i = 0; i < n->nfields && strcmp(n->fields[i].name, k); i++) continue;
    if (i == n->nfields)
      return esk_error_set(err, ESK_EINVAL, "%s%s%s: no such field in %s", path, *path ? "." : "",
                           k, n->fullname);
  }
  return ESK_OK;
}

static int set_record(const esk_node_t *n, avro_value_t *v, json_t *j, const char *path,
                      esk_error_t *err) {
  char sub[512];
  if (!json_is_object(j)) return BAD("an object");
  size_t known = 0;
  for (size_t i = 0; i < n->nfields; i++) {
    const esk_field_t *f = &n->fields[i];
    avro_value_t fv;
    json_t *jf = json_object_get(j, f->name);
    snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", f->name);
    if (jf) known++;
    if (!jf && !f->dflt)
      return esk_error_set(err, ESK_EINVAL, "%s: missing, and the field has no default", sub);
    avro_value_get_by_index(v, i, &fv, NULL);
    int rc = esk_value_set_json(f->type, &fv, jf ? jf : f->dflt, !jf, sub, err);
    if (rc) return rc;
  }
  return known != json_object_size(j) ? unknown_field(n, j, path, err) : ESK_OK;
}

static int set_union(const esk_node_t *n, avro_value_t *v, json_t *j, int is_default,
                     const char *path, esk_error_t *err) {
  for (size_t i = 0; i < n->nbranches; i++) {
    if (is_default ? i == 0 : esk_json_matches(n->branches[i], j, 0)) {
      avro_value_t b;
      if (avro_value_set_branch(v, (int)i, &b))
        return esk_error_set(err, ESK_EINVAL, "%s: %s", path, avro_strerror());
      return esk_value_set_json(n->branches[i], &b, j, is_default, path, err);
    }
  }
  return BAD("a value of one of the union's branches");
}

int esk_value_set_json(const esk_node_t *n, avro_value_t *v, json_t *j, int is_default,
                       const char *path, esk_error_t *err) {
  switch (n->kind) {
  case EN_NULL:
    if (!json_is_null(j)) return BAD("null");
    return avro_value_set_null(v) ? BAD("null") : ESK_OK;
  case EN_BOOLEAN:
    if (!json_is_boolean(j)) return BAD("a boolean");
    avro_value_set_boolean(v, json_is_true(j));
    return ESK_OK;
  case EN_INT:
    if (!esk_json_matches(n, j, 0)) return BAD("an int");
    avro_value_set_int(v, (int32_t)json_integer_value(j));
    return ESK_OK;
  case EN_LONG:
    if (!json_is_integer(j)) return BAD("a long");
    avro_value_set_long(v, (int64_t)json_integer_value(j));
    return ESK_OK;
  case EN_FLOAT:
    if (!json_is_number(j)) return BAD("a number");
    avro_value_set_float(v, (float)json_number_value(j));
    return ESK_OK;
  case EN_DOUBLE:
    if (!json_is_number(j)) return BAD("a number");
    avro_value_set_double(v, json_number_value(j));
    return ESK_OK;
  case EN_STRING:
    if (!json_is_string(j)) return BAD("a string");
    avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1);
    return ESK_OK;
  case EN_BYTES:
  case EN_FIXED:
    if (!json_is_string(j)) return BAD("a string");
    return set_bytes(v, j, n->kind == EN_FIXED, path, err);
  case EN_ENUM: return set_enum(n, v, j, path, err);
  case EN_ARRAY: return set_array(n, v, j, path, err);
  case EN_MAP: return set_map(n, v, j, path, err);
  case EN_RECORD: return set_record(n, v, j, path, err);
  case EN_UNION: return set_union(n, v, j, is_default, path, err);
  }
  return BAD("a known type");
}

int esk_value_from_json(avro_value_t *value, const esk_schema_t *schema, const char *json,
                        esk_error_t *err) {
  if (!schema || avro_value_get_schema(value) != schema->avro)
    return esk_error_set(err, ESK_EINVAL,
                         "the value is not of the schema given (make it with esk_value_new)");
  const esk_node_t *n = schema->root;
  json_error_t jerr;
  json_t *j = json_loads(json, JSON_DECODE_ANY, &jerr);
  if (!j)
    return esk_error_set(err, ESK_EINVAL, "JSON line %d column %d: %s", jerr.line, jerr.column,
                         jerr.text);
  avro_value_reset(value);
  int rc = esk_value_set_json(n, value, j, 0, "", err);
  json_decref(j);
  return rc;
}

/* Bytes and fixed as JSON strings: each byte the code point of the same value
 * (U+0000..U+00FF), as the Avro specification writes them. */
static int bytes_json(esk_buf_t *b, const void *p, size_t len, esk_error_t *err) {
  char *tmp = malloc(len * 2 + 1);
  if (!tmp) return esk_error_set(err, ESK_ENOMEM, "out of memory writing JSON");
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = ((const unsigned char *)p)[i];
    if (c < 0x80) {
      tmp[o++] = (char)c;
    } else {
      tmp[o++] = (char)(0xc0 | (c >> 6));
      tmp[o++] = (char)(0x80 | (c & 0x3f));
    }
  }
  int rc = esk_text_json_buf(b, tmp, o, err);
  free(tmp);
  return rc;
}

/* A double as jansson writes it: %.17g, ".0" after an integer, the exponent
 * without '+' or leading zeros. */
static int real_json(esk_buf_t *b, double x, esk_error_t *err) {
  char t[64];
  if (!isfinite(x)) return esk_error_set(err, ESK_EINVAL, "%g cannot be written as JSON", x);
  int n = snprintf(t, sizeof(t) - 2, "%.17g", x);
  if (strspn(t, "0123456789-") == (size_t)n) {
    memcpy(t + n, ".0", 3);
    n += 2;
  }
  char *e = strchr(t, 'e');
  if (e) {
    char *d = e + 1, *s = d;
    if (*s == '-') d++, s++;
    if (*s == '+') s++;
    while (*s == '0' && s[1]) s++;
    memmove(d, s, strlen(s) + 1);
    n = (int)strlen(t);
  }
  return esk_buf_append(b, t, (size_t)n, err);
}

static int put(esk_buf_t *b, const char *s, esk_error_t *err) {
  return esk_buf_append(b, s, strlen(s), err);
}

/* Records and maps as objects; @p skip: a field left out. */
static int object_json(esk_buf_t *b, const avro_value_t *v, const char *skip, esk_error_t *err) {
  size_t n = 0;
  int rc = put(b, "{", err), first = 1;
  avro_value_get_size(v, &n);
  for (size_t i = 0; i < n && !rc; i++) {
    avro_value_t c;
    const char *name = NULL;
    avro_value_get_by_index(v, i, &c, &name);
    if (skip && !strcmp(name, skip)) continue;
    if (!first) rc = put(b, ",", err);
    first = 0;
    if (!rc) rc = esk_text_json_buf(b, name, strlen(name), err);
    if (!rc) rc = put(b, ":", err);
    if (!rc) rc = esk_value_json_append(b, &c, NULL, err);
  }
  return rc ? rc : put(b, "}", err);
}

static int array_json(esk_buf_t *b, const avro_value_t *v, esk_error_t *err) {
  size_t n = 0;
  int rc = put(b, "[", err);
  avro_value_get_size(v, &n);
  for (size_t i = 0; i < n && !rc; i++) {
    avro_value_t c;
    avro_value_get_by_index(v, i, &c, NULL);
    if (i) rc = put(b, ",", err);
    if (!rc) rc = esk_value_json_append(b, &c, NULL, err);
  }
  return rc ? rc : put(b, "]", err);
}

/* Null, booleans and numbers. */
static int scalar_json(esk_buf_t *b, const avro_value_t *v, esk_error_t *err) {
  char t[ESK_TEXT_I64_MAX];
  int x = 0;
  int32_t i32 = 0;
  int64_t i64 = 0;
  float f = 0;
  double d = 0;
  switch (avro_value_get_type(v)) {
  case AVRO_NULL: return put(b, "null", err);
  case AVRO_BOOLEAN: avro_value_get_boolean(v, &x); return put(b, x ? "true" : "false", err);
  case AVRO_INT32:
    avro_value_get_int(v, &i32);
    return esk_buf_append(b, t, esk_text_i64(t, i32), err);
  case AVRO_INT64:
    avro_value_get_long(v, &i64);
    return esk_buf_append(b, t, esk_text_i64(t, i64), err);
  case AVRO_FLOAT: avro_value_get_float(v, &f); return real_json(b, f, err);
  case AVRO_DOUBLE: avro_value_get_double(v, &d); return real_json(b, d, err);
  default: return esk_error_set(err, ESK_EINVAL, "the value cannot be written as JSON");
  }
}

int esk_value_json_append(esk_buf_t *b, const avro_value_t *v, const char *skip,
                          esk_error_t *err) {
  const void *p = NULL;
  const char *s = NULL;
  size_t size = 0;
  int i = 0;
  avro_value_t branch;
  switch (avro_value_get_type(v)) {
  case AVRO_STRING:
    avro_value_get_string(v, &s, &size);
    return esk_text_json_buf(b, s ? s : "", size ? size - 1 : 0, err);
  case AVRO_BYTES: avro_value_get_bytes(v, &p, &size); return bytes_json(b, p, size, err);
  case AVRO_FIXED: avro_value_get_fixed(v, &p, &size); return bytes_json(b, p, size, err);
  case AVRO_ENUM:
    avro_value_get_enum(v, &i);
    s = avro_schema_enum_get(avro_value_get_schema(v), i);
    if (!s) return esk_error_set(err, ESK_EINVAL, "enum value %d has no symbol", i);
    return esk_text_json_buf(b, s, strlen(s), err);
  case AVRO_RECORD:
  case AVRO_MAP: return object_json(b, v, skip, err);
  case AVRO_ARRAY: return array_json(b, v, err);
  case AVRO_UNION:
    if (avro_value_get_current_branch(v, &branch))
      return esk_error_set(err, ESK_EINVAL, "the value cannot be written as JSON (unset union?)");
    return esk_value_json_append(b, &branch, NULL, err);
  default: return scalar_json(b, v, err);
  }
}

int esk_value_to_json(const avro_value_t *value, char **out, esk_error_t *err) {
  esk_buf_t b;
  esk_buf_init(&b, 0);
  int rc = esk_value_json_append(&b, value, NULL, err);
  if (!rc) rc = esk_buf_append(&b, "", 1, err);
  if (rc) {
    esk_buf_free(&b);
    return rc;
  }
  *out = (char *)b.data;
  return ESK_OK;
}

static int no_field(const avro_value_t *rec, const char *name, esk_error_t *err) {
  return esk_error_set(err, ESK_EPOISON, "no field '%s' in %s", name,
                       avro_schema_type_name(avro_value_get_schema(rec)));
}

int esk_value_field(const avro_value_t *rec, const char *name, avro_value_t *out,
                    esk_error_t *err) {
  return avro_value_get_by_name(rec, name, out, NULL) ? no_field(rec, name, err) : ESK_OK;
}

/* Field @p f, named @p name, as a string. */
static int str_of(const avro_value_t *f, const char *name, const char **out, esk_error_t *err) {
  size_t n = 0;
  if (avro_value_get_string(f, out, &n))
    return esk_error_set(err, ESK_EPOISON, "field '%s' is not a string", name);
  return ESK_OK;
}

/* Field @p f, named @p name, as a long. */
static int long_of(const avro_value_t *f, const char *name, int64_t *out, esk_error_t *err) {
  if (avro_value_get_long(f, out))
    return esk_error_set(err, ESK_EPOISON, "field '%s' is not a long", name);
  return ESK_OK;
}

int esk_value_field_str(const avro_value_t *rec, const char *name, const char **out,
                        esk_error_t *err) {
  avro_value_t f;
  int rc = esk_value_field(rec, name, &f, err);
  return rc ? rc : str_of(&f, name, out, err);
}

int esk_value_field_long(const avro_value_t *rec, const char *name, int64_t *out,
                         esk_error_t *err) {
  avro_value_t f;
  int rc = esk_value_field(rec, name, &f, err);
  return rc ? rc : long_of(&f, name, out, err);
}

int esk_value_index(const avro_value_t *rec, int index, const char *name, avro_value_t *out,
                    esk_error_t *err) {
  return index < 0 || avro_value_get_by_index(rec, (size_t)index, out, NULL)
             ? no_field(rec, name, err)
             : ESK_OK;
}

int esk_value_index_str(const avro_value_t *rec, int index, const char *name, const char **out,
                        esk_error_t *err) {
  avro_value_t f;
  int rc = esk_value_index(rec, index, name, &f, err);
  return rc ? rc : str_of(&f, name, out, err);
}

int esk_value_index_long(const avro_value_t *rec, int index, const char *name, int64_t *out,
                         esk_error_t *err) {
  avro_value_t f;
  int rc = esk_value_index(rec, index, name, &f, err);
  return rc ? rc : long_of(&f, name, out, err);
}
