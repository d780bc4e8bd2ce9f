/* The bank's events read field by field (schemas/bank/bank_event_bytes.h):
 * what the fast path reads equals what the codec and the contract's mapping
 * make of the same bytes, and anything it is not sure of (truncated, hostile,
 * poison, a contract it was not written for) is left to the generic path. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"
#include "bank_event_bytes.h"
#include "esk/avro_bin.h"
#include "esk_test_bank.h"

extern const size_t esk_bank_schema_count;
extern const char *const esk_bank_schema_names[];
extern const char *const esk_bank_schema_texts[];

typedef struct fixture_s {
  esk_schema_set_t *set;
  esk_codec_t *codec;
  esk_bank_event_bytes_t r;
} fixture_t;

/* The bank's schemas, with @p replaced (a file name) taking @p text instead
 * (NULL: none replaced), and @p extra added when not NULL. */
static void fixture_new(fixture_t *f, const char *replaced, const char *text, const char *extra,
                        const char *extra_text) {
  esk_error_t err = {0};
  const char *names[64], *texts[64];
  size_t n = 0;
  for (size_t i = 0; i < esk_bank_schema_count; i++) {
    names[n] = esk_bank_schema_names[i];
    texts[n++] = replaced && !strcmp(replaced, esk_bank_schema_names[i])
                     ? text
                     : esk_bank_schema_texts[i];
  }
  if (extra) names[n] = extra, texts[n++] = extra_text;
  cr_assert_eq(esk_schema_set_new(&f->set, &err), ESK_OK);
  cr_assert_eq(esk_schema_set_add_many(f->set, n, names, texts, &err), ESK_OK, "%s", err.msg);
  esk_codec_limits_t lim = {.max_message_bytes = 4096, .max_string_bytes = 2048};
  cr_assert_eq(esk_codec_new(&f->codec, f->set, &lim, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_bank_register_upcasters(f->codec, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_bank_event_bytes_init(&f->r, f->set, f->codec, &err), ESK_OK, "%s", err.msg);
}

static void fixture_free(fixture_t *f) {
  esk_bank_event_bytes_free(&f->r);
  esk_codec_destroy(f->codec);
  esk_schema_set_destroy(f->set);
}

/* The generic path's reading of @p data: ESK_OK with @p ev and the value's
 * metadata compared against @p m when @p m is not NULL. */
static int generic(fixture_t *f, const void *data, size_t len, esk_bank_event_t *ev,
                   const esk_bank_event_read_meta_t *m) {
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL, meta;
  esk_error_t err = {0};
  int rc = esk_codec_decode(f->codec, data, len, 0, &rs, &v, &err);
  if (rc == ESK_OK) rc = esk_bank_event_from_value(ev, NULL, esk_schema_type(rs), v, &err);
  if (rc || !m) return rc;
  const char *s;
  int64_t at;
  cr_assert_eq(esk_value_field(v, "meta", &meta, &err), ESK_OK);
  cr_assert_str_eq(m->type, esk_schema_type(rs));
  cr_assert_eq(m->value_version, esk_schema_version(rs));
  cr_assert_eq(esk_value_field_long(&meta, "occurred_at", &at, &err), ESK_OK);
  cr_assert_eq(m->occurred_at_us, at);
  const char *names[] = {"event_id", "aggregate_type", "correlation_id", "causation_id", "actor"};
  const char *mine[] = {m->event_id, m->aggregate_type, m->correlation_id, m->causation_id,
                        m->actor};
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(esk_value_field_str(&meta, names[i], &s, &err), ESK_OK);
    cr_assert_str_eq(mine[i], s, "%s", names[i]);
  }
  return ESK_OK;
}

Test(bank_event_bytes, every_schema_version_of_the_bank_is_read_field_by_field) {
  fixture_t f;
  fixture_new(&f, NULL, NULL, NULL, NULL);
  cr_assert_eq(esk_bank_event_bytes_count(&f.r), ESK_BANK_EVENT_LAYOUTS);
  fixture_free(&f);
}

/* Every event of a workload that writes every schema version (v1 and v2
 * deposits and withdrawals among them) reads the same both ways; those with
 * a description that is not ASCII are left to the generic path. */
Test(bank_event_bytes, every_generated_event_reads_as_the_codec_and_the_mapping_read_it) {
  fixture_t f;
  fixture_new(&f, NULL, NULL, NULL, NULL);
  esk_test_bank_t *bank = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_bank_new(&bank, 7, 30, 3000, &err), ESK_OK, "%s", err.msg);
  int versions[ESK_BANK_EV_ACCOUNT_CLOSED + 1][4] = {{0}};
  for (size_t i = 0; i < esk_test_bank_count(bank); i++) {
    void *v = NULL;
    size_t len = 0;
    cr_assert_eq(esk_test_bank_encode(bank, i, NULL, &v, &len, &err), ESK_OK, "%s", err.msg);
    esk_bank_event_t fast, slow;
    esk_bank_event_read_meta_t m;
    if (!esk_test_bank_plain(bank, i)) {
      cr_assert_eq(esk_bank_event_bytes_read(&f.r, v, len, &fast, &m), ESK_ENOTFOUND);
      cr_assert_eq(generic(&f, v, len, &slow, NULL), ESK_OK, "event %zu", i);
      versions[0][0]++;
      free(v);
      continue;
    }
    cr_assert_eq(esk_bank_event_bytes_read(&f.r, v, len, &fast, &m), ESK_OK, "event %zu", i);
    cr_assert_eq(generic(&f, v, len, &slow, &m), ESK_OK, "event %zu", i);
    cr_assert_eq(memcmp(&fast, &slow, sizeof(fast)), 0, "event %zu (%s v%d)", i, m.type,
                 m.schema_version);
    cr_assert_eq(m.schema_version, esk_test_bank_event(bank, i)->writer_version);
    versions[fast.type][m.schema_version]++;
    free(v);
  }
  /* the workload did write the old versions */
  cr_assert_gt(versions[ESK_BANK_EV_MONEY_DEPOSITED][1], 0);
  cr_assert_gt(versions[ESK_BANK_EV_MONEY_DEPOSITED][2], 0);
  cr_assert_gt(versions[ESK_BANK_EV_MONEY_WITHDRAWN][1], 0);
  cr_assert_gt(versions[0][0], 0, "no description that is not ASCII");
  esk_test_bank_destroy(bank);
  fixture_free(&f);
}

