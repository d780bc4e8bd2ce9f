/* Schema sets: compiling .avsc JSON (with names resolved across the files of
 * a set), Parsing Canonical Form, CRC-64-AVRO, and the avro-c schema. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "esk/codec.h"
#include "esk/text.h"

/* ------------------------------------------------------------ CRC-64-AVRO */

#define CRC64_EMPTY 0xc15d213aa4d7a795ULL

static uint64_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (int i = 0; i < 256; i++) {
    uint64_t fp = (uint64_t)i;
    for (int j = 0; j < 8; j++) fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1));
    crc_table[i] = fp;
  }
}

uint64_t esk_avro_crc64(const void *data, size_t len) {
  pthread_once(&crc_once, crc_init);
  const uint8_t *p = data;
  uint64_t fp = CRC64_EMPTY;
  for (size_t i = 0; i < len; i++) fp = (fp >> 8) ^ crc_table[(fp ^ p[i]) & 0xff];
  return fp;
}

/* --------------------------------------------------------------- the set */

struct esk_schema_set_s {
  esk_schema_t **items;
  size_t n, cap;
  esk_node_t *nodes;
};

int esk_schema_set_new(esk_schema_set_t **out, esk_error_t *err) {
  esk_schema_set_t *s = calloc(1, sizeof(*s));
  if (!s) return esk_error_set(err, ESK_ENOMEM, "out of memory creating a schema set");
  *out = s;
  return ESK_OK;
}

static void strv_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static void node_free(esk_node_t *n) {
  free(n->fullname);
  strv_free(n->aliases, n->naliases);
  for (size_t i = 0; i < n->nfields; i++) {
    free(n->fields[i].name);
    strv_free(n->fields[i].aliases, n->fields[i].naliases);
    if (n->fields[i].dflt) json_decref(n->fields[i].dflt);
  }
  free(n->fields);
  strv_free(n->symbols, n->nsymbols);
  free(n->branches);
  free(n);
}

static void schema_free(esk_schema_t *s) {
  if (!s) return;
  if (s->avro) avro_schema_decref(s->avro);
  if (s->iface) avro_value_iface_decref(s->iface);
  free(s->type);
  free(s->file);
  if (s->doc) json_decref(s->doc);
  for (size_t i = 0; i < s->nnames; i++) free(s->names[i].name);
  free(s->names);
  free(s->canonical);
  esk_personal_free(s);
  free(s);
}

void esk_schema_set_destroy(esk_schema_set_t *set) {
  if (!set) return;
  for (size_t i = 0; i < set->n; i++) schema_free(set->items[i]);
  free(set->items);
  while (set->nodes) {
    esk_node_t *n = set->nodes;
    set->nodes = n->next;
    node_free(n);
  }
  free(set);
}

/* ------------------------------------------------------------- compiling */

typedef struct {
  esk_schema_set_t *set;
  esk_schema_t *schema; /* the file being compiled */
  esk_error_t *err;
} cctx_t;

static const char *const kind_names[] = {"null",   "boolean", "int",   "long",  "float",
                                         "double", "bytes",   "string", "record", "enum",
                                         "array",  "map",     "union", "fixed"};

const char *esk_node_kind_name(esk_node_kind_t k) { return kind_names[k]; }

static int primitive_kind(const char *s) {
  for (int k = EN_NULL; k <= EN_STRING; k++)
    if (!strcmp(s, kind_names[k])) return k;
  return -1;
}

static esk_node_t *node_new(cctx_t *c, esk_node_kind_t kind) {
  esk_node_t *n = calloc(1, sizeof(*n));
  if (!n) {
    esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", c->schema->file);
    return NULL;
  }
  n->kind = kind;
  n->enum_default = -1;
  n->next = c->set->nodes;
  c->set->nodes = n;
  return n;
}

static int valid_name(const char *s) {
  if (!(isalpha((unsigned char)*s) || *s == '_')) return 0;
  for (s++; *s; s++)
    if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
  return 1;
}

static int valid_fullname(const char *s) {
  char buf[512];
  if (strlen(s) >= sizeof(buf) || !*s) return 0;
  strcpy(buf, s);
  for (char *save = NULL, *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save))
    if (!valid_name(t)) return 0;
  return s[strlen(s) - 1] != '.' && s[0] != '.' && !strstr(s, "..");
}

