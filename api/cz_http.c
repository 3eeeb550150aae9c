/* cz_http: libmicrohttpd server, route matching, JSON and file responses. */
#include "cz_http.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "cz_http_parse.h"
#include "cz_log.h"
#include "cz_metrics.h"

/* Defaults when cz_http_start gets no limits (the daemon passes cz_config's). */
#define CONN_TIMEOUT_S 60         /* idle seconds before a connection is dropped */
#define CONN_LIMIT 256            /* simultaneous connections */
#define CONN_PER_IP_LIMIT 64      /* per client address */
#define CONN_MEMORY_LIMIT (128 * 1024) /* MHD's per-connection buffer: headers must fit */
#define REQUEST_DEADLINE_S 60     /* a request must have arrived whole by then */
#define MIN_UPLOAD_RATE (64 * 1024) /* unless it is an upload averaging this many bytes/s */
#define HTTP_THREADS 4            /* MHD worker threads: uploads and long downloads overlap */

/* One per TCP connection, from MHD's connection notification, for the request deadline: the
 * tick thread closes (shutdown(2)) a connection whose request has not arrived in time.
 * libmicrohttpd's own timeout is idle-based, so a client that trickles bytes survives it. */
struct cz_conn {
  int fd;
  _Atomic int64_t phase_start;  /* when the request now arriving began (or the previous ended) */
  atomic_bool receiving;        /* headers or body still arriving (else being answered/parked) */
  atomic_bool upload;           /* the body is an upload: the rate rule applies */
  _Atomic uint64_t bytes;       /* body bytes of this request so far */
  bool cut;                     /* shut down by the tick (under h->lock) */
  cz_conn *prev, *next;         /* h->conns, under h->lock */
};

struct cz_http {
  struct MHD_Daemon *d;
  const cz_route *routes;
  int n_routes;
  void *app;
  int port;
  /* long-poll: parked requests, the change epoch, the tick thread */
  pthread_mutex_t lock;
  cz_req *parked;           /* doubly linked through park_prev/park_next */
  uint64_t epoch;
  bool draining, stop_tick;
  pthread_t tick;
  bool tick_started;
  pthread_cond_t tick_cond;
  cz_http_limits lim;
  cz_conn *conns;           /* every open connection, under lock */
  char *tls_cert, *tls_key; /* copies that outlive the daemon */
};

int64_t cz_http_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- parked requests (long-poll) ---- */

/* Under h->lock. */
static void unpark(cz_http *h, cz_req *r) {
  if (r->park_prev) r->park_prev->park_next = r->park_next;
  else h->parked = r->park_next;
  if (r->park_next) r->park_next->park_prev = r->park_prev;
  r->park_prev = r->park_next = NULL;
  r->parked = false;
  MHD_resume_connection(r->conn);
}

uint64_t cz_http_epoch(cz_http *h) {
  pthread_mutex_lock(&h->lock);
  uint64_t e = h->epoch;
  pthread_mutex_unlock(&h->lock);
  return e;
}

bool cz_http_draining(cz_http *h) {
  pthread_mutex_lock(&h->lock);
  bool d = h->draining;
  pthread_mutex_unlock(&h->lock);
  return d;
}

bool cz_req_park(cz_req *r, const char *tag, int64_t deadline_ms, uint64_t epoch) {
  cz_http *h = r->http;
  pthread_mutex_lock(&h->lock);
  bool ok = !h->draining && h->epoch == epoch && !r->parked;
  if (ok) {
    snprintf(r->park_tag, sizeof r->park_tag, "%s", tag);
    r->park_deadline = deadline_ms;
    r->park_prev = NULL;
    r->park_next = h->parked;
    if (h->parked) h->parked->park_prev = r;
    h->parked = r;
    r->parked = true;
    /* suspended while the lock is held: a wake can only resume it after this */
    MHD_suspend_connection(r->conn);
  }
  pthread_mutex_unlock(&h->lock);
  return ok;
}

void cz_http_wake(cz_http *h, const char *tag) {
  pthread_mutex_lock(&h->lock);
  h->epoch++;
  for (cz_req *r = h->parked, *next; r; r = next) {
    next = r->park_next;
    if (strcmp(r->park_tag, tag) == 0) unpark(h, r);
  }
  pthread_mutex_unlock(&h->lock);
}

