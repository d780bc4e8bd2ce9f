/* The codec: single-object encoding, and decoding through a resolution plan
 * (writer schema -> reader schema, compiled once and cached) by a bounded
 * single-pass reader that writes straight into a reusable reader-shaped
 * generic value; then the upcaster chain. avro-c's own reader is never given
 * untrusted bytes: it allocates whatever length the input claims. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "esk/codec.h"

/* ------------------------------------------------------------------ plans */

typedef enum { P_PRIM, P_RECORD, P_ENUM, P_ARRAY, P_MAP, P_FIXED, P_WUNION, P_RUNION } plan_op_t;

typedef struct plan_s plan_t;

typedef struct {
  int reader_index; /* -1: the reader has no such field, skip it */
  const esk_node_t *wtype;
  plan_t *plan;
} plan_step_t;

typedef struct {
  int reader_index;
  const esk_field_t *field; /* reader field: its type and default */
} plan_default_t;

struct plan_s {
  plan_op_t op;
  const esk_node_t *w, *r;
  plan_step_t *steps;
  size_t nsteps;
  plan_default_t *defaults;
  size_t ndefaults;
  int *enum_map; /* writer symbol -> reader symbol, -1: unreadable */
  plan_t *items;
  plan_t **wbranches; /* NULL entries: the reader cannot read that branch */
  int rbranch;
  plan_t *inner;
  plan_t *next; /* the codec's list of plans */
};

typedef struct {
  const esk_schema_t *w, *r;
  plan_t *plan;
} plan_cache_t;

typedef struct {
  char *type;
  int from;
  esk_upcaster_fn fn;
} upcaster_t;

typedef struct {
  const esk_schema_t *s;
  avro_value_t v;
} scratch_t;

#define LATEST_SLOTS 16

struct esk_codec_s {
  const esk_schema_set_t *set;
  esk_codec_limits_t lim;
  plan_t *plans;
  plan_cache_t *cache;
  size_t ncache, capcache;
  upcaster_t *up;
  size_t nup;
  scratch_t **scratch;
  size_t nscratch;
  /* the newest schema of each writer's type, found by name once per writer
   * (a scan comparing type names was per event: docs/benchmarks.md, "Meta
   * fields by position"); direct-mapped by fingerprint, kept while the set
   * holds as many schemas as when it was found */
  struct {
    const esk_schema_t *writer, *latest;
    size_t set_n;
  } latest[LATEST_SLOTS];
  esk_buf_t tmp; /* re-encoding between upcasters */
  esk_buf_t str; /* see read_prim */
  int refused; /* a decode refused a string: the last such refusal, and its error message */
  esk_codec_refusal_t refusal;
  char refusal_msg[ESK_ERROR_MSG_MAX];
};

int esk_codec_new(esk_codec_t **out, const esk_schema_set_t *set,
                  const esk_codec_limits_t *limits, esk_error_t *err) {
  esk_codec_t *c = calloc(1, sizeof(*c));
  if (!c) return esk_error_set(err, ESK_ENOMEM, "out of memory creating a codec");
  c->set = set;
  if (limits) c->lim = *limits;
  if (!c->lim.max_message_bytes) c->lim.max_message_bytes = 1 << 20;
  if (!c->lim.max_string_bytes) c->lim.max_string_bytes = 1 << 20;
  if (!c->lim.max_items) c->lim.max_items = 65536;
  if (!c->lim.max_depth) c->lim.max_depth = 32;
  esk_buf_init(&c->tmp, c->lim.max_message_bytes);
  esk_buf_init(&c->str, c->lim.max_string_bytes + 1);
  *out = c;
  return ESK_OK;
}

static void plans_free(plan_t *list) {
  while (list) {
    plan_t *p = list;
    list = p->next;
    free(p->steps);
    free(p->defaults);
    free(p->enum_map);
    free(p->wbranches);
    free(p);
  }
}

const esk_codec_limits_t *esk_codec_get_limits(const esk_codec_t *c) { return &c->lim; }

void esk_codec_destroy(esk_codec_t *c) {
  if (!c) return;
  plans_free(c->plans);
  free(c->cache);
  for (size_t i = 0; i < c->nup; i++) free(c->up[i].type);
  free(c->up);
  for (size_t i = 0; i < c->nscratch; i++) {
    avro_value_decref(&c->scratch[i]->v);
    free(c->scratch[i]);
  }
  free(c->scratch);
  esk_buf_free(&c->tmp);
  esk_buf_free(&c->str);
  free(c);
}

int esk_codec_register_upcaster(esk_codec_t *c, const char *type, int from_version,
                                esk_upcaster_fn fn, esk_error_t *err) {
  if (!fn || from_version < 1)
    return esk_error_set(err, ESK_EINVAL, "upcaster for %s v%d: bad arguments", type,
                         from_version);
  if (!esk_schema_set_get(c->set, type, from_version) ||
      !esk_schema_set_get(c->set, type, from_version + 1))
    return esk_error_set(err, ESK_ENOTFOUND,
                         "upcaster %s v%d -> v%d: the set lacks one of the two versions", type,
                         from_version, from_version + 1);
  for (size_t i = 0; i < c->nup; i++)
    if (c->up[i].from == from_version && !strcmp(c->up[i].type, type))
      return esk_error_set(err, ESK_EINVAL, "upcaster %s v%d -> v%d is already registered",
                           type, from_version, from_version + 1);
  upcaster_t *p = realloc(c->up, (c->nup + 1) * sizeof(*p));
  if (!p) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  c->up = p;
  p[c->nup].type = strdup(type);
  if (!p[c->nup].type) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  p[c->nup].from = from_version;
  p[c->nup].fn = fn;
  c->nup++;
  return ESK_OK;
}

static esk_upcaster_fn find_upcaster(const esk_codec_t *c, const char *type, int from) {
  for (size_t i = 0; c && i < c->nup; i++)
    if (c->up[i].from == from && !strcmp(c->up[i].type, type)) return c->up[i].fn;
  return NULL;
}

