/* esk-query's aggregate states (consumers/query/state.h): event_log rows back
 * into each domain's events, folded with its evolve and rendered with its
 * state_json after every event type; as_of's parsing against hostile input;
 * a descriptor without state_json (an older plug-in) still loads and its
 * states are answered 501. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank/bank_domain.h"
#include "esk/domain.h"
#include "esk/time.h"
#include "orders/orders.h"
#include "state.h"

typedef struct {
  esk_qstate_t *s;
  esk_qstate_worker_t *w;
  const esk_domain_t *d;
  unsigned char *state, *next, *event;
  int64_t version;
} fold_t;

static void fold_open(fold_t *f, const esk_domain_t *d) {
  esk_error_t err = {0};
  memset(f, 0, sizeof(*f));
  f->d = d;
  cr_assert_eq(esk_qstate_from_domain(&f->s, d, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_qstate_worker_new(&f->w, f->s, &err), ESK_OK, "%s", err.msg);
  f->state = calloc(1, d->state_size);
  f->next = calloc(1, d->state_size);
  f->event = calloc(1, d->event_size);
  d->init_state(f->state);
}

static void fold_close(fold_t *f) {
  esk_qstate_worker_free(f->w);
  esk_qstate_close(f->s);
  free(f->state);
  free(f->next);
  free(f->event);
}

/* Applies the next event of @p id (type @p type, @p payload) and checks the
 * state's JSON is @p want. */
static void apply(fold_t *f, const char *id, const char *type, const char *payload,
                  const char *want) {
  esk_error_t err = {0};
  esk_qstate_row_t row = {id, f->version + 1, type, "6f1c2f6e-0f4b-4d61-9a53-3f7f1b0c9d11",
                          1765000000000000 + f->version, "corr", "cmd", "actor", payload};
  cr_assert_eq(esk_qstate_event_from_row(f->w, &row, f->event, &err), ESK_OK, "%s: %s", type,
               err.msg);
  cr_assert_eq(f->d->evolve(f->next, f->state, f->event, &err), ESK_OK, "%s: %s", type, err.msg);
  unsigned char *t = f->state;
  f->state = f->next;
  f->next = t;
  f->version++;
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_domain_state_json(f->d)(&b, f->state, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_buf_append(&b, "", 1, &err), ESK_OK);
  cr_expect_str_eq((const char *)b.data, want, "after %s", type);
  esk_buf_free(&b);
}

Test(query_state, the_bank_renders_an_account_after_every_event_type) {
  fold_t f;
  fold_open(&f, esk_bank_domain());
  apply(&f, "a-1", "AccountOpened",
        "{\"owner_id\":\"o-1\",\"initial_deposit\":{\"minor_units\":100,\"currency\":\"EUR\"}}",
        "{\"account_id\":\"a-1\",\"owner_id\":\"o-1\",\"status\":\"open\",\"balance\":"
        "{\"amount\":100,\"currency\":\"EUR\"},\"version\":1}");
  apply(&f, "a-1", "MoneyDeposited",
        "{\"amount\":{\"minor_units\":250,\"currency\":\"EUR\"},\"description\":\"pay\"}",
        "{\"account_id\":\"a-1\",\"owner_id\":\"o-1\",\"status\":\"open\",\"balance\":"
        "{\"amount\":350,\"currency\":\"EUR\"},\"version\":2}");
  apply(&f, "a-1", "MoneyWithdrawn", "{\"amount\":350,\"currency\":\"EUR\"}",
        "{\"account_id\":\"a-1\",\"owner_id\":\"o-1\",\"status\":\"open\",\"balance\":"
        "{\"amount\":0,\"currency\":\"EUR\"},\"version\":3}");
  apply(&f, "a-1", "AccountClosed", "{\"reason\":\"moved\"}",
        "{\"account_id\":\"a-1\",\"owner_id\":\"o-1\",\"status\":\"closed\",\"balance\":"
        "{\"amount\":0,\"currency\":\"EUR\"},\"version\":4}");
  fold_close(&f);
}

Test(query_state, a_string_needing_escapes_is_rendered_as_valid_json) {
  fold_t f;
  fold_open(&f, esk_bank_domain());
  apply(&f, "a\"/..\\1", "AccountOpened",
        "{\"owner_id\":\"o'; drop table x--\",\"initial_deposit\":{\"minor_units\":0,"
        "\"currency\":\"USD\"}}",
        "{\"account_id\":\"a\\\"/..\\\\1\",\"owner_id\":\"o'; drop table x--\",\"status\":"
        "\"open\",\"balance\":{\"amount\":0,\"currency\":\"USD\"},\"version\":1}");
  fold_close(&f);
}

#define ORDER_CREATED(email)                                                               \
  "{\"customer_id\":\"c-1\",\"customer_email\":\"" email "\",\"shipping_address\":"        \
  "{\"name\":\"N\",\"street\":\"S\",\"city\":\"C\",\"postal_code\":\"P\",\"country\":\"DE\"}," \
  "\"items\":[{\"product_id\":\"p1\",\"quantity\":2,\"unit_price\":500},{\"product_id\":"  \
  "\"p2\",\"quantity\":1,\"unit_price\":250}],\"total\":1250,\"currency\":\"EUR\"}"

