/* Read-your-writes across the two daemons: esk-gateway, esk-producer, an
 * esk-projector of account_balances and esk-query, each a child process on
 * the real broker and PostgreSQL. A deposit's token makes the next query of
 * the balance include it, every time, and every token lies past its
 * deposit's event in the events topic; without the token, how often a read is
 * stale is measured and printed (docs/benchmarks.md); ESK_RYW_TRIES sets the
 * number of tries (300). A token the read model has not reached answers 503
 * STALE after wait_ms. Queries keep answering across a blue-green generation
 * switch, and esk-gateway and esk-query killed with -9 mid-load lose no
 * accepted command. An account's state as_of times between its events is
 * folded from event_log (docs/api.md, "An aggregate's state at a time"). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_api.h"
#include "esk_test_http.h"
#include "esk_test_producer.h"

#define PARTS 3
#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"
#define ESKCTL ESK_BINARY_DIR "/bin/eskctl"

typedef struct {
  char auth[300]; /* api.auth.file=<path> of both daemons, when set before setup() */
  char prefix[128], schema[64], keyfile[256], plog[256], glog[256], qlog[256], jlog[256];
  pid_t producer, projector, gateway, query, more[3];
  int gport, qport;
  unsigned char key[ESK_TOKEN_KEY_BYTES];
} env_t;

static pid_t start_projector(env_t *e, const char *projection, const char *log) {
  char a_topic[256], a_schema[128], a_group[256];
  snprintf(a_topic, sizeof(a_topic), "topic=%sbank.events", e->prefix);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", e->schema);
  snprintf(a_group, sizeof(a_group), "group.id=%sgroup%s", e->prefix,
           strcmp(projection, "account_balances") ? projection : "");
  const char *pargv[] = {PROJECTOR, "--projection", projection, "-X", a_topic, "-X", a_schema,
                         "-X", a_group, "-X", "batch.max.ms=20", "-X", "http.listen=off", "-X",
                         "kafka.consumer.session.timeout.ms=6000", NULL};
  return esk_tp_spawn(pargv, log);
}

static void setup(env_t *e, const char *name) {
  esk_test_require_pg();
  e->producer = esk_tp_setup(e->prefix, sizeof(e->prefix), name, PARTS, e->plog, sizeof(e->plog),
                             NULL);
  esk_test_unique_name(e->schema, sizeof(e->schema), "esk_test_ryw");
  esk_tp_log_path(e->glog, sizeof(e->glog), e->prefix, "g");
  esk_tp_log_path(e->qlog, sizeof(e->qlog), e->prefix, "q");
  esk_tp_log_path(e->jlog, sizeof(e->jlog), e->prefix, "j");
  esk_ta_write_key(e->keyfile, sizeof(e->keyfile), e->prefix, e->key);
  char a_schema[128], a_prefix[256];
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", e->schema);
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", e->prefix);
  e->projector = start_projector(e, "account_balances", e->jlog);
  const char *auth = e->auth[0] ? e->auth : NULL;
  const char *gargs[] = {a_prefix, auth, NULL};
  e->gateway = esk_ta_start(ESK_TEST_GATEWAY_BIN, e->keyfile, e->glog, gargs, &e->gport);
  /* ESK_TEST_QUERY_PG_CONNINFO: esk-query reads there, e.g. a streaming replica
   * (e2e.read_your_writes_replica), while the projector writes the primary */
  const char *replica = getenv("ESK_TEST_QUERY_PG_CONNINFO");
  char a_conninfo[1024];
  const char *qargs[6] = {a_prefix, a_schema,
                          "query.file=" ESK_SOURCE_DIR "/deploy/queries/bank.queries"};
  int nq = 3;
  if (replica && *replica) {
    snprintf(a_conninfo, sizeof(a_conninfo), "pg.conninfo=%s", replica);
    qargs[nq++] = a_conninfo;
  }
  qargs[nq] = auth; /* NULL ends the list when there is none */
  /* ready once a projector has made esk's tables in the schema */
  e->query = esk_ta_start(ESK_TEST_QUERY_BIN, e->keyfile, e->qlog, qargs, &e->qport);
}

/* Opens account @p acc of @p owner through the gateway (asserting 200); its
 * token into @p text (@p size bytes), when not NULL. */
static esk_token_t open_account(env_t *e, const char *acc, const char *owner, char *text,
                                size_t size) {
  char cmd[512], head[4096], body[4096];
  snprintf(cmd, sizeof(cmd), "{\"type\":\"OpenAccount\",\"command_id\":\"open-%s\",\"account_id\":"
           "\"%s\",\"owner_id\":\"%s\",\"initial_deposit\":{\"minor_units\":0,\"currency\":"
           "\"EUR\"}}", acc, acc, owner);
  int st = esk_ta_post(e->gport, NULL, NULL, cmd, head, sizeof(head), body, sizeof(body));
  cr_assert_eq(st, 200, "open %s: %d %s", acc, st, body);
  esk_token_t t;
  memset(&t, 0, sizeof(t));
  return text ? esk_ta_token_of(body, e->key, text, size) : t;
}

static void teardown(env_t *e) {
  cr_expect_eq(esk_tp_stop(e->query, SIGTERM, 20000), 0, "esk-query exit");
  cr_expect_eq(esk_tp_stop(e->gateway, SIGTERM, 20000), 0, "esk-gateway exit");
  esk_tp_stop(e->projector, SIGTERM, 20000);
  for (int i = 0; i < 3; i++)
    if (e->more[i] > 0) esk_tp_stop(e->more[i], SIGTERM, 20000);
  esk_tp_stop(e->producer, SIGTERM, 20000);
  esk_tp_delete_topics(e->prefix);
  esk_test_drop_schema(e->schema);
  unlink(e->keyfile);
}

/* The balance in an account query's answer, -1 when absent. */
static long long balance_of(const char *body) {
  const char *b = strstr(body, "\"balance\":");
  return b ? atoll(b + strlen("\"balance\":")) : -1;
}

/* Deposits 1 EUR to @p acc (command <acc>-d<i>); its token's text into
 * @p token, and the token, decoded, returned. */
