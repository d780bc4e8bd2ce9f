/* Snapshot forms of the account state: format 2, the Avro body of
 * AccountSnapshot v1 (written), and format 1, the bank's own binary layout
 * (read from old topics). Every length is checked before it is used; nothing
 * is allocated on read. */
#include <inttypes.h>
#include <string.h>

#include "bank/bank.h"
#include "esk/avro_bin.h"

static void put_i64(uint8_t *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(u >> (8 * i));
}

static int64_t get_i64(const uint8_t *p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u |= (uint64_t)p[i] << (8 * i);
  return (int64_t)u; /* two's complement: implementation-defined, but gcc/clang do the obvious */
}

/* The invariants a state must hold; shared by both directions so that
 * serialize never writes what deserialize would refuse. NULL when valid. */
static const char *state_problem(const esk_bank_state_t *s) {
  if (!memchr(s->account_id, '\0', sizeof(s->account_id))) return "account_id is not terminated";
  if (!memchr(s->owner_id, '\0', sizeof(s->owner_id))) return "owner_id is not terminated";
  if (s->version < 0) return "negative version";
  if (s->balance < 0) return "negative balance";
  switch (s->status) {
  case ESK_BANK_STATUS_NONE:
    if (s->version != 0 || s->balance != 0 || s->owner_id[0] || s->currency[0])
      return "an account with status none has a version, balance, owner or currency";
    return NULL;
  case ESK_BANK_STATUS_OPEN:
  case ESK_BANK_STATUS_CLOSED:
    if (!s->account_id[0]) return "empty account_id";
    if (!s->owner_id[0]) return "empty owner_id";
    if (s->version < 1) return "an open or closed account has version 0";
    if (!esk_bank_currency_valid(s->currency)) return "invalid currency";
    if (s->status == ESK_BANK_STATUS_CLOSED && s->balance != 0)
      return "a closed account has a non-zero balance";
    /* open then closed takes two events */
    if (s->status == ESK_BANK_STATUS_CLOSED && s->version < 2) return "closed at version 1";
    return NULL;
  }
  return "unknown status";
}

int esk_bank_state_serialize(esk_buf_t *out, const esk_bank_state_t *state, esk_error_t *err) {
  if (!out || !state) return esk_error_set(err, ESK_EINVAL, "bank snapshot: NULL argument");
  const char *why = state_problem(state);
  if (why) return esk_error_set(err, ESK_EINVAL, "bank snapshot: cannot write state: %s", why);
  uint8_t b[ESK_BANK_SNAPSHOT_MAX];
  size_t n = 0;
  b[n++] = ESK_BANK_SNAPSHOT_FORMAT;
  b[n++] = (uint8_t)state->status;
  put_i64(b + n, state->version);
  n += 8;
  put_i64(b + n, state->balance);
  n += 8;
  if (state->status == ESK_BANK_STATUS_NONE)
    memset(b + n, 0, 3);
  else
    memcpy(b + n, state->currency, 3);
  n += 3;
  size_t alen = strlen(state->account_id), olen = strlen(state->owner_id);
  b[n++] = (uint8_t)alen;
  memcpy(b + n, state->account_id, alen);
  n += alen;
  b[n++] = (uint8_t)olen;
  memcpy(b + n, state->owner_id, olen);
  n += olen;
  return esk_buf_append(out, b, n, err);
}

/* Reads a u8-length-prefixed id into dst; advances *pos. */
static const char *read_id(char *dst, size_t dst_size, const uint8_t *p, size_t len,
                           size_t *pos) {
  if (*pos >= len) return "truncated before an id length";
  size_t n = p[(*pos)++];
  if (n > ESK_BANK_ID_MAX || n >= dst_size) return "id longer than the maximum";
  if (len - *pos < n) return "truncated inside an id";
  if (memchr(p + *pos, '\0', n)) return "NUL byte inside an id";
  memset(dst, 0, dst_size);
  memcpy(dst, p + *pos, n);
  *pos += n;
  return NULL;
}

int esk_bank_state_deserialize(esk_bank_state_t *out, const void *data, size_t len,
                               esk_error_t *err) {
  const uint8_t *p = data;
  const char *why = NULL;
  esk_bank_state_t s;
  size_t pos = 0;
  if (!out || (!data && len))
    return esk_error_set(err, ESK_EINVAL, "bank snapshot: NULL argument");
  if (len == 0) return esk_error_set(err, ESK_EPOISON, "bank snapshot: empty input");
  if (len > ESK_BANK_SNAPSHOT_MAX)
    return esk_error_set(err, ESK_EPOISON, "bank snapshot: %zu bytes, over the maximum of %d",
                         len, ESK_BANK_SNAPSHOT_MAX);
  if (p[0] != ESK_BANK_SNAPSHOT_FORMAT)
    return esk_error_set(err, ESK_EPOISON,
                         "bank snapshot: unknown format version %u (this build reads %d)",
                         (unsigned)p[0], ESK_BANK_SNAPSHOT_FORMAT);
  if (len < 1 + 1 + 8 + 8 + 3)
    return esk_error_set(err, ESK_EPOISON, "bank snapshot: truncated header (%zu bytes)", len);
  memset(&s, 0, sizeof(s));
  if (p[1] > ESK_BANK_STATUS_CLOSED)
    return esk_error_set(err, ESK_EPOISON, "bank snapshot: unknown status %u", (unsigned)p[1]);
  s.status = (esk_bank_status_t)p[1];
  s.version = get_i64(p + 2);
  s.balance = get_i64(p + 10);
  if (s.status != ESK_BANK_STATUS_NONE) memcpy(s.currency, p + 18, 3);
  else if (p[18] || p[19] || p[20]) why = "currency bytes set for status none";
  pos = 21;
  if (!why) why = read_id(s.account_id, sizeof(s.account_id), p, len, &pos);
  if (!why) why = read_id(s.owner_id, sizeof(s.owner_id), p, len, &pos);
  if (!why && pos != len) why = "trailing bytes after the state";
  if (!why) why = state_problem(&s);
  if (why) return esk_error_set(err, ESK_EPOISON, "bank snapshot: %s", why);
  *out = s;
  return ESK_OK;
}

