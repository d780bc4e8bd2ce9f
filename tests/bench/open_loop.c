/* The open-loop HTTP load of bench_api (open_loop.h). One thread, epoll, and
 * keep-alive connections: a command due finds an idle gateway connection, or
 * opens one (up to MAX_CONNS), or waits in a backlog; either way its time is
 * counted from when it was due. */
#define _GNU_SOURCE /* strcasestr */
#include "open_loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "esk/time.h"

#define MAX_CONNS 1000 /* per daemon */
#define VISIBLE_EVERY 10
#define TOKEN_MAX 1300

typedef struct job_s {
  double due;
  long n; /* the command's number */
  char token[TOKEN_MAX]; /* a read's token; "" for a command */
} job_t;

typedef struct conn_s {
  int fd, query, busy;
  job_t job;
  size_t have;
  char in[8192];
} conn_t;

typedef struct side_s { /* the gateway's connections, or esk-query's */
  int port, query, n_open;
  conn_t **idle;
  size_t n_idle;
  job_t *backlog; /* FIFO */
  size_t b_head, b_tail, b_cap;
} side_t;

typedef struct loop_s {
  int ep, accounts, rate;
  const char *id_prefix;
  long inflight;
  side_t gw, q;
  esk_open_loop_t *r;
} loop_t;

static double now_ms(void) { return (double)esk_time_mono_us() / 1000.0; }

static conn_t *conn_open(loop_t *l, side_t *s) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0) return NULL;
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return NULL;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  conn_t *c = calloc(1, sizeof(*c));
  if (!c) esk_bench_die("bench_api", "open loop", "out of memory");
  c->fd = fd;
  c->query = s->query;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
  epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev);
  s->n_open++;
  if (!s->query) l->r->conns++;
  return c;
}

static void conn_close(loop_t *l, conn_t *c) {
  side_t *s = c->query ? &l->q : &l->gw;
  for (size_t i = 0; !c->busy && i < s->n_idle; i++) /* closed by the server while idle */
    if (s->idle[i] == c) {
      s->idle[i] = s->idle[--s->n_idle];
      break;
    }
  epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  s->n_open--;
  free(c);
}

