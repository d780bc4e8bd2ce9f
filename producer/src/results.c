/* The JSON value of the results topic (see results.h). */
#include "results.h"

#include <inttypes.h>
#include <jansson.h>
#include <string.h>

#include "esk/codec.h"
#include "esk/text.h"

/* Written by hand rather than with jansson: this runs once per command and
 * jansson's object building cost ~10 allocations each. The reader below
 * (restore, rare) uses jansson, and the unit tests check the two agree. */
/* Appends @p n bytes at @p off (counted even when they do not fit, as esk_text_json_str()). */
static size_t cat(char *buf, size_t size, size_t off, const char *s, size_t n) {
  if (off + n < size) memcpy(buf + off, s, n);
  return off + n;
}

/* Appends @p v in decimal. */
static size_t cat_i64(char *buf, size_t size, size_t off, int64_t v) {
  char num[ESK_TEXT_I64_MAX];
  return cat(buf, size, off, num, esk_text_i64(num, v));
}

#define CAT(lit) off = cat(buf, size, off, lit, sizeof(lit) - 1)

/* Without printf: it is called once per command (snprintf was ~4% of the
 * producer's CPU). */
int esk_result_to_json(char *buf, size_t size, const char *command_id,
                       const esk_result_t *res, const esk_domain_t *d) {
  return esk_result_to_json_n(buf, size, command_id, strlen(command_id), res, d);
}

int esk_result_to_json_n(char *buf, size_t size, const char *command_id, size_t id_len,
                         const esk_result_t *res, const esk_domain_t *d) {
  size_t off = 0;
  CAT("{\"command_id\":");
  off = esk_text_json_str(buf, size, off, command_id, id_len);
  if (res->rule == ESK_RULE_ACCEPTED) {
    CAT(",\"status\":\"accepted\",\"aggregate_version\":");
    off = cat_i64(buf, size, off, res->version);
    if (res->n_events >= 0) { /* the events written, oldest first */
      CAT(",\"events\":[");
      const char *t = res->message;
      for (int i = 0; i < res->n_events; i++) {
        size_t len = strcspn(t, ",");
        if (i) CAT(",");
        CAT("{");
        if (len) {
          CAT("\"type\":");
          off = esk_text_json_str(buf, size, off, t, len);
          CAT(",");
          t += len + (t[len] == ',');
        }
        CAT("\"version\":");
        off = cat_i64(buf, size, off, res->version - res->n_events + 1 + i);
        CAT("}");
      }
      CAT("]");
    }
    CAT("}");
  } else {
    const char *code = esk_domain_rule_name(d, res->rule);
    CAT(",\"status\":\"rejected\",\"error\":{\"code\":\"");
    off = cat(buf, size, off, code, strlen(code));
    CAT("\",\"message\":");
    off = esk_text_json_str(buf, size, off, res->message, strlen(res->message));
    CAT(",\"actual_version\":");
    off = cat_i64(buf, size, off, res->version);
    CAT("}}");
  }
  if (off >= size) return ESK_ENOMEM;
  buf[off] = '\0';
  return (int)off;
}

#undef CAT

void esk_result_set_events(esk_result_t *res, const char *const *types, size_t n) {
  size_t used = 0;
  int whole = 1; /* every name so far was kept: the next may be */
  res->n_events = (int)n;
  res->message[0] = '\0';
  for (size_t i = 0; i < n && whole; i++) {
    size_t len = types[i] ? strlen(types[i]) : 0;
    size_t need = len + (i ? 1 : 0);
    whole = len && !memchr(types[i], ',', len) && used + need < sizeof(res->message);
    if (!whole) break;
    if (i) res->message[used++] = ',';
    memcpy(res->message + used, types[i], len);
    used += len;
    res->message[used] = '\0';
  }
}

/* The "events" of an accepted result into @p r (whose version is set):
 * versions r->version - n + 1 .. r->version in order, each with a type of at
 * most ESK_RESULT_MSG_MAX - 1 bytes without ',' or U+0000; NULL (a result
 * older than the list) leaves n_events -1. */
static int events_from_json(esk_result_t *r, json_t *events, esk_error_t *err) {
  const char *types[ESK_DOMAIN_MAX_EVENTS];
  size_t n = json_array_size(events);
  r->n_events = -1;
  if (!events) return ESK_OK;
  if (!json_is_array(events) || n > ESK_DOMAIN_MAX_EVENTS || (int64_t)n > r->version)
    return esk_error_set(err, ESK_EPOISON, "result: events is not an array of at most %d "
                         "events within the aggregate's versions", ESK_DOMAIN_MAX_EVENTS);
  for (size_t i = 0; i < n; i++) {
    json_t *ev = json_array_get(events, i), *type = json_object_get(ev, "type");
    json_t *ver = json_object_get(ev, "version");
    types[i] = json_string_value(type);
    if (!json_is_object(ev) || (type && (!types[i] || !*types[i] || strchr(types[i], ',') ||
                                         strlen(types[i]) != json_string_length(type))) ||
        !json_is_integer(ver) ||
        json_integer_value(ver) != r->version - (int64_t)n + 1 + (int64_t)i)
      return esk_error_set(err, ESK_EPOISON, "result: events[%zu] is not {\"type\": name, "
                           "\"version\": %" PRId64 "}", i, r->version - (int64_t)n + 1 + (int64_t)i);
  }
  esk_result_set_events(r, types, n);
  return ESK_OK;
}

int esk_result_from_json(char *command_id_out, esk_result_t *res, const void *data, size_t len,
                         const esk_domain_t *d, esk_error_t *err) {
  json_error_t je;
  /* without JSON_ALLOW_NUL: "edge-c32\u0000first", the answer to a refused
   * command, is refused here instead of becoming the C string "edge-c32" and
   * answering that genuine id (so is the lone surrogate \udcXX of a byte that
   * is not UTF-8) */
  json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
  int rc = ESK_OK;
  if (!o) return esk_error_set(err, ESK_EPOISON, "result: not JSON: %s", je.text);
  const char *id = NULL, *status = NULL, *code = "", *msg = "";
  json_int_t ver = -1, actual = -1;
  json_t *events = NULL;
  esk_result_t r;
  memset(&r, 0, sizeof(r));
  if (json_unpack_ex(o, &je, 0, "{s:s, s:s, s?I, s?o, s?{s:s, s:s, s:I}}", "command_id", &id,
                     "status", &status, "aggregate_version", &ver, "events", &events, "error",
                     "code", &code, "message", &msg, "actual_version", &actual)) {
    rc = esk_error_set(err, ESK_EPOISON, "result: %s", je.text);
    goto cleanup;
  }
  if (strlen(id) == 0 || strlen(id) > ESK_ID_MAX) {
    rc = esk_error_set(err, ESK_EPOISON, "result: command_id empty or too long");
    goto cleanup;
  }

  if (!strcmp(status, "accepted") && ver >= 0) {
    r.rule = ESK_RULE_ACCEPTED;
    r.version = ver;
    if ((rc = events_from_json(&r, events, err))) goto cleanup;
  } else if (!strcmp(status, "rejected") && actual >= 0 &&
             esk_domain_rule_from_name(d, code, &r.rule) == ESK_OK &&
             r.rule != ESK_RULE_ACCEPTED) {
    r.version = actual;
    snprintf(r.message, sizeof(r.message), "%s", msg);
  } else {
    rc = esk_error_set(err, ESK_EPOISON, "result: status '%s' without a valid version or code",
                       status);
    goto cleanup;
  }
  strcpy(command_id_out, id);
  *res = r;
cleanup:
  json_decref(o);
  return rc;
}

