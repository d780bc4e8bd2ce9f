/* Checking a domain descriptor, and the result codes it adds (see esk/domain.h). */
#include "esk/domain.h"

#include <string.h>

static const char *const runtime_rules[ESK_RULE_DOMAIN] = {
    "ACCEPTED", "INVALID_COMMAND", "CONCURRENCY_CONFLICT", "UNPUBLISHABLE"};

int esk_domain_check(const esk_domain_t *d, const char *origin, esk_error_t *err) {
  if (!d) return esk_error_set(err, ESK_EINVAL, "domain (%s): no descriptor", origin);
  const char *name = d->abi == ESK_DOMAIN_ABI && d->name ? d->name : "?";
  if (d->abi != ESK_DOMAIN_ABI)
    return esk_error_set(err, ESK_EINVAL,
                         "domain (%s): built for domain ABI %d, this esk speaks ABI %d", origin,
                         d->abi, ESK_DOMAIN_ABI);
  /* an older descriptor ends before the optional members (esk_domain_has()) */
  if (d->struct_size < ESK_DOMAIN_SIZE_BASE || d->struct_size > sizeof(esk_domain_t))
    return esk_error_set(err, ESK_EINVAL,
                         "domain %s (%s): descriptor of %zu bytes, this esk expects %zu to %zu",
                         name, origin, d->struct_size, (size_t)ESK_DOMAIN_SIZE_BASE,
                         sizeof(esk_domain_t));
  if (!d->name || !*d->name || !d->aggregate_type || !*d->aggregate_type || !d->snapshot_type ||
      !*d->snapshot_type || !d->aggregate_id_field || !*d->aggregate_id_field ||
      !d->command_types || !d->command_types[0])
    return esk_error_set(err, ESK_EINVAL,
                         "domain %s (%s): name, aggregate_type, snapshot_type, "
                         "aggregate_id_field and command_types are required", name, origin);
  if (!d->load_schemas || !d->register_upcasters || !d->create || !d->destroy ||
      !d->decode_command || !d->init_state || !d->version || !d->validate || !d->decide ||
      !d->evolve || !d->snapshot_write || !d->snapshot_read || !d->encode_event ||
      !d->decode_event)
    return esk_error_set(err, ESK_EINVAL, "domain %s (%s): a function is missing", name, origin);
  if (!d->command_size || !d->event_size || !d->state_size || !d->snapshot_max ||
      d->max_events < 1 || d->max_events > ESK_DOMAIN_MAX_EVENTS)
    return esk_error_set(err, ESK_EINVAL,
                         "domain %s (%s): sizes must be > 0 and max_events 1..%d", name, origin,
                         ESK_DOMAIN_MAX_EVENTS);
  if (d->n_rules > ESK_DOMAIN_MAX_RULES || (d->n_rules && !d->rules))
    return esk_error_set(err, ESK_EINVAL, "domain %s (%s): more than %d rules", name, origin,
                         ESK_DOMAIN_MAX_RULES);
  for (size_t i = 0; i < d->n_rules; i++) {
    int dup = 0;
    if (!d->rules[i] || !*d->rules[i] ||
        esk_domain_rule_from_name(d, d->rules[i], &dup) != ESK_OK ||
        dup != ESK_RULE_DOMAIN + (int)i)
      return esk_error_set(err, ESK_EINVAL,
                           "domain %s (%s): rule %zu is empty or repeats a code", name, origin,
                           i);
  }
  return ESK_OK;
}

int esk_domain_rule_count(const esk_domain_t *d) { return ESK_RULE_DOMAIN + (int)d->n_rules; }

const char *esk_domain_rule_name(const esk_domain_t *d, int rule) {
  if (rule >= 0 && rule < ESK_RULE_DOMAIN) return runtime_rules[rule];
  if (d && rule >= ESK_RULE_DOMAIN && (size_t)(rule - ESK_RULE_DOMAIN) < d->n_rules)
    return d->rules[rule - ESK_RULE_DOMAIN];
  return "UNKNOWN";
}

int esk_domain_rule_from_name(const esk_domain_t *d, const char *name, int *out) {
  if (!name) return ESK_ENOTFOUND;
  for (int i = 0; i < ESK_RULE_DOMAIN; i++)
    if (!strcmp(runtime_rules[i], name)) {
      *out = i;
      return ESK_OK;
    }
  for (size_t i = 0; d && i < d->n_rules; i++)
    if (d->rules[i] && !strcmp(d->rules[i], name)) {
      *out = ESK_RULE_DOMAIN + (int)i;
      return ESK_OK;
    }
  return ESK_ENOTFOUND;
}
