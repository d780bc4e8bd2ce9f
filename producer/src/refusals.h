/**
 * @file refusals.h
 * @brief The refusal state machine of esk-producer (docs/producer.md,
 *        "Unpublishable commands"): the messages of an open batch that Kafka
 *        refused for good, and the verdict each refused command carries
 *        across the aborts and redos that follow, until its offset commits.
 *
 * A command moves only forward: suspect (redo it alone, V_ALONE), then known
 * culprit (answer UNPUBLISHABLE instead of publishing, V_REJECT), then skip
 * (even its rejection was refused: consume it without a result, V_SKIP); so
 * it costs at most three aborts. No Kafka client in here: the producer feeds
 * it delivery errors and batch boundaries, and tests drive it alone
 * (tests/unit/test_producer_refusals.c). Internal to esk-producer.
 */
#ifndef ESK_PRODUCER_REFUSALS_H
#define ESK_PRODUCER_REFUSALS_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "results.h"

/* The open batch's commands in handling order; a message's delivery opaque is
 * its command's index + 1 (0: no command, e.g. a checkpoint). */
typedef struct cmd_ref_s {
  int32_t part;
  int64_t offset;
} cmd_ref_t;

enum {
  V_ALONE = 1,  /* one of several commands in a refused record batch: redo it alone */
  V_REJECT = 2, /* known culprit: answer UNPUBLISHABLE instead of publishing events */
  V_SKIP = 4,   /* even its rejection was refused: consume it without a result */
};

/* A command whose messages Kafka refused for good (too large, invalid), kept
 * across the abort and rewind that follow until its offset commits. */
typedef struct verdict_s {
  int32_t part;
  int64_t offset;
  int state, logged;
  int64_t round; /* esk_refusals_judge() round that last judged it */
  char reason[ESK_RESULT_MSG_MAX - 32];
} verdict_t;

/* A refused message of the open batch: its command and why. */
typedef struct refusal_s {
  size_t idx; /* command index + 1 */
  char reason[ESK_RESULT_MSG_MAX - 32];
} refusal_t;

/** The state machine; zero-initialised is empty. */
typedef struct esk_refusals_s {
  refusal_t *refused; /* refusals of the open batch */
  size_t n_refused, refused_cap;
  verdict_t *verdicts; /* refused commands not yet committed */
  size_t n_verdicts, verdicts_cap;
  int64_t round; /* judgements so far */
} esk_refusals_t;

/** Frees what @p r holds and empties it. */
void esk_refusals_free(esk_refusals_t *r);

/** 1 for errors that no retry of the same message cures: the broker (or the
 *  client) refuses the record itself, so redoing the batch as it was would loop. */
int esk_refusals_permanent(rd_kafka_resp_err_t e);

/** "123 bytes", "45.6 kB" or "7.8 MB" into @p buf; returns @p buf. */
const char *esk_refusals_human_bytes(char *buf, size_t size, size_t n);

/** Why a @p what ("event", "result", "snapshot") message of @p len bytes for
 *  @p topic was refused with @p e, into @p buf. @p local: refused by the client
 *  (kafka.message.max.bytes), not by the broker. */
void esk_refusals_reason(char *buf, size_t size, const char *what, const char *topic, size_t len,
                         rd_kafka_resp_err_t e, int local);

/** Notes that a message of the open batch's command @p idx (index + 1) was
 *  refused for @p reason; a second refusal of the same command in a row is
 *  one. @returns 0, or -1 out of memory (the refusal is then unattributed: the
 *  batch is redone as before, with backoff). */
int esk_refusals_note(esk_refusals_t *r, size_t idx, const char *reason);

/** The verdict of the command at @p part / @p offset, or NULL. */
verdict_t *esk_refusals_find(const esk_refusals_t *r, int32_t part, int64_t offset);

/** The verdict of the command at @p part / @p offset, added (state 0) when
 *  there is none; NULL out of memory. */
verdict_t *esk_refusals_add(esk_refusals_t *r, int32_t part, int64_t offset);

/** Forgets the verdicts of @p part below @p below: committed, or the
 *  partition is gone. */
void esk_refusals_prune(esk_refusals_t *r, int32_t part, int64_t below);

/** After an abort: the batch's refusals become verdicts, and are forgotten.
 *  @p cmds are the batch's commands (a refusal's idx - 1 indexes them);
 *  @p isolated: the batch held one suspect command alone. The culprit is
 *  certain when one command's messages were refused, or the batch was
 *  isolated; several commands refused together shared a record batch, which
 *  may hold innocent ones, so each is to be redone alone. Each command is
 *  judged once per call. */
void esk_refusals_judge(esk_refusals_t *r, const cmd_ref_t *cmds, int isolated);

#endif
