/* cz_store: the durable state of compressd (models, jobs, the queue) in SQLite.
 *
 * This is the only module that speaks SQL. It is a small interface on purpose: a PostgreSQL
 * implementation of the same functions is planned for users who outgrow one machine.
 *
 * Durability: WAL mode with synchronous=FULL, so a committed transaction survives power loss
 * and a function that returned CZ_E_OK has made its change durable. Every read-then-write is
 * one BEGIN IMMEDIATE transaction. The schema comes from migrations/NNNN-*.sql, built into the
 * binary and applied in order at open; PRAGMA user_version records the last one applied, and a
 * database newer than this binary is refused.
 *
 * Queue: queued -> running -> succeeded | failed | canceled. A claim is atomic
 * (UPDATE ... RETURNING), counts the attempt and sets a lease (owner + expiry); every later
 * change of a running job is fenced by the owner, so a job taken over by another process can
 * no longer be written by the old one.
 *
 * Rows are returned as jansson objects, one key per column (new references, the caller
 * decrefs). Thread: a cz_store may be shared by threads; calls are serialized inside.
 */
#ifndef CZ_STORE_H
#define CZ_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cz_err.h"

typedef struct {
  int version;       /* N of NNNN-name.sql */
  const char *name;
  const char *sql;
} cz_migration;

/* Generated from migrations/ by tools/embed-migrations.sh. */
extern const cz_migration cz_migrations[];
extern const int cz_migrations_count;

typedef struct cz_store cz_store;

cz_err_code cz_store_open(const char *path, cz_store **out, cz_error *err);
void cz_store_close(cz_store *s);
int cz_store_schema_version(cz_store *s);
/* Cheap check that the database answers (readiness). */
bool cz_store_ping(cz_store *s);

/* ---- models ---- */
typedef struct {
  const char *id, *name, *sha256, *format;
  uint64_t bytes, n_tensors, n_params;
  const char *tensors_json;   /* JSON array of {name, dtype, shape} */
  int64_t created_at;
} cz_model_row;

cz_err_code cz_store_model_insert(cz_store *s, const cz_model_row *m, cz_error *err);
/* with_tensors: include the "tensors" column (it can be large). NOT_FOUND if absent. */
cz_err_code cz_store_model_get(cz_store *s, const char *id, bool with_tensors, json_t **out,
                               cz_error *err);
/* Newest first; before_seq 0 = from the newest. *next_seq = 0 when there is no next page. */
cz_err_code cz_store_model_list(cz_store *s, int limit, int64_t before_seq, json_t **items,
                                int64_t *next_seq, cz_error *err);
/* Delete a model that no queued or running job uses (CONFLICT otherwise). *blob_free is true
 * when no other model row shares its blob, so the caller may remove the file. */
cz_err_code cz_store_model_delete(cz_store *s, const char *id, char sha256[65], bool *blob_free,
                                  cz_error *err);

/* ---- jobs ---- */
cz_err_code cz_store_job_insert(cz_store *s, const char *id, const char *model_id,
                                const char *recipe_json, int max_attempts, int64_t now,
                                cz_error *err);
cz_err_code cz_store_job_get(cz_store *s, const char *id, json_t **out, cz_error *err);
/* Filters may be NULL. */
cz_err_code cz_store_job_list(cz_store *s, int limit, int64_t before_seq, const char *state,
                              const char *model_id, json_t **items, int64_t *next_seq,
                              cz_error *err);
/* queued -> canceled at once (*was_running false); running -> cancel_requested
 * (*was_running true); finished -> CONFLICT. */
cz_err_code cz_store_job_cancel(cz_store *s, const char *id, int64_t now, bool *was_running,
                                cz_error *err);

/* Claim the oldest queued job: *job NULL when there is none. */
cz_err_code cz_store_job_claim(cz_store *s, const char *owner, int64_t lease_ms, int64_t now,
                               json_t **job, cz_error *err);
/* Record progress and extend the lease; *cancel tells whether a cancel was requested.
 * CONFLICT when the job is no longer ours. */
cz_err_code cz_store_job_heartbeat(cz_store *s, const char *id, const char *owner,
                                   uint64_t tensors_done, uint64_t tensors_total,
                                   uint64_t bytes_done, uint64_t bytes_total, int64_t lease_ms,
                                   int64_t now, bool *cancel, cz_error *err);
typedef struct {
  const char *state;          /* "succeeded", "failed" or "canceled" */
  const char *error_code, *error_message;                 /* failed/canceled */
  const char *artifact_sha256, *artifact_format, *report_sha256;  /* succeeded */
  uint64_t artifact_bytes;
} cz_job_outcome;
cz_err_code cz_store_job_finish(cz_store *s, const char *id, const char *owner,
                                const cz_job_outcome *o, int64_t now, cz_error *err);
/* Give a running job back to the queue without counting the attempt (orderly shutdown). */
cz_err_code cz_store_job_release(cz_store *s, const char *id, const char *owner, int64_t now,
                                 cz_error *err);
/* At start: jobs left running by a dead process go back to queued, or fail with
 * worker_crash once they used max_attempts; its in-flight idempotency claims are forgotten. */
