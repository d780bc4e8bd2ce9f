/* eskctl projection status: what each projection in PostgreSQL's position
 * store has applied, against what Kafka holds. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/kafka.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "eskctl.h"
#include "projector.h"

#define TIMEOUT_MS 5000

typedef struct part_s {
  int32_t partition;
  int64_t position, high, lag;
  double lag_s; /* -1: unknown */
  char updated_at[40];
} part_t;

typedef struct proj_s {
  char name[128], topic[256], group[300], state[16];
  int gen; /* generation: 1, or N for positions stored as <name>.g<N> */
  char key[128]; /* the positions' projection key */
  part_t *parts;
  size_t n_parts;
  int64_t lag, dlq;
  double lag_s;
  int members; /* -1: unknown */
} proj_t;

/* Reads the positions; one proj_t per (projection, topic). */
static int read_positions(PGconn *pg, const char *schema, const char *name, const char *topic,
                          const char *group, proj_t **out, size_t *n_out, esk_error_t *err) {
  char sql[512];
  PGresult *r = NULL;
  int rc;
  const char *params[] = {name, topic};
  int exists = 0;
  if ((rc = esk_pg_table_exists(&exists, pg, "look up the position store", schema,
                                "esk_projection_positions", err)))
    return rc;
  *out = NULL;
  *n_out = 0;
  if (!exists) return ESK_OK;
  snprintf(sql, sizeof(sql),
           "select projection, topic, partition, next_offset, "
           "to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
           "from \"%s\".esk_projection_positions "
           "where ($1::text is null or projection = $1 or projection like $1 || '.g%%')"
           " and ($2::text is null or topic = $2) "
           "order by 1, 2, 3",
           schema);
  if ((rc = esk_pg_exec(&r, pg, "read positions", sql, 2, params, err))) return rc;
  proj_t *ps = calloc((size_t)PQntuples(r) + 1, sizeof(*ps));
  size_t n = 0;
  if (!ps) {
    PQclear(r);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  for (int i = 0; i < PQntuples(r); i++) {
    proj_t *p = n ? &ps[n - 1] : NULL;
    if (!p || strcmp(p->key, PQgetvalue(r, i, 0)) || strcmp(p->topic, PQgetvalue(r, i, 1))) {
      p = &ps[n++];
      snprintf(p->key, sizeof(p->key), "%s", PQgetvalue(r, i, 0));
      snprintf(p->name, sizeof(p->name), "%s", PQgetvalue(r, i, 0));
      snprintf(p->topic, sizeof(p->topic), "%s", PQgetvalue(r, i, 1));
      /* generation N > 1 keeps its positions as <name>.g<N>, its group is <group>.g<N> */
      p->gen = 1;
      char *dot = strrchr(p->name, '.');
      if (dot && dot[1] == 'g' && dot[2] && strspn(dot + 2, "0123456789") == strlen(dot + 2)) {
        p->gen = atoi(dot + 2);
        *dot = '\0';
      }
      char gs[24] = "";
      if (p->gen > 1) snprintf(gs, sizeof(gs), ".g%d", p->gen);
      if (group) snprintf(p->group, sizeof(p->group), "%s%s", group, gs);
      else snprintf(p->group, sizeof(p->group), "esk.projection.%s%s", p->name, gs);
      p->members = -1;
    }
    part_t *np = realloc(p->parts, (p->n_parts + 1) * sizeof(*np));
    if (!np) {
      PQclear(r);
      for (size_t k = 0; k < n; k++) free(ps[k].parts);
      free(ps);
      return esk_error_set(err, ESK_ENOMEM, "out of memory");
    }
    p->parts = np;
    part_t *pt = &p->parts[p->n_parts++];
    memset(pt, 0, sizeof(*pt));
    pt->partition = (int32_t)atoi(PQgetvalue(r, i, 2));
    pt->position = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    pt->lag_s = -1;
    snprintf(pt->updated_at, sizeof(pt->updated_at), "%s", PQgetvalue(r, i, 4));
  }
  PQclear(r);
  *out = ps;
  *n_out = n;
  return ESK_OK;
}

/* The age of the first message not applied, per lagging partition. A
 * partition whose next committed message does not exist (the end reached at
 * once: what lies between the position and the high watermark is commit
 * markers or aborted records) has no lag at all. */
static void lag_seconds(rd_kafka_t *c, proj_t *p) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)p->n_parts);
  size_t want = 0;
  for (size_t i = 0; i < p->n_parts; i++) {
    part_t *pt = &p->parts[i];
    if (pt->lag <= 0) {
      pt->lag_s = 0;
      continue;
    }
    rd_kafka_topic_partition_list_add(l, p->topic, pt->partition)->offset = pt->position;
    want++;
  }
  if (want && !rd_kafka_assign(c, l)) {
    double end = esk_time_mono_s() + TIMEOUT_MS / 1000.0;
    while (want && esk_time_mono_s() < end) {
      rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        for (size_t i = 0; i < p->n_parts; i++) {
          part_t *pt = &p->parts[i];
          if (pt->partition == m->partition && pt->lag_s < 0) {
            pt->lag = 0;
            pt->lag_s = 0;
            want--;
          }
        }
      } else if (!m->err) {
        rd_kafka_timestamp_type_t tt;
        int64_t ts = rd_kafka_message_timestamp(m, &tt);
        for (size_t i = 0; i < p->n_parts; i++) {
          part_t *pt = &p->parts[i];
          if (pt->partition == m->partition && pt->lag_s < 0 && ts >= 0) {
            pt->lag_s = (esk_time_real_ms() / 1e3) - (double)ts / 1000.0;
            if (pt->lag_s < 0) pt->lag_s = 0;
            want--;
          }
        }
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(c, NULL);
  }
  rd_kafka_topic_partition_list_destroy(l);
}

