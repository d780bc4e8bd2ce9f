/* The domain-neutral projection API (esk/projection.h) and the projector's
 * decoder for any domain (domain_decoder.h): the type, the version written,
 * the shared metadata and the upcast value read by path, for the bank and for
 * the orders domain (whose v1 OrderCreated, written by Apache Avro for
 * Python, is read as v2). Hostile paths and values are refused with a code,
 * never a crash. No servers: messages are built in memory. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_decoder.h"
#include "declarative.h"
#include "domain_decoder.h"
#include "esk/projection.h"
#include "esk_test.h"
#include "esk_test_bank.h"
#include "orders_contract.h"

#define ORDERS_FIXTURES ESK_SOURCE_DIR "/tests/fixtures/avro/orders/"

static const esk_contract_t orders = {"orders", esk_orders_schemas_load,
                                      esk_orders_register_upcasters};

static void *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  void *buf = malloc(65536);
  *len = fread(buf, 1, 65536, f);
  fclose(f);
  return buf;
}

static int decode(esk_domain_decoder_t *d, const void *v, size_t len, esk_event_t *ev,
                  esk_error_t *err) {
  rd_kafka_message_t m = {0};
  m.payload = (void *)v;
  m.len = len;
  memset(ev, 0, sizeof(*ev));
  return esk_domain_decode(d, &m, ev, err);
}

Test(projection_api, a_bank_event_has_its_metadata_and_fields_by_path) {
  esk_domain_decoder_t *d = NULL;
  esk_test_bank_t *bank = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_domain_decoder_new(&d, &esk_bank_contract, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_test_bank_new(&bank, 7, 5, 200, &err), ESK_OK, "%s", err.msg);
  size_t deposits = 0;
  for (size_t i = 0; i < esk_test_bank_count(bank); i++) {
    const esk_test_bank_event_t *e = esk_test_bank_event(bank, i);
    void *v = NULL;
    size_t len = 0;
    esk_event_t ev;
    char acct[32];
    cr_assert_eq(esk_test_bank_encode(bank, i, NULL, &v, &len, &err), ESK_OK, "%s", err.msg);
    cr_assert_eq(decode(d, v, len, &ev, &err), ESK_OK, "event %zu: %s", i, err.msg);
    cr_expect_str_eq(ev.domain, "bank");
    cr_expect_str_eq(ev.aggregate_type, "account");
    cr_expect_str_eq(ev.aggregate_id, esk_test_bank_account_id(e->account, acct, sizeof(acct)));
    cr_expect_eq(ev.aggregate_version, e->version);
    cr_expect_eq(ev.occurred_at_us, e->occurred_at_us);
    cr_expect_eq(ev.schema_version, e->writer_version);
    cr_expect_null(ev.payload);
    const char *s = NULL;
    cr_expect_eq(esk_event_get_str(&ev, "meta.event_id", &s), ESK_OK);
    cr_expect_str_eq(s, ev.event_id);
    if (e->kind == ESK_BANK_EV_MONEY_DEPOSITED) {
      int64_t amount = -1;
      deposits++;
      cr_expect_str_eq(ev.type, "MoneyDeposited");
      cr_expect_eq(ev.value_version, 3, "a deposit is read at its latest version");
      cr_expect_eq(esk_event_get_long(&ev, "amount.minor_units", &amount), ESK_OK);
      cr_expect_eq(amount, e->amount, "event %zu", i);
      cr_expect_eq(esk_event_get_str(&ev, "amount.currency", &s), ESK_OK);
      if (e->writer_version == 1) cr_expect_str_eq(s, "USD", "v1's implicit currency");
    }
    free(v);
  }
  cr_expect_gt(deposits, 0);
  esk_test_bank_destroy(bank);
  esk_domain_decoder_destroy(d);
}

Test(projection_api, a_v1_order_created_written_by_python_is_read_as_v2) {
  esk_domain_decoder_t *d = NULL;
  esk_error_t err = {0};
  size_t len = 0;
  cr_assert_eq(esk_domain_decoder_new(&d, &orders, NULL, &err), ESK_OK, "%s", err.msg);
  void *v = slurp(ORDERS_FIXTURES "OrderCreated.v1.ok.bin", &len);
  esk_event_t ev;
  cr_assert_eq(decode(d, v, len, &ev, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(ev.type, "OrderCreated");
  cr_expect_str_eq(ev.domain, "orders");
  cr_expect_eq(ev.schema_version, 1);
  cr_expect_eq(ev.value_version, 2);
  cr_expect_str_eq(ev.aggregate_type, "order");
  cr_expect_str_eq(ev.aggregate_id, "o-legacy-1");
  cr_expect_eq(ev.aggregate_version, 1);
  cr_expect_str_eq(ev.correlation_id, "corr-1");
  cr_expect_str_eq(ev.causation_id, "cmd-1");
  cr_expect_str_eq(ev.actor, "legacy-service");
  const char *s = NULL;
  int64_t n = 0;
  size_t items = 0;
  cr_expect_eq(esk_event_get_str(&ev, "customer_id", &s), ESK_OK);
  cr_expect_str_eq(s, "c-9");
  cr_expect_eq(esk_event_get_long(&ev, "total", &n), ESK_OK);
  cr_expect_eq(n, 4123, "totalAmount 41.23, to minor units");
  cr_expect_eq(esk_event_get_str(&ev, "currency", &s), ESK_OK);
  cr_expect_str_eq(s, "USD");
  cr_expect_eq(esk_event_get_size(&ev, "items", &items), ESK_OK);
  cr_expect_eq(items, 3);
  cr_expect_eq(esk_event_get_str(&ev, "items.2.product_id", &s), ESK_OK);
  cr_expect_str_eq(s, "p-3");
  cr_expect_eq(esk_event_get_long(&ev, "items.1.unit_price", &n), ESK_OK);
  cr_expect_eq(n, 12);
  cr_expect_eq(esk_event_get_long(&ev, "items.0.quantity", &n), ESK_OK, "an int reads as a long");
  cr_expect_eq(n, 2);
  int64_t lines = 0;
  for (size_t i = 0; i < items; i++) {
    char pq[64], pp[64];
    int64_t q = 0, p = 0;
    snprintf(pq, sizeof(pq), "items.%zu.quantity", i);
    snprintf(pp, sizeof(pp), "items.%zu.unit_price", i);
    cr_expect_eq(esk_event_get_long(&ev, pq, &q), ESK_OK);
    cr_expect_eq(esk_event_get_long(&ev, pp, &p), ESK_OK);
    lines += q * p;
  }
  cr_expect_eq(lines, 4124, "2 x 1999 + 12 (0.125: half to even) + 3 x 38 (0.375: half to even)");
  free(v);
  esk_domain_decoder_destroy(d);
}

Test(projection_api, v1_amounts_the_upcaster_refuses_are_poison) {
  static const char *const bad[] = {"nan", "infinite_total", "negative"};
  esk_domain_decoder_t *d = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_domain_decoder_new(&d, &orders, NULL, &err), ESK_OK, "%s", err.msg);
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof(path), ORDERS_FIXTURES "OrderCreated.v1.%s.bin", bad[i]);
    void *v = slurp(path, &len);
    esk_event_t ev;
    esk_error_t why = {0};
    cr_expect_eq(decode(d, v, len, &ev, &why), ESK_EPOISON, "%s decoded", bad[i]);
    cr_expect(why.msg[0], "%s: no reason", bad[i]);
    free(v);
  }
  esk_domain_decoder_destroy(d);
}

Test(projection_api, hostile_paths_are_refused_with_a_code) {
  esk_domain_decoder_t *d = NULL;
  esk_error_t err = {0};
  size_t len = 0, n = 0;
  cr_assert_eq(esk_domain_decoder_new(&d, &orders, NULL, &err), ESK_OK, "%s", err.msg);
  void *v = slurp(ORDERS_FIXTURES "OrderCreated.v1.ok.bin", &len);
  esk_event_t ev;
  cr_assert_eq(decode(d, v, len, &ev, &err), ESK_OK, "%s", err.msg);
  const char *s = NULL;
  int64_t x = 0;
  char longseg[300];
  memset(longseg, 'a', sizeof(longseg) - 1);
  longseg[sizeof(longseg) - 1] = '\0';
  cr_expect_eq(esk_event_get_str(&ev, "", &s), ESK_EINVAL);
  cr_expect_eq(esk_event_get_str(&ev, NULL, &s), ESK_EINVAL);
  cr_expect_eq(esk_event_get_str(&ev, "meta..actor", &s), ESK_EINVAL);
  cr_expect_eq(esk_event_get_str(&ev, "meta.", &s), ESK_EINVAL);
  cr_expect_eq(esk_event_get_str(&ev, longseg, &s), ESK_EINVAL);
  cr_expect_eq(esk_event_get_str(&ev, "no_such_field", &s), ESK_ENOTFOUND);
  cr_expect_eq(esk_event_get_str(&ev, "meta.actor.deeper", &s), ESK_ENOTFOUND);
  cr_expect_eq(esk_event_get_str(&ev, "items.3.product_id", &s), ESK_ENOTFOUND);
  cr_expect_eq(esk_event_get_str(&ev, "items.-1.product_id", &s), ESK_ENOTFOUND);
  cr_expect_eq(esk_event_get_str(&ev, "items.x.product_id", &s), ESK_ENOTFOUND);
  cr_expect_eq(esk_event_get_str(&ev, "items.99999999999999999999999.product_id", &s),
               ESK_ENOTFOUND);
  cr_expect_eq(esk_event_get_long(&ev, "customer_id", &x), ESK_EPOISON, "a string is no long");
  cr_expect_eq(esk_event_get_str(&ev, "total", &s), ESK_EPOISON, "a long is no string");
  cr_expect_eq(esk_event_get_size(&ev, "total", &n), ESK_EPOISON);
  esk_event_t none = ev;
  none.value = NULL;
  cr_expect_eq(esk_event_get_str(&none, "customer_id", &s), ESK_ENOTFOUND);
  free(v);
  esk_domain_decoder_destroy(d);
}

Test(projection_api, an_incomplete_contract_is_refused) {
  esk_domain_decoder_t *d = NULL;
  esk_error_t err = {0};
  esk_contract_t c = {"x", NULL, esk_orders_register_upcasters};
  cr_expect_eq(esk_domain_decoder_new(&d, &c, NULL, &err), ESK_EINVAL);
  cr_expect_null(d);
  cr_expect_eq(esk_domain_decoder_new(&d, NULL, NULL, &err), ESK_EINVAL);
}

/* Random corruption of an orders event: decoded or poison with a reason. */
Test(projection_api, random_corruption_of_an_order_event_decodes_or_is_poison) {
  esk_domain_decoder_t *d = NULL;
  esk_error_t err = {0};
  size_t len = 0;
  cr_assert_eq(esk_domain_decoder_new(&d, &orders, NULL, &err), ESK_OK, "%s", err.msg);
  unsigned char *orig = slurp(ORDERS_FIXTURES "OrderCreated.v1.ok.bin", &len);
  unsigned char *v = malloc(len);
  unsigned seed = 4242;
  for (int round = 0; round < 3000; round++) {
    memcpy(v, orig, len);
    int flips = 1 + (int)(rand_r(&seed) % 4);
    for (int f = 0; f < flips; f++) v[rand_r(&seed) % len] ^= (unsigned char)(1 + rand_r(&seed) % 255);
    size_t cut = round % 5 == 0 ? rand_r(&seed) % len : len;
    esk_event_t ev;
    esk_error_t why = {0};
    int rc = decode(d, v, cut, &ev, &why);
    cr_assert(rc == ESK_OK || (rc == ESK_EPOISON && why.msg[0]), "rc %d: %s", rc, why.msg);
    const char *s;
    if (rc == ESK_OK) (void)esk_event_get_str(&ev, "items.0.product_id", &s);
  }
  free(v);
  free(orig);
  esk_domain_decoder_destroy(d);
}

