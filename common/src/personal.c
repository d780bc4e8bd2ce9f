/* Personal data marks: reading and checking `esk.personal` (docs/architecture.md,
 * "Personal data"). */
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "esk/personal.h"

/* How deep a personal record may nest records: deeper is refused, which also
 * keeps a self-referencing record from recursing without end. */
#define PERSONAL_MAX_DEPTH 16

void esk_personal_free(esk_schema_t *s) {
  for (size_t i = 0; i < s->npersonal; i++) {
    free((char *)s->personal[i].forgotten_json);
    if (s->forgotten && s->forgotten[i]) json_decref(s->forgotten[i]);
  }
  free(s->personal);
  free(s->forgotten);
  s->personal = NULL;
  s->forgotten = NULL;
  s->npersonal = 0;
}

/* Refuses a mark anywhere but on a field of the top-level record: on a type,
 * on a field of a nested record (inline or in a shared type's file). @p t is a
 * type as JSON; @p top says whether its fields are the top-level record's. */
static int scan_misplaced(const esk_schema_t *s, json_t *t, int top, int depth,
                          esk_error_t *err) {
  if (depth > 64)
    return esk_error_set(err, ESK_EINVAL, "%s: the schema nests deeper than 64 levels", s->file);
  if (json_is_array(t)) {
    for (size_t i = 0; i < json_array_size(t); i++) {
      int rc = scan_misplaced(s, json_array_get(t, i), 0, depth + 1, err);
      if (rc) return rc;
    }
    return ESK_OK;
  }
  if (!json_is_object(t)) return ESK_OK;
  const char *name = json_string_value(json_object_get(t, "name"));
  if (json_object_get(t, ESK_PERSONAL_ATTR))
    return esk_error_set(err, ESK_EINVAL,
                         "%s: type %s carries \"" ESK_PERSONAL_ATTR
                         "\": a mark goes on a field of the top-level record, not on a type",
                         s->file, name ? name : json_string_value(json_object_get(t, "type")));
  json_t *fields = json_object_get(t, "fields");
  if (json_is_array(fields)) {
    for (size_t i = 0; i < json_array_size(fields); i++) {
      json_t *f = json_array_get(fields, i);
      if (!top && json_is_object(f) && json_object_get(f, ESK_PERSONAL_ATTR))
        return esk_error_set(
            err, ESK_EINVAL,
            "%s: field '%s' of the nested record %s carries \"" ESK_PERSONAL_ATTR
            "\": marks go only on the top-level record's fields (mark the field that holds "
            "%s instead), where the subject field is unambiguous",
            s->file, json_string_value(json_object_get(f, "name")), name ? name : "(anonymous)",
            name ? name : "the record");
      int rc = scan_misplaced(s, json_object_get(f, "type"), 0, depth + 1, err);
      if (rc) return rc;
    }
  }
  json_t *inner = json_object_get(t, "items");
  if (!inner) inner = json_object_get(t, "values");
  if (inner) return scan_misplaced(s, inner, 0, depth + 1, err);
  json_t *wrapped = json_object_get(t, "type");
  if (json_is_object(wrapped) || json_is_array(wrapped))
    return scan_misplaced(s, wrapped, 0, depth + 1, err);
  return ESK_OK;
}

/* Whether a value of type @p n can be encrypted and stay valid Avro: a string,
 * a union of null and string, or a record of such fields. On a refusal,
 * @p why names the part that cannot. */
static int encryptable(const esk_node_t *n, int depth, const char **why, const char **at) {
  if (depth > PERSONAL_MAX_DEPTH) {
    *why = "records nested too deep";
    return 0;
  }
  switch (n->kind) {
  case EN_STRING:
    return 1;
  case EN_UNION: {
    int strings = 0;
    for (size_t i = 0; i < n->nbranches; i++) {
      if (n->branches[i]->kind == EN_STRING)
        strings++;
      else if (n->branches[i]->kind != EN_NULL) {
        *why = "a union may hold only null and string";
        return 0;
      }
    }
    if (!strings) *why = "a union without a string branch";
    return strings > 0;
  }
  case EN_RECORD:
    for (size_t i = 0; i < n->nfields; i++) {
      if (!encryptable(n->fields[i].type, depth + 1, why, at)) {
        if (!*at) *at = n->fields[i].name; /* the innermost offending field */
        return 0;
      }
    }
    return 1;
  default:
    *why = esk_node_kind_name(n->kind);
    return 0;
  }
}