/* Resume everything parked (the server is stopping); no new park after this. */
static void drain(cz_http *h) {
  pthread_mutex_lock(&h->lock);
  h->draining = true;
  h->epoch++;
  while (h->parked) unpark(h, h->parked);
  pthread_mutex_unlock(&h->lock);
}

/* Under h->lock: cut the connections whose request is late. An upload older than the
 * deadline may go on while it averages min_upload_rate. shutdown(2) makes libmicrohttpd see
 * the end of the stream and close the connection itself (the request ends as an error, an
 * upload's temporary file is removed); the descriptor stays valid until MHD's close
 * notification, which needs this lock, so it cannot be reused under us. */
static void enforce_deadlines(cz_http *h, int64_t now) {
  int64_t deadline_ms = (int64_t)h->lim.request_deadline_s * 1000;
  for (cz_conn *c = h->conns; c; c = c->next) {
    if (c->cut || !atomic_load(&c->receiving)) continue;
    int64_t age = now - atomic_load(&c->phase_start);
    if (age <= deadline_ms) continue;
    bool upload = atomic_load(&c->upload);
    if (upload && h->lim.min_upload_rate == 0) continue;
    if (upload && atomic_load(&c->bytes) * 1000 / (uint64_t)age >= h->lim.min_upload_rate)
      continue;
    c->cut = true;
    shutdown(c->fd, SHUT_RDWR);
    cz_log(CZ_LOG_WARN, "connection cut", "reason",
           upload ? "upload slower than min_upload_rate" : "request deadline exceeded",
           "seconds", CZ_LOG_INT(age / 1000), "bytes", CZ_LOG_UINT(atomic_load(&c->bytes)),
           NULL);
  }
}

/* MHD's per-connection notification: track it for the deadline. */
static void conn_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                    enum MHD_ConnectionNotificationCode toe) {
  cz_http *h = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    cz_conn *c = calloc(1, sizeof *c);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!c || !ci) {
      free(c);
      *socket_context = NULL;
      return;
    }
    c->fd = ci->connect_fd;
    atomic_store(&c->phase_start, cz_http_mono_ms());
    atomic_store(&c->receiving, true);
    pthread_mutex_lock(&h->lock);
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    pthread_mutex_unlock(&h->lock);
    *socket_context = c;
    return;
  }
  cz_conn *c = *socket_context;
  if (!c) return;
  pthread_mutex_lock(&h->lock);
  if (c->prev) c->prev->next = c->next;
  else h->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&h->lock);
  free(c);
  *socket_context = NULL;
}

static cz_conn *conn_of(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

/* Every CZ_HTTP_TICK_MS: resume the parked requests whose deadline has passed. */
static void *tick_main(void *arg) {
  cz_http *h = arg;
  pthread_mutex_lock(&h->lock);
  while (!h->stop_tick) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)CZ_HTTP_TICK_MS * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&h->tick_cond, &h->lock, &ts);
    int64_t now = cz_http_mono_ms();
    for (cz_req *r = h->parked, *next; r; r = next) {
      next = r->park_next;
      if (r->park_deadline <= now) unpark(h, r);
    }
    enforce_deadlines(h, now);
  }
  pthread_mutex_unlock(&h->lock);
  return NULL;
}

/* ---- routing ---- */

/* Match path against pattern; "{id}" captures one segment up to '/', ':' or the end. */
static bool match_pattern(const char *pattern, const char *path, char *id) {
  while (*pattern) {
    if (strncmp(pattern, "{id}", 4) == 0) {
      size_t n = strcspn(path, "/:");
      if (n == 0 || n > CZ_HTTP_MAX_ID) return false;
      memcpy(id, path, n);
      id[n] = 0;
      path += n;
      pattern += 4;
      continue;
    }
    if (*pattern++ != *path++) return false;
  }
  return *path == 0;
}

/* The route for method+path; *path_known tells whether another method would have matched. */
static const cz_route *find_route(const cz_http *h, const char *method, const char *path,
                                  char *id, bool *path_known) {
  *path_known = false;
  /* HEAD is GET without the body (libmicrohttpd drops it): headers, size, ETag */
  if (strcmp(method, "HEAD") == 0) method = "GET";
  for (int i = 0; i < h->n_routes; i++) {
    if (!match_pattern(h->routes[i].pattern, path, id)) continue;
    *path_known = true;
    if (strcmp(h->routes[i].method, method) == 0) return &h->routes[i];
  }
  return NULL;
}