static void fill_from_kafka(rd_kafka_t *c, proj_t *p, int64_t live_lag) {
  p->lag = 0;
  for (size_t i = 0; i < p->n_parts; i++) {
    part_t *pt = &p->parts[i];
    int64_t lo = 0, hi = -1;
    if (esk_kafka_watermarks(c, p->topic, pt->partition, &lo, &hi, TIMEOUT_MS))
      hi = -1;
    pt->high = hi;
    pt->lag = hi >= 0 && hi > pt->position ? hi - pt->position : 0;
  }
  lag_seconds(c, p);
  p->lag_s = 0;
  for (size_t i = 0; i < p->n_parts; i++) {
    p->lag += p->parts[i].lag;
    if (p->parts[i].lag_s > p->lag_s) p->lag_s = p->parts[i].lag_s;
  }

  /* DLQ: the total of its partitions' high watermarks. */
  char dlq[400];
  snprintf(dlq, sizeof(dlq), "%s.dlq.%s", p->topic, p->name);
  int parts = 0;
  esk_error_t e = {0};
  p->dlq = 0;
  if (esk_kafka_partition_count(c, dlq, TIMEOUT_MS, &parts, &e) == ESK_OK)
    for (int i = 0; i < parts; i++) {
      int64_t lo = 0, hi = 0;
      if (!esk_kafka_watermarks(c, dlq, i, &lo, &hi, TIMEOUT_MS)) p->dlq += hi;
    }

  const struct rd_kafka_group_list *gl = NULL;
  if (!rd_kafka_list_groups(c, p->group, &gl, TIMEOUT_MS) && gl) {
    p->members = gl->group_cnt > 0 ? gl->groups[0].member_cnt : 0;
    rd_kafka_group_list_destroy(gl);
  }
  snprintf(p->state, sizeof(p->state), "%s",
           p->members == 0 ? "stopped" : p->members < 0 ? "unknown"
                                       : p->lag > live_lag ? "catching-up" : "live");
}

/* A generation being rebuilt or retired says so (generation.h); the live one
 * keeps the state its lag and members give it. */
static void registry_state(PGconn *pg, const char *schema, proj_t *p) {
  char sql[256], gen[16];
  snprintf(sql, sizeof(sql),
           "select state from \"%s\".esk_projection_generations"
           " where projection = $1 and generation = $2::int",
           schema);
  snprintf(gen, sizeof(gen), "%d", p->gen);
  const char *params[2] = {p->name, gen};
  PGresult *r = NULL;
  esk_error_t err = {0};
  int exists = 0;
  if (esk_pg_table_exists(&exists, pg, "registry", schema, "esk_projection_generations", &err) ||
      !exists || esk_pg_exec(&r, pg, "registry", sql, 2, params, &err))
    return;
  if (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "live"))
    snprintf(p->state, sizeof(p->state), "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
}

