/* producer/domains/bank: the bank account aggregate (rules, events, fold),
 * snapshots; and, over bank states, the runtime's aggregate store and
 * seen-command cache (producer/src/aggstore.c) and the map of esk/hmap.h.
 * No servers. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aggstore.h"
#include "bank/bank.h"
#include "bank/bank_domain.h"
#include "bank_contract.h"
#include "esk/buf.h"
#include "esk/error.h"

/* ------------------------------------------------------------ helpers --- */

static esk_bank_command_t cmd_open(const char *cid, const char *acc, const char *owner,
                                   int64_t units, const char *cur) {
  esk_bank_command_t c = {0};
  c.type = ESK_BANK_CMD_OPEN_ACCOUNT;
  c.command_id = cid;
  c.account_id = acc;
  c.actor = "teller-1";
  c.correlation_id = "corr-1";
  c.u.open.owner_id = owner;
  c.u.open.initial_deposit = (esk_bank_money_in_t){units, cur};
  return c;
}

static esk_bank_command_t cmd_money(esk_bank_command_type_t type, const char *cid,
                                    const char *acc, int64_t units, const char *cur) {
  esk_bank_command_t c = {0};
  c.type = type;
  c.command_id = cid;
  c.account_id = acc;
  if (type == ESK_BANK_CMD_DEPOSIT_MONEY) {
    c.u.deposit.amount = (esk_bank_money_in_t){units, cur};
    c.u.deposit.description = "salary";
  } else {
    c.u.withdraw.amount = (esk_bank_money_in_t){units, cur};
    c.u.withdraw.description = "rent";
  }
  return c;
}

static esk_bank_command_t cmd_deposit(const char *cid, const char *acc, int64_t u, const char *cur) {
  return cmd_money(ESK_BANK_CMD_DEPOSIT_MONEY, cid, acc, u, cur);
}
static esk_bank_command_t cmd_withdraw(const char *cid, const char *acc, int64_t u, const char *cur) {
  return cmd_money(ESK_BANK_CMD_WITHDRAW_MONEY, cid, acc, u, cur);
}
static esk_bank_command_t cmd_close(const char *cid, const char *acc) {
  esk_bank_command_t c = {0};
  c.type = ESK_BANK_CMD_CLOSE_ACCOUNT;
  c.command_id = cid;
  c.account_id = acc;
  c.u.close.reason = "customer request";
  return c;
}

/* Decides c against *st and, if accepted, applies the event. Checks the
 * invariants every decision must keep: decide leaves the state alone, a
 * rejection has no events, an accepted command has exactly one event at
 * version + 1. ev_out (may be NULL) receives the event. */