static const esk_field_t *field_named(const esk_node_t *rec, const char *name, size_t *index) {
  for (size_t i = 0; i < rec->nfields; i++) {
    if (!strcmp(rec->fields[i].name, name)) {
      *index = i;
      return &rec->fields[i];
    }
  }
  return NULL;
}

/* Checks the mark @p m of field @p i of the top-level record @p rec and fills
 * @p out. */
static int compile_mark(esk_schema_t *s, const esk_node_t *rec, size_t i, json_t *m,
                        esk_personal_field_t *out, json_t **forgotten, esk_error_t *err) {
  const char *fname = rec->fields[i].name;
  if (!json_is_object(m))
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s': \"" ESK_PERSONAL_ATTR
                         "\" must be an object with \"subject\" and \"forgotten\"",
                         s->file, fname);
  const char *key;
  json_t *v;
  json_object_foreach(m, key, v) {
    if (strcmp(key, "subject") && strcmp(key, "forgotten"))
      return esk_error_set(err, ESK_EINVAL,
                           "%s: field '%s': \"" ESK_PERSONAL_ATTR
                           "\" has an unknown member '%.64s' (only \"subject\" and \"forgotten\")",
                           s->file, fname, key);
  }
  json_t *subj = json_object_get(m, "subject");
  json_t *fg = json_object_get(m, "forgotten");
  if (!json_is_string(subj))
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s': \"" ESK_PERSONAL_ATTR
                         "\" needs \"subject\", the name of the field that identifies the "
                         "data subject",
                         s->file, fname);
  if (!fg)
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s': \"" ESK_PERSONAL_ATTR
                         "\" needs \"forgotten\", the value readers see once the subject is "
                         "forgotten",
                         s->file, fname);
  const char *sname = json_string_value(subj);
  size_t sidx = 0;
  const esk_field_t *sf = field_named(rec, sname, &sidx);
  if (!sf)
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s': its subject field '%.64s' is not a field of %s",
                         s->file, fname, sname, rec->fullname);
  if (sidx == i)
    return esk_error_set(err, ESK_EINVAL, "%s: field '%s' cannot be its own subject", s->file,
                         fname);
  if (sf->type->kind != EN_STRING)
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s': its subject field '%s' must be a string, not %s",
                         s->file, fname, sname, esk_node_kind_name(sf->type->kind));
  const char *why = NULL, *at = NULL;
  if (!encryptable(rec->fields[i].type, 0, &why, &at))
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s' cannot be personal (%s%s%s): only a string, a union "
                         "of null and string, or a record of those can hold ciphertext and "
                         "stay valid Avro",
                         s->file, fname, at ? at : "", at ? ": " : "", why);
  if (!esk_json_matches(rec->fields[i].type, fg, 0))
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s': \"forgotten\" is not a value of the field's type",
                         s->file, fname);
  char *fj = json_dumps(fg, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
  if (!fj) return esk_error_set(err, ESK_ENOMEM, "%s: out of memory", s->file);
  out->name = fname;
  out->index = i;
  out->subject = sf->name;
  out->subject_index = sidx;
  out->forgotten_json = fj;
  *forgotten = json_incref(fg);
  return ESK_OK;
}

/* Refuses a nested type whose own file marks fields: its marks would not apply
 * inside @p s (the subject would be ambiguous), and a reader of the file could
 * think them protected. */
static int scan_marked_types(const esk_schema_set_t *set, const esk_schema_t *s,
                             const esk_node_t *n, const char *field, int depth, esk_error_t *err) {
  if (depth > 64) return ESK_OK; /* a cycle through a named type: seen already */
  const esk_schema_t *def = depth ? esk_schema_set_defining(set, n) : NULL;
  if (def && def != s && def->npersonal)
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s' holds %s, whose file %s marks fields \"" ESK_PERSONAL_ATTR
                         "\": marks of a nested type do not apply; mark the field '%s' "
                         "itself, and none inside %s",
                         s->file, field, n->fullname, def->file, field, def->file);
  switch (n->kind) {
  case EN_RECORD:
    for (size_t i = 0; i < n->nfields; i++) {
      int rc = scan_marked_types(set, s, n->fields[i].type, depth ? field : n->fields[i].name,
                                 depth + 1, err);
      if (rc) return rc;
    }
    return ESK_OK;
  case EN_ARRAY:
  case EN_MAP:
    return scan_marked_types(set, s, n->items, field, depth + 1, err);
  case EN_UNION:
    for (size_t i = 0; i < n->nbranches; i++) {
      int rc = scan_marked_types(set, s, n->branches[i], field, depth + 1, err);
      if (rc) return rc;
    }
    return ESK_OK;
  default:
    return ESK_OK;
  }
}

