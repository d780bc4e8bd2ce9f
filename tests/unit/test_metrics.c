/* metrics: families and bounded series, lock-free updates, and the Prometheus
 * text format, read back by a parser written here from the format's spec. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esk/metrics.h"

/* ------------------------------------------------ a tiny scrape parser --- */

#define MAX_SAMPLES 512
#define MAX_LABELS 6

typedef struct {
  char name[128];
  int n_labels;
  char lname[MAX_LABELS][32];
  char lvalue[MAX_LABELS][512];
  double value;
} sample_t;

typedef struct {
  sample_t s[MAX_SAMPLES];
  int n;
  char help[32][256]; /* "name help-text" as rendered (still escaped) */
  int n_help;
  char type[32][160]; /* "name type" */
  int n_type;
} scrape_t;

/* Parses one exposition-format sample line; fails the test on anything the
 * format does not allow. */
static void parse_sample(sample_t *out, const char *line) {
  const char *p = line;
  size_t n = strcspn(p, "{ ");
  cr_assert(n > 0 && n < sizeof(out->name), "bad metric name in line: %s", line);
  memcpy(out->name, p, n);
  out->name[n] = '\0';
  p += n;
  out->n_labels = 0;
  if (*p == '{') {
    p++;
    while (*p != '}') {
      cr_assert(out->n_labels < MAX_LABELS, "too many labels: %s", line);
      size_t ln = strcspn(p, "=");
      cr_assert(p[ln] == '=' && ln < 32, "bad label in line: %s", line);
      memcpy(out->lname[out->n_labels], p, ln);
      out->lname[out->n_labels][ln] = '\0';
      p += ln + 1;
      cr_assert_eq(*p, '"', "label value not quoted: %s", line);
      p++;
      char *v = out->lvalue[out->n_labels];
      size_t o = 0;
      while (*p != '"') {
        cr_assert(*p, "unterminated label value: %s", line);
        char c = *p++;
        if (c == '\\') {
          c = *p++;
          cr_assert(c == '\\' || c == '"' || c == 'n', "bad escape \\%c in: %s", c, line);
          if (c == 'n') c = '\n';
        }
        cr_assert(o + 1 < 512);
        v[o++] = c;
      }
      v[o] = '\0';
      p++;
      out->n_labels++;
      if (*p == ',') p++;
      else cr_assert_eq(*p, '}', "expected , or } in: %s", line);
    }
    p++;
  }
  cr_assert_eq(*p, ' ', "expected a space before the value: %s", line);
  p++;
  char *end;
  if (!strcmp(p, "+Inf")) out->value = INFINITY;
  else if (!strcmp(p, "-Inf")) out->value = -INFINITY;
  else if (!strcmp(p, "NaN")) out->value = NAN;
  else {
    out->value = strtod(p, &end);
    cr_assert(end != p && *end == '\0', "bad value in line: %s", line);
  }
}

static void parse(scrape_t *sc, const char *text) {
  memset(sc, 0, sizeof(*sc));
  char *copy = strdup(text), *save = NULL;
  cr_assert(strlen(text) == 0 || text[strlen(text) - 1] == '\n', "output must end in a newline");
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (!strncmp(line, "# HELP ", 7)) {
      cr_assert(sc->n_help < 32);
      snprintf(sc->help[sc->n_help++], 256, "%s", line + 7);
    } else if (!strncmp(line, "# TYPE ", 7)) {
      cr_assert(sc->n_type < 32);
      snprintf(sc->type[sc->n_type++], 160, "%s", line + 7);
    } else {
      cr_assert(line[0] != '#', "unexpected comment: %s", line);
      cr_assert(sc->n < MAX_SAMPLES);
      parse_sample(&sc->s[sc->n++], line);
    }
  }
  free(copy);
}

/* The value of the sample @p name whose labels include each "k=v" of @p want
 * (NULL-terminated), failing the test if there is not exactly one. */
