#include "esk/error.h"

#include <stdarg.h>
#include <stdio.h>

int esk_error_set(esk_error_t *err, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  esk_error_vset(err, code, fmt, ap);
  va_end(ap);
  return code;
}

void esk_error_clear(esk_error_t *err) {
  if (err) {
    err->code = ESK_OK;
    err->msg[0] = '\0';
  }
}

const char *esk_error_name(int code) {
  switch (code) {
  case ESK_OK: return "ESK_OK";
  case ESK_ERETRY: return "ESK_ERETRY";
  case ESK_EPOISON: return "ESK_EPOISON";
  case ESK_EFATAL: return "ESK_EFATAL";
  case ESK_EINVAL: return "ESK_EINVAL";
  case ESK_ENOTFOUND: return "ESK_ENOTFOUND";
  case ESK_ENOMEM: return "ESK_ENOMEM";
  case ESK_ECONFLICT: return "ESK_ECONFLICT";
  default: return "ESK_EUNKNOWN";
  }
}