static void print_text(const proj_t *ps, size_t n) {
  printf("%-24s %-34s %-4s %-12s %8s %12s %9s %8s\n", "PROJECTION", "GROUP", "GEN", "STATE",
         "MEMBERS", "LAG_EVENTS", "LAG_S", "DLQ");
  for (size_t i = 0; i < n; i++) {
    const proj_t *p = &ps[i];
    char members[16];
    snprintf(members, sizeof(members), p->members < 0 ? "?" : "%d", p->members);
    printf("%-24s %-34s %-4d %-12s %8s %12" PRId64 " %9.1f %8" PRId64 "\n", p->name, p->group,
           p->gen, p->state, members, p->lag, p->lag_s, p->dlq);
    for (size_t k = 0; k < p->n_parts; k++) {
      const part_t *pt = &p->parts[k];
      printf("  %s/%d: position %" PRId64 ", high watermark %" PRId64 ", lag %" PRId64
             " events, %.1f s, updated %s\n",
             p->topic, pt->partition, pt->position, pt->high, pt->lag, pt->lag_s < 0 ? 0 : pt->lag_s,
             pt->updated_at);
    }
  }
}

static int print_json(const proj_t *ps, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < n; i++) {
    const proj_t *p = &ps[i];
    json_t *parts = json_array();
    for (size_t k = 0; parts && k < p->n_parts; k++) {
      const part_t *pt = &p->parts[k];
      json_array_append_new(
          parts, json_pack("{s:i, s:I, s:I, s:I, s:o, s:s}", "partition", (int)pt->partition,
                           "position", (json_int_t)pt->position, "high_watermark",
                           (json_int_t)pt->high, "lag_events", (json_int_t)pt->lag, "lag_seconds",
                           pt->lag_s < 0 ? json_null() : json_real(pt->lag_s), "updated_at",
                           pt->updated_at));
    }
    json_array_append_new(
        arr, json_pack("{s:s, s:s, s:s, s:i, s:s, s:o, s:I, s:f, s:I, s:o}", "projection", p->name,
                       "topic", p->topic, "group", p->group, "generation", p->gen, "state", p->state,
                       "members", p->members < 0 ? json_null() : json_integer(p->members),
                       "lag_events", (json_int_t)p->lag, "lag_seconds", p->lag_s, "dlq_count",
                       (json_int_t)p->dlq, "partitions", parts ? parts : json_null()));
  }
  char *s = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
  json_decref(arr);
  if (!s) {
    fprintf(stderr, "eskctl projection status: out of memory\n");
    return 1;
  }
  printf("%s\n", s);
  free(s);
  return 0;
}

static void status_usage(FILE *f) {
  fprintf(f,
          "usage: eskctl projection status [NAME [--group G]] [--json] [--schema S] [--topic T]\n"
          "                                [--live-lag N]\n"
          "\n"
          "Per projection found in the position store (PostgreSQL schema S, default public):\n"
          "its group (esk.projection.<NAME>, or G), generation, state (live, catching-up when the\n"
          "lag is over N events (default 1000), stopped when the group has no member),\n"
          "per-partition position, lag in events (to the high watermark) and in seconds (age\n"
          "of the first message not applied), and the dead-letter count (<topic>.dlq.<NAME>).\n"
          "Exits 0, 1 when a server does not answer or NAME has no stored position, 2 on usage.\n");
}

/* What the command line asks for. */
typedef struct {
  const char *schema, *topic, *name, *group;
  int json;
  long live_lag;
} status_opts_t;