/* The full name of @p name in namespace @p ns. */
static char *make_fullname(const char *name, const char *ns) {
  if (strchr(name, '.') || !ns || !*ns) return strdup(name);
  size_t n = strlen(ns) + strlen(name) + 2;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s.%s", ns, name);
  return s;
}

static esk_node_t *local_lookup(const esk_schema_t *s, const char *fullname) {
  for (size_t i = 0; i < s->nnames; i++)
    if (!strcmp(s->names[i].name, fullname)) return s->names[i].node;
  return NULL;
}

static int compile_file(esk_schema_set_t *set, esk_schema_t *s, esk_error_t *err);

/* A name not defined in this file: exactly one other file of the set must define it. */
static int foreign_lookup(cctx_t *c, const char *fullname, esk_node_t **out) {
  esk_node_t *found = NULL;
  const char *found_in = NULL;
  for (size_t i = 0; i < c->set->n; i++) {
    esk_schema_t *o = c->set->items[i];
    if (o == c->schema || o->state == 1) continue;
    if (o->state == 0) {
      int rc = compile_file(c->set, o, c->err);
      if (rc) return rc;
    }
    esk_node_t *n = local_lookup(o, fullname);
    if (!n) continue;
    if (found && found != n)
      return esk_error_set(c->err, ESK_EINVAL,
                           "%s: type '%s' is defined in both %s and %s; reference is ambiguous",
                           c->schema->file, fullname, found_in, o->file);
    found = n;
    found_in = o->file;
  }
  if (!found)
    return esk_error_set(c->err, ESK_EINVAL, "%s: unknown type '%s'", c->schema->file, fullname);
  *out = found;
  return ESK_OK;
}

static int compile_type(cctx_t *c, json_t *j, const char *ns, const char *where,
                        esk_node_t **out);

static int add_name(cctx_t *c, const char *fullname, esk_node_t *n) {
  esk_schema_t *s = c->schema;
  if (local_lookup(s, fullname) || primitive_kind(fullname) >= 0)
    return esk_error_set(c->err, ESK_EINVAL, "%s: type '%s' is defined twice", s->file, fullname);
  esk_named_t *p = realloc(s->names, (s->nnames + 1) * sizeof(*p));
  if (!p) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", s->file);
  s->names = p;
  p[s->nnames].name = strdup(fullname);
  if (!p[s->nnames].name) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", s->file);
  p[s->nnames].node = n;
  s->nnames++;
  return ESK_OK;
}

static int compile_aliases(cctx_t *c, json_t *j, const char *ns, const char *where,
                           char ***out, size_t *nout) {
  json_t *a = json_object_get(j, "aliases");
  if (!a) return ESK_OK;
  if (!json_is_array(a))
    return esk_error_set(c->err, ESK_EINVAL, "%s: %s: \"aliases\" must be an array of names",
                         c->schema->file, where);
  size_t n = json_array_size(a);
  char **v = calloc(n ? n : 1, sizeof(*v));
  if (!v) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", c->schema->file);
  *out = v;
  for (size_t i = 0; i < n; i++) {
    const char *s = json_string_value(json_array_get(a, i));
    if (!s || !(ns ? valid_fullname(s) : valid_name(s)))
      return esk_error_set(c->err, ESK_EINVAL, "%s: %s: invalid alias", c->schema->file, where);
    v[i] = ns ? make_fullname(s, ns) : strdup(s);
    if (!v[i]) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", c->schema->file);
    (*nout)++;
  }
  return ESK_OK;
}