#define ORDER_JSON(status, items, total, version)                                          \
  "{\"order_id\":\"o-1\",\"status\":\"" status "\",\"customer_id\":\"c-1\",\"currency\":" \
  "\"EUR\",\"item_count\":" items ",\"total\":" total ",\"version\":" version "}"

Test(query_state, orders_renders_an_order_after_every_event_type) {
  fold_t f;
  fold_open(&f, esk_orders_domain());
  apply(&f, "o-1", "OrderCreated", ORDER_CREATED("c@example.org"),
        ORDER_JSON("CREATED", "2", "1250", "1"));
  apply(&f, "o-1", "OrderItemAdded",
        "{\"item\":{\"product_id\":\"p3\",\"quantity\":1,\"unit_price\":100}}",
        ORDER_JSON("CREATED", "3", "1350", "2"));
  apply(&f, "o-1", "PaymentProcessed",
        "{\"payment_id\":\"pay-1\",\"amount\":1350,\"currency\":\"EUR\",\"method\":"
        "\"credit_card\"}",
        ORDER_JSON("PAID", "3", "1350", "3"));
  apply(&f, "o-1", "OrderShipped", "{\"tracking_number\":\"T-1\"}",
        ORDER_JSON("SHIPPED", "3", "1350", "4"));
  apply(&f, "o-1", "OrderDelivered", "{}", ORDER_JSON("DELIVERED", "3", "1350", "5"));
  fold_close(&f);
  fold_open(&f, esk_orders_domain());
  apply(&f, "o-1", "OrderCreated", ORDER_CREATED("c@example.org"),
        ORDER_JSON("CREATED", "2", "1250", "1"));
  apply(&f, "o-1", "OrderCancelled", "{\"reason\":\"changed my mind\"}",
        ORDER_JSON("CANCELLED", "2", "1250", "2"));
  fold_close(&f);
}

/* event_log may hold a personal field encrypted (a projector without the
 * master key): esk-query folds it as its `forgotten` value, so even
 * ciphertext longer than the order's email allows folds. */
Test(query_state, a_personal_field_held_encrypted_is_folded_as_forgotten) {
  char email[600] = "esk:p1:";
  memset(email + 7, 'A', 500);
  char payload[2048], want[] = ORDER_JSON("CREATED", "2", "1250", "1");
  snprintf(payload, sizeof(payload),
           "{\"customer_id\":\"c-1\",\"customer_email\":\"%s\",\"shipping_address\":"
           "{\"name\":\"esk:p1:BBBB\",\"street\":\"S\",\"city\":\"C\",\"postal_code\":\"P\","
           "\"country\":\"DE\"},\"items\":[{\"product_id\":\"p1\",\"quantity\":2,\"unit_price\":"
           "500},{\"product_id\":\"p2\",\"quantity\":1,\"unit_price\":250}],\"total\":1250,"
           "\"currency\":\"EUR\"}", email);
  fold_t f;
  fold_open(&f, esk_orders_domain());
  apply(&f, "o-1", "OrderCreated", payload, want);
  const esk_orders_event_t *ev = (const esk_orders_event_t *)f.event;
  cr_expect_str_eq(ev->u.created.customer_email, "[forgotten]");
  cr_expect_str_eq(ev->u.created.address[0], "[forgotten]");
  fold_close(&f);
}

Test(query_state, a_row_that_is_not_the_domains_event_is_refused_naming_it) {
  fold_t f;
  fold_open(&f, esk_bank_domain());
  esk_error_t err = {0};
  const char *bad[][2] = {
      {"OrderCreated", "{}"},                           /* another domain's type */
      {"MoneyDeposited", "[1]"},                        /* not an object */
      {"MoneyDeposited", "{\"amount\":\"ten\"}"},       /* not the schema's shape */
      {"MoneyDeposited", "{\"amount\":{\"minor_units\":1}}"}, /* a field missing */
      {"MoneyDeposited", "{\"amount\":{\"minor_units\":1,\"currency\":\"E"}, /* truncated */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    esk_qstate_row_t row = {"a-1", 2, bad[i][0], "6f1c2f6e-0f4b-4d61-9a53-3f7f1b0c9d11", 1,
                            "", "", "", bad[i][1]};
    err.msg[0] = '\0';
    cr_expect_eq(esk_qstate_event_from_row(f.w, &row, f.event, &err), ESK_EPOISON, "%s %s",
                 bad[i][0], bad[i][1]);
    cr_expect(strstr(err.msg, "a-1 v2") && strstr(err.msg, bad[i][0]), "%s", err.msg);
  }
  fold_close(&f);
}

