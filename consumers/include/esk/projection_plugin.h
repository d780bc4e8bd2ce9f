/**
 * @file projection_plugin.h
 * @brief A projection written in C and loaded at run time:
 *        `esk-projector --plugin path.so [--projection NAME]`, for any domain
 *        (docs/projections.md, "C plugins").
 *
 * A plugin is a shared object that exports one function,
 * ESK_PROJECTION_PLUGIN_SYMBOL, returning a description of itself. The
 * projector checks the description's ABI version and size, then calls
 * create() once to get an esk_projection_t (esk/projection.h): its migrations
 * (the DDL, applied once per version and recorded), the callbacks that apply
 * a batch inside the runtime's open transaction (batch_begin, apply per
 * event, batch_end, batch_abort) and its self pointer; destroy() frees self
 * when the projector exits.
 *
 * What a plugin gets: an esk_event_t (esk/projection.h) decoded with the
 * contract of the projector's domain (domain=NAME): type, schema version,
 * the shared metadata, and the value upcast to the latest version of its
 * type, read by path (esk_event_get_str(ev, "meta.actor", &s), ...). The
 * runtime keeps the version guard (duplicates never reach apply()), the
 * positions and the DLQ: an apply() returning ESK_EPOISON dead-letters that
 * event, ESK_ERETRY retries the batch, any other error stops the projector.
 *
 * Self-contained: this header includes esk/projection.h, esk/error.h, libpq
 * and avro-c only. A plugin calls no esk function (its helpers are inline):
 * libpq, avro-c and libc are what it links. It writes errors with
 * esk_plugin_error() below.
 *
 * Compatibility: ESK_PROJECTION_PLUGIN_ABI changes whenever this header,
 * esk_projection_t or esk_event_t change in a way that breaks compiled
 * plugins, and the exported symbol's name carries it. ABI 1 (symbol
 * esk_projection_plugin_v1, bank events only, as `const esk_bank_event_t *`
 * in esk_event_t.payload) is obsolete: the projector refuses such a plugin,
 * naming the file and saying to port it to this header.
 */
#ifndef ESK_PROJECTION_PLUGIN_H
#define ESK_PROJECTION_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "esk/error.h"
#include "esk/projection.h"

/** The ABI version this header describes. */
#define ESK_PROJECTION_PLUGIN_ABI 2

/** The name of the function a plugin exports: "esk_projection_plugin_v" ABI. */
#define ESK_PROJECTION_PLUGIN_SYMBOL "esk_projection_plugin_v2"

/** Defines the exported entry of a plugin, returning the address of @p desc. */
#define ESK_PROJECTION_PLUGIN_EXPORT(desc)                     \
  const esk_projection_plugin_t *esk_projection_plugin_v2(void); \
  const esk_projection_plugin_t *esk_projection_plugin_v2(void) { return &(desc); }

/** What a plugin describes itself with (static storage in the plugin). */
typedef struct esk_projection_plugin_s {
  int abi;            /**< ESK_PROJECTION_PLUGIN_ABI of the header it was built with */
  size_t struct_size; /**< sizeof(esk_projection_plugin_t) it was built with */
  const char *name;   /**< default projection name (group esk.projection.<name>) */
  const char *summary;
  /** The domain whose events it reads (e.g. "bank"): the projector refuses
   *  it under another domain=. NULL: any domain. */
  const char *domain;
  /**
   * @brief Fills @p out: name (may be left NULL: the plugin's name),
   *        migrations, callbacks, self. Runs once, before any connection.
   */
  int (*create)(esk_projection_t *out, esk_error_t *err);
  /** @brief Frees what create() put in out->self. */
  void (*destroy)(void *self);
  /* ---- optional members, added after ABI 2 was released: a plugin built
   * before them has a smaller struct_size (ESK_PROJECTION_PLUGIN_SIZE_BASE);
   * the projector reads them only through esk_projection_plugin_has(). */
  /**
   * May be NULL: scrubs a forgotten subject's personal data from the
   * plugin's tables, called with the self create() made. The contract is
   * esk_projection_t.forget's (esk/projection.h): idempotent, in a
   * transaction the runtime opens and commits. Without it the plugin's rows
   * keep the plaintext they were written with (docs/projections.md).
   */
  int (*forget)(void *self, PGconn *pg, const char *subject, const esk_personal_mark_t *marks,
                size_t n_marks, esk_error_t *err);
} esk_projection_plugin_t;

/** The size of the description before its optional members (a plugin built
 *  before them): the projector accepts struct_size from it up to
 *  sizeof(esk_projection_plugin_t). */
#define ESK_PROJECTION_PLUGIN_SIZE_BASE offsetof(esk_projection_plugin_t, forget)

/** Whether @p d, a description of struct_size d->struct_size, has @p member. */
#define esk_projection_plugin_has(d, member) \
  ((d)->struct_size >= offsetof(esk_projection_plugin_t, member) + sizeof((d)->member))

/** The exported function's type. */
typedef const esk_projection_plugin_t *(*esk_projection_plugin_fn)(void);

/** @brief For plugins: esk_error_set() without linking libesk (both write
 *         through esk_error_vset(), esk/error.h). */
static inline int esk_plugin_error(esk_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int esk_plugin_error(esk_error_t *err, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  esk_error_vset(err, code, fmt, ap);
  va_end(ap);
  return code;
}

#endif
