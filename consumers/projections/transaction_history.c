/* transaction_history: one row per money movement, with the balance after
 * it. Rows are kept in memory during apply(); batch_end() reads the last
 * balance of every account in the batch with one query (from the small
 * transaction_history_balances table, one row per account), computes the
 * running balances in event order (the version guard has already ordered the
 * events of each account and dropped duplicates), COPYs the rows straight
 * into the table and stores the new last balances with one upsert. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bank_projection.h"
#include "esk/buf.h"
#include "esk/hmap.h"
#include "esk/log.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "store.h"
#include <time.h>

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
    "create table transaction_history_balances ("
    "  account_id text primary key,"
    "  version bigint not null,"
    "  balance bigint not null) with (fillfactor = 50);",
};

const esk_bank_proj_spec_t esk_bank_transaction_history_spec = {
    .name = "transaction_history",
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(*migrations),
};

/* Rows go in by COPY, and the running balances live in
 * transaction_history_balances: nothing reads the history's indexes (its
 * primary key included) while a batch applies. */
static const char *const deferred[] = {"transaction_history_pkey",
                                       "transaction_history_account_time", NULL};

#define ROWS_MAX ((size_t)512 << 20)

typedef struct row_s {
  size_t event_id, account, currency, description; /* offsets into the arena */
  int64_t version, amount, occurred_at_us, balance_after;
  uint32_t account_len;
  uint8_t kind;
  struct acct_s *acct; /* the account's entry in the balance map */
} row_t;

/* An account of the batch: its running balance and last version. */
typedef struct acct_s {
  int64_t balance, version;
} acct_t;

typedef struct hist_s {
  row_t *rows;
  size_t n, cap;
  esk_buf_t arena;
  /* account -> balance, over the batch's accounts: the SipHash map, since
   * users choose the ids (docs/architecture.md, "Source layout") */
  esk_hmap_t *accounts;
  acct_t **order;         /* the accounts in the order they first appear */
  size_t n_order, order_cap;
  esk_copy_t copy;
  esk_buf_t ids, vers, bals; /* array literals: the batch's accounts, last versions, balances */
  esk_bank_event_t bank;     /* the event being applied */
} hist_t;

static int put_str(hist_t *h, const char *s, size_t *off) {
  *off = h->arena.len;
  return esk_buf_append(&h->arena, s, strlen(s) + 1, NULL);
}

static int apply_cb(void *self, PGconn *pg, const esk_event_t *ev, esk_error_t *err) {
  hist_t *h = self;
  esk_bank_event_t *b = &h->bank;
  int rc = esk_bank_event_from_value(b, ev->type, ev->value, err);
  (void)pg;
  if (rc) return rc;
  const esk_bank_money_t *m = esk_bank_event_money(b);
  /* Every event is kept (its version goes to the guard); those that move no
   * money (a close, an opening without deposit) write no history row. */
  row_t *rows = esk_array_grow(h->rows, &h->cap, h->n + 1, sizeof(*rows), 4096);
  if (!rows) return esk_error_set(err, ESK_ENOMEM, "out of memory for history rows");
  h->rows = rows;
  row_t *r = &h->rows[h->n];
  if (put_str(h, ev->event_id, &r->event_id) || put_str(h, ev->aggregate_id, &r->account) ||
      put_str(h, m ? m->currency : "", &r->currency) ||
      put_str(h, b->type == ESK_BANK_EV_MONEY_DEPOSITED ? b->u.deposited.description : "",
              &r->description))
    return esk_error_set(err, ESK_ENOMEM, "transaction_history: the batch's rows exceed %zu bytes",
                         (size_t)ROWS_MAX);
  r->account_len = (uint32_t)strlen(ev->aggregate_id);
  r->version = ev->aggregate_version;
  r->amount = m ? m->minor_units : 0;
  r->occurred_at_us = ev->occurred_at_us;
  r->kind = (uint8_t)b->type;
  h->n++;
  return ESK_OK;
}

static const char *str(const hist_t *h, size_t off) { return (const char *)h->arena.data + off; }

