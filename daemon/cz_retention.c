/* cz_retention: the age and disk-quota sweep, and the deletion of finished jobs. */
#include "cz_retention.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cz_log.h"
#include "cz_metrics.h"

#define BATCH 64   /* candidates per store query; a sweep comes back for more */

void cz_retention_drop_blob(cz_store *s, cz_blob_store *bs, const char *sha256,
                            cz_retention_stats *st) {
  bool used = true;
  uint64_t size = 0;
  cz_error e;
  if (!sha256 || !sha256[0] || cz_store_blob_used(s, sha256, &used, &e) || used) return;
  if (cz_blob_size(bs, sha256, &size, &e)) size = 0;
  if (cz_blob_remove(bs, sha256, &e)) {
    cz_log(CZ_LOG_WARN, "retention: cannot remove a blob", "sha256", sha256, "error", e.msg, NULL);
    return;
  }
  if (st) {
    st->blobs_removed++;
    st->bytes_reclaimed += size;
  }
  cz_metrics_retention_reclaimed(size);
}

cz_err_code cz_retention_delete_job(cz_store *s, cz_blob_store *bs, const char *id,
                                    cz_retention_stats *st, cz_error *err) {
  char artifact[65], report[65];
  cz_err_code rc = cz_store_job_delete(s, id, artifact, report, err);
  if (rc) return rc;
  if (st) st->jobs_removed++;
  cz_metrics_retention_removed("job");
  cz_retention_drop_blob(s, bs, artifact, st);
  cz_retention_drop_blob(s, bs, report, st);
  return CZ_E_OK;
}

cz_err_code cz_retention_delete_model(cz_store *s, cz_blob_store *bs, const char *id,
                                      cz_retention_stats *st, cz_error *err) {
  char sha[65];
  bool blob_free = false;
  cz_err_code rc = cz_store_model_delete(s, id, sha, &blob_free, err);
  if (rc) return rc;
  if (st) st->models_removed++;
  cz_metrics_retention_removed("model");
  if (blob_free) cz_retention_drop_blob(s, bs, sha, st);
  return CZ_E_OK;
}

/* Remove one candidate row; false when it is no longer removable (a race: a job was
 * submitted on the model, the job is gone already). */
static bool remove_one(cz_store *s, cz_blob_store *bs, json_t *c, cz_retention_stats *st) {
  const char *kind = json_string_value(json_object_get(c, "kind"));
  const char *id = json_string_value(json_object_get(c, "id"));
  cz_error e = {0};
  if (!kind || !id) return false;
  if (!strcmp(kind, "job")) {
    if (cz_retention_delete_job(s, bs, id, st, &e)) return false;
    cz_log(CZ_LOG_INFO, "retention: job removed", "job", id, NULL);
    return true;
  }
  if (cz_retention_delete_model(s, bs, id, st, &e)) return false;
  cz_log(CZ_LOG_INFO, "retention: model removed", "model", id, NULL);
  return true;
}

/* Remove candidates older than before, oldest first; with a quota, only while over it. The
 * blob store is measured once per pass and the removed files' sizes subtracted after that (a
 * walk per removal made a large eviction quadratic); what arrives meanwhile counts at the
 * next sweep. */
static cz_err_code sweep_pass(cz_store *s, cz_blob_store *bs, int64_t before, uint64_t quota,
                              cz_retention_stats *st, cz_error *err) {
  uint64_t usage = 0, count = 0;
  if (quota) {
    cz_err_code rc = cz_blob_usage(bs, &usage, &count, err);
    if (rc) return rc;
  }
  for (;;) {
    if (quota) {
      st->usage_bytes = usage;
      if (usage <= quota) return CZ_E_OK;
    }
    json_t *items;
    cz_err_code rc = cz_store_retention_candidates(s, before, quota ? 1 : BATCH, &items, err);
    if (rc) return rc;
    size_t n = json_array_size(items), removed = 0, i;
    uint64_t freed = st->bytes_reclaimed;
    json_t *c;
    json_array_foreach(items, i, c) removed += remove_one(s, bs, c, st);
    json_decref(items);
    freed = st->bytes_reclaimed - freed;
    usage = freed < usage ? usage - freed : 0;
    if (n == 0 || removed == 0) {  /* nothing (more) that may go */
      if (quota && n == 0)
        cz_log(CZ_LOG_WARN, "retention: over the disk quota with nothing left to remove",
               "usage_bytes", CZ_LOG_UINT(usage), "quota_bytes", CZ_LOG_UINT(quota), NULL);
      return CZ_E_OK;
    }
  }
}

cz_err_code cz_retention_sweep(cz_store *s, cz_blob_store *bs, const cz_retention_policy *p,
                               int64_t now, cz_retention_stats *st, cz_error *err) {
  cz_err_code rc = CZ_E_OK;
  if (p->max_age_ms > 0) rc = sweep_pass(s, bs, now - p->max_age_ms, 0, st, err);
  if (!rc && p->quota_bytes > 0) rc = sweep_pass(s, bs, INT64_MAX, p->quota_bytes, st, err);
  return rc;
}

/* ---- the sweeping thread ---- */

struct cz_retention {
  cz_store *store;
  cz_blob_store *blobs;
  cz_retention_policy policy;
  int64_t interval_ms;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* CLOCK_MONOTONIC */
  bool stop;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *run(void *cls) {
  cz_retention *r = cls;
  pthread_mutex_lock(&r->mu);
  while (!r->stop) {
    pthread_mutex_unlock(&r->mu);
    cz_retention_stats st = {0};
    cz_error e = {0};
    if (cz_retention_sweep(r->store, r->blobs, &r->policy, now_ms(), &st, &e))
      cz_log(CZ_LOG_WARN, "retention: sweep failed", "error", e.msg, NULL);
    if (st.jobs_removed || st.models_removed)
      cz_log(CZ_LOG_INFO, "retention sweep", "jobs_removed", CZ_LOG_INT(st.jobs_removed),
             "models_removed", CZ_LOG_INT(st.models_removed), "blobs_removed",
             CZ_LOG_INT(st.blobs_removed), "bytes_reclaimed", CZ_LOG_UINT(st.bytes_reclaimed),
             NULL);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(r->interval_ms / 1000);
    ts.tv_nsec += (long)(r->interval_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &ts) == 0) {
    }
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

cz_err_code cz_retention_start(cz_store *s, cz_blob_store *bs, const cz_retention_policy *p,
                               int64_t interval_ms, cz_retention **out, cz_error *err) {
  *out = NULL;
  if (p->max_age_ms <= 0 && p->quota_bytes == 0) return CZ_E_OK;
  cz_retention *r = calloc(1, sizeof *r);
  if (!r) return cz_err_set(err, CZ_E_NO_MEMORY, "retention: out of memory");
  *r = (cz_retention){.store = s, .blobs = bs, .policy = *p,
                      .interval_ms = interval_ms > 0 ? interval_ms : 1000};
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&r->mu, NULL);
  if (pthread_create(&r->thread, NULL, run, r) != 0) {
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return cz_err_set(err, CZ_E_INTERNAL, "retention: cannot start the sweeping thread");
  }
  *out = r;
  return CZ_E_OK;
}

void cz_retention_stop(cz_retention *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->stop = true;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  pthread_join(r->thread, NULL);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
}