static esk_token_t deposit(env_t *e, const char *acc, int i, char *token, size_t size) {
  char cmd[512], head[4096], body[4096];
  snprintf(cmd, sizeof(cmd), "{\"type\":\"DepositMoney\",\"command_id\":\"%s-d%d\",\"account_id\":"
           "\"%s\",\"amount\":{\"minor_units\":1,\"currency\":\"EUR\"}}", acc, i, acc);
  int st = esk_ta_post(e->gport, NULL, NULL, cmd, head, sizeof(head), body, sizeof(body));
  cr_assert_eq(st, 200, "deposit %d: %d %s", i, st, body);
  return esk_ta_token_of(body, e->key, token, size);
}

/* The offset @p t names for @p partition, -1 when it names none. */
static int64_t token_offset(const esk_token_t *t, int32_t partition) {
  for (size_t k = 0; k < t->n; k++)
    if (t->pos[k].partition == partition) return t->pos[k].offset;
  return -1;
}

/* Counts (and prints) the deposits <acc>-d<i>, i < n, whose token tok[i]
 * does not lie past the deposit's event as the events topic holds it: such a
 * token lets a query read the account before the deposit (docs/api.md). */
static int tokens_before_their_events(env_t *e, const char *acc, const esk_token_t *tok, int n) {
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events_settled(&evs, e->prefix, PARTS, (size_t)n + 1);
  char want[160];
  int bad = 0, seen = 0;
  for (size_t k = 0; k < ne; k++) {
    int i;
    snprintf(want, sizeof(want), "%s-d%%d", acc);
    if (strcmp(evs[k].account, acc) || sscanf(evs[k].causation, want, &i) != 1 || i < 0 || i >= n)
      continue;
    seen++;
    int64_t at = token_offset(&tok[i], evs[k].partition);
    if (at > evs[k].offset) continue;
    if (bad++ < 10)
      fprintf(stderr, "read_your_writes: the token of %s is %lld on partition %d, its event is "
              "at offset %lld\n", evs[k].causation, (long long)at, (int)evs[k].partition,
              (long long)evs[k].offset);
  }
  free(evs);
  cr_assert_eq(seen, n, "the events of %d deposits were read back, not %d", seen, n);
  return bad;
}

Test(read_your_writes, a_query_with_the_token_always_sees_the_deposit, .timeout = 600) {
  env_t e = {0};
  setup(&e, "ryw");
  char head[4096], body[4096], token[ESK_TOKEN_MAX_CHARS + 1], path[2048];
  const char *open = "{\"type\":\"OpenAccount\",\"command_id\":\"open-R1\",\"account_id\":\"R1\","
                     "\"owner_id\":\"ryw\",\"initial_deposit\":{\"minor_units\":0,"
                     "\"currency\":\"EUR\"}}";
  cr_assert_eq(esk_ta_post(e.gport, NULL, NULL, open, head, sizeof(head), body, sizeof(body)), 200,
               "%s", body);
  const char *tries = getenv("ESK_RYW_TRIES");
  const int n = tries && atoi(tries) > 0 ? atoi(tries) : 300;
  int stale_with = 0, stale_without = 0;
  esk_token_t *tok = calloc(2 * (size_t)n, sizeof(*tok));
  cr_assert(tok);
  for (int i = 0; i < n; i++) {
    tok[i] = deposit(&e, "R1", i, token, sizeof(token));
    snprintf(path, sizeof(path), "/v1/bank/accounts/R1?consistency=%s&wait_ms=10000", token);
    int st = esk_tp_http_get(e.qport, path, body, sizeof(body));
    cr_assert_eq(st, 200, "query %d: %d %s", i, st, body);
    if (balance_of(body) == i + 1) continue;
    if (stale_with++ < 10)
      fprintf(stderr, "read_your_writes: stale with the token: deposit %d (token offset %lld) "
              "read %s\n", i, (long long)tok[i].pos[0].offset, body);
  }
  /* without the token: measured, not asserted (it depends on the machine) */
  for (int i = n; i < 2 * n; i++) {
    tok[i] = deposit(&e, "R1", i, token, sizeof(token));
    int st = esk_tp_http_get(e.qport, "/v1/bank/accounts/R1", body, sizeof(body));
    cr_assert_eq(st, 200, "query %d: %d %s", i, st, body);
    if (balance_of(body) != i + 1) stale_without++;
  }
  fprintf(stderr, "read_your_writes: stale reads with the token %d/%d, without %d/%d\n",
          stale_with, n, stale_without, n);
  /* every token lies past its deposit's event, whether or not a read was quick
   * enough to be stale with it */
  int early = tokens_before_their_events(&e, "R1", tok, 2 * n);
  free(tok);
  cr_assert_eq(early, 0, "%d of %d tokens were not past their deposit's event", early, 2 * n);
  cr_assert_eq(stale_with, 0, "%d of %d reads with the token were stale", stale_with, n);
  /* the token also works as a header */
  char hdr[ESK_TOKEN_MAX_CHARS + 64];
  snprintf(hdr, sizeof(hdr), "Esk-Consistency: %s\r\n", token);
  cr_assert_eq(esk_tp_http_request(e.qport, "GET", "/v1/bank/accounts/R1", hdr, NULL, 0, head,
                                   sizeof(head), body, sizeof(body)), 200, "%s", body);
  cr_assert_eq(balance_of(body), 2 * n, "%s", body);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/owners/ryw/accounts?limit=10", body,
                               sizeof(body)), 200);
  cr_assert(strstr(body, "\"account_id\":\"R1\""), "%s", body);
  teardown(&e);
}