/* The orders domain's read models are declarative files: their paths resolve
 * in the orders contract (items, total, item.quantity, ...); under the bank's
 * contract the same files are refused, naming the file, the line and the type. */
Test(projection_api, the_orders_read_models_load_against_the_orders_contract_only) {
  static const char *const files[] = {"order_summaries", "customer_statistics"};
  esk_domain_decoder_t *od = NULL, *bd = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_domain_decoder_new(&od, &orders, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_domain_decoder_new(&bd, &esk_bank_contract, NULL, &err), ESK_OK, "%s", err.msg);
  for (size_t i = 0; i < 2; i++) {
    char path[512];
    esk_declarative_t *d = NULL;
    snprintf(path, sizeof(path), "%s/deploy/projections/%s.conf", ESK_SOURCE_DIR, files[i]);
    cr_assert_eq(esk_declarative_load(&d, path, esk_domain_decoder_schemas(od), &err), ESK_OK,
                 "%s", err.msg);
    cr_expect_str_eq(esk_declarative_name(d), files[i]);
    esk_projection_t p = esk_declarative_projection(d);
    /* order_summaries keeps the email and address (migration 2) and declares
     * them personal; customer_statistics holds no personal data */
    cr_expect_eq(p.n_migrations, i == 0 ? 2 : 1);
    cr_expect_eq(p.forget != NULL, i == 0, "%s: forget", files[i]);
    esk_declarative_destroy(d);
    d = NULL;
    esk_error_t why = {0};
    cr_expect_eq(esk_declarative_load(&d, path, esk_domain_decoder_schemas(bd), &why), ESK_EINVAL);
    cr_expect(strstr(why.msg, path) && strstr(why.msg, "no event type 'OrderCreated'"), "%s",
              why.msg);
  }
  esk_domain_decoder_destroy(od);
  esk_domain_decoder_destroy(bd);
}
