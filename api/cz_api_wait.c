/* cz_api_wait: GET /v1/jobs/{id}?wait=DURATION, the long-poll (AIP-151's WaitOperation).
 *
 * Without ?wait the job is answered at once. With it, the answer waits until the job's state
 * differs from the state it had when the request arrived, or until the duration has passed
 * (at most CZ_WAIT_MAX_MS; "30s", "500ms", "1m" or plain seconds "30"; more is clamped), and
 * is then the job as GET shows it. A job that has already finished is answered at once:
 * nothing more will happen to it. Progress alone does not end the wait.
 *
 * No thread waits: the request is parked (cz_req_park: libmicrohttpd suspends the
 * connection) and resumed by the store's job-change notification (cz_store_set_job_listener,
 * wired to cz_http_wake in cz_serve.c: claim, finish, release, cancel) or by the HTTP layer's
 * 250 ms tick at the deadline, so waiting clients are bounded only by the connection limits.
 */
#include <stdlib.h>
#include <string.h>

#include "cz_api_service.h"
#include "cz_http_parse.h"

#define CZ_WAIT_MAX_MS 60000   /* longest wait; well under common proxy idle timeouts */

typedef struct {
  char state[16];          /* the job's state when the request arrived */
  int64_t deadline;        /* cz_http_mono_ms() */
} wait_state;

static bool finished(const char *state) {
  return !strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "canceled");
}

static void wait_done(cz_req *r, bool ok) {
  free(r->svc);
  r->svc = NULL;
}

/* The job's state now into out; replies and returns false when it cannot be read. */
static bool job_state(cz_req *r, char out[16]) {
  cz_api *api = r->app;
  json_t *row;
  cz_error e = {0};
  if (cz_store_job_get(api->store, r->id, &row, &e)) {
    cz_reply_err(r, &e);
    return false;
  }
  snprintf(out, 16, "%s", json_string_value(json_object_get(row, "state")));
  json_decref(row);
  return true;
}

enum MHD_Result cz_api_job_get(cz_req *r) {
  const char *w = cz_req_arg(r, "wait");
  if (!w) return cz_api_reply_job(r, 200, r->id);
  wait_state *ws = r->svc;
  if (!ws) {  /* first call */
    int64_t ms;
    if (!cz_parse_duration_ms(w, CZ_WAIT_MAX_MS, &ms))
      return cz_reply_error(r, CZ_E_INVALID_ARGUMENT,
                            "wait: a duration such as 30s, 500ms, 1m or 30 (seconds); at most "
                            "%d s", CZ_WAIT_MAX_MS / 1000);
    if (!(ws = calloc(1, sizeof *ws))) return cz_reply_error(r, CZ_E_NO_MEMORY, "out of memory");
    r->svc = ws;
    r->svc_done = wait_done;
    ws->deadline = cz_http_mono_ms() + ms;
    if (!job_state(r, ws->state)) return MHD_YES;
    if (finished(ws->state)) return cz_api_reply_job(r, 200, r->id);
  }
  for (;;) {
    uint64_t epoch = cz_http_epoch(r->http);
    char now[16];
    if (!job_state(r, now)) return MHD_YES;
    if (strcmp(now, ws->state) != 0 || cz_http_mono_ms() >= ws->deadline ||
        cz_http_draining(r->http))
      return cz_api_reply_job(r, 200, r->id);
    if (cz_req_park(r, r->id, ws->deadline, epoch)) return MHD_YES;
    /* something changed between the look and the park: look again */
  }
}