static esk_bank_result_t run(esk_bank_state_t *st, const esk_bank_command_t *c,
                             esk_bank_event_t *ev_out) {
  esk_bank_event_t evs[ESK_BANK_MAX_EVENTS];
  esk_bank_result_t res;
  esk_error_t err = {0};
  size_t n = 99;
  esk_bank_state_t before = *st;
  cr_assert_eq(esk_bank_decide(evs, &n, &res, ESK_BANK_MAX_EVENTS, st, c, &err), ESK_OK, "%s",
               err.msg);
  cr_assert(memcmp(&before, st, sizeof(before)) == 0, "decide changed the state");
  cr_assert_str_not_empty(res.message);
  cr_assert(strncmp(res.message, esk_bank_rule_name(res.rule), strlen(esk_bank_rule_name(res.rule))) == 0,
            "message does not start with the rule name: %s", res.message);
  if (res.rule != ESK_BANK_ACCEPTED) {
    cr_assert_eq(n, 0, "a rejected command produced events: %s", res.message);
    cr_assert_eq(res.version, st->version);
    return res;
  }
  cr_assert_eq(n, 1);
  cr_assert_eq(evs[0].aggregate_version, st->version + 1);
  cr_assert_str_eq(evs[0].account_id, c->account_id);
  cr_assert_eq(esk_bank_apply(st, &evs[0], &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(st->version, evs[0].aggregate_version);
  cr_assert_eq(res.version, st->version);
  if (ev_out) *ev_out = evs[0];
  return res;
}

#define assert_rule(res, want)                                                                     \
  cr_assert_eq((res).rule, (want), "want %s, got %s: %s", esk_bank_rule_name(want),                \
               esk_bank_rule_name((res).rule), (res).message)

/* An open USD account with the given balance. */
static esk_bank_state_t open_account(const char *acc, int64_t balance) {
  esk_bank_state_t st = {0};
  esk_bank_command_t c = cmd_open("c-open", acc, "owner-1", balance, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  return st;
}

static char *repeat(char ch, size_t n) {
  char *s = malloc(n + 1);
  cr_assert_not_null(s);
  memset(s, ch, n);
  s[n] = '\0';
  return s;
}

/* -------------------------------------------------------------- rules --- */

Test(bank, open_account_emits_account_opened_at_version_1_and_opens_the_state) {
  esk_bank_state_t st = {0};
  esk_bank_event_t ev;
  esk_bank_command_t c = cmd_open("c1", "acc-1", "owner-7", 2500, "EUR");
  esk_bank_result_t r = run(&st, &c, &ev);
  assert_rule(r, ESK_BANK_ACCEPTED);
  cr_assert_eq(ev.type, ESK_BANK_EV_ACCOUNT_OPENED);
  cr_assert_eq(ev.aggregate_version, 1);
  cr_assert_str_eq(ev.u.opened.owner_id, "owner-7");
  cr_assert_eq(ev.u.opened.initial_deposit.minor_units, 2500);
  cr_assert_str_eq(ev.u.opened.initial_deposit.currency, "EUR");
  cr_assert_eq(st.status, ESK_BANK_STATUS_OPEN);
  cr_assert_str_eq(st.account_id, "acc-1");
  cr_assert_str_eq(st.owner_id, "owner-7");
  cr_assert_str_eq(st.currency, "EUR");
  cr_assert_eq(st.balance, 2500);
  cr_assert_eq(st.version, 1);
}

Test(bank, a_null_state_is_the_same_as_an_account_that_does_not_exist) {
  esk_bank_event_t evs[1];
  esk_bank_result_t r;
  size_t n = 0;
  esk_bank_command_t c = cmd_open("c1", "acc-1", "o", 0, "USD");
  cr_assert_eq(esk_bank_decide(evs, &n, &r, 1, NULL, &c, NULL), ESK_OK);
  assert_rule(r, ESK_BANK_ACCEPTED);
  cr_assert_eq(n, 1);
  c = cmd_deposit("c2", "acc-1", 5, "USD");
  cr_assert_eq(esk_bank_decide(evs, &n, &r, 1, NULL, &c, NULL), ESK_OK);
  assert_rule(r, ESK_BANK_ACCOUNT_NOT_FOUND);
  cr_assert_eq(n, 0);
}

Test(bank, open_accepts_a_zero_initial_deposit_and_rejects_a_negative_one) {
  esk_bank_state_t st = {0};
  esk_bank_command_t c = cmd_open("c1", "acc-1", "o", -1, "USD");
  esk_bank_result_t r = run(&st, &c, NULL);
  assert_rule(r, ESK_BANK_INVALID_AMOUNT);
  cr_assert_not_null(strstr(r.message, "-1"), "%s", r.message);
  c = cmd_open("c2", "acc-1", "o", 0, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  cr_assert_eq(st.balance, 0);
}

Test(bank, open_is_rejected_for_an_id_already_open_or_closed) {
  esk_bank_state_t st = open_account("acc-1", 0);
  esk_bank_command_t c = cmd_open("c2", "acc-1", "o", 10, "USD");
  esk_bank_result_t r = run(&st, &c, NULL);
  assert_rule(r, ESK_BANK_ACCOUNT_ALREADY_EXISTS);
  cr_assert_not_null(strstr(r.message, "acc-1"), "%s", r.message);
  c = cmd_close("c3", "acc-1");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  c = cmd_open("c4", "acc-1", "o", 10, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCOUNT_ALREADY_EXISTS);
}

Test(bank, commands_on_an_account_that_does_not_exist_are_account_not_found) {
  esk_bank_state_t st = {0};
  esk_bank_command_t cs[] = {cmd_deposit("c1", "acc-9", 5, "USD"),
                             cmd_withdraw("c2", "acc-9", 5, "USD"), cmd_close("c3", "acc-9")};
  for (size_t i = 0; i < 3; i++) {
    esk_bank_result_t r = run(&st, &cs[i], NULL);
    assert_rule(r, ESK_BANK_ACCOUNT_NOT_FOUND);
    cr_assert_not_null(strstr(r.message, "acc-9"), "%s", r.message);
  }
}

Test(bank, deposit_adds_the_amount_and_keeps_the_description) {
  esk_bank_state_t st = open_account("acc-1", 100);
  esk_bank_event_t ev;
  esk_bank_command_t c = cmd_deposit("c2", "acc-1", 250, "USD");
  assert_rule(run(&st, &c, &ev), ESK_BANK_ACCEPTED);
  cr_assert_eq(ev.type, ESK_BANK_EV_MONEY_DEPOSITED);
  cr_assert_eq(ev.u.deposited.amount.minor_units, 250);
  cr_assert_str_eq(ev.u.deposited.description, "salary");
  cr_assert_eq(st.balance, 350);
}

Test(bank, deposit_and_withdrawal_of_zero_or_less_are_invalid_amount) {
  esk_bank_state_t st = open_account("acc-1", 100);
  int64_t bad[] = {0, -1, INT64_MIN};
  for (size_t i = 0; i < 3; i++) {
    esk_bank_command_t c = cmd_deposit("c", "acc-1", bad[i], "USD");
    assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_AMOUNT);
    c = cmd_withdraw("c", "acc-1", bad[i], "USD");
    assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_AMOUNT);
  }
  cr_assert_eq(st.balance, 100);
}

Test(bank, withdrawal_up_to_the_balance_is_accepted_and_beyond_it_is_insufficient_funds) {
  esk_bank_state_t st = open_account("acc-1", 500);
  esk_bank_command_t c = cmd_withdraw("c2", "acc-1", 501, "USD");
  esk_bank_result_t r = run(&st, &c, NULL);
  assert_rule(r, ESK_BANK_INSUFFICIENT_FUNDS);
  cr_assert_not_null(strstr(r.message, "501"), "%s", r.message);
  cr_assert_not_null(strstr(r.message, "500"), "%s", r.message);
  esk_bank_event_t ev;
  c = cmd_withdraw("c3", "acc-1", 500, "USD");
  assert_rule(run(&st, &c, &ev), ESK_BANK_ACCEPTED);
  cr_assert_eq(ev.type, ESK_BANK_EV_MONEY_WITHDRAWN);
  cr_assert_str_eq(ev.u.withdrawn.description, "rent");
  cr_assert_eq(st.balance, 0);
  c = cmd_withdraw("c4", "acc-1", 1, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_INSUFFICIENT_FUNDS);
}

Test(bank, money_in_another_currency_than_the_account_is_currency_mismatch) {
  esk_bank_state_t st = open_account("acc-1", 500);
  esk_bank_command_t c = cmd_deposit("c2", "acc-1", 5, "EUR");
  esk_bank_result_t r = run(&st, &c, NULL);
  assert_rule(r, ESK_BANK_CURRENCY_MISMATCH);
  cr_assert_not_null(strstr(r.message, "EUR"), "%s", r.message);
  cr_assert_not_null(strstr(r.message, "USD"), "%s", r.message);
  c = cmd_withdraw("c3", "acc-1", 5, "EUR");
  assert_rule(run(&st, &c, NULL), ESK_BANK_CURRENCY_MISMATCH);
}

Test(bank, a_currency_that_is_not_three_upper_case_letters_is_invalid_currency) {
  const char *bad[] = {"usd", "US", "USDX", "", NULL, "U$D", "US\x80", "UsD"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    esk_bank_state_t none = {0};
    esk_bank_command_t c = cmd_open("c1", "acc-1", "o", 1, bad[i]);
    assert_rule(run(&none, &c, NULL), ESK_BANK_INVALID_CURRENCY);
    esk_bank_state_t st = open_account("acc-1", 5);
    c = cmd_deposit("c2", "acc-1", 1, bad[i]);
    assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_CURRENCY);
    cr_assert(!esk_bank_currency_valid(bad[i]));
  }
  cr_assert(esk_bank_currency_valid("JPY"));
}

Test(bank, close_needs_a_zero_balance_and_a_closed_account_refuses_everything) {
  esk_bank_state_t st = open_account("acc-1", 40);
  esk_bank_command_t c = cmd_close("c2", "acc-1");
  esk_bank_result_t r = run(&st, &c, NULL);
  assert_rule(r, ESK_BANK_BALANCE_NOT_ZERO);
  cr_assert_not_null(strstr(r.message, "40"), "%s", r.message);
  c = cmd_withdraw("c3", "acc-1", 40, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  esk_bank_event_t ev;
  c = cmd_close("c4", "acc-1");
  assert_rule(run(&st, &c, &ev), ESK_BANK_ACCEPTED);
  cr_assert_eq(ev.type, ESK_BANK_EV_ACCOUNT_CLOSED);
  cr_assert_str_eq(ev.u.closed.reason, "customer request");
  cr_assert_eq(st.status, ESK_BANK_STATUS_CLOSED);
  esk_bank_command_t after[] = {cmd_deposit("c5", "acc-1", 1, "USD"),
                                cmd_withdraw("c6", "acc-1", 1, "USD"), cmd_close("c7", "acc-1")};
  for (size_t i = 0; i < 3; i++) assert_rule(run(&st, &after[i], NULL), ESK_BANK_ACCOUNT_CLOSED);
}

Test(bank, a_deposit_that_would_overflow_the_balance_is_amount_overflow) {
  esk_bank_state_t st = open_account("acc-1", INT64_MAX - 10);
  esk_bank_command_t c = cmd_deposit("c2", "acc-1", 11, "USD");
  esk_bank_result_t r = run(&st, &c, NULL);
  assert_rule(r, ESK_BANK_AMOUNT_OVERFLOW);
  c = cmd_deposit("c3", "acc-1", INT64_MAX, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_AMOUNT_OVERFLOW);
  c = cmd_deposit("c4", "acc-1", 10, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  cr_assert_eq(st.balance, INT64_MAX);
}

Test(bank, ids_and_texts_at_the_maximum_length_pass_and_one_byte_more_is_invalid_command) {
  char *id_ok = repeat('a', ESK_BANK_ID_MAX), *id_long = repeat('b', ESK_BANK_ID_MAX + 1);
  char *tx_ok = repeat('t', ESK_BANK_TEXT_MAX), *tx_long = repeat('u', ESK_BANK_TEXT_MAX + 1);
  /* every id field, one at a time */
  for (int field = 0; field < 5; field++) {
    for (int too_long = 0; too_long < 2; too_long++) {
      const char *v = too_long ? id_long : id_ok;
      esk_bank_command_t c = cmd_open("c1", "acc-1", "o", 0, "USD");
      if (field == 0) c.command_id = v;
      if (field == 1) c.account_id = v;
      if (field == 2) c.actor = v;
      if (field == 3) c.correlation_id = v;
      if (field == 4) c.u.open.owner_id = v;
      esk_bank_state_t st = {0};
      esk_bank_result_t r = run(&st, &c, NULL);
      assert_rule(r, too_long ? ESK_BANK_INVALID_COMMAND : ESK_BANK_ACCEPTED);
      if (too_long) cr_assert_not_null(strstr(r.message, "128"), "%s", r.message);
    }
  }
  esk_bank_state_t st = open_account("acc-1", 100);
  esk_bank_command_t c = cmd_deposit("c2", "acc-1", 1, "USD");
  c.u.deposit.description = tx_long;
  assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_COMMAND);
  c.u.deposit.description = tx_ok;
  esk_bank_event_t ev;
  assert_rule(run(&st, &c, &ev), ESK_BANK_ACCEPTED);
  cr_assert_eq(strlen(ev.u.deposited.description), ESK_BANK_TEXT_MAX);
  c = cmd_withdraw("c3", "acc-1", 1, "USD");
  c.u.withdraw.description = tx_long;
  assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_COMMAND);
  c = cmd_close("c4", "acc-1");
  c.u.close.reason = tx_long;
  assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_COMMAND);
  free(id_ok);
  free(id_long);
  free(tx_ok);
  free(tx_long);
}

