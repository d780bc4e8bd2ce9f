/* transaction_history: one row per money movement, with the balance after
 * it. The version guard's read at a batch's start (versions_get) also reads
 * the last balance of each of the batch's accounts, from the small
 * transaction_history_balances table (one row per account), so apply() knows
 * every row whole as its event comes: the rows go to PostgreSQL through an
 * open binary COPY in parts while the batch is applied (docs/projector.md, "A
 * batch's rows are streamed"), and batch_end() sends the rest and stores the
 * new last balances and versions with one upsert. */
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

/* An account of the batch: its running balance and last version. */
typedef struct acct_s {
  int64_t balance, version;
  int touched; /* an event of it was applied since the last batch_end */
} acct_t;

typedef struct hist_s {
  /* account -> balance, over the batch's accounts (from versions_get): the
   * SipHash map, since users choose the ids (docs/architecture.md, "Source
   * layout") */
  esk_hmap_t *accounts;
  acct_t **order;         /* the touched accounts, in the order first touched */
  size_t n_order, order_cap;
  esk_copy_t copy;
  esk_buf_t ids, vers, bals; /* array literals: touched accounts, last versions, balances */
  esk_buf_t scratch;         /* the versions read's array of ids */
  esk_bank_event_t bank;     /* the event being applied */
  esk_bank_event_reader_t reader; /* where its fields sit */
  esk_bank_bytes_t bytes;         /* or the event read from its bytes */
} hist_t;

/* Forgets the touched accounts (their entries stay in the map). */
static void untouch(hist_t *h) {
  for (size_t i = 0; i < h->n_order; i++) h->order[i]->touched = 0;
  h->n_order = 0;
  esk_buf_reset(&h->ids);
}

/* The row of a money movement, in the COPY's column order. */
static void put_row(hist_t *h, const esk_event_t *ev, const esk_bank_event_t *b,
                    const esk_bank_money_t *m, int64_t balance_after) {
  esk_copy_t *c = &h->copy;
  esk_copy_uuid(c, ev->event_id);
  esk_copy_text(c, ev->aggregate_id, -1);
  esk_copy_i64(c, ev->aggregate_version);
  esk_copy_text(c, b->type == ESK_BANK_EV_ACCOUNT_OPENED    ? "opening"
                   : b->type == ESK_BANK_EV_MONEY_DEPOSITED ? "deposit"
                                                            : "withdrawal",
                -1);
  esk_copy_i64(c, m->minor_units);
  esk_copy_text(c, m->currency, -1);
  esk_copy_text(c, b->type == ESK_BANK_EV_MONEY_DEPOSITED ? b->u.deposited.description : "", -1);
  esk_copy_i64(c, balance_after);
  esk_copy_ts_us(c, ev->occurred_at_us);
  esk_copy_row_end(c);
}

static const char *const copy_sql =
    "copy transaction_history (event_id, account_id, version, kind, amount, currency,"
    " description, balance_after, occurred_at) from stdin";

/* Every event moves its account's version (the guard's, kept with the
 * balance); those that move money (not a close, nor an opening without a
 * deposit) write a row. An event id PostgreSQL would not read as a uuid is
 * poison, found before anything changes. */
