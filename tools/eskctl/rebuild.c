/* eskctl projection rebuild | drop-generation: blue-green rebuilds of a read
 * model (consumers/runtime/generation.h). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "esk/kafka.h"
#include "esk/pg.h"
#include "esk/watchdog.h"
#include "esk/time.h"
#include "eskctl.h"
#include "generation.h"
#include "projector.h"

#define MAX_X 64
#define MAX_INSTANCES 16
#define REBUILD "eskctl projection rebuild"

static void rebuild_usage(FILE *f) {
  fprintf(f,
          "usage: eskctl projection rebuild NAME [--schema S] [--group G] [--max-lag N]\n"
          "                                 [--from-time T] [--projection-file F | --plugin P]\n"
          "                                 [--projector PATH] [--log FILE] [--timeout S]\n"
          "                                 [--instances K]\n"
          "                                 [--domain D] [--topic-prefix P] [-X key=value]...\n"
          "\n"
          "Blue-green rebuild of projection NAME in PostgreSQL schema S (default public):\n"
          "creates generation N+1 (tables in schema <S>_<NAME>_g<N+1>, consumer group\n"
          "<G>.g<N+1>, G defaulting to esk.projection.<NAME>) and fills it from offset 0\n"
          "of <P><D>.events with an esk-projector of that generation (PATH, default the\n"
          "esk-projector beside eskctl; -X options go to it; its log goes to FILE, default\n"
          "./esk-rebuild-<NAME>-g<N+1>.log) while generation N keeps serving. --instances K\n"
          "(1-16, default 1, at most the partitions) starts K of them in the generation's\n"
          "group, which share the partitions: the fill uses K PostgreSQL sessions and K\n"
          "processes (the second's log is FILE.2, and so on). Progress:\n"
          "a bar on a terminal, a line every 5 s otherwise. Once the lag is at most N\n"
          "events (--max-lag, default 100 per partition), the views in S switch to the new\n"
          "generation in one transaction and the old one is retired: a running\n"
          "esk-projector of NAME moves to the new generation by itself. The old tables stay\n"
          "until `eskctl projection drop-generation NAME N`. A rebuild that was interrupted\n"
          "resumes where it stopped when run again with the same --from-time (or none).\n"
          "--from-time T (RFC 3339) fills the new generation from the first event at or\n"
          "after T instead of offset 0 (esk-projector --from-time; docs/projections.md);\n"
          "projections whose rows fold an account's whole history refuse it.\n"
          "--projection-file F / --plugin P: NAME is a declarative file's or a plugin's\n"
          "projection (as esk-projector runs it); the new generation is built from F or P\n"
          "as they are now, e.g. after fixing a statement, and a live esk-projector of NAME\n"
          "reads its file or plugin again when it moves to the new generation.\n"
          "Exit status: 0 switched; 1 failure or interrupted (the new generation is left\n"
          "in state rebuilding); 2 bad arguments.\n");
}

static void drop_usage(FILE *f) {
  fprintf(f,
          "usage: eskctl projection drop-generation NAME GEN [--schema S]\n"
          "\n"
          "Drops generation GEN of projection NAME (its schema <S>_<NAME>_g<GEN> and its\n"
          "positions); the live generation cannot be dropped.\n");
}

/* The esk-projector beside this eskctl. */
static void default_projector(char *buf, size_t size) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) {
    snprintf(buf, size, "esk-projector");
    return;
  }
  self[n] = '\0';
  snprintf(buf, size, "%s/esk-projector", dirname(self));
}

static pid_t spawn(char *const argv[], const char *log) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  FILE *f = freopen(log, "a", stderr);
  if (!f) _exit(126);
  if (!freopen("/dev/null", "r", stdin)) _exit(126);
  dup2(fileno(stderr), STDOUT_FILENO);
  execv(argv[0], argv);
  fprintf(stderr, "eskctl projection rebuild: cannot run %s: %s\n", argv[0], strerror(errno));
  _exit(127);
}

