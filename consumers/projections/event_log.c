/* event_log: every event, COPYed straight into the table: metadata columns,
 * where it was read from, and the payload (the event's fields other than its
 * metadata, at the latest version) as JSONB. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_projection.h"
#include "esk/text.h"

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

/* JSON for the payload, written straight into a buffer: a fast path for the
 * types events are made of (records, strings, longs, ints, booleans, null,
 * unions); any other type is written by the codec's esk_value_to_json(). */
static int json_value(esk_buf_t *b, const avro_value_t *v, const char *skip, esk_error_t *err) {
  char t[32];
  switch (avro_value_get_type(v)) {
  case AVRO_NULL: return esk_buf_append(b, "null", 4, err);
  case AVRO_BOOLEAN: {
    int x = 0;
    avro_value_get_boolean(v, &x);
    return esk_buf_append(b, x ? "true" : "false", x ? 4 : 5, err);
  }
  case AVRO_INT32: {
    int32_t x = 0;
    avro_value_get_int(v, &x);
    return esk_buf_append(b, t, (size_t)snprintf(t, sizeof(t), "%" PRId32, x), err);
  }
  case AVRO_INT64: {
    int64_t x = 0;
    avro_value_get_long(v, &x);
    return esk_buf_append(b, t, (size_t)snprintf(t, sizeof(t), "%" PRId64, x), err);
  }
  case AVRO_STRING: {
    const char *s = NULL;
    size_t n = 0;
    avro_value_get_string(v, &s, &n);
    return esk_text_json_buf(b, s ? s : "", n ? n - 1 : 0, NULL);
  }
  case AVRO_UNION: {
    avro_value_t branch;
    if (avro_value_get_current_branch(v, &branch))
      return esk_error_set(err, ESK_EPOISON, "a union without a branch");
    return json_value(b, &branch, NULL, err);
  }
  case AVRO_RECORD: {
    size_t n = 0;
    int rc = esk_buf_append(b, "{", 1, err), first = 1;
    avro_value_get_size(v, &n);
    for (size_t i = 0; i < n && !rc; i++) {
      avro_value_t f;
      const char *name = NULL;
      avro_value_get_by_index(v, i, &f, &name);
      if (skip && !strcmp(name, skip)) continue;
      if (!first) rc = esk_buf_append(b, ",", 1, err);
      first = 0;
      if (!rc) rc = esk_text_json_buf(b, name, strlen(name), NULL);
      if (!rc) rc = esk_buf_append(b, ":", 1, err);
      if (!rc) rc = json_value(b, &f, NULL, err);
    }
    return rc ? rc : esk_buf_append(b, "}", 1, err);
  }
  default: {
    char *json = NULL;
    int rc = esk_value_to_json(v, &json, err);
    if (!rc) rc = esk_buf_append(b, json, strlen(json), err);
    free(json);
    return rc;
  }
  }
}

static int rows(esk_copy_t *c, esk_buf_t *json, const esk_event_t *ev,
                const esk_bank_event_t *b, esk_error_t *err) {
  esk_buf_reset(json);
  /* The payload is the event's own fields; its metadata are the columns. */
  int rc = json_value(json, b->value, "meta", err);
  if (!rc) rc = esk_buf_append(json, "", 1, err);
  if (rc) {
    if (!err || !err->msg[0])
      esk_error_set(err, rc, "event_log: the payload JSON of %s does not fit", ev->event_id);
    return rc == ESK_ENOMEM ? rc : ESK_EPOISON;
  }
  esk_copy_text(c, ev->aggregate_id, -1);
  esk_copy_i64(c, ev->aggregate_version);
  esk_copy_text(c, b->aggregate_type, -1);
  esk_copy_text(c, ev->event_id, -1);
  esk_copy_text(c, b->type, -1);
  esk_copy_i64(c, b->writer_version);
  esk_copy_ts_us(c, ev->occurred_at_us);
  esk_copy_text(c, b->correlation_id, -1);
  esk_copy_text(c, b->causation_id, -1);
  esk_copy_text(c, b->actor, -1);
  esk_copy_text(c, ev->topic, -1);
  esk_copy_i64(c, ev->partition);
  esk_copy_i64(c, ev->offset);
  esk_copy_text(c, (const char *)json->data, (long)json->len - 1);
  esk_copy_row_end(c);
  return ESK_OK;
}

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
};
