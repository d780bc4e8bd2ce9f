/* event_log: every event, COPYed straight into the table: metadata columns,
 * where it was read from, and the payload at the latest version as JSONB. */
#include <stdlib.h>

#include "bank_projection.h"

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

static int rows(esk_copy_t *c, const esk_event_t *ev, const esk_bank_event_t *b,
                esk_error_t *err) {
  char *json = NULL;
  int rc = esk_value_to_json(b->value, &json, err);
  if (rc) return rc == ESK_ENOMEM ? rc : ESK_EPOISON;
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
  esk_copy_text(c, json, -1);
  esk_copy_row_end(c);
  free(json);
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
    .rows = rows,
};