/* The command line into @p o: -1 to go on, else the exit status. */
static int status_parse(status_opts_t *o, int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                       {"schema", required_argument, NULL, 's'},
                                       {"topic", required_argument, NULL, 't'},
                                       {"live-lag", required_argument, NULL, 'l'},
                                       {"group", required_argument, NULL, 'g'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c;
  o->schema = "public";
  o->live_lag = 1000;
  optind = 1;
  while ((c = getopt_long(argc, argv, "js:t:l:g:h", opts, NULL)) != -1) {
    switch (c) {
    case 'j': o->json = 1; break;
    case 's': o->schema = optarg; break;
    case 't': o->topic = optarg; break;
    case 'g': o->group = optarg; break;
    case 'l':
      if (eskctl_parse_long(&o->live_lag, "projection status", "--live-lag", optarg, 0, LONG_MAX,
                            "events >= 0"))
        return 2;
      break;
    case 'h': status_usage(stdout); return 0;
    default: status_usage(stderr); return 2;
    }
  }
  if (optind < argc) o->name = argv[optind++];
  if (optind < argc) {
    fprintf(stderr, "eskctl projection status: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (o->group && !o->name) {
    fprintf(stderr, "eskctl projection status: --group needs a projection NAME\n");
    return 2;
  }
  if (!esk_pg_ident_valid(o->schema)) {
    fprintf(stderr, "eskctl projection status: --schema '%s': expected [a-z_][a-z0-9_]*\n",
            o->schema);
    return 2;
  }
  return -1;
}

/* A consumer that reads the ends of topics (read_committed, at once) and a
 * broker that answers, into *@p out. @returns 0, or 1 after a message. */
static int status_reader(rd_kafka_t **out) {
  esk_error_t err = {0};
  rd_kafka_conf_t *kc = NULL;
  rd_kafka_t *k = NULL;
  char errstr[512];
  if (esk_kafka_conf_new(&kc, RD_KAFKA_CONSUMER, NULL, &err) ||
      esk_kafka_conf_set(kc, "group.id", "esk.eskctl.status", &err) ||
      esk_kafka_conf_set(kc, "enable.auto.commit", "false", &err) ||
      esk_kafka_conf_set(kc, "isolation.level", "read_committed", &err) ||
      esk_kafka_conf_set(kc, "fetch.wait.max.ms", "10", &err) || /* the end answers at once */
      esk_kafka_conf_set(kc, "enable.partition.eof", "true", &err)) {
    fprintf(stderr, "eskctl projection status: %s\n", err.msg);
    if (kc) rd_kafka_conf_destroy(kc);
    return 1;
  }
  if (!(k = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr)))) {
    fprintf(stderr, "eskctl projection status: kafka: %s\n", errstr);
    rd_kafka_conf_destroy(kc);
    return 1;
  }
  rd_kafka_poll_set_consumer(k);
  *out = k;
  if (esk_kafka_check_broker(esk_conf_env_kafka_bootstrap(), TIMEOUT_MS, &err)) {
    fprintf(stderr, "eskctl projection status: %s\n", err.msg);
    return 1;
  }
  return 0;
}

static int cmd_status(int argc, char **argv) {
  status_opts_t o = {0};
  int status = status_parse(&o, argc, argv);
  if (status >= 0) return status;
  status = 1;
  esk_error_t err = {0};
  PGconn *pg = NULL;
  proj_t *ps = NULL;
  size_t n = 0;
  rd_kafka_t *k = NULL;
  if (esk_pg_connect(&pg, NULL, &err) ||
      read_positions(pg, o.schema, o.name, o.topic, o.group, &ps, &n, &err)) {
    fprintf(stderr, "eskctl projection status: %s\n", err.msg);
    goto cleanup;
  }
  if (!n) {
    if (o.name)
      fprintf(stderr, "eskctl projection status: no stored position for projection '%s' in "
                      "schema %s\n", o.name, o.schema);
    else if (o.json) status = print_json(ps, 0);
    else printf("no projection has stored a position in schema %s\n", o.schema), status = 0;
    goto cleanup;
  }
  if (status_reader(&k)) goto cleanup;
  for (size_t i = 0; i < n; i++) {
    fill_from_kafka(k, &ps[i], o.live_lag);
    registry_state(pg, o.schema, &ps[i]);
  }
  if (o.json) status = print_json(ps, n);
  else {
    print_text(ps, n);
    status = 0;
  }
cleanup:
  if (k) {
    rd_kafka_consumer_close(k);
    rd_kafka_destroy(k);
  }
  for (size_t i = 0; i < n; i++) free(ps[i].parts);
  free(ps);
  if (pg) PQfinish(pg);
  return status;
}

int eskctl_projection_main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    status_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "status")) return cmd_status(argc - 1, argv + 1);
  fprintf(stderr, "eskctl projection: unknown subcommand '%s' (expected status)\n", argv[1]);
  return 2;
}
