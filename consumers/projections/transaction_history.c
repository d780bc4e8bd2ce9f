/* transaction_history: one row per money movement, with the balance after
 * it. balance_after is computed set-wise: the account's last stored balance
 * plus a running sum over the batch's rows in version order. */
#include "bank_projection.h"

static const char *const migrations[] = {
    "create table transaction_history ("
    "  event_id uuid primary key,"
    "  account_id text not null,"
    "  version bigint not null check (version > 0),"
    "  kind text not null check (kind in ('opening', 'deposit', 'withdrawal')),"
    "  amount bigint not null check (amount >= 0),"
    "  currency text not null,"
    "  description text not null,"
    "  balance_after bigint not null,"
    "  occurred_at timestamptz not null);"
    "create index transaction_history_account_time"
    "  on transaction_history (account_id, occurred_at);"
    "create unique index transaction_history_account_version"
    "  on transaction_history (account_id, version);",
};

static int rows(esk_copy_t *c, const esk_event_t *ev, const esk_bank_event_t *b,
                esk_error_t *err) {
  (void)err;
  const char *kind;
  switch (b->kind) {
  case ESK_BANK_ACCOUNT_OPENED:
    if (b->amount == 0) return ESK_OK; /* no money moved */
    kind = "opening";
    break;
  case ESK_BANK_MONEY_DEPOSITED: kind = "deposit"; break;
  case ESK_BANK_MONEY_WITHDRAWN: kind = "withdrawal"; break;
  default: return ESK_OK;
  }
  esk_copy_text(c, ev->event_id, -1);
  esk_copy_text(c, ev->aggregate_id, -1);
  esk_copy_i64(c, ev->aggregate_version);
  esk_copy_text(c, kind, -1);
  esk_copy_i64(c, b->amount);
  esk_copy_text(c, b->currency, -1);
  esk_copy_text(c, b->description, -1);
  esk_copy_ts_us(c, ev->occurred_at_us);
  esk_copy_row_end(c);
  return ESK_OK;
}

const esk_bank_proj_spec_t esk_bank_transaction_history_spec = {
    .name = "transaction_history",
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(*migrations),
    .stage_sql = "create temp table if not exists esk_stage_transaction_history ("
                 "event_id uuid, account_id text, version bigint, kind text, amount bigint,"
                 " currency text, description text, occurred_at timestamptz)"
                 " on commit delete rows",
    .copy_sql = "copy esk_stage_transaction_history (event_id, account_id, version, kind,"
                " amount, currency, description, occurred_at) from stdin",
    .merge_sql =
        "insert into transaction_history (event_id, account_id, version, kind, amount,"
        "  currency, description, balance_after, occurred_at)"
        " select s.event_id, s.account_id, s.version, s.kind, s.amount, s.currency,"
        "  s.description,"
        "  coalesce(p.balance_after, 0) + sum(case s.kind when 'withdrawal' then -s.amount"
        "    else s.amount end) over (partition by s.account_id order by s.version),"
        "  s.occurred_at"
        " from esk_stage_transaction_history s"
        " left join lateral (select h.balance_after from transaction_history h"
        "   where h.account_id = s.account_id order by h.version desc limit 1) p on true",
    .rows = rows,
};
