/**
 * @file bank_domain.h
 * @brief The bank account aggregate as a Decider (esk/domain.h): the only
 *        thing of the bank that the producer runtime sees.
 *
 * Commands are esk_bank_command_t, events esk_bank_event_t, states
 * esk_bank_state_t (bank.h); the contract is schemas/bank. Its rule codes
 * are the bank's own (INVALID_CURRENCY, ..., BALANCE_NOT_ZERO); the runtime
 * adds INVALID_COMMAND, CONCURRENCY_CONFLICT and UNPUBLISHABLE.
 */
#ifndef ESK_BANK_DOMAIN_H
#define ESK_BANK_DOMAIN_H

#include "esk/domain.h"

/** @brief The bank's descriptor (static storage). */
const esk_domain_t *esk_bank_domain(void);

#endif
