/* Restoring one partition of bank aggregates (see restore.h). */
#include "restore.h"

#include <jansson.h>
#include <string.h>
#include <time.h>

#include "esk/kafka.h"
#include "esk/log.h"

int esk_topics_init(esk_topics_t *t, const char *prefix, const char *domain, esk_error_t *err) {
  int rc;
  if ((rc = esk_kafka_topic_name(t->commands, sizeof(t->commands), prefix, domain, "commands",
                                 err)) ||
      (rc = esk_kafka_topic_name(t->events, sizeof(t->events), prefix, domain, "events", err)) ||
      (rc = esk_kafka_topic_name(t->results, sizeof(t->results), prefix, domain,
                                 "command-results", err)) ||
      (rc = esk_kafka_topic_name(t->snapshots, sizeof(t->snapshots), prefix, domain, "snapshots",
                                 err)))
    return rc;
  return ESK_OK;
}

void esk_restore_checkpoint_encode(uint8_t *out, int64_t events_offset) {
  memcpy(out, ESK_RESTORE_CHECKPOINT_MAGIC, 8);
  uint64_t v = (uint64_t)events_offset;
  for (int i = 0; i < 8; i++) out[8 + i] = (uint8_t)(v >> (8 * i));
}

int esk_restore_checkpoint_decode(int64_t *out, const void *data, size_t len, esk_error_t *err) {
  const uint8_t *p = data;
  if (!p || len != ESK_RESTORE_CHECKPOINT_SIZE || memcmp(p, ESK_RESTORE_CHECKPOINT_MAGIC, 8))
    return esk_error_set(err, ESK_EPOISON, "checkpoint: expected %d bytes starting with %s, got %zu",
                         ESK_RESTORE_CHECKPOINT_SIZE, ESK_RESTORE_CHECKPOINT_MAGIC, len);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[8 + i] << (8 * i);
  if ((int64_t)v < 0)
    return esk_error_set(err, ESK_EPOISON, "checkpoint: negative offset %lld", (long long)v);
  *out = (int64_t)v;
  return ESK_OK;
}

/* Appends the @p len bytes at @p s as a JSON string: quotes, backslashes and
 * control characters (U+0000 too) escaped, UTF-8 as it is. JSON cannot hold a
 * byte that is not UTF-8 (an id refused by the codec, answered as received):
 * each is written \udcXX, a lone surrogate, as Python's surrogateescape does,
 * so that it names no valid id (jansson, and so restore, refuses to read it). */
static size_t json_strn(char *buf, size_t size, size_t off, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *c = (const unsigned char *)s, *end = c + len;
  const unsigned char *bad = c + esk_utf8_check(c, len);
  if (off < size) buf[off] = '"';
  off++;
  for (; c < end; c++) {
    char esc[7] = {0};
    size_t n = 0;
    int not_utf8 = 0;
    if (c == bad) { /* U+0000 (escaped below) or a byte that is not UTF-8 */
      not_utf8 = *c != 0;
      bad = c + 1 + esk_utf8_check(c + 1, (size_t)(end - c - 1));
    }
    if (not_utf8) {
      memcpy(esc, "\\udc", 4);
      esc[4] = hex[*c >> 4];
      esc[5] = hex[*c & 15];
      n = 6;
    } else if (*c == '"' || *c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*c;
      n = 2;
    } else if (*c < 0x20) {
      memcpy(esc, "\\u00", 4);
      esc[4] = hex[*c >> 4];
      esc[5] = hex[*c & 15];
      n = 6;
    } else {
      esc[0] = (char)*c;
      n = 1;
    }
    if (off + n < size) memcpy(buf + off, esc, n);
    off += n;
  }
  if (off < size) buf[off] = '"';
  return off + 1;
}

/* Written by hand rather than with jansson: this runs once per command and
 * jansson's object building cost ~10 allocations each. The reader below
 * (restore, rare) uses jansson, and the unit tests check the two agree. */
/* Appends @p n bytes at @p off (counted even when they do not fit, as json_str). */
static size_t cat(char *buf, size_t size, size_t off, const char *s, size_t n) {
  if (off + n < size) memcpy(buf + off, s, n);
  return off + n;
}

