/* eskctl schemas: list, show, fingerprint and check the event contract. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eskctl.h"
#include "esk/codec.h"
#include "esk/personal.h"

/* Without --dir: schemas/<domain> (relative to the current directory). */
static char default_dir[128];
/* --domain, default $ESK_DOMAIN or bank: whose upcasters check registers. */
static const char *domain_name = "bank";

static void usage(FILE *f) {
  fprintf(f,
          "usage: eskctl schemas [--dir DIR] [--domain D] COMMAND\n"
          "\n"
          "commands:\n"
          "  list                 every type and version: file, fingerprint\n"
          "  show TYPE[.vN]       the schema's Parsing Canonical Form and fingerprint\n"
          "                       (latest version without .vN)\n"
          "  fingerprint FILE     CRC-64-AVRO of FILE's canonical form, 16 hex digits,\n"
          "                       most significant first (Java's parsingFingerprint64)\n"
          "  check [DIR]          for every type, the newest version must read every older\n"
          "                       one (resolution plus the domain's upcasters), and every\n"
          "                       version must mark the same fields personal (esk.personal);\n"
          "                       exits 1 naming the type, the versions and the field when not\n"
          "\n"
          "DIR defaults to schemas/D (relative to the current directory); D, the domain\n"
          "whose upcasters check uses (loaded from D.so, see eskctl --help), defaults to\n"
          "$ESK_DOMAIN or bank.\n"
          "Each command takes --help.\n");
}

static int load(esk_schema_set_t **out, const char *dir) {
  esk_error_t err = {0};
  esk_schema_set_t *set = NULL;
  if (esk_schema_set_new(&set, &err) || esk_schema_set_load_dir(set, dir, &err)) {
    fprintf(stderr, "eskctl schemas: %s\n", err.msg);
    esk_schema_set_destroy(set);
    return 1;
  }
  *out = set;
  return 0;
}

/* Handles a lone --help / -h for a subcommand. */
static int wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

static int cmd_list(const char *dir, int argc, char **argv) {
  if (wants_help(argc, argv)) {
    printf("usage: eskctl schemas list\nPrints TYPE vN FINGERPRINT FILE for every schema in the directory.\n");
    return 0;
  }
  esk_schema_set_t *set;
  if (load(&set, dir)) return 1;
  for (size_t i = 0; i < esk_schema_set_count(set); i++) {
    const esk_schema_t *s = esk_schema_set_at(set, i);
    printf("%-20s v%-3d %016llx  %s\n", esk_schema_type(s), esk_schema_version(s),
           (unsigned long long)esk_schema_fingerprint(s), esk_schema_file(s));
  }
  esk_schema_set_destroy(set);
  return 0;
}

static int cmd_show(const char *dir, int argc, char **argv) {
  if (wants_help(argc, argv) || argc != 2) {
    printf("usage: eskctl schemas show TYPE[.vN]\n"
           "Prints the file, fingerprint and Parsing Canonical Form of TYPE at version N\n"
           "(the latest when .vN is left out).\n");
    return argc == 2 ? 0 : 2;
  }
  esk_schema_set_t *set;
  if (load(&set, dir)) return 1;
  char *type = strdup(argv[1]);
  if (!type) {
    fprintf(stderr, "eskctl schemas show: out of memory\n");
    esk_schema_set_destroy(set);
    return 1;
  }
  int version = 0;
  char *v = strstr(type, ".v");
  if (v) {
    char *end;
    long n = strtol(v + 2, &end, 10);
    if (*end || n <= 0 || n > 1000000) {
      fprintf(stderr, "eskctl schemas show: '%s': expected TYPE or TYPE.vN\n", argv[1]);
      free(type);
      esk_schema_set_destroy(set);
      return 2;
    }
    *v = 0;
    version = (int)n;
  }
  const esk_schema_t *s =
      version ? esk_schema_set_get(set, type, version) : esk_schema_set_latest(set, type);
  int rc = 0;
  if (!s) {
    fprintf(stderr, "eskctl schemas show: no schema %s in %s\n", argv[1], dir);
    rc = 1;
  } else {
    printf("file: %s\ntype: %s\nversion: %d\nfingerprint: %016llx\ncanonical: %s\n",
           esk_schema_file(s), esk_schema_type(s), esk_schema_version(s),
           (unsigned long long)esk_schema_fingerprint(s), esk_schema_canonical(s));
  }
  free(type);
  esk_schema_set_destroy(set);
  return rc;
}

static int cmd_fingerprint(const char *dir, int argc, char **argv) {
  if (wants_help(argc, argv) || argc != 2) {
    printf("usage: eskctl schemas fingerprint FILE\n"
           "Prints the CRC-64-AVRO fingerprint of FILE's Parsing Canonical Form as 16\n"
           "lowercase hex digits, most significant first. Named types FILE references\n"
           "are looked up in the schema directory when FILE does not define them.\n");
    return argc == 2 ? 0 : 2;
  }
  const char *path = argv[1];
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  if (!mem) {
    perror("eskctl schemas fingerprint: open_memstream");
    fclose(f);
    return 1;
  }
  char chunk[8192];
  size_t got;
  while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) fwrite(chunk, 1, got, mem);
  fclose(f);
  fclose(mem);

  /* named types the file does not define come from the schema directory */
  esk_error_t err = {0};
  esk_schema_set_t *set = NULL;
  char *pcf = NULL;
  int rc = 0;
  if (esk_schema_set_new(&set, &err) || esk_schema_set_load_dir(set, dir, &err) ||
      esk_schema_set_canonical_form(set, &pcf, text, &err)) {
    fprintf(stderr, "eskctl schemas fingerprint: %s: %s\n", path, err.msg);
    rc = 1;
  } else {
    printf("%016llx\n", (unsigned long long)esk_avro_crc64(pcf, strlen(pcf)));
  }
  esk_schema_set_destroy(set);
  free(pcf);
  free(text);
  return rc;
}