Test(bank, missing_ids_unknown_types_and_negative_expected_versions_are_invalid_command) {
  esk_bank_state_t st = {0};
  esk_bank_command_t c = cmd_open(NULL, "acc-1", "o", 0, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_COMMAND);
  c = cmd_open("c1", "", "o", 0, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_COMMAND);
  c = cmd_open("c1", "acc-1", NULL, 0, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_COMMAND);
  c = cmd_open("c1", "acc-1", "o", 0, "USD");
  c.type = (esk_bank_command_type_t)42;
  assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_COMMAND);
  c = cmd_open("c1", "acc-1", "o", 0, "USD");
  c.has_expected_version = true;
  c.expected_version = -1;
  assert_rule(run(&st, &c, NULL), ESK_BANK_INVALID_COMMAND);
  c = cmd_open("c1", "acc-1", "o", 0, "USD");
  c.actor = NULL;
  c.correlation_id = NULL;
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
}

Test(bank, an_expected_version_mismatch_is_a_conflict_naming_expected_and_actual) {
  esk_bank_state_t st = open_account("acc-1", 100);
  esk_bank_command_t c = cmd_deposit("c2", "acc-1", 1, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  c = cmd_deposit("c3", "acc-1", 1, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED); /* now at version 3 */
  c = cmd_withdraw("c4", "acc-1", 1, "USD");
  c.has_expected_version = true;
  c.expected_version = 7;
  esk_bank_result_t r = run(&st, &c, NULL);
  assert_rule(r, ESK_BANK_CONCURRENCY_CONFLICT);
  cr_assert_eq(r.version, 3);
  cr_assert_not_null(strstr(r.message, "expected version 7"), "%s", r.message);
  cr_assert_not_null(strstr(r.message, "actual version is 3"), "%s", r.message);
  c.expected_version = 3;
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  /* expected version 0 means "new"; 1 on a new account conflicts */
  esk_bank_state_t none = {0};
  c = cmd_open("c5", "acc-2", "o", 0, "USD");
  c.has_expected_version = true;
  c.expected_version = 1;
  r = run(&none, &c, NULL);
  assert_rule(r, ESK_BANK_CONCURRENCY_CONFLICT);
  cr_assert_not_null(strstr(r.message, "actual version is 0"), "%s", r.message);
  c.expected_version = 0;
  assert_rule(run(&none, &c, NULL), ESK_BANK_ACCEPTED);
}

Test(bank, versions_rise_by_one_per_event_and_the_fold_of_the_events_equals_the_state) {
  esk_bank_state_t st = {0};
  esk_bank_event_t log[16];
  size_t n = 0;
  esk_bank_command_t cs[] = {
      cmd_open("c1", "acc-1", "o", 10, "GBP"),   cmd_deposit("c2", "acc-1", 5, "GBP"),
      cmd_withdraw("c3", "acc-1", 100, "GBP"), /* rejected */
      cmd_withdraw("c4", "acc-1", 15, "GBP"),    cmd_deposit("c5", "acc-1", 7, "EUR"), /* rejected */
      cmd_close("c6", "acc-1"),
  };
  for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
    int64_t v = st.version;
    esk_bank_result_t r = run(&st, &cs[i], &log[n]);
    if (r.rule == ESK_BANK_ACCEPTED) {
      cr_assert_eq(log[n].aggregate_version, v + 1);
      n++;
    } else {
      cr_assert_eq(st.version, v);
    }
  }
  cr_assert_eq(n, 4);
  for (size_t i = 0; i < n; i++) cr_assert_eq(log[i].aggregate_version, (int64_t)i + 1);
  esk_bank_state_t folded = {0};
  esk_error_t err = {0};
  for (size_t i = 0; i < n; i++) cr_assert_eq(esk_bank_apply(&folded, &log[i], &err), ESK_OK, "%s", err.msg);
  cr_assert(esk_bank_state_equal(&folded, &st));
  cr_assert_eq(folded.status, ESK_BANK_STATUS_CLOSED);
  cr_assert_eq(folded.version, 4);
}

