/* A bank projection run by esk-projector's code in a thread (esk_test_projector.h). */
#include "esk_test_projector.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "bank_decoder.h"
#include "domain_decoder.h"
#include "esk/codec.h"
#include "esk/conf.h"
#include "projections.h"

struct esk_test_projector_s {
  esk_conf_t *conf;
  esk_domain_decoder_t *dec; /* over the bank's contract, as esk-projector -X domain=bank */
  esk_projection_t proj;
  esk_projector_t *p;
  pthread_t thread;
  int started;
  volatile sig_atomic_t stop;
  volatile int ended;
  int foreign; /* proj belongs to the caller (esk_test_projector_start_with) */
  int rc;
  esk_error_t err;
};

static void *projector_thread(void *arg) {
  esk_test_projector_t *t = arg;
  t->rc = esk_projector_run(t->p, &t->stop, &t->err);
  t->ended = 1;
  return NULL;
}

static void projector_free(esk_test_projector_t *t) {
  esk_projector_destroy(t->p);
  if (!t->foreign) esk_bank_projection_destroy(&t->proj);
  esk_domain_decoder_destroy(t->dec);
  esk_conf_destroy(t->conf);
  free(t);
}

static int projector_start(esk_test_projector_t **out, const char *name,
                           const esk_projection_t *proj, const char *topic, const char *schema,
                           const char *group, size_t max_bytes, const char *const *kv,
                           esk_error_t *err) {
  static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_projector_props};
  const esk_bank_projection_def_t *def = proj ? NULL : esk_bank_projection_find(name);
  esk_test_projector_t *t = calloc(1, sizeof(*t));
  int rc;
  if (!t) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  if (!def && !proj) {
    free(t);
    if (!name) return esk_error_set(err, ESK_EINVAL, "no projection given");
    return esk_error_set(err, ESK_EINVAL, "no projection '%s'", name);
  }
  t->foreign = proj != NULL;
  if (proj) {
    t->proj = *proj;
    name = proj->name;
  }
  esk_codec_limits_t limits = {.max_message_bytes = max_bytes};
  if ((rc = esk_conf_new(&t->conf, tables, 2, err)) || (rc = esk_conf_load_env(t->conf, err)) ||
      (rc = esk_conf_set(t->conf, "topic", topic, "test", err)) ||
      (rc = esk_conf_set(t->conf, "projection", name, "test", err)) ||
      (rc = esk_conf_set(t->conf, "group.id", group, "test", err)) ||
      (rc = esk_conf_set(t->conf, "pg.schema", schema, "test", err)))
    goto fail;
  for (size_t i = 0; kv && kv[i]; i += 2)
    if ((rc = esk_conf_set(t->conf, kv[i], kv[i + 1], "test", err))) goto fail;
  if ((rc = esk_domain_decoder_new(&t->dec, &esk_bank_contract, &limits, err)) ||
      (def && (rc = def->create(&t->proj, err))))
    goto fail;
  esk_decoder_t d = esk_domain_decoder(t->dec);
  if ((rc = esk_projector_new(&t->p, t->conf, &t->proj, &d, err))) goto fail;
  if (pthread_create(&t->thread, NULL, projector_thread, t)) {
    rc = esk_error_set(err, ESK_EFATAL, "cannot start a thread");
    goto fail;
  }
  *out = t;
  return ESK_OK;
fail:
  projector_free(t);
  return rc;
}

int esk_test_projector_start(esk_test_projector_t **out, const char *name, const char *topic,
                             const char *schema, const char *group, size_t max_bytes,
                             const char *const *kv, esk_error_t *err) {
  return projector_start(out, name, NULL, topic, schema, group, max_bytes, kv, err);
}

int esk_test_projector_start_with(esk_test_projector_t **out, const esk_projection_t *proj,
                                  const char *topic, const char *schema, const char *group,
                                  const char *const *kv, esk_error_t *err) {
  return projector_start(out, NULL, proj, topic, schema, group, 0, kv, err);
}

int esk_test_projector_stats(esk_test_projector_t *t, esk_projector_stats_t *s, esk_error_t *err) {
  esk_projector_stats(t->p, s);
  if (t->ended && t->rc) {
    if (err) *err = t->err;
    return t->rc;
  }
  return ESK_OK;
}

void esk_test_projector_counters(void *t, esk_projector_stats_t *s) {
  esk_test_projector_stats(t, s, NULL);
}

int esk_test_projector_stop(esk_test_projector_t *t, esk_projector_stats_t *s, esk_error_t *err) {
  t->stop = 1;
  pthread_join(t->thread, NULL);
  int rc = t->rc;
  if (rc && err) *err = t->err;
  if (s) esk_projector_stats(t->p, s);
  projector_free(t);
  return rc;
}
