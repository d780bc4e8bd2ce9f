/* Crypto-shredding: master key, subject keys, the wire form of an encrypted
 * value (docs/architecture.md, "Personal data"). Nothing here logs; no error
 * message holds a key, a plaintext or a ciphertext. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec_internal.h"
#include "esk/file.h"
#include "esk/hmap.h"
#include "esk/kafka.h"
#include "esk/personal.h"
#include "esk/shred.h"
#include "esk/text.h"

#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define MASTER_ID_BYTES 16
#define RECORD_VERSION 1
/* version, master key id, nonce, wrapped key and tag */
#define RECORD_BYTES (1 + MASTER_ID_BYTES + NONCE_BYTES + ESK_SHRED_KEY_BYTES + TAG_BYTES)
#define PREFIX_LEN (sizeof(ESK_SHRED_PREFIX) - 1)
/* base64 characters that hold a key id (and 2 bytes more) */
#define KEY_ID_B64 24
/* Longest personal string encrypted or decrypted, in bytes. */
#define VALUE_MAX ((size_t)1 << 20)

typedef struct {
  uint8_t k[ESK_SHRED_KEY_BYTES];
  uint8_t committed; /* its record is published (read from the topic, or committed) */
  uint64_t seq;      /* the transaction its record was last handed out for */
} skey_t;

typedef struct {
  uint8_t id[ESK_SHRED_KEY_ID_BYTES]; /* the key new values of the subject use */
  uint8_t has_key;
  uint8_t forgotten;
} ssubj_t;

typedef struct {
  uint8_t id[ESK_SHRED_KEY_ID_BYTES];
  char *subject;
} pend_t;

