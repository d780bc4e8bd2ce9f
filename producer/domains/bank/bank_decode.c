/* The bank's commands read field by field (see bank_decode.h). */
#include "bank_decode.h"

#include <string.h>

#include "esk/avro_bin.h"
#include "esk/codec.h"
#include "esk/error.h"

/* esk.bank.Money: minor_units, currency. */
static esk_bank_money_in_t rd_money(esk_avro_fast_t *r) {
  esk_bank_money_in_t m;
  m.minor_units = esk_avro_fast_long(r);
  m.currency = esk_avro_fast_str(r);
  return m;
}

/* ["null", "long"] expected_version, then actor and correlation_id: the tail
 * every bank command ends with. */
static void rd_tail(esk_avro_fast_t *r, esk_bank_command_t *c) {
  int64_t branch = esk_avro_fast_long(r);
  if (branch == 1) {
    c->has_expected_version = true;
    c->expected_version = esk_avro_fast_long(r);
  } else if (branch != 0) {
    r->ok = 0;
  }
  c->actor = esk_avro_fast_str(r);
  c->correlation_id = esk_avro_fast_str(r);
}

/* The fields of the newest schemas, in order (schemas/bank/<Command>.v1.avsc). */
static void rd_command(esk_avro_fast_t *r, esk_bank_command_t *c) {
  c->command_id = esk_avro_fast_str(r);
  c->account_id = esk_avro_fast_str(r);
  switch (c->type) {
  case ESK_BANK_CMD_OPEN_ACCOUNT:
    c->u.open.owner_id = esk_avro_fast_str(r);
    c->u.open.initial_deposit = rd_money(r);
    break;
  case ESK_BANK_CMD_DEPOSIT_MONEY:
    c->u.deposit.amount = rd_money(r);
    c->u.deposit.description = esk_avro_fast_str(r);
    break;
  case ESK_BANK_CMD_WITHDRAW_MONEY:
    c->u.withdraw.amount = rd_money(r);
    (void)esk_avro_fast_str(r); /* description: in the schema, not in the command */
    break;
  case ESK_BANK_CMD_CLOSE_ACCOUNT:
    c->u.close.reason = esk_avro_fast_str(r);
    break;
  }
  rd_tail(r, c);
}

/* The command type whose fast-path fingerprint the header names, or 0. */
static int type_of(const esk_bank_fastdec_t *f, const uint8_t *b, size_t len) {
  uint64_t fp = 0;
  if (esk_codec_peek(b, len, &fp, NULL)) return 0;
  for (int t = 1; t <= ESK_BANK_N_COMMAND_TYPES; t++)
    if (f->fp[t] && f->fp[t] == fp) return t;
  return 0;
}

int esk_bank_fastdec_read(esk_bank_fastdec_t *f, esk_bank_command_t *cmd, const void *data,
                          size_t len) {
  const uint8_t *b = data;
  int t = b && len <= f->max_message ? type_of(f, b, len) : 0;
  if (!t) return ESK_ENOTFOUND;
  esk_avro_fast_t r;
  if (esk_avro_fast_start(&r, b, len, 10, &f->str, f->max_string)) return ESK_ENOTFOUND;
  esk_bank_command_t c;
  memset(&c, 0, sizeof(c));
  c.type = (esk_bank_command_type_t)t;
  rd_command(&r, &c);
  if (!r.ok || r.in.p != r.in.end) return ESK_ENOTFOUND;
  *cmd = c;
  return ESK_OK;
}
