/**
 * @file metrics.h
 * @brief A small thread-safe metrics registry rendered in the Prometheus text
 *        exposition format (version 0.0.4): counters, gauges and histograms
 *        with fixed buckets, each optionally split by a bounded set of labels.
 *
 * Shape of use:
 *
 * @code
 *   esk_metrics_t *reg;
 *   esk_metric_t *applied, *lag;
 *   esk_metrics_new(&reg, &err);
 *   esk_metrics_counter(&applied, reg, "esk_projector_events_applied_total",
 *                       "Events applied to PostgreSQL.", NULL, 0, &err);
 *   esk_metrics_gauge(&lag, reg, "esk_projector_lag_events",
 *                     "Events not yet applied, per partition.", "partition", 1024, &err);
 *   // at assignment, once per partition (not on the hot path):
 *   esk_series_t *lag3 = NULL;
 *   esk_metrics_series(&lag3, lag, (const char *[]){"3"}, &err);
 *   // per batch (lock-free):
 *   esk_metrics_add(esk_metrics_only(applied), n);
 *   esk_metrics_set(lag3, 42);
 * @endcode
 *
 * Families (a name, a type, help text, label names) are registered up front;
 * a series (one combination of label values) is looked up or created with
 * esk_metrics_series() and the handle kept by the caller. Updating a series is
 * a single atomic operation (a compare-and-swap loop for floating-point sums)
 * and takes no lock. Looking a series up takes no lock either; creating one
 * takes the family's mutex. Series are never removed: each family has a
 * maximum number of series, and a lookup beyond it fails with ESK_ENOMEM and
 * is counted in `esk_metrics_series_dropped_total{metric="..."}`, so that
 * label values from the outside (an error code, a partition number) cannot
 * grow memory without bound.
 *
 * Every update function accepts a NULL series and then does nothing, so a
 * caller may ignore a failed lookup without checking on every update.
 *
 * A scrape (esk_metrics_render()) reads the atomics without stopping writers:
 * each value is exact, but values of one histogram may come from slightly
 * different instants (`_count` always equals the `+Inf` bucket).
 */
#ifndef ESK_METRICS_H
#define ESK_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "esk/buf.h"
#include "esk/error.h"

/** At most this many label names per family. */
#define ESK_METRICS_LABELS_MAX 4
/** At most this many buckets (not counting +Inf) per histogram. */
#define ESK_METRICS_BUCKETS_MAX 32
/** Longest label value in bytes; longer values are refused (ESK_EINVAL). */
#define ESK_METRICS_LABEL_VALUE_MAX 128
/** Series limit of a labelled family registered with max_series 0. */
#define ESK_METRICS_DEFAULT_MAX_SERIES 256

typedef enum {
  ESK_METRIC_COUNTER,   /**< a non-negative integer that only rises */
  ESK_METRIC_GAUGE,     /**< a double that goes up and down */
  ESK_METRIC_HISTOGRAM, /**< observations counted in fixed buckets, plus their sum */
} esk_metric_type_t;

/** A registry: owns its families and their series. */
typedef struct esk_metrics_s esk_metrics_t;
/** A family: one metric name, type, help text and label names. */
typedef struct esk_metric_s esk_metric_t;
/** One series of a family: one combination of label values. */
typedef struct esk_series_s esk_series_t;

/** @brief Creates an empty registry. Free it with esk_metrics_destroy(). */
int esk_metrics_new(esk_metrics_t **out, esk_error_t *err);

/** @brief Frees the registry, its families and series; every handle obtained
 *  from it becomes invalid. Nothing may update or render it concurrently.
 *  NULL does nothing. */
void esk_metrics_destroy(esk_metrics_t *reg);

/**
 * @brief Registers a counter family.
 * @param out    the family, owned by @p reg.
 * @param name   metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`, unique in @p reg;
 *               counters should end in `_total`.
 * @param help   one line of help text (escaped on output).
 * @param labels comma-separated label names (`"partition"`, `"topic,partition"`),
 *               each `[a-zA-Z_][a-zA-Z0-9_]*` and not starting with `__`; NULL or
 *               "" for an unlabelled family, whose one series exists at once
 *               (esk_metrics_only()).
 * @param max_series bound on the number of series of a labelled family;
 *               0 means ESK_METRICS_DEFAULT_MAX_SERIES. Ignored when unlabelled.
 * @returns ESK_OK (also when a family of that name, type, labels and buckets
 *          exists: that family is returned, so a runtime restarted in the same
 *          process registers again), ESK_EINVAL (bad name, the name taken by
 *          another type, labels or buckets; bad labels) or ESK_ENOMEM.
 */
