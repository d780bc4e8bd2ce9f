/* tools/eskctl acls: the least-privilege table (--dry-run, no broker) and the
 * refusal of bad arguments. Against a secured cluster: tests/secure/. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define ESKCTL ESK_BINARY_DIR "/bin/eskctl"

/* eskctl ARGS with stdout and stderr in @p out; returns the exit status. */
static int eskctl(const char *args, char *out, size_t size) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), ESKCTL " %s 2>&1", args);
  FILE *p = popen(cmd, "r");
  cr_assert(p, "%s", cmd);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  cr_assert(WIFEXITED(st), "%s", cmd);
  return WEXITSTATUS(st);
}

static int lines_with(const char *out, const char *needle) {
  int n = 0;
  for (const char *s = out; (s = strstr(s, needle)); s++) n++;
  return n;
}

Test(eskctl_acls, the_table_grants_each_role_only_what_it_needs) {
  static char out[65536];
  cr_assert_eq(eskctl("acls apply --dry-run --domain bank --topic-prefix r1.", out, sizeof(out)),
               0, "%s", out);
  const char *want[] = {
      "User:producer ALLOW READ TOPIC LITERAL r1.bank.commands\n",
      "User:producer ALLOW WRITE TOPIC LITERAL r1.bank.events\n",
      "User:producer ALLOW WRITE TOPIC LITERAL r1.bank.command-results\n",
      "User:producer ALLOW READ TOPIC LITERAL r1.bank.command-results\n",
      "User:producer ALLOW WRITE TOPIC LITERAL r1.bank.snapshots\n",
      "User:producer ALLOW WRITE TOPIC LITERAL r1.bank.subject-keys\n",
      "User:projector ALLOW READ TOPIC LITERAL r1.bank.subject-keys\n",
      "User:tools ALLOW WRITE TOPIC LITERAL r1.bank.subject-keys\n",
      "User:producer ALLOW READ GROUP LITERAL r1.esk.bank.command-handlers\n",
      "User:producer ALLOW WRITE TRANSACTIONAL_ID PREFIXED r1.esk-producer.bank.\n",
      "User:projector ALLOW READ TOPIC LITERAL r1.bank.events\n",
      "User:projector ALLOW WRITE TOPIC PREFIXED r1.bank.events.dlq.\n",
      "User:projector ALLOW READ GROUP PREFIXED esk.projection.\n",
      "User:tools ALLOW CREATE TOPIC LITERAL r1.bank.commands\n",
      "User:gateway ALLOW WRITE TOPIC LITERAL r1.bank.commands\n",
      "User:gateway ALLOW READ TOPIC LITERAL r1.bank.command-results\n",
      "User:gateway ALLOW READ TOPIC LITERAL r1.bank.events\n",
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    cr_assert(strstr(out, want[i]), "missing %s in:\n%s", want[i], out);
  /* least privilege: the projector writes only its dead letters, the gateway
   * writes only commands (it reads the events partitions' ends for its tokens),
   * esk-query (PostgreSQL only) has nothing, no DENY, no ALL */
  cr_assert_eq(lines_with(out, "User:projector ALLOW WRITE"), 1, "%s", out);
  cr_assert_eq(lines_with(out, "User:gateway ALLOW WRITE"), 1, "%s", out);
  cr_assert(strstr(out, "User:gateway ALLOW WRITE TOPIC LITERAL r1.bank.commands\n"), "%s", out);
  cr_assert_eq(lines_with(out, "User:query"), 0, "%s", out);
  cr_assert_eq(lines_with(out, " DENY "), 0, "%s", out);
  cr_assert_eq(lines_with(out, " ALL "), 0, "%s", out);
  cr_assert_eq(lines_with(out, "CLUSTER"), 0, "%s", out);
  cr_assert_eq(lines_with(out, "BROKER"), 0, "%s", out);
}

Test(eskctl_acls, user_names_replace_the_role_names) {
  static char out[65536];
  cr_assert_eq(eskctl("acls apply --dry-run --domain bank --user producer=svc-writer", out,
                      sizeof(out)),
               0, "%s", out);
  cr_assert(strstr(out, "User:svc-writer ALLOW READ TOPIC LITERAL bank.commands\n"), "%s", out);
  cr_assert_eq(lines_with(out, "User:producer"), 0, "%s", out);
}

Test(eskctl_acls, bad_arguments_are_refused_naming_them) {
  char out[4096];
  cr_assert_eq(eskctl("acls apply --dry-run --user boss=x", out, sizeof(out)), 2, "%s", out);
  cr_assert(strstr(out, "--user 'boss=x'"), "%s", out);
  cr_assert_eq(eskctl("acls apply --dry-run --user producer=", out, sizeof(out)), 2, "%s", out);
  cr_assert_eq(eskctl("acls apply --dry-run --domain 'bad/domain'", out, sizeof(out)), 2, "%s",
               out);
  cr_assert(strstr(out, "bad/domain"), "%s", out);
  cr_assert_eq(eskctl("acls apply --dry-run extra", out, sizeof(out)), 2, "%s", out);
  cr_assert_eq(eskctl("acls frobnicate", out, sizeof(out)), 2, "%s", out);
  cr_assert_eq(eskctl("acls --help", out, sizeof(out)), 0, "%s", out);
  cr_assert(strstr(out, "docs/deployment.md"), "%s", out);
  char big[700];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  char args[1024];
  snprintf(args, sizeof(args), "acls apply --dry-run --domain %s", big);
  cr_assert_eq(eskctl(args, out, sizeof(out)), 2, "%s", out);
}
