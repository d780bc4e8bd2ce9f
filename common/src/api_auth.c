/* Bearer tokens with scopes (see esk/api_auth.h; docs/api.md, "Authentication"). */
#include "esk/api_auth.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "esk/api.h"
#include "esk/file.h"
#include "esk/log.h"

#define FAC "api"
#define NAME_MAX_LEN 63
#define SCOPE_WRITE 1u
#define SCOPE_READ 2u
#define FILE_LINE_MAX 512
#define FILE_MAX (1 << 20)

typedef struct {
  char name[NAME_MAX_LEN + 1];
  unsigned scopes;
  unsigned char hash[crypto_hash_sha256_BYTES];
} entry_t;

struct esk_api_auth_s {
  pthread_mutex_t mu; /* e and n: a reload swaps them while requests are checked */
  entry_t *e;
  size_t n;
  char *path;
};

static unsigned scope_bit(const char *s, size_t n) {
  if (n == strlen(ESK_SCOPE_COMMANDS_WRITE) && !memcmp(s, ESK_SCOPE_COMMANDS_WRITE, n))
    return SCOPE_WRITE;
  if (n == strlen(ESK_SCOPE_QUERIES_READ) && !memcmp(s, ESK_SCOPE_QUERIES_READ, n))
    return SCOPE_READ;
  return 0;
}

static int is_name(const char *s) {
  size_t n = strlen(s);
  if (!n || n > NAME_MAX_LEN) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || strchr("_.-", s[i])))
      return 0;
  return 1;
}

/* One "name scopes hash" line into @p e. */
static int parse_line(entry_t *e, char *line, const char *path, int ln, esk_error_t *err) {
  char *name = strtok(line, " \t"), *scopes = strtok(NULL, " \t"), *hex = strtok(NULL, " \t");
  if (!name || !scopes || !hex || strtok(NULL, " \t"))
    return esk_error_set(err, ESK_EINVAL, "%s:%d: expected 'name scopes sha256-hex'", path, ln);
  if (!is_name(name))
    return esk_error_set(err, ESK_EINVAL, "%s:%d: token name '%.64s' is not [a-z0-9_.-]{1,63}",
                         path, ln, name);
  memcpy(e->name, name, strlen(name) + 1);
  e->scopes = 0;
  for (char *s = scopes, *end;; s = end + 1) { /* "a,", ",a" and "a,,b" hold an empty one */
    end = s + strcspn(s, ",");
    unsigned b = scope_bit(s, (size_t)(end - s));
    if (!b)
      return esk_error_set(err, ESK_EINVAL, "%s:%d: unknown scope '%.*s' (%s, %s)", path, ln,
                           (int)(end - s), s, ESK_SCOPE_COMMANDS_WRITE, ESK_SCOPE_QUERIES_READ);
    e->scopes |= b;
    if (!*end) break;
  }
  size_t bin = 0;
  if (strlen(hex) != 2 * sizeof(e->hash) ||
      sodium_hex2bin(e->hash, sizeof(e->hash), hex, strlen(hex), NULL, &bin, NULL) ||
      bin != sizeof(e->hash))
    return esk_error_set(err, ESK_EINVAL, "%s:%d: token %s: expected the SHA-256 of the token "
                         "as 64 hexadecimal characters (printf %%s TOKEN | sha256sum)", path, ln,
                         e->name);
  return ESK_OK;
}

static int add_line(esk_api_auth_t *a, char *line, const char *path, int ln, esk_error_t *err) {
  entry_t e;
  int rc = parse_line(&e, line, path, ln, err);
  if (rc) return rc;
  for (size_t i = 0; i < a->n; i++)
    if (!strcmp(a->e[i].name, e.name) || !sodium_memcmp(a->e[i].hash, e.hash, sizeof(e.hash)))
      return esk_error_set(err, ESK_EINVAL, "%s:%d: token %s: its name or hash is on an "
                           "earlier line", path, ln, e.name);
  entry_t *grown = realloc(a->e, (a->n + 1) * sizeof(*grown));
  if (!grown) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  a->e = grown;
  a->e[a->n++] = e;
  return ESK_OK;
}

/* Every line of @p text (NUL-free, NUL-terminated), comments and blanks skipped. */
static int read_lines(esk_api_auth_t *a, char *text, const char *path, esk_error_t *err) {
  int ln = 0, rc = ESK_OK;
  for (char *line = text, *next; !rc && line && *line; line = next) {
    ln++;
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    if (strlen(line) > FILE_LINE_MAX)
      return esk_error_set(err, ESK_EINVAL, "%s:%d: line longer than %d bytes", path, ln,
                           FILE_LINE_MAX);
    line[strcspn(line, "\r")] = '\0';
    char *s = line + strspn(line, " \t");
    if (*s && *s != '#') rc = add_line(a, s, path, ln, err);
  }
  if (!rc && !a->n)
    rc = esk_error_set(err, ESK_EINVAL, "%s: holds no token (to turn authentication off, "
                       "leave api.auth.file empty)", path);
  return rc;
}

