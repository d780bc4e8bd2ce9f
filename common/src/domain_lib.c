/* Loading a domain shared object (see esk/domain_lib.h). */
#include "esk/domain_lib.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct esk_domain_lib_s {
  void *handle;
  const esk_domain_t *d;
  char path[PATH_MAX];
};

int esk_domain_name_check(const char *name, esk_error_t *err) {
  if (!name || !*name) return esk_error_set(err, ESK_EINVAL, "domain: the name is empty");
  size_t n = strnlen(name, ESK_DOMAIN_NAME_MAX + 1);
  if (n > ESK_DOMAIN_NAME_MAX)
    return esk_error_set(err, ESK_EINVAL, "domain=%.*s...: longer than %d bytes", 32, name,
                         ESK_DOMAIN_NAME_MAX);
  if (name[0] == '-')
    return esk_error_set(err, ESK_EINVAL, "domain=%s: a name cannot start with '-'", name);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-'))
      return esk_error_set(err, ESK_EINVAL,
                           "domain=%s: byte %zu (0x%02x) is not a letter, digit, '_' or '-' "
                           "(a domain is named, not given as a path; see domain.dir)",
                           name, i, c);
  }
  return ESK_OK;
}

int esk_domain_dir_resolve(char *out, size_t size, const char *dir, esk_error_t *err) {
  static const char origin[] = "$ORIGIN";
  if (!dir || !*dir) dir = ESK_DOMAIN_DIR_DEFAULT;
  const char *rest = dir;
  char exe[PATH_MAX] = "";
  int n;
  if (!strncmp(dir, origin, sizeof(origin) - 1) &&
      (dir[sizeof(origin) - 1] == '/' || dir[sizeof(origin) - 1] == '\0')) {
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0)
      return esk_error_set(err, ESK_EINVAL, "domain.dir=%s: cannot read /proc/self/exe: %s",
                           dir, strerror(errno));
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    rest = dir + sizeof(origin) - 1;
    n = snprintf(out, size, "%s%s", exe, rest);
  } else {
    n = snprintf(out, size, "%s", dir);
  }
  if (n < 0 || (size_t)n >= size)
    return esk_error_set(err, ESK_EINVAL, "domain.dir=%s: the path is too long", dir);
  return ESK_OK;
}

/* A domain built for another ABI exports another esk_domain_v<N>: name it. */
static int other_abi(void *handle) {
  char sym[32];
  for (int v = 0; v <= 16; v++) {
    if (v == ESK_DOMAIN_ABI) continue;
    snprintf(sym, sizeof(sym), "esk_domain_v%d", v);
    if (dlsym(handle, sym)) return v;
  }
  return -1;
}

int esk_domain_lib_open(esk_domain_lib_t **out, const char *dir, const char *name,
                        esk_error_t *err) {
  int rc;
  char d[PATH_MAX];
  esk_domain_lib_t *lib = NULL;
  if ((rc = esk_domain_name_check(name, err)) ||
      (rc = esk_domain_dir_resolve(d, sizeof(d), dir, err)))
    return rc;
  if (!(lib = calloc(1, sizeof(*lib)))) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  int n = snprintf(lib->path, sizeof(lib->path), "%s/%s.so", d, name);
  if (n < 0 || (size_t)n >= sizeof(lib->path)) {
    rc = esk_error_set(err, ESK_EINVAL, "domain %s: the path %s/%s.so is too long", name, d,
                       name);
    goto fail;
  }
  struct stat st;
  if (stat(lib->path, &st)) {
    rc = esk_error_set(err, errno == ENOENT ? ESK_ENOTFOUND : ESK_EINVAL,
                       "domain %s: %s: %s (domain.dir=%s)", name, lib->path, strerror(errno),
                       dir && *dir ? dir : ESK_DOMAIN_DIR_DEFAULT);
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = esk_error_set(err, ESK_EINVAL, "domain %s: %s is not a regular file", name, lib->path);
    goto fail;
  }
  dlerror();
  if (!(lib->handle = dlopen(lib->path, RTLD_NOW | RTLD_LOCAL))) {
    const char *why = dlerror();
    rc = esk_error_set(err, ESK_EINVAL, "domain %s: %s: cannot load: %s", name, lib->path,
                       why ? why : "unknown reason");
    goto fail;
  }
  void *sym = dlsym(lib->handle, ESK_DOMAIN_SYMBOL);
  if (!sym) {
    int v = other_abi(lib->handle);
    if (v >= 0)
      rc = esk_error_set(err, ESK_EINVAL,
                         "domain %s: %s: built for domain ABI %d, this esk speaks ABI %d: "
                         "rebuild it against this esk's esk/domain.h",
                         name, lib->path, v, ESK_DOMAIN_ABI);
    else
      rc = esk_error_set(err, ESK_EINVAL,
                         "domain %s: %s: no symbol %s: not an esk domain (ESK_DOMAIN_EXPORT)",
                         name, lib->path, ESK_DOMAIN_SYMBOL);
    goto fail;
  }
  esk_domain_fn fn;
  memcpy(&fn, &sym, sizeof(fn)); /* object to function pointer, as POSIX allows */
  lib->d = fn();
  if ((rc = esk_domain_check(lib->d, lib->path, err))) goto fail;
  if (strcmp(lib->d->name, name)) {
    rc = esk_error_set(err, ESK_EINVAL, "domain %s: %s describes the domain '%s'", name,
                       lib->path, lib->d->name);
    goto fail;
  }
  *out = lib;
  return ESK_OK;
fail:
  esk_domain_lib_close(lib);
  return rc;
}

const esk_domain_t *esk_domain_lib_domain(const esk_domain_lib_t *lib) { return lib->d; }

const char *esk_domain_lib_path(const esk_domain_lib_t *lib) { return lib->path; }

void esk_domain_lib_close(esk_domain_lib_t *lib) {
  if (!lib) return;
  if (lib->handle) dlclose(lib->handle);
  free(lib);
}
