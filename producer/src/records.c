/* Records: events, results and snapshots as Kafka messages (keys, headers,
 * event ids). */
#include "producer_int.h"

#include "esk/kafka.h"
#include "esk/text.h"

int esk_prod_produce(esk_producer_t *p, rd_kafka_topic_t *rkt, int32_t part, const void *key,
                     size_t klen, const void *val, size_t vlen, rd_kafka_headers_t *hdrs,
                     void *opaque) {
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(part),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
        RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque),
        RD_KAFKA_V_END);
    if (!e) return ESK_OK;
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(p->producer, 5);
      continue;
    }
    if (hdrs) rd_kafka_headers_destroy(hdrs);
    p->batch_failed = p->batch_broken = 1;
    if (esk_refusals_permanent(e)) esk_prod_note_refusal(p, (uintptr_t)opaque, rkt, vlen, e, 1);
    ESK_WARN(FAC, "msg=\"produce failed\" topic=%s partition=%d reason=%s",
             rd_kafka_topic_name(rkt), (int)part, rd_kafka_err2name(e));
    return ESK_ERETRY;
  }
}

/* Notes that Kafka refused for good a message of the command whose delivery
 * opaque is @p idx (refusals.h); esk_prod_finish_batch() turns the batch's
 * refusals into verdicts. @p local: refused by producev
 * (kafka.message.max.bytes), not by the broker. */
void esk_prod_note_refusal(esk_producer_t *p, uintptr_t idx, rd_kafka_topic_t *rkt, size_t len,
                           rd_kafka_resp_err_t e, int local) {
  if (idx == 0 || idx > (uintptr_t)p->batch_n) return; /* no command's (a checkpoint) */
  const char *what = rkt == p->rkt_ev ? "event" : rkt == p->rkt_res ? "result" : "snapshot";
  char reason[sizeof(p->rf.refused->reason)];
  esk_refusals_reason(reason, sizeof(reason), what, rd_kafka_topic_name(rkt), len, e, local);
  (void)esk_refusals_note(&p->rf, (size_t)idx, reason); /* unattributed: redone, with backoff */
}

/* A random (version 4) UUID in its 36-character text form. libuuid's
 * uuid_generate_random() reseeds random() and reads the clock on every call,
 * which cost ~12% of the producer's CPU; this takes 16 bytes of a getrandom()
 * pool instead. */
static void event_id(esk_producer_t *p, char out[37]) {
  static const char hex[] = "0123456789abcdef";
  if (p->rnd_pos == 0 || p->rnd_pos + 16 > sizeof(p->rnd)) {
    size_t got = 0;
    while (got < sizeof(p->rnd)) {
      ssize_t n = getrandom(p->rnd + got, sizeof(p->rnd) - got, 0);
      if (n > 0) got += (size_t)n;
    }
    p->rnd_pos = 0;
  }
  uint8_t *b = p->rnd + p->rnd_pos;
  p->rnd_pos += 16;
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  char *o = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
    *o++ = hex[b[i] >> 4];
    *o++ = hex[b[i] & 15];
  }
  *o = '\0';
}

/* The delivery opaque of the messages of the command being handled (its index
 * in the open batch + 1). */
void *esk_prod_cmd_opaque(const esk_producer_t *p) { return (void *)(uintptr_t)p->batch_n; }

void esk_prod_hdr(rd_kafka_headers_t *h, const char *name, const char *v) {
  rd_kafka_header_add(h, name, -1, v ? v : "", -1);
}

/* The result of a command, keyed by its id: @p id_len bytes exactly as
 * received; @p duplicate: it repeats the command's first result. */
static int produce_result(esk_producer_t *p, int32_t part, const char *command_id, size_t id_len,
                          const esk_result_t *res, int duplicate) {
  char json[2048]; /* a 128-byte id escaped, 16 events and their names */
  int n = esk_result_to_json_n(json, sizeof(json), command_id, id_len, res, p->dom);
  if (n < 0) {
    p->batch_failed = 1;
    ESK_ERROR(FAC, "msg=\"result does not fit\" partition=%d", (int)part);
    return ESK_EFATAL;
  }
  /* no headers on a first result: the value is self-describing JSON, and
   * librdkafka's headers cost ~10 allocations per message (measured: a third
   * of the CPU of events); a repeat is marked, so that esk-gateway does not
   * wait for events in this transaction (docs/api.md, "The consistency token") */
  rd_kafka_headers_t *h = duplicate ? rd_kafka_headers_new(1) : NULL;
  if (h) esk_prod_hdr(h, ESK_KAFKA_HDR_DUPLICATE, "1");
  return esk_prod_produce(p, p->rkt_res, part, command_id, id_len, json, (size_t)n, h,
                          esk_prod_cmd_opaque(p));
}

