/* common/: errors, logging, configuration defaults, reachability checks.
 * No servers: the "unreachable" cases use ports nothing listens on. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esk/buf.h"
#include "esk/conf.h"
#include "esk/error.h"
#include "esk/kafka.h"
#include "esk/log.h"
#include "esk/pg.h"

Test(error, set_returns_the_code_and_keeps_the_message) {
  esk_error_t err = {0};
  cr_assert_eq(esk_error_set(&err, ESK_EINVAL, "key %s: bad value '%s'", "batch.size", "x"),
               ESK_EINVAL);
  cr_assert_eq(err.code, ESK_EINVAL);
  cr_assert_str_eq(err.msg, "key batch.size: bad value 'x'");
  cr_assert_eq(esk_error_set(NULL, ESK_ERETRY, "ignored"), ESK_ERETRY);
  esk_error_clear(&err);
  cr_assert_eq(err.code, ESK_OK);
  cr_assert_str_eq(err.msg, "");
  cr_assert_str_eq(esk_error_name(ESK_EPOISON), "ESK_EPOISON");
}

Test(error, an_overlong_message_is_truncated_not_overflowed) {
  esk_error_t err = {0};
  char big[4096];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  esk_error_set(&err, ESK_EINVAL, "%s", big);
  cr_assert_eq(strlen(err.msg), ESK_ERROR_MSG_MAX - 1);
}

Test(array, grows_by_doubling_keeps_the_elements_and_refuses_an_overflowing_size) {
  size_t cap = 0;
  int *a = esk_array_grow(NULL, &cap, 1, sizeof(int), 4);
  cr_assert_not_null(a);
  cr_assert_eq(cap, 4);
  for (int i = 0; i < 4; i++) a[i] = i * 7;
  cr_assert_eq(esk_array_grow(a, &cap, 3, sizeof(int), 4), a, "enough room: unchanged");
  cr_assert_eq(cap, 4);
  a = esk_array_grow(a, &cap, 9, sizeof(int), 4);
  cr_assert_not_null(a);
  cr_assert_eq(cap, 16, "4 doubled until it holds 9");
  for (int i = 0; i < 4; i++) cr_assert_eq(a[i], i * 7, "element %d kept", i);
  /* a size whose byte count would overflow: NULL, and the array left as it was */
  cr_assert_null(esk_array_grow(a, &cap, SIZE_MAX / 2, sizeof(int), 4));
  cr_assert_eq(cap, 16);
  cr_assert_eq(a[3], 21);
  free(a);
}

