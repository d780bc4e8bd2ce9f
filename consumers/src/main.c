/* esk-projector — runs one projection (read model) of one domain into
 * PostgreSQL. The domain's plug-in (domain=NAME, esk/domain_lib.h) gives the
 * contract that decodes and upcasts its events (domain_decoder.h).
 *
 *   esk-projector --projection NAME [-c FILE] [-X key=value ...]
 *
 * See docs/projector.md. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
#include "generation.h"
#include "loaded.h"
#include "projections.h"
#include "projector.h"

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

static volatile sig_atomic_t stop_requested;
/* Stops esk_projector_run(): set on a signal, or when the generation served is
 * no longer the live one (then generation_moved is set too). */
static volatile sig_atomic_t run_stop, generation_moved;

/* The running projector for /readyz; NULL while it is being created. */
static _Atomic(esk_projector_t *) running;

static int ready(void *opaque, char *reason, size_t size) {
  (void)opaque;
  esk_projector_t *p = atomic_load(&running);
  if (!p) {
    snprintf(reason, size, "starting: connecting to PostgreSQL and Kafka (see the log)");
    return 0;
  }
  return esk_projector_ready(p, reason, size);
}

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
  run_stop = 1;
}

/* main()'s own PostgreSQL session for the registry (choosing and publishing
 * generations), opened on first use and again after it broke. */
static int registry_pg(PGconn **pg, const esk_conf_t *conf, esk_error_t *err) {
  if (*pg && PQstatus(*pg) == CONNECTION_OK) return ESK_OK;
  PQfinish(*pg);
  *pg = NULL;
  return esk_pg_connect(pg, esk_conf_get(conf, "pg.conninfo"), err);
}

/* The generation to serve: the live one (want 0) or number want. */
static int choose_generation(esk_generation_t *out, PGconn **pg, const esk_conf_t *conf,
                             const char *base, const char *projection, const char *base_group,
                             int want, esk_error_t *err) {
  int rc = registry_pg(pg, conf, err);
  if (rc) return rc;
  return want ? esk_generation_get(out, *pg, base, projection, want, err)
              : esk_generation_live(out, *pg, base, projection, base_group, err);
}

static int publish_generation(PGconn **pg, const esk_conf_t *conf, const char *base,
                              const char *projection, int gen, esk_error_t *err) {
  int rc = registry_pg(pg, conf, err);
  return rc ? rc : esk_generation_publish(*pg, base, projection, gen, err);
}

/* esk_projector_new(), started at @p from_ms (--from-time) when it is given. */
static int new_projector(esk_projector_t **out, const esk_conf_t *conf,
                         const esk_projection_t *proj, const esk_decoder_t *dec,
                         const int64_t *from_ms, esk_error_t *err) {
  int rc = esk_projector_new(out, conf, proj, dec, err);
  if (rc == ESK_OK && from_ms && (rc = esk_projector_start_at(*out, *from_ms, err))) {
    esk_projector_destroy(*out);
    *out = NULL;
  }
  return rc;
}

/* Watches the registry while the live generation is served: when a rebuild
 * switches to another one, stops the run so main() moves to it. The switch's
 * NOTIFY wakes it at once; it also looks every 2 s, in case a notice was
 * missed while its session was being re-opened. */
typedef struct watch_s {
  const esk_conf_t *conf;
  const char *base, *projection, *base_group;
  int gen;
  atomic_int quit;
} watch_t;

