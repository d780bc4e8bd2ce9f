#ifndef ESK_HTTP_LINGER_H
#define ESK_HTTP_LINGER_H
/* Lingering close for HTTP connections closed while their client may still
 * be sending (a refused oversized request): the rest of the request is read
 * and dropped for a short while before the socket is closed, since closing a
 * socket with unread data sends a reset that can destroy the answer before
 * the client reads it (docs/api.md, "Threads and limits"). */

typedef struct esk_linger_s esk_linger_t;

/* Starts the thread that drains lingering sockets. @returns 0, or -1 (no
 * memory or thread: esk_linger_add() then does nothing). */
int esk_linger_start(esk_linger_t **out);

/* Lingers a duplicate of connection socket @p fd (whose owner closes @p fd
 * itself): its write side is shut, and what the client still sends is read
 * and dropped until it closes, ESK_LINGER_MS pass or ESK_LINGER_MAX_BYTES were
 * dropped. Thread-safe. Does nothing when @p l is NULL or holds
 * ESK_LINGER_MAX_SOCKETS already. */
void esk_linger_add(esk_linger_t *l, int fd);

/* Stops the thread and closes every lingering socket. NULL is fine. */
void esk_linger_stop(esk_linger_t *l);

#define ESK_LINGER_MS 2000
#define ESK_LINGER_MAX_BYTES (1 << 20)
#define ESK_LINGER_MAX_SOCKETS 64

#endif
