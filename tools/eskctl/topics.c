/* eskctl topics create: a domain's four topics, co-partitioned. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "eskctl.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: eskctl topics create --partitions N [--replication-factor R] [--domain D]\n"
          "                            [--topic-prefix P] [--timeout MS]\n"
          "\n"
          "Creates <P><D>.commands, <P><D>.events, <P><D>.command-results and\n"
          "<P><D>.snapshots, all with N partitions (commands and events co-partitioned;\n"
          "results and snapshots follow the same numbering):\n"
          "  events     retention.ms=-1, retention.bytes=-1 (kept forever)\n"
          "  snapshots  cleanup.policy=compact (the latest snapshot per aggregate)\n"
          "  commands, command-results  the broker's default retention\n"
          "R replicas per partition (default: the broker's default.replication.factor;\n"
          "in production 3, with the brokers' min.insync.replicas=2, so that a committed\n"
          "event survives the loss of a broker).\n"
          "A topic that exists already is left as it is if it has N partitions; any\n"
          "other count is an error (exit 1). D defaults to $ESK_DOMAIN or bank, P to\n"
          "$ESK_TOPIC_PREFIX or nothing; the broker is $ESK_KAFKA_BOOTSTRAP.\n");
}

int eskctl_topics_main(int argc, char **argv) {
  int st = eskctl_verb(argc, argv, "create", usage);
  if (st >= 0) return st;
  eskctl_common_t c;
  eskctl_common_init(&c);
  long partitions = 0, replication = -1;
  int timeout_ms = 15000;
  static const struct option opts[] = {{"partitions", required_argument, NULL, 'p'},
                                       {"replication-factor", required_argument, NULL, 'r'},
                                       {"domain", required_argument, NULL, 'd'},
                                       {"topic-prefix", required_argument, NULL, 'P'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int o;
  optind = 1;
  while ((o = getopt_long(argc - 1, argv + 1, "p:r:d:P:t:h", opts, NULL)) != -1) {
    switch (o) {
    case 'p': {
      char *end;
      partitions = strtol(optarg, &end, 10);
      if (!*optarg || *end || partitions < 1 || partitions > 10000) {
        fprintf(stderr, "eskctl topics create: --partitions '%s': expected 1..10000\n", optarg);
        return 2;
      }
      break;
    }
    case 'r': {
      char *end;
      replication = strtol(optarg, &end, 10);
      if (!*optarg || *end || replication < 1 || replication > 32767) {
        fprintf(stderr, "eskctl topics create: --replication-factor '%s': expected 1..32767\n",
                optarg);
        return 2;
      }
      break;
    }
    case 'd': c.domain_name = optarg; break;
    case 'P': c.prefix = optarg; break;
    case 't':
      if (eskctl_parse_ms("topics create", "--timeout", optarg, &timeout_ms)) return 2;
      break;
    case 'h': usage(stdout); return 0;
    default: return 2;
    }
  }
  if (optind < argc - 1) {
    fprintf(stderr, "eskctl topics create: unexpected argument '%s'\n", argv[optind + 1]);
    return 2;
  }
  if (!partitions) {
    fprintf(stderr, "eskctl topics create: --partitions N is required\n");
    return 2;
  }
  if (!(c.domain = eskctl_domain_find(c.domain_name, "topics create"))) return 2;

  static const char *const forever[] = {"retention.ms", "-1", "retention.bytes", "-1", NULL};
  static const char *const compact[] = {"cleanup.policy", "compact", NULL};
  const struct {
    const char *kind;
    const char *const *configs;
  } topics[] = {{"commands", NULL}, {"events", forever}, {"command-results", NULL},
                {"snapshots", compact}};
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_t *rk = NULL;
  char errstr[256];
  int status = 1;
  if (esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err)) {
    fprintf(stderr, "eskctl topics create: %s\n", err.msg);
    return 1;
  }
  if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)))) {
    fprintf(stderr, "eskctl topics create: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  if (esk_kafka_check_broker(NULL, timeout_ms, &err)) {
    fprintf(stderr, "eskctl topics create: %s\n", err.msg);
    goto cleanup;
  }
  for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
    char name[256];
    int created = 0, count = 0;
    if (eskctl_topic(name, sizeof(name), &c, topics[i].kind)) goto cleanup;
    if (esk_kafka_create_topic(rk, name, (int)partitions, (int)replication, topics[i].configs, timeout_ms,
                               &created, &err)) {
      fprintf(stderr, "eskctl topics create: %s\n", err.msg);
      goto cleanup;
    }
    /* wait until the metadata shows it, so the next client to start sees it */
    int rc;
    for (int waited = 0;
         (rc = esk_kafka_partition_count(rk, name, timeout_ms, &count, &err)) == ESK_ENOTFOUND &&
         waited < timeout_ms;
         waited += 100)
      esk_time_sleep_ms(100);
    if (rc) {
      fprintf(stderr, "eskctl topics create: %s\n", err.msg);
      goto cleanup;
    }
    if (!created) {
      if (count != partitions) {
        fprintf(stderr,
                "eskctl topics create: topic %s exists with %d partitions, not %ld: the "
                "domain's topics must be co-partitioned\n",
                name, count, partitions);
        goto cleanup;
      }
    }
    printf("%s %s (%ld partitions)\n", created ? "created" : "exists ", name, partitions);
  }
  status = 0;
cleanup:
  rd_kafka_destroy(rk);
  return status;
}
