/* example_large_deposits: a projection plugin (esk/projection_plugin.h, ABI 2)
 * of the bank domain that keeps every deposit of at least a threshold in
 * table large_deposits. It reads the event's fields by path in the value the
 * projector decoded and upcast (MoneyDeposited at its latest version).
 *
 *   esk-projector --plugin build/plugins/example_large_deposits.so
 *
 * The threshold, in minor units, comes from ESK_LARGE_DEPOSITS_MIN (default
 * 100000, i.e. 1000.00). Each event is one INSERT in the batch's transaction;
 * a duplicate never reaches apply() (the runtime's version guard), and the
 * primary key on the event id would refuse it anyway. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/projection_plugin.h"

typedef struct large_s {
  int64_t min;
} large_t;

static const char *const migrations[] = {
    "create table large_deposits ("
    "  event_id text primary key,"
    "  account_id text not null,"
    "  amount bigint not null,"
    "  currency text not null,"
    "  description text not null,"
    "  occurred_at timestamptz not null);"
    "create index large_deposits_account on large_deposits (account_id);",
};

static int apply(void *self, PGconn *pg, const esk_event_t *ev, esk_error_t *err) {
  const large_t *l = self;
  int64_t minor = 0;
  const char *currency = NULL, *description = NULL;
  if (strcmp(ev->type, "MoneyDeposited")) return ESK_OK;
  if (esk_event_get_long(ev, "amount.minor_units", &minor) ||
      esk_event_get_str(ev, "amount.currency", &currency) ||
      esk_event_get_str(ev, "description", &description))
    return esk_plugin_error(err, ESK_EPOISON, "large_deposits: %s v%d at offset %" PRId64
                            " lacks amount.minor_units, amount.currency or description",
                            ev->type, ev->schema_version, ev->offset);
  if (minor < l->min) return ESK_OK;
  char amount[24], at[24];
  snprintf(amount, sizeof(amount), "%" PRId64, minor);
  snprintf(at, sizeof(at), "%" PRId64, ev->occurred_at_us);
  const char *params[] = {ev->event_id, ev->aggregate_id, amount, currency, description, at};
  PGresult *r = PQexecParams(pg,
                             "insert into large_deposits (event_id, account_id, amount, currency,"
                             " description, occurred_at) values ($1, $2, $3, $4, $5,"
                             " to_timestamp($6::bigint / 1e6)) on conflict do nothing",
                             6, NULL, params, NULL, NULL, 0);
  int rc = ESK_OK;
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* Data and integrity errors can never succeed: dead-letter the event;
     * anything else (connection lost, ...) retries the batch. */
    int poison = state && (!strncmp(state, "22", 2) || !strncmp(state, "23", 2));
    rc = esk_plugin_error(err, poison ? ESK_EPOISON : ESK_ERETRY, "large_deposits: %s",
                          PQerrorMessage(pg));
  }
  PQclear(r);
  return rc;
}

static int create(esk_projection_t *out, esk_error_t *err) {
  const char *env = getenv("ESK_LARGE_DEPOSITS_MIN");
  int64_t min = 100000;
  if (env && *env) {
    char *end;
    errno = 0;
    long long v = strtoll(env, &end, 10);
    if (errno || *end || v < 0)
      return esk_plugin_error(err, ESK_EINVAL,
                              "ESK_LARGE_DEPOSITS_MIN '%s': expected minor units >= 0", env);
    min = v;
  }
  large_t *l = calloc(1, sizeof(*l));
  if (!l) return esk_plugin_error(err, ESK_ENOMEM, "out of memory");
  l->min = min;
  *out = (esk_projection_t){.migrations = migrations, .n_migrations = 1, .apply = apply, .self = l};
  return ESK_OK;
}

static void destroy(void *self) { free(self); }

static const esk_projection_plugin_t plugin = {
    .abi = ESK_PROJECTION_PLUGIN_ABI,
    .struct_size = sizeof(esk_projection_plugin_t),
    .name = "large_deposits",
    .summary = "every deposit of at least ESK_LARGE_DEPOSITS_MIN minor units",
    .domain = "bank",
    .create = create,
    .destroy = destroy,
};

ESK_PROJECTION_PLUGIN_EXPORT(plugin)