int esk_metrics_counter(esk_metric_t **out, esk_metrics_t *reg, const char *name,
                        const char *help, const char *labels, size_t max_series,
                        esk_error_t *err);

/** @brief Registers a gauge family; parameters as esk_metrics_counter(). */
int esk_metrics_gauge(esk_metric_t **out, esk_metrics_t *reg, const char *name,
                      const char *help, const char *labels, size_t max_series,
                      esk_error_t *err);

/**
 * @brief Registers a histogram family; parameters as esk_metrics_counter(), plus:
 * @param bounds   upper bounds of the buckets (`le`), finite and strictly
 *                 increasing; a `+Inf` bucket is always added. Copied.
 * @param n_bounds 1..ESK_METRICS_BUCKETS_MAX.
 * A label may not be called `le`.
 */
int esk_metrics_histogram(esk_metric_t **out, esk_metrics_t *reg, const char *name,
                          const char *help, const char *labels, size_t max_series,
                          const double *bounds, size_t n_bounds, esk_error_t *err);

/** Buckets for latencies in seconds, 1 ms .. 10 s (for esk_metrics_histogram()). */
extern const double esk_metrics_latency_buckets[];
/** Number of entries of esk_metrics_latency_buckets. */
extern const size_t esk_metrics_latency_buckets_n;

/**
 * @brief Finds or creates the series of @p m with the given label values.
 * @param out    set only on success; the series lives as long as the registry.
 * @param values one value per label name of the family, in the order of
 *               registration, each at most ESK_METRICS_LABEL_VALUE_MAX bytes
 *               (any bytes but NUL; escaped on output). Ignored (may be NULL)
 *               for an unlabelled family.
 * @returns ESK_OK; ESK_EINVAL for a NULL or too long value; ESK_ENOMEM when the
 *          family already has max_series series (counted in
 *          esk_metrics_series_dropped_total) or memory runs out.
 * Thread-safe. Finding an existing series takes no lock.
 */
int esk_metrics_series(esk_series_t **out, esk_metric_t *m, const char *const *values,
                       esk_error_t *err);

/** @brief The single series of an unlabelled family; NULL for a labelled one. */
esk_series_t *esk_metrics_only(esk_metric_t *m);

/** @brief Adds 1 to a counter series. NULL does nothing. */
void esk_metrics_inc(esk_series_t *s);

/** @brief Adds @p n to a counter series. NULL does nothing. */
void esk_metrics_add(esk_series_t *s, uint64_t n);

/** @brief Sets a gauge series. NULL does nothing. */
void esk_metrics_set(esk_series_t *s, double v);

/** @brief Adds @p v (may be negative) to a gauge series. NULL does nothing. */
void esk_metrics_gauge_add(esk_series_t *s, double v);

/** @brief Records one observation in a histogram series. NULL does nothing. */
void esk_metrics_observe(esk_series_t *s, double v);

/**
 * @brief The current value of a series: a counter's count, a gauge's value,
 *        a histogram's number of observations. 0 for NULL. For readiness
 *        checks and tests.
 */
double esk_metrics_value(const esk_series_t *s);

/** @brief A histogram series' sum of observations (0 for other types or NULL). */
double esk_metrics_sum(const esk_series_t *s);

/**
 * @brief Appends every family of @p reg to @p out in the Prometheus text
 *        format: `# HELP` and `# TYPE` lines, then one line per series
 *        (histograms: `_bucket{le="..."}` cumulative, `_sum`, `_count`).
 *        Families appear in registration order, series in creation order.
 *        A family with labels but no series yet prints only HELP and TYPE.
 * @returns ESK_OK, or ESK_ENOMEM when @p out's maximum would be exceeded.
 */
int esk_metrics_render(const esk_metrics_t *reg, esk_buf_t *out, esk_error_t *err);

/** Media type of esk_metrics_render()'s output (for a Content-Type header). */
#define ESK_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
