#define _GNU_SOURCE
#include "esk_test_bank.h"

#include <inttypes.h>
#include <stdarg.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"
#include "bank_decoder.h"
#include "esk/codec.h"
#include "esk/kafka.h"
#include "esk/pg.h"
#include "projections.h"

#define BASE_US INT64_C(1767225600000000) /* 2026-01-01T00:00:00Z */
#define N_KINDS 5
#define N_VERS 4

typedef struct acct_s {
  int64_t balance;
  int32_t version;
  uint8_t closed;
} acct_t;

struct esk_test_bank_s {
  esk_schema_set_t *set;
  esk_codec_t *codec;
  avro_value_t values[N_KINDS][N_VERS];
  const esk_schema_t *schemas[N_KINDS][N_VERS];
  esk_test_bank_event_t *ev;
  uint8_t *skipped;
  size_t n;
  int n_accounts;
  esk_buf_t buf;
};

static const char *kind_type(int kind) {
  static const char *t[] = {"", "AccountOpened", "MoneyDeposited", "MoneyWithdrawn",
                            "AccountClosed"};
  return t[kind];
}

static uint64_t next_rand(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

const char *esk_test_bank_account_id(int i, char *buf, size_t size) {
  snprintf(buf, size, "acct-%d", i);
  return buf;
}

static const char *currency_of(int account) { return account % 5 == 0 ? "EUR" : "USD"; }

static void event_id(const esk_test_bank_event_t *e, char *buf) {
  snprintf(buf, 37, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64,
           e->id_hi >> 32, (e->id_hi >> 16) & 0xffff, e->id_hi & 0xffff, e->id_lo >> 48,
           e->id_lo & UINT64_C(0xffffffffffff));
}

/* Descriptions include characters COPY must escape. */
static void description(size_t i, char *buf, size_t size) {
  if (i % 7 == 3) snprintf(buf, size, "tab\there back\\slash\nnew line \"q\" #%zu", i);
  else snprintf(buf, size, "deposit #%zu", i);
}

size_t esk_test_bank_count(const esk_test_bank_t *b) { return b->n; }
const esk_test_bank_event_t *esk_test_bank_event(const esk_test_bank_t *b, size_t i) {
  return &b->ev[i];
}
void esk_test_bank_skip(esk_test_bank_t *b, size_t i) { b->skipped[i] = 1; }

int esk_test_bank_new(esk_test_bank_t **out, unsigned seed, int n_accounts, size_t n_events,
                      esk_error_t *err) {
  int rc;
  esk_test_bank_t *b = calloc(1, sizeof(*b));
  acct_t *acc = calloc((size_t)n_accounts, sizeof(*acc));
  if (!b || !acc) {
    free(b);
    free(acc);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  b->n_accounts = n_accounts;
  b->ev = calloc(n_events ? n_events : 1, sizeof(*b->ev));
  b->skipped = calloc(n_events ? n_events : 1, 1);
  if (!b->ev || !b->skipped) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory for %zu events", n_events);
    goto fail;
  }
  if ((rc = esk_schema_set_new(&b->set, err)) || (rc = esk_bank_schemas_load(b->set, err)) ||
      (rc = esk_codec_new(&b->codec, b->set, NULL, err)))
    goto fail;
  for (int k = 1; k < N_KINDS; k++)
    for (int v = 1; v < N_VERS; v++) {
      const esk_schema_t *s = esk_schema_set_get(b->set, kind_type(k), v);
      if (!s) continue;
      if ((rc = esk_value_new(&b->values[k][v], s, err))) goto fail;
      b->schemas[k][v] = s;
    }
  uint64_t rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)seed * 0x100000001b3ULL) ^ 1;
  int64_t step = n_events ? (INT64_C(86400000000) * 30) / (int64_t)n_events : 1;
  if (step < 1) step = 1;
  int closes = 0;
  for (size_t i = 0; i < n_events; i++) {
    esk_test_bank_event_t *e = &b->ev[i];
    int a = (int)(next_rand(&rng) % (uint64_t)n_accounts);
    for (int t = 0; acc[a].closed && t < n_accounts; t++) a = (a + 1) % n_accounts;
    acct_t *s = &acc[a];
    uint64_t r = next_rand(&rng);
    int usd = currency_of(a)[0] == 'U';
    e->account = a;
    e->occurred_at_us = BASE_US + (int64_t)i * step + (int64_t)(r % 997);
    e->id_hi = next_rand(&rng);
    e->id_lo = next_rand(&rng);
    e->id_hi = (e->id_hi & ~UINT64_C(0xf000)) | UINT64_C(0x4000);
    e->id_lo = (e->id_lo & ~(UINT64_C(0xc) << 60)) | (UINT64_C(0x8) << 60);
    if (s->version == 0) {
      e->kind = ESK_BANK_EV_ACCOUNT_OPENED;
      e->writer_version = 1;
      e->amount = r % 4 == 0 ? 0 : (int64_t)(r >> 8) % 10000;
    } else if (r % 1000 < 3 && closes < n_accounts / 10 && i + 1 < n_events) {
      e->kind = ESK_BANK_EV_ACCOUNT_CLOSED;
      e->writer_version = 1;
      s->closed = 1;
      closes++;
    } else if (r % 100 < 60 || s->balance == 0) {
      e->kind = ESK_BANK_EV_MONEY_DEPOSITED;
      e->writer_version = usd ? (uint8_t)(1 + (r >> 20) % 3) : 3;
      e->amount = 1 + (int64_t)((r >> 24) % 100000);
    } else {
      e->kind = ESK_BANK_EV_MONEY_WITHDRAWN;
      e->writer_version = usd ? (uint8_t)(1 + (r >> 20) % 2) : 2;
      e->amount = 1 + (int64_t)((r >> 24) % (uint64_t)s->balance);
    }
    if (e->kind == ESK_BANK_EV_MONEY_WITHDRAWN) s->balance -= e->amount;
    else s->balance += e->amount;
    e->version = ++s->version;
  }
  b->n = n_events;
  free(acc);
  *out = b;
  return ESK_OK;