Test(query_state, as_of_is_rfc_3339_to_the_microsecond) {
  esk_error_t err = {0};
  int64_t us = 0, ms = 0;
  cr_assert_eq(esk_qstate_parse_as_of("2026-01-15T10:00:00.123456Z", &us, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(esk_time_parse_rfc3339(&ms, "2026-01-15T10:00:00Z", &err), ESK_OK);
  cr_expect_eq(us, ms * 1000 + 123456);
  cr_assert_eq(esk_qstate_parse_as_of("2026-01-15T11:00:00.1234569+01:00", &us, &err), ESK_OK);
  cr_expect_eq(us, ms * 1000 + 123456, "digits past the sixth are dropped, the offset applies");
  char text[40];
  esk_time_format_rfc3339_us(text, sizeof(text), ms * 1000 + 5);
  cr_expect_str_eq(text, "2026-01-15T10:00:00.000005Z");
  cr_assert_eq(esk_qstate_parse_as_of(text, &us, &err), ESK_OK);
  cr_expect_eq(us, ms * 1000 + 5, "what it writes reads back");
}

Test(query_state, a_hostile_as_of_is_refused_naming_the_parameter) {
  static char huge[20000];
  memset(huge, '9', sizeof(huge) - 1);
  const char *bad[] = {"",
                       "2026-01-15T10:0",            /* truncated */
                       "2026-01-15T10:00:00",        /* no zone */
                       "2026-01-15 10:00:00Z",       /* a space, not T */
                       "2026-01-15",                 /* a date */
                       "2026-13-01T00:00:00Z",       /* month out of range */
                       "2026-02-30T00:00:00Z",       /* no such day */
                       "1969-12-31T23:59:59Z",       /* before the epoch */
                       "99999-01-01T00:00:00Z",      /* a five-digit year */
                       "2026-01-15T10:00:00.Z",      /* no fraction digits */
                       "2026-01-15T10:00:00+25:00",  /* offset out of range */
                       "2026-01-15T10:00:00Z'; drop table event_log--",
                       "yesterday",
                       "\xff\xfe",
                       huge};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    esk_error_t err = {0};
    int64_t us = 42;
    cr_expect_eq(esk_qstate_parse_as_of(bad[i], &us, &err), ESK_EINVAL, "%.40s", bad[i]);
    cr_expect(!strncmp(err.msg, "as_of", 5) && strlen(err.msg) < 300, "%.40s: %s", bad[i],
              err.msg);
    cr_expect_eq(us, 42, "%.40s: not set", bad[i]);
  }
}

/* A plug-in built before state_json ends before it: it loads, and its states
 * are answered 501 without reading past its descriptor. */
Test(query_state, a_domain_without_state_json_loads_and_answers_501) {
  esk_domain_t d = *esk_bank_domain();
  esk_error_t err = {0};
  cr_expect_neq((void *)esk_domain_state_json(&d), NULL);
  d.struct_size = ESK_DOMAIN_SIZE_BASE;
  cr_assert_eq(esk_domain_check(&d, "old.so", &err), ESK_OK, "%s", err.msg);
  cr_expect_eq((void *)esk_domain_state_json(&d), NULL, "past its struct_size, never read");
  d.struct_size = sizeof(esk_domain_t);
  d.state_json = NULL;
  cr_assert_eq(esk_domain_check(&d, "new.so", &err), ESK_OK, "%s", err.msg);
  esk_qstate_t *s = NULL;
  esk_qstate_worker_t *w = NULL;
  cr_assert_eq(esk_qstate_from_domain(&s, &d, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_qstate_worker_new(&w, s, &err), ESK_OK, "%s", err.msg);
  esk_buf_t body;
  esk_buf_init(&body, 0);
  esk_qstate_ask_t ask = {"a-1", 0, 0};
  cr_expect_eq(esk_qstate_answer(w, NULL, &ask, &body), 501);
  cr_expect(strstr((const char *)body.data, "NOT_IMPLEMENTED") &&
                strstr((const char *)body.data, "state_json"),
            "%s", (const char *)body.data);
  esk_buf_free(&body);
  esk_qstate_worker_free(w);
  esk_qstate_close(s);
}

/* The same with a real shared object built before state_json (its
 * struct_size ends before it; the state_json it holds past that aborts). */
Test(query_state, a_plugin_built_before_state_json_loads_through_domain_lib_and_answers_501) {
  esk_error_t err = {0};
  esk_qstate_t *s = NULL;
  esk_qstate_worker_t *w = NULL;
  cr_assert_eq(esk_qstate_open(&s, ESK_BINARY_DIR "/tests/domains", "before_state_json", &err),
               ESK_OK, "%s", err.msg);
  cr_expect_eq(esk_qstate_domain(s)->struct_size, ESK_DOMAIN_SIZE_BASE);
  cr_expect_eq((void *)esk_domain_state_json(esk_qstate_domain(s)), NULL);
  cr_assert_eq(esk_qstate_worker_new(&w, s, &err), ESK_OK, "%s", err.msg);
  esk_buf_t body;
  esk_buf_init(&body, 0);
  esk_qstate_ask_t ask = {"t-1", 1, 0};
  cr_expect_eq(esk_qstate_answer(w, NULL, &ask, &body), 501);
  cr_expect(strstr((const char *)body.data, "NOT_IMPLEMENTED"), "%s", (const char *)body.data);
  esk_buf_free(&body);
  esk_qstate_worker_free(w);
  esk_qstate_close(s);
}
