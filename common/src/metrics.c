#include "esk/metrics.h"
#include "esk/log.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lists (families of a registry, series of a family) are append-only singly
 * linked lists: writers append under a mutex and publish with a release store;
 * readers (lookups, scrapes) walk them with acquire loads and take no lock.
 * Nothing is unlinked before esk_metrics_destroy(). */

const double esk_metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,  0.5,    1,     2.5,  5,     10};
const size_t esk_metrics_latency_buckets_n =
    sizeof(esk_metrics_latency_buckets) / sizeof(esk_metrics_latency_buckets[0]);

struct esk_series_s {
  _Atomic(esk_series_t *) next;
  esk_metric_t *family;
  char *values[ESK_METRICS_LABELS_MAX];
  _Atomic uint64_t v;        /* counter: the count; gauge: the double's bits */
  _Atomic uint64_t sum_bits; /* histogram: the sum's bits */
  _Atomic uint64_t buckets[]; /* histogram: n_bounds + 1 non-cumulative counts */
};

struct esk_metric_s {
  _Atomic(esk_metric_t *) next;
  esk_metric_type_t type;
  char *name, *help;
  size_t n_labels;
  char *labels[ESK_METRICS_LABELS_MAX];
  double bounds[ESK_METRICS_BUCKETS_MAX];
  size_t n_bounds;
  size_t max_series;
  size_t n_series; /* under lock */
  _Atomic(esk_series_t *) head;
  esk_series_t *tail; /* under lock */
  pthread_mutex_t lock;
  esk_series_t *dropped; /* esk_metrics_series_dropped_total{metric=name}, may be NULL */
};

struct esk_metrics_s {
  pthread_mutex_t lock; /* registration */
  _Atomic(esk_metric_t *) head;
  esk_metric_t *tail;
  esk_metric_t *dropped_family;
};

/* ------------------------------------------------------------ doubles --- */

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof(u));
  return u;
}

