/* A fuzzer of our own against esk-gateway and esk-query, both running on the
 * real stack beside an esk-producer and an esk-projector: for about 25 s it
 * sends hostile requests made from valid ones (truncated, byte-flipped,
 * deeply nested and oversized bodies, huge numbers, NUL and invalid UTF-8,
 * ids with / and .., SQL-looking parameters, forged and truncated tokens,
 * odd methods, content types and headers, and raw HTTP that is not HTTP).
 * Every answer must be a 2xx/3xx/4xx, or a 503 STALE; the daemons must stay
 * live and exit 0 on SIGTERM. The seed is printed, and ESK_FUZZ_SEED replays it. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "esk/time.h"
#include "esk_test.h"
#include "esk_test_api.h"
#include "esk_test_http.h"
#include "esk_test_producer.h"

#define PARTS 2
#define FUZZ_MS 25000
#define PROJECTOR ESK_BINARY_DIR "/bin/esk-projector"

static unsigned seed;
static unsigned rnd(unsigned n) { return n ? (unsigned)(rand_r(&seed) % n) : 0; }

static const char *const valid_bodies[] = {
    "{\"type\":\"OpenAccount\",\"command_id\":\"f-o%u\",\"account_id\":\"F%u\",\"owner_id\":\"fz\","
    "\"initial_deposit\":{\"minor_units\":100,\"currency\":\"EUR\"}}",
    "{\"type\":\"DepositMoney\",\"command_id\":\"f-d%u\",\"account_id\":\"F%u\",\"amount\":"
    "{\"minor_units\":5,\"currency\":\"EUR\"}}",
    "{\"type\":\"WithdrawMoney\",\"command_id\":\"f-w%u\",\"account_id\":\"F%u\",\"amount\":"
    "{\"minor_units\":50000,\"currency\":\"EUR\"},\"expected_version\":3}",
    "{\"type\":\"CloseAccount\",\"command_id\":\"f-c%u\",\"account_id\":\"F%u\"}",
};

static const char *const hostile_values[] = {
    "..", "../../etc/passwd", "a/b", "%00", "\\u0000", "' or '1'='1", "1; drop table x;--",
    "\xc3\x28", "\xff\xfe", "9999999999999999999999999999", "-1", "1e400", "null", "[]", "{}",
    "\xf0\x9f\x92\xa9", "\"", "\\", "%2e%2e%2f", "",
};

/* A body made from a valid command by one of several mutations. */
static size_t make_body(char *buf, size_t size) {
  unsigned k = rnd(1000000);
  int n = snprintf(buf, size, valid_bodies[rnd(4)], k, rnd(20));
  size_t len = n > 0 ? (size_t)n : 0;
  switch (rnd(10)) {
  case 0: len = rnd((unsigned)len); break;                          /* truncated */
  case 1: for (int i = 0; i < 4 && len; i++) buf[rnd((unsigned)len)] = (char)rnd(256); break;
  case 2: { /* nested */
    size_t d = 1 + rnd(3000), o = 0;
    if (2 * d + 32 > size) d = (size - 32) / 2;
    o = (size_t)snprintf(buf, size, "{\"type\":\"DepositMoney\",\"x\":");
    for (size_t i = 0; i < d; i++) buf[o++] = rnd(2) ? '[' : '[';
    for (size_t i = 0; i < d; i++) buf[o++] = ']';
    buf[o++] = '}';
    len = o;
    break;
  }
  case 3: { /* a hostile value in place of a string */
    char *q = strstr(buf, "\"F");
    if (q) {
      const char *v = hostile_values[rnd(sizeof(hostile_values) / sizeof(*hostile_values))];
      char tmp[4096];
      snprintf(tmp, sizeof(tmp), "%.*s\"%s%s", (int)(q - buf), buf, v, strchr(q + 1, '"'));
      len = (size_t)snprintf(buf, size, "%s", tmp);
    }
    break;
  }
  case 4: len = (size_t)snprintf(buf, size, "%s", hostile_values[rnd(20)]); break;
  case 5: { /* large */
    size_t big = 1000 + rnd(100000);
    if (big > size - 1) big = size - 1;
    memset(buf, 'a' + (char)rnd(26), big);
    buf[0] = '{';
    len = big;
    break;
  }
  default: break; /* valid */
  }
  return len;
}

