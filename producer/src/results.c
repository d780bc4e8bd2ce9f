/* The JSON value of the results topic (see results.h). */
#include "results.h"

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
  esk_result_t r;
  memset(&r, 0, sizeof(r));
  if (json_unpack_ex(o, &je, 0, "{s:s, s:s, s?I, s?{s:s, s:s, s:I}}", "command_id", &id,
                     "status", &status, "aggregate_version", &ver, "error", "code", &code,
                     "message", &msg, "actual_version", &actual)) {
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

