/* Internals shared by codec_schema.c, codec_value.c and codec.c. Not installed. */
#ifndef ESK_CODEC_INTERNAL_H
#define ESK_CODEC_INTERNAL_H

#include <avro.h>
#include <jansson.h>
#include <stdint.h>

#include "esk/error.h"

/* As in esk/codec.h (C11 allows the repeated typedef), which this header does
 * not include: the codec's files depend on it, not it on them. */
typedef struct esk_schema_s esk_schema_t;
typedef struct esk_schema_set_s esk_schema_set_t;

typedef enum {
  EN_NULL, EN_BOOLEAN, EN_INT, EN_LONG, EN_FLOAT, EN_DOUBLE, EN_BYTES, EN_STRING,
  EN_RECORD, EN_ENUM, EN_ARRAY, EN_MAP, EN_UNION, EN_FIXED
} esk_node_kind_t;

typedef struct esk_node_s esk_node_t;

typedef struct {
  char *name;
  char **aliases;
  size_t naliases;
  esk_node_t *type;
  json_t *dflt; /* NULL when the field has no default */
} esk_field_t;

/* One node of a compiled schema. Named nodes are shared by every schema that
 * references them; the set owns all nodes. */
struct esk_node_s {
  esk_node_kind_t kind;
  char *fullname; /* record, enum, fixed */
  char **aliases; /* full names */
  size_t naliases;
  esk_field_t *fields;
  size_t nfields;
  char **symbols;
  size_t nsymbols;
  int enum_default;   /* index into symbols, -1 for none */
  esk_node_t *items;  /* array items, map values */
  esk_node_t **branches;
  size_t nbranches;
  size_t size;        /* fixed */
  esk_node_t *next;   /* the set's list of nodes */
};

typedef struct {
  char *name;
  esk_node_t *node;
} esk_named_t;

struct esk_schema_s {
  char *type;
  int version;
  char *file;
  json_t *doc;
  int state; /* 0 new, 1 compiling, 2 compiled */
  esk_named_t *names; /* types this file defines */
  size_t nnames;
  esk_node_t *root;
  char *canonical;
  uint64_t fp;
  avro_schema_t avro;
  avro_value_iface_t *iface;
  struct esk_personal_field_s *personal; /* its marks (personal.c) */
  json_t **forgotten;                    /* parallel to personal: replacement values */
  size_t npersonal;
};

/* Reads and checks the `esk.personal` marks of a compiled schema (personal.c,
 * docs/architecture.md, "Personal data"); ESK_EINVAL naming file and field. */
int esk_personal_compile(const esk_schema_set_t *set, esk_schema_t *s, esk_error_t *err);
/* The compiled schema of @p set whose top level is @p n, or NULL. */
const esk_schema_t *esk_schema_set_defining(const esk_schema_set_t *set, const esk_node_t *n);
/* Frees what esk_personal_compile() made. */
void esk_personal_free(esk_schema_t *s);

const esk_node_t *esk_schema_node(const esk_schema_t *s);

/* The node of a value's top-level schema when it was created from a set. */

/* Sets @p v (of the schema @p n) from JSON; @p is_default applies Avro's rule
 * that a union's default belongs to its first branch. */
int esk_value_set_json(const esk_node_t *n, avro_value_t *v, json_t *j, int is_default,
                       const char *path, esk_error_t *err);
/* Whether @p j is a valid value of @p n (a union's default: first branch). */
int esk_json_matches(const esk_node_t *n, json_t *j, int is_default);

const char *esk_node_kind_name(esk_node_kind_t k);

#endif