/* -------------------------------------------------------- plan building */

typedef struct {
  plan_t **list;  /* where new plans go */
  int strict;     /* check: a branch or symbol that cannot be read is an error */
  char path[256]; /* field path for messages */
  char why[400];  /* the problem, without the type and versions */
  struct memo {
    const esk_node_t *w, *r;
    plan_t *p;
  } *memo;
  size_t nmemo, capmemo;
} pb_t;

static int is_named(const esk_node_t *n) {
  return n->kind == EN_RECORD || n->kind == EN_ENUM || n->kind == EN_FIXED;
}

static const char *unqualified(const char *s) {
  const char *d = strrchr(s, '.');
  return d ? d + 1 : s;
}

/* Whether the reader's named type reads the writer's, by full name, reader
 * alias, or (as the 1.11 specification has it) unqualified name. */
static int names_match(const esk_node_t *w, const esk_node_t *r) {
  if (!strcmp(w->fullname, r->fullname)) return 1;
  for (size_t i = 0; i < r->naliases; i++)
    if (!strcmp(r->aliases[i], w->fullname)) return 1;
  return !strcmp(unqualified(w->fullname), unqualified(r->fullname));
}

static int promotable(esk_node_kind_t w, esk_node_kind_t r) {
  if (w == r) return 1;
  switch (w) {
  case EN_INT: return r == EN_LONG || r == EN_FLOAT || r == EN_DOUBLE;
  case EN_LONG: return r == EN_FLOAT || r == EN_DOUBLE;
  case EN_FLOAT: return r == EN_DOUBLE;
  case EN_STRING: return r == EN_BYTES;
  case EN_BYTES: return r == EN_STRING;
  default: return 0;
  }
}

/* Shallow match (the specification's "schemas match"), exact kinds first. */
static int matches(const esk_node_t *w, const esk_node_t *r, int exact) {
  if (is_named(w) || is_named(r))
    return w->kind == r->kind && names_match(w, r) && (w->kind != EN_FIXED || w->size == r->size);
  if (w->kind == EN_ARRAY || w->kind == EN_MAP) return w->kind == r->kind;
  return exact ? w->kind == r->kind : promotable(w->kind, r->kind);
}

static int pb_fail(pb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pb_fail(pb_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->why, sizeof(b->why), fmt, ap);
  va_end(ap);
  return ESK_EINVAL;
}

static plan_t *plan_new(pb_t *b, plan_op_t op, const esk_node_t *w, const esk_node_t *r) {
  plan_t *p = calloc(1, sizeof(*p));
  if (!p) return NULL;
  p->op = op;
  p->w = w;
  p->r = r;
  p->next = *b->list;
  *b->list = p;
  return p;
}

#define PATH_AT(b) ((b)->path[0] ? (b)->path : "(top level)")

static int build(pb_t *b, const esk_node_t *w, const esk_node_t *r, plan_t **out);

