#include "bank_decoder.h"

#include <stdlib.h>

const esk_contract_t esk_bank_contract = {"bank", esk_bank_schemas_load,
                                          esk_bank_register_upcasters};

struct esk_bank_decoder_s {
  esk_domain_decoder_t *dec;
  esk_bank_event_t ev; /* the last decoded event: the payload handed out */
  esk_bank_event_reader_t reader; /* where its fields sit */
};

int esk_bank_decoder_new(esk_bank_decoder_t **out, const esk_codec_limits_t *limits,
                         esk_error_t *err) {
  esk_bank_decoder_t *d = calloc(1, sizeof(*d));
  int rc = d ? esk_domain_decoder_new(&d->dec, &esk_bank_contract, limits, err)
             : esk_error_set(err, ESK_ENOMEM, "out of memory");
  if (rc == ESK_OK)
    *out = d;
  else
    free(d);
  return rc;
}

void esk_bank_decoder_destroy(esk_bank_decoder_t *d) {
  if (d) {
    esk_bank_event_reader_clear(&d->reader);
    esk_domain_decoder_destroy(d->dec);
  }
  free(d);
}

int esk_bank_decode(esk_bank_decoder_t *d, const rd_kafka_message_t *m, esk_event_t *out,
                    esk_error_t *err) {
  int rc = esk_domain_decode(d->dec, m, out, err);
  if (rc == ESK_OK &&
      (rc = esk_bank_event_from_value(&d->ev, &d->reader, out->type, out->value, err)) == ESK_OK)
    out->payload = &d->ev;
  return rc;
}

/* esk_decoder_t's callback: the projector passes the decoder as self. */
static int bank_decode_cb(void *self, const rd_kafka_message_t *m, esk_event_t *out,
                          esk_error_t *err) {
  return esk_bank_decode(self, m, out, err);
}

esk_decoder_t esk_bank_decoder(esk_bank_decoder_t *d) {
  return (esk_decoder_t){.decode = bank_decode_cb, .self = d};
}
