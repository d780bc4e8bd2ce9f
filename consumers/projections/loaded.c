#include "loaded.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "declarative.h"
#include "plugin.h"

struct esk_loaded_s {
  esk_declarative_t *decl;
  esk_plugin_t *plugin;
};

void esk_loaded_close(esk_loaded_t *l) {
  if (!l) return;
  esk_declarative_destroy(l->decl);
  esk_plugin_close(l->plugin);
  free(l);
}

int esk_loaded_open(esk_loaded_t **out, esk_projection_t *proj, esk_conf_t *conf,
                    const char *file, const char *plugin, const esk_schema_set_t *schemas,
                    esk_error_t *err) {
  int rc;
  const char *topic = NULL;
  if (!!file == !!plugin)
    return esk_error_set(err, ESK_EINVAL, "give one of --projection-file and --plugin");
  esk_loaded_t *l = calloc(1, sizeof(*l));
  if (!l) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  if (file) {
    if ((rc = esk_declarative_load(&l->decl, file, schemas, err))) {
      /* a file of another domain: say which domain's types it was checked against */
      if (rc == ESK_EINVAL && err && strstr(err->msg, "no event type")) {
        char why[ESK_ERROR_MSG_MAX];
        snprintf(why, sizeof(why), "%s", err->msg);
        esk_error_set(err, rc,
                      "%.400s (domain=%.64s; a file of another domain needs -X domain=NAME)", why,
                      esk_conf_get(conf, "domain"));
      }
      goto fail;
    }
    *proj = esk_declarative_projection(l->decl);
    topic = esk_declarative_topic(l->decl);
  } else if ((rc = esk_plugin_open(&l->plugin, proj, plugin, esk_conf_get(conf, "domain"),
                                   err))) {
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
