/**
 * @file orders_contract.h
 * @brief The orders domain's contract: its schemas (schemas/orders/<Type>.v<N>.avsc,
 *        embedded at build time) and the upcaster of OrderCreated v1.
 */
#ifndef ESK_ORDERS_CONTRACT_H
#define ESK_ORDERS_CONTRACT_H

#include <stdint.h>

#include "esk/codec.h"

/** The currency of v1 OrderCreated events: the older service sold in USD only. */
#define ESK_ORDERS_V1_CURRENCY "USD"

/** @brief Adds every embedded orders schema to @p set. */
int esk_orders_schemas_load(esk_schema_set_t *set, esk_error_t *err);

/** @brief Registers the orders upcasters in @p codec: OrderCreated v1 -> v2. */
int esk_orders_register_upcasters(esk_codec_t *codec, esk_error_t *err);

/**
 * @brief Major units (a v1 float) to minor units: major * 100 rounded half
 *        to even.
 * @returns ESK_OK; ESK_EPOISON naming @p what for NaN, an infinity, a
 *          negative amount or one whose minor units exceed 2^62.
 */
int esk_orders_minor_units(int64_t *out, double major, const char *what, esk_error_t *err);

/**
 * @brief The OrderCreated v1 -> v2 upcaster (exposed for tests): camelCase
 *        fields renamed, prices and the total to minor units
 *        (esk_orders_minor_units()), currency ESK_ORDERS_V1_CURRENCY, and an
 *        empty email and shipping address (v1 had none).
 */
int esk_orders_upcast_order_created_v1(const avro_value_t *from, avro_value_t *to,
                                       esk_error_t *err);

#endif
