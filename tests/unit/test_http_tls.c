/* http over TLS (http.tls.cert.file, http.tls.key.file): a real handshake with
 * curl against a certificate made by openssl, plain HTTP refused on the TLS
 * port, and half, missing, malformed and mismatched files refused at start,
 * naming the key. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk/http.h"
#include "esk_test.h"
#include "esk_test_http.h"

static const esk_conf_prop_t *const tables[] = {esk_conf_common_props, esk_http_props};
static char dir[64];

/* A self-signed certificate for 127.0.0.1 (cert.pem, key.pem) and a second key. */
static void make_certs(void) {
  snprintf(dir, sizeof(dir), "/tmp/esk_test_tls_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem "
           "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 && "
           "openssl genrsa -out other.pem 2048 >/dev/null 2>&1 && printf 'not a pem\\n' > junk.pem",
           dir);
  cr_assert_eq(system(cmd), 0, "openssl could not make the test certificates (%s)", cmd);
}

static void drop_certs(void) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  cr_expect_eq(system(cmd), 0);
}

/* esk_http_start with the TLS files @p cert and @p key (names in dir, "" for none). */
static int start_tls(esk_http_t **h, const char *cert, const char *key, esk_error_t *err) {
  char c[128] = "", k[128] = "";
  if (*cert) snprintf(c, sizeof(c), "%s/%s", dir, cert);
  if (*key) snprintf(k, sizeof(k), "%s/%s", dir, key);
  const char *kv[] = {"http.listen", "127.0.0.1:0", "http.tls.cert.file", c,
                      "http.tls.key.file", k, NULL};
  esk_conf_t *conf = esk_test_conf_with(tables, 2, kv);
  int rc = esk_http_start(h, conf, NULL, NULL, NULL, err);
  esk_conf_destroy(conf);
  return rc;
}

Test(http_tls, the_endpoints_answer_https_and_refuse_plain_http, .init = make_certs,
     .fini = drop_certs) {
  esk_http_t *h = NULL;
  esk_error_t err = {0};
  cr_assert_eq(start_tls(&h, "cert.pem", "key.pem", &err), ESK_OK, "%s", err.msg);
  char cmd[512], out[64] = "";
  snprintf(cmd, sizeof(cmd), "curl -s -m 10 -o /dev/null -w '%%{http_code}' --cacert %s/cert.pem "
           "https://127.0.0.1:%d/healthz", dir, esk_http_port(h));
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  cr_assert_not_null(fgets(out, sizeof(out), p));
  pclose(p);
  cr_expect_str_eq(out, "200", "curl over TLS: %s", out);
  char body[256];
  cr_expect_neq(esk_tp_http_get(esk_http_port(h), "/healthz", body, sizeof(body)), 200,
                "plain HTTP on the TLS port must not be answered");
  esk_http_stop(h);
}

static void refused(const char *cert, const char *key, const char *needle) {
  esk_http_t *h = NULL;
  esk_error_t err = {0};
  cr_expect_eq(start_tls(&h, cert, key, &err), ESK_EINVAL, "accepted cert '%s' key '%s'", cert,
               key);
  cr_expect_null(h);
  cr_expect(strstr(err.msg, needle), "'%s' does not name '%s'", err.msg, needle);
}

Test(http_tls, half_missing_malformed_and_mismatched_files_are_refused, .init = make_certs,
     .fini = drop_certs) {
  refused("cert.pem", "", "go together: the certificate is set, the key is not");
  refused("", "key.pem", "the key is set, the certificate is not");
  refused("nope.pem", "key.pem", "http.tls.cert.file=");
  refused("nope.pem", "key.pem", "cannot open");
  refused("cert.pem", "junk.pem", "http.tls.key.file=");
  refused("junk.pem", "key.pem", "not a PEM file");
  refused("cert.pem", "other.pem", "a certificate (chain of at most 16) and its key? GnuTLS: The certificate and the given key do not match");
  refused("key.pem", "cert.pem", "are they a certificate");
}

/* curl's status over TLS to @p port trusting only @p ca (a file in dir); "000" when the
 * handshake fails. */
static void curl_tls(int port, const char *ca, char *out, size_t size) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "curl -s -m 10 -o /dev/null -w '%%{http_code}' --cacert %s/%s "
           "https://127.0.0.1:%d/healthz", dir, ca, port);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  out[0] = '\0';
  if (!fgets(out, (int)size, p)) out[0] = '\0';
  pclose(p);
}

