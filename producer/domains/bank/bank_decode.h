/**
 * @file bank_decode.h
 * @brief The bank's commands read field by field from their single-object
 *        bytes, without the codec's generic value: the fast path of
 *        esk_bank_avro_decode_command() and of the Decider's
 *        decode_command_bytes (esk/domain.h). Private to the bank.
 *
 * It knows the field order of the bank's newest command schemas (schemas/bank)
 * and reads only what it is sure of: a type whose newest schema it was checked
 * against (bank_avro.c turns a type on only when a probe command decodes to
 * equal fields both ways), strings of plain ASCII without U+0000, a 0 or 1
 * union branch, no trailing byte, and the codec's limits (longs and strings
 * read with esk/avro_bin.h, as the codec reads them). Anything else is ESK_ENOTFOUND, and the codec decodes the message
 * and says what is wrong with it.
 */
#ifndef ESK_BANK_DECODE_H
#define ESK_BANK_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "bank/bank.h"
#include "esk/buf.h"

#define ESK_BANK_N_COMMAND_TYPES 4

typedef struct esk_bank_fastdec_s {
  /** by esk_bank_command_type_t: the fingerprint of the type's newest schema
   *  when the fast path is on for it, else 0 */
  uint64_t fp[ESK_BANK_N_COMMAND_TYPES + 1];
  size_t max_message, max_string; /**< the codec's limits */
  esk_buf_t str;                  /**< the last command's strings, each NUL-terminated */
} esk_bank_fastdec_t;

/**
 * @brief Reads a command from its single-object bytes.
 * @param cmd set on ESK_OK only; its strings point into @p f and stay valid
 *        until the next call.
 * @returns ESK_OK, or ESK_ENOTFOUND for a message the fast path leaves to the codec.
 */
int esk_bank_fastdec_read(esk_bank_fastdec_t *f, esk_bank_command_t *cmd, const void *data,
                          size_t len);

#endif
