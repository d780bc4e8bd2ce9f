/**
 * @file bank.h
 * @brief The bank account aggregate: commands, rules, events, state and
 *        snapshots. The producer runtime sees it only through the Decider
 *        interface (bank_domain.h, esk/domain.h); the aggregate store and the
 *        idempotency cache are the runtime's (producer/src/aggstore.h).
 *
 * Pure C: no Kafka, no Avro, no floating point, no clock. Through bank_domain.h
 * the producer runtime checks the envelope, then calls esk_bank_validate(),
 * checks the expected version, calls esk_bank_decide_state(), publishes the
 * events (mapped to Avro by bank_avro.h, with the metadata it adds) and folds
 * them with esk_bank_apply(). esk_bank_decide() runs all of these checks in
 * one call (for tests and tools).
 *
 * Strings: commands borrow NUL-terminated strings from the caller (e.g. the
 * decoded Avro value) for the duration of esk_bank_decide(); esk_bank_decide()
 * checks their lengths and rejects over-long ones with ESK_BANK_INVALID_COMMAND.
 * Events and state hold copies in fixed-size arrays of the maximum length + 1.
 *
 * Money is an integer count of minor units and an ISO 4217 code of exactly
 * three upper-case ASCII letters (only the shape is checked, not the ISO list).
 */
#ifndef ESK_BANK_H
#define ESK_BANK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bank_event.h" /* the event type, shared with the read side (schemas/bank) */
#include "esk/buf.h"
#include "esk/error.h"

/** Size of esk_bank_result_t::message, including the NUL. */
#define ESK_BANK_RESULT_MSG_MAX 384
/** Most events one command can produce: size the events_out array of esk_bank_decide() with it. */
#define ESK_BANK_MAX_EVENTS 1

/* ---------------------------------------------------------------- money --- */

/** An amount in a command: the currency is borrowed and not yet validated. */
typedef struct esk_bank_money_in_s {
  int64_t minor_units;
  const char *currency; /**< borrowed, NUL-terminated; NULL is invalid */
} esk_bank_money_in_t;

/** @brief true if @p code is exactly three upper-case ASCII letters. NULL is false. */
bool esk_bank_currency_valid(const char *code);

/* ---------------------------------------------------------------- rules --- */

/**
 * The outcome of a command. The names (esk_bank_rule_name()) are stable
 * strings users and the results topic see; never renumber or rename.
 */
typedef enum esk_bank_rule_e {
  ESK_BANK_ACCEPTED = 0,          /**< "ACCEPTED" */
  ESK_BANK_INVALID_COMMAND,       /**< "INVALID_COMMAND": missing or over-long field, bad type */
  ESK_BANK_INVALID_CURRENCY,      /**< "INVALID_CURRENCY": not three upper-case letters */
  ESK_BANK_INVALID_AMOUNT,        /**< "INVALID_AMOUNT": deposit/withdrawal <= 0, initial deposit < 0 */
  ESK_BANK_CONCURRENCY_CONFLICT,  /**< "CONCURRENCY_CONFLICT": expected version != actual */
  ESK_BANK_ACCOUNT_ALREADY_EXISTS,/**< "ACCOUNT_ALREADY_EXISTS": open of an id seen before (even closed) */
  ESK_BANK_ACCOUNT_NOT_FOUND,     /**< "ACCOUNT_NOT_FOUND" */
  ESK_BANK_ACCOUNT_CLOSED,        /**< "ACCOUNT_CLOSED" */
  ESK_BANK_CURRENCY_MISMATCH,     /**< "CURRENCY_MISMATCH": amount not in the account's currency */
  ESK_BANK_INSUFFICIENT_FUNDS,    /**< "INSUFFICIENT_FUNDS" */
  ESK_BANK_AMOUNT_OVERFLOW,       /**< "AMOUNT_OVERFLOW": the balance would exceed INT64_MAX */
  ESK_BANK_BALANCE_NOT_ZERO,      /**< "BALANCE_NOT_ZERO": close with money left */
  /** "UNPUBLISHABLE": decided by the runtime, not the aggregate: the command's
   *  event (or result) can never be written to Kafka (larger than event.max.bytes
   *  or the topic's max.message.bytes, or refused by the broker as invalid) */
  ESK_BANK_UNPUBLISHABLE,
  ESK_BANK_RULE_COUNT_            /**< not a rule */
} esk_bank_rule_t;

