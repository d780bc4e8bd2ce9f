/* The projector's decoder for any domain (see domain_decoder.h). */
#include "domain_decoder.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/personal.h"
#include "esk/time.h"

/* The metadata every event carries, in its "meta" record. */
enum { META_FIELDS = 8 };
static const char *const meta_names[META_FIELDS] = {
    "event_id",    "aggregate_type", "aggregate_id", "aggregate_version",
    "occurred_at", "correlation_id", "causation_id", "actor"};

/* Where "meta" and its fields sit in one reader schema's records, found by
 * name once: a lookup by name hashes the name, and nine per event were about
 * a tenth of a projector's CPU (docs/benchmarks.md, "Meta fields by
 * position"). */
typedef struct meta_pos_s {
  const esk_schema_t *reader;
  int meta, field[META_FIELDS];
} meta_pos_t;

#define META_POS_MAX 64 /* reader schemas remembered; past them, found per event */

struct esk_domain_decoder_s {
  esk_schema_set_t *set;
  meta_pos_t pos[META_POS_MAX];
  size_t npos;
  esk_codec_t *codec;
  size_t max_bytes;
  char domain[72];
  /* personal data: NULL when off */
  esk_shred_t *shred;
  rd_kafka_t *keys_reader;
  char *keys_topic;
  int keys_timeout_ms;
  int64_t keys_next_ms; /* next read of the keys topic (destroyed keys, forgotten marks) */
  esk_personal_mark_t *marks; /* the personal fields of each type's latest schema */
  size_t n_marks;
  esk_forgets_t forgets;
  esk_contract_view_t view; /* for projections that read bytes (esk_decoder_t.contract) */
};

/* The personal fields of the latest schema of every type in d->set. */
static int collect_marks(esk_domain_decoder_t *d, esk_error_t *err) {
  size_t cap = 0;
  for (size_t i = 0; i < esk_schema_set_count(d->set); i++) {
    const esk_schema_t *s = esk_schema_set_at(d->set, i);
    size_t n = 0;
    const esk_personal_field_t *pf = esk_schema_personal(s, &n);
    if (!n || esk_schema_set_latest(d->set, esk_schema_type(s)) != s) continue;
    esk_personal_mark_t *grown = esk_array_grow(d->marks, &cap, d->n_marks + n, sizeof(*grown), 8);
    if (!grown) return esk_error_set(err, ESK_ENOMEM, "out of memory");
    d->marks = grown;
    for (size_t k = 0; k < n; k++)
      d->marks[d->n_marks++] = (esk_personal_mark_t){esk_schema_type(s), pf[k].name,
                                                     pf[k].subject, pf[k].forgotten_json};
  }
  return ESK_OK;
}

int esk_domain_decoder_new(esk_domain_decoder_t **out, const esk_contract_t *contract,
                           const esk_codec_limits_t *limits, esk_error_t *err) {
  int rc;
  if (!contract || !contract->domain || !contract->load_schemas || !contract->register_upcasters)
    return esk_error_set(err, ESK_EINVAL, "domain decoder: an incomplete contract");
  esk_domain_decoder_t *d = calloc(1, sizeof(*d));
  if (!d) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  snprintf(d->domain, sizeof(d->domain), "%s", contract->domain);
  if ((rc = esk_schema_set_new(&d->set, err)) || (rc = contract->load_schemas(d->set, err)) ||
      (rc = esk_codec_new(&d->codec, d->set, limits, err)) ||
      (rc = contract->register_upcasters(d->codec, err)) || (rc = collect_marks(d, err))) {
    esk_domain_decoder_destroy(d);
    return rc;
  }
  d->max_bytes = limits && limits->max_message_bytes ? limits->max_message_bytes : 1 << 20;
  *out = d;
  return ESK_OK;
}

static int refresh_keys(void *ctx, esk_error_t *err) {
  esk_domain_decoder_t *d = ctx;
  d->keys_next_ms = esk_time_mono_ms() + 1000;
  return esk_shred_catch_up(d->shred, d->keys_reader, d->keys_topic, d->keys_timeout_ms, NULL,
                            err);
}

