/* Test and bench support: a bank projection run by esk-projector's own code
 * (esk_projector_run) in a thread of the test, with its counters at hand.
 * No Criterion: the benches link it. */
#ifndef ESK_TEST_PROJECTOR_H
#define ESK_TEST_PROJECTOR_H

#include <stddef.h>

#include "esk/error.h"
#include "projector.h"

typedef struct esk_test_projector_s esk_test_projector_t;

/**
 * @brief Starts bank projection @p name (esk-projector's code, in a thread)
 *        on @p topic, in PostgreSQL schema @p schema, as consumer group @p group.
 * @param max_bytes the decoder's value limit (0: default).
 * @param kv NULL or a NULL-terminated list of extra key, value pairs.
 */
int esk_test_projector_start(esk_test_projector_t **out, const char *name, const char *topic,
                             const char *schema, const char *group, size_t max_bytes,
                             const char *const *kv, esk_error_t *err);

/**
 * @brief As esk_test_projector_start(), for a projection built by the caller
 *        (declarative file, plugin), which stays the caller's to free after
 *        esk_test_projector_stop(). Its name is the projection's name.
 */
int esk_test_projector_start_with(esk_test_projector_t **out, const esk_projection_t *proj,
                                  const char *topic, const char *schema, const char *group,
                                  const char *const *kv, esk_error_t *err);

/** @brief The running projector's counters; returns its run's error code if it ended. */
int esk_test_projector_stats(esk_test_projector_t *t, esk_projector_stats_t *s, esk_error_t *err);

/** @brief esk_test_projector_stats() in the shape of esk_test_projector_quiet()'s
 *         counters (@p t an esk_test_projector_t); a run that ended shows in the stop. */
void esk_test_projector_counters(void *t, esk_projector_stats_t *s);

/** @brief Stops (as SIGTERM would), joins and frees it; the final counters in @p s.
 *  @returns the run's code (ESK_OK on the requested stop). */
int esk_test_projector_stop(esk_test_projector_t *t, esk_projector_stats_t *s, esk_error_t *err);

#endif
