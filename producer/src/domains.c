/* A domain opened for use (see domains.h). The domain itself comes from its
 * shared object (esk/domain_lib.h): no file of producer/src names one. */
#include "domains.h"

#include <string.h>

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