Test(http_tls, a_reload_serves_the_new_certificate_and_keeps_the_old_on_bad_files,
     .init = make_certs, .fini = drop_certs) {
  char cmd[1024], out[64];
  /* a second certificate, and the files the server reads: first the first pair */
  snprintf(cmd, sizeof(cmd),
           "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key2.pem -out cert2.pem "
           "-days 2 -subj /CN=127.0.0.1/O=second -addext subjectAltName=IP:127.0.0.1 "
           ">/dev/null 2>&1 && cp cert.pem live.crt && cp key.pem live.key", dir);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
  esk_http_t *h = NULL;
  esk_error_t err = {0};
  cr_assert_eq(start_tls(&h, "live.crt", "live.key", &err), ESK_OK, "%s", err.msg);
  int port = esk_http_port(h);
  curl_tls(port, "cert.pem", out, sizeof(out));
  cr_assert_str_eq(out, "200", "the first certificate: %s", out);
  curl_tls(port, "cert2.pem", out, sizeof(out));
  cr_assert_str_neq(out, "200", "not yet the second");
  snprintf(cmd, sizeof(cmd), "cd %s && cp cert2.pem live.crt && cp key2.pem live.key", dir);
  cr_assert_eq(system(cmd), 0);
  cr_assert_eq(esk_http_reload_tls(h, &err), ESK_OK, "%s", err.msg);
  curl_tls(port, "cert2.pem", out, sizeof(out));
  cr_expect_str_eq(out, "200", "the second certificate after the reload: %s", out);
  curl_tls(port, "cert.pem", out, sizeof(out));
  cr_expect_str_neq(out, "200", "the first one is gone");
  /* a key that does not match, a missing or a junk file: refused, the second stays */
  static const char *const bad[] = {
      "cp cert.pem live.crt", "rm live.crt", "printf 'junk' > live.crt",
      ("cp cert2.pem live.crt && printf -- '-----BEGIN PRIVATE KEY-----\\nAAAA\\n' > live.key")};
  static const char *const why[] = {"do not match", "cannot open", "not a PEM file",
                                    "http.tls.cert.file and http.tls.key.file"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(cmd, sizeof(cmd), "cd %s && cp key2.pem live.key && %s", dir, bad[i]);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    cr_expect_eq(esk_http_reload_tls(h, &err), ESK_EINVAL, "reloaded after: %s", bad[i]);
    cr_expect(strstr(err.msg, why[i]), "'%s' does not name '%s'", err.msg, why[i]);
    curl_tls(port, "cert2.pem", out, sizeof(out));
    cr_expect_str_eq(out, "200", "kept after '%s': %s", bad[i], out);
  }
  esk_http_stop(h);
  /* plain HTTP: nothing to reload */
  cr_expect_eq(esk_http_reload_tls(NULL, &err), ESK_OK);
}

/* Near the end of the connection's memory pool libmicrohttpd cannot build an
 * answer, and esk writes its 431 past it (common/src/http_raw.c): over TLS that
 * goes through the TLS session. Every size on both sides of the pool's end
 * (http.request.max.bytes 4096 plus 4 KiB) gets an answer. */
Test(http_tls, a_request_ending_near_the_pool_end_gets_an_answer_over_tls, .init = make_certs,
     .fini = drop_certs) {
  char c[128], k[128];
  snprintf(c, sizeof(c), "%s/cert.pem", dir);
  snprintf(k, sizeof(k), "%s/key.pem", dir);
  const char *kv[] = {"http.listen", "127.0.0.1:0", "http.tls.cert.file", c,
                      "http.tls.key.file", k, "http.request.max.bytes", "4096", NULL};
  esk_conf_t *conf = esk_test_conf_with(tables, 2, kv);
  esk_http_t *h = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_http_start(&h, conf, NULL, NULL, NULL, &err), ESK_OK, "%s", err.msg);
  esk_conf_destroy(conf);
  static char cmd[16384], fill[12000];
  for (size_t n = 7000; n < 8600; n += 9) {
    memset(fill, 'a', n);
    fill[n] = '\0';
    snprintf(cmd, sizeof(cmd), "curl -s -m 10 -o /dev/null -w '%%{http_code}' --cacert %s "
             "-H 'X-Long: %s' https://127.0.0.1:%d/healthz", c, fill, esk_http_port(h));
    char out[64] = "";
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    if (!fgets(out, sizeof(out), p)) out[0] = '\0';
    pclose(p);
    cr_assert(!strcmp(out, "431"), "a %zu-byte header over TLS got '%s'", n, out);
  }
  esk_http_stop(h);
}
