/* cz_http: the HTTP server (libmicrohttpd), the route table and response helpers.
 *
 * Requests are matched against a table of routes (method + path pattern with {id}
 * segments); a route's handler gets a cz_req with the captured id, the query arguments and,
 * for JSON bodies, the whole body (bounded by CZ_HTTP_MAX_JSON_BODY). Upload routes are
 * streamed instead: their handler is called once per chunk and once at the end.
 *
 * Thread: handlers run on libmicrohttpd's threads, several at once; whatever they share
 * (store, blob store) must be thread-safe. Errors always leave as
 * {"error": {"code": "...", "message": "..."}} with the code's HTTP status.
 */
#ifndef CZ_HTTP_H
#define CZ_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "cz_err.h"

/* A JSON request body larger than this is refused with 413: recipes are small, and the
 * limit keeps a client from making the server buffer megabytes per connection. */
#define CZ_HTTP_MAX_JSON_BODY (1024 * 1024)
/* Longest {id} accepted in a path; ids we issue are 28 characters. */
#define CZ_HTTP_MAX_ID 64
/* Longest X-Request-Id taken from a client (1..64 of [A-Za-z0-9._:-]); others are replaced
 * by one we make ("req_" + 24 hex digits). */
#define CZ_HTTP_MAX_REQUEST_ID 64

typedef struct cz_req cz_req;
typedef struct cz_http cz_http;
typedef struct cz_conn cz_conn;

/* Limits of the server (their defaults and meaning: daemon/cz_config.h). A 503 carries
 * Retry-After: CZ_HTTP_RETRY_AFTER_S. */
#define CZ_HTTP_RETRY_AFTER_S 5
typedef struct {
  unsigned idle_timeout_s;        /* libmicrohttpd's connection timeout */
  unsigned max_connections, max_connections_per_ip;
  size_t max_header_bytes;        /* libmicrohttpd's per-connection memory */
  unsigned request_deadline_s;    /* a request must have arrived whole by then... */
  uint64_t min_upload_rate;       /* ...unless it is an upload averaging this (0: uploads exempt) */
  /* Called once the route is known, before the handler: false = refused (it replied). */
  bool (*authorize)(cz_req *r);
  /* HTTPS through libmicrohttpd (GnuTLS) when both are set: PEM text, copied. */
  const char *tls_cert_pem, *tls_key_pem;
} cz_http_limits;

/* What a handler returns: MHD_YES/MHD_NO after queueing a response. */
typedef enum MHD_Result (*cz_handler)(cz_req *r);
/* A streaming (upload) handler: called once with CZ_UPLOAD_BEGIN (headers known, no data),
 * with CZ_UPLOAD_CHUNK for each piece of the body, then with CZ_UPLOAD_END. It may reply at
 * any phase (the rest of the body is then discarded). If the client goes away before the
 * end, abort is called instead (may be NULL). */
typedef enum { CZ_UPLOAD_BEGIN, CZ_UPLOAD_CHUNK, CZ_UPLOAD_END } cz_upload_phase;
typedef enum MHD_Result (*cz_upload_handler)(cz_req *r, cz_upload_phase phase, const char *data,
                                             size_t len);
typedef void (*cz_abort_handler)(cz_req *r);

typedef struct {
  const char *method;       /* "GET", "POST", "DELETE" */
  const char *pattern;      /* "/v1/jobs/{id}:cancel" */
  cz_handler handle;        /* whole-request handler (JSON body collected first) */
  cz_upload_handler upload; /* or a streaming one */
  cz_abort_handler abort;
} cz_route;

struct cz_req {
  struct MHD_Connection *conn;
  const cz_route *route;
  void *app;                /* the application context given to cz_http_start */
  char id[CZ_HTTP_MAX_ID + 1];
  const char *method;
  const char *url;
  /* the client's X-Request-Id if sane, else ours; in every log line written while the
   * request is handled (cz_log's request_id field) and echoed in every response */
  char request_id[CZ_HTTP_MAX_REQUEST_ID + 1];
  char principal[32];       /* the API token's id once authorized, "" without tokens */
  int64_t t_start;          /* cz_http_mono_ms() at the first call */
  uint64_t resp_bytes;      /* body bytes of the queued response (metrics) */
  bool upload_counted;      /* counted in uploads in flight */
  /* collected body of a non-upload request */
  char *body;
  size_t body_len;
  bool body_too_large;
  /* per-request state of an upload handler */
  void *state;
  bool responded;
  unsigned status;          /* of the response queued through cz_reply_* */
  /* A create handler writes the id of what it created here before replying (idempotency
   * records it). */
  char created_id[CZ_HTTP_MAX_ID + 1];
  /* Service layer around a handler (idempotency, long-poll): its per-request state, a hook
   * called just before any response is queued (status known, may add headers to resp), and
   * one called when the request is over, answered or not (ok: the response went out). */
  void *svc;
  void (*on_reply)(cz_req *r, unsigned status, struct MHD_Response *resp);
  void (*svc_done)(cz_req *r, bool ok);
  /* ---- private to cz_http ---- */
  cz_http *http;
  cz_conn *c;               /* the connection's deadline tracking */
  bool parked;              /* suspended by cz_req_park, on the server's parked list */
  char park_tag[CZ_HTTP_MAX_ID + 1];
  int64_t park_deadline;    /* cz_http_mono_ms() */
  cz_req *park_prev, *park_next;
};