Test(bank, apply_refuses_a_gap_a_repeat_another_account_and_inconsistent_events) {
  esk_bank_state_t st = open_account("acc-1", 100);
  esk_bank_event_t ev;
  esk_bank_command_t c = cmd_deposit("c2", "acc-1", 5, "USD");
  esk_bank_state_t probe = st;
  assert_rule(run(&probe, &c, &ev), ESK_BANK_ACCEPTED);
  esk_error_t err = {0};
  esk_bank_state_t before = st;

  esk_bank_event_t bad = ev;
  bad.aggregate_version = 3; /* gap */
  cr_assert_eq(esk_bank_apply(&st, &bad, &err), ESK_EPOISON);
  cr_assert_not_null(strstr(err.msg, "version 3"), "%s", err.msg);
  bad.aggregate_version = 1; /* repeat */
  cr_assert_eq(esk_bank_apply(&st, &bad, &err), ESK_EPOISON);
  bad = ev;
  strcpy(bad.account_id, "acc-2");
  cr_assert_eq(esk_bank_apply(&st, &bad, &err), ESK_EPOISON);
  cr_assert_not_null(strstr(err.msg, "another account"), "%s", err.msg);
  bad = ev;
  strcpy(bad.u.deposited.amount.currency, "EUR");
  cr_assert_eq(esk_bank_apply(&st, &bad, &err), ESK_EPOISON);
  bad = ev;
  bad.type = ESK_BANK_EV_MONEY_WITHDRAWN;
  bad.u.withdrawn.amount.minor_units = 101;
  cr_assert_eq(esk_bank_apply(&st, &bad, &err), ESK_EPOISON);
  bad = ev;
  bad.type = ESK_BANK_EV_ACCOUNT_CLOSED;
  cr_assert_eq(esk_bank_apply(&st, &bad, &err), ESK_EPOISON);
  bad = ev;
  bad.type = ESK_BANK_EV_ACCOUNT_OPENED;
  cr_assert_eq(esk_bank_apply(&st, &bad, &err), ESK_EPOISON);
  bad = ev;
  bad.type = (esk_bank_event_type_t)99;
  cr_assert_eq(esk_bank_apply(&st, &bad, &err), ESK_EPOISON);
  cr_assert(memcmp(&before, &st, sizeof(st)) == 0, "a refused event changed the state");
  cr_assert_eq(esk_bank_apply(&st, &ev, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(st.balance, 105);
  cr_assert_eq(esk_bank_apply(NULL, &ev, &err), ESK_EINVAL);
}

Test(bank, decide_refuses_misuse_without_setting_outputs) {
  esk_bank_state_t st = open_account("acc-1", 1);
  esk_bank_command_t c = cmd_deposit("c2", "acc-2", 5, "USD");
  esk_bank_event_t evs[1];
  esk_bank_result_t r = {.rule = ESK_BANK_RULE_COUNT_};
  size_t n = 77;
  esk_error_t err = {0};
  cr_assert_eq(esk_bank_decide(evs, &n, &r, 1, &st, &c, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "acc-2"), "%s", err.msg);
  cr_assert_eq(n, 77);
  cr_assert_eq(r.rule, ESK_BANK_RULE_COUNT_);
  c = cmd_deposit("c2", "acc-1", 5, "USD");
  cr_assert_eq(esk_bank_decide(evs, &n, &r, 0, &st, &c, &err), ESK_EINVAL);
  cr_assert_eq(esk_bank_decide(evs, &n, &r, 1, &st, NULL, &err), ESK_EINVAL);
  cr_assert_eq(n, 77);
}

Test(bank, rule_names_are_the_stable_strings_and_read_back) {
  /* these strings are a contract with users and the results topic */
  const char *want[] = {"ACCEPTED",          "INVALID_COMMAND",       "INVALID_CURRENCY",
                        "INVALID_AMOUNT",    "CONCURRENCY_CONFLICT",  "ACCOUNT_ALREADY_EXISTS",
                        "ACCOUNT_NOT_FOUND", "ACCOUNT_CLOSED",        "CURRENCY_MISMATCH",
                        "INSUFFICIENT_FUNDS", "AMOUNT_OVERFLOW",      "BALANCE_NOT_ZERO",
                        "UNPUBLISHABLE"};
  cr_assert_eq(sizeof(want) / sizeof(want[0]), ESK_BANK_RULE_COUNT_);
  for (int i = 0; i < ESK_BANK_RULE_COUNT_; i++) {
    cr_assert_str_eq(esk_bank_rule_name((esk_bank_rule_t)i), want[i]);
    esk_bank_rule_t back;
    cr_assert_eq(esk_bank_rule_from_name(&back, want[i]), ESK_OK);
    cr_assert_eq(back, (esk_bank_rule_t)i);
  }
  esk_bank_rule_t back = ESK_BANK_ACCEPTED;
  cr_assert_eq(esk_bank_rule_from_name(&back, "NOPE"), ESK_ENOTFOUND);
  cr_assert_str_eq(esk_bank_rule_name((esk_bank_rule_t)-1), "UNKNOWN");
  cr_assert_str_eq(esk_bank_rule_name(ESK_BANK_RULE_COUNT_), "UNKNOWN");
  cr_assert_str_eq(esk_bank_event_type_name(ESK_BANK_EV_MONEY_WITHDRAWN), "MoneyWithdrawn");
}

/* ---------------------------------------------------------- snapshots --- */

static void roundtrip(const esk_bank_state_t *st) {
  esk_buf_t b;
  esk_buf_init(&b, 0);
  esk_error_t err = {0};
  cr_assert_eq(esk_bank_state_serialize(&b, st, &err), ESK_OK, "%s", err.msg);
  cr_assert_leq(b.len, ESK_BANK_SNAPSHOT_MAX);
  cr_assert_eq(b.data[0], ESK_BANK_SNAPSHOT_FORMAT);
  esk_bank_state_t back;
  memset(&back, 0xAB, sizeof(back));
  cr_assert_eq(esk_bank_state_deserialize(&back, b.data, b.len, &err), ESK_OK, "%s", err.msg);
  cr_assert(esk_bank_state_equal(&back, st));
  /* format 2 (AccountSnapshot), and format 1 read by the same reader */
  esk_buf_reset(&b);
  cr_assert_eq(esk_bank_snapshot_write(&b, st, &err), ESK_OK, "%s", err.msg);
  cr_assert_leq(b.len, ESK_BANK_SNAPSHOT_AVRO_MAX);
  cr_assert_eq(b.data[0], ESK_BANK_SNAPSHOT_FORMAT_AVRO);
  memset(&back, 0xAB, sizeof(back));
  cr_assert_eq(esk_bank_snapshot_read(&back, b.data, b.len, &err), ESK_OK, "%s", err.msg);
  cr_assert(esk_bank_state_equal(&back, st));
  esk_buf_reset(&b);
  cr_assert_eq(esk_bank_state_serialize(&b, st, &err), ESK_OK, "%s", err.msg);
  memset(&back, 0xAB, sizeof(back));
  cr_assert_eq(esk_bank_snapshot_read(&back, b.data, b.len, &err), ESK_OK, "%s", err.msg);
  cr_assert(esk_bank_state_equal(&back, st), "a format-1 snapshot reads back otherwise");
  esk_buf_free(&b);
}

Test(bank_snapshot, none_open_and_closed_states_round_trip) {
  esk_bank_state_t none = {0};
  roundtrip(&none);
  esk_bank_state_t st = open_account("acc-1", 12345);
  roundtrip(&st);
  esk_bank_command_t c = cmd_withdraw("c2", "acc-1", 12345, "USD");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  c = cmd_close("c3", "acc-1");
  assert_rule(run(&st, &c, NULL), ESK_BANK_ACCEPTED);
  roundtrip(&st);
  char *longid = repeat('z', ESK_BANK_ID_MAX);
  esk_bank_state_t big = {0};
  esk_bank_command_t o = cmd_open("c1", longid, longid, INT64_MAX, "CHF");
  assert_rule(run(&big, &o, NULL), ESK_BANK_ACCEPTED);
  roundtrip(&big);
  free(longid);
}

typedef int (*snapshot_reader_t)(esk_bank_state_t *, const void *, size_t, esk_error_t *);

typedef int (*snapshot_writer_t)(esk_buf_t *, const esk_bank_state_t *, esk_error_t *);

/* A valid snapshot of an open account with a balance, for the bad-input
 * tests: format 1 (esk_bank_state_serialize) by default. */
static esk_buf_t sample_snapshot_by(snapshot_writer_t write) {
  esk_bank_state_t st = open_account("acc-1", 777);
  esk_buf_t b;
  esk_buf_init(&b, 0);
  cr_assert_eq(write(&b, &st, NULL), ESK_OK);
  return b;
}

static esk_buf_t sample_snapshot(void) { return sample_snapshot_by(esk_bank_state_serialize); }

static void assert_refused_by(snapshot_reader_t read, const void *p, size_t n,
                              const char *want_in_msg) {
  esk_bank_state_t out;
  memset(&out, 0x5A, sizeof(out));
  esk_bank_state_t untouched = out;
  esk_error_t err = {0};
  int rc = read(&out, p, n, &err);
  cr_assert_eq(rc, ESK_EPOISON, "accepted %zu bytes", n);
  cr_assert_str_not_empty(err.msg);
  if (want_in_msg) cr_assert_not_null(strstr(err.msg, want_in_msg), "%s", err.msg);
  cr_assert(memcmp(&out, &untouched, sizeof(out)) == 0, "out was written on error");
}

static void assert_rejected(const void *p, size_t n, const char *want_in_msg) {
  assert_refused_by(esk_bank_state_deserialize, p, n, want_in_msg);
}

Test(bank_snapshot, every_truncation_and_any_trailing_byte_is_rejected) {
  esk_buf_t b = sample_snapshot();
  for (size_t n = 0; n < b.len; n++) assert_rejected(b.data, n, NULL);
  cr_assert_eq(esk_buf_append(&b, "x", 1, NULL), ESK_OK);
  assert_rejected(b.data, b.len, "trailing");
  esk_buf_free(&b);
}

Test(bank_snapshot, an_unknown_format_oversized_input_and_hostile_fields_are_rejected) {
  esk_buf_t b = sample_snapshot();
  uint8_t m[ESK_BANK_SNAPSHOT_MAX + 64];
  cr_assert_leq(b.len, sizeof(m));

  memcpy(m, b.data, b.len);
  m[0] = 2;
  assert_rejected(m, b.len, "format version 2");

  memset(m, 0, sizeof(m));
  memcpy(m, b.data, b.len);
  assert_rejected(m, ESK_BANK_SNAPSHOT_MAX + 1, "maximum");

  memcpy(m, b.data, b.len);
  m[1] = 9; /* status */
  assert_rejected(m, b.len, "status");

  memcpy(m, b.data, b.len);
  m[21] = 255; /* account id length beyond what is there and beyond the maximum */
  assert_rejected(m, b.len, NULL);

  memcpy(m, b.data, b.len);
  m[21 + 1 + 2] = '\0'; /* NUL inside the account id */
  assert_rejected(m, b.len, "NUL");

  memcpy(m, b.data, b.len);
  m[10 + 7] = 0x80; /* balance made negative */
  assert_rejected(m, b.len, "negative balance");

  memcpy(m, b.data, b.len);
  m[2 + 7] = 0xFF; /* version made negative */
  assert_rejected(m, b.len, "negative version");

  memcpy(m, b.data, b.len);
  m[18] = 'u'; /* currency */
  assert_rejected(m, b.len, "currency");

  memcpy(m, b.data, b.len);
  m[1] = ESK_BANK_STATUS_CLOSED; /* closed with a balance */
  assert_rejected(m, b.len, "closed");

  memcpy(m, b.data, b.len);
  m[1] = ESK_BANK_STATUS_NONE; /* none with a version and an owner */
  assert_rejected(m, b.len, "none");

  assert_rejected(NULL, 0, "empty");
  esk_buf_free(&b);
}

/* 50000 inputs to @p read: half mutations of @p b (its format byte kept),
 * half noise; none crashes, and what is accepted round-trips. */
static void random_inputs(snapshot_reader_t read, const esk_buf_t *b) {
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  uint8_t m[ESK_BANK_SNAPSHOT_AVRO_MAX + 8];
  int accepted = 0;
  for (int i = 0; i < 50000; i++) {
    size_t n;
    /* half: mutate a valid snapshot (gets past the header); half: pure noise */
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    if (i & 1) {
      memcpy(m, b->data, b->len);
      n = b->len;
      m[(x >> 8) % n] = (uint8_t)x;
      m[0] = b->data[0];
    } else {
      n = (size_t)(x % sizeof(m));
      for (size_t j = 0; j < n; j++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        m[j] = (uint8_t)x;
      }
    }
    esk_bank_state_t st;
    if (read(&st, m, n, NULL) == ESK_OK) {
      accepted++;
      roundtrip(&st);
    }
  }
  cr_assert_gt(accepted, 0, "no mutated snapshot was valid: the mutation is too coarse");
}

Test(bank_snapshot, random_bytes_never_crash_and_what_is_accepted_round_trips) {
  esk_buf_t b = sample_snapshot();
  random_inputs(esk_bank_state_deserialize, &b);
  esk_buf_free(&b);
}

/* Format 2: the Avro body of schemas/bank/AccountSnapshot.v1.avsc. */
static esk_buf_t sample_avro_snapshot(void) { return sample_snapshot_by(esk_bank_snapshot_write); }

Test(bank_snapshot, the_avro_body_is_an_account_snapshot_v1_that_avro_c_reads) {
  esk_buf_t b = sample_avro_snapshot();
  esk_error_t err = {0};
  esk_schema_set_t *set = NULL;
  cr_assert_eq(esk_schema_set_new(&set, &err), ESK_OK);
  cr_assert_eq(esk_bank_schemas_load(set, &err), ESK_OK, "%s", err.msg);
  const esk_schema_t *s = esk_schema_set_latest(set, "AccountSnapshot");
  cr_assert_not_null(s, "schemas/bank has no AccountSnapshot");
  avro_value_t v, f;
  cr_assert_eq(esk_value_new(&v, s, &err), ESK_OK, "%s", err.msg);
  avro_reader_t r = avro_reader_memory((const char *)b.data + 1, (int64_t)(b.len - 1));
  cr_assert_eq(avro_value_read(r, &v), 0, "%s", avro_strerror());
  const char *str = NULL;
  size_t n;
  int64_t l = 0;
  int32_t status = -1;
  cr_assert_eq(esk_value_field_str(&v, "account_id", &str, &err), ESK_OK);
  cr_expect_str_eq(str, "acc-1");
  cr_assert_eq(esk_value_field_long(&v, "balance", &l, &err), ESK_OK);
  cr_expect_eq(l, 777);
  cr_assert_eq(esk_value_field_long(&v, "version", &l, &err), ESK_OK);
  cr_expect_eq(l, 1);
  cr_assert_eq(avro_value_get_by_name(&v, "status", &f, NULL), 0);
  avro_value_get_int(&f, &status);
  cr_expect_eq(status, ESK_BANK_STATUS_OPEN);
  cr_assert_eq(avro_value_get_by_name(&v, "currency", &f, NULL), 0);
  avro_value_get_string(&f, &str, &n);
  cr_expect_str_eq(str, "USD");
  avro_reader_free(r);
  avro_value_decref(&v);
  esk_schema_set_destroy(set);
  esk_buf_free(&b);
}

Test(bank_snapshot, hostile_avro_snapshots_are_poison_and_change_nothing) {
  esk_buf_t b = sample_avro_snapshot();
  uint8_t m[ESK_BANK_SNAPSHOT_AVRO_MAX + 8];
  for (size_t n = 1; n < b.len; n++) assert_refused_by(esk_bank_snapshot_read, b.data, n, "truncated");
  memcpy(m, b.data, b.len);
  m[b.len] = 0;
  assert_refused_by(esk_bank_snapshot_read, m, b.len + 1, "trailing");
  m[0] = 3;
  assert_refused_by(esk_bank_snapshot_read, m, b.len, "unknown format version 3");
  memset(m, 0, sizeof(m));
  m[0] = ESK_BANK_SNAPSHOT_FORMAT_AVRO;
  assert_refused_by(esk_bank_snapshot_read, m, ESK_BANK_SNAPSHOT_AVRO_MAX + 1, "maximum");
  assert_refused_by(esk_bank_snapshot_read, NULL, 0, "empty");
  /* an id length past the input, a negative one, a long of 11 bytes */
  static const uint8_t huge_len[] = {2, 0xfe, 0xff, 0xff, 0xff, 0x0f, 'a'};
  static const uint8_t neg_len[] = {2, 0x01, 'a'};
  static const uint8_t long_varint[] = {2, 0x02, 'a', 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  assert_refused_by(esk_bank_snapshot_read, huge_len, sizeof(huge_len), "out of range");
  assert_refused_by(esk_bank_snapshot_read, neg_len, sizeof(neg_len), "out of range");
  assert_refused_by(esk_bank_snapshot_read, long_varint, sizeof(long_varint), "out of range");
  /* byte 1 is account_id's length (5: "acc-1"), then the id, version, status */
  memcpy(m, b.data, b.len);
  m[1 + 1 + 2] = '\0';
  assert_refused_by(esk_bank_snapshot_read, m, b.len, "out of range"); /* NUL inside the id */
  memcpy(m, b.data, b.len);
  m[1 + 1 + 5 + 1] = 2 * 7; /* status 7 */
  assert_refused_by(esk_bank_snapshot_read, m, b.len, "status");
  memcpy(m, b.data, b.len);
  m[1 + 1 + 5 + 1] = 2 * ESK_BANK_STATUS_CLOSED; /* closed with a balance, at version 1 */
  assert_refused_by(esk_bank_snapshot_read, m, b.len, "closed");
  memcpy(m, b.data, b.len);
  m[1 + 1 + 5] = 0x01; /* version -1 */
  assert_refused_by(esk_bank_snapshot_read, m, b.len, "negative version");
  random_inputs(esk_bank_snapshot_read, &b);
  esk_buf_free(&b);
}

Test(bank_snapshot, serializing_an_invalid_state_fails_and_leaves_the_buffer_alone) {
  esk_bank_state_t st = open_account("acc-1", 5);
  st.balance = -5;
  esk_buf_t b;
  esk_buf_init(&b, 0);
  esk_error_t err = {0};
  cr_assert_eq(esk_bank_state_serialize(&b, &st, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "negative balance"), "%s", err.msg);
  cr_assert_eq(b.len, 0);
  st.balance = 5;
  memset(st.owner_id, 'x', sizeof(st.owner_id)); /* not terminated */
  cr_assert_eq(esk_bank_state_serialize(&b, &st, &err), ESK_EINVAL);
  cr_assert_eq(b.len, 0);
  esk_buf_t tiny;
  esk_buf_init(&tiny, 4); /* the buffer's own maximum */
  st = open_account("acc-1", 5);
  cr_assert_eq(esk_bank_state_serialize(&tiny, &st, &err), ESK_ENOMEM);
  cr_assert_eq(esk_bank_snapshot_write(&tiny, &st, &err), ESK_ENOMEM);
  cr_assert_eq(tiny.len, 0);
  st.balance = -5;
  cr_assert_eq(esk_bank_snapshot_write(&b, &st, &err), ESK_EINVAL);
  cr_assert_not_null(strstr(err.msg, "negative balance"), "%s", err.msg);
  cr_assert_eq(b.len, 0);
  esk_buf_free(&tiny);
  esk_buf_free(&b);
}

/* -------------------------------------------------------------- store --- */

/* A plain store, or one packed with the bank's snapshot functions. */
static esk_aggstore_t *new_store(int packed, size_t expected, size_t max) {
  esk_aggstore_t *s = NULL;
  esk_error_t err = {0};
  const esk_aggstore_pack_t pack = {esk_bank_domain()->snapshot_write,
                                    esk_bank_domain()->snapshot_read};
  cr_assert_eq(esk_aggstore_new_packed(&s, sizeof(esk_bank_state_t), packed ? &pack : NULL,
                                       expected, max, &err),
               ESK_OK, "%s", err.msg);
  return s;
}

static void put_get_replace_remove(int packed) {
  esk_aggstore_t *s = new_store(packed, 0, 0);
  esk_error_t err = {0};
  cr_assert_null(esk_aggstore_get(s, "acc-1"));
  esk_bank_state_t st = open_account("acc-1", 10);
  cr_assert_eq(esk_aggstore_put(s, st.account_id, &st, &err), ESK_OK, "%s", err.msg);
  const esk_bank_state_t *got = esk_aggstore_get(s, "acc-1");
  cr_assert_not_null(got);
  cr_assert(esk_bank_state_equal(got, &st));
  esk_bank_command_t c = cmd_deposit("c2", "acc-1", 5, "USD");
  esk_bank_state_t next = *got;
  assert_rule(run(&next, &c, NULL), ESK_BANK_ACCEPTED);
  cr_assert_eq(esk_aggstore_put(s, next.account_id, &next, &err), ESK_OK);
  cr_assert_eq(esk_aggstore_count(s), 1);
  cr_assert_eq(((const esk_bank_state_t *)esk_aggstore_get(s, "acc-1"))->balance, 15);
  /* a longer owner: a packed value changes its length */
  snprintf(next.owner_id, sizeof(next.owner_id), "%0128d", 7);
  cr_assert_eq(esk_aggstore_put(s, next.account_id, &next, &err), ESK_OK, "%s", err.msg);
  cr_assert(esk_bank_state_equal(esk_aggstore_get(s, "acc-1"), &next));
  esk_bank_state_t anon = {0};
  cr_assert_eq(esk_aggstore_put(s, anon.account_id, &anon, &err), ESK_EINVAL);
  cr_assert_eq(esk_aggstore_remove(s, "acc-1"), ESK_OK);
  cr_assert_eq(esk_aggstore_remove(s, "acc-1"), ESK_ENOTFOUND);
  cr_assert_null(esk_aggstore_get(s, "acc-1"));
  cr_assert_eq(esk_aggstore_count(s), 0);
  esk_aggstore_destroy(s);
  esk_aggstore_destroy(NULL);
}

Test(aggregate_store, put_get_replace_remove_and_count) { put_get_replace_remove(0); }

Test(aggregate_store, packed_put_get_replace_remove_and_count) { put_get_replace_remove(1); }

Test(aggregate_store, packed_refuses_a_state_its_snapshot_refuses_and_keeps_the_old_one) {
  esk_aggstore_t *s = new_store(1, 0, 0);
  esk_error_t err = {0};
  esk_bank_state_t st = open_account("acc-1", 10);
  cr_assert_eq(esk_aggstore_put(s, st.account_id, &st, &err), ESK_OK, "%s", err.msg);
  esk_bank_state_t bad = st;
  bad.balance = -1; /* never negative */
  cr_assert_eq(esk_aggstore_put(s, bad.account_id, &bad, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "balance"), "the reason names the field: %s", err.msg);
  cr_assert(esk_bank_state_equal(esk_aggstore_get(s, "acc-1"), &st));
  esk_aggstore_destroy(s);
}

static int write_garbage(esk_buf_t *out, const void *state, esk_error_t *err) {
  (void)state;
  return esk_buf_append(out, "\x7f", 1, err);
}

Test(aggregate_store, packed_state_that_does_not_read_back_stops_the_process,
     .signal = SIGABRT) {
  esk_aggstore_t *s = NULL;
  const esk_aggstore_pack_t pack = {write_garbage, esk_bank_domain()->snapshot_read};
  cr_assert_eq(esk_aggstore_new_packed(&s, sizeof(esk_bank_state_t), &pack, 0, 0, NULL), ESK_OK);
  esk_bank_state_t st = open_account("acc-1", 10);
  cr_assert_eq(esk_aggstore_put(s, st.account_id, &st, NULL), ESK_OK);
  esk_aggstore_get(s, "acc-1"); /* never a state it did not store */
}

/* Skips the calling test when mallinfo2 does not see malloc's blocks (a
 * sanitizer build has its own allocator): its figures would be 0. */
static void require_mallinfo(void) {
  size_t before = mallinfo2().uordblks;
  void *volatile probe = malloc(4096); /* below the mmap threshold; volatile: kept */
  size_t grew = mallinfo2().uordblks - before;
  free(probe);
  if (grew < 4096) cr_skip_test("mallinfo2 does not count this allocator's blocks");
}

/* with uuid ids; the bank's state is 288 bytes whatever its ids */
Test(aggregate_store, packed_takes_at_most_three_fifths_of_the_memory_of_plain) {
  enum { N = 20000 };
  size_t used[2];
  require_mallinfo();
  for (int packed = 0; packed < 2; packed++) {
    size_t heap0 = mallinfo2().uordblks;
    esk_aggstore_t *s = new_store(packed, N, 0);
    esk_bank_state_t st = open_account("x", 0);
    snprintf(st.owner_id, sizeof(st.owner_id), "6f1c2b7e-2f7a-4d8e-9a51-0c1d2e3f4a5b");
    for (int i = 0; i < N; i++) {
      snprintf(st.account_id, sizeof(st.account_id), "9b2e4c1a-0d3f-4e5a-8b6c-%012d", i);
      cr_assert_eq(esk_aggstore_put(s, st.account_id, &st, NULL), ESK_OK);
    }
    used[packed] = mallinfo2().uordblks - heap0;
    esk_aggstore_destroy(s);
  }
  cr_log_info("36-character ids: %zu bytes per account plain, %zu packed", used[0] / N,
              used[1] / N);
  cr_assert_lt(used[1] * 5, used[0] * 3, "plain %zu, packed %zu bytes", used[0], used[1]);
}

static int count_balances(const char *id, const void *state, void *ctx) {
  const esk_bank_state_t *st = state;
  cr_assert_str_eq(id, st->account_id);
  *(int64_t *)ctx += st->balance;
  return 0;
}

static void holds_many(int packed) {
  enum { N = 200000 };
  esk_error_t err = {0};
  esk_aggstore_t *s = new_store(packed, 1000, N); /* must grow */
  esk_bank_state_t st = open_account("x", 0);
  for (int i = 0; i < N; i++) {
    snprintf(st.account_id, sizeof(st.account_id), "acc-%d", i);
    st.balance = i;
    cr_assert_eq(esk_aggstore_put(s, st.account_id, &st, &err), ESK_OK, "%s", err.msg);
  }
  cr_assert_eq(esk_aggstore_count(s), N);
  snprintf(st.account_id, sizeof(st.account_id), "acc-extra");
  cr_assert_eq(esk_aggstore_put(s, st.account_id, &st, &err), ESK_ENOMEM);
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "acc-%d", i);
    const esk_bank_state_t *g = esk_aggstore_get(s, id);
    cr_assert_not_null(g, "%s lost", id);
    cr_assert_eq(g->balance, i);
  }
  int64_t sum = 0;
  cr_assert_eq(esk_aggstore_foreach(s, count_balances, &sum), 0);
  cr_assert_eq(sum, (int64_t)N * (N - 1) / 2);
  esk_aggstore_destroy(s);
}

Test(aggregate_store, holds_many_accounts_and_refuses_new_ones_past_its_maximum) {
  holds_many(0);
}

Test(aggregate_store, packed_holds_many_accounts_and_refuses_new_ones_past_its_maximum) {
  holds_many(1);
}

/* --------------------------------------------------------------- seen --- */

/* A result of the bank's @p rule, numbered as the runtime numbers it. */
static esk_result_t result_of(esk_bank_rule_t rule, int64_t version) {
  esk_result_t r = {0};
  cr_assert_eq(esk_domain_rule_from_name(esk_bank_domain(), esk_bank_rule_name(rule), &r.rule),
               ESK_OK);
  r.version = version;
  snprintf(r.message, sizeof(r.message), "%s: v%" PRId64, esk_bank_rule_name(rule), version);
  return r;
}

Test(seen_cache, the_first_result_of_a_command_id_wins) {
  esk_seen_t *s = NULL;
  cr_assert_eq(esk_seen_new(&s, 8, NULL), ESK_OK);
  esk_result_t a = result_of(ESK_BANK_ACCEPTED, 3), b = result_of(ESK_BANK_INSUFFICIENT_FUNDS, 3);
  int ins = -1;
  cr_assert_null(esk_seen_get(s, "cmd-1"));
  cr_assert_eq(esk_seen_put(s, "cmd-1", &a, &ins, NULL), ESK_OK);
  cr_assert_eq(ins, 1);
  cr_assert_eq(esk_seen_put(s, "cmd-1", &b, &ins, NULL), ESK_OK);
  cr_assert_eq(ins, 0);
  const esk_result_t *g = esk_seen_get(s, "cmd-1");
  cr_assert_not_null(g);
  cr_assert_eq(g->rule, ESK_RULE_ACCEPTED);
  cr_assert_str_eq(g->message, a.message);
  cr_assert_eq(esk_seen_count(s), 1);
  char *longid = repeat('c', ESK_ID_MAX + 1);
  esk_error_t err = {0};
  cr_assert_eq(esk_seen_put(s, longid, &a, NULL, &err), ESK_EINVAL);
  cr_assert_eq(esk_seen_put(s, "", &a, NULL, &err), ESK_EINVAL);
  cr_assert_null(esk_seen_get(s, longid));
  free(longid);
  esk_seen_destroy(s);
  esk_seen_destroy(NULL);
}

Test(seen_cache, messages_come_back_whole_up_to_the_maximum_and_cut_past_it) {
  esk_seen_t *s = NULL;
  cr_assert_eq(esk_seen_new(&s, 8, NULL), ESK_OK);
  esk_result_t full = result_of(ESK_BANK_INSUFFICIENT_FUNDS, 7), over = full, empty = full;
  memset(full.message, 'm', sizeof(full.message) - 1);
  full.message[sizeof(full.message) - 1] = '\0';
  memset(over.message, 'o', sizeof(over.message)); /* no NUL at all */
  empty.message[0] = '\0';
  cr_assert_eq(esk_seen_put(s, "full", &full, NULL, NULL), ESK_OK);
  cr_assert_eq(esk_seen_put(s, "over", &over, NULL, NULL), ESK_OK);
  cr_assert_eq(esk_seen_put(s, "empty", &empty, NULL, NULL), ESK_OK);
  const esk_result_t *g = esk_seen_get(s, "full");
  cr_assert_eq(g->rule, full.rule);
  cr_assert_eq(g->version, 7);
  cr_assert_eq(g->n_events, full.n_events);
  cr_assert_str_eq(g->message, full.message);
  g = esk_seen_get(s, "over");
  cr_assert_eq(strlen(g->message), sizeof(g->message) - 1);
  cr_assert_eq(g->message[0], 'o');
  cr_assert_str_eq(esk_seen_get(s, "empty")->message, "");
  esk_seen_destroy(s);
}

Test(seen_cache, an_entry_takes_its_message_not_the_maximum) {
  enum { N = 20000 };
  require_mallinfo();
  size_t heap0 = mallinfo2().uordblks;
  esk_seen_t *s = NULL;
  cr_assert_eq(esk_seen_new(&s, N, NULL), ESK_OK);
  esk_result_t r = result_of(ESK_BANK_ACCEPTED, 3);
  snprintf(r.message, sizeof(r.message), "MoneyDeposited");
  for (int i = 0; i < N; i++) {
    char id[40];
    snprintf(id, sizeof(id), "6f1c2b7e-2f7a-4d8e-9a51-%012d", i);
    cr_assert_eq(esk_seen_put(s, id, &r, NULL, NULL), ESK_OK);
  }
  size_t per = (mallinfo2().uordblks - heap0) / N;
  cr_log_info("seen cache: %zu bytes per command id (36 characters)", per);
  cr_assert_lt(per, 200, "%zu bytes per entry; a whole esk_result_t is %zu", per, sizeof(r));
  cr_assert_str_eq(esk_seen_get(s, "6f1c2b7e-2f7a-4d8e-9a51-000000000042")->message,
                   "MoneyDeposited");
  esk_seen_destroy(s);
}

Test(seen_cache, a_full_cache_evicts_the_oldest_inserted_id_first) {
  enum { MAX = 5 };
  esk_seen_t *s = NULL;
  cr_assert_eq(esk_seen_new(&s, MAX, NULL), ESK_OK);
  char id[32];
  for (int i = 0; i < 3 * MAX + 2; i++) {
    snprintf(id, sizeof(id), "cmd-%d", i);
    esk_result_t r = result_of(ESK_BANK_ACCEPTED, i);
    cr_assert_eq(esk_seen_put(s, id, &r, NULL, NULL), ESK_OK);
    /* a lookup does not refresh: cmd-0's re-put and get must not keep it alive */
    (void)esk_seen_get(s, "cmd-0");
    cr_assert_leq(esk_seen_count(s), MAX);
    for (int j = 0; j <= i; j++) {
      snprintf(id, sizeof(id), "cmd-%d", j);
      const esk_result_t *g = esk_seen_get(s, id);
      if (j > i - MAX) {
        cr_assert_not_null(g, "cmd-%d evicted too early (after cmd-%d)", j, i);
        cr_assert_eq(g->version, j);
      } else {
        cr_assert_null(g, "cmd-%d not evicted (after cmd-%d)", j, i);
      }
    }
  }
  cr_assert_eq(esk_seen_count(s), MAX);
  esk_seen_destroy(s);
}

Test(seen_cache, results_read_back_from_outside_can_be_inserted_and_looked_up) {
  /* what the producer does when it rebuilds the cache from the results topic */
  const struct { const char *id, *rule; int64_t v; } topic[] = {
      {"a", "ACCEPTED", 1}, {"b", "INSUFFICIENT_FUNDS", 1}, {"c", "CONCURRENCY_CONFLICT", 4}};
  esk_seen_t *s = NULL;
  cr_assert_eq(esk_seen_new(&s, 100, NULL), ESK_OK);
  for (size_t i = 0; i < 3; i++) {
    esk_bank_rule_t rule;
    cr_assert_eq(esk_bank_rule_from_name(&rule, topic[i].rule), ESK_OK);
    esk_result_t r = result_of(rule, topic[i].v);
    cr_assert_eq(esk_seen_put(s, topic[i].id, &r, NULL, NULL), ESK_OK);
  }
  for (size_t i = 0; i < 3; i++) {
    const esk_result_t *g = esk_seen_get(s, topic[i].id);
    cr_assert_not_null(g);
    cr_assert_str_eq(esk_domain_rule_name(esk_bank_domain(), g->rule), topic[i].rule);
    cr_assert_eq(g->version, topic[i].v);
  }
  esk_seen_destroy(s);
}

/* ----------------------------------------------------------- property --- */

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}
static int64_t rnd_range(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }

static int snapshot_roundtrip_ok(const esk_bank_state_t *st) {
  esk_buf_t b;
  esk_buf_init(&b, 0);
  esk_bank_state_t back;
  int ok = esk_bank_state_serialize(&b, st, NULL) == ESK_OK &&
           esk_bank_state_deserialize(&back, b.data, b.len, NULL) == ESK_OK &&
           esk_bank_state_equal(&back, st);
  esk_buf_free(&b);
  return ok;
}

static const char *const cur_of[] = {"USD", "EUR", "JPY"}; /* account a's is cur_of[a % 3] */

/* An independent reference model of one account, written from the rules as stated. */
typedef struct {
  int status; /* 0 none, 1 open, 2 closed */
  int64_t balance, version;
} model_t;

/* A random command @p id on account @p acc (currency cur_of[@p ci], now at
 * @p version): mostly well-formed, sometimes in another or an invalid
 * currency, with a huge or non-positive amount, or an expected version that
 * is wrong. Its currency and amount in @p cur and @p amount. */
static esk_bank_command_t random_command(const char *id, const char *acc, int ci,
                                         int64_t version, const char **cur, int64_t *amount) {
  esk_bank_command_t c;
  uint64_t pick = rnd() % 100;
  *cur = pick < 90 ? cur_of[ci] : pick < 97 ? cur_of[(ci + 1) % 3] : "usd";
  *amount = rnd() % 50 == 0 ? INT64_MAX / 3 : rnd_range(-3, 3000);
  uint64_t t = rnd() % 100;
  if (t < 10) /* the open fixes the account's currency: keep it the one the tally expects */
    c = cmd_open(id, acc, "owner", *amount, esk_bank_currency_valid(*cur) ? cur_of[ci] : *cur);
  else if (t < 55) c = cmd_deposit(id, acc, *amount, *cur);
  else if (t < 95) c = cmd_withdraw(id, acc, *amount, *cur);
  else c = cmd_close(id, acc);
  if (rnd() % 5 == 0) {
    c.has_expected_version = true;
    c.expected_version = version + (rnd() % 2 ? 0 : rnd_range(-1, 2));
  }
  return c;
}

