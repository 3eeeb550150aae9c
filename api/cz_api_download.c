/* cz_api_download: artifacts, reports and uploaded models as downloads.
 *
 * Blobs are immutable and named by their sha256, so the sha256 is a strong ETag and a
 * resumed download (Range + If-Range) can never splice two different files. The file name
 * offered in Content-Disposition is built from the model's name (sanitized: never a path)
 * and, for results, the recipe's types: tiny-llama-q8_0.gguf, tiny-llama-q8_0.report.json.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_api_service.h"
#include "cz_http_parse.h"

#define NAME_MAX_BYTES 120   /* of the offered file name, extension included */

static json_t *col(json_t *row, const char *k) { return json_object_get(row, k); }

/* Open a published blob; replies with an error and returns -1 when it cannot be read. */
static int open_blob(cz_req *r, const char *sha, uint64_t *size) {
  cz_api *api = r->app;
  char path[4096];
  cz_blob_path(api->blobs, sha, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) close(fd);
    cz_reply_error(r, CZ_E_IO, "the stored file of %s cannot be read", r->id);
    return -1;
  }
  *size = (uint64_t)st.st_size;
  return fd;
}

static const char *ext_of(const char *format) {
  return format && strcmp(format, "gguf") == 0 ? "gguf" : "safetensors";
}

/* "tiny-llama" or, if the model is gone, the job id; then "-TYPE" per step of the recipe. */
static void result_base_name(cz_api *api, json_t *job, char *out, size_t cap) {
  char raw[512] = "";
  size_t n = 0;
  json_t *model;
  cz_error e = {0};
  const char *mid = json_string_value(col(job, "model_id"));
  if (mid && !cz_store_model_get(api->store, mid, false, &model, &e)) {
    n = (size_t)snprintf(raw, sizeof raw, "%s", json_string_value(col(model, "name")));
    json_decref(model);
    /* "llama.gguf" -> "llama": the result gets its own extension */
    static const char *const exts[] = {".gguf", ".safetensors", NULL};
    for (int k = 0; exts[k] && n < sizeof raw; k++) {
      size_t el = strlen(exts[k]);
      if (n > el && strcmp(raw + n - el, exts[k]) == 0) raw[n -= el] = 0;
    }
  } else {
    n = (size_t)snprintf(raw, sizeof raw, "%s", json_string_value(col(job, "id")));
  }
  json_t *recipe = json_loads(json_string_value(col(job, "recipe")), 0, NULL);
  size_t i;
  json_t *step;
  json_array_foreach(json_object_get(recipe, "steps"), i, step) {
    const char *t = json_string_value(json_object_get(step, "type"));
    if (t && n < sizeof raw) n += (size_t)snprintf(raw + n, sizeof raw - n, "-%s", t);
  }
  json_decref(recipe);
  cz_filename_sanitize(raw, "result", out, cap);
}

/* A finished job's blob in column `column`; 409 while the job has no result. */
static enum MHD_Result job_download(cz_req *r, bool report) {
  cz_api *api = r->app;
  json_t *row;
  cz_error e = {0};
  if (cz_store_job_get(api->store, r->id, &row, &e)) return cz_reply_err(r, &e);
  const char *sha = json_string_value(col(row, report ? "report_sha256" : "artifact_sha256"));
  if (!sha) {
    enum MHD_Result ret =
        cz_reply_error(r, CZ_E_CONFLICT, "job %s has no result yet (state %s)", r->id,
                       json_string_value(col(row, "state")));
    json_decref(row);
    return ret;
  }
  uint64_t size;
  int fd = open_blob(r, sha, &size);
  if (fd < 0) {
    json_decref(row);
    return MHD_YES;
  }
  char etag[80], base[NAME_MAX_BYTES], name[NAME_MAX_BYTES + 16];
  snprintf(etag, sizeof etag, "\"%s\"", sha);
  /* leave room for the extension so that a long model name cannot push it out */
  result_base_name(api, row, base, sizeof base - 16);
  if (report)
    snprintf(name, sizeof name, "%s.report.json", base);
  else
    snprintf(name, sizeof name, "%s.%s", base,
             ext_of(json_string_value(col(row, "artifact_format"))));
  json_decref(row);
  return cz_reply_file(r, fd, size, report ? "application/json" : "application/octet-stream",
                       etag, name);
}

enum MHD_Result cz_api_job_artifact(cz_req *r) { return job_download(r, false); }

enum MHD_Result cz_api_job_report(cz_req *r) { return job_download(r, true); }

enum MHD_Result cz_api_model_file(cz_req *r) {
  cz_api *api = r->app;
  json_t *row;
  cz_error e = {0};
  if (cz_store_model_get(api->store, r->id, false, &row, &e)) return cz_reply_err(r, &e);
  char sha[65];
  snprintf(sha, sizeof sha, "%s", json_string_value(col(row, "sha256")));
  const char *ext = ext_of(json_string_value(col(row, "format")));
  char base[NAME_MAX_BYTES], name[NAME_MAX_BYTES + 16];
  cz_filename_sanitize(json_string_value(col(row, "name")), "model", base, sizeof base - 16);
  /* "llama.gguf" stays llama.gguf, not llama.gguf.gguf */
  size_t bl = strlen(base), el = strlen(ext);
  if (bl > el + 1 && base[bl - el - 1] == '.' && strcmp(base + bl - el, ext) == 0)
    base[bl - el - 1] = 0;
  snprintf(name, sizeof name, "%s.%s", base, ext);
  json_decref(row);
  uint64_t size;
  int fd = open_blob(r, sha, &size);
  if (fd < 0) return MHD_YES;
  char etag[80];
  snprintf(etag, sizeof etag, "\"%s\"", sha);
  return cz_reply_file(r, fd, size, "application/octet-stream", etag, name);
}
