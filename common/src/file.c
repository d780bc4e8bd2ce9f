/* Reading a whole, bounded text file (see esk/file.h). */
#include "esk/file.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int esk_file_read_text(char **out, size_t *len, const char *path, size_t max, const char *what,
                       esk_error_t *err) {
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return esk_error_set(err, ESK_EINVAL, "%s: cannot open: %s", what, strerror(errno));
  char *text = malloc(max + 2);
  size_t n = text ? fread(text, 1, max + 1, f) : 0;
  int bad = ferror(f), e = errno;
  fclose(f);
  if (!text) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  int rc = ESK_OK;
  if (bad) rc = esk_error_set(err, ESK_EINVAL, "%s: cannot read: %s", what, strerror(e));
  else if (n > max) rc = esk_error_set(err, ESK_EINVAL, "%s: larger than %zu bytes", what, max);
  else if (memchr(text, '\0', n))
    rc = esk_error_set(err, ESK_EINVAL, "%s: holds a NUL byte (not a text file)", what);
  if (rc) { /* what was read may be a secret */
    sodium_memzero(text, n);
    free(text);
    return rc;
  }
  text[n] = '\0';
  *out = text;
  *len = n;
  return ESK_OK;
}
