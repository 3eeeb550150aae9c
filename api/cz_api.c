/* cz_api: handlers of the v1 REST API (models, jobs, artifacts, reports, health). */
#include "cz_api.h"
#include "cz_api_service.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cz_api_web.h"
#include "cz_api_calib.h"
#include "cz_jobcache.h"
#include "cz_log.h"
#include "cz_model.h"
#include "cz_pipeline.h"
#include "cz_retention.h"
#include "cz_upload.h"
#include "cz_webhook.h"


/* ---- helpers ---- */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "mdl_" / "job_" + 24 hex digits of randomness. */
static void new_id(const char *prefix, char *out, size_t len) {
  uint8_t b[12];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
    /* getrandom only fails before the pool is seeded; mix time and a counter instead */
    static _Atomic uint64_t counter;
    uint64_t v = (uint64_t)now_ms() ^ (++counter << 40);
    memcpy(b, &v, 8);
    memset(b + 8, 0, 4);
  }
  int n = snprintf(out, len, "%s", prefix);
  for (size_t i = 0; i < sizeof b && (size_t)n + 2 < len; i++)
    n += snprintf(out + n, len - (size_t)n, "%02x", b[i]);
}

json_t *cz_api_time_json(const json_t *ms) {
  if (!json_is_integer(ms)) return json_null();
  char buf[CZ_TIME_ISO_LEN];
  cz_time_iso(json_integer_value(ms), buf);
  return json_string(buf);
}


static json_t *col(json_t *row, const char *k) { return json_object_get(row, k); }

/* ---- health ---- */

static enum MHD_Result h_livez(cz_req *r) {
  return cz_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static enum MHD_Result h_readyz(cz_req *r) {
  cz_api *api = r->app;
  if (!atomic_load(&api->ready))
    return cz_reply_error(r, CZ_E_UNAVAILABLE, "starting or stopping");
  if (!cz_store_ping(api->store)) return cz_reply_error(r, CZ_E_UNAVAILABLE, "database unavailable");
  return cz_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
}

/* ---- models ---- */

static json_t *model_json(json_t *row) {
  json_t *o = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:o}", "id", col(row, "id"), "name",
                        col(row, "name"), "sha256", col(row, "sha256"), "bytes",
                        col(row, "bytes"), "format", col(row, "format"), "tensor_count",
                        col(row, "n_tensors"), "parameter_count", col(row, "n_params"),
                        "created_at", cz_api_time_json(col(row, "created_at")));
  const char *tensors = json_string_value(col(row, "tensors"));
  if (tensors) json_object_set_new(o, "tensors", json_loads(tensors, 0, NULL));
  return o;
}

/* The tensors of a validated model as [{name, dtype, shape}], shape outermost first. */
static json_t *tensors_json(const cz_model *m, uint64_t *n_params) {
  json_t *arr = json_array();
  *n_params = 0;
  for (size_t i = 0; i < m->n_tensors; i++) {
    const cz_tensor *t = &m->tensors[i];
    const cz_type_traits *tr = cz_type_get(t->type);
    json_t *shape = json_array();
    for (int d = t->n_dims - 1; d >= 0; d--) json_array_append_new(shape, json_integer(t->ne[d]));
    const char *dtype = m->format == CZ_FORMAT_SAFETENSORS && tr->st_name ? tr->st_name : tr->name;
    json_array_append_new(arr, json_pack("{s:s, s:s, s:o}", "name", t->name, "dtype", dtype,
                                         "shape", shape));
    *n_params += (uint64_t)cz_tensor_nelements(t);
  }
  return arr;
}