int esk_personal_compile(const esk_schema_set_t *set, esk_schema_t *s, esk_error_t *err) {
  int rc = scan_misplaced(s, s->doc, 1, 0, err);
  if (!rc) rc = scan_marked_types(set, s, s->root, "", 0, err);
  if (rc) return rc;
  json_t *jfields = json_object_get(s->doc, "fields");
  const esk_node_t *rec = s->root;
  if (!json_is_array(jfields) || rec->kind != EN_RECORD) return ESK_OK;
  size_t marked = 0;
  for (size_t i = 0; i < json_array_size(jfields); i++)
    if (json_object_get(json_array_get(jfields, i), ESK_PERSONAL_ATTR)) marked++;
  if (!marked) return ESK_OK;
  if (marked > ESK_PERSONAL_MAX_FIELDS)
    return esk_error_set(err, ESK_EINVAL, "%s: %zu personal fields; at most %d", s->file, marked,
                         ESK_PERSONAL_MAX_FIELDS);
  s->personal = calloc(marked, sizeof(*s->personal));
  s->forgotten = calloc(marked, sizeof(*s->forgotten));
  if (!s->personal || !s->forgotten)
    return esk_error_set(err, ESK_ENOMEM, "%s: out of memory", s->file);
  for (size_t i = 0; i < json_array_size(jfields) && i < rec->nfields; i++) {
    json_t *m = json_object_get(json_array_get(jfields, i), ESK_PERSONAL_ATTR);
    if (!m) continue;
    rc = compile_mark(s, rec, i, m, &s->personal[s->npersonal], &s->forgotten[s->npersonal],
                      err);
    if (rc) return rc;
    s->npersonal++;
  }
  /* a subject must not itself be personal: it is the key's name, kept in clear */
  for (size_t k = 0; k < s->npersonal; k++)
    for (size_t j = 0; j < s->npersonal; j++)
      if (s->personal[k].subject_index == s->personal[j].index)
        return esk_error_set(err, ESK_EINVAL,
                             "%s: field '%s': its subject field '%s' is itself personal; the "
                             "subject id must stay in clear to find the subject's key",
                             s->file, s->personal[k].name, s->personal[k].subject);
  return ESK_OK;
}

const esk_personal_field_t *esk_schema_personal(const esk_schema_t *s, size_t *n) {
  *n = s->npersonal;
  return s->npersonal ? s->personal : NULL;
}

static const esk_personal_field_t *mark_of(const esk_schema_t *s, const char *field) {
  for (size_t i = 0; i < s->npersonal; i++)
    if (!strcmp(s->personal[i].name, field)) return &s->personal[i];
  return NULL;
}

int esk_personal_check_versions(const esk_schema_t *older, const esk_schema_t *newer,
                                esk_error_t *err) {
  const esk_node_t *on = older->root, *nn = newer->root;
  if (on->kind != EN_RECORD || nn->kind != EN_RECORD) return ESK_OK;
  for (size_t i = 0; i < nn->nfields; i++) {
    const esk_field_t *nf = &nn->fields[i];
    const esk_field_t *of = NULL;
    size_t idx;
    of = field_named(on, nf->name, &idx);
    for (size_t a = 0; !of && a < nf->naliases; a++) of = field_named(on, nf->aliases[a], &idx);
    if (!of) continue;
    const esk_personal_field_t *om = mark_of(older, of->name), *nm = mark_of(newer, nf->name);
    if (!om && !nm) continue;
    if (om && nm && !strcmp(om->subject, nm->subject)) continue;
    if (om && nm)
      return esk_error_set(err, ESK_EINVAL,
                           "%s: field '%s' has subject '%s' in v%d but '%s' in v%d: a "
                           "field's personal mark cannot change between versions",
                           older->type, nf->name, om->subject, older->version, nm->subject,
                           newer->version);
    return esk_error_set(err, ESK_EINVAL,
                         "%s: field '%s' is personal in v%d but not in v%d: a field's personal "
                         "mark cannot change between versions (add a new field instead)",
                         older->type, nf->name, om ? older->version : newer->version,
                         om ? newer->version : older->version);
  }
  return ESK_OK;
}
