/* The domains esk-producer knows (see domains.h). This is the one file of
 * producer/src that names a domain: each compiled-in domain registers here. */
#include "domains.h"

#include <stdio.h>
#include <string.h>

#include "bank/bank_domain.h"

static const esk_domain_t *(*const registered[])(void) = {esk_bank_domain};
#define N_REGISTERED (sizeof(registered) / sizeof(registered[0]))

int esk_producer_domain_find(const esk_domain_t **out, const char *name, esk_error_t *err) {
  char known[256];
  size_t off = 0;
  known[0] = '\0';
  for (size_t i = 0; i < N_REGISTERED; i++) {
    const esk_domain_t *d = registered[i]();
    int rc = esk_domain_check(d, "compiled in", err);
    if (rc) return rc;
    if (name && !strcmp(d->name, name)) {
      *out = d;
      return ESK_OK;
    }
    int n = snprintf(known + off, sizeof(known) - off, "%s%s", off ? ", " : "", d->name);
    if (n > 0 && (size_t)n < sizeof(known) - off) off += (size_t)n;
  }
  return esk_error_set(err, ESK_EINVAL, "domain=%s: no such domain (known: %s)",
                       name ? name : "", known);
}

int esk_domain_inst_open(esk_domain_inst_t *out, const esk_domain_t *d, esk_error_t *err) {
  int rc;
  memset(out, 0, sizeof(*out));
  out->d = d;
  if ((rc = esk_schema_set_new(&out->schemas, err)) || (rc = d->load_schemas(out->schemas, err)) ||
      (rc = esk_codec_new(&out->codec, out->schemas, NULL, err)) ||
      (rc = d->register_upcasters(out->codec, err)) ||
      (rc = d->create(&out->self, out->schemas, out->codec, err)))
    esk_domain_inst_close(out);
  return rc;
}

void esk_domain_inst_close(esk_domain_inst_t *in) {
  if (in->d && in->self) in->d->destroy(in->self);
  esk_codec_destroy(in->codec);
  esk_schema_set_destroy(in->schemas);
  memset(in, 0, sizeof(*in));
}
