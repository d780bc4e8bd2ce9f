/* The bank decoder of esk-projector: messages become events at the latest
 * schema version; anything else (unknown fingerprint, truncated, malformed,
 * oversized, not an event, impossible values) is poison with a message that
 * says why. No servers: messages are built in memory. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank/bank_avro.h"
#include "bank_contract.h"
#include "bank_decoder.h"
#include "esk_test.h"
#include "esk_test_bank.h"
#include "esk_test_producer.h"

static esk_bank_decoder_t *dec;
static esk_test_bank_t *bank;

static void setup(void) {
  esk_error_t err = {0};
  esk_codec_limits_t limits = {.max_message_bytes = 4096};
  cr_assert_eq(esk_bank_decoder_new(&dec, &limits, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_new(&bank, 3, 20, 400, &err), ESK_OK, "%s", err.msg);
}

static void teardown(void) {
  esk_bank_decoder_destroy(dec);
  esk_test_bank_destroy(bank);
}

static int decode(const void *v, size_t len, esk_event_t *ev, esk_error_t *err) {
  rd_kafka_message_t m = {0};
  m.payload = (void *)v;
  m.len = len;
  memset(ev, 0, sizeof(*ev));
  return esk_bank_decode(dec, &m, ev, err);
}

/* The first generated event of @p kind written in @p version (or -1). */
static long find(int kind, int version) {
  for (size_t i = 0; i < esk_test_bank_count(bank); i++) {
    const esk_test_bank_event_t *e = esk_test_bank_event(bank, i);
    if (e->kind == kind && (version < 0 || e->writer_version == version)) return (long)i;
  }
  return -1;
}

static void *encoded(long i, size_t *len) {
  void *v = NULL;
  esk_error_t err = {0};
  cr_assert(i >= 0, "no such event in the workload");
  cr_assert_eq(esk_test_bank_encode(bank, (size_t)i, NULL, &v, len, &err), ESK_OK, "%s", err.msg);
  return v;
}

Test(projection_decoder, a_v1_deposit_is_upcast_to_the_latest_version, .init = setup,
     .fini = teardown) {
  long i = find(ESK_BANK_EV_MONEY_DEPOSITED, 1);
  size_t len;
  void *v = encoded(i, &len);
  esk_event_t ev;
  esk_error_t err = {0};
  cr_assert_eq(decode(v, len, &ev, &err), ESK_OK, "%s", err.msg);
  const esk_bank_event_t *b = ev.payload;
  const esk_test_bank_event_t *e = esk_test_bank_event(bank, (size_t)i);
  char acct[32];
  cr_assert_str_eq(ev.type, "MoneyDeposited");
  cr_assert_str_eq(ev.aggregate_id, esk_test_bank_account_id(e->account, acct, sizeof(acct)));
  cr_assert_eq(ev.aggregate_version, e->version);
  cr_assert_eq(ev.occurred_at_us, e->occurred_at_us);
  cr_assert_eq(b->type, ESK_BANK_EV_MONEY_DEPOSITED);
  cr_assert_eq(ev.schema_version, 1); /* the version it was written in */
  cr_assert_eq(b->u.deposited.amount.minor_units, e->amount);
  cr_assert_str_eq(b->u.deposited.amount.currency, "USD"); /* v1's implicit currency, by the default */
  cr_assert_str_eq(b->u.deposited.description, "");
  free(v);
}

Test(projection_decoder, every_generated_event_decodes_to_its_fields, .init = setup,
     .fini = teardown) {
  for (size_t i = 0; i < esk_test_bank_count(bank); i++) {
    size_t len;
    void *v = encoded((long)i, &len);
    esk_event_t ev;
    esk_error_t err = {0};
    cr_assert_eq(decode(v, len, &ev, &err), ESK_OK, "event %zu: %s", i, err.msg);
    const esk_bank_event_t *b = ev.payload;
    const esk_test_bank_event_t *e = esk_test_bank_event(bank, i);
    cr_assert_eq(b->type, e->kind);
    cr_assert_eq(ev.aggregate_version, e->version);
    cr_assert_eq(b->aggregate_version, e->version);
    if (e->kind != ESK_BANK_EV_ACCOUNT_CLOSED)
      cr_assert_eq(esk_bank_event_money(b)->minor_units, e->amount, "event %zu", i);
    /* the decoder's reader keeps positions: the same as every field by name */
    esk_bank_event_t named;
    cr_assert_eq(esk_bank_event_from_value(&named, NULL, ev.type, ev.value, &err), ESK_OK);
    cr_assert_eq(memcmp(b, &named, sizeof(named)), 0, "event %zu (%s)", i, ev.type);
    free(v);
  }
}

