/* esk/hmap.h (common/src/hmap.c): the SipHash map for tables keyed by ids
 * users choose, against a plain array under random inserts and removes. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "esk/error.h"
#include "esk/file.h"
#include "esk/hmap.h"

Test(hmap, random_inserts_and_removes_agree_with_a_plain_array) {
  enum { K = 4000 };
  static int64_t ref[K];
  static bool present[K];
  esk_hmap_t *m = NULL;
  cr_assert_eq(esk_hmap_new(&m, sizeof(int64_t), 0, 0, NULL), ESK_OK);
  uint64_t x = 88172645463325252ULL;
  size_t count = 0;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int k = (int)(x % K);
    char key[16];
    int kl = snprintf(key, sizeof(key), "k%d", k);
    if ((x >> 32) % 3 == 0) {
      int rc = esk_hmap_remove(m, key, (size_t)kl);
      cr_assert_eq(rc, present[k] ? ESK_OK : ESK_ENOTFOUND);
      if (present[k]) count--;
      present[k] = false;
    } else {
      int64_t v = (int64_t)(x >> 16);
      int ins = -1;
      void *stored = NULL;
      cr_assert_eq(esk_hmap_put(m, key, (size_t)kl, &v, &stored, &ins, NULL), ESK_OK);
      cr_assert_eq(ins, present[k] ? 0 : 1);
      size_t klen = 0;
      cr_assert_str_eq(esk_hmap_key_of(m, stored, &klen), key);
      cr_assert_eq(klen, (size_t)kl);
      if (!present[k]) count++;
      present[k] = true;
      ref[k] = v;
    }
    cr_assert_eq(esk_hmap_count(m), count);
  }
  for (int k = 0; k < K; k++) {
    char key[16];
    int kl = snprintf(key, sizeof(key), "k%d", k);
    int64_t *v = esk_hmap_get(m, key, (size_t)kl);
    if (present[k]) {
      cr_assert_not_null(v, "k%d lost", k);
      cr_assert_eq(*v, ref[k]);
    } else {
      cr_assert_null(v, "k%d still there after removal", k);
    }
  }
  cr_assert_eq(esk_hmap_put(m, "", 0, &ref[0], NULL, NULL, NULL), ESK_OK); /* empty key is a key */
  cr_assert_not_null(esk_hmap_get(m, "", 0));
  esk_hmap_destroy(m);
  esk_hmap_destroy(NULL);
}

/* FNV-1a, the hash the version guard and transaction_history used before
 * they moved onto esk_hmap: unkeyed, so anyone can pick ids that collide. */
static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
  return h;
}

Test(hmap, ids_chosen_to_collide_under_fnv_keep_probe_runs_short) {
  enum { N = 1500, CAP = 4096 }; /* a batch of 1500 ids: a table of 4096 slots */
  static char keys[N][24];
  static int taken[CAP];
  size_t lens[N];
  /* N ids whose FNV-1a hashes share their low 12 bits: one home slot */
  int n = 0;
  for (uint64_t c = 0; n < N; c++) {
    int l = snprintf(keys[n], sizeof(keys[n]), "acct-%" PRIu64, c);
    if ((fnv1a(keys[n], (size_t)l) & (CAP - 1)) == 0) lens[n++] = (size_t)l;
  }
  /* the set is hostile: the old linear-probing FNV table puts them in one run */
  size_t fnv_max = 0;
  for (int i = 0; i < N; i++) {
    size_t s = fnv1a(keys[i], lens[i]) & (CAP - 1), d = 0;
    while (taken[s]) s = (s + 1) & (CAP - 1), d++;
    taken[s] = 1;
    if (d > fnv_max) fnv_max = d;
  }
  cr_assert_eq(fnv_max, (size_t)N - 1, "the ids do not collide under FNV-1a: %zu", fnv_max);
  /* esk_hmap, sized as the version guard sizes it (the batch's event count) */
  esk_hmap_t *m = NULL;
  cr_assert_eq(esk_hmap_new(&m, sizeof(int64_t), N, 0, NULL), ESK_OK);
  for (int i = 0; i < N; i++) {
    int64_t v = i;
    cr_assert_eq(esk_hmap_put(m, keys[i], lens[i], &v, NULL, NULL, NULL), ESK_OK);
  }
  cr_assert_eq(esk_hmap_count(m), (size_t)N);
  /* keyed SipHash spreads them: at load <= 1/2 the longest run is a few dozen
   * slots at worst (about 15 typically), never the N-1 of FNV */
  cr_assert_lt(esk_hmap_probe_max(m), (size_t)64, "longest probe run %zu", esk_hmap_probe_max(m));
  for (int i = 0; i < N; i++) {
    int64_t *v = esk_hmap_get(m, keys[i], lens[i]);
    cr_assert(v && *v == i, "%s lost", keys[i]);
  }
  esk_hmap_destroy(m);
  cr_assert_eq(esk_hmap_probe_max(NULL), 0);
}

/* Every table keyed by ids that users choose is an esk_hmap
 * (docs/architecture.md, "Source layout"): the version guard and
 * transaction_history use it, and no other source rolls its own FNV table. */