/* Field @p i of record @p n, declared as @p f. */
static int compile_field(cctx_t *c, esk_node_t *n, json_t *f, size_t i, const char *inner_ns) {
  const char *file = c->schema->file;
  const char *fname = json_string_value(json_object_get(f, "name"));
  char fwhere[600];
  if (!json_is_object(f) || !fname || !valid_name(fname))
    return esk_error_set(c->err, ESK_EINVAL, "%s: record %s: field %zu needs a valid \"name\"",
                         file, n->fullname, i + 1);
  snprintf(fwhere, sizeof(fwhere), "field '%s' of %s", fname, n->fullname);
  for (size_t k = 0; k < n->nfields; k++)
    if (!strcmp(n->fields[k].name, fname))
      return esk_error_set(c->err, ESK_EINVAL, "%s: %s is declared twice", file, fwhere);
  esk_field_t *fd = &n->fields[n->nfields++];
  fd->name = strdup(fname);
  if (!fd->name) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", file);
  json_t *ft = json_object_get(f, "type");
  if (!ft) return esk_error_set(c->err, ESK_EINVAL, "%s: %s has no \"type\"", file, fwhere);
  int rc = compile_type(c, ft, inner_ns, fwhere, &fd->type);
  if (!rc) rc = compile_aliases(c, f, NULL, fwhere, &fd->aliases, &fd->naliases);
  if (rc) return rc;
  json_t *d = json_object_get(f, "default");
  if (!d) return ESK_OK;
  if (!esk_json_matches(fd->type, d, 1))
    return esk_error_set(c->err, ESK_EINVAL,
                         "%s: %s: the default does not match the field's type%s", file, fwhere,
                         fd->type->kind == EN_UNION ? " (its first branch)" : "");
  fd->dflt = json_incref(d);
  return ESK_OK;
}

static int compile_record(cctx_t *c, esk_node_t *n, json_t *j, const char *inner_ns) {
  const char *file = c->schema->file;
  json_t *fields = json_object_get(j, "fields");
  if (!json_is_array(fields))
    return esk_error_set(c->err, ESK_EINVAL, "%s: record %s: \"fields\" must be an array", file,
                         n->fullname);
  n->fields = calloc(json_array_size(fields) + 1, sizeof(*n->fields));
  if (!n->fields) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", file);
  for (size_t i = 0; i < json_array_size(fields); i++) {
    int rc = compile_field(c, n, json_array_get(fields, i), i, inner_ns);
    if (rc) return rc;
  }
  return ESK_OK;
}

static int compile_enum(cctx_t *c, esk_node_t *n, json_t *j) {
  const char *file = c->schema->file;
  json_t *syms = json_object_get(j, "symbols");
  if (!json_is_array(syms))
    return esk_error_set(c->err, ESK_EINVAL, "%s: enum %s: \"symbols\" must be an array", file,
                         n->fullname);
  n->symbols = calloc(json_array_size(syms) + 1, sizeof(char *));
  if (!n->symbols) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", file);
  for (size_t i = 0; i < json_array_size(syms); i++) {
    const char *sym = json_string_value(json_array_get(syms, i));
    if (!sym || !valid_name(sym))
      return esk_error_set(c->err, ESK_EINVAL, "%s: enum %s: invalid symbol %zu", file,
                           n->fullname, i + 1);
    for (size_t k = 0; k < n->nsymbols; k++)
      if (!strcmp(n->symbols[k], sym))
        return esk_error_set(c->err, ESK_EINVAL, "%s: enum %s: symbol '%s' appears twice", file,
                             n->fullname, sym);
    n->symbols[n->nsymbols] = strdup(sym);
    if (!n->symbols[n->nsymbols])
      return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", file);
    n->nsymbols++;
  }
  json_t *d = json_object_get(j, "default");
  if (!d) return ESK_OK;
  const char *ds = json_string_value(d);
  for (size_t k = 0; ds && k < n->nsymbols; k++)
    if (!strcmp(n->symbols[k], ds)) n->enum_default = (int)k;
  if (n->enum_default < 0)
    return esk_error_set(c->err, ESK_EINVAL, "%s: enum %s: the default is not a symbol", file,
                         n->fullname);
  return ESK_OK;
}

static int compile_fixed(cctx_t *c, esk_node_t *n, json_t *j) {
  json_t *size = json_object_get(j, "size");
  if (!json_is_integer(size) || json_integer_value(size) < 0 ||
      json_integer_value(size) > (1 << 20))
    return esk_error_set(c->err, ESK_EINVAL, "%s: fixed %s: \"size\" must be an integer >= 0",
                         c->schema->file, n->fullname);
  n->size = (size_t)json_integer_value(size);
  return ESK_OK;
}

