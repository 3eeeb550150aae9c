/* cz_api_calib: POST/GET /v1/calibrations and the loading of a job's calibration (see
 * cz_api_calib.h). The upload streams into a blob writer exactly like POST /v1/models: the
 * body goes to a temporary file, which is validated as an importance matrix once complete and
 * only then published and recorded. */
#include "cz_api_calib.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cz_api.h"
#include "cz_api_service.h"
#include "cz_log.h"

#define MAX_NAME_LEN 255       /* a calibration's display name, in bytes (as for models) */

/* ---- helpers (the conventions of cz_api.c) ---- */

static json_t *col(json_t *row, const char *k) { return json_object_get(row, k); }

static json_t *time_json(json_t *ms) {
  if (!json_is_integer(ms)) return json_null();
  int64_t v = json_integer_value(ms);
  time_t s = (time_t)(v / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[96];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(v % 1000));
  return json_string(buf);
}

static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_NAME_LEN) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
  return true;
}

static json_t *calib_json(json_t *row) {
  json_t *ds = json_loads(json_string_value(col(row, "datasets")), 0, NULL);
  return json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:o, s:o}", "id", col(row, "id"),
                   "name", col(row, "name"), "sha256", col(row, "sha256"), "bytes",
                   col(row, "bytes"), "format", col(row, "format"), "entries",
                   col(row, "n_entries"), "chunk_count", col(row, "chunk_count"), "chunk_size",
                   col(row, "chunk_size"), "datasets", ds ? ds : json_array(), "created_at",
                   time_json(col(row, "created_at")));
}

/* ---- loading ---- */

cz_err_code cz_calib_load(cz_store *store, cz_blob_store *blobs, const char *id,
                          cz_imatrix **out, cz_error *err) {
  json_t *row;
  cz_err_code rc = cz_store_calibration_get(store, id, &row, err);
  if (rc) return rc;
  char path[4096];
  cz_blob_path(blobs, json_string_value(col(row, "sha256")), path, sizeof path);
  if (!(rc = cz_imatrix_open(path, out, err)))
    cz_imatrix_set_label(*out, json_string_value(col(row, "name")));
  json_decref(row);
  return rc;
}

/* ---- upload ---- */

typedef struct {
  cz_blob_writer w;
  bool writer_open;
  uint64_t limit;
  char name[MAX_NAME_LEN + 1];
  cz_error failed;   /* a mid-body failure, answered at the end of the body */
} calib_upload;

void cz_api_calib_upload_abort(cz_req *r) {
  calib_upload *u = r->state;
  if (!u) return;
  if (u->writer_open) cz_blob_writer_abort(&u->w);
  free(u);
  r->state = NULL;
}

static enum MHD_Result upload_fail(cz_req *r, const cz_error *e) {
  cz_api_calib_upload_abort(r);
  return cz_reply_err(r, e);
}

static enum MHD_Result upload_begin(cz_req *r) {
  cz_api *api = r->app;
  const char *ct = cz_req_header(r, "Content-Type");
  size_t ctlen = ct ? strcspn(ct, "; \t") : 0;
  if (ct == NULL || ctlen != 24 || strncasecmp(ct, "application/octet-stream", 24) != 0)
    return cz_reply_error(r, CZ_E_UNSUPPORTED_MEDIA_TYPE,
                          "upload the importance matrix as the raw body with Content-Type: "
                          "application/octet-stream (curl --data-binary @FILE -H ...)");
  const char *name = cz_req_arg(r, "name");
  if (name && !valid_name(name))
    return cz_reply_error(r, CZ_E_INVALID_ARGUMENT,
                          "name: 1 to %d bytes without control characters", MAX_NAME_LEN);
  const char *cl = cz_req_header(r, "Content-Length");
  if (cl) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(cl, &end, 10);
    if (errno == 0 && *end == 0 && v > api->max_upload_bytes)
      return cz_reply_error(r, CZ_E_TOO_LARGE, "the file is %llu bytes; the limit is %" PRIu64,
                            v, api->max_upload_bytes);
  }
  calib_upload *u = calloc(1, sizeof *u);
  if (!u) return cz_reply_error(r, CZ_E_NO_MEMORY, "out of memory");
  u->limit = api->max_upload_bytes;
  snprintf(u->name, sizeof u->name, "%s", name ? name : "imatrix");
  cz_error e = {0};
  if (cz_blob_writer_open(api->blobs, &u->w, &e)) {
    free(u);
    return cz_reply_err(r, &e);
  }
  u->writer_open = true;
  r->state = u;
  return MHD_YES;
}