/* Finds or adds the account of row @p r in the balance map. */
static int map_account(hist_t *h, row_t *r, int *added, esk_error_t *err) {
  const char *a = str(h, r->account);
  if ((r->acct = esk_hmap_get(h->accounts, a, r->account_len))) {
    *added = 0;
    return ESK_OK;
  }
  acct_t zero = {0, 0};
  int rc = esk_hmap_put(h->accounts, a, r->account_len, &zero, (void **)&r->acct, added, err);
  if (rc == ESK_OK) h->order[h->n_order++] = r->acct;
  return rc;
}

/* Stores the batch's last balance and version of each account. */
static int store_balances(hist_t *h, PGconn *pg, esk_error_t *err) {
  int rc = ESK_OK;
  esk_buf_reset(&h->vers);
  esk_buf_reset(&h->bals);
  for (size_t i = 0; i < h->n_order && !rc; i++) {
    rc = esk_store_array_add_i64(&h->vers, h->order[i]->version);
    if (!rc) rc = esk_store_array_add_i64(&h->bals, h->order[i]->balance);
  }
  if (rc || esk_store_array_end(&h->vers) || esk_store_array_end(&h->bals))
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  const char *params[] = {(const char *)h->ids.data, (const char *)h->vers.data,
                          (const char *)h->bals.data};
  return esk_pg_exec(NULL, pg, "store last balances",
                     "insert into transaction_history_balances (account_id, version, balance) "
                     "select * from unnest($1::text[], $2::bigint[], $3::bigint[]) "
                     "on conflict (account_id) do update set version = excluded.version, "
                     "balance = excluded.balance",
                     3, params, err);
}

static void reset(hist_t *h) {
  h->n = 0;
  esk_hmap_destroy(h->accounts);
  h->accounts = NULL;
  esk_buf_reset(&h->arena);
  esk_copy_reset(&h->copy);
}

static int batch_end_cb(void *self, PGconn *pg, esk_error_t *err) {
  hist_t *h = self;
  int rc = ESK_OK;
  PGresult *res = NULL;
  if (!h->n) return ESK_OK;
  int64_t t0 = esk_time_mono_us();
  if (h->n > h->order_cap) {
    acct_t **order = realloc(h->order, h->n * sizeof(*order));
    if (!order) {
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
      goto done;
    }
    h->order = order;
    h->order_cap = h->n;
  }
  h->n_order = 0;
  esk_buf_reset(&h->ids);
  if ((rc = esk_hmap_new(&h->accounts, sizeof(acct_t), h->n, 0, err))) goto done;
  for (size_t i = 0; i < h->n; i++) {
    int added = 0;
    if ((rc = map_account(h, &h->rows[i], &added, err))) goto done;
    if (added &&
        esk_store_array_add(&h->ids, str(h, h->rows[i].account), h->rows[i].account_len)) {
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory for the batch's account ids");
      goto done;
    }
  }
  if (esk_store_array_end(&h->ids)) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory for the batch's account ids");
    goto done;
  }
  /* The last stored balance of each account of the batch. */
  const char *params[] = {(const char *)h->ids.data};
  if ((rc = esk_pg_exec(&res, pg, "read last balances",
                        "select account_id, balance from transaction_history_balances "
                        "where account_id = any($1::text[])",
                        1, params, err)))
    goto done;
  for (int i = 0; i < PQntuples(res); i++) {
    const char *a = PQgetvalue(res, i, 0);
    size_t n = (size_t)PQgetlength(res, i, 0);
    acct_t *acct = esk_hmap_get(h->accounts, a, n);
    if (acct) acct->balance = strtoll(PQgetvalue(res, i, 1), NULL, 10);
  }
  /* binary COPY (PostgreSQL parses no uuid, number or time) unless an event id
   * is a uuid only PostgreSQL's text input reads, or refuses */
  int binary = 1;
  for (size_t i = 0; i < h->n && binary; i++)
    binary = esk_copy_uuid_binary_ok(str(h, h->rows[i].event_id));
  esk_copy_binary(&h->copy, binary);
  for (size_t i = 0; i < h->n; i++) {
    row_t *r = &h->rows[i];
    r->acct->balance += r->kind == ESK_BANK_EV_MONEY_WITHDRAWN ? -r->amount : r->amount;
    r->acct->version = r->version;
    if (r->kind == ESK_BANK_EV_ACCOUNT_CLOSED || (r->kind == ESK_BANK_EV_ACCOUNT_OPENED && !r->amount))
      continue;
    esk_copy_uuid(&h->copy, str(h, r->event_id));
    esk_copy_text(&h->copy, str(h, r->account), r->account_len);
    esk_copy_i64(&h->copy, r->version);
    esk_copy_text(&h->copy, r->kind == ESK_BANK_EV_ACCOUNT_OPENED    ? "opening"
                            : r->kind == ESK_BANK_EV_MONEY_DEPOSITED ? "deposit"
                                                                     : "withdrawal",
                  -1);
    esk_copy_i64(&h->copy, r->amount);
    esk_copy_text(&h->copy, str(h, r->currency), -1);
    esk_copy_text(&h->copy, str(h, r->description), -1);
    esk_copy_i64(&h->copy, r->acct->balance);
    esk_copy_ts_us(&h->copy, r->occurred_at_us);
    esk_copy_row_end(&h->copy);
  }
  int64_t t1 = esk_time_mono_us();
  rc = esk_copy_send(&h->copy, pg, "transaction_history",
                     "copy transaction_history (event_id, account_id, version, kind, amount,"
                     " currency, description, balance_after, occurred_at) from stdin",
                     err);
  if (rc == ESK_OK) rc = store_balances(h, pg, err);
  ESK_DEBUG("projector", "msg=\"history flush\" rows=%zu lookup_us=%" PRId64 " copy_us=%" PRId64,
            h->n, t1 - t0, esk_time_mono_us() - t1);
