#define _GNU_SOURCE /* pipe2 */
/* Lingering close (http_linger.h): one thread polls the lingering sockets and
 * a pipe that wakes it when one is added or when it must stop. */
#include "http_linger.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "esk/time.h"

typedef struct {
  int fd;
  int64_t until_ms;
  size_t dropped;
} lingerer_t;

struct esk_linger_s {
  pthread_t thread;
  pthread_mutex_t mu;
  int wake[2]; /* the pipe: [0] polled by the thread */
  int stopping;
  lingerer_t s[ESK_LINGER_MAX_SOCKETS];
  size_t n;
};

/* Reads and drops what @p x's client sent. @returns 1 when it is done with. */
static int drain(lingerer_t *x, int64_t now) {
  char buf[16384];
  for (;;) {
    ssize_t r = recv(x->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (r > 0) {
      x->dropped += (size_t)r;
      if (x->dropped >= ESK_LINGER_MAX_BYTES) return 1;
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return now >= x->until_ms;
    return 1; /* end of stream, or an error */
  }
}

/* One turn: waits for input on any socket (or the pipe), then drains. */
static void turn(esk_linger_t *l) {
  struct pollfd p[ESK_LINGER_MAX_SOCKETS + 1] = {{.fd = l->wake[0], .events = POLLIN}};
  pthread_mutex_lock(&l->mu);
  size_t n = l->n;
  for (size_t i = 0; i < n; i++) p[i + 1] = (struct pollfd){.fd = l->s[i].fd, .events = POLLIN};
  pthread_mutex_unlock(&l->mu);
  poll(p, n + 1, n ? 100 : -1);
  if (p[0].revents & POLLIN) {
    char b[64];
    while (read(l->wake[0], b, sizeof(b)) > 0) {
    }
  }
  int64_t now = esk_time_mono_ms();
  pthread_mutex_lock(&l->mu);
  for (size_t i = 0; i < l->n;) {
    if (drain(&l->s[i], now)) {
      close(l->s[i].fd);
      l->s[i] = l->s[--l->n];
    } else {
      i++;
    }
  }
  pthread_mutex_unlock(&l->mu);
}

static void *run(void *arg) {
  esk_linger_t *l = arg;
  for (;;) {
    pthread_mutex_lock(&l->mu);
    int stop = l->stopping;
    pthread_mutex_unlock(&l->mu);
    if (stop) return NULL;
    turn(l);
  }
}

int esk_linger_start(esk_linger_t **out) {
  esk_linger_t *l = calloc(1, sizeof(*l));
  *out = NULL;
  if (!l || pipe2(l->wake, O_CLOEXEC | O_NONBLOCK)) {
    free(l);
    return -1;
  }
  pthread_mutex_init(&l->mu, NULL);
  if (pthread_create(&l->thread, NULL, run, l)) {
    close(l->wake[0]);
    close(l->wake[1]);
    pthread_mutex_destroy(&l->mu);
    free(l);
    return -1;
  }
  *out = l;
  return 0;
}

void esk_linger_add(esk_linger_t *l, int fd) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  int d = l->n < ESK_LINGER_MAX_SOCKETS ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
  if (d >= 0) {
    shutdown(d, SHUT_WR); /* the answer is complete: the client may read its end */
    l->s[l->n++] = (lingerer_t){d, esk_time_mono_ms() + ESK_LINGER_MS, 0};
  }
  pthread_mutex_unlock(&l->mu);
  if (d >= 0 && write(l->wake[1], "x", 1) < 0) {
    /* the pipe is full: the thread is awake already */
  }
}

void esk_linger_stop(esk_linger_t *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  l->stopping = 1;
  pthread_mutex_unlock(&l->mu);
  if (write(l->wake[1], "x", 1) < 0) {
    /* the pipe is full: the thread is awake already */
  }
  pthread_join(l->thread, NULL);
  for (size_t i = 0; i < l->n; i++) close(l->s[i].fd);
  close(l->wake[0]);
  close(l->wake[1]);
  pthread_mutex_destroy(&l->mu);
  free(l);
}