static enum MHD_Result upload_end(cz_req *r) {
  cz_api *api = r->app;
  enum MHD_Result ret;
  cz_upload *u = cz_upload_complete(r, &ret);
  if (!u) return ret;
  cz_error e = {0};
  cz_model *m = NULL;
  /* validate the complete file before it becomes a blob: a rejected upload leaves nothing */
  if (cz_model_open(u->w.tmp_path, &m, &e)) return cz_upload_fail(r, &e);
  uint64_t n_params;
  json_t *tensors = tensors_json(m, &n_params);
  char *tensors_s = json_dumps(tensors, JSON_COMPACT);
  json_decref(tensors);
  cz_format fmt = m->format;
  size_t n_tensors = m->n_tensors;
  cz_model_close(m);
  char sha[65];
  uint64_t bytes;
  if (!tensors_s) {
    cz_err_set(&e, CZ_E_NO_MEMORY, "out of memory");
    return cz_upload_fail(r, &e);
  }
  if (cz_upload_commit(u, sha, &bytes, &e)) {
    free(tensors_s);
    return cz_upload_fail(r, &e);
  }
  char id[40];
  new_id("mdl_", id, sizeof id);
  cz_model_row row = {id, u->name, sha, cz_format_name(fmt), bytes, n_tensors, n_params,
                      tensors_s, now_ms()};
  cz_err_code rc = cz_store_model_insert(api->store, &row, &e);
  free(tensors_s);
  cz_upload_done(r);
  if (rc) {
    cz_upload_unpublish(api, sha);
    return cz_reply_err(r, &e);
  }
  cz_log(CZ_LOG_INFO, "model uploaded", "model", id, "sha256", sha, "bytes", CZ_LOG_UINT(bytes),
         "format", cz_format_name(fmt), NULL);
  snprintf(r->created_id, sizeof r->created_id, "%s", id);
  json_t *out;
  if (cz_store_model_get(api->store, id, false, &out, &e)) return cz_reply_err(r, &e);
  json_t *body = model_json(out);
  json_decref(out);
  return cz_reply_json(r, 201, body);
}

static enum MHD_Result h_model_upload(cz_req *r, cz_upload_phase phase, const char *data,
                                      size_t len) {
  switch (phase) {
    case CZ_UPLOAD_BEGIN:
      return cz_upload_begin(r, "the file", "model");
    case CZ_UPLOAD_CHUNK:
      return cz_upload_chunk(r, data, len);
    case CZ_UPLOAD_END:
      return upload_end(r);
  }
  return MHD_NO;
}

static enum MHD_Result h_model_list(cz_req *r) {
  cz_api *api = r->app;
  int size;
  int64_t before, next;
  if (!cz_page_parse(r, &api->page_key, CZ_PAGE_MODELS, NULL, 0, &size, &before)) return MHD_YES;
  json_t *rows;
  cz_error e = {0};
  if (cz_store_model_list(api->store, size, before, &rows, &next, &e)) return cz_reply_err(r, &e);
  json_t *items = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) json_array_append_new(items, model_json(row));
  json_decref(rows);
  return cz_reply_json(r, 200, cz_page_json(&api->page_key, CZ_PAGE_MODELS, NULL, 0, "models", items, next));
}

static enum MHD_Result h_model_get(cz_req *r) {
  cz_api *api = r->app;
  json_t *row;
  cz_error e = {0};
  if (cz_store_model_get(api->store, r->id, true, &row, &e)) return cz_reply_err(r, &e);
  json_t *body = model_json(row);
  json_decref(row);
  return cz_reply_json(r, 200, body);
}

static enum MHD_Result h_model_delete(cz_req *r) {
  cz_api *api = r->app;
  cz_error e = {0};
  /* the same deletion as the retention sweep's (counted in compressd_deleted_total) */
  if (cz_retention_delete_model(api->store, api->blobs, r->id, NULL, &e))
    return cz_reply_err(r, &e);
  cz_log(CZ_LOG_INFO, "model deleted", "model", r->id, NULL);
  return cz_reply_status(r, 204);
}

/* ---- jobs ---- */

