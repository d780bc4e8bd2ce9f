/* What the end-to-end benches share: latency samples, and the daemons they
 * start as children. */
#ifndef ESK_BENCH_UTIL_H
#define ESK_BENCH_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/** Prints "<who>: <what>: <msg>" and exits 1. */
void esk_bench_die(const char *who, const char *what, const char *msg);

/** Latencies in milliseconds. */
typedef struct esk_bench_samples_s {
  double *ms;
  size_t n, cap;
} esk_bench_samples_t;

void esk_bench_add(esk_bench_samples_t *s, double ms);
/** Sorts the samples (before esk_bench_pct). */
void esk_bench_sort(esk_bench_samples_t *s);
/** Nearest-rank percentile of sorted samples; NAN when there are none. */
double esk_bench_pct(const esk_bench_samples_t *s, double p);

/** Starts @p argv as a child that dies with the bench, stderr to @p log. */
pid_t esk_bench_spawn(const char *who, char *const argv[], const char *log);
/** SIGTERM and wait. @returns the exit status (128 + signal when killed). */
int esk_bench_stop(pid_t pid);
/** The port of the `http endpoints listening` line in @p log (waits 30 s). */
int esk_bench_log_port(const char *who, const char *log);

#endif
