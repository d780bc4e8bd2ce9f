/* Serving a projection's generations (serve.h): the loop esk-projector runs
 * after start-up, and the thread that watches for a rebuild's switch. */
#include "serve.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "esk/log.h"
#include "esk/pg.h"
#include "esk/time.h"
#include "esk/watchdog.h"
#include "generation.h"

#define FAC "projector"
/* A log value quoted for key=value lines. */
#define LQ(s) esk_log_quote((char[ESK_ERROR_MSG_MAX + 64]){0}, ESK_ERROR_MSG_MAX + 64, (s))

void esk_serve_request_stop(esk_serve_t *s) {
  s->stop_requested = 1;
  s->run_stop = 1;
}

/* The registry's own session, opened on first use and again after it broke. */
static int registry_pg(esk_serve_t *s, esk_error_t *err) {
  if (s->registry && PQstatus(s->registry) == CONNECTION_OK) return ESK_OK;
  PQfinish(s->registry);
  s->registry = NULL;
  return esk_pg_connect(&s->registry, esk_conf_get(s->conf, "pg.conninfo"), err);
}

/* Names read once from the configuration. */
typedef struct names_s {
  char base[64], group[256];
  const char *projection;
} names_t;

static void read_names(names_t *n, const esk_conf_t *conf) {
  snprintf(n->base, sizeof(n->base), "%s", esk_conf_get(conf, "pg.schema"));
  n->projection = esk_conf_get(conf, "projection");
  const char *cg = esk_conf_get(conf, "group.id");
  if (cg && *cg) snprintf(n->group, sizeof(n->group), "%s", cg);
  else snprintf(n->group, sizeof(n->group), "esk.projection.%s", n->projection);
}

/* Calls @p attempt until it does not ask to retry or a stop is requested,
 * saying so every 2 s (retrying is progress for the watchdog). */
#define RETRYING(s, rc, attempt)                                                          \
  while (((rc) = (attempt)) == ESK_ERETRY && !(s)->stop_requested) {                     \
    ESK_WARN(FAC, "msg=\"cannot start yet, retrying in 2 s\" reason=%s", LQ(err->msg)); \
    esk_time_sleep_ms(2000);                                                             \
    esk_watchdog_beat();                                                                 \
  }

/* The live generation (want 0) or generation number want, from the registry. */
static int lookup_generation(esk_serve_t *s, const names_t *n, int want, esk_generation_t *gen,
                             esk_error_t *err) {
  int rc = registry_pg(s, err);
  if (rc) return rc;
  return want ? esk_generation_get(gen, s->registry, n->base, n->projection, want, err)
              : esk_generation_live(gen, s->registry, n->base, n->projection, n->group, err);
}

static int publish_generation(esk_serve_t *s, const names_t *n, int gen, esk_error_t *err) {
  int rc = registry_pg(s, err);
  return rc ? rc : esk_generation_publish(s->registry, n->base, n->projection, gen, err);
}

/* The generation to serve (the live one, or generation=N), recorded in the
 * configuration the projector reads: its number and consumer group. An
 * explicit group.id must be the one the generation was recorded with (checked
 * at the first start only: a later switch moves to the group the rebuild
 * recorded). */
static int choose_generation(esk_serve_t *s, const names_t *n, int want, int check_group,
                             esk_generation_t *gen, esk_error_t *err) {
  int rc;
  RETRYING(s, rc, lookup_generation(s, n, want, gen, err));
  if (rc == ESK_OK && check_group)
    rc = esk_generation_check_group(gen, n->base, n->projection, n->group, err);
  if (rc) return rc;
  char num[16];
  snprintf(num, sizeof(num), "%d", gen->gen);
  if ((rc = esk_conf_set(s->conf, "generation", num, "generation", err)) ||
      (rc = esk_conf_set(s->conf, "group.id", gen->group, "generation", err)))
    return rc;
  ESK_INFO(FAC, "msg=\"serving generation\" projection=%s generation=%d state=%s "
           "schema=%s group=%s", n->projection, gen->gen, gen->state, gen->schema, gen->group);
  return ESK_OK;
}

/* esk_projector_new(), started at --from-time when it is given. */
static int new_projector(esk_projector_t **out, esk_serve_t *s, esk_error_t *err) {
  int rc = esk_projector_new(out, s->conf, s->proj, &s->decoder, err);
  if (rc == ESK_OK && s->from_ms && (rc = esk_projector_start_at(*out, *s->from_ms, err))) {
    esk_projector_destroy(*out);
    *out = NULL;
  }
  return rc;
}

/* A projector on the chosen generation, and the live generation's views
 * (created or refreshed once its tables exist). */
static int start_generation(esk_serve_t *s, const names_t *n, const esk_generation_t *gen,
                            esk_error_t *err) {
  esk_projector_t *p = NULL;
  int rc;
  RETRYING(s, rc, new_projector(&p, s, err));
  if (rc == ESK_OK && !strcmp(gen->state, "live"))
    rc = publish_generation(s, n, gen->gen, err);
  if (rc == ESK_OK && (rc = esk_projector_set_metrics(p, s->metrics, err))) {
    ESK_ERROR(FAC, "msg=\"cannot register metrics\" reason=%s", LQ(err->msg));
    esk_projector_destroy(p);
    return rc;
  }
  if (rc) {
    esk_projector_destroy(p);
    if (s->stop_requested && rc != ESK_EINVAL) return ESK_OK; /* stopped while starting */
    ESK_ERROR(FAC, "msg=\"cannot start\" reason=%s", LQ(err->msg));
    s->config_error = rc == ESK_EINVAL;
    return rc;
  }
  atomic_store(&s->running, p);
  return ESK_OK;
}

