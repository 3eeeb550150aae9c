/* cz_api_calib: calibrations, the importance matrices of weighted quantization.
 *
 *   POST /v1/calibrations[?name=N]  the file as the raw body (application/octet-stream), like
 *                                   POST /v1/models: llama.cpp's imatrix GGUF or legacy .dat,
 *                                   validated completely before it becomes a blob (422 with the
 *                                   reason otherwise); 201 with the calibration
 *   GET /v1/calibrations            newest first, paged like models
 *   GET /v1/calibrations/{id}       one, with the names of the weights it covers
 *
 * A job names one with "calibration": ID (checked at submit: 400 when there is no such id);
 * the worker loads it with cz_calib_load and attaches it to the recipe.
 *
 * Thread: handlers on any HTTP thread; cz_calib_load on any thread.
 */
#ifndef CZ_API_CALIB_H
#define CZ_API_CALIB_H

#include "cz_blob.h"
#include "cz_http.h"
#include "cz_imatrix.h"
#include "cz_store.h"

enum MHD_Result cz_api_calib_upload(cz_req *r, cz_upload_phase phase, const char *data,
                                    size_t len);
void cz_api_calib_upload_abort(cz_req *r);
enum MHD_Result cz_api_calib_list(cz_req *r);
enum MHD_Result cz_api_calib_get(cz_req *r);

/* Open calibration id's file (validated again: the blob is read like any input). NOT_FOUND
 * when there is no such calibration. The matrix's label (quantize.imatrix.file of outputs)
 * is the calibration's name. */
cz_err_code cz_calib_load(cz_store *store, cz_blob_store *blobs, const char *id,
                          cz_imatrix **out, cz_error *err);

#endif