static json_t *job_json(json_t *row) {
  const char *id = json_string_value(col(row, "id"));
  const char *state = json_string_value(col(row, "state"));
  json_int_t td = json_integer_value(col(row, "tensors_done")),
             tt = json_integer_value(col(row, "tensors_total")),
             bd = json_integer_value(col(row, "bytes_done")),
             bt = json_integer_value(col(row, "bytes_total"));
  json_t *recipe = json_loads(json_string_value(col(row, "recipe")), 0, NULL);
  json_t *o = json_pack(
      "{s:s, s:O, s:s, s:o, s:O, s:O, s:b, s:{s:I, s:I, s:I, s:I, s:f}, s:o, s:o, s:o, s:o}",
      "id", id, "model", col(row, "model_id"), "state", state, "recipe",
      recipe ? recipe : json_null(), "attempts", col(row, "attempts"), "max_attempts",
      col(row, "max_attempts"), "cancel_requested",
      (int)json_integer_value(col(row, "cancel_requested")), "progress", "tensors_done", td,
      "tensors_total", tt, "bytes_done", bd, "bytes_total", bt, "fraction",
      bt > 0 ? (double)bd / (double)bt : (strcmp(state, "succeeded") == 0 ? 1.0 : 0.0),
      "created_at", cz_api_time_json(col(row, "created_at")), "started_at",
      cz_api_time_json(col(row, "started_at")), "finished_at",
      cz_api_time_json(col(row, "finished_at")), "updated_at",
      cz_api_time_json(col(row, "updated_at")));
  if (json_is_string(col(row, "error_code")))
    json_object_set_new(o, "error", json_pack("{s:O, s:O}", "code", col(row, "error_code"),
                                              "message", col(row, "error_message")));
  else
    json_object_set_new(o, "error", json_null());
  char buf[160];
  json_t *links = json_object();
  snprintf(buf, sizeof buf, "/v1/jobs/%s", id);
  json_object_set_new(links, "self", json_string(buf));
  snprintf(buf, sizeof buf, "/v1/jobs/%s:cancel", id);
  json_object_set_new(links, "cancel", json_string(buf));
  snprintf(buf, sizeof buf, "/v1/jobs/%s/log", id);
  json_object_set_new(links, "log", json_string(buf));
  cz_api_job_links(o, row, links);
  if (json_is_string(col(row, "artifact_sha256"))) {
    json_object_set_new(o, "artifact",
                        json_pack("{s:O, s:O, s:O}", "sha256", col(row, "artifact_sha256"),
                                  "bytes", col(row, "artifact_bytes"), "format",
                                  col(row, "artifact_format")));
    snprintf(buf, sizeof buf, "/v1/jobs/%s/artifact", id);
    json_object_set_new(links, "artifact", json_string(buf));
    snprintf(buf, sizeof buf, "/v1/jobs/%s/report", id);
    json_object_set_new(links, "report", json_string(buf));
  } else {
    json_object_set_new(o, "artifact", json_null());
  }
  json_object_set_new(o, "links", links);
  return o;
}

/* The job's webhook and its delivery, without the secret; null when it has none. */
static json_t *webhook_json(cz_api *api, const char *job_id) {
  json_t *w;
  cz_error e = {0};
  if (cz_store_webhook_get(api->store, job_id, &w, &e)) return json_null();
  json_t *o = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:o, s:o}", "url",
                        col(w, "url"), "state", col(w, "state"), "id", col(w, "msg_id"),
                        "event", col(w, "event"), "attempts", col(w, "attempts"),
                        "max_attempts", col(w, "max_attempts"), "last_status",
                        col(w, "last_status"), "last_error", col(w, "last_error"),
                        "next_attempt_at", cz_api_time_json(col(w, "next_attempt_at")),
                        "delivered_at", cz_api_time_json(col(w, "delivered_at")));
  json_decref(w);
  return o ? o : json_null();
}

/* The job as GET shows it. The rendered body is cached under the store generation read
 * before the rows (cz_jobcache.h): a hit skips SQLite and jansson, and any store write since
 * makes it a miss, so the answer is never older than a fresh read. */
static enum MHD_Result reply_job(cz_req *r, unsigned status, const char *id) {
  cz_api *api = r->app;
  uint64_t gen = cz_store_generation(api->store);
  char cached[CZ_JOBCACHE_MAX_BODY];
  size_t n = cz_jobcache_get(api->job_cache, id, gen, cached, sizeof cached);
  if (n) return cz_reply_json_text(r, status, cached, n);
  json_t *row;
  cz_error e = {0};
  if (cz_store_job_get(api->store, id, &row, &e)) return cz_reply_err(r, &e);
  json_t *body = job_json(row);
  json_decref(row);
  json_object_set_new(body, "webhook", webhook_json(api, id));
  if (!api->job_cache) return cz_reply_json(r, status, body);
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  if (!s) return cz_reply_error(r, CZ_E_NO_MEMORY, "out of memory");
  n = strlen(s);
  cz_jobcache_put(api->job_cache, id, gen, s, n);
  enum MHD_Result ret = cz_reply_json_text(r, status, s, n);
  free(s);
  return ret;
}