Test(read_your_writes, a_token_not_reached_in_wait_ms_answers_503_stale, .timeout = 300) {
  env_t e = {0};
  setup(&e, "ryw_stale");
  char head[4096], body[4096], path[2048], text[ESK_TOKEN_MAX_CHARS + 1];
  esk_token_t t = open_account(&e, "S1", "o", text, sizeof(text));
  /* a position far past the end: a token from a future the read model never reaches */
  t.pos[0].offset += 1000000;
  esk_error_t err = {0};
  cr_assert_eq(esk_token_encode(text, sizeof(text), &t, e.key, &err), ESK_OK);
  snprintf(path, sizeof(path), "/v1/bank/accounts/S1?consistency=%s&wait_ms=0", text);
  int64_t t0 = esk_time_mono_ms();
  cr_assert_eq(esk_tp_http_request(e.qport, "GET", path, NULL, NULL, 0, head, sizeof(head), body,
                                   sizeof(body)), 503, "%s", body);
  cr_assert(strstr(body, "\"STALE\"") && strstr(body, "\"positions\""), "%s", body);
  cr_assert(strstr(head, "Retry-After"), "%s", head);
  snprintf(path, sizeof(path), "/v1/bank/accounts/S1?consistency=%s&wait_ms=400", text);
  t0 = esk_time_mono_ms();
  cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 503, "%s", body);
  cr_assert_geq(esk_time_mono_ms() - t0, 400, "answered before wait_ms");
  /* forged, truncated and foreign tokens are 400 naming the reason */
  text[strlen(text) - 3] = text[strlen(text) - 3] == 'A' ? 'B' : 'A';
  snprintf(path, sizeof(path), "/v1/bank/accounts/S1?consistency=%s", text);
  cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 400, "%s", body);
  cr_assert(strstr(body, "INVALID_TOKEN"), "%s", body);
  snprintf(path, sizeof(path), "/v1/bank/accounts/S1?consistency=%.10s", text);
  cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 400, "%s", body);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/accounts/S1?wait_ms=-1", body, sizeof(body)),
               400);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/accounts/S1%27%20or%201=1", body,
                               sizeof(body)), 404, "%s", body);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/owners/o/accounts?limit=0", body,
                               sizeof(body)), 400, "%s", body);
  /* an owner's accounts a page at a time: S1, S2, then the end; hostile cursors are 400 */
  open_account(&e, "S2", "o", text, sizeof(text));
  snprintf(path, sizeof(path), "/v1/bank/owners/o/accounts?limit=1&wait_ms=10000&consistency=%s",
           text);
  const char *want[] = {"\"account_id\":\"S1\"", "\"account_id\":\"S2\"", "\"items\":[]"};
  for (int page = 0; page < 3; page++) {
    cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 200, "%s", body);
    cr_assert(strstr(body, want[page]), "page %d: %s", page, body);
    const char *nc = strstr(body, "\"next_cursor\":");
    cr_assert(nc, "%s", body);
    nc += strlen("\"next_cursor\":");
    if (page == 2) {
      cr_assert(!strncmp(nc, "null}", 5), "the walk ends: %s", body);
      break;
    }
    cr_assert_eq(*nc, '"', "page %d has a cursor: %s", page, body);
    snprintf(path, sizeof(path), "/v1/bank/owners/o/accounts?limit=1&cursor=%.*s",
             (int)strcspn(nc + 1, "\""), nc + 1);
  }
  /* an id holding '/', sent as %2F, is one path value (docs/api.md) */
  open_account(&e, "S/3", "o/x", text, sizeof(text));
  snprintf(path, sizeof(path), "/v1/bank/accounts/S%%2F3?wait_ms=10000&consistency=%s", text);
  cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 200, "%s", body);
  cr_assert(strstr(body, "\"account_id\":\"S/3\""), "%s", body);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/owners/o%2Fx/accounts", body, sizeof(body)),
               200, "%s", body);
  cr_assert(strstr(body, "\"account_id\":\"S/3\""), "%s", body);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/accounts/S/3", body, sizeof(body)), 404,
               "a raw '/' still separates segments: %s", body);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/accounts/S1%00x", body, sizeof(body)), 400,
               "%s", body);
  cr_assert(strstr(body, "U+0000"), "%s", body);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/owners/o/accounts?limit=1%00", body,
                               sizeof(body)), 400, "%s", body);
  static const char *const hostile[] = {
      "WyJhIiwiYiJd" /* ["a","b"]: two values for one column */, "e30" /* {} */, "%25%25",
      "W3siYSI6MX1d" /* [{"a":1}] */, "WyJTMSJd!" /* not base64url */};
  for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
    snprintf(path, sizeof(path), "/v1/bank/owners/o/accounts?cursor=%s", hostile[i]);
    cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 400, "%s: %s", hostile[i], body);
  }
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/accounts/S1%C3%28", body, sizeof(body)), 400,
               "%s", body);
  cr_assert_eq(esk_tp_http_request(e.qport, "POST", "/v1/bank/accounts/S1", NULL, "{}", 2, head,
                                   sizeof(head), body, sizeof(body)), 405, "%s", body);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/nothing", body, sizeof(body)), 404);
  cr_assert_eq(esk_tp_http_get(e.qport, "/v1/bank/accounts/S1", body, sizeof(body)), 200);
  teardown(&e);
}

/* GET /v1/bank/accounts/<acc> in a loop until stopped, on whichever port
 * esk-query has now: counts answers, failures, and balances that went back. */
typedef struct {
  atomic_int port, stop;
  const char *acc;
  long reads, errors, went_back;
  int first_error;
} query_loop_t;

static void *query_loop(void *arg) {
  query_loop_t *q = arg;
  char path[256], body[4096];
  long long last = -1;
  snprintf(path, sizeof(path), "/v1/bank/accounts/%s", q->acc);
  while (!atomic_load(&q->stop)) {
    int st = esk_tp_http_get(atomic_load(&q->port), path, body, sizeof(body));
    q->reads++;
    if (st != 200) {
      if (!q->errors++) q->first_error = st;
      esk_time_sleep_ms(10); /* esk-query down: do not spin */
      continue;
    }
    long long b = balance_of(body);
    if (b < last) q->went_back++;
    last = b;
  }
  return NULL;
}

