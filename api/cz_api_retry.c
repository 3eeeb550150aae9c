/* cz_api_retry: POST /v1/jobs/{id}:retry.
 *
 * A failed or canceled job is run again as a new job (202, a new id) with the same model and
 * the same normalized recipe; the new job's "retry_of" names the original, which keeps its
 * state, error and attempts. That is the long-running-operation model of api-conventions.md
 * 3.1 (AIP-151): an operation is the record of one execution and is never reset, so a retry
 * is a new operation, and the history of what failed stays readable. Any other state -> 409;
 * a job whose model was deleted since -> 409; a full queue -> 503 queue_full.
 */
#include <stdio.h>
#include <string.h>

#include "cz_api_service.h"
#include "cz_log.h"

enum MHD_Result cz_api_job_retry(cz_req *r) {
  cz_api *api = r->app;
  char id[40];
  cz_api_new_id("job_", id, sizeof id);
  cz_error e = {0};
  if (cz_store_job_retry(api->store, r->id, id, api->max_attempts, api->max_queued,
                         cz_api_now_ms(), &e))
    return cz_reply_err(r, &e);
  cz_log(CZ_LOG_INFO, "job submitted", "job", id, "retry_of", r->id, NULL);
  snprintf(r->created_id, sizeof r->created_id, "%s", id);
  enum MHD_Result ret = cz_api_reply_job(r, 202, id);
  api->wake(api->wake_cls);  /* after the answer was read: it shows the job queued */
  return ret;
}

void cz_api_job_links(json_t *job, json_t *row, json_t *links) {
  const char *id = json_string_value(json_object_get(row, "id"));
  const char *state = json_string_value(json_object_get(row, "state"));
  json_t *orig = json_object_get(row, "retry_of");
  char buf[160];
  json_object_set_new(job, "retry_of", json_is_string(orig) ? json_incref(orig) : json_null());
  if (json_is_string(orig)) {
    snprintf(buf, sizeof buf, "/v1/jobs/%s", json_string_value(orig));
    json_object_set_new(links, "retry_of", json_string(buf));
  }
  if (id && state && (strcmp(state, "failed") == 0 || strcmp(state, "canceled") == 0)) {
    snprintf(buf, sizeof buf, "/v1/jobs/%s:retry", id);
    json_object_set_new(links, "retry", json_string(buf));
  }
}