/* "webhook": {"url": "http(s)://...", "secret": "whsec_..."}, both required, nothing else. */
static bool parse_webhook(const json_t *wh, const char **url, const char **secret,
                          cz_error *err) {
  json_error_t jerr;
  uint8_t key[CZ_WEBHOOK_MAX_KEY];
  size_t key_len;
  if (json_unpack_ex((json_t *)wh, &jerr, JSON_STRICT, "{s:s, s:s}", "url", url, "secret",
                     secret) != 0) {
    cz_err_set(err, CZ_E_INVALID_ARGUMENT,
               "webhook must be {\"url\": \"http(s)://...\", \"secret\": \"whsec_...\"}: %s",
               jerr.text);
    return false;
  }
  bool ok = cz_webhook_url_valid(*url, err) && cz_webhook_secret_decode(*secret, key, &key_len, err);
  memset(key, 0, sizeof key);
  return ok;
}

/* Plan the recipe against the model now, so that a job that cannot run is refused at submit
 * time with the reason rather than failing later in the queue. */
static cz_err_code check_plan(cz_api *api, const cz_recipe *rec, const char *model_id,
                              json_t **plan, cz_error *err) {
  json_t *row;
  cz_err_code rc = cz_store_model_get(api->store, model_id, false, &row, err);
  if (rc == CZ_E_NOT_FOUND)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "model: no model with id %s", model_id);
  if (rc) return rc;
  char path[4096];
  cz_blob_path(api->blobs, json_string_value(col(row, "sha256")), path, sizeof path);
  json_decref(row);
  cz_model *m;
  if ((rc = cz_model_open(path, &m, err))) return rc;
  cz_run *run;
  rc = cz_run_plan(rec, m, NULL, &run, err);
  if (!rc && plan) *plan = cz_run_plan_json(run); /* dry run: the plan is the answer */
  if (!rc) cz_run_free(run);
  cz_model_close(m);
  return rc;
}

/* The job's "calibration": load it (400 when there is no such id) and attach it, so that the
 * plan sees it (types that need an importance matrix refuse to plan without one). */
static cz_err_code attach_calibration(cz_api *api, cz_recipe *rec, const json_t *calib,
                                      cz_imatrix **im, cz_error *err) {
  if (!calib) return CZ_E_OK;
  cz_err_code rc = cz_calib_load(api->store, api->blobs, json_string_value(calib), im, err);
  if (rc == CZ_E_NOT_FOUND)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "calibration: no calibration with id %s",
                      json_string_value(calib));
  if (!rc) cz_recipe_set_imatrix(rec, *im);
  return rc;
}

