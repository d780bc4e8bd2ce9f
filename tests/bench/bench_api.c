/* bench_api: the HTTP API end to end against the local stack (docs/api.md,
 * docs/benchmarks.md). It starts esk-producer, an esk-projector of
 * account_balances, esk-gateway and esk-query under a fresh prefix and schema,
 * then measures, each closed loop (a client sends its next request when the
 * previous one is answered; HTTP/1.0, one connection per request):
 *   1. command round trips through esk-gateway (POST -> 200 with its token),
 *      with 1 and with CLIENTS clients;
 *   2. command -> visible: POST a deposit, then GET the account from esk-query
 *      with the token; the time until that answer, and that it holds the deposit;
 *   3. queries: wrk against esk-query's account-by-id for 10 s, with one HTTP
 *      thread and with QUERY_THREADS (http.threads), beside pgbench running
 *      the same SELECT (the limit) for 10 s;
 *   4. open loop (open_loop.h): deposits at fixed rates, RATES (default 1000,
 *      5000 and 10000 a second), each for OPEN_SECONDS (default 5), command ->
 *      result and command -> visible timed from when each command was due.
 * Usage: bench_api [COMMANDS [OPEN_SECONDS [RATE...]]]   (default 1000 5 1000
 * 5000 10000; keep it small on a shared machine)
 * Needs deploy/local/stack up and its environment, wrk and pgbench. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "open_loop.h"
#include "esk/time.h"
#include "esk_test_http.h"

#define WHO "bench_api"
#define CLIENTS 8
#define ACCOUNTS 64
/* esk-query's HTTP threads beside the default one, in the queries phase */
#define QUERY_THREADS 2
#define BIN ESK_BINARY_DIR "/bin/"

static char prefix[32], schema[32], keyfile[64], logdir[48];
static int gport, qport;

static void run_cmd(const char *cmd) {
  if (system(cmd) != 0) esk_bench_die(WHO, "command failed", cmd);
}

static double now_ms(void) { return (double)esk_time_mono_us() / 1000.0; }