static size_t forgotten_count(void *self) {
  return esk_shred_forgotten_count(((esk_domain_decoder_t *)self)->shred);
}

static const char *forgotten_at(void *self, size_t i) {
  return esk_shred_forgotten_at(((esk_domain_decoder_t *)self)->shred, i);
}

int esk_domain_decoder_personal(esk_domain_decoder_t *d, const char *master_key_file,
                                rd_kafka_t *reader, const char *keys_topic, int timeout_ms,
                                esk_error_t *err) {
  d->keys_reader = reader;
  d->keys_timeout_ms = timeout_ms;
  if (!(d->keys_topic = strdup(keys_topic))) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  d->forgets = (esk_forgets_t){refresh_keys, forgotten_count, forgotten_at, d->marks,
                               d->n_marks, d};
  int rc = esk_shred_new(&d->shred, master_key_file, err);
  return rc ? rc : refresh_keys(d, err);
}

void esk_domain_decoder_destroy(esk_domain_decoder_t *d) {
  if (!d) return;
  esk_shred_destroy(d->shred);
  if (d->keys_reader) rd_kafka_destroy(d->keys_reader);
  free(d->keys_topic);
  free(d->marks);
  esk_codec_destroy(d->codec);
  esk_schema_set_destroy(d->set);
  free(d);
}

const esk_schema_set_t *esk_domain_decoder_schemas(const esk_domain_decoder_t *d) {
  return d->set;
}

static int decode_cb(void *self, const rd_kafka_message_t *m, esk_event_t *out,
                     esk_error_t *err) {
  return esk_domain_decode(self, m, out, err);
}

static uint64_t view_fingerprint(const void *self, const char *type, int version) {
  const esk_schema_t *s = esk_schema_set_get(((const esk_domain_decoder_t *)self)->set, type, version);
  return s ? esk_schema_fingerprint(s) : 0;
}

static int view_latest(const void *self, const char *type) {
  const esk_schema_t *s = esk_schema_set_latest(((const esk_domain_decoder_t *)self)->set, type);
  return s ? esk_schema_version(s) : 0;
}

esk_decoder_t esk_domain_decoder(esk_domain_decoder_t *d) {
  if (!d->shred) d->forgets = (esk_forgets_t){.marks = d->marks, .n_marks = d->n_marks};
  const esk_codec_limits_t *lim = esk_codec_get_limits(d->codec);
  size_t max = d->max_bytes < lim->max_message_bytes ? d->max_bytes : lim->max_message_bytes;
  d->view = (esk_contract_view_t){d->domain, view_fingerprint, view_latest, d, max,
                                  lim->max_string_bytes};
  return (esk_decoder_t){.decode = decode_cb,
                         .self = d,
                         .forgets = d->n_marks ? &d->forgets : NULL,
                         .contract = &d->view};
}

/* The positions of "meta" and its fields for @p reader, whose value is
 * @p value: remembered, or found by name (ESK_EPOISON when there is no meta
 * record or a field is missing). @p scratch holds them when the decoder
 * remembers META_POS_MAX schemas already. */
static int meta_pos(esk_domain_decoder_t *d, const esk_schema_t *reader,
                    const avro_value_t *value, meta_pos_t *scratch, const meta_pos_t **out,
                    esk_error_t *err) {
  for (size_t i = 0; i < d->npos; i++)
    if (d->pos[i].reader == reader) return *out = &d->pos[i], ESK_OK;
  avro_value_t meta;
  meta_pos_t p = {.reader = reader};
  avro_schema_t s = avro_value_get_schema(value);
  p.meta = is_avro_record(s) ? avro_schema_record_field_get_index(s, "meta") : -1;
  if (p.meta < 0 || avro_value_get_by_index(value, (size_t)p.meta, &meta, NULL) ||
      avro_value_get_type(&meta) != AVRO_RECORD)
    return esk_error_set(err, ESK_EPOISON,
                         "'%s' is not a %s event type (it has no meta record: a command or a "
                         "snapshot?)",
                         esk_schema_type(reader), d->domain);
  avro_schema_t ms = avro_value_get_schema(&meta);
  for (int k = 0; k < META_FIELDS; k++)
    if ((p.field[k] = avro_schema_record_field_get_index(ms, meta_names[k])) < 0)
      return esk_error_set(err, ESK_EPOISON, "no field '%s' in %s", meta_names[k],
                           avro_schema_type_name(ms));
  meta_pos_t *slot = d->npos < META_POS_MAX ? &d->pos[d->npos++] : scratch;
  *slot = p;
  *out = slot;
  return ESK_OK;
}

