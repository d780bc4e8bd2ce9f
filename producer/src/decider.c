/* Deciding one command with a domain (see decider.h and esk/domain.h). */
#include "decider.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct esk_decider_s {
  const esk_domain_t *d;
  unsigned char *initial, *next, *tmp; /* state_size each */
  unsigned char *events;               /* max_events * event_size */
  size_t n_events;
};

int esk_decider_new(esk_decider_t **out, const esk_domain_t *d, esk_error_t *err) {
  esk_decider_t *dc = calloc(1, sizeof(*dc));
  if (!dc) return esk_error_set(err, ESK_ENOMEM, "decider: out of memory");
  dc->d = d;
  dc->initial = calloc(3, d->state_size);
  dc->events = calloc(d->max_events, d->event_size);
  if (!dc->initial || !dc->events) {
    esk_decider_destroy(dc);
    return esk_error_set(err, ESK_ENOMEM, "decider: out of memory");
  }
  dc->next = dc->initial + d->state_size;
  dc->tmp = dc->next + d->state_size;
  d->init_state(dc->initial);
  *out = dc;
  return ESK_OK;
}

void esk_decider_destroy(esk_decider_t *dc) {
  if (!dc) return;
  free(dc->initial);
  free(dc->events);
  free(dc);
}

const void *esk_decider_initial(const esk_decider_t *dc) { return dc->initial; }

void esk_result_reject(esk_result_t *res, const esk_domain_t *d, int rule, int64_t version,
                       const char *fmt, ...) {
  memset(res, 0, sizeof(*res));
  res->rule = rule;
  res->version = version;
  int n = snprintf(res->message, sizeof(res->message), "%s: ", esk_domain_rule_name(d, rule));
  if (n < 0 || (size_t)n >= sizeof(res->message)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(res->message + n, sizeof(res->message) - (size_t)n, fmt, ap);
  va_end(ap);
}

/* The decision's message into the result: only its bytes (every command pays it). */
static void copy_message(esk_result_t *res, const esk_decision_t *dn) {
  size_t n = strnlen(dn->message, sizeof(res->message) - 1);
  memcpy(res->message, dn->message, n);
  res->message[n] = '\0';
}

/* One id of the envelope; on failure sets @p res and returns 0. */
static int check_id(esk_result_t *res, const esk_domain_t *d, int64_t v, const char *name,
                    const char *id, int required) {
  if (!id || !id[0]) {
    if (!required) return 1;
    esk_result_reject(res, d, ESK_RULE_INVALID_COMMAND, v, "%s is missing or empty", name);
    return 0;
  }
  if (strnlen(id, ESK_ID_MAX + 1) > ESK_ID_MAX) {
    esk_result_reject(res, d, ESK_RULE_INVALID_COMMAND, v,
                      "%s is longer than the maximum of %d bytes", name, ESK_ID_MAX);
    return 0;
  }
  return 1;
}

/* The envelope, validate() and the expected version: 1 when the command may
 * be decided, 0 with @p res set otherwise. */
static int admissible(const esk_decider_t *dc, int64_t v, const esk_envelope_t *env,
                      const void *cmd, esk_result_t *res) {
  const esk_domain_t *d = dc->d;
  if (!check_id(res, d, v, "command_id", env->command_id, 1) ||
      !check_id(res, d, v, d->aggregate_id_field, env->aggregate_id, 1) ||
      !check_id(res, d, v, "actor", env->actor, 0) ||
      !check_id(res, d, v, "correlation_id", env->correlation_id, 0))
    return 0;
  if (env->has_expected_version && env->expected_version < 0) {
    esk_result_reject(res, d, ESK_RULE_INVALID_COMMAND, v,
                      "expected_version %" PRId64 " is negative", env->expected_version);
    return 0;
  }
  esk_decision_t dn;
  dn.rule = ESK_RULE_ACCEPTED;
  dn.message[0] = '\0';
  d->validate(cmd, env, &dn);
  if (dn.rule != ESK_RULE_ACCEPTED) {
    res->rule = dn.rule;
    res->version = v;
    copy_message(res, &dn);
    return 0;
  }
  if (env->has_expected_version && env->expected_version != v) {
    esk_result_reject(res, d, ESK_RULE_CONCURRENCY_CONFLICT, v,
                      "%s %s: expected version %" PRId64 " but the actual version is %" PRId64,
                      d->aggregate_type, env->aggregate_id, env->expected_version, v);
    return 0;
  }
  return 1;
}

/* Folds the decided events into dc->next. */
static int fold(esk_decider_t *dc, const void *state, esk_error_t *err) {
  const esk_domain_t *d = dc->d;
  const void *cur = state;
  for (size_t i = 0; i < dc->n_events; i++) {
    /* alternate between next and tmp so that evolve never writes its input */
    unsigned char *dst = (dc->n_events - i) % 2 ? dc->next : dc->tmp;
    esk_error_t e = {0};
    if (d->evolve(dst, cur, dc->events + i * d->event_size, &e))
      return esk_error_set(err, ESK_EFATAL,
                           "domain %s: evolve refused an event its decide just made: %s",
                           d->name, e.msg);
    cur = dst;
  }
  return ESK_OK;
}

int esk_decider_run(esk_decider_t *dc, const void *state, const esk_envelope_t *env,
                    const void *cmd, esk_result_t *res, esk_error_t *err) {
  const esk_domain_t *d = dc->d;
  if (!state) state = dc->initial;
  int64_t v = d->version(state);
  dc->n_events = 0;
  res->n_events = 0;
  if (!admissible(dc, v, env, cmd, res)) return ESK_OK;
  esk_decision_t dn;
  esk_error_t e = {0};
  size_t n = 0;
  dn.rule = ESK_RULE_ACCEPTED;
  dn.message[0] = '\0';
  if (d->decide(state, cmd, env, dc->events, &n, &dn, &e)) {
    esk_result_reject(res, d, ESK_RULE_INVALID_COMMAND, v, "%.300s", e.msg);
    return ESK_OK;
  }
  res->rule = dn.rule;
  copy_message(res, &dn);
  if (n > d->max_events)
    return esk_error_set(err, ESK_EFATAL,
                         "domain %s: decide made %zu events, over its max_events %zu", d->name, n,
                         d->max_events);
  if (dn.rule != ESK_RULE_ACCEPTED || n == 0) {
    res->version = v;
    if (dn.rule == ESK_RULE_ACCEPTED) /* accepted without events: nothing changes */
      memcpy(dc->next, state, d->state_size);
    return ESK_OK;
  }
  dc->n_events = n;
  int rc = fold(dc, state, err);
  if (rc) return rc;
  res->version = d->version(dc->next);
  return ESK_OK;
}

const void *esk_decider_events(const esk_decider_t *dc, size_t *n_out) {
  *n_out = dc->n_events;
  return dc->events;
}

const void *esk_decider_event(const esk_decider_t *dc, size_t i) {
  return dc->events + i * dc->d->event_size;
}

const void *esk_decider_next(const esk_decider_t *dc) { return dc->next; }
