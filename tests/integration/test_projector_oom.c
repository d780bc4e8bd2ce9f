/* Out of memory where the projector grows its partition table on an
 * assignment: it stops with ESK_ENOMEM naming it, where grow_parts() used to
 * return -1 (ESK_ERETRY's value) and read_positions() skipped the partition
 * without a word. The suite links with -Wl,--wrap=realloc: esk's code, linked
 * statically, calls __wrap_realloc below, while librdkafka, libpq and
 * Criterion (shared libraries) keep the real one. Reallocs fail on every
 * thread but the test's own, so the projector's thread (started by
 * esk_test_projector_start() after esk_projector_new() returned) is the one
 * that meets them. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_bank.h"

void *__real_realloc(void *ptr, size_t size);
void *__wrap_realloc(void *ptr, size_t size);

static pthread_t test_thread;
static atomic_int armed, refused;

void *__wrap_realloc(void *ptr, size_t size) {
  if (atomic_load(&armed) && !pthread_equal(pthread_self(), test_thread)) {
    atomic_fetch_add(&refused, 1);
    return NULL;
  }
  return __real_realloc(ptr, size);
}

static char topic[96], schema[64];

static void setup(void) {
  esk_test_topic_and_schema(topic, sizeof(topic), "esk.test.oom.events", schema, sizeof(schema),
                            "esk_test_oom", 3);
  test_thread = pthread_self();
}

static void teardown(void) {
  atomic_store(&armed, 0);
  esk_test_drop_schema(schema);
  esk_test_bank_delete_topics(topic);
}

Test(projector_oom, a_partition_table_that_cannot_grow_stops_the_projector_naming_why,
     .init = setup, .fini = teardown, .timeout = 120) {
  esk_test_projector_t *t = NULL;
  esk_error_t err = {0};
  char group[128];
  esk_test_unique_name(group, sizeof(group), "esk.test.oom.group");
  static const char *const kv[] = {"batch.max.ms", "100", NULL};
  atomic_store(&armed, 1);
  cr_assert_eq(esk_test_projector_start(&t, "account_balances", topic, schema, group, 0, kv, &err),
               ESK_OK, "%s", err.msg);
  esk_projector_stats_t s;
  int rc = ESK_OK;
  for (int64_t end = esk_time_mono_ms() + 60000;
       (rc = esk_test_projector_stats(t, &s, &err)) == ESK_OK && esk_time_mono_ms() < end;)
    esk_time_sleep_ms(50);
  atomic_store(&armed, 0);
  cr_assert_eq(rc, ESK_EFATAL, "the projector ran on without its partition table (%s)",
               esk_error_name(rc));
  cr_expect_eq(err.code, ESK_ENOMEM, "%s: %s", esk_error_name(err.code), err.msg);
  cr_expect(strstr(err.msg, "out of memory growing its partition table"), "%s", err.msg);
  cr_expect_gt(atomic_load(&refused), 0, "no realloc was refused: the check checked nothing");
  cr_expect_eq(esk_test_projector_stop(t, &s, &err), ESK_EFATAL);
  cr_expect_eq(s.applied, 0);
}
