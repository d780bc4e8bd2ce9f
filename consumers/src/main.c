/* esk-projector — runs one projection (read model) of one domain into
 * PostgreSQL. The domain's plug-in (domain=NAME, esk/domain_lib.h) gives the
 * contract that decodes and upcasts its events (domain_decoder.h).
 *
 *   esk-projector --projection NAME [-c FILE] [-X key=value ...]
 *
 * See docs/projector.md. */
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_decoder.h"
#include "esk/conf.h"
#include "esk/domain_lib.h"
#include "esk/http.h"
#include "esk/log.h"
#include "esk/metrics.h"
#include "esk/pg.h"
#include "esk/watchdog.h"
#include "esk/kafka.h"
#include "esk/time.h"
#include "loaded.h"
#include "projections.h"
#include "projector.h"
#include "serve.h"

static const esk_conf_prop_t decoder_props[] = {
    {"decode.max.bytes", ESK_CONF_INT, "1048576", 64, 64 << 20, NULL, NULL,
     "Largest event value decoded; a larger one is a poison event."},
    ESK_DOMAIN_DIR_PROP,
    {"personal.master_key_file", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "File holding the master key (64 hex digits, readable by its owner only) that unwraps the "
     "subject keys of personal data: personal fields (esk.personal in the schemas) are "
     "decrypted before the projection sees them, and a forgotten subject's fields show their "
     "declared replacement (docs/architecture.md, \"Personal data\"). Empty: they reach the "
     "projection as written (ciphertext, when the producer encrypts)."},
    {"personal.keys_topic", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "The subject-keys topic; empty: topic with its .events suffix replaced by .subject-keys "
     "(<domain>.subject-keys by default)."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

/* With personal.master_key_file: the decoder decrypts personal fields, with
 * keys read from the subject-keys topic by a reader of its own. */
static int open_personal(esk_domain_decoder_t *dec, const esk_conf_t *conf, const char *domain,
                         esk_error_t *err) {
  const char *file = esk_conf_get(conf, "personal.master_key_file");
  if (!file || !*file) return ESK_OK;
  char keys[300];
  const char *kt = esk_conf_get(conf, "personal.keys_topic");
  const char *topic = esk_conf_get(conf, "topic");
  size_t tl = topic ? strlen(topic) : 0;
  if (kt && *kt)
    snprintf(keys, sizeof(keys), "%s", kt);
  else if (!topic)
    snprintf(keys, sizeof(keys), "%s.%s", domain, ESK_SHRED_TOPIC_KIND);
  else if (tl > 7 && !strcmp(topic + tl - 7, ".events"))
    snprintf(keys, sizeof(keys), "%.*s.%s", (int)(tl - 7), topic, ESK_SHRED_TOPIC_KIND);
  else
    return esk_error_set(err, ESK_EINVAL,
                         "personal.keys_topic: topic=%s does not end in .events; name the "
                         "subject-keys topic",
                         topic);
  rd_kafka_conf_t *rconf = NULL;
  rd_kafka_t *reader = NULL;
  int rc = esk_kafka_client_conf(&rconf, RD_KAFKA_CONSUMER, conf, NULL, NULL, NULL, err);
  if (!rc) rc = esk_kafka_reader_new_conf(&reader, rconf, NULL, err);
  if (!rc) rc = esk_domain_decoder_personal(dec, file, reader, keys, 30000, err); /* takes reader */
  if (rc) {
    esk_error_t e = *err;
    return esk_error_set(err, rc, "personal.master_key_file=%s, %s: %s", file, keys, e.msg);
  }
  ESK_INFO("projector", "msg=\"personal fields are decrypted\" keys_topic=%s", keys);
  return ESK_OK;
}

static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_projector_props,
                                                decoder_props, esk_watchdog_props,
                                                esk_http_props};
#define N_TABLES (sizeof(tables) / sizeof(*tables))

/* A log value quoted for key=value lines. */
#define LQ(s) esk_log_quote((char[ESK_ERROR_MSG_MAX + 64]){0}, ESK_ERROR_MSG_MAX + 64, (s))

/* The generations served (serve.h): its flags are set by the signal handler,
 * its running projector answers /readyz. */
static esk_serve_t serve;

static int ready(void *opaque, char *reason, size_t size) {
  (void)opaque;
  esk_projector_t *p = atomic_load(&serve.running);
  if (!p) {
    snprintf(reason, size, "starting: connecting to PostgreSQL and Kafka (see the log)");
    return 0;
  }
  return esk_projector_ready(p, reason, size);
}

static void on_signal(int sig) {
  (void)sig;
  esk_serve_request_stop(&serve);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: esk-projector --projection NAME [-c FILE] [-X key=value ...]\n"
          "       esk-projector --projection-file F | --plugin P.so [--projection NAME]\n"
          "                     [--from-time T] [-c FILE] [-X key=value ...]\n"
          "       esk-projector --help | --version | --help-markdown\n"
          "\n"
          "Folds the events of <domain>.events into one PostgreSQL read model, as\n"
          "consumer group esk.projection.<NAME>; run more instances to share partitions.\n"
          "Events are decoded with the contract of the domain plug-in domain=NAME.\n"
          "SIGTERM or SIGINT: finish the batch, commit, leave the group, exit 0.\n"
          "\n"
          "options:\n"
          "  -p, --projection NAME  the read model to build (also the key projection)\n"
          "      --projection-file F\n"
          "                         run the declarative projection in F (docs/projections.md)\n"
          "      --plugin P.so      run the projection plugin P.so (esk/projection_plugin.h)\n"
          "      --from-time T      start a new projection at RFC 3339 time T (docs/projections.md)\n"
          "  -c, --config FILE      key=value configuration file\n"
          "  -X key=value           set a configuration key (after file and environment)\n"
          "      --help-markdown    print the configuration keys as a Markdown table\n"
          "\n"
          "projections:\n");
  for (const esk_bank_projection_def_t *d = esk_bank_projection_defs; d->name; d++)
    fprintf(f, "  %-20s %s\n", d->name, d->summary);
  fprintf(f, "  (or --projection-file F / --plugin P.so, for any domain)\n");
  fprintf(f, "\nconfiguration keys (file, environment, -X; later wins):\n");
  esk_conf_print_help(f, tables, N_TABLES);
}

