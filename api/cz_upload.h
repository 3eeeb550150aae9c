/* cz_upload: a raw request body streamed into the blob store, shared by the upload routes.
 *
 * POST /v1/models and POST /v1/calibrations take a file as the raw body. Both stream it into
 * a blob writer (a temporary file in the data directory), refuse what is too large as it
 * arrives, validate the complete file and only then publish it as a blob and record its row,
 * so that a refused or cut upload leaves nothing behind. This module is the part they share;
 * each route keeps its own validation and row.
 *
 * Ownership: cz_upload_begin puts a heap cz_upload in r->state; it belongs to the request
 * until cz_upload_done (after the row is recorded) or cz_upload_fail / cz_upload_abort, each
 * of which frees it and sets r->state to NULL. Thread: the request's MHD thread.
 */
#ifndef CZ_UPLOAD_H
#define CZ_UPLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "cz_api_service.h"
#include "cz_blob.h"
#include "cz_http.h"

#define CZ_UPLOAD_MAX_NAME 255  /* a model's or calibration's display name, in bytes */

typedef struct {
  cz_blob_writer w;
  bool writer_open;
  uint64_t limit;                      /* the api's max_upload_bytes */
  char name[CZ_UPLOAD_MAX_NAME + 1];   /* ?name=, or the route's default */
  cz_error failed;  /* a mid-body failure: answered at the end of the body, since
                       libmicrohttpd cannot send a response while the body still arrives */
} cz_upload;

/* 1 to CZ_UPLOAD_MAX_NAME bytes without control characters. */
bool cz_upload_valid_name(const char *s);

/* CZ_UPLOAD_BEGIN: checks Content-Type (application/octet-stream), ?name= and a declared
 * Content-Length against the limit, then opens the writer. what names the body in the 415
 * message ("the file"); default_name is used without ?name=. On refusal it replies. */
enum MHD_Result cz_upload_begin(cz_req *r, const char *what, const char *default_name);

/* CZ_UPLOAD_CHUNK: appends data; past the limit or on a write error the partial file is
 * dropped at once and the error kept for the end of the body. */
enum MHD_Result cz_upload_chunk(cz_req *r, const char *data, size_t len);

/* CZ_UPLOAD_END, first: the upload when its body arrived whole and was written; otherwise
 * NULL after replying with the kept error (*ret is what the handler returns). */
cz_upload *cz_upload_complete(cz_req *r, enum MHD_Result *ret);

/* Publish the validated temporary file as a blob (the writer is closed whatever happens). */
cz_err_code cz_upload_commit(cz_upload *u, char sha256_hex[65], uint64_t *bytes, cz_error *err);

/* The row could not be recorded after cz_upload_commit: remove the blob unless another row
 * names it (the same file uploaded twice shares one blob). */
void cz_upload_unpublish(cz_api *api, const char *sha256_hex);

/* The row is recorded: free the upload. */
void cz_upload_done(cz_req *r);

/* Drop the upload (partial file included) and reply with e. */
enum MHD_Result cz_upload_fail(cz_req *r, const cz_error *e);

/* The route's abort callback (client gone, deadline): drop everything, reply nothing. */
void cz_upload_abort(cz_req *r);

#endif
