/* cz_api_metrics: GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * Jobs by state and the queue depth come from the store at each scrape (the truth, also
 * across restarts); everything else from the process's counters (daemon/cz_metrics.c):
 * job duration histograms, HTTP requests by route and status, bytes in and out, uploads in
 * flight and worker utilisation (busy pool threads / pool threads). Counters start at zero
 * when the daemon starts, as Prometheus expects.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cz_api_service.h"
#include "cz_metrics.h"

enum MHD_Result cz_api_metrics(cz_req *r) {
  cz_api *api = r->app;
  int64_t counts[5];
  cz_error e = {0};
  if (cz_store_job_counts(api->store, counts, &e)) return cz_reply_err(r, &e);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return cz_reply_error(r, CZ_E_NO_MEMORY, "out of memory");
  static const char *const states[] = {"queued", "running", "succeeded", "failed", "canceled"};
  fprintf(f, "# HELP compressd_jobs Jobs in the store by state.\n# TYPE compressd_jobs gauge\n");
  for (int i = 0; i < 5; i++)
    fprintf(f, "compressd_jobs{state=\"%s\"} %lld\n", states[i], (long long)counts[i]);
  fprintf(f, "# HELP compressd_queue_depth Jobs waiting for a worker.\n"
             "# TYPE compressd_queue_depth gauge\ncompressd_queue_depth %lld\n",
          (long long)counts[0]);
  fprintf(f, "# HELP compressd_queue_limit Queued jobs accepted at most (0: no limit).\n"
             "# TYPE compressd_queue_limit gauge\ncompressd_queue_limit %d\n", api->max_queued);
  cz_metrics_render(f);
  fprintf(f, "# HELP compressd_build_info The running version.\n"
             "# TYPE compressd_build_info gauge\ncompressd_build_info{version=\"%s\"} 1\n",
          CZ_VERSION);
  if (fclose(f) != 0 || !buf) {
    free(buf);
    return cz_reply_error(r, CZ_E_NO_MEMORY, "out of memory");
  }
  r->resp_bytes = len;
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(buf);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  return cz_reply_mhd(r, 200, resp);
}
