/**
 * @file loaded.h
 * @brief The projections esk-projector runs that are not compiled in: a
 *        declarative file (--projection-file) or a C plugin (--plugin).
 */
#ifndef ESK_LOADED_H
#define ESK_LOADED_H

#include <stdint.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "projector.h"

typedef struct esk_loaded_s esk_loaded_t;

/**
 * @brief Loads the declarative @p file or the plugin @p plugin (one of them
 *        non-NULL) into @p proj. Sets "projection" in @p conf to the file's or
 *        plugin's name unless it is set (--projection wins), and "topic" to
 *        the file's `topic =` unless it is set.
 * @returns ESK_OK, or ESK_EINVAL naming the file, the line and the problem.
 */
int esk_loaded_open(esk_loaded_t **out, esk_projection_t *proj, esk_conf_t *conf,
                    const char *file, const char *plugin, esk_error_t *err);

/**
 * @brief esk_projector_new(), preceded for a declarative file by the check of
 *        its SQL against PostgreSQL (esk_declarative_check_sql, in the generation),
 *        and with @p from_ms by esk_projector_start_at().
 * @param l NULL: a compiled-in projection.
 * @param from_ms NULL, or the time to start a new projection at (ms since the epoch).
 * @returns as esk_projector_new(); ESK_EINVAL naming file and line for bad SQL.
 */
int esk_loaded_projector_new(esk_projector_t **out, esk_loaded_t *l, const esk_conf_t *conf,
                             const esk_projection_t *proj, const esk_decoder_t *dec,
                             const int64_t *from_ms, esk_error_t *err);

/** @brief Frees it and what it put in the projection. NULL does nothing. */
void esk_loaded_close(esk_loaded_t *l);

#endif
