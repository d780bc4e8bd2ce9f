/* eskctl: the domains it knows, and what the Kafka subcommands share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_contract.h"
#include "esk/kafka.h"
#include "eskctl.h"

static const char *const bank_commands[] = {"OpenAccount", "DepositMoney", "WithdrawMoney",
                                            "CloseAccount", NULL};

static const eskctl_domain_t domains[] = {
    {"bank", esk_bank_schemas_load, esk_bank_register_upcasters, "account_id", bank_commands},
    {NULL, NULL, NULL, NULL, NULL},
};

const eskctl_domain_t *eskctl_domain_find(const char *name, const char *cmd) {
  for (const eskctl_domain_t *d = domains; d->name; d++)
    if (!strcmp(d->name, name)) return d;
  fprintf(stderr, "eskctl %s: unknown domain '%s' (known: bank)\n", cmd, name);
  return NULL;
}

int eskctl_domain_open(esk_schema_set_t **set, esk_codec_t **codec, const eskctl_domain_t *d,
                       const char *cmd) {
  esk_error_t err = {0};
  *set = NULL;
  *codec = NULL;
  if (esk_schema_set_new(set, &err) || d->load(*set, &err) ||
      esk_codec_new(codec, *set, NULL, &err) || d->upcasters(*codec, &err)) {
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
    fprintf(stderr, "eskctl: %s\n", err.msg);
    return 1;
  }
  return 0;
}

int eskctl_parse_ms(const char *cmd, const char *opt, const char *v, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (!*v || *end || x <= 0 || x > 3600000) {
    fprintf(stderr, "eskctl %s: %s '%s': expected milliseconds in 1..3600000\n", cmd, opt, v);
    return 1;
  }
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
