/**
 * @file domain_lib.h
 * @brief Loading a domain from a shared object (docs/architecture.md, "Write
 *        side"; docs/domains.md).
 *
 * `domain=NAME` names the file NAME.so in the domain directory (`domain.dir`,
 * default ESK_DOMAIN_DIR_DEFAULT: `$ORIGIN` is the directory of the running
 * binary, so build/bin/esk-producer finds build/lib/esk/domains/bank.so and
 * /usr/local/bin/esk-producer /usr/local/lib/esk/domains/bank.so). The
 * object exports ESK_DOMAIN_SYMBOL (esk/domain.h); its descriptor is checked
 * with esk_domain_check() and must carry the name it was loaded by. Every
 * refusal names the file and the reason.
 *
 * The object links no esk library: the loading binary exports libesk's
 * functions to it (esk_export_api() in CMake), so there is one libesk per
 * process.
 */
#ifndef ESK_DOMAIN_LIB_H
#define ESK_DOMAIN_LIB_H

#include <stddef.h>

#include "esk/domain.h"
#include "esk/error.h"

/** Where domains are looked for unless `domain.dir` says otherwise. */
#define ESK_DOMAIN_DIR_DEFAULT "$ORIGIN/../lib/esk/domains"

/** The `domain.dir` entry of a daemon's configuration table (esk/conf.h). */
#define ESK_DOMAIN_DIR_PROP                                                                 \
  {"domain.dir", ESK_CONF_STRING, ESK_DOMAIN_DIR_DEFAULT, 0, 0, NULL, NULL,                 \
   "Directory of the domain shared objects: domain=NAME loads NAME.so from it. A leading " \
   "$ORIGIN is the directory of the binary (docs/domains.md)."}

/** Longest domain name (the topics are <prefix><name>.commands, ...). */
#define ESK_DOMAIN_NAME_MAX 64

/** A loaded domain shared object. */
typedef struct esk_domain_lib_s esk_domain_lib_t;

/**
 * @brief Checks that @p name can name a domain: 1..ESK_DOMAIN_NAME_MAX of
 *        [A-Za-z0-9_-], not starting with '-' (so no path, no "..").
 * @returns ESK_OK or ESK_EINVAL naming the value and the reason.
 */
int esk_domain_name_check(const char *name, esk_error_t *err);

/**
 * @brief Expands a leading "$ORIGIN" of @p dir to the directory of the
 *        running binary (/proc/self/exe) into @p out.
 * @returns ESK_OK; ESK_EINVAL when it does not fit or the binary's path is
 *          unknown.
 */
int esk_domain_dir_resolve(char *out, size_t size, const char *dir, esk_error_t *err);

/**
 * @brief Loads <dir>/<name>.so (dir resolved by esk_domain_dir_resolve();
 *        NULL means ESK_DOMAIN_DIR_DEFAULT) and checks its descriptor.
 * @param out set on success; free it with esk_domain_lib_close() after
 *        everything made from the domain (instances, codecs, schema sets).
 * @returns ESK_OK; ESK_ENOTFOUND when the file does not exist; ESK_EINVAL
 *          for a bad name, an object that does not load, lacks the symbol,
 *          was built for another ABI, or whose descriptor is refused.
 */
int esk_domain_lib_open(esk_domain_lib_t **out, const char *dir, const char *name,
                        esk_error_t *err);

/** @brief The descriptor (valid until esk_domain_lib_close()). */
const esk_domain_t *esk_domain_lib_domain(const esk_domain_lib_t *lib);

/** @brief The file it was loaded from. */
const char *esk_domain_lib_path(const esk_domain_lib_t *lib);

/** @brief Unloads it. NULL does nothing. */
void esk_domain_lib_close(esk_domain_lib_t *lib);

#endif