static int build_record(pb_t *b, const esk_node_t *w, const esk_node_t *r, plan_t *p) {
  size_t saved = strlen(b->path);
  p->steps = calloc(w->nfields + 1, sizeof(*p->steps));
  p->defaults = calloc(r->nfields + 1, sizeof(*p->defaults));
  char *used = calloc(r->nfields + 1, 1);
  int rc = ESK_OK;
  if (!p->steps || !p->defaults || !used) {
    rc = pb_fail(b, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < w->nfields; i++) {
    const esk_field_t *wf = &w->fields[i];
    int ri = -1;
    for (size_t k = 0; k < r->nfields && ri < 0; k++)
      if (!strcmp(r->fields[k].name, wf->name)) ri = (int)k;
    for (size_t k = 0; k < r->nfields && ri < 0; k++)
      for (size_t a = 0; a < r->fields[k].naliases && ri < 0; a++)
        if (!strcmp(r->fields[k].aliases[a], wf->name)) ri = (int)k;
    plan_step_t *st = &p->steps[p->nsteps++];
    st->reader_index = ri;
    st->wtype = wf->type;
    if (ri < 0) continue;
    used[ri] = 1;
    snprintf(b->path + saved, sizeof(b->path) - saved, "%s%s", saved ? "." : "",
             r->fields[ri].name);
    rc = build(b, wf->type, r->fields[ri].type, &st->plan);
    if (rc) goto cleanup;
    b->path[saved] = 0;
  }
  for (size_t k = 0; k < r->nfields; k++) {
    if (used[k]) continue;
    if (!r->fields[k].dflt) {
      snprintf(b->path + saved, sizeof(b->path) - saved, "%s%s", saved ? "." : "",
               r->fields[k].name);
      rc = pb_fail(b, "field '%s' is in the reader but not in the writer, and has no default",
                   b->path);
      goto cleanup;
    }
    p->defaults[p->ndefaults].reader_index = (int)k;
    p->defaults[p->ndefaults].field = &r->fields[k];
    p->ndefaults++;
  }
cleanup:
  free(used);
  return rc;
}

static int build(pb_t *b, const esk_node_t *w, const esk_node_t *r, plan_t **out) {
  if (w->kind == EN_RECORD && r->kind == EN_RECORD) {
    for (size_t i = 0; i < b->nmemo; i++) {
      if (b->memo[i].w == w && b->memo[i].r == r) {
        *out = b->memo[i].p;
        return ESK_OK;
      }
    }
  }
  plan_t *p;
  if (w->kind == EN_UNION) {
    p = plan_new(b, P_WUNION, w, r);
    if (!p || !(p->wbranches = calloc(w->nbranches + 1, sizeof(plan_t *))))
      return pb_fail(b, "out of memory");
    size_t readable = 0;
    for (size_t i = 0; i < w->nbranches; i++) {
      char keep[sizeof(b->why)];
      memcpy(keep, b->why, sizeof(keep));
      int rc = build(b, w->branches[i], r, &p->wbranches[i]);
      if (rc && b->strict) return rc;
      if (rc) {
        memcpy(b->why, keep, sizeof(keep));
        p->wbranches[i] = NULL;
      } else {
        readable++;
      }
    }
    if (!readable)
      return pb_fail(b, "%s: no branch of the writer's union can be read", PATH_AT(b));
    *out = p;
    return ESK_OK;
  }
  if (r->kind == EN_UNION) {
    int pick = -1;
    for (size_t i = 0; i < r->nbranches && pick < 0; i++)
      if (matches(w, r->branches[i], 1)) pick = (int)i;
    for (size_t i = 0; i < r->nbranches && pick < 0; i++)
      if (matches(w, r->branches[i], 0)) pick = (int)i;
    if (pick < 0)
      return pb_fail(b, "%s: the writer's %s matches no branch of the reader's union",
                     PATH_AT(b), w->fullname ? w->fullname : esk_node_kind_name(w->kind));
    p = plan_new(b, P_RUNION, w, r);
    if (!p) return pb_fail(b, "out of memory");
    p->rbranch = pick;
    *out = p;
    return build(b, w, r->branches[pick], &p->inner);
  }
  if (!matches(w, r, 0))
    return pb_fail(b, "%s: the writer's %s cannot be read as the reader's %s", PATH_AT(b),
                   w->fullname ? w->fullname : esk_node_kind_name(w->kind),
                   r->fullname ? r->fullname : esk_node_kind_name(r->kind));
  switch (w->kind) {
  case EN_RECORD: {
    p = plan_new(b, P_RECORD, w, r);
    if (!p) return pb_fail(b, "out of memory");
    struct memo *m = esk_array_grow(b->memo, &b->capmemo, b->nmemo + 1, sizeof(*m), 16);
    if (!m) return pb_fail(b, "out of memory");
    b->memo = m;
    b->memo[b->nmemo].w = w;
    b->memo[b->nmemo].r = r;
    b->memo[b->nmemo].p = p;
    b->nmemo++;
    *out = p;
    return build_record(b, w, r, p);
  }
  case EN_ENUM:
    p = plan_new(b, P_ENUM, w, r);
    if (!p || !(p->enum_map = calloc(w->nsymbols + 1, sizeof(int))))
      return pb_fail(b, "out of memory");
    for (size_t i = 0; i < w->nsymbols; i++) {
      p->enum_map[i] = r->enum_default;
      for (size_t k = 0; k < r->nsymbols; k++)
        if (!strcmp(w->symbols[i], r->symbols[k])) p->enum_map[i] = (int)k;
      if (p->enum_map[i] < 0 && b->strict)
        return pb_fail(b, "%s: symbol '%s' of %s is not in the reader, which has no default",
                       PATH_AT(b), w->symbols[i], w->fullname);
    }
    *out = p;
    return ESK_OK;
  case EN_ARRAY:
  case EN_MAP:
    p = plan_new(b, w->kind == EN_ARRAY ? P_ARRAY : P_MAP, w, r);
    if (!p) return pb_fail(b, "out of memory");
    *out = p;
    return build(b, w->items, r->items, &p->items);
  case EN_FIXED:
    p = plan_new(b, P_FIXED, w, r);
    break;
  default:
    p = plan_new(b, P_PRIM, w, r);
  }
  if (!p) return pb_fail(b, "out of memory");
  *out = p;
  return ESK_OK;
}

/* Builds a strict plan for (w, r) only to see whether it can be built. */
static int check_plan(const esk_schema_t *w, const esk_schema_t *r, esk_error_t *err) {
  plan_t *list = NULL, *p = NULL;
  pb_t b = {.list = &list, .strict = 1};
  int rc = build(&b, esk_schema_node(w), esk_schema_node(r), &p);
  free(b.memo);
  plans_free(list);
  if (rc)
    return esk_error_set(err, ESK_EINVAL, "%s v%d cannot be read as v%d: %s", esk_schema_type(w),
                         esk_schema_version(w), esk_schema_version(r), b.why);
  return ESK_OK;
}

/* The plan for (w, r), from the cache or built now. */
static int check_plan(const esk_schema_t *w, const esk_schema_t *r, esk_error_t *err);

static int get_plan(esk_codec_t *c, const esk_schema_t *w, const esk_schema_t *r,
                    plan_t **out, esk_error_t *err) {

  {
    for (size_t i = 0; i < c->ncache; i++) {
      if (c->cache[i].w == w && c->cache[i].r == r) {
        if (i) { /* most recently used first */
          plan_cache_t hit = c->cache[i];
          memmove(c->cache + 1, c->cache, i * sizeof(*c->cache));
          c->cache[0] = hit;
        }
        *out = c->cache[0].plan;
        return ESK_OK;
      }
    }
  }
  pb_t b = {.list = &c->plans};
  plan_t *p = NULL;
  int rc = build(&b, esk_schema_node(w), esk_schema_node(r), &p);
  free(b.memo);
  if (rc)
    return esk_error_set(err, ESK_EPOISON, "%s v%d cannot be read as v%d: %s",
                         esk_schema_type(w), esk_schema_version(w), esk_schema_version(r),
                         b.why);
  {
    plan_cache_t *pc = esk_array_grow(c->cache, &c->capcache, c->ncache + 1, sizeof(*pc), 16);
    if (!pc) return esk_error_set(err, ESK_ENOMEM, "out of memory caching a plan");
    c->cache = pc;
    memmove(c->cache + 1, c->cache, c->ncache * sizeof(*c->cache));
    c->cache[0].w = w;
    c->cache[0].r = r;
    c->cache[0].plan = p;
    c->ncache++;
  }
  *out = p;
  return ESK_OK;
}

/* --------------------------------------------------------------- reading */

typedef struct {
  const uint8_t *p, *end;
  const esk_codec_limits_t *lim;
  esk_error_t *err;
  int depth;
  size_t items; /* items of all arrays and maps read so far */
  esk_buf_t *str; /* NUL-terminated copy of a string for avro-c */
  const uint8_t *start;     /* the datum's first byte, for offsets */
  esk_codec_refusal_t *ref; /* filled when a string is refused */
  int refused;              /* the error is a refused string: callers prefix the path */
} rd_t;

#define POISON(rd, ...) (esk_error_set((rd)->err, ESK_EPOISON, __VA_ARGS__), ESK_EPOISON)

static inline int rd_long(rd_t *rd, int64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (rd->p >= rd->end) return POISON(rd, "truncated datum: a number runs past the end");
    uint8_t byte = *rd->p++;
    if (shift == 63 && (byte & 0x7e))
      return POISON(rd, "malformed datum: a variable-length number is over 64 bits");
    v |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *out = (int64_t)((v >> 1) ^ -(v & 1));
      return ESK_OK;
    }
  }
  return POISON(rd, "malformed datum: a variable-length number is over 10 bytes");
}

