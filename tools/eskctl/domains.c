/* eskctl: the domains it knows, and what the Kafka subcommands share. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/domain_lib.h"
#include "esk/kafka.h"
#include "eskctl.h"

/* The domain loaded (one per process; never unloaded: what is made from it
 * may point into it until exit). */
static esk_domain_lib_t *loaded;

/* "bank, orders": the *.so files of @p dir, for a message. */
static const char *known_domains(char *buf, size_t size, const char *dir) {
  char path[4096];
  size_t off = 0;
  buf[0] = '\0';
  if (esk_domain_dir_resolve(path, sizeof(path), dir, NULL)) return "none";
  DIR *dh = opendir(path);
  if (!dh) return "none";
  struct dirent *e;
  while ((e = readdir(dh))) {
    size_t n = strlen(e->d_name);
    if (n <= 3 || strcmp(e->d_name + n - 3, ".so") || e->d_name[0] == '.') continue;
    int w = snprintf(buf + off, size - off, "%s%.*s", off ? ", " : "", (int)(n - 3), e->d_name);
    if (w < 0 || (size_t)w >= size - off) break;
    off += (size_t)w;
  }
  closedir(dh);
  return off ? buf : "none";
}

const esk_domain_t *eskctl_domain_find(const char *name, const char *cmd) {
  esk_error_t err = {0};
  const char *dir = getenv("ESK_DOMAIN_DIR");
  if (loaded) {
    if (!strcmp(esk_domain_lib_domain(loaded)->name, name)) return esk_domain_lib_domain(loaded);
    fprintf(stderr, "eskctl %s: one domain per process\n", cmd);
    return NULL;
  }
  int rc = esk_domain_lib_open(&loaded, dir, name, &err);
  if (rc == ESK_ENOTFOUND) {
    char known[1024];
    fprintf(stderr, "eskctl %s: unknown domain '%s': %s (known: %s; $ESK_DOMAIN_DIR sets the "
            "directory)\n", cmd, name, err.msg, known_domains(known, sizeof(known), dir));
    return NULL;
  }
  if (rc) {
    fprintf(stderr, "eskctl %s: %s\n", cmd, err.msg);
    return NULL;
  }
  return esk_domain_lib_domain(loaded);
}

int eskctl_domain_open(esk_schema_set_t **set, esk_codec_t **codec, const esk_domain_t *d,
                       const char *cmd) {
  esk_error_t err = {0};
  *set = NULL;
  *codec = NULL;
  if (esk_schema_set_new(set, &err) || d->load_schemas(*set, &err) ||
      esk_codec_new(codec, *set, NULL, &err) || d->register_upcasters(*codec, &err)) {
    fprintf(stderr, "eskctl %s: loading the %s contract: %s\n", cmd, d->name, err.msg);
    esk_codec_destroy(*codec);
    esk_schema_set_destroy(*set);
    *set = NULL;
    *codec = NULL;
    return 1;
  }
  return 0;
}

int eskctl_topic(char *buf, size_t size, const eskctl_common_t *c, const char *kind) {
  esk_error_t err = {0};
  if (esk_kafka_topic_name(buf, size, c->prefix, c->domain->name, kind, &err)) {
    fprintf(stderr, "eskctl: --topic-prefix '%s' with --domain %s: %s\n", c->prefix,
            c->domain->name, err.msg);
    return 1;
  }
  return 0;
}

int eskctl_parse_long(long *out, const char *cmd, const char *opt, const char *v, long min,
                      long max, const char *expected) {
  char *end;
  long x = strtol(v, &end, 10);
  if (!*v || *end || x < min || x > max) {
    fprintf(stderr, "eskctl %s: %s '%s': expected %s\n", cmd, opt, v, expected);
    return 1;
  }
  *out = x;
  return 0;
}

int eskctl_parse_ms(const char *cmd, const char *opt, const char *v, int *out) {
  long x;
  if (eskctl_parse_long(&x, cmd, opt, v, 1, 3600000, "milliseconds in 1..3600000")) return 1;
  *out = (int)x;
  return 0;
}

void eskctl_common_init(eskctl_common_t *c) {
  const char *p = getenv("ESK_TOPIC_PREFIX");
  const char *d = getenv("ESK_DOMAIN");
  c->prefix = p ? p : "";
  c->domain_name = d && *d ? d : "bank";
  c->domain = NULL;
}

int eskctl_verb(int argc, char **argv, const char *verb, void (*usage)(FILE *f)) {
  if (argc >= 2 && !strcmp(argv[1], verb)) return -1;
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return 0;
  }
  usage(stderr);
  return 2;
}