fail:
  free(acc);
  esk_test_bank_destroy(b);
  return rc;
}

void esk_test_bank_destroy(esk_test_bank_t *b) {
  if (!b) return;
  for (int k = 0; k < N_KINDS; k++)
    for (int v = 0; v < N_VERS; v++)
      if (b->schemas[k][v]) avro_value_decref(&b->values[k][v]);
  esk_codec_destroy(b->codec);
  esk_schema_set_destroy(b->set);
  esk_buf_free(&b->buf);
  free(b->ev);
  free(b->skipped);
  free(b);
}

static int set_str(avro_value_t *rec, const char *name, const char *s) {
  avro_value_t f;
  return avro_value_get_by_name(rec, name, &f, NULL) || avro_value_set_string(&f, s);
}

static int set_long(avro_value_t *rec, const char *name, int64_t v) {
  avro_value_t f;
  return avro_value_get_by_name(rec, name, &f, NULL) || avro_value_set_long(&f, v);
}

static int set_money(avro_value_t *rec, const char *name, int64_t amount, const char *cur) {
  avro_value_t m;
  return avro_value_get_by_name(rec, name, &m, NULL) || set_long(&m, "minor_units", amount) ||
         set_str(&m, "currency", cur);
}

/* Fills the cached value of the event's writer schema. */
static int fill(esk_test_bank_t *b, size_t i, const char *desc_override, avro_value_t **out,
                esk_error_t *err) {
  const esk_test_bank_event_t *e = &b->ev[i];
  avro_value_t *v = &b->values[e->kind][e->writer_version], meta;
  char id[40], acct[32], corr[40], cause[40], actor[32], desc[96];
  if (!b->schemas[e->kind][e->writer_version])
    return esk_error_set(err, ESK_EINVAL, "no schema %s v%d", kind_type(e->kind),
                         e->writer_version);
  event_id(e, id);
  esk_test_bank_account_id(e->account, acct, sizeof(acct));
  snprintf(corr, sizeof(corr), "corr-%zu", i);
  snprintf(cause, sizeof(cause), "cmd-%zu", i);
  snprintf(actor, sizeof(actor), "actor-%d", e->account % 3);
  description(i, desc, sizeof(desc));
  const char *d = desc_override ? desc_override : desc;
  const char *cur = currency_of(e->account);
  int bad = avro_value_get_by_name(v, "meta", &meta, NULL) || set_str(&meta, "event_id", id) ||
            set_str(&meta, "aggregate_type", "account") || set_str(&meta, "aggregate_id", acct) ||
            set_long(&meta, "aggregate_version", e->version) ||
            set_long(&meta, "occurred_at", e->occurred_at_us) ||
            set_str(&meta, "correlation_id", corr) || set_str(&meta, "causation_id", cause) ||
            set_str(&meta, "actor", actor);
  switch (e->kind) {
  case ESK_BANK_EV_ACCOUNT_OPENED: {
    char owner[32];
    snprintf(owner, sizeof(owner), "owner-%d", e->account % 97);
    bad = bad || set_str(v, "owner_id", owner) || set_money(v, "initial_deposit", e->amount, cur);
    break;
  }
  case ESK_BANK_EV_MONEY_DEPOSITED:
    if (e->writer_version == 1) bad = bad || set_long(v, "amount", e->amount);
    else if (e->writer_version == 2)
      bad = bad || set_long(v, "amount", e->amount) || set_str(v, "currency", cur) ||
            set_str(v, "description", d);
    else bad = bad || set_money(v, "amount", e->amount, cur) || set_str(v, "description", d);
    break;
  case ESK_BANK_EV_MONEY_WITHDRAWN:
    bad = bad || set_long(v, "amount", e->amount);
    if (e->writer_version == 2) bad = bad || set_str(v, "currency", cur);
    break;
  case ESK_BANK_EV_ACCOUNT_CLOSED: bad = bad || set_str(v, "reason", "customer request"); break;
  }
  if (bad) return esk_error_set(err, ESK_EINVAL, "cannot fill event %zu: %s", i, avro_strerror());
  *out = v;
  return ESK_OK;
}

