/* eskctl topics create: a domain's topics, co-partitioned. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/conf.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "eskctl.h"

#define CMD "topics create"

static void usage(FILE *f) {
  fprintf(f,
          "usage: eskctl topics create --partitions N [--replication-factor R] [--domain D]\n"
          "                            [--topic-prefix P] [--timeout MS]\n"
          "                            [--compaction-lag-ms MS] [--commands-retention-ms MS]\n"
          "\n"
          "Creates <P><D>.commands, <P><D>.events, <P><D>.command-results,\n"
          "<P><D>.snapshots and <P><D>.subject-keys, all with N partitions (commands and\n"
          "events co-partitioned; the others follow the same numbering):\n"
          "  events     retention.ms=-1, retention.bytes=-1 (kept forever)\n"
          "  snapshots  cleanup.policy=compact (the latest snapshot per aggregate),\n"
          "             segment.bytes=16777216, segment.ms and max.compaction.lag.ms of\n"
          "             3600000: the cleaner compacts all but the newest 16 MiB or hour,\n"
          "             so a restore reads about the aggregates, not their history\n"
          "  subject-keys  cleanup.policy=compact with max.compaction.lag.ms, segment.ms\n"
          "             and delete.retention.ms of MS (default 3600000, one hour) and\n"
          "             min.cleanable.dirty.ratio=0.01: a destroyed personal data key\n"
          "             leaves the segment files within about MS plus the broker's\n"
          "             log.cleaner.backoff.ms (docs/architecture.md, \"Personal data\")\n"
          "  commands   retention.ms of MS (default 86400000, one day) and segment.ms of\n"
          "             one hour (or MS, if less): commands carry personal data in\n"
          "             plaintext, which so stays on disk at most about MS plus an hour.\n"
          "             A command not handled within MS is lost: keep the producers up.\n"
          "  command-results  the broker's default retention\n"
          "R replicas per partition (default: the broker's default.replication.factor;\n"
          "in production 3, with the brokers' min.insync.replicas=2, so that a committed\n"
          "event survives the loss of a broker).\n"
          "A topic that exists already is left as it is if it has N partitions; any\n"
          "other count is an error (exit 1). D defaults to $ESK_DOMAIN or bank, P to\n"
          "$ESK_TOPIC_PREFIX or nothing; the broker is $ESK_KAFKA_BOOTSTRAP.\n"
          "Every option, and every topic name P and D make, is checked before the\n"
          "broker is contacted: a bad one exits 2 naming it.\n");
}

/* The domain's topics, in the order they are created. */
static const char *const topic_kinds[] = {"commands", "events", "command-results", "snapshots",
                                          "subject-keys"};

/* What the command line asks for. */
typedef struct {
  eskctl_common_t c;
  long partitions, replication; /* replication -1: the broker's default */
  int timeout_ms;
  long lag_ms; /* subject-keys: how long a destroyed key may stay on disk */
  long commands_ms; /* commands: how long their plaintext may stay */
} topics_opts_t;