/* A record, enum or fixed: its name (registered in the file), its aliases,
 * then what its kind declares. */
static int compile_named(cctx_t *c, json_t *j, esk_node_kind_t kind, const char *ns,
                         const char *where, esk_node_t **out) {
  const char *file = c->schema->file;
  const char *name = json_string_value(json_object_get(j, "name"));
  if (!name || !valid_fullname(name))
    return esk_error_set(c->err, ESK_EINVAL, "%s: %s: a %s needs a valid \"name\"", file, where,
                         kind_names[kind]);
  json_t *jns = json_object_get(j, "namespace");
  if (jns && !json_is_string(jns))
    return esk_error_set(c->err, ESK_EINVAL, "%s: %s: \"namespace\" must be a string", file,
                         where);
  const char *own_ns = jns ? json_string_value(jns) : ns;
  if (own_ns && *own_ns && !valid_fullname(own_ns))
    return esk_error_set(c->err, ESK_EINVAL, "%s: %s: invalid namespace '%s'", file, where,
                         own_ns);
  esk_node_t *n = node_new(c, kind);
  if (!n) return ESK_ENOMEM;
  n->fullname = make_fullname(name, own_ns);
  if (!n->fullname) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", file);
  /* the namespace of nested definitions and of aliases */
  char *inner_ns = NULL;
  const char *dot = strrchr(n->fullname, '.');
  if (dot) inner_ns = strndup(n->fullname, (size_t)(dot - n->fullname));
  int rc = add_name(c, n->fullname, n);
  if (!rc)
    rc = compile_aliases(c, j, inner_ns ? inner_ns : "", n->fullname, &n->aliases, &n->naliases);
  if (!rc)
    rc = kind == EN_RECORD ? compile_record(c, n, j, inner_ns)
         : kind == EN_ENUM ? compile_enum(c, n, j)
                           : compile_fixed(c, n, j);
  if (!rc) *out = n;
  free(inner_ns);
  return rc;
}

static int compile_type(cctx_t *c, json_t *j, const char *ns, const char *where,
                        esk_node_t **out) {
  const char *file = c->schema->file;
  if (json_is_string(j)) {
    const char *s = json_string_value(j);
    int k = primitive_kind(s);
    if (k >= 0) {
      *out = node_new(c, (esk_node_kind_t)k);
      return *out ? ESK_OK : ESK_ENOMEM;
    }
    if (!valid_fullname(s))
      return esk_error_set(c->err, ESK_EINVAL, "%s: %s: invalid type name '%s'", file, where, s);
    char *full = make_fullname(s, ns);
    if (!full) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", file);
    int rc = ESK_OK;
    esk_node_t *n = local_lookup(c->schema, full);
    if (!n && !strchr(s, '.')) n = local_lookup(c->schema, s); /* null namespace */
    if (!n) rc = foreign_lookup(c, full, &n);
    free(full);
    if (!rc) *out = n;
    return rc;
  }
  if (json_is_array(j)) {
    esk_node_t *n = node_new(c, EN_UNION);
    if (!n) return ESK_ENOMEM;
    size_t nb = json_array_size(j);
    n->branches = calloc(nb ? nb : 1, sizeof(*n->branches));
    if (!n->branches) return esk_error_set(c->err, ESK_ENOMEM, "%s: out of memory", file);
    for (size_t i = 0; i < nb; i++) {
      esk_node_t *b;
      int rc = compile_type(c, json_array_get(j, i), ns, where, &b);
      if (rc) return rc;
      if (b->kind == EN_UNION)
        return esk_error_set(c->err, ESK_EINVAL, "%s: %s: a union may not contain a union", file,
                             where);
      for (size_t k = 0; k < n->nbranches; k++) {
        const esk_node_t *o = n->branches[k];
        if (o->kind == b->kind &&
            (!o->fullname || !b->fullname || !strcmp(o->fullname, b->fullname)))
          return esk_error_set(c->err, ESK_EINVAL, "%s: %s: the union has two %s branches", file,
                               where, b->fullname ? b->fullname : kind_names[b->kind]);
      }
      n->branches[n->nbranches++] = b;
    }
    *out = n;
    return ESK_OK;
  }
  if (!json_is_object(j))
    return esk_error_set(c->err, ESK_EINVAL, "%s: %s: a type must be a string, array or object",
                         file, where);
  json_t *t = json_object_get(j, "type");
  const char *ts = json_string_value(t);
  if (!ts) {
    if (json_is_object(t) || json_is_array(t)) return compile_type(c, t, ns, where, out);
    return esk_error_set(c->err, ESK_EINVAL, "%s: %s: missing \"type\"", file, where);
  }
  if (!strcmp(ts, "record") || !strcmp(ts, "error"))
    return compile_named(c, j, EN_RECORD, ns, where, out);
  if (!strcmp(ts, "enum")) return compile_named(c, j, EN_ENUM, ns, where, out);
  if (!strcmp(ts, "fixed")) return compile_named(c, j, EN_FIXED, ns, where, out);
  if (!strcmp(ts, "array") || !strcmp(ts, "map")) {
    int is_array = ts[0] == 'a';
    json_t *it = json_object_get(j, is_array ? "items" : "values");
    if (!it)
      return esk_error_set(c->err, ESK_EINVAL, "%s: %s: %s without \"%s\"", file, where, ts,
                           is_array ? "items" : "values");
    esk_node_t *n = node_new(c, is_array ? EN_ARRAY : EN_MAP);
    if (!n) return ESK_ENOMEM;
    *out = n;
    return compile_type(c, it, ns, where, &n->items);
  }
  return compile_type(c, t, ns, where, out); /* {"type": "long", "logicalType": ...} */
}