static void expect_poison(const void *v, size_t len, const char *why) {
  esk_event_t ev;
  esk_error_t err = {0};
  cr_assert_eq(decode(v, len, &ev, &err), ESK_EPOISON, "accepted; expected poison: %s", why);
  cr_assert_not_null(strstr(err.msg, why), "'%s' does not say '%s'", err.msg, why);
}

Test(projection_decoder, an_unknown_fingerprint_is_poison, .init = setup, .fini = teardown) {
  size_t len;
  unsigned char *v = encoded(0, &len);
  v[5] ^= 0x01;
  expect_poison(v, len, "unknown writer schema fingerprint");
  free(v);
}

Test(projection_decoder, every_truncation_is_poison, .init = setup, .fini = teardown) {
  size_t len;
  void *v = encoded(find(ESK_BANK_EV_MONEY_DEPOSITED, 3), &len);
  for (size_t k = 0; k < len; k++) {
    esk_event_t ev;
    esk_error_t err = {0};
    cr_assert_eq(decode(v, k, &ev, &err), ESK_EPOISON, "%zu of %zu bytes accepted", k, len);
    cr_assert(err.msg[0]);
  }
  free(v);
}

Test(projection_decoder, wrong_magic_and_malformed_datums_are_poison, .init = setup,
     .fini = teardown) {
  size_t len;
  unsigned char *v = encoded(0, &len);
  unsigned char *bad = malloc(len + 8);
  memcpy(bad, v, len);
  bad[1] = 0x02;
  expect_poison(bad, len, "wrong magic");
  memcpy(bad, v, 10);
  memset(bad + 10, 0xff, len - 10);
  expect_poison(bad, len, "malformed");
  memcpy(bad, v, len);
  memcpy(bad + len, "trailing", 8);
  expect_poison(bad, len + 8, "trailing");
  free(bad);
  free(v);
}

Test(projection_decoder, an_oversized_value_is_poison_before_decoding, .init = setup,
     .fini = teardown) {
  size_t len;
  char *desc = malloc(5000);
  memset(desc, 'x', 4999);
  desc[4999] = '\0';
  void *v = NULL;
  esk_error_t err = {0};
  long i = find(ESK_BANK_EV_MONEY_DEPOSITED, 3);
  cr_assert_eq(esk_test_bank_encode(bank, (size_t)i, desc, &v, &len, &err), ESK_OK, "%s", err.msg);
  cr_assert_gt(len, 4096);
  expect_poison(v, len, "over the limit of 4096 bytes");
  free(v);
  free(desc);
}

Test(projection_decoder, a_command_is_not_an_event, .init = setup, .fini = teardown) {
  esk_schema_set_t *set = NULL;
  esk_codec_t *c = NULL;
  esk_error_t err = {0};
  avro_value_t val;
  esk_buf_t out;
  esk_buf_init(&out, 0);
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_bank_schemas_load(set, &err), ESK_OK);
  cr_assert_eq(esk_codec_new(&c, set, NULL, &err), ESK_OK);
  const esk_schema_t *s = esk_schema_set_get(set, "OpenAccount", 1);
  cr_assert_eq(esk_value_new(&val, s, &err), ESK_OK);
  cr_assert_eq(esk_value_from_json(&val, s,
                                   "{\"command_id\":\"c1\",\"account_id\":\"a1\",\"owner_id\":\"o\","
                                   "\"initial_deposit\":{\"minor_units\":1,\"currency\":\"EUR\"},"
                                   "\"actor\":\"x\",\"correlation_id\":\"k\"}",
                                   &err),
               ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_codec_encode(c, s, &val, &out, &err), ESK_OK, "%s", err.msg);
  expect_poison(out.data, out.len, "not a bank event type");
  avro_value_decref(&val);
  esk_buf_free(&out);
  esk_codec_destroy(c);
  esk_schema_set_destroy(set);
}

/* Hostile input: random byte flips of valid messages never crash the
 * decoder; each either decodes or is poison with a reason. */
Test(projection_decoder, random_corruption_decodes_or_is_poison_never_crashes, .init = setup,
     .fini = teardown) {
  unsigned seed = 12345;
  for (int round = 0; round < 4000; round++) {
    size_t len;
    unsigned char *v = encoded(round % (long)esk_test_bank_count(bank), &len);
    int flips = 1 + (int)(rand_r(&seed) % 4);
    for (int f = 0; f < flips; f++) v[rand_r(&seed) % len] ^= (unsigned char)(1 + rand_r(&seed) % 255);
    esk_event_t ev;
    esk_error_t err = {0};
    int rc = decode(v, len, &ev, &err);
    cr_assert(rc == ESK_OK || (rc == ESK_EPOISON && err.msg[0]), "rc %d: %s", rc, err.msg);
    free(v);
  }
}

