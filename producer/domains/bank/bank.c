/* The bank account aggregate: decide (command -> events or a rejection) and
 * apply (event -> state). Pure functions over plain structs. */
#include "bank/bank.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "esk/text.h"

static const char *const rule_names[ESK_BANK_RULE_COUNT_] = {
    [ESK_BANK_ACCEPTED] = "ACCEPTED",
    [ESK_BANK_INVALID_COMMAND] = "INVALID_COMMAND",
    [ESK_BANK_INVALID_CURRENCY] = "INVALID_CURRENCY",
    [ESK_BANK_INVALID_AMOUNT] = "INVALID_AMOUNT",
    [ESK_BANK_CONCURRENCY_CONFLICT] = "CONCURRENCY_CONFLICT",
    [ESK_BANK_ACCOUNT_ALREADY_EXISTS] = "ACCOUNT_ALREADY_EXISTS",
    [ESK_BANK_ACCOUNT_NOT_FOUND] = "ACCOUNT_NOT_FOUND",
    [ESK_BANK_ACCOUNT_CLOSED] = "ACCOUNT_CLOSED",
    [ESK_BANK_CURRENCY_MISMATCH] = "CURRENCY_MISMATCH",
    [ESK_BANK_INSUFFICIENT_FUNDS] = "INSUFFICIENT_FUNDS",
    [ESK_BANK_AMOUNT_OVERFLOW] = "AMOUNT_OVERFLOW",
    [ESK_BANK_BALANCE_NOT_ZERO] = "BALANCE_NOT_ZERO",
    [ESK_BANK_UNPUBLISHABLE] = "UNPUBLISHABLE",
};

const char *esk_bank_rule_name(esk_bank_rule_t rule) {
  if ((int)rule < 0 || rule >= ESK_BANK_RULE_COUNT_) return "UNKNOWN";
  return rule_names[rule];
}

int esk_bank_rule_from_name(esk_bank_rule_t *out, const char *name) {
  if (!out || !name) return ESK_ENOTFOUND;
  for (int i = 0; i < ESK_BANK_RULE_COUNT_; i++) {
    if (strcmp(rule_names[i], name) == 0) {
      *out = (esk_bank_rule_t)i;
      return ESK_OK;
    }
  }
  return ESK_ENOTFOUND;
}

const char *esk_bank_status_name(esk_bank_status_t s) {
  switch (s) {
  case ESK_BANK_STATUS_NONE: return "none";
  case ESK_BANK_STATUS_OPEN: return "open";
  case ESK_BANK_STATUS_CLOSED: return "closed";
  }
  return "invalid";
}

bool esk_bank_currency_valid(const char *code) {
  if (!code) return false;
  for (int i = 0; i < 3; i++)
    if (code[i] < 'A' || code[i] > 'Z') return false;
  return code[3] == '\0';
}

/* A NUL-terminated string inside a fixed array, of at most max bytes. */
static bool fixed_str_ok(const char *s, size_t size) { return memchr(s, '\0', size) != NULL; }

bool esk_bank_state_equal(const esk_bank_state_t *a, const esk_bank_state_t *b) {
  if (a == b) return true;
  if (!a || !b) return false;
  return a->status == b->status && a->balance == b->balance && a->version == b->version &&
         strncmp(a->account_id, b->account_id, sizeof(a->account_id)) == 0 &&
         strncmp(a->owner_id, b->owner_id, sizeof(a->owner_id)) == 0 &&
         strncmp(a->currency, b->currency, sizeof(a->currency)) == 0;
}

static bool str_equal(const char *a, const char *b) {
  return a == b || (a && b && !strcmp(a, b));
}

static bool money_equal(esk_bank_money_in_t a, esk_bank_money_in_t b) {
  return a.minor_units == b.minor_units && str_equal(a.currency, b.currency);
}