static double bitsd(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof(d));
  return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v) {
  uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(p, &old, dbits(bitsd(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* Shortest text that reads back as the same double; Prometheus spellings of
 * the special values. */
static const char *fmt_double(char *buf, size_t size, double v) {
  if (isnan(v)) return "NaN";
  if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  snprintf(buf, size, "%.15g", v);
  if (strtod(buf, NULL) != v) snprintf(buf, size, "%.17g", v);
  return buf;
}

/* ---------------------------------------------------------- validation --- */

static int valid_name(const char *s, int colon_ok) {
  if (!s || !*s) return 0;
  for (const char *c = s; *c; c++) {
    int alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
                (colon_ok && *c == ':');
    if (!alpha && !(c > s && *c >= '0' && *c <= '9')) return 0;
  }
  return 1;
}

static void family_free(esk_metric_t *m) {
  if (!m) return;
  for (esk_series_t *s = atomic_load(&m->head), *next; s; s = next) {
    next = atomic_load(&s->next);
    for (size_t i = 0; i < m->n_labels; i++) free(s->values[i]);
    free(s);
  }
  for (size_t i = 0; i < m->n_labels; i++) free(m->labels[i]);
  free(m->name);
  free(m->help);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

/* Splits "a,b" into m->labels, checking each name. */
static int parse_labels(esk_metric_t *m, const char *labels, esk_error_t *err) {
  if (!labels || !*labels) return ESK_OK;
  const char *p = labels;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (m->n_labels == ESK_METRICS_LABELS_MAX)
      return esk_error_set(err, ESK_EINVAL, "metric %s: more than %d labels in '%s'", m->name,
                           ESK_METRICS_LABELS_MAX, labels);
    char *l = strndup(p, len);
    if (!l) return esk_error_set(err, ESK_ENOMEM, "out of memory");
    m->labels[m->n_labels++] = l;
    if (!valid_name(l, 0) || strncmp(l, "__", 2) == 0)
      return esk_error_set(err, ESK_EINVAL, "metric %s: invalid label name '%s'", m->name, l);
    if (m->type == ESK_METRIC_HISTOGRAM && strcmp(l, "le") == 0)
      return esk_error_set(err, ESK_EINVAL, "metric %s: a histogram may not have a label 'le'",
                           m->name);
    for (size_t i = 0; i + 1 < m->n_labels; i++)
      if (strcmp(m->labels[i], l) == 0)
        return esk_error_set(err, ESK_EINVAL, "metric %s: label '%s' named twice", m->name, l);
    if (!end) break;
    p = end + 1;
  }
  return ESK_OK;
}

static size_t series_size(const esk_metric_t *m) {
  size_t n = m->type == ESK_METRIC_HISTOGRAM ? m->n_bounds + 1 : 0;
  return sizeof(esk_series_t) + n * sizeof(_Atomic uint64_t);
}

static esk_series_t *series_alloc(esk_metric_t *m) {
  esk_series_t *s = calloc(1, series_size(m));
  if (!s) return NULL;
  s->family = m;
  atomic_init(&s->next, NULL);
  atomic_init(&s->v, m->type == ESK_METRIC_GAUGE ? dbits(0.0) : 0);
  atomic_init(&s->sum_bits, dbits(0.0));
  if (m->type == ESK_METRIC_HISTOGRAM)
    for (size_t i = 0; i <= m->n_bounds; i++) atomic_init(&s->buckets[i], 0);
  return s;
}

/* Appends under m->lock. */
static void series_link(esk_metric_t *m, esk_series_t *s) {
  if (m->tail)
    atomic_store_explicit(&m->tail->next, s, memory_order_release);
  else
    atomic_store_explicit(&m->head, s, memory_order_release);
  m->tail = s;
  m->n_series++;
}

/* Same type, label names and buckets: registering it again returns the first. */
static int same_family(const esk_metric_t *a, const esk_metric_t *b) {
  if (a->type != b->type || a->n_labels != b->n_labels || a->n_bounds != b->n_bounds) return 0;
  for (size_t i = 0; i < a->n_labels; i++)
    if (strcmp(a->labels[i], b->labels[i])) return 0;
  for (size_t i = 0; i < a->n_bounds; i++)
    if (a->bounds[i] != b->bounds[i]) return 0;
  return 1;
}

static int family_add(esk_metric_t **out, esk_metrics_t *reg, esk_metric_type_t type,
                      const char *name, const char *help, const char *labels,
                      size_t max_series, const double *bounds, size_t n_bounds,
                      esk_error_t *err) {
  int rc = ESK_OK;
  if (!valid_name(name, 1))
    return esk_error_set(err, ESK_EINVAL, "invalid metric name '%s'", name ? name : "(null)");
  esk_metric_t *m = calloc(1, sizeof(*m));
  if (!m) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  pthread_mutex_init(&m->lock, NULL);
  atomic_init(&m->next, NULL);
  atomic_init(&m->head, NULL);
  m->type = type;
  if (!(m->name = strdup(name)) || !(m->help = strdup(help ? help : ""))) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
    goto cleanup;
  }
  if ((rc = parse_labels(m, labels, err))) goto cleanup;
  m->max_series = m->n_labels == 0 ? 1 : max_series ? max_series : ESK_METRICS_DEFAULT_MAX_SERIES;
  if (type == ESK_METRIC_HISTOGRAM) {
    if (!bounds || n_bounds == 0 || n_bounds > ESK_METRICS_BUCKETS_MAX) {
      rc = esk_error_set(err, ESK_EINVAL, "metric %s: a histogram needs 1..%d bucket bounds",
                         name, ESK_METRICS_BUCKETS_MAX);
      goto cleanup;
    }
    for (size_t i = 0; i < n_bounds; i++) {
      if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
        rc = esk_error_set(err, ESK_EINVAL,
                           "metric %s: bucket bounds must be finite and strictly increasing "
                           "(bound %zu is %g)", name, i, bounds[i]);
        goto cleanup;
      }
      m->bounds[i] = bounds[i];
    }
    m->n_bounds = n_bounds;
  }
  if (m->n_labels == 0) {
    esk_series_t *s = series_alloc(m);
    if (!s) {
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
      goto cleanup;
    }
    series_link(m, s);
  }

  pthread_mutex_lock(&reg->lock);
  for (esk_metric_t *f = atomic_load(&reg->head); f; f = atomic_load(&f->next)) {
    if (strcmp(f->name, name) == 0) {
      pthread_mutex_unlock(&reg->lock);
      if (same_family(f, m)) { /* registered again alike: the same family */
        family_free(m);
        *out = f;
        return ESK_OK;
      }
      rc = esk_error_set(err, ESK_EINVAL,
                         "metric %s is registered twice, with another type, labels or buckets",
                         name);
      goto cleanup;
    }
  }
  if (reg->tail)
    atomic_store_explicit(&reg->tail->next, m, memory_order_release);
  else
    atomic_store_explicit(&reg->head, m, memory_order_release);
  reg->tail = m;
  pthread_mutex_unlock(&reg->lock);

  /* Each labelled family gets its overflow counter now, so a full family
   * never needs to allocate anything to report that it is full. */
  if (m->n_labels && reg->dropped_family) {
    const char *v[1] = {name};
    esk_series_t *d = NULL;
    if (esk_metrics_series(&d, reg->dropped_family, v, NULL) == ESK_OK) m->dropped = d;
  }
  *out = m;
  return ESK_OK;

cleanup:
  family_free(m);
  return rc;
}

int esk_metrics_new(esk_metrics_t **out, esk_error_t *err) {
  esk_metrics_t *reg = calloc(1, sizeof(*reg));
  if (!reg) return esk_error_set(err, ESK_ENOMEM, "out of memory");
  pthread_mutex_init(&reg->lock, NULL);
  atomic_init(&reg->head, NULL);
  esk_metric_t *d;
  int rc = family_add(&d, reg, ESK_METRIC_COUNTER, "esk_metrics_series_dropped_total",
                      "Label sets refused because the metric already had its maximum number "
                      "of series.",
                      "metric", 4096, NULL, 0, err);
  if (rc) {
    esk_metrics_destroy(reg);
    return rc;
  }
  reg->dropped_family = d;
  *out = reg;
  return ESK_OK;
}

void esk_metrics_destroy(esk_metrics_t *reg) {
  if (!reg) return;
  for (esk_metric_t *m = atomic_load(&reg->head), *next; m; m = next) {
    next = atomic_load(&m->next);
    family_free(m);
  }
  pthread_mutex_destroy(&reg->lock);
  free(reg);
}

int esk_metrics_counter(esk_metric_t **out, esk_metrics_t *reg, const char *name,
                        const char *help, const char *labels, size_t max_series,
                        esk_error_t *err) {
  return family_add(out, reg, ESK_METRIC_COUNTER, name, help, labels, max_series, NULL, 0, err);
}

int esk_metrics_gauge(esk_metric_t **out, esk_metrics_t *reg, const char *name,
                      const char *help, const char *labels, size_t max_series,
                      esk_error_t *err) {
  return family_add(out, reg, ESK_METRIC_GAUGE, name, help, labels, max_series, NULL, 0, err);
}

int esk_metrics_histogram(esk_metric_t **out, esk_metrics_t *reg, const char *name,
                          const char *help, const char *labels, size_t max_series,
                          const double *bounds, size_t n_bounds, esk_error_t *err) {
  return family_add(out, reg, ESK_METRIC_HISTOGRAM, name, help, labels, max_series, bounds,
                    n_bounds, err);
}

/* ------------------------------------------------------------- series --- */

static esk_series_t *series_find(const esk_metric_t *m, const char *const *values) {
  for (esk_series_t *s = atomic_load_explicit(&m->head, memory_order_acquire); s;
       s = atomic_load_explicit(&s->next, memory_order_acquire)) {
    size_t i = 0;
    while (i < m->n_labels && strcmp(s->values[i], values[i]) == 0) i++;
    if (i == m->n_labels) return s;
  }
  return NULL;
}

int esk_metrics_series(esk_series_t **out, esk_metric_t *m, const char *const *values,
                       esk_error_t *err) {
  if (m->n_labels == 0) {
    *out = atomic_load_explicit(&m->head, memory_order_acquire);
    return ESK_OK;
  }
  if (!values) return esk_error_set(err, ESK_EINVAL, "metric %s: label values missing", m->name);
  for (size_t i = 0; i < m->n_labels; i++) {
    if (!values[i])
      return esk_error_set(err, ESK_EINVAL, "metric %s: value of label %s is NULL", m->name,
                           m->labels[i]);
    if (strlen(values[i]) > ESK_METRICS_LABEL_VALUE_MAX)
      return esk_error_set(err, ESK_EINVAL, "metric %s: value of label %s longer than %d bytes",
                           m->name, m->labels[i], ESK_METRICS_LABEL_VALUE_MAX);
  }
  esk_series_t *s = series_find(m, values);
  if (s) {
    *out = s;
    return ESK_OK;
  }

  int rc = ESK_OK;
  pthread_mutex_lock(&m->lock);
  if ((s = series_find(m, values))) goto cleanup; /* another thread made it */
  if (m->n_series >= m->max_series) {
    esk_metrics_inc(m->dropped);
    rc = esk_error_set(err, ESK_ENOMEM, "metric %s already has its maximum of %zu series",
                       m->name, m->max_series);
    goto cleanup;
  }
  if (!(s = series_alloc(m))) {
    rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < m->n_labels; i++) {
    if (!(s->values[i] = strdup(values[i]))) {
      for (size_t j = 0; j < i; j++) free(s->values[j]);
      free(s);
      s = NULL;
      rc = esk_error_set(err, ESK_ENOMEM, "out of memory");
      goto cleanup;
    }
  }
  series_link(m, s);
cleanup:
  pthread_mutex_unlock(&m->lock);
  if (!rc) *out = s;
  return rc;
}

esk_series_t *esk_metrics_only(esk_metric_t *m) {
  return m && m->n_labels == 0 ? atomic_load_explicit(&m->head, memory_order_acquire) : NULL;
}

/* Using a series as the wrong type is a programming error: say so and stop,
 * as esk_conf_get() does for an unknown key. */
static int check_type(const esk_series_t *s, esk_metric_type_t want, const char *fn) {
  if (!s) return 0;
  if (s->family->type != want) {
    ESK_ERROR("metrics", "msg=\"metric used as the wrong type\" metric=%s function=%s",
              s->family->name, fn);
    abort();
  }
  return 1;
}

void esk_metrics_inc(esk_series_t *s) { esk_metrics_add(s, 1); }

void esk_metrics_add(esk_series_t *s, uint64_t n) {
  if (check_type(s, ESK_METRIC_COUNTER, __func__))
    atomic_fetch_add_explicit(&s->v, n, memory_order_relaxed);
}

void esk_metrics_set(esk_series_t *s, double v) {
  if (check_type(s, ESK_METRIC_GAUGE, __func__))
    atomic_store_explicit(&s->v, dbits(v), memory_order_relaxed);
}

void esk_metrics_gauge_add(esk_series_t *s, double v) {
  if (check_type(s, ESK_METRIC_GAUGE, __func__)) atomic_add_double(&s->v, v);
}

void esk_metrics_observe(esk_series_t *s, double v) {
  if (!check_type(s, ESK_METRIC_HISTOGRAM, __func__)) return;
  const esk_metric_t *m = s->family;
  size_t i = 0;
  while (i < m->n_bounds && !(v <= m->bounds[i])) i++; /* NaN lands in +Inf */
  atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
  atomic_add_double(&s->sum_bits, v);
}

double esk_metrics_value(const esk_series_t *s) {
  if (!s) return 0;
  uint64_t v = atomic_load_explicit(&((esk_series_t *)s)->v, memory_order_relaxed);
  switch (s->family->type) {
  case ESK_METRIC_COUNTER: return (double)v;
  case ESK_METRIC_GAUGE: return bitsd(v);
  case ESK_METRIC_HISTOGRAM: {
    uint64_t n = 0;
    for (size_t i = 0; i <= s->family->n_bounds; i++)
      n += atomic_load_explicit(&((esk_series_t *)s)->buckets[i], memory_order_relaxed);
    return (double)n;
  }
  }
  return 0;
}

double esk_metrics_sum(const esk_series_t *s) {
  if (!s || s->family->type != ESK_METRIC_HISTOGRAM) return 0;
  return bitsd(atomic_load_explicit(&((esk_series_t *)s)->sum_bits, memory_order_relaxed));
}

/* ------------------------------------------------------------- render --- */

typedef struct {
  esk_buf_t *b;
  esk_error_t *err;
  int rc;
} out_t;

static void put(out_t *o, const char *s, size_t n) {
  if (!o->rc) o->rc = esk_buf_append(o->b, s, n, o->err);
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

/* Escapes per the exposition format: label values escape \ " and newline;
 * HELP text escapes \ and newline. */
static void put_escaped(out_t *o, const char *s, int quote) {
  const char *run = s;
  for (; *s; s++) {
    const char *rep = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : (quote && *s == '"') ? "\\\"" : NULL;
    if (!rep) continue;
    put(o, run, (size_t)(s - run));
    puts_(o, rep);
    run = s + 1;
  }
  put(o, run, (size_t)(s - run));
}

/* name{l1="v1",l2="v2"[,le="x"]} */
static void put_series_name(out_t *o, const esk_metric_t *m, const char *suffix,
                            const esk_series_t *s, const char *le) {
  puts_(o, m->name);
  puts_(o, suffix);
  if (m->n_labels == 0 && !le) return;
  puts_(o, "{");
  for (size_t i = 0; i < m->n_labels; i++) {
    if (i) puts_(o, ",");
    puts_(o, m->labels[i]);
    puts_(o, "=\"");
    put_escaped(o, s->values[i], 1);
    puts_(o, "\"");
  }
  if (le) {
    if (m->n_labels) puts_(o, ",");
    puts_(o, "le=\"");
    puts_(o, le);
    puts_(o, "\"");
  }
  puts_(o, "}");
}

static void put_value_line(out_t *o, const char *value) {
  puts_(o, " ");
  puts_(o, value);
  puts_(o, "\n");
}

static void render_family(out_t *o, const esk_metric_t *m) {
  static const char *types[] = {"counter", "gauge", "histogram"};
  char num[64], le[64];
  puts_(o, "# HELP ");
  puts_(o, m->name);
  puts_(o, " ");
  put_escaped(o, m->help, 0);
  puts_(o, "\n# TYPE ");
  puts_(o, m->name);
  puts_(o, " ");
  puts_(o, types[m->type]);
  puts_(o, "\n");
  for (esk_series_t *s = atomic_load_explicit(&((esk_metric_t *)m)->head, memory_order_acquire);
       s; s = atomic_load_explicit(&s->next, memory_order_acquire)) {
    uint64_t v = atomic_load_explicit(&s->v, memory_order_relaxed);
    switch (m->type) {
    case ESK_METRIC_COUNTER:
      snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
      put_series_name(o, m, "", s, NULL);
      put_value_line(o, num);
      break;
    case ESK_METRIC_GAUGE:
      put_series_name(o, m, "", s, NULL);
      put_value_line(o, fmt_double(num, sizeof(num), bitsd(v)));
      break;
    case ESK_METRIC_HISTOGRAM: {
      uint64_t cum = 0;
      for (size_t i = 0; i <= m->n_bounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        put_series_name(o, m, "_bucket", s,
                        i < m->n_bounds ? fmt_double(le, sizeof(le), m->bounds[i]) : "+Inf");
        snprintf(num, sizeof(num), "%llu", (unsigned long long)cum);
        put_value_line(o, num);
      }
      put_series_name(o, m, "_sum", s, NULL);
      put_value_line(o, fmt_double(num, sizeof(num), esk_metrics_sum(s)));
      put_series_name(o, m, "_count", s, NULL);
      snprintf(num, sizeof(num), "%llu", (unsigned long long)cum);
      put_value_line(o, num);
      break;
    }
    }
  }
}

int esk_metrics_render(const esk_metrics_t *reg, esk_buf_t *b, esk_error_t *err) {
  out_t o = {b, err, ESK_OK};
  for (esk_metric_t *m = atomic_load_explicit(&((esk_metrics_t *)reg)->head, memory_order_acquire);
       m && !o.rc; m = atomic_load_explicit(&m->next, memory_order_acquire))
    render_family(&o, m);
  return o.rc;
}
