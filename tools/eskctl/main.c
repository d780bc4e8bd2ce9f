/* eskctl — the operator's tool. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/conf.h"
#include "esk/domain_lib.h"
#include "esk/error.h"
#include "esk/kafka.h"
#include "esk/pg.h"
#include "esk/watchdog.h"
#include "eskctl.h"

/* What eskctl reads, for docs/configuration.md: eskctl has no config file and
 * no -X; it reads these keys from their environment variables only. */
static const esk_conf_prop_t eskctl_props[] = {
    {"kafka.bootstrap.servers", ESK_CONF_STRING, ESK_DEFAULT_KAFKA_BOOTSTRAP, 0, 0, NULL,
     "ESK_KAFKA_BOOTSTRAP", "Kafka brokers (host:port, comma-separated); environment only."},
    {"pg.conninfo", ESK_CONF_STRING, ESK_DEFAULT_PG_CONNINFO, 0, 0, NULL, "ESK_PG_CONNINFO",
     "libpq connection string; environment only."},
    {"domain.dir", ESK_CONF_STRING, ESK_DOMAIN_DIR_DEFAULT, 0, 0, NULL, "ESK_DOMAIN_DIR",
     "Directory of the domain shared objects: --domain D loads D.so from it; a leading $ORIGIN "
     "is the directory of the eskctl binary; environment only."},
    {"personal.master_key_file", ESK_CONF_STRING, "", 0, 0, NULL, "ESK_MASTER_KEY_FILE",
     "The master key file (docs/architecture.md, \"Personal data\"): events tail decrypts "
     "personal fields with the keys of the domain's subject-keys topic; environment only."},
    {"shutdown.timeout.ms", ESK_CONF_INT, "40000", 1000, 3600000, NULL, "ESK_SHUTDOWN_TIMEOUT_MS",
     "Longest time from SIGINT/SIGTERM to the end of events tail or projection rebuild (which "
     "stops its esk-projector first); past it eskctl names what it waited for and exits 3; "
     "environment only."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

int eskctl_watchdog(volatile sig_atomic_t *flag, const char *cmd) {
  static const esk_conf_prop_t *const tables[] = {esk_watchdog_props};
  const char *env = getenv("ESK_SHUTDOWN_TIMEOUT_MS");
  esk_conf_t *c = NULL;
  esk_error_t err = {0};
  int rc = esk_conf_new(&c, tables, 1, &err);
  if (!rc)
    rc = esk_conf_set(c, "shutdown.timeout.ms", env && *env ? env : "40000",
                      env && *env ? "ESK_SHUTDOWN_TIMEOUT_MS" : "eskctl's default", &err);
  if (!rc) rc = esk_watchdog_start(c, flag, &err);
  if (rc) fprintf(stderr, "%s: %s\n", cmd, err.msg);
  esk_conf_destroy(c);
  return rc ? 1 : 0;
}

volatile sig_atomic_t eskctl_interrupted;

static void on_signal(int sig) {
  (void)sig;
  eskctl_interrupted = 1;
}

int eskctl_interruptible(const char *cmd) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  return eskctl_watchdog(&eskctl_interrupted, cmd);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: eskctl [--version] [--help] [--help-markdown] COMMAND [ARGS]\n"
          "\n"
          "commands:\n"
          "  ping [--timeout MS]   check that the Kafka broker and PostgreSQL answer\n"
          "  schemas ...           list, show, fingerprint and check the Avro schemas\n"
          "  topics create ...     create a domain's topics (commands, events, results, snapshots)\n"
          "  acls apply|show ...   least-privilege ACLs of each role on a secured cluster\n"
          "  submit --file F ...   send commands (JSON lines) and print their results\n"
          "  events tail ...       print a domain's events decoded to JSON lines\n"
          "  subjects forget D S   forget data subject S of domain D: destroy its keys\n"
          "  subjects export D S   every event that concerns subject S, decrypted\n"
          "  projection rebuild NAME  blue-green rebuild of a read model from offset 0\n"
          "  projection drop-generation NAME GEN  drop a retired generation\n"
          "  projection status     positions, lag, state and dead letters of the projections\n"
          "\n"
          "environment:\n"
          "  ESK_KAFKA_BOOTSTRAP   Kafka bootstrap servers (default %s)\n"
          "  ESK_PG_CONNINFO       libpq connection string (default '%s')\n"
          "  ESK_DOMAIN            default of --domain (bank)\n"
          "  ESK_DOMAIN_DIR        where --domain D finds D.so (default %s)\n"
          "  ESK_TOPIC_PREFIX      default of --topic-prefix (none)\n"
          "  ESK_MASTER_KEY_FILE   the master key file: events tail decrypts personal fields\n"
          "  ESK_KAFKA_SECURITY_PROTOCOL, ESK_KAFKA_SASL_MECHANISMS, ESK_KAFKA_SASL_USERNAME,\n"
          "  ESK_KAFKA_SASL_PASSWORD_FILE, ESK_KAFKA_SSL_CA_LOCATION\n"
          "                        a secured cluster (docs/deployment.md); the password\n"
          "                        is read from the file, never given itself\n"
          "\n"
          "`deploy/local/stack env` prints them for the local stack.\n"
          "--help-markdown prints them as the Markdown table of docs/configuration.md.\n",
          ESK_DEFAULT_KAFKA_BOOTSTRAP, ESK_DEFAULT_PG_CONNINFO, ESK_DOMAIN_DIR_DEFAULT);
}