/* ---- responses ---- */

#define STR_(x) #x
#define STR(x) STR_(x)

static enum MHD_Result queue(cz_req *r, unsigned status, struct MHD_Response *resp) {
  if (!resp) return MHD_NO;
  if (!MHD_get_response_header(resp, "Cache-Control"))
    MHD_add_response_header(resp, "Cache-Control", "no-store");
  MHD_add_response_header(resp, "X-Request-Id", r->request_id);
  if (status == MHD_HTTP_SERVICE_UNAVAILABLE && !MHD_get_response_header(resp, "Retry-After"))
    MHD_add_response_header(resp, "Retry-After", STR(CZ_HTTP_RETRY_AFTER_S));
  if (r->c) atomic_store(&r->c->receiving, false);  /* answered: the deadline is met */
  if (r->on_reply) {
    void (*hook)(cz_req *, unsigned, struct MHD_Response *) = r->on_reply;
    r->on_reply = NULL;  /* once: a hook may itself look things up and reply */
    hook(r, status, resp);
  }
  enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
  MHD_destroy_response(resp);
  r->responded = true;
  r->status = status;
  return ret;
}

enum MHD_Result cz_reply_mhd(cz_req *r, unsigned status, struct MHD_Response *resp) {
  return queue(r, status, resp);
}

enum MHD_Result cz_reply_json(cz_req *r, unsigned status, json_t *json) {
  char *s = json_dumps(json, JSON_COMPACT);
  json_decref(json);
  if (!s) return MHD_NO;
  size_t n = strlen(s);
  r->resp_bytes = n;
  struct MHD_Response *resp = MHD_create_response_from_buffer(n, s, MHD_RESPMEM_MUST_FREE);
  if (resp) MHD_add_response_header(resp, "Content-Type", "application/json");
  return queue(r, status, resp);
}

enum MHD_Result cz_reply_json_text(cz_req *r, unsigned status, const char *s, size_t n) {
  r->resp_bytes = n;
  struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)s, MHD_RESPMEM_MUST_COPY);
  if (resp) MHD_add_response_header(resp, "Content-Type", "application/json");
  return queue(r, status, resp);
}

enum MHD_Result cz_reply_error(cz_req *r, cz_err_code code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int status = cz_err_http_status(code);
  if (status >= 500)
    cz_log(CZ_LOG_ERROR, "request failed", "method", r->method, "url", r->url, "code",
           cz_err_name(code), "error", msg, NULL);
  return cz_reply_json(r, (unsigned)status,
                       json_pack("{s:{s:s, s:s}}", "error", "code", cz_err_name(code), "message",
                                 msg));
}

enum MHD_Result cz_reply_err(cz_req *r, const cz_error *e) {
  return cz_reply_error(r, e->code, "%s", e->msg);
}

enum MHD_Result cz_reply_fd(cz_req *r, int fd, uint64_t size, const char *content_type, ...) {
  r->resp_bytes = size;
  struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
  if (!resp) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", content_type);
  va_list ap;
  va_start(ap, content_type);
  for (const char *k; (k = va_arg(ap, const char *)) != NULL;) {
    const char *v = va_arg(ap, const char *);
    MHD_add_response_header(resp, k, v);
  }
  va_end(ap);
  return queue(r, MHD_HTTP_OK, resp);
}

/* Headers of every file answer (200, 206, 304, 416). */
static void file_headers(struct MHD_Response *resp, const char *etag, const char *filename) {
  MHD_add_response_header(resp, "Accept-Ranges", "bytes");
  MHD_add_response_header(resp, "ETag", etag);
  /* immutable content under a strong validator: a cache may keep it but must revalidate */
  MHD_add_response_header(resp, "Cache-Control", "no-cache");
  if (filename && *filename) {
    char disp[300];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", filename);
    MHD_add_response_header(resp, "Content-Disposition", disp);
  }
}