/* Stops the running children (pid > 0) of @p pids: SIGTERM to all, then
 * SIGKILL to those still there after 30 s. */
static void stop_children(pid_t *pids, int n) {
  esk_watchdog_doing("the generation's esk-projectors to stop");
  for (int i = 0; i < n; i++)
    if (pids[i] > 0) kill(pids[i], SIGTERM);
  for (int t = 0; t < 300; t++) {
    int left = 0;
    for (int i = 0; i < n; i++)
      if (pids[i] > 0 && waitpid(pids[i], NULL, WNOHANG) == pids[i]) pids[i] = -1;
      else left += pids[i] > 0;
    if (!left) return;
    esk_time_sleep_ms(100);
  }
  for (int i = 0; i < n; i++)
    if (pids[i] > 0) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], NULL, 0);
      pids[i] = -1;
    }
}

/* Sums over the topic's partitions: events in it, events the generation has
 * passed, and its lag (high watermark minus stored position). */
static int measure(PGconn *pg, rd_kafka_t *rk, const char *schema, const char *key,
                   const char *topic, int parts, int64_t *total, int64_t *done, int64_t *lag,
                   esk_error_t *err) {
  char sql[256];
  snprintf(sql, sizeof(sql),
           "select partition, next_offset from \"%s\".esk_projection_positions"
           " where projection = $1 and topic = $2",
           schema);
  const char *params[2] = {key, topic};
  PGresult *res = NULL;
  int exists = 0;
  int rc = esk_pg_table_exists(&exists, pg, "positions table", schema, "esk_projection_positions",
                               err);
  if (rc) return rc;
  /* before the new generation's projector has started there are no positions */
  if (exists && (rc = esk_pg_exec(&res, pg, "positions", sql, 2, params, err))) return rc;
  *total = *done = *lag = 0;
  for (int p = 0; p < parts; p++) {
    int64_t lo = 0, hi = 0, pos = -1;
    rd_kafka_resp_err_t e = esk_kafka_watermarks(rk, topic, p, &lo, &hi, 5000);
    if (e) {
      PQclear(res);
      return esk_error_set(err, ESK_ERETRY, "watermarks of %s [%d]: %s", topic, p,
                           rd_kafka_err2str(e));
    }
    for (int i = 0; res && i < PQntuples(res); i++)
      if (atoi(PQgetvalue(res, i, 0)) == p) pos = strtoll(PQgetvalue(res, i, 1), NULL, 10);
    if (pos < lo) pos = lo;
    *total += hi - lo;
    *done += (pos < hi ? pos : hi) - lo;
    *lag += hi > pos ? hi - pos : 0;
  }
  PQclear(res);
  return ESK_OK;
}

/* The last non-empty line of file @p path ("" when unreadable). */
static void last_line(char *out, size_t size, const char *path) {
  char line[512];
  out[0] = '\0';
  FILE *f = fopen(path, "r");
  if (!f) return;
  while (fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\n")] = '\0';
    size_t n = strnlen(line, size - 1);
    if (n) {
      memcpy(out, line, n); /* a long line is cut: it is only a hint */
      out[n] = '\0';
    }
  }
  fclose(f);
}

static void show(int tty, int64_t done, int64_t total, int64_t lag, double rate, int force) {
  static int64_t last;
  int64_t now = esk_time_mono_ms();
  double pct = total > 0 ? 100.0 * (double)done / (double)total : 100.0;
  double eta = rate > 0 ? (double)(total - done) / rate : 0;
  if (tty) {
    char bar[31];
    int f = (int)(pct * 30 / 100);
    for (int i = 0; i < 30; i++) bar[i] = i < f ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r  [%s] %5.1f%%  %" PRId64 "/%" PRId64 " events  %.0f/s  lag %" PRId64
                    "  ETA %.0fs ", bar, pct, done, total, rate, lag, eta);
  } else if (force || now - last >= 5000) {
    fprintf(stderr, "rebuild: %.1f%% %" PRId64 "/%" PRId64 " events, %.0f events/s, lag %" PRId64
                    ", ETA %.0f s\n", pct, done, total, rate, lag, eta);
    last = now;
  }
}