/** @brief The stable name of a rule, e.g. "INSUFFICIENT_FUNDS"; "UNKNOWN" if out of range. */
const char *esk_bank_rule_name(esk_bank_rule_t rule);

/**
 * @brief The rule with name @p name (e.g. read back from the results topic).
 * @returns ESK_OK with @p out set, or ESK_ENOTFOUND.
 */
int esk_bank_rule_from_name(esk_bank_rule_t *out, const char *name);

/** The result of one command: what the results topic carries. */
typedef struct esk_bank_result_s {
  esk_bank_rule_t rule; /**< ESK_BANK_ACCEPTED or the rule that rejected it */
  /** Accepted: the aggregate version after the command's events.
   *  Rejected: the aggregate version the command was judged against. */
  int64_t version;
  /** One line naming the rule and the values involved, e.g.
   *  "INSUFFICIENT_FUNDS: withdrawal of 700 USD (minor units) from account a-1 exceeds its balance of 500". */
  char message[ESK_BANK_RESULT_MSG_MAX];
} esk_bank_result_t;

/* ------------------------------------------------------------- commands --- */

typedef enum esk_bank_command_type_e {
  ESK_BANK_CMD_OPEN_ACCOUNT = 1,
  ESK_BANK_CMD_DEPOSIT_MONEY = 2,
  ESK_BANK_CMD_WITHDRAW_MONEY = 3,
  ESK_BANK_CMD_CLOSE_ACCOUNT = 4,
} esk_bank_command_type_t;

/**
 * A command. Every string is borrowed (NUL-terminated) for the duration of
 * esk_bank_decide(). Required and non-empty: command_id, account_id, and
 * owner_id for OpenAccount. actor and correlation_id may be NULL or empty;
 * description and reason may be NULL (taken as ""). Ids are at most
 * ESK_BANK_ID_MAX bytes, description and reason at most ESK_BANK_TEXT_MAX.
 */
typedef struct esk_bank_command_s {
  esk_bank_command_type_t type;
  const char *command_id;     /**< idempotency key */
  const char *account_id;     /**< the aggregate id */
  bool has_expected_version;  /**< when true, reject unless the version equals expected_version */
  int64_t expected_version;   /**< 0 means "the account does not exist yet" */
  const char *actor;
  const char *correlation_id;
  union {
    struct {
      const char *owner_id;
      esk_bank_money_in_t initial_deposit; /**< >= 0; its currency becomes the account's */
    } open;
    struct {
      esk_bank_money_in_t amount; /**< > 0 */
      const char *description;
    } deposit, withdraw;
    struct {
      const char *reason;
    } close;
  } u;
} esk_bank_command_t;

/** @brief true if the two commands have equal fields (strings by content, NULL
 *         equal only to NULL; the union by the command's type). */
bool esk_bank_command_equal(const esk_bank_command_t *a, const esk_bank_command_t *b);

/* --------------------------------------------------------------- events --- */

/* esk_bank_event_t, esk_bank_event_type_t and esk_bank_money_t: bank_event.h,
 * the contract's (schemas/bank), which the read side shares. */

/* ---------------------------------------------------------------- state --- */

typedef enum esk_bank_status_e {
  ESK_BANK_STATUS_NONE = 0, /**< no event yet: the account does not exist */
  ESK_BANK_STATUS_OPEN = 1,
  ESK_BANK_STATUS_CLOSED = 2,
} esk_bank_status_t;