bool esk_bank_command_equal(const esk_bank_command_t *a, const esk_bank_command_t *b) {
  if (a->type != b->type || !str_equal(a->command_id, b->command_id) ||
      !str_equal(a->account_id, b->account_id) ||
      a->has_expected_version != b->has_expected_version ||
      a->expected_version != b->expected_version || !str_equal(a->actor, b->actor) ||
      !str_equal(a->correlation_id, b->correlation_id))
    return false;
  switch (a->type) {
  case ESK_BANK_CMD_OPEN_ACCOUNT:
    return str_equal(a->u.open.owner_id, b->u.open.owner_id) &&
           money_equal(a->u.open.initial_deposit, b->u.open.initial_deposit);
  case ESK_BANK_CMD_DEPOSIT_MONEY:
  case ESK_BANK_CMD_WITHDRAW_MONEY:
    return money_equal(a->u.deposit.amount, b->u.deposit.amount) &&
           str_equal(a->u.deposit.description, b->u.deposit.description);
  case ESK_BANK_CMD_CLOSE_ACCOUNT:
    return str_equal(a->u.close.reason, b->u.close.reason);
  }
  return true;
}

/* Copies a string known to fit (checked by the caller), zero-filling the rest
 * so that equal events are equal byte for byte. */
static void copy_str(char *dst, size_t size, const char *src) {
  memset(dst, 0, size);
  if (src) memcpy(dst, src, strnlen(src, size - 1));
}

/* ------------------------------------------------------------- decide --- */

