/**
 * @file personal.h
 * @brief Personal data marks in the event contract (docs/architecture.md,
 *        "Personal data").
 *
 * A field of a schema's top-level record is personal when it carries the
 * custom attribute `esk.personal`:
 *
 *     {"name": "customer_email", "type": "string",
 *      "esk.personal": {"subject": "customer_id", "forgotten": "[forgotten]"}}
 *
 * `subject` names a string field of the same record that identifies the data
 * subject; `forgotten` is the value readers see once the subject is forgotten
 * (a JSON value of the field's type). Loading a schema set
 * (esk_schema_set_add_many() and friends) refuses a malformed mark, naming the
 * file and the field, so the marks of a loaded schema are always well formed.
 * The Parsing Canonical Form drops the attribute: a mark changes no
 * fingerprint.
 */
#ifndef ESK_PERSONAL_H
#define ESK_PERSONAL_H

#include <stddef.h>

#include "esk/codec.h"
#include "esk/error.h"

/** Most personal fields one schema may mark. */
#define ESK_PERSONAL_MAX_FIELDS 64

/** The custom attribute that marks a personal field. */
#define ESK_PERSONAL_ATTR "esk.personal"

/** One personal field of a schema's top-level record. Owned by the schema. */
typedef struct esk_personal_field_s {
  const char *name;           /**< the field's name */
  size_t index;               /**< its position in the record */
  const char *subject;        /**< the name of the field that holds the subject id */
  size_t subject_index;       /**< that field's position in the record */
  const char *forgotten_json; /**< the replacement value, compact JSON */
} esk_personal_field_t;

/**
 * @brief The personal fields of @p s, in field order.
 * @param n set to their number (0 when the schema marks none).
 * @returns an array owned by the schema (valid as long as its set), or NULL
 *          when there is none.
 */
const esk_personal_field_t *esk_schema_personal(const esk_schema_t *s, size_t *n);

/**
 * @brief Checks that two versions of one type agree on their marks: a field
 *        present in both (by name, or by an alias of the newer field) is
 *        personal in both or in neither, with the same subject field. Only
 *        `forgotten` may change.
 * @returns ESK_OK, or ESK_EINVAL naming the type, both versions and the field.
 */
int esk_personal_check_versions(const esk_schema_t *older, const esk_schema_t *newer,
                                esk_error_t *err);

#endif