enum MHD_Result cz_reply_file(cz_req *r, int fd, uint64_t size, const char *content_type,
                              const char *etag, const char *filename) {
  struct MHD_Response *resp;
  if (cz_etag_list_match(cz_req_header(r, "If-None-Match"), etag)) {
    close(fd);
    resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    file_headers(resp, etag, NULL);
    return queue(r, MHD_HTTP_NOT_MODIFIED, resp);
  }
  const char *range = cz_req_header(r, "Range");
  const char *if_range = cz_req_header(r, "If-Range");
  if (range && if_range && !cz_if_range_match(if_range, etag)) range = NULL;  /* changed: all */
  uint64_t first = 0, last = 0;
  cz_range_result rr = cz_range_parse(range, size, &first, &last);
  char cr[96];
  if (rr == CZ_RANGE_UNSATISFIABLE) {
    close(fd);
    snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
    char msg[160];
    snprintf(msg, sizeof msg, "the requested range lies outside the %llu bytes of the file",
             (unsigned long long)size);
    char *body = NULL;
    json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code",
                          cz_err_name(CZ_E_RANGE_NOT_SATISFIABLE), "message", msg);
    if (j) body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body) return MHD_NO;
    resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
      free(body);
      return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Content-Range", cr);
    file_headers(resp, etag, NULL);
    return queue(r, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
  }
  unsigned status = MHD_HTTP_OK;
  uint64_t off = 0, len = size;
  if (rr == CZ_RANGE_OK) {
    status = MHD_HTTP_PARTIAL_CONTENT;
    off = first;
    len = last - first + 1;
    snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
             (unsigned long long)last, (unsigned long long)size);
  }
  r->resp_bytes = len;
  resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
  if (!resp) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", content_type);
  if (status == MHD_HTTP_PARTIAL_CONTENT) MHD_add_response_header(resp, "Content-Range", cr);
  file_headers(resp, etag, filename);
  return queue(r, status, resp);
}

enum MHD_Result cz_reply_status(cz_req *r, unsigned status) {
  return queue(r, status, MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT));
}

const char *cz_req_arg(cz_req *r, const char *key) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *cz_req_header(cz_req *r, const char *key) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

/* ---- the access handler ---- */

/* The client's X-Request-Id when it is a sane token, else "req_" + 24 random hex digits. */
static void set_request_id(cz_req *r) {
  const char *in = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
  if (cz_request_id_ok(in, CZ_HTTP_MAX_REQUEST_ID)) {
    snprintf(r->request_id, sizeof r->request_id, "%s", in);
    return;
  }
  uint8_t b[12];
  if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b) {
    static _Atomic uint64_t counter;
    uint64_t v = (uint64_t)cz_http_mono_ms() ^ (++counter << 40);
    memcpy(b, &v, 8);
    memset(b + 8, 0, 4);
  }
  /* by hand: twelve snprintf calls per request showed in the profile of GET under load */
  static const char hex[] = "0123456789abcdef";
  _Static_assert(sizeof "req_" - 1 + 2 * sizeof b <= CZ_HTTP_MAX_REQUEST_ID, "request id fits");
  char *p = r->request_id;
  memcpy(p, "req_", 4);
  p += 4;
  for (size_t i = 0; i < sizeof b; i++) {
    *p++ = hex[b[i] >> 4];
    *p++ = hex[b[i] & 15];
  }
  *p = '\0';
}

static enum MHD_Result first_call(cz_http *h, struct MHD_Connection *conn, const char *url,
                                  const char *method, void **con_cls) {
  cz_req *r = calloc(1, sizeof *r);
  if (!r) return MHD_NO;
  r->conn = conn;
  r->http = h;
  r->app = h->app;
  r->method = method;
  r->url = url;
  r->t_start = cz_http_mono_ms();
  r->c = conn_of(conn);
  set_request_id(r);
  cz_log_set_request_id(r->request_id);
  *con_cls = r;
  bool known;
  r->route = find_route(h, method, url, r->id, &known);
  if (!r->route) {
    if (known) return cz_reply_error(r, CZ_E_METHOD_NOT_ALLOWED, "%s is not allowed on %s", method, url);
    return cz_reply_error(r, CZ_E_NOT_FOUND, "no such resource: %s", url);
  }
  if (h->lim.authorize && !h->lim.authorize(r)) return MHD_YES;
  if (r->route->upload) {
    if (r->c) atomic_store(&r->c->upload, true);
    enum MHD_Result ret = r->route->upload(r, CZ_UPLOAD_BEGIN, NULL, 0);
    if (!r->responded) {
      r->upload_counted = true;
      cz_metrics_upload_begin();
    }
    return ret;
  }
  return MHD_YES;
}