/** @brief "none", "open" or "closed" (the words of account_balances.status); "invalid" else. */
const char *esk_bank_status_name(esk_bank_status_t s);

/**
 * The state of one account. A zero-initialised struct is the state before
 * any event (status NONE, version 0). Change it only with esk_bank_apply()
 * (or replace it wholesale with esk_bank_state_deserialize()).
 */
typedef struct esk_bank_state_s {
  char account_id[ESK_BANK_ID_MAX + 1];
  esk_bank_status_t status;
  char owner_id[ESK_BANK_ID_MAX + 1];
  char currency[4];
  int64_t balance; /**< minor units of currency; never negative */
  int64_t version; /**< aggregate_version of the last event applied; 0 before any */
} esk_bank_state_t;

/** @brief true if the two states have equal fields (bytes after string NULs are ignored). */
bool esk_bank_state_equal(const esk_bank_state_t *a, const esk_bank_state_t *b);

/**
 * @brief Decides a command against the current state, without changing it.
 *
 * Checks run in this order and the first failure is the result:
 * command shape (INVALID_COMMAND), currency shape (INVALID_CURRENCY), amount
 * sign (INVALID_AMOUNT), expected version (CONCURRENCY_CONFLICT), then the
 * state rules (ACCOUNT_ALREADY_EXISTS, ACCOUNT_NOT_FOUND, ACCOUNT_CLOSED,
 * CURRENCY_MISMATCH, INSUFFICIENT_FUNDS, AMOUNT_OVERFLOW, BALANCE_NOT_ZERO).
 *
 * @param events_out filled with the accepted command's events (versions
 *        state->version + 1, + 2, ...); untouched when rejected.
 * @param n_out set to the number of events: 0 when rejected.
 * @param result_out set to the outcome (accepted or the rule, with a message).
 * @param events_cap capacity of @p events_out; ESK_BANK_MAX_EVENTS is always enough.
 * @param state the account's current state, or NULL if it has none (same as
 *        a zeroed state). When not NONE, its account_id must equal the command's.
 * @param cmd the command (borrowed).
 * @returns ESK_OK whenever a decision was made, accepted or rejected: a
 *          rejection is an outcome, not an error. ESK_EINVAL for misuse (NULL
 *          arguments, @p events_cap too small, state of another account),
 *          with nothing set.
 */
int esk_bank_decide(esk_bank_event_t *events_out, size_t *n_out, esk_bank_result_t *result_out,
                    size_t events_cap, const esk_bank_state_t *state,
                    const esk_bank_command_t *cmd, esk_error_t *err);

/**
 * @brief The checks of a command that need no state, as the runtime runs them
 *        through the Decider interface (after its own envelope checks): the
 *        command type, owner_id, description or reason, currency and amount.
 * @param version written into @p r as the version judged against.
 * @returns nothing; @p r->rule is ESK_BANK_ACCEPTED when every check passed.
 */
void esk_bank_validate(esk_bank_result_t *r, const esk_bank_command_t *cmd, int64_t version);

/**
 * @brief The state rules of esk_bank_decide() alone (ACCOUNT_ALREADY_EXISTS
 *        onwards), for a command that passed the envelope checks,
 *        esk_bank_validate() and the expected-version check. Arguments and
 *        returns as esk_bank_decide().
 */
int esk_bank_decide_state(esk_bank_event_t *events_out, size_t *n_out,
                          esk_bank_result_t *result_out, size_t events_cap,
                          const esk_bank_state_t *state, const esk_bank_command_t *cmd,
                          esk_error_t *err);

/**
 * @brief Folds one event into @p state: the only way state changes.
 *
 * The event must be the next one: aggregate_version == state->version + 1,
 * the same account id (a NONE state takes the event's), and consistent with
 * the state (AccountOpened only on NONE; the others only on OPEN; the account's
 * currency; amounts of the right sign; no negative or overflowing balance;
 * close only at zero balance).
 *
 * @returns ESK_OK; or ESK_EPOISON with a message naming the account, versions
 *          and the problem, and @p state unchanged. A poison event means the
 *          log or the state is corrupt: the runtime must not skip it silently.
 *          ESK_EINVAL for NULL arguments.
 */