/* Whether the model accepts @p c (currency @p cur, amount @p amount) on an
 * account of currency @p acct_cur, and its balance after in @p bal. */
static bool model_accepts(const model_t *m, const esk_bank_command_t *c, const char *cur,
                          const char *acct_cur, int64_t amount, int64_t *bal) {
  bool cur_ok = esk_bank_currency_valid(cur), same_cur = cur_ok && strcmp(cur, acct_cur) == 0;
  bool ver_ok = !c->has_expected_version || c->expected_version == m->version;
  bool want = false;
  *bal = m->balance;
  if (!cur_ok && c->type != ESK_BANK_CMD_CLOSE_ACCOUNT) want = false;
  else if (!ver_ok || c->expected_version < 0) want = false;
  else if (c->type == ESK_BANK_CMD_OPEN_ACCOUNT) {
    want = m->status == 0 && amount >= 0;
    *bal = amount;
  } else if (m->status != 1) want = false;
  else if (c->type == ESK_BANK_CMD_DEPOSIT_MONEY) {
    want = same_cur && amount > 0 && (__int128)m->balance + amount <= INT64_MAX;
    *bal = m->balance + (want ? amount : 0);
  } else if (c->type == ESK_BANK_CMD_WITHDRAW_MONEY) {
    want = same_cur && amount > 0 && amount <= m->balance;
    *bal = m->balance - (want ? amount : 0);
  } else {
    want = m->balance == 0;
  }
  return want;
}

