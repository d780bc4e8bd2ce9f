/* See bench_util.h. */
#include "bench_util.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esk/time.h"

void esk_bench_die(const char *who, const char *what, const char *msg) {
  fprintf(stderr, "%s: %s: %s\n", who, what, msg);
  exit(1);
}

void esk_bench_add(esk_bench_samples_t *s, double ms) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 1024;
    s->ms = realloc(s->ms, s->cap * sizeof(*s->ms));
    if (!s->ms) esk_bench_die("bench", "samples", "out of memory");
  }
  s->ms[s->n++] = ms;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

void esk_bench_sort(esk_bench_samples_t *s) { qsort(s->ms, s->n, sizeof(*s->ms), cmp_double); }

double esk_bench_pct(const esk_bench_samples_t *s, double p) {
  if (!s->n) return NAN;
  size_t r = (size_t)ceil(p / 100.0 * (double)s->n);
  return s->ms[r ? r - 1 : 0];
}

pid_t esk_bench_spawn(const char *who, char *const argv[], const char *log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE *f = freopen(log, "a", stderr);
    (void)f;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execv(argv[0], argv);
    _exit(127);
  }
  if (pid < 0) esk_bench_die(who, "fork", argv[0]);
  return pid;
}

int esk_bench_stop(pid_t pid) {
  int st = 0;
  kill(pid, SIGTERM);
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int esk_bench_log_port(const char *who, const char *log) {
  for (int w = 0; w < 300; w++) {
    FILE *f = fopen(log, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
      const char *a = strstr(line, "msg=\"http endpoints listening\" addr=127.0.0.1:");
      if (a) {
        fclose(f);
        return atoi(strrchr(a, ':') + 1);
      }
    }
    if (f) fclose(f);
    esk_time_sleep_ms(100);
  }
  esk_bench_die(who, log, "no http endpoints line in this log");
  return -1;
}