static int cmd_ping(int argc, char **argv) {
  int timeout_ms = 5000;
  static const struct option opts[] = {{"timeout", required_argument, NULL, 't'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
    switch (c) {
    case 't': {
      long v;
      if (eskctl_parse_long(&v, "ping", "--timeout", optarg, 1, 600000,
                            "milliseconds in 1..600000"))
        return 2;
      timeout_ms = (int)v;
      break;
    }
    case 'h':
      printf("usage: eskctl ping [--timeout MS]\n"
             "Asks the Kafka broker for metadata and PostgreSQL for its version;\n"
             "exits 0 when both answer, 1 otherwise.\n");
      return 0;
    default:
      return 2;
    }
  }

  int failed = 0;
  esk_error_t err = {0};
  const char *bootstrap = esk_conf_env_kafka_bootstrap();
  if (esk_kafka_check_broker(bootstrap, timeout_ms, &err) == ESK_OK) {
    printf("kafka: ok, a broker answers at %s (librdkafka %s)\n", bootstrap,
           rd_kafka_version_str());
  } else {
    printf("kafka: FAILED: %s\n", err.msg);
    failed = 1;
  }

  PGconn *pg = NULL;
  if (esk_pg_connect(&pg, NULL, &err) == ESK_OK) {
    PGresult *r = PQexec(pg, "select version()");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      printf("postgresql: ok, %s\n", PQgetvalue(r, 0, 0));
    } else {
      printf("postgresql: FAILED: select version(): %s", PQerrorMessage(pg));
      failed = 1;
    }
    PQclear(r);
    PQfinish(pg);
  } else {
    printf("postgresql: FAILED: %s\n", err.msg);
    failed = 1;
  }
  return failed;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--help-markdown")) {
    const esk_conf_prop_t *const tables[] = {eskctl_props, esk_conf_kafka_security_props};
    esk_conf_print_markdown(stdout, tables, 2);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    printf("eskctl %s (librdkafka %s, libpq %d)\n", ESK_VERSION, rd_kafka_version_str(),
           PQlibVersion());
    return 0;
  }
  if (!strcmp(cmd, "ping")) return cmd_ping(argc - 1, argv + 1);
  if (!strcmp(cmd, "schemas")) return eskctl_schemas_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "topics")) return eskctl_topics_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "acls")) return eskctl_acls_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "submit")) return eskctl_submit_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "events")) return eskctl_events_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "subjects")) return eskctl_subjects_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "projection") && argc > 2 && !strcmp(argv[2], "rebuild"))
    return eskctl_rebuild_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "projection") && argc > 2 && !strcmp(argv[2], "drop-generation"))
    return eskctl_drop_generation_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "projection")) return eskctl_projection_main(argc - 1, argv + 1);
  fprintf(stderr, "eskctl: unknown command '%s' (try eskctl --help)\n", cmd);
  return 2;
}
