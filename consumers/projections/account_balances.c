/* account_balances: one row per account. A batch's events are folded per
 * account in memory (the version guard has already put each account's in
 * order and dropped duplicates), staged one row per account, and written with
 * one INSERT for accounts opened in the batch and one UPDATE for the others. */
#include <stdio.h>
#include <string.h>

#include "bank_projection.h"

static const char *const migrations[] = {
    "create table account_balances ("
    "  account_id text primary key,"
    "  owner_id text not null,"
    "  balance bigint not null,"
    "  currency text not null,"
    "  status text not null check (status in ('open', 'closed')),"
    "  version bigint not null check (version > 0),"
    "  opened_at timestamptz not null,"
    "  closed_at timestamptz,"
    "  updated_at timestamptz not null) with (fillfactor = 50);"
    "create index account_balances_owner on account_balances (owner_id);",
};

/* What a batch's events did to one account. */
typedef struct acc_s {
  int64_t version, delta;
  int64_t opened_at_us, closed_at_us, updated_at_us;
  int opened, closed;
  char owner_id[ESK_BANK_ID_MAX + 1];
  char currency[sizeof(((esk_bank_money_t *)0)->currency)];
} acc_t;

static int fold(esk_hmap_t *m, const esk_event_t *ev, const esk_bank_event_t *b,
                esk_error_t *err) {
  acc_t *a = NULL;
  int added, rc = esk_bank_fold_acc(m, ev->aggregate_id, strlen(ev->aggregate_id), (void **)&a,
                                    &added, err);
  if (rc) return rc;
  const esk_bank_money_t *money = esk_bank_event_money(b);
  int64_t amount = money ? money->minor_units : 0;
  if (ev->aggregate_version > a->version) { /* in order: the last is the highest */
    a->version = ev->aggregate_version;
    a->updated_at_us = ev->occurred_at_us;
  }
  a->delta += b->type == ESK_BANK_EV_MONEY_WITHDRAWN ? -amount : amount;
  if (b->type == ESK_BANK_EV_ACCOUNT_OPENED &&
      (!a->opened || ev->occurred_at_us < a->opened_at_us)) {
    a->opened = 1;
    a->opened_at_us = ev->occurred_at_us;
    snprintf(a->owner_id, sizeof(a->owner_id), "%s", b->u.opened.owner_id);
    snprintf(a->currency, sizeof(a->currency), "%s", money ? money->currency : "");
  }
  if (b->type == ESK_BANK_EV_ACCOUNT_CLOSED &&
      (!a->closed || ev->occurred_at_us > a->closed_at_us)) {
    a->closed = 1;
    a->closed_at_us = ev->occurred_at_us;
  }
  return ESK_OK;
}

static void fold_row(esk_copy_t *c, const void *key, size_t key_len, const void *acc) {
  const acc_t *a = acc;
  esk_copy_text(c, key, (long)key_len);
  esk_copy_i64(c, a->version);
  esk_copy_i64(c, a->delta);
  esk_copy_i32(c, a->opened);
  esk_copy_text(c, a->opened ? a->owner_id : NULL, -1);
  esk_copy_text(c, a->opened ? a->currency : NULL, -1);
  if (a->opened) esk_copy_ts_us(c, a->opened_at_us);
  else esk_copy_null(c);
  if (a->closed) esk_copy_ts_us(c, a->closed_at_us);
  else esk_copy_null(c);
  esk_copy_ts_us(c, a->updated_at_us);
  esk_copy_row_end(c);
}

/* The batches find accounts by their primary key only. */
static const char *const deferred[] = {"account_balances_owner", NULL};

const esk_bank_proj_spec_t esk_bank_account_balances_spec = {
    .name = "account_balances",
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(*migrations),
    .stage_sql = "create temp table if not exists esk_stage_account_balances ("
                 "account_id text, version bigint, delta bigint, opened int, owner_id text,"
                 " currency text, opened_at timestamptz, closed_at timestamptz,"
                 " updated_at timestamptz) on commit delete rows",
    .copy_sql = "copy esk_stage_account_balances (account_id, version, delta, opened, owner_id,"
                " currency, opened_at, closed_at, updated_at) from stdin",
    .merge_sql =
        "with ins as ("
        "  insert into account_balances (account_id, owner_id, balance, currency, status,"
        "    version, opened_at, closed_at, updated_at)"
        "  select account_id, owner_id, delta, currency,"
        "    case when closed_at is null then 'open' else 'closed' end,"
        "    version, opened_at, closed_at, updated_at from esk_stage_account_balances"
        "  where opened = 1)"
        " update account_balances b set balance = b.balance + a.delta, version = a.version,"
        "  status = case when a.closed_at is null then b.status else 'closed' end,"
        "  closed_at = coalesce(a.closed_at, b.closed_at), updated_at = a.updated_at"
        " from esk_stage_account_balances a where a.opened = 0 and b.account_id = a.account_id",
    /* Every event sets the account's version: the table is the version guard. */
    .versions_sql = "select x.ord - 1, b.version from unnest($1::text[]) with ordinality"
                    " as x(id, ord) join account_balances b on b.account_id = x.id",
    .fold_size = sizeof(acc_t),
    .fold = fold,
    .fold_row = fold_row,
    .binary = 1,
    .needs_full_history = 1, /* a balance folds every event of its account */
    .deferred_indexes = deferred,
};