/* What main() makes, freed by cleanup() in the reverse order. */
typedef struct app_s {
  const char *file, *projection, *proj_file, *plugin, *from_time;
  char **overrides;
  size_t n_over;
  int64_t from_ms;
  esk_conf_t *conf;
  esk_domain_lib_t *domain;
  esk_domain_decoder_t *dec;
  const esk_schema_set_t *schemas;
  const esk_bank_projection_def_t *def; /* a compiled-in projection, or NULL */
  esk_loaded_t *loaded;                 /* or a declarative file or plugin */
  esk_projection_t proj;
  esk_metrics_t *metrics;
  esk_http_t *http;
} app_t;

/* The command line into @p a. Returns -1 to go on, or the exit status. */
static int parse_args(app_t *a, int argc, char **argv) {
  static const struct option opts[] = {{"projection", required_argument, NULL, 'p'},
                                       {"config", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"help-markdown", no_argument, NULL, 'M'},
                                       {"config-markdown", no_argument, NULL, 'M'}, /* old name */
                                       {"projection-file", required_argument, NULL, 'F'},
                                       {"plugin", required_argument, NULL, 'L'},
                                       {"from-time", required_argument, NULL, 'T'},
                                       {NULL, 0, NULL, 0}};
  int c;
  if (!(a->overrides = calloc((size_t)argc + 1, sizeof(*a->overrides)))) return 1;
  while ((c = getopt_long(argc, argv, "p:c:X:h", opts, NULL)) != -1) {
    switch (c) {
    case 'p': a->projection = optarg; break;
    case 'c': a->file = optarg; break;
    case 'F': a->proj_file = optarg; break;
    case 'L': a->plugin = optarg; break;
    case 'T': a->from_time = optarg; break;
    case 'X': a->overrides[a->n_over++] = optarg; break;
    case 'h': usage(stdout); return 0;
    case 'V':
      printf("esk-projector %s (librdkafka %s, libpq %d)\n", ESK_VERSION, rd_kafka_version_str(),
             PQlibVersion());
      return 0;
    case 'M': esk_conf_print_markdown(stdout, tables, N_TABLES); return 0;
    default: fprintf(stderr, "esk-projector: try --help\n"); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "esk-projector: unexpected argument '%s' (try --help)\n", argv[optind]);
    return 2;
  }
  return -1;
}

