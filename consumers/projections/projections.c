/* The registry of the projections esk-projector runs by name (projections.h). */
#include "projections.h"

#include <string.h>

#include "bank_projection.h"

void esk_bank_projection_destroy(esk_projection_t *p) {
  if (!p || !p->self) return;
  const esk_bank_projection_def_t *d = esk_bank_projection_find(p->name);
  if (d) d->destroy(p->self);
  p->self = NULL;
}

static int create_balances(esk_projection_t *o, esk_error_t *e) {
  return esk_bank_proj_create(o, &esk_bank_account_balances_spec, e);
}
static int create_daily(esk_projection_t *o, esk_error_t *e) {
  return esk_bank_proj_create(o, &esk_bank_daily_summaries_spec, e);
}
static int create_event_log(esk_projection_t *o, esk_error_t *e) {
  return esk_bank_proj_create(o, &esk_bank_event_log_spec, e);
}

const esk_bank_projection_def_t esk_bank_projection_defs[] = {
    {"account_balances", "balance, status and version of every account (bank)", "bank",
     create_balances, esk_bank_proj_destroy},
    {"transaction_history", "every deposit and withdrawal with the balance after it (bank)",
     "bank", esk_bank_transaction_history_create, esk_bank_transaction_history_destroy},
    {"daily_summaries", "deposit and withdrawal counts and totals per UTC day and account (bank)",
     "bank", create_daily, esk_bank_proj_destroy},
    {"event_log", "every event of any domain with its metadata and its payload as JSONB", NULL,
     create_event_log, esk_bank_proj_destroy},
    {NULL, NULL, NULL, NULL, NULL},
};

const esk_bank_projection_def_t *esk_bank_projection_find(const char *name) {
  for (const esk_bank_projection_def_t *d = esk_bank_projection_defs; name && d->name; d++)
    if (!strcmp(d->name, name)) return d;
  return NULL;
}
