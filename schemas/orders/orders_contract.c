/* The orders contract: embedded schemas and the OrderCreated v1 upcaster. */
#include "orders_contract.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

extern const size_t esk_orders_schema_count;
extern const char *const esk_orders_schema_names[];
extern const char *const esk_orders_schema_texts[];

int esk_orders_schemas_load(esk_schema_set_t *set, esk_error_t *err) {
  return esk_schema_set_add_many(set, esk_orders_schema_count, esk_orders_schema_names,
                                 esk_orders_schema_texts, err);
}

int esk_orders_minor_units(int64_t *out, double major, const char *what, esk_error_t *err) {
  if (isnan(major) || isinf(major) || major < 0)
    return esk_error_set(err, ESK_EPOISON, "OrderCreated v1: %s is %g, not an amount", what,
                         major);
  double x = major * 100.0;
  if (x > 4611686018427387904.0) /* 2^62: far beyond any price, and exact in a double */
    return esk_error_set(err, ESK_EPOISON, "OrderCreated v1: %s %g is out of range", what,
                         major);
  double f = floor(x), d = x - f;
  int64_t r = (int64_t)f;
  if (d > 0.5 || (d == 0.5 && (r & 1))) r++; /* half to even */
  *out = r;
  return ESK_OK;
}

static int copy_string(const avro_value_t *from, const char *fname, avro_value_t *to,
                       const char *tname, esk_error_t *err) {
  avro_value_t f, t;
  const char *s;
  size_t n;
  int rc;
  if ((rc = esk_value_field(from, fname, &f, err)) ||
      (rc = esk_value_field(to, tname, &t, err)))
    return rc;
  if (avro_value_get_string(&f, &s, &n) || avro_value_set_string_len(&t, s, n))
    return esk_error_set(err, ESK_EPOISON, "OrderCreated v1 -> v2: %s: %s", fname,
                         avro_strerror());
  return ESK_OK;
}

static int set_string(avro_value_t *rec, const char *name, const char *v, esk_error_t *err) {
  avro_value_t f;
  int rc = esk_value_field(rec, name, &f, err);
  if (rc) return rc;
  if (avro_value_set_string(&f, v))
    return esk_error_set(err, ESK_EPOISON, "OrderCreated v1 -> v2: %s: %s", name,
                         avro_strerror());
  return ESK_OK;
}

int esk_orders_upcast_order_created_v1(const avro_value_t *from, avro_value_t *to,
                                       esk_error_t *err) {
  avro_value_t fmeta, tmeta, fitems, titems, ftotal, ttotal, taddr;
  int rc;
  double total = 0;
  int64_t minor;
  if ((rc = esk_value_field(from, "meta", &fmeta, err)) ||
      (rc = esk_value_field(to, "meta", &tmeta, err)) ||
      (rc = esk_value_field(from, "items", &fitems, err)) ||
      (rc = esk_value_field(to, "items", &titems, err)) ||
      (rc = esk_value_field(from, "totalAmount", &ftotal, err)) ||
      (rc = esk_value_field(to, "total", &ttotal, err)) ||
      (rc = esk_value_field(to, "shipping_address", &taddr, err)))
    return rc;
  if (avro_value_copy_fast(&tmeta, &fmeta))
    return esk_error_set(err, ESK_EPOISON, "OrderCreated v1 -> v2: meta: %s", avro_strerror());
  if ((rc = copy_string(from, "customerId", to, "customer_id", err)) ||
      (rc = set_string(to, "customer_email", "", err)) ||
      (rc = set_string(to, "currency", ESK_ORDERS_V1_CURRENCY, err)))
    return rc;
  static const char *const addr[] = {"name", "street", "city", "postal_code", "country"};
  for (size_t i = 0; i < sizeof(addr) / sizeof(addr[0]); i++)
    if ((rc = set_string(&taddr, addr[i], "", err))) return rc;
  size_t n = 0;
  avro_value_get_size(&fitems, &n);
  avro_value_reset(&titems);
  for (size_t i = 0; i < n; i++) {
    avro_value_t fi, ti, fprice, tprice, fq, tq;
    double price;
    int32_t q;
    char what[48];
    if (avro_value_get_by_index(&fitems, i, &fi, NULL) || avro_value_append(&titems, &ti, NULL))
      return esk_error_set(err, ESK_EPOISON, "OrderCreated v1 -> v2: item %zu: %s", i,
                           avro_strerror());
    snprintf(what, sizeof(what), "item %zu's price", i);
    if ((rc = copy_string(&fi, "productId", &ti, "product_id", err)) ||
        (rc = esk_value_field(&fi, "price", &fprice, err)) ||
        (rc = esk_value_field(&ti, "unit_price", &tprice, err)) ||
        (rc = esk_value_field(&fi, "quantity", &fq, err)) ||
        (rc = esk_value_field(&ti, "quantity", &tq, err)))
      return rc;
    if (avro_value_get_double(&fprice, &price) || avro_value_get_int(&fq, &q))
      return esk_error_set(err, ESK_EPOISON, "OrderCreated v1 -> v2: item %zu: %s", i,
                           avro_strerror());
    if ((rc = esk_orders_minor_units(&minor, price, what, err))) return rc;
    if (avro_value_set_long(&tprice, minor) || avro_value_set_int(&tq, q))
      return esk_error_set(err, ESK_EPOISON, "OrderCreated v1 -> v2: item %zu: %s", i,
                           avro_strerror());
  }
  if (avro_value_get_double(&ftotal, &total))
    return esk_error_set(err, ESK_EPOISON, "OrderCreated v1 -> v2: totalAmount: %s",
                         avro_strerror());
  if ((rc = esk_orders_minor_units(&minor, total, "totalAmount", err))) return rc;
  if (avro_value_set_long(&ttotal, minor))
    return esk_error_set(err, ESK_EPOISON, "OrderCreated v1 -> v2: total: %s", avro_strerror());
  return ESK_OK;
}

int esk_orders_register_upcasters(esk_codec_t *codec, esk_error_t *err) {
  return esk_codec_register_upcaster(codec, "OrderCreated", 1, esk_orders_upcast_order_created_v1,
                                     err);
}
