/**
 * @file decider.h
 * @brief The runtime's side of deciding one command with a domain's Decider
 *        (esk/domain.h): the envelope checks, validate(), the expected
 *        version, decide(), then evolve() over the events. Pure: no Kafka, no
 *        clock, no store; unit-tested on its own (tests/unit/test_domain.c).
 */
#ifndef ESK_PRODUCER_DECIDER_H
#define ESK_PRODUCER_DECIDER_H

#include <stddef.h>

#include "aggstore.h"
#include "esk/domain.h"
#include "esk/error.h"

/** Scratch for one domain's decisions (its events and states), made once. */
typedef struct esk_decider_s esk_decider_t;

/** @brief Allocates the scratch for @p d (borrowed: it must outlive the decider). */
int esk_decider_new(esk_decider_t **out, const esk_domain_t *d, esk_error_t *err);

/** @brief Frees it. NULL does nothing. */
void esk_decider_destroy(esk_decider_t *dc);

/** @brief The domain's initial state (state_size bytes, owned by @p dc). */
const void *esk_decider_initial(const esk_decider_t *dc);

/**
 * @brief Decides @p cmd with envelope @p env against @p state.
 *
 * The checks run in this order, the first failure being the result:
 * the envelope (aggregate id present and at most ESK_ID_MAX bytes, actor and
 * correlation id at most ESK_ID_MAX, expected_version not negative:
 * INVALID_COMMAND), validate(), the expected version (CONCURRENCY_CONFLICT),
 * decide(). An accepted command's events are folded with evolve().
 *
 * @param state the aggregate's state, or NULL for one with no event yet.
 *        Never changed.
 * @param res set to the result (accepted, or the rule with its message).
 * @returns ESK_OK whenever a result was set; ESK_EFATAL when evolve() refuses
 *          an event decide() just made (the domain contradicts itself).
 *          When accepted, esk_decider_events() and esk_decider_next() hold the
 *          events and the next state until the next call.
 */
int esk_decider_run(esk_decider_t *dc, const void *state, const esk_envelope_t *env,
                    const void *cmd, esk_result_t *res, esk_error_t *err);

/** @brief The events of the last accepted command (@p n_out of them, event_size bytes each). */
const void *esk_decider_events(const esk_decider_t *dc, size_t *n_out);

/** @brief The i-th of them. */
const void *esk_decider_event(const esk_decider_t *dc, size_t i);

/** @brief The state after them (state_size bytes). */
const void *esk_decider_next(const esk_decider_t *dc);

/**
 * @brief Sets @p res to a rejection the runtime decides, e.g.
 *        (ESK_RULE_INVALID_COMMAND, "the message key is not ..."): the message
 *        is "<CODE>: " then @p fmt.
 */
void esk_result_reject(esk_result_t *res, const esk_domain_t *d, int rule, int64_t version,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
