/* An open-loop HTTP load for bench_api (docs/benchmarks.md, "HTTP API"):
 * deposits sent to esk-gateway at a fixed rate whatever the answers' pace,
 * each timed from the moment it was due (so a queue in front of a slow server
 * counts, not only the server's own time), and, for one command in
 * VISIBLE_EVERY, a read of its account through esk-query with the command's
 * consistency token, timed from the same moment. Keep-alive HTTP/1.1
 * connections, one request each at a time, opened as needed up to a cap. */
#ifndef ESK_BENCH_OPEN_LOOP_H
#define ESK_BENCH_OPEN_LOOP_H

#include "bench_util.h"

/** What one rate measured. */
typedef struct esk_open_loop_s {
  int rate;                       /**< commands a second asked for */
  double seconds;                 /**< how long commands were sent */
  long sent, ok, other, errors;   /**< sent; answered 200; answered else; socket errors */
  long lagging;                   /**< commands sent later than due by over 10 ms */
  int conns;                      /**< connections opened to the gateway */
  esk_bench_samples_t result;     /**< command -> 200 with its result, ms */
  esk_bench_samples_t visible;    /**< command -> the query with its token answered, ms */
  long stale;                     /**< reads with the token that did not answer 200 */
} esk_open_loop_t;

/**
 * @brief Sends DepositMoney commands for accounts A0..A<accounts-1> (opened
 *        before) at @p rate a second for @p seconds, then waits up to 30 s
 *        for every answer.
 * @param id_prefix unique per run: command ids are <id_prefix>r<rate>-<n>
 */
void esk_open_loop_run(esk_open_loop_t *out, int gport, int qport, const char *id_prefix,
                       int accounts, int rate, double seconds);

/** Prints one line of @p r (and frees its samples). */
void esk_open_loop_report(esk_open_loop_t *r);

#endif
