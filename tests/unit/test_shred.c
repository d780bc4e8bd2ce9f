/* common/shred: master key files, subject key records, the wire form of an
 * encrypted value, forgetting; with orders' OrderCreated v2
 * (docs/architecture.md, "Personal data"). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esk/codec.h"
#include "esk/shred.h"
#include "esk_test.h"

#define ORDERS_DIR ESK_SOURCE_DIR "/schemas/orders"
#define MASTER_A "3f9a1c0e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a"
#define MASTER_B "0000000000000000000000000000000000000000000000000000000000000001"

static esk_schema_set_t *set;
static const esk_schema_t *created;

static void setup(void) {
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_schema_set_load_dir(set, ORDERS_DIR, &err), ESK_OK, "%s", err.msg);
  created = esk_schema_set_get(set, "OrderCreated", 2);
  cr_assert(created);
}

static void teardown(void) { esk_schema_set_destroy(set); }

TestSuite(shred, .init = setup, .fini = teardown);

/* A keyring over a master key file holding @p text (mode @p mode). */
static int keyring(esk_shred_t **out, const char *text, mode_t mode, esk_error_t *err) {
  char path[256];
  esk_test_temp_file(path, sizeof(path), "esk-master-", text, strlen(text));
  cr_assert_eq(chmod(path, mode), 0);
  int rc = esk_shred_new(out, path, err);
  unlink(path);
  return rc;
}

static esk_shred_t *ring(const char *master) {
  esk_shred_t *sh = NULL;
  esk_error_t err = {0};
  cr_assert_eq(keyring(&sh, master, 0600, &err), ESK_OK, "%s", err.msg);
  return sh;
}

/* An OrderCreated v2 of customer @p cid with email @p email. */
static void order(avro_value_t *v, const char *cid, const char *email) {
  char json[2048];
  esk_error_t err = {0};
  snprintf(json, sizeof(json),
           "{\"meta\":{\"event_id\":\"e\",\"aggregate_type\":\"Order\",\"aggregate_id\":\"o-1\","
           "\"aggregate_version\":1,\"occurred_at\":0,\"correlation_id\":\"c\","
           "\"causation_id\":\"k\",\"actor\":\"a\"},\"customer_id\":\"%s\","
           "\"customer_email\":\"%s\",\"shipping_address\":{\"name\":\"Ada Lovelace\","
           "\"street\":\"12 St James's Square\",\"city\":\"London\",\"postal_code\":\"SW1Y\","
           "\"country\":\"GB\"},\"items\":[],\"total\":0,\"currency\":\"EUR\"}",
           cid, email);
  cr_assert_eq(esk_value_new(v, created, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_value_from_json(v, created, json, &err), ESK_OK, "%s", err.msg);
}

static char *as_json(const avro_value_t *v) {
  char *j = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_value_to_json(v, &j, &err), ESK_OK, "%s", err.msg);
  return j;
}

static const char *field_str(avro_value_t *v, const char *name) {
  const char *s = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_value_field_str(v, name, &s, &err), ESK_OK, "%s", err.msg);
  return s;
}

static void set_field_str(avro_value_t *v, const char *name, const char *s) {
  avro_value_t f;
  cr_assert_eq(avro_value_get_by_name(v, name, &f, NULL), 0);
  cr_assert_eq(avro_value_set_string(&f, s), 0);
}

/* Collects the records esk_shred_take_records() hands out. */
typedef struct {
  int n;
  char key[8][1200];
  size_t klen[8];
  uint8_t value[8][128];
  size_t vlen[8];
} records_t;

static int collect(const char *key, size_t klen, const void *value, size_t vlen, void *ctx) {
  records_t *r = ctx;
  cr_assert_lt(r->n, 8);
  cr_assert_lt(klen, sizeof(r->key[0]));
  cr_assert_leq(vlen, sizeof(r->value[0]));
  memcpy(r->key[r->n], key, klen);
  r->klen[r->n] = klen;
  memcpy(r->value[r->n], value, vlen);
  r->vlen[r->n++] = vlen;
  return 0;
}

static void apply_all(esk_shred_t *sh, const records_t *r) {
  esk_error_t err = {0};
  for (int i = 0; i < r->n; i++)
    cr_assert_eq(esk_shred_apply_record(sh, r->key[i], r->klen[i], r->value[i], r->vlen[i], &err),
                 ESK_OK, "%s", err.msg);
}