static void collect_body(cz_req *r, const char *data, size_t len) {
  if (r->body_too_large) return;
  if (len > CZ_HTTP_MAX_JSON_BODY - r->body_len) {
    r->body_too_large = true;
    free(r->body);
    r->body = NULL;
    return;
  }
  char *nb = realloc(r->body, r->body_len + len + 1);
  if (!nb) {
    r->body_too_large = true;
    return;
  }
  memcpy(nb + r->body_len, data, len);
  r->body = nb;
  r->body_len += len;
  r->body[r->body_len] = 0;
}

static enum MHD_Result continue_request(cz_req *r, const char *upload_data,
                                        size_t *upload_data_size);

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
  cz_http *h = cls;
  cz_req *r = *con_cls;
  if (r == NULL) {
    enum MHD_Result ret = first_call(h, conn, url, method, con_cls);
    cz_log_set_request_id(NULL);
    return ret;
  }
  cz_log_set_request_id(r->request_id);
  enum MHD_Result ret = continue_request(r, upload_data, upload_data_size);
  cz_log_set_request_id(NULL);
  return ret;
}

/* Every call after the first: body chunks, the end of the body, a resumed park. */
static enum MHD_Result continue_request(cz_req *r, const char *upload_data,
                                        size_t *upload_data_size) {
  if (*upload_data_size > 0) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    cz_metrics_bytes_in(n);
    if (r->c) atomic_fetch_add(&r->c->bytes, n);
    if (r->responded) return MHD_YES;  /* already answered: drain and discard */
    if (r->route->upload) return r->route->upload(r, CZ_UPLOAD_CHUNK, upload_data, n);
    collect_body(r, upload_data, n);
    return MHD_YES;
  }
  if (r->responded) return MHD_YES;
  /* the whole request is here: what follows (validation, a park) is not the client's time */
  if (r->c) atomic_store(&r->c->receiving, false);
  if (r->route->upload) {
    enum MHD_Result ret = r->route->upload(r, CZ_UPLOAD_END, NULL, 0);
    r->state = NULL;  /* the handler has finished with it */
    return ret;
  }
  if (r->body_too_large)
    return cz_reply_error(r, CZ_E_TOO_LARGE, "request body over %d bytes", CZ_HTTP_MAX_JSON_BODY);
  return r->route->handle(r);
}

/* One line per request when it ends: what was asked, what was answered, how long it took.
 * Successful reads are debug (a polling dashboard would flood info), the rest info. */
static void log_request(cz_req *r, struct MHD_Connection *conn,
                        enum MHD_RequestTerminationCode toe) {
  unsigned status = r->status;
  if (!status) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
    if (ci) status = ci->http_status;
  }
  cz_metrics_http_request(r->method, r->route ? r->route->pattern : NULL, status);
  bool quiet = (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0) &&
               status < 400 && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
  static const char *const ends[] = {"ok", "error", "timeout", "shutdown", "read_error",
                                     "client_abort"};
  cz_log(quiet ? CZ_LOG_DEBUG : CZ_LOG_INFO, "request", "method", r->method, "path", r->url,
         "route", r->route ? r->route->pattern : NULL, "status", CZ_LOG_UINT(status), "ms",
         CZ_LOG_INT(cz_http_mono_ms() - r->t_start), "end",
         (unsigned)toe < sizeof ends / sizeof ends[0] ? ends[toe] : "other", NULL);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  cz_req *r = *con_cls;
  if (!r) return;
  cz_log_set_request_id(r->request_id);
  log_request(r, conn, toe);
  if (r->upload_counted) cz_metrics_upload_end();
  if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && strcmp(r->method, "HEAD") != 0)
    cz_metrics_bytes_out(r->resp_bytes);
  if (r->parked) {  /* only at daemon shutdown; drain() normally resumed it before */
    cz_http *h = cls;
    pthread_mutex_lock(&h->lock);
    if (r->parked) {
      if (r->park_prev) r->park_prev->park_next = r->park_next;
      else h->parked = r->park_next;
      if (r->park_next) r->park_next->park_prev = r->park_prev;
      r->parked = false;
    }
    pthread_mutex_unlock(&h->lock);
  }
  if (r->state && r->route && r->route->abort) r->route->abort(r);
  if (r->svc_done) r->svc_done(r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
  cz_log_set_request_id(NULL);
  if (r->c) {  /* a keep-alive connection starts waiting for its next request */
    atomic_store(&r->c->phase_start, cz_http_mono_ms());
    atomic_store(&r->c->upload, false);
    atomic_store(&r->c->bytes, 0);
    atomic_store(&r->c->receiving, true);
  }
  free(r->body);
  free(r);
  *con_cls = NULL;
}