/* What the command line asks for. */
typedef struct {
  eskctl_common_t c;
  const char *name, *schema, *group, *log, *from_time;
  const char *source_opt, *source; /* --projection-file F or --plugin P */
  const char *xs[MAX_X];           /* -X key=value, for the esk-projector */
  int nx;
  int64_t from_ms; /* --from-time, or -1: offset 0 */
  long max_lag, timeout_s, instances;
  char projector[PATH_MAX], defgroup[256], deflog[PATH_MAX], topic[256];
} rebuild_opts_t;

/* What a rebuild holds while it runs. */
typedef struct {
  PGconn *pg;
  rd_kafka_t *rk;
  pid_t child[MAX_INSTANCES]; /* the new generation's esk-projectors (-1: none) */
  char logs[MAX_INSTANCES][PATH_MAX + 8];
  esk_generation_t g;
  int parts;
  char key[300]; /* the generation's key in the positions table */
  int64_t t0;    /* when the esk-projector started */
  int64_t done, lag;
} rebuild_run_t;

/* The esk-projector's command line for the new generation. */
typedef struct {
  char schema[128], gen[32], topic[300], group[300];
  char *argv[12 + 2 * MAX_X + 1];
} projector_args_t;

static int rebuild_source(rebuild_opts_t *o, const char *opt, const char *arg) {
  if (o->source_opt) {
    fprintf(stderr, REBUILD ": give one of --projection-file and --plugin\n");
    return 2;
  }
  o->source_opt = opt;
  o->source = arg;
  if (access(arg, R_OK)) {
    fprintf(stderr, REBUILD ": %s '%s': %s\n", opt, arg, strerror(errno));
    return 2;
  }
  return -1;
}

/* One option of the command line: -1 to go on, else the exit status. */
static int rebuild_option(rebuild_opts_t *o, int ch, const char *arg) {
  esk_error_t terr = {0};
  switch (ch) {
  case 's': o->schema = arg; break;
  case 'g': o->group = arg; break;
  case 'l':
    if (eskctl_parse_long(&o->max_lag, "projection rebuild", "--max-lag", arg, 0, LONG_MAX,
                          "a count >= 0"))
      return 2;
    break;
  case 'p': snprintf(o->projector, sizeof(o->projector), "%s", arg); break;
  case 'L': o->log = arg; break;
  case 'n':
    if (eskctl_parse_long(&o->instances, "projection rebuild", "--instances", arg, 1,
                          MAX_INSTANCES, "a count of 1-16"))
      return 2;
    break;
  case 't':
    if (eskctl_parse_long(&o->timeout_s, "projection rebuild", "--timeout", arg, 0, LONG_MAX,
                          "seconds >= 0"))
      return 2;
    break;
  case 'T':
    if (esk_time_parse_rfc3339(&o->from_ms, arg, &terr)) {
      fprintf(stderr, REBUILD ": --from-time: %s\n", terr.msg);
      return 2;
    }
    o->from_time = arg;
    break;
  case 'F': return rebuild_source(o, "--projection-file", arg);
  case 'G': return rebuild_source(o, "--plugin", arg);
  case 'd': o->c.domain_name = arg; break;
  case 'P': o->c.prefix = arg; break;
  case 'X':
    if (o->nx == MAX_X || !strchr(arg, '=')) {
      fprintf(stderr, REBUILD ": -X '%s': expected key=value (at most %d)\n", arg, MAX_X);
      return 2;
    }
    o->xs[o->nx++] = arg;
    break;
  case 'h': rebuild_usage(stdout); return 0;
  default: rebuild_usage(stderr); return 2;
  }
  return -1;
}

/* 0 when @p name and @p schema are identifiers, else 2 after a message. */
static int check_names(const char *cmd, const char *name, const char *schema) {
  if (esk_pg_ident_valid(name) && esk_pg_ident_valid(schema)) return 0;
  fprintf(stderr, "%s: '%s': projection and schema names are lower-case identifiers "
                  "[a-z_][a-z0-9_]*\n",
          cmd, esk_pg_ident_valid(name) ? schema : name);
  return 2;
}