/* The model after command @p c was accepted. */
static void model_apply(model_t *m, const esk_bank_command_t *c, int64_t bal) {
  m->version++;
  m->balance = bal;
  if (c->type == ESK_BANK_CMD_OPEN_ACCOUNT) m->status = 1;
  if (c->type == ESK_BANK_CMD_CLOSE_ACCOUNT) m->status = 2;
}

/* What an accepted command @p c adds to its currency's tally. */
static __int128 tally_of(const esk_bank_command_t *c) {
  if (c->type == ESK_BANK_CMD_OPEN_ACCOUNT) return c->u.open.initial_deposit.minor_units;
  if (c->type == ESK_BANK_CMD_DEPOSIT_MONEY) return c->u.deposit.amount.minor_units;
  if (c->type == ESK_BANK_CMD_WITHDRAW_MONEY) return -c->u.withdraw.amount.minor_units;
  return 0;
}

/* Folds each account's events in @p log from nothing: equal to what @p store
 * holds, its snapshot round-trips, and the balances per currency sum to
 * @p total, the tally of the accepted commands. */
static void check_folds(const esk_aggstore_t *store, const esk_bank_event_t *log, size_t nlog,
                        const __int128 total[3], int accounts, uint64_t seed) {
  __int128 sum[3] = {0};
  for (int a = 0; a < accounts; a++) {
    char acc[16];
    snprintf(acc, sizeof(acc), "acc-%02d", a);
    esk_bank_state_t folded = {0};
    for (size_t k = 0; k < nlog; k++) {
      if (strcmp(log[k].account_id, acc) != 0) continue;
      esk_error_t err = {0};
      cr_assert_eq(esk_bank_apply(&folded, &log[k], &err), ESK_OK, "seed=%" PRIu64 " %s", seed,
                   err.msg);
    }
    const esk_bank_state_t *held = esk_aggstore_get(store, acc);
    if (!held) {
      cr_assert_eq(folded.version, 0);
      continue;
    }
    cr_assert(esk_bank_state_equal(&folded, held), "seed=%" PRIu64 " %s: fold != store", seed, acc);
    cr_assert(snapshot_roundtrip_ok(held), "seed=%" PRIu64 " %s: snapshot", seed, acc);
    cr_assert_str_eq(held->currency, cur_of[a % 3]);
    sum[a % 3] += held->balance;
  }
  for (int k = 0; k < 3; k++)
    cr_assert(sum[k] == total[k], "seed=%" PRIu64 " %s: balances %" PRId64 " != tally %" PRId64,
              seed, cur_of[k], (int64_t)sum[k], (int64_t)total[k]);
}