/* The event's metadata into @p out, by the positions @p p. */
static int read_meta(const avro_value_t *value, const meta_pos_t *p, esk_event_t *out,
                     esk_error_t *err) {
  avro_value_t meta;
  const int *f = p->field;
  int rc;
  if (avro_value_get_by_index(value, (size_t)p->meta, &meta, NULL))
    return esk_error_set(err, ESK_EPOISON, "no field 'meta' in %s", out->type);
  if ((rc = esk_value_index_str(&meta, f[0], meta_names[0], &out->event_id, err)) ||
      (rc = esk_value_index_str(&meta, f[1], meta_names[1], &out->aggregate_type, err)) ||
      (rc = esk_value_index_str(&meta, f[2], meta_names[2], &out->aggregate_id, err)) ||
      (rc = esk_value_index_long(&meta, f[3], meta_names[3], &out->aggregate_version, err)) ||
      (rc = esk_value_index_long(&meta, f[4], meta_names[4], &out->occurred_at_us, err)) ||
      (rc = esk_value_index_str(&meta, f[5], meta_names[5], &out->correlation_id, err)) ||
      (rc = esk_value_index_str(&meta, f[6], meta_names[6], &out->causation_id, err)) ||
      (rc = esk_value_index_str(&meta, f[7], meta_names[7], &out->actor, err)))
    return rc;
  return ESK_OK;
}

int esk_domain_decode(esk_domain_decoder_t *d, const rd_kafka_message_t *m, esk_event_t *out,
                      esk_error_t *err) {
  const esk_schema_t *reader = NULL, *writer;
  avro_value_t *value = NULL;
  const meta_pos_t *pos = NULL;
  meta_pos_t scratch;
  uint64_t fp = 0;
  int rc;
  if (m->len > d->max_bytes)
    return esk_error_set(err, ESK_EPOISON, "value of %zu bytes is over the limit of %zu bytes",
                         m->len, d->max_bytes);
  if ((rc = esk_codec_peek(m->payload, m->len, &fp, err))) return rc;
  if ((rc = esk_codec_decode(d->codec, m->payload, m->len, 0, &reader, &value, err))) return rc;
  writer = esk_schema_set_by_fingerprint(d->set, fp);
  out->type = esk_schema_type(reader);
  out->value_version = esk_schema_version(reader);
  out->schema_version = writer ? esk_schema_version(writer) : out->value_version;
  out->domain = d->domain;
  out->value = value;
  out->payload = NULL;
  if ((rc = meta_pos(d, reader, value, &scratch, &pos, err)) ||
      (rc = read_meta(value, pos, out, err)))
    return rc;
  if (out->aggregate_version < 1)
    return esk_error_set(err, ESK_EPOISON,
                         "%s of %s has aggregate version %" PRId64 " (versions start at 1)",
                         out->type, out->aggregate_id, out->aggregate_version);
  size_t npersonal = 0;
  if (!d->shred || !esk_schema_personal(reader, &npersonal)) return ESK_OK;
  /* at most a second after a key is destroyed, this reader drops it too:
   * events decoded later show the replacement, also when the key was held */
  if (esk_time_mono_ms() >= d->keys_next_ms && (rc = refresh_keys(d, err))) return rc;
  return esk_shred_decrypt_refreshing(d->shred, reader, value, refresh_keys, d, err);
}
