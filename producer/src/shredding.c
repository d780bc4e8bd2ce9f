/* The esk-producer runtime, shredding.c: personal fields leave the process
 * encrypted, their keys go out in the same transaction as the events
 * (docs/architecture.md, "Personal data"). */
#include "producer_int.h"
#include "esk/personal.h"

#define FAC "producer"

/* The first personal field of the contract, or NULL: for the warning. */
static const esk_schema_t *first_personal(const esk_schema_set_t *set,
                                          const esk_personal_field_t **pf) {
  for (size_t i = 0; i < esk_schema_set_count(set); i++) {
    size_t n = 0;
    const esk_schema_t *s = esk_schema_set_at(set, i);
    if ((*pf = esk_schema_personal(s, &n))) return s;
  }
  return NULL;
}

int esk_prod_shred_refresh(void *ctx, esk_error_t *err) {
  esk_producer_t *p = ctx;
  size_t skipped = 0;
  int rc = esk_shred_catch_up(p->shred, p->reader, p->keys_topic, (int)p->restore_ms, &skipped,
                              err);
  if (skipped)
    ESK_WARN(FAC, "msg=\"malformed subject-keys records skipped\" topic=%s count=%zu",
             p->keys_topic, skipped);
  return rc;
}

int esk_prod_shred_open(esk_producer_t *p, const esk_conf_t *conf, esk_error_t *err) {
  const char *file = esk_conf_get(conf, "personal.master_key_file");
  const esk_personal_field_t *pf = NULL;
  const esk_schema_t *s = first_personal(p->di.schemas, &pf);
  if (!file || !*file) {
    if (!s) return ESK_OK;
    if (!esk_conf_get_bool(conf, "personal.plaintext"))
      return esk_error_set(err, ESK_EINVAL, "domain %s has personal fields (e.g. %s.v%d.%s) and "
                           "personal.master_key_file is not set: set it (docs/architecture.md, "
                           "\"Personal data\"), or personal.plaintext=true to write them in "
                           "plaintext, never to be forgotten",
                           p->domain, esk_schema_type(s), esk_schema_version(s), pf->name);
    ESK_WARN(FAC,
             "msg=\"personal fields are written in plaintext (personal.plaintext=true)\" "
             "domain=%s example=%s.v%d.%s",
             p->domain, esk_schema_type(s), esk_schema_version(s), pf->name);
    return ESK_OK;
  }
  int rc = esk_shred_new(&p->shred, file, err);
  if (rc) return esk_prod_escalate(err); /* the message names the file */
  esk_buf_init(&p->shred_buf, (size_t)p->event_max * 2 + 4096);
  rc = esk_kafka_topic_name(p->keys_topic, sizeof(p->keys_topic),
                            esk_conf_get(conf, "topic.prefix"), p->domain, ESK_SHRED_TOPIC_KIND,
                            err);
  if (!rc) rc = esk_prod_shred_refresh(p, err);
  if (rc) {
    esk_error_t e = *err;
    return esk_error_set(err, ESK_EFATAL, "personal.master_key_file=%s, %s: %s%s", file,
                         p->keys_topic, e.msg,
                         rc == ESK_ERETRY ? " (the topic must exist: eskctl topics create makes it)"
                                          : "");
  }
  ESK_INFO(FAC, "msg=\"personal fields are encrypted\" keys_topic=%s subject_keys=%zu",
           p->keys_topic, esk_shred_key_count(p->shred));
  return ESK_OK;
}

/* Between transactions, once a second: reads what the subject-keys topic got
 * since (forgotten marks and tombstones: a forgotten subject's key is dropped
 * from memory, and its new values take the `forgotten` replacement). */
void esk_prod_shred_tick(esk_producer_t *p, int64_t now_ms) {
  if (!p->shred || p->in_txn || now_ms < p->shred_next_ms) return;
  p->shred_next_ms = now_ms + 1000;
  esk_error_t err = {0};
  if (esk_prod_shred_refresh(p, &err)) {
    char q[512];
    ESK_WARN(FAC, "msg=\"subject keys not read\" topic=%s reason=%s", p->keys_topic,
             esk_log_quote(q, sizeof(q), err.msg));
  }
}

/* Writes one subject key record in the open transaction. */
static int produce_key(const char *key, size_t klen, const void *value, size_t vlen, void *ctx) {
  esk_producer_t *p = ctx;
  return esk_prod_produce(p, p->rkt_keys, RD_KAFKA_PARTITION_UA, key, klen, value, vlen, NULL,
                          NULL);
}

/* Encrypts the personal fields of the encoded event p->evbuf[i] in place, and
 * writes the records of the keys it used that are not published yet. */
int esk_prod_shred_event(esk_producer_t *p, size_t i, esk_error_t *err) {
  const void *out = NULL;
  size_t len = 0;
  int rc = esk_shred_message(p->shred, 1, p->codec, p->di.schemas, p->evbuf[i].data,
                             p->evbuf[i].len, NULL, NULL, &p->shred_buf, &out, &len, err);
  if (rc) return rc;
  if (out != p->evbuf[i].data) {
    esk_buf_t t = p->evbuf[i];
    p->evbuf[i] = p->shred_buf;
    p->shred_buf = t;
  }
  rc = esk_shred_take_records(p->shred, produce_key, p);
  if (rc) return esk_error_set(err, rc, "writing a subject key record to %s failed", p->keys_topic);
  return ESK_OK;
}
