/* cz_metrics: atomic counters and their Prometheus text rendering (see the header). */
#include "cz_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* ---- HTTP requests by method, route and status ---- */

/* Distinct (method, route, status) triples kept; more land in one "other" row. Routes and
 * statuses are few, so this is never reached in practice, but a client cannot grow it. */
#define HTTP_ROWS 256

typedef struct {
  const char *method, *route;  /* static strings */
  unsigned status;
  uint64_t count;
} http_row;

static pthread_mutex_t http_lock = PTHREAD_MUTEX_INITIALIZER;
static http_row http_rows[HTTP_ROWS];
static int n_http_rows;
static uint64_t http_other;

static const char *method_label(const char *m) {
  static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                      "OPTIONS", NULL};
  for (int i = 0; m && known[i]; i++)
    if (strcmp(m, known[i]) == 0) return known[i];
  return "other";
}

void cz_metrics_http_request(const char *method, const char *route, unsigned status) {
  const char *m = method_label(method), *rt = route ? route : "none";
  pthread_mutex_lock(&http_lock);
  int i;
  for (i = 0; i < n_http_rows; i++)
    if (http_rows[i].status == status && http_rows[i].method == m &&
        strcmp(http_rows[i].route, rt) == 0)
      break;
  if (i == n_http_rows && n_http_rows < HTTP_ROWS) {
    http_rows[i] = (http_row){m, rt, status, 0};
    n_http_rows++;
  }
  if (i < n_http_rows) http_rows[i].count++;
  else http_other++;
  pthread_mutex_unlock(&http_lock);
}

/* ---- bytes, uploads, workers ---- */

static _Atomic uint64_t bytes_in, bytes_out;
static atomic_int uploads_in_flight, worker_slots, worker_busy;
static _Atomic uint64_t retention_jobs, retention_models, retention_bytes;
static _Atomic uint64_t webhook_delivered, webhook_retry, webhook_failed;

void cz_metrics_webhook_try(const char *result) {
  atomic_fetch_add(!strcmp(result, "delivered") ? &webhook_delivered
                   : !strcmp(result, "retry")   ? &webhook_retry
                                                : &webhook_failed, 1);
}

void cz_metrics_retention_removed(const char *kind) {
  atomic_fetch_add(strcmp(kind, "job") == 0 ? &retention_jobs : &retention_models, 1);
}
void cz_metrics_retention_reclaimed(uint64_t bytes) { atomic_fetch_add(&retention_bytes, bytes); }

void cz_metrics_bytes_in(uint64_t n) { atomic_fetch_add(&bytes_in, n); }
void cz_metrics_bytes_out(uint64_t n) { atomic_fetch_add(&bytes_out, n); }
void cz_metrics_upload_begin(void) { atomic_fetch_add(&uploads_in_flight, 1); }
void cz_metrics_upload_end(void) { atomic_fetch_sub(&uploads_in_flight, 1); }
void cz_metrics_worker_slots(int n) { atomic_store(&worker_slots, n); }
void cz_metrics_worker_busy(int delta) { atomic_fetch_add(&worker_busy, delta); }
void cz_metrics_workers(int *slots, int *busy, int *uploads) {
  *slots = atomic_load(&worker_slots);
  *busy = atomic_load(&worker_busy);
  *uploads = atomic_load(&uploads_in_flight);
}

/* ---- job durations: one histogram per outcome ---- */

static const double buckets[] = {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
                                 7200, 21600};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])
static const char *const outcomes[] = {"succeeded", "failed", "canceled"};
#define N_OUTCOMES 3

static _Atomic uint64_t dur_bucket[N_OUTCOMES][N_BUCKETS];  /* not cumulative */
static _Atomic uint64_t dur_count[N_OUTCOMES];
static _Atomic uint64_t dur_sum_us[N_OUTCOMES];

void cz_metrics_job_finished(const char *state, double seconds) {
  int o;
  for (o = 0; o < N_OUTCOMES; o++)
    if (state && strcmp(state, outcomes[o]) == 0) break;
  if (o == N_OUTCOMES) return;
  if (seconds < 0) seconds = 0;
  for (size_t b = 0; b < N_BUCKETS; b++)
    if (seconds <= buckets[b]) {
      atomic_fetch_add(&dur_bucket[o][b], 1);
      break;
    }
  atomic_fetch_add(&dur_count[o], 1);
  atomic_fetch_add(&dur_sum_us[o], (uint64_t)(seconds * 1e6));
}

/* ---- rendering ---- */