/* The command line into @p o: -1 to go on, else the exit status. */
static int rebuild_parse(rebuild_opts_t *o, int argc, char **argv) {
  static const struct option opts[] = {{"schema", required_argument, NULL, 's'},
                                       {"group", required_argument, NULL, 'g'},
                                       {"max-lag", required_argument, NULL, 'l'},
                                       {"projector", required_argument, NULL, 'p'},
                                       {"log", required_argument, NULL, 'L'},
                                       {"instances", required_argument, NULL, 'n'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"domain", required_argument, NULL, 'd'},
                                       {"topic-prefix", required_argument, NULL, 'P'},
                                       {"from-time", required_argument, NULL, 'T'},
                                       {"projection-file", required_argument, NULL, 'F'},
                                       {"plugin", required_argument, NULL, 'G'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int ch, st;
  eskctl_common_init(&o->c);
  o->schema = "public";
  o->from_ms = -1;
  o->max_lag = -1;
  o->instances = 1;
  default_projector(o->projector, sizeof(o->projector));
  optind = 1;
  while ((ch = getopt_long(argc, argv, "X:h", opts, NULL)) != -1)
    if ((st = rebuild_option(o, ch, optarg)) >= 0) return st;
  if (optind + 1 != argc) {
    rebuild_usage(stderr);
    return 2;
  }
  o->name = argv[optind];
  if (check_names(REBUILD, o->name, o->schema)) return 2;
  if (!o->group) {
    snprintf(o->defgroup, sizeof(o->defgroup), "esk.projection.%s", o->name);
    o->group = o->defgroup;
  }
  if (!(o->c.domain = eskctl_domain_find(o->c.domain_name, "projection rebuild")) ||
      eskctl_topic(o->topic, sizeof(o->topic), &o->c, "events"))
    return 2;
  return -1;
}

/* Connects to PostgreSQL and Kafka and opens (or resumes) the new generation. */
static int rebuild_open(rebuild_run_t *r, rebuild_opts_t *o, esk_error_t *err) {
  rd_kafka_conf_t *kc = NULL;
  char errstr[256];
  int rc;
  if ((rc = esk_pg_connect(&r->pg, NULL, err)) ||
      (rc = esk_generation_rebuilding(&r->g, r->pg, o->schema, o->name, o->group, o->from_ms,
                                      err)))
    return rc;
  esk_generation_store_key(r->key, sizeof(r->key), o->name, r->g.gen);
  if ((rc = esk_kafka_conf_new(&kc, RD_KAFKA_PRODUCER, NULL, err))) return rc;
  if (!(r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr)))) {
    rd_kafka_conf_destroy(kc);
    return esk_error_set(err, ESK_EFATAL, "Kafka client: %s", errstr);
  }
  if ((rc = esk_kafka_partition_count(r->rk, o->topic, 10000, &r->parts, err))) return rc;
  if (o->max_lag < 0) o->max_lag = 100L * r->parts;
  if (!o->log) {
    snprintf(o->deflog, sizeof(o->deflog), "esk-rebuild-%s-g%d.log", o->name, r->g.gen);
    o->log = o->deflog;
  }
  if (o->instances > r->parts) o->instances = r->parts; /* more would idle */
  for (long i = 0; i < o->instances; i++)
    if (i) snprintf(r->logs[i], sizeof(r->logs[i]), "%s.%ld", o->log, i + 1);
    else snprintf(r->logs[i], sizeof(r->logs[i]), "%s", o->log);
  return ESK_OK;
}

/* The caller's -X options go first, then those that pin the esk-projector to
 * generation @p gen. */
