/* The bank account aggregate behind the Decider interface (see bank_domain.h). */
#include "bank/bank_domain.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bank/bank.h"
#include "bank/bank_avro.h"
#include "bank_contract.h"

/* The bank's codes in the order of esk_bank_rule_t, without those the runtime
 * owns (ACCEPTED, INVALID_COMMAND, CONCURRENCY_CONFLICT, UNPUBLISHABLE). */
static const esk_bank_rule_t bank_rules[] = {
    ESK_BANK_INVALID_CURRENCY,   ESK_BANK_INVALID_AMOUNT,      ESK_BANK_ACCOUNT_ALREADY_EXISTS,
    ESK_BANK_ACCOUNT_NOT_FOUND,  ESK_BANK_ACCOUNT_CLOSED,      ESK_BANK_CURRENCY_MISMATCH,
    ESK_BANK_INSUFFICIENT_FUNDS, ESK_BANK_AMOUNT_OVERFLOW,     ESK_BANK_BALANCE_NOT_ZERO};
#define N_RULES (sizeof(bank_rules) / sizeof(bank_rules[0]))

static const char *const rule_names[N_RULES] = {
    "INVALID_CURRENCY",   "INVALID_AMOUNT",   "ACCOUNT_ALREADY_EXISTS",
    "ACCOUNT_NOT_FOUND",  "ACCOUNT_CLOSED",   "CURRENCY_MISMATCH",
    "INSUFFICIENT_FUNDS", "AMOUNT_OVERFLOW",  "BALANCE_NOT_ZERO"};

/* A bank rule as a result code of the interface. */
static int code_of(esk_bank_rule_t rule) {
  switch (rule) {
  case ESK_BANK_ACCEPTED: return ESK_RULE_ACCEPTED;
  case ESK_BANK_CONCURRENCY_CONFLICT: return ESK_RULE_CONCURRENCY_CONFLICT;
  case ESK_BANK_UNPUBLISHABLE: return ESK_RULE_UNPUBLISHABLE;
  default: break;
  }
  for (size_t i = 0; i < N_RULES; i++)
    if (bank_rules[i] == rule) return ESK_RULE_DOMAIN + (int)i;
  return ESK_RULE_INVALID_COMMAND;
}

/* Copies only the message's bytes: this runs for every command. */
static void to_decision(esk_decision_t *out, const esk_bank_result_t *r) {
  out->rule = code_of(r->rule);
  size_t n = strnlen(r->message, sizeof(out->message) - 1);
  memcpy(out->message, r->message, n);
  out->message[n] = '\0';
}

static int create(void **self, const esk_schema_set_t *set, esk_codec_t *codec,
                  esk_error_t *err) {
  esk_bank_avro_t *a = NULL;
  int rc = esk_bank_avro_new_over(&a, set, codec, err);
  if (rc == ESK_OK) *self = a;
  return rc;
}

static void destroy(void *self) { esk_bank_avro_destroy(self); }

static void envelope_of(esk_envelope_t *env, const esk_bank_command_t *c) {
  env->command_id = c->command_id;
  env->aggregate_id = c->account_id;
  env->has_expected_version = c->has_expected_version;
  env->expected_version = c->expected_version;
  env->actor = c->actor;
  env->correlation_id = c->correlation_id;
}

static int decode_command(void *self, const esk_schema_t *type, const avro_value_t *value,
                          esk_envelope_t *env, void *cmd, esk_error_t *err) {
  int rc = esk_bank_avro_command_from_value(self, cmd, type, value, err);
  if (rc == ESK_OK) envelope_of(env, cmd);
  return rc;
}

static int decode_command_bytes(void *self, const void *data, size_t len, esk_envelope_t *env,
                                void *cmd) {
  if (esk_bank_avro_decode_command_fast(self, cmd, data, len)) return ESK_ENOTFOUND;
  envelope_of(env, cmd);
  return ESK_OK;
}

static void init_state(void *state) { memset(state, 0, sizeof(esk_bank_state_t)); }

static int64_t version(const void *state) { return ((const esk_bank_state_t *)state)->version; }

static void validate(const void *cmd, const esk_envelope_t *env, esk_decision_t *out) {
  (void)env; /* the bank command holds the envelope's fields itself */
  esk_bank_result_t r;
  esk_bank_validate(&r, cmd, 0);
  to_decision(out, &r);
}