Test(read_your_writes, queries_keep_answering_across_a_generation_switch, .timeout = 600) {
  env_t e = {0};
  setup(&e, "ryw_switch");
  char token[ESK_TOKEN_MAX_CHARS + 1], path[2048], body[4096], rblog[300];
  open_account(&e, "S1", "ryw", NULL, 0);
  for (int i = 0; i < 50; i++) deposit(&e, "S1", i, token, sizeof(token));
  snprintf(path, sizeof(path), "/v1/bank/accounts/S1?consistency=%s&wait_ms=10000", token);
  cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 200, "%s", body);

  query_loop_t q = {.acc = "S1"};
  atomic_store(&q.port, e.qport);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, query_loop, &q), 0);
  /* the rebuild replays the events into generation 2 and switches the views,
   * while the queries run and more deposits arrive */
  char group[256];
  snprintf(group, sizeof(group), "%sgroup", e.prefix);
  snprintf(rblog, sizeof(rblog), "/tmp/%s.rebuild.log", e.schema);
  const char *rargv[] = {ESKCTL, "projection", "rebuild", "account_balances", "--schema", e.schema,
                         "--topic-prefix", e.prefix, "--group", group, "--log", rblog, "--timeout",
                         "120", NULL};
  pid_t rb = esk_tp_spawn(rargv, rblog);
  for (int i = 50; i < 100; i++) deposit(&e, "S1", i, token, sizeof(token));
  cr_assert_eq(esk_tp_stop(rb, 0, 150000), 0, "eskctl projection rebuild failed: see %s", rblog);
  cr_assert(esk_tp_file_contains(rblog, "switched: the views"), "no switch in %s", rblog);
  /* the live projector follows generation 2; a token still works there */
  deposit(&e, "S1", 100, token, sizeof(token));
  snprintf(path, sizeof(path), "/v1/bank/accounts/S1?consistency=%s&wait_ms=20000", token);
  int st = esk_tp_http_get(e.qport, path, body, sizeof(body));
  atomic_store(&q.stop, 1);
  pthread_join(t, NULL);
  cr_assert_eq(st, 200, "the query with the token after the switch: %d %s", st, body);
  cr_assert_eq(balance_of(body), 101, "%s", body);
  fprintf(stderr, "read_your_writes: %ld queries across the switch, %ld errors, %ld went back\n",
          q.reads, q.errors, q.went_back);
  cr_expect_gt(q.reads, 10, "the query loop ran (%ld queries)", q.reads);
  cr_expect_eq(q.errors, 0, "%ld of %ld queries failed across the switch (first: %d)", q.errors,
               q.reads, q.first_error);
  cr_expect_eq(q.went_back, 0, "the balance went back %ld times", q.went_back);
  unlink(rblog);
  teardown(&e);
}

/* Deposits 1 EUR each to <acc> through the gateway on whichever port it has
 * now, the same command id again until it is answered 200 (a gateway killed
 * mid-request refuses the connection or drops it). */
typedef struct {
  atomic_int port, answered;
  const char *acc;
  int n, failed_at, last_status;
} poster_t;

static void *post_loop(void *arg) {
  poster_t *p = arg;
  char cmd[512], head[4096], body[4096];
  for (int i = 0; i < p->n; i++) {
    snprintf(cmd, sizeof(cmd), "{\"type\":\"DepositMoney\",\"command_id\":\"%s-k%d\","
             "\"account_id\":\"%s\",\"amount\":{\"minor_units\":1,\"currency\":\"EUR\"}}",
             p->acc, i, p->acc);
    int st = -1;
    for (int try = 0; try < 1200 && st != 200; try++) {
      st = esk_ta_post(atomic_load(&p->port), NULL, NULL, cmd, head, sizeof(head), body,
                       sizeof(body));
      if (st != 200) esk_time_sleep_ms(50);
    }
    if (st != 200) {
      p->failed_at = i + 1;
      p->last_status = st;
      return NULL;
    }
    atomic_fetch_add(&p->answered, 1);
  }
  return NULL;
}

static void wait_answered(poster_t *p, int n) {
  for (int i = 0; i < 1200 && atomic_load(&p->answered) < n && !p->failed_at; i++)
    esk_time_sleep_ms(50);
  cr_assert_geq(atomic_load(&p->answered), n, "the deposits stalled at %d",
                atomic_load(&p->answered));
}

Test(read_your_writes, a_gateway_and_a_query_killed_mid_load_lose_no_accepted_command,
     .timeout = 600) {
  enum { N = 300 };
  env_t e = {0};
  setup(&e, "ryw_kill");
  open_account(&e, "K1", "ryw", NULL, 0);
  poster_t p = {.acc = "K1", .n = N};
  atomic_store(&p.port, e.gport);
  query_loop_t q = {.acc = "K1"};
  atomic_store(&q.port, e.qport);
  pthread_t tp, tq;
  cr_assert_eq(pthread_create(&tp, NULL, post_loop, &p), 0);
  cr_assert_eq(pthread_create(&tq, NULL, query_loop, &q), 0);

  const char *gargs[] = {NULL, NULL}, *qargs[] = {NULL, NULL, NULL, NULL};
  char a_prefix[256], a_schema[128], glog2[300], qlog2[300];
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", e.prefix);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", e.schema);
  gargs[0] = qargs[0] = a_prefix;
  qargs[1] = a_schema;
  qargs[2] = "query.file=" ESK_SOURCE_DIR "/deploy/queries/bank.queries";

  wait_answered(&p, N / 3);
  kill(e.gateway, SIGKILL);
  esk_tp_stop(e.gateway, 0, 10000);
  snprintf(glog2, sizeof(glog2), "%s.2", e.glog);
  e.gateway = esk_ta_start(ESK_TEST_GATEWAY_BIN, e.keyfile, glog2, gargs, &e.gport);
  atomic_store(&p.port, e.gport);

  wait_answered(&p, 2 * N / 3);
  kill(e.query, SIGKILL);
  esk_tp_stop(e.query, 0, 10000);
  snprintf(qlog2, sizeof(qlog2), "%s.2", e.qlog);
  e.query = esk_ta_start(ESK_TEST_QUERY_BIN, e.keyfile, qlog2, qargs, &e.qport);
  atomic_store(&q.port, e.qport);

  pthread_join(tp, NULL);
  atomic_store(&q.stop, 1);
  pthread_join(tq, NULL);
  cr_assert_eq(p.failed_at, 0, "deposit %d was never answered 200 (last status %d)", p.failed_at,
               p.last_status);
  cr_assert_eq(atomic_load(&p.answered), N);

  /* every command answered 200 has exactly one outcome: one accepted result
   * (a resubmission is answered with the first one again) and one event */
  esk_tp_results_t r = esk_tp_wait_results(e.prefix, PARTS, N + 1, 120000);
  cr_assert_eq(r.distinct, (size_t)N + 1, "results for %zu of %d commands", r.distinct, N + 1);
  cr_expect_eq(r.accepted, (size_t)N + 1, "accepted %zu", r.accepted);
  esk_tp_event_t *evs = NULL;
  size_t ne = esk_tp_read_events_settled(&evs, e.prefix, PARTS, N + 1);
  cr_expect_eq(ne, (size_t)N + 1, "one event per command: none missing, none doubled (%zu)", ne);
  esk_tp_check_causation_unique(evs, ne);
  cr_expect_eq(esk_tp_check_versions(evs, ne), 1);
  free(evs);
  fprintf(stderr, "read_your_writes: %zu result messages for %d commands across the kills; "
          "%ld queries, %ld failed while esk-query was down\n", r.messages, N + 1, q.reads,
          q.errors);

  /* the restarted esk-query answers with the restarted gateway's token */
  char token[ESK_TOKEN_MAX_CHARS + 1], path[2048], body[4096];
  deposit(&e, "K1", N, token, sizeof(token));
  snprintf(path, sizeof(path), "/v1/bank/accounts/K1?consistency=%s&wait_ms=20000", token);
  cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 200, "%s", body);
  cr_assert_eq(balance_of(body), N + 1, "%s", body);
  unlink(glog2);
  unlink(qlog2);
  teardown(&e);
}

