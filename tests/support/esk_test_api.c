/* esk-gateway and esk-query as children of a test (see esk_test_api.h). */
#include "esk/time.h"
#include "esk_test_api.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esk_test.h"
#include "esk_test_http.h"
#include "esk_test_producer.h"

void esk_ta_write_key(char *path, size_t size, const char *prefix,
                      unsigned char key[ESK_TOKEN_KEY_BYTES]) {
  snprintf(path, size, "/tmp/%skey", prefix);
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  srand((unsigned)getpid() ^ (unsigned)esk_time_mono_ms());
  for (int i = 0; i < ESK_TOKEN_KEY_BYTES; i++) fprintf(f, "%02x", (unsigned)(rand() & 0xff));
  fputc('\n', f);
  fclose(f);
  esk_error_t err = {0};
  cr_assert_eq(esk_token_key_load(key, path, &err), ESK_OK, "%s", err.msg);
}

pid_t esk_ta_start(const char *bin, const char *keyfile, const char *log,
                   const char *const *extra, int *port) {
  char a_key[300], body[512];
  snprintf(a_key, sizeof(a_key), "api.token.key.file=%s", keyfile);
  const char *argv[48] = {bin, "-X", a_key, "-X", "http.listen=127.0.0.1:0"};
  size_t n = 5;
  for (size_t i = 0; extra && extra[i] && n < 44; i++) {
    argv[n++] = "-X";
    argv[n++] = extra[i];
  }
  argv[n] = NULL;
  pid_t pid = esk_tp_spawn(argv, log);
  *port = esk_tp_http_port(log, 30000);
  int64_t until = esk_time_mono_ms() + 30000;
  int st;
  while ((st = esk_tp_http_get(*port, "/readyz", body, sizeof(body))) != 200 &&
         esk_time_mono_ms() < until)
    esk_time_sleep_ms(50);
  cr_assert_eq(st, 200, "%s not ready: %d %s", bin, st, body);
  return pid;
}

int esk_ta_post(int port, const char *query, const char *headers, const char *body, char *head,
                size_t head_size, char *out, size_t size) {
  char path[256], hdrs[1024];
  snprintf(path, sizeof(path), "/v1/bank/commands%s", query ? query : "");
  snprintf(hdrs, sizeof(hdrs), "%s%s", headers ? headers : "",
           headers && strstr(headers, "Content-Type") ? "" : ESK_TEST_JSON_HDR);
  return esk_tp_http_request(port, "POST", path, hdrs, body, strlen(body), head, head_size, out,
                             size);
}

esk_token_t esk_ta_token_of(const char *body, const unsigned char key[ESK_TOKEN_KEY_BYTES],
                            char *text, size_t size) {
  const char *t = strstr(body, "\"consistency_token\":\"");
  cr_assert(t, "no token in %s", body);
  t += strlen("\"consistency_token\":\"");
  const char *end = strchr(t, '"');
  cr_assert(end && (size_t)(end - t) < size);
  memcpy(text, t, (size_t)(end - t));
  text[end - t] = '\0';
  esk_token_t tok;
  esk_error_t err = {0};
  cr_assert_eq(esk_token_decode(&tok, t, (size_t)(end - t), key, &err), ESK_OK, "%s", err.msg);
  return tok;
}