/* A deposit written in version 3 with the given fields. */
static void deposit(fixture_t *f, esk_buf_t *out, const char *id, int64_t version,
                    int64_t amount, const char *currency, const char *desc) {
  char json[8192];
  esk_error_t err = {0};
  const esk_schema_t *s = esk_schema_set_get(f->set, "MoneyDeposited", 3);
  snprintf(json, sizeof(json),
           "{\"meta\":{\"event_id\":\"00000000-0000-4000-8000-000000000009\","
           "\"aggregate_type\":\"account\",\"aggregate_id\":\"%s\",\"aggregate_version\":%lld,"
           "\"occurred_at\":5,\"correlation_id\":\"\",\"causation_id\":\"c\",\"actor\":\"\"},"
           "\"amount\":{\"minor_units\":%lld,\"currency\":\"%s\"},\"description\":\"%s\"}",
           id, (long long)version, (long long)amount, currency, desc);
  avro_value_t v;
  esk_buf_reset(out);
  cr_assert_eq(esk_value_new(&v, s, &err), ESK_OK);
  cr_assert_eq(esk_value_from_json(&v, s, json, &err), ESK_OK, "%s: %s", json, err.msg);
  cr_assert_eq(esk_codec_encode(f->codec, s, &v, out, &err), ESK_OK, "%s", err.msg);
  avro_value_decref(&v);
}

/* The bank's fixture and a buffer holding a deposit of the given fields. */
static void open_with_deposit(fixture_t *f, esk_buf_t *b, const char *id, int64_t amount,
                              const char *currency, const char *desc) {
  fixture_new(f, NULL, NULL, NULL, NULL);
  esk_buf_init(b, 0);
  deposit(f, b, id, 3, amount, currency, desc);
}

/* What the fast path leaves to the generic one: the generic path then
 * accepts it (@p generic_ok) or calls it poison. */
static void left(fixture_t *f, const esk_buf_t *b, int generic_ok, const char *what) {
  esk_bank_event_t ev;
  esk_bank_event_read_meta_t m;
  cr_assert_eq(esk_bank_event_bytes_read(&f->r, b->data, b->len, &ev, &m), ESK_ENOTFOUND,
               "%s: read by the fast path", what);
  cr_assert_eq(generic(f, b->data, b->len, &ev, NULL), generic_ok ? ESK_OK : ESK_EPOISON, "%s",
               what);
}

Test(bank_event_bytes, what_is_not_plain_or_is_poison_is_left_to_the_generic_path) {
  fixture_t f;
  fixture_new(&f, NULL, NULL, NULL, NULL);
  esk_buf_t b;
  esk_buf_init(&b, 0);
  char id[200];
  memset(id, 'a', sizeof(id));
  id[ESK_BANK_ID_MAX + 1] = '\0'; /* one byte over the aggregate's limit */
  deposit(&f, &b, "acc-1", 3, 10, "EUR", "caf\\u00e9");
  left(&f, &b, 1, "a description that is not ASCII");
  deposit(&f, &b, id, 3, 10, "EUR", "");
  left(&f, &b, 0, "an account id over the aggregate's limit");
  deposit(&f, &b, "acc-1", 3, -1, "EUR", "");
  left(&f, &b, 0, "a negative amount");
  deposit(&f, &b, "acc-1", 3, 10, "EURO", "");
  left(&f, &b, 0, "a four-letter currency");
  deposit(&f, &b, "acc-1", 0, 10, "EUR", "");
  esk_bank_event_t ev;
  esk_bank_event_read_meta_t m;
  cr_assert_eq(esk_bank_event_bytes_read(&f.r, b.data, b.len, &ev, &m), ESK_ENOTFOUND,
               "aggregate version 0");
  deposit(&f, &b, "acc-1", 3, 10, "EUR", "fine");
  cr_assert_eq(esk_bank_event_bytes_read(&f.r, b.data, b.len, &ev, &m), ESK_OK);
  cr_assert_str_eq(ev.u.deposited.description, "fine");
  uint8_t byte = 0;
  cr_assert_eq(esk_buf_append(&b, &byte, 1, NULL), ESK_OK);
  left(&f, &b, 0, "a trailing byte");
  esk_buf_free(&b);
  fixture_free(&f);
}