int esk_bank_apply(esk_bank_state_t *state, const esk_bank_event_t *ev, esk_error_t *err);

/* ------------------------------------------------------------ snapshots --- */

/**
 * Snapshots start with a format byte. Format 2 (written now): the Avro binary
 * body of schemas/bank/AccountSnapshot.v1.avsc, as the orders domain's
 * snapshots are (esk/avro_bin.h). Format 1: the bank's own binary layout
 * (esk_bank_state_serialize()), which older producers wrote to the
 * compacted snapshots topics: esk_bank_snapshot_read() still reads it, so a
 * restore over an old topic uses its snapshots and checkpoint as before.
 */
#define ESK_BANK_SNAPSHOT_FORMAT 1
/** Largest format-1 snapshot in bytes: input longer than this is rejected unread. */
#define ESK_BANK_SNAPSHOT_MAX (1 + 1 + 8 + 8 + 3 + 1 + ESK_BANK_ID_MAX + 1 + ESK_BANK_ID_MAX)
/** The format byte of an AccountSnapshot (Avro) snapshot. */
#define ESK_BANK_SNAPSHOT_FORMAT_AVRO 2
/** Largest snapshot of either format: each long takes at most 10 bytes. */
#define ESK_BANK_SNAPSHOT_AVRO_MAX (1 + 10 + ESK_BANK_ID_MAX + 10 + 10 + 10 + ESK_BANK_ID_MAX + 10 + 3 + 10)

/**
 * @brief Appends the snapshot of @p state (format 2: AccountSnapshot v1) to @p out.
 * @returns ESK_OK; ESK_EINVAL for a state that is not valid (the checks of
 *          esk_bank_snapshot_read()); ESK_ENOMEM from the buffer. @p out is
 *          unchanged on error.
 */
int esk_bank_snapshot_write(esk_buf_t *out, const esk_bank_state_t *state, esk_error_t *err);

/**
 * @brief Reads a snapshot of format 2 (AccountSnapshot v1) or format 1.
 * @param out set only on success.
 * @returns ESK_OK; or ESK_EPOISON naming the problem: empty, over
 *          ESK_BANK_SNAPSHOT_AVRO_MAX bytes, an unknown format, truncated,
 *          trailing bytes, a long over 64 bits, a string too long or holding
 *          U+0000, or not a valid state (as esk_bank_state_deserialize()).
 */
int esk_bank_snapshot_read(esk_bank_state_t *out, const void *data, size_t len,
                           esk_error_t *err);

/**
 * @brief Appends the format-1 snapshot form of @p state to @p out (what
 *        producers wrote before AccountSnapshot; for tests of old topics).
 *
 * Format 1, all integers little-endian:
 * `u8 format(=1) | u8 status | i64 version | i64 balance | 3 bytes currency
 *  (zeros for NONE) | u8 len, account_id | u8 len, owner_id`.
 *
 * @returns ESK_OK; ESK_EINVAL for a state that is not valid (it is checked
 *          as esk_bank_state_deserialize() would); ESK_ENOMEM from the buffer.
 *          @p out is unchanged on error.
 */
int esk_bank_state_serialize(esk_buf_t *out, const esk_bank_state_t *state, esk_error_t *err);

/**
 * @brief Reads a snapshot written by esk_bank_state_serialize().
 * @param out set only on success.
 * @returns ESK_OK; or ESK_EPOISON naming the problem for input that is
 *          empty, too long, of an unknown format, truncated, with trailing
 *          bytes, or not a valid state (bad status, negative numbers, bad
 *          currency, NUL inside an id, inconsistent status and version).
 */
int esk_bank_state_deserialize(esk_bank_state_t *out, const void *data, size_t len,
                               esk_error_t *err);

#endif
