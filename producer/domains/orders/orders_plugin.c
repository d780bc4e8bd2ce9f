/* The entry of orders.so (esk/domain.h, docs/domains.md). */
#include "orders.h"

ESK_DOMAIN_EXPORT(esk_orders_domain)
