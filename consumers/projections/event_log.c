/* event_log: every event of any domain, COPYed straight into the table:
 * metadata columns, where it was read from, and the payload (the event's
 * fields other than its metadata, at the latest version) as JSONB. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_projection.h"
#include "esk/pg.h"

static const char *const migrations[] = {
    "create table event_log ("
    "  aggregate_id text not null,"
    "  aggregate_version bigint not null check (aggregate_version > 0),"
    "  aggregate_type text not null,"
    "  event_id uuid not null,"
    "  event_type text not null,"
    "  schema_version int not null,"
    "  occurred_at timestamptz not null,"
    "  correlation_id text not null,"
    "  causation_id text not null,"
    "  actor text not null,"
    "  kafka_topic text not null,"
    "  kafka_partition int not null,"
    "  kafka_offset bigint not null,"
    "  payload jsonb not null,"
    "  primary key (aggregate_id, aggregate_version));"
    "create index event_log_occurred_at on event_log (occurred_at);",
};

/* Rows go in PostgreSQL's binary COPY format (the spec's .binary): it parses
 * no uuid, number or time (docs/benchmarks.md, "Binary COPY for event_log").
 * An event id that is no uuid, which PostgreSQL's text input would refuse
 * too, is dead-lettered here, before the batch is sent. */
static int rows(esk_copy_t *c, esk_buf_t *json, const esk_event_t *ev,
                const esk_bank_event_t *b, esk_error_t *err) {
  (void)b; /* any domain: the esk_event_t alone */
  int rc = esk_bank_event_id_check("event_log", ev, err);
  if (rc) return rc;
  esk_buf_reset(json);
  /* The payload is the event's own fields; its metadata are the columns. */
  rc = ev->value ? esk_value_json_append(json, ev->value, "meta", err)
                     : esk_error_set(err, ESK_EPOISON, "%s: no decoded value", ev->type);
  if (rc) {
    if (!err || !err->msg[0])
      esk_error_set(err, rc, "event_log: the payload JSON of %s does not fit", ev->event_id);
    return rc == ESK_ENOMEM ? rc : ESK_EPOISON;
  }
  esk_copy_text(c, ev->aggregate_id, -1);
  esk_copy_i64(c, ev->aggregate_version);
  esk_copy_text(c, ev->aggregate_type, -1);
  esk_copy_uuid(c, ev->event_id);
  esk_copy_text(c, ev->type, -1);
  esk_copy_i32(c, ev->schema_version);
  esk_copy_ts_us(c, ev->occurred_at_us);
  esk_copy_text(c, ev->correlation_id, -1);
  esk_copy_text(c, ev->causation_id, -1);
  esk_copy_text(c, ev->actor, -1);
  esk_copy_text(c, ev->topic, -1);
  esk_copy_i32(c, ev->partition);
  esk_copy_i64(c, ev->offset);
  esk_copy_jsonb(c, (const char *)json->data, (long)json->len);
  esk_copy_row_end(c);
  return ESK_OK;
}

/* The personal fields of marks[from, *end) (one event type and subject field)
 * as one JSON object of their replacements, into @p b: {"f": <forgotten>, ...}. */
static int replacements(esk_buf_t *b, const esk_personal_mark_t *marks, size_t n, size_t from,
                        size_t *end, esk_error_t *err) {
  const esk_personal_mark_t *m0 = &marks[from];
  int rc = esk_buf_append(b, "{", 1, err);
  size_t i = from;
  for (; i < n && !rc && !strcmp(marks[i].event_type, m0->event_type) &&
         !strcmp(marks[i].subject_field, m0->subject_field);
       i++) {
    const esk_personal_mark_t *m = &marks[i];
    if (i > from) rc = esk_buf_append(b, ",", 1, err);
    /* field names are Avro names ([A-Za-z_][A-Za-z0-9_]*): nothing to escape */
    if (!rc) rc = esk_buf_append(b, "\"", 1, err);
    if (!rc) rc = esk_buf_append(b, m->field, strlen(m->field), err);
    if (!rc) rc = esk_buf_append(b, "\":", 2, err);
    if (!rc) rc = esk_buf_append(b, m->forgotten_json, strlen(m->forgotten_json), err);
  }
  if (!rc) rc = esk_buf_append(b, "}", 2, err); /* with the NUL */
  *end = i;
  return rc;
}

/* A forgotten subject: in the payloads of its events (found by the subject
 * field the marks name), each personal field takes its replacement. Rows
 * already scrubbed are left alone, so a second run writes nothing. */
static int forget(PGconn *pg, esk_buf_t *scratch, const char *subject,
                  const esk_personal_mark_t *marks, size_t n_marks, esk_error_t *err) {
  int rc = ESK_OK;
  for (size_t i = 0, end = 0; i < n_marks && !rc; i = end) {
    esk_buf_reset(scratch);
    if ((rc = replacements(scratch, marks, n_marks, i, &end, err))) break;
    const char *params[] = {marks[i].event_type, marks[i].subject_field, subject,
                            (const char *)scratch->data};
    rc = esk_pg_exec(NULL, pg, "event_log: scrub a forgotten subject",
                     "update event_log set payload = payload || $4::jsonb"
                     " where event_type = $1 and payload->>$2 = $3"
                     " and not payload @> $4::jsonb",
                     4, params, err);
  }
  return rc;
}

/* Both wait in a fill from scratch. The version guard reads the primary key
 * (versions_sql), so until it is built the runtime keeps the guard's versions
 * in esk_projection_versions (.versions_need_deferred): a B-tree insert per
 * row was about 3 s of PostgreSQL's time per million rows, the build at the
 * end 0.8 s (docs/benchmarks.md, "event_log's primary key"). */
static const char *const deferred[] = {"event_log_pkey", "event_log_occurred_at", NULL};

const esk_bank_proj_spec_t esk_bank_event_log_spec = {
    .name = "event_log",
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(*migrations),
    .stage_sql = NULL,
    .copy_sql = "copy event_log (aggregate_id, aggregate_version, aggregate_type, event_id,"
                " event_type, schema_version, occurred_at, correlation_id, causation_id, actor,"
                " kafka_topic, kafka_partition, kafka_offset, payload) from stdin",
    .merge_sql = NULL,
    /* Every event is a row: its highest version per aggregate is the guard. */
    .versions_sql = "select x.ord - 1, (select max(aggregate_version) from event_log e"
                    " where e.aggregate_id = x.id) from unnest($1::text[]) with ordinality"
                    " as x(id, ord)",
    .rows = rows,
    .forget = forget,
    .any_domain = 1,
    .binary = 1,
    .deferred_indexes = deferred,
    .versions_need_deferred = 1,
};