/* Watches the registry while the live generation is served: when a rebuild
 * switches to another one, stops the run so that esk_serve_run() moves to it.
 * The switch's NOTIFY wakes it at once; it also looks every 2 s, in case a
 * notice was missed while its session was being re-opened. */
typedef struct watch_s {
  esk_serve_t *s;
  const names_t *n;
  int gen;
  atomic_int quit;
} watch_t;

/* Waits up to 2 s for a switch's notice on *pg (opened here when NULL;
 * closed and NULL when PostgreSQL is down: the projector retries and says so). */
static void wait_for_notice(PGconn **pg, watch_t *w) {
  esk_error_t err = {0};
  if (!*pg && (esk_pg_connect(pg, esk_conf_get(w->s->conf, "pg.conninfo"), &err) ||
               esk_generation_listen(*pg, &err))) {
    PQfinish(*pg);
    *pg = NULL;
  }
  for (int i = 0; i < 20 && !atomic_load(&w->quit); i++) {
    if (!*pg) {
      esk_time_sleep_ms(100);
      continue;
    }
    int n = esk_generation_wait_switch(*pg, w->n->projection, 100, &err);
    if (n == 1) break;
    if (n < 0) {
      PQfinish(*pg);
      *pg = NULL;
    }
  }
}

static void *watch_generation(void *arg) {
  watch_t *w = arg;
  PGconn *pg = NULL;
  while (!atomic_load(&w->quit)) {
    wait_for_notice(&pg, w);
    if (atomic_load(&w->quit)) break;
    if (!pg) continue;
    esk_error_t err = {0};
    esk_generation_t live;
    int rc = esk_generation_live(&live, pg, w->n->base, w->n->projection, w->n->group, &err);
    if (rc == ESK_ERETRY || PQstatus(pg) != CONNECTION_OK) {
      PQfinish(pg);
      pg = NULL;
    } else if (rc == ESK_OK && live.gen != w->gen) {
      ESK_INFO(FAC,
               "msg=\"a rebuild switched generations; moving to the live one\" projection=%s "
               "from=%d to=%d",
               w->n->projection, w->gen, live.gen);
      w->s->generation_moved = 1;
      w->s->run_stop = 1;
      break;
    }
  }
  PQfinish(pg);
  return NULL;
}

/* Runs the projector until it stops; the live generation is watched meanwhile
 * (generation=N serves N whatever is live). */
static int run_generation(esk_serve_t *s, const names_t *n, int gen, int watch,
                          esk_error_t *err) {
  watch_t w = {s, n, gen, 0};
  pthread_t watcher;
  int watching = watch && pthread_create(&watcher, NULL, watch_generation, &w) == 0;
  int rc = esk_projector_run(atomic_load(&s->running), &s->run_stop, err);
  if (watching) {
    atomic_store(&w.quit, 1);
    pthread_join(watcher, NULL);
  }
  if (rc != ESK_OK)
    ESK_ERROR(FAC, "msg=stopped error=%s reason=%s", esk_error_name(rc), LQ(err->msg));
  return rc;
}

/* A new generation: a new runtime and a fresh projection (no cached state; a
 * file or plugin is read again, as the rebuild that made it live did). */
static int move_generation(esk_serve_t *s, esk_error_t *err) {
  esk_projector_t *p = atomic_exchange(&s->running, NULL);
  esk_projector_destroy(p);
  int rc = s->reopen(s->reopen_opaque, s->proj, err);
  if (rc) {
    ESK_ERROR(FAC, "msg=\"cannot start\" reason=%s", LQ(err->msg));
    return rc;
  }
  s->generation_moved = 0;
  s->run_stop = s->stop_requested;
  return ESK_OK;
}

int esk_serve_run(esk_serve_t *s, esk_error_t *err) {
  names_t n;
  read_names(&n, s->conf);
  int want = (int)esk_conf_get_int(s->conf, "generation");
  int check_group = esk_conf_get(s->conf, "group.id") && *esk_conf_get(s->conf, "group.id");
  for (;;) {
    /* every projection has generations (blue-green rebuilds): its tables live
     * in the generation's schema, the views in pg.schema name the live one's */
    esk_generation_t gen = {.gen = 0, .state = "live"};
    int rc = choose_generation(s, &n, want, check_group, &gen, err);
    check_group = 0;
    if (rc) {
      if (s->stop_requested && rc != ESK_EINVAL) return ESK_OK;
      ESK_ERROR(FAC, "msg=\"cannot start\" reason=%s", LQ(err->msg));
      s->config_error = rc == ESK_EINVAL;
      return rc;
    }
    if ((rc = start_generation(s, &n, &gen, err))) return rc;
    if (!atomic_load(&s->running)) return ESK_OK; /* stopped while starting */
    if ((rc = run_generation(s, &n, gen.gen, !want, err))) return rc;
    if (s->stop_requested || !s->generation_moved) break;
    if ((rc = move_generation(s, err))) return rc;
  }
  ESK_INFO(FAC, "msg=\"stopped on request\" projection=%s", n.projection);
  return ESK_OK;
}

void esk_serve_close(esk_serve_t *s) {
  esk_projector_destroy(atomic_exchange(&s->running, NULL));
  PQfinish(s->registry);
  s->registry = NULL;
}