/* One bank event type for both sides: an event the write side decided and
 * encoded is read back by the read side as the very same esk_bank_event_t. */
Test(projection_decoder, the_read_side_reads_the_write_sides_event_type, .init = setup,
     .fini = teardown) {
  esk_bank_avro_t *a = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_bank_avro_new(&a, &err), ESK_OK, "%s", err.msg);
  esk_bank_event_t evs[4];
  esk_tp_sample_events(evs);
  for (int t = 0; t < 4; t++) {
    esk_buf_t b;
    esk_buf_init(&b, 0);
    esk_bank_event_meta_t meta = {"00000000-0000-4000-8000-000000000001", 1, "corr", "cmd", "me"};
    cr_assert_eq(esk_bank_avro_encode_event(a, &b, NULL, &evs[t], &meta, &err), ESK_OK, "%s",
                 err.msg);
    esk_event_t ev;
    cr_assert_eq(decode(b.data, b.len, &ev, &err), ESK_OK, "%s", err.msg);
    const esk_bank_event_t *r = ev.payload;
    esk_bank_event_t w;
    cr_assert_eq(esk_bank_avro_decode_event(a, &w, NULL, b.data, b.len, &err), ESK_OK, "%s",
                 err.msg);
    /* every byte as decided (zeroed, then copied): ids, money, texts */
    cr_assert_eq(memcmp(r, &evs[t], sizeof(*r)), 0, "%s: the read side reads another event",
                 esk_bank_event_type_name(evs[t].type));
    cr_assert_eq(memcmp(&w, &evs[t], sizeof(w)), 0, "%s: the write side reads another event",
                 esk_bank_event_type_name(evs[t].type));
    cr_assert_eq(r->type, evs[t].type);
    cr_assert_str_eq(r->account_id, evs[t].account_id);
    cr_assert_eq(r->aggregate_version, evs[t].aggregate_version);
    const esk_bank_money_t *m = esk_bank_event_money(r), *want = esk_bank_event_money(&evs[t]);
    cr_assert_eq(!m, !want);
    if (m) {
      cr_assert_eq(m->minor_units, want->minor_units);
      cr_assert_str_eq(m->currency, want->currency);
    }
    esk_buf_free(&b);
  }
  esk_bank_avro_destroy(a);
}

/* ---- the metadata's positions, per reader schema ---- */

#define META_FIELDS_JSON(last)                                                              \
  "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"aggregate_type\",\"type\":\"string\"}," \
  "{\"name\":\"aggregate_id\",\"type\":\"string\"},"                                         \
  "{\"name\":\"aggregate_version\",\"type\":\"long\"},"                                      \
  "{\"name\":\"occurred_at\",\"type\":\"long\"},{\"name\":\"correlation_id\",\"type\":\"string\"}," \
  "{\"name\":\"causation_id\",\"type\":\"string\"}" last

/* Three event types whose meta records differ: Good's in the usual order,
 * Turned's with actor first, Short's without actor. */
static int tiny_schemas(esk_schema_set_t *set, esk_error_t *err) {
  const char *names[] = {"Good.v1.avsc", "Turned.v1.avsc", "Short.v1.avsc"};
  const char *texts[] = {
      "{\"type\":\"record\",\"name\":\"t.Good\",\"fields\":[{\"name\":\"meta\",\"type\":"
      "{\"type\":\"record\",\"name\":\"t.Meta\",\"fields\":[" META_FIELDS_JSON(
          ",{\"name\":\"actor\",\"type\":\"string\"}") "]}},{\"name\":\"x\",\"type\":\"long\"}]}",
      "{\"type\":\"record\",\"name\":\"t.Turned\",\"fields\":[{\"name\":\"x\",\"type\":\"long\"},"
      "{\"name\":\"meta\",\"type\":{\"type\":\"record\",\"name\":\"t.TurnedMeta\",\"fields\":["
      "{\"name\":\"actor\",\"type\":\"string\"}," META_FIELDS_JSON("") "]}}]}",
      "{\"type\":\"record\",\"name\":\"t.Short\",\"fields\":[{\"name\":\"meta\",\"type\":"
      "{\"type\":\"record\",\"name\":\"t.ShortMeta\",\"fields\":[" META_FIELDS_JSON("") "]}},"
      "{\"name\":\"x\",\"type\":\"long\"}]}"};
  return esk_schema_set_add_many(set, 3, names, texts, err);
}

