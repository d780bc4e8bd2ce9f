#include "esk/log.h"
#include "esk/error.h"
#include "esk/time.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>

esk_log_level_t esk_log_threshold = ESK_LOG_INFO;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int esk_log_set_level(const char *name) {
  for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
    if (name && strcmp(name, level_names[i]) == 0) {
      esk_log_threshold = (esk_log_level_t)i;
      return ESK_OK;
    }
  }
  return ESK_EINVAL;
}

void esk_log_write(esk_log_level_t level, const char *fac, const char *fmt, ...) {
  char line[2048];
  char ts[32];
  esk_time_format_rfc3339(ts, sizeof(ts), esk_time_real_ms());
  int n = snprintf(line, sizeof(line), "ts=%s level=%s fac=%s ", ts,
                   level_names[level <= ESK_LOG_ERROR ? level : ESK_LOG_ERROR], fac);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(line))
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
  va_end(ap);
  /* One write per line, under a lock, so lines of threads never interleave. */
  pthread_mutex_lock(&log_lock);
  fputs(line, stderr);
  fputc('\n', stderr);
  fflush(stderr);
  pthread_mutex_unlock(&log_lock);
}

const char *esk_log_quote(char *buf, size_t size, const char *s) {
  if (size == 0) return buf;
  if (!s) s = "";
  int plain = *s != '\0';
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) {
      plain = 0;
      break;
    }
  }
  if (plain) {
    snprintf(buf, size, "%s", s);
    return buf;
  }
  size_t o = 0;
  buf[o++] = '"';
  for (const char *p = s; *p && o + 6 < size; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)c;
    } else if (c == '\n') {
      buf[o++] = '\\';
      buf[o++] = 'n';
    } else if (c == '\t') {
      buf[o++] = '\\';
      buf[o++] = 't';
    } else if (c < ' ' || c == 0x7f) {
      o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    } else {
      buf[o++] = (char)c;
    }
  }
  if (o + 1 < size) buf[o++] = '"';
  buf[o < size ? o : size - 1] = '\0';
  return buf;
}
