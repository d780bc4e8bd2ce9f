/* Declarative projection files (consumers/projections/declarative.c) and the
 * plugin loader (plugin.c), without servers: what is accepted, and that every
 * malformed, truncated, oversized or hostile file is refused naming the file,
 * the line and the problem. The SQL checks need PostgreSQL: see
 * tests/integration/test_replay.c. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bank_contract.h"
#include "declarative.h"
#include "esk/codec.h"
#include "orders_contract.h"
#include "personal_columns.h"
#include "plugin.h"
#include "esk_test.h"

static esk_schema_set_t *set;

/* @p *s: a schema set with a domain's schemas. */
static void load_set(esk_schema_set_t **s, int (*load)(esk_schema_set_t *, esk_error_t *)) {
  esk_error_t err = {0};
  cr_assert_eq(esk_schema_set_new(s, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(load(*s, &err), ESK_OK, "%s", err.msg);
}

static void setup(void) { load_set(&set, esk_bank_schemas_load); }

static void teardown(void) { esk_schema_set_destroy(set); }

TestSuite(declarative, .init = setup, .fini = teardown);

#define HEAD "name = t\n[migration]\ncreate table t (a text);\n"

/* Parsing @p text as @p label against @p s must fail with a message holding
 * each of the NULL-terminated needles in @p ap. */
static void refused_in(const esk_schema_set_t *s, const char *label, const char *text,
                       va_list ap) {
  esk_declarative_t *d = NULL;
  esk_error_t err = {0};
  int rc = esk_declarative_parse(&d, label, text, s, &err);
  cr_assert_neq(rc, ESK_OK, "accepted:\n%s", text);
  cr_assert_null(d);
  for (const char *n; (n = va_arg(ap, const char *));)
    cr_expect(strstr(err.msg, n), "message '%s' lacks '%s'", err.msg, n);
}

/* Parsing @p text (bank) must fail with a message holding each of the NULL-terminated needles. */
static void refused(const char *text, ...) {
  va_list ap;
  va_start(ap, text);
  refused_in(set, "f.conf", text, ap);
  va_end(ap);
}

Test(declarative, the_shipped_example_loads) {
  esk_declarative_t *d = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_declarative_load(&d, ESK_SOURCE_DIR "/deploy/projections/accounts_by_owner.conf",
                                    set, &err),
               ESK_OK, "%s", err.msg);
  cr_expect_str_eq(esk_declarative_name(d), "accounts_by_owner");
  cr_expect_null(esk_declarative_topic(d));
  esk_projection_t p = esk_declarative_projection(d);
  cr_expect_str_eq(p.name, "accounts_by_owner");
  cr_expect_eq(p.n_migrations, 1);
  cr_expect(strstr(p.migrations[0], "create view accounts_by_owner as"));
  cr_expect_not_null(p.apply);
  cr_expect_null(p.versions_get, "the runtime keeps the versions");
  esk_declarative_destroy(d);
}

Test(declarative, header_topic_comments_and_nullable_leaves) {
  esk_declarative_t *d = NULL;
  esk_error_t err = {0};
  const char *text = "# a comment\n  name = x_1   # trailing\ntopic = bank.events\n\n"
                     "[migration]\ncreate table a (b text);\n# not SQL\n[migration]\nalter table a add c text;\n"
                     "[on MoneyDeposited]\n$1 = meta.aggregate_id\n$2= amount\n$3 =description\n"
                     "insert into a values ($1, $2, $3)\n";
  cr_assert_eq(esk_declarative_parse(&d, "f.conf", text, set, &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(esk_declarative_name(d), "x_1");
  cr_expect_str_eq(esk_declarative_topic(d), "bank.events");
  esk_projection_t p = esk_declarative_projection(d);
  cr_expect_eq(p.n_migrations, 2);
  cr_expect_str_eq(p.migrations[0], "create table a (b text);\n\n");
  esk_declarative_destroy(d);
}

Test(declarative, a_bad_path_names_the_file_the_line_and_the_fields) {
  refused(HEAD "[on MoneyDeposited]\n$1 = meta.aggregate_id\n$2 = amount.minor_unit\nselect $1, $2\n",
          "f.conf:6:", "$2 = amount.minor_unit", "no field 'minor_unit'", "minor_units, currency",
          "MoneyDeposited v3", NULL);
  refused(HEAD "[on AccountOpened]\n$1 = ownerid\nselect $1\n", "f.conf:5:", "no field 'ownerid'",
          "owner_id", NULL);
  refused(HEAD "[on AccountOpened]\n$1 = owner_id.x\nselect $1\n", "f.conf:5:", "not a record",
          NULL);
  refused(HEAD "[on AccountOpened]\n$1 = meta..x\nselect $1\n", "f.conf:5:", "separated by dots",
          NULL);
  refused(HEAD "[on AccountOpened]\n$1 = .meta\nselect $1\n", "f.conf:5:", NULL);
  refused(HEAD "[on AccountOpened]\n$1 =\nselect $1\n", "f.conf:5:", NULL);
  refused(HEAD "[on MoneyMoved]\n$1 = meta.aggregate_id\nselect $1\n", "f.conf:4:",
          "no event type 'MoneyMoved'", NULL);
}

Test(declarative, syntax_errors_name_the_file_and_the_line) {
  refused("name = t\n[on AccountOpened\nselect 1\n", "f.conf:2:", "expected [migration], [on", NULL);
  refused("name = t\n[upon AccountOpened]\nselect 1\n", "f.conf:2:", NULL);
  refused("name = t\n[on AccountOpened] x\nselect 1\n", "f.conf:2:", NULL);
  refused("name = t\nsize = 3\n[on AccountOpened]\nselect 1\n", "f.conf:2:", "unknown key 'size'", NULL);
  refused("name = t\njust words\n", "f.conf:2:", "expected key = value", NULL);
  refused("name = t\nname = u\n[on AccountOpened]\nselect 1\n", "f.conf:2:", "given twice", NULL);
  refused("name = Bad-Name\n[on AccountOpened]\nselect 1\n", "f.conf:1:", "lower-case", NULL);
  refused("name =\n", "f.conf:1:", "has no value", NULL);
  refused("topic = x\n[on AccountOpened]\nselect 1\n", "f.conf:1:", "no 'name", NULL);
  refused("name = t\n[migration]\ncreate table a (b int);\n", "f.conf:", "no [on", NULL);
  refused("name = t\n[on AccountOpened]\n$2 = owner_id\nselect $1\n", "f.conf:3:", "expected $1", NULL);
  refused("name = t\n[on AccountOpened]\n$1 owner_id\nselect $1\n", "f.conf:3:", "expected $1 = <path>", NULL);
  refused("name = t\n[on AccountOpened]\n$1 = owner_id\n[on AccountClosed]\nselect 1\n", "f.conf:2:",
          "no SQL", NULL);
  refused("name = t\n[on AccountOpened]\nselect 1\n[on AccountOpened]\nselect 2\n", "f.conf:4:",
          "second [on AccountOpened]", "line 2", NULL);
  refused("name = t\n[migration]\n\n  \n[on AccountOpened]\nselect 1\n", "f.conf:2:", "no SQL", NULL);
}

Test(declarative, truncated_files_are_refused) {
  refused("", "no 'name", NULL);
  refused("name = t\n[on AccountOpened]\n$1 = owner_id\n", "f.conf:2:", "no SQL", NULL);
  refused("name = t\n[on AccountOpened]\n$1 = owner_id\n$2 = meta.", "f.conf:4:", NULL);
  refused("name = t\n[on", "f.conf:2:", NULL);
}

Test(declarative, hostile_and_oversized_input_is_refused) {
  /* 101 parameters */
  size_t cap = 8192;
  char *t = calloc(1, cap);
  size_t off = (size_t)snprintf(t, cap, "name = t\n[on AccountOpened]\n");
  for (int i = 1; i <= 101; i++) off += (size_t)snprintf(t + off, cap - off, "$%d = owner_id\n", i);
  snprintf(t + off, cap - off, "select 1\n");
  refused(t, "f.conf:103:", "more than 100 parameters", NULL);
  free(t);
  /* a path deeper than any schema, and a very long one */
  refused("name = t\n[on AccountOpened]\n$1 = meta.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q\nselect $1\n",
          "f.conf:3:", NULL);
  char *longpath = malloc(200000);
  memset(longpath, 'a', 199999);
  longpath[199999] = '\0';
  char *text = malloc(200100);
  snprintf(text, 200100, "name = t\n[on AccountOpened]\n$1 = %s\nselect $1\n", longpath);
  refused(text, "f.conf:3:", "no field", NULL);
  free(text);
  free(longpath);
  /* over 1 MiB */
  char *big = malloc((1 << 20) + 100);
  memset(big, ' ', (1 << 20) + 99);
  memcpy(big, "name = t\n", 9);
  big[(1 << 20) + 99] = '\0';
  refused(big, "larger than", NULL);
  free(big);
  /* parameter numbers that overflow */
  refused("name = t\n[on AccountOpened]\n$99999999999999999999 = owner_id\nselect 1\n", "f.conf:3:", NULL);
}

Test(declarative, files_that_cannot_be_read) {
  esk_declarative_t *d = NULL;
  esk_error_t err = {0};
  cr_assert_neq(esk_declarative_load(&d, "/nonexistent/x.conf", set, &err), ESK_OK);
  cr_expect(strstr(err.msg, "/nonexistent/x.conf: cannot open"), "%s", err.msg);
  char path[64];
  esk_test_temp_file(path, sizeof(path), "esk_decl_", "name = t\n\0[on", 13);
  cr_assert_neq(esk_declarative_load(&d, path, set, &err), ESK_OK);
  cr_expect(strstr(err.msg, "NUL byte"), "%s", err.msg);
  unlink(path);
}

/* ------------------------------------------------------------- plugins --- */

#define PLUGIN(n) ESK_BINARY_DIR "/plugins/" n ".so"

static void plugin_refused(const char *path, const char *needle) {
  esk_plugin_t *pl = NULL;
  esk_projection_t p = {0};
  esk_error_t err = {0};
  cr_assert_eq(esk_plugin_open(&pl, &p, path, "bank", &err), ESK_EINVAL, "%s: %s", path,
               err.msg);
  cr_expect_null(pl);
  cr_expect(strstr(err.msg, path), "message '%s' does not name the file", err.msg);
  cr_expect(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
}

Test(plugin, a_missing_file_is_refused_naming_it) {
  plugin_refused("/nonexistent/dir/plugin.so", "cannot load");
}

Test(plugin, a_file_that_is_no_shared_object_is_refused) {
  plugin_refused(ESK_SOURCE_DIR "/deploy/projections/accounts_by_owner.conf", "cannot load");
}

Test(plugin, a_shared_object_without_the_symbol_is_refused) {
  plugin_refused(PLUGIN("esk_test_plugin_no_symbol"), "no symbol esk_projection_plugin_v2");
}

Test(plugin, a_plugin_for_another_abi_is_refused) {
  plugin_refused(PLUGIN("esk_test_plugin_wrong_abi"), "built for plugin ABI 3");
}

Test(plugin, a_plugin_of_the_obsolete_abi_1_is_refused_saying_to_port_it) {
  plugin_refused(PLUGIN("esk_test_plugin_obsolete_v1"), "the obsolete plugin ABI 1");
  plugin_refused(PLUGIN("esk_test_plugin_obsolete_v1"), "port it to esk/projection_plugin.h");
}

Test(plugin, a_plugin_of_another_domain_is_refused_naming_both) {
  plugin_refused(PLUGIN("esk_test_plugin_other_domain"),
                 "projects events of domain 'orders', this projector reads domain 'bank'");
}

Test(plugin, a_failing_create_passes_its_reason_on) {
  plugin_refused(PLUGIN("esk_test_plugin_failing_create"), "threshold 'abc' is not a number");
}

Test(plugin, the_example_loads_with_its_migration_and_callbacks) {
  esk_plugin_t *pl = NULL;
  esk_projection_t p = {0};
  esk_error_t err = {0};
  cr_assert_eq(esk_plugin_open(&pl, &p, PLUGIN("example_large_deposits"), "bank", &err), ESK_OK,
               "%s", err.msg);
  cr_expect_str_eq(p.name, "large_deposits");
  cr_expect_eq(p.n_migrations, 1);
  cr_expect(strstr(p.migrations[0], "create table large_deposits"));
  cr_expect_not_null(p.apply);
  cr_expect_eq(esk_plugin_info(pl)->abi, ESK_PROJECTION_PLUGIN_ABI);
  esk_plugin_close(pl);
}

Test(plugin, the_example_refuses_a_bad_threshold) {
  setenv("ESK_LARGE_DEPOSITS_MIN", "12x", 1);
  plugin_refused(PLUGIN("example_large_deposits"), "ESK_LARGE_DEPOSITS_MIN '12x'");
}

/* ------------------------------------------- [personal <table>] sections --- */

static esk_schema_set_t *orders_set;

static void orders_setup(void) { load_set(&orders_set, esk_orders_schemas_load); }

static void orders_teardown(void) { esk_schema_set_destroy(orders_set); }

TestSuite(personal_section, .init = orders_setup, .fini = orders_teardown);

#define OHEAD                                                                               \
  "name = t\n[migration]\ncreate table t (id text, cu text, email text, addr jsonb);\n"    \
  "[on OrderCreated]\n$1 = meta.aggregate_id\ninsert into t (id) values ($1)\n"

/* Parsing @p text (orders) must fail with a message holding each needle. */
static void personal_refused(const char *text, ...) {
  va_list ap;
  va_start(ap, text);
  refused_in(orders_set, "p.conf", text, ap);
  va_end(ap);
}

Test(personal_section, columns_take_the_schemas_declared_replacement) {
  esk_declarative_t *d = NULL;
  esk_error_t err = {0};
  const char *text = OHEAD "[personal t]\n"
                           "# a comment\n\n"
                           "subject = cu\n"
                           "email = OrderCreated.customer_email   # a string\n"
                           "addr = OrderCreated.shipping_address\n"
                           "[personal t_city]\n"
                           "city=OrderCreated.shipping_address.city\n"
                           "subject=customer_id\n";
  cr_assert_eq(esk_declarative_parse(&d, "p.conf", text, orders_set, &err), ESK_OK, "%s",
               err.msg);
  const esk_pcols_t *pc = esk_declarative_personal(d);
  cr_assert_eq(esk_pcols_count(pc), 2);
  const char *v = NULL;
  cr_assert_eq(esk_pcols_replacement(pc, 0, "email", &v), ESK_OK);
  cr_expect_str_eq(v, "[forgotten]");
  cr_assert_eq(esk_pcols_replacement(pc, 0, "addr", &v), ESK_OK);
  cr_expect(v && v[0] == '{' && strstr(v, "\"city\":\"[forgotten]\"") &&
                strstr(v, "\"street\":\"[forgotten]\""),
            "%s", v ? v : "(null)");
  cr_assert_eq(esk_pcols_replacement(pc, 1, "city", &v), ESK_OK);
  cr_expect_str_eq(v, "[forgotten]");
  cr_expect_eq(esk_pcols_replacement(pc, 1, "email", &v), ESK_ENOTFOUND);
  cr_expect_str_eq(esk_pcols_sql(pc, 0),
                   "update \"t\" set \"email\" = $2, \"addr\" = $3 where \"cu\" = $1 and "
                   "(\"email\" is distinct from $2 or \"addr\" is distinct from $3)");
  cr_expect_str_eq(esk_pcols_sql(pc, 1),
                   "update \"t_city\" set \"city\" = $2 where \"customer_id\" = $1 and "
                   "(\"city\" is distinct from $2)");
  esk_projection_t p = esk_declarative_projection(d);
  cr_expect_not_null(p.forget, "a file with [personal] sections scrubs");
  esk_declarative_destroy(d);
  /* without one, nothing to scrub */
  cr_assert_eq(esk_declarative_parse(&d, "p.conf", OHEAD, orders_set, &err), ESK_OK, "%s",
               err.msg);
  cr_expect_null(esk_declarative_projection(d).forget);
  esk_declarative_destroy(d);
}

Test(personal_section, a_malformed_section_names_the_file_the_line_and_the_problem) {
  personal_refused(OHEAD "[personal]\nsubject = cu\n", "p.conf:7:", "[personal ]",
                   "lower-case identifier", NULL);
  personal_refused(OHEAD "[personal Bad-Table]\n", "p.conf:7:", "lower-case identifier", NULL);
  personal_refused(OHEAD "[personal t]\nemail = OrderCreated.customer_email\n", "p.conf:7:",
                   "no 'subject = <column>'", NULL);
  personal_refused(OHEAD "[personal t]\nsubject = cu\n", "p.conf:7:", "no personal column",
                   NULL);
  personal_refused(OHEAD "[personal t]\nsubject = cu\n[on OrderShipped]\nselect 1\n", "p.conf:7:",
                   "no personal column", NULL);
  personal_refused(OHEAD "[personal t]\nsubject = cu\nemail = OrderCreated.customer_email\n"
                         "[personal t]\n",
                   "p.conf:10:", "a second [personal t]", "line 7", NULL);
  personal_refused(OHEAD "[personal t]\nsubject = cu\nsubject = id\n", "p.conf:9:",
                   "'subject' given twice", NULL);
  personal_refused(OHEAD "[personal t]\nemail = OrderCreated.customer_email\n"
                         "email = OrderCreated.customer_email\n",
                   "p.conf:9:", "column 'email' given twice", "line 8", NULL);
  personal_refused(OHEAD "[personal t]\nsubject = cu\ncu = OrderCreated.customer_email\n",
                   "p.conf:9:", "'cu' is the subject column", NULL);
  personal_refused(OHEAD "[personal t]\ncu = OrderCreated.customer_email\nsubject = cu\n",
                   "p.conf:9:", "'cu' is a personal column", NULL);
  personal_refused(OHEAD "[personal t]\njust words\n", "p.conf:8:", "expected subject = <column>",
                   NULL);
}

Test(personal_section, a_column_must_copy_a_personal_field_of_the_contract) {
  personal_refused(OHEAD "[personal t]\nemail = OrderCreated\n", "p.conf:8:",
                   "expected <EventType>.<field>", NULL);
  personal_refused(OHEAD "[personal t]\nemail = \n", "p.conf:8:", "expected <EventType>.<field>",
                   NULL);
  personal_refused(OHEAD "[personal t]\nemail = .customer_email\n", "p.conf:8:", NULL);
  personal_refused(OHEAD "[personal t]\nemail = OrderCreated..customer_email\n", "p.conf:8:",
                   NULL);
  personal_refused(OHEAD "[personal t]\naddr = OrderCreated.shipping_address.\n", "p.conf:8:",
                   "expected <EventType>.<field>", NULL);
  personal_refused(OHEAD "[personal t]\nemail = Nope.customer_email\n", "p.conf:8:",
                   "no event type 'Nope'", NULL);
  personal_refused(OHEAD "[personal t]\nemail = OrderCreated.customer_id\n", "p.conf:8:",
                   "field 'customer_id' of OrderCreated v2 is not personal", NULL);
  personal_refused(OHEAD "[personal t]\nemail = OrderCreated.total\n", "p.conf:8:",
                   "is not personal", NULL);
  personal_refused(OHEAD "[personal t]\nemail = OrderCreated.emial\n", "p.conf:8:",
                   "field 'emial' of OrderCreated v2 is not personal", NULL);
  personal_refused(OHEAD "[personal t]\ncity = OrderCreated.shipping_address.town\n", "p.conf:8:",
                   "no field 'town' in the replacement", NULL);
  personal_refused(OHEAD "[personal t]\nx = OrderCreated.customer_email.x\n", "p.conf:8:",
                   "no field 'x'", NULL);
}

Test(personal_section, hostile_input_is_refused) {
  /* SQL in an identifier, quotes, a table named by a statement */
  personal_refused(OHEAD "[personal t]\nemail\"; drop table t; -- = OrderCreated.customer_email\n",
                   "p.conf:8:", "lower-case identifier", NULL);
  personal_refused(OHEAD "[personal t]\nsubject = cu; drop table t\n", "p.conf:8:",
                   "lower-case identifier", NULL);
  personal_refused(OHEAD "[personal t; drop table t]\n", "p.conf:7:", "lower-case identifier",
                   NULL);
  personal_refused(OHEAD "[personal t]\nemail = OrderCreated.customer_email; drop table t\n",
                   "p.conf:8:", NULL);
  /* a very long column name and path */
  size_t n = 100000;
  char *text = malloc(2 * n + 512), *longname = malloc(n + 1);
  memset(longname, 'a', n);
  longname[n] = '\0';
  snprintf(text, 2 * n + 512, OHEAD "[personal t]\n%s = OrderCreated.customer_email\n", longname);
  personal_refused(text, "p.conf:8:", "lower-case identifier", NULL);
  snprintf(text, 2 * n + 512, OHEAD "[personal t]\nemail = OrderCreated.%s\n", longname);
  personal_refused(text, "p.conf:8:", NULL);
  snprintf(text, 2 * n + 512, OHEAD "[personal t]\nemail = OrderCreated.shipping_address.%s\n",
           longname);
  personal_refused(text, "p.conf:8:", NULL);
  /* more columns than a section takes */
  size_t off = (size_t)snprintf(text, 2 * n + 512, OHEAD "[personal t]\nsubject = cu\n");
  for (int i = 0; i <= ESK_PCOLS_MAX_COLUMNS; i++)
    off += (size_t)snprintf(text + off, 2 * n + 512 - off, "c%d = OrderCreated.customer_email\n",
                            i);
  personal_refused(text, "more than 32 columns", NULL);
  free(text);
  free(longname);
}

/* ------------------------------------------ plugins and the forget member --- */

Test(plugin, a_plugin_built_before_forget_loads_without_it) {
  esk_plugin_t *pl = NULL;
  esk_projection_t p = {0};
  esk_error_t err = {0};
  cr_assert_eq(esk_plugin_open(&pl, &p, PLUGIN("esk_test_plugin_before_forget"), "bank", &err),
               ESK_OK, "%s", err.msg);
  cr_expect_eq(esk_plugin_info(pl)->struct_size, ESK_PROJECTION_PLUGIN_SIZE_BASE);
  cr_expect(!esk_projection_plugin_has(esk_plugin_info(pl), forget));
  cr_expect_null(p.forget);
  esk_plugin_close(pl);
}

Test(plugin, a_description_larger_than_this_projector_knows_is_refused) {
  char want[96];
  snprintf(want, sizeof(want), "expected %zu to %zu", (size_t)ESK_PROJECTION_PLUGIN_SIZE_BASE,
           sizeof(esk_projection_plugin_t));
  plugin_refused(PLUGIN("esk_test_plugin_too_large"), want);
  plugin_refused(PLUGIN("esk_test_plugin_too_large"), "built with another esk/projection_plugin.h");
}

Test(plugin, a_plugins_forget_is_handed_to_the_runtime) {
  esk_plugin_t *pl = NULL;
  esk_projection_t p = {0};
  esk_error_t err = {0};
  cr_assert_eq(esk_plugin_open(&pl, &p, PLUGIN("esk_test_plugin_with_forget"), "bank", &err),
               ESK_OK, "%s", err.msg);
  cr_assert_not_null(p.forget);
  cr_expect_eq(p.forget(p.self, NULL, "cu-1", NULL, 0, &err), ESK_EINVAL);
  cr_expect_str_eq(err.msg, "forget called");
  esk_plugin_close(pl);
}