static void projector_args(projector_args_t *a, const rebuild_opts_t *o, int gen) {
  int na = 0;
  snprintf(a->schema, sizeof(a->schema), "pg.schema=%s", o->schema);
  snprintf(a->gen, sizeof(a->gen), "generation=%d", gen);
  snprintf(a->topic, sizeof(a->topic), "topic=%s", o->topic);
  snprintf(a->group, sizeof(a->group), "group.id=%s", o->group);
  a->argv[na++] = (char *)o->projector;
  a->argv[na++] = "--projection";
  a->argv[na++] = (char *)o->name;
  if (o->source) {
    a->argv[na++] = (char *)o->source_opt;
    a->argv[na++] = (char *)o->source;
  }
  if (o->from_time) {
    a->argv[na++] = "--from-time";
    a->argv[na++] = (char *)o->from_time;
  }
  for (int i = 0; i < o->nx; i++) {
    a->argv[na++] = "-X";
    a->argv[na++] = (char *)o->xs[i];
  }
  char *forced[] = {a->schema, a->gen, a->topic, a->group};
  for (size_t i = 0; i < 4; i++) {
    a->argv[na++] = "-X";
    a->argv[na++] = forced[i];
  }
  a->argv[na] = NULL;
}

/* ESK_OK while the generation's esk-projectors run; once one has exited,
 * ESK_EFATAL naming its status and the last line of its log. */
static int check_child(rebuild_run_t *r, const rebuild_opts_t *o, esk_error_t *err) {
  for (long i = 0; i < o->instances; i++) {
    int wst;
    if (r->child[i] <= 0 || waitpid(r->child[i], &wst, WNOHANG) != r->child[i]) continue;
    r->child[i] = -1;
    char why[400];
    last_line(why, sizeof(why), r->logs[i]);
    return esk_error_set(err, ESK_EFATAL,
                         "esk-projector for generation %d exited (status %d); see %s; its last "
                         "line: %s",
                         r->g.gen, WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst),
                         r->logs[i], why);
  }
  return ESK_OK;
}

/* Starts the generation's esk-projectors. */
static int start_children(rebuild_run_t *r, const rebuild_opts_t *o, char *const argv[],
                          esk_error_t *err) {
  for (long i = 0; i < o->instances; i++)
    if ((r->child[i] = spawn(argv, r->logs[i])) < 0)
      return esk_error_set(err, ESK_EFATAL, "cannot start %s: %s", o->projector,
                           strerror(errno));
  return ESK_OK;
}

static int timed_out(const rebuild_run_t *r, const rebuild_opts_t *o) {
  return o->timeout_s && esk_time_mono_ms() - r->t0 > o->timeout_s * 1000;
}

/* Follows the new generation, showing its progress, until its lag is at most
 * --max-lag. */
static int wait_caught_up(rebuild_run_t *r, const rebuild_opts_t *o, esk_error_t *err) {
  int tty = isatty(STDERR_FILENO), rc;
  int64_t done0 = -1, total = 0;
  for (;;) {
    if ((rc = check_child(r, o, err))) return rc;
    if (eskctl_interrupted) return esk_error_set(err, ESK_EFATAL, "interrupted");
    if (timed_out(r, o))
      return esk_error_set(err, ESK_EFATAL, "not caught up within --timeout %ld s", o->timeout_s);
    rc = measure(r->pg, r->rk, o->schema, r->key, o->topic, r->parts, &total, &r->done, &r->lag,
                 err);
    if (rc == ESK_ERETRY) {
      fprintf(stderr, "rebuild: %s (retrying)\n", err->msg);
      if (PQstatus(r->pg) != CONNECTION_OK) PQreset(r->pg);
    } else if (rc) {
      return rc;
    } else {
      if (done0 < 0) done0 = r->done;
      double secs = (double)(esk_time_mono_ms() - r->t0) / 1000.0;
      double rate = secs > 0 ? (double)(r->done - done0) / secs : 0;
      int caught_up = r->lag <= o->max_lag && r->done > 0;
      show(tty, r->done, total, r->lag, rate, caught_up);
      if (caught_up) break;
    }
    esk_time_sleep_ms(500);
  }
  if (tty) fputc('\n', stderr);
  return ESK_OK;
}

