/* cz_api_status: GET /v1/status, the ops view in one JSON answer: version, workers busy and
 * idle, jobs by state and the queue, free disk where the blobs live, and the recent failures
 * grouped by error code. The counters are the same as GET /metrics (cz_metrics, the store);
 * this is the shape a dashboard or a person with curl reads without a Prometheus parser. */
#include <stdio.h>

#include "cz_api_service.h"
#include "cz_log.h"
#include "cz_metrics.h"

enum MHD_Result cz_api_status(cz_req *r) {
  cz_api *api = r->app;
  int64_t counts[5];
  uint64_t disk_free, disk_total;
  json_t *failures;
  cz_error e = {0};
  if (cz_store_job_counts(api->store, counts, &e) ||
      cz_blob_store_space(api->blobs, &disk_free, &disk_total, &e) ||
      cz_store_recent_failures(api->store, &failures, &e))
    return cz_reply_err(r, &e);
  size_t i;
  json_t *f;
  json_array_foreach(failures, i, f) {
    json_t *at = json_object_get(f, "last_at");
    char when[CZ_TIME_ISO_LEN];
    if (json_is_integer(at)) {
      cz_time_iso(json_integer_value(at), when);
      json_object_set_new(f, "last_at", json_string(when));
    }
  }
  int slots, busy, uploads;
  cz_metrics_workers(&slots, &busy, &uploads);
  json_t *body = json_pack(
      "{s:s, s:b, s:{s:i, s:i, s:i}, s:i, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:i}, "
      "s:{s:I, s:I}, s:{s:i, s:o}}",
      "version", CZ_VERSION, "ready", atomic_load(&api->ready) != 0, "workers", "slots", slots,
      "busy", busy, "idle", slots > busy ? slots - busy : 0, "uploads_in_flight", uploads, "jobs",
      "queued", (json_int_t)counts[0], "running", (json_int_t)counts[1], "succeeded",
      (json_int_t)counts[2], "failed", (json_int_t)counts[3], "canceled", (json_int_t)counts[4],
      "queue", "depth", (json_int_t)counts[0], "limit", api->max_queued, "disk", "free_bytes",
      (json_int_t)disk_free, "total_bytes", (json_int_t)disk_total, "recent_failures",
      "window", CZ_RECENT_FAILURES, "by_code", failures);
  return cz_reply_json(r, 200, body);
}