Test(bank_property, random_commands_keep_balances_non_negative_and_totals_consistent) {
  enum { ACCOUNTS = 50, COMMANDS = 10000 };
  uint64_t seed = getenv("ESK_TEST_SEED") ? strtoull(getenv("ESK_TEST_SEED"), NULL, 0)
                                          : (uint64_t)time(NULL) * 2654435761ULL;
  rng_state = seed ? seed : 1;
  cr_log_info("bank_property seed=%" PRIu64 " (rerun with ESK_TEST_SEED)", seed);

  esk_aggstore_t *store = NULL;
  esk_seen_t *seen = NULL;
  cr_assert_eq(esk_aggstore_new(&store, sizeof(esk_bank_state_t), ACCOUNTS, 0, NULL), ESK_OK);
  cr_assert_eq(esk_seen_new(&seen, 2 * COMMANDS, NULL), ESK_OK);
  esk_bank_event_t *log = calloc(COMMANDS, sizeof(*log));
  size_t nlog = 0;
  cr_assert_not_null(log);
  __int128 total[3] = {0}; /* per currency: opened + deposited - withdrawn, from the commands */
  model_t model[ACCOUNTS];
  memset(model, 0, sizeof(model));
  int rule_hits[ESK_BANK_RULE_COUNT_] = {0};
  int replays = 0;

  for (int i = 0; i < COMMANDS; i++) {
    char acc[16], cid[32], rcid[32];
    int a = (int)rnd_range(0, ACCOUNTS - 1), ci = a % 3;
    snprintf(acc, sizeof(acc), "acc-%02d", a);
    snprintf(cid, sizeof(cid), "cmd-%d", i);
    const char *id = cid;
    if (i > 0 && rnd() % 20 == 0) { /* a retry of an earlier command id */
      snprintf(rcid, sizeof(rcid), "cmd-%d", (int)rnd_range(0, i - 1));
      id = rcid;
    }
    const esk_result_t *prior = esk_seen_get(seen, id);
    if (prior) { /* answered from the cache; nothing decided, nothing published */
      cr_assert_str_not_empty(prior->message);
      replays++;
      continue;
    }
    const esk_bank_state_t *cur_st = esk_aggstore_get(store, acc);
    esk_bank_state_t next = cur_st ? *cur_st : (esk_bank_state_t){0};
    const char *cur = NULL;
    int64_t amount = 0, want_bal = 0;
    esk_bank_command_t c = random_command(id, acc, ci, next.version, &cur, &amount);
    bool want = model_accepts(&model[a], &c, cur, cur_of[ci], amount, &want_bal);

    esk_bank_result_t r = run(&next, &c, log + nlog); /* decide + apply */
    rule_hits[r.rule]++;
    cr_assert_eq(r.rule == ESK_BANK_ACCEPTED, want, "seed=%" PRIu64 " command %d: model says %s, got %s",
                 seed, i, want ? "accept" : "reject", r.message);
    if (want) model_apply(&model[a], &c, want_bal);
    cr_assert_eq(next.balance, model[a].balance, "seed=%" PRIu64 " command %d: balance", seed, i);
    cr_assert_eq(next.version, model[a].version, "seed=%" PRIu64 " command %d: version", seed, i);
    if (c.has_expected_version && c.expected_version != (cur_st ? cur_st->version : 0) &&
        c.expected_version >= 0)
      cr_assert(r.rule != ESK_BANK_ACCEPTED, "accepted with a wrong expected version");
    if (r.rule == ESK_BANK_ACCEPTED) {
      nlog++;
      total[ci] += tally_of(&c);
      cr_assert_eq(esk_aggstore_put(store, next.account_id, &next, NULL), ESK_OK);
    }
    cr_assert_geq(next.balance, 0, "seed=%" PRIu64 " negative balance on %s", seed, acc);
    esk_result_t seen_r = result_of(r.rule, r.version);
    cr_assert_eq(esk_seen_put(seen, id, &seen_r, NULL, NULL), ESK_OK);
  }

  /* every outcome the generator aims at actually happened */
  cr_assert_gt(rule_hits[ESK_BANK_ACCEPTED], 1000, "seed=%" PRIu64, seed);
  cr_assert_gt(rule_hits[ESK_BANK_INSUFFICIENT_FUNDS], 0, "seed=%" PRIu64, seed);
  cr_assert_gt(rule_hits[ESK_BANK_CURRENCY_MISMATCH], 0, "seed=%" PRIu64, seed);
  cr_assert_gt(rule_hits[ESK_BANK_CONCURRENCY_CONFLICT], 0, "seed=%" PRIu64, seed);
  cr_assert_gt(rule_hits[ESK_BANK_ACCOUNT_ALREADY_EXISTS], 0, "seed=%" PRIu64, seed);
  cr_assert_gt(replays, 0, "seed=%" PRIu64, seed);

  check_folds(store, log, nlog, total, ACCOUNTS, seed);
  free(log);
  esk_aggstore_destroy(store);
  esk_seen_destroy(seen);
}
