#include "plugin.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

struct esk_plugin_s {
  void *handle;
  const esk_projection_plugin_t *info;
  void *self;
};

int esk_plugin_open(esk_plugin_t **out, esk_projection_t *proj, const char *path,
                    const char *domain, esk_error_t *err) {
  int rc = ESK_EINVAL;
  esk_plugin_t *pl = calloc(1, sizeof(*pl));
  if (!pl) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  dlerror();
  if (!(pl->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
    const char *why = dlerror();
    esk_error_set(err, ESK_EINVAL, "plugin %s: cannot load: %s", path, why ? why : "unknown");
    goto fail;
  }
  void *sym = dlsym(pl->handle, ESK_PROJECTION_PLUGIN_SYMBOL);
  if (!sym && dlsym(pl->handle, "esk_projection_plugin_v1")) {
    /* ABI 1 handed plugins bank events only (esk_bank_event_t as the payload) */
    esk_error_set(err, ESK_EINVAL,
                  "plugin %s: exports esk_projection_plugin_v1, the obsolete plugin ABI 1 "
                  "(bank events only): port it to esk/projection_plugin.h ABI %d (esk_event_t "
                  "of any domain, fields read by path: docs/projections.md) and rebuild it",
                  path, ESK_PROJECTION_PLUGIN_ABI);
    goto fail;
  }
  if (!sym) {
    esk_error_set(err, ESK_EINVAL, "plugin %s: no symbol %s: not an esk projection plugin",
                  path, ESK_PROJECTION_PLUGIN_SYMBOL);
    goto fail;
  }
  esk_projection_plugin_fn fn;
  memcpy(&fn, &sym, sizeof(fn)); /* object to function pointer, as POSIX allows */
  const esk_projection_plugin_t *info = fn();
  if (!info) {
    esk_error_set(err, ESK_EINVAL, "plugin %s: %s() returned NULL", path,
                  ESK_PROJECTION_PLUGIN_SYMBOL);
    goto fail;
  }
  if (info->abi != ESK_PROJECTION_PLUGIN_ABI) {
    esk_error_set(err, ESK_EINVAL,
                  "plugin %s: built for plugin ABI %d, this esk-projector speaks ABI %d: "
                  "rebuild it against this version's esk/projection_plugin.h",
                  path, info->abi, ESK_PROJECTION_PLUGIN_ABI);
    goto fail;
  }
  if (info->struct_size < ESK_PROJECTION_PLUGIN_SIZE_BASE || info->struct_size > sizeof(*info)) {
    esk_error_set(err, ESK_EINVAL,
                  "plugin %s: its description is %zu bytes, expected %zu to %zu: built with "
                  "another esk/projection_plugin.h",
                  path, info->struct_size, (size_t)ESK_PROJECTION_PLUGIN_SIZE_BASE, sizeof(*info));
    goto fail;
  }
  if (!info->name || !info->create || !info->destroy) {
    esk_error_set(err, ESK_EINVAL, "plugin %s: its description lacks %s", path,
                  !info->name ? "a name" : !info->create ? "create()" : "destroy()");
    goto fail;
  }
  if (info->domain && domain && strcmp(info->domain, domain)) {
    esk_error_set(err, ESK_EINVAL,
                  "plugin %s: projects events of domain '%s', this projector reads domain '%s' "
                  "(set domain=%s)",
                  path, info->domain, domain, info->domain);
    goto fail;
  }
  pl->info = info;
  esk_projection_t p = {0};
  esk_error_t why = {0};
  if ((rc = info->create(&p, &why)) != ESK_OK) {
    esk_error_set(err, rc == ESK_ENOMEM ? rc : ESK_EINVAL, "plugin %s: create(): %s", path,
                  why.msg[0] ? why.msg : "failed without a reason");
    rc = err ? err->code : ESK_EINVAL;
    goto fail;
  }
  pl->self = p.self;
  if (!p.apply || (p.n_migrations && !p.migrations)) {
    info->destroy(p.self);
    pl->self = NULL;
    rc = esk_error_set(err, ESK_EINVAL, "plugin %s: create() gave %s", path,
                       !p.apply ? "no apply() callback" : "migrations without their texts");
    goto fail;
  }
  if (!p.name) p.name = info->name;
  /* only the description's forget: create() of a plugin built before it
   * leaves the member zero, as the projector handed it */
  p.forget = esk_projection_plugin_has(info, forget) ? info->forget : NULL;
  *proj = p;
  *out = pl;
  return ESK_OK;
fail:
  esk_plugin_close(pl);
  return rc == ESK_OK ? ESK_EINVAL : rc;
}

const esk_projection_plugin_t *esk_plugin_info(const esk_plugin_t *pl) { return pl->info; }

void esk_plugin_close(esk_plugin_t *pl) {
  if (!pl) return;
  if (pl->info && pl->self) pl->info->destroy(pl->self);
  if (pl->handle) dlclose(pl->handle);
  free(pl);
}
