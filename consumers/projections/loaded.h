/**
 * @file loaded.h
 * @brief The projections esk-projector runs that are not compiled in: a
 *        declarative file (--projection-file) or a C plugin (--plugin).
 */
#ifndef ESK_LOADED_H
#define ESK_LOADED_H

#include <stdint.h>

#include "esk/codec.h"
#include "esk/conf.h"
#include "esk/error.h"
#include "projector.h"

typedef struct esk_loaded_s esk_loaded_t;

/**
 * @brief Loads the declarative @p file or the plugin @p plugin (one of them
 *        non-NULL) into @p proj. Sets "projection" in @p conf to the file's or
 *        plugin's name unless it is set (--projection wins), and "topic" to
 *        the file's `topic =` unless it is set.
 * @param schemas the domain's contract (esk_domain_decoder_schemas(); borrowed,
 *        must outlive the result): a file's paths are checked against it.
 *        A plugin must project the configured `domain` (or any).
 * @returns ESK_OK, or ESK_EINVAL naming the file, the line and the problem.
 */
int esk_loaded_open(esk_loaded_t **out, esk_projection_t *proj, esk_conf_t *conf,
                    const char *file, const char *plugin, const esk_schema_set_t *schemas,
                    esk_error_t *err);

/** @brief Frees it and what it put in the projection. NULL does nothing. */
void esk_loaded_close(esk_loaded_t *l);

#endif