/* ------------------------------------------------ Parsing Canonical Form */

typedef struct {
  esk_buf_t b;
  const esk_node_t **seen;
  size_t nseen, capseen;
  int oom;
} pcf_t;

static void pcf_put(pcf_t *p, const char *s) {
  if (esk_buf_append(&p->b, s, strlen(s), NULL)) p->oom = 1;
}

static void pcf_str(pcf_t *p, const char *s) {
  if (esk_text_json_buf(&p->b, s, strlen(s), NULL)) p->oom = 1;
}

static void pcf_node(pcf_t *p, const esk_node_t *n) {
  if (n->fullname) {
    for (size_t i = 0; i < p->nseen; i++) {
      if (p->seen[i] == n) {
        pcf_str(p, n->fullname);
        return;
      }
    }
    const esk_node_t **s = esk_array_grow(p->seen, &p->capseen, p->nseen + 1, sizeof(*s), 16);
    if (!s) {
      p->oom = 1;
      return;
    }
    p->seen = s;
    p->seen[p->nseen++] = n;
  }
  switch (n->kind) {
  case EN_RECORD:
    pcf_put(p, "{\"name\":");
    pcf_str(p, n->fullname);
    pcf_put(p, ",\"type\":\"record\",\"fields\":[");
    for (size_t i = 0; i < n->nfields; i++) {
      pcf_put(p, i ? ",{\"name\":" : "{\"name\":");
      pcf_str(p, n->fields[i].name);
      pcf_put(p, ",\"type\":");
      pcf_node(p, n->fields[i].type);
      pcf_put(p, "}");
    }
    pcf_put(p, "]}");
    break;
  case EN_ENUM:
    pcf_put(p, "{\"name\":");
    pcf_str(p, n->fullname);
    pcf_put(p, ",\"type\":\"enum\",\"symbols\":[");
    for (size_t i = 0; i < n->nsymbols; i++) {
      if (i) pcf_put(p, ",");
      pcf_str(p, n->symbols[i]);
    }
    pcf_put(p, "]}");
    break;
  case EN_FIXED: {
    char num[32];
    pcf_put(p, "{\"name\":");
    pcf_str(p, n->fullname);
    snprintf(num, sizeof(num), ",\"type\":\"fixed\",\"size\":%zu}", n->size);
    pcf_put(p, num);
    break;
  }
  case EN_ARRAY:
  case EN_MAP:
    pcf_put(p, n->kind == EN_ARRAY ? "{\"type\":\"array\",\"items\":"
                                   : "{\"type\":\"map\",\"values\":");
    pcf_node(p, n->items);
    pcf_put(p, "}");
    break;
  case EN_UNION:
    pcf_put(p, "[");
    for (size_t i = 0; i < n->nbranches; i++) {
      if (i) pcf_put(p, ",");
      pcf_node(p, n->branches[i]);
    }
    pcf_put(p, "]");
    break;
  default:
    pcf_str(p, kind_names[n->kind]);
  }
}

