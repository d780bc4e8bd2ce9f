/* The machinery the bank projections share (bank_projection.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bank_projection.h"
#include "esk/pg.h"
#include "store.h"

/* Room for the rows of a batch (event_log rows carry the JSON payload). */
#define COPY_BUFFER_MAX ((size_t)512 << 20)

typedef struct inst_s {
  const esk_bank_proj_spec_t *spec;
  esk_copy_t copy;
  esk_buf_t scratch;
  esk_bank_event_t bank; /* the bank event being applied */
  esk_bank_event_reader_t reader; /* where its fields sit */
  esk_bank_bytes_t bytes;         /* or the event read from its bytes */
  esk_hmap_t *folds;     /* the batch's accumulators (spec->fold), or NULL */
} inst_t;

/* The staging table, if the spec has one, before its COPY starts. */
static int stage(inst_t *in, PGconn *pg, esk_error_t *err) {
  if (!in->spec->stage_sql || in->copy.streaming) return ESK_OK;
  return esk_pg_exec(NULL, pg, "create staging table", in->spec->stage_sql, 0, NULL, err);
}

static int too_big(const inst_t *in, esk_error_t *err) {
  return esk_error_set(err, ESK_ENOMEM, "%s: the batch's rows exceed %zu bytes", in->spec->name,
                       COPY_BUFFER_MAX);
}

#define FOLDS_START 1024 /* keys the accumulator map is first sized for */
#define FOLD_SIZE_MAX 1024 /* largest accumulator (spec->fold_size) */

int esk_bank_fold_acc(esk_hmap_t *m, const void *key, size_t key_len, void **acc, int *added,
                      esk_error_t *err) {
  static const unsigned char zero[FOLD_SIZE_MAX];
  *added = 0;
  if ((*acc = esk_hmap_get(m, key, key_len))) return ESK_OK;
  return esk_hmap_put(m, key, key_len, zero, acc, added, err);
}

/* The event into its key's accumulator (spec->fold). */
static int fold(inst_t *in, const esk_event_t *ev, esk_error_t *err) {
  int rc;
  if (!in->folds &&
      (rc = esk_hmap_new(&in->folds, in->spec->fold_size, FOLDS_START, 0, err)))
    return rc;
  return in->spec->fold(in->folds, ev, &in->bank, err);
}

static int fold_row(const void *key, size_t key_len, void *acc, void *ctx) {
  inst_t *in = ctx;
  in->spec->fold_row(&in->copy, key, key_len, acc);
  return 0;
}

/* Each key's row, then the accumulators are gone. */
static void folds_write(inst_t *in) {
  if (!in->folds) return;
  esk_hmap_foreach(in->folds, fold_row, in);
  esk_hmap_destroy(in->folds);
  in->folds = NULL;
}

static int apply_cb(void *self, PGconn *pg, const esk_event_t *ev, esk_error_t *err) {
  inst_t *in = self;
  int rc = in->spec->any_domain || ev->payload == &in->bank
               ? ESK_OK
               : esk_bank_event_from_value(&in->bank, &in->reader, ev->type, ev->value, err);
  if (rc == ESK_OK && in->spec->fold) return fold(in, ev, err);
  if (rc == ESK_OK)
    rc = in->spec->rows(&in->copy, &in->scratch, ev, in->spec->any_domain ? NULL : &in->bank,
                        err);
  if (rc == ESK_OK && in->copy.failed) rc = too_big(in, err);
  /* streamed in parts while the batch is applied (docs/projector.md, "A
   * batch's rows are streamed") */
  if (rc == ESK_OK && in->copy.buf.len >= ESK_COPY_STREAM_BYTES &&
      !(rc = stage(in, pg, err)))
    rc = esk_copy_stream(&in->copy, pg, in->spec->name, in->spec->copy_sql, err);
  return rc;
}