/* Switches the views to the new generation. It must have reached the live one
 * everywhere; the live one keeps moving while events arrive, so try until it has. */
static int switch_views(rebuild_run_t *r, const rebuild_opts_t *o, esk_error_t *err) {
  for (;;) {
    int rc = esk_generation_publish(r->pg, o->schema, o->name, r->g.gen, err);
    if (rc == ESK_OK) return ESK_OK;
    if (rc != ESK_ERETRY || eskctl_interrupted || timed_out(r, o)) return rc;
    if ((rc = check_child(r, o, err))) return rc;
    esk_time_sleep_ms(200);
  }
}

int eskctl_rebuild_main(int argc, char **argv) {
  rebuild_opts_t o = {0};
  int status = rebuild_parse(&o, argc, argv);
  if (status >= 0) return status;
  status = 1;
  rebuild_run_t r = {0};
  for (int i = 0; i < MAX_INSTANCES; i++) r.child[i] = -1;
  esk_error_t err = {0};
  projector_args_t a;
  if (rebuild_open(&r, &o, &err)) goto fail;
  projector_args(&a, &o, r.g.gen);
  if (eskctl_interruptible(REBUILD)) goto cleanup;
  if (start_children(&r, &o, a.argv, &err)) goto fail;
  fprintf(stderr,
          "rebuild: projection %s generation %d (schema %s, group %s) from %s, %d partitions; "
          "%ld projector%s, log %s%s\n",
          o.name, r.g.gen, r.g.schema, r.g.group, o.topic, r.parts, o.instances,
          o.instances > 1 ? "s" : "", o.log, o.instances > 1 ? " (and .2, ...)" : "");
  r.t0 = esk_time_mono_ms();
  if (wait_caught_up(&r, &o, &err) || switch_views(&r, &o, &err)) goto fail;
  printf("switched: the views in schema %s now read generation %d of %s (%" PRId64
         " events, lag %" PRId64 ")\n", o.schema, r.g.gen, o.name, r.done, r.lag);
  if (r.g.gen > 1)
    printf("generation %d is retired; drop it with: eskctl projection drop-generation %s %d "
           "--schema %s\n", r.g.gen - 1, o.name, r.g.gen - 1, o.schema);
  status = 0;
  goto cleanup;
fail:
  fprintf(stderr, REBUILD ": %s\n", err.msg);
  if (r.g.gen > 0)
    fprintf(stderr, REBUILD ": generation %d of %s stays in state rebuilding: run the rebuild "
                    "again to resume, or drop it\n", r.g.gen, o.name);
cleanup:
  stop_children(r.child, MAX_INSTANCES);
  esk_watchdog_doing("rd_kafka_destroy");
  if (r.rk) rd_kafka_destroy(r.rk);
  PQfinish(r.pg);
  esk_watchdog_stop();
  return status;
}

int eskctl_drop_generation_main(int argc, char **argv) {
  static const struct option opts[] = {{"schema", required_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *schema = "public";
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (ch) {
    case 's': schema = optarg; break;
    case 'h': drop_usage(stdout); return 0;
    default: drop_usage(stderr); return 2;
    }
  }
  if (optind + 2 != argc) {
    drop_usage(stderr);
    return 2;
  }
  const char *name = argv[optind];
  long gen;
  if (eskctl_parse_long(&gen, "projection drop-generation", "GEN", argv[optind + 1], 1, 1000000,
                        "a number >= 1") ||
      check_names("eskctl projection drop-generation", name, schema))
    return 2;
  esk_error_t err = {0};
  PGconn *pg = NULL;
  int rc = esk_pg_connect(&pg, NULL, &err);
  if (!rc) rc = esk_generation_drop(pg, schema, name, (int)gen, &err);
  PQfinish(pg);
  if (rc) {
    fprintf(stderr, "eskctl projection drop-generation: %s\n", err.msg);
    return 1;
  }
  printf("dropped generation %ld of %s (schema %s_%s_g%ld)\n", gen, name, schema, name, gen);
  return 0;
}