static void log_cb(void *cls, const char *fmt, va_list ap) {
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  buf[strcspn(buf, "\n")] = 0;
  cz_log(CZ_LOG_WARN, "http", "detail", buf, NULL);
}

static void http_free(cz_http *h) {
  free(h->tls_cert);
  if (h->tls_key) {  /* a private key: do not leave it in freed memory */
    memset(h->tls_key, 0, strlen(h->tls_key));
    free(h->tls_key);
  }
  pthread_cond_destroy(&h->tick_cond);
  pthread_mutex_destroy(&h->lock);
  free(h);
}

cz_err_code cz_http_start(const char *addr, int port, const cz_route *routes, int n_routes,
                          void *app, const cz_http_limits *lim, cz_http **out, cz_error *err) {
  cz_http *h = calloc(1, sizeof *h);
  if (!h) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  h->lim = lim ? *lim
               : (cz_http_limits){CONN_TIMEOUT_S, CONN_LIMIT, CONN_PER_IP_LIMIT, CONN_MEMORY_LIMIT,
                                  REQUEST_DEADLINE_S, MIN_UPLOAD_RATE, NULL, NULL, NULL};
  struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL},
                                  {MHD_OPTION_END, 0, NULL}};
  bool use_tls = h->lim.tls_cert_pem && h->lim.tls_key_pem;
  if (use_tls) {
    h->tls_cert = strdup(h->lim.tls_cert_pem);
    h->tls_key = strdup(h->lim.tls_key_pem);
    if (!h->tls_cert || !h->tls_key) {
      http_free(h);
      return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    }
    tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key};
    tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert};
  }
  h->routes = routes;
  h->n_routes = n_routes;
  h->app = app;
  pthread_mutex_init(&h->lock, NULL);
  pthread_cond_init(&h->tick_cond, NULL);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME | (use_tls ? MHD_USE_TLS : 0);
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
  } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    flags |= MHD_USE_IPv6;
  } else {
    http_free(h);
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "listen address %s is not an IP address", addr);
  }
  h->d = MHD_start_daemon(
      flags, (uint16_t)port, NULL, NULL, access_cb, h, MHD_OPTION_EXTERNAL_LOGGER, log_cb, NULL,
      MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, h,
      MHD_OPTION_NOTIFY_CONNECTION, conn_cb, h, MHD_OPTION_CONNECTION_TIMEOUT,
      h->lim.idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT, h->lim.max_connections,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, h->lim.max_connections_per_ip,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, h->lim.max_header_bytes,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_THREADS, MHD_OPTION_STRICT_FOR_CLIENT,
      (int)1, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
  if (!h->d) {
    http_free(h);
    return cz_err_set(err, CZ_E_IO,
                      use_tls ? "cannot listen on %s:%d (address in use, or the TLS certificate "
                                "and key are not a valid PEM pair)"
                              : "cannot listen on %s:%d (address in use or not permitted)",
                      addr, port);
  }
  if (pthread_create(&h->tick, NULL, tick_main, h) != 0) {
    MHD_stop_daemon(h->d);
    http_free(h);
    return cz_err_set(err, CZ_E_INTERNAL, "cannot start the HTTP timer thread");
  }
  h->tick_started = true;
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : port;
  *out = h;
  return CZ_E_OK;
}

int cz_http_port(const cz_http *h) { return h->port; }

void cz_http_quiesce(cz_http *h) {
  int fd = MHD_quiesce_daemon(h->d);
  if (fd >= 0) close(fd);
  drain(h);
}

void cz_http_stop(cz_http *h) {
  if (!h) return;
  drain(h);  /* libmicrohttpd refuses to stop with suspended connections */
  if (h->tick_started) {
    pthread_mutex_lock(&h->lock);
    h->stop_tick = true;
    pthread_cond_signal(&h->tick_cond);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->tick, NULL);
  }
  MHD_stop_daemon(h->d);
  http_free(h);
}