struct esk_shred_s {
  uint8_t *master; /* sodium_malloc'd, ESK_SHRED_KEY_BYTES */
  uint8_t master_id[MASTER_ID_BYTES];
  esk_hmap_t *keys;     /* key id -> skey_t */
  esk_hmap_t *subjects; /* subject id -> ssubj_t */
  uint64_t seq;
  pend_t *pend; /* records to hand out */
  size_t npend, cappend;
  uint8_t (*txn)[ESK_SHRED_KEY_ID_BYTES]; /* keys handed out in this transaction */
  size_t ntxn, captxn;
  esk_buf_t scratch;
  int64_t *next; /* per partition of the subject-keys topic: the next offset to read */
  int nparts;
  char **forgot; /* forgotten subjects, in the order their marks were first read */
  size_t nforgot, capforgot;
};

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int unhex(uint8_t *out, size_t n, const char *hex) {
  for (size_t i = 0; i < n; i++) {
    int hi = hexval((unsigned char)hex[2 * i]), lo = hi < 0 ? -1 : hexval((unsigned char)hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

static int read_master(esk_shred_t *sh, const char *path, esk_error_t *err) {
  struct stat st;
  if (stat(path, &st))
    return esk_error_set(err, ESK_EINVAL, "master key file %s: cannot be read", path);
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    return esk_error_set(err, ESK_EINVAL,
                         "master key file %s: others may read or write it (mode %03o); allow "
                         "only its owner (chmod 600)",
                         path, (unsigned)(st.st_mode & 0777));
  char *text = NULL;
  size_t len = 0;
  int rc = esk_file_read_text(&text, &len, path, 256, "master key file", err);
  if (rc) return rc;
  while (len && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
  if (len != 2 * ESK_SHRED_KEY_BYTES || unhex(sh->master, ESK_SHRED_KEY_BYTES, text))
    rc = esk_error_set(err, ESK_EINVAL,
                       "master key file %s: expected 64 hex digits (32 random bytes, e.g. from "
                       "`openssl rand -hex 32`)",
                       path);
  sodium_memzero(text, len);
  free(text);
  if (rc) return rc;
  static const uint8_t label[] = "esk.master-key-id";
  crypto_generichash(sh->master_id, MASTER_ID_BYTES, label, sizeof(label) - 1, sh->master,
                     ESK_SHRED_KEY_BYTES);
  return ESK_OK;
}

int esk_shred_new(esk_shred_t **out, const char *path, esk_error_t *err) {
  if (sodium_init() < 0) return esk_error_set(err, ESK_EFATAL, "libsodium cannot start");
  esk_shred_t *sh = calloc(1, sizeof(*sh));
  if (!sh) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  esk_buf_init(&sh->scratch, 4 * VALUE_MAX);
  sh->master = sodium_malloc(ESK_SHRED_KEY_BYTES);
  int rc = sh->master ? ESK_OK : esk_error_set(err, ESK_ENOMEM, "out of memory");
  if (!rc) rc = esk_hmap_new(&sh->keys, sizeof(skey_t), 0, 0, err);
  if (!rc) rc = esk_hmap_new(&sh->subjects, sizeof(ssubj_t), 0, 0, err);
  if (!rc) rc = read_master(sh, path, err);
  if (rc) {
    esk_shred_destroy(sh);
    return rc;
  }
  *out = sh;
  return ESK_OK;
}

static int wipe_key(const void *k, size_t n, void *v, void *ctx) {
  (void)k, (void)n, (void)ctx;
  sodium_memzero(v, sizeof(skey_t));
  return 0;
}

static void clear_pending(esk_shred_t *sh) {
  for (size_t i = 0; i < sh->npend; i++) free(sh->pend[i].subject);
  sh->npend = 0;
}

void esk_shred_destroy(esk_shred_t *sh) {
  if (!sh) return;
  if (sh->keys) esk_hmap_foreach(sh->keys, wipe_key, NULL);
  esk_hmap_destroy(sh->keys);
  esk_hmap_destroy(sh->subjects);
  if (sh->master) sodium_free(sh->master);
  clear_pending(sh);
  free(sh->pend);
  free(sh->txn);
  free(sh->next);
  for (size_t i = 0; i < sh->nforgot; i++) free(sh->forgot[i]);
  free(sh->forgot);
  if (sh->scratch.data) sodium_memzero(sh->scratch.data, sh->scratch.cap);
  esk_buf_free(&sh->scratch);
  sodium_memzero(sh, sizeof(*sh));
  free(sh);
}

/* ------------------------------------------------------------- records */

/* Splits a record key `<subject>/<suffix>`: the subject's length, or -1. */
static long split_key(const char *key, size_t len, const char **suffix, size_t *suffix_len) {
  const char *slash = NULL;
  for (size_t i = len; i-- > 0;)
    if (key[i] == '/') {
      slash = key + i;
      break;
    }
  if (!slash || slash == key || (size_t)(slash - key) > ESK_SHRED_SUBJECT_MAX) return -1;
  *suffix = slash + 1;
  *suffix_len = len - (size_t)(slash - key) - 1;
  return slash - key;
}

/* Marks subject @p s (@p len bytes at @p subject) forgotten, listing it once. */
static int mark_forgotten(esk_shred_t *sh, ssubj_t *s, const char *subject, size_t len,
                          esk_error_t *err) {
  s->has_key = 0;
  if (s->forgotten) return ESK_OK; /* the mark is written again (--roll-after-ms) */
  char **grown = esk_array_grow(sh->forgot, &sh->capforgot, sh->nforgot + 1, sizeof(*grown), 16);
  char *copy = malloc(len + 1);
  if (grown) sh->forgot = grown;
  if (!grown || !copy) {
    free(copy);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  memcpy(copy, subject, len);
  copy[len] = '\0';
  sh->forgot[sh->nforgot++] = copy;
  s->forgotten = 1;
  return ESK_OK;
}

static ssubj_t *subject_get(esk_shred_t *sh, const char *subject, size_t len, esk_error_t *err) {
  ssubj_t *s = esk_hmap_get(sh->subjects, subject, len);
  if (s) return s;
  ssubj_t fresh = {0};
  void *stored = NULL;
  if (esk_hmap_put(sh->subjects, subject, len, &fresh, &stored, NULL, err)) return NULL;
  return stored;
}

int esk_shred_apply_record(esk_shred_t *sh, const void *key, size_t key_len, const void *value,
                           size_t value_len, esk_error_t *err) {
  const char *suffix;
  size_t slen;
  long sublen = split_key(key, key_len, &suffix, &slen);
  if (sublen < 0)
    return esk_error_set(err, ESK_EPOISON,
                         "subject-keys record: its key is not <subject id>/<key id>");
  if (slen == strlen(ESK_SHRED_FORGOTTEN) && !memcmp(suffix, ESK_SHRED_FORGOTTEN, slen)) {
    if (!value) return ESK_OK; /* the mark itself is never deleted; nothing to undo */
    ssubj_t *s = subject_get(sh, key, (size_t)sublen, err);
    if (!s) return err->code;
    return mark_forgotten(sh, s, key, (size_t)sublen, err);
  }
  uint8_t id[ESK_SHRED_KEY_ID_BYTES];
  if (slen != 2 * ESK_SHRED_KEY_ID_BYTES || unhex(id, sizeof(id), suffix))
    return esk_error_set(err, ESK_EPOISON,
                         "subject-keys record: its key does not end in a 32-hex-digit key id");
  if (!value) { /* tombstone: the key is destroyed */
    skey_t *k = esk_hmap_get(sh->keys, id, sizeof(id));
    if (k) {
      sodium_memzero(k, sizeof(*k));
      esk_hmap_remove(sh->keys, id, sizeof(id));
    }
    ssubj_t *s = esk_hmap_get(sh->subjects, key, (size_t)sublen);
    if (s && s->has_key && !memcmp(s->id, id, sizeof(id))) s->has_key = 0;
    return ESK_OK;
  }
  const uint8_t *v = value;
  if (value_len != RECORD_BYTES || v[0] != RECORD_VERSION)
    return esk_error_set(err, ESK_EPOISON,
                         "subject-keys record: a value of %zu bytes is not a version %d key "
                         "record of %d bytes",
                         value_len, RECORD_VERSION, RECORD_BYTES);
  if (sodium_memcmp(v + 1, sh->master_id, MASTER_ID_BYTES))
    return esk_error_set(err, ESK_EFATAL,
                         "subject-keys: the keys were wrapped by another master key than the "
                         "one in the master key file (its id differs): wrong master key file");
  skey_t k = {0};
  unsigned long long klen = 0;
  const uint8_t *nonce = v + 1 + MASTER_ID_BYTES;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(k.k, &klen, NULL, nonce + NONCE_BYTES,
                                                 ESK_SHRED_KEY_BYTES + TAG_BYTES, key, key_len,
                                                 nonce, sh->master) ||
      klen != ESK_SHRED_KEY_BYTES) {
    sodium_memzero(&k, sizeof(k));
    return esk_error_set(err, ESK_EFATAL,
                         "subject-keys: a key does not unwrap with the master key (a wrong "
                         "master key file, or a damaged record)");
  }
  k.committed = 1;
  int rc = esk_hmap_put(sh->keys, id, sizeof(id), &k, NULL, NULL, err);
  sodium_memzero(&k, sizeof(k));
  if (rc) return rc;
  ssubj_t *s = subject_get(sh, key, (size_t)sublen, err);
  if (!s) return err->code;
  if (!s->has_key && !s->forgotten) {
    memcpy(s->id, id, sizeof(id));
    s->has_key = 1;
  }
  return ESK_OK;
}

int esk_shred_forgotten(const esk_shred_t *sh, const char *subject) {
  const ssubj_t *s = esk_hmap_get(sh->subjects, subject, strlen(subject));
  return s && s->forgotten;
}

size_t esk_shred_forgotten_count(const esk_shred_t *sh) { return sh->nforgot; }

const char *esk_shred_forgotten_at(const esk_shred_t *sh, size_t i) {
  return i < sh->nforgot ? sh->forgot[i] : NULL;
}

size_t esk_shred_key_count(const esk_shred_t *sh) { return esk_hmap_count(sh->keys); }

/* The record of key @p id of @p subject, wrapped afresh. */
static int wrap_record(const esk_shred_t *sh, const char *subject, const uint8_t *id,
                       const uint8_t *k, char **key_out, size_t *key_len, uint8_t **value_out,
                       size_t *value_len, esk_error_t *err) {
  size_t sl = strlen(subject), kl = sl + 1 + 2 * ESK_SHRED_KEY_ID_BYTES;
  char *rk = malloc(kl + 1);
  uint8_t *v = malloc(RECORD_BYTES);
  if (!rk || !v) {
    free(rk);
    free(v);
    return esk_error_set(err, ESK_ENOMEM, "out of memory");
  }
  memcpy(rk, subject, sl);
  rk[sl] = '/';
  sodium_bin2hex(rk + sl + 1, 2 * ESK_SHRED_KEY_ID_BYTES + 1, id, ESK_SHRED_KEY_ID_BYTES);
  v[0] = RECORD_VERSION;
  memcpy(v + 1, sh->master_id, MASTER_ID_BYTES);
  uint8_t *nonce = v + 1 + MASTER_ID_BYTES;
  randombytes_buf(nonce, NONCE_BYTES);
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + NONCE_BYTES, NULL, k, ESK_SHRED_KEY_BYTES,
                                             (const uint8_t *)rk, kl, NULL, nonce, sh->master);
  *key_out = rk;
  *key_len = kl;
  *value_out = v;
  *value_len = RECORD_BYTES;
  return ESK_OK;
}

/* The key new values of @p subject use, made when it has none. */
static skey_t *key_for(esk_shred_t *sh, const char *subject, uint8_t id[ESK_SHRED_KEY_ID_BYTES],
                       esk_error_t *err) {
  ssubj_t *s = subject_get(sh, subject, strlen(subject), err);
  if (!s) return NULL;
  if (s->has_key) {
    memcpy(id, s->id, ESK_SHRED_KEY_ID_BYTES);
    skey_t *k = esk_hmap_get(sh->keys, id, ESK_SHRED_KEY_ID_BYTES);
    if (k) return k;
  }
  skey_t fresh = {0};
  randombytes_buf(id, ESK_SHRED_KEY_ID_BYTES);
  crypto_aead_xchacha20poly1305_ietf_keygen(fresh.k);
  fresh.seq = (uint64_t)-1; /* never handed out yet */
  void *stored = NULL;
  int rc = esk_hmap_put(sh->keys, id, ESK_SHRED_KEY_ID_BYTES, &fresh, &stored, NULL, err);
  sodium_memzero(&fresh, sizeof(fresh));
  if (rc) return NULL;
  memcpy(s->id, id, ESK_SHRED_KEY_ID_BYTES);
  s->has_key = 1;
  return stored;
}

/* Queues key @p id's record for esk_shred_take_records() unless it is
 * published or queued for this transaction already. */
static int queue_record(esk_shred_t *sh, skey_t *k, const uint8_t *id, const char *subject,
                        esk_error_t *err) {
  if (k->committed || k->seq == sh->seq) return ESK_OK;
  if (sh->npend == sh->cappend) {
    size_t cap = sh->cappend ? 2 * sh->cappend : 8;
    pend_t *p = realloc(sh->pend, cap * sizeof(*p));
    if (!p) return esk_error_set(err, ESK_ENOMEM, "out of memory");
    sh->pend = p;
    sh->cappend = cap;
  }
  char *subj = strdup(subject);
  if (!subj) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  memcpy(sh->pend[sh->npend].id, id, ESK_SHRED_KEY_ID_BYTES);
  sh->pend[sh->npend++].subject = subj;
  k->seq = sh->seq;
  return ESK_OK;
}

void esk_shred_txn_begin(esk_shred_t *sh) {
  sh->seq++;
  sh->ntxn = 0;
  clear_pending(sh);
}

void esk_shred_txn_committed(esk_shred_t *sh) {
  for (size_t i = 0; i < sh->ntxn; i++) {
    skey_t *k = esk_hmap_get(sh->keys, sh->txn[i], ESK_SHRED_KEY_ID_BYTES);
    if (k) k->committed = 1;
  }
  sh->ntxn = 0;
}

int esk_shred_take_records(esk_shred_t *sh, esk_shred_record_fn fn, void *ctx) {
  esk_error_t err = {0};
  int rc = ESK_OK;
  size_t i = 0;
  for (; i < sh->npend && !rc; i++) {
    pend_t *p = &sh->pend[i];
    skey_t *k = esk_hmap_get(sh->keys, p->id, ESK_SHRED_KEY_ID_BYTES);
    if (!k) continue; /* destroyed meanwhile */
    if (sh->ntxn == sh->captxn) {
      size_t cap = sh->captxn ? 2 * sh->captxn : 8;
      void *t = realloc(sh->txn, cap * sizeof(*sh->txn));
      if (!t) return ESK_ENOMEM;
      sh->txn = t;
      sh->captxn = cap;
    }
    char *rk = NULL;
    uint8_t *v = NULL;
    size_t kl = 0, vl = 0;
    rc = wrap_record(sh, p->subject, p->id, k->k, &rk, &kl, &v, &vl, &err);
    if (!rc) rc = fn(rk, kl, v, vl, ctx);
    if (!rc) memcpy(sh->txn[sh->ntxn++], p->id, ESK_SHRED_KEY_ID_BYTES);
    free(rk);
    free(v);
  }
  /* what was handed out leaves the queue; the rest stays */
  if (!i) return rc; /* nothing queued (sh->pend may still be NULL) */
  for (size_t j = 0; j < i; j++) free(sh->pend[j].subject);
  memmove(sh->pend, sh->pend + i, (sh->npend - i) * sizeof(*sh->pend));
  sh->npend -= i;
  return rc;
}

int esk_shred_new_key_record(esk_shred_t *sh, const char *subject, char **key_out,
                             size_t *key_len, uint8_t **value_out, size_t *value_len,
                             esk_error_t *err) {
  uint8_t id[ESK_SHRED_KEY_ID_BYTES];
  skey_t *k = key_for(sh, subject, id, err);
  if (!k) return err->code;
  return wrap_record(sh, subject, id, k->k, key_out, key_len, value_out, value_len, err);
}

/* -------------------------------------------------------------- values */

typedef struct {
  esk_shred_t *sh;
  const char *subject;
  const char *field;
  int mode; /* 0 encrypt, 1 count missing keys, 2 decrypt */
  size_t missing;
  esk_error_t *err;
} walk_t;

/* The personal field's string and its length without the NUL avro-c counts. */
static int leaf_string(walk_t *w, avro_value_t *v, const char **s, size_t *len) {
  size_t size = 0;
  if (avro_value_get_string(v, s, &size))
    return esk_error_set(w->err, ESK_EPOISON, "field '%s': not a string", w->field);
  *len = size ? size - 1 : 0;
  return ESK_OK;
}

static int leaf_encrypt(walk_t *w, avro_value_t *v) {
  const char *s = NULL;
  size_t len = 0;
  int rc = leaf_string(w, v, &s, &len);
  if (rc) return rc;
  if (len > VALUE_MAX)
    return esk_error_set(w->err, ESK_EPOISON, "field '%s': a personal value over %zu bytes",
                         w->field, VALUE_MAX);
  uint8_t id[ESK_SHRED_KEY_ID_BYTES];
  skey_t *k = key_for(w->sh, w->subject, id, w->err);
  if (!k) return w->err->code;
  if ((rc = queue_record(w->sh, k, id, w->subject, w->err))) return rc;
  size_t bin = ESK_SHRED_KEY_ID_BYTES + NONCE_BYTES + len + TAG_BYTES;
  size_t b64 = sodium_base64_ENCODED_LEN(bin, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  esk_buf_t *sc = &w->sh->scratch;
  esk_buf_reset(sc);
  rc = esk_buf_reserve(sc, bin + PREFIX_LEN + b64, w->err);
  if (rc) return rc;
  uint8_t *raw = (uint8_t *)sc->data;
  memcpy(raw, id, ESK_SHRED_KEY_ID_BYTES);
  uint8_t *nonce = raw + ESK_SHRED_KEY_ID_BYTES;
  randombytes_buf(nonce, NONCE_BYTES);
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + NONCE_BYTES, NULL, (const uint8_t *)s, len,
                                             (const uint8_t *)w->subject, strlen(w->subject), NULL,
                                             nonce, k->k);
  char *text = (char *)sc->data + bin;
  memcpy(text, ESK_SHRED_PREFIX, PREFIX_LEN);
  sodium_bin2base64(text + PREFIX_LEN, b64, raw, bin, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  if (avro_value_set_string(v, text))
    return esk_error_set(w->err, ESK_ENOMEM, "field '%s': %s", w->field, avro_strerror());
  return ESK_OK;
}

static int leaf_decrypt(walk_t *w, avro_value_t *v) {
  const char *s = NULL;
  size_t len = 0;
  int rc = leaf_string(w, v, &s, &len);
  if (rc) return rc;
  if (len < PREFIX_LEN || memcmp(s, ESK_SHRED_PREFIX, PREFIX_LEN)) return ESK_OK; /* clear */
  const char *b64 = s + PREFIX_LEN;
  size_t b64len = len - PREFIX_LEN;
  if (w->mode == 1 && b64len >= KEY_ID_B64) {
    /* counting: the key id is enough (its 16 bytes are the first 22 characters
     * and 4 bits of the 23rd; 24 characters decode to 18 bytes) */
    uint8_t id[18];
    size_t got = 0;
    if (sodium_base642bin(id, sizeof(id), b64, KEY_ID_B64, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        got < ESK_SHRED_KEY_ID_BYTES)
      return esk_error_set(w->err, ESK_EPOISON,
                           "field '%s': a value with the " ESK_SHRED_PREFIX
                           " prefix that does not start with a key id in base64",
                           w->field);
    /* a key held: the decrypting pass reads the whole value; a key missing:
     * read it whole now, so that a malformed value is poison, not forgotten */
    if (esk_hmap_get(w->sh->keys, id, ESK_SHRED_KEY_ID_BYTES)) return ESK_OK;
  }
  size_t cap = b64len / 4 * 3 + 3;
  if (b64len > 2 * VALUE_MAX)
    return esk_error_set(w->err, ESK_EPOISON, "field '%s': an encrypted value over the limit",
                         w->field);
  esk_buf_t *sc = &w->sh->scratch;
  esk_buf_reset(sc);
  rc = esk_buf_reserve(sc, 2 * cap + 1, w->err);
  if (rc) return rc;
  uint8_t *raw = (uint8_t *)sc->data;
  size_t bin = 0;
  const char *end = NULL;
  if (sodium_base642bin(raw, cap, b64, b64len, NULL, &bin, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
      end != b64 + b64len || bin < ESK_SHRED_KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES)
    return esk_error_set(w->err, ESK_EPOISON,
                         "field '%s': a value with the " ESK_SHRED_PREFIX
                         " prefix that is not key id, nonce and ciphertext in base64",
                         w->field);
  skey_t *k = esk_hmap_get(w->sh->keys, raw, ESK_SHRED_KEY_ID_BYTES);
  if (!k) {
    w->missing++;
    return ESK_OK;
  }
  if (w->mode == 1) return ESK_OK;
  const uint8_t *nonce = raw + ESK_SHRED_KEY_ID_BYTES;
  size_t ctlen = bin - ESK_SHRED_KEY_ID_BYTES - NONCE_BYTES;
  uint8_t *plain = raw + cap;
  unsigned long long plen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, nonce + NONCE_BYTES, ctlen,
                                                 (const uint8_t *)w->subject, strlen(w->subject),
                                                 nonce, k->k))
    return esk_error_set(w->err, ESK_EPOISON,
                         "field '%s': an encrypted value fails authentication with its "
                         "subject's key (tampered, or moved from another subject's event)",
                         w->field);
  if (esk_utf8_check(plain, (size_t)plen) != (size_t)plen)
    return esk_error_set(w->err, ESK_EPOISON,
                         "field '%s': the decrypted value is not UTF-8 without U+0000", w->field);
  plain[plen] = 0;
  if (avro_value_set_string(v, (const char *)plain))
    return esk_error_set(w->err, ESK_ENOMEM, "field '%s': %s", w->field, avro_strerror());
  sodium_memzero(plain, (size_t)plen);
  return ESK_OK;
}

/* Calls the leaf function of @p w on every string inside @p v. */
static int walk(walk_t *w, avro_value_t *v, int depth) {
  if (depth > 64) return esk_error_set(w->err, ESK_EPOISON, "field '%s': nested too deep", w->field);
  switch (avro_value_get_type(v)) {
  case AVRO_STRING:
    return w->mode == 0 ? leaf_encrypt(w, v) : leaf_decrypt(w, v);
  case AVRO_UNION: {
    avro_value_t b;
    if (avro_value_get_current_branch(v, &b)) return ESK_OK; /* no branch set */
    return walk(w, &b, depth + 1);
  }
  case AVRO_RECORD: {
    size_t n = 0;
    avro_value_get_size(v, &n);
    for (size_t i = 0; i < n; i++) {
      avro_value_t f;
      if (avro_value_get_by_index(v, i, &f, NULL)) continue;
      int rc = walk(w, &f, depth + 1);
      if (rc) return rc;
    }
    return ESK_OK;
  }
  default:
    return ESK_OK; /* null; other types cannot be marked (personal.c) */
  }
}

/* The subject id of @p value for mark @p pf. */
static int subject_of(avro_value_t *value, const esk_personal_field_t *pf, const char **out,
                      esk_error_t *err) {
  avro_value_t sv;
  const char *s = NULL;
  size_t size = 0;
  if (avro_value_get_by_index(value, pf->subject_index, &sv, NULL) ||
      avro_value_get_string(&sv, &s, &size))
    return esk_error_set(err, ESK_EPOISON, "field '%s': no subject field '%s'", pf->name,
                         pf->subject);
  if (size <= 1 || size - 1 > ESK_SHRED_SUBJECT_MAX)
    return esk_error_set(err, ESK_EPOISON,
                         "field '%s': its subject '%s' is empty or longer than %d bytes",
                         pf->name, pf->subject, ESK_SHRED_SUBJECT_MAX);
  *out = s;
  return ESK_OK;
}

/* Sets field @p i (mark @p pf) of @p value to its `forgotten` value. */
static int set_forgotten(const esk_schema_t *schema, size_t i, avro_value_t *value,
                         esk_error_t *err) {
  const esk_personal_field_t *pf = &schema->personal[i];
  avro_value_t f;
  if (avro_value_get_by_index(value, pf->index, &f, NULL))
    return esk_error_set(err, ESK_EPOISON, "field '%s' is missing", pf->name);
  return esk_value_set_json(esk_schema_node(schema)->fields[pf->index].type, &f,
                            schema->forgotten[i], 0, pf->name, err);
}

int esk_shred_encrypt_value(esk_shred_t *sh, const esk_schema_t *schema, avro_value_t *value,
                            esk_error_t *err) {
  for (size_t i = 0; i < schema->npersonal; i++) {
    const esk_personal_field_t *pf = &schema->personal[i];
    walk_t w = {sh, NULL, pf->name, 0, 0, err};
    int rc = subject_of(value, pf, &w.subject, err);
    if (rc) return rc;
    if (esk_shred_forgotten(sh, w.subject)) {
      rc = set_forgotten(schema, i, value, err);
    } else {
      avro_value_t f;
      if (avro_value_get_by_index(value, pf->index, &f, NULL))
        return esk_error_set(err, ESK_EPOISON, "field '%s' is missing", pf->name);
      rc = walk(&w, &f, 0);
    }
    if (rc) return rc;
  }
  return ESK_OK;
}

int esk_shred_decrypt_value(esk_shred_t *sh, const esk_schema_t *schema, avro_value_t *value,
                            int forget_missing, esk_error_t *err) {
  /* first count the values whose key is not held, changing nothing; a
   * subject marked forgotten takes the replacement even while a key of its
   * is still held (its tombstones follow the mark), so that nothing decoded
   * after a reader has seen the mark holds plaintext (read models are
   * scrubbed once the mark is seen: docs/architecture.md, "Personal data") */
  size_t missing[ESK_PERSONAL_MAX_FIELDS] = {0};
  size_t any = 0;
  for (size_t i = 0; i < schema->npersonal; i++) {
    const esk_personal_field_t *pf = &schema->personal[i];
    walk_t w = {sh, NULL, pf->name, 1, 0, err};
    avro_value_t f;
    int rc = subject_of(value, pf, &w.subject, err);
    if (!rc && esk_shred_forgotten(sh, w.subject)) {
      missing[i] = SIZE_MAX; /* forgotten: not missing, no reading of the topic needed */
      continue;
    }
    if (!rc && avro_value_get_by_index(value, pf->index, &f, NULL))
      rc = esk_error_set(err, ESK_EPOISON, "field '%s' is missing", pf->name);
    if (!rc) rc = walk(&w, &f, 0);
    if (rc) return rc;
    missing[i] = w.missing;
    any += w.missing;
  }
  if (any && !forget_missing)
    return esk_error_set(err, ESK_ENOTFOUND,
                         "%zu personal value(s) of %s v%d need a key this reader does not hold",
                         any, esk_schema_type(schema), esk_schema_version(schema));
  for (size_t i = 0; i < schema->npersonal; i++) {
    const esk_personal_field_t *pf = &schema->personal[i];
    int rc;
    if (missing[i]) {
      rc = set_forgotten(schema, i, value, err);
    } else {
      walk_t w = {sh, NULL, pf->name, 2, 0, err};
      avro_value_t f;
      rc = subject_of(value, pf, &w.subject, err);
      if (!rc) avro_value_get_by_index(value, pf->index, &f, NULL);
      if (!rc) rc = walk(&w, &f, 0);
    }
    if (rc) return rc;
  }
  return ESK_OK;
}

int esk_shred_decrypt_refreshing(esk_shred_t *sh, const esk_schema_t *schema, avro_value_t *value,
                                 esk_shred_refresh_fn refresh, void *ctx, esk_error_t *err) {
  int rc = esk_shred_decrypt_value(sh, schema, value, 0, err);
  if (rc != ESK_ENOTFOUND) return rc;
  if (refresh && (rc = refresh(ctx, err))) return rc;
  return esk_shred_decrypt_value(sh, schema, value, 1, err);
}

int esk_shred_message(esk_shred_t *sh, int encrypt, esk_codec_t *c, const esk_schema_set_t *set,
                      const void *data, size_t len, esk_shred_refresh_fn refresh, void *ctx,
                      esk_buf_t *b, const void **out, size_t *out_len, esk_error_t *err) {
  uint64_t fp = 0;
  *out = data;
  *out_len = len;
  if (esk_codec_peek(data, len, &fp, err)) return ESK_EPOISON;
  const esk_schema_t *ws = esk_schema_set_by_fingerprint(set, fp);
  if (!ws || !ws->npersonal) return ESK_OK; /* the decoder says what is wrong with it */
  const esk_schema_t *rs = NULL;
  avro_value_t *v = NULL;
  int rc = esk_codec_decode(c, data, len, esk_schema_version(ws), &rs, &v, err);
  if (rc) return rc;
  rc = encrypt ? esk_shred_encrypt_value(sh, rs, v, err)
               : esk_shred_decrypt_refreshing(sh, rs, v, refresh, ctx, err);
  if (rc) return rc;
  esk_buf_reset(b);
  if ((rc = esk_codec_encode(c, rs, v, b, err))) return rc;
  *out = b->data;
  *out_len = b->len;
  return ESK_OK;
}

/* ------------------------------------------------------------ the topic */

typedef struct {
  esk_shred_t *sh;
  size_t skipped;
  esk_error_t *err;
} catch_t;

static int on_key_record(const rd_kafka_message_t *m, void *ctx) {
  catch_t *c = ctx;
  esk_error_t e = {0};
  if (!m->key) {
    c->skipped++;
    return 0;
  }
  int rc = esk_shred_apply_record(c->sh, m->key, m->key_len, m->payload, m->payload ? m->len : 0,
                                  &e);
  if (rc == ESK_EPOISON) {
    c->skipped++;
    return 0;
  }
  if (rc) {
    esk_error_set(c->err, rc, "%s (partition %d, offset %lld)", e.msg, (int)m->partition,
                  (long long)m->offset);
    return rc;
  }
  return 0;
}

int esk_shred_catch_up(esk_shred_t *sh, rd_kafka_t *reader, const char *topic,
                       int idle_timeout_ms, size_t *skipped, esk_error_t *err) {
  int n = 0;
  int rc = esk_kafka_partition_count(reader, topic, idle_timeout_ms, &n, err);
  if (rc == ESK_ENOTFOUND) err->code = rc = ESK_ERETRY; /* not created yet, or gone */
  if (rc) return rc;
  if (n > sh->nparts) {
    int64_t *next = realloc(sh->next, (size_t)n * sizeof(*next));
    if (!next) return esk_error_set(err, ESK_ENOMEM, "out of memory");
    for (int i = sh->nparts; i < n; i++) next[i] = RD_KAFKA_OFFSET_BEGINNING;
    sh->next = next;
    sh->nparts = n;
  }
  catch_t c = {sh, 0, err};
  for (int i = 0; i < n; i++) {
    int64_t end = -1;
    rc = esk_kafka_read_partition(reader, topic, i, sh->next[i], idle_timeout_ms, on_key_record,
                                  &c, &end, err);
    if (rc) return rc;
    if (end >= 0) sh->next[i] = end;
  }
  if (skipped) *skipped += c.skipped;
  return ESK_OK;
}