static void *watch_generation(void *arg) {
  watch_t *w = arg;
  PGconn *pg = NULL;
  while (!atomic_load(&w->quit)) {
    esk_error_t err = {0};
    if (!pg && (esk_pg_connect(&pg, esk_conf_get(w->conf, "pg.conninfo"), &err) ||
                esk_generation_listen(pg, &err))) {
      PQfinish(pg);
      pg = NULL; /* PostgreSQL is down: the projector itself retries and says so */
    }
    for (int i = 0; i < 20 && !atomic_load(&w->quit); i++) {
      if (!pg) {
        esk_time_sleep_ms(100);
        continue;
      }
      int n = esk_generation_wait_switch(pg, 100, &err);
      if (n == 1) break;
      if (n < 0) {
        PQfinish(pg);
        pg = NULL;
      }
    }
    if (atomic_load(&w->quit)) break;
    if (!pg) continue;
    esk_generation_t live;
    int rc = esk_generation_live(&live, pg, w->base, w->projection, w->base_group, &err);
    if (rc == ESK_ERETRY || PQstatus(pg) != CONNECTION_OK) {
      PQfinish(pg);
      pg = NULL;
    } else if (rc == ESK_OK && live.gen != w->gen) {
      ESK_INFO("projector",
               "msg=\"a rebuild switched generations; moving to the live one\" projection=%s "
               "from=%d to=%d",
               w->projection, w->gen, live.gen);
      generation_moved = 1;
      run_stop = 1;
      break;
    }
  }
  PQfinish(pg);
  return NULL;
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

int main(int argc, char **argv) {
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
  const char *file = NULL, *projection = NULL, *proj_file = NULL, *plugin = NULL;
  esk_loaded_t *loaded = NULL;
  int64_t from_ms = 0;
  const char *from_time = NULL;
  char **overrides = calloc((size_t)argc + 1, sizeof(*overrides));
  size_t n_over = 0;
  int c, status = 1;
  esk_conf_t *conf = NULL;
  esk_error_t err = {0};
  esk_domain_lib_t *domain = NULL;
  esk_domain_decoder_t *dec = NULL;
  esk_projection_t proj = {0};
  esk_projector_t *p = NULL;
  esk_metrics_t *metrics = NULL;
  esk_http_t *http = NULL;
  PGconn *registry = NULL;
  if (!overrides) return 1;
  while ((c = getopt_long(argc, argv, "p:c:X:h", opts, NULL)) != -1) {
    switch (c) {
    case 'p': projection = optarg; break;
    case 'c': file = optarg; break;
    case 'F': proj_file = optarg; break;
    case 'L': plugin = optarg; break;
    case 'T': from_time = optarg; break;
    case 'X': overrides[n_over++] = optarg; break;
    case 'h':
      usage(stdout);
      free(overrides);
      return 0;
    case 'V':
      printf("esk-projector %s (librdkafka %s, libpq %d)\n", ESK_VERSION, rd_kafka_version_str(),
             PQlibVersion());
      free(overrides);
      return 0;
    case 'M':
      esk_conf_print_markdown(stdout, tables, N_TABLES);
      free(overrides);
      return 0;
    default:
      fprintf(stderr, "esk-projector: try --help\n");
      free(overrides);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "esk-projector: unexpected argument '%s' (try --help)\n", argv[optind]);
    free(overrides);
    return 2;
  }
  if (esk_conf_new(&conf, tables, N_TABLES, &err) ||
      esk_conf_load(conf, file, overrides, n_over, &err) ||
      (projection && esk_conf_set(conf, "projection", projection, "--projection", &err))) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    status = 2;
    goto cleanup;
  }
  if (esk_http_check_conf(conf, &err)) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    status = 2;
    goto cleanup;
  }
  esk_log_set_level(esk_conf_get(conf, "log.level"));
  if (from_time && esk_time_parse_rfc3339(&from_ms, from_time, &err)) {
    fprintf(stderr, "esk-projector: --from-time: %s\n", err.msg);
    status = 2;
    goto cleanup;
  }
  /* the domain's contract decodes and upcasts its events (esk/domain_lib.h) */
  esk_codec_limits_t limits = {.max_message_bytes = (size_t)esk_conf_get_int(conf, "decode.max.bytes")};
  if (esk_domain_lib_open(&domain, esk_conf_get(conf, "domain.dir"), esk_conf_get(conf, "domain"),
                          &err)) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    status = 2;
    goto cleanup;
  }
  const esk_domain_t *dd = esk_domain_lib_domain(domain);
  esk_contract_t contract = {dd->name, dd->load_schemas, dd->register_upcasters};
  if (esk_domain_decoder_new(&dec, &contract, &limits, &err) ||
      open_personal(dec, conf, dd->name, &err)) {
    ESK_ERROR("projector", "msg=\"cannot start\" reason=%s", LQ(err.msg));
    if (err.code == ESK_EINVAL) status = 2;
    goto cleanup;
  }
  const esk_schema_set_t *schemas = esk_domain_decoder_schemas(dec);
  if ((proj_file || plugin) &&
      esk_loaded_open(&loaded, &proj, conf, proj_file, plugin, schemas, &err)) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    status = 2;
    goto cleanup;
  }
  projection = esk_conf_get(conf, "projection");
  const esk_bank_projection_def_t *def = loaded ? NULL : esk_bank_projection_find(projection);
  if (!def && !loaded) {
    fprintf(stderr, "esk-projector: %s '%s': expected one of:",
            projection ? "unknown projection" : "no projection given", projection ? projection : "");
    for (const esk_bank_projection_def_t *d = esk_bank_projection_defs; d->name; d++)
      fprintf(stderr, " %s", d->name);
    fprintf(stderr, " (--projection NAME), or --projection-file F / --plugin P.so\n");
    status = 2;
    goto cleanup;
  }
  if (def && def->domain && strcmp(def->domain, dd->name)) {
    fprintf(stderr,
            "esk-projector: projection %s reads domain %s, not domain=%s: give it "
            "-X domain=%s, or give domain %s a declarative file or plugin\n",
            def->name, def->domain, dd->name, def->domain, dd->name);
    status = 2;
    goto cleanup;
  }
  /* identifiers that reach SQL, before anything reaches PostgreSQL */
  if (esk_projector_check_names(conf, &err)) {
    fprintf(stderr, "esk-projector: %s\n", err.msg);
    status = 2;
    goto cleanup;
  }
  if (def && def->create(&proj, &err)) {
    ESK_ERROR("projector", "msg=\"cannot start\" reason=%s", LQ(err.msg));
    goto cleanup;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* before the HTTP server: /healthz reads its heartbeat */
  if (esk_watchdog_start(conf, &stop_requested, &err) || esk_metrics_new(&metrics, &err) ||
      esk_http_start(&http, conf, metrics, ready, NULL, &err)) {
    ESK_ERROR("projector", "msg=\"cannot start\" reason=%s", LQ(err.msg));
    if (err.code == ESK_EINVAL) status = 2;
    goto cleanup;
  }
  esk_decoder_t d = esk_domain_decoder(dec);
  char base[64], base_group[256];
  snprintf(base, sizeof(base), "%s", esk_conf_get(conf, "pg.schema"));
  const char *cg = esk_conf_get(conf, "group.id");
  if (cg && *cg) snprintf(base_group, sizeof(base_group), "%s", cg);
  else snprintf(base_group, sizeof(base_group), "esk.projection.%s", projection);
  /* set on purpose, it must be the group the generation was recorded with (checked
   * once: a later switch moves to the group the rebuild recorded) */
  int explicit_group = cg && *cg;
  int want = (int)esk_conf_get_int(conf, "generation");
  int rc;
  for (;;) {
    /* every projection has generations (blue-green rebuilds): its tables live in
     * the generation's schema, the views in pg.schema name the live one's */
    esk_generation_t gen = {.gen = 0, .state = "live"};
    rc = ESK_OK;
    while ((rc = choose_generation(&gen, &registry, conf, base, projection, base_group, want,
                                   &err)) ==
               ESK_ERETRY && !stop_requested) {
      ESK_WARN("projector", "msg=\"cannot start yet, retrying in 2 s\" reason=%s", LQ(err.msg));
      esk_time_sleep_ms(2000);
      esk_watchdog_beat(); /* retrying is progress; a stop ends it (the loop's condition) */
    }
    if (rc == ESK_OK && explicit_group)
      rc = esk_generation_check_group(&gen, base, projection, base_group, &err);
    explicit_group = 0;
    char num[16];
    snprintf(num, sizeof(num), "%d", rc == ESK_OK ? gen.gen : 0);
    if (rc == ESK_OK &&
        (esk_conf_set(conf, "generation", num, "generation", &err) ||
         esk_conf_set(conf, "group.id", gen.group, "generation", &err)))
      rc = err.code;
    if (rc == ESK_OK) {
      ESK_INFO("projector", "msg=\"serving generation\" projection=%s generation=%d state=%s "
               "schema=%s group=%s", projection, gen.gen, gen.state, gen.schema, gen.group);
      while ((rc = new_projector(&p, conf, &proj, &d, from_time ? &from_ms : NULL, &err)) ==
                 ESK_ERETRY &&
             !stop_requested) {
        ESK_WARN("projector", "msg=\"cannot start yet, retrying in 2 s\" reason=%s",
                 LQ(err.msg));
        esk_time_sleep_ms(2000);
        esk_watchdog_beat();
      }
    }
    /* the live generation's views, created or refreshed once its tables exist */
    if (rc == ESK_OK && !strcmp(gen.state, "live"))
      rc = publish_generation(&registry, conf, base, projection, gen.gen, &err);
    if (rc != ESK_OK) {
      if (stop_requested) status = 0;
      else ESK_ERROR("projector", "msg=\"cannot start\" reason=%s", LQ(err.msg));
      if (rc == ESK_EINVAL) status = 2; /* a configuration value, as for the ones above */
      goto cleanup;
    }
    if (esk_projector_set_metrics(p, metrics, &err)) {
      ESK_ERROR("projector", "msg=\"cannot register metrics\" reason=%s", LQ(err.msg));
      goto cleanup;
    }
    atomic_store(&running, p);
    watch_t w = {conf, base, projection, base_group, gen.gen, 0};
    pthread_t watcher;
    int watching = !want && pthread_create(&watcher, NULL, watch_generation, &w) == 0;
    rc = esk_projector_run(p, &run_stop, &err);
    if (watching) {
      atomic_store(&w.quit, 1);
      pthread_join(watcher, NULL);
    }
    if (rc != ESK_OK) {
      ESK_ERROR("projector", "msg=stopped error=%s reason=%s", esk_error_name(rc), LQ(err.msg));
      goto cleanup;
    }
    if (stop_requested || !generation_moved) break;
    /* a new generation: a new runtime and a fresh projection (no cached state;
     * a file or plugin is read again, as the rebuild that made it live did) */
    atomic_store(&running, NULL);
    esk_projector_destroy(p);
    p = NULL;
    if (loaded) {
      esk_loaded_close(loaded);
      loaded = NULL;
      proj = (esk_projection_t){0};
    } else {
      esk_bank_projection_destroy(&proj);
    }
    if (def ? def->create(&proj, &err)
            : esk_loaded_open(&loaded, &proj, conf, proj_file, plugin, schemas, &err)) {
      ESK_ERROR("projector", "msg=\"cannot start\" reason=%s", LQ(err.msg));
      goto cleanup;
    }
    generation_moved = 0;
    run_stop = stop_requested;
  }
  ESK_INFO("projector", "msg=\"stopped on request\" projection=%s", projection);
  status = 0;
cleanup:
  esk_watchdog_shutdown(); /* what follows is bounded by shutdown.timeout.ms too */
  esk_http_stop(http); /* before what /readyz and /metrics read */
  atomic_store(&running, NULL);
  esk_projector_destroy(p);
  esk_watchdog_stop();
  esk_metrics_destroy(metrics);
  if (!loaded) esk_bank_projection_destroy(&proj);
  esk_loaded_close(loaded);
  esk_domain_decoder_destroy(dec);
  esk_domain_lib_close(domain); /* after everything made from the domain */
  PQfinish(registry);
  esk_conf_destroy(conf);
  free(overrides);
  return status;
}