static int cmd_check(const char *dir, int argc, char **argv) {
  if (wants_help(argc, argv) || argc > 2) {
    printf("usage: eskctl schemas check [DIR]\n"
           "Loads every DIR/<Type>.v<N>.avsc (default %s) and checks that, for every\n"
           "type, the newest version can read each older version: Avro resolution plus\n"
           "the upcasters of the domain (--domain), and that a field's personal mark\n"
           "(esk.personal: personal or not, and its subject) is the same in every version;\n"
           "loading refuses a malformed mark. Lists each personal field. Exits 0 when all\n"
           "is well, 1 naming the type, the versions and the field of each problem.\n",
           default_dir);
    return argc > 2 ? 2 : 0;
  }
  if (argc == 2) dir = argv[1];
  esk_schema_set_t *set;
  if (load(&set, dir)) return 1;
  esk_codec_t *codec = NULL;
  esk_error_t err = {0};
  int failed = 0, pairs = 0;
  if (esk_codec_new(&codec, set, NULL, &err)) {
    fprintf(stderr, "eskctl schemas check: %s\n", err.msg);
    esk_schema_set_destroy(set);
    return 1;
  }
  const esk_domain_t *d = eskctl_domain_find(domain_name, "schemas check");
  if (!d) {
    esk_codec_destroy(codec);
    esk_schema_set_destroy(set);
    return 1;
  }
  int urc = d->register_upcasters(codec, &err);
  if (urc == ESK_ENOTFOUND)
    printf("note: %s upcasters not registered: %s\n", d->name, err.msg);
  else if (urc)
    failed = 1, fprintf(stderr, "eskctl schemas check: %s\n", err.msg);
  for (size_t i = 0; i < esk_schema_set_count(set); i++) {
    const esk_schema_t *s = esk_schema_set_at(set, i);
    const esk_schema_t *latest = esk_schema_set_latest(set, esk_schema_type(s));
    size_t np;
    const esk_personal_field_t *pf = esk_schema_personal(s, &np);
    for (size_t k = 0; k < np; k++)
      printf("personal %s v%d %s (subject %s, forgotten %s)\n", esk_schema_type(s),
             esk_schema_version(s), pf[k].name, pf[k].subject, pf[k].forgotten_json);
    /* against every later version (sorted by type, then version) */
    for (size_t j = i + 1; j < esk_schema_set_count(set); j++) {
      const esk_schema_t *later = esk_schema_set_at(set, j);
      if (strcmp(esk_schema_type(later), esk_schema_type(s))) break;
      if (esk_personal_check_versions(s, later, &err)) {
        printf("FAIL %s\n", err.msg);
        failed = 1;
      }
    }
    if (s == latest) continue;
    pairs++;
    if (esk_codec_check_readable(codec, s, latest, &err)) {
      printf("FAIL %s\n", err.msg);
      failed = 1;
    } else {
      printf("ok   %s v%d reads v%d\n", esk_schema_type(s), esk_schema_version(latest),
             esk_schema_version(s));
    }
  }
  printf("%s: %zu schemas, %d older versions checked, %s\n", dir, esk_schema_set_count(set),
         pairs, failed ? "FAILED" : "all readable");
  esk_codec_destroy(codec);
  esk_schema_set_destroy(set);
  return failed;
}

int eskctl_schemas_main(int argc, char **argv) {
  const char *dir = NULL, *env = getenv("ESK_DOMAIN");
  if (env && *env) domain_name = env;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
      dir = argv[++i];
    } else if (!strncmp(argv[i], "--dir=", 6)) {
      dir = argv[i] + 6;
    } else if (!strcmp(argv[i], "--domain") && i + 1 < argc) {
      domain_name = argv[++i];
    } else if (!strncmp(argv[i], "--domain=", 9)) {
      domain_name = argv[i] + 9;
    } else {
      fprintf(stderr, "eskctl schemas: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  snprintf(default_dir, sizeof(default_dir), "schemas/%.100s", domain_name);
  if (!dir) dir = default_dir;
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[i];
  argc -= i;
  argv += i;
  if (!strcmp(cmd, "list")) return cmd_list(dir, argc, argv);
  if (!strcmp(cmd, "show")) return cmd_show(dir, argc, argv);
  if (!strcmp(cmd, "fingerprint")) return cmd_fingerprint(dir, argc, argv);
  if (!strcmp(cmd, "check")) return cmd_check(dir, argc, argv);
  fprintf(stderr, "eskctl schemas: unknown command '%s' (try eskctl schemas --help)\n", cmd);
  return 2;
}