static inline int rd_int(rd_t *rd, int32_t *out) {
  int64_t v;
  int rc = rd_long(rd, &v);
  if (rc) return rc;
  if (v < INT32_MIN || v > INT32_MAX) return POISON(rd, "malformed datum: an int is out of range");
  *out = (int32_t)v;
  return ESK_OK;
}

/* Takes the next @p n bytes. *out is set on every path, to the position they start at, so
 * that the caller's pointer never depends on the return code: gcc -O3 splits the cold
 * POISON path into a function of its own and then no longer sees that it returns non-zero,
 * and warned of the caller's read after `if (rc) return rc` (issue 14). */
static inline int rd_fixed(rd_t *rd, size_t n, const uint8_t **out) {
  *out = rd->p;
  if ((size_t)(rd->end - rd->p) < n) return POISON(rd, "truncated datum");
  rd->p += n;
  return ESK_OK;
}

static inline int rd_bytes(rd_t *rd, const uint8_t **out, size_t *len) {
  int64_t n;
  int rc = rd_long(rd, &n);
  if (rc) return rc;
  if (n < 0) return POISON(rd, "malformed datum: negative length %lld", (long long)n);
  if ((uint64_t)n > rd->lim->max_string_bytes)
    return POISON(rd, "a string or bytes of %lld bytes is over the limit of %zu", (long long)n,
                  rd->lim->max_string_bytes);
  if ((uint64_t)n > (uint64_t)(rd->end - rd->p))
    return POISON(rd, "truncated datum: a length of %lld runs past the end", (long long)n);
  *out = rd->p;
  *len = (size_t)n;
  rd->p += n;
  return ESK_OK;
}

/* Reads a block count of an array or map; 0 ends it. */
static int rd_block(rd_t *rd, size_t *count) {
  int64_t n;
  int rc = rd_long(rd, &n);
  if (rc) return rc;
  if (n < 0) {
    int64_t size;
    if (n == INT64_MIN) return POISON(rd, "malformed datum: bad block count");
    n = -n;
    if ((rc = rd_long(rd, &size))) return rc;
    if (size < 0 || size > rd->end - rd->p) return POISON(rd, "malformed datum: bad block size");
  }
  if ((uint64_t)n > rd->lim->max_items || rd->items + (size_t)n > rd->lim->max_items)
    return POISON(rd, "an array or map of over %zu items is over the limit", rd->lim->max_items);
  rd->items += (size_t)n;
  *count = (size_t)n;
  return ESK_OK;
}

static int skip(rd_t *rd, const esk_node_t *w) {
  int64_t l;
  int32_t i;
  const uint8_t *p;
  size_t n;
  int rc = ESK_OK;
  switch (w->kind) {
  case EN_NULL: return ESK_OK;
  case EN_BOOLEAN: return rd_fixed(rd, 1, &p);
  case EN_INT: return rd_int(rd, &i);
  case EN_LONG: return rd_long(rd, &l);
  case EN_FLOAT: return rd_fixed(rd, 4, &p);
  case EN_DOUBLE: return rd_fixed(rd, 8, &p);
  case EN_BYTES:
  case EN_STRING: return rd_bytes(rd, &p, &n);
  case EN_FIXED: return rd_fixed(rd, w->size, &p);
  case EN_ENUM: return rd_int(rd, &i);
  case EN_UNION:
    if ((rc = rd_long(rd, &l))) return rc;
    if (l < 0 || (uint64_t)l >= w->nbranches)
      return POISON(rd, "malformed datum: union branch %lld does not exist", (long long)l);
    return skip(rd, w->branches[l]);
  default: break;
  }
  if (++rd->depth > rd->lim->max_depth)
    return POISON(rd, "the datum nests deeper than the limit of %d", rd->lim->max_depth);
  if (w->kind == EN_RECORD) {
    for (size_t k = 0; k < w->nfields && !rc; k++) rc = skip(rd, w->fields[k].type);
  } else {
    while (!rc && !(rc = rd_block(rd, &n)) && n) {
      for (size_t k = 0; k < n && !rc; k++) {
        size_t klen;
        if (w->kind == EN_MAP) rc = rd_bytes(rd, &p, &klen);
        if (!rc) rc = skip(rd, w->items);
      }
    }
  }
  rd->depth--;
  return rc;
}

/* Refuses a string that C could not keep whole (U+0000) or that is not the
 * UTF-8 Avro requires: avro-c, and every caller after it, would see a string
 * cut at its first NUL. The path is filled in as the error goes up. */
static int check_string(rd_t *rd, const uint8_t *p, size_t n) {
  size_t at = esk_utf8_check(p, n);
  if (at == n) return ESK_OK;
  esk_codec_refusal_t *f = rd->ref;
  f->path[0] = 0;
  f->nul = p[at] == 0;
  f->at = at;
  f->length = n;
  f->offset = 10 + (size_t)(p - rd->start) + at;
  rd->refused = 1;
  return POISON(rd, "a string is refused"); /* decode_datum writes the full message */
}

/* Prepends a path segment to a refused string's path: ".name" (the dot only
 * before another name), "[3]" or "[\"key\"]". */