static int decide(const void *state, const void *cmd, const esk_envelope_t *env, void *events,
                  size_t *n_out, esk_decision_t *out, esk_error_t *err) {
  (void)env;
  esk_bank_result_t r;
  int rc = esk_bank_decide_state(events, n_out, &r, ESK_BANK_MAX_EVENTS, state, cmd, err);
  if (rc == ESK_OK) to_decision(out, &r);
  return rc;
}

/* next is the output only (it never aliases state): fold into it directly. */
static int evolve(void *next, const void *state, const void *event, esk_error_t *err) {
  *(esk_bank_state_t *)next = *(const esk_bank_state_t *)state;
  return esk_bank_apply(next, event, err);
}

static int snapshot_write(esk_buf_t *out, const void *state, esk_error_t *err) {
  return esk_bank_snapshot_write(out, state, err);
}

static int snapshot_read(void *state, const void *data, size_t len, esk_error_t *err) {
  return esk_bank_snapshot_read(state, data, len, err);
}

static int encode_event(void *self, esk_buf_t *out, const esk_schema_t **schema_out,
                        const void *event, const esk_event_meta_t *meta, esk_error_t *err) {
  esk_bank_event_meta_t m = {meta->event_id, meta->occurred_at_us, meta->correlation_id,
                             meta->causation_id, meta->actor};
  return esk_bank_avro_encode_event(self, out, schema_out, event, &m, err);
}

static int decode_event(void *self, void *event, esk_event_ref_t *ref, const void *data,
                        size_t len, esk_error_t *err) {
  esk_bank_event_t *ev = event;
  int rc = esk_bank_avro_decode_event(self, ev, NULL, data, len, err);
  if (rc) return rc;
  ref->aggregate_id = ev->account_id;
  ref->aggregate_version = ev->aggregate_version;
  return ESK_OK;
}

/* The account as JSON (esk_domain_t::state_json): its id, owner, status,
 * balance with its currency (minor units) and version; an account with no
 * event yet renders its zero fields (status "none"). */
static int state_json(esk_buf_t *out, const void *state, esk_error_t *err) {
  const esk_bank_state_t *s = state;
  json_t *o = json_pack("{s:s, s:s, s:s, s:{s:I, s:s}, s:I}", "account_id", s->account_id,
                        "owner_id", s->owner_id, "status", esk_bank_status_name(s->status),
                        "balance", "amount", (json_int_t)s->balance, "currency", s->currency,
                        "version", (json_int_t)s->version);
  char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  if (!text)
    return esk_error_set(err, ESK_EINVAL, "bank: account '%.64s' at version %lld cannot be "
                         "rendered as JSON (a field is not UTF-8)", s->account_id,
                         (long long)s->version);
  int rc = esk_buf_append(out, text, strlen(text), err);
  free(text);
  return rc;
}

static const char *const command_types[] = {"OpenAccount", "DepositMoney", "WithdrawMoney",
                                            "CloseAccount", NULL};

static const esk_domain_t bank = {
    .abi = ESK_DOMAIN_ABI,
    .struct_size = sizeof(esk_domain_t),
    .name = "bank",
    .aggregate_type = ESK_BANK_AGGREGATE_TYPE,
    .snapshot_type = "AccountSnapshot",
    .aggregate_id_field = "account_id",
    .command_types = command_types,
    .rules = rule_names,
    .n_rules = N_RULES,
    .command_size = sizeof(esk_bank_command_t),
    .event_size = sizeof(esk_bank_event_t),
    .state_size = sizeof(esk_bank_state_t),
    .max_events = ESK_BANK_MAX_EVENTS,
    .snapshot_max = ESK_BANK_SNAPSHOT_AVRO_MAX, /* either format */
    .load_schemas = esk_bank_schemas_load,
    .register_upcasters = esk_bank_register_upcasters,
    .create = create,
    .destroy = destroy,
    .decode_command = decode_command,
    .init_state = init_state,
    .version = version,
    .validate = validate,
    .decide = decide,
    .evolve = evolve,
    .snapshot_write = snapshot_write,
    .snapshot_read = snapshot_read,
    .encode_event = encode_event,
    .decode_event = decode_event,
    .state_json = state_json,
    .decode_command_bytes = decode_command_bytes,
};

const esk_domain_t *esk_bank_domain(void) { return &bank; }