static void raise_fd_limit(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

static int post(const char *body, char *out, size_t size) {
  return esk_tp_http_request(gport, "POST", "/v1/bank/commands",
                             "Content-Type: application/json\r\n", body, strlen(body), NULL, 0,
                             out, size);
}

static void token_of(const char *body, char *tok, size_t size) {
  const char *t = strstr(body, "\"consistency_token\":\"");
  if (!t) esk_bench_die(WHO, "no token in", body);
  t += strlen("\"consistency_token\":\"");
  size_t n = strcspn(t, "\"");
  snprintf(tok, size, "%.*s", (int)(n < size ? n : size - 1), t);
}

typedef struct client_s {
  int id, n, visible;
  esk_bench_samples_t lat;
  long stale;
} client_t;

/* One client's deposits (and, with visible, its reads with the token). */
static void *client_main(void *arg) {
  client_t *c = arg;
  char body[512], out[4096], tok[1300], path[1500];
  for (int i = 0; i < c->n; i++) {
    int acc = (c->id * 7 + i) % ACCOUNTS;
    snprintf(body, sizeof(body), "{\"type\":\"DepositMoney\",\"command_id\":\"%sc%d-%d-%d\","
             "\"account_id\":\"A%d\",\"amount\":{\"minor_units\":1,\"currency\":\"EUR\"}}",
             prefix, c->visible, c->id, i, acc);
    double t0 = now_ms();
    int st = post(body, out, sizeof(out));
    if (st != 200) esk_bench_die(WHO, "POST", out);
    if (c->visible) {
      token_of(out, tok, sizeof(tok));
      snprintf(path, sizeof(path), "/v1/bank/accounts/A%d?consistency=%s&wait_ms=10000", acc,
               tok);
      st = esk_tp_http_get(qport, path, out, sizeof(out));
      if (st != 200) esk_bench_die(WHO, "GET with the token", out);
    }
    esk_bench_add(&c->lat, now_ms() - t0);
  }
  return NULL;
}

static void phase(const char *name, int clients, int n, int visible) {
  pthread_t th[CLIENTS];
  client_t cl[CLIENTS];
  memset(cl, 0, sizeof(cl));
  double t0 = now_ms();
  for (int i = 0; i < clients; i++) {
    cl[i].id = i;
    cl[i].n = n / clients;
    cl[i].visible = visible;
    pthread_create(&th[i], NULL, client_main, &cl[i]);
  }
  esk_bench_samples_t all = {0};
  for (int i = 0; i < clients; i++) {
    pthread_join(th[i], NULL);
    for (size_t k = 0; k < cl[i].lat.n; k++) esk_bench_add(&all, cl[i].lat.ms[k]);
    free(cl[i].lat.ms);
  }
  double secs = (now_ms() - t0) / 1000.0;
  esk_bench_sort(&all);
  printf("%-34s clients=%d n=%zu rate=%.0f/s p50=%.1f ms p99=%.1f ms max=%.1f ms\n", name,
         clients, all.n, (double)all.n / secs, esk_bench_pct(&all, 50), esk_bench_pct(&all, 99),
         all.n ? all.ms[all.n - 1] : NAN);
  fflush(stdout);
  free(all.ms);
}

/* Runs @p cmd and prints its lines that hold any of @p keep. */
static void run_filtered(const char *label, const char *cmd, const char *const *keep) {
  FILE *p = popen(cmd, "r");
  char line[1024];
  if (!p) esk_bench_die(WHO, "popen", cmd);
  printf("%s\n", label);
  while (fgets(line, sizeof(line), p))
    for (size_t i = 0; keep[i]; i++)
      if (strstr(line, keep[i])) {
        printf("    %s", line);
        break;
      }
  if (pclose(p) != 0) esk_bench_die(WHO, "command failed", cmd);
}

/* Starts esk-query with @p argv (logging to @p log) and waits until it is ready.
 * @returns its pid, with its port in @p *port. */
static pid_t spawn_query(char **argv, const char *log, int *port) {
  char out[4096];
  pid_t pid = esk_bench_spawn(WHO, argv, log);
  *port = esk_bench_log_port(WHO, log);
  for (int w = 0; esk_tp_http_get(*port, "/readyz", out, sizeof(out)) != 200; w++) {
    if (w > 600) esk_bench_die(WHO, "esk-query not ready", out);
    esk_time_sleep_ms(50);
  }
  return pid;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  const char *pg = getenv("ESK_PG_CONNINFO");
  if (n < CLIENTS || !pg) {
    fprintf(stderr, "usage: bench_api [COMMANDS >= %d], with the stack's environment "
            "(eval \"$(deploy/local/stack env)\")\n", CLIENTS);
    return 2;
  }
  snprintf(prefix, sizeof(prefix), "benchapi%d.", (int)getpid());
  snprintf(schema, sizeof(schema), "benchapi%d", (int)getpid());
  snprintf(logdir, sizeof(logdir), "/tmp/%s", schema);
  snprintf(keyfile, sizeof(keyfile), "%s/key", logdir);
  char cmd[2048], a_prefix[128], a_key[192], a_topic[160], a_schema[96], a_group[128];
  char plog[192], jlog[192], glog[192], qlog[192];
  snprintf(cmd, sizeof(cmd), "mkdir -p %s && head -c32 /dev/urandom | od -An -tx1 | tr -d ' \\n' "
           "> %s && " BIN "eskctl topics create --partitions 4 --topic-prefix %s >/dev/null",
           logdir, keyfile, prefix);
  run_cmd(cmd);
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", prefix);
  snprintf(a_key, sizeof(a_key), "api.token.key.file=%s", keyfile);
  snprintf(a_topic, sizeof(a_topic), "topic=%sbank.events", prefix);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_group, sizeof(a_group), "group.id=%sgroup", prefix);
  snprintf(plog, sizeof(plog), "%s/producer.log", logdir);
  snprintf(jlog, sizeof(jlog), "%s/projector.log", logdir);
  snprintf(glog, sizeof(glog), "%s/gateway.log", logdir);
  snprintf(qlog, sizeof(qlog), "%s/query.log", logdir);
  char *pargv[] = {BIN "esk-producer", "-X", a_prefix, "-X", "http.listen=off", NULL};
  char *jargv[] = {BIN "esk-projector", "--projection", "account_balances", "-X", a_topic, "-X",
                   a_schema, "-X", a_group, "-X", "http.listen=off", NULL};
  char *gargv[] = {BIN "esk-gateway", "-X", a_prefix, "-X", a_key, "-X",
                   "http.listen=127.0.0.1:0", "-X", "http.max.connections.per.address=1100",
                   "-X", "http.max.connections=1100", NULL};
  char a_threads[32] = "http.threads=1", q2log[192];
  snprintf(q2log, sizeof(q2log), "%s/query-threads.log", logdir);
  char *qargv[] = {BIN "esk-query", "-X", a_prefix, "-X", a_key, "-X", a_schema, "-X",
                   "query.file=" ESK_SOURCE_DIR "/deploy/queries/bank.queries", "-X",
                   "http.listen=127.0.0.1:0", "-X", "http.max.connections.per.address=1100",
                   "-X", "http.max.connections=1100", "-X", "query.max.queued=4096", "-X",
                   a_threads, NULL};
  raise_fd_limit(); /* the open loop's connections, and the daemons' (inherited) */
  pid_t producer = esk_bench_spawn(WHO, pargv, plog);
  pid_t projector = esk_bench_spawn(WHO, jargv, jlog);
  pid_t gateway = esk_bench_spawn(WHO, gargv, glog);
  gport = esk_bench_log_port(WHO, glog);
  char out[4096];
  for (int w = 0; esk_tp_http_get(gport, "/readyz", out, sizeof(out)) != 200; w++) {
    if (w > 600) esk_bench_die(WHO, "esk-gateway not ready", out);
    esk_time_sleep_ms(50);
  }
  /* the accounts, which also makes the projector create its tables */
  for (int i = 0; i < ACCOUNTS; i++) {
    char body[512];
    snprintf(body, sizeof(body), "{\"type\":\"OpenAccount\",\"command_id\":\"%so%d\","
             "\"account_id\":\"A%d\",\"owner_id\":\"bench\",\"initial_deposit\":"
             "{\"minor_units\":0,\"currency\":\"EUR\"}}", prefix, i, i);
    if (post(body, out, sizeof(out)) != 200) esk_bench_die(WHO, "open", out);
  }
  pid_t query = spawn_query(qargv, qlog, &qport);
  snprintf(a_threads, sizeof(a_threads), "http.threads=%d", QUERY_THREADS);
  int q2port;
  pid_t query2 = spawn_query(qargv, q2log, &q2port);
  printf("bench_api: %d commands per phase, prefix %s, schema %s, logs %s\n", n, prefix, schema,
         logdir);
  phase("command round trip", 1, n, 0);
  phase("command round trip", CLIENTS, n, 0);
  phase("command -> visible with the token", 1, n, 1);
  phase("command -> visible with the token", CLIENTS, n, 1);

  const char *wrk_keep[] = {"Requests/sec", "50%", "99%", "Non-2xx", "Socket errors", NULL};
  snprintf(cmd, sizeof(cmd), "wrk -t2 -c8 -d10s --latency http://127.0.0.1:%d/v1/bank/accounts/A1",
           qport);
  run_filtered("queries through esk-query, http.threads=1 (wrk -t2 -c8 -d10s, account by id):",
               cmd, wrk_keep);
  snprintf(cmd, sizeof(cmd), "wrk -t2 -c8 -d10s --latency http://127.0.0.1:%d/v1/bank/accounts/A1",
           q2port);
  snprintf(out, sizeof(out), "queries through esk-query, http.threads=%d (the same):",
           QUERY_THREADS);
  run_filtered(out, cmd, wrk_keep);
  const char *pgb_keep[] = {"tps =", "latency average", NULL};
  snprintf(cmd, sizeof(cmd), "printf 'select account_id, owner_id, balance, currency, status, "
           "version, opened_at, closed_at from %s.account_balances where account_id = '\"'\"'A1'\"'\"';\\n' "
           "> %s/q.sql && pgbench -n -M prepared -c8 -j2 -T10 -f %s/q.sql \"%s\" 2>&1", schema,
           logdir, logdir, pg);
  run_filtered("the same SELECT through libpq (pgbench -M prepared -c8 -j2 -T10):", cmd, pgb_keep);

  double open_s = argc > 2 ? atof(argv[2]) : 5;
  static const int rates[] = {1000, 5000, 10000};
  int n_rates = argc > 3 ? argc - 3 : 3;
  for (int i = 0; i < n_rates && open_s > 0; i++) {
    esk_open_loop_t r;
    esk_open_loop_run(&r, gport, qport, prefix, ACCOUNTS, argc > 3 ? atoi(argv[3 + i]) : rates[i],
                      open_s);
    esk_open_loop_report(&r);
  }

  int bad = 0;
  bad |= esk_bench_stop(query) != 0;
  bad |= esk_bench_stop(query2) != 0;
  bad |= esk_bench_stop(gateway) != 0;
  bad |= esk_bench_stop(projector) != 0;
  bad |= esk_bench_stop(producer) != 0;
  snprintf(cmd, sizeof(cmd), "psql \"%s\" -q -c 'drop schema if exists %s cascade' "
           ">/dev/null 2>&1; true", pg, schema);
  run_cmd(cmd);
  if (bad) fprintf(stderr, "bench_api: a daemon did not exit 0 on SIGTERM (logs %s)\n", logdir);
  return bad;
}
