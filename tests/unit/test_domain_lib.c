/* Loading domains from shared objects (esk/domain_lib.h): bank.so as
 * esk-producer loads it, and every way a file is refused, each naming the
 * file and the reason. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "domains.h"
#include "esk/domain_lib.h"

#define DOMAINS ESK_BINARY_DIR "/lib/esk/domains"
#define FIXTURES ESK_BINARY_DIR "/tests/domains"

Test(domain_lib, bank_loads_from_the_build_tree_and_opens_an_instance) {
  esk_domain_lib_t *lib = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_domain_lib_open(&lib, DOMAINS, "bank", &err), ESK_OK, "%s", err.msg);
  const esk_domain_t *d = esk_domain_lib_domain(lib);
  cr_expect_str_eq(d->name, "bank");
  cr_expect_str_eq(d->aggregate_id_field, "account_id");
  cr_expect_str_eq(esk_domain_lib_path(lib), DOMAINS "/bank.so");
  esk_domain_inst_t in;
  cr_assert_eq(esk_domain_inst_open(&in, d, &err), ESK_OK, "%s", err.msg);
  cr_expect_not_null(esk_schema_set_latest(in.schemas, "OpenAccount"));
  esk_domain_inst_close(&in);
  esk_domain_lib_close(lib);
  esk_domain_lib_close(NULL);
}

Test(domain_lib, origin_is_the_directory_of_the_running_binary) {
  char exe[PATH_MAX], want[PATH_MAX + 64], got[PATH_MAX + 64];
  esk_error_t err = {0};
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  cr_assert_gt(n, 0);
  exe[n] = '\0';
  *strrchr(exe, '/') = '\0';
  snprintf(want, sizeof(want), "%s/../lib/esk/domains", exe);
  cr_assert_eq(esk_domain_dir_resolve(got, sizeof(got), NULL, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(got, want);
  cr_assert_eq(esk_domain_dir_resolve(got, sizeof(got), "$ORIGIN", &err), ESK_OK);
  cr_expect_str_eq(got, exe);
  /* only a whole leading $ORIGIN is expanded */
  cr_assert_eq(esk_domain_dir_resolve(got, sizeof(got), "$ORIGINAL/x", &err), ESK_OK);
  cr_expect_str_eq(got, "$ORIGINAL/x");
  cr_assert_eq(esk_domain_dir_resolve(got, sizeof(got), "/opt/$ORIGIN", &err), ESK_OK);
  cr_expect_str_eq(got, "/opt/$ORIGIN");
  char small[8];
  cr_expect_eq(esk_domain_dir_resolve(small, sizeof(small), "/a/long/directory", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "too long"), "%s", err.msg);
}

Test(domain_lib, a_missing_file_is_not_found_naming_the_path) {
  esk_domain_lib_t *lib = NULL;
  esk_error_t err = {0};
  cr_expect_eq(esk_domain_lib_open(&lib, DOMAINS, "nosuchdomain", &err), ESK_ENOTFOUND);
  cr_expect_null(lib);
  cr_expect(strstr(err.msg, DOMAINS "/nosuchdomain.so") && strstr(err.msg, "No such file"),
            "%s", err.msg);
  cr_expect_eq(esk_domain_lib_open(&lib, "/nonexistent/dir", "bank", &err), ESK_ENOTFOUND);
  cr_expect(strstr(err.msg, "/nonexistent/dir/bank.so"), "%s", err.msg);
}

