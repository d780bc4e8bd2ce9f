/* conf: one table per binary; file, environment and -X, later ones winning;
 * every bad value names the key, the value, where it came from and why. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk_test.h"

static const esk_conf_prop_t test_props[] = {
    {"batch.max.events", ESK_CONF_INT, "1000", 1, 100000, NULL, NULL, "Events per batch."},
    {"on_error", ESK_CONF_ENUM, "dlq", 0, 0, "dlq,stop", NULL, "What a poison event does."},
    {"http.enabled", ESK_CONF_BOOL, "false", 0, 0, NULL, NULL, "Serve HTTP."},
    {"projection", ESK_CONF_STRING, NULL, 0, 0, NULL, "ESK_TEST_PROJECTION", "Projection."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};
static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, test_props};

static esk_conf_t *new_conf(void) {
  esk_conf_t *c = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_new(&c, tables, 2, &err), ESK_OK, "%s", err.msg);
  return c;
}

static char *write_file(const char *text) {
  static char path[64];
  esk_test_temp_file(path, sizeof(path), "esk_conf_test_", text, strlen(text));
  return path;
}

static void clear_env(void) {
  unsetenv("ESK_BATCH_MAX_EVENTS");
  unsetenv("ESK_ON_ERROR");
  unsetenv("ESK_TEST_PROJECTION");
  unsetenv("ESK_KAFKA_BOOTSTRAP");
  for (const esk_conf_prop_t *p = esk_conf_kafka_security_props; p->name; p++) {
    char name[128];
    unsetenv(esk_conf_env_name(p, name, sizeof(name)));
  }
}

Test(conf, defaults_come_from_the_table, .init = clear_env) {
  esk_conf_t *c = new_conf();
  cr_assert_eq(esk_conf_get_int(c, "batch.max.events"), 1000);
  cr_assert_str_eq(esk_conf_get(c, "on_error"), "dlq");
  cr_assert_eq(esk_conf_get_bool(c, "http.enabled"), 0);
  cr_assert_null(esk_conf_get(c, "projection"));
  cr_assert_str_eq(esk_conf_get(c, "kafka.bootstrap.servers"), ESK_DEFAULT_KAFKA_BOOTSTRAP);
  esk_conf_destroy(c);
}

Test(conf, file_then_environment_then_overrides_win_in_that_order, .init = clear_env) {
  esk_conf_t *c = new_conf();
  esk_error_t err = {0};
  char *path = write_file("# a comment\n\n  batch.max.events = 10  \non_error=stop\n"
                          "projection=from_file\nhttp.enabled=yes\n");
  setenv("ESK_BATCH_MAX_EVENTS", "20", 1);
  setenv("ESK_TEST_PROJECTION", "from_env", 1);
  char *x[] = {"batch.max.events=30"};
  cr_assert_eq(esk_conf_load(c, path, x, 1, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_conf_get_int(c, "batch.max.events"), 30);
  cr_assert_str_eq(esk_conf_get(c, "projection"), "from_env");
  cr_assert_str_eq(esk_conf_get(c, "on_error"), "stop");
  cr_assert_eq(esk_conf_get_bool(c, "http.enabled"), 1);
  unlink(path);
  esk_conf_destroy(c);
}

Test(conf, a_bad_value_in_a_file_names_file_line_key_value_and_why, .init = clear_env) {
  esk_conf_t *c = new_conf();
  esk_error_t err = {0};
  char *path = write_file("on_error=dlq\nbatch.max.events=0\n");
  cr_assert_eq(esk_conf_load_file(c, path, &err), ESK_EINVAL);
  char expect[128];
  snprintf(expect, sizeof(expect), "%s:2: invalid value '0' for batch.max.events", path);
  cr_assert_not_null(strstr(err.msg, expect), "%s", err.msg);
  cr_assert_not_null(strstr(err.msg, "out of range 1..100000"), "%s", err.msg);
  unlink(path);
  esk_conf_destroy(c);
}

Test(conf, malformed_lines_and_unknown_keys_are_refused, .init = clear_env) {
  esk_conf_t *c = new_conf();
  esk_error_t err = {0};
  char *path = write_file("just words\n");
  cr_assert_eq(esk_conf_load_file(c, path, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, ":1: expected key=value"), "%s", err.msg);
  unlink(path);
  cr_assert_eq(esk_conf_set(c, "batch.size", "5", "-X", &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "unknown configuration key 'batch.size'"), "%s", err.msg);
  cr_assert_eq(esk_conf_set(c, "on_error", "ignore", "-X", &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "expected one of dlq,stop"), "%s", err.msg);
  cr_assert_eq(esk_conf_set(c, "batch.max.events", "12abc", "-X", &err), ESK_EINVAL);
  cr_assert_eq(esk_conf_set(c, "batch.max.events", "99999999999999999999", "-X", &err),
               ESK_EINVAL);
  cr_assert_eq(esk_conf_set(c, "http.enabled", "maybe", "-X", &err), ESK_EINVAL);
  char *bad[] = {"=5"};
  cr_assert_eq(esk_conf_load(c, NULL, bad, 1, &err), ESK_EINVAL);
  cr_assert_eq(esk_conf_load_file(c, "/nonexistent/esk.conf", &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "/nonexistent/esk.conf"), "%s", err.msg);
  esk_conf_destroy(c);
}

Test(conf, an_overlong_line_is_refused_not_split, .init = clear_env) {
  esk_conf_t *c = new_conf();
  esk_error_t err = {0};
  size_t n = 10000;
  char *text = malloc(n + 32);
  strcpy(text, "projection=");
  memset(text + 11, 'a', n);
  strcpy(text + 11 + n, "\n");
  char *path = write_file(text);
  cr_assert_eq(esk_conf_load_file(c, path, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "line longer than"), "%s", err.msg);
  free(text);
  unlink(path);
  esk_conf_destroy(c);
}

/* A value would end at the NUL as a C string (issue 17's class): refused, not cut. */
Test(conf, a_nul_byte_in_a_line_is_refused_naming_the_line, .init = clear_env) {
  static const char *const texts[] = {"projection=ok\nprojection=cut\0here\n",
                                      "projection=ok\nprojection=cut\0here"};
  for (int i = 0; i < 2; i++) { /* the last line with and without its newline */
    esk_conf_t *c = new_conf();
    esk_error_t err = {0};
    char *path = write_file("");
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(texts[i], 1, strlen(texts[i]) + 1 + strlen(texts[i] + strlen(texts[i]) + 1), f);
    fclose(f);
    cr_assert_eq(esk_conf_load_file(c, path, &err), ESK_EINVAL, "case %d", i);
    cr_expect(strstr(err.msg, ":2: holds a NUL byte"), "%s", err.msg);
    unlink(path);
    esk_conf_destroy(c);
  }
}

