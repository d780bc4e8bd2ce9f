/**
 * @file plugin.h
 * @brief Loads a projection plugin (esk/projection_plugin.h) with dlopen.
 */
#ifndef ESK_PLUGIN_H
#define ESK_PLUGIN_H

#include "esk/error.h"
#include "esk/projection_plugin.h"

typedef struct esk_plugin_s esk_plugin_t;

/**
 * @brief Opens @p path, finds ESK_PROJECTION_PLUGIN_SYMBOL, checks the ABI
 *        version, the description and its domain against @p domain (the
 *        projector's; NULL: any), and calls create() into @p proj.
 * @returns ESK_OK, or ESK_EINVAL with a message naming the file and the
 *          reason (cannot open, no symbol, the obsolete ABI 1, wrong ABI,
 *          incomplete description, another domain, create() failed).
 */
int esk_plugin_open(esk_plugin_t **out, esk_projection_t *proj, const char *path,
                    const char *domain, esk_error_t *err);

/** @brief The plugin's description (valid while it is open). */
const esk_projection_plugin_t *esk_plugin_info(const esk_plugin_t *pl);

/** @brief Destroys the projection's self and unloads the plugin. NULL does nothing. */
void esk_plugin_close(esk_plugin_t *pl);

#endif
