/* account_balances: one row per account. A batch's events are staged, folded
 * per account in SQL (the version guard has already put them in order and
 * dropped duplicates) and written with one INSERT for accounts opened in the
 * batch and one UPDATE for the others. */
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

static int rows(esk_copy_t *c, esk_buf_t *scratch, const esk_event_t *ev,
                const esk_bank_event_t *b, esk_error_t *err) {
  (void)err;
  (void)scratch;
  const esk_bank_money_t *m = esk_bank_event_money(b);
  int64_t amount = m ? m->minor_units : 0;
  esk_copy_i32(c, (int32_t)b->type);
  esk_copy_text(c, ev->aggregate_id, -1);
  esk_copy_i64(c, ev->aggregate_version);
  esk_copy_ts_us(c, ev->occurred_at_us);
  esk_copy_text(c, b->type == ESK_BANK_EV_ACCOUNT_OPENED ? b->u.opened.owner_id : "", -1);
  esk_copy_i64(c, b->type == ESK_BANK_EV_MONEY_WITHDRAWN ? -amount : amount);
  esk_copy_text(c, m ? m->currency : "", -1);
  esk_copy_row_end(c);
  return ESK_OK;
}

/* The batches find accounts by their primary key only. */
static const char *const deferred[] = {"account_balances_owner", NULL};

const esk_bank_proj_spec_t esk_bank_account_balances_spec = {
    .name = "account_balances",
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(*migrations),
    .stage_sql = "create temp table if not exists esk_stage_account_balances ("
                 "kind int, account_id text, version bigint, occurred_at timestamptz,"
                 " owner_id text, delta bigint, currency text) on commit delete rows",
    .copy_sql = "copy esk_stage_account_balances (kind, account_id, version, occurred_at,"
                " owner_id, delta, currency) from stdin",
    .merge_sql =
        "with a as ("
        "  select account_id, max(version) as version, sum(delta) as delta,"
        "    max(owner_id) filter (where kind = 1) as owner_id,"
        "    max(currency) filter (where kind = 1) as currency,"
        "    min(occurred_at) filter (where kind = 1) as opened_at,"
        "    max(occurred_at) filter (where kind = 4) as closed_at,"
        "    (array_agg(occurred_at order by version desc))[1] as updated_at,"
        "    bool_or(kind = 1) as opened"
        "  from esk_stage_account_balances group by account_id),"
        " ins as ("
        "  insert into account_balances (account_id, owner_id, balance, currency, status,"
        "    version, opened_at, closed_at, updated_at)"
        "  select account_id, owner_id, delta, currency,"
        "    case when closed_at is null then 'open' else 'closed' end,"
        "    version, opened_at, closed_at, updated_at from a where opened)"
        " update account_balances b set balance = b.balance + a.delta, version = a.version,"
        "  status = case when a.closed_at is null then b.status else 'closed' end,"
        "  closed_at = coalesce(a.closed_at, b.closed_at), updated_at = a.updated_at"
        " from a where not a.opened and b.account_id = a.account_id",
    /* Every event sets the account's version: the table is the version guard. */
    .versions_sql = "select x.ord - 1, b.version from unnest($1::text[]) with ordinality"
                    " as x(id, ord) join account_balances b on b.account_id = x.id",
    .rows = rows,
    .binary = 1,
    .needs_full_history = 1, /* a balance folds every event of its account */
    .deferred_indexes = deferred,
};
