/**
 * @file domains.h
 * @brief A domain opened for use: its contract in a codec, and an instance.
 *        The domain comes from its shared object (esk/domain_lib.h).
 */
#ifndef ESK_PRODUCER_DOMAINS_H
#define ESK_PRODUCER_DOMAINS_H

#include "esk/domain.h"
#include "esk/error.h"

/** A domain opened for use: its contract in a codec, and its instance. */
typedef struct esk_domain_inst_s {
  const esk_domain_t *d;
  esk_schema_set_t *schemas; /**< the contract's schemas */
  esk_codec_t *codec;        /**< with the contract's upcasters */
  void *self;                /**< d->create() over them */
} esk_domain_inst_t;

/** @brief Opens @p d into @p out (zeroed first); on error @p out holds nothing. */
int esk_domain_inst_open(esk_domain_inst_t *out, const esk_domain_t *d, esk_error_t *err);

/** @brief Frees what esk_domain_inst_open() made. A zeroed @p in does nothing. */
void esk_domain_inst_close(esk_domain_inst_t *in);

#endif
