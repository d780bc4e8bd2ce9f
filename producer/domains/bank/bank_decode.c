/* The bank's commands read field by field (see bank_decode.h). */
#include "bank_decode.h"

#include <string.h>

#include "esk/error.h"

/* A datum being read: p..end. ok drops to 0 at the first thing the fast path
 * leaves to the codec, and every read after that is a no-op. */
typedef struct rd_s {
  const uint8_t *p, *end;
  char *out; /* where the next string goes (in f->str, reserved) */
  size_t max_string;
  int ok;
} rd_t;

/* An Avro long (zig-zag varint) of at most nine bytes: |v| < 2^62; the rare
 * longer ones (and overlong encodings) are the codec's. */
static int64_t rd_long(rd_t *r) {
  uint64_t z = 0;
  for (int shift = 0; r->ok && shift < 63; shift += 7) {
    if (r->p == r->end) break;
    uint8_t b = *r->p++;
    z |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
  }
  r->ok = 0;
  return 0;
}

/* An Avro string of plain ASCII without U+0000, copied out NUL-terminated. */
static const char *rd_str(rd_t *r) {
  int64_t n = rd_long(r);
  if (!r->ok || n < 0 || (uint64_t)n > r->max_string || n > r->end - r->p) {
    r->ok = 0;
    return "";
  }
  for (int64_t i = 0; i < n; i++)
    if (r->p[i] == 0 || r->p[i] > 0x7f) {
      r->ok = 0;
      return "";
    }
  char *s = r->out;
  memcpy(s, r->p, (size_t)n);
  s[n] = '\0';
  r->out += n + 1;
  r->p += n;
  return s;
}

/* esk.bank.Money: minor_units, currency. */
static esk_bank_money_in_t rd_money(rd_t *r) {
  esk_bank_money_in_t m;
  m.minor_units = rd_long(r);
  m.currency = rd_str(r);
  return m;
}

/* ["null", "long"] expected_version, then actor and correlation_id: the tail
 * every bank command ends with. */
static void rd_tail(rd_t *r, esk_bank_command_t *c) {
  int64_t branch = rd_long(r);
  if (branch == 1) {
    c->has_expected_version = true;
    c->expected_version = rd_long(r);
  } else if (branch != 0) {
    r->ok = 0;
  }
  c->actor = rd_str(r);
  c->correlation_id = rd_str(r);
}

/* The fields of the newest schemas, in order (schemas/bank/<Command>.v1.avsc). */
static void rd_command(rd_t *r, esk_bank_command_t *c) {
  c->command_id = rd_str(r);
  c->account_id = rd_str(r);
  switch (c->type) {
  case ESK_BANK_CMD_OPEN_ACCOUNT:
    c->u.open.owner_id = rd_str(r);
    c->u.open.initial_deposit = rd_money(r);
    break;
  case ESK_BANK_CMD_DEPOSIT_MONEY:
    c->u.deposit.amount = rd_money(r);
    c->u.deposit.description = rd_str(r);
    break;
  case ESK_BANK_CMD_WITHDRAW_MONEY:
    c->u.withdraw.amount = rd_money(r);
    (void)rd_str(r); /* description: in the schema, not in the command */
    break;
  case ESK_BANK_CMD_CLOSE_ACCOUNT:
    c->u.close.reason = rd_str(r);
    break;
  }
  rd_tail(r, c);
}

/* The command type whose fast-path fingerprint the header names, or 0. */
static int type_of(const esk_bank_fastdec_t *f, const uint8_t *b, size_t len) {
  if (len < 10 || b[0] != 0xC3 || b[1] != 0x01) return 0;
  uint64_t fp = 0;
  for (int i = 0; i < 8; i++) fp |= (uint64_t)b[2 + i] << (8 * i);
  for (int t = 1; t <= ESK_BANK_N_COMMAND_TYPES; t++)
    if (f->fp[t] && f->fp[t] == fp) return t;
  return 0;
}

int esk_bank_fastdec_read(esk_bank_fastdec_t *f, esk_bank_command_t *cmd, const void *data,
                          size_t len) {
  const uint8_t *b = data;
  int t = b && len <= f->max_message ? type_of(f, b, len) : 0;
  if (!t) return ESK_ENOTFOUND;
  /* every string fits in the datum's bytes, plus its NUL */
  esk_buf_reset(&f->str);
  if (esk_buf_reserve(&f->str, len, NULL)) return ESK_ENOTFOUND;
  rd_t r = {b + 10, b + len, (char *)f->str.data, f->max_string, 1};
  esk_bank_command_t c;
  memset(&c, 0, sizeof(c));
  c.type = (esk_bank_command_type_t)t;
  rd_command(&r, &c);
  if (!r.ok || r.p != r.end) return ESK_ENOTFOUND;
  *cmd = c;
  return ESK_OK;
}