/* The value of header @p name in a response head, into @p out ("" when absent). */
static void header_of(const char *head, const char *name, char *out, size_t size) {
  out[0] = '\0';
  const char *h = strstr(head, name); /* esk sends it as named */
  if (!h) return;
  h += strlen(name);
  while (*h == ' ' || *h == ':') h++;
  size_t n = strcspn(h, "\r\n");
  if (n >= size) n = size - 1;
  memcpy(out, h, n);
  out[n] = '\0';
}

/* The "next_cursor" of a page, into @p out ("" when null). */
static void next_cursor_of(const char *body, char *out, size_t size) {
  const char *c = strstr(body, "\"next_cursor\":");
  cr_assert(c, "no next_cursor in %s", body);
  c += strlen("\"next_cursor\":");
  out[0] = '\0';
  if (*c != '"') return;
  size_t n = strcspn(c + 1, "\"");
  cr_assert_lt(n, size);
  memcpy(out, c + 1, n);
  out[n] = '\0';
}

/* Walks an account's transactions page by page: versions @p top down to
 * top - count + 1, each once, newest first; the page after the last non-empty
 * one is empty and ends the walk. */
static void walk_transactions(env_t *e, const char *acc, const char *token, int top, int count) {
  char path[4096], body[65536], cursor[2048] = "";
  int seen = 0, last = top + 1, pages = 0;
  do {
    snprintf(path, sizeof(path), "/v1/bank/accounts/%s/transactions?limit=7&consistency=%s%s%s",
             acc, token, cursor[0] ? "&cursor=" : "", cursor);
    int st = esk_tp_http_get(e->qport, path, body, sizeof(body));
    cr_assert_eq(st, 200, "page %d: %d %s", pages, st, body);
    for (const char *v = body; (v = strstr(v, "\"version\":")); v++) {
      int x = atoi(v + strlen("\"version\":"));
      cr_assert_eq(x, last - 1, "page %d: version %d after %d: %s", pages, x, last, body);
      last = x;
      seen++;
    }
    next_cursor_of(body, cursor, sizeof(cursor));
    pages++;
  } while (cursor[0] && pages < 100);
  cr_assert_eq(seen, count, "the pages held %d of %d versions", seen, count);
  cr_assert_eq(pages, (count + 6) / 7 + 1, "pages: %d", pages);
}

static void expect_400(env_t *e, const char *path, const char *why) {
  char body[4096];
  int st = esk_tp_http_get(e->qport, path, body, sizeof(body));
  cr_expect_eq(st, 400, "%s: GET %s answered %d %s", why, path, st, body);
}

