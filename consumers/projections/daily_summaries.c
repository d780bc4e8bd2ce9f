/* daily_summaries: deposit and withdrawal counts and totals per UTC day and
 * account, added to with one grouped upsert per batch. */
#include "bank_projection.h"

static const char *const migrations[] = {
    "create table daily_summaries ("
    "  day date not null,"
    "  account_id text not null,"
    "  deposits_count bigint not null default 0,"
    "  deposits_total bigint not null default 0,"
    "  withdrawals_count bigint not null default 0,"
    "  withdrawals_total bigint not null default 0,"
    "  primary key (day, account_id)) with (fillfactor = 70);"
    "create index daily_summaries_account on daily_summaries (account_id, day);",
};

static int rows(esk_copy_t *c, esk_buf_t *scratch, const esk_event_t *ev,
                const esk_bank_event_t *b, esk_error_t *err) {
  (void)err;
  (void)scratch;
  if (b->type != ESK_BANK_EV_MONEY_DEPOSITED && b->type != ESK_BANK_EV_MONEY_WITHDRAWN) return ESK_OK;
  esk_copy_day_us(c, ev->occurred_at_us);
  esk_copy_text(c, ev->aggregate_id, -1);
  esk_copy_i32(c, (int32_t)b->type);
  esk_copy_i64(c, esk_bank_event_money(b)->minor_units);
  esk_copy_row_end(c);
  return ESK_OK;
}

/* The upsert needs the primary key only. */
static const char *const deferred[] = {"daily_summaries_account", NULL};

const esk_bank_proj_spec_t esk_bank_daily_summaries_spec = {
    .name = "daily_summaries",
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(*migrations),
    .stage_sql = "create temp table if not exists esk_stage_daily_summaries ("
                 "day date, account_id text, kind int, amount bigint)"
                 " on commit delete rows",
    .copy_sql = "copy esk_stage_daily_summaries (day, account_id, kind, amount) from stdin",
    .merge_sql =
        "insert into daily_summaries as d (day, account_id, deposits_count, deposits_total,"
        "  withdrawals_count, withdrawals_total)"
        " select day, account_id, count(*) filter (where kind = 2),"
        "  coalesce(sum(amount) filter (where kind = 2), 0),"
        "  count(*) filter (where kind = 3), coalesce(sum(amount) filter (where kind = 3), 0)"
        " from esk_stage_daily_summaries group by day, account_id"
        " on conflict (day, account_id) do update set"
        "  deposits_count = d.deposits_count + excluded.deposits_count,"
        "  deposits_total = d.deposits_total + excluded.deposits_total,"
        "  withdrawals_count = d.withdrawals_count + excluded.withdrawals_count,"
        "  withdrawals_total = d.withdrawals_total + excluded.withdrawals_total",
    .rows = rows,
    .binary = 1,
    .deferred_indexes = deferred,
};