static void path_prepend(rd_t *rd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void path_prepend(rd_t *rd, const char *fmt, ...) {
  char seg[sizeof(rd->ref->path)];
  char *path = rd->ref->path;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(seg, sizeof(seg), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  int dot = seg[0] != '[' && path[0] && path[0] != '[';
  size_t add = strlen(seg) + (size_t)dot, have = strlen(path);
  if (add + have >= sizeof(rd->ref->path)) return; /* too deep to name: keep the inner part */
  memmove(path + add, path, have + 1);
  memcpy(path, seg, add - (size_t)dot);
  if (dot) path[add - 1] = '.';
}

#define AVRO_CHECK(rd, call) \
  do { \
    if (call) return esk_error_set((rd)->err, ESK_ENOMEM, "avro-c: %s", avro_strerror()); \
  } while (0)

static int read_prim(rd_t *rd, const plan_t *pl, avro_value_t *dst) {
  const uint8_t *p;
  size_t n;
  int rc;
  esk_node_kind_t rk = pl->r->kind;
  switch (pl->w->kind) {
  case EN_NULL: AVRO_CHECK(rd, avro_value_set_null(dst)); return ESK_OK;
  case EN_BOOLEAN:
    if ((rc = rd_fixed(rd, 1, &p))) return rc;
    if (*p > 1) return POISON(rd, "malformed datum: a boolean byte is %u", *p);
    avro_value_set_boolean(dst, *p);
    return ESK_OK;
  case EN_INT:
  case EN_LONG: {
    int64_t v;
    if (pl->w->kind == EN_INT) {
      int32_t i;
      if ((rc = rd_int(rd, &i))) return rc;
      v = i;
    } else if ((rc = rd_long(rd, &v))) {
      return rc;
    }
    switch (rk) {
    case EN_INT: avro_value_set_int(dst, (int32_t)v); break;
    case EN_LONG: avro_value_set_long(dst, v); break;
    case EN_FLOAT: avro_value_set_float(dst, (float)v); break;
    default: avro_value_set_double(dst, (double)v);
    }
    return ESK_OK;
  }
  case EN_FLOAT: {
    float f;
    if ((rc = rd_fixed(rd, 4, &p))) return rc;
    memcpy(&f, p, 4); /* little-endian hosts only, like avro-c's own encoding */
    if (rk == EN_FLOAT)
      avro_value_set_float(dst, f);
    else
      avro_value_set_double(dst, f);
    return ESK_OK;
  }
  case EN_DOUBLE: {
    double d;
    if ((rc = rd_fixed(rd, 8, &p))) return rc;
    memcpy(&d, p, 8);
    avro_value_set_double(dst, d);
    return ESK_OK;
  }
  default: /* string, bytes */
    if ((rc = rd_bytes(rd, &p, &n))) return rc;
    if (rk == EN_STRING && (rc = check_string(rd, p, n))) return rc;
    if (rk == EN_STRING) {
      /* avro-c copies size bytes, the NUL included, from the source: give it a
       * NUL-terminated copy rather than one byte past the string */
      esk_buf_reset(rd->str);
      if (esk_buf_reserve(rd->str, n + 1, NULL)) return POISON(rd, "string over the limit");
      memcpy(rd->str->data, p, n);
      rd->str->data[n] = 0;
      AVRO_CHECK(rd, avro_value_set_string_len(dst, (const char *)rd->str->data, n + 1));
    } else {
      AVRO_CHECK(rd, avro_value_set_bytes(dst, (void *)p, n));
    }
    return ESK_OK;
  }
}

static int read_plan(rd_t *rd, const plan_t *pl, avro_value_t *dst) {
  int rc = ESK_OK;
  switch (pl->op) {
  case P_PRIM: return read_prim(rd, pl, dst);
  case P_FIXED: {
    const uint8_t *p;
    if ((rc = rd_fixed(rd, pl->w->size, &p))) return rc;
    AVRO_CHECK(rd, avro_value_set_fixed(dst, (void *)p, pl->w->size));
    return ESK_OK;
  }
  case P_ENUM: {
    int32_t i;
    if ((rc = rd_int(rd, &i))) return rc;
    if (i < 0 || (size_t)i >= pl->w->nsymbols)
      return POISON(rd, "malformed datum: enum index %d of %s does not exist", i,
                    pl->w->fullname);
    if (pl->enum_map[i] < 0)
      return POISON(rd, "symbol '%s' of %s is not in the reader, which has no default",
                    pl->w->symbols[i], pl->w->fullname);
    avro_value_set_enum(dst, pl->enum_map[i]);
    return ESK_OK;
  }
  case P_WUNION: {
    int64_t l;
    if ((rc = rd_long(rd, &l))) return rc;
    if (l < 0 || (uint64_t)l >= pl->w->nbranches)
      return POISON(rd, "malformed datum: union branch %lld does not exist", (long long)l);
    if (!pl->wbranches[l])
      return POISON(rd, "the writer's union branch %lld (%s) cannot be read by the reader",
                    (long long)l,
                    pl->w->branches[l]->fullname ? pl->w->branches[l]->fullname
                                                 : esk_node_kind_name(pl->w->branches[l]->kind));
    return read_plan(rd, pl->wbranches[l], dst);
  }
  case P_RUNION: {
    avro_value_t b;
    AVRO_CHECK(rd, avro_value_set_branch(dst, pl->rbranch, &b));
    return read_plan(rd, pl->inner, &b);
  }
  default: break;
  }
  if (++rd->depth > rd->lim->max_depth)
    return POISON(rd, "the datum nests deeper than the limit of %d", rd->lim->max_depth);
  if (pl->op == P_RECORD) {
    for (size_t i = 0; i < pl->nsteps && !rc; i++) {
      const plan_step_t *st = &pl->steps[i];
      if (st->reader_index < 0) {
        rc = skip(rd, st->wtype);
      } else {
        avro_value_t f;
        avro_value_get_by_index(dst, (size_t)st->reader_index, &f, NULL);
        rc = read_plan(rd, st->plan, &f);
        if (rc && rd->refused) path_prepend(rd, "%s", pl->r->fields[st->reader_index].name);
      }
    }
    for (size_t i = 0; i < pl->ndefaults && !rc; i++) {
      avro_value_t f;
      avro_value_get_by_index(dst, (size_t)pl->defaults[i].reader_index, &f, NULL);
      esk_error_t derr = {0};
      rc = esk_value_set_json(pl->defaults[i].field->type, &f, pl->defaults[i].field->dflt, 1,
                              pl->defaults[i].field->name, &derr);
      if (rc) rc = POISON(rd, "default: %s", derr.msg);
    }
  } else {
    size_t n, index = 0;
    avro_value_reset(dst);
    while (!rc && !(rc = rd_block(rd, &n)) && n) {
      for (size_t k = 0; k < n && !rc; k++, index++) {
        avro_value_t item;
        const uint8_t *key = NULL;
        size_t klen = 0;
        if (pl->op == P_MAP) {
          char small[128], *kz = small;
          if ((rc = rd_bytes(rd, &key, &klen))) break;
          if ((rc = check_string(rd, key, klen))) {
            path_prepend(rd, "[key of entry %zu]", index);
            break;
          }
          if (klen >= sizeof(small) && !(kz = malloc(klen + 1)))
            return esk_error_set(rd->err, ESK_ENOMEM, "out of memory");
          memcpy(kz, key, klen);
          kz[klen] = 0;
          int bad = avro_value_add(dst, kz, &item, NULL, NULL);
          if (kz != small) free(kz);
          AVRO_CHECK(rd, bad);
        } else {
          AVRO_CHECK(rd, avro_value_append(dst, &item, NULL));
        }
        rc = read_plan(rd, pl->items, &item);
        if (rc && rd->refused && key)
          path_prepend(rd, "[\"%.*s%s\"]", klen > 40 ? 40 : (int)klen, (const char *)key,
                       klen > 40 ? "..." : "");
        else if (rc && rd->refused)
          path_prepend(rd, "[%zu]", index);
      }
    }
  }
  rd->depth--;
  return rc;
}

/* ------------------------------------------------------------- encoding */

static inline int put_long(esk_buf_t *b, int64_t v, esk_error_t *err) {
  if (b->cap - b->len < 10) {
    int rc = esk_buf_reserve(b, 10, err);
    if (rc) return rc;
  }
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  uint8_t *p = b->data + b->len;
  while (z > 0x7f) {
    *p++ = (uint8_t)(z | 0x80);
    z >>= 7;
  }
  *p++ = (uint8_t)z;
  b->len = (size_t)(p - b->data);
  return ESK_OK;
}

static inline int put_bytes(esk_buf_t *b, const void *p, size_t n, esk_error_t *err) {
  int rc = put_long(b, (int64_t)n, err);
  return rc ? rc : esk_buf_append(b, p, n, err);
}

static int enc(esk_buf_t *b, const avro_value_t *v, esk_error_t *err) {
  int rc = ESK_OK;
  switch (avro_value_get_type(v)) {
  case AVRO_NULL: return ESK_OK;
  case AVRO_BOOLEAN: {
    int x = 0;
    avro_value_get_boolean(v, &x);
    uint8_t byte = x ? 1 : 0;
    return esk_buf_append(b, &byte, 1, err);
  }
  case AVRO_INT32: {
    int32_t x = 0;
    avro_value_get_int(v, &x);
    return put_long(b, x, err);
  }
  case AVRO_INT64: {
    int64_t x = 0;
    avro_value_get_long(v, &x);
    return put_long(b, x, err);
  }
  case AVRO_FLOAT: {
    float x = 0;
    avro_value_get_float(v, &x);
    return esk_buf_append(b, &x, 4, err);
  }
  case AVRO_DOUBLE: {
    double x = 0;
    avro_value_get_double(v, &x);
    return esk_buf_append(b, &x, 8, err);
  }
  case AVRO_STRING: {
    const char *s = NULL;
    size_t size = 0;
    avro_value_get_string(v, &s, &size);
    return put_bytes(b, s, size ? size - 1 : 0, err);
  }
  case AVRO_BYTES: {
    const void *p = NULL;
    size_t size = 0;
    avro_value_get_bytes(v, &p, &size);
    return put_bytes(b, p, size, err);
  }
  case AVRO_FIXED: {
    const void *p = NULL;
    size_t size = 0;
    avro_value_get_fixed(v, &p, &size);
    return esk_buf_append(b, p, size, err);
  }
  case AVRO_ENUM: {
    int x = 0;
    avro_value_get_enum(v, &x);
    return put_long(b, x, err);
  }
  case AVRO_RECORD: {
    size_t n = 0;
    avro_value_get_size(v, &n);
    for (size_t i = 0; i < n && !rc; i++) {
      avro_value_t f;
      avro_value_get_by_index(v, i, &f, NULL);
      rc = enc(b, &f, err);
    }
    return rc;
  }
  case AVRO_ARRAY:
  case AVRO_MAP: {
    size_t n = 0;
    int is_map = avro_value_get_type(v) == AVRO_MAP;
    avro_value_get_size(v, &n);
    if (n) rc = put_long(b, (int64_t)n, err);
    for (size_t i = 0; i < n && !rc; i++) {
      avro_value_t item;
      const char *key = NULL;
      avro_value_get_by_index(v, i, &item, &key);
      if (is_map) rc = put_bytes(b, key, strlen(key), err);
      if (!rc) rc = enc(b, &item, err);
    }
    return rc ? rc : put_long(b, 0, err);
  }
  case AVRO_UNION: {
    int d = -1;
    avro_value_t br;
    avro_value_get_discriminant(v, &d);
    if (d < 0 || avro_value_get_current_branch(v, &br))
      return esk_error_set(err, ESK_EINVAL, "a union in the value has no branch set");
    rc = put_long(b, d, err);
    return rc ? rc : enc(b, &br, err);
  }
  default: return esk_error_set(err, ESK_EINVAL, "the value has an unknown type");
  }
}

int esk_codec_encode(esk_codec_t *c, const esk_schema_t *writer, const avro_value_t *value,
                     esk_buf_t *out, esk_error_t *err) {
  (void)c;
  avro_schema_t vs = avro_value_get_schema(value);
  if (vs != esk_schema_avro(writer) && !avro_schema_equal(vs, esk_schema_avro(writer)))
    return esk_error_set(err, ESK_EINVAL, "encode: the value is not of the schema %s",
                         esk_schema_file(writer));
  size_t start = out->len;
  uint64_t fp = esk_schema_fingerprint(writer);
  uint8_t hdr[10] = {0xC3, 0x01};
  for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)(fp >> (8 * i));
  int rc = esk_buf_append(out, hdr, sizeof(hdr), err);
  if (!rc) rc = enc(out, value, err);
  if (rc) out->len = start;
  return rc;
}

/* ------------------------------------------------------------- decoding */

/* The header check and the fingerprint are apart so that esk_codec_decode() computes the
 * fingerprint where it declares it. Through esk_codec_peek()'s out-parameter, set only on
 * success, the fingerprint looked unset to gcc -O3 on the failure paths, which return
 * esk_error_set()'s value: in another file, the compiler cannot see it is non-zero (issue 14). */
static int check_header(const uint8_t *p, size_t len, esk_error_t *err) {
  if (len < 10)
    return esk_error_set(err, ESK_EPOISON, "message of %zu bytes is shorter than the 10-byte header",
                         len);
  if (p[0] != 0xC3 || p[1] != 0x01)
    return esk_error_set(err, ESK_EPOISON,
                         "wrong magic %02x %02x: not Avro single-object encoding (C3 01)", p[0],
                         p[1]);
  return ESK_OK;
}

/* The little-endian fingerprint of a header check_header() accepted. */
static uint64_t header_fingerprint(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[2 + i];
  return v;
}

int esk_codec_peek(const void *data, size_t len, uint64_t *fp, esk_error_t *err) {
  int rc = check_header(data, len, err);
  if (!rc) *fp = header_fingerprint(data);
  return rc;
}

/* One reusable value per reader schema; entries never move (values in use
 * are handed out by pointer). */
static int scratch_of(esk_codec_t *c, const esk_schema_t *s, avro_value_t **out, esk_error_t *err) {
  for (size_t i = 0; i < c->nscratch; i++) {
    if (c->scratch[i]->s == s) {
      *out = &c->scratch[i]->v;
      return ESK_OK;
    }
  }
  scratch_t **p = realloc(c->scratch, (c->nscratch + 1) * sizeof(*p));
  if (!p) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  c->scratch = p;
  scratch_t *e = calloc(1, sizeof(*e));
  if (!e) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  int rc = esk_value_new(&e->v, s, err);
  if (rc) {
    free(e);
    return rc;
  }
  e->s = s;
  p[c->nscratch++] = e;
  *out = &e->v;
  return ESK_OK;
}

/* Decodes datum bytes of @p w into the scratch value of @p r. */
static int decode_datum(esk_codec_t *c, const uint8_t *p, size_t len, const esk_schema_t *w,
                        const esk_schema_t *r, avro_value_t **out, esk_error_t *err) {
  plan_t *plan = NULL;
  avro_value_t *v = NULL;
  int rc = get_plan(c, w, r, &plan, err);
  if (!rc) rc = scratch_of(c, r, &v, err);
  if (rc) return rc;
  rd_t rd = {p, p + len, &c->lim, err, 0, 0, &c->str, p, &c->refusal, 0};
  avro_value_reset(v);
  rc = read_plan(&rd, plan, v);
  if (rc && rd.refused) {
    const esk_codec_refusal_t *f = &c->refusal;
    esk_error_t mine = {0};
    esk_error_set(&mine, ESK_EPOISON,
                  "string field '%s' %s at byte %zu of its %zu (byte %zu of the message): "
                  "refused, never cut short",
                  f->path[0] ? f->path : "(top level)",
                  f->nul ? "holds U+0000" : "is not valid UTF-8", f->at, f->length, f->offset);
    c->refused = 1;
    memcpy(c->refusal_msg, mine.msg, sizeof(mine.msg));
    if (err) *err = mine;
    return ESK_EPOISON;
  }
  if (rc) return rc;
  if (rd.p != rd.end)
    return esk_error_set(err, ESK_EPOISON, "%zu trailing bytes after the %s v%d datum",
                         (size_t)(rd.end - rd.p), esk_schema_type(w), esk_schema_version(w));
  *out = v;
  return ESK_OK;
}

/* The newest schema of writer @p w's type in the codec's set. */
static const esk_schema_t *latest_of(esk_codec_t *c, const esk_schema_t *w) {
  size_t slot = (size_t)(w->fp & (LATEST_SLOTS - 1)), n = esk_schema_set_count(c->set);
  if (c->latest[slot].writer != w || c->latest[slot].set_n != n) {
    c->latest[slot].writer = w;
    c->latest[slot].latest = esk_schema_set_latest(c->set, esk_schema_type(w));
    c->latest[slot].set_n = n;
  }
  return c->latest[slot].latest;
}

int esk_codec_decode(esk_codec_t *c, const void *data, size_t len, int reader_version,
                     const esk_schema_t **reader_out, avro_value_t **value_out,
                     esk_error_t *err) {
  int rc = check_header(data, len, err);
  if (rc) return rc;
  if (len > c->lim.max_message_bytes)
    return esk_error_set(err, ESK_EPOISON, "message of %zu bytes is over the limit of %zu", len,
                         c->lim.max_message_bytes);
  uint64_t fp = header_fingerprint(data);
  const esk_schema_t *w = esk_schema_set_by_fingerprint(c->set, fp);
  if (!w)
    return esk_error_set(err, ESK_EPOISON, "unknown writer schema fingerprint %016llx",
                         (unsigned long long)fp);
  const char *type = esk_schema_type(w);
  const esk_schema_t *target = reader_version ? esk_schema_set_get(c->set, type, reader_version)
                                              : latest_of(c, w);
  if (!target)
    return esk_error_set(err, ESK_EPOISON, "no reader schema %s v%d", type, reader_version);
  const uint8_t *datum = (const uint8_t *)data + 10;
  size_t dlen = len - 10;
  const esk_schema_t *cur = w; /* the schema of the bytes, or of *val once decoded */
  avro_value_t *val = NULL;
  int tv = esk_schema_version(target);
  while (esk_schema_version(cur) < tv) {
    int k = esk_schema_version(cur);
    while (k < tv && !find_upcaster(c, type, k)) k++;
    if (k == tv) break; /* resolution takes it the rest of the way */
    const esk_schema_t *at = esk_schema_set_get(c->set, type, k);
    const esk_schema_t *next = esk_schema_set_get(c->set, type, k + 1);
    if (!at || !next)
      return esk_error_set(err, ESK_EPOISON, "%s: no schema v%d or v%d in the set", type, k,
                           k + 1);
    if (val && at != cur) { /* resolve the value: re-encode, read as the next version */
      esk_buf_reset(&c->tmp);
      if ((rc = enc(&c->tmp, val, err))) return rc;
      datum = c->tmp.data;
      dlen = c->tmp.len;
      val = NULL;
    }
    if (!val && (rc = decode_datum(c, datum, dlen, cur, at, &val, err))) return rc;
    avro_value_t *to;
    if ((rc = scratch_of(c, next, &to, err))) return rc;
    avro_value_reset(to);
    esk_error_t uerr; /* cleared, not zeroed: it is per event */
    esk_error_clear(&uerr);
    rc = find_upcaster(c, type, k)(val, to, &uerr);
    if (rc)
      return esk_error_set(err, ESK_EPOISON, "upcasting %s v%d -> v%d: %s", type, k, k + 1,
                           uerr.msg[0] ? uerr.msg : "failed");
    val = to;
    cur = next;
  }
  if (val && cur != target) {
    esk_buf_reset(&c->tmp);
    if ((rc = enc(&c->tmp, val, err))) return rc;
    datum = c->tmp.data;
    dlen = c->tmp.len;
    val = NULL;
  }
  if (!val && (rc = decode_datum(c, datum, dlen, cur, target, &val, err))) return rc;
  *reader_out = target;
  *value_out = val;
  return ESK_OK;
}

/* Matched by the error rather than reset by each decode: a refusal is the
 * reason of the error it wrote, and of no later one. */
const esk_codec_refusal_t *esk_codec_refusal(const esk_codec_t *c, const esk_error_t *err) {
  if (!c->refused || !err || err->code != ESK_EPOISON || strcmp(err->msg, c->refusal_msg))
    return NULL;
  return &c->refusal;
}

int esk_codec_raw_string(esk_codec_t *c, const void *data, size_t len, const char *field,
                         const char **out, size_t *out_len, esk_error_t *err) {
  uint64_t fp = 0;
  int rc = esk_codec_peek(data, len, &fp, err);
  if (rc) return rc;
  const esk_schema_t *w = esk_schema_set_by_fingerprint(c->set, fp);
  if (!w)
    return esk_error_set(err, ESK_EPOISON, "unknown writer schema fingerprint %016llx",
                         (unsigned long long)fp);
  const esk_node_t *n = esk_schema_node(w);
  const uint8_t *p = (const uint8_t *)data + 10;
  rd_t rd = {p, (const uint8_t *)data + len, &c->lim, err, 0, 0, &c->str, p, &c->refusal, 0};
  for (size_t i = 0; n->kind == EN_RECORD && i < n->nfields; i++) {
    if (strcmp(n->fields[i].name, field) || n->fields[i].type->kind != EN_STRING) {
      if ((rc = skip(&rd, n->fields[i].type))) return rc;
      continue;
    }
    const uint8_t *s;
    size_t slen;
    if ((rc = rd_bytes(&rd, &s, &slen))) return rc;
    *out = (const char *)s;
    *out_len = slen;
    return ESK_OK;
  }
  return esk_error_set(err, ESK_ENOTFOUND, "%s v%d has no string field '%s'", esk_schema_type(w),
                       esk_schema_version(w), field);
}

int esk_codec_check_readable(esk_codec_t *c, const esk_schema_t *writer,
                             const esk_schema_t *reader, esk_error_t *err) {
  const char *type = esk_schema_type(writer);
  if (strcmp(type, esk_schema_type(reader)))
    return esk_error_set(err, ESK_EINVAL, "%s and %s are different types", type,
                         esk_schema_type(reader));
  int rc = ESK_OK;
  const esk_schema_t *cur = writer;
  int tv = esk_schema_version(reader);
  while (esk_schema_version(cur) < tv) {
    int k = esk_schema_version(cur);
    while (k < tv && !find_upcaster(c, type, k)) k++;
    if (k == tv) break;
    /* an upcaster is only registered when both versions are in the codec's set */
    const esk_schema_t *at = esk_schema_set_get(c->set, type, k);
    const esk_schema_t *next = esk_schema_set_get(c->set, type, k + 1);
    if (!at || !next)
      return esk_error_set(err, ESK_EINVAL, "%s v%d cannot be read as v%d: no schema v%d or v%d",
                           type, esk_schema_version(writer), tv, k, k + 1);
    if ((rc = check_plan(cur, at, err))) break;
    cur = next;
  }
  if (!rc) rc = check_plan(cur, reader, err);
  if (rc && cur != writer && err) {
    char inner[ESK_ERROR_MSG_MAX];
    snprintf(inner, sizeof(inner), "%s", err->msg);
    rc = esk_error_set(err, ESK_EINVAL, "%s v%d cannot be read as v%d (after upcasters): %s",
                       type, esk_schema_version(writer), tv, inner);
  }
  return rc;
}
