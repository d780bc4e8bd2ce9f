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

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static void rebuild_usage(FILE *f) {
  fprintf(f,
          "usage: eskctl projection rebuild NAME [--schema S] [--group G] [--max-lag N]\n"
          "                                 [--from-time T] [--projection-file F | --plugin P]\n"
          "                                 [--projector PATH] [--log FILE] [--timeout S]\n"
          "                                 [--domain D] [--topic-prefix P] [-X key=value]...\n"
          "\n"
          "Blue-green rebuild of projection NAME in PostgreSQL schema S (default public):\n"
          "creates generation N+1 (tables in schema <S>_<NAME>_g<N+1>, consumer group\n"
          "<G>.g<N+1>, G defaulting to esk.projection.<NAME>) and fills it from offset 0\n"
          "of <P><D>.events with an esk-projector of that generation (PATH, default the\n"
          "esk-projector beside eskctl; -X options go to it; its log goes to FILE, default\n"
          "./esk-rebuild-<NAME>-g<N+1>.log) while generation N keeps serving. Progress:\n"
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

static void stop_child(pid_t pid) {
  esk_watchdog_doing("the generation's esk-projector to stop");
  kill(pid, SIGTERM);
  for (int i = 0; i < 300; i++) {
    if (waitpid(pid, NULL, WNOHANG) == pid) return;
    esk_time_sleep_ms(100);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
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
  char rel[128];
  snprintf(rel, sizeof(rel), "\"%s\".esk_projection_positions", schema);
  const char *rp[1] = {rel};
  PGresult *res = NULL;
  int rc = esk_pg_exec(&res, pg, "positions table", "select to_regclass($1) is not null", 1, rp,
                       err);
  if (rc) return rc;
  int exists = !strcmp(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  res = NULL;
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

int eskctl_rebuild_main(int argc, char **argv) {
  static const struct option opts[] = {{"schema", required_argument, NULL, 's'},
                                       {"group", required_argument, NULL, 'g'},
                                       {"max-lag", required_argument, NULL, 'l'},
                                       {"projector", required_argument, NULL, 'p'},
                                       {"log", required_argument, NULL, 'L'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"domain", required_argument, NULL, 'd'},
                                       {"topic-prefix", required_argument, NULL, 'P'},
                                       {"from-time", required_argument, NULL, 'T'},
                                       {"projection-file", required_argument, NULL, 'F'},
                                       {"plugin", required_argument, NULL, 'G'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  eskctl_common_t c;
  eskctl_common_init(&c);
  const char *schema = "public", *group = NULL, *log = NULL, *from_time = NULL, *xs[MAX_X];
  int64_t from_ms = -1; /* --from-time, or offset 0 */
  const char *source_opt = NULL, *source = NULL; /* --projection-file F or --plugin P */
  char projector[PATH_MAX], defgroup[256], deflog[PATH_MAX], topic[256], key[300];
  long max_lag = -1, timeout_s = 0;
  int nx = 0, ch, status = 1;
  default_projector(projector, sizeof(projector));
  optind = 1;
  while ((ch = getopt_long(argc, argv, "X:h", opts, NULL)) != -1) {
    char *end = NULL;
    switch (ch) {
    case 's': schema = optarg; break;
    case 'g': group = optarg; break;
    case 'l':
      max_lag = strtol(optarg, &end, 10);
      if (!*optarg || *end || max_lag < 0) {
        fprintf(stderr, "eskctl projection rebuild: --max-lag '%s': expected a count >= 0\n",
                optarg);
        return 2;
      }
      break;
    case 'p': snprintf(projector, sizeof(projector), "%s", optarg); break;
    case 'L': log = optarg; break;
    case 't':
      timeout_s = strtol(optarg, &end, 10);
      if (!*optarg || *end || timeout_s < 0) {
        fprintf(stderr, "eskctl projection rebuild: --timeout '%s': expected seconds >= 0\n",
                optarg);
        return 2;
      }
      break;
    case 'T': {
      esk_error_t terr = {0};
      if (esk_time_parse_rfc3339(&from_ms, optarg, &terr)) {
        fprintf(stderr, "eskctl projection rebuild: --from-time: %s\n", terr.msg);
        return 2;
      }
      from_time = optarg;
      break;
    }
    case 'F':
    case 'G':
      if (source_opt) {
        fprintf(stderr, "eskctl projection rebuild: give one of --projection-file and --plugin\n");
        return 2;
      }
      source_opt = ch == 'F' ? "--projection-file" : "--plugin";
      source = optarg;
      if (access(source, R_OK)) {
        fprintf(stderr, "eskctl projection rebuild: %s '%s': %s\n", source_opt, source,
                strerror(errno));
        return 2;
      }
      break;
    case 'd': c.domain_name = optarg; break;
    case 'P': c.prefix = optarg; break;
    case 'X':
      if (nx == MAX_X || !strchr(optarg, '=')) {
        fprintf(stderr, "eskctl projection rebuild: -X '%s': expected key=value (at most %d)\n",
                optarg, MAX_X);
        return 2;
      }
      xs[nx++] = optarg;
      break;
    case 'h': rebuild_usage(stdout); return 0;
    default: rebuild_usage(stderr); return 2;
    }
  }
  if (optind + 1 != argc) {
    rebuild_usage(stderr);
    return 2;
  }
  const char *name = argv[optind];
  if (!esk_pg_ident_valid(name) || !esk_pg_ident_valid(schema)) {
    fprintf(stderr, "eskctl projection rebuild: '%s': projection and schema names are "
                    "lower-case identifiers [a-z_][a-z0-9_]*\n",
            esk_pg_ident_valid(name) ? schema : name);
    return 2;
  }
  if (!group) {
    snprintf(defgroup, sizeof(defgroup), "esk.projection.%s", name);
    group = defgroup;
  }
  if (!(c.domain = eskctl_domain_find(c.domain_name, "projection rebuild")) ||
      eskctl_topic(topic, sizeof(topic), &c, "events"))
    return 2;

  esk_error_t err = {0};
  PGconn *pg = NULL;
  rd_kafka_t *rk = NULL;
  rd_kafka_conf_t *kc = NULL;
  pid_t child = -1;
  esk_generation_t g = {0};
  int parts = 0;
  char errstr[256];
  if (esk_pg_connect(&pg, NULL, &err) ||
      esk_generation_rebuilding(&g, pg, schema, name, group, from_ms, &err))
    goto fail;
  esk_generation_store_key(key, sizeof(key), name, g.gen);
  if (esk_kafka_conf_new(&kc, RD_KAFKA_PRODUCER, NULL, &err)) goto fail;
  if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr)))) {
    esk_error_set(&err, ESK_EFATAL, "Kafka client: %s", errstr);
    goto fail;
  }
  kc = NULL;
  if (esk_kafka_partition_count(rk, topic, 10000, &parts, &err)) goto fail;
  if (max_lag < 0) max_lag = 100L * parts;
  if (!log) {
    snprintf(deflog, sizeof(deflog), "esk-rebuild-%s-g%d.log", name, g.gen);
    log = deflog;
  }

  char a_schema[128], a_gen[32], a_topic[300], a_group[300];
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_gen, sizeof(a_gen), "generation=%d", g.gen);
  snprintf(a_topic, sizeof(a_topic), "topic=%s", topic);
  snprintf(a_group, sizeof(a_group), "group.id=%s", group);
  char *args[12 + 2 * MAX_X + 1];
  int na = 0;
  args[na++] = projector;
  args[na++] = "--projection";
  args[na++] = (char *)name;
  if (source) {
    args[na++] = (char *)source_opt;
    args[na++] = (char *)source;
  }
  if (from_time) {
    args[na++] = "--from-time";
    args[na++] = (char *)from_time;
  }
  for (int i = 0; i < nx; i++) {
    args[na++] = "-X";
    args[na++] = (char *)xs[i];
  }
  const char *forced[] = {a_schema, a_gen, a_topic, a_group};
  for (size_t i = 0; i < 4; i++) {
    args[na++] = "-X";
    args[na++] = (char *)forced[i];
  }
  args[na] = NULL;
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (eskctl_watchdog(&interrupted, "eskctl projection rebuild")) goto cleanup;
  if ((child = spawn(args, log)) < 0) {
    esk_error_set(&err, ESK_EFATAL, "cannot start %s: %s", projector, strerror(errno));
    goto fail;
  }
  fprintf(stderr,
          "rebuild: projection %s generation %d (schema %s, group %s) from %s, %d partitions; "
          "projector log %s\n",
          name, g.gen, g.schema, g.group, topic, parts, log);
  int tty = isatty(STDERR_FILENO);
  int64_t t0 = esk_time_mono_ms(), done0 = -1, total = 0, done = 0, lag = 0;
  for (;;) {
    int wst;
    if (waitpid(child, &wst, WNOHANG) == child) {
      child = -1;
      char why[400];
      last_line(why, sizeof(why), log);
      esk_error_set(&err, ESK_EFATAL,
                    "esk-projector for generation %d exited (status %d); see %s; its last line: %s",
                    g.gen, WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst), log, why);
      goto fail;
    }
    if (interrupted) {
      esk_error_set(&err, ESK_EFATAL, "interrupted");
      goto fail;
    }
    if (timeout_s && esk_time_mono_ms() - t0 > timeout_s * 1000) {
      esk_error_set(&err, ESK_EFATAL, "not caught up within --timeout %ld s", timeout_s);
      goto fail;
    }
    int rc = measure(pg, rk, schema, key, topic, parts, &total, &done, &lag, &err);
    if (rc == ESK_ERETRY) {
      fprintf(stderr, "rebuild: %s (retrying)\n", err.msg);
      if (PQstatus(pg) != CONNECTION_OK) PQreset(pg);
    } else if (rc) {
      goto fail;
    } else {
      if (done0 < 0) done0 = done;
      double secs = (double)(esk_time_mono_ms() - t0) / 1000.0;
      double rate = secs > 0 ? (double)(done - done0) / secs : 0;
      int caught_up = lag <= max_lag && done > 0;
      show(tty, done, total, lag, rate, caught_up);
      if (caught_up) break;
    }
    esk_time_sleep_ms(500);
  }
  if (tty) fputc('\n', stderr);
  tty = 0;
  /* the new generation must have reached the live one everywhere; the live one
   * keeps moving while events arrive, so try until it has */
  for (;;) {
    int rc = esk_generation_publish(pg, schema, name, g.gen, &err);
    if (rc == ESK_OK) break;
    if (rc != ESK_ERETRY || interrupted ||
        (timeout_s && esk_time_mono_ms() - t0 > timeout_s * 1000))
      goto fail;
    if (waitpid(child, NULL, WNOHANG) == child) {
      child = -1;
      esk_error_set(&err, ESK_EFATAL, "esk-projector for generation %d exited; see %s", g.gen,
                    log);
      goto fail;
    }
    esk_time_sleep_ms(200);
  }
  printf("switched: the views in schema %s now read generation %d of %s (%" PRId64
         " events, lag %" PRId64 ")\n", schema, g.gen, name, done, lag);
  if (g.gen > 1)
    printf("generation %d is retired; drop it with: eskctl projection drop-generation %s %d "
           "--schema %s\n", g.gen - 1, name, g.gen - 1, schema);
  status = 0;
  goto cleanup;
fail:
  fprintf(stderr, "eskctl projection rebuild: %s\n", err.msg);
  if (child > 0 || g.gen > 0)
    fprintf(stderr, "eskctl projection rebuild: generation %d of %s stays in state rebuilding: "
                    "run the rebuild again to resume, or drop it\n", g.gen, name);
cleanup:
  if (child > 0) stop_child(child);
  if (kc) rd_kafka_conf_destroy(kc);
  esk_watchdog_doing("rd_kafka_destroy");
  if (rk) rd_kafka_destroy(rk);
  PQfinish(pg);
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
  char *end = NULL;
  long gen = strtol(argv[optind + 1], &end, 10);
  if (!*argv[optind + 1] || *end || gen < 1 || gen > 1000000) {
    fprintf(stderr, "eskctl projection drop-generation: GEN '%s': expected a number >= 1\n",
            argv[optind + 1]);
    return 2;
  }
  if (!esk_pg_ident_valid(name) || !esk_pg_ident_valid(schema)) {
    fprintf(stderr, "eskctl projection drop-generation: '%s': projection and schema names are "
                    "lower-case identifiers [a-z_][a-z0-9_]*\n",
            esk_pg_ident_valid(name) ? schema : name);
    return 2;
  }
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