/* The command line into @p o: -1 to go on, else the exit status. */
static int topics_parse(topics_opts_t *o, int argc, char **argv) {
  static const struct option opts[] = {{"partitions", required_argument, NULL, 'p'},
                                       {"replication-factor", required_argument, NULL, 'r'},
                                       {"domain", required_argument, NULL, 'd'},
                                       {"topic-prefix", required_argument, NULL, 'P'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"compaction-lag-ms", required_argument, NULL, 'L'},
                                       {"commands-retention-ms", required_argument, NULL, 'C'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int ch;
  eskctl_common_init(&o->c);
  o->replication = -1;
  o->timeout_ms = 15000;
  o->lag_ms = 3600000;
  o->commands_ms = 86400000;
  optind = 1;
  while ((ch = getopt_long(argc - 1, argv + 1, "p:r:d:P:t:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'p':
      if (eskctl_parse_long(&o->partitions, CMD, "--partitions", optarg, 1, 10000, "1..10000"))
        return 2;
      break;
    case 'r':
      if (eskctl_parse_long(&o->replication, CMD, "--replication-factor", optarg, 1, 32767,
                            "1..32767"))
        return 2;
      break;
    case 'd': o->c.domain_name = optarg; break;
    case 'P': o->c.prefix = optarg; break;
    case 't':
      if (eskctl_parse_ms(CMD, "--timeout", optarg, &o->timeout_ms)) return 2;
      break;
    case 'L':
      if (eskctl_parse_long(&o->lag_ms, CMD, "--compaction-lag-ms", optarg, 1000, 604800000,
                            "1000..604800000"))
        return 2;
      break;
    case 'C':
      if (eskctl_parse_long(&o->commands_ms, CMD, "--commands-retention-ms", optarg, 60000,
                            2592000000L, "60000..2592000000"))
        return 2;
      break;
    case 'h': usage(stdout); return 0;
    default: return 2;
    }
  }
  if (optind < argc - 1) {
    fprintf(stderr, "eskctl topics create: unexpected argument '%s'\n", argv[optind + 1]);
    return 2;
  }
  if (!o->partitions) {
    fprintf(stderr, "eskctl topics create: --partitions N is required\n");
    return 2;
  }
  if (!(o->c.domain = eskctl_domain_find(o->c.domain_name, CMD))) return 2;
  /* every topic name is checked here, before any connection, so that a bad
   * --topic-prefix is refused at once even with no broker to reach */
  char name[256];
  for (size_t i = 0; i < sizeof(topic_kinds) / sizeof(topic_kinds[0]); i++)
    if (eskctl_topic(name, sizeof(name), &o->c, topic_kinds[i])) return 2;
  return -1;
}

/* Creates topic @p kind of the domain with @p configs, or checks the one that
 * exists, and waits until the metadata shows it, so that the next client to
 * start sees it. @returns 0, or 1 after a message. */
static int create_one(rd_kafka_t *rk, const topics_opts_t *o, const char *kind,
                      const char *const *configs) {
  esk_error_t err = {0};
  char name[256];
  int created = 0, count = 0, rc;
  if (eskctl_topic(name, sizeof(name), &o->c, kind)) return 1;
  if (esk_kafka_create_topic(rk, name, (int)o->partitions, (int)o->replication, configs,
                             o->timeout_ms, &created, &err)) {
    fprintf(stderr, "eskctl topics create: %s\n", err.msg);
    return 1;
  }
  for (int waited = 0;
       (rc = esk_kafka_partition_count(rk, name, o->timeout_ms, &count, &err)) == ESK_ENOTFOUND &&
       waited < o->timeout_ms;
       waited += 100)
    esk_time_sleep_ms(100);
  if (rc) {
    fprintf(stderr, "eskctl topics create: %s\n", err.msg);
    return 1;
  }
  if (!created && count != o->partitions) {
    fprintf(stderr,
            "eskctl topics create: topic %s exists with %d partitions, not %ld: the "
            "domain's topics must be co-partitioned\n",
            name, count, o->partitions);
    return 1;
  }
  printf("%s %s (%ld partitions)\n", created ? "created" : "exists ", name, o->partitions);
  return 0;
}

int eskctl_topics_main(int argc, char **argv) {
  int st = eskctl_verb(argc, argv, "create", usage);
  if (st >= 0) return st;
  topics_opts_t o = {0};
  if ((st = topics_parse(&o, argc, argv)) >= 0) return st;
  static const char *const forever[] = {"retention.ms", "-1", "retention.bytes", "-1", NULL};
  char lag[24], cmd_ms[24], cmd_seg[24];
  snprintf(lag, sizeof(lag), "%ld", o.lag_ms);
  snprintf(cmd_ms, sizeof(cmd_ms), "%ld", o.commands_ms);
  snprintf(cmd_seg, sizeof(cmd_seg), "%ld", o.commands_ms < 3600000 ? o.commands_ms : 3600000);
  const char *const commands[] = {"retention.ms", cmd_ms, "segment.ms", cmd_seg, NULL};
  const char *const keys[] = {"cleanup.policy",        "compact", "min.cleanable.dirty.ratio",
                              "0.01",                  "max.compaction.lag.ms", lag,
                              "segment.ms",            lag,      "delete.retention.ms",
                              lag,                     NULL};
  /* by topic_kinds */
  const char *const *configs[] = {commands, forever, NULL, esk_kafka_snapshots_config, keys};
  esk_error_t err = {0};
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_t *rk = NULL;
  char errstr[256];
  if (esk_kafka_conf_new(&conf, RD_KAFKA_PRODUCER, NULL, &err)) {
    fprintf(stderr, "eskctl topics create: %s\n", err.msg);
    return 1;
  }
  if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)))) {
    fprintf(stderr, "eskctl topics create: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  int status = 0;
  if (esk_kafka_check_broker(NULL, o.timeout_ms, &err)) {
    fprintf(stderr, "eskctl topics create: %s\n", err.msg);
    status = 1;
  }
  for (size_t i = 0; !status && i < sizeof(topic_kinds) / sizeof(topic_kinds[0]); i++)
    status = create_one(rk, &o, topic_kinds[i], configs[i]);
  rd_kafka_destroy(rk);
  return status;
}