static void make_path(char *buf, size_t size, const char *token) {
  const char *v = hostile_values[rnd(sizeof(hostile_values) / sizeof(*hostile_values))];
  char enc[256];
  size_t o = 0;
  for (const unsigned char *c = (const unsigned char *)v; *c && o + 4 < sizeof(enc); c++)
    o += (size_t)snprintf(enc + o, sizeof(enc) - o, rnd(2) ? "%%%02X" : "%c", *c);
  enc[o] = '\0';
  if (!*enc || strchr(enc, ' ') || strchr(enc, '?') || strchr(enc, '#')) snprintf(enc, sizeof(enc), "F%u", rnd(20));
  switch (rnd(9)) {
  case 0: snprintf(buf, size, "/v1/bank/accounts/%s", enc); break;
  case 1: snprintf(buf, size, "/v1/bank/accounts/F%u?consistency=%s&wait_ms=%u", rnd(20), token,
                   rnd(3) ? rnd(200) : rnd(2000000)); break;
  case 2: snprintf(buf, size, "/v1/bank/accounts/F%u?consistency=%.*s", rnd(20),
                   (int)rnd((unsigned)strlen(token) + 1), token); break;
  case 3: snprintf(buf, size, "/v1/bank/owners/%s/accounts?limit=%s", enc, v[0] ? enc : "-5"); break;
  case 4: snprintf(buf, size, "/v1/bank/commands/%s", enc); break;
  case 5: snprintf(buf, size, "/v1/bank/commands?wait_ms=%s", rnd(2) ? "300" : enc); break;
  case 6: snprintf(buf, size, "/v1/%s/commands", enc); break;
  case 7: snprintf(buf, size, "/v1/bank/accounts/F%u?consistency=%s", rnd(20),
                   rnd(2) ? "AQRiYW5rAAEAAAADAAAAAAAAAAF9XSE3_ovIRm8f3fAhSgp-LUViTJ1tA-zklmG_8stdHw"
                          : enc); break;
  default: snprintf(buf, size, "/%s", enc); break;
  }
}

/* Raw bytes that are not a valid request; the answer may be anything but a 5xx. */
static int raw_request(int port) {
  static const char *const raws[] = {
      "GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\n\r\n",
      "POST /v1/bank/commands HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "Content-Type: application/json\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
      "POST /v1/bank/commands HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n"
      "Content-Type: application/json\r\n\r\n{}",
      "GET /v1/bank/accounts/F1 HTTP/1.1\r\nHost: x\r\nEsk-Consistency: \x01\x02\x03\r\n\r\n",
      "GET /v1/bank/accounts/F1 HTTP/1.0\r\n", /* headers never end */
  };
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int status = 0;
  if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
    const char *r = raws[rnd(sizeof(raws) / sizeof(*raws))];
    if (write(fd, r, strlen(r)) > 0) {
      char resp[512];
      ssize_t n = read(fd, resp, sizeof(resp) - 1);
      if (n > 12 && !strncmp(resp, "HTTP/1.", 7)) status = atoi(resp + 9);
    }
  }
  close(fd);
  return status;
}

