/* The Decider interface (esk/domain.h) and the runtime's side of it
 * (producer/src/decider.c, domains.c), with the bank as the domain: the
 * descriptor checks, the registry, purity of decide/validate/evolve, and the
 * result codes a command gets through the runtime. No servers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "bank/bank.h"
#include "bank/bank_domain.h"
#include "decider.h"
#include "domains.h"
#include "esk/domain.h"

static esk_bank_command_t deposit(const char *cid, const char *acc, int64_t units,
                                  const char *cur) {
  esk_bank_command_t c = {0};
  c.type = ESK_BANK_CMD_DEPOSIT_MONEY;
  c.command_id = cid;
  c.account_id = acc;
  c.u.deposit.amount.minor_units = units;
  c.u.deposit.amount.currency = cur;
  c.u.deposit.description = "pay";
  return c;
}

static esk_bank_command_t withdraw(const char *cid, const char *acc, int64_t units,
                                   const char *cur) {
  esk_bank_command_t c = deposit(cid, acc, units, cur);
  c.type = ESK_BANK_CMD_WITHDRAW_MONEY;
  return c;
}

static esk_envelope_t envelope_of(const esk_bank_command_t *c) {
  esk_envelope_t e = {c->command_id, c->account_id, c->has_expected_version,
                      c->expected_version, c->actor, c->correlation_id};
  return e;
}

/* An open account at version 2 holding 500 USD (opened, then one deposit). */
static esk_bank_state_t account(const char *id) {
  esk_bank_state_t s = {0};
  snprintf(s.account_id, sizeof(s.account_id), "%s", id);
  snprintf(s.owner_id, sizeof(s.owner_id), "owner");
  memcpy(s.currency, "USD", 4);
  s.status = ESK_BANK_STATUS_OPEN;
  s.balance = 500;
  s.version = 2;
  return s;
}

static int rule(const char *name) {
  int r = -1;
  cr_assert_eq(esk_domain_rule_from_name(esk_bank_domain(), name, &r), ESK_OK, "%s", name);
  return r;
}

/* Runs @p c through the runtime against @p state (NULL: none). */
static esk_result_t through_runtime(esk_decider_t *dc, const esk_bank_state_t *state,
                                    const esk_bank_command_t *c) {
  esk_envelope_t env = envelope_of(c);
  esk_result_t res;
  esk_error_t err = {0};
  memset(&res, 0xAB, sizeof(res));
  cr_assert_eq(esk_decider_run(dc, state, &env, c, &res, &err), ESK_OK, "%s", err.msg);
  return res;
}

Test(domain, the_bank_descriptor_passes_its_checks_and_names_its_codes) {
  esk_error_t err = {0};
  const esk_domain_t *d = esk_bank_domain();
  cr_assert_eq(esk_domain_check(d, "compiled in", &err), ESK_OK, "%s", err.msg);
  cr_expect_str_eq(d->name, "bank");
  cr_expect_str_eq(esk_domain_rule_name(d, ESK_RULE_ACCEPTED), "ACCEPTED");
  cr_expect_str_eq(esk_domain_rule_name(d, ESK_RULE_INVALID_COMMAND), "INVALID_COMMAND");
  cr_expect_str_eq(esk_domain_rule_name(d, ESK_RULE_CONCURRENCY_CONFLICT), "CONCURRENCY_CONFLICT");
  cr_expect_str_eq(esk_domain_rule_name(d, ESK_RULE_UNPUBLISHABLE), "UNPUBLISHABLE");
  cr_expect_str_eq(esk_domain_rule_name(d, rule("INSUFFICIENT_FUNDS")), "INSUFFICIENT_FUNDS");
  cr_expect_geq(rule("INVALID_CURRENCY"), ESK_RULE_DOMAIN);
  cr_expect_str_eq(esk_domain_rule_name(d, esk_domain_rule_count(d)), "UNKNOWN");
  cr_expect_str_eq(esk_domain_rule_name(d, -1), "UNKNOWN");
  int r = 0;
  cr_expect_eq(esk_domain_rule_from_name(d, "NOPE", &r), ESK_ENOTFOUND);
  /* every bank code except those the runtime owns is the domain's */
  for (int i = 1; i < ESK_BANK_RULE_COUNT_; i++)
    cr_expect_eq(esk_domain_rule_from_name(d, esk_bank_rule_name((esk_bank_rule_t)i), &r), ESK_OK,
                 "%s", esk_bank_rule_name((esk_bank_rule_t)i));
}