static enum MHD_Result h_job_create(cz_req *r) {
  cz_api *api = r->app;
  json_error_t jerr;
  json_t *body = json_loadb(r->body ? r->body : "", r->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!body) return cz_reply_error(r, CZ_E_INVALID_RECIPE, "body is not valid JSON: %s", jerr.text);
  cz_error e = {0};
  cz_recipe *rec = NULL;
  static const char *const extra[] = {"model", "calibration", "dry_run", "webhook", NULL};
  const char *model = json_string_value(json_object_get(body, "model"));
  const json_t *calib = json_object_get(body, "calibration"), *dry = json_object_get(body, "dry_run"),
               *wh = json_object_get(body, "webhook");
  const char *wh_url = NULL, *wh_secret = NULL;
  cz_imatrix *im = NULL;
  json_t *plan = NULL;
  enum MHD_Result ret;
  if (!json_is_object(body) || model == NULL) {
    ret = cz_reply_error(r, CZ_E_INVALID_RECIPE, "model is required (the id of an uploaded model)");
  } else if ((calib && !json_is_string(calib)) || (dry && !json_is_boolean(dry))) {
    ret = cz_reply_error(r, CZ_E_INVALID_RECIPE, calib && !json_is_string(calib)
                                                     ? "calibration must be the id of a calibration (cal_...)"
                                                     : "dry_run must be true or false");
  } else if (wh && !parse_webhook(wh, &wh_url, &wh_secret, &e)) {
    ret = cz_reply_err(r, &e);
  } else if (cz_recipe_parse(body, extra, &rec, &e) || attach_calibration(api, rec, calib, &im, &e) ||
             check_plan(api, rec, model, json_is_true(dry) ? &plan : NULL, &e)) {
    ret = cz_reply_err(r, &e);
  } else if (plan) {
    /* dry run: what the job would do and the exact size it would write; nothing queued */
    json_object_set_new(plan, "dry_run", json_true());
    json_object_set_new(plan, "model", json_string(model));
    json_object_set_new(plan, "recipe", cz_recipe_normalized(rec));
    if (calib) json_object_set_new(plan, "calibration", json_incref((json_t *)calib));
    ret = cz_reply_json(r, 200, plan);
  } else {
    json_t *norm = cz_recipe_normalized(rec);
    if (calib) json_object_set_new(norm, "calibration", json_incref((json_t *)calib));
    char *rs = json_dumps(norm, JSON_COMPACT);
    json_decref(norm);
    char id[40];
    new_id("job_", id, sizeof id);
    cz_job_submit sub = {id,     model,     rs, api->max_attempts, now_ms(), NULL, api->max_queued,
                         wh_url, wh_secret, api->webhook_max_attempts};
    if (!rs || cz_store_job_submit(api->store, &sub, &e)) {
      if (!rs) cz_err_set(&e, CZ_E_NO_MEMORY, "out of memory");
      ret = cz_reply_err(r, &e);
    } else {
      cz_log(CZ_LOG_INFO, "job submitted", "job", id, "model", model, NULL);
      snprintf(r->created_id, sizeof r->created_id, "%s", id);
      /* read the job for the answer before waking the worker, so the 202 shows it queued
       * (a worker that claimed it first made the answer say running: a flaky test) */
      ret = reply_job(r, 202, id);
      api->wake(api->wake_cls);
    }
    free(rs);
  }
  cz_recipe_free(rec);
  cz_imatrix_free(im);
  json_decref(body);
  return ret;
}

static enum MHD_Result h_job_list(cz_req *r) {
  cz_api *api = r->app;
  const char *state = cz_req_arg(r, "state"), *model = cz_req_arg(r, "model");
  static const char *const states[] = {"queued", "running", "succeeded", "failed", "canceled", NULL};
  bool ok = state == NULL;
  for (int i = 0; !ok && states[i]; i++) ok = strcmp(states[i], state) == 0;
  if (!ok)
    return cz_reply_error(r, CZ_E_INVALID_ARGUMENT,
                          "state must be queued, running, succeeded, failed or canceled");
  /* the token binds the filters: a next page under other filters would skip or repeat jobs */
  const char *const filters[] = {state, model};
  int size;
  int64_t before, next;
  if (!cz_page_parse(r, &api->page_key, CZ_PAGE_JOBS, filters, 2, &size, &before)) return MHD_YES;
  json_t *rows;
  cz_error e = {0};
  if (cz_store_job_list(api->store, size, before, state, model, &rows, &next, &e))
    return cz_reply_err(r, &e);
  json_t *items = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) json_array_append_new(items, job_json(row));
  json_decref(rows);
  return cz_reply_json(r, 200, cz_page_json(&api->page_key, CZ_PAGE_JOBS, filters, 2, "jobs", items, next));
}

static enum MHD_Result h_job_cancel(cz_req *r) {
  cz_api *api = r->app;
  bool running;
  cz_error e = {0};
  if (cz_store_job_cancel(api->store, r->id, now_ms(), &running, &e)) return cz_reply_err(r, &e);
  if (running) api->wake(api->wake_cls);
  cz_log(CZ_LOG_INFO, "job cancel", "job", r->id, "was_running", running ? "true" : "false", NULL);
  return reply_job(r, running ? 202 : 200, r->id);
}