static double value_of(const scrape_t *sc, const char *name, const char *const *want) {
  int found = -1;
  for (int i = 0; i < sc->n; i++) {
    if (strcmp(sc->s[i].name, name)) continue;
    int ok = 1;
    for (const char *const *w = want; w && *w && ok; w++) {
      const char *eq = strchr(*w, '=');
      int hit = 0;
      for (int l = 0; l < sc->s[i].n_labels; l++)
        if (strlen(sc->s[i].lname[l]) == (size_t)(eq - *w) &&
            !strncmp(sc->s[i].lname[l], *w, (size_t)(eq - *w)) &&
            !strcmp(sc->s[i].lvalue[l], eq + 1))
          hit = 1;
      ok = hit;
    }
    if (!ok) continue;
    cr_assert_eq(found, -1, "two samples of %s match", name);
    found = i;
  }
  cr_assert_neq(found, -1, "no sample %s with the wanted labels", name);
  return sc->s[found].value;
}

static int has_line(const scrape_t *sc, const char (*lines)[160], int n, const char *want) {
  (void)sc;
  for (int i = 0; i < n; i++)
    if (!strcmp(lines[i], want)) return 1;
  return 0;
}

static char *render(esk_metrics_t *reg) {
  esk_buf_t b;
  esk_error_t err = {0};
  esk_buf_init(&b, 0);
  cr_assert_eq(esk_metrics_render(reg, &b, &err), ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_buf_append(&b, "", 1, &err), ESK_OK);
  return (char *)b.data;
}

static esk_metrics_t *new_reg(void) {
  esk_metrics_t *reg = NULL;
  esk_error_t err = {0};
  cr_assert_eq(esk_metrics_new(&reg, &err), ESK_OK, "%s", err.msg);
  return reg;
}

/* -------------------------------------------------------------- tests --- */

Test(metrics, values_render_and_parse_back_with_help_and_type_lines) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  esk_metric_t *c, *g, *gl;
  cr_assert_eq(esk_metrics_counter(&c, reg, "esk_test_events_total", "Events seen.", NULL, 0, &err),
               ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_metrics_gauge(&g, reg, "esk_test_temperature", "A gauge.", NULL, 0, &err),
               ESK_OK, "%s", err.msg);
  cr_assert_eq(esk_metrics_gauge(&gl, reg, "esk_test_lag_events", "Lag per partition.",
                                 "topic,partition", 16, &err), ESK_OK, "%s", err.msg);
  esk_metrics_add(esk_metrics_only(c), 41);
  esk_metrics_inc(esk_metrics_only(c));
  esk_metrics_set(esk_metrics_only(g), 2.5);
  esk_metrics_gauge_add(esk_metrics_only(g), -4);
  esk_series_t *p0 = NULL, *p1 = NULL;
  cr_assert_eq(esk_metrics_series(&p0, gl, (const char *[]){"bank.events", "0"}, &err), ESK_OK);
  cr_assert_eq(esk_metrics_series(&p1, gl, (const char *[]){"bank.events", "1"}, &err), ESK_OK);
  cr_assert_neq(p0, p1);
  esk_metrics_set(p0, 1234567890123.0);
  esk_metrics_set(p1, 0.1);

  char *text = render(reg);
  scrape_t *sc = malloc(sizeof(*sc));
  parse(sc, text);
  cr_assert_eq(value_of(sc, "esk_test_events_total", NULL), 42);
  cr_assert_eq(value_of(sc, "esk_test_temperature", NULL), -1.5);
  cr_assert_eq(value_of(sc, "esk_test_lag_events", (const char *[]){"partition=0", NULL}),
               1234567890123.0);
  cr_assert_eq(value_of(sc, "esk_test_lag_events",
                        (const char *[]){"topic=bank.events", "partition=1", NULL}), 0.1);
  cr_assert(has_line(sc, sc->type, sc->n_type, "esk_test_events_total counter"));
  cr_assert(has_line(sc, sc->type, sc->n_type, "esk_test_temperature gauge"));
  cr_assert(has_line(sc, sc->type, sc->n_type, "esk_test_lag_events gauge"));
  int help_ok = 0;
  for (int i = 0; i < sc->n_help; i++)
    help_ok += !strcmp(sc->help[i], "esk_test_events_total Events seen.");
  cr_assert_eq(help_ok, 1, "HELP line of esk_test_events_total:\n%s", text);
  /* HELP and TYPE come before the family's samples. */
  cr_assert_lt(strstr(text, "# TYPE esk_test_events_total"), strstr(text, "esk_test_events_total 42"));
  cr_assert_eq(esk_metrics_value(p0), 1234567890123.0);
  free(sc);
  free(text);
  esk_metrics_destroy(reg);
}