Test(hmap, tables_keyed_by_user_ids_use_it) {
  static const char *const users[] = {"consumers/runtime/projector.c",
                                      "consumers/projections/transaction_history.c",
                                      "producer/src/aggstore.c"};
  for (size_t i = 0; i < sizeof(users) / sizeof(*users); i++) {
    char path[512], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s", ESK_SOURCE_DIR, users[i]);
    cr_assert_eq(esk_file_read_text(&text, &len, path, 1 << 22, path, NULL), ESK_OK);
    cr_assert_not_null(strstr(text, "#include \"esk/hmap.h\""), "%s does not use esk/hmap.h", path);
    cr_assert_not_null(strstr(text, "esk_hmap_new("), "%s makes no esk_hmap", path);
    free(text);
  }
  /* FNV's prime in any C source outside tests names a hand-rolled hash table */
  FILE *f = popen("grep -rlE '1099511628211|0x100000001b3' --include='*.c' --include='*.h' " ESK_SOURCE_DIR
                  "/common " ESK_SOURCE_DIR "/consumers " ESK_SOURCE_DIR "/producer " ESK_SOURCE_DIR
                  "/tools",
                  "r");
  cr_assert_not_null(f);
  char line[512];
  char found[2048] = "";
  while (fgets(line, sizeof(line), f)) strncat(found, line, sizeof(found) - strlen(found) - 1);
  int status = pclose(f);
  cr_assert_eq(WEXITSTATUS(status), 1, "grep failed or found FNV tables in: %s", found);
}

/* A map of values of their own length (value_size 0) against a plain array,
 * with replacements that grow and shrink the values. */
Test(hmap, values_of_their_own_length_agree_with_a_plain_array) {
  enum { K = 2000 };
  static unsigned char ref[K][64];
  static size_t ref_len[K];
  static bool present[K];
  esk_hmap_t *m = NULL;
  cr_assert_eq(esk_hmap_new(&m, 0, 0, 0, NULL), ESK_OK);
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < 100000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int k = (int)(x % K);
    char key[16];
    int kl = snprintf(key, sizeof(key), "v%d", k);
    if ((x >> 32) % 4 == 0) {
      cr_assert_eq(esk_hmap_remove(m, key, (size_t)kl), present[k] ? ESK_OK : ESK_ENOTFOUND);
      present[k] = false;
      continue;
    }
    size_t len = (size_t)((x >> 20) % 65); /* 0..64 */
    for (size_t j = 0; j < len; j++) ref[k][j] = (unsigned char)(x >> (j % 56));
    void *stored = NULL;
    int ins = -1;
    cr_assert_eq(esk_hmap_put_n(m, key, (size_t)kl, ref[k], len, &stored, &ins, NULL), ESK_OK);
    cr_assert_eq(ins, present[k] ? 0 : 1);
    cr_assert_eq(esk_hmap_value_len(stored), len);
    size_t klen = 0;
    cr_assert_str_eq(esk_hmap_key_of(m, stored, &klen), key, "the key follows the new value");
    cr_assert_eq(klen, (size_t)kl);
    ref_len[k] = len;
    present[k] = true;
  }
  size_t count = 0;
  for (int k = 0; k < K; k++) {
    char key[16];
    int kl = snprintf(key, sizeof(key), "v%d", k);
    const unsigned char *v = esk_hmap_get(m, key, (size_t)kl);
    cr_assert_eq(v != NULL, present[k], "%s", key);
    if (!v) continue;
    count++;
    cr_assert_eq(esk_hmap_value_len(v), ref_len[k], "%s", key);
    cr_assert_eq(memcmp(v, ref[k], ref_len[k]), 0, "%s", key);
  }
  cr_assert_eq(esk_hmap_count(m), count);
  esk_hmap_destroy(m);
}

Test(hmap, each_kind_of_map_refuses_the_other_kinds_put) {
  esk_hmap_t *fixed = NULL, *var = NULL;
  esk_error_t err = {0};
  int64_t v = 1;
  cr_assert_eq(esk_hmap_new(&fixed, sizeof(v), 0, 0, NULL), ESK_OK);
  cr_assert_eq(esk_hmap_new(&var, 0, 0, 0, NULL), ESK_OK);
  cr_assert_eq(esk_hmap_put_n(fixed, "a", 1, &v, sizeof(v), NULL, NULL, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "esk_hmap_put"), "%s", err.msg);
  cr_assert_eq(esk_hmap_put(var, "a", 1, &v, NULL, NULL, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "esk_hmap_put_n"), "%s", err.msg);
  cr_assert_eq(esk_hmap_put_n(var, "a", 1, &v, (size_t)ESK_HMAP_VALUE_MAX + 1, NULL, NULL, &err),
               ESK_EINVAL);
  cr_assert_eq(esk_hmap_put_n(var, "a", 1, NULL, 1, NULL, NULL, &err), ESK_EINVAL);
  cr_assert_eq(esk_hmap_count(var), 0);
  cr_assert_eq(esk_hmap_put_n(var, "a", 1, NULL, 0, NULL, NULL, &err), ESK_OK, "an empty value");
  cr_assert_not_null(esk_hmap_get(var, "a", 1));
  cr_assert_eq(esk_hmap_value_len(esk_hmap_get(var, "a", 1)), 0);
  cr_assert_eq(esk_hmap_new(&fixed, (size_t)ESK_HMAP_VALUE_MAX + 1, 0, 0, &err), ESK_EINVAL);
  esk_hmap_destroy(fixed);
  esk_hmap_destroy(var);
}
