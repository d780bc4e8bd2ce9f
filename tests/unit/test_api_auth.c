/* Bearer tokens with scopes (common/src/api_auth.c): the file, with truncated,
 * malformed, oversized and hostile lines, and the check of a request's header. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/api_auth.h"
#include "esk_test.h"

/* a well-formed hash, of no token used here */
#define W_HASH "8b6c6d2c0c3f0e5f5a2a7d5b43a6a7c9d2f9a1c8b7e6d5c4b3a29180706f5e4d"

static char *write_file(const char *text, size_t len) {
  static char path[64];
  esk_test_temp_file(path, sizeof(path), "esk_test_auth_", text, len);
  return path;
}

/* "name scopes sha256(token)" */
static void line_for(char *out, size_t size, const char *name, const char *scopes,
                     const char *token) {
  FILE *p;
  char cmd[256], hex[80] = "";
  snprintf(cmd, sizeof(cmd), "printf %%s '%s' | sha256sum", token);
  cr_assert((p = popen(cmd, "r")));
  cr_assert(fscanf(p, "%64s", hex) == 1);
  pclose(p);
  snprintf(out, size, "%s %s %s\n", name, scopes, hex);
}

static esk_api_auth_t *load(const char *text, esk_error_t *err, int *rc) {
  esk_api_auth_t *a = NULL;
  char *path = write_file(text, strlen(text));
  *rc = esk_api_auth_load(&a, path, "127.0.0.1:0", err);
  unlink(path);
  return a;
}

static void refused(const char *text, const char *needle) {
  esk_error_t err = {0};
  int rc;
  esk_api_auth_t *a = load(text, &err, &rc);
  cr_expect_eq(rc, ESK_EINVAL, "accepted: %s", text);
  cr_expect_null(a);
  cr_expect(strstr(err.msg, needle), "'%s' does not name '%s'", err.msg, needle);
  esk_api_auth_free(a);
}

Test(api_auth, tokens_are_checked_for_their_scope_without_being_named) {
  char w[200], r[200], file[600];
  line_for(w, sizeof(w), "writer", ESK_SCOPE_COMMANDS_WRITE, "w-token-0123456789");
  line_for(r, sizeof(r), "reader.1", ESK_SCOPE_QUERIES_READ, "r-token-0123456789");
  snprintf(file, sizeof(file), "# tokens\n\n  %s%s", w, r);
  esk_error_t err = {0};
  int rc;
  esk_api_auth_t *a = load(file, &err, &rc);
  cr_assert_eq(rc, ESK_OK, "%s", err.msg);
  char msg[200];
  const char *W = ESK_SCOPE_COMMANDS_WRITE, *R = ESK_SCOPE_QUERIES_READ;
  cr_expect_eq(esk_api_auth_check(a, "Bearer w-token-0123456789", W, msg, sizeof(msg)), 0u);
  cr_expect_eq(esk_api_auth_check(a, "bearer r-token-0123456789", R, msg, sizeof(msg)), 0u);
  cr_expect_eq(esk_api_auth_check(a, "Bearer r-token-0123456789", W, msg, sizeof(msg)), 403u);
  cr_expect(strstr(msg, "reader.1") && strstr(msg, W) && !strstr(msg, "r-token"), "%s", msg);
  cr_expect_eq(esk_api_auth_check(a, NULL, W, msg, sizeof(msg)), 401u);
  cr_expect_eq(esk_api_auth_check(a, "Basic dXNlcjpwYXNz", W, msg, sizeof(msg)), 401u);
  cr_expect_eq(esk_api_auth_check(a, "Bearer ", W, msg, sizeof(msg)), 401u);
  cr_expect_eq(esk_api_auth_check(a, "Bearer w-token-012345678", W, msg, sizeof(msg)), 401u,
               "a truncated token");
  cr_expect_eq(esk_api_auth_check(a, "Bearer w-token-0123456789 ", W, msg, sizeof(msg)), 401u);
  cr_expect(!strstr(msg, "w-token"), "the message names no token: %s", msg);
  char *huge = malloc(ESK_AUTH_TOKEN_MAX + 16);
  memcpy(huge, "Bearer ", 7);
  memset(huge + 7, 'x', ESK_AUTH_TOKEN_MAX + 1);
  huge[ESK_AUTH_TOKEN_MAX + 8] = '\0';
  cr_expect_eq(esk_api_auth_check(a, huge, W, msg, sizeof(msg)), 401u);
  free(huge);
  esk_api_auth_free(a);
  /* no file: no authentication */
  cr_expect_eq(esk_api_auth_load(&a, "", "0.0.0.0:8080", &err), ESK_OK);
  cr_expect_null(a);
  cr_expect_eq(esk_api_auth_check(NULL, NULL, W, msg, sizeof(msg)), 0u);
}

