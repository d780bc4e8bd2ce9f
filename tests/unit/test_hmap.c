/* esk/hmap.h (common/src/hmap.c): the SipHash map for tables keyed by ids
 * users choose, against a plain array under random inserts and removes. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "esk/error.h"
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
