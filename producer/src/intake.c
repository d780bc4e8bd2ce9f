/* Intake: decoding a command, the runtime's checks of where it arrived and
 * of its id, idempotency, and handing it to the domain's Decider. */
#include "producer_int.h"

/* The version of the aggregate's state @p cur (NULL: none yet). */
static int64_t version_of(const esk_producer_t *p, const void *cur) {
  return cur ? p->dom->version(cur) : 0;
}

/* A rejection decided by the runtime because Kafka cannot take the command's
 * messages (verdict_t). */
static void unpublishable(const esk_producer_t *p, esk_result_t *r, const void *cur,
                          const char *reason) {
  esk_result_reject(r, p->dom, ESK_RULE_UNPUBLISHABLE, version_of(p, cur), "%s", reason);
}

/* @p n bytes for a log line: printable ASCII as it is, others as \xHH. */
static const char *escape_bytes(char *buf, size_t size, const char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 < size; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x21 && c < 0x7f && c != '"' && c != '\\')
      buf[o++] = (char)c;
    else
      o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
  }
  buf[o] = '\0';
  return buf;
}

/* When the decode failed with @p why because it refused a string: field
 * @p field of the command as written (see esk_codec_raw_string()). */
static int refused_string(esk_producer_t *p, const esk_error_t *why,
                          const rd_kafka_message_t *m, const char *field, const char **out,
                          size_t *n) {
  if (!esk_codec_refusal(p->codec, why)) return ESK_ENOTFOUND;
  return esk_codec_raw_string(p->codec, m->payload, m->len, field, out, n, NULL);
}

/* Answers a command id seen before with its first result. 1 when it was seen. */
static int answer_seen(esk_producer_t *p, int32_t part, const char *id) {
  const esk_result_t *seen = esk_seen_get(p->parts[part].seen, id);
  if (!seen) return 0; /* a copy of the cache's, valid until its next get or put */
  p->st.duplicates++;
  p->bc.duplicates++;
  esk_prod_produce_duplicate(p, part, id, seen);
  return 1;
}

/* A command whose result Kafka refused even as UNPUBLISHABLE: consumed
 * without a result. 1 when @p v says so. */
static int skip_refused(esk_producer_t *p, const verdict_t *vc, const char *qid, int32_t part,
                        int64_t offset) {
  verdict_t *v = (verdict_t *)vc;
  if (!v || !(v->state & V_SKIP)) return 0;
  char q[512];
  p->st.poison++;
  p->bc.skipped++;
  if (!v->logged++)
    ESK_WARN(FAC, "msg=\"command skipped: Kafka refused even its UNPUBLISHABLE result\" "
             "command_id=%s partition=%d offset=%lld reason=%s", qid, (int)part,
             (long long)offset, esk_log_quote(q, sizeof(q), v->reason));
  return 1;
}

/* A command whose decode refused a string (U+0000 or invalid UTF-8: the codec
 * never cuts one short) is answered INVALID_COMMAND naming the field, under its
 * command id exactly as received; nothing is published. An id that is itself
 * refused is not remembered: the cache, and the results JSON a restore reads
 * back, hold C strings, where "edge-c32\0first" would become "edge-c32" and
 * answer that genuine id; a resubmission is refused again, the same way.
 * @returns 1 when answered, 0 when there is no usable id (skipped as undecodable). */