Test(api_auth, malformed_files_are_refused_naming_file_line_and_reason) {
  refused("", "holds no token");
  refused("# only a comment\n", "holds no token");
  refused("writer commands:write\n", ":1: expected 'name scopes sha256-hex'");
  refused("writer commands:write " W_HASH " extra\n", "expected 'name scopes");
  refused("Writer commands:write " W_HASH "\n", "is not [a-z0-9_.-]");
  refused("w commands:delete " W_HASH "\n", "unknown scope 'commands:delete'");
  refused("w commands:write, " W_HASH "\n", "unknown scope ''");
  refused("w commands:write 8b6c\n", "64 hexadecimal");
  refused("w commands:write zz6c6d2c0c3f0e5f5a2a7d5b43a6a7c9d2f9a1c8b7e6d5c4b3a29180706f5e4d\n",
          "64 hexadecimal");
  refused("a commands:write " W_HASH "\nb queries:read " W_HASH "\n", ":2: token b");
  refused("a commands:write " W_HASH "\na queries:read " W_HASH "\n", "earlier line");
  char big[2000];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  refused(big, "line longer than 512 bytes");
  esk_error_t err = {0};
  esk_api_auth_t *a = NULL;
  const char nul[] = "w commands:write " W_HASH "\0\n";
  char *path = write_file(nul, sizeof(nul) - 1);
  cr_expect_eq(esk_api_auth_load(&a, path, "127.0.0.1:0", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "NUL"), "%s", err.msg);
  unlink(path);
  cr_expect_eq(esk_api_auth_load(&a, "/nonexistent/tokens", "127.0.0.1:0", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "api.auth.file=/nonexistent/tokens: cannot open"), "%s", err.msg);
}

/* Writes @p text over the file at @p path. */
static void rewrite(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(text, f);
  fclose(f);
}

Test(api_auth, a_reload_serves_the_new_tokens_and_keeps_the_old_ones_on_a_bad_file) {
  char a1[200], b1[200];
  line_for(a1, sizeof(a1), "alpha", ESK_SCOPE_QUERIES_READ, "a-token-0123456789");
  line_for(b1, sizeof(b1), "beta", ESK_SCOPE_QUERIES_READ, "b-token-0123456789");
  char *path = write_file(a1, strlen(a1));
  esk_api_auth_t *a = NULL;
  esk_error_t err = {0};
  char msg[200];
  const char *R = ESK_SCOPE_QUERIES_READ;
  cr_assert_eq(esk_api_auth_load(&a, path, "127.0.0.1:0", &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(esk_api_auth_check(a, "Bearer a-token-0123456789", R, msg, sizeof(msg)), 0u);
  cr_expect_eq(esk_api_auth_check(a, "Bearer b-token-0123456789", R, msg, sizeof(msg)), 401u);
  rewrite(path, b1); /* alpha revoked, beta added */
  cr_assert_eq(esk_api_auth_reload(a, &err), ESK_OK, "%s", err.msg);
  cr_expect_eq(esk_api_auth_check(a, "Bearer a-token-0123456789", R, msg, sizeof(msg)), 401u);
  cr_expect_eq(esk_api_auth_check(a, "Bearer b-token-0123456789", R, msg, sizeof(msg)), 0u);
  /* a bad, empty, oversized or missing file is refused naming it; beta stays */
  static const char *const bad[] = {"beta queries:read nothex\n", "", "# only a comment\n",
                                    "x y z w\n"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    rewrite(path, bad[i]);
    cr_expect_eq(esk_api_auth_reload(a, &err), ESK_EINVAL, "reloaded: %s", bad[i]);
    cr_expect(strstr(err.msg, path), "%s", err.msg);
    cr_expect_eq(esk_api_auth_check(a, "Bearer b-token-0123456789", R, msg, sizeof(msg)), 0u);
  }
  unlink(path);
  cr_expect_neq(esk_api_auth_reload(a, &err), ESK_OK);
  cr_expect_eq(esk_api_auth_check(a, "Bearer b-token-0123456789", R, msg, sizeof(msg)), 0u);
  /* authentication off stays off */
  cr_expect_eq(esk_api_auth_reload(NULL, &err), ESK_OK);
  esk_api_auth_free(a);
}

typedef struct {
  esk_api_auth_t *a;
  atomic_int stop, wrong;
} checker_t;

static void *check_loop(void *arg) {
  checker_t *c = arg;
  char msg[200];
  while (!atomic_load(&c->stop))
    if (esk_api_auth_check(c->a, "Bearer k-token-0123456789", ESK_SCOPE_QUERIES_READ, msg,
                           sizeof(msg)))
      atomic_fetch_add(&c->wrong, 1);
  return NULL;
}

Test(api_auth, requests_checked_during_reloads_see_a_whole_table) {
  char k[200], two[400], o[200];
  line_for(k, sizeof(k), "kept", ESK_SCOPE_QUERIES_READ, "k-token-0123456789");
  line_for(o, sizeof(o), "other", ESK_SCOPE_QUERIES_READ, "o-token-0123456789");
  snprintf(two, sizeof(two), "%s%s", o, k);
  char *path = write_file(k, strlen(k));
  checker_t c = {NULL, 0, 0};
  esk_error_t err = {0};
  cr_assert_eq(esk_api_auth_load(&c.a, path, "127.0.0.1:0", &err), ESK_OK, "%s", err.msg);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, check_loop, &c), 0);
  for (int i = 0; i < 200; i++) { /* "kept" is in every version of the file */
    rewrite(path, i % 2 ? k : two);
    cr_assert_eq(esk_api_auth_reload(c.a, &err), ESK_OK, "%s", err.msg);
  }
  atomic_store(&c.stop, 1);
  pthread_join(t, NULL);
  cr_expect_eq(atomic_load(&c.wrong), 0, "a check during a reload refused a kept token");
  esk_api_auth_free(c.a);
  unlink(path);
}