Test(metrics, histogram_buckets_are_cumulative_with_inclusive_bounds_sum_and_count) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  esk_metric_t *h;
  const double bounds[] = {0.005, 0.1, 1};
  cr_assert_eq(esk_metrics_histogram(&h, reg, "esk_test_batch_seconds", "Batch latency.",
                                     "projection", 4, bounds, 3, &err), ESK_OK, "%s", err.msg);
  esk_series_t *s = NULL;
  cr_assert_eq(esk_metrics_series(&s, h, (const char *[]){"balances"}, &err), ESK_OK);
  const double obs[] = {0.001, 0.005, 0.05, 0.1, 0.5, 2, 30};
  double sum = 0;
  for (size_t i = 0; i < 7; i++) {
    esk_metrics_observe(s, obs[i]);
    sum += obs[i];
  }
  char *text = render(reg);
  scrape_t *sc = malloc(sizeof(*sc));
  parse(sc, text);
  const char *n = "esk_test_batch_seconds_bucket";
  cr_assert_eq(value_of(sc, n, (const char *[]){"le=0.005", NULL}), 2, "%s", text);
  cr_assert_eq(value_of(sc, n, (const char *[]){"le=0.1", NULL}), 4);
  cr_assert_eq(value_of(sc, n, (const char *[]){"le=1", "projection=balances", NULL}), 5);
  cr_assert_eq(value_of(sc, n, (const char *[]){"le=+Inf", NULL}), 7);
  cr_assert_eq(value_of(sc, "esk_test_batch_seconds_count", NULL), 7);
  cr_assert_float_eq(value_of(sc, "esk_test_batch_seconds_sum", NULL), sum, 1e-9);
  cr_assert(has_line(sc, sc->type, sc->n_type, "esk_test_batch_seconds histogram"));
  cr_assert_eq(esk_metrics_value(s), 7);
  cr_assert_float_eq(esk_metrics_sum(s), sum, 1e-9);
  /* the bound 0.1 is written as 0.1, not 0.10000000000000001 */
  cr_assert(strstr(text, "le=\"0.1\""), "%s", text);
  free(sc);
  free(text);
  esk_metrics_destroy(reg);
}

Test(metrics, hostile_label_values_and_help_text_are_escaped_and_read_back_unchanged) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  esk_metric_t *c;
  cr_assert_eq(esk_metrics_counter(&c, reg, "esk_test_rejected_total",
                                   "Rejected \\ commands\nsecond line", "code", 8, &err), ESK_OK);
  const char *hostile[] = {
      "quote\"inside",
      "back\\slash",
      "new\nline",
      "\"} 999\nesk_fake_metric 1\n# TYPE x counter",
      "\\\"\\n",
      "",
  };
  for (size_t i = 0; i < 6; i++) {
    esk_series_t *s = NULL;
    cr_assert_eq(esk_metrics_series(&s, c, (const char *[]){hostile[i]}, &err), ESK_OK, "%s",
                 err.msg);
    esk_metrics_add(s, i + 1);
  }
  char *text = render(reg);
  scrape_t *sc = malloc(sizeof(*sc));
  parse(sc, text);
  for (size_t i = 0; i < 6; i++) {
    char want[600];
    snprintf(want, sizeof(want), "code=%s", hostile[i]);
    cr_assert_eq(value_of(sc, "esk_test_rejected_total", (const char *[]){want, NULL}),
                 (double)(i + 1), "value %zu read back wrong from:\n%s", i, text);
  }
  for (int i = 0; i < sc->n; i++)
    cr_assert(strcmp(sc->s[i].name, "esk_fake_metric"), "a label value injected a sample:\n%s", text);
  cr_assert_eq(sc->n_type, 2, "a label value injected a TYPE line:\n%s", text);
  cr_assert(strstr(text, "# HELP esk_test_rejected_total Rejected \\\\ commands\\nsecond line\n"),
            "%s", text);
  free(sc);
  free(text);
  esk_metrics_destroy(reg);
}