Test(bank_event_bytes, every_truncation_and_every_corruption_is_left_or_reads_as_the_codec_does) {
  fixture_t f;
  esk_buf_t b;
  open_with_deposit(&f, &b, "acc-12", 250, "SEK", "rent");
  esk_bank_event_t fast, slow;
  esk_bank_event_read_meta_t m;
  for (size_t n = 0; n < b.len; n++)
    cr_assert_eq(esk_bank_event_bytes_read(&f.r, b.data, n, &fast, &m), ESK_ENOTFOUND,
                 "%zu of %zu bytes", n, b.len);
  /* each byte set to each of a few values: whatever the fast path accepts,
   * the generic path accepts with the same fields */
  static const uint8_t values[] = {0x00, 0x01, 0x02, 0x3f, 0x7f, 0x80, 0xc3, 0xff};
  uint8_t *copy = malloc(b.len);
  int accepted = 0;
  for (size_t i = 0; i < b.len; i++) {
    for (size_t k = 0; k < sizeof(values); k++) {
      memcpy(copy, b.data, b.len);
      copy[i] = values[k];
      if (esk_bank_event_bytes_read(&f.r, copy, b.len, &fast, &m) != ESK_OK) continue;
      accepted++;
      cr_assert_eq(generic(&f, copy, b.len, &slow, &m), ESK_OK, "byte %zu = %#x", i, values[k]);
      cr_assert_eq(memcmp(&fast, &slow, sizeof(fast)), 0, "byte %zu = %#x", i, values[k]);
    }
  }
  cr_assert_gt(accepted, 0);
  free(copy);
  esk_buf_free(&b);
  fixture_free(&f);
}

/* A contract the fast path was not written for keeps the generic path for
 * the types it changes: a newer MoneyDeposited, or a default that is not the
 * one the fast path fills in. */
Test(bank_event_bytes, a_contract_it_was_not_written_for_turns_the_changed_types_off) {
  fixture_t f;
  const char *v4 =
      "{\"type\":\"record\",\"name\":\"MoneyDeposited\",\"namespace\":\"esk.bank\",\"fields\":["
      "{\"name\":\"meta\",\"type\":\"esk.bank.EventMeta\"},"
      "{\"name\":\"amount\",\"type\":\"esk.bank.Money\"},"
      "{\"name\":\"description\",\"type\":\"string\",\"default\":\"\"},"
      "{\"name\":\"channel\",\"type\":\"string\",\"default\":\"\"}]}";
  fixture_new(&f, NULL, NULL, "MoneyDeposited.v4.avsc", v4);
  cr_assert_eq(esk_bank_event_bytes_count(&f.r), ESK_BANK_EVENT_LAYOUTS - 3);
  fixture_free(&f);
  const char *v2_eur =
      "{\"type\":\"record\",\"name\":\"MoneyDeposited\",\"namespace\":\"esk.bank\",\"fields\":["
      "{\"name\":\"meta\",\"type\":\"esk.bank.EventMeta\"},"
      "{\"name\":\"amount\",\"type\":\"long\"},"
      "{\"name\":\"currency\",\"type\":\"string\",\"default\":\"EUR\"},"
      "{\"name\":\"description\",\"type\":\"string\",\"default\":\"\"}]}";
  fixture_new(&f, "MoneyDeposited.v2.avsc", v2_eur, NULL, NULL);
  /* v1 deposits now read as EUR: that layout is off, v2's and v3's stay on */
  cr_assert_eq(esk_bank_event_bytes_count(&f.r), ESK_BANK_EVENT_LAYOUTS - 1);
  fixture_free(&f);
}

Test(bank_event_bytes, the_codecs_limits_hold_on_the_fast_path) {
  fixture_t f;
  esk_buf_t b;
  char desc[1100];
  memset(desc, 'd', sizeof(desc));
  desc[1000] = '\0';
  open_with_deposit(&f, &b, "acc-1", 10, "EUR", desc);
  esk_bank_event_t ev;
  esk_bank_event_read_meta_t m;
  cr_assert_eq(esk_bank_event_bytes_read(&f.r, b.data, b.len, &ev, &m), ESK_OK);
  f.r.max_string = 999; /* as a codec whose string limit is lower */
  cr_assert_eq(esk_bank_event_bytes_read(&f.r, b.data, b.len, &ev, &m), ESK_ENOTFOUND);
  f.r.max_string = 2048;
  f.r.max_message = b.len - 1;
  cr_assert_eq(esk_bank_event_bytes_read(&f.r, b.data, b.len, &ev, &m), ESK_ENOTFOUND);
  esk_buf_free(&b);
  fixture_free(&f);
}
