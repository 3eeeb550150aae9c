/* cz_upload: streaming of upload bodies into the blob store (see cz_upload.h). */
#include "cz_upload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool cz_upload_valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > CZ_UPLOAD_MAX_NAME) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
  return true;
}

enum MHD_Result cz_upload_begin(cz_req *r, const char *what, const char *default_name) {
  cz_api *api = r->app;
  const char *ct = cz_req_header(r, "Content-Type");
  size_t ctlen = ct ? strcspn(ct, "; \t") : 0;
  if (ct == NULL || ctlen != 24 || strncasecmp(ct, "application/octet-stream", 24) != 0)
    return cz_reply_error(r, CZ_E_UNSUPPORTED_MEDIA_TYPE,
                          "upload %s as the raw body with Content-Type: "
                          "application/octet-stream (curl --data-binary @FILE -H ...)", what);
  const char *name = cz_req_arg(r, "name");
  if (name && !cz_upload_valid_name(name))
    return cz_reply_error(r, CZ_E_INVALID_ARGUMENT,
                          "name: 1 to %d bytes without control characters", CZ_UPLOAD_MAX_NAME);
  const char *cl = cz_req_header(r, "Content-Length");
  if (cl) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(cl, &end, 10);
    if (errno == 0 && *end == 0 && v > api->max_upload_bytes)
      return cz_reply_error(r, CZ_E_TOO_LARGE, "the file is %llu bytes; the limit is %" PRIu64,
                            v, api->max_upload_bytes);
  }
  cz_upload *u = calloc(1, sizeof *u);
  if (!u) return cz_reply_error(r, CZ_E_NO_MEMORY, "out of memory");
  u->limit = api->max_upload_bytes;
  snprintf(u->name, sizeof u->name, "%s", name ? name : default_name);
  cz_error e = {0};
  if (cz_blob_writer_open(api->blobs, &u->w, &e)) {
    free(u);
    return cz_reply_err(r, &e);
  }
  u->writer_open = true;
  r->state = u;
  return MHD_YES;
}

enum MHD_Result cz_upload_chunk(cz_req *r, const char *data, size_t len) {
  cz_upload *u = r->state;
  if (u->failed.code) return MHD_YES;  /* discard the rest of a failed body */
  cz_error e = {0};
  if (len > u->limit - u->w.bytes)
    cz_err_set(&e, CZ_E_TOO_LARGE, "the upload exceeds the limit of %" PRIu64 " bytes", u->limit);
  else if (!cz_blob_writer_write(&u->w, data, len, &e))
    return MHD_YES;
  /* drop the partial file now, answer at the end of the body */
  if (u->writer_open) cz_blob_writer_abort(&u->w);
  u->writer_open = false;
  u->failed = e;
  return MHD_YES;
}

void cz_upload_abort(cz_req *r) {
  cz_upload *u = r->state;
  if (!u) return;
  if (u->writer_open) cz_blob_writer_abort(&u->w);
  free(u);
  r->state = NULL;
}

enum MHD_Result cz_upload_fail(cz_req *r, const cz_error *e) {
  cz_error copy = *e;  /* e may live in the upload */
  cz_upload_abort(r);
  return cz_reply_err(r, &copy);
}

cz_upload *cz_upload_complete(cz_req *r, enum MHD_Result *ret) {
  cz_upload *u = r->state;
  if (!u->failed.code) return u;
  *ret = cz_upload_fail(r, &u->failed);
  return NULL;
}

cz_err_code cz_upload_commit(cz_upload *u, char sha256_hex[65], uint64_t *bytes, cz_error *err) {
  u->writer_open = false;  /* commit closes the writer whatever happens */
  return cz_blob_writer_commit(&u->w, sha256_hex, bytes, err);
}

void cz_upload_unpublish(cz_api *api, const char *sha256_hex) {
  bool used = true;
  cz_error e;
  if (!cz_store_blob_used(api->store, sha256_hex, &used, &e) && !used)
    cz_blob_remove(api->blobs, sha256_hex, &e);
}

void cz_upload_done(cz_req *r) {
  free(r->state);
  r->state = NULL;
}
