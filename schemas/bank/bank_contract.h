/**
 * @file bank_contract.h
 * @brief The bank domain's event and command contract: its schemas
 *        (schemas/bank/<Type>.v<N>.avsc, embedded in the binary at build time) and the
 *        upcasters for changes that Avro resolution cannot express.
 */
#ifndef ESK_BANK_CONTRACT_H
#define ESK_BANK_CONTRACT_H

#include "bank_event.h"
#include "esk/codec.h"

/**
 * @brief Adds every embedded bank schema to @p set.
 * @returns ESK_OK, or ESK_EINVAL naming the file and the problem.
 */
int esk_bank_schemas_load(esk_schema_set_t *set, esk_error_t *err);

/**
 * @brief Registers the bank upcasters in @p codec:
 *        MoneyDeposited v2 -> v3 (amount + currency become amount: Money).
 * @returns ESK_OK, or the error of esk_codec_register_upcaster() (ESK_ENOTFOUND
 *          when the codec's set lacks a version an upcaster needs).
 */
int esk_bank_register_upcasters(esk_codec_t *codec, esk_error_t *err);

/** @brief The MoneyDeposited v2 -> v3 upcaster (exposed for tests). */
int esk_bank_upcast_money_deposited_v2(const avro_value_t *from, avro_value_t *to,
                                       esk_error_t *err);

/** Positions esk_bank_event_from_value() keeps per event type: meta, its
 *  aggregate_id and aggregate_version, the text field, the Money record, its
 *  minor units and currency. */
#define ESK_BANK_EVENT_POS 7

/**
 * Where the fields of each event type sit in its reader schema, found by
 * name at the type's first event and kept while the schema stays the same:
 * a lookup by name hashes the name, and seven per event were about a tenth
 * of a projector's CPU (docs/benchmarks.md, "Bank fields by position").
 * Zero it before first use; one per thread. It holds a reference to each
 * schema it keeps positions for (so no other schema can take its address):
 * esk_bank_event_reader_clear() drops them.
 */
typedef struct esk_bank_event_reader_s {
  avro_schema_t schema[ESK_BANK_EV_ACCOUNT_CLOSED + 1]; /**< by type: the positions' schema */
  int at[ESK_BANK_EV_ACCOUNT_CLOSED + 1][ESK_BANK_EVENT_POS];
} esk_bank_event_reader_t;

/**
 * @brief The one mapping of a bank event's Avro value to esk_bank_event_t,
 *        for both sides (docs/architecture.md, "Kafka contract").
 * @param out set on success; its strings are copies.
 * @param reader the positions kept from earlier events, or NULL to find
 *        every field by name.
 * @param type the event's type name (its reader schema's).
 * @param value the event decoded at the latest version of @p type (after
 *        resolution and the upcasters), including its `meta` record, from
 *        which the account id and the aggregate version are taken.
 * @returns ESK_OK; or ESK_EPOISON naming the problem: a type that is not a
 *          bank event type, a field missing, an id or text longer than the
 *          aggregate allows (ESK_BANK_ID_MAX, ESK_BANK_TEXT_MAX), a currency
 *          that is not three characters, a negative amount.
 */
int esk_bank_event_from_value(esk_bank_event_t *out, esk_bank_event_reader_t *reader,
                              const char *type, const avro_value_t *value, esk_error_t *err);

/** @brief The version of @p type that esk_bank_event_from_value() maps (the
 *  newest in schemas/bank: its field positions are those of that version);
 *  0 for what is no bank event type. */
int esk_bank_event_mapped_version(esk_bank_event_type_t type);

/** @brief Drops the schemas @p r holds and zeroes it. NULL does nothing. */
void esk_bank_event_reader_clear(esk_bank_event_reader_t *r);

#endif
