/* cz_api_service: the handlers of the "API people can run in production" features (issue 6),
 * one file per area, listed in cz_api.c's route table:
 *
 *   cz_api_download.c   GET /v1/jobs/{id}/artifact, /v1/jobs/{id}/report, /v1/models/{id}/file
 *                       (Range, ETag, If-None-Match, If-Range, Content-Disposition)
 *   cz_api_methods.c    GET /v1/methods (the method registry with parameter schemas)
 *
 * Thread: like every handler, any HTTP thread; they share only the cz_api context.
 */
#ifndef CZ_API_SERVICE_H
#define CZ_API_SERVICE_H

#include "cz_api.h"
#include "cz_http.h"

/* ---- cz_api_download.c ---- */
enum MHD_Result cz_api_job_artifact(cz_req *r);
enum MHD_Result cz_api_job_report(cz_req *r);
enum MHD_Result cz_api_model_file(cz_req *r);

/* ---- cz_api_methods.c ---- */
enum MHD_Result cz_api_methods(cz_req *r);

#endif