static int is_loopback(const char *listen) {
  return !strncmp(listen, "127.", 4) || !strncmp(listen, "[::1]", 5) ||
         !strncmp(listen, "localhost:", 10) || !strcmp(listen, "off");
}

/* The tokens of the file at @p path into @p a's e and n (a holds none yet). */
static int read_file(esk_api_auth_t *a, const char *path, esk_error_t *err) {
  char what[600], *text;
  size_t n;
  snprintf(what, sizeof(what), "api.auth.file=%s", path);
  int rc = esk_file_read_text(&text, &n, path, FILE_MAX, what, err);
  if (rc) return rc;
  rc = read_lines(a, text, path, err);
  sodium_memzero(text, n);
  free(text);
  return rc;
}

int esk_api_auth_load(esk_api_auth_t **out, const char *path, const char *listen,
                      esk_error_t *err) {
  *out = NULL;
  if (!path || !*path) {
    if (listen && !is_loopback(listen))
      ESK_WARN(FAC, "msg=\"no authentication: api.auth.file is empty while http.listen is not "
               "loopback; anyone who reaches %s may use the API\"", listen);
    return ESK_OK;
  }
  esk_api_auth_t *a = calloc(1, sizeof(*a));
  if (!a || !(a->path = strdup(path))) {
    free(a);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&a->mu, NULL);
  int rc = read_file(a, path, err);
  if (rc) {
    esk_api_auth_free(a);
    return rc;
  }
  *out = a;
  return ESK_OK;
}

int esk_api_auth_reload(esk_api_auth_t *a, esk_error_t *err) {
  if (!a) return ESK_OK;
  esk_api_auth_t fresh = {.e = NULL, .n = 0};
  int rc = read_file(&fresh, a->path, err);
  if (rc) {
    free(fresh.e);
    return rc;
  }
  pthread_mutex_lock(&a->mu);
  entry_t *old = a->e;
  size_t old_n = a->n;
  a->e = fresh.e;
  a->n = fresh.n;
  pthread_mutex_unlock(&a->mu);
  if (old) sodium_memzero(old, old_n * sizeof(*old));
  free(old);
  ESK_INFO(FAC, "msg=\"tokens reloaded\" api.auth.file=%s tokens=%zu", a->path, fresh.n);
  return ESK_OK;
}

void esk_api_auth_free(esk_api_auth_t *a) {
  if (!a) return;
  if (a->path) pthread_mutex_destroy(&a->mu); /* initialised once path is set */
  free(a->e);
  free(a->path);
  free(a);
}

/* The entry whose hash is @p h, with a->mu held: every entry is compared, so
 * the time does not say which. Its 401/403 status and message, or 0. */
static unsigned check_locked(const esk_api_auth_t *a, const unsigned char *h, const char *scope,
                             char *msg, size_t size) {
  const entry_t *found = NULL;
  for (size_t i = 0; i < a->n; i++)
    if (!sodium_memcmp(a->e[i].hash, h, crypto_hash_sha256_BYTES)) found = &a->e[i];
  if (!found) return snprintf(msg, size, "the bearer token is not known"), 401;
  if (!(found->scopes & scope_bit(scope, strlen(scope))))
    return snprintf(msg, size, "token %s lacks the scope %s", found->name, scope), 403;
  return 0;
}

unsigned esk_api_auth_check(esk_api_auth_t *a, const char *authorization, const char *scope,
                            char *msg, size_t size) {
  if (!a) return 0;
  if (!authorization || strncasecmp(authorization, "Bearer ", 7))
    return snprintf(msg, size, "an Authorization: Bearer token is required"), 401;
  const char *tok = authorization + 7;
  size_t n = strlen(tok);
  if (!n || n > ESK_AUTH_TOKEN_MAX)
    return snprintf(msg, size, "the bearer token must be 1..%d bytes", ESK_AUTH_TOKEN_MAX), 401;
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, (const unsigned char *)tok, n);
  pthread_mutex_lock(&a->mu);
  unsigned st = check_locked(a, h, scope, msg, size);
  pthread_mutex_unlock(&a->mu);
  sodium_memzero(h, sizeof(h));
  return st;
}

int esk_api_auth_require(esk_api_auth_t *a, esk_metric_t *requests, esk_http_req_t *req,
                         const char *scope) {
  char msg[200];
  unsigned st = esk_api_auth_check(a, esk_http_req_header(req, "Authorization"), scope, msg,
                                   sizeof(msg));
  if (!st) return 0;
  char body[400];
  esk_api_error_json(body, sizeof(body), st == 401 ? "UNAUTHORIZED" : "FORBIDDEN", msg);
  const char *www[] = {"WWW-Authenticate", "Bearer realm=\"esk\"", NULL};
  esk_api_send(requests, req, st, body, st == 401 ? www : NULL);
  return 1;
}