Test(conf, environment_errors_name_the_variable, .init = clear_env) {
  esk_conf_t *c = new_conf();
  esk_error_t err = {0};
  setenv("ESK_ON_ERROR", "explode", 1);
  cr_assert_eq(esk_conf_load_env(c, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "environment ESK_ON_ERROR"), "%s", err.msg);
  esk_conf_destroy(c);
}

Test(conf, kafka_keys_pass_through_to_librdkafka, .init = clear_env) {
  esk_conf_t *c = new_conf();
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_set(c, "kafka.linger.ms", "7", "-X", &err), ESK_OK);
  cr_assert_eq(esk_conf_set(c, "kafka.bootstrap.servers", "127.0.0.1:1", "-X", &err), ESK_OK);
  rd_kafka_conf_t *k = NULL;
  cr_assert_eq(esk_kafka_conf_new(&k, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_apply(k, c, &err), ESK_OK, "%s", err.msg);
  char v[64];
  size_t n = sizeof(v);
  cr_assert_eq(rd_kafka_conf_get(k, "linger.ms", v, &n), RD_KAFKA_CONF_OK);
  cr_assert_str_eq(v, "7");
  n = sizeof(v);
  cr_assert_eq(rd_kafka_conf_get(k, "bootstrap.servers", v, &n), RD_KAFKA_CONF_OK);
  cr_assert_str_eq(v, "127.0.0.1:1");
  /* librdkafka judges pass-through keys, and the error names them. */
  cr_assert_eq(esk_conf_set(c, "kafka.linger.mss", "7", "-X", &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_apply(k, c, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "linger.mss"), "%s", err.msg);
  rd_kafka_conf_destroy(k);
  esk_conf_destroy(c);
}

static const char *kconf_value(rd_kafka_conf_t *k, const char *key) {
  static char v[256];
  size_t n = sizeof(v);
  cr_assert_eq(rd_kafka_conf_get(k, key, v, &n), RD_KAFKA_CONF_OK, "%s", key);
  return v;
}

Test(conf, kafka_consumer_and_producer_keys_go_only_to_their_kind_of_client, .init = clear_env) {
  esk_conf_t *c = new_conf();
  esk_error_t err = {0};
  cr_assert_eq(esk_conf_set(c, "kafka.consumer.session.timeout.ms", "7000", "-X", &err), ESK_OK);
  cr_assert_eq(esk_conf_set(c, "kafka.producer.linger.ms", "9", "-X", &err), ESK_OK);
  cr_assert_eq(esk_conf_set(c, "kafka.client.id", "both", "-X", &err), ESK_OK);
  rd_kafka_conf_t *kc = NULL, *kp = NULL;
  cr_assert_eq(esk_kafka_conf_new(&kc, RD_KAFKA_CONSUMER, NULL, &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_new(&kp, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_apply_client(kc, c, RD_KAFKA_CONSUMER, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_kafka_conf_apply_client(kp, c, RD_KAFKA_PRODUCER, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(kconf_value(kc, "session.timeout.ms"), "7000");
  cr_assert_str_eq(kconf_value(kp, "linger.ms"), "9");
  cr_assert_str_neq(kconf_value(kc, "linger.ms"), "9", "a producer key reached the consumer");
  cr_assert_str_eq(kconf_value(kp, "client.id"), "both");
  /* A value only one kind gets fails only that kind, and the error names the key. */
  cr_assert_eq(esk_conf_set(c, "kafka.consumer.fetch.wait.max.ms", "-5", "-X", &err), ESK_OK);
  rd_kafka_conf_t *kc2 = NULL;
  cr_assert_eq(esk_kafka_conf_new(&kc2, RD_KAFKA_CONSUMER, NULL, &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_apply_client(kc2, c, RD_KAFKA_CONSUMER, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "kafka.consumer.fetch.wait.max.ms=-5"), "%s", err.msg);
  rd_kafka_conf_destroy(kc2);
  rd_kafka_conf_t *kp2 = NULL;
  cr_assert_eq(esk_kafka_conf_new(&kp2, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_apply_client(kp2, c, RD_KAFKA_PRODUCER, &err), ESK_OK, "%s",
               err.msg);
  rd_kafka_conf_destroy(kp2);
  /* The untyped call skips both kinds instead of passing "consumer.x" on. */
  rd_kafka_conf_t *k = NULL;
  cr_assert_eq(esk_kafka_conf_new(&k, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_apply(k, c, &err), ESK_OK, "%s", err.msg);
  rd_kafka_conf_destroy(k);
  rd_kafka_conf_destroy(kc);
  rd_kafka_conf_destroy(kp);
  esk_conf_destroy(c);
}

Test(conf, help_and_markdown_list_every_key_with_its_environment_variable) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  esk_conf_print_help(f, tables, 2);
  esk_conf_print_markdown(f, tables, 2);
  fclose(f);
  for (size_t t = 0; t < 2; t++)
    for (const esk_conf_prop_t *p = tables[t]; p->name; p++)
      cr_assert_not_null(strstr(buf, p->name), "%s missing", p->name);
  cr_assert_not_null(strstr(buf, "ESK_BATCH_MAX_EVENTS"));
  cr_assert_not_null(strstr(buf, "ESK_KAFKA_BOOTSTRAP"));
  cr_assert_not_null(strstr(buf, "| `on_error` | enum | dlq,stop | `dlq` |"));
  free(buf);
}

/* ------------------------------------------------------------ secrets --- */

static char *write_bytes(const char *bytes, size_t n) {
  static char path[64];
  esk_test_temp_file(path, sizeof(path), "esk_conf_test_", bytes, n);
  return path;
}

Test(conf, a_password_file_gives_its_first_line_as_the_sasl_password, .init = clear_env) {
  esk_error_t err = {0};
  rd_kafka_conf_t *k = NULL;
  cr_assert_eq(esk_kafka_conf_new(&k, RD_KAFKA_PRODUCER, "127.0.0.1:1", &err), ESK_OK);
  char *path = write_file("pw-first-line\r\nsecond line is not read\n");
  cr_assert_eq(esk_kafka_conf_set(k, "sasl.password.file", path, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(kconf_value(k, "sasl.password"), "pw-first-line");
  unlink(path);
  /* no line end at all is one line too */
  path = write_file("no-newline");
  cr_assert_eq(esk_kafka_conf_set(k, "sasl.password.file", path, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(kconf_value(k, "sasl.password"), "no-newline");
  unlink(path);
  rd_kafka_conf_destroy(k);
}

Test(conf, a_bad_password_file_is_named_and_its_content_never_shown, .init = clear_env) {
  esk_error_t err = {0};
  rd_kafka_conf_t *k = NULL;
  cr_assert_eq(esk_kafka_conf_new(&k, RD_KAFKA_PRODUCER, "127.0.0.1:1", &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_set(k, "sasl.password.file", "/nonexistent/pw", &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "/nonexistent/pw"), "%s", err.msg);
  cr_assert_not_null(strstr(err.msg, "No such file"), "%s", err.msg);
  struct {
    const char *bytes;
    size_t n;
    const char *reason;
  } bad[] = {{"", 0, "empty"}, {"\nPWzq7x\n", 8, "empty"}, {"PWzq\0" "7x\n", 8, "NUL"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *path = write_bytes(bad[i].bytes, bad[i].n);
    cr_assert_eq(esk_kafka_conf_set(k, "sasl.password.file", path, &err), ESK_EINVAL, "%zu", i);
    cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, bad[i].reason), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "PWzq"), "the message shows the content: %s", err.msg);
    unlink(path);
  }
  /* oversized: refused, not cut */
  char big[3000];
  memset(big, 'S', sizeof(big));
  char *path = write_bytes(big, sizeof(big));
  cr_assert_eq(esk_kafka_conf_set(k, "sasl.password.file", path, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "longer than"), "%s", err.msg);
  cr_assert_null(strstr(err.msg, "SSSS"), "%s", err.msg);
  unlink(path);
  rd_kafka_conf_destroy(k);
}

Test(conf, a_secret_on_the_command_line_is_refused_without_echoing_it, .init = clear_env) {
  esk_conf_t *c = new_conf();
  esk_error_t err = {0};
  const char *keys[] = {"kafka.sasl.password", "kafka.consumer.sasl.password",
                        "kafka.ssl.key.password", "kafka.sasl.oauthbearer.client.secret"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    cr_assert_eq(esk_conf_set(c, keys[i], "hunter2", "-X", &err), ESK_EINVAL, "%s", keys[i]);
    cr_assert_not_null(strstr(err.msg, keys[i]), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "kafka.sasl.password.file"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "hunter2"), "%s", err.msg);
  }
  /* a path is no secret: the file key is taken from -X */
  char *pw = write_file("pw\n");
  cr_assert_eq(esk_conf_set(c, "kafka.sasl.password.file", pw, "-X", &err), ESK_OK, "%s",
               err.msg);
  /* in a config file a secret is accepted, and a value librdkafka refuses is hidden */
  cr_assert_eq(esk_conf_set(c, "kafka.no.such.secret", "hunter2", "esk.conf:3", &err), ESK_OK);
  rd_kafka_conf_t *k = NULL;
  cr_assert_eq(esk_kafka_conf_new(&k, RD_KAFKA_PRODUCER, NULL, &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_set(k, "no.such.password", "hunter2", &err), ESK_EINVAL);
  cr_assert_null(strstr(err.msg, "hunter2"), "%s", err.msg);
  cr_assert_eq(esk_kafka_conf_apply(k, c, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "no.such.secret"), "%s", err.msg);
  cr_assert_null(strstr(err.msg, "hunter2"), "%s", err.msg);
  cr_assert_str_eq(kconf_value(k, "sasl.password"), "pw");
  unlink(pw);
  rd_kafka_conf_destroy(k);
  esk_conf_destroy(c);
}

Test(conf, security_keys_come_from_the_table_or_the_environment, .init = clear_env) {
  esk_error_t err = {0};
  char *path = write_file("from-the-file\n");
  char pw[64];
  snprintf(pw, sizeof(pw), "%s", path);
  /* a tool: esk_kafka_conf_new() reads the environment */
  setenv("ESK_KAFKA_SECURITY_PROTOCOL", "sasl_ssl", 1);
  setenv("ESK_KAFKA_SASL_MECHANISMS", "SCRAM-SHA-512", 1);
  setenv("ESK_KAFKA_SASL_USERNAME", "tools", 1);
  setenv("ESK_KAFKA_SASL_PASSWORD_FILE", pw, 1);
  setenv("ESK_KAFKA_SSL_CA_LOCATION", pw, 1); /* any file: checked when the client is made */
  rd_kafka_conf_t *k = NULL;
  cr_assert_eq(esk_kafka_conf_new(&k, RD_KAFKA_CONSUMER, NULL, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(kconf_value(k, "security.protocol"), "sasl_ssl");
  cr_assert_str_eq(kconf_value(k, "sasl.mechanisms"), "SCRAM-SHA-512");
  cr_assert_str_eq(kconf_value(k, "sasl.username"), "tools");
  cr_assert_str_eq(kconf_value(k, "sasl.password"), "from-the-file");
  /* a daemon: the same keys from its table (here, -X) win over the environment */
  esk_conf_t *c = new_conf();
  cr_assert_eq(esk_conf_load_env(c, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(esk_conf_get(c, "kafka.sasl.username"), "tools");
  cr_assert_eq(esk_conf_set(c, "kafka.sasl.username", "producer", "-X", &err), ESK_OK);
  cr_assert_eq(esk_kafka_conf_apply(k, c, &err), ESK_OK, "%s", err.msg);
  cr_assert_str_eq(kconf_value(k, "sasl.username"), "producer");
  rd_kafka_conf_destroy(k);
  esk_conf_destroy(c);
  /* a bad value names its variable */
  setenv("ESK_KAFKA_SECURITY_PROTOCOL", "carrier_pigeon", 1);
  cr_assert_eq(esk_kafka_conf_new(&k, RD_KAFKA_CONSUMER, NULL, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "ESK_KAFKA_SECURITY_PROTOCOL"), "%s", err.msg);
  setenv("ESK_KAFKA_SECURITY_PROTOCOL", "sasl_ssl", 1);
  setenv("ESK_KAFKA_SASL_PASSWORD_FILE", "/nonexistent/pw", 1);
  cr_assert_eq(esk_kafka_conf_new(&k, RD_KAFKA_CONSUMER, NULL, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "ESK_KAFKA_SASL_PASSWORD_FILE"), "%s", err.msg);
  unlink(path);
}
