/* The refusal state machine of esk-producer (producer/src/refusals.h), driven
 * alone: refused messages of a batch become verdicts after its abort, a
 * command moves only forward (alone, reject, skip), verdicts are pruned when
 * their offsets commit, and the reasons name the message, its size and topic. */
#include <criterion/criterion.h>
#include <string.h>

#include "refusals.h"

/* Three commands of one batch: partition 0 offsets 10 and 11, partition 1 offset 7. */
static const cmd_ref_t cmds[] = {{0, 10}, {0, 11}, {1, 7}};

/* One batch in which the command @p idx alone was refused, aborted and judged. */
static void refuse(esk_refusals_t *r, size_t idx, const char *reason, const cmd_ref_t *batch,
                   int isolated) {
  cr_assert_eq(esk_refusals_note(r, idx, reason), 0);
  esk_refusals_judge(r, batch, isolated);
}

/* One batch of cmds in which the commands @p a and @p b were refused. */
static void refuse_two(esk_refusals_t *r, size_t a, size_t b, int isolated) {
  cr_assert_eq(esk_refusals_note(r, a, "first"), 0);
  cr_assert_eq(esk_refusals_note(r, b, "second"), 0);
  esk_refusals_judge(r, cmds, isolated);
}

static int state_of(const esk_refusals_t *r, int32_t part, int64_t offset) {
  const verdict_t *v = esk_refusals_find(r, part, offset);
  return v ? v->state : -1;
}

Test(producer_refusals, a_lone_culprit_is_rejected_then_skipped) {
  esk_refusals_t r = {0};
  cr_assert_eq(esk_refusals_note(&r, 2, "its event of 2.0 MB exceeds it"), 0);
  cr_expect_eq(esk_refusals_note(&r, 2, "its result of 300 bytes"), 0); /* the same command */
  cr_expect_eq(r.n_refused, 1);
  esk_refusals_judge(&r, cmds, 0);
  cr_expect_eq(r.n_refused, 0, "the batch's refusals are forgotten once judged");
  cr_expect_eq(state_of(&r, 0, 11), V_REJECT);
  cr_expect_str_eq(esk_refusals_find(&r, 0, 11)->reason, "its event of 2.0 MB exceeds it");
  cr_expect_eq(state_of(&r, 0, 10), -1, "an innocent command has no verdict");
  /* the redo answers it UNPUBLISHABLE, and that result is refused too */
  esk_refusals_find(&r, 0, 11)->logged = 1;
  refuse(&r, 2, "its result of 20.0 MB", cmds, 0);
  cr_expect_eq(state_of(&r, 0, 11), V_SKIP);
  cr_expect_eq(esk_refusals_find(&r, 0, 11)->logged, 0, "a new state is logged again");
  /* skip is the last state */
  refuse(&r, 2, "again", cmds, 0);
  cr_expect_eq(state_of(&r, 0, 11), V_SKIP);
  esk_refusals_free(&r);
}

Test(producer_refusals, commands_refused_together_are_redone_alone_first) {
  esk_refusals_t r = {0};
  refuse_two(&r, 1, 3, 0);
  cr_expect_eq(state_of(&r, 0, 10), V_ALONE);
  cr_expect_eq(state_of(&r, 1, 7), V_ALONE);
  cr_expect_eq(state_of(&r, 0, 11), -1);
  /* the first redone alone: refused again, so it is the culprit */
  const cmd_ref_t alone[] = {{0, 10}};
  refuse(&r, 1, "its event of 1.5 MB", alone, 1);
  cr_expect_eq(state_of(&r, 0, 10), V_REJECT);
  cr_expect_str_eq(esk_refusals_find(&r, 0, 10)->reason, "its event of 1.5 MB");
  cr_expect_eq(state_of(&r, 1, 7), V_ALONE, "the other suspect waits for its own redo");
  esk_refusals_free(&r);
}

Test(producer_refusals, an_isolated_batch_names_its_culprit_for_certain) {
  esk_refusals_t r = {0};
  refuse_two(&r, 1, 2, 1);
  cr_expect_eq(state_of(&r, 0, 10), V_REJECT);
  cr_expect_str_eq(esk_refusals_find(&r, 0, 10)->reason, "first");
  cr_expect_eq(state_of(&r, 0, 11), V_REJECT);
  cr_expect_str_eq(esk_refusals_find(&r, 0, 11)->reason, "second");
  esk_refusals_free(&r);
}

