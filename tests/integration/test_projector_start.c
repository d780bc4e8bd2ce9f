/* esk-projector's start-up refusals that need the real binary: an explicit
 * group.id that is not the one a projection's generation was recorded with
 * (issue 22, item 1), and identifiers from configuration that are not
 * identifiers, refused before PostgreSQL is contacted (issue 22, item 3).
 * Each run is bounded by timeout(1): a binary that starts instead of refusing
 * is killed and the test fails on its exit status. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esk_test.h"
#include "generation.h"

#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"
/* Nothing listens on port 1: a binary that reached PostgreSQL would retry forever. */
#define NO_PG "host=127.0.0.1 port=1 user=esk dbname=esk connect_timeout=1"

static char schema[64];

static void setup(void) { esk_test_unique_name(schema, sizeof(schema), "esk_test_start"); }

static void teardown(void) { esk_test_drop_schema(schema); }

/* Runs esk-projector with @p args (shell words) under a 15 s bound; its exit
 * status (124 when timeout(1) ended it), its output in @p out. */
static int projector(const char *args, char *out, size_t size) {
  char cmd[2048];
  snprintf(cmd, sizeof(cmd), "timeout -s KILL 15 %s -X http.listen=off %s 2>&1", PROJECTOR, args);
  FILE *p = popen(cmd, "r");
  cr_assert(p, "popen %s", cmd);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *write_file(const char *text) {
  static char path[64];
  esk_test_temp_file(path, sizeof(path), "esk_test_start_", text, strlen(text));
  return path;
}

Test(projector_start, an_explicit_group_id_other_than_the_generations_is_refused_naming_both,
     .init = setup, .fini = teardown, .timeout = 120) {
  esk_test_require_pg();
  /* generation 1 of account_balances, as a first start with the default group makes it */
  PGconn *pg = esk_test_pg_connect();
  esk_generation_t g;
  esk_error_t err = {0};
  cr_assert_eq(esk_generation_live(&g, pg, schema, "account_balances",
                                   "esk.projection.account_balances", &err),
               ESK_OK, "%s", err.msg);
  PQfinish(pg);
  char args[512], out[8192];
  snprintf(args, sizeof(args),
           "--projection account_balances -X pg.schema=%s -X group.id=esk.test.other "
           "-X topic=esk.test.start.none",
           schema);
  int st = projector(args, out, sizeof(out));
  cr_assert_eq(st, 2, "exit %d (a configuration error is 2):\n%s", st, out);
  cr_assert(strstr(out, "group.id 'esk.test.other'"), "the message names the group asked for:\n%s",
            out);
  cr_assert(strstr(out, "'esk.projection.account_balances'"),
            "the message names the recorded group:\n%s", out);
  cr_assert(strstr(out, "eskctl projection rebuild account_balances"), "says how:\n%s", out);
  cr_assert(strstr(out, "new pg.schema"), "says how:\n%s", out);
  cr_assert(!strstr(out, "serving generation"), "it served a generation:\n%s", out);
}

Test(projector_start, a_bad_identifier_is_refused_naming_key_value_and_rule_before_postgresql,
     .init = setup, .fini = teardown, .timeout = 120) {
  char *file = write_file("name = start_ok\n[migration]\ncreate table start_ok (a text);\n"
                          "[on AccountOpened]\n$1 = meta.aggregate_id\n"
                          "insert into start_ok values ($1)\n");
  char long_schema[64];
  memset(long_schema, 's', 55);
  long_schema[55] = '\0';
  struct {
    const char *args, *needles[3];
  } cases[] = {
      {"--projection account_balances -X 'pg.schema=x\"; drop table t; --'",
       {"for pg.schema", "'x\"; drop table t; --'", "[a-z_][a-z0-9_]*"}},
      {"--projection account_balances -X pg.schema=Public",
       {"for pg.schema", "'Public'", "at most 63 characters"}},
      {"--projection-file %s -X 'projection=start ok'",
       {"for projection", "'start ok'", "[a-z_][a-z0-9_]*"}},
      {"--projection event_log -X pg.schema=%s",
       {"pg.schema 'sssss", "with projection 'event_log'", "at most 63 characters"}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    char args[1024], with[512], out[8192];
    snprintf(with, sizeof(with), cases[i].args, i == 2 ? file : long_schema);
    snprintf(args, sizeof(args), "%s -X 'pg.conninfo=" NO_PG "'", with);
    int st = projector(args, out, sizeof(out));
    cr_expect_eq(st, 2, "%s: exit %d (a configuration error is 2):\n%s", with, st, out);
    for (int k = 0; k < 3; k++)
      cr_expect(strstr(out, cases[i].needles[k]), "%s: output lacks %s:\n%s", with,
                cases[i].needles[k], out);
    cr_expect(!strstr(out, "42602") && !strstr(out, "retrying"),
              "%s: PostgreSQL was asked first:\n%s", with, out);
  }
  unlink(file);
}

Test(projector_start, the_command_line_alone_is_answered_with_exit_0_or_2_before_any_start,
     .timeout = 60) {
  struct {
    const char *args, *needle;
    int status;
  } cases[] = {
      {"--help", "usage: esk-projector", 0},
      {"--version", "esk-projector ", 0},
      {"--help-markdown", "| `pg.conninfo` |", 0},
      {"--no-such-option", "try --help", 2},
      {"--projection account_balances extra", "unexpected argument 'extra'", 2},
      {"--projection no_such_projection -X 'pg.conninfo=" NO_PG "'",
       "unknown projection 'no_such_projection': expected one of: account_balances", 2},
      {"--from-time yesterday -X 'pg.conninfo=" NO_PG "'", "--from-time:", 2},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    char out[65536];
    int st = projector(cases[i].args, out, sizeof(out));
    cr_expect_eq(st, cases[i].status, "%s: exit %d, not %d:\n%.2000s", cases[i].args, st,
                 cases[i].status, out);
    cr_expect(strstr(out, cases[i].needle), "%s: output lacks %s:\n%.2000s", cases[i].args,
              cases[i].needle, out);
  }
}
