/* eskctl submit's input checks: every bad line is reported with its number and
 * the problem, and nothing is sent (these run without a broker: the checks come
 * before any Kafka connection, and a broker-less run proves it). */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/time.h"
#include "esk_test_producer.h"
#include "esk_test.h"

#define DEP "{\"type\":\"DepositMoney\",\"command_id\":\"c1\",\"account_id\":\"A\",\"amount\":{\"minor_units\":5,\"currency\":\"EUR\"}}"

/* Writes @p len bytes to a temp file and runs eskctl submit on it with @p opts,
 * pointing Kafka at a closed port so that nothing can be sent by accident. */
static int submit_bytes(const void *data, size_t len, const char *opts, char *out, size_t size) {
  char path[64];
  esk_test_temp_file(path, sizeof(path), "esk_submit_unit_", data, len);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "ESK_KAFKA_BOOTSTRAP=127.0.0.1:1 %s submit --file %s --timeout 2000 %s",
           ESK_TEST_ESKCTL_BIN, path, opts ? opts : "");
  int rc = esk_tp_run(cmd, 1, out, size);
  unlink(path);
  return rc;
}

static void expect_bad(const char *input, const char *message) {
  char out[8192];
  int rc = submit_bytes(input, strlen(input), NULL, out, sizeof(out));
  cr_expect_eq(rc, 2, "exit 2 for bad input, got %d: %s", rc, out);
  cr_expect(strstr(out, message), "expected '%s' in: %s", message, out);
  cr_expect(strstr(out, "nothing was sent"), "%s", out);
}

Test(eskctl_submit, malformed_json_names_the_line_and_column) {
  expect_bad(DEP "\n{\"type\":\"DepositMoney\",,}\n", "line 2: not valid JSON");
}

Test(eskctl_submit, a_truncated_last_line_is_reported) {
  expect_bad(DEP "\n" "{\"type\":\"DepositMoney\",\"command_id\":\"c2\",\"acc", "line 2: not valid JSON");
}

Test(eskctl_submit, an_oversized_line_is_refused_without_reading_it_whole) {
  size_t n = 200000;
  char *big = malloc(n + 2);
  memset(big, 'x', n);
  big[n] = '\n';
  big[n + 1] = 0;
  char out[8192];
  cr_expect_eq(submit_bytes(big, n + 1, NULL, out, sizeof(out)), 2, "%s", out);
  cr_expect(strstr(out, "line 1: 200000 bytes, longer than the limit of 65536"), "%s", out);
  cr_expect_eq(submit_bytes(DEP "\n", strlen(DEP) + 1, "--max-line-bytes 20", out, sizeof(out)),
               2, "%s", out);
  cr_expect(strstr(out, "longer than the limit of 20"), "%s", out);
  free(big);
}

Test(eskctl_submit, a_nul_byte_is_refused) {
  const char in[] = "{\"type\":\"Deposit\0Money\"}\n";
  char out[4096];
  cr_expect_eq(submit_bytes(in, sizeof(in) - 1, NULL, out, sizeof(out)), 2, "%s", out);
  cr_expect(strstr(out, "line 1: holds a NUL byte"), "%s", out);
}

Test(eskctl_submit, the_line_must_be_an_object_with_a_known_type) {
  expect_bad("[1,2,3]\n", "line 1: expected a JSON object");
  expect_bad("{\"command_id\":\"c\"}\n", "line 1: \"type\" is missing or not a string");
  expect_bad("{\"type\":7}\n", "\"type\" is missing or not a string");
  expect_bad("{\"type\":\"MoneyDeposited\",\"command_id\":\"c\"}\n",
             "unknown command type 'MoneyDeposited'");
  expect_bad("{\"type\":\"EventMeta\"}\n", "unknown command type 'EventMeta'");
}

Test(eskctl_submit, fields_are_checked_against_the_command_schema) {
  expect_bad("{\"type\":\"DepositMoney\",\"command_id\":\"c\",\"account_id\":\"A\",\"amount\":"
             "{\"minor_units\":5,\"currency\":\"EUR\"},\"evil\":1}\n",
             "line 1: DepositMoney has no field 'evil'");
  expect_bad("{\"type\":\"DepositMoney\",\"command_id\":\"c\",\"account_id\":\"A\",\"amount\":"
             "\"5 EUR\"}\n",
             "line 1: DepositMoney:");
  expect_bad("{\"type\":\"OpenAccount\",\"command_id\":\"c\",\"account_id\":\"A\","
             "\"initial_deposit\":{\"minor_units\":5,\"currency\":\"EUR\"}}\n",
             "owner_id");
  expect_bad("{\"type\":\"DepositMoney\",\"command_id\":\"c\",\"account_id\":\"A\",\"amount\":"
             "{\"minor_units\":99999999999999999999999,\"currency\":\"EUR\"}}\n",
             "line 1:");
  expect_bad("{\"type\":\"DepositMoney\",\"command_id\":\"\",\"account_id\":\"A\"}\n",
             "line 1: command_id must be a non-empty string");
  expect_bad("{\"type\":\"CloseAccount\",\"command_id\":\"c\",\"reason\":\"r\"}\n",
             "line 1: account_id must be a non-empty string");
}