Test(log, quote_leaves_plain_words_bare_and_escapes_the_rest) {
  char b[64];
  cr_assert_str_eq(esk_log_quote(b, sizeof(b), "bank.events"), "bank.events");
  cr_assert_str_eq(esk_log_quote(b, sizeof(b), ""), "\"\"");
  cr_assert_str_eq(esk_log_quote(b, sizeof(b), "a b"), "\"a b\"");
  cr_assert_str_eq(esk_log_quote(b, sizeof(b), "say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
  cr_assert_str_eq(esk_log_quote(b, sizeof(b), "k=v"), "\"k=v\"");
  cr_assert_str_eq(esk_log_quote(b, sizeof(b), "\x01"), "\"\\x01\"");
  char tiny[8];
  esk_log_quote(tiny, sizeof(tiny), "a very long value with spaces");
  cr_assert(strlen(tiny) < sizeof(tiny));
}

Test(log, lines_are_key_value_and_respect_the_threshold, .init = cr_redirect_stderr) {
  esk_log_level_t saved = esk_log_threshold;
  cr_assert_eq(esk_log_set_level("warn"), ESK_OK);
  ESK_INFO("test", "msg=hidden");
  ESK_WARN("test", "msg=shown partition=%d", 3);
  cr_assert_eq(esk_log_set_level("loud"), ESK_EINVAL);
  esk_log_threshold = saved;
  fflush(stderr);
  char line[512] = {0};
  FILE *f = cr_get_redirected_stderr();
  cr_assert_not_null(fgets(line, sizeof(line), f));
  cr_assert(strncmp(line, "ts=", 3) == 0, "line: %s", line);
  cr_assert_not_null(strstr(line, " level=warn fac=test msg=shown partition=3\n"), "line: %s",
                     line);
  cr_assert_null(fgets(line, sizeof(line), f), "a line below the threshold was written");
}

Test(config, environment_overrides_the_local_stack_defaults) {
  unsetenv("ESK_KAFKA_BOOTSTRAP");
  setenv("ESK_PG_CONNINFO", "", 1);
  cr_assert_str_eq(esk_conf_env_kafka_bootstrap(), ESK_DEFAULT_KAFKA_BOOTSTRAP);
  cr_assert_str_eq(esk_conf_env_pg_conninfo(), ESK_DEFAULT_PG_CONNINFO);
  setenv("ESK_KAFKA_BOOTSTRAP", "10.1.2.3:9092", 1);
  setenv("ESK_PG_CONNINFO", "host=db", 1);
  cr_assert_str_eq(esk_conf_env_kafka_bootstrap(), "10.1.2.3:9092");
  cr_assert_str_eq(esk_conf_env_pg_conninfo(), "host=db");
}

Test(kafka, conf_refuses_an_unknown_property_naming_it) {
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  cr_assert_eq(esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, "127.0.0.1:1", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_conf_set(conf, "no.such.property", "1", &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "no.such.property=1"), "%s", err.msg);
  char v[64];
  size_t n = sizeof(v);
  cr_assert_eq(rd_kafka_conf_get(conf, "bootstrap.servers", v, &n), RD_KAFKA_CONF_OK);
  cr_assert_str_eq(v, "127.0.0.1:1");
  rd_kafka_conf_destroy(conf);
}

/* Producers keep each partition's order across retries (a retried batch
 * without idempotence may land after later ones: versions out of order). */
Test(kafka, producers_are_java_partitioned_and_idempotent_consumers_are_not_touched) {
  esk_error_t err = {0};
  rd_kafka_conf_t *p = NULL, *c = NULL;
  char v[64];
  size_t n = sizeof(v);
  cr_assert_eq(esk_kafka_conf_new(&p, RD_KAFKA_PRODUCER, "127.0.0.1:1", &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(rd_kafka_conf_get(p, "enable.idempotence", v, &n), RD_KAFKA_CONF_OK);
  cr_assert_str_eq(v, "true");
  n = sizeof(v);
  cr_assert_eq(rd_kafka_conf_get(p, "partitioner", v, &n), RD_KAFKA_CONF_OK);
  cr_assert_str_eq(v, "murmur2_random");
  cr_assert_eq(esk_kafka_conf_new(&c, RD_KAFKA_CONSUMER, "127.0.0.1:1", &err), ESK_OK, "%s", err.msg);
  n = sizeof(v);
  cr_assert_eq(rd_kafka_conf_get(c, "enable.idempotence", v, &n), RD_KAFKA_CONF_OK);
  cr_assert_str_eq(v, "false");
  rd_kafka_conf_destroy(p);
  rd_kafka_conf_destroy(c);
}

Test(kafka, unreachable_broker_fails_fast_and_says_how_to_start_it) {
  esk_error_t err = {0};
  time_t t0 = time(NULL);
  /* Port 1 on loopback: nothing listens, connections are refused. */
  cr_assert_eq(esk_kafka_check_broker("127.0.0.1:1", 2000, &err), ESK_ERETRY);
  cr_assert(time(NULL) - t0 < 10, "the check did not honour its timeout");
  cr_assert_not_null(strstr(err.msg, "not reachable at 127.0.0.1:1"), "%s", err.msg);
  cr_assert_not_null(strstr(err.msg, "deploy/local/stack up"), "%s", err.msg);
}

Test(pg, unreachable_server_names_the_address_and_how_to_start_it) {
  esk_error_t err = {0};
  PGconn *c = NULL;
  cr_assert_eq(esk_pg_connect(&c, "host=127.0.0.1 port=1 user=esk connect_timeout=2", &err),
               ESK_ERETRY);
  cr_assert_null(c);
  cr_assert_not_null(strstr(err.msg, "port=1"), "%s", err.msg);
  cr_assert_not_null(strstr(err.msg, "deploy/local/stack up"), "%s", err.msg);
}
