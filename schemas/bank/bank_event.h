/**
 * @file bank_event.h
 * @brief The bank's one event type, shared by both sides: the write side
 *        decides and folds it (producer/domains/bank), the read side's bank
 *        read models take their fields from it (consumers/projections). The
 *        sides meet only through Kafka and this contract: the mapping from
 *        the Avro value at the latest version of each type is
 *        esk_bank_event_from_value() (bank_contract.h).
 *
 * Pure C: no Avro here, so that the aggregate (bank.h) stays free of it.
 */
#ifndef ESK_BANK_EVENT_H
#define ESK_BANK_EVENT_H

#include <stdint.h>

/** Longest id (account, owner, command, actor, correlation), in bytes, without the NUL. */
#define ESK_BANK_ID_MAX 128
/** Longest description or close reason, in bytes, without the NUL. */
#define ESK_BANK_TEXT_MAX 1024

/** An amount held in events and state. */
typedef struct esk_bank_money_s {
  int64_t minor_units; /**< e.g. cents */
  char currency[4];    /**< ISO 4217 code, NUL-terminated */
} esk_bank_money_t;

/** The event types; the numbers are stable (the read models store them as `kind`). */
typedef enum esk_bank_event_type_e {
  ESK_BANK_EV_ACCOUNT_OPENED = 1,
  ESK_BANK_EV_MONEY_DEPOSITED = 2,
  ESK_BANK_EV_MONEY_WITHDRAWN = 3,
  ESK_BANK_EV_ACCOUNT_CLOSED = 4,
} esk_bank_event_type_t;

/**
 * An event: the fact a command decided. Self-contained (no borrowed
 * pointers). The metadata that the aggregate does not decide (event id,
 * occurred-at, correlation, causation, actor) travel beside it: in
 * esk_event_t on the read side, in esk_bank_event_meta_t on the write side.
 */
typedef struct esk_bank_event_s {
  esk_bank_event_type_t type;
  char account_id[ESK_BANK_ID_MAX + 1];
  int64_t aggregate_version; /**< 1 for AccountOpened, then +1 per event */
  union {
    struct {
      char owner_id[ESK_BANK_ID_MAX + 1];
      esk_bank_money_t initial_deposit;
    } opened;
    struct {
      esk_bank_money_t amount;
      char description[ESK_BANK_TEXT_MAX + 1];
    } deposited, withdrawn;
    struct {
      char reason[ESK_BANK_TEXT_MAX + 1];
    } closed;
  } u;
} esk_bank_event_t;

/** @brief The event type's name as in the schemas, e.g. "MoneyDeposited"; "UNKNOWN" if invalid. */
const char *esk_bank_event_type_name(esk_bank_event_type_t type);

/** @brief The type named @p name, or 0 when it is no bank event type (NULL too). */
esk_bank_event_type_t esk_bank_event_type_of(const char *name);

/**
 * @brief The money an event moves: the initial deposit, the deposit or the
 *        withdrawal (always >= 0; the type says the direction), or NULL for
 *        AccountClosed.
 */
const esk_bank_money_t *esk_bank_event_money(const esk_bank_event_t *ev);

#endif