Test(metrics, series_beyond_the_bound_are_refused_and_counted) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  esk_metric_t *c;
  cr_assert_eq(esk_metrics_counter(&c, reg, "esk_test_by_code_total", "By code.", "code", 3, &err),
               ESK_OK);
  esk_series_t *s[3];
  char v[16];
  for (int i = 0; i < 3; i++) {
    snprintf(v, sizeof(v), "E%d", i);
    cr_assert_eq(esk_metrics_series(&s[i], c, (const char *[]){v}, &err), ESK_OK, "%s", err.msg);
    esk_metrics_inc(s[i]);
  }
  for (int i = 3; i < 10; i++) {
    esk_series_t *x = NULL;
    snprintf(v, sizeof(v), "E%d", i);
    cr_assert_eq(esk_metrics_series(&x, c, (const char *[]){v}, &err), ESK_ENOMEM);
    cr_assert_null(x, "out must stay untouched on failure");
    cr_assert(strstr(err.msg, "esk_test_by_code_total"), "%s", err.msg);
    esk_metrics_inc(x); /* NULL: a no-op, not a crash */
  }
  /* existing series are still found once the family is full */
  esk_series_t *again = NULL;
  cr_assert_eq(esk_metrics_series(&again, c, (const char *[]){"E1"}, &err), ESK_OK);
  cr_assert_eq(again, s[1]);
  char *text = render(reg);
  scrape_t *sc = malloc(sizeof(*sc));
  parse(sc, text);
  cr_assert_eq(value_of(sc, "esk_metrics_series_dropped_total",
                        (const char *[]){"metric=esk_test_by_code_total", NULL}), 7, "%s", text);
  int n = 0;
  for (int i = 0; i < sc->n; i++) n += !strcmp(sc->s[i].name, "esk_test_by_code_total");
  cr_assert_eq(n, 3);
  free(sc);
  free(text);
  esk_metrics_destroy(reg);
}