Test(eskctl_submit, hostile_json_is_refused) {
  expect_bad("{\"type\":\"DepositMoney\",\"type\":\"OpenAccount\"}\n", "line 1: not valid JSON");
  expect_bad("{\"type\":\"Deposit\xff\xfeMoney\"}\n", "line 1: not valid JSON");
  size_t depth = 100000;
  char *deep = malloc(depth + 2);
  memset(deep, '[', depth);
  deep[depth] = '\n';
  deep[depth + 1] = 0;
  char out[8192];
  cr_expect_eq(submit_bytes(deep, depth + 1, "--max-line-bytes 200000", out, sizeof(out)), 2,
               "%s", out);
  cr_expect(strstr(out, "line 1: not valid JSON"), "%s", out);
  free(deep);
}

Test(eskctl_submit, every_bad_line_is_listed_with_its_number) {
  char out[8192];
  const char *in = DEP "\n\n[]\n" DEP "\n{\n";
  cr_expect_eq(submit_bytes(in, strlen(in), NULL, out, sizeof(out)), 2, "%s", out);
  cr_expect(strstr(out, "line 3: expected a JSON object"), "%s", out);
  cr_expect(strstr(out, "line 5: not valid JSON"), "%s", out);
  cr_expect(strstr(out, "2 bad line(s)"), "%s", out);
}

Test(eskctl_submit, too_many_commands_are_refused) {
  char out[8192];
  const char *in = DEP "\n" DEP "\n" DEP "\n";
  cr_expect_eq(submit_bytes(in, strlen(in), "--max-commands 2", out, sizeof(out)), 2, "%s", out);
  cr_expect(strstr(out, "line 3: more than --max-commands 2 commands"), "%s", out);
}

Test(eskctl_submit, empty_input_sends_nothing_and_succeeds) {
  char out[4096];
  cr_expect_eq(submit_bytes("\n  \n", 4, NULL, out, sizeof(out)), 0, "%s", out);
  cr_expect_str_eq(out, "");
}

/* Runs `eskctl ARGS` and expects exit status @p status and, unless NULL,
 * @p needle in what it printed. */
static void expect_exit(const char *args, int status, const char *needle) {
  char cmd[1024], out[4096];
  /* Kafka at a closed port: what is refused here is refused before any connection */
  snprintf(cmd, sizeof(cmd), "ESK_KAFKA_BOOTSTRAP=127.0.0.1:1 %s %s", ESK_TEST_ESKCTL_BIN, args);
  cr_expect_eq(esk_tp_run(cmd, 1, out, sizeof(out)), status, "eskctl %s: %s", args, out);
  if (needle) cr_expect(strstr(out, needle), "eskctl %s: no '%s' in: %s", args, needle, out);
}

Test(eskctl_submit, bad_options_are_refused) {
  expect_exit("submit", 2, "--file F is required");
  expect_exit("submit --file - --timeout 0", 2, "--timeout '0'");
  expect_exit("submit --file - --domain shop </dev/null", 2, "unknown domain 'shop'");
  expect_exit("submit --file /nonexistent/x", 2, "/nonexistent/x");
  expect_exit("submit --file - --topic-prefix 'a b' </dev/null", 2,
              "--topic-prefix 'a b' with --domain bank: topic name 'a bbank.commands' holds ' '");
  expect_exit("submit --help", 0, "usage: eskctl submit");
}

Test(eskctl_submit, a_good_file_gets_past_the_checks_and_fails_on_the_absent_broker) {
  char out[8192];
  const char *in = DEP "\n";
  int rc = submit_bytes(in, strlen(in), NULL, out, sizeof(out));
  cr_expect_eq(rc, 3, "exit 3 (Kafka) once the input is fine, got %d: %s", rc, out);
}

Test(eskctl_topics, bad_options_are_refused) {
  expect_exit("topics create", 2, "--partitions N is required");
  expect_exit("topics create --partitions 0", 2, "--partitions '0': expected 1..10000");
  expect_exit("topics create --partitions 2 --topic-prefix 'a b'", 2,
              "--topic-prefix 'a b' with --domain bank: topic name 'a bbank.commands' holds ' '");
  expect_exit("topics create --partitions 2 --domain shop", 2, "unknown domain 'shop'");
  expect_exit("topics delete", 2, "usage: eskctl topics create");
  expect_exit("events tail --max x", 2, "--max 'x': expected a number >= 0");
  expect_exit("events follow", 2, "usage: eskctl events tail");
  expect_exit("topics create --partitions 2 --compaction-lag-ms 5", 2,
              "--compaction-lag-ms '5': expected 1000..604800000");
  expect_exit("topics create --partitions 2 --commands-retention-ms 59999", 2,
              "--commands-retention-ms '59999': expected 60000..2592000000");
  expect_exit("topics create --partitions 2 --commands-retention-ms forever", 2,
              "--commands-retention-ms 'forever'");
}