static int refused_command(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part,
                           const esk_error_t *why) {
  part_t *pt = &p->parts[part];
  const char *id, *acc;
  size_t n, alen;
  esk_error_t e = {0};
  if (refused_string(p, why, m, "command_id", &id, &n) || !n || n > ESK_ID_MAX) return 0;
  char idz[ESK_ID_MAX + 1], accz[ESK_ID_MAX + 1], q[512], qid[4 * ESK_ID_MAX + 8];
  memcpy(idz, id, n);
  idz[n] = '\0';
  int usable = esk_utf8_check(id, n) == n; /* remembered like any other id */
  if (usable && answer_seen(p, part, idz)) return 1;
  verdict_t *v = p->rf.n_verdicts ? esk_refusals_find(&p->rf, part, m->offset) : NULL;
  char qq[4 * ESK_ID_MAX + 16];
  snprintf(qq, sizeof(qq), "\"%s\"", escape_bytes(qid, sizeof(qid), id, n));
  if (skip_refused(p, v, qq, part, m->offset)) return 1;
  const void *cur = NULL; /* for actual_version, when the aggregate id is whole */
  if (!refused_string(p, why, m, p->dom->aggregate_id_field, &acc, &alen) && alen &&
      alen <= ESK_ID_MAX && esk_utf8_check(acc, alen) == alen) {
    memcpy(accz, acc, alen);
    accz[alen] = '\0';
    cur = esk_aggstore_get(pt->store, accz);
  }
  esk_result_t res;
  if (v && (v->state & V_REJECT))
    unpublishable(p, &res, cur, v->reason);
  else
    esk_result_reject(&res, p->dom, ESK_RULE_INVALID_COMMAND, version_of(p, cur), "%.340s",
                      why->msg);
  p->st.rejected++;
  p->bc.rejected[res.rule]++;
  ESK_WARN(FAC, "msg=\"command refused: a string it holds cannot be kept whole\" "
           "command_id=%s partition=%d offset=%lld reason=%s", qq, (int)part,
           (long long)m->offset, esk_log_quote(q, sizeof(q), why->msg));
  esk_prod_produce_result_n(p, part, id, n, &res);
  if (usable && esk_seen_put(pt->seen, idz, &res, NULL, &e))
    esk_watchdog_fatal(&p->health->fatal, &e);
  return 1;
}

/* The runtime's checks of where a command arrived, before the domain sees it:
 * 1 with @p res set when it is rejected. Its events would land where no
 * restore looks. */
static int misplaced(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part,
                     const esk_envelope_t *env, const void *cur, esk_result_t *res) {
  const char *acc = env->aggregate_id ? env->aggregate_id : "";
  size_t alen = strlen(acc);
  int64_t v = version_of(p, cur);
  if (!strcmp(acc, ESK_RESTORE_CHECKPOINT_KEY)) {
    esk_result_reject(res, p->dom, ESK_RULE_INVALID_COMMAND, 0, "%s id %s is reserved",
                      p->dom->aggregate_type, "\\001esk.checkpoint");
    return 1;
  }
  if (alen && (m->key_len != alen || memcmp(m->key, acc, alen))) {
    esk_result_reject(res, p->dom, ESK_RULE_INVALID_COMMAND, v,
                      "the message key is not the %s id %.128s", p->dom->aggregate_type, acc);
    return 1;
  }
  int32_t want = alen ? rd_kafka_msg_partitioner_murmur2_random(p->rkt_ev, acc, alen, p->nparts,
                                                                NULL, NULL)
                      : part;
  if (want != part) {
    esk_result_reject(res, p->dom, ESK_RULE_INVALID_COMMAND, v,
                      "%s %.128s belongs on partition %d, not %d (murmur2)",
                      p->dom->aggregate_type, acc, (int)want, (int)part);
    return 1;
  }
  return 0;
}

/* Encodes every event of the accepted command before any is published: one
 * over event.max.bytes turns @p res into UNPUBLISHABLE (publishing nothing).
 * @returns ESK_OK, or an error after which the command is dropped. */
static int encode_events(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part,
                         const esk_envelope_t *env, const void *cur, esk_result_t *res,
                         const esk_schema_t **ws, char (*eids)[37], size_t n) {
  int64_t v0 = version_of(p, cur);
  for (size_t i = 0; res->rule == ESK_RULE_ACCEPTED && i < n; i++) {
    if (esk_prod_encode_event(p, i, &ws[i], eids[i], v0 + 1 + (int64_t)i, env)) return ESK_EFATAL;
    size_t sz = esk_prod_event_record_size(p, i, ws[i], env);
    if (sz <= (size_t)p->event_max) continue;
    char hb[32];
    verdict_t *v = esk_refusals_add(&p->rf, part, m->offset);
    if (!v) {
      esk_error_t e = {0};
      esk_error_set(&e, ESK_ENOMEM, "producer: out of memory");
      esk_watchdog_fatal(&p->health->fatal, &e);
      return ESK_ENOMEM;
    }
    v->state = V_REJECT;
    snprintf(v->reason, sizeof(v->reason), "its %s event of about %s exceeds event.max.bytes=%lld",
             esk_schema_type(ws[i]), esk_refusals_human_bytes(hb, sizeof(hb), sz),
             (long long)p->event_max);
    unpublishable(p, res, cur, v->reason);
  }
  return ESK_OK;
}