done:
  PQclear(res);
  reset(h);
  return rc;
}

static void batch_abort_cb(void *self) { reset(self); }

/* The guard's versions: transaction_history_balances has every event's. */
static int versions_get_cb(void *self, PGconn *pg, const char *const *ids, size_t n,
                           int64_t *versions, esk_error_t *err) {
  hist_t *h = self;
  return esk_bank_versions_read(pg,
                                "select x.ord - 1, b.version from unnest($1::text[]) with "
                                "ordinality as x(id, ord) join transaction_history_balances b "
                                "on b.account_id = x.id",
                                &h->vers, ids, n, versions, err);
}

void esk_bank_transaction_history_destroy(void *self) {
  hist_t *h = self;
  if (!h) return;
  free(h->rows);
  esk_hmap_destroy(h->accounts);
  free(h->order);
  esk_buf_free(&h->arena);
  esk_buf_free(&h->ids);
  esk_buf_free(&h->vers);
  esk_buf_free(&h->bals);
  esk_copy_free(&h->copy);
  free(h);
}

int esk_bank_transaction_history_create(esk_projection_t *out, esk_error_t *err) {
  hist_t *h = calloc(1, sizeof(*h));
  if (!h) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  esk_buf_init(&h->arena, ROWS_MAX);
  esk_buf_init(&h->ids, ROWS_MAX);
  esk_buf_init(&h->vers, ROWS_MAX);
  esk_buf_init(&h->bals, ROWS_MAX);
  esk_buf_init(&h->copy.buf, ROWS_MAX);
  *out = (esk_projection_t){.name = esk_bank_transaction_history_spec.name,
                            .migrations = migrations,
                            .n_migrations = sizeof(migrations) / sizeof(*migrations),
                            .apply = apply_cb,
                            .batch_end = batch_end_cb,
                            .batch_abort = batch_abort_cb,
                            .versions_get = versions_get_cb,
                            .self = h,
                            .needs_full_history = 1, /* a running balance per row */
                            .deferred_indexes = deferred};
  return ESK_OK;
}