/* Sends @p j on @p c: a deposit, or a read of its account with its token. */
static int conn_send(loop_t *l, conn_t *c, const job_t *j) {
  char req[2048], body[512];
  int acc = (int)(j->n % l->accounts), n;
  if (c->query) {
    n = snprintf(req, sizeof(req), "GET /v1/bank/accounts/A%d?consistency=%s&wait_ms=10000 "
                 "HTTP/1.1\r\nHost: b\r\n\r\n", acc, j->token);
  } else {
    int b = snprintf(body, sizeof(body), "{\"type\":\"DepositMoney\",\"command_id\":\"%sr%d-%ld\","
                     "\"account_id\":\"A%d\",\"amount\":{\"minor_units\":1,\"currency\":\"EUR\"}}",
                     l->id_prefix, l->rate, j->n, acc);
    n = snprintf(req, sizeof(req), "POST /v1/bank/commands HTTP/1.1\r\nHost: b\r\nContent-Type: "
                 "application/json\r\nContent-Length: %d\r\n\r\n%s", b, body);
  }
  c->job = *j;
  c->have = 0;
  c->busy = 1;
  /* a request of under 2 KiB on an idle loopback connection goes at once */
  return send(c->fd, req, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

static void backlog_push(side_t *s, const job_t *j) {
  if (s->b_tail == s->b_cap) {
    s->b_cap = s->b_cap ? 2 * s->b_cap : 1024;
    s->backlog = realloc(s->backlog, s->b_cap * sizeof(*s->backlog));
    if (!s->backlog) esk_bench_die("bench_api", "open loop", "out of memory");
  }
  s->backlog[s->b_tail++] = *j;
}

/* Gives @p j a connection of @p s: an idle one, a new one, or the backlog. */
static void dispatch(loop_t *l, side_t *s, const job_t *j) {
  for (;;) {
    conn_t *c = s->n_idle ? s->idle[--s->n_idle] : NULL;
    if (!c && s->n_open < MAX_CONNS) c = conn_open(l, s);
    if (!c) {
      backlog_push(s, j);
      return;
    }
    if (conn_send(l, c, j) == 0) return;
    l->r->errors++; /* the server closed it while idle: another one */
    conn_close(l, c);
  }
}

/* The answer in @p c is whole: its status, and its body in *body. */
static int answer_whole(conn_t *c, int *status, const char **body) {
  c->in[c->have] = '\0';
  char *end = strstr(c->in, "\r\n\r\n");
  if (!end) return 0;
  const char *cl = strcasestr(c->in, "\r\nContent-Length:");
  size_t len = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
  if (c->have < (size_t)(end + 4 - c->in) + len) return 0;
  *status = atoi(c->in + 9);
  *body = end + 4;
  return 1;
}

/* A deposit answered: its time, and for one in VISIBLE_EVERY a read with its token. */
static void command_done(loop_t *l, const job_t *j, int status, const char *body, double t) {
  if (status != 200) {
    l->r->other++;
    return;
  }
  l->r->ok++;
  esk_bench_add(&l->r->result, t - j->due);
  const char *tok = strstr(body, "\"consistency_token\":\"");
  if (j->n % VISIBLE_EVERY || !tok) return;
  job_t read = {.due = j->due, .n = j->n};
  tok += strlen("\"consistency_token\":\"");
  size_t n = strcspn(tok, "\"");
  if (n >= TOKEN_MAX) return;
  memcpy(read.token, tok, n);
  read.token[n] = '\0';
  l->inflight++;
  dispatch(l, &l->q, &read);
}

/* An answer arrived (or the connection closed): record it, reuse the connection. */
static void on_readable(loop_t *l, conn_t *c) {
  side_t *s = c->query ? &l->q : &l->gw;
  ssize_t got = recv(c->fd, c->in + c->have, sizeof(c->in) - 1 - c->have, 0);
  int status = 0;
  const char *body = NULL;
  if (got > 0) c->have += (size_t)got;
  if (got <= 0 || c->have >= sizeof(c->in) - 1) {
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (c->busy) {
      l->r->errors++;
      l->inflight--;
    }
    conn_close(l, c);
    return;
  }
  if (!c->busy || !answer_whole(c, &status, &body)) return;
  double t = now_ms();
  job_t j = c->job;
  c->busy = 0;
  l->inflight--;
  if (c->query) {
    if (status == 200) esk_bench_add(&l->r->visible, t - j.due);
    else l->r->stale++;
  } else {
    command_done(l, &j, status, body, t);
  }
  if (s->b_head < s->b_tail) { /* the oldest waiting job takes it */
    if (conn_send(l, c, &s->backlog[s->b_head++]) == 0) return;
    l->r->errors++;
    l->inflight--;
    conn_close(l, c);
    return;
  }
  s->idle[s->n_idle++] = c;
}

static void side_init(side_t *s, int port, int query) {
  memset(s, 0, sizeof(*s));
  s->port = port;
  s->query = query;
  s->idle = calloc(MAX_CONNS, sizeof(*s->idle));
  if (!s->idle) esk_bench_die("bench_api", "open loop", "out of memory");
}

static void side_free(loop_t *l, side_t *s) {
  while (s->n_idle) conn_close(l, s->idle[s->n_idle - 1]);
  free(s->idle);
  free(s->backlog);
}

/* Sends the commands as they fall due and handles answers until all are in
 * (or 30 s past the last). Busy connections still open at the end are left
 * to the process's exit. */
static void run_loop(loop_t *l, long total, double seconds) {
  struct epoll_event evs[256];
  double start = now_ms(), period = 1000.0 / l->rate;
  long i = 0;
  while (i < total || l->inflight > 0) {
    double t = now_ms();
    if (t - start > seconds * 1000 + 30000) break;
    for (; i < total && start + (double)i * period <= t; i++) {
      job_t j = {.due = start + (double)i * period, .n = i};
      if (t - j.due > 10) l->r->lagging++;
      l->r->sent++;
      l->inflight++;
      dispatch(l, &l->gw, &j);
    }
    double wait = i < total ? start + (double)i * period - now_ms() : 100;
    int n = epoll_wait(l->ep, evs, 256, wait > 0 ? (int)ceil(wait) : 0);
    for (int k = 0; k < n; k++) on_readable(l, evs[k].data.ptr);
  }
}

void esk_open_loop_run(esk_open_loop_t *out, int gport, int qport, const char *id_prefix,
                       int accounts, int rate, double seconds) {
  memset(out, 0, sizeof(*out));
  out->rate = rate;
  out->seconds = seconds;
  loop_t l = {.ep = epoll_create1(EPOLL_CLOEXEC), .accounts = accounts, .rate = rate,
              .id_prefix = id_prefix, .r = out};
  if (l.ep < 0) esk_bench_die("bench_api", "open loop", "epoll_create1 failed");
  side_init(&l.gw, gport, 0);
  side_init(&l.q, qport, 1);
  run_loop(&l, (long)(rate * seconds), seconds);
  out->errors += l.inflight; /* never answered */
  side_free(&l, &l.gw);
  side_free(&l, &l.q);
  close(l.ep);
}

void esk_open_loop_report(esk_open_loop_t *r) {
  esk_bench_sort(&r->result);
  esk_bench_sort(&r->visible);
  printf("open loop %5d/s for %.0f s: sent %ld (%ld late by >10 ms), 200: %ld, other: %ld, "
         "errors: %ld, connections %d\n", r->rate, r->seconds, r->sent, r->lagging, r->ok,
         r->other, r->errors, r->conns);
  printf("    command -> result     p50 %7.1f  p90 %7.1f  p99 %7.1f  max %7.1f ms\n",
         esk_bench_pct(&r->result, 50), esk_bench_pct(&r->result, 90),
         esk_bench_pct(&r->result, 99), r->result.n ? r->result.ms[r->result.n - 1] : NAN);
  printf("    command -> visible    p50 %7.1f  p90 %7.1f  p99 %7.1f  max %7.1f ms "
         "(1 command in %d read with its token; %ld not 200)\n",
         esk_bench_pct(&r->visible, 50), esk_bench_pct(&r->visible, 90),
         esk_bench_pct(&r->visible, 99), r->visible.n ? r->visible.ms[r->visible.n - 1] : NAN,
         VISIBLE_EVERY, r->stale);
  fflush(stdout);
  free(r->result.ms);
  free(r->visible.ms);
}