/* ------------------------------------------- format 2: AccountSnapshot v1 --- */

int esk_bank_snapshot_write(esk_buf_t *out, const esk_bank_state_t *state, esk_error_t *err) {
  if (!out || !state) return esk_error_set(err, ESK_EINVAL, "bank snapshot: NULL argument");
  const char *why = state_problem(state);
  if (why) return esk_error_set(err, ESK_EINVAL, "bank snapshot: cannot write state: %s", why);
  size_t mark = out->len;
  uint8_t format = ESK_BANK_SNAPSHOT_FORMAT_AVRO;
  char currency[4] = {0};
  if (state->status != ESK_BANK_STATUS_NONE) memcpy(currency, state->currency, 3);
  int rc;
  /* the fields in AccountSnapshot.v1.avsc's order */
  if ((rc = esk_buf_append(out, &format, 1, NULL)) ||
      (rc = esk_avro_put_string(out, state->account_id)) ||
      (rc = esk_avro_put_long(out, state->version)) ||
      (rc = esk_avro_put_long(out, state->status)) ||
      (rc = esk_avro_put_string(out, state->owner_id)) ||
      (rc = esk_avro_put_string(out, currency)) || (rc = esk_avro_put_long(out, state->balance))) {
    out->len = mark;
    return esk_error_set(err, rc, "bank snapshot of %s: out of memory", state->account_id);
  }
  return ESK_OK;
}

int esk_bank_snapshot_read(esk_bank_state_t *out, const void *data, size_t len,
                           esk_error_t *err) {
  const uint8_t *p = data;
  if (!out || (!data && len))
    return esk_error_set(err, ESK_EINVAL, "bank snapshot: NULL argument");
  if (len == 0) return esk_error_set(err, ESK_EPOISON, "bank snapshot: empty input");
  if (p[0] == ESK_BANK_SNAPSHOT_FORMAT) return esk_bank_state_deserialize(out, data, len, err);
  if (p[0] != ESK_BANK_SNAPSHOT_FORMAT_AVRO)
    return esk_error_set(err, ESK_EPOISON,
                         "bank snapshot: unknown format version %u (this build reads %d and %d)",
                         (unsigned)p[0], ESK_BANK_SNAPSHOT_FORMAT, ESK_BANK_SNAPSHOT_FORMAT_AVRO);
  if (len > ESK_BANK_SNAPSHOT_AVRO_MAX)
    return esk_error_set(err, ESK_EPOISON, "bank snapshot: %zu bytes, over the maximum of %d",
                         len, ESK_BANK_SNAPSHOT_AVRO_MAX);
  esk_avro_in_t in = {p + 1, p + len};
  esk_bank_state_t s;
  int64_t status = -1;
  memset(&s, 0, sizeof(s));
  if (esk_avro_get_string(&in, s.account_id, sizeof(s.account_id)) ||
      esk_avro_get_long(&in, &s.version) || esk_avro_get_long(&in, &status) ||
      esk_avro_get_string(&in, s.owner_id, sizeof(s.owner_id)) ||
      esk_avro_get_string(&in, s.currency, sizeof(s.currency)) ||
      esk_avro_get_long(&in, &s.balance))
    return esk_error_set(err, ESK_EPOISON,
                         "bank snapshot: AccountSnapshot truncated or a field out of range at "
                         "byte %zu",
                         (size_t)(in.p - p));
  if (in.p != in.end)
    return esk_error_set(err, ESK_EPOISON, "bank snapshot: %zu trailing bytes after the state",
                         (size_t)(in.end - in.p));
  if (status < ESK_BANK_STATUS_NONE || status > ESK_BANK_STATUS_CLOSED)
    return esk_error_set(err, ESK_EPOISON, "bank snapshot: unknown status %" PRId64, status);
  s.status = (esk_bank_status_t)status;
  const char *why = state_problem(&s);
  if (why) return esk_error_set(err, ESK_EPOISON, "bank snapshot of %s: %s", s.account_id, why);
  *out = s;
  return ESK_OK;
}
