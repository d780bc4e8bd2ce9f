/* The entry of bank.so (esk/domain.h, docs/producer.md "Domains"). */
#include "bank_domain.h"

ESK_DOMAIN_EXPORT(esk_bank_domain)
