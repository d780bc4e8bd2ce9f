/* Test and bench support: the read models each bank projection must hold,
 * folded here from the workload independently of the projector, and compared
 * with what is in PostgreSQL. */
#define _GNU_SOURCE /* vasprintf */
#include "esk_test_bank.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bank_contract.h"
#include "esk/pg.h"
#include "esk_test_bank_internal.h"

typedef struct lines_s {
  char **v;
  size_t n, cap;
} lines_t;

static int add_line(lines_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_line(lines_t *l, const char *fmt, ...) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 1024;
    char **v = realloc(l->v, cap * sizeof(*v));
    if (!v) return -1;
    l->v = v;
    l->cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  int rc = vasprintf(&l->v[l->n], fmt, ap);
  va_end(ap);
  if (rc < 0) return -1;
  l->n++;
  return 0;
}

static void free_lines(lines_t *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void day_of(int64_t us, char buf[48]) {
  time_t t = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(buf, 48, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

typedef struct day_row_s {
  int64_t day;
  int32_t account;
  int64_t dc, dt, wc, wt;
} day_row_t;

static int cmp_day(const void *a, const void *b) {
  const day_row_t *x = a, *y = b;
  if (x->day != y->day) return x->day < y->day ? -1 : 1;
  return x->account < y->account ? -1 : x->account > y->account;
}

/* What each projection should hold after the first @p n events: one line per
 * row, as query_of() prints it. Each returns 0, or -1 out of memory. */
static int expect_balances(esk_test_bank_t *b, size_t n, lines_t *out) {
  typedef struct {
    int64_t balance, opened, closed, updated;
    int32_t version;
  } st_t;
  char acct[32];
  int bad = 0;
  st_t *s = calloc((size_t)b->n_accounts, sizeof(*s));
  if (!s) return -1;
  for (size_t i = 0; i < n; i++) {
    const esk_test_bank_event_t *e = &b->ev[i];
    if (b->skipped[i]) continue;
    st_t *a = &s[e->account];
    if (e->kind == ESK_BANK_EV_ACCOUNT_OPENED) a->opened = e->occurred_at_us;
    if (e->kind == ESK_BANK_EV_ACCOUNT_CLOSED) a->closed = e->occurred_at_us;
    a->balance += e->kind == ESK_BANK_EV_MONEY_WITHDRAWN ? -e->amount : e->amount;
    a->version = e->version;
    a->updated = e->occurred_at_us;
  }
  for (int i = 0; i < b->n_accounts && !bad; i++) {
    if (!s[i].version) continue;
    char closed[24] = "-";
    if (s[i].closed) snprintf(closed, sizeof(closed), "%" PRId64, s[i].closed);
    bad = add_line(out, "%s|owner-%d|%" PRId64 "|%s|%s|%d|%" PRId64 "|%s|%" PRId64,
                   esk_test_bank_account_id(i, acct, sizeof(acct)), i % 97, s[i].balance,
                   esk_test_bank_currency_of(i), s[i].closed ? "closed" : "open", s[i].version, s[i].opened,
                   closed, s[i].updated);
  }
  free(s);
  return bad;
}

static int expect_history(esk_test_bank_t *b, size_t n, lines_t *out) {
  char acct[32], id[40], desc[96];
  int bad = 0;
  int64_t *bal = calloc((size_t)b->n_accounts, sizeof(*bal));
  if (!bal) return -1;
  for (size_t i = 0; i < n && !bad; i++) {
    const esk_test_bank_event_t *e = &b->ev[i];
    if (b->skipped[i] || e->kind == ESK_BANK_EV_ACCOUNT_CLOSED) continue;
    if (e->kind == ESK_BANK_EV_ACCOUNT_OPENED && e->amount == 0) continue;
    const char *kind = e->kind == ESK_BANK_EV_ACCOUNT_OPENED ? "opening"
                       : e->kind == ESK_BANK_EV_MONEY_DEPOSITED ? "deposit" : "withdrawal";
    bal[e->account] += e->kind == ESK_BANK_EV_MONEY_WITHDRAWN ? -e->amount : e->amount;
    esk_test_bank_description(i, desc, sizeof(desc));
    if (e->kind != ESK_BANK_EV_MONEY_DEPOSITED || e->writer_version == 1) desc[0] = '\0';
    esk_test_bank_event_id(e, id);
    bad = add_line(out, "%s|%s|%d|%s|%" PRId64 "|%s|%s|%" PRId64 "|%" PRId64, id,
                   esk_test_bank_account_id(e->account, acct, sizeof(acct)), e->version, kind,
                   e->amount, esk_test_bank_currency_of(e->account), desc, bal[e->account], e->occurred_at_us);
  }
  free(bal);
  return bad;
}

static int expect_daily(esk_test_bank_t *b, size_t n, lines_t *out) {
  char acct[32], day[48];
  int bad = 0;
  size_t k = 0;
  day_row_t *rows = calloc(n ? n : 1, sizeof(*rows));
  if (!rows) return -1;
  for (size_t i = 0; i < n; i++) {
    const esk_test_bank_event_t *e = &b->ev[i];
    if (b->skipped[i]) continue;
    if (e->kind != ESK_BANK_EV_MONEY_DEPOSITED && e->kind != ESK_BANK_EV_MONEY_WITHDRAWN) continue;
    day_row_t *r = &rows[k++];
    r->day = e->occurred_at_us / INT64_C(86400000000);
    r->account = e->account;
    if (e->kind == ESK_BANK_EV_MONEY_DEPOSITED) r->dc = 1, r->dt = e->amount;
    else r->wc = 1, r->wt = e->amount;
  }
  qsort(rows, k, sizeof(*rows), cmp_day);
  for (size_t i = 0; i < k && !bad;) {
    day_row_t sum = rows[i];
    size_t j = i + 1;
    for (; j < k && !cmp_day(&rows[j], &rows[i]); j++)
      sum.dc += rows[j].dc, sum.dt += rows[j].dt, sum.wc += rows[j].wc, sum.wt += rows[j].wt;
    day_of(sum.day * INT64_C(86400000000), day);
    bad = add_line(out, "%s|%s|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64, day,
                   esk_test_bank_account_id(sum.account, acct, sizeof(acct)), sum.dc, sum.dt,
                   sum.wc, sum.wt);
    i = j;
  }
  free(rows);
  return bad;
}

/* The payload's first text field: description, reason, owner or currency. */
static void first_text(const esk_test_bank_event_t *e, size_t i, char *extra, size_t size) {
  if (e->kind == ESK_BANK_EV_MONEY_DEPOSITED) {
    esk_test_bank_description(i, extra, size);
    if (e->writer_version == 1) extra[0] = '\0';
  } else if (e->kind == ESK_BANK_EV_ACCOUNT_CLOSED) {
    snprintf(extra, size, "customer request");
  } else if (e->kind == ESK_BANK_EV_ACCOUNT_OPENED) {
    snprintf(extra, size, "owner-%d", e->account % 97);
  } else {
    snprintf(extra, size, "%s", esk_test_bank_currency_of(e->account));
  }
}

static int expect_event_log(esk_test_bank_t *b, size_t n, lines_t *out) {
  char acct[32], id[40];
  int bad = 0;
  for (size_t i = 0; i < n && !bad; i++) {
    const esk_test_bank_event_t *e = &b->ev[i];
    if (b->skipped[i]) continue;
    esk_test_bank_event_id(e, id);
    char amount[24] = "", extra[96];
    if (e->kind != ESK_BANK_EV_ACCOUNT_CLOSED) snprintf(amount, sizeof(amount), "%" PRId64, e->amount);
    first_text(e, i, extra, sizeof(extra));
    bad = add_line(out, "%s|%d|%s|%s|%d|%" PRId64 "|corr-%zu|cmd-%zu|actor-%d|%s|%s",
                   esk_test_bank_account_id(e->account, acct, sizeof(acct)), e->version,
                   esk_test_bank_kind_type(e->kind), id, e->writer_version, e->occurred_at_us, i, i,
                   e->account % 3, amount, extra);
  }
  return bad;
}

/* The sorted lines projection @p proj should hold after the first @p upto
 * events: 0, -1 out of memory, -2 an unknown projection. */
static int expected(esk_test_bank_t *b, const char *proj, size_t upto, lines_t *out) {
  static const struct {
    const char *name;
    int (*expect)(esk_test_bank_t *b, size_t n, lines_t *out);
  } projections[] = {{"account_balances", expect_balances},
                     {"transaction_history", expect_history},
                     {"daily_summaries", expect_daily},
                     {"event_log", expect_event_log}};
  size_t n = upto < b->n ? upto : b->n;
  for (size_t p = 0; p < sizeof(projections) / sizeof(projections[0]); p++) {
    if (strcmp(proj, projections[p].name)) continue;
    if (projections[p].expect(b, n, out)) return -1;
    if (out->n) qsort(out->v, out->n, sizeof(*out->v), cmp_str); /* v is NULL when 0 */
    return 0;
  }
  return -2;
}

#define US(col) "(extract(epoch from " col ") * 1000000)::bigint"

static const char *query_of(const char *proj) {
  if (!strcmp(proj, "account_balances"))
    return "select concat_ws('|', account_id, owner_id, balance, currency, status, version, "
           US("opened_at") ", coalesce(" US("closed_at") "::text, '-'), " US("updated_at") ") "
           "from account_balances";
  if (!strcmp(proj, "transaction_history"))
    return "select concat_ws('|', event_id, account_id, version, kind, amount, currency, "
           "description, balance_after, " US("occurred_at") ") from transaction_history";
  if (!strcmp(proj, "daily_summaries"))
    return "select concat_ws('|', day, account_id, deposits_count, deposits_total, "
           "withdrawals_count, withdrawals_total) from daily_summaries";
  if (!strcmp(proj, "event_log"))
    return "select concat_ws('|', aggregate_id, aggregate_version, event_type, event_id, "
           "schema_version, " US("occurred_at") ", correlation_id, causation_id, actor, "
           "coalesce(payload->'amount'->>'minor_units', payload->>'amount', "
           "payload->'initial_deposit'->>'minor_units', ''), "
           "coalesce(payload->>'description', payload->>'reason', payload->>'owner_id', "
           "payload->>'currency', '-')) from event_log";
  return NULL;
}

int esk_test_bank_check(esk_test_bank_t *b, PGconn *pg, const char *projection, size_t upto,
                        esk_error_t *err) {
  lines_t want = {0}, got = {0};
  PGresult *r = NULL;
  int rc = ESK_OK;
  const char *sql = query_of(projection);
  if (!sql || expected(b, projection, upto, &want)) {
    free_lines(&want);
    return esk_error_set(err, ESK_EINVAL, "no fold for projection '%s'", projection);
  }
  if ((rc = esk_pg_exec(&r, pg, projection, sql, 0, NULL, err))) goto cleanup;
  for (int i = 0; i < PQntuples(r); i++)
    if (add_line(&got, "%s", PQgetvalue(r, i, 0))) {
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
      goto cleanup;
    }
  if (got.n) qsort(got.v, got.n, sizeof(*got.v), cmp_str); /* v is NULL when 0 */
  for (size_t i = 0; i < want.n || i < got.n; i++) {
    const char *w = i < want.n ? want.v[i] : "(none)", *g = i < got.n ? got.v[i] : "(none)";
    if (strcmp(w, g)) {
      rc = esk_error_set(err, ESK_EINVAL,
                         "%s differs from the fold at sorted row %zu (expected %zu rows, found "
                         "%zu): expected '%s', found '%s'",
                         projection, i, want.n, got.n, w, g);
      break;
    }
  }
cleanup:
  PQclear(r);
  free_lines(&want);
  free_lines(&got);
  return rc;
}