cz_err_code cz_store_recover(cz_store *s, int64_t now, int *requeued, int *failed, cz_error *err);
/* Is this blob referenced by any model, job or calibration row? The startup sweep
 * (cz_blob_sweep in cz_serve.c) deletes every blob for which this says no, so a new kind of
 * row that names a blob must be added to its query. */
cz_err_code cz_store_blob_used(cz_store *s, const char *sha256, bool *used, cz_error *err);

/* ---- idempotency keys (Idempotency-Key on POST /v1/models and POST /v1/jobs) ---- */
typedef struct {
  bool found;               /* false: the key was new and is now claimed (in flight) */
  bool done;                /* found: completed (else still in flight) */
  char request_hash[65];    /* found: the first request's hash ("" while unknown) */
  char resource_id[64];     /* done: what it created */
  int status;               /* done: the status it was answered with */
} cz_idem_entry;
/* Look up (scope, key) after forgetting every expired entry; when absent, claim it as in
 * flight until now + ttl_ms with request_hash (NULL: not known yet, e.g. an upload). */
cz_err_code cz_store_idem_claim(cz_store *s, const char *scope, const char *key,
                                const char *request_hash, int64_t now, int64_t ttl_ms,
                                cz_idem_entry *out, cz_error *err);
/* Complete a claim with what the request created. */
cz_err_code cz_store_idem_complete(cz_store *s, const char *scope, const char *key,
                                   const char *request_hash, const char *resource_id,
                                   int status, cz_error *err);
/* Forget an in-flight claim (the request failed: the client may retry with the key). */
cz_err_code cz_store_idem_release(cz_store *s, const char *scope, const char *key,
                                  cz_error *err);

/* ---- submit with a queue limit, retry ---- */
typedef struct {
  const char *id, *model_id, *recipe_json;
  int max_attempts;
  int64_t now;
  const char *retry_of;     /* the job this one repeats, or NULL */
  int max_queued;           /* > 0: CZ_E_QUEUE_FULL when this many jobs are already queued */
  const char *webhook_url;  /* NULL: no webhook; else stored with the job (migration 0012) */
  const char *webhook_secret;
  int webhook_max_attempts;
} cz_job_submit;
/* cz_store_job_insert with the options above; NOT_FOUND if the model is gone. */
cz_err_code cz_store_job_submit(cz_store *s, const cz_job_submit *a, cz_error *err);
/* A new queued job new_id with the model and recipe of job id, which must be failed or
 * canceled (CONFLICT otherwise, and when its model was deleted); the new job's retry_of
 * names the original, which is left as it was. */
cz_err_code cz_store_job_retry(cz_store *s, const char *id, const char *new_id,
                               int max_attempts, int max_queued, int64_t now, cz_error *err);

/* ---- counts for /metrics ---- */
/* Jobs in each state: counts[0..4] = queued, running, succeeded, failed, canceled. */
cz_err_code cz_store_job_counts(cz_store *s, int64_t counts[5], cz_error *err);

/* ---- API tokens ---- */
cz_err_code cz_store_token_insert(cz_store *s, const char *id, const char *name,
                                  const char *scope, const char *hash, int64_t now,
                                  cz_error *err);
/* One token's row (id, name, scope, hash, created_at, revoked_at); NOT_FOUND if absent. */
cz_err_code cz_store_token_get(cz_store *s, const char *id, json_t **out, cz_error *err);
/* Every token, oldest first, without the hash. */
cz_err_code cz_store_token_list(cz_store *s, json_t **items, cz_error *err);
/* NOT_FOUND if absent, CONFLICT if already revoked. */
cz_err_code cz_store_token_revoke(cz_store *s, const char *id, int64_t now, cz_error *err);

/* ---- change notification ---- */
/* fn(cls, job_id) is called after every committed change of a job's state (cancel, claim,
 * finish, release), on the thread that made it, outside the store's lock; it must be quick
 * and must not call back into the store. NULL removes it. Set it before threads use the
 * store, or accept that a change racing with the call may not be reported. */
void cz_store_set_job_listener(cz_store *s, void (*fn)(void *cls, const char *job_id),
                               void *cls);

/* A number that changes (grows) whenever any row of any table but job_log is inserted,
 * updated or deleted through this store, whatever the path: the key under which the API
 * caches rendered job JSON (cz_jobcache.h). Load it BEFORE reading the rows a cached value is
 * made from: a write that lands in between then shows as a newer number. Any thread, lock-free. */
uint64_t cz_store_generation(cz_store *s);

/* ---- calibrations (importance matrices, migration 0010) ---- */
typedef struct {
  const char *id, *name, *sha256, *format;   /* format: "gguf" or "dat" */
  uint64_t bytes, n_entries;
  uint32_t chunk_count, chunk_size;
  const char *datasets_json;                 /* JSON array of strings */
  int64_t created_at;
} cz_calibration_row;

cz_err_code cz_store_calibration_insert(cz_store *s, const cz_calibration_row *c, cz_error *err);
/* NOT_FOUND if absent. */
cz_err_code cz_store_calibration_get(cz_store *s, const char *id, json_t **out, cz_error *err);
/* Newest first, paged like models. */
cz_err_code cz_store_calibration_list(cz_store *s, int limit, int64_t before_seq, json_t **items,
                                      int64_t *next_seq, cz_error *err);