static int no_upcasters(esk_codec_t *c, esk_error_t *err) {
  (void)c;
  (void)err;
  return ESK_OK;
}

/* One event of @p type, its meta holding @p id and @p actor, decoded by @p d. */
static int tiny_decode(esk_domain_decoder_t *d, const char *type, const char *id,
                       const char *actor, esk_event_t *ev, esk_error_t *err) {
  const esk_schema_t *s = esk_schema_set_latest(esk_domain_decoder_schemas(d), type);
  esk_codec_t *c = NULL;
  avro_value_t v;
  esk_buf_t out;
  char json[512];
  esk_buf_init(&out, 0);
  snprintf(json, sizeof(json),
           "{\"x\":1,\"meta\":{\"event_id\":\"e-%s\",\"aggregate_type\":\"T\","
           "\"aggregate_id\":\"%s\",\"aggregate_version\":3,\"occurred_at\":7,"
           "\"correlation_id\":\"k\",\"causation_id\":\"c\"%s%s%s}}",
           id, id, actor ? ",\"actor\":\"" : "", actor ? actor : "", actor ? "\"" : "");
  cr_assert_eq(esk_codec_new(&c, esk_domain_decoder_schemas(d), NULL, err), ESK_OK);
  cr_assert_eq(esk_value_new(&v, s, err), ESK_OK, "%s", err->msg);
  cr_assert_eq(esk_value_from_json(&v, s, json, err), ESK_OK, "%s: %s", type, err->msg);
  cr_assert_eq(esk_codec_encode(c, s, &v, &out, err), ESK_OK, "%s", err->msg);
  rd_kafka_message_t m = {0};
  m.payload = out.data;
  m.len = out.len;
  memset(ev, 0, sizeof(*ev));
  int rc = esk_domain_decode(d, &m, ev, err);
  avro_value_decref(&v);
  esk_codec_destroy(c);
  esk_buf_free(&out);
  return rc;
}

/* The positions of "meta" and its fields are found once per reader schema:
 * types whose records order them differently, decoded in turn, each read
 * their own values, and a type whose meta lacks a field is poison every
 * time, naming it. */
Test(projection_decoder, each_event_type_reads_its_metadata_by_its_own_positions) {
  const esk_contract_t tiny = {"tiny", tiny_schemas, no_upcasters};
  esk_domain_decoder_t *d = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_domain_decoder_new(&d, &tiny, NULL, &err), ESK_OK, "%s", err.msg);
  for (int round = 0; round < 3; round++) {
    esk_event_t ev;
    char id[32];
    snprintf(id, sizeof(id), "agg-%d", round);
    cr_assert_eq(tiny_decode(d, "Good", id, "alice", &ev, &err), ESK_OK, "%s", err.msg);
    cr_assert_str_eq(ev.aggregate_id, id);
    cr_assert_str_eq(ev.actor, "alice");
    cr_assert_eq(ev.aggregate_version, 3);
    cr_assert_eq(ev.occurred_at_us, 7);
    cr_assert_eq(tiny_decode(d, "Turned", id, "bob", &ev, &err), ESK_OK, "%s", err.msg);
    cr_assert_str_eq(ev.aggregate_id, id);
    cr_assert_str_eq(ev.actor, "bob");
    cr_assert_str_eq(ev.causation_id, "c");
    err = (esk_error_t){0};
    cr_assert_eq(tiny_decode(d, "Short", id, NULL, &ev, &err), ESK_EPOISON);
    cr_assert(strstr(err.msg, "no field 'actor'"), "%s", err.msg);
  }
  esk_domain_decoder_destroy(d);
}

/* ------------------------------------------- bank fields by position --- */

/* A MoneyDeposited record of schema @p json, its fields set by name where
 * the schema has them. */
static void deposit_value(const char *json, const char *id, int64_t version, int64_t minor,
                          const char *desc, avro_schema_t *s, avro_value_t *v) {
  avro_value_t meta, amount, f;
  cr_assert_eq(avro_schema_from_json_length(json, strlen(json), s), 0, "%s", avro_strerror());
  avro_value_iface_t *iface = avro_generic_class_from_schema(*s);
  cr_assert_eq(avro_generic_value_new(iface, v), 0, "%s", avro_strerror());
  avro_value_iface_decref(iface);
  cr_assert_eq(avro_value_get_by_name(v, "meta", &meta, NULL), 0);
  cr_assert_eq(avro_value_get_by_name(&meta, "aggregate_id", &f, NULL), 0);
  avro_value_set_string(&f, id);
  cr_assert_eq(avro_value_get_by_name(&meta, "aggregate_version", &f, NULL), 0);
  avro_value_set_long(&f, version);
  cr_assert_eq(avro_value_get_by_name(v, "amount", &amount, NULL), 0);
  cr_assert_eq(avro_value_get_by_name(&amount, "minor_units", &f, NULL), 0);
  avro_value_set_long(&f, minor);
  cr_assert_eq(avro_value_get_by_name(&amount, "currency", &f, NULL), 0);
  avro_value_set_string(&f, "EUR");
  if (avro_value_get_by_name(v, "description", &f, NULL) == 0) avro_value_set_string(&f, desc);
}