static char *pcf_of(const esk_node_t *n) {
  pcf_t p = {0};
  esk_buf_init(&p.b, 0);
  pcf_node(&p, n);
  free(p.seen);
  if (!p.oom && esk_buf_append(&p.b, "", 1, NULL) == ESK_OK) return (char *)p.b.data;
  esk_buf_free(&p.b);
  return NULL;
}

/* ------------------------------------------------------- adding schemas */

static int compile_file(esk_schema_set_t *set, esk_schema_t *s, esk_error_t *err) {
  cctx_t c = {set, s, err};
  s->state = 1;
  int rc = compile_type(&c, s->doc, NULL, "top level", &s->root);
  if (rc) return rc;
  s->canonical = pcf_of(s->root);
  if (!s->canonical) return esk_error_set(err, ESK_ENOMEM, "%s: out of memory", s->file);
  s->fp = esk_avro_crc64(s->canonical, strlen(s->canonical));
  if (avro_schema_from_json_length(s->canonical, strlen(s->canonical), &s->avro))
    return esk_error_set(err, ESK_EINVAL, "%s: avro-c rejects the schema: %s", s->file,
                         avro_strerror());
  s->iface = avro_generic_class_from_schema(s->avro);
  if (!s->iface)
    return esk_error_set(err, ESK_EINVAL, "%s: avro-c: %s", s->file, avro_strerror());
  rc = esk_personal_compile(set, s, err);
  if (rc) return rc;
  s->state = 2;
  return ESK_OK;
}

/* "<Type>.v<N>.avsc" -> type and version; 0 on success. */
static int parse_file_name(const char *file, char **type, int *version) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  size_t len = strlen(base);
  if (len < 8 || strcmp(base + len - 5, ".avsc")) return -1;
  const char *v = NULL;
  for (const char *p = base; (p = strstr(p, ".v")); p++) v = p;
  if (!v || v == base) return -1;
  const char *digits = v + 2, *end = base + len - 5;
  if (digits == end || *digits == '0') return -1;
  long n = 0;
  for (const char *p = digits; p < end; p++) {
    if (!isdigit((unsigned char)*p) || n > 100000) return -1;
    n = n * 10 + (*p - '0');
  }
  char *t = strndup(base, (size_t)(v - base));
  if (!t) return -1;
  if (!valid_name(t)) {
    free(t);
    return -1;
  }
  *type = t;
  *version = (int)n;
  return 0;
}

static int cmp_schema(const void *a, const void *b) {
  const esk_schema_t *x = *(esk_schema_t *const *)a, *y = *(esk_schema_t *const *)b;
  int c = strcmp(x->type, y->type);
  return c ? c : (x->version > y->version) - (x->version < y->version);
}

