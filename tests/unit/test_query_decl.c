/* Declared queries (consumers/query/query_decl.c): the shipped file, and
 * truncated, malformed, oversized and hostile declarations. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_decl.h"

static int parse(const char *text, esk_query_decl_t **d, size_t *n, esk_error_t *err) {
  *d = NULL;
  *n = 0;
  return esk_query_decl_parse(d, n, text, strlen(text), "t.queries", err);
}

static void refused(const char *text, const char *needle) {
  esk_query_decl_t *d;
  size_t n;
  esk_error_t err = {0};
  cr_expect_eq(parse(text, &d, &n, &err), ESK_EINVAL, "accepted: %s", text);
  cr_expect(strstr(err.msg, needle), "'%s' does not name '%s'", err.msg, needle);
  cr_expect_eq(n, 0);
  free(d);
}

Test(query_decl, the_shipped_bank_queries_load_and_match_their_paths) {
  esk_query_decl_t *d = NULL;
  size_t n = 0;
  esk_error_t err = {0};
  cr_assert_eq(esk_query_decl_load(&d, &n, ESK_SOURCE_DIR "/deploy/queries/bank.queries", &err),
               ESK_OK, "%s", err.msg);
  cr_assert_geq(n, 2);
  cr_assert_str_eq(d[0].name, "account");
  cr_assert_str_eq(d[0].projection, "account_balances");
  char buf[512];
  const char *v[ESK_QUERY_MAX_SEGMENTS];
  cr_assert(esk_query_decl_match(&d[0], "/v1/bank/accounts/A-1", buf, sizeof(buf), v));
  cr_assert_str_eq(v[3], "A-1");
  cr_assert_eq(d[0].param_src[0], 3);
  cr_assert_not(esk_query_decl_match(&d[0], "/v1/bank/accounts/A-1/x", buf, sizeof(buf), v));
  cr_assert_not(esk_query_decl_match(&d[0], "/v1/bank/accounts/", buf, sizeof(buf), v));
  cr_assert_not(esk_query_decl_match(&d[0], "/v1/bank/accounts", buf, sizeof(buf), v));
  cr_assert_not(esk_query_decl_match(&d[0], "/v1/bank/accountsX/A", buf, sizeof(buf), v));
  cr_assert_not(esk_query_decl_match(&d[0], "", buf, sizeof(buf), v));
  /* the path as sent: a value may hold '/' (%2F), '%' (%25); U+0000 matches nothing */
  cr_assert(esk_query_decl_match(&d[0], "/v1/bank/accounts/A%2FB", buf, sizeof(buf), v));
  cr_assert_str_eq(v[3], "A/B");
  cr_assert(esk_query_decl_match(&d[0], "/v1/bank/accounts/%2E%2E%2F", buf, sizeof(buf), v));
  cr_assert_str_eq(v[3], "../");
  cr_assert(esk_query_decl_match(&d[0], "/v1/bank/accounts/a%252F", buf, sizeof(buf), v));
  cr_assert_str_eq(v[3], "a%2F", "decoded once");
  cr_assert(esk_query_decl_match(&d[0], "/v1/bank/%61ccounts/A", buf, sizeof(buf), v));
  cr_assert_not(esk_query_decl_match(&d[0], "/v1/bank/accounts/A%00B", buf, sizeof(buf), v));
  cr_assert_not(esk_query_decl_match(&d[0], "/v1/bank/accounts/%00", buf, sizeof(buf), v));
  cr_assert_not(esk_query_decl_match(&d[0], "/v1/bank%2Faccounts/A", buf, sizeof(buf), v));
  cr_assert(d[1].many);
  cr_assert_eq(d[1].param_src[1], -1); /* limit: int_arg 0 */
  cr_assert_eq(d[1].args[0].def, 100);
  free(d);
}

Test(query_decl, the_shipped_orders_queries_load_with_a_two_column_cursor) {
  esk_query_decl_t *d = NULL;
  size_t n = 0;
  esk_error_t err = {0};
  cr_assert_eq(esk_query_decl_load(&d, &n, ESK_SOURCE_DIR "/deploy/queries/orders.queries", &err),
               ESK_OK, "%s", err.msg);
  cr_assert_eq(n, 3);
  char buf[512];
  const char *v[ESK_QUERY_MAX_SEGMENTS];
  cr_assert_str_eq(d[0].projection, "order_summaries");
  cr_assert(esk_query_decl_match(&d[0], "/v1/orders/orders/o-1", buf, sizeof(buf), v));
  cr_assert_str_eq(d[1].name, "orders_by_customer");
  cr_assert(esk_query_decl_match(&d[1], "/v1/orders/customers/c-1/orders", buf, sizeof(buf), v));
  cr_assert_eq(d[1].n_cursor, 2);
  cr_assert_str_eq(d[2].projection, "customer_statistics");
  cr_assert(esk_query_decl_match(&d[2], "/v1/orders/customers/c-1/statistics", buf, sizeof(buf), v));
  free(d);
}