static int batch_end_cb(void *self, PGconn *pg, esk_error_t *err) {
  inst_t *in = self;
  int rc;
  folds_write(in);
  if (in->copy.failed) {
    esk_copy_abort(&in->copy);
    return too_big(in, err);
  }
  if (!in->copy.rows) return ESK_OK;
  if ((rc = stage(in, pg, err))) {
    esk_copy_abort(&in->copy);
    return rc;
  }
  if ((rc = esk_copy_send(&in->copy, pg, in->spec->name, in->spec->copy_sql, err))) return rc;
  if (in->spec->merge_sql)
    return esk_pg_exec(NULL, pg, in->spec->name, in->spec->merge_sql, 0, NULL, err);
  return ESK_OK;
}

int esk_bank_ids_param(esk_buf_t *b, const char *const *ids, size_t n, esk_error_t *err) {
  int rc = ESK_OK;
  esk_buf_reset(b);
  for (size_t i = 0; i < n && !rc; i++) rc = esk_store_array_add(b, ids[i], strlen(ids[i]));
  if (rc || esk_store_array_end(b))
    return esk_error_set(err, ESK_ENOMEM, "out of memory for %zu aggregate ids", n);
  return ESK_OK;
}

int esk_bank_event_id_check(const char *projection, const esk_event_t *ev, esk_error_t *err) {
  if (esk_copy_uuid_binary_ok(ev->event_id)) return ESK_OK;
  return esk_error_set(err, ESK_EPOISON,
                       "%s: event id \"%.64s\" of %s is not a uuid (PostgreSQL would refuse it: "
                       "SQLSTATE 22P02)",
                       projection, ev->event_id ? ev->event_id : "(none)", ev->type);
}

int esk_bank_versions_read(PGconn *pg, const char *sql, esk_buf_t *scratch,
                           const char *const *ids, size_t n, int64_t *versions, esk_error_t *err) {
  int rc = ESK_OK;
  PGresult *r = NULL;
  for (size_t i = 0; i < n; i++) versions[i] = 0;
  if (!n) return ESK_OK;
  if ((rc = esk_bank_ids_param(scratch, ids, n, err))) return rc;
  const char *params[] = {(const char *)scratch->data};
  if ((rc = esk_pg_exec(&r, pg, "read aggregate versions", sql, 1, params, err))) return rc;
  for (int row = 0; row < PQntuples(r); row++) {
    long long i = strtoll(PQgetvalue(r, row, 0), NULL, 10);
    if (i >= 0 && (size_t)i < n && !PQgetisnull(r, row, 1))
      versions[i] = strtoll(PQgetvalue(r, row, 1), NULL, 10);
  }
  PQclear(r);
  return ESK_OK;
}

static int versions_get_cb(void *self, PGconn *pg, const char *const *ids, size_t n,
                           int64_t *versions, esk_error_t *err) {
  inst_t *in = self;
  return esk_bank_versions_read(pg, in->spec->versions_sql, &in->scratch, ids, n, versions, err);
}

static void batch_abort_cb(void *self) {
  inst_t *in = self;
  esk_copy_abort(&in->copy);
  esk_hmap_destroy(in->folds);
  in->folds = NULL;
}

static int forget_cb(void *self, PGconn *pg, const char *subject,
                     const esk_personal_mark_t *marks, size_t n_marks, esk_error_t *err) {
  inst_t *in = self;
  return in->spec->forget(pg, &in->scratch, subject, marks, n_marks, err);
}

int esk_bank_bytes_setup(esk_bank_bytes_t *b, const esk_contract_view_t *contract,
                         esk_error_t *err) {
  esk_schema_set_t *set = NULL;
  esk_codec_t *codec = NULL;
  int rc;
  snprintf(b->domain, sizeof(b->domain), "%s", contract->domain);
  if ((rc = esk_schema_set_new(&set, err)) || (rc = esk_bank_schemas_load(set, err)) ||
      (rc = esk_codec_new(&codec, set, NULL, err)) ||
      (rc = esk_bank_register_upcasters(codec, err)) ||
      (rc = esk_bank_event_bytes_init(&b->eb, set, codec, err)))
    goto cleanup;
  esk_bank_event_bytes_keep(&b->eb, contract->fingerprint, contract->latest, contract->self);
  b->eb.max_message = contract->max_message_bytes;
  b->eb.max_string = contract->max_string_bytes;
  rc = esk_bank_event_bytes_count(&b->eb) ? ESK_OK : ESK_ENOTFOUND;
cleanup:
  esk_codec_destroy(codec);
  esk_schema_set_destroy(set);
  return rc;
}