/* lim NULL: the defaults of cz_config.h. */
cz_err_code cz_http_start(const char *addr, int port, const cz_route *routes, int n_routes,
                          void *app, const cz_http_limits *lim, cz_http **out, cz_error *err);
/* The port actually bound (useful with port 0). */
int cz_http_port(const cz_http *h);
/* Stop accepting new connections and answer parked requests (first step of a graceful
 * stop). */
void cz_http_quiesce(cz_http *h);
void cz_http_stop(cz_http *h);

/* ---- long-poll: park a request until something changes ----
 *
 * A handler that wants to wait reads cz_http_epoch(), looks at the state, and if nothing has
 * happened yet calls cz_req_park() with that epoch and returns MHD_YES without replying. The
 * connection is suspended (libmicrohttpd's suspend/resume: no thread is held) until
 * cz_http_wake() names its tag, its deadline passes (checked every CZ_HTTP_TICK_MS) or the
 * server drains; then the handler is called again and replies (or parks again). Waking bumps
 * the epoch first, so a change between the look and the park is never lost: park refuses
 * (returns false) when the epoch moved, and the handler looks again. */
#define CZ_HTTP_TICK_MS 250
/* Monotonic clock in milliseconds, the time base of park deadlines. */
int64_t cz_http_mono_ms(void);
uint64_t cz_http_epoch(cz_http *h);
/* false: not parked (the epoch moved, or the server is draining): look again / answer now. */
bool cz_req_park(cz_req *r, const char *tag, int64_t deadline_ms, uint64_t epoch);
/* Resume every request parked on tag. Any thread. */
void cz_http_wake(cz_http *h, const char *tag);
/* Is the server stopping (parked requests are answered at once)? */
bool cz_http_draining(cz_http *h);

/* Query argument, or NULL. */
const char *cz_req_arg(cz_req *r, const char *key);
const char *cz_req_header(cz_req *r, const char *key);

/* Responses. json is stolen. */
enum MHD_Result cz_reply_json(cz_req *r, unsigned status, json_t *json);
/* The same for JSON already serialized: the n bytes at s are copied (the caller keeps s). */
enum MHD_Result cz_reply_json_text(cz_req *r, unsigned status, const char *s, size_t n);
enum MHD_Result cz_reply_error(cz_req *r, cz_err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
enum MHD_Result cz_reply_err(cz_req *r, const cz_error *e);
/* Serve a file from an open descriptor (taken over, closed by MHD); headers are name/value
 * pairs terminated by NULL. */
enum MHD_Result cz_reply_fd(cz_req *r, int fd, uint64_t size, const char *content_type, ...)
    __attribute__((sentinel));
enum MHD_Result cz_reply_status(cz_req *r, unsigned status);
/* Serve a regular file (a published blob) from fd, taken over and closed by MHD, with
 * Accept-Ranges and a strong ETag (quoted): If-None-Match -> 304; one Range -> 206 with
 * Content-Range (If-Range must name this ETag, else the whole file); an unsatisfiable range
 * -> 416 with the size in Content-Range (RFC 9110 14.4); several ranges -> 200, whole file.
 * filename (already sanitized; may be NULL) goes into Content-Disposition: attachment. The
 * bytes go from the descriptor (sendfile where possible), never through memory. */
enum MHD_Result cz_reply_file(cz_req *r, int fd, uint64_t size, const char *content_type,
                              const char *etag, const char *filename);
/* Queue a response built by the caller, with the headers every response carries (request
 * id, Cache-Control: no-store unless set); destroys resp. For handlers that need an MHD
 * response of their own (static files). */
enum MHD_Result cz_reply_mhd(cz_req *r, unsigned status, struct MHD_Response *resp);

#endif