Test(producer_refusals, a_command_refused_twice_in_one_batch_moves_one_step) {
  esk_refusals_t r = {0};
  esk_refusals_note(&r, 2, "event");
  esk_refusals_note(&r, 1, "other");
  esk_refusals_note(&r, 2, "result"); /* not in a row: noted again */
  cr_expect_eq(r.n_refused, 3);
  esk_refusals_judge(&r, cmds, 1);
  cr_expect_eq(state_of(&r, 0, 11), V_REJECT, "not skipped in the same round");
  cr_expect_str_eq(esk_refusals_find(&r, 0, 11)->reason, "event");
  esk_refusals_free(&r);
}

Test(producer_refusals, committed_or_revoked_verdicts_are_pruned_per_partition) {
  esk_refusals_t r = {0};
  for (int64_t o = 0; o < 200; o++) { /* past the first allocation */
    cr_assert(esk_refusals_add(&r, 0, o));
    cr_assert(esk_refusals_add(&r, 1, o));
  }
  cr_expect_eq(esk_refusals_add(&r, 0, 5), esk_refusals_find(&r, 0, 5), "added once");
  cr_expect_eq(r.n_verdicts, 400);
  esk_refusals_prune(&r, 0, 150);
  cr_expect_eq(r.n_verdicts, 250);
  cr_expect_null(esk_refusals_find(&r, 0, 149));
  cr_expect_not_null(esk_refusals_find(&r, 0, 150));
  cr_expect_not_null(esk_refusals_find(&r, 1, 0), "another partition's stay");
  esk_refusals_prune(&r, 1, INT64_MAX);
  cr_expect_eq(r.n_verdicts, 50);
  esk_refusals_free(&r);
  cr_expect_eq(r.n_verdicts, 0);
  cr_expect_null(esk_refusals_find(&r, 0, 150));
  esk_refusals_free(&r); /* twice: nothing left to free */
}

Test(producer_refusals, only_errors_no_retry_cures_are_permanent) {
  cr_expect(esk_refusals_permanent(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
  cr_expect(esk_refusals_permanent(RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE));
  cr_expect(esk_refusals_permanent(RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE));
  cr_expect(esk_refusals_permanent(RD_KAFKA_RESP_ERR_INVALID_RECORD));
  cr_expect_not(esk_refusals_permanent(RD_KAFKA_RESP_ERR_NO_ERROR));
  cr_expect_not(esk_refusals_permanent(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT));
  cr_expect_not(esk_refusals_permanent(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION));
  cr_expect_not(esk_refusals_permanent(RD_KAFKA_RESP_ERR__PURGE_QUEUE));
}

Test(producer_refusals, reasons_name_the_message_its_size_and_topic) {
  char b[512];
  esk_refusals_reason(b, sizeof(b), "event", "t.bank.events", 20000000,
                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 1);
  cr_expect(strstr(b, "its event of 20.0 MB exceeds kafka.message.max.bytes"), "%s", b);
  esk_refusals_reason(b, sizeof(b), "result", "t.bank.command-results", 123,
                      RD_KAFKA_RESP_ERR_INVALID_RECORD, 0);
  cr_expect(strstr(b, "refused its result of 123 bytes on topic t.bank.command-results as an "
                      "invalid record"), "%s", b);
  esk_refusals_reason(b, sizeof(b), "snapshot", "t.bank.snapshots", 45600,
                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0);
  cr_expect(strstr(b, "its snapshot (a value of 45.6 kB"), "%s", b);
  cr_expect(strstr(b, "max.message.bytes of topic t.bank.snapshots"), "%s", b);
  /* a small buffer truncates, never overruns */
  char small[16];
  memset(small, 'x', sizeof(small));
  esk_refusals_reason(small, 8, "event", "t", 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 1);
  cr_expect_eq(strlen(small), 7);
  cr_expect_eq(small[8], 'x');
  /* a reason longer than a verdict's is cut to fit */
  esk_refusals_t r = {0};
  char long_reason[4096];
  memset(long_reason, 'r', sizeof(long_reason) - 1);
  long_reason[sizeof(long_reason) - 1] = '\0';
  refuse(&r, 1, long_reason, cmds, 0);
  cr_expect_eq(strlen(esk_refusals_find(&r, 0, 10)->reason), sizeof(r.verdicts->reason) - 1);
  esk_refusals_free(&r);
}
