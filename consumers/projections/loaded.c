#include "loaded.h"

#include <libpq-fe.h>
#include <stdlib.h>

#include "bank_contract.h"
#include "declarative.h"
#include "esk/pg.h"
#include "generation.h"
#include "plugin.h"

struct esk_loaded_s {
  esk_schema_set_t *schemas;
  esk_declarative_t *decl;
  esk_plugin_t *plugin;
};

void esk_loaded_close(esk_loaded_t *l) {
  if (!l) return;
  esk_declarative_destroy(l->decl);
  esk_schema_set_destroy(l->schemas);
  esk_plugin_close(l->plugin);
  free(l);
}

int esk_loaded_open(esk_loaded_t **out, esk_projection_t *proj, esk_conf_t *conf,
                    const char *file, const char *plugin, esk_error_t *err) {
  int rc;
  const char *topic = NULL;
  if (!!file == !!plugin)
    return esk_error_set(err, ESK_EINVAL, "give one of --projection-file and --plugin");
  esk_loaded_t *l = calloc(1, sizeof(*l));
  if (!l) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  if (file) {
    if ((rc = esk_schema_set_new(&l->schemas, err)) ||
        (rc = esk_bank_schemas_load(l->schemas, err)) ||
        (rc = esk_declarative_load(&l->decl, file, l->schemas, err)))
      goto fail;
    *proj = esk_declarative_projection(l->decl);
    topic = esk_declarative_topic(l->decl);
  } else if ((rc = esk_plugin_open(&l->plugin, proj, plugin, err))) {
    goto fail;
  }
  if ((!esk_conf_get(conf, "projection") &&
       (rc = esk_conf_set(conf, "projection", proj->name, file ? file : plugin, err))) ||
      (topic && !esk_conf_get(conf, "topic") &&
       (rc = esk_conf_set(conf, "topic", topic, file, err))))
    goto fail;
  *out = l;
  return ESK_OK;
fail:
  esk_loaded_close(l);
  return rc;
}

int esk_loaded_projector_new(esk_projector_t **out, esk_loaded_t *l, const esk_conf_t *conf,
                             const esk_projection_t *proj, const esk_decoder_t *dec,
                             const int64_t *from_ms, esk_error_t *err) {
  if (l && l->decl) {
    PGconn *pg = NULL;
    int rc = esk_pg_connect(&pg, esk_conf_get(conf, "pg.conninfo"), err);
    const char *base = esk_conf_get(conf, "pg.schema"), *name = esk_conf_get(conf, "projection");
    int gen = (int)esk_conf_get_int(conf, "generation");
    char ds[64], key[256];
    esk_generation_store_key(key, sizeof(key), name ? name : proj->name, gen);
    if (rc == ESK_OK && gen > 0)
      rc = esk_generation_schema(ds, sizeof(ds), base, name ? name : proj->name, gen, err);
    if (rc == ESK_OK)
      rc = esk_declarative_check_sql(l->decl, pg, base, gen > 0 ? ds : NULL, key, err);
    PQfinish(pg);
    if (rc) return rc;
  }
  int rc = esk_projector_new(out, conf, proj, dec, err);
  if (rc == ESK_OK && from_ms && (rc = esk_projector_start_at(*out, *from_ms, err))) {
    esk_projector_destroy(*out);
    *out = NULL;
  }
  return rc;
}