#define MONEY "{\"type\":\"record\",\"name\":\"Money\",\"fields\":[" /* then its fields */
#define META "{\"name\":\"meta\",\"type\":{\"type\":\"record\",\"name\":\"EventMeta\",\"fields\":["
static const char *const deposit_schemas[] = {
    /* the contract's order */
    "{\"type\":\"record\",\"name\":\"MoneyDeposited\",\"fields\":[" META
    "{\"name\":\"aggregate_id\",\"type\":\"string\"},"
    "{\"name\":\"aggregate_version\",\"type\":\"long\"}]}},"
    "{\"name\":\"amount\",\"type\":" MONEY "{\"name\":\"minor_units\",\"type\":\"long\"},"
    "{\"name\":\"currency\",\"type\":\"string\"}]}},"
    "{\"name\":\"description\",\"type\":\"string\"}]}",
    /* every record in another order */
    "{\"type\":\"record\",\"name\":\"MoneyDeposited\",\"fields\":["
    "{\"name\":\"description\",\"type\":\"string\"},"
    "{\"name\":\"amount\",\"type\":" MONEY "{\"name\":\"currency\",\"type\":\"string\"},"
    "{\"name\":\"minor_units\",\"type\":\"long\"}]}}," META
    "{\"name\":\"aggregate_version\",\"type\":\"long\"},"
    "{\"name\":\"aggregate_id\",\"type\":\"string\"}]}}]}",
    /* no description */
    "{\"type\":\"record\",\"name\":\"MoneyDeposited\",\"fields\":[" META
    "{\"name\":\"aggregate_id\",\"type\":\"string\"},"
    "{\"name\":\"aggregate_version\",\"type\":\"long\"}]}},"
    "{\"name\":\"amount\",\"type\":" MONEY "{\"name\":\"minor_units\",\"type\":\"long\"},"
    "{\"name\":\"currency\",\"type\":\"string\"}]}}]}",
};

/* One reader met with schemas that order the fields differently reads each
 * value's own fields (it finds the positions again when the schema changes),
 * as the lookup by name does; a schema without a field is poison each time,
 * naming it. */
Test(projection_decoder, the_bank_reader_keeps_positions_per_schema_and_reads_like_by_name) {
  esk_bank_event_reader_t r = {0};
  for (int round = 0; round < 6; round++) {
    int k = round % 3;
    avro_schema_t s;
    avro_value_t v;
    char id[16], desc[16];
    snprintf(id, sizeof(id), "acct-%d", round);
    snprintf(desc, sizeof(desc), "round %d", round);
    deposit_value(deposit_schemas[k], id, round + 1, 100 * round, desc, &s, &v);
    esk_bank_event_t kept, named;
    esk_error_t err = {0}, err2 = {0};
    int rc = esk_bank_event_from_value(&kept, &r, "MoneyDeposited", &v, &err);
    int rc2 = esk_bank_event_from_value(&named, NULL, "MoneyDeposited", &v, &err2);
    if (k == 2) {
      cr_assert_eq(rc, ESK_EPOISON, "round %d", round);
      cr_assert_eq(rc2, ESK_EPOISON);
      cr_assert(strstr(err.msg, "no field 'description'"), "%s", err.msg);
      cr_assert_str_eq(err.msg, err2.msg);
    } else {
      cr_assert_eq(rc, ESK_OK, "round %d: %s", round, err.msg);
      cr_assert_eq(rc2, ESK_OK, "%s", err2.msg);
      cr_assert_str_eq(kept.account_id, id);
      cr_assert_eq(kept.aggregate_version, round + 1);
      cr_assert_eq(kept.u.deposited.amount.minor_units, 100 * round);
      cr_assert_str_eq(kept.u.deposited.amount.currency, "EUR");
      cr_assert_str_eq(kept.u.deposited.description, desc);
      cr_assert_eq(memcmp(&kept, &named, sizeof(kept)), 0, "round %d", round);
    }
    avro_value_decref(&v);
    avro_schema_decref(s);
  }
  esk_bank_event_reader_clear(&r);
}
