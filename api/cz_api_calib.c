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
#include "cz_upload.h"


/* ---- helpers (the conventions of cz_api.c) ---- */

static json_t *col(json_t *row, const char *k) { return json_object_get(row, k); }


static json_t *calib_json(json_t *row) {
  json_t *ds = json_loads(json_string_value(col(row, "datasets")), 0, NULL);
  return json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:o, s:o}", "id", col(row, "id"),
                   "name", col(row, "name"), "sha256", col(row, "sha256"), "bytes",
                   col(row, "bytes"), "format", col(row, "format"), "entries",
                   col(row, "n_entries"), "chunk_count", col(row, "chunk_count"), "chunk_size",
                   col(row, "chunk_size"), "datasets", ds ? ds : json_array(), "created_at",
                   cz_api_time_json(col(row, "created_at")));
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

void cz_api_calib_upload_abort(cz_req *r) { cz_upload_abort(r); }

static enum MHD_Result upload_end(cz_req *r) {
  cz_api *api = r->app;
  enum MHD_Result ret;
  cz_upload *u = cz_upload_complete(r, &ret);
  if (!u) return ret;
  cz_error e = {0};
  /* validate the complete file before it becomes a blob: a rejected upload leaves nothing */
  cz_imatrix *im = NULL;
  if (cz_imatrix_open(u->w.tmp_path, &im, &e)) return cz_upload_fail(r, &e);
  json_t *summary = cz_imatrix_summary(im);
  char *datasets = json_dumps(json_object_get(summary, "datasets"), JSON_COMPACT);
  const char *format = cz_imatrix_format_name(cz_imatrix_get_format(im));
  uint64_t n_entries = cz_imatrix_n_entries(im);
  uint32_t chunk_count = cz_imatrix_chunk_count(im), chunk_size = cz_imatrix_chunk_size(im);
  cz_imatrix_free(im);
  json_decref(summary);
  if (!datasets) {
    cz_err_set(&e, CZ_E_NO_MEMORY, "out of memory");
    return cz_upload_fail(r, &e);
  }
  char sha[65];
  uint64_t bytes;
  if (cz_upload_commit(u, sha, &bytes, &e)) {
    free(datasets);
    return cz_upload_fail(r, &e);
  }
  char id[40];
  cz_api_new_id("cal_", id, sizeof id);
  cz_calibration_row row = {id,          u->name,    sha,      format,         bytes, n_entries,
                            chunk_count, chunk_size, datasets, cz_api_now_ms()};
  cz_err_code rc = cz_store_calibration_insert(api->store, &row, &e);
  free(datasets);
  cz_upload_done(r);
  if (rc) {
    cz_upload_unpublish(api, sha);
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
  switch (phase) {
    case CZ_UPLOAD_BEGIN:
      return cz_upload_begin(r, "the importance matrix", "imatrix");
    case CZ_UPLOAD_CHUNK:
      return cz_upload_chunk(r, data, len);
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