/* Publishes the accepted command's events and takes its next state. */
static int publish_accepted(esk_producer_t *p, int32_t part, const esk_envelope_t *env,
                            const void *cur, const esk_schema_t **ws, char (*eids)[37],
                            size_t n) {
  part_t *pt = &p->parts[part];
  esk_error_t e = {0};
  int64_t v0 = version_of(p, cur);
  const void *next = esk_decider_next(p->dc);
  for (size_t i = 0; i < n; i++) /* a failure marks the batch for abort */
    esk_prod_produce_event(p, part, i, ws[i], eids[i], v0 + 1 + (int64_t)i, env);
  char one = 1;
  if (esk_aggstore_put(pt->store, env->aggregate_id, next, &e) ||
      /* a checkpoint that missed this aggregate would lose its events */
      esk_hmap_put(pt->dirty, env->aggregate_id, strlen(env->aggregate_id), &one, NULL, NULL,
                   &e)) {
    esk_watchdog_fatal(&p->health->fatal, &e);
    return ESK_EFATAL;
  }
  pt->events_since_ckpt += (int64_t)n;
  int64_t ver = p->dom->version(next);
  if (p->snapshot_every && n && ver % p->snapshot_every == 0)
    esk_prod_produce_snapshot(p, part, env->aggregate_id, next, esk_prod_cmd_opaque(p));
  p->st.accepted++;
  p->bc.accepted++;
  return ESK_OK;
}

/* Decides a decoded command with a usable id, publishes what it yields and
 * answers it. */
static void decide_one(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part,
                       const esk_envelope_t *env) {
  part_t *pt = &p->parts[part];
  esk_error_t e = {0};
  verdict_t *v = p->rf.n_verdicts ? esk_refusals_find(&p->rf, part, m->offset) : NULL;
  if (skip_refused(p, v, env->command_id, part, m->offset)) return;
  const char *acc = env->aggregate_id ? env->aggregate_id : "";
  const void *cur = *acc ? esk_aggstore_get(pt->store, acc) : NULL;
  esk_result_t res;
  const esk_schema_t *ws[ESK_DOMAIN_MAX_EVENTS];
  char eids[ESK_DOMAIN_MAX_EVENTS][37];
  size_t n = 0;
  if (v && (v->state & V_REJECT)) {
    unpublishable(p, &res, cur, v->reason);
  } else if (!misplaced(p, m, part, env, cur, &res)) {
    if (esk_decider_run(p->dc, cur, env, p->cmd, &res, &e)) { /* the domain contradicts itself */
      esk_watchdog_fatal(&p->health->fatal, &e);
      return;
    }
    if (res.rule == ESK_RULE_ACCEPTED) esk_decider_events(p->dc, &n);
  }
  if (encode_events(p, m, part, env, cur, &res, ws, eids, n)) return;
  if (res.rule == ESK_RULE_ACCEPTED) {
    const char *types[ESK_DOMAIN_MAX_EVENTS];
    for (size_t i = 0; i < n; i++) types[i] = esk_schema_type(ws[i]);
    esk_result_set_events(&res, types, n);
    if (publish_accepted(p, part, env, cur, ws, eids, n)) return;
  } else {
    p->st.rejected++;
    if (res.rule >= 0 && res.rule < esk_domain_rule_count(p->dom)) p->bc.rejected[res.rule]++;
    v = p->rf.n_verdicts ? esk_refusals_find(&p->rf, part, m->offset) : NULL;
    if (v && (v->state & V_REJECT) && !v->logged++) {
      char q[512];
      ESK_WARN(FAC, "msg=\"command answered UNPUBLISHABLE: Kafka cannot take its messages\" "
               "command_id=%s partition=%d offset=%lld reason=%s", env->command_id, (int)part,
               (long long)m->offset, esk_log_quote(q, sizeof(q), v->reason));
    }
  }
  esk_prod_produce_result(p, part, env->command_id, &res);
  if (esk_seen_put(pt->seen, env->command_id, &res, NULL, &e))
    esk_watchdog_fatal(&p->health->fatal, &e);
}