Test(read_your_writes, pages_of_transactions_and_daily_summaries_and_etags, .timeout = 600) {
  env_t e = {0};
  setup(&e, "ryw_pages");
  char log1[300], log2[300], log3[300];
  snprintf(log1, sizeof(log1), "%s.th", e.jlog);
  snprintf(log2, sizeof(log2), "%s.ds", e.jlog);
  snprintf(log3, sizeof(log3), "%s.el", e.jlog);
  e.more[0] = start_projector(&e, "transaction_history", log1);
  e.more[1] = start_projector(&e, "daily_summaries", log2);
  e.more[2] = start_projector(&e, "event_log", log3);
  char token[ESK_TOKEN_MAX_CHARS + 1], path[4096], head[4096], body[65536];
  open_account(&e, "P1", "ryw", NULL, 0);
  enum { DEPOSITS = 40 };
  for (int i = 0; i < DEPOSITS; i++) deposit(&e, "P1", i, token, sizeof(token));
  /* the opening (version 1) had no money, so it is no transaction */
  walk_transactions(&e, "P1", token, DEPOSITS + 1, DEPOSITS);

  /* daily summaries, by account and by day (today, UTC) */
  snprintf(path, sizeof(path), "/v1/bank/accounts/P1/daily-summaries?consistency=%s", token);
  cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 200, "%s", body);
  cr_assert(strstr(body, "\"deposits_count\":40"), "%s", body);
  char day[16];
  cr_assert(sscanf(strstr(body, "\"day\":\"") + 7, "%10s", day) == 1);
  snprintf(path, sizeof(path), "/v1/bank/days/%s/summaries?consistency=%s", day, token);
  cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 200, "%s", body);
  cr_assert(strstr(body, "\"account_id\":\"P1\""), "%s", body);

  /* the account's events 2..5 from event_log, two a page */
  char cursor[2048] = "";
  int next = 2, pages = 0;
  do {
    snprintf(path, sizeof(path), "/v1/bank/aggregates/P1/events?from_version=2&to_version=5&"
             "limit=2&consistency=%s%s%s", token, cursor[0] ? "&cursor=" : "", cursor);
    cr_assert_eq(esk_tp_http_get(e.qport, path, body, sizeof(body)), 200, "%s", body);
    for (const char *v = body; (v = strstr(v, "\"aggregate_version\":")); v++)
      cr_assert_eq(atoi(v + strlen("\"aggregate_version\":")), next++, "%s", body);
    cr_assert(pages > 1 || strstr(body, "\"event_type\":\"MoneyDeposited\""), "%s", body);
    next_cursor_of(body, cursor, sizeof(cursor));
  } while (cursor[0] && ++pages < 10);
  cr_assert_eq(next, 6, "events 2..5, got up to %d", next - 1);
  expect_400(&e, "/v1/bank/aggregates/P1/events?from_version=0", "from_version 0");
  expect_400(&e, "/v1/bank/aggregates/P1/events?to_version=99999999999999999999", "huge");

  /* hostile days and cursors are answered 400, naming the reason */
  expect_400(&e, "/v1/bank/days/2026-13-45/summaries", "a day that is not a date");
  expect_400(&e, "/v1/bank/days/yesterday'%3B--/summaries", "SQL-looking day");
  expect_400(&e, "/v1/bank/accounts/P1/transactions?cursor=!!!", "cursor not base64url");
  expect_400(&e, "/v1/bank/accounts/P1/transactions?cursor=e30", "cursor {}");
  expect_400(&e, "/v1/bank/accounts/P1/transactions?cursor=WzEsMl0", "cursor [1,2]");
  expect_400(&e, "/v1/bank/accounts/P1/transactions?cursor=WyJ4Il0", "cursor [\"x\"] for a version");
  expect_400(&e, "/v1/bank/accounts/P1/transactions?cursor=W3t9XQ", "cursor [{}]");
  expect_400(&e, "/v1/bank/accounts/P1?cursor=WzFd", "a cursor for a query without one");

  /* ETag: the same positions give 304, a new deposit a new tag */
  char etag[128], etag2[128], inm[256];
  cr_assert_eq(esk_tp_http_request(e.qport, "GET", "/v1/bank/accounts/P1", NULL, NULL, 0, head,
                                   sizeof(head), body, sizeof(body)), 200, "%s", body);
  header_of(head, "ETag", etag, sizeof(etag));
  cr_assert(!strncmp(etag, "W/\"", 3), "no weak ETag in %s", head);
  snprintf(inm, sizeof(inm), "If-None-Match: %s\r\n", etag);
  cr_assert_eq(esk_tp_http_request(e.qport, "GET", "/v1/bank/accounts/P1", inm, NULL, 0, head,
                                   sizeof(head), body, sizeof(body)), 304, "%s", head);
  deposit(&e, "P1", DEPOSITS, token, sizeof(token));
  snprintf(path, sizeof(path), "/v1/bank/accounts/P1?consistency=%s", token);
  cr_assert_eq(esk_tp_http_request(e.qport, "GET", path, inm, NULL, 0, head, sizeof(head), body,
                                   sizeof(body)), 200, "%s", head);
  header_of(head, "ETag", etag2, sizeof(etag2));
  cr_assert(etag2[0] && strcmp(etag, etag2), "the ETag stayed %s after a deposit", etag);
  cr_assert_eq(balance_of(body), DEPOSITS + 1, "%s", body);
  unlink(log1);
  unlink(log2);
  unlink(log3);
  teardown(&e);
}

/* The tokens file of the auth test at @p path: writer (commands:write) and
 * @p reader (queries:read) with the token @p secret. */
static void write_tokens(const char *path, const char *reader, const char *secret) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "{ printf 'writer commands:write %%s\n' $(printf %%s W-secret-4711 | sha256sum | cut -c1-64);"
           " printf '%s queries:read %%s\n' $(printf %%s %s | sha256sum | cut -c1-64);"
           " } > %s", reader, secret, path);
  cr_assert_eq(system(cmd), 0);
}

static int get_with(int port, const char *path, const char *hdr, char *head,
                    char *body) {
  return esk_tp_http_request(port, "GET", path, hdr, NULL, 0, head, 4096, body, 4096);
}