/* DELETE /v1/jobs/{id}: a finished job, its artifact and report (unless another row names
 * the same bytes), its log and webhook. 409 while queued or running: cancel it first. */
static enum MHD_Result h_job_delete(cz_req *r) {
  cz_api *api = r->app;
  cz_error e = {0};
  if (cz_retention_delete_job(api->store, api->blobs, r->id, NULL, &e)) return cz_reply_err(r, &e);
  cz_log(CZ_LOG_INFO, "job deleted", "job", r->id, NULL);
  return cz_reply_status(r, 204);
}

static const cz_route routes[] = {
    {"GET", "/livez", h_livez, NULL, NULL},
    {"GET", "/readyz", h_readyz, NULL, NULL},
    {"POST", "/v1/models", NULL, cz_api_model_upload_idem, cz_api_model_upload_abort},
    {"GET", "/v1/models", h_model_list, NULL, NULL},
    {"GET", "/v1/models/{id}", h_model_get, NULL, NULL},
    {"DELETE", "/v1/models/{id}", h_model_delete, NULL, NULL},
    {"POST", "/v1/jobs", cz_api_job_create_idem, NULL, NULL},
    {"POST", "/v1/calibrations", NULL, cz_api_calib_upload, cz_api_calib_upload_abort},
    {"GET", "/v1/calibrations", cz_api_calib_list, NULL, NULL},
    {"GET", "/v1/calibrations/{id}", cz_api_calib_get, NULL, NULL},
    {"GET", "/v1/jobs", h_job_list, NULL, NULL},
    {"GET", "/v1/jobs/{id}", cz_api_job_get, NULL, NULL},
    {"DELETE", "/v1/jobs/{id}", h_job_delete, NULL, NULL},
    {"POST", "/v1/jobs/{id}:cancel", h_job_cancel, NULL, NULL},
    {"POST", "/v1/jobs/{id}:retry", cz_api_job_retry, NULL, NULL},
    {"GET", "/v1/jobs/{id}/artifact", cz_api_job_artifact, NULL, NULL},
    {"GET", "/v1/jobs/{id}/report", cz_api_job_report, NULL, NULL},
    {"GET", "/v1/jobs/{id}/log", cz_api_job_log, NULL, NULL},
    {"GET", "/v1/models/{id}/file", cz_api_model_file, NULL, NULL},
    {"GET", "/v1/methods", cz_api_methods, NULL, NULL},
    {"GET", "/v1/openapi.json", cz_api_openapi, NULL, NULL},
    {"GET", "/metrics", cz_api_metrics, NULL, NULL},
    {"GET", "/v1/status", cz_api_status, NULL, NULL},
    {"GET", "/", cz_web_index, NULL, NULL},
    {"GET", "/ui/{id}", cz_web_file_get, NULL, NULL},
};

/* ---- for the handler files (declared in cz_api_service.h) ---- */

enum MHD_Result cz_api_job_create(cz_req *r) { return h_job_create(r); }

enum MHD_Result cz_api_model_upload(cz_req *r, cz_upload_phase phase, const char *data,
                                    size_t len) {
  return h_model_upload(r, phase, data, len);
}

void cz_api_model_upload_abort(cz_req *r) { cz_upload_abort(r); }

enum MHD_Result cz_api_reply_job(cz_req *r, unsigned status, const char *id) {
  return reply_job(r, status, id);
}

enum MHD_Result cz_api_reply_model(cz_req *r, unsigned status, const char *id) {
  cz_api *api = r->app;
  json_t *row;
  cz_error e = {0};
  if (cz_store_model_get(api->store, id, false, &row, &e)) return cz_reply_err(r, &e);
  json_t *body = model_json(row);
  json_decref(row);
  return cz_reply_json(r, status, body);
}

void cz_api_new_id(const char *prefix, char *out, size_t len) { new_id(prefix, out, len); }

int64_t cz_api_now_ms(void) { return now_ms(); }

const cz_route *cz_api_routes(int *n) {
  *n = (int)(sizeof routes / sizeof routes[0]);
  return routes;
}