Test(metrics, bad_names_labels_buckets_and_values_are_refused) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  esk_metric_t *m = NULL;
  cr_assert_eq(esk_metrics_counter(&m, reg, "9starts_with_digit", "", NULL, 0, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_counter(&m, reg, "has space", "", NULL, 0, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_counter(&m, reg, "", "", NULL, 0, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_counter(&m, reg, "ok_total", "", "bad-label", 0, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_counter(&m, reg, "ok_total", "", "__reserved", 0, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_counter(&m, reg, "ok_total", "", "a,a", 0, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_counter(&m, reg, "ok_total", "", "a,", 0, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_counter(&m, reg, "ok_total", "", "a,b,c,d,e", 0, &err), ESK_EINVAL);
  const double good[] = {1, 2}, dup[] = {1, 1}, down[] = {2, 1}, inf[] = {1, INFINITY};
  cr_assert_eq(esk_metrics_histogram(&m, reg, "h1", "", "le", 0, good, 2, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "le"), "%s", err.msg);
  cr_assert_eq(esk_metrics_histogram(&m, reg, "h1", "", NULL, 0, dup, 2, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_histogram(&m, reg, "h1", "", NULL, 0, down, 2, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_histogram(&m, reg, "h1", "", NULL, 0, inf, 2, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_histogram(&m, reg, "h1", "", NULL, 0, good, 0, &err), ESK_EINVAL);
  cr_assert_null(m, "out must stay untouched on failure");
  cr_assert_eq(esk_metrics_counter(&m, reg, "ok_total", "", "a", 0, &err), ESK_OK);
  esk_metric_t *m2 = NULL;
  cr_assert_eq(esk_metrics_gauge(&m2, reg, "ok_total", "", NULL, 0, &err), ESK_EINVAL);
  cr_assert(strstr(err.msg, "twice"), "%s", err.msg);
  cr_assert_eq(esk_metrics_counter(&m2, reg, "ok_total", "", "b", 0, &err), ESK_EINVAL,
               "other labels are another family");
  cr_assert_eq(esk_metrics_counter(&m2, reg, "ok_total", "other help", "a", 0, &err), ESK_OK);
  cr_assert_eq(m2, m, "registering a family again alike returns the first (a restarted runtime)");
  cr_assert_null(esk_metrics_only(m), "a labelled family has no single series");

  esk_series_t *s = NULL;
  char longv[ESK_METRICS_LABEL_VALUE_MAX + 2];
  memset(longv, 'x', sizeof(longv) - 1);
  longv[sizeof(longv) - 1] = '\0';
  cr_assert_eq(esk_metrics_series(&s, m, (const char *[]){longv}, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_series(&s, m, (const char *[]){NULL}, &err), ESK_EINVAL);
  cr_assert_eq(esk_metrics_series(&s, m, NULL, &err), ESK_EINVAL);
  cr_assert_null(s);
  longv[ESK_METRICS_LABEL_VALUE_MAX] = '\0'; /* exactly the maximum is fine */
  cr_assert_eq(esk_metrics_series(&s, m, (const char *[]){longv}, &err), ESK_OK);
  esk_metrics_destroy(reg);
}

Test(metrics, special_gauge_values_use_the_formats_spellings) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  esk_metric_t *g;
  cr_assert_eq(esk_metrics_gauge(&g, reg, "g", "", "k", 0, &err), ESK_OK);
  const char *k[] = {"nan", "pinf", "ninf", "tiny"};
  const double v[] = {NAN, INFINITY, -INFINITY, 5e-324};
  for (int i = 0; i < 4; i++) {
    esk_series_t *s = NULL;
    cr_assert_eq(esk_metrics_series(&s, g, (const char *[]){k[i]}, &err), ESK_OK);
    esk_metrics_set(s, v[i]);
  }
  char *text = render(reg);
  cr_assert(strstr(text, "g{k=\"nan\"} NaN\n"), "%s", text);
  cr_assert(strstr(text, "g{k=\"pinf\"} +Inf\n"), "%s", text);
  cr_assert(strstr(text, "g{k=\"ninf\"} -Inf\n"), "%s", text);
  scrape_t *sc = malloc(sizeof(*sc));
  parse(sc, text);
  cr_assert_eq(value_of(sc, "g", (const char *[]){"k=tiny", NULL}), 5e-324);
  free(sc);
  free(text);
  esk_metrics_destroy(reg);
}

Test(metrics, rendering_into_a_too_small_buffer_fails_with_enomem) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  esk_metric_t *c;
  cr_assert_eq(esk_metrics_counter(&c, reg, "c_total", "A counter with a long help text.", NULL, 0,
                                   &err), ESK_OK);
  esk_buf_t b;
  esk_buf_init(&b, 64);
  cr_assert_eq(esk_metrics_render(reg, &b, &err), ESK_ENOMEM);
  cr_assert_leq(b.len, 64);
  esk_buf_free(&b);
  esk_metrics_destroy(reg);
}

Test(metrics, null_series_updates_do_nothing) {
  esk_metrics_inc(NULL);
  esk_metrics_add(NULL, 5);
  esk_metrics_set(NULL, 1);
  esk_metrics_gauge_add(NULL, 1);
  esk_metrics_observe(NULL, 1);
  cr_assert_eq(esk_metrics_value(NULL), 0);
  cr_assert_null(esk_metrics_only(NULL));
  esk_metrics_destroy(NULL);
}

Test(metrics, using_a_counter_as_a_gauge_aborts, .signal = SIGABRT) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  esk_metric_t *c;
  cr_assert_eq(esk_metrics_counter(&c, reg, "c_total", "", NULL, 0, &err), ESK_OK);
  esk_metrics_set(esk_metrics_only(c), 1);
}

/* ------------------------------------------------------ concurrency --- */

#define THREADS 8
#define ITERS 100000

typedef struct {
  esk_metric_t *by_part, *hist, *gauge;
  esk_metrics_t *reg;
  int id;
} worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  esk_error_t err = {0};
  for (int i = 0; i < ITERS; i++) {
    /* every thread looks up (and races to create) the same 4 series */
    char part[8];
    snprintf(part, sizeof(part), "%d", i % 4);
    esk_series_t *s = NULL;
    if (esk_metrics_series(&s, w->by_part, (const char *[]){part}, &err) != ESK_OK) abort();
    esk_metrics_inc(s);
    esk_metrics_observe(esk_metrics_only(w->hist), (i % 10) * 0.25);
    esk_metrics_gauge_add(esk_metrics_only(w->gauge), 0.5);
  }
  return NULL;
}

static void *scraper(void *arg) {
  worker_t *w = arg;
  for (int i = 0; i < 200; i++) {
    esk_buf_t b;
    esk_error_t err = {0};
    esk_buf_init(&b, 0);
    if (esk_metrics_render(w->reg, &b, &err) != ESK_OK) abort();
    esk_buf_free(&b);
  }
  return NULL;
}

Test(metrics, concurrent_updates_from_threads_lose_nothing) {
  esk_metrics_t *reg = new_reg();
  esk_error_t err = {0};
  worker_t w[THREADS + 1];
  esk_metric_t *by_part, *hist, *gauge;
  const double bounds[] = {0.5, 1, 2};
  cr_assert_eq(esk_metrics_counter(&by_part, reg, "applied_total", "", "partition", 4, &err), ESK_OK);
  cr_assert_eq(esk_metrics_histogram(&hist, reg, "lat", "", NULL, 0, bounds, 3, &err), ESK_OK);
  cr_assert_eq(esk_metrics_gauge(&gauge, reg, "g", "", NULL, 0, &err), ESK_OK);
  pthread_t t[THREADS + 1];
  for (int i = 0; i <= THREADS; i++) {
    w[i] = (worker_t){by_part, hist, gauge, reg, i};
    cr_assert_eq(pthread_create(&t[i], NULL, i < THREADS ? worker : scraper, &w[i]), 0);
  }
  for (int i = 0; i <= THREADS; i++) pthread_join(t[i], NULL);

  char *text = render(reg);
  scrape_t *sc = malloc(sizeof(*sc));
  parse(sc, text);
  for (int p = 0; p < 4; p++) {
    char want[32];
    snprintf(want, sizeof(want), "partition=%d", p);
    cr_assert_eq(value_of(sc, "applied_total", (const char *[]){want, NULL}),
                 THREADS * ITERS / 4.0, "%s", text);
  }
  cr_assert_eq(value_of(sc, "lat_count", NULL), (double)THREADS * ITERS);
  /* per 10 iterations: 0,0.25,0.5 ≤0.5; 0.75,1 ≤1; 1.25..2 ≤2; 2.25 +Inf; sum 11.25 */
  cr_assert_eq(value_of(sc, "lat_bucket", (const char *[]){"le=0.5", NULL}), THREADS * ITERS * 0.3);
  cr_assert_eq(value_of(sc, "lat_bucket", (const char *[]){"le=1", NULL}), THREADS * ITERS * 0.5);
  cr_assert_eq(value_of(sc, "lat_bucket", (const char *[]){"le=2", NULL}), THREADS * ITERS * 0.9);
  cr_assert_float_eq(value_of(sc, "lat_sum", NULL), THREADS * ITERS / 10 * 11.25, 1e-6);
  cr_assert_eq(value_of(sc, "g", NULL), THREADS * ITERS * 0.5);
  cr_assert_eq(value_of(sc, "esk_metrics_series_dropped_total",
                        (const char *[]){"metric=applied_total", NULL}), 0,
               "racing creators of one series must not count as overflow");
  free(sc);
  free(text);
  esk_metrics_destroy(reg);
}