static int encode(esk_test_bank_t *b, size_t i, const char *desc, esk_error_t *err) {
  avro_value_t *v = NULL;
  const esk_test_bank_event_t *e = &b->ev[i];
  int rc = fill(b, i, desc, &v, err);
  if (rc) return rc;
  esk_buf_reset(&b->buf);
  return esk_codec_encode(b->codec, b->schemas[e->kind][e->writer_version], v, &b->buf, err);
}

int esk_test_bank_encode(esk_test_bank_t *b, size_t i, const char *description, void **out,
                         size_t *len, esk_error_t *err) {
  int rc = encode(b, i, description, err);
  if (rc) return rc;
  if (!(*out = malloc(b->buf.len ? b->buf.len : 1)))
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  memcpy(*out, b->buf.data, b->buf.len);
  *len = b->buf.len;
  return ESK_OK;
}

int esk_test_bank_producer(rd_kafka_t **out, esk_error_t *err) {
  rd_kafka_conf_t *c = NULL;
  char errstr[256];
  int rc;
  if ((rc = esk_kafka_conf_new(&c, RD_KAFKA_PRODUCER, NULL, err))) return rc;
  if ((rc = esk_kafka_conf_set(c, "linger.ms", "20", err)) ||
      (rc = esk_kafka_conf_set(c, "batch.size", "1000000", err)) ||
      (rc = esk_kafka_conf_set(c, "queue.buffering.max.messages", "1000000", err))) {
    rd_kafka_conf_destroy(c);
    return rc;
  }
  if (!(*out = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr)))) {
    rd_kafka_conf_destroy(c);
    return esk_error_set(err, ESK_EINVAL, "producer: %s", errstr);
  }
  return ESK_OK;
}

static int produce(rd_kafka_t *p, const char *topic, const char *key, const void *value,
                   size_t len, rd_kafka_headers_t *h, esk_error_t *err) {
  /* a topic just created may be unknown for a moment to a broker that has just
   * come back (a cluster's node restarted by the suite before): up to 30 s */
  for (int unknown = 0;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL ||
        ((e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) &&
         unknown++ < 300)) {
      rd_kafka_poll(p, e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? 50 : 100);
      continue;
    }
    if (e) {
      if (h) rd_kafka_headers_destroy(h);
      return esk_error_set(err, ESK_ERETRY, "produce to %s: %s", topic, rd_kafka_err2str(e));
    }
    return ESK_OK;
  }
}

