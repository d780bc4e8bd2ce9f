/**
 * @file command_json.h
 * @brief A command written as JSON (the shape `eskctl submit` and esk-gateway
 *        take) turned into the single-object encoding esk-producer reads, and
 *        sent the way every esk client sends one (docs/architecture.md,
 *        "Kafka contract"; docs/eskctl.md; docs/api.md).
 *
 * The JSON is an object shaped like the command's Avro schema plus "type",
 * e.g. {"type":"DepositMoney","command_id":"c7","account_id":"A1",
 * "amount":{"minor_units":500,"currency":"EUR"}}. actor defaults to the
 * caller's default, correlation_id to the command id.
 */
#ifndef ESK_COMMAND_JSON_H
#define ESK_COMMAND_JSON_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "esk/buf.h"
#include "esk/codec.h"
#include "esk/error.h"

/** How a command is read. */
typedef struct esk_command_json_opts_s {
  const char *const *commands; /**< the command types, NULL-terminated; NULL: any type of the set (the caller checks it is a command) */
  const char *key_field;       /**< the field holding the aggregate id: the Kafka key */
  const char *actor;           /**< the actor when the JSON has none; NULL: none added */
  /** the command id when the JSON has none (an Idempotency-Key header); when
   *  both are given they must be equal. NULL: the JSON must have one. */
  const char *command_id;
  size_t max_depth; /**< most nesting of arrays and objects; 0: no limit */
} esk_command_json_opts_t;

/** A command ready to send. Zero it before the first parse; free with esk_command_json_free(). */
typedef struct esk_command_json_s {
  const esk_schema_t *schema; /**< the command's (latest) schema, borrowed from the set */
  char *command_id;           /**< owned */
  char *key;                  /**< the aggregate id, owned */
  esk_buf_t value;            /**< the single-object encoding */
} esk_command_json_t;

/**
 * @brief Checks and encodes the @p len bytes of JSON at @p json.
 * @param out zeroed or freed before; holds the command on ESK_OK, and what
 *        must be freed in any case.
 * @returns ESK_OK; ESK_EINVAL with a message naming the field and the reason
 *          (not JSON, not an object, an unknown type or field, U+0000 in a
 *          string, a missing id, too deep, a value the schema refuses).
 */
int esk_command_json_parse(esk_command_json_t *out, const char *json, size_t len,
                           const esk_schema_set_t *set, esk_codec_t *codec,
                           const esk_command_json_opts_t *opts, esk_error_t *err);

/** @brief Frees what @p c holds and zeroes it. */
void esk_command_json_free(esk_command_json_t *c);

/**
 * @brief Sends @p c to @p topic keyed by its aggregate id, with the headers
 *        esk.type, esk.schema_version, esk.command_id and content-type
 *        (copies everything; @p opaque goes to the delivery report).
 * @returns librdkafka's error of rd_kafka_producev() (RD_KAFKA_RESP_ERR__QUEUE_FULL: poll and retry).
 */
rd_kafka_resp_err_t esk_command_json_produce(rd_kafka_t *rk, const char *topic,
                                             const esk_command_json_t *c, void *opaque);

#endif