#define OK_QUERY "[query a]\npath = /v1/x/{id}\nprojection = p\nparams = id\nsql = select 1 where $1 = ''\n"

Test(query_decl, a_declaration_with_continued_sql_reads_whole) {
  esk_query_decl_t *d;
  size_t n;
  esk_error_t err = {0};
  cr_assert_eq(parse("# c\n[query a]\npath = /v1/x/{id}\nprojection = p\nparams = id\n"
                     "sql = select 1\n   where $1 = ''\n\n# end\n", &d, &n, &err), ESK_OK, "%s",
               err.msg);
  cr_assert_str_eq(d[0].sql, "select 1\nwhere $1 = ''");
  free(d);
  cr_assert_eq(parse(OK_QUERY, &d, &n, &err), ESK_OK, "%s", err.msg);
  free(d);
}

Test(query_decl, malformed_declarations_are_refused_naming_file_line_and_reason) {
  refused("", "declares no");
  refused("path = /v1/x\n", "t.queries:1");
  refused("[query A]\n", "[query <name>]");
  refused("[query a\n", "[query <name>]");
  refused("[query a]\npath = v1/x\nprojection = p\nsql = select 1\n", "path must start with /");
  refused("[query a]\npath = /v1/{X}\n", "not a name");
  refused("[query a]\npath = /v1/{id}/{id}\n", "appears twice");
  refused("[query a]\npath = /v1/../x\n", "neither a literal");
  refused("[query a]\npath = /v1/x/\n", "ends with /");
  refused("[query a]\npath = /v1/x\nprojection = p; drop table t\n", "projection");
  refused("[query a]\npath = /v1/x\nprojection = p\nresult = some\n", "one or many");
  refused("[query a]\npath = /v1/x\nparams = nope\n", "param 'nope'");
  refused("[query a]\npath = /v1/x\nint_arg = limit 10 1 5\n", "min <= default <= max");
  refused("[query a]\npath = /v1/x\nint_arg = limit 1 10 5 extra\n", "int_arg");
  refused("[query a]\nfoo = bar\n", "unknown key 'foo'");
  refused("[query a]\npath = /v1/x\nprojection = p\n", "has no sql");
  refused("[query a]\npath = /v1/x\nsql = select 1\n", "has no projection");
  refused("[query a]\npath = /v1/x/{id}\nprojection = p\nparams = id\nsql = select $2\n",
          "uses $1..$2 but params names 1");
  refused(OK_QUERY OK_QUERY, "declared twice");
  char withnul[] = "[query a]\npath = /v1/x\0\n";
  esk_query_decl_t *d;
  size_t n = 0;
  esk_error_t err = {0};
  d = NULL;
  cr_assert_eq(esk_query_decl_parse(&d, &n, withnul, sizeof(withnul) - 1, "t", &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "NUL"), "%s", err.msg);
  free(d);
}

Test(query_decl, oversized_declarations_are_refused) {
  char *big = malloc(3 * ESK_QUERY_SQL_MAX);
  int o = snprintf(big, 100, "[query a]\npath = /v1/x\nprojection = p\nsql = ");
  memset(big + o, 'x', 2 * ESK_QUERY_SQL_MAX);
  big[o + 2 * ESK_QUERY_SQL_MAX] = '\0';
  refused(big, "sql longer than");
  char path[2000] = "[query a]\npath = ";
  for (int i = 0; i < 20; i++) strcat(path, "/s");
  strcat(path, "\n");
  refused(path, "more than 16 segments");
  free(big);
  esk_query_decl_t *d = NULL;
  size_t n = 0;
  esk_error_t err = {0};
  cr_assert_eq(esk_query_decl_load(&d, &n, "/nonexistent/q", &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "/nonexistent/q"), "%s", err.msg);
}

#define CURSOR_QUERY                                                                  \
  "[query pages]\npath = /v1/x/{id}\nprojection = p\nresult = many\n"                 \
  "int_arg = limit 1 50 10\ncursor = day, n\nparams = id, limit, cursor.day, cursor.n\n" \
  "sql = select 1 where $1 = '' and $2::int > 0 and $3::date is null and $4::int is null\n"