static enum MHD_Result upload_end(cz_req *r) {
  cz_api *api = r->app;
  calib_upload *u = r->state;
  cz_error e = {0};
  if (u->failed.code) {
    e = u->failed;
    return upload_fail(r, &e);
  }
  /* validate the complete file before it becomes a blob: a rejected upload leaves nothing */
  cz_imatrix *im = NULL;
  if (cz_imatrix_open(u->w.tmp_path, &im, &e)) return upload_fail(r, &e);
  json_t *summary = cz_imatrix_summary(im);
  char *datasets = json_dumps(json_object_get(summary, "datasets"), JSON_COMPACT);
  const char *format = cz_imatrix_format_name(cz_imatrix_get_format(im));
  uint64_t n_entries = cz_imatrix_n_entries(im);
  uint32_t chunk_count = cz_imatrix_chunk_count(im), chunk_size = cz_imatrix_chunk_size(im);
  cz_imatrix_free(im);
  json_decref(summary);
  if (!datasets) {
    cz_err_set(&e, CZ_E_NO_MEMORY, "out of memory");
    return upload_fail(r, &e);
  }
  char sha[65];
  uint64_t bytes;
  u->writer_open = false;  /* commit closes the writer whatever happens */
  if (cz_blob_writer_commit(&u->w, sha, &bytes, &e)) {
    free(datasets);
    return upload_fail(r, &e);
  }
  char id[40];
  cz_api_new_id("cal_", id, sizeof id);
  cz_calibration_row row = {id,          u->name,    sha,      format,         bytes, n_entries,
                            chunk_count, chunk_size, datasets, cz_api_now_ms()};
  cz_err_code rc = cz_store_calibration_insert(api->store, &row, &e);
  free(datasets);
  free(u);
  r->state = NULL;
  if (rc) {
    bool used = true;
    cz_error e2;
    if (!cz_store_blob_used(api->store, sha, &used, &e2) && !used) cz_blob_remove(api->blobs, sha, &e2);
    return cz_reply_err(r, &e);
  }
  cz_log(CZ_LOG_INFO, "calibration uploaded", "calibration", id, "sha256", sha, "bytes",
         CZ_LOG_UINT(bytes), "format", format, NULL);
  json_t *out;
  if (cz_store_calibration_get(api->store, id, &out, &e)) return cz_reply_err(r, &e);
  json_t *body = calib_json(out);
  json_decref(out);
  return cz_reply_json(r, 201, body);
}

enum MHD_Result cz_api_calib_upload(cz_req *r, cz_upload_phase phase, const char *data,
                                    size_t len) {
  calib_upload *u = r->state;
  cz_error e = {0};
  switch (phase) {
    case CZ_UPLOAD_BEGIN:
      return upload_begin(r);
    case CZ_UPLOAD_CHUNK:
      if (u->failed.code) return MHD_YES;  /* discard the rest of a failed body */
      if (len > u->limit - u->w.bytes)
        cz_err_set(&e, CZ_E_TOO_LARGE, "the upload exceeds the limit of %" PRIu64 " bytes",
                   u->limit);
      else if (!cz_blob_writer_write(&u->w, data, len, &e))
        return MHD_YES;
      /* drop the partial file now, answer at the end of the body */
      if (u->writer_open) cz_blob_writer_abort(&u->w);
      u->writer_open = false;
      u->failed = e;
      return MHD_YES;
    case CZ_UPLOAD_END:
      return upload_end(r);
  }
  return MHD_NO;
}

/* ---- reading ---- */

enum MHD_Result cz_api_calib_list(cz_req *r) {
  cz_api *api = r->app;
  int size;
  int64_t before, next;
  if (!cz_page_parse(r, &api->page_key, CZ_PAGE_CALIBRATIONS, NULL, 0, &size, &before))
    return MHD_YES;
  json_t *rows;
  cz_error e = {0};
  if (cz_store_calibration_list(api->store, size, before, &rows, &next, &e))
    return cz_reply_err(r, &e);
  json_t *items = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) json_array_append_new(items, calib_json(row));
  json_decref(rows);
  return cz_reply_json(r, 200, cz_page_json(&api->page_key, CZ_PAGE_CALIBRATIONS, NULL, 0,
                                             "calibrations", items, next));
}

enum MHD_Result cz_api_calib_get(cz_req *r) {
  cz_api *api = r->app;
  json_t *row;
  cz_error e = {0};
  if (cz_store_calibration_get(api->store, r->id, &row, &e)) return cz_reply_err(r, &e);
  json_t *body = calib_json(row);
  json_decref(row);
  /* the weights it covers, from the file itself */
  cz_imatrix *im = NULL;
  if (cz_calib_load(api->store, api->blobs, r->id, &im, &e)) {
    json_decref(body);
    return cz_reply_err(r, &e);
  }
  json_t *names = json_array();
  for (size_t i = 0; i < cz_imatrix_n_entries(im); i++)
    json_array_append_new(names, json_string(cz_imatrix_entry_name(im, i)));
  json_object_set_new(body, "tensors", names);
  cz_imatrix_free(im);
  return cz_reply_json(r, 200, body);
}
