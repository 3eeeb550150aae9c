/* cz_retention: delete old and over-quota data (issue 6): finished jobs with their artifacts
 * and reports, and models no job names any more.
 *
 * Policy (both off by default, see cz_config.h):
 *   max age    a finished job older than this (by finished_at), and a model older than this
 *              (by created_at) that no job names, are removed;
 *   disk quota while the blob store holds more bytes than this, the oldest candidate (a
 *              finished job by finished_at or an unnamed model by created_at) is removed.
 * Never removed: a queued or running job, the model of one (the store refuses it in the same
 * transaction, so a job submitted meanwhile wins), a job whose webhook is still to be
 * delivered, and a model that a finished job still names (it becomes a candidate once that
 * job is gone). Calibrations are not touched. A blob is removed only when no row names it.
 *
 * Thread: cz_retention_sweep and cz_retention_delete_job on any thread (the store serializes);
 * cz_retention_start/stop from the main thread.
 */
#ifndef CZ_RETENTION_H
#define CZ_RETENTION_H

#include <stdint.h>

#include "cz_blob.h"
#include "cz_err.h"
#include "cz_store.h"

typedef struct {
  int64_t max_age_ms;     /* 0: no age limit */
  uint64_t quota_bytes;   /* 0: no quota */
} cz_retention_policy;

typedef struct {
  int jobs_removed, models_removed, blobs_removed;
  uint64_t bytes_reclaimed;  /* sizes of the blob files removed */
  uint64_t usage_bytes;      /* the blob store after the sweep (when a quota is set) */
} cz_retention_stats;

/* One pass of the policy at time now (Unix ms); stats are added to *st. */
cz_err_code cz_retention_sweep(cz_store *s, cz_blob_store *bs, const cz_retention_policy *p,
                               int64_t now, cz_retention_stats *st, cz_error *err);

/* Delete a finished job and the blobs of it that no other row names (DELETE /v1/jobs/{id});
 * NOT_FOUND, or CONFLICT while it is queued or running. st may be NULL. */
cz_err_code cz_retention_delete_job(cz_store *s, cz_blob_store *bs, const char *id,
                                    cz_retention_stats *st, cz_error *err);

/* Delete a model and its file if no other row names the same bytes (DELETE /v1/models/{id});
 * NOT_FOUND, or CONFLICT while a queued or running job uses it. st may be NULL. */
cz_err_code cz_retention_delete_model(cz_store *s, cz_blob_store *bs, const char *id,
                                      cz_retention_stats *st, cz_error *err);

/* Remove a blob if no row names it any more (counted in st, which may be NULL). */
void cz_retention_drop_blob(cz_store *s, cz_blob_store *bs, const char *sha256,
                            cz_retention_stats *st);

/* A thread that sweeps every interval_ms; NULL *out (and OK) when the policy is all off. */
typedef struct cz_retention cz_retention;
cz_err_code cz_retention_start(cz_store *s, cz_blob_store *bs, const cz_retention_policy *p,
                               int64_t interval_ms, cz_retention **out, cz_error *err);
void cz_retention_stop(cz_retention *r);

#endif
