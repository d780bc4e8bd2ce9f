/* tests/support: the helpers the integration suites build on, where they can be
 * checked without servers (a refused start returns before any connection). */
#include <criterion/criterion.h>
#include <string.h>

#include "esk/error.h"
#include "esk_test_bank.h"

/* gcc -O3 found the name formatted with %s while NULL (issue 14): glibc prints
 * "(null)", other C libraries may crash. */
Test(test_support, a_projector_start_without_a_projection_is_einval_and_says_so) {
  esk_test_projector_t *t = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_projector_start_with(&t, NULL, "topic", "schema", "group", NULL, &err),
               ESK_EINVAL);
  cr_assert_str_eq(err.msg, "no projection given");
  cr_assert_null(t);

  esk_error_clear(&err);
  cr_assert_eq(esk_test_projector_start(&t, NULL, "topic", "schema", "group", 0, NULL, &err),
               ESK_EINVAL);
  cr_assert_str_eq(err.msg, "no projection given");
  cr_assert_null(t);
}

Test(test_support, a_projector_start_with_an_unknown_name_is_einval_naming_it) {
  esk_test_projector_t *t = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_test_projector_start(&t, "no_such_projection", "topic", "schema", "group", 0,
                                        NULL, &err),
               ESK_EINVAL);
  cr_assert_str_eq(err.msg, "no projection 'no_such_projection'");
  cr_assert_null(t);
}