Test(domain_lib, hostile_names_are_refused_before_any_file_is_touched) {
  static const char *const bad[] = {"../x", "..", "a/b", "/etc/passwd", "", ".hidden",
                                    "-x", "a b", "x\n", "bank.so", "b\xc3\xa4nk", "$ORIGIN"};
  esk_error_t err = {0};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    esk_domain_lib_t *lib = NULL;
    cr_expect_eq(esk_domain_lib_open(&lib, DOMAINS, bad[i], &err), ESK_EINVAL, "'%s'", bad[i]);
    cr_expect_null(lib);
    cr_expect(strstr(err.msg, "domain"), "%s", err.msg);
  }
  cr_expect_eq(esk_domain_lib_open(&(esk_domain_lib_t *){NULL}, DOMAINS, NULL, &err), ESK_EINVAL);
  char longname[ESK_DOMAIN_NAME_MAX + 2];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  cr_expect_eq(esk_domain_name_check(longname, &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "longer than"), "%s", err.msg);
  longname[ESK_DOMAIN_NAME_MAX] = '\0';
  cr_expect_eq(esk_domain_name_check(longname, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(esk_domain_name_check("my-orders_2", &err), ESK_OK, "%s", err.msg);
}

Test(domain_lib, an_object_without_the_entry_symbol_is_not_a_domain) {
  esk_domain_lib_t *lib = NULL;
  esk_error_t err = {0};
  cr_expect_eq(esk_domain_lib_open(&lib, FIXTURES, "no_symbol", &err), ESK_EINVAL);
  cr_expect_null(lib);
  cr_expect(strstr(err.msg, FIXTURES "/no_symbol.so") && strstr(err.msg, "no symbol esk_domain_v1"),
            "%s", err.msg);
}

Test(domain_lib, a_domain_built_for_another_abi_is_refused_naming_both_versions) {
  esk_domain_lib_t *lib = NULL;
  esk_error_t err = {0};
  cr_expect_eq(esk_domain_lib_open(&lib, FIXTURES, "newer_abi", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, FIXTURES "/newer_abi.so") && strstr(err.msg, "built for domain ABI 2") &&
                strstr(err.msg, "speaks ABI 1"),
            "%s", err.msg);
  /* the v1 symbol, but a descriptor of another ABI */
  cr_expect_eq(esk_domain_lib_open(&lib, FIXTURES, "wrong_abi", &err), ESK_EINVAL);
  cr_expect_null(lib);
  cr_expect(strstr(err.msg, FIXTURES "/wrong_abi.so") && strstr(err.msg, "ABI 99"), "%s", err.msg);
}

/* A temporary domain directory holding one file @p name of @p body. */
static void temp_dir_with(char *dir, const char *name, const void *body, size_t len) {
  char path[256];
  strcpy(dir, "/tmp/esk-domain-lib-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(body, 1, len, f), len);
  fclose(f);
}

static void remove_dir(const char *dir, const char *name) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  unlink(path);
  rmdir(dir);
}

Test(domain_lib, a_file_that_is_not_a_shared_object_cannot_load) {
  char dir[64];
  esk_domain_lib_t *lib = NULL;
  esk_error_t err = {0};
  static const char junk[] = "\x7f" "ELF truncated, then text";
  temp_dir_with(dir, "junk.so", junk, sizeof(junk) - 1);
  cr_expect_eq(esk_domain_lib_open(&lib, dir, "junk", &err), ESK_EINVAL);
  cr_expect_null(lib);
  cr_expect(strstr(err.msg, "junk.so") && strstr(err.msg, "cannot load"), "%s", err.msg);
  remove_dir(dir, "junk.so");
  temp_dir_with(dir, "empty.so", "", 0);
  cr_expect_eq(esk_domain_lib_open(&lib, dir, "empty", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "empty.so") && strstr(err.msg, "cannot load"), "%s", err.msg);
  remove_dir(dir, "empty.so");
}

Test(domain_lib, a_directory_named_like_a_domain_is_refused) {
  char dir[64], sub[96];
  esk_domain_lib_t *lib = NULL;
  esk_error_t err = {0};
  strcpy(dir, "/tmp/esk-domain-lib-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(sub, sizeof(sub), "%s/d.so", dir);
  cr_assert_eq(mkdir(sub, 0700), 0);
  cr_expect_eq(esk_domain_lib_open(&lib, dir, "d", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "not a regular file"), "%s", err.msg);
  rmdir(sub);
  rmdir(dir);
}

Test(domain_lib, a_domain_loaded_under_another_name_is_refused) {
  FILE *in = fopen(DOMAINS "/bank.so", "rb");
  cr_assert_not_null(in);
  fseek(in, 0, SEEK_END);
  long n = ftell(in);
  rewind(in);
  cr_assert_gt(n, 0);
  char *body = malloc((size_t)n);
  cr_assert_eq(fread(body, 1, (size_t)n, in), (size_t)n);
  fclose(in);
  char dir[64];
  temp_dir_with(dir, "savings.so", body, (size_t)n);
  free(body);
  esk_domain_lib_t *lib = NULL;
  esk_error_t err = {0};
  cr_expect_eq(esk_domain_lib_open(&lib, dir, "savings", &err), ESK_EINVAL);
  cr_expect_null(lib);
  cr_expect(strstr(err.msg, "savings.so") && strstr(err.msg, "describes the domain 'bank'"), "%s",
            err.msg);
  remove_dir(dir, "savings.so");
}
