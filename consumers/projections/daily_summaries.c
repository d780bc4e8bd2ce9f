/* daily_summaries: deposit and withdrawal counts and totals per UTC day and
 * account, folded per day and account in memory during a batch and added to
 * with one upsert. */
#include <string.h>

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

#define US_PER_DAY (86400LL * 1000000)

/* A day and account's movements in the batch. Keyed by the day (8 bytes,
 * days since 1970-01-01 UTC) followed by the account id. */
typedef struct acc_s {
  int64_t day_us; /* a time of that day: the first event's */
  int64_t deposits_count, deposits_total, withdrawals_count, withdrawals_total;
} acc_t;

static int fold(esk_hmap_t *m, const esk_event_t *ev, const esk_bank_event_t *b,
                esk_error_t *err) {
  if (b->type != ESK_BANK_EV_MONEY_DEPOSITED && b->type != ESK_BANK_EV_MONEY_WITHDRAWN) return ESK_OK;
  char key[8 + ESK_HMAP_KEY_MAX];
  size_t n = strlen(ev->aggregate_id);
  if (n > ESK_HMAP_KEY_MAX - 8)
    return esk_error_set(err, ESK_EPOISON, "daily_summaries: account id of %zu bytes", n);
  int64_t us = ev->occurred_at_us, day = us / US_PER_DAY - (us % US_PER_DAY < 0);
  memcpy(key, &day, 8);
  memcpy(key + 8, ev->aggregate_id, n);
  acc_t *a = NULL;
  int added, rc = esk_bank_fold_acc(m, key, 8 + n, (void **)&a, &added, err);
  if (rc) return rc;
  if (added) a->day_us = us;
  int64_t amount = esk_bank_event_money(b)->minor_units;
  if (b->type == ESK_BANK_EV_MONEY_DEPOSITED) {
    a->deposits_count++;
    a->deposits_total += amount;
  } else {
    a->withdrawals_count++;
    a->withdrawals_total += amount;
  }
  return ESK_OK;
}

static void fold_row(esk_copy_t *c, const void *key, size_t key_len, const void *acc) {
  const acc_t *a = acc;
  esk_copy_day_us(c, a->day_us);
  esk_copy_text(c, (const char *)key + 8, (long)key_len - 8);
  esk_copy_i64(c, a->deposits_count);
  esk_copy_i64(c, a->deposits_total);
  esk_copy_i64(c, a->withdrawals_count);
  esk_copy_i64(c, a->withdrawals_total);
  esk_copy_row_end(c);
}

/* The upsert needs the primary key only. */
static const char *const deferred[] = {"daily_summaries_account", NULL};

const esk_bank_proj_spec_t esk_bank_daily_summaries_spec = {
    .name = "daily_summaries",
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(*migrations),
    .stage_sql = "create temp table if not exists esk_stage_daily_summaries ("
                 "day date, account_id text, deposits_count bigint, deposits_total bigint,"
                 " withdrawals_count bigint, withdrawals_total bigint) on commit delete rows",
    .copy_sql = "copy esk_stage_daily_summaries (day, account_id, deposits_count, deposits_total,"
                " withdrawals_count, withdrawals_total) from stdin",
    .merge_sql =
        "insert into daily_summaries as d (day, account_id, deposits_count, deposits_total,"
        "  withdrawals_count, withdrawals_total)"
        " select day, account_id, deposits_count, deposits_total, withdrawals_count,"
        "  withdrawals_total from esk_stage_daily_summaries"
        " on conflict (day, account_id) do update set"
        "  deposits_count = d.deposits_count + excluded.deposits_count,"
        "  deposits_total = d.deposits_total + excluded.deposits_total,"
        "  withdrawals_count = d.withdrawals_count + excluded.withdrawals_count,"
        "  withdrawals_total = d.withdrawals_total + excluded.withdrawals_total",
    .fold_size = sizeof(acc_t),
    .fold = fold,
    .fold_row = fold_row,
    .binary = 1,
    .deferred_indexes = deferred,
};