static int apply_cb(void *self, PGconn *pg, const esk_event_t *ev, esk_error_t *err) {
  hist_t *h = self;
  esk_bank_event_t *b = &h->bank;
  int rc = ev->payload == b ? ESK_OK
                            : esk_bank_event_from_value(b, &h->reader, ev->type, ev->value, err);
  if (rc || (rc = esk_bank_event_id_check("transaction_history", ev, err))) return rc;
  size_t id_len = strlen(ev->aggregate_id);
  acct_t *a = h->accounts ? esk_hmap_get(h->accounts, ev->aggregate_id, id_len) : NULL;
  if (!a) /* versions_get() read every aggregate of the batch */
    return esk_error_set(err, ESK_EINVAL, "transaction_history: account %s was not in the "
                                          "batch's versions read", ev->aggregate_id);
  if (!a->touched) {
    a->touched = 1;
    h->order[h->n_order++] = a;
    if (esk_store_array_add(&h->ids, ev->aggregate_id, id_len))
      return esk_error_set(err, ESK_ENOMEM, "out of memory for the batch's account ids");
  }
  const esk_bank_money_t *m = esk_bank_event_money(b);
  a->version = ev->aggregate_version;
  if (m && b->type != ESK_BANK_EV_ACCOUNT_CLOSED &&
      !(b->type == ESK_BANK_EV_ACCOUNT_OPENED && !m->minor_units)) {
    a->balance += b->type == ESK_BANK_EV_MONEY_WITHDRAWN ? -m->minor_units : m->minor_units;
    put_row(h, ev, b, m, a->balance);
  }
  if (h->copy.failed)
    return esk_error_set(err, ESK_ENOMEM, "transaction_history: the batch's rows exceed %zu bytes",
                         ROWS_MAX);
  if (h->copy.buf.len >= ESK_COPY_STREAM_BYTES)
    return esk_copy_stream(&h->copy, pg, "transaction_history", copy_sql, err);
  return ESK_OK;
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

static int batch_end_cb(void *self, PGconn *pg, esk_error_t *err) {
  hist_t *h = self;
  if (!h->n_order && !h->copy.rows) return ESK_OK;
  int64_t t0 = esk_time_mono_us();
  size_t rows = h->copy.rows;
  int rc = esk_store_array_end(&h->ids)
               ? esk_error_set(err, ESK_ENOMEM, "out of memory for the batch's account ids")
               : esk_copy_send(&h->copy, pg, "transaction_history", copy_sql, err);
  int64_t t1 = esk_time_mono_us();
  if (rc == ESK_OK) rc = store_balances(h, pg, err);
  ESK_DEBUG("projector", "msg=\"history flush\" rows=%zu accounts=%zu copy_end_us=%" PRId64
            " balances_us=%" PRId64, rows, h->n_order, t1 - t0, esk_time_mono_us() - t1);
  untouch(h);
  return rc;
}

/* The batch is rolled back: so is what it did to the balances in memory. */
static void batch_abort_cb(void *self) {
  hist_t *h = self;
  esk_copy_abort(&h->copy);
  untouch(h);
  esk_hmap_destroy(h->accounts);
  h->accounts = NULL;
}

/* The guard's versions, and the batch's accounts with their last balances:
 * transaction_history_balances has both for every account it has seen. */
static int versions_get_cb(void *self, PGconn *pg, const char *const *ids, size_t n,
                           int64_t *versions, esk_error_t *err) {
  hist_t *h = self;
  PGresult *r = NULL;
  batch_abort_cb(h); /* a new batch */
  int rc = ESK_OK;
  if (n > h->order_cap) {
    acct_t **order = realloc(h->order, n * sizeof(*order));
    if (!order) return esk_error_set(err, ESK_ENOMEM, "out of memory for %zu accounts", n);
    h->order = order;
    h->order_cap = n;
  }
  if ((rc = esk_hmap_new(&h->accounts, sizeof(acct_t), n ? n : 1, 0, err))) return rc;
  acct_t **slot = h->order; /* as scratch: ids[i]'s entry, until apply() */
  for (size_t i = 0; i < n && !rc; i++) {
    static const acct_t zero;
    versions[i] = 0;
    rc = esk_hmap_put(h->accounts, ids[i], strlen(ids[i]), &zero, (void **)&slot[i], NULL, err);
  }
  if (rc || !n || (rc = esk_bank_ids_param(&h->scratch, ids, n, err))) return rc;
  const char *params[] = {(const char *)h->scratch.data};
  if ((rc = esk_pg_exec(&r, pg, "read last balances and versions",
                        "select x.ord - 1, b.version, b.balance from unnest($1::text[]) with "
                        "ordinality as x(id, ord) join transaction_history_balances b "
                        "on b.account_id = x.id",
                        1, params, err)))
    return rc;
  for (int row = 0; row < PQntuples(r); row++) {
    long long i = strtoll(PQgetvalue(r, row, 0), NULL, 10);
    if (i < 0 || (size_t)i >= n) continue;
    versions[i] = slot[i]->version = strtoll(PQgetvalue(r, row, 1), NULL, 10);
    slot[i]->balance = strtoll(PQgetvalue(r, row, 2), NULL, 10);
  }
  PQclear(r);
  return ESK_OK;
}

void esk_bank_transaction_history_destroy(void *self) {
  hist_t *h = self;
  if (!h) return;
  esk_hmap_destroy(h->accounts);
  free(h->order);
  esk_buf_free(&h->scratch);
  esk_buf_free(&h->ids);
  esk_buf_free(&h->vers);
  esk_buf_free(&h->bals);
  esk_copy_free(&h->copy);
  esk_bank_event_reader_clear(&h->reader);
  esk_bank_bytes_free(&h->bytes);
  free(h);
}

static int decode_setup_cb(void *self, const esk_contract_view_t *contract, esk_error_t *err) {
  return esk_bank_bytes_setup(&((hist_t *)self)->bytes, contract, err);
}

static int decode_cb(void *self, const void *data, size_t len, esk_event_t *ev) {
  hist_t *h = self;
  return esk_bank_bytes_decode(&h->bytes, &h->bank, data, len, ev);
}

int esk_bank_transaction_history_create(esk_projection_t *out, esk_error_t *err) {
  hist_t *h = calloc(1, sizeof(*h));
  if (!h) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  esk_buf_init(&h->scratch, ROWS_MAX);
  esk_buf_init(&h->ids, ROWS_MAX);
  esk_buf_init(&h->vers, ROWS_MAX);
  esk_buf_init(&h->bals, ROWS_MAX);
  esk_buf_init(&h->copy.buf, ROWS_MAX);
  esk_copy_binary(&h->copy, 1);
  *out = (esk_projection_t){.name = esk_bank_transaction_history_spec.name,
                            .migrations = migrations,
                            .n_migrations = sizeof(migrations) / sizeof(*migrations),
                            .apply = apply_cb,
                            .batch_end = batch_end_cb,
                            .batch_abort = batch_abort_cb,
                            .versions_get = versions_get_cb,
                            .self = h,
                            .needs_full_history = 1, /* a running balance per row */
                            .deferred_indexes = deferred,
                            .decode_setup = decode_setup_cb,
                            .decode = decode_cb};
  return ESK_OK;
}
