/* cz_metrics: the process's counters for GET /metrics (Prometheus text format 0.0.4).
 *
 * The modules that see an event count it here (HTTP requests and bytes in cz_http, uploads
 * in flight, job durations and busy pool threads in cz_worker); cz_metrics_render writes the
 * families, and the /metrics handler adds what the store knows (jobs by state, queue depth).
 * Family names start with compressd_; units are seconds and bytes; counters end in _total.
 *
 * Thread: every function may be called from any thread; counters are atomics, the table of
 * HTTP request counts is guarded by a mutex (one short lookup per request).
 */
#ifndef CZ_METRICS_H
#define CZ_METRICS_H

#include <stdint.h>
#include <stdio.h>

/* An answered request: method (anything but the usual seven counts as "other"), the route
 * pattern that matched (a static string; NULL: no route) and the status. */
void cz_metrics_http_request(const char *method, const char *route, unsigned status);
/* Request body bytes received; response body bytes sent (counted when a response
 * completes). */
void cz_metrics_bytes_in(uint64_t n);
void cz_metrics_bytes_out(uint64_t n);
/* An upload started streaming / ended (stored, refused or abandoned). */
void cz_metrics_upload_begin(void);
void cz_metrics_upload_end(void);
/* A job attempt ended in state ("succeeded", "failed", "canceled") after seconds. */
void cz_metrics_job_finished(const char *state, double seconds);
/* Threads of the pool that run compression tasks, and how many run one now (+1 / -1). */
void cz_metrics_worker_slots(int n);
void cz_metrics_worker_busy(int delta);

/* Retention (cz_retention.c) removed a "job" or a "model"; it removed blob files of bytes. */
void cz_metrics_retention_removed(const char *kind);
void cz_metrics_retention_reclaimed(uint64_t bytes);

/* One webhook try (cz_webhook.c): delivered (2xx), or failed with tries left ("retry") or
 * without ("failed"). */
void cz_metrics_webhook_try(const char *result);

/* The families above in text format, written to f. */
void cz_metrics_render(FILE *f);
/* The current worker slots, busy slots and uploads in flight (GET /v1/status). */
void cz_metrics_workers(int *slots, int *busy, int *uploads);

#endif