/* The configuration (file, environment, -X, --projection) and --from-time.
 * Returns 0, or 2 after saying what is wrong. */
static int configure(app_t *a) {
  esk_error_t err = {0};
  if (esk_conf_new(&a->conf, tables, N_TABLES, &err) ||
      esk_conf_load(a->conf, a->file, a->overrides, a->n_over, &err) ||
      (a->projection && esk_conf_set(a->conf, "projection", a->projection, "--projection", &err)) ||
      esk_http_check_conf(a->conf, &err)) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    return 2;
  }
  esk_log_set_level(esk_conf_get(a->conf, "log.level"));
  if (a->from_time && esk_time_parse_rfc3339(&a->from_ms, a->from_time, &err)) {
    fprintf(stderr, "esk-projector: --from-time: %s\n", err.msg);
    return 2;
  }
  a->projection = esk_conf_get(a->conf, "projection");
  return 0;
}

/* The domain's plug-in, whose contract decodes and upcasts its events
 * (esk/domain_lib.h). Returns 0, 2 (configuration) or 1. */
static int open_domain(app_t *a) {
  esk_error_t err = {0};
  esk_codec_limits_t limits = {
      .max_message_bytes = (size_t)esk_conf_get_int(a->conf, "decode.max.bytes")};
  if (esk_domain_lib_open(&a->domain, esk_conf_get(a->conf, "domain.dir"),
                          esk_conf_get(a->conf, "domain"), &err)) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    return 2;
  }
  const esk_domain_t *dd = esk_domain_lib_domain(a->domain);
  esk_contract_t contract = {dd->name, dd->load_schemas, dd->register_upcasters};
  if (esk_domain_decoder_new(&a->dec, &contract, &limits, &err) ||
      open_personal(a->dec, a->conf, dd->name, &err)) {
    ESK_ERROR("projector", "msg=\"cannot start\" reason=%s", LQ(err.msg));
    return err.code == ESK_EINVAL ? 2 : 1;
  }
  a->schemas = esk_domain_decoder_schemas(a->dec);
  return 0;
}

/* Which projection: a declarative file or plugin, or a compiled-in one of
 * the domain's. Returns 0, or 2 after saying what is wrong. */
static int find_projection(app_t *a) {
  esk_error_t err = {0};
  const char *domain = esk_domain_lib_domain(a->domain)->name;
  if ((a->proj_file || a->plugin) &&
      esk_loaded_open(&a->loaded, &a->proj, a->conf, a->proj_file, a->plugin, a->schemas, &err)) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    return 2;
  }
  a->projection = esk_conf_get(a->conf, "projection");
  if (a->loaded) return 0;
  if (!(a->def = esk_bank_projection_find(a->projection))) {
    fprintf(stderr, "esk-projector: %s '%s': expected one of:",
            a->projection ? "unknown projection" : "no projection given",
            a->projection ? a->projection : "");
    for (const esk_bank_projection_def_t *d = esk_bank_projection_defs; d->name; d++)
      fprintf(stderr, " %s", d->name);
    fprintf(stderr, " (--projection NAME), or --projection-file F / --plugin P.so\n");
    return 2;
  }
  if (a->def->domain && strcmp(a->def->domain, domain)) {
    fprintf(stderr,
            "esk-projector: projection %s reads domain %s, not domain=%s: give it "
            "-X domain=%s, or give domain %s a declarative file or plugin\n",
            a->def->name, a->def->domain, domain, a->def->domain, domain);
    return 2;
  }
  return 0;
}