Test(read_your_writes, bearer_tokens_and_scopes_guard_both_daemons, .timeout = 300) {
  env_t e = {0};
  char tokens[200], head[4096], body[4096];
  snprintf(tokens, sizeof(tokens), "/tmp/esk_test_ryw_tokens_%d", (int)getpid());
  write_tokens(tokens, "reader", "R-secret-4711");
  snprintf(e.auth, sizeof(e.auth), "api.auth.file=%s", tokens);
  setup(&e, "ryw_auth");
  const char *W = "Authorization: Bearer W-secret-4711\r\n", *R = "Authorization: Bearer R-secret-4711\r\n";
  const char *open = "{\"type\":\"OpenAccount\",\"command_id\":\"open-A1\",\"account_id\":\"A1\","
                     "\"owner_id\":\"auth\",\"initial_deposit\":{\"minor_units\":5,"
                     "\"currency\":\"EUR\"}}";
  cr_expect_eq(esk_ta_post(e.gport, NULL, NULL, open, head, sizeof(head), body, sizeof(body)),
               401, "no token: %s", body);
  cr_expect(strstr(head, "WWW-Authenticate: Bearer"), "%s", head);
  cr_expect_eq(esk_ta_post(e.gport, NULL, "Authorization: Bearer nope\r\n", open, head,
                           sizeof(head), body, sizeof(body)), 401, "%s", body);
  cr_expect_eq(esk_ta_post(e.gport, NULL, R, open, head, sizeof(head), body, sizeof(body)), 403,
               "a reader may not write: %s", body);
  cr_expect(strstr(body, "token reader lacks the scope commands:write"), "%s", body);
  cr_assert_eq(esk_ta_post(e.gport, NULL, W, open, head, sizeof(head), body, sizeof(body)), 200,
               "%s", body);
  char token[ESK_TOKEN_MAX_CHARS + 1], path[2048];
  esk_ta_token_of(body, e.key, token, sizeof(token));
  snprintf(path, sizeof(path), "/v1/bank/accounts/A1?consistency=%s", token);
  cr_expect_eq(get_with(e.qport, path, NULL, head, body), 401, "%s", body);
  cr_expect_eq(get_with(e.qport, "/v1/no/such/route", NULL, head, body), 401,
               "routes are not told to strangers: %s", body);
  cr_expect_eq(get_with(e.qport, path, W, head, body), 403, "a writer may not read: %s", body);
  cr_assert_eq(get_with(e.qport, path, R, head, body), 200, "%s", body);
  cr_expect_eq(balance_of(body), 5, "%s", body);
  cr_expect_eq(get_with(e.gport, "/v1/bank/commands/open-A1", NULL, head, body), 401);
  /* the probes need no token */
  cr_expect_eq(get_with(e.gport, "/healthz", NULL, head, body), 200);
  cr_expect_eq(get_with(e.qport, "/readyz", NULL, head, body), 200);
  /* SIGHUP reads the file again, without a restart: reader revoked, reader2 added */
  write_tokens(tokens, "reader2", "R2-secret-4712");
  kill(e.query, SIGHUP);
  kill(e.gateway, SIGHUP);
  for (int i = 0; !esk_tp_file_contains(e.qlog, "reloaded on SIGHUP") ||
                  !esk_tp_file_contains(e.glog, "reloaded on SIGHUP"); i++) {
    cr_assert_lt(i, 300, "no reload logged within 30 s (see %s and %s)", e.qlog, e.glog);
    esk_time_sleep_ms(100);
  }
  const char *R2 = "Authorization: Bearer R2-secret-4712\r\n";
  cr_expect_eq(get_with(e.qport, path, R2, head, body), 200, "the new token: %s", body);
  cr_expect_eq(get_with(e.qport, path, R, head, body), 401, "the revoked token: %s", body);
  cr_expect_eq(get_with(e.gport, "/v1/bank/commands/open-A1", W, head, body), 200, "%s", body);
  /* a bad file on SIGHUP: logged, and the tokens stay as they were */
  FILE *f = fopen(tokens, "w");
  cr_assert(f);
  fputs("reader3 queries:read not-a-hash\n", f);
  fclose(f);
  kill(e.query, SIGHUP);
  for (int i = 0; !esk_tp_file_contains(e.qlog, "reload on SIGHUP failed"); i++) {
    cr_assert_lt(i, 300, "no failed reload logged within 30 s (see %s)", e.qlog);
    esk_time_sleep_ms(100);
  }
  cr_expect(esk_tp_file_contains(e.qlog, ":1: token reader3"), "names file and line: %s", e.qlog);
  cr_expect_eq(get_with(e.qport, path, R2, head, body), 200, "kept after a bad file: %s", body);
  teardown(&e);
  /* the logs hold no token */
  cr_expect_not(esk_tp_file_contains(e.glog, "secret-4711"), "a token in %s", e.glog);
  cr_expect_not(esk_tp_file_contains(e.qlog, "secret-4711"), "a token in %s", e.qlog);
  unlink(tokens);
}

/* ------------------------------------------------ states as of a time --- */

/* Sends a deposit (@p minor > 0) or withdrawal (< 0) of @p acc, command @p id. */
static void move_money(env_t *e, const char *acc, const char *id, long minor, char *token,
                       size_t size) {
  char cmd[512], head[4096], body[4096];
  snprintf(cmd, sizeof(cmd), "{\"type\":\"%s\",\"command_id\":\"%s\",\"account_id\":\"%s\","
           "\"amount\":{\"minor_units\":%ld,\"currency\":\"EUR\"}}",
           minor > 0 ? "DepositMoney" : "WithdrawMoney", id, acc, minor > 0 ? minor : -minor);
  int st = esk_ta_post(e->gport, NULL, NULL, cmd, head, sizeof(head), body, sizeof(body));
  cr_assert_eq(st, 200, "%s: %d %s", id, st, body);
  esk_ta_token_of(body, e->key, token, size);
}

/* GET @p path: the status, and the answer parsed into *@p out (NULL when not JSON). */
static int get_json(env_t *e, const char *path, json_t **out) {
  static char body[65536];
  int st = esk_tp_http_get(e->qport, path, body, sizeof(body));
  *out = json_loads(body, 0, NULL);
  return st;
}

/* The state of S1 as_of @p us: expects @p version and @p balance, or 404
 * when @p version is 0. */
static void expect_state(env_t *e, int64_t us, int64_t version, int64_t balance) {
  char as_of[40], path[256];
  json_t *o;
  esk_time_format_rfc3339_us(as_of, sizeof(as_of), us);
  snprintf(path, sizeof(path), "/v1/bank/aggregates/S1/state?as_of=%s", as_of);
  int st = get_json(e, path, &o);
  if (!version) {
    cr_expect_eq(st, 404, "as_of %s: %d", as_of, st);
  } else {
    cr_assert_eq(st, 200, "as_of %s: %d", as_of, st);
    cr_expect_eq(json_integer_value(json_object_get(o, "version")), version, "as_of %s", as_of);
    cr_expect_str_eq(json_string_value(json_object_get(o, "as_of")), as_of);
    json_t *s = json_object_get(o, "state");
    cr_expect_eq(json_integer_value(json_object_get(s, "version")), version);
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(s, "balance"), "amount")),
                 balance, "as_of %s", as_of);
  }
  json_decref(o);
}

/* GET @p path with If-None-Match @p inm (none when ""): the status, with the
 * answer's ETag in @p etag ("" without one). */
static int get_state_etag(env_t *e, const char *path, const char *inm, char *etag, size_t size) {
  static char head[8192], body[65536];
  char h[256] = "";
  if (*inm) snprintf(h, sizeof(h), "If-None-Match: %s\r\n", inm);
  int st = esk_tp_http_request(e->qport, "GET", path, *inm ? h : NULL, NULL, 0, head,
                               sizeof(head), body, sizeof(body));
  header_of(head, "ETag", etag, size);
  return st;
}

/* A state's ETag: the same events give 304 without a fold, a new event a new
 * tag for the current state, and none for a state as of before it (@p last_us:
 * the time of S1's last event so far, version 4). */
