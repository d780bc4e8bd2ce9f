/* esk_producer_ready(): the readiness of esk-producer from its published
 * health, each failing condition named in the reason, and a reason buffer
 * too small for the message truncated, not overrun. */
#include <criterion/criterion.h>
#include <string.h>

#include "producer.h"

static int ready(const esk_producer_health_t *h, char *reason, size_t size) {
  memset(reason, 'x', size);
  return esk_producer_ready(h, reason, size);
}

Test(producer_ready, each_condition_is_required_and_named) {
  esk_producer_health_t h;
  memset(&h, 0, sizeof(h));
  char r[256];
  cr_expect_eq(ready(&h, r, sizeof(r)), 0);
  cr_expect(strstr(r, "not running"), "%s", r);

  atomic_store(&h.running, 1);
  cr_expect_eq(ready(&h, r, sizeof(r)), 0);
  cr_expect(strstr(r, "no partition assignment"), "%s", r);

  atomic_store(&h.joined, 1);
  atomic_store(&h.assigned, 3);
  atomic_store(&h.restoring, 2);
  cr_expect_eq(ready(&h, r, sizeof(r)), 0);
  cr_expect(strstr(r, "restoring 2 of 3"), "%s", r);

  atomic_store(&h.restoring, 0);
  cr_expect_eq(ready(&h, r, sizeof(r)), 1);

  /* zero partitions after an assignment: an idle standby, ready */
  atomic_store(&h.assigned, 0);
  cr_expect_eq(ready(&h, r, sizeof(r)), 1);

  strcpy(h.fatal.err.msg, "fenced by a newer instance");
  atomic_store(&h.fatal.set, 1);
  cr_expect_eq(ready(&h, r, sizeof(r)), 0);
  cr_expect_str_eq(r, "fatal error: fenced by a newer instance");

  /* fatal wins over every other state, also when stopped */
  atomic_store(&h.running, 0);
  cr_expect_eq(ready(&h, r, sizeof(r)), 0);
  cr_expect(strstr(r, "fatal error"), "%s", r);
}

Test(producer_ready, a_small_reason_buffer_is_truncated_and_terminated) {
  esk_producer_health_t h;
  memset(&h, 0, sizeof(h));
  memset(h.fatal.err.msg, 'm', sizeof(h.fatal.err.msg) - 1);
  atomic_store(&h.fatal.set, 1);
  char r[16 + 1];
  r[16] = '#';
  cr_expect_eq(ready(&h, r, 16), 0);
  cr_expect_eq(strlen(r), 15);
  cr_expect_eq(r[16], '#', "nothing written past the given size");
}
