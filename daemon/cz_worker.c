/* cz_worker: job execution on the libuv loop and thread pool (see cz_worker.h). */
#ifdef HAVE_CONFIG_H
#include "config.h" /* CZ_TEST_HOOKS */
#endif
#include "cz_worker.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cz_api_calib.h"
#include "cz_imatrix.h"
#include "cz_log.h"
#include "cz_metrics.h"
#include "cz_model.h"
#include "cz_pipeline.h"

/* Progress is written and the lease renewed this often; cancel is noticed within it. */
#define HEARTBEAT_MS 250
/* A lease outlives a few missed heartbeats; only another process would ever act on it. */
#define LEASE_MS 30000
#define MAX_JOBS 8
/* The job log (cz_store_job_log_append) gets a progress line at each tenth of the bytes and
 * otherwise at most this often, so a long job's log stays far below CZ_JOB_LOG_MAX_LINES. */
#define PROGRESS_LOG_MS 60000
/* Per-tensor result lines written when a job succeeds; the report has every tensor, the log
 * names the first ones so that it stays readable (and within its cap) for large models. */
#define TENSOR_LOG_LINES 512

typedef struct job job;

struct cz_worker {
  uv_loop_t *loop;
  cz_store *store;
  cz_blob_store *blobs;
  cz_worker_opts opts;
  char owner[64];
  uv_async_t wake;
  uv_timer_t tick;
  int max_jobs;
  job *jobs[MAX_JOBS];
  int n_jobs;
  bool stopping;
  int open_handles;
  void (*done)(void *);
  void *done_cls;
};

typedef struct {
  uv_work_t req;
  job *j;
  size_t task;
  cz_error err;
  cz_err_code rc;
} task_req;