/* Encrypts an order of @p cid on @p sh and hands out its records into @p r. */
static void encrypted_order(esk_shred_t *sh, avro_value_t *v, const char *cid, records_t *r) {
  esk_error_t err = {0};
  order(v, cid, "ada@example.org");
  esk_shred_txn_begin(sh);
  cr_assert_eq(esk_shred_encrypt_value(sh, created, v, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_shred_take_records(sh, collect, r), ESK_OK);
  esk_shred_txn_committed(sh);
}

/* A writer's keyring that encrypted an order of cu-1 (a, its records ra) and
 * one of cu-2 (b), and a reader's that applied both orders' records. */
typedef struct {
  esk_shred_t *w, *r;
  avro_value_t a, b;
  records_t ra, rb;
} two_t;

static void two_orders(two_t *t) {
  memset(t, 0, sizeof(*t));
  t->w = ring(MASTER_A);
  t->r = ring(MASTER_A);
  encrypted_order(t->w, &t->a, "cu-1", &t->ra);
  encrypted_order(t->w, &t->b, "cu-2", &t->rb);
  apply_all(t->r, &t->ra);
  apply_all(t->r, &t->rb);
}

Test(shred, a_master_key_file_must_be_64_hex_digits_that_only_its_owner_can_read) {
  esk_shred_t *sh = NULL;
  esk_error_t err = {0};
  cr_expect_eq(keyring(&sh, MASTER_A "\n", 0644, &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "others may read or write it (mode 644)"), "%s", err.msg);
  cr_expect_eq(keyring(&sh, "3f9a1c", 0600, &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "expected 64 hex digits"), "%s", err.msg);
  cr_expect_eq(keyring(&sh, MASTER_A "00", 0600, &err), ESK_EINVAL);
  const char *nonhex = "zz9a1c0e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";
  cr_expect_eq(keyring(&sh, nonhex, 0600, &err), ESK_EINVAL);
  cr_expect(!strstr(err.msg, "9a1c0e5b"), "the message holds the key: %s", err.msg);
  cr_expect_eq(esk_shred_new(&sh, "/nonexistent/esk-master", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "/nonexistent/esk-master"), "%s", err.msg);
  cr_assert_eq(keyring(&sh, MASTER_A "\n", 0400, &err), ESK_OK, "%s", err.msg);
  esk_shred_destroy(sh);
  esk_shred_destroy(NULL);
}

Test(shred, personal_fields_leave_as_ciphertext_and_come_back_with_the_key) {
  esk_shred_t *w = ring(MASTER_A), *r = ring(MASTER_A);
  avro_value_t v;
  records_t recs = {0};
  encrypted_order(w, &v, "cu-1", &recs);
  char *j = as_json(&v);
  cr_expect(!strstr(j, "ada@example.org") && !strstr(j, "Lovelace") && !strstr(j, "London") &&
                !strstr(j, "SW1Y"),
            "plaintext left: %s", j);
  cr_expect(strstr(j, "\"customer_id\":\"cu-1\""), "the subject stays in clear: %s", j);
  free(j);
  cr_expect_eq(strncmp(field_str(&v, "customer_email"), ESK_SHRED_PREFIX, strlen(ESK_SHRED_PREFIX)),
               0);
  /* one key for the subject, one record, named <subject>/<32 hex digits> */
  cr_assert_eq(recs.n, 1);
  cr_expect_eq(recs.klen[0], strlen("cu-1/") + 32);
  cr_expect_eq(strncmp(recs.key[0], "cu-1/", 5), 0);

  esk_error_t err = {0};
  /* a reader without the key changes nothing and says so */
  cr_expect_eq(esk_shred_decrypt_value(r, created, &v, 0, &err), ESK_ENOTFOUND);
  cr_expect_eq(strncmp(field_str(&v, "customer_email"), ESK_SHRED_PREFIX, 7), 0);
  apply_all(r, &recs);
  cr_assert_eq(esk_shred_decrypt_value(r, created, &v, 0, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(field_str(&v, "customer_email"), "ada@example.org");
  j = as_json(&v);
  cr_expect(strstr(j, "\"street\":\"12 St James's Square\""), "%s", j);
  free(j);
  avro_value_decref(&v);
  esk_shred_destroy(w);
  esk_shred_destroy(r);
}

Test(shred, each_value_gets_a_fresh_nonce_and_a_subject_keeps_its_key) {
  esk_shred_t *w = ring(MASTER_A);
  avro_value_t a, b;
  records_t ra = {0}, rb = {0};
  encrypted_order(w, &a, "cu-1", &ra);
  encrypted_order(w, &b, "cu-1", &rb);
  cr_expect_str_neq(field_str(&a, "customer_email"), field_str(&b, "customer_email"));
  /* same key id (the first 22 base64 characters after the prefix cover its 16 bytes) */
  cr_expect_eq(strncmp(field_str(&a, "customer_email"), field_str(&b, "customer_email"), 7 + 21), 0);
  cr_expect_eq(ra.n, 1);
  cr_expect_eq(rb.n, 0, "a published key is not written again");
  avro_value_decref(&a);
  avro_value_decref(&b);
  esk_shred_destroy(w);
}

Test(shred, an_aborted_transactions_key_is_handed_out_again_in_the_next) {
  esk_shred_t *w = ring(MASTER_A);
  esk_error_t err = {0};
  avro_value_t v;
  records_t r1 = {0}, r2 = {0}, r3 = {0};
  order(&v, "cu-9", "x@y.z");
  esk_shred_txn_begin(w);
  cr_assert_eq(esk_shred_encrypt_value(w, created, &v, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_shred_take_records(w, collect, &r1), ESK_OK);
  cr_expect_eq(r1.n, 1);
  /* aborted: no commit; the redo uses the key again */
  avro_value_decref(&v);
  order(&v, "cu-9", "x@y.z");
  esk_shred_txn_begin(w);
  cr_assert_eq(esk_shred_encrypt_value(w, created, &v, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_shred_take_records(w, collect, &r2), ESK_OK);
  cr_expect_eq(r2.n, 1);
  cr_expect_eq(memcmp(r1.key[0], r2.key[0], r1.klen[0]), 0, "the same key, wrapped again");
  esk_shred_txn_committed(w);
  avro_value_decref(&v);
  order(&v, "cu-9", "x@y.z");
  esk_shred_txn_begin(w);
  cr_assert_eq(esk_shred_encrypt_value(w, created, &v, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_shred_take_records(w, collect, &r3), ESK_OK);
  cr_expect_eq(r3.n, 0);
  avro_value_decref(&v);
  esk_shred_destroy(w);
}

Test(shred, a_wrong_master_key_is_refused_and_never_yields_plaintext) {
  esk_shred_t *w = ring(MASTER_A), *wrong = ring(MASTER_B);
  avro_value_t v;
  records_t recs = {0};
  encrypted_order(w, &v, "cu-1", &recs);
  esk_error_t err = {0};
  cr_expect_eq(esk_shred_apply_record(wrong, recs.key[0], recs.klen[0], recs.value[0],
                                      recs.vlen[0], &err),
               ESK_EFATAL);
  cr_expect(strstr(err.msg, "wrong master key file"), "%s", err.msg);
  cr_expect_eq(esk_shred_key_count(wrong), 0);
  /* the same id but a damaged wrapped key: the tag fails, nothing is learnt */
  esk_shred_t *r = ring(MASTER_A);
  recs.value[0][recs.vlen[0] - 1] ^= 1;
  cr_expect_eq(esk_shred_apply_record(r, recs.key[0], recs.klen[0], recs.value[0], recs.vlen[0],
                                      &err),
               ESK_EFATAL);
  cr_expect(strstr(err.msg, "does not unwrap"), "%s", err.msg);
  cr_expect_eq(esk_shred_key_count(r), 0);
  avro_value_decref(&v);
  esk_shred_destroy(w);
  esk_shred_destroy(wrong);
  esk_shred_destroy(r);
}

Test(shred, after_the_key_is_destroyed_readers_see_the_declared_replacement) {
  two_t t;
  two_orders(&t);
  esk_shred_t *w = t.w, *r = t.r;
  avro_value_t a = t.a, b = t.b;
  records_t *ra = &t.ra;
  esk_error_t err = {0};
  /* forget cu-1: the mark, then the tombstone of its key */
  cr_assert_eq(esk_shred_apply_record(r, "cu-1/forgotten", 14, "\1", 1, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(esk_shred_apply_record(r, ra->key[0], ra->klen[0], NULL, 0, &err), ESK_OK, "%s",
               err.msg);
  cr_expect(esk_shred_forgotten(r, "cu-1"));
  cr_expect(!esk_shred_forgotten(r, "cu-2"));
  /* a subject marked forgotten needs no key: the replacement at once, without
   * asking the caller to read the topic again (ESK_ENOTFOUND) */
  cr_assert_eq(esk_shred_decrypt_value(r, created, &a, 0, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(field_str(&a, "customer_email"), "[forgotten]");
  char *j = as_json(&a);
  cr_expect(strstr(j, "\"city\":\"[forgotten]\"") && strstr(j, "\"name\":\"[forgotten]\""), "%s", j);
  free(j);
  /* the other subject is untouched */
  cr_assert_eq(esk_shred_decrypt_value(r, created, &b, 0, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(field_str(&b, "customer_email"), "ada@example.org");
  /* a writer that knows the subject is forgotten writes the replacement, and no key */
  cr_assert_eq(esk_shred_apply_record(w, "cu-1/forgotten", 14, "\1", 1, &err), ESK_OK);
  cr_assert_eq(esk_shred_apply_record(w, ra->key[0], ra->klen[0], NULL, 0, &err), ESK_OK);
  avro_value_t c;
  records_t rc = {0};
  encrypted_order(w, &c, "cu-1", &rc);
  cr_expect_str_eq(field_str(&c, "customer_email"), "[forgotten]");
  cr_expect_eq(rc.n, 0);
  avro_value_decref(&a);
  avro_value_decref(&b);
  avro_value_decref(&c);
  esk_shred_destroy(w);
  esk_shred_destroy(r);
}

Test(shred, tampered_moved_and_malformed_ciphertexts_are_poison_and_clear_text_passes) {
  esk_shred_t *w = ring(MASTER_A);
  avro_value_t v;
  records_t recs = {0};
  encrypted_order(w, &v, "cu-1", &recs);
  avro_value_decref(&v);
  encrypted_order(w, &v, "cu-2", &recs); /* cu-2 has a key too */
  avro_value_decref(&v);
  encrypted_order(w, &v, "cu-1", &recs);
  char *good = strdup(field_str(&v, "customer_email"));
  esk_error_t err = {0};
  /* moved to another subject's event: its key does not match the additional data */
  set_field_str(&v, "customer_id", "cu-2");
  cr_expect_eq(esk_shred_decrypt_value(w, created, &v, 1, &err), ESK_EPOISON);
  cr_expect(strstr(err.msg, "fails authentication") && !strstr(err.msg, good), "%s", err.msg);
  set_field_str(&v, "customer_id", "cu-1");
  /* one character of the ciphertext changed */
  char *bad = strdup(good);
  size_t n = strlen(bad);
  bad[n - 3] = bad[n - 3] == 'A' ? 'B' : 'A';
  static const char *const malformed[] = {"esk:p1:", "esk:p1:!!!!", "esk:p1:AAAA",
                                          "esk:p1:" "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", NULL};
  set_field_str(&v, "customer_email", bad);
  cr_expect_eq(esk_shred_decrypt_value(w, created, &v, 1, &err), ESK_EPOISON);
  for (int i = 0; malformed[i]; i++) {
    set_field_str(&v, "customer_email", malformed[i]);
    cr_expect_eq(esk_shred_decrypt_value(w, created, &v, 1, &err), ESK_EPOISON, "%s", malformed[i]);
    cr_expect(strstr(err.msg, "customer_email"), "%s", err.msg);
  }
  /* written before the field was marked: left as it is */
  set_field_str(&v, "customer_email", "old@example.org");
  cr_expect_eq(esk_shred_decrypt_value(w, created, &v, 0, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(field_str(&v, "customer_email"), "old@example.org");
  /* an empty subject cannot have a key */
  set_field_str(&v, "customer_id", "");
  cr_expect_eq(esk_shred_encrypt_value(w, created, &v, &err), ESK_EPOISON);
  free(good);
  free(bad);
  avro_value_decref(&v);
  esk_shred_destroy(w);
}

Test(shred, records_of_another_form_are_refused) {
  esk_shred_t *r = ring(MASTER_A);
  esk_error_t err = {0};
  uint8_t val[89] = {1};
  cr_expect_eq(esk_shred_apply_record(r, "no-slash", 8, val, sizeof(val), &err), ESK_EPOISON);
  cr_expect_eq(esk_shred_apply_record(r, "/0123456789abcdef0123456789abcdef", 33, val, sizeof(val),
                                      &err),
               ESK_EPOISON);
  cr_expect_eq(esk_shred_apply_record(r, "cu/0123456789abcdef0123456789abcdeg", 35, val,
                                      sizeof(val), &err),
               ESK_EPOISON);
  cr_expect_eq(esk_shred_apply_record(r, "cu/0123456789abcdef0123456789abcdef", 35, val, 10, &err),
               ESK_EPOISON);
  cr_expect(strstr(err.msg, "10 bytes"), "%s", err.msg);
  val[0] = 2;
  cr_expect_eq(esk_shred_apply_record(r, "cu/0123456789abcdef0123456789abcdef", 35, val,
                                      sizeof(val), &err),
               ESK_EPOISON);
  /* a tombstone of a key never seen, and of a forgotten mark: nothing to do */
  cr_expect_eq(esk_shred_apply_record(r, "cu/0123456789abcdef0123456789abcdef", 35, NULL, 0, &err),
               ESK_OK);
  cr_expect_eq(esk_shred_apply_record(r, "cu/forgotten", 12, NULL, 0, &err), ESK_OK);
  cr_expect(!esk_shred_forgotten(r, "cu"));
  esk_shred_destroy(r);
}

Test(shred, a_fresh_keyring_hands_out_nothing) {
  esk_shred_t *w = ring(MASTER_A);
  records_t r = {0};
  esk_shred_txn_begin(w);
  cr_expect_eq(esk_shred_take_records(w, collect, &r), ESK_OK);
  cr_expect_eq(r.n, 0);
  esk_shred_txn_committed(w);
  esk_shred_destroy(w);
}

Test(shred, forgotten_subjects_are_listed_once_each_in_the_order_their_marks_were_read) {
  esk_shred_t *r = ring(MASTER_A);
  esk_error_t err = {0};
  cr_expect_eq(esk_shred_forgotten_count(r), 0);
  cr_expect_null(esk_shred_forgotten_at(r, 0));
  cr_assert_eq(esk_shred_apply_record(r, "cu-2/forgotten", 14, "\1", 1, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_eq(esk_shred_apply_record(r, "a/b/forgotten", 13, "\1", 1, &err), ESK_OK, "%s",
               err.msg);
  /* the mark written again (eskctl subjects forget --roll-after-ms), and its tombstone */
  cr_assert_eq(esk_shred_apply_record(r, "cu-2/forgotten", 14, "\1", 1, &err), ESK_OK);
  cr_assert_eq(esk_shred_apply_record(r, "cu-9/forgotten", 14, NULL, 0, &err), ESK_OK);
  cr_assert_eq(esk_shred_forgotten_count(r), 2);
  cr_expect_str_eq(esk_shred_forgotten_at(r, 0), "cu-2");
  cr_expect_str_eq(esk_shred_forgotten_at(r, 1), "a/b");
  cr_expect_null(esk_shred_forgotten_at(r, 2));
  esk_shred_destroy(r);
}

Test(shred, a_subject_marked_forgotten_reads_as_the_replacement_before_its_keys_tombstones) {
  two_t t;
  two_orders(&t);
  esk_shred_t *w = t.w, *r = t.r;
  avro_value_t a = t.a, b = t.b;
  esk_error_t err = {0};
  /* the mark is read, the tombstone of cu-1's key not yet: the key is still held */
  cr_assert_eq(esk_shred_apply_record(r, "cu-1/forgotten", 14, "\1", 1, &err), ESK_OK, "%s",
               err.msg);
  cr_expect_eq(esk_shred_key_count(r), 2);
  /* no key is missing (no need to read the topic), and no plaintext comes out */
  cr_assert_eq(esk_shred_decrypt_value(r, created, &a, 0, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(field_str(&a, "customer_email"), "[forgotten]");
  char *j = as_json(&a);
  cr_expect(!strstr(j, "ada@example.org") && strstr(j, "\"street\":\"[forgotten]\""), "%s", j);
  free(j);
  cr_assert_eq(esk_shred_decrypt_value(r, created, &b, 0, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(field_str(&b, "customer_email"), "ada@example.org");
  avro_value_decref(&a);
  avro_value_decref(&b);
  esk_shred_destroy(w);
  esk_shred_destroy(r);
}