/* With no broker to reach and a long --timeout, a bad --topic-prefix (too long
 * here: a topic name is at most 249 characters) is refused at once: had eskctl
 * connected first it would have spent the 120 s of --timeout on the closed port. */
Test(eskctl_topics, a_bad_topic_prefix_is_refused_before_any_connection) {
  char prefix[250], args[512];
  memset(prefix, 'p', sizeof(prefix) - 1);
  prefix[sizeof(prefix) - 1] = '\0';
  snprintf(args, sizeof(args), "topics create --partitions 2 --timeout 120000 --topic-prefix %s",
           prefix);
  int64_t t0 = esk_time_mono_ms();
  expect_exit(args, 2, "is longer than 249 characters");
  int64_t took_ms = esk_time_mono_ms() - t0;
  cr_expect_lt(took_ms, 30000, "refused after %" PRId64 " ms: it waited for the broker", took_ms);
  expect_exit("topics create --partitions 2 --timeout 120000 --topic-prefix 'x/'", 2,
              "--topic-prefix 'x/' with --domain bank");
}

Test(eskctl_subjects, bad_arguments_are_refused_before_the_broker) {
  expect_exit("subjects", 2, "usage: eskctl subjects forget");
  expect_exit("subjects erase orders cu-1", 2, "usage: eskctl subjects forget");
  expect_exit("subjects forget orders", 2, "expected DOMAIN SUBJECT");
  expect_exit("subjects forget orders a b", 2, "expected DOMAIN SUBJECT");
  expect_exit("subjects forget orders ''", 2, "a subject id of 1 to 1024 bytes, not 0");
  expect_exit("subjects forget shop cu-1", 2, "unknown domain 'shop'");
  expect_exit("subjects forget --grace-ms -1 orders cu-1", 2, "--grace-ms '-1'");
  expect_exit("subjects forget --roll-after-ms x orders cu-1", 2, "--roll-after-ms 'x'");
  expect_exit("subjects export orders", 2, "expected DOMAIN SUBJECT");
  expect_exit("subjects --help", 0, "eskctl subjects export");
}

Test(eskctl_subjects, export_needs_the_master_key_and_a_good_one) {
  char cmd[1024], out[4096];
  snprintf(cmd, sizeof(cmd), "env -u ESK_MASTER_KEY_FILE %s subjects export orders cu-1",
           ESK_TEST_ESKCTL_BIN);
  cr_expect_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 2, "%s", out);
  cr_expect(strstr(out, "set ESK_MASTER_KEY_FILE"), "%s", out);
  snprintf(cmd, sizeof(cmd),
           "ESK_MASTER_KEY_FILE=/nonexistent/master %s events tail --domain orders --exit-at-end",
           ESK_TEST_ESKCTL_BIN);
  cr_expect_eq(esk_tp_run(cmd, 1, out, sizeof(out)), 3, "%s", out);
  cr_expect(strstr(out, "master key file /nonexistent/master: cannot be read"), "%s", out);
}

/* JSON may hold \u0000, and jansson keeps it; a C string would stop there
 * (issue 17: "edge-c32\u0000first" would be sent, and waited for, as "edge-c32"). */
Test(eskctl_submit, a_u0000_escape_in_any_string_or_key_is_refused_naming_the_field) {
  expect_bad("{\"type\":\"DepositMoney\",\"command_id\":\"edge-c32\\u0000first\",\"account_id\":"
             "\"A\",\"amount\":{\"minor_units\":5,\"currency\":\"EUR\"}}\n",
             "line 1: command_id holds U+0000");
  expect_bad(DEP "\n{\"type\":\"DepositMoney\",\"command_id\":\"c2\",\"account_id\":\"A\","
             "\"amount\":{\"minor_units\":5,\"currency\":\"E\\u0000R\"}}\n",
             "line 2: amount.currency holds U+0000");
  expect_bad("{\"type\":\"DepositMoney\",\"command_id\":\"c\",\"account_id\":\"A\",\"amount\":"
             "{\"minor_units\":5,\"currency\":\"EUR\"},\"description\":\"before\\u0000after\"}\n",
             "line 1: description holds U+0000");
  expect_bad("{\"type\":\"DepositMoney\",\"command_id\\u0000x\":\"c\"}\n",
             "line 1: not valid JSON"); /* jansson refuses U+0000 in a key */
  expect_bad("{\"type\":\"Deposit\\u0000Money\"}\n", "line 1: type holds U+0000");
}