Test(domain, a_descriptor_of_another_abi_size_or_without_a_function_is_refused_naming_why) {
  esk_error_t err = {0};
  esk_domain_t d = *esk_bank_domain();
  d.abi = ESK_DOMAIN_ABI + 1;
  cr_expect_eq(esk_domain_check(&d, "lib/x.so", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "lib/x.so") && strstr(err.msg, "ABI"), "%s", err.msg);
  d = *esk_bank_domain();
  d.struct_size = ESK_DOMAIN_SIZE_BASE - 8; /* shorter than any ABI 1 descriptor */
  cr_expect_eq(esk_domain_check(&d, "lib/x.so", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "bytes"), "%s", err.msg);
  d.struct_size = sizeof(esk_domain_t) + 8; /* built by a newer esk */
  cr_expect_eq(esk_domain_check(&d, "lib/x.so", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "bytes"), "%s", err.msg);
  d.struct_size = ESK_DOMAIN_SIZE_BASE; /* built before the optional members */
  cr_expect_eq(esk_domain_check(&d, "lib/x.so", &err), ESK_OK, "%s", err.msg);
  d = *esk_bank_domain();
  d.evolve = NULL;
  cr_expect_eq(esk_domain_check(&d, "lib/x.so", &err), ESK_EINVAL);
  cr_expect(strstr(err.msg, "missing"), "%s", err.msg);
  d = *esk_bank_domain();
  static const char *const dup[] = {"A", "INVALID_COMMAND"};
  d.rules = dup;
  d.n_rules = 2;
  cr_expect_eq(esk_domain_check(&d, "lib/x.so", &err), ESK_EINVAL, "a code the runtime owns");
  d.max_events = ESK_DOMAIN_MAX_EVENTS + 1;
  d.rules = esk_bank_domain()->rules;
  d.n_rules = esk_bank_domain()->n_rules;
  cr_expect_eq(esk_domain_check(&d, "lib/x.so", &err), ESK_EINVAL);
}

Test(domain, decide_validate_and_evolve_never_change_their_inputs) {
  const esk_domain_t *d = esk_bank_domain();
  esk_bank_state_t st = account("a-1"), st0 = st;
  esk_bank_command_t cmds[] = {deposit("c1", "a-1", 70, "USD"), withdraw("c2", "a-1", 700, "USD"),
                               withdraw("c3", "a-1", 100, "USD"), deposit("c4", "a-1", 5, "EUR")};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    esk_bank_command_t c0 = cmds[i];
    esk_envelope_t env = envelope_of(&cmds[i]), env0 = env;
    esk_decision_t dn;
    esk_bank_event_t evs[ESK_BANK_MAX_EVENTS];
    size_t n = 0;
    esk_error_t err = {0};
    d->validate(&cmds[i], &env, &dn);
    cr_assert_eq(d->decide(&st, &cmds[i], &env, evs, &n, &dn, &err), ESK_OK, "%s", err.msg);
    cr_assert(!memcmp(&st, &st0, sizeof(st)), "decide changed the state (command %zu)", i);
    cr_assert(!memcmp(&cmds[i], &c0, sizeof(c0)), "decide changed the command (command %zu)", i);
    cr_assert(!memcmp(&env, &env0, sizeof(env)), "decide changed the envelope (command %zu)", i);
    if (dn.rule != ESK_RULE_ACCEPTED) continue;
    cr_assert_eq(n, 1);
    esk_bank_event_t ev0 = evs[0];
    esk_bank_state_t next;
    cr_assert_eq(d->evolve(&next, &st, &evs[0], &err), ESK_OK, "%s", err.msg);
    cr_assert(!memcmp(&st, &st0, sizeof(st)), "evolve changed the state (command %zu)", i);
    cr_assert(!memcmp(&evs[0], &ev0, sizeof(ev0)), "evolve changed the event (command %zu)", i);
    cr_expect_eq(d->version(&next), 3);
  }
  /* a corrupt log: evolve refuses, and still leaves its input alone */
  esk_bank_event_t ev = {0};
  ev.type = ESK_BANK_EV_MONEY_WITHDRAWN;
  snprintf(ev.account_id, sizeof(ev.account_id), "a-1");
  ev.aggregate_version = 9;
  ev.u.withdrawn.amount.minor_units = 1;
  memcpy(ev.u.withdrawn.amount.currency, "USD", 4);
  esk_bank_state_t next = {0};
  esk_error_t err = {0};
  cr_expect_eq(d->evolve(&next, &st, &ev, &err), ESK_EPOISON);
  cr_expect(!memcmp(&st, &st0, sizeof(st)));
}

