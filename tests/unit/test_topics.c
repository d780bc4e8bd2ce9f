/* esk_topics_init() (producer/src/topics.c): a domain's topic names from the
 * prefix and the domain, and the names Kafka would refuse. */
#include <criterion/criterion.h>
#include <string.h>

#include "topics.h"

Test(topics, names_come_from_the_prefix_and_the_domain_and_bad_ones_are_refused) {
  esk_topics_t t;
  esk_error_t err = {0};
  cr_assert_eq(esk_topics_init(&t, "", "bank", &err), ESK_OK);
  cr_expect_str_eq(t.commands, "bank.commands");
  cr_expect_str_eq(t.events, "bank.events");
  cr_expect_str_eq(t.results, "bank.command-results");
  cr_expect_str_eq(t.snapshots, "bank.snapshots");
  cr_assert_eq(esk_topics_init(&t, "t1.", "bank", &err), ESK_OK);
  cr_expect_str_eq(t.events, "t1.bank.events");
  cr_expect_eq(esk_topics_init(&t, "bad/", "bank", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "'/'"), "%s", err.msg);
  cr_expect_eq(esk_topics_init(&t, "", "", &err), ESK_EINVAL);
  char longp[300];
  memset(longp, 'a', sizeof(longp) - 1);
  longp[sizeof(longp) - 1] = 0;
  cr_expect_eq(esk_topics_init(&t, longp, "bank", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "longer than"), "%s", err.msg);
}