Test(query_decl, cursor_declarations_are_checked) {
  esk_query_decl_t *d;
  size_t n;
  esk_error_t err = {0};
  cr_assert_eq(parse(CURSOR_QUERY, &d, &n, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(d[0].n_cursor, 2);
  cr_assert_str_eq(d[0].cursor[1], "n");
  cr_assert_eq(d[0].param_src[2], ESK_QUERY_SRC_CURSOR(0));
  cr_assert_eq(ESK_QUERY_CURSOR_OF(d[0].param_src[3]), 1);
  cr_assert_eq(ESK_QUERY_CURSOR_OF(d[0].param_src[1]), -1, "an int_arg is no cursor column");
  cr_assert_eq(ESK_QUERY_CURSOR_OF(d[0].param_src[0]), -1, "a path parameter is no cursor column");
  free(d);
  refused("[query a]\npath = /v1/x\nprojection = p\ncursor = v\nparams = cursor.v\n"
          "sql = select $1\n", "needs result = many");
  refused("[query a]\npath = /v1/x\nprojection = p\nresult = many\ncursor = v, w\n"
          "params = cursor.v\nsql = select $1\n", "does not use cursor.w");
  refused("[query a]\npath = /v1/x\nresult = many\ncursor = a;b\n", "cursor column 'a;b'");
  refused("[query a]\npath = /v1/x\nresult = many\ncursor = a, b, c, d, e\n", "more than 4");
  refused("[query a]\npath = /v1/x\nresult = many\ncursor = v\nparams = cursor.w\n",
          "param 'cursor.w'");
  refused("[query a]\npath = /v1/x\nresult = many\nparams = cursor.v\ncursor = v\n",
          "declare path, int_arg and cursor before params");
}

/* base64url without padding of @p json */
static const char *b64(const char *json) {
  static char out[4096];
  esk_error_t err = {0};
  cr_assert_eq(esk_query_cursor_encode(json, out, sizeof(out), &err), ESK_OK, "%s", err.msg);
  return out;
}

static void cursor_refused(const esk_query_decl_t *d, const char *cursor, const char *needle) {
  char values[ESK_QUERY_MAX_CURSOR][ESK_QUERY_CURSOR_VALUE_MAX + 1];
  int is_null[ESK_QUERY_MAX_CURSOR];
  esk_error_t err = {0};
  cr_expect_eq(esk_query_cursor_decode(d, cursor, values, is_null, &err), ESK_EINVAL,
               "accepted cursor %.60s", cursor);
  cr_expect(strstr(err.msg, needle), "'%s' does not name '%s'", err.msg, needle);
}

Test(query_decl, cursors_round_trip_and_hostile_ones_are_refused) {
  esk_query_decl_t *d;
  size_t n;
  esk_error_t err = {0};
  cr_assert_eq(parse(CURSOR_QUERY, &d, &n, &err), ESK_OK, "%s", err.msg);
  char values[ESK_QUERY_MAX_CURSOR][ESK_QUERY_CURSOR_VALUE_MAX + 1];
  int is_null[ESK_QUERY_MAX_CURSOR];
  cr_assert_eq(esk_query_cursor_decode(&d[0], b64("[\"2026-12-05\", 42]"), values, is_null, &err),
               ESK_OK, "%s", err.msg);
  cr_assert_str_eq(values[0], "2026-12-05");
  cr_assert_str_eq(values[1], "42");
  cr_assert(!is_null[0] && !is_null[1]);
  cr_assert_eq(esk_query_cursor_decode(&d[0], b64("[null, 1.5]"), values, is_null, &err), ESK_OK);
  cr_assert(is_null[0]);
  cr_assert_str_eq(values[1], "1.5");
  /* truncated, malformed, oversized and hostile */
  const char *good = b64("[\"2026-12-05\", 42]");
  char cut[64];
  snprintf(cut, sizeof(cut), "%.*s", (int)strlen(good) - 3, good);
  cursor_refused(&d[0], cut, "not one this query gave");
  cursor_refused(&d[0], "", "not base64url");
  cursor_refused(&d[0], "a+b/c==", "not base64url");
  cursor_refused(&d[0], b64("{\"day\": 1}"), "expected 2 values");
  cursor_refused(&d[0], b64("[1]"), "expected 2 values");
  cursor_refused(&d[0], b64("[1, 2, 3]"), "expected 2 values");
  cursor_refused(&d[0], b64("[[1], 2]"), "not a string, a number or null");
  cursor_refused(&d[0], b64("[true, 2]"), "not a string, a number or null");
  cursor_refused(&d[0], b64("[\"a\\u0000b\", 2]"), "not one this query gave"); /* U+0000 */
  cursor_refused(&d[0], b64("[\"\xff\", 2]"), "not one this query gave");
  char big[600];
  memset(big, 'x', sizeof(big));
  memcpy(big, "[\"", 2);
  memcpy(big + sizeof(big) - 7, "\", 1]", 6);
  cursor_refused(&d[0], b64(big), "longer than 256 bytes");
  char huge[ESK_QUERY_CURSOR_MAX + 10];
  memset(huge, 'A', sizeof(huge) - 1);
  huge[sizeof(huge) - 1] = '\0';
  cursor_refused(&d[0], huge, "longer than 1400 characters");
  char overlong[1200];
  memset(overlong, 'x', sizeof(overlong) - 1);
  overlong[sizeof(overlong) - 1] = '\0';
  char out[64];
  cr_assert_eq(esk_query_cursor_encode(overlong, out, sizeof(out), &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "over 1400 characters"), "%s", err.msg);
  free(d);
}
