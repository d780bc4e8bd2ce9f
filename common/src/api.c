/* The consistency token and API error bodies (see esk/api.h; docs/api.md). */
#include "esk/api.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define TOKEN_VERSION 1
#define MAC_BYTES crypto_auth_hmacsha256_BYTES
#define HEAD_BYTES 4 /* version, domain length, count (2) */
#define POS_BYTES 12
#define PAYLOAD_MAX (HEAD_BYTES + ESK_TOKEN_DOMAIN_MAX + ESK_TOKEN_MAX_PARTS * POS_BYTES)

const esk_conf_prop_t esk_api_props[] = {
    {"api.token.key.file", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "File holding the consistency tokens' key: 64 hexadecimal characters (32 bytes), e.g. "
     "from `head -c32 /dev/urandom | xxd -p -c64`. esk-gateway signs tokens with it and "
     "esk-query checks them, so both must read the same key. Required."},
    {"api.auth.file", ESK_CONF_STRING, "", 0, 0, NULL, NULL,
     "File of bearer tokens, one per line: name, scopes (commands:write for esk-gateway, "
     "queries:read for esk-query, comma-separated) and the SHA-256 of the token in hex "
     "(docs/api.md, \"Authentication\"). Requests without a known token are answered 401, "
     "with a token lacking the scope 403; the probes need none. Empty: no authentication "
     "(keep http.listen on loopback then)."},
    {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
};

int esk_token_key_load(unsigned char key[ESK_TOKEN_KEY_BYTES], const char *path,
                       esk_error_t *err) {
  char text[130];
  if (!path || !*path)
    return esk_error_set(err, ESK_EINVAL, "api.token.key.file is not set: the consistency "
                         "tokens need a key (64 hexadecimal characters in a file)");
  FILE *f = fopen(path, "rb");
  if (!f)
    return esk_error_set(err, ESK_EINVAL, "api.token.key.file=%s: cannot open: %s", path,
                         strerror(errno));
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  while (n && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
  size_t bin_len = 0;
  if (n != 2 * ESK_TOKEN_KEY_BYTES ||
      sodium_hex2bin(key, ESK_TOKEN_KEY_BYTES, text, n, NULL, &bin_len, NULL) ||
      bin_len != ESK_TOKEN_KEY_BYTES) {
    sodium_memzero(text, sizeof(text));
    return esk_error_set(err, ESK_EINVAL,
                         "api.token.key.file=%s: expected 64 hexadecimal characters (32 bytes)",
                         path);
  }
  sodium_memzero(text, sizeof(text));
  return ESK_OK;
}

int esk_token_merge(esk_token_t *t, int32_t partition, int64_t offset, esk_error_t *err) {
  if (partition < 0 || offset < 0)
    return esk_error_set(err, ESK_EINVAL, "token: negative partition %d or offset %lld",
                         (int)partition, (long long)offset);
  size_t i = 0;
  while (i < t->n && t->pos[i].partition < partition) i++;
  if (i < t->n && t->pos[i].partition == partition) {
    if (offset > t->pos[i].offset) t->pos[i].offset = offset;
    return ESK_OK;
  }
  if (t->n == ESK_TOKEN_MAX_PARTS)
    return esk_error_set(err, ESK_EINVAL, "token: more than %d partitions", ESK_TOKEN_MAX_PARTS);
  memmove(&t->pos[i + 1], &t->pos[i], (t->n - i) * sizeof(t->pos[0]));
  t->pos[i].partition = partition;
  t->pos[i].offset = offset;
  t->n++;
  return ESK_OK;
}

static void put_be(unsigned char *p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--, v >>= 8) p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_be(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v = v << 8 | p[i];
  return v;
}

int esk_token_encode(char *out, size_t size, const esk_token_t *t,
                     const unsigned char key[ESK_TOKEN_KEY_BYTES], esk_error_t *err) {
  unsigned char raw[PAYLOAD_MAX + MAC_BYTES];
  size_t dl = strnlen(t->domain, sizeof(t->domain));
  if (dl == 0 || dl > ESK_TOKEN_DOMAIN_MAX || t->n > ESK_TOKEN_MAX_PARTS)
    return esk_error_set(err, ESK_EINVAL, "token: invalid domain or partition count");
  size_t o = 0;
  raw[o++] = TOKEN_VERSION;
  raw[o++] = (unsigned char)dl;
  memcpy(raw + o, t->domain, dl);
  o += dl;
  put_be(raw + o, t->n, 2);
  o += 2;
  for (size_t i = 0; i < t->n; i++) {
    if (t->pos[i].partition < 0 || t->pos[i].offset < 0 ||
        (i && t->pos[i].partition <= t->pos[i - 1].partition))
      return esk_error_set(err, ESK_EINVAL, "token: positions not sorted or negative");
    put_be(raw + o, (uint32_t)t->pos[i].partition, 4);
    put_be(raw + o + 4, (uint64_t)t->pos[i].offset, 8);
    o += POS_BYTES;
  }
  crypto_auth_hmacsha256(raw + o, raw, o, key);
  o += MAC_BYTES;
  if (size < sodium_base64_ENCODED_LEN(o, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
    return esk_error_set(err, ESK_EINVAL, "token: buffer of %zu bytes too small", size);
  sodium_bin2base64(out, size, raw, o, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return ESK_OK;
}

int esk_token_decode(esk_token_t *out, const char *s, size_t len,
                     const unsigned char key[ESK_TOKEN_KEY_BYTES], esk_error_t *err) {
  unsigned char raw[PAYLOAD_MAX + MAC_BYTES];
  size_t n = 0;
  const char *end = NULL;
  if (len == 0) return esk_error_set(err, ESK_EINVAL, "consistency token is empty");
  if (len > ESK_TOKEN_MAX_CHARS)
    return esk_error_set(err, ESK_EINVAL, "consistency token is too long (%zu characters, at "
                         "most %d)", len, ESK_TOKEN_MAX_CHARS);
  if (sodium_base642bin(raw, sizeof(raw), s, len, NULL, &n, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
      end != s + len)
    return esk_error_set(err, ESK_EINVAL, "consistency token is not base64url (at character "
                         "%zu)", end ? (size_t)(end - s) : (size_t)0);
  if (n < HEAD_BYTES + 1 + MAC_BYTES)
    return esk_error_set(err, ESK_EINVAL, "consistency token is truncated (%zu bytes)", n);
  size_t body = n - MAC_BYTES;
  if (crypto_auth_hmacsha256_verify(raw + body, raw, body, key))
    return esk_error_set(err, ESK_EINVAL, "consistency token was not issued by this "
                         "deployment (its MAC does not match)");
  /* past the MAC the bytes are ours; their shape is still checked */
  if (raw[0] != TOKEN_VERSION)
    return esk_error_set(err, ESK_EINVAL, "consistency token version %d is not supported",
                         raw[0]);
  size_t dl = raw[1];
  if (dl == 0 || dl > ESK_TOKEN_DOMAIN_MAX || 2 + dl + 2 > body)
    return esk_error_set(err, ESK_EINVAL, "consistency token is malformed (domain)");
  esk_token_t t;
  memset(&t, 0, sizeof(t));
  memcpy(t.domain, raw + 2, dl);
  size_t o = 2 + dl;
  size_t count = (size_t)get_be(raw + o, 2);
  o += 2;
  if (count > ESK_TOKEN_MAX_PARTS || o + count * POS_BYTES != body)
    return esk_error_set(err, ESK_EINVAL, "consistency token is malformed (positions)");
  for (size_t i = 0; i < count; i++, o += POS_BYTES) {
    uint64_t p = get_be(raw + o, 4), off = get_be(raw + o + 4, 8);
    if (p > INT32_MAX || off > INT64_MAX ||
        (i && (int32_t)p <= t.pos[i - 1].partition))
      return esk_error_set(err, ESK_EINVAL, "consistency token is malformed (positions)");
    t.pos[i].partition = (int32_t)p;
    t.pos[i].offset = (int64_t)off;
  }
  t.n = count;
  *out = t;
  return ESK_OK;
}

size_t esk_api_error_json(char *buf, size_t size, const char *code, const char *message) {
  json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
  /* json_pack refuses a message that is not UTF-8: the fallback below */
  size_t n = o ? json_dumpb(o, buf, size ? size - 1 : 0, JSON_COMPACT | JSON_PRESERVE_ORDER) : size;
  json_decref(o);
  if (size == 0) return 0;
  if (n == 0 || n >= size) { /* did not fit, or not UTF-8 */
    n = (size_t)snprintf(buf, size, "{\"error\":{\"code\":\"%s\",\"message\":\"(cut)\"}}", code);
    if (n >= size) n = size - 1;
  }
  buf[n] = '\0';
  return n;
}

void esk_api_count(esk_metric_t *requests, unsigned status) {
  char code[8];
  const char *v[1] = {code};
  esk_series_t *s = NULL;
  esk_error_t e = {0};
  snprintf(code, sizeof(code), "%u", status);
  if (requests && !esk_metrics_series(&s, requests, v, &e)) esk_metrics_inc(s);
}

void esk_api_send(esk_metric_t *requests, esk_http_req_t *req, unsigned status,
                  const char *body, const char *const *headers) {
  esk_api_count(requests, status);
  esk_http_respond(req, status, "application/json", body, strlen(body), headers);
}

void esk_api_send_error(esk_metric_t *requests, esk_http_req_t *req, unsigned status,
                        const char *code, const char *message) {
  char body[1024];
  esk_api_error_json(body, sizeof(body), code, message);
  const char *retry[] = {"Retry-After", "1", NULL};
  esk_api_send(requests, req, status, body, status == 503 ? retry : NULL);
}
