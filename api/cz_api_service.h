/* cz_api_service: the handlers of the "API people can run in production" features (issue 6),
 * one file per area, listed in cz_api.c's route table:
 *
 *   cz_api_download.c   GET /v1/jobs/{id}/artifact, /v1/jobs/{id}/report, /v1/models/{id}/file
 *                       (Range, ETag, If-None-Match, If-Range, Content-Disposition)
 *   cz_api_methods.c    GET /v1/methods (the method registry with parameter schemas)
 *   cz_api_idem.c       Idempotency-Key on POST /v1/models and POST /v1/jobs
 *   cz_api_wait.c       GET /v1/jobs/{id}[?wait=30s] (long-poll until the state changes)
 *   cz_api_retry.c      POST /v1/jobs/{id}:retry (a new job repeating a failed/canceled one)
 *   cz_api_openapi.c    GET /v1/openapi.json (api/openapi.json, built in); the route listing
 *   cz_api_metrics.c    GET /metrics (Prometheus text format)
 *   cz_api_auth.c       API tokens (Authorization: Bearer), the authorize hook of cz_http
 *   cz_api_status.c     GET /v1/status (the ops view: workers, queue, disk, recent failures)
 *   cz_api_log.c        GET /v1/jobs/{id}/log (the job's event log: JSON with a since cursor,
 *                       or ?format=text as a download)
 *
 * Thread: like every handler, any HTTP thread; they share only the cz_api context.
 */
#ifndef CZ_API_SERVICE_H
#define CZ_API_SERVICE_H

#include <stdio.h>

#include "cz_api.h"
#include "cz_http.h"

/* ---- cz_api_download.c ---- */
enum MHD_Result cz_api_job_artifact(cz_req *r);
enum MHD_Result cz_api_job_report(cz_req *r);
enum MHD_Result cz_api_model_file(cz_req *r);

/* ---- cz_api_methods.c ---- */
enum MHD_Result cz_api_methods(cz_req *r);

/* ---- cz_api_idem.c: the route handlers of POST /v1/jobs and POST /v1/models ---- */
enum MHD_Result cz_api_job_create_idem(cz_req *r);
enum MHD_Result cz_api_model_upload_idem(cz_req *r, cz_upload_phase phase, const char *data,
                                         size_t len);

/* ---- cz_api_wait.c ---- */
enum MHD_Result cz_api_job_get(cz_req *r);

/* ---- cz_api_retry.c ---- */
enum MHD_Result cz_api_job_retry(cz_req *r);
/* Called by cz_api.c's job_json: sets job.retry_of and links.retry_of / links.retry. */
void cz_api_job_links(json_t *job, json_t *row, json_t *links);

/* ---- cz_api_openapi.c ---- */
enum MHD_Result cz_api_openapi(cz_req *r);
/* "METHOD PATTERN" per route of the table, one a line (the hidden `compressd routes`). */
void cz_api_print_routes(FILE *f);

/* ---- cz_api_metrics.c ---- */
enum MHD_Result cz_api_metrics(cz_req *r);

/* ---- cz_api_auth.c ---- */
/* cz_http's authorize hook: true = go on; false = refused (401/403 queued). */
bool cz_api_authorize(cz_req *r);
#define CZ_TOKEN_ID_LEN 20   /* "tok_" + 16 hex digits */
/* A presented token's id, if it has the token format. */
bool cz_token_parse(const char *token, char id[CZ_TOKEN_ID_LEN + 1]);
/* sha256 hex of a token: what the store keeps. */
void cz_token_hash(const char *token, char hex[65]);

/* ---- cz_api_status.c ---- */
enum MHD_Result cz_api_status(cz_req *r);

/* ---- cz_api_log.c ---- */
enum MHD_Result cz_api_job_log(cz_req *r);

/* ---- defined in cz_api.c for the files above ---- */
/* A row's Unix-milliseconds column as RFC 3339 UTC text (cz_time_iso); null if not an
 * integer. New reference. */
json_t *cz_api_time_json(const json_t *ms);
/* The plain handlers (no Idempotency-Key); they set r->created_id on success. */
enum MHD_Result cz_api_job_create(cz_req *r);
enum MHD_Result cz_api_model_upload(cz_req *r, cz_upload_phase phase, const char *data,
                                    size_t len);
void cz_api_model_upload_abort(cz_req *r);
/* Answer with the job or model id as GET would, with this status. */
enum MHD_Result cz_api_reply_job(cz_req *r, unsigned status, const char *id);
enum MHD_Result cz_api_reply_model(cz_req *r, unsigned status, const char *id);
/* "job_" + 24 hex digits; the wall clock in Unix milliseconds. */
void cz_api_new_id(const char *prefix, char *out, size_t len);
int64_t cz_api_now_ms(void);

#endif
