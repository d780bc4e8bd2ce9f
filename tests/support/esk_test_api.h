/* esk-gateway and esk-query as children of a test, and what their tests share. */
#ifndef ESK_TEST_API_H
#define ESK_TEST_API_H

#include <stddef.h>
#include <sys/types.h>

#include "esk/api.h"

#define ESK_TEST_GATEWAY_BIN ESK_BINARY_DIR "/bin/esk-gateway"
#define ESK_TEST_QUERY_BIN ESK_BINARY_DIR "/bin/esk-query"
#define ESK_TEST_JSON_HDR "Content-Type: application/json\r\n"

/** Writes a random token key to "/tmp/<prefix>key" (its path into @p path) and
 *  loads it into @p key. */
void esk_ta_write_key(char *path, size_t size, const char *prefix,
                      unsigned char key[ESK_TOKEN_KEY_BYTES]);

/** Starts @p bin (esk-gateway or esk-query) with -X http.listen=127.0.0.1:0,
 *  api.token.key.file=@p keyfile, then the NULL-terminated @p extra -X values,
 *  logging to @p log; waits for its port and for /readyz 200 (30 s).
 *  @returns its pid; its port in @p port. */
pid_t esk_ta_start(const char *bin, const char *keyfile, const char *log,
                   const char *const *extra, int *port);

/** POST @p body to /v1/bank/commands@p query on @p port (JSON content type
 *  unless @p headers names one). @returns the status. */
int esk_ta_post(int port, const char *query, const char *headers, const char *body, char *head,
                size_t head_size, char *out, size_t size);

/** The "consistency_token" of an answer body, decoded with @p key (fails the test when absent or refused). */
esk_token_t esk_ta_token_of(const char *body, const unsigned char key[ESK_TOKEN_KEY_BYTES],
                            char *text, size_t size);

#endif