/* ---- recent failures, grouped by error code (GET /v1/status) ---- */
#define CZ_RECENT_FAILURES 100   /* failed jobs looked at, newest first */
/* Of the newest CZ_RECENT_FAILURES failed jobs: [{"code", "count", "last_at", "last_job",
 * "last_message"}] per error code, most frequent first (new reference). */
cz_err_code cz_store_recent_failures(cz_store *s, json_t **out, cz_error *err);

/* ---- the per-job event log (migration 0013-job-log) ----
 * State changes (queued, claimed, requeued, released, cancel requested, succeeded, failed,
 * canceled, retried) are logged by triggers in the same transaction as the change; the daemon
 * appends what no row shows (progress, per-tensor results, a lost lease). Lines are numbered
 * per job from 1; only the newest CZ_JOB_LOG_MAX_LINES are kept, so a job's log has a bounded
 * size whatever the model or the number of restarts. */
#define CZ_JOB_LOG_MAX_LINES 1000    /* per job; migrations/0013-job-log.sql's cap trigger
                                        repeats this number (test_store checks they agree) */
#define CZ_JOB_LOG_MAX_MESSAGE 1024  /* bytes of one message; longer ones are cut */
typedef struct {
  const char *level;     /* "info", "warn" or "error" */
  const char *event;     /* a short name: "progress", "tensor", "lease_lost", ... */
  const char *message;   /* free text, cut to CZ_JOB_LOG_MAX_MESSAGE bytes */
} cz_job_log_line;
/* Append n lines (n <= CZ_JOB_LOG_MAX_LINES) to job id's log in one transaction, stamped now.
 * Not fenced by the lease: a worker that lost its job may still say so. NOT_FOUND if there
 * is no such job, INVALID_ARGUMENT for an unknown level. */
cz_err_code cz_store_job_log_append(cz_store *s, const char *id, int64_t now,
                                    const cz_job_log_line *lines, size_t n, cz_error *err);
/* The lines of job id with seq > since, oldest first, at most limit (1..CZ_JOB_LOG_MAX_LINES),
 * read in one statement: *out = {"state": the job's state, "first_seq", "last_seq" (0 when the
 * log is empty), "lines": [{"seq", "at", "level", "event", "message"}]} (new reference).
 * NOT_FOUND if there is no such job. */
cz_err_code cz_store_job_log(cz_store *s, const char *id, int64_t since, int limit,
                             json_t **out, cz_error *err);

/* ---- deletion and retention (daemon/cz_retention.c) ---- */
/* Delete a finished job's row (its webhook and log go with it); artifact and report get the
 * sha256 of its blobs ("" for none) so that the caller may remove the files no row uses any
 * more. NOT_FOUND if absent; CONFLICT while it is queued or running. */
cz_err_code cz_store_job_delete(cz_store *s, const char *id, char artifact[65], char report[65],
                                cz_error *err);
/* What retention may remove, oldest first, at most limit rows of {"kind": "job"|"model",
 * "id", "t"}: finished jobs with finished_at < before whose webhook (if any) is done, and
 * models with created_at < before that no job at all names. */
cz_err_code cz_store_retention_candidates(cz_store *s, int64_t before, int limit,
                                          json_t **items, cz_error *err);

/* ---- webhooks (migration 0012; delivered by daemon/cz_webhook.c) ---- */
/* The webhook of a job without its secret (job_id, url, state, msg_id, event, attempts,
 * max_attempts, next_attempt_at, last_status, last_error, created_at, delivered_at);
 * NOT_FOUND when the job has none. */
cz_err_code cz_store_webhook_get(cz_store *s, const char *job_id, json_t **out, cz_error *err);
/* Up to limit waiting webhooks whose job has finished, as the job's row (JOB_COLS). */
cz_err_code cz_store_webhook_finished(cz_store *s, int limit, json_t **jobs, cz_error *err);
/* waiting -> pending with the message fixed, first try at now. */
cz_err_code cz_store_webhook_schedule(cz_store *s, const char *job_id, const char *msg_id,
                                      const char *event, const char *payload, int64_t now,
                                      cz_error *err);
/* Up to limit pending webhooks due at now, soonest first, with url, secret, msg_id, payload,
 * attempts and max_attempts. */
cz_err_code cz_store_webhook_due(cz_store *s, int64_t now, int limit, json_t **items,
                                 cz_error *err);
/* The soonest next_attempt_at of a pending webhook, or INT64_MAX when there is none. */
cz_err_code cz_store_webhook_next(cz_store *s, int64_t *at, cz_error *err);
/* Record one try: attempts + 1; delivered (ok), else failed when it was the last try, else
 * pending again with next_attempt_at = retry_at. status: the HTTP status, 0 if none. */
cz_err_code cz_store_webhook_attempt(cz_store *s, const char *job_id, bool ok, int status,
                                     const char *error, int64_t now, int64_t retry_at,
                                     cz_error *err);

#endif