static void expect_state_etags(env_t *e, int64_t last_us) {
  char now1[128], now2[128], then1[128], then2[128], as_of[40], path[256], token[512];
  const char *now_path = "/v1/bank/aggregates/S1/state";
  esk_time_format_rfc3339_us(as_of, sizeof(as_of), last_us);
  snprintf(path, sizeof(path), "%s?as_of=%s", now_path, as_of);
  cr_assert_eq(get_state_etag(e, now_path, "", now1, sizeof(now1)), 200);
  cr_assert(!strncmp(now1, "W/\"", 3), "no weak ETag on a state: '%s'", now1);
  cr_assert_eq(get_state_etag(e, now_path, now1, now2, sizeof(now2)), 304);
  cr_expect_str_eq(now2, now1, "a 304 names the same ETag");
  cr_assert_eq(get_state_etag(e, path, "", then1, sizeof(then1)), 200);
  cr_expect_str_neq(then1, now1, "as_of is part of the ETag");
  move_money(e, "S1", "S1-d3", 1, token, sizeof(token));
  char waited[1024];
  snprintf(waited, sizeof(waited), "%s?consistency=%s&wait_ms=10000", now_path, token);
  cr_assert_eq(get_state_etag(e, waited, now1, now2, sizeof(now2)), 200,
               "the current state after a new event is not the one cached");
  cr_expect(now2[0] && strcmp(now2, now1), "the ETag stayed %s after a new event", now1);
  cr_assert_eq(get_state_etag(e, path, then1, then2, sizeof(then2)), 304,
               "a state as of before the new event changed");
}

/* Hostile ids and as_of values: each a clear 4xx, never a 5xx. */
static void expect_hostile_state_refused(env_t *e) {
  char path[4096], body[4096], id[200];
  expect_400(e, "/v1/bank/aggregates/S1/state?as_of=2026-01-15T10:0", "truncated as_of");
  expect_400(e, "/v1/bank/aggregates/S1/state?as_of=yesterday", "malformed as_of");
  expect_400(e, "/v1/bank/aggregates/S1/state?as_of=2026-13-45T00:00:00Z", "out of range");
  expect_400(e, "/v1/bank/aggregates/S1/state?as_of=", "empty as_of");
  expect_400(e, "/v1/bank/aggregates/S1/state?as_of=2026-01-15T10:00:00Z'%3B--", "SQL as_of");
  int n = snprintf(path, sizeof(path), "/v1/bank/aggregates/S1/state?as_of=2026-01-15T");
  memset(path + n, '9', 3000);
  path[n + 3000] = '\0';
  expect_400(e, path, "huge as_of");
  cr_assert_eq(esk_tp_http_get(e->qport, "/v1/bank/aggregates/S1/state?as_of=x", body,
                               sizeof(body)), 400);
  cr_expect(strstr(body, "as_of"), "the answer names as_of: %s", body);
  memset(id, 'x', 129);
  id[129] = '\0';
  snprintf(path, sizeof(path), "/v1/bank/aggregates/%s/state", id);
  expect_400(e, path, "an id over 128 bytes");
  expect_400(e, "/v1/bank/aggregates/S1%00x/state", "an id with NUL");
  const char *not_found[] = {"/v1/bank/aggregates/S1%2F../state",
                             "/v1/bank/aggregates/../state", "/v1/bank/aggregates/%2E%2E/state",
                             "/v1/bank/aggregates/S1'%20or%20'1'%3D'1/state",
                             "/v1/bank/aggregates/S1/state/x"};
  for (size_t i = 0; i < sizeof(not_found) / sizeof(*not_found); i++) {
    int st = esk_tp_http_get(e->qport, not_found[i], body, sizeof(body));
    cr_expect_eq(st, 404, "GET %s answered %d %s", not_found[i], st, body);
  }
  int st = esk_tp_http_request(e->qport, "POST", "/v1/bank/aggregates/S1/state", NULL, "{}", 2,
                               path, sizeof(path), body, sizeof(body));
  cr_expect_eq(st, 405, "POST: %d", st);
}

Test(read_your_writes, an_accounts_state_as_of_times_between_its_events, .timeout = 600) {
  env_t e = {0};
  setup(&e, "ryw_asof");
  char log[300], token[ESK_TOKEN_MAX_CHARS + 1], path[4096];
  snprintf(log, sizeof(log), "%s.el", e.jlog);
  e.more[0] = start_projector(&e, "event_log", log);
  open_account(&e, "S1", "asof", NULL, 0);
  move_money(&e, "S1", "S1-d1", 100, token, sizeof(token));
  move_money(&e, "S1", "S1-w1", -30, token, sizeof(token));
  move_money(&e, "S1", "S1-d2", 5, token, sizeof(token));
  const int64_t balance[] = {0, 0, 100, 70, 75}; /* after versions 1..4 */
  json_t *o;
  /* no as_of: the current state, once event_log has the last command */
  snprintf(path, sizeof(path), "/v1/bank/aggregates/S1/state?consistency=%s&wait_ms=10000",
           token);
  cr_assert_eq(get_json(&e, path, &o), 200);
  cr_expect(json_is_null(json_object_get(o, "as_of")));
  cr_expect_eq(json_integer_value(json_object_get(o, "version")), 4);
  cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "state"), "status")),
                   "open");
  json_decref(o);
  /* the events' times, as event_log stores them */
  cr_assert_eq(get_json(&e, "/v1/bank/aggregates/S1/events", &o), 200);
  json_t *items = json_object_get(o, "items");
  cr_assert_eq(json_array_size(items), 4);
  int64_t at[5] = {0};
  esk_error_t err = {0};
  for (size_t i = 0; i < 4; i++) {
    const char *t = json_string_value(json_object_get(json_array_get(items, i), "occurred_at"));
    cr_assert_eq(esk_time_parse_rfc3339_us(&at[i + 1], t, &err), ESK_OK, "%s", err.msg);
  }
  json_decref(o);
  /* at each event's time, and a microsecond before it: the longest run of
   * versions whose occurred_at is at or before as_of */
  for (int v = 1; v <= 4; v++) {
    int before = 0, upto = 0;
    for (int k = 1; k <= 4 && at[k] <= at[v] - 1 && before == k - 1; k++) before = k;
    for (int k = 1; k <= 4 && at[k] <= at[v] && upto == k - 1; k++) upto = k;
    expect_state(&e, at[v] - 1, before, balance[before]);
    expect_state(&e, at[v], upto, balance[upto]);
  }
  expect_state(&e, at[4] + 3600 * 1000000LL, 4, 75);
  expect_state_etags(&e, at[4]);
  expect_hostile_state_refused(&e);
  unlink(log);
  teardown(&e);
}
