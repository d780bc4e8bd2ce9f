/**
 * @file projections.h
 * @brief The bank read models, one projection each (esk-projector
 *        --projection NAME):
 *
 *   account_balances     one row per account: owner, balance (minor units),
 *                        currency, status, version, opened/closed/updated at
 *   transaction_history  one row per money movement (opening deposit > 0,
 *                        deposit, withdrawal) with the balance after it
 *   daily_summaries      per UTC day and account: deposit and withdrawal
 *                        counts and totals
 *   event_log            every event of any domain: metadata columns and the
 *                        payload (at the latest version) as JSONB
 *
 * Each buffers its rows during apply() and writes the batch set-wise in
 * batch_end(): one COPY into a temporary staging table (or straight into the
 * table) and one INSERT ... SELECT / UPDATE ... FROM. Amounts are bigint
 * minor units everywhere. The tables live in the projector's pg.schema.
 */
#ifndef ESK_PROJECTIONS_H
#define ESK_PROJECTIONS_H

#include "projector.h"

/** A projection the esk-projector binary can run. */
typedef struct esk_bank_projection_def_s {
  const char *name;    /**< --projection NAME; also its group and DLQ suffix */
  const char *summary; /**< one line for --help */
  const char *domain;  /**< the domain it reads ("bank"); NULL: any (event_log) */
  /** @brief Fills @p out (callbacks, migrations, a new self). */
  int (*create)(esk_projection_t *out, esk_error_t *err);
  /** @brief Frees out->self. */
  void (*destroy)(void *self);
} esk_bank_projection_def_t;

/** The projections, ending with an entry whose name is NULL. */
extern const esk_bank_projection_def_t esk_bank_projection_defs[];

/** @brief The projection named @p name, or NULL. */
const esk_bank_projection_def_t *esk_bank_projection_find(const char *name);

/** @brief Frees what create() allocated (p->self; found by p->name). NULL self does nothing. */
void esk_bank_projection_destroy(esk_projection_t *p);

#endif
