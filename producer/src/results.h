/**
 * @file results.h
 * @brief The value of `<domain>.command-results`: one JSON object per command,
 *        keyed by its command id (docs/producer.md, "Topics").
 */
#ifndef ESK_PRODUCER_RESULTS_H
#define ESK_PRODUCER_RESULTS_H

#include <stddef.h>

#include "aggstore.h"
#include "esk/domain.h"
#include "esk/error.h"

/**
 * @brief Writes a result as the JSON value of the results topic:
 *        `{"command_id":..,"status":"accepted","aggregate_version":N,
 *        "events":[{"type":..,"version":N}, ...]}` (no "events" when
 *        n_events is -1; no "type" for a name esk_result_set_events() left
 *        out) or
 *        `{"command_id":..,"status":"rejected","error":{"code":..,"message":..,
 *        "actual_version":N}}`; the code is esk_domain_rule_name(@p d, rule).
 * @returns the length written (< size), or ESK_ENOMEM when it does not fit.
 */
int esk_result_to_json(char *buf, size_t size, const char *command_id, const esk_result_t *res,
                       const esk_domain_t *d);

/**
 * @brief As esk_result_to_json(), for a command id of @p id_len bytes as
 *        received (it may hold U+0000, written \u0000, or bytes that are not
 *        UTF-8, each written as the lone surrogate \udcXX).
 */
int esk_result_to_json_n(char *buf, size_t size, const char *command_id, size_t id_len,
                         const esk_result_t *res, const esk_domain_t *d);

/**
 * @brief Makes @p res list @p n events of the given types (their versions
 *        follow from res->version). A type is kept in res->message while
 *        all of them so far fit; the rest are counted without their names.
 *        A NULL or empty type, or one holding ',', is not kept either.
 */
void esk_result_set_events(esk_result_t *res, const char *const *types, size_t n);

/**
 * @brief Parses a value written by esk_result_to_json(); one whose command id
 *        holds U+0000 or a lone surrogate (a refused command's answer, whose id
 *        is not remembered) is ESK_EPOISON, and so is a code @p d does not know.
 * @param command_id_out receives the command id (ESK_ID_MAX + 1 bytes).
 * @returns ESK_OK or ESK_EPOISON naming the problem.
 */
int esk_result_from_json(char *command_id_out, esk_result_t *res, const void *data, size_t len,
                         const esk_domain_t *d, esk_error_t *err);

#endif