int esk_schema_set_add_many(esk_schema_set_t *set, size_t n, const char *const *file_names,
                            const char *const *jsons, esk_error_t *err) {
  size_t first = set->n;
  int rc = ESK_OK;
  if (set->n + n > set->cap) {
    size_t cap = set->cap ? set->cap : 16;
    while (cap < set->n + n) cap *= 2;
    esk_schema_t **p = realloc(set->items, cap * sizeof(*p));
    if (!p) return esk_error_set(err, ESK_ENOMEM, "out of memory adding schemas");
    set->items = p;
    set->cap = cap;
  }
  for (size_t i = 0; i < n; i++) {
    esk_schema_t *s = calloc(1, sizeof(*s));
    if (!s) {
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory adding schemas");
      goto cleanup;
    }
    set->items[set->n++] = s;
    s->file = strdup(file_names[i]);
    if (!s->file) {
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory adding schemas");
      goto cleanup;
    }
    if (parse_file_name(file_names[i], &s->type, &s->version)) {
      rc = esk_error_set(err, ESK_EINVAL, "%s: the file name must be <Type>.v<N>.avsc", s->file);
      goto cleanup;
    }
    if (esk_schema_set_get(set, s->type, s->version) != s) {
      rc = esk_error_set(err, ESK_EINVAL, "%s: %s version %d is already in the set", s->file,
                         s->type, s->version);
      goto cleanup;
    }
    json_error_t jerr;
    s->doc = json_loads(jsons[i], JSON_REJECT_DUPLICATES, &jerr);
    if (!s->doc) {
      rc = esk_error_set(err, ESK_EINVAL, "%s: line %d column %d: %s", s->file, jerr.line,
                         jerr.column, jerr.text);
      goto cleanup;
    }
  }
  for (size_t i = first; i < set->n; i++) {
    if (set->items[i]->state == 0) {
      rc = compile_file(set, set->items[i], err);
      if (rc) goto cleanup;
    }
  }
  for (size_t i = first; i < set->n; i++) {
    esk_schema_t *s = set->items[i];
    for (size_t k = 0; k < set->n; k++) {
      if (set->items[k] != s && set->items[k]->fp == s->fp)
        rc = esk_error_set(err, ESK_EINVAL, "%s: has the same fingerprint as %s", s->file,
                           set->items[k]->file);
      if (rc) goto cleanup;
    }
  }
  qsort(set->items, set->n, sizeof(*set->items), cmp_schema);
cleanup:
  if (rc) {
    /* drop the whole batch; nodes stay in the set's list until it is destroyed */
    for (size_t i = first; i < set->n; i++) schema_free(set->items[i]);
    set->n = first;
  }
  return rc;
}

int esk_schema_set_add(esk_schema_set_t *set, const char *file_name, const char *json,
                       esk_error_t *err) {
  return esk_schema_set_add_many(set, 1, &file_name, &json, err);
}

static char *read_file(const char *path, esk_error_t *err) {
  char *data = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    esk_error_set(err, ESK_EINVAL, "%s: %s", path, strerror(errno));
    return NULL;
  }
  esk_buf_t b;
  esk_buf_init(&b, 16 << 20);
  char chunk[8192];
  size_t got;
  while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    if (esk_buf_append(&b, chunk, got, NULL)) {
      esk_error_set(err, ESK_EINVAL, "%s: larger than 16 MiB", path);
      goto cleanup;
    }
  }
  if (ferror(f)) {
    esk_error_set(err, ESK_EINVAL, "%s: read error", path);
    goto cleanup;
  }
  if (esk_buf_append(&b, "", 1, err)) goto cleanup;
  data = (char *)b.data;
  b.data = NULL;
cleanup:
  esk_buf_free(&b);
  fclose(f);
  return data;
}

int esk_schema_set_load_dir(esk_schema_set_t *set, const char *dir, esk_error_t *err) {
  int rc = ESK_OK;
  char **names = NULL, **texts = NULL;
  size_t n = 0, cap = 0;
  DIR *d = opendir(dir);
  if (!d) return esk_error_set(err, ESK_EINVAL, "%s: %s", dir, strerror(errno));
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 5, ".avsc")) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      char **a = realloc(names, cap * sizeof(*a)), **b;
      if (a) names = a;
      b = a ? realloc(texts, cap * sizeof(*b)) : NULL;
      if (!b) {
        rc = esk_error_set(err, ESK_ENOMEM, "out of memory listing %s", dir);
        goto cleanup;
      }
      texts = b;
    }
    names[n] = strdup(e->d_name);
    texts[n] = NULL;
    n++;
    if (!names[n - 1]) {
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory listing %s", dir);
      goto cleanup;
    }
    size_t plen = strlen(dir) + len + 2;
    char *path = malloc(plen);
    if (!path) {
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory listing %s", dir);
      goto cleanup;
    }
    snprintf(path, plen, "%s/%s", dir, e->d_name);
    texts[n - 1] = read_file(path, err);
    free(path);
    if (!texts[n - 1]) {
      rc = err ? err->code : ESK_EINVAL;
      goto cleanup;
    }
  }
  rc = esk_schema_set_add_many(set, n, (const char *const *)names, (const char *const *)texts,
                               err);
