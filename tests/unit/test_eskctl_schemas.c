/* tools/eskctl schemas: the check over the real contract, and a broken version. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ESKCTL ESK_BINARY_DIR "/bin/eskctl"
#define BANK_DIR ESK_SOURCE_DIR "/schemas/bank"

/* Runs a shell command; returns its exit status and its stdout+stderr in @p out. */
static int run(const char *cmd, char *out, size_t size) {
  char full[4096];
  snprintf(full, sizeof(full), "%s 2>&1", cmd);
  FILE *p = popen(full, "r");
  cr_assert(p, "popen %s", cmd);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = 0;
  int st = pclose(p);
  cr_assert(WIFEXITED(st), "%s did not exit normally", cmd);
  return WEXITSTATUS(st);
}

static void copy_dir(const char *from, const char *to) {
  char cmd[2048], out[256];
  snprintf(cmd, sizeof(cmd), "cp '%s'/*.avsc '%s'/", from, to);
  cr_assert_eq(run(cmd, out, sizeof(out)), 0, "%s: %s", cmd, out);
}

static void remove_dir(const char *dir) {
  char cmd[2048], out[256];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  run(cmd, out, sizeof(out));
}

Test(eskctl_schemas, check_passes_over_the_bank_contract) {
  char out[16384];
  cr_assert_eq(run(ESKCTL " schemas check " BANK_DIR, out, sizeof(out)), 0, "%s", out);
  cr_assert(strstr(out, "ok   MoneyDeposited v3 reads v1"), "%s", out);
  cr_assert(strstr(out, "all readable"), "%s", out);
}

Test(eskctl_schemas, check_passes_over_the_orders_contract_only_with_its_upcaster) {
  char out[16384];
  cr_assert_eq(run(ESKCTL " schemas --domain orders check " ESK_SOURCE_DIR "/schemas/orders", out,
                   sizeof(out)),
               0, "%s", out);
  cr_assert(strstr(out, "ok   OrderCreated v2 reads v1"), "%s", out);
  /* without the orders upcaster (the bank's registered instead) v2 cannot read v1 */
  cr_assert_eq(run(ESKCTL " schemas --domain bank check " ESK_SOURCE_DIR "/schemas/orders", out,
                   sizeof(out)),
               1, "%s", out);
  cr_assert(strstr(out, "FAIL") && strstr(out, "OrderCreated"), "%s", out);
}

/* Runs `eskctl schemas --domain D check` over the schemas of @p from plus
 * @p file holding @p json, in a temporary directory; its exit status, and its
 * output in @p out. */
static int check_with(const char *from, const char *domain, const char *file, const char *json,
                      char *out, size_t size) {
  char dir[] = "/tmp/esk-schemas-XXXXXX", path[1024], cmd[2048];
  cr_assert(mkdtemp(dir));
  copy_dir(from, dir);
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(json, f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), ESKCTL " schemas --domain %s --dir '%s' check", domain, dir);
  int rc = run(cmd, out, size);
  remove_dir(dir);
  return rc;
}

Test(eskctl_schemas, check_fails_naming_type_versions_and_field_added_without_default) {
  char out[16384];
  int rc = check_with(
      BANK_DIR, "bank", "AccountClosed.v2.avsc",
      "{\"type\":\"record\",\"name\":\"AccountClosed\",\"namespace\":\"esk.bank\",\"fields\":["
      "{\"name\":\"meta\",\"type\":\"esk.bank.EventMeta\"},"
      "{\"name\":\"reason\",\"type\":\"string\"},"
      "{\"name\":\"closed_by\",\"type\":\"string\"}]}\n",
      out, sizeof(out));
  cr_assert_neq(rc, 0, "%s", out);
  cr_assert(strstr(out, "AccountClosed v1 cannot be read as v2") && strstr(out, "'closed_by'"),
            "%s", out);
}

Test(eskctl_schemas, fingerprint_prints_the_crc_of_the_canonical_form_as_16_hex_digits) {
  char out[256];
  cr_assert_eq(run(ESKCTL " schemas --dir " BANK_DIR " fingerprint " BANK_DIR "/Money.v1.avsc",
                   out, sizeof(out)), 0, "%s", out);
  /* the fixture's fingerprint, which Python avro computed */
  FILE *f = fopen(ESK_SOURCE_DIR "/tests/fixtures/avro/Money.v1.json", "r");
  cr_assert(f);
  char text[8192];
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  text[n] = 0;
  fclose(f);
  char *fp = strstr(text, "\"fingerprint\": \"");
  cr_assert(fp);
  cr_assert_eq(strlen(out), 17, "%s", out);
  cr_assert(!strncmp(out, fp + 16, 16), "eskctl says %s, the fixture %.16s", out, fp + 16);
}

Test(eskctl_schemas, show_prints_the_latest_version_without_a_suffix) {
  char out[16384];
  cr_assert_eq(run(ESKCTL " schemas --dir " BANK_DIR " show MoneyDeposited", out, sizeof(out)), 0,
               "%s", out);
  cr_assert(strstr(out, "version: 3\n"), "%s", out);
  cr_assert_neq(run(ESKCTL " schemas --dir " BANK_DIR " show Nope.v1", out, sizeof(out)), 0);
}

Test(eskctl_schemas, check_lists_personal_fields_and_refuses_a_mark_dropped_in_a_new_version) {
  char out[16384];
  cr_assert_eq(run(ESKCTL " schemas --domain orders check " ESK_SOURCE_DIR "/schemas/orders", out,
                   sizeof(out)),
               0, "%s", out);
  cr_assert(strstr(out, "personal OrderCreated v2 customer_email (subject customer_id, "
                        "forgotten \"[forgotten]\")"),
            "%s", out);
  cr_assert(strstr(out, "personal OrderCreated v2 shipping_address (subject customer_id"), "%s",
            out);

  /* v3 keeps the email but drops its mark */
  int rc = check_with(
      ESK_SOURCE_DIR "/schemas/orders", "orders", "OrderCreated.v3.avsc",
      "{\"type\":\"record\",\"name\":\"OrderCreated\",\"namespace\":\"esk.orders\","
      "\"fields\":[{\"name\":\"meta\",\"type\":\"esk.orders.EventMeta\"},"
      "{\"name\":\"customer_id\",\"type\":\"string\"},"
      "{\"name\":\"customer_email\",\"type\":\"string\",\"default\":\"\"},"
      "{\"name\":\"items\",\"type\":{\"type\":\"array\",\"items\":\"esk.orders.OrderItem\"}},"
      "{\"name\":\"total\",\"type\":\"long\"},{\"name\":\"currency\",\"type\":\"string\"}]}\n",
      out, sizeof(out));
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "FAIL OrderCreated: field 'customer_email' is personal in v2 but not in v3"),
            "%s", out);
}