int esk_prod_produce_result_n(esk_producer_t *p, int32_t part, const char *command_id,
                              size_t id_len, const esk_result_t *res) {
  return produce_result(p, part, command_id, id_len, res, 0);
}

int esk_prod_produce_result(esk_producer_t *p, int32_t part, const char *command_id,
                            const esk_result_t *res) {
  return produce_result(p, part, command_id, strlen(command_id), res, 0);
}

int esk_prod_produce_duplicate(esk_producer_t *p, int32_t part, const char *command_id,
                               const esk_result_t *first) {
  return produce_result(p, part, command_id, strlen(command_id), first, 1);
}

int esk_prod_produce_snapshot(esk_producer_t *p, int32_t part, const char *id, const void *s,
                              void *opaque) {
  esk_error_t e = {0};
  esk_buf_reset(&p->buf);
  if (p->dom->snapshot_write(&p->buf, s, &e)) {
    p->batch_failed = 1;
    ESK_ERROR(FAC, "msg=\"snapshot failed\" aggregate=%s reason=\"%s\"", id, e.msg);
    return ESK_EFATAL;
  }
  char ver[ESK_TEXT_I64_MAX];
  esk_text_i64(ver, p->dom->version(s));
  rd_kafka_headers_t *h = rd_kafka_headers_new(2);
  esk_prod_hdr(h, "esk.type", p->dom->snapshot_type);
  esk_prod_hdr(h, ESK_KAFKA_HDR_AGGREGATE_VERSION, ver);
  return esk_prod_produce(p, p->rkt_snap, part, id, strlen(id), p->buf.data, p->buf.len, h, opaque);
}

/* Encodes @p ev into p->evbuf[@p i] (published later by esk_prod_produce_event(), once
 * every event of the command is known to fit). */
int esk_prod_encode_event(esk_producer_t *p, size_t i, const esk_schema_t **ws, char eid[37],
                          int64_t version, const esk_envelope_t *env) {
  event_id(p, eid);
  esk_event_meta_t meta = {eid, esk_time_real_us(), env->aggregate_id, version,
                           env->correlation_id, env->command_id, env->actor};
  esk_error_t e = {0};
  esk_buf_reset(&p->evbuf[i]);
  if (p->dom->encode_event(p->dom_self, &p->evbuf[i], ws, esk_decider_event(p->dc, i), &meta,
                           &e)) {
    p->batch_failed = 1;
    ESK_ERROR(FAC, "msg=\"event encoding failed\" reason=\"%s\"", e.msg);
    return ESK_EFATAL;
  }
  if (p->shred && esk_prod_shred_event(p, i, &e)) {
    p->batch_failed = 1;
    ESK_ERROR(FAC, "msg=\"encrypting an event's personal fields failed\" reason=\"%s\"", e.msg);
    return ESK_EFATAL;
  }
  return ESK_OK;
}

/* An upper bound of the record batch an encoded event makes alone: batch header
 * (61 bytes), record framing and header names (< 160), key, value, header values. */
size_t esk_prod_event_record_size(const esk_producer_t *p, size_t i, const esk_schema_t *ws,
                                  const esk_envelope_t *env) {
  return 61 + 160 + 36 + 2 * 20 + strlen(env->aggregate_id) + p->evbuf[i].len +
         strlen(esk_schema_type(ws)) + (env->correlation_id ? strlen(env->correlation_id) : 0) +
         strlen(env->command_id) + strlen("avro/binary");
}

int esk_prod_produce_event(esk_producer_t *p, int32_t part, size_t i, const esk_schema_t *ws,
                           const char *eid, int64_t version, const esk_envelope_t *env) {
  char ver[ESK_TEXT_I64_MAX], sver[ESK_TEXT_I64_MAX];
  esk_text_i64(sver, esk_schema_version(ws));
  /* event.headers=minimal: what a reader needs to pick a schema without
   * decoding; the rest is in the value's EventMeta (each header costs
   * librdkafka an allocation and the broker a parse) */
  rd_kafka_headers_t *h = rd_kafka_headers_new(p->headers_minimal ? 2 : 8);
  esk_prod_hdr(h, "esk.type", esk_schema_type(ws));
  esk_prod_hdr(h, "esk.schema_version", sver);
  if (!p->headers_minimal) {
    esk_text_i64(ver, version);
    esk_prod_hdr(h, "esk.event_id", eid);
    esk_prod_hdr(h, ESK_KAFKA_HDR_AGGREGATE_VERSION, ver);
    esk_prod_hdr(h, "esk.correlation_id", env->correlation_id);
    esk_prod_hdr(h, "esk.causation_id", env->command_id);
    esk_prod_hdr(h, "content-type", "avro/binary");
  }
  return esk_prod_produce(p, p->rkt_ev, part, env->aggregate_id, strlen(env->aggregate_id),
                 p->evbuf[i].data, p->evbuf[i].len, h, esk_prod_cmd_opaque(p));
}