/* Appends @p v in decimal. */
static size_t cat_i64(char *buf, size_t size, size_t off, int64_t v) {
  char num[24], *o = num + sizeof(num);
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do {
    *--o = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--o = '-';
  return cat(buf, size, off, o, (size_t)(num + sizeof(num) - o));
}

#define CAT(lit) off = cat(buf, size, off, lit, sizeof(lit) - 1)

/* Without printf: it is called once per command (snprintf was ~4% of the
 * producer's CPU). */
int esk_result_to_json(char *buf, size_t size, const char *command_id,
                       const esk_bank_result_t *res) {
  return esk_result_to_json_n(buf, size, command_id, strlen(command_id), res);
}

int esk_result_to_json_n(char *buf, size_t size, const char *command_id, size_t id_len,
                         const esk_bank_result_t *res) {
  size_t off = 0;
  CAT("{\"command_id\":");
  off = json_strn(buf, size, off, command_id, id_len);
  if (res->rule == ESK_BANK_ACCEPTED) {
    CAT(",\"status\":\"accepted\",\"aggregate_version\":");
    off = cat_i64(buf, size, off, res->version);
    CAT("}");
  } else {
    const char *code = esk_bank_rule_name(res->rule);
    CAT(",\"status\":\"rejected\",\"error\":{\"code\":\"");
    off = cat(buf, size, off, code, strlen(code));
    CAT("\",\"message\":");
    off = json_strn(buf, size, off, res->message, strlen(res->message));
    CAT(",\"actual_version\":");
    off = cat_i64(buf, size, off, res->version);
    CAT("}}");
  }
  if (off >= size) return -1;
  buf[off] = '\0';
  return (int)off;
}

#undef CAT

int esk_result_from_json(char *command_id_out, esk_bank_result_t *res, const void *data,
                         size_t len, esk_error_t *err) {
  json_error_t je;
  /* without JSON_ALLOW_NUL: "edge-c32\u0000first", the answer to a refused
   * command, is refused here instead of becoming the C string "edge-c32" and
   * answering that genuine id (so is the lone surrogate \udcXX of a byte that
   * is not UTF-8) */
  json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
  int rc = ESK_OK;
  if (!o) return esk_error_set(err, ESK_EPOISON, "result: not JSON: %s", je.text);
  const char *id = NULL, *status = NULL, *code = "", *msg = "";
  json_int_t ver = -1, actual = -1;
  esk_bank_result_t r;
  memset(&r, 0, sizeof(r));
  if (json_unpack_ex(o, &je, 0, "{s:s, s:s, s?I, s?{s:s, s:s, s:I}}", "command_id", &id,
                     "status", &status, "aggregate_version", &ver, "error", "code", &code,
                     "message", &msg, "actual_version", &actual)) {
    rc = esk_error_set(err, ESK_EPOISON, "result: %s", je.text);
    goto cleanup;
  }
  if (strlen(id) == 0 || strlen(id) > ESK_BANK_ID_MAX) {
    rc = esk_error_set(err, ESK_EPOISON, "result: command_id empty or too long");
    goto cleanup;
  }

  if (!strcmp(status, "accepted") && ver >= 0) {
    r.rule = ESK_BANK_ACCEPTED;
    r.version = ver;
  } else if (!strcmp(status, "rejected") && actual >= 0 &&
             esk_bank_rule_from_name(&r.rule, code) == ESK_OK && r.rule != ESK_BANK_ACCEPTED) {
    r.version = actual;
    snprintf(r.message, sizeof(r.message), "%s", msg);
  } else {
    rc = esk_error_set(err, ESK_EPOISON, "result: status '%s' without a valid version or code",
                       status);
    goto cleanup;
  }
  strcpy(command_id_out, id);
  *res = r;
cleanup:
  json_decref(o);
  return rc;
}

/* ---------------------------------------------------------------- restore --- */

typedef struct ctx_s {
  const esk_restore_target_t *tgt;
  esk_bank_avro_t *avro;
  esk_restore_stats_t *st;
  int32_t partition;
  esk_error_t *err;
} ctx_t;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int on_snapshot(const rd_kafka_message_t *m, void *opaque) {
  ctx_t *c = opaque;
  if (!m->payload) return ESK_OK; /* a tombstone */
  if (m->key_len == sizeof(ESK_RESTORE_CHECKPOINT_KEY) - 1 &&
      !memcmp(m->key, ESK_RESTORE_CHECKPOINT_KEY, m->key_len))
    return esk_restore_checkpoint_decode(&c->st->checkpoint, m->payload, m->len, c->err);
  esk_bank_state_t s;
  int rc = esk_bank_state_deserialize(&s, m->payload, m->len, c->err);
  if (rc) {
    esk_error_t e = *c->err;
    return esk_error_set(c->err, rc, "snapshot at offset %lld: %s", (long long)m->offset, e.msg);
  }
  c->st->snapshots++;
  const esk_bank_state_t *cur = esk_bank_store_get(c->tgt->store, s.account_id);
  if (cur && cur->version >= s.version) return ESK_OK;
  return esk_bank_store_put(c->tgt->store, &s, c->err);
}

static int on_event(const rd_kafka_message_t *m, void *opaque) {
  ctx_t *c = opaque;
  esk_bank_event_t ev;
  esk_error_t e = {0};
  c->st->events_read++;
  int rc = esk_bank_avro_decode_event(c->avro, &ev, NULL, m->payload, m->len, &e);
  if (rc)
    return esk_error_set(c->err, ESK_EPOISON, "event at offset %lld: %s", (long long)m->offset,
                         e.msg);
  const esk_bank_state_t *cur = esk_bank_store_get(c->tgt->store, ev.account_id);
  if (cur && ev.aggregate_version <= cur->version) return ESK_OK; /* in the snapshot */
  esk_bank_state_t next;
  if (cur)
    next = *cur;
  else
    memset(&next, 0, sizeof(next));
  if ((rc = esk_bank_apply(&next, &ev, &e)))
    return esk_error_set(c->err, ESK_EPOISON, "event at offset %lld does not fold: %s",
                         (long long)m->offset, e.msg);
  c->st->events_applied++;
  if ((rc = esk_bank_store_put(c->tgt->store, &next, c->err))) return rc;
  if (c->tgt->dirty) {
    char one = 1;
    return esk_hmap_put(c->tgt->dirty, ev.account_id, strlen(ev.account_id), &one, NULL, NULL,
                        c->err);
  }
  return ESK_OK;
}

static int on_result(const rd_kafka_message_t *m, void *opaque) {
  ctx_t *c = opaque;
  char id[ESK_BANK_ID_MAX + 1];
  esk_bank_result_t r;
  esk_error_t e = {0};
  if (!m->payload || esk_result_from_json(id, &r, m->payload, m->len, &e)) {
    /* a result we cannot read only weakens idempotency for that one id: say so, go on */
    char q[256];
    ESK_WARN("restore", "msg=\"unreadable result skipped\" partition=%d offset=%lld reason=%s",
             (int)c->partition, (long long)m->offset, esk_log_quote(q, sizeof(q), e.msg));
    return ESK_OK;
  }
  c->st->results++;
  return esk_bank_seen_put(c->tgt->seen, id, &r, NULL, c->err);
}

int esk_restore_partition(esk_restore_stats_t *stats, const esk_restore_target_t *tgt,
                          rd_kafka_t *reader, esk_bank_avro_t *avro, const esk_topics_t *topics,
                          int32_t partition, int use_snapshots, int idle_timeout_ms,
                          esk_error_t *err) {
  esk_restore_stats_t st;
  memset(&st, 0, sizeof(st));
  ctx_t c = {tgt, avro, &st, partition, err};
  int64_t t0 = now_ns();
  int rc;
  if (use_snapshots &&
      (rc = esk_kafka_read_partition(reader, topics->snapshots, partition,
                                     RD_KAFKA_OFFSET_BEGINNING, idle_timeout_ms, on_snapshot, &c,
                                     NULL, err)))
    return rc;
  int64_t t1 = now_ns();
  st.ms_snapshots = (double)(t1 - t0) / 1e6;
  if ((rc = esk_kafka_read_partition(reader, topics->events, partition,
                                     st.checkpoint > 0 ? st.checkpoint : RD_KAFKA_OFFSET_BEGINNING,
                                     idle_timeout_ms, on_event, &c, &st.events_end, err)))
    return rc;
  st.ms_events = (double)(now_ns() - t1) / 1e6;
  if (tgt->seen) {
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(reader, topics->results, partition,
                                                             &lo, &hi, idle_timeout_ms);
    if (e)
      return esk_error_set(err, ESK_ERETRY, "watermarks of %s [%d]: %s", topics->results,
                           (int)partition, rd_kafka_err2str(e));
    int64_t from = hi - (int64_t)tgt->seen_max;
    if (from < lo) from = lo;
    if ((rc = esk_kafka_read_partition(reader, topics->results, partition, from,
                                       idle_timeout_ms, on_result, &c, NULL, err)))
      return rc;
  }
  st.ms_total = (double)(now_ns() - t0) / 1e6;
  *stats = st;
  return ESK_OK;
}
