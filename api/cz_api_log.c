/* cz_api_log: GET /v1/jobs/{id}/log, the job's event log (daemon/cz_store.h, migration 0013).
 *
 * JSON by default, for followers: lines after the `since` cursor (a line's seq), oldest
 * first, with next_since to pass back and done once the job has finished and nothing is
 * left. ?format=text is the same lines as plain text with Content-Disposition, for saving. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_api_service.h"
#include "cz_log.h"

#define LOG_PAGE_DEFAULT 500   /* lines per answer unless ?limit= says otherwise */

/* A decimal in [0, max] from a query argument, or false. */
static bool parse_count(const char *s, int64_t max, int64_t *out) {
  if (!s || !*s || strlen(s) > 19) return false;
  for (const char *p = s; *p; p++)
    if (*p < '0' || *p > '9') return false;
  errno = 0;
  long long v = strtoll(s, NULL, 10);
  if (errno || v < 0 || v > max) return false;
  *out = v;
  return true;
}

static bool job_finished(const char *state) {
  return state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") ||
                   !strcmp(state, "canceled"));
}

static enum MHD_Result reply_text(cz_req *r, json_t *log) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return cz_reply_error(r, CZ_E_NO_MEMORY, "out of memory");
  size_t i;
  json_t *l;
  json_array_foreach(json_object_get(log, "lines"), i, l) {
    char when[CZ_TIME_ISO_LEN];
    cz_time_iso(json_integer_value(json_object_get(l, "at")), when);
    fprintf(f, "%s %-5s %s: %s\n", when, json_string_value(json_object_get(l, "level")),
            json_string_value(json_object_get(l, "event")),
            json_string_value(json_object_get(l, "message")));
  }
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
  /* r->id passed the router's id check (no quotes, no path), so it is a safe file name */
  char disp[160];
  snprintf(disp, sizeof disp, "attachment; filename=\"%s.log\"", r->id);
  MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
  MHD_add_response_header(resp, "Content-Disposition", disp);
  return cz_reply_mhd(r, 200, resp);
}

enum MHD_Result cz_api_job_log(cz_req *r) {
  cz_api *api = r->app;
  const char *fmt = cz_req_arg(r, "format");
  bool text = fmt && !strcmp(fmt, "text");
  if (fmt && !text && strcmp(fmt, "json") != 0)
    return cz_reply_error(r, CZ_E_INVALID_ARGUMENT, "format must be json or text");
  int64_t since = 0, limit = text ? CZ_JOB_LOG_MAX_LINES : LOG_PAGE_DEFAULT;
  const char *s = cz_req_arg(r, "since"), *l = cz_req_arg(r, "limit");
  if (s && !parse_count(s, INT64_MAX / 2, &since))
    return cz_reply_error(r, CZ_E_INVALID_ARGUMENT,
                          "since must be a line number (the seq of the last line read, or 0)");
  if (l && (!parse_count(l, CZ_JOB_LOG_MAX_LINES, &limit) || limit < 1))
    return cz_reply_error(r, CZ_E_INVALID_ARGUMENT, "limit must be 1 to %d",
                          CZ_JOB_LOG_MAX_LINES);
  json_t *log;
  cz_error e = {0};
  if (cz_store_job_log(api->store, r->id, since, (int)limit, &log, &e)) return cz_reply_err(r, &e);
  if (text) {
    enum MHD_Result ret = reply_text(r, log);
    json_decref(log);
    return ret;
  }
  json_t *lines = json_object_get(log, "lines");
  json_int_t last = json_integer_value(json_object_get(log, "last_seq")),
             first = json_integer_value(json_object_get(log, "first_seq"));
  size_t n = json_array_size(lines);
  json_int_t next = n ? json_integer_value(json_object_get(json_array_get(lines, n - 1), "seq"))
                      : (since > last ? last : since);
  size_t i;
  json_t *line;
  json_array_foreach(lines, i, line) {
    char when[CZ_TIME_ISO_LEN];
    cz_time_iso(json_integer_value(json_object_get(line, "at")), when);
    json_object_del(line, "at");
    json_object_set_new(line, "time", json_string(when));
  }
  const char *state = json_string_value(json_object_get(log, "state"));
  json_t *body = json_pack(
      "{s:s, s:s, s:O, s:I, s:b, s:b, s:I, s:I, s:i}", "job", r->id, "state", state, "lines", lines,
      "next_since", next, "more", next < last,
      /* lines the follower never saw were dropped by the cap (CZ_JOB_LOG_MAX_LINES) */
      "truncated", first > since + 1, "first_seq", first, "last_seq", last, "max_lines",
      CZ_JOB_LOG_MAX_LINES);
  json_object_set_new(body, "done", json_boolean(job_finished(state) && next >= last));
  json_decref(log);
  return cz_reply_json(r, 200, body);
}
