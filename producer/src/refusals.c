/* The refusal state machine: messages Kafka refused for good, and the
 * verdicts (alone, reject, skip) that follow their command across aborts
 * until its offset commits (docs/producer.md, "Unpublishable commands"). */
#include "producer_int.h"

/* Errors that no retry of the same message cures: the broker (or the client)
 * refuses the record itself, so redoing the batch as it was would loop. */
int esk_prod_permanent_error(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
         e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
         e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE || e == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

const char *esk_prod_human_bytes(char *buf, size_t size, size_t n) {
  if (n < 10000)
    snprintf(buf, size, "%zu bytes", n);
  else if (n < 10000000)
    snprintf(buf, size, "%.1f kB", (double)n / 1e3);
  else
    snprintf(buf, size, "%.1f MB", (double)n / 1e6);
  return buf;
}

/* Notes that Kafka refused for good a message of the command whose delivery
 * opaque is @p idx; esk_prod_finish_batch() turns the batch's refusals into verdicts.
 * @p local: refused by producev (kafka.message.max.bytes), not by the broker. */
void esk_prod_note_refusal(esk_producer_t *p, uintptr_t idx, rd_kafka_topic_t *rkt, size_t len,
                           rd_kafka_resp_err_t e, int local) {
  if (idx == 0 || idx > (uintptr_t)p->batch_n) return; /* no command's (a checkpoint) */
  if (p->n_refused && p->refused[p->n_refused - 1].idx == idx) return;
  refusal_t *grown = esk_array_grow(p->refused, &p->refused_cap, p->n_refused + 1,
                                    sizeof(*p->refused), 64);
  if (!grown) return; /* unattributed: the batch is redone as before, with backoff */
  p->refused = grown;
  refusal_t *r = &p->refused[p->n_refused++];
  r->idx = idx;
  const char *what = rkt == p->rkt_ev ? "event" : rkt == p->rkt_res ? "result" : "snapshot";
  char sz[32];
  esk_prod_human_bytes(sz, sizeof(sz), len);
  if (local)
    snprintf(r->reason, sizeof(r->reason), "its %s of %s exceeds kafka.message.max.bytes (%s)",
             what, sz, rd_kafka_err2name(e));
  else if (e == RD_KAFKA_RESP_ERR_INVALID_RECORD)
    snprintf(r->reason, sizeof(r->reason), "the broker refused its %s of %s on topic %s as an "
             "invalid record (%s)", what, sz, rd_kafka_topic_name(rkt), rd_kafka_err2name(e));
  else
    snprintf(r->reason, sizeof(r->reason), "its %s (a value of %s, plus key, headers and "
             "batch framing) exceeds the max.message.bytes of topic %s (the broker refused it: "
             "%s)", what, sz, rd_kafka_topic_name(rkt), rd_kafka_err2name(e));
}

verdict_t *esk_prod_find_verdict(esk_producer_t *p, int32_t part, int64_t offset) {
  for (size_t i = 0; i < p->n_verdicts; i++)
    if (p->verdicts[i].part == part && p->verdicts[i].offset == offset) return &p->verdicts[i];
  return NULL;
}

verdict_t *esk_prod_add_verdict(esk_producer_t *p, int32_t part, int64_t offset) {
  verdict_t *v = esk_prod_find_verdict(p, part, offset);
  if (v) return v;
  verdict_t *grown = esk_array_grow(p->verdicts, &p->verdicts_cap, p->n_verdicts + 1,
                                    sizeof(*p->verdicts), 64);
  if (!grown) return NULL;
  p->verdicts = grown;
  v = &p->verdicts[p->n_verdicts++];
  memset(v, 0, sizeof(*v));
  v->part = part;
  v->offset = offset;
  return v;
}

/* Forgets the verdicts of @p part below @p below: committed, or the partition is gone. */
void esk_prod_prune_verdicts(esk_producer_t *p, int32_t part, int64_t below) {
  size_t k = 0;
  for (size_t i = 0; i < p->n_verdicts; i++)
    if (p->verdicts[i].part != part || p->verdicts[i].offset >= below)
      p->verdicts[k++] = p->verdicts[i];
  p->n_verdicts = k;
}

/* After an abort: the batch's refusals become verdicts. The culprit is certain
 * when one command's messages were refused, or the batch held one command
 * alone; several commands refused together shared a record batch, which may
 * hold innocent ones, so each is redone alone to find out. A command moves
 * only forward (alone, reject, skip): at most three aborts each. */
void esk_prod_judge_refusals(esk_producer_t *p) {
  int certain = 1;
  if (!p->batch_isolated)
    for (size_t i = 1; i < p->n_refused; i++)
      if (p->refused[i].idx != p->refused[0].idx) certain = 0;
  p->judge_round++;
  for (size_t i = 0; i < p->n_refused; i++) {
    const cmd_ref_t *c = &p->cmds[p->refused[i].idx - 1];
    verdict_t *v = esk_prod_add_verdict(p, c->part, c->offset);
    if (!v || v->round == p->judge_round) continue; /* out of memory, or judged already */
    v->round = p->judge_round;
    if (!certain) {
      v->state |= V_ALONE;
    } else if (v->state & V_REJECT) {
      v->state = V_SKIP;
      v->logged = 0;
    } else if (!(v->state & V_SKIP)) {
      v->state = V_REJECT;
      v->logged = 0;
      snprintf(v->reason, sizeof(v->reason), "%s", p->refused[i].reason);
    }
  }
  p->n_refused = 0;
}