/* Adds the command at @p m to the open batch (opening one). 0 on success. */
static int enqueue(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part) {
  part_t *pt = &p->parts[part];
  esk_error_t e = {0};
  if (!p->in_txn && esk_prod_begin_batch(p, part, m->offset, &e)) {
    esk_watchdog_fatal(&p->health->fatal, &e);
    return -1;
  }
  cmd_ref_t *cmds = esk_array_grow(p->cmds, &p->cmds_cap, (size_t)p->batch_n + 1,
                                   sizeof(*p->cmds), 64);
  if (!cmds) {
    esk_error_set(&e, ESK_ENOMEM, "producer: out of memory");
    esk_watchdog_fatal(&p->health->fatal, &e);
    return -1;
  }
  p->cmds = cmds;
  p->cmds[p->batch_n].part = part;
  p->cmds[p->batch_n].offset = m->offset;
  pt->batch_next = m->offset + 1;
  pt->next_offset = m->offset + 1;
  p->batch_n++; /* from here on esk_prod_cmd_opaque() names this command */
  p->st.commands++;
  return 0;
}

/* Decodes one command of partition @p part (held) in the open batch, and
 * hands it on unless it is answered or skipped here. */
static void handle_one(esk_producer_t *p, const rd_kafka_message_t *m, int32_t part) {
  esk_error_t e = {0};
  if (enqueue(p, m, part)) return;
  esk_envelope_t env;
  const esk_schema_t *rs = NULL;
  avro_value_t *val = NULL;
  memset(&env, 0, sizeof(env));
  /* the domain's fast path when it has one and is sure of the message, else
   * the codec (docs/architecture.md, "Write side") */
  int rc = p->decode_fast ? p->decode_fast(p->dom_self, m->payload, m->len, &env, p->cmd)
                          : ESK_ENOTFOUND;
  if (rc != ESK_OK) {
    memset(&env, 0, sizeof(env)); /* a domain's fast path may have begun filling it */
    rc = esk_codec_decode(p->codec, m->payload, m->len, 0, &rs, &val, &e);
    if (rc == ESK_OK) rc = p->dom->decode_command(p->dom_self, rs, val, &env, p->cmd, &e);
  }
  if (rc) {
    if (refused_command(p, m, part, &e)) return;
    /* no command id to answer under: the offset moves on, the line says why */
    char q[512];
    p->st.poison++;
    p->bc.skipped++;
    ESK_WARN(FAC, "msg=\"undecodable command skipped\" partition=%d offset=%lld reason=%s",
             (int)part, (long long)m->offset, esk_log_quote(q, sizeof(q), e.msg));
    return;
  }
  if (!env.command_id || !*env.command_id || strlen(env.command_id) > ESK_ID_MAX) {
    p->st.poison++;
    p->bc.skipped++;
    ESK_WARN(FAC, "msg=\"command without a usable command_id skipped\" partition=%d offset=%lld",
             (int)part, (long long)m->offset);
    return;
  }
  if (answer_seen(p, part, env.command_id)) return;
  decide_one(p, m, part, &env);
}

void esk_prod_handle_command(esk_producer_t *p, const rd_kafka_message_t *m) {
  int32_t part = m->partition;
  if (part < 0 || part >= p->nparts || !p->parts[part].active) {
    ESK_WARN(FAC, "msg=\"command from a partition not held, ignored\" partition=%d offset=%lld",
             (int)part, (long long)m->offset);
    return;
  }
  const verdict_t *v = p->rf.n_verdicts ? esk_refusals_find(&p->rf, part, m->offset) : NULL;
  if (!v || (v->state & V_SKIP) || !(v->state & V_ALONE)) {
    handle_one(p, m, part);
    return;
  }
  /* a suspect (possibly an already rejected one whose result was refused with
   * others'): commit the commands before it, then it alone in its own
   * transaction, so a refusal now names it for certain */
  esk_error_t e = {0};
  int64_t aborts = p->st.aborts;
  if (p->in_txn && esk_prod_finish_batch(p, 1, &e)) {
    esk_watchdog_fatal(&p->health->fatal, &e);
    return;
  }
  if (p->st.aborts != aborts) return; /* rewound: this command comes again */
  handle_one(p, m, part);
  if (!p->in_txn || esk_prod_fatal(p)) return;
  p->batch_isolated = 1;
  if (esk_prod_finish_batch(p, 1, &e)) esk_watchdog_fatal(&p->health->fatal, &e);
}
