/* A command as JSON -> its single-object encoding (see esk/command_json.h).
 * Shared by eskctl submit and esk-gateway, so both accept the same input and
 * key it the same way (docs/architecture.md, "Kafka contract"). */
#include "esk/command_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *command_list(const char *const *commands, char *buf, size_t size) {
  size_t off = 0;
  buf[0] = 0;
  if (!commands) return "a command of the domain";
  for (size_t i = 0; commands[i]; i++)
    off += (size_t)snprintf(buf + off, off < size ? size - off : 0, "%s%s", i ? ", " : "",
                            commands[i]);
  return buf;
}

/* The path of the first string in @p j that holds U+0000 (JSON allows the
 * escape \u0000, and jansson keeps it with JSON_ALLOW_NUL; it refuses one in
 * an object key), written into @p path; @returns 1 when there is one. esk
 * strings are C strings past this point (the ids, the key, avro-c's values):
 * such a string would end at the NUL. */
static int nul_in(json_t *j, char *path, size_t size, size_t off) {
  const char *key;
  size_t i;
  json_t *v;
  if (json_is_string(j)) return strlen(json_string_value(j)) != json_string_length(j);
  if (json_is_object(j)) {
    json_object_foreach(j, key, v) {
      int n = snprintf(path + off, off < size ? size - off : 0, "%s%s", off ? "." : "", key);
      if (nul_in(v, path, size, off + (size_t)(n > 0 ? n : 0))) return 1;
    }
  } else if (json_is_array(j)) {
    json_array_foreach(j, i, v) {
      int n = snprintf(path + off, off < size ? size - off : 0, "[%zu]", i);
      if (nul_in(v, path, size, off + (size_t)(n > 0 ? n : 0))) return 1;
    }
  }
  return 0;
}

/* Deepest nesting of arrays and objects in @p j (1 for a flat object), stopping at @p max + 1. */
static size_t depth_of(json_t *j, size_t max) {
  size_t d = 0, i;
  const char *key;
  json_t *v;
  if (max == 0) return 1;
  if (json_is_object(j)) {
    json_object_foreach(j, key, v) {
      size_t c = depth_of(v, max - 1);
      if (c > d) d = c;
    }
  } else if (json_is_array(j)) {
    json_array_foreach(j, i, v) {
      size_t c = depth_of(v, max - 1);
      if (c > d) d = c;
    }
  } else {
    return 0;
  }
  return d + 1;
}

void esk_command_json_free(esk_command_json_t *c) {
  free(c->command_id);
  free(c->key);
  esk_buf_free(&c->value);
  memset(c, 0, sizeof(*c));
}

