/**
 * @file api.h
 * @brief What esk-gateway (write side) and esk-query (read side) share: the
 *        consistency token and the JSON shape of an API error
 *        (docs/architecture.md, "HTTP API"; docs/api.md).
 *
 * A consistency token names, per partition of a domain's events topic, an
 * offset at or after the last event a command wrote there (the next offset to
 * apply, as the projectors store positions). A read model whose stored
 * positions have reached every one of them has applied the command's events.
 *
 * The token is opaque to clients: base64url (no padding) of
 *   version (1 byte, 1) | domain length (1) | domain | count (2, big endian)
 *   | count x (partition (4) | offset (8)), big endian
 * followed by its 32-byte HMAC-SHA-256 (libsodium crypto_auth_hmacsha256)
 * under a key both daemons read from `api.token.key.file`. A token that was
 * changed or made under another key is refused; the check is constant-time.
 */
#ifndef ESK_API_H
#define ESK_API_H

#include <stddef.h>
#include <stdint.h>

#include "esk/conf.h"
#include "esk/error.h"
#include "esk/http.h"
#include "esk/metrics.h"

/** Bytes of a token key. */
#define ESK_TOKEN_KEY_BYTES 32
/** Most partitions one token names. */
#define ESK_TOKEN_MAX_PARTS 64
/** Longest domain name a token holds. */
#define ESK_TOKEN_DOMAIN_MAX 63
/** Longest token text (a longer one is refused before it is decoded), NUL excluded. */
#define ESK_TOKEN_MAX_CHARS 1200

/** One partition's position in a token. */
typedef struct esk_token_pos_s {
  int32_t partition;
  int64_t offset; /**< the next offset to apply: reached when a stored position is >= it */
} esk_token_pos_t;

/** A decoded token. */
typedef struct esk_token_s {
  char domain[ESK_TOKEN_DOMAIN_MAX + 1];
  size_t n; /**< entries in pos, sorted by partition, no partition twice */
  esk_token_pos_t pos[ESK_TOKEN_MAX_PARTS];
} esk_token_t;

/** The `api.*` keys both daemons take (api.token.key.file). */
extern const esk_conf_prop_t esk_api_props[];

/**
 * @brief Reads the token key from @p path: 64 hexadecimal characters (a
 *        trailing newline is allowed), e.g. made by `head -c32 /dev/urandom | xxd -p -c64`.
 * @returns ESK_OK, or ESK_EINVAL naming the file and the reason.
 */
int esk_token_key_load(unsigned char key[ESK_TOKEN_KEY_BYTES], const char *path,
                       esk_error_t *err);

/**
 * @brief Raises the position of @p partition in @p t to @p offset (adds it
 *        when absent; a lower offset leaves it as it is).
 * @returns ESK_OK, or ESK_EINVAL when @p t is full or the values are negative.
 */
int esk_token_merge(esk_token_t *t, int32_t partition, int64_t offset, esk_error_t *err);

/**
 * @brief Writes the token text of @p t, NUL-terminated, into @p out.
 * @returns ESK_OK, or ESK_EINVAL (an invalid domain or position, or @p size too small).
 */
int esk_token_encode(char *out, size_t size, const esk_token_t *t,
                     const unsigned char key[ESK_TOKEN_KEY_BYTES], esk_error_t *err);

/**
 * @brief Checks and decodes the @p len bytes of token text at @p s.
 * @returns ESK_OK; ESK_EINVAL with the reason ("too long", "not base64url",
 *          "truncated", "MAC does not match", ...), which names no secret.
 */
int esk_token_decode(esk_token_t *out, const char *s, size_t len,
                     const unsigned char key[ESK_TOKEN_KEY_BYTES], esk_error_t *err);

/**
 * @brief The JSON body of an API error, `{"error":{"code":C,"message":M}}`,
 *        NUL-terminated into @p buf (the message is cut to fit).
 * @returns the length written.
 */
size_t esk_api_error_json(char *buf, size_t size, const char *code, const char *message);

/** @brief Counts an answer of @p status in @p requests (labelled `code`; NULL: nothing). */
void esk_api_count(esk_metric_t *requests, unsigned status);

/**
 * @brief Answers @p req with a JSON @p body, counted in @p requests (a
 *        counter family labelled `code`, may be NULL).
 */
void esk_api_send(esk_metric_t *requests, esk_http_req_t *req, unsigned status,
                  const char *body, const char *const *headers);

/**
 * @brief Answers @p req with esk_api_error_json(@p code, @p message); a 503
 *        carries `Retry-After: 1`. Counted as esk_api_send().
 */
void esk_api_send_error(esk_metric_t *requests, esk_http_req_t *req, unsigned status,
                        const char *code, const char *message);

#endif
