/* Internal: the machinery the bank projections share (bank_projection.c; not
 * a public header). The registry of projections (projections.h) uses it;
 * it does not use the registry. */
#ifndef ESK_BANK_PROJECTION_H
#define ESK_BANK_PROJECTION_H

#include "bank_contract.h" /* esk_bank_event_t, the type both sides share */
#include "bank_event_bytes.h"
#include "copy.h"
#include "esk/hmap.h"
#include "projector.h"

/* A projection that writes each batch as rows COPYed into a staging table
 * (or the model's table), then merged with one statement. */
typedef struct esk_bank_proj_spec_s {
  const char *name;
  const char *const *migrations;
  size_t n_migrations;
  const char *stage_sql; /* creates the temp staging table if missing; NULL: none */
  const char *copy_sql;  /* copy <table> (<columns>) from stdin */
  const char *merge_sql; /* staging table -> read model; NULL: none */
  /* NULL, or the projection keeps its version guard itself: this query takes
   * the batch's aggregate ids as $1 (text[]) and returns (index in $1 from 0,
   * last applied version) for those it has; its merge stores every event's. */
  const char *versions_sql;
  /* Appends the rows for one event (zero or more); @p scratch is the
   * instance's to use (kept between calls); @p b is the bank event
   * (esk_bank_event_from_value()), NULL for an any_domain projection. */
  int (*rows)(esk_copy_t *c, esk_buf_t *scratch, const esk_event_t *ev, const esk_bank_event_t *b,
              esk_error_t *err);
  /* Optional, instead of rows: the batch's events are folded in memory into
   * one accumulator of fold_size bytes per key (zeroed when the key is new;
   * fold() finds or adds it in @p m), and at the batch's end fold_row()
   * writes each key's row. A merge then reads one row per key instead of one
   * per event (docs/projector.md, "Set-based writes"). */
  size_t fold_size;
  int (*fold)(esk_hmap_t *m, const esk_event_t *ev, const esk_bank_event_t *b, esk_error_t *err);
  void (*fold_row)(esk_copy_t *c, const void *key, size_t key_len, const void *acc);
  /* NULL, or esk_projection_t.forget, with the instance's scratch buffer */
  int (*forget)(PGconn *pg, esk_buf_t *scratch, const char *subject,
                const esk_personal_mark_t *marks, size_t n_marks, esk_error_t *err);
  int needs_full_history; /* esk_projection_t.needs_full_history */
  int binary;             /* rows in binary COPY format (copy.h): exact column types */
  int versions_need_deferred; /* esk_projection_t's: event_log */
  int any_domain;         /* reads only the domain-neutral esk_event_t (event_log) */
  const char *const *deferred_indexes; /* esk_projection_t.deferred_indexes */
} esk_bank_proj_spec_t;

/* A spec's fold(): the accumulator of @p key in @p m, added zeroed when new
 * (*added 1 then); ESK_ENOMEM or ESK_EINVAL (a key over the map's limit). */
int esk_bank_fold_acc(esk_hmap_t *m, const void *key, size_t key_len, void **acc, int *added,
                      esk_error_t *err);

/* The text[] literal of @p ids into @p b (reset first): a query's $1. */
int esk_bank_ids_param(esk_buf_t *b, const char *const *ids, size_t n, esk_error_t *err);

/* ESK_EPOISON naming the event id when binary COPY cannot write it as a uuid,
 * which PostgreSQL would refuse too (esk_copy_uuid_binary_ok()). */
int esk_bank_event_id_check(const char *projection, const esk_event_t *ev, esk_error_t *err);

/* Runs a versions_sql query (see above) for @p ids into @p versions (0 when
 * absent), building the text[] parameter in @p scratch. */
int esk_bank_versions_read(PGconn *pg, const char *sql, esk_buf_t *scratch,
                           const char *const *ids, size_t n, int64_t *versions, esk_error_t *err);

/* A bank projection's reading of events from their bytes
 * (esk_projection_t.decode, docs/projections.md): the bank's field-by-field
 * reader (bank_event_bytes.h), checked against the compiled-in contract and
 * kept to the schemas the decoder's contract holds alike. */
typedef struct esk_bank_bytes_s {
  esk_bank_event_bytes_t eb;
  esk_bank_event_read_meta_t meta; /* the last event's */
  char domain[72];
} esk_bank_bytes_t;

/* esk_projection_t.decode_setup: ESK_ENOTFOUND when no schema version is left. */
int esk_bank_bytes_setup(esk_bank_bytes_t *b, const esk_contract_view_t *contract,
                         esk_error_t *err);

/* esk_projection_t.decode, into the projection's own @p bank, which becomes
 * ev->payload: apply() knows its event is read when the payload is @p bank. */
int esk_bank_bytes_decode(esk_bank_bytes_t *b, esk_bank_event_t *bank, const void *data,
                          size_t len, esk_event_t *ev);

void esk_bank_bytes_free(esk_bank_bytes_t *b);

int esk_bank_proj_create(esk_projection_t *out, const esk_bank_proj_spec_t *spec,
                         esk_error_t *err);

void esk_bank_proj_destroy(void *self);

/* transaction_history computes balances in C: its own callbacks. Its spec
 * holds only the name and the migrations. */
int esk_bank_transaction_history_create(esk_projection_t *out, esk_error_t *err);
void esk_bank_transaction_history_destroy(void *self);

extern const esk_bank_proj_spec_t esk_bank_account_balances_spec;
extern const esk_bank_proj_spec_t esk_bank_transaction_history_spec;
extern const esk_bank_proj_spec_t esk_bank_daily_summaries_spec;
extern const esk_bank_proj_spec_t esk_bank_event_log_spec;

#endif