int esk_command_json_parse(esk_command_json_t *out, const char *json, size_t len,
                           const esk_schema_set_t *set, esk_codec_t *codec,
                           const esk_command_json_opts_t *o, esk_error_t *err) {
  json_error_t je;
  char list[256], path[256] = "";
  char *text = NULL;
  int rc = ESK_EINVAL;
  avro_value_t v = {0};
  esk_command_json_free(out);
  esk_buf_init(&out->value, (size_t)1 << 20);
  /* jansson's own nesting limit (2048) bounds the parse; max_depth is checked after */
  json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
  if (!j)
    return esk_error_set(err, ESK_EINVAL, "not valid JSON: %s (column %d)", je.text, je.column);
  if (!json_is_object(j)) {
    esk_error_set(err, ESK_EINVAL, "expected a JSON object, one command");
    goto cleanup;
  }
  if (o->max_depth && depth_of(j, o->max_depth) > o->max_depth) {
    esk_error_set(err, ESK_EINVAL, "nested deeper than %zu levels", o->max_depth);
    goto cleanup;
  }
  if (nul_in(j, path, sizeof(path), 0)) {
    esk_error_set(err, ESK_EINVAL, "%s holds U+0000 (\\u0000), which esk refuses: its strings "
                  "are UTF-8 without NUL", path);
    goto cleanup;
  }
  const char *type = json_string_value(json_object_get(j, "type"));
  if (!type) {
    esk_error_set(err, ESK_EINVAL, "\"type\" is missing or not a string (one of %s)",
                  command_list(o->commands, list, sizeof(list)));
    goto cleanup;
  }
  int known = !o->commands;
  for (size_t i = 0; o->commands && o->commands[i]; i++) known |= !strcmp(type, o->commands[i]);
  const esk_schema_t *schema = known ? esk_schema_set_latest(set, type) : NULL;
  if (!schema) {
    esk_error_set(err, ESK_EINVAL, "unknown command type '%.64s' (one of %s)", type,
                  command_list(o->commands, list, sizeof(list)));
    goto cleanup;
  }
  out->schema = schema;
  const char *key;
  json_t *val;
  avro_schema_t as = esk_schema_avro(schema);
  json_object_foreach(j, key, val) {
    if (!strcmp(key, "type")) continue;
    if (avro_schema_record_field_get_index(as, key) < 0) {
      esk_error_set(err, ESK_EINVAL, "%s has no field '%.64s'", type, key);
      goto cleanup;
    }
  }
  json_t *idj = json_object_get(j, "command_id");
  const char *id = json_string_value(idj);
  if (o->command_id && idj && (!id || strcmp(id, o->command_id))) {
    esk_error_set(err, ESK_EINVAL, "command_id differs from the Idempotency-Key header");
    goto cleanup;
  }
  if (!idj && o->command_id && *o->command_id) {
    json_object_set_new(j, "command_id", json_string(o->command_id));
    id = json_string_value(json_object_get(j, "command_id"));
  }
  const char *agg = json_string_value(json_object_get(j, o->key_field));
  if (!id || !*id) {
    esk_error_set(err, ESK_EINVAL, "command_id must be a non-empty string");
    goto cleanup;
  }
  if (!agg || !*agg) {
    esk_error_set(err, ESK_EINVAL, "%s must be a non-empty string", o->key_field);
    goto cleanup;
  }
  out->command_id = strdup(id);
  out->key = strdup(agg);
  if (!json_object_get(j, "actor") && o->actor)
    json_object_set_new(j, "actor", json_string(o->actor));
  if (!json_object_get(j, "correlation_id"))
    json_object_set_new(j, "correlation_id", json_string(id));
  json_object_del(j, "type");
  text = json_dumps(j, JSON_COMPACT);
  if (!text || !out->command_id || !out->key) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
    goto cleanup;
  }
  esk_error_t e = {0};
  if (esk_value_new(&v, schema, &e) || esk_value_from_json(&v, schema, text, &e) ||
      esk_codec_encode(codec, schema, &v, &out->value, &e)) {
    esk_error_set(err, ESK_EINVAL, "%s: %s", esk_schema_type(schema), e.msg);
    goto cleanup;
  }
  rc = ESK_OK;
cleanup:
  if (v.iface) avro_value_decref(&v);
  free(text);
  json_decref(j);
  return rc;
}

rd_kafka_resp_err_t esk_command_json_produce(rd_kafka_t *rk, const char *topic,
                                             const esk_command_json_t *c, void *opaque) {
  char ver[16];
  snprintf(ver, sizeof(ver), "%d", esk_schema_version(c->schema));
  return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                           RD_KAFKA_V_KEY(c->key, strlen(c->key)),
                           RD_KAFKA_V_VALUE(c->value.data, c->value.len),
                           RD_KAFKA_V_HEADER("esk.type", esk_schema_type(c->schema), -1),
                           RD_KAFKA_V_HEADER("esk.schema_version", ver, -1),
                           RD_KAFKA_V_HEADER("esk.command_id", c->command_id, -1),
                           RD_KAFKA_V_HEADER("content-type", "avro/binary", -1),
                           RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}