cleanup:
  closedir(d);
  for (size_t i = 0; i < n; i++) {
    free(names[i]);
    free(texts[i]);
  }
  free(names);
  free(texts);
  return rc;
}

int esk_schema_set_canonical_form(esk_schema_set_t *set, char **out, const char *schema_json,
                                  esk_error_t *err) {
  /* compiled as an extra, temporary member; its nodes stay in the set's list */
  esk_schema_t *s = calloc(1, sizeof(*s));
  esk_schema_t **items = realloc(set->items, (set->n + 1) * sizeof(*items));
  int rc = ESK_OK;
  if (items) set->items = items;
  if (!s || !items || !(s->file = strdup("schema")) || !(s->type = strdup("schema"))) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
    goto cleanup;
  }
  json_error_t jerr;
  s->doc = json_loads(schema_json, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  if (!s->doc) {
    rc = esk_error_set(err, ESK_EINVAL, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    goto cleanup;
  }
  set->items[set->n++] = s;
  rc = compile_file(set, s, err);
  set->n--;
  if (!rc && !(*out = strdup(s->canonical))) rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
cleanup:
  schema_free(s);
  return rc;
}

int esk_avro_canonical_form(char **out, const char *schema_json, esk_error_t *err) {
  esk_schema_set_t *set = NULL;
  int rc = esk_schema_set_new(&set, err);
  if (rc) return rc;
  rc = esk_schema_set_add(set, "schema.v1.avsc", schema_json, err);
  if (rc) {
    /* the message names our made-up file; say what it is instead */
    if (err && !strncmp(err->msg, "schema.v1.avsc: ", 16))
      memmove(err->msg, err->msg + 16, strlen(err->msg + 16) + 1);
    goto cleanup;
  }
  *out = strdup(set->items[0]->canonical);
  if (!*out) rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
cleanup:
  esk_schema_set_destroy(set);
  return rc;
}

/* --------------------------------------------------------------- lookups */

const esk_schema_t *esk_schema_set_get(const esk_schema_set_t *set, const char *type,
                                       int version) {
  for (size_t i = 0; i < set->n; i++)
    if (set->items[i]->version == version && !strcmp(set->items[i]->type, type))
      return set->items[i];
  return NULL;
}

const esk_schema_t *esk_schema_set_latest(const esk_schema_set_t *set, const char *type) {
  const esk_schema_t *best = NULL;
  for (size_t i = 0; i < set->n; i++)
    if (!strcmp(set->items[i]->type, type) && (!best || set->items[i]->version > best->version))
      best = set->items[i];
  return best;
}

const esk_schema_t *esk_schema_set_by_fingerprint(const esk_schema_set_t *set, uint64_t fp) {
  for (size_t i = 0; i < set->n; i++)
    if (set->items[i]->fp == fp) return set->items[i];
  return NULL;
}

size_t esk_schema_set_count(const esk_schema_set_t *set) { return set->n; }

const esk_schema_t *esk_schema_set_defining(const esk_schema_set_t *set, const esk_node_t *n) {
  for (size_t i = 0; i < set->n; i++)
    if (set->items[i]->state == 2 && set->items[i]->root == n) return set->items[i];
  return NULL;
}
const esk_schema_t *esk_schema_set_at(const esk_schema_set_t *set, size_t i) {
  return i < set->n ? set->items[i] : NULL;
}
const char *esk_schema_type(const esk_schema_t *s) { return s->type; }
int esk_schema_version(const esk_schema_t *s) { return s->version; }
uint64_t esk_schema_fingerprint(const esk_schema_t *s) { return s->fp; }
const char *esk_schema_canonical(const esk_schema_t *s) { return s->canonical; }
const char *esk_schema_file(const esk_schema_t *s) { return s->file; }
avro_schema_t esk_schema_avro(const esk_schema_t *s) { return s->avro; }
const esk_node_t *esk_schema_node(const esk_schema_t *s) { return s->root; }

int esk_value_new(avro_value_t *out, const esk_schema_t *s, esk_error_t *err) {
  if (avro_generic_value_new(s->iface, out))
    return esk_error_set(err, ESK_ENOMEM, "%s: cannot create a value: %s", s->file,
                         avro_strerror());
  return ESK_OK;
}