void cz_metrics_render(FILE *f) {
  fprintf(f, "# HELP compressd_http_requests_total HTTP requests answered, by method, route "
             "pattern and status.\n# TYPE compressd_http_requests_total counter\n");
  pthread_mutex_lock(&http_lock);
  for (int i = 0; i < n_http_rows; i++)
    fprintf(f, "compressd_http_requests_total{method=\"%s\",route=\"%s\",code=\"%u\"} %llu\n",
            http_rows[i].method, http_rows[i].route, http_rows[i].status,
            (unsigned long long)http_rows[i].count);
  if (http_other)
    fprintf(f, "compressd_http_requests_total{method=\"other\",route=\"other\",code=\"other\"} "
               "%llu\n", (unsigned long long)http_other);
  pthread_mutex_unlock(&http_lock);

  fprintf(f, "# HELP compressd_http_request_bytes_total Request body bytes received (uploads "
             "and JSON bodies).\n# TYPE compressd_http_request_bytes_total counter\n"
             "compressd_http_request_bytes_total %llu\n",
          (unsigned long long)atomic_load(&bytes_in));
  fprintf(f, "# HELP compressd_http_response_bytes_total Response body bytes of completed "
             "responses (downloads, JSON).\n# TYPE compressd_http_response_bytes_total counter\n"
             "compressd_http_response_bytes_total %llu\n",
          (unsigned long long)atomic_load(&bytes_out));
  fprintf(f, "# HELP compressd_uploads_in_flight Model uploads being received.\n"
             "# TYPE compressd_uploads_in_flight gauge\ncompressd_uploads_in_flight %d\n",
          atomic_load(&uploads_in_flight));

  fprintf(f, "# HELP compressd_deleted_total Finished jobs and models deleted (DELETE or the "
             "retention sweep).\n# TYPE compressd_deleted_total counter\n"
             "compressd_deleted_total{kind=\"job\"} %llu\ncompressd_deleted_total{kind=\"model\"} %llu\n",
          (unsigned long long)atomic_load(&retention_jobs),
          (unsigned long long)atomic_load(&retention_models));
  fprintf(f, "# HELP compressd_reclaimed_bytes_total Bytes of blob files removed with the last "
             "row that named them.\n# TYPE compressd_reclaimed_bytes_total counter\n"
             "compressd_reclaimed_bytes_total %llu\n",
          (unsigned long long)atomic_load(&retention_bytes));

  fprintf(f, "# HELP compressd_webhook_tries_total Webhook POSTs by outcome: delivered (2xx), "
             "retry (failed, tried again later), failed (failed, no tries left).\n"
             "# TYPE compressd_webhook_tries_total counter\n"
             "compressd_webhook_tries_total{result=\"delivered\"} %llu\n"
             "compressd_webhook_tries_total{result=\"retry\"} %llu\n"
             "compressd_webhook_tries_total{result=\"failed\"} %llu\n",
          (unsigned long long)atomic_load(&webhook_delivered),
          (unsigned long long)atomic_load(&webhook_retry),
          (unsigned long long)atomic_load(&webhook_failed));

  int slots = atomic_load(&worker_slots), busy = atomic_load(&worker_busy);
  fprintf(f, "# HELP compressd_worker_slots Pool threads that run compression tasks.\n"
             "# TYPE compressd_worker_slots gauge\ncompressd_worker_slots %d\n", slots);
  fprintf(f, "# HELP compressd_worker_busy_slots Pool threads running a compression task now.\n"
             "# TYPE compressd_worker_busy_slots gauge\ncompressd_worker_busy_slots %d\n", busy);
  fprintf(f, "# HELP compressd_worker_utilization Busy slots / slots.\n"
             "# TYPE compressd_worker_utilization gauge\ncompressd_worker_utilization %g\n",
          slots > 0 ? (double)busy / slots : 0.0);

  fprintf(f, "# HELP compressd_job_duration_seconds Time from claim to the end of a job "
             "attempt, by outcome.\n# TYPE compressd_job_duration_seconds histogram\n");
  for (int o = 0; o < N_OUTCOMES; o++) {
    uint64_t cum = 0;
    for (size_t b = 0; b < N_BUCKETS; b++) {
      cum += atomic_load(&dur_bucket[o][b]);
      fprintf(f, "compressd_job_duration_seconds_bucket{state=\"%s\",le=\"%g\"} %llu\n",
              outcomes[o], buckets[b], (unsigned long long)cum);
    }
    uint64_t count = atomic_load(&dur_count[o]);
    fprintf(f, "compressd_job_duration_seconds_bucket{state=\"%s\",le=\"+Inf\"} %llu\n",
            outcomes[o], (unsigned long long)count);
    fprintf(f, "compressd_job_duration_seconds_sum{state=\"%s\"} %.6f\n", outcomes[o],
            (double)atomic_load(&dur_sum_us[o]) / 1e6);
    fprintf(f, "compressd_job_duration_seconds_count{state=\"%s\"} %llu\n", outcomes[o],
            (unsigned long long)count);
  }
}