int esk_test_bank_publish(esk_test_bank_t *b, rd_kafka_t *producer, const char *topic,
                          size_t from, size_t to, esk_error_t *err) {
  int rc;
  for (size_t i = from; i < to && i < b->n; i++) {
    const esk_test_bank_event_t *e = &b->ev[i];
    if ((rc = encode(b, i, NULL, err))) return rc;
    char acct[32], id[40], ver[24], agv[24], corr[40], cause[40];
    esk_test_bank_account_id(e->account, acct, sizeof(acct));
    event_id(e, id);
    snprintf(ver, sizeof(ver), "%d", e->writer_version);
    snprintf(agv, sizeof(agv), "%d", e->version);
    snprintf(corr, sizeof(corr), "corr-%zu", i);
    snprintf(cause, sizeof(cause), "cmd-%zu", i);
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    rd_kafka_header_add(h, "esk.type", -1, kind_type(e->kind), -1);
    rd_kafka_header_add(h, "esk.schema_version", -1, ver, -1);
    rd_kafka_header_add(h, "esk.event_id", -1, id, -1);
    rd_kafka_header_add(h, "esk.aggregate_version", -1, agv, -1);
    rd_kafka_header_add(h, "esk.correlation_id", -1, corr, -1);
    rd_kafka_header_add(h, "esk.causation_id", -1, cause, -1);
    rd_kafka_header_add(h, "content-type", -1, "avro/binary", -1);
    if ((rc = produce(producer, topic, acct, b->buf.data, b->buf.len, h, err))) return rc;
    if (i % 1024 == 0) rd_kafka_poll(producer, 0);
  }
  return ESK_OK;
}

int esk_test_bank_publish_raw(rd_kafka_t *producer, const char *topic, const char *key,
                              const void *value, size_t len, esk_error_t *err) {
  return produce(producer, topic, key, value, len, NULL, err);
}

/* --------------------------------------------------------------- checks --- */

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
                   currency_of(i), s[i].closed ? "closed" : "open", s[i].version, s[i].opened,
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
    description(i, desc, sizeof(desc));
    if (e->kind != ESK_BANK_EV_MONEY_DEPOSITED || e->writer_version == 1) desc[0] = '\0';
    event_id(e, id);
    bad = add_line(out, "%s|%s|%d|%s|%" PRId64 "|%s|%s|%" PRId64 "|%" PRId64, id,
                   esk_test_bank_account_id(e->account, acct, sizeof(acct)), e->version, kind,
                   e->amount, currency_of(e->account), desc, bal[e->account], e->occurred_at_us);
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
    description(i, extra, size);
    if (e->writer_version == 1) extra[0] = '\0';
  } else if (e->kind == ESK_BANK_EV_ACCOUNT_CLOSED) {
    snprintf(extra, size, "customer request");
  } else if (e->kind == ESK_BANK_EV_ACCOUNT_OPENED) {
    snprintf(extra, size, "owner-%d", e->account % 97);
  } else {
    snprintf(extra, size, "%s", currency_of(e->account));
  }
}

static int expect_event_log(esk_test_bank_t *b, size_t n, lines_t *out) {
  char acct[32], id[40];
  int bad = 0;
  for (size_t i = 0; i < n && !bad; i++) {
    const esk_test_bank_event_t *e = &b->ev[i];
    if (b->skipped[i]) continue;
    event_id(e, id);
    char amount[24] = "", extra[96];
    if (e->kind != ESK_BANK_EV_ACCOUNT_CLOSED) snprintf(amount, sizeof(amount), "%" PRId64, e->amount);
    first_text(e, i, extra, sizeof(extra));
    bad = add_line(out, "%s|%d|%s|%s|%d|%" PRId64 "|corr-%zu|cmd-%zu|actor-%d|%s|%s",
                   esk_test_bank_account_id(e->account, acct, sizeof(acct)), e->version,
                   kind_type(e->kind), id, e->writer_version, e->occurred_at_us, i, i,
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

void esk_test_bank_delete_topics(const char *topic) {
  char errstr[256], names[8][256];
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_DeleteTopic_t *dt[8];
  size_t n = 0;
  if (esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, NULL)) return;
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return;
  }
  snprintf(names[n], sizeof(names[n]), "%s", topic);
  dt[n] = rd_kafka_DeleteTopic_new(names[n]);
  n++;
  for (const esk_bank_projection_def_t *d = esk_bank_projection_defs; d->name && n < 8; d++, n++) {
    snprintf(names[n], sizeof(names[n]), "%s.dlq.%s", topic, d->name);
    dt[n] = rd_kafka_DeleteTopic_new(names[n]);
  }
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, errstr, sizeof(errstr));
  rd_kafka_DeleteTopics(rk, dt, n, opts, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_DeleteTopic_destroy_array(dt, n);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}