static void set_result(esk_bank_result_t *r, esk_bank_rule_t rule, int64_t version,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void set_result(esk_bank_result_t *r, esk_bank_rule_t rule, int64_t version,
                       const char *fmt, ...) {
  r->rule = rule;
  r->version = version;
  int n = snprintf(r->message, sizeof(r->message), "%s: ", esk_bank_rule_name(rule));
  if (n < 0 || (size_t)n >= sizeof(r->message)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->message + n, sizeof(r->message) - (size_t)n, fmt, ap);
  va_end(ap);
}

/* Appends @p s to r->message at *@p off, truncating at the end. */
static void msg_cat(esk_bank_result_t *r, size_t *off, const char *s) {
  size_t n = strlen(s), room = sizeof(r->message) - 1 - *off;
  if (n > room) n = room;
  memcpy(r->message + *off, s, n);
  *off += n;
}

/* set_result() for the accepted case, which every accepted command pays: the
 * same text without printf ("ACCEPTED: MoneyDeposited, account a-1 now at
 * version 7"; vsnprintf was ~6% of the producer's CPU). */
static void accepted_result(esk_bank_result_t *r, const char *event, const char *account,
                            int64_t version) {
  char num[ESK_TEXT_I64_MAX];
  esk_text_i64(num, version < 0 ? 0 : version);
  size_t off = 0;
  r->rule = ESK_BANK_ACCEPTED;
  r->version = version;
  msg_cat(r, &off, "ACCEPTED: ");
  msg_cat(r, &off, event);
  msg_cat(r, &off, ", account ");
  msg_cat(r, &off, account);
  msg_cat(r, &off, " now at version ");
  msg_cat(r, &off, num);
  r->message[off] = '\0';
}

/* Checks one string field of a command; on failure fills r and returns false. */
static bool check_field(esk_bank_result_t *r, int64_t version, const char *name, const char *v,
                        bool required, size_t max) {
  if (!v || !v[0]) {
    if (!required) return true;
    set_result(r, ESK_BANK_INVALID_COMMAND, version, "%s is missing or empty", name);
    return false;
  }
  size_t len = strnlen(v, max + 1);
  if (len > max) {
    set_result(r, ESK_BANK_INVALID_COMMAND, version,
               "%s is longer than the maximum of %zu bytes", name, max);
    return false;
  }
  return true;
}

static bool check_currency(esk_bank_result_t *r, int64_t version, const char *field,
                           const char *cur) {
  if (esk_bank_currency_valid(cur)) return true;
  if (!cur)
    set_result(r, ESK_BANK_INVALID_CURRENCY, version, "%s.currency is missing", field);
  else
    set_result(r, ESK_BANK_INVALID_CURRENCY, version,
               "%s.currency '%.8s' is not an ISO 4217 code of three upper-case letters", field,
               cur);
  return false;
}

/* The amount, the free text and the amount's field name of a command;
 * false for an unknown type. */
static bool payload_of(const esk_bank_command_t *c, const esk_bank_money_in_t **amt,
                       const char **text, const char **what) {
  *amt = NULL;
  *text = NULL;
  *what = NULL;
  switch (c->type) {
  case ESK_BANK_CMD_OPEN_ACCOUNT: *amt = &c->u.open.initial_deposit; *what = "initial_deposit"; return true;
  case ESK_BANK_CMD_DEPOSIT_MONEY: *amt = &c->u.deposit.amount; *text = c->u.deposit.description; *what = "amount"; return true;
  case ESK_BANK_CMD_WITHDRAW_MONEY: *amt = &c->u.withdraw.amount; *text = c->u.withdraw.description; *what = "amount"; return true;
  case ESK_BANK_CMD_CLOSE_ACCOUNT: *text = c->u.close.reason; return true;
  }
  return false;
}

/* The envelope's ids (the producer runtime checks them itself, before
 * esk_bank_validate(): see esk/domain.h). */
static bool check_ids(esk_bank_result_t *r, const esk_bank_command_t *c, int64_t v) {
  return check_field(r, v, "command_id", c->command_id, true, ESK_BANK_ID_MAX) &&
         check_field(r, v, "account_id", c->account_id, true, ESK_BANK_ID_MAX) &&
         check_field(r, v, "actor", c->actor, false, ESK_BANK_ID_MAX) &&
         check_field(r, v, "correlation_id", c->correlation_id, false, ESK_BANK_ID_MAX);
}

/* owner_id and the free text. */
static bool check_texts(esk_bank_result_t *r, const esk_bank_command_t *c, int64_t v,
                        const char *text) {
  if (c->type == ESK_BANK_CMD_OPEN_ACCOUNT &&
      !check_field(r, v, "owner_id", c->u.open.owner_id, true, ESK_BANK_ID_MAX))
    return false;
  return check_field(r, v, c->type == ESK_BANK_CMD_CLOSE_ACCOUNT ? "reason" : "description",
                     text, false, ESK_BANK_TEXT_MAX);
}

static bool check_money(esk_bank_result_t *r, const esk_bank_command_t *c, int64_t v,
                        const esk_bank_money_in_t *amt, const char *what) {
  if (!amt) return true;
  if (!check_currency(r, v, what, amt->currency)) return false;
  if (c->type == ESK_BANK_CMD_OPEN_ACCOUNT ? amt->minor_units < 0 : amt->minor_units <= 0) {
    set_result(r, ESK_BANK_INVALID_AMOUNT, v, "%s of %" PRId64 " %s (minor units) must be %s",
               what, amt->minor_units, amt->currency,
               c->type == ESK_BANK_CMD_OPEN_ACCOUNT ? "zero or more" : "more than zero");
    return false;
  }
  return true;
}

void esk_bank_validate(esk_bank_result_t *r, const esk_bank_command_t *c, int64_t version) {
  const esk_bank_money_in_t *amt;
  const char *text, *what;
  r->rule = ESK_BANK_ACCEPTED; /* no memset: this runs for every command */
  r->version = version;
  r->message[0] = '\0';
  if (!payload_of(c, &amt, &text, &what)) {
    set_result(r, ESK_BANK_INVALID_COMMAND, version, "unknown command type %d", (int)c->type);
    return;
  }
  if (check_texts(r, c, version, text)) check_money(r, c, version, amt, what);
}

/* The checks of esk_bank_decide() before the state rules: ids, texts, the
 * expected version's sign, money, then the expected version itself. */
static bool command_ok(esk_bank_result_t *r, const esk_bank_command_t *c, int64_t v,
                       const esk_bank_money_in_t *amt, const char *text, const char *what) {
  if (!check_ids(r, c, v) || !check_texts(r, c, v, text)) return false;
  if (c->has_expected_version && c->expected_version < 0) {
    set_result(r, ESK_BANK_INVALID_COMMAND, v, "expected_version %" PRId64 " is negative",
               c->expected_version);
    return false;
  }
  if (!check_money(r, c, v, amt, what)) return false;
  /* optimistic concurrency */
  if (c->has_expected_version && c->expected_version != v) {
    set_result(r, ESK_BANK_CONCURRENCY_CONFLICT, v,
               "account %s: expected version %" PRId64 " but the actual version is %" PRId64,
               c->account_id, c->expected_version, v);
    return false;
  }
  return true;
}

/* Fills r, and ev when accepted (r->rule == ESK_BANK_ACCEPTED): with
 * @p checks, command_ok() first (esk_bank_decide()); without, the state rules
 * alone (esk_bank_decide_state(): the runtime ran the other checks). */
static void judge(esk_bank_result_t *r, esk_bank_event_t *ev, const esk_bank_state_t *st,
                  const esk_bank_command_t *c, bool checks) {
  const int64_t v = st->version;
  const esk_bank_money_in_t *amt;
  const char *text, *what;
  if (!payload_of(c, &amt, &text, &what)) {
    set_result(r, ESK_BANK_INVALID_COMMAND, v, "unknown command type %d", (int)c->type);
    return;
  }
  if (checks && !command_ok(r, c, v, amt, text, what)) return;
  /* state rules */
  if (c->type == ESK_BANK_CMD_OPEN_ACCOUNT) {
    if (st->status != ESK_BANK_STATUS_NONE) {
      set_result(r, ESK_BANK_ACCOUNT_ALREADY_EXISTS, v,
                 "account %s already exists (status %s, version %" PRId64 ")", c->account_id,
                 esk_bank_status_name(st->status), v);
      return;
    }
  } else if (st->status == ESK_BANK_STATUS_NONE) {
    set_result(r, ESK_BANK_ACCOUNT_NOT_FOUND, v, "account %s does not exist", c->account_id);
    return;
  } else if (st->status == ESK_BANK_STATUS_CLOSED) {
    set_result(r, ESK_BANK_ACCOUNT_CLOSED, v, "account %s is closed (version %" PRId64 ")",
               c->account_id, v);
    return;
  }
  if (amt && c->type != ESK_BANK_CMD_OPEN_ACCOUNT && strcmp(amt->currency, st->currency) != 0) {
    set_result(r, ESK_BANK_CURRENCY_MISMATCH, v, "%s in %s but account %s is held in %s",
               c->type == ESK_BANK_CMD_DEPOSIT_MONEY ? "deposit" : "withdrawal", amt->currency,
               c->account_id, st->currency);
    return;
  }

  memset(ev, 0, sizeof(*ev));
  copy_str(ev->account_id, sizeof(ev->account_id), c->account_id);
  ev->aggregate_version = v + 1;
  switch (c->type) {
  case ESK_BANK_CMD_OPEN_ACCOUNT:
    ev->type = ESK_BANK_EV_ACCOUNT_OPENED;
    copy_str(ev->u.opened.owner_id, sizeof(ev->u.opened.owner_id), c->u.open.owner_id);
    ev->u.opened.initial_deposit.minor_units = amt->minor_units;
    copy_str(ev->u.opened.initial_deposit.currency, 4, amt->currency);
    break;
  case ESK_BANK_CMD_DEPOSIT_MONEY:
    if (st->balance > INT64_MAX - amt->minor_units) {
      set_result(r, ESK_BANK_AMOUNT_OVERFLOW, v,
                 "deposit of %" PRId64 " %s (minor units) to account %s would take its balance "
                 "of %" PRId64 " past the maximum of %" PRId64,
                 amt->minor_units, amt->currency, c->account_id, st->balance, INT64_MAX);
      return;
    }
    ev->type = ESK_BANK_EV_MONEY_DEPOSITED;
    ev->u.deposited.amount.minor_units = amt->minor_units;
    copy_str(ev->u.deposited.amount.currency, 4, amt->currency);
    copy_str(ev->u.deposited.description, sizeof(ev->u.deposited.description), text);
    break;
  case ESK_BANK_CMD_WITHDRAW_MONEY:
    if (amt->minor_units > st->balance) {
      set_result(r, ESK_BANK_INSUFFICIENT_FUNDS, v,
                 "withdrawal of %" PRId64 " %s (minor units) from account %s exceeds its "
                 "balance of %" PRId64,
                 amt->minor_units, amt->currency, c->account_id, st->balance);
      return;
    }
    ev->type = ESK_BANK_EV_MONEY_WITHDRAWN;
    ev->u.withdrawn.amount.minor_units = amt->minor_units;
    copy_str(ev->u.withdrawn.amount.currency, 4, amt->currency);
    copy_str(ev->u.withdrawn.description, sizeof(ev->u.withdrawn.description), text);
    break;
  case ESK_BANK_CMD_CLOSE_ACCOUNT:
    if (st->balance != 0) {
      set_result(r, ESK_BANK_BALANCE_NOT_ZERO, v,
                 "account %s still holds %" PRId64 " %s (minor units); withdraw it before "
                 "closing",
                 c->account_id, st->balance, st->currency);
      return;
    }
    ev->type = ESK_BANK_EV_ACCOUNT_CLOSED;
    copy_str(ev->u.closed.reason, sizeof(ev->u.closed.reason), text);
    break;
  }
  accepted_result(r, esk_bank_event_type_name(ev->type), c->account_id, v + 1);
}

/* The argument checks of esk_bank_decide() and esk_bank_decide_state(). */
static int decide_args(esk_bank_event_t *events_out, size_t *n_out,
                       esk_bank_result_t *result_out, size_t events_cap,
                       const esk_bank_state_t **state, const esk_bank_command_t *cmd,
                       esk_error_t *err) {
  static const esk_bank_state_t none = {0};
  if (!events_out || !n_out || !result_out || !cmd)
    return esk_error_set(err, ESK_EINVAL, "bank decide: NULL argument");
  if (events_cap < ESK_BANK_MAX_EVENTS)
    return esk_error_set(err, ESK_EINVAL, "bank decide: room for %zu events, need %d", events_cap,
                         ESK_BANK_MAX_EVENTS);
  if (!*state) *state = &none;
  if (!fixed_str_ok((*state)->account_id, sizeof((*state)->account_id)))
    return esk_error_set(err, ESK_EINVAL, "bank decide: state account_id is not terminated");
  if ((*state)->status != ESK_BANK_STATUS_NONE && cmd->account_id &&
      strcmp((*state)->account_id, cmd->account_id) != 0)
    return esk_error_set(err, ESK_EINVAL,
                         "bank decide: command for account %.128s given the state of %s",
                         cmd->account_id, (*state)->account_id);
  return ESK_OK;
}

static void decided(esk_bank_event_t *events_out, size_t *n_out, esk_bank_result_t *result_out,
                    const esk_bank_result_t *r, const esk_bank_event_t *ev) {
  if (r->rule == ESK_BANK_ACCEPTED) {
    events_out[0] = *ev;
    *n_out = 1;
  } else {
    *n_out = 0;
  }
  *result_out = *r;
}

static int decide(esk_bank_event_t *events_out, size_t *n_out, esk_bank_result_t *result_out,
                  size_t events_cap, const esk_bank_state_t *state,
                  const esk_bank_command_t *cmd, bool checks, esk_error_t *err) {
  int rc = decide_args(events_out, n_out, result_out, events_cap, &state, cmd, err);
  if (rc) return rc;
  esk_bank_result_t r;
  esk_bank_event_t ev;
  memset(&r, 0, sizeof(r));
  judge(&r, &ev, state, cmd, checks);
  decided(events_out, n_out, result_out, &r, &ev);
  return ESK_OK;
}

int esk_bank_decide(esk_bank_event_t *events_out, size_t *n_out, esk_bank_result_t *result_out,
                    size_t events_cap, const esk_bank_state_t *state,
                    const esk_bank_command_t *cmd, esk_error_t *err) {
  return decide(events_out, n_out, result_out, events_cap, state, cmd, true, err);
}

int esk_bank_decide_state(esk_bank_event_t *events_out, size_t *n_out,
                          esk_bank_result_t *result_out, size_t events_cap,
                          const esk_bank_state_t *state, const esk_bank_command_t *cmd,
                          esk_error_t *err) {
  return decide(events_out, n_out, result_out, events_cap, state, cmd, false, err);
}

/* -------------------------------------------------------------- apply --- */

static int poison(esk_error_t *err, const esk_bank_state_t *s, const esk_bank_event_t *ev,
                  const char *why) {
  return esk_error_set(err, ESK_EPOISON,
                       "bank apply: %s version %" PRId64 " to account %.128s at version %" PRId64
                       " (status %s): %s",
                       esk_bank_event_type_name(ev->type), ev->aggregate_version, s->account_id,
                       s->version, esk_bank_status_name(s->status), why);
}

static bool money_ok(const esk_bank_money_t *m) {
  return esk_bank_currency_valid(m->currency);
}

int esk_bank_apply(esk_bank_state_t *state, const esk_bank_event_t *ev, esk_error_t *err) {
  if (!state || !ev) return esk_error_set(err, ESK_EINVAL, "bank apply: NULL argument");
  if (!fixed_str_ok(state->account_id, sizeof(state->account_id)))
    return esk_error_set(err, ESK_EINVAL, "bank apply: state account_id is not terminated");
  if (!fixed_str_ok(ev->account_id, sizeof(ev->account_id)) || !ev->account_id[0])
    return poison(err, state, ev, "the event's account_id is empty or not terminated");
  if (state->version == INT64_MAX || ev->aggregate_version != state->version + 1)
    return poison(err, state, ev, "the event's version is not the state's version + 1");
  if ((state->status != ESK_BANK_STATUS_NONE || state->account_id[0]) &&
      strcmp(state->account_id, ev->account_id) != 0)
    return poison(err, state, ev, "the event belongs to another account");

  esk_bank_state_t next = *state;
  switch (ev->type) {
  case ESK_BANK_EV_ACCOUNT_OPENED: {
    const esk_bank_money_t *m = &ev->u.opened.initial_deposit;
    if (state->status != ESK_BANK_STATUS_NONE)
      return poison(err, state, ev, "the account is already open or closed");
    if (!money_ok(m) || m->minor_units < 0)
      return poison(err, state, ev, "invalid initial deposit");
    if (!fixed_str_ok(ev->u.opened.owner_id, sizeof(ev->u.opened.owner_id)) ||
        !ev->u.opened.owner_id[0])
      return poison(err, state, ev, "owner_id is empty or not terminated");
    copy_str(next.account_id, sizeof(next.account_id), ev->account_id);
    copy_str(next.owner_id, sizeof(next.owner_id), ev->u.opened.owner_id);
    copy_str(next.currency, sizeof(next.currency), m->currency);
    next.balance = m->minor_units;
    next.status = ESK_BANK_STATUS_OPEN;
    break;
  }
  case ESK_BANK_EV_MONEY_DEPOSITED:
  case ESK_BANK_EV_MONEY_WITHDRAWN: {
    bool dep = ev->type == ESK_BANK_EV_MONEY_DEPOSITED;
    const esk_bank_money_t *m = dep ? &ev->u.deposited.amount : &ev->u.withdrawn.amount;
    if (state->status != ESK_BANK_STATUS_OPEN) return poison(err, state, ev, "the account is not open");
    if (!money_ok(m) || m->minor_units <= 0) return poison(err, state, ev, "invalid amount");
    if (strcmp(m->currency, state->currency) != 0)
      return poison(err, state, ev, "the amount is not in the account's currency");
    if (dep) {
      if (state->balance > INT64_MAX - m->minor_units)
        return poison(err, state, ev, "the balance would overflow");
      next.balance = state->balance + m->minor_units;
    } else {
      if (m->minor_units > state->balance)
        return poison(err, state, ev, "the balance would become negative");
      next.balance = state->balance - m->minor_units;
    }
    break;
  }
  case ESK_BANK_EV_ACCOUNT_CLOSED:
    if (state->status != ESK_BANK_STATUS_OPEN) return poison(err, state, ev, "the account is not open");
    if (state->balance != 0) return poison(err, state, ev, "the balance is not zero");
    next.status = ESK_BANK_STATUS_CLOSED;
    break;
  default:
    return poison(err, state, ev, "unknown event type");
  }
  next.version = ev->aggregate_version;
  *state = next;
  return ESK_OK;
}