struct job {
  cz_worker *w;
  char id[64];
  char model_sha[65];
  cz_model *model;
  cz_recipe *recipe;
  cz_imatrix *imatrix;      /* the job's calibration, NULL without; the recipe borrows it */
  cz_run *run;
  cz_blob_writer out;
  bool out_open;
  size_t next_task, in_flight, n_tasks;
  cz_err_code rc;           /* first failure, CZ_E_OK while fine */
  cz_error err;
  bool release;             /* hand back to the queue instead of failing (shutdown) */
  bool crash_hook;          /* test build only: abort() in the first task (see crash_hook_armed) */
  int slow_hook_ms;         /* test build only: sleep before each task (see slow_hook_ms) */
  bool finalizing;
  struct timespec t0;
  /* the job log: last progress line written, and whether the lost lease was said */
  int64_t log_last_ms;
  int log_tenth;
  bool log_lease_lost;
  /* results of finalize */
  uv_work_t fin_req;
  char artifact_sha[65], report_sha[65];
  uint64_t artifact_bytes;
  json_t *report;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void try_claim(cz_worker *w);
static void pump(job *j);

/* ---- job lifecycle ---- */

static void job_free(job *j) {
  if (j->out_open) cz_blob_writer_abort(&j->out);
  cz_run_free(j->run);
  cz_recipe_free(j->recipe);
  cz_imatrix_free(j->imatrix);
  cz_model_close(j->model);
  json_decref(j->report);
  free(j);
}

static void job_remove(job *j) {
  cz_worker *w = j->w;
  for (int i = 0; i < w->n_jobs; i++)
    if (w->jobs[i] == j) w->jobs[i] = w->jobs[--w->n_jobs];
  job_free(j);
}

static void heartbeat_job(job *j, bool *cancel, cz_error *e);

/* One line to the job's log; a failure is logged and otherwise ignored (the log is a view of
 * the job, never a reason to fail it). */
static void job_log(job *j, const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void job_log(job *j, const char *level, const char *event, const char *fmt, ...) {
  char msg[CZ_JOB_LOG_MAX_MESSAGE + 1];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cz_job_log_line l = {level, event, msg};
  cz_error e = {0};
  if (cz_store_job_log_append(j->w->store, j->id, now_ms(), &l, 1, &e))
    cz_log(CZ_LOG_WARN, "job log append failed", "job", j->id, "error", e.msg, NULL);
}

/* Before a success is recorded: one line per tensor (type, bits per weight, error) from the
 * report, up to TENSOR_LOG_LINES, appended in one transaction. */
static void log_tensor_results(job *j) {
  json_t *tensors = json_object_get(j->report, "tensors");
  size_t n = json_array_size(tensors), shown = n < TENSOR_LOG_LINES ? n : TENSOR_LOG_LINES;
  if (shown == 0) return;
  cz_job_log_line *lines = calloc(shown + 1, sizeof *lines);
  char (*msgs)[256] = calloc(shown + 1, sizeof *msgs);
  if (!lines || !msgs) {
    free(lines);
    free(msgs);
    return;
  }
  for (size_t i = 0; i < shown; i++) {
    json_t *t = json_array_get(tensors, i);
    const char *out = json_string_value(json_object_get(t, "output_type"));
    json_t *bpw = json_object_get(t, "bpw"), *rel = json_object_get(t, "rel_l2");
    snprintf(msgs[i], sizeof msgs[i], "%s: %s -> %s, %.3f bits/weight, relative error %.3g",
             json_string_value(json_object_get(t, "name")),
             json_string_value(json_object_get(t, "input_dtype")), out && *out ? out : "transformed",
             json_is_number(bpw) ? json_number_value(bpw) : 0.0,
             json_is_number(rel) ? json_number_value(rel) : 0.0);
    lines[i] = (cz_job_log_line){"info", "tensor", msgs[i]};
  }
  size_t k = shown;
  if (n > shown) {
    snprintf(msgs[k], sizeof msgs[k], "%zu more tensors: see the report", n - shown);
    lines[k] = (cz_job_log_line){"info", "tensor", msgs[k]};
    k++;
  }
  cz_error e = {0};
  if (cz_store_job_log_append(j->w->store, j->id, now_ms(), lines, k, &e))
    cz_log(CZ_LOG_WARN, "job log append failed", "job", j->id, "error", e.msg, NULL);
  free(lines);
  free(msgs);
}

static void record_outcome(job *j) {
  cz_worker *w = j->w;
  cz_error e = {0};
  cz_err_code rc;
  bool cancel;
  /* a job shorter than one heartbeat still shows its final counts */
  if (j->run) heartbeat_job(j, &cancel, &e);
  /* drop a partial artifact before the job's end becomes visible: whoever sees the state
   * change must not find its temporary file still there */
  if (j->out_open) {
    cz_blob_writer_abort(&j->out);
    j->out_open = false;
  }
  if (j->release) {
    rc = cz_store_job_release(w->store, j->id, w->owner, now_ms(), &e);
    cz_log(CZ_LOG_INFO, "job released", "job", j->id, "reason", "shutdown", NULL);
  } else {
    cz_job_outcome o = {0};
    if (j->rc == CZ_E_OK) {
      log_tensor_results(j);  /* before the state line, so that a follower sees them all */
      o.state = "succeeded";
      o.artifact_sha256 = j->artifact_sha;
      o.artifact_bytes = j->artifact_bytes;
      o.artifact_format = cz_format_name(cz_run_output_format(j->run));
      o.report_sha256 = j->report_sha;
    } else {
      o.state = j->rc == CZ_E_CANCELED ? "canceled" : "failed";
      o.error_code = cz_err_name(j->rc);
      o.error_message = j->rc == CZ_E_CANCELED ? "canceled by request" : j->err.msg;
    }
    rc = cz_store_job_finish(w->store, j->id, w->owner, &o, now_ms(), &e);
    if (!rc) {
      struct timespec t1;
      clock_gettime(CLOCK_MONOTONIC, &t1);
      cz_metrics_job_finished(o.state, (double)(t1.tv_sec - j->t0.tv_sec) +
                                           (double)(t1.tv_nsec - j->t0.tv_nsec) / 1e9);
    }
    cz_log(j->rc ? CZ_LOG_WARN : CZ_LOG_INFO, "job finished", "job", j->id, "state", o.state,
           "error", j->rc ? j->err.msg : NULL, "artifact", j->rc ? NULL : j->artifact_sha, NULL);
  }
  if (rc) cz_log(CZ_LOG_ERROR, "recording job outcome failed", "job", j->id, "error", e.msg, NULL);
  job_remove(j);
  if (!w->stopping) try_claim(w);
}

static void fail(job *j, const cz_error *e) {
  if (j->rc) return;
  j->rc = e->code;
  j->err = *e;
  if (j->run) cz_run_cancel(j->run);
}

/* Runs on: pool thread. Publish the artifact and the report as blobs. */
static void finalize_work(uv_work_t *req) {
  job *j = req->data;
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - j->t0.tv_sec) + (double)(t1.tv_nsec - j->t0.tv_nsec) / 1e9;
  cz_error e = {0};
  j->out_open = false;
  if (cz_blob_writer_commit(&j->out, j->artifact_sha, &j->artifact_bytes, &e)) {
    fail(j, &e);
    return;
  }
  j->report = cz_run_report(j->run, secs);
  json_object_set_new(j->report, "job", json_string(j->id));
  json_object_set_new(json_object_get(j->report, "output"), "sha256", json_string(j->artifact_sha));
  char *s = json_dumps(j->report, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
  cz_blob_writer rw;
  uint64_t n;
  if (!s) {
    cz_err_set(&e, CZ_E_NO_MEMORY, "out of memory");
  } else if (!cz_blob_writer_open(j->w->blobs, &rw, &e)) {
    if (cz_blob_writer_write(&rw, s, strlen(s), &e) ||
        cz_blob_writer_commit(&rw, j->report_sha, &n, &e))
      cz_blob_writer_abort(&rw);
  }
  free(s);
  if (e.code) fail(j, &e);
}

/* Runs on: loop thread. */
static void finalize_done(uv_work_t *req, int status) { record_outcome(req->data); }

static void finish_job(job *j) {
  if (j->rc != CZ_E_OK || j->release) {
    record_outcome(j);
    return;
  }
  j->finalizing = true;
  j->fin_req.data = j;
  if (uv_queue_work(j->w->loop, &j->fin_req, finalize_work, finalize_done) != 0) {
    cz_error e;
    cz_err_set(&e, CZ_E_INTERNAL, "cannot queue work");
    fail(j, &e);
    record_outcome(j);
  }
}

/* ---- test hook: a model that crashes the worker ----
 *
 * Workers are pool threads of the daemon, so a compressor that segfaults on a poison input
 * takes the whole process down; the job's attempt stays counted, and recovery at the next
 * start fails it with worker_crash once max_attempts are used (cz_store_recover). To test
 * that path, a build configured with --enable-test-hooks (the default only together with
 * --enable-sanitizers) aborts in the first task of any job whose model is named exactly
 * $CZ_TEST_CRASH_MODEL. A release build has no such code at all; a test build without the
 * variable behaves as usual. */
static bool crash_hook_armed(const char *model_name) {
#ifdef CZ_TEST_HOOKS
  const char *poison = getenv("CZ_TEST_CRASH_MODEL");
  return poison && *poison && model_name && strcmp(model_name, poison) == 0;
#else
  (void)model_name;
  return false;
#endif
}

/* ---- test hook: a model whose jobs are slow ----
 *
 * Tests of queueing, long polls and cancels need a job that is still running when the next
 * request arrives; with fast kernels no input of a test's size takes long enough on every
 * machine. A test build (as for the crash hook) sleeps $CZ_TEST_SLOW_MS milliseconds (default
 * 1000, at most 5000) before each task of a job whose model is named $CZ_TEST_SLOW_MODEL, in
 * 10 ms slices that end early when the job is canceled. */
#define SLOW_HOOK_DEFAULT_MS 1000
#define SLOW_HOOK_MAX_MS 5000
static int slow_hook_ms(const char *model_name) {
#ifdef CZ_TEST_HOOKS
  const char *slow = getenv("CZ_TEST_SLOW_MODEL");
  if (!slow || !*slow || !model_name || strcmp(model_name, slow) != 0) return 0;
  const char *ms = getenv("CZ_TEST_SLOW_MS");
  long v = ms && *ms ? strtol(ms, NULL, 10) : SLOW_HOOK_DEFAULT_MS;
  return v < 0 ? 0 : v > SLOW_HOOK_MAX_MS ? SLOW_HOOK_MAX_MS : (int)v;
#else
  (void)model_name;
  return 0;
#endif
}

/* Runs on: pool thread. */
static void task_work(uv_work_t *req) {
  task_req *t = req->data;
  if (t->j->crash_hook) {
    cz_log(CZ_LOG_ERROR, "test hook: crashing the worker", "job", t->j->id, NULL);
    abort();
  }
  /* the slow hook's sleep stands for a long task: the slot is busy during it too (a test
   * watches busy slots while a job runs, and the task itself can end within microseconds) */
  cz_metrics_worker_busy(1);
  for (int ms = 0; ms < t->j->slow_hook_ms && !cz_run_canceled(t->j->run); ms += 10) {
    const struct timespec d = {0, 10 * 1000000L};
    nanosleep(&d, NULL);
  }
  t->rc = cz_run_task(t->j->run, t->task, &t->err);
  cz_metrics_worker_busy(-1);
}

/* Runs on: loop thread. */
static void task_done(uv_work_t *req, int status) {
  task_req *t = req->data;
  job *j = t->j;
  j->in_flight--;
  if (t->rc && !(t->rc == CZ_E_CANCELED && j->rc)) fail(j, &t->err);
  free(t);
  pump(j);
}

/* Keep up to opts.threads tasks of this job in flight; finish when all are back. */
static void pump(job *j) {
  while (j->rc == CZ_E_OK && j->next_task < j->n_tasks &&
         j->in_flight < (size_t)j->w->opts.threads) {
    task_req *t = calloc(1, sizeof *t);
    if (!t) break;
    t->j = j;
    t->task = j->next_task++;
    t->req.data = t;
    if (uv_queue_work(j->w->loop, &t->req, task_work, task_done) != 0) {
      free(t);
      cz_error e;
      cz_err_set(&e, CZ_E_INTERNAL, "cannot queue work");
      fail(j, &e);
      break;
    }
    j->in_flight++;
  }
  if (j->in_flight == 0 && !j->finalizing && (j->rc || j->next_task >= j->n_tasks)) finish_job(j);
}

/* Open the input, plan, create the output file: everything before the tasks. */
static cz_err_code job_prepare(job *j, json_t *row, cz_error *err) {
  cz_worker *w = j->w;
  json_t *model;
  cz_err_code rc = cz_store_model_get(w->store, json_string_value(json_object_get(row, "model_id")),
                                      false, &model, err);
  if (rc) return rc;
  snprintf(j->model_sha, sizeof j->model_sha, "%s",
           json_string_value(json_object_get(model, "sha256")));
  j->crash_hook = crash_hook_armed(json_string_value(json_object_get(model, "name")));
  j->slow_hook_ms = slow_hook_ms(json_string_value(json_object_get(model, "name")));
  json_decref(model);
  char path[4096];
  cz_blob_path(w->blobs, j->model_sha, path, sizeof path);
  json_error_t jerr;
  json_t *recipe = json_loads(json_string_value(json_object_get(row, "recipe")), 0, &jerr);
  if (!recipe) return cz_err_set(err, CZ_E_INTERNAL, "stored recipe is not JSON: %s", jerr.text);
  /* the job's calibration (importance matrix), named in the stored recipe */
  static const char *const extra[] = {"calibration", NULL};
  rc = cz_recipe_parse(recipe, extra, &j->recipe, err);
  const char *calib = json_string_value(json_object_get(recipe, "calibration"));
  if (!rc && calib) {
    rc = cz_calib_load(w->store, w->blobs, calib, &j->imatrix, err);
    if (rc == CZ_E_NOT_FOUND)
      rc = cz_err_set(err, CZ_E_INVALID_ARGUMENT, "calibration %s no longer exists", calib);
    if (!rc) cz_recipe_set_imatrix(j->recipe, j->imatrix);
  }
  json_decref(recipe);
  if (rc || (rc = cz_model_open(path, &j->model, err)) ||
      (rc = cz_run_plan(j->recipe, j->model, j->model_sha, &j->run, err)) ||
      (rc = cz_blob_writer_open(w->blobs, &j->out, err)))
    return rc;
  j->out_open = true;
  cz_blob_writer_mark_random_access(&j->out);
  if ((rc = cz_run_begin(j->run, j->out.fd, err))) return rc;
  j->n_tasks = cz_run_n_tasks(j->run);
  uint64_t td, tt, bd, bt;
  cz_run_progress(j->run, &td, &tt, &bd, &bt);
  job_log(j, "info", "planned", "%" PRIu64 " tensors in %zu tasks, %" PRIu64 " bytes to process%s",
          tt, j->n_tasks, bt, j->imatrix ? " (with a calibration)" : "");
  return CZ_E_OK;
}

static void start_job(cz_worker *w, json_t *row) {
  job *j = calloc(1, sizeof *j);
  if (!j) return;
  j->w = w;
  snprintf(j->id, sizeof j->id, "%s", json_string_value(json_object_get(row, "id")));
  clock_gettime(CLOCK_MONOTONIC, &j->t0);
  w->jobs[w->n_jobs++] = j;
  cz_log(CZ_LOG_INFO, "job claimed", "job", j->id, "attempt",
         CZ_LOG_INT(json_integer_value(json_object_get(row, "attempts"))), NULL);
  cz_error e = {0};
  if (job_prepare(j, row, &e)) fail(j, &e);
  pump(j);
}

static void try_claim(cz_worker *w) {
  while (!w->stopping && w->n_jobs < w->max_jobs) {
    json_t *row = NULL;
    cz_error e = {0};
    if (cz_store_job_claim(w->store, w->owner, LEASE_MS, now_ms(), &row, &e)) {
      cz_log(CZ_LOG_ERROR, "claiming a job failed", "error", e.msg, NULL);
      return;
    }
    if (!row) return;
    start_job(w, row);
    json_decref(row);
  }
}

/* ---- heartbeat ---- */

static void heartbeat_job(job *j, bool *cancel, cz_error *e) {
  uint64_t td, tt, bd, bt;
  cz_run_progress(j->run, &td, &tt, &bd, &bt);
  *cancel = false;
  int64_t now = now_ms();
  if (cz_store_job_heartbeat(j->w->store, j->id, j->w->owner, td, tt, bd, bt, LEASE_MS, now,
                             cancel, e)) {
    cz_log(CZ_LOG_WARN, "heartbeat failed", "job", j->id, "error", e->msg, NULL);
    if (e->code == CZ_E_CONFLICT && !j->log_lease_lost) {
      j->log_lease_lost = true;
      job_log(j, "warn", "lease_lost", "this worker (%s) no longer holds the job: %s",
              j->w->owner, e->msg);
    }
    return;
  }
  /* a line per tenth of the bytes, or every PROGRESS_LOG_MS while something moves */
  int tenth = bt ? (int)(bd * 10 / bt) : 0;
  if (bt && bd < bt && (tenth > j->log_tenth || (now - j->log_last_ms >= PROGRESS_LOG_MS && bd))) {
    j->log_tenth = tenth;
    j->log_last_ms = now;
    job_log(j, "info", "progress", "%" PRIu64 " of %" PRIu64 " tensors done, %d%% of the bytes",
            td, tt, (int)(bd * 100 / bt));
  }
}

static void heartbeat(cz_worker *w) {
  for (int i = 0; i < w->n_jobs; i++) {
    job *j = w->jobs[i];
    if (!j->run) continue;
    bool cancel = false;
    cz_error e = {0};
    heartbeat_job(j, &cancel, &e);
    if (e.code) {
      continue;
    }
    if (cancel && j->rc == CZ_E_OK) {
      cz_err_set(&e, CZ_E_CANCELED, "canceled by request");
      fail(j, &e);
      cz_log(CZ_LOG_INFO, "job cancel requested", "job", j->id, NULL);
    }
  }
}

static void on_tick(uv_timer_t *t) {
  cz_worker *w = t->data;
  heartbeat(w);
  try_claim(w);
}

static void on_wake(uv_async_t *a) {
  cz_worker *w = a->data;
  heartbeat(w);
  try_claim(w);
}

cz_err_code cz_worker_start(uv_loop_t *loop, cz_store *store, cz_blob_store *blobs,
                            const cz_worker_opts *opts, cz_worker **out, cz_error *err) {
  cz_worker *w = calloc(1, sizeof *w);
  if (!w) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  w->loop = loop;
  w->store = store;
  w->blobs = blobs;
  w->opts = *opts;
  if (w->opts.threads < 1) w->opts.threads = 1;
  snprintf(w->owner, sizeof w->owner, "%s", opts->owner);
  w->opts.owner = w->owner;
  w->max_jobs = w->opts.threads / 2 > 1 ? w->opts.threads / 2 : 1;
  if (w->max_jobs > MAX_JOBS) w->max_jobs = MAX_JOBS;
  if (uv_async_init(loop, &w->wake, on_wake) || uv_timer_init(loop, &w->tick)) {
    free(w);
    return cz_err_set(err, CZ_E_INTERNAL, "libuv handle init failed");
  }
  w->wake.data = w->tick.data = w;
  w->open_handles = 2;
  uv_timer_start(&w->tick, on_tick, 0, HEARTBEAT_MS);
#ifdef CZ_TEST_HOOKS
  if (getenv("CZ_TEST_CRASH_MODEL"))
    cz_log(CZ_LOG_WARN, "test hook armed: jobs on this model crash the daemon", "model",
           getenv("CZ_TEST_CRASH_MODEL"), NULL);
  if (getenv("CZ_TEST_SLOW_MODEL"))
    cz_log(CZ_LOG_WARN, "test hook armed: jobs on this model sleep before each task", "model",
           getenv("CZ_TEST_SLOW_MODEL"), NULL);
#endif
  *out = w;
  return CZ_E_OK;
}

void cz_worker_wake(cz_worker *w) { uv_async_send(&w->wake); }

static void on_closed(uv_handle_t *h) {
  cz_worker *w = h->data;
  if (--w->open_handles == 0) {
    void (*done)(void *) = w->done;
    void *cls = w->done_cls;
    free(w);
    if (done) done(cls);
  }
}

static void on_drain_tick(uv_timer_t *t) {
  cz_worker *w = t->data;
  if (w->n_jobs > 0) return;
  uv_timer_stop(&w->tick);
  uv_close((uv_handle_t *)&w->tick, on_closed);
  uv_close((uv_handle_t *)&w->wake, on_closed);
}

void cz_worker_shutdown(cz_worker *w, void (*done)(void *cls), void *cls) {
  w->stopping = true;
  w->done = done;
  w->done_cls = cls;
  for (int i = 0; i < w->n_jobs; i++) {
    job *j = w->jobs[i];
    if (j->finalizing) continue;  /* nearly done: let it publish */
    j->release = true;
    if (j->run) cz_run_cancel(j->run);
  }
  uv_timer_stop(&w->tick);
  uv_timer_start(&w->tick, on_drain_tick, 0, 20);
}