/* The projection's resources, and what serves it: signals, the watchdog,
 * metrics and the HTTP server. Returns 0, 2 (configuration) or 1. */
static int start(app_t *a) {
  esk_error_t err = {0};
  /* identifiers that reach SQL, before anything reaches PostgreSQL */
  if (esk_projector_check_names(a->conf, &err)) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    return 2;
  }
  if (a->def && a->def->create(&a->proj, &err)) {
    ESK_ERROR("projector", "msg=\"cannot start\" reason=%s", LQ(err.msg));
    return 1;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* before the HTTP server: /healthz reads its heartbeat */
  if (esk_watchdog_start(a->conf, &serve.stop_requested, &err) ||
      esk_metrics_new(&a->metrics, &err) ||
      esk_http_start(&a->http, a->conf, a->metrics, ready, NULL, &err)) {
    ESK_ERROR("projector", "msg=\"cannot start\" reason=%s", LQ(err.msg));
    return err.code == ESK_EINVAL ? 2 : 1;
  }
  return 0;
}

/* The projection afresh for a new generation (serve.h): a file or plugin is
 * read again, as the rebuild that made it live did. */
static int reopen_projection(void *opaque, esk_projection_t *proj, esk_error_t *err) {
  app_t *a = opaque;
  if (a->loaded) {
    esk_loaded_close(a->loaded);
    a->loaded = NULL;
    *proj = (esk_projection_t){0};
  } else {
    esk_bank_projection_destroy(proj);
  }
  return a->def ? a->def->create(proj, err)
                : esk_loaded_open(&a->loaded, proj, a->conf, a->proj_file, a->plugin, a->schemas,
                                  err);
}

/* Serves the projection's generations until a stop. Returns the exit status. */
static int run(app_t *a) {
  esk_error_t err = {0};
  serve.conf = a->conf;
  serve.proj = &a->proj;
  serve.reopen = reopen_projection;
  serve.reopen_opaque = a;
  serve.decoder = esk_domain_decoder(a->dec);
  serve.from_ms = a->from_time ? &a->from_ms : NULL;
  serve.metrics = a->metrics;
  if (esk_serve_run(&serve, &err) == ESK_OK) return 0;
  return serve.config_error ? 2 : 1;
}

static void cleanup(app_t *a) {
  esk_watchdog_shutdown(); /* what follows is bounded by shutdown.timeout.ms too */
  esk_http_stop(a->http);  /* before what /readyz and /metrics read */
  esk_serve_close(&serve);
  esk_watchdog_stop();
  esk_metrics_destroy(a->metrics);
  if (!a->loaded) esk_bank_projection_destroy(&a->proj);
  esk_loaded_close(a->loaded);
  esk_domain_decoder_destroy(a->dec);
  esk_domain_lib_close(a->domain); /* after everything made from the domain */
  esk_conf_destroy(a->conf);
  free(a->overrides);
}

int main(int argc, char **argv) {
  app_t a = {0};
  int status = parse_args(&a, argc, argv);
  if (status >= 0) { /* --help, --version, a bad option */
    free(a.overrides);
    return status;
  }
  status = configure(&a);
  if (!status) status = open_domain(&a);
  if (!status) status = find_projection(&a);
  if (!status) status = start(&a);
  if (!status) status = run(&a);
  cleanup(&a);
  return status;
}