Test(domain, the_runtime_gives_envelope_version_and_rule_codes_with_messages_naming_values) {
  esk_decider_t *dc = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_decider_new(&dc, esk_bank_domain(), &err), ESK_OK, "%s", err.msg);
  esk_bank_state_t st = account("a-1"), st0 = st;

  esk_bank_command_t c = deposit("c1", "", 10, "USD");
  esk_result_t r = through_runtime(dc, NULL, &c);
  cr_expect_eq(r.rule, ESK_RULE_INVALID_COMMAND);
  cr_expect_str_eq(r.message, "INVALID_COMMAND: account_id is missing or empty");

  c = deposit("c2", "a-1", 10, "USD");
  c.has_expected_version = 1;
  c.expected_version = -1;
  r = through_runtime(dc, &st, &c);
  cr_expect_eq(r.rule, ESK_RULE_INVALID_COMMAND);
  cr_expect(strstr(r.message, "expected_version -1 is negative"), "%s", r.message);

  c.expected_version = 7;
  r = through_runtime(dc, &st, &c);
  cr_expect_eq(r.rule, ESK_RULE_CONCURRENCY_CONFLICT);
  cr_expect_eq(r.version, 2);
  cr_expect_str_eq(r.message, "CONCURRENCY_CONFLICT: account a-1: expected version 7 but the "
                              "actual version is 2");

  /* the stateless checks come before the version */
  c = deposit("c3", "a-1", 10, "usd");
  c.has_expected_version = 1;
  c.expected_version = 7;
  r = through_runtime(dc, &st, &c);
  cr_expect_eq(r.rule, rule("INVALID_CURRENCY"), "%s", r.message);

  c = withdraw("c4", "a-1", 700, "USD");
  r = through_runtime(dc, &st, &c);
  cr_expect_eq(r.rule, rule("INSUFFICIENT_FUNDS"));
  cr_expect(strstr(r.message, "700") && strstr(r.message, "500") && strstr(r.message, "a-1"),
            "%s", r.message);
  size_t n = 9;
  esk_decider_events(dc, &n);
  cr_expect_eq(n, 0, "a rejection has no events");

  c = deposit("c5", "a-2", 10, "USD");
  r = through_runtime(dc, NULL, &c);
  cr_expect_eq(r.rule, rule("ACCOUNT_NOT_FOUND"), "%s", r.message);

  c = withdraw("c6", "a-1", 100, "USD");
  c.has_expected_version = 1;
  c.expected_version = 2;
  r = through_runtime(dc, &st, &c);
  cr_assert_eq(r.rule, ESK_RULE_ACCEPTED, "%s", r.message);
  cr_expect_eq(r.version, 3);
  const esk_bank_event_t *ev = esk_decider_events(dc, &n);
  cr_assert_eq(n, 1);
  cr_expect_eq(ev->type, ESK_BANK_EV_MONEY_WITHDRAWN);
  cr_expect_eq(ev->aggregate_version, 3);
  const esk_bank_state_t *next = esk_decider_next(dc);
  cr_expect_eq(next->balance, 400);
  cr_expect_eq(next->version, 3);
  cr_expect(!memcmp(&st, &st0, sizeof(st)), "the runtime changed the state it was given");
  esk_decider_destroy(dc);
}

static int refuse_all(void *next, const void *state, const void *event, esk_error_t *err) {
  (void)next, (void)state, (void)event;
  return esk_error_set(err, ESK_EPOISON, "no");
}

Test(domain, a_domain_whose_evolve_refuses_its_own_decision_is_fatal) {
  esk_domain_t d = *esk_bank_domain();
  d.evolve = refuse_all;
  esk_decider_t *dc = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_decider_new(&dc, &d, &err), ESK_OK);
  esk_bank_state_t st = account("a-1");
  esk_bank_command_t c = deposit("c1", "a-1", 10, "USD");
  esk_envelope_t env = envelope_of(&c);
  esk_result_t r;
  cr_expect_eq(esk_decider_run(dc, &st, &env, &c, &r, &err), ESK_EFATAL);
  cr_expect(strstr(err.msg, "evolve refused"), "%s", err.msg);
  esk_decider_destroy(dc);
}

Test(domain, a_runtime_rejection_is_prefixed_with_its_code) {
  esk_result_t r;
  esk_result_reject(&r, esk_bank_domain(), ESK_RULE_UNPUBLISHABLE, 4, "its %s is too big", "event");
  cr_expect_eq(r.rule, ESK_RULE_UNPUBLISHABLE);
  cr_expect_eq(r.version, 4);
  cr_expect_str_eq(r.message, "UNPUBLISHABLE: its event is too big");
}
