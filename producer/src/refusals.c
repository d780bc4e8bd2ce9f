/* The refusal state machine (refusals.h; docs/producer.md, "Unpublishable
 * commands"). */
#include "refusals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/buf.h"

void esk_refusals_free(esk_refusals_t *r) {
  free(r->refused);
  free(r->verdicts);
  memset(r, 0, sizeof(*r));
}

int esk_refusals_permanent(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
         e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
         e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE || e == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

const char *esk_refusals_human_bytes(char *buf, size_t size, size_t n) {
  if (n < 10000)
    snprintf(buf, size, "%zu bytes", n);
  else if (n < 10000000)
    snprintf(buf, size, "%.1f kB", (double)n / 1e3);
  else
    snprintf(buf, size, "%.1f MB", (double)n / 1e6);
  return buf;
}

void esk_refusals_reason(char *buf, size_t size, const char *what, const char *topic, size_t len,
                         rd_kafka_resp_err_t e, int local) {
  char sz[32];
  esk_refusals_human_bytes(sz, sizeof(sz), len);
  if (local)
    snprintf(buf, size, "its %s of %s exceeds kafka.message.max.bytes (%s)", what, sz,
             rd_kafka_err2name(e));
  else if (e == RD_KAFKA_RESP_ERR_INVALID_RECORD)
    snprintf(buf, size, "the broker refused its %s of %s on topic %s as an invalid record (%s)",
             what, sz, topic, rd_kafka_err2name(e));
  else
    snprintf(buf, size, "its %s (a value of %s, plus key, headers and batch framing) exceeds "
             "the max.message.bytes of topic %s (the broker refused it: %s)", what, sz, topic,
             rd_kafka_err2name(e));
}

int esk_refusals_note(esk_refusals_t *r, size_t idx, const char *reason) {
  if (r->n_refused && r->refused[r->n_refused - 1].idx == idx) return 0;
  refusal_t *grown = esk_array_grow(r->refused, &r->refused_cap, r->n_refused + 1,
                                    sizeof(*r->refused), 64);
  if (!grown) return -1;
  r->refused = grown;
  refusal_t *f = &r->refused[r->n_refused++];
  f->idx = idx;
  snprintf(f->reason, sizeof(f->reason), "%s", reason);
  return 0;
}

verdict_t *esk_refusals_find(const esk_refusals_t *r, int32_t part, int64_t offset) {
  for (size_t i = 0; i < r->n_verdicts; i++)
    if (r->verdicts[i].part == part && r->verdicts[i].offset == offset) return &r->verdicts[i];
  return NULL;
}

verdict_t *esk_refusals_add(esk_refusals_t *r, int32_t part, int64_t offset) {
  verdict_t *v = esk_refusals_find(r, part, offset);
  if (v) return v;
  verdict_t *grown = esk_array_grow(r->verdicts, &r->verdicts_cap, r->n_verdicts + 1,
                                    sizeof(*r->verdicts), 64);
  if (!grown) return NULL;
  r->verdicts = grown;
  v = &r->verdicts[r->n_verdicts++];
  memset(v, 0, sizeof(*v));
  v->part = part;
  v->offset = offset;
  return v;
}

void esk_refusals_prune(esk_refusals_t *r, int32_t part, int64_t below) {
  size_t k = 0;
  for (size_t i = 0; i < r->n_verdicts; i++)
    if (r->verdicts[i].part != part || r->verdicts[i].offset >= below)
      r->verdicts[k++] = r->verdicts[i];
  r->n_verdicts = k;
}

/* Moves @p v one step forward: to suspect when the culprit is not @p certain,
 * else from suspect (or nothing) to reject, and from reject to skip. */
static void advance(verdict_t *v, int certain, const char *reason) {
  if (!certain) {
    v->state |= V_ALONE;
  } else if (v->state & V_REJECT) {
    v->state = V_SKIP;
    v->logged = 0;
  } else if (!(v->state & V_SKIP)) {
    v->state = V_REJECT;
    v->logged = 0;
    snprintf(v->reason, sizeof(v->reason), "%s", reason);
  }
}

void esk_refusals_judge(esk_refusals_t *r, const cmd_ref_t *cmds, int isolated) {
  int certain = 1;
  if (!isolated)
    for (size_t i = 1; i < r->n_refused; i++)
      if (r->refused[i].idx != r->refused[0].idx) certain = 0;
  r->round++;
  for (size_t i = 0; i < r->n_refused; i++) {
    const cmd_ref_t *c = &cmds[r->refused[i].idx - 1];
    verdict_t *v = esk_refusals_add(r, c->part, c->offset);
    if (!v || v->round == r->round) continue; /* out of memory, or judged already */
    v->round = r->round;
    advance(v, certain, r->refused[i].reason);
  }
  r->n_refused = 0;
}
