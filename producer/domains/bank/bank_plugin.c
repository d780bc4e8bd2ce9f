/* The entry of bank.so (esk/domain.h, docs/domains.md). */
#include "bank_domain.h"

ESK_DOMAIN_EXPORT(esk_bank_domain)