Test(api_fuzz, hostile_requests_get_no_5xx_and_crash_neither_daemon, .timeout = 300) {
  char prefix[128], schema[64], keyfile[256], plog[256], jlog[256], glog[256], qlog[256];
  unsigned char key[ESK_TOKEN_KEY_BYTES];
  int gport, qport;
  esk_test_require_pg();
  const char *s = getenv("ESK_FUZZ_SEED");
  seed = s ? (unsigned)strtoul(s, NULL, 10) : (unsigned)(getpid() ^ esk_time_mono_ms());
  const unsigned seed0 = seed;
  fprintf(stderr, "api_fuzz: seed %u (ESK_FUZZ_SEED=%u replays it)\n", seed0, seed0);
  pid_t producer = esk_tp_setup(prefix, sizeof(prefix), "fuzz", PARTS, plog, sizeof(plog), NULL);
  esk_test_unique_name(schema, sizeof(schema), "esk_test_fuzz");
  esk_tp_log_path(jlog, sizeof(jlog), prefix, "j");
  esk_tp_log_path(glog, sizeof(glog), prefix, "g");
  esk_tp_log_path(qlog, sizeof(qlog), prefix, "q");
  esk_ta_write_key(keyfile, sizeof(keyfile), prefix, key);
  char a_topic[256], a_schema[128], a_prefix[256], a_group[256];
  snprintf(a_topic, sizeof(a_topic), "topic=%sbank.events", prefix);
  snprintf(a_schema, sizeof(a_schema), "pg.schema=%s", schema);
  snprintf(a_prefix, sizeof(a_prefix), "topic.prefix=%s", prefix);
  snprintf(a_group, sizeof(a_group), "group.id=%sgroup", prefix);
  const char *pargv[] = {PROJECTOR, "--projection", "account_balances", "-X", a_topic, "-X",
                         a_schema, "-X", a_group, "-X", "http.listen=off", NULL};
  pid_t projector = esk_tp_spawn(pargv, jlog);
  const char *gargs[] = {a_prefix, "gateway.body.max.bytes=65536", NULL};
  pid_t gateway = esk_ta_start(ESK_TEST_GATEWAY_BIN, keyfile, glog, gargs, &gport);
  const char *qargs[] = {a_prefix, a_schema, "query.file=" ESK_SOURCE_DIR
                         "/deploy/queries/bank.queries", NULL};
  pid_t query = esk_ta_start(ESK_TEST_QUERY_BIN, keyfile, qlog, qargs, &qport);

  /* a real token to mutate */
  char head[4096], *body = malloc(1 << 17), *out = malloc(1 << 16), token[1300] = "x";
  char path[2048], hdrs[1024];
  snprintf(body, 1 << 17, valid_bodies[0], 0u, 0u);
  cr_assert_eq(esk_ta_post(gport, "?wait_ms=20000", NULL, body, head, sizeof(head), out, 1 << 16),
               200, "%s", out);
  esk_ta_token_of(out, key, token, sizeof(token));

  static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS",
                                        "PATCH", "TRACE"};
  static const char *const ctypes[] = {"application/json", "application/json; charset=utf-8",
                                       "text/plain", "application/jsonx", "", "multipart/form-data"};
  long requests = 0, raws = 0, by_class[6] = {0};
  int64_t until = esk_time_mono_ms() + FUZZ_MS;
  while (esk_time_mono_ms() < until) {
    int port = rnd(2) ? gport : qport;
    if (rnd(20) == 0) {
      int st = raw_request(port);
      cr_assert(st < 500 || st == 505, "raw request: %d (seed %u)", st, seed0);
      raws++;
      continue;
    }
    size_t len = make_body(body, 1 << 17);
    make_path(path, sizeof(path), token);
    const char *m = rnd(3) ? (port == gport ? "POST" : "GET") : methods[rnd(8)];
    size_t o = (size_t)snprintf(hdrs, sizeof(hdrs), "Content-Type: %s\r\n", ctypes[rnd(6)]);
    if (rnd(4) == 0)
      o += (size_t)snprintf(hdrs + o, sizeof(hdrs) - o, "Idempotency-Key: %s\r\n",
                            hostile_values[rnd(20)][0] == '\r' ? "x" : "k-fz");
    if (rnd(6) == 0)
      snprintf(hdrs + o, sizeof(hdrs) - o, "Esk-Consistency: %.*s\r\n",
               (int)rnd((unsigned)strlen(token) + 1), token);
    int send_body = strcmp(m, "GET") && strcmp(m, "HEAD");
    int st = esk_tp_http_request(port, m, path, hdrs, send_body ? body : NULL, len, head,
                                 sizeof(head), out, 1 << 16);
    requests++;
    cr_assert_neq(st, -1, "%s %s: no answer (seed %u)", m, path, seed0);
    by_class[st / 100 < 6 ? st / 100 : 5]++;
    int stale = st == 503 && strstr(out, "\"STALE\"");
    cr_assert(st < 500 || stale, "%s %s -> %d %s (seed %u)", m, path, st, out, seed0);
    if (st >= 400 && st != 405 && strncmp(path, "/v1/", 4) == 0 && strcmp(m, "HEAD"))
      cr_assert(strstr(out, "\"error\""), "%s %s -> %d without a JSON error: %s (seed %u)", m,
                path, st, out, seed0);
  }
  fprintf(stderr, "api_fuzz: %ld requests (2xx %ld, 3xx %ld, 4xx %ld, 5xx %ld) and %ld raw, "
          "seed %u\n", requests, by_class[2], by_class[3], by_class[4], by_class[5], raws, seed0);
  cr_assert_gt(requests, 100, "too few requests in %d ms", FUZZ_MS);
  cr_assert_eq(esk_tp_http_get(gport, "/healthz", out, 1 << 16), 200);
  cr_assert_eq(esk_tp_http_get(qport, "/healthz", out, 1 << 16), 200);
  cr_expect_eq(esk_tp_stop(query, SIGTERM, 20000), 0, "esk-query exit");
  cr_expect_eq(esk_tp_stop(gateway, SIGTERM, 20000), 0, "esk-gateway exit");
  esk_tp_stop(projector, SIGTERM, 20000);
  esk_tp_stop(producer, SIGTERM, 20000);
  esk_tp_delete_topics(prefix);
  esk_test_drop_schema(schema);
  unlink(keyfile);
  free(body);
  free(out);
}