int esk_bank_bytes_decode(esk_bank_bytes_t *b, esk_bank_event_t *bank, const void *data,
                          size_t len, esk_event_t *ev) {
  const esk_bank_event_read_meta_t *m = &b->meta;
  if (esk_bank_event_bytes_read(&b->eb, data, len, bank, &b->meta)) return ESK_ENOTFOUND;
  *ev = (esk_event_t){.type = m->type,
                      .schema_version = m->schema_version,
                      .value_version = m->value_version,
                      .domain = b->domain,
                      .aggregate_type = m->aggregate_type,
                      .aggregate_id = bank->account_id,
                      .aggregate_version = bank->aggregate_version,
                      .event_id = m->event_id,
                      .occurred_at_us = m->occurred_at_us,
                      .correlation_id = m->correlation_id,
                      .causation_id = m->causation_id,
                      .actor = m->actor,
                      .payload = bank};
  return ESK_OK;
}

void esk_bank_bytes_free(esk_bank_bytes_t *b) { esk_bank_event_bytes_free(&b->eb); }

static int decode_setup_cb(void *self, const esk_contract_view_t *contract, esk_error_t *err) {
  return esk_bank_bytes_setup(&((inst_t *)self)->bytes, contract, err);
}

static int decode_cb(void *self, const void *data, size_t len, esk_event_t *ev) {
  inst_t *in = self;
  return esk_bank_bytes_decode(&in->bytes, &in->bank, data, len, ev);
}

int esk_bank_proj_create(esk_projection_t *out, const esk_bank_proj_spec_t *spec,
                         esk_error_t *err) {
  if (spec->fold && spec->fold_size > FOLD_SIZE_MAX)
    return esk_error_set(err, ESK_EINVAL, "%s: accumulators of %zu bytes (at most %d)", spec->name,
                         spec->fold_size, FOLD_SIZE_MAX);
  inst_t *in = calloc(1, sizeof(*in));
  if (!in) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  in->spec = spec;
  esk_buf_init(&in->copy.buf, COPY_BUFFER_MAX);
  esk_copy_binary(&in->copy, spec->binary);
  esk_buf_init(&in->scratch, (size_t)64 << 20);
  *out = (esk_projection_t){.name = spec->name,
                            .migrations = spec->migrations,
                            .n_migrations = spec->n_migrations,
                            .apply = apply_cb,
                            .batch_end = batch_end_cb,
                            .batch_abort = batch_abort_cb,
                            .versions_get = spec->versions_sql ? versions_get_cb : NULL,
                            .self = in,
                            .needs_full_history = spec->needs_full_history,
                            .forget = spec->forget ? forget_cb : NULL,
                            .deferred_indexes = spec->deferred_indexes,
                            .versions_need_deferred = spec->versions_need_deferred,
                            /* versions_sql only reads */
                            .versions_cacheable = 1,
                            /* event_log's JSON needs the generic value */
                            .decode_setup = spec->any_domain ? NULL : decode_setup_cb,
                            .decode = spec->any_domain ? NULL : decode_cb};
  return ESK_OK;
}

void esk_bank_proj_destroy(void *self) {
  inst_t *in = self;
  if (!in) return;
  esk_copy_free(&in->copy);
  esk_buf_free(&in->scratch);
  esk_hmap_destroy(in->folds);
  esk_bank_event_reader_clear(&in->reader);
  esk_bank_bytes_free(&in->bytes);
  free(in);
}
