/* cz_webhook: the webhook delivery thread: signs (Standard Webhooks), POSTs with libcurl,
 * retries with exponential backoff; all state lives in the store. */
#include "cz_webhook.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cz_base64.h"
#include "cz_log.h"
#include "cz_metrics.h"
#include "cz_sha256.h"

#define POLL_MS 1000        /* longest sleep: also picks up jobs finished by another process */
#define BATCH 16            /* rows per store query; the loop comes back for more */
#define CONNECT_TIMEOUT_MS 5000

struct cz_webhook {
  cz_store *store;
  cz_webhook_opts o;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;        /* CLOCK_MONOTONIC */
  bool kicked;
  atomic_bool stop;
  CURL *curl;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- validation ---- */

bool cz_webhook_url_valid(const char *url, cz_error *err) {
  size_t n = strlen(url);
  if (n > CZ_WEBHOOK_MAX_URL) {
    cz_err_set(err, CZ_E_INVALID_ARGUMENT, "webhook.url: at most %d bytes", CZ_WEBHOOK_MAX_URL);
    return false;
  }
  size_t skip = strncmp(url, "http://", 7) == 0 ? 7 : strncmp(url, "https://", 8) == 0 ? 8 : 0;
  if (skip == 0) {
    cz_err_set(err, CZ_E_INVALID_ARGUMENT, "webhook.url: must start with http:// or https://");
    return false;
  }
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
      cz_err_set(err, CZ_E_INVALID_ARGUMENT,
                 "webhook.url: printable ASCII without spaces (percent-encode the rest)");
      return false;
    }
  if (url[skip] == '\0' || url[skip] == '/' || url[skip] == ':' || url[skip] == '?') {
    cz_err_set(err, CZ_E_INVALID_ARGUMENT, "webhook.url: no host");
    return false;
  }
  return true;
}

bool cz_webhook_secret_decode(const char *secret, uint8_t key[CZ_WEBHOOK_MAX_KEY],
                              size_t *key_len, cz_error *err) {
  size_t n = strlen(secret);
  /* base64 of MAX_KEY bytes is 88 characters: anything longer is refused before decoding */
  if (strncmp(secret, "whsec_", 6) != 0 || n > 6 + CZ_BASE64_ENCODED_LEN(CZ_WEBHOOK_MAX_KEY) ||
      !cz_base64_decode(secret + 6, n - 6, false, key, CZ_WEBHOOK_MAX_KEY, key_len) ||
      *key_len < CZ_WEBHOOK_MIN_KEY) {
    cz_err_set(err, CZ_E_INVALID_ARGUMENT,
               "webhook.secret: \"whsec_\" and the base64 of %d to %d random bytes (e.g. "
               "whsec_$(head -c 32 /dev/urandom | base64))",
               CZ_WEBHOOK_MIN_KEY, CZ_WEBHOOK_MAX_KEY);
    return false;
  }
  return true;
}

int64_t cz_webhook_delay_ms(int backoff_ms, int n) {
  int64_t d = backoff_ms > 0 ? backoff_ms : 1;
  for (int i = 1; i < n && d < CZ_WEBHOOK_MAX_DELAY_MS; i++) d *= 2;
  return d < CZ_WEBHOOK_MAX_DELAY_MS ? d : CZ_WEBHOOK_MAX_DELAY_MS;
}

/* ---- step 1: fix the message of finished jobs ---- */

static json_t *time_json(json_t *ms) {
  if (!json_is_integer(ms)) return json_null();
  char buf[CZ_TIME_ISO_LEN];
  cz_time_iso(json_integer_value(ms), buf);
  return json_string(buf);
}

/* The job as the body's "data": what a receiver needs to act without calling back. */
static json_t *job_data(json_t *row) {
  json_t *g = NULL;
#define COL(k) json_object_get(row, k)
  const char *id = json_string_value(COL("id"));
  char self[128];
  snprintf(self, sizeof self, "/v1/jobs/%s", id ? id : "");
  json_t *d = json_pack("{s:O, s:O, s:O, s:O, s:o, s:o, s:{s:s}}", "id", COL("id"), "model",
                        COL("model_id"), "state", COL("state"), "attempts", COL("attempts"),
                        "created_at", time_json(COL("created_at")), "finished_at",
                        time_json(COL("finished_at")), "links", "self", self);
  if (!d) return NULL;
  if (json_is_string(COL("error_code")))
    g = json_pack("{s:O, s:O}", "code", COL("error_code"), "message", COL("error_message"));
  json_object_set_new(d, "error", g ? g : json_null());
  if (json_is_string(COL("artifact_sha256"))) {
    char art[160];
    snprintf(art, sizeof art, "/v1/jobs/%s/artifact", id ? id : "");
    json_object_set_new(d, "artifact",
                        json_pack("{s:O, s:O, s:O}", "sha256", COL("artifact_sha256"), "bytes",
                                  COL("artifact_bytes"), "format", COL("artifact_format")));
    json_object_set_new(json_object_get(d, "links"), "artifact", json_string(art));
  } else {
    json_object_set_new(d, "artifact", json_null());
  }
#undef COL
  return d;
}

static void new_msg_id(char out[29]) {
  uint8_t b[12];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
    static _Atomic uint64_t counter;  /* only before the pool is seeded */
    uint64_t v = (uint64_t)now_ms() ^ (++counter << 40);
    memcpy(b, &v, 8);
    memset(b + 8, 0, 4);
  }
  memcpy(out, "msg_", 4);
  for (int i = 0; i < 12; i++) snprintf(out + 4 + 2 * i, 3, "%02x", b[i]);
}

static void schedule_finished(cz_webhook *w) {
  json_t *jobs;
  cz_error e = {0};
  if (cz_store_webhook_finished(w->store, BATCH, &jobs, &e)) {
    cz_log(CZ_LOG_WARN, "webhook: store", "error", e.msg, NULL);
    return;
  }
  size_t i;
  json_t *row;
  json_array_foreach(jobs, i, row) {
    const char *id = json_string_value(json_object_get(row, "id"));
    char event[32], msg_id[29];
    snprintf(event, sizeof event, "job.%s", json_string_value(json_object_get(row, "state")));
    new_msg_id(msg_id);
    int64_t now = now_ms();
    json_t *now_j = json_integer(now);
    json_t *body = json_pack("{s:s, s:o, s:o}", "type", event, "timestamp", time_json(now_j),
                             "data", job_data(row));
    json_decref(now_j);
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!payload || cz_store_webhook_schedule(w->store, id, msg_id, event, payload, now, &e))
      cz_log(CZ_LOG_WARN, "webhook: cannot schedule", "job", id, "error",
             payload ? e.msg : "out of memory", NULL);
    free(payload);
  }
  json_decref(jobs);
}

/* ---- step 2: POST ---- */

/* the signed content is "msg_id.timestamp.body" (Standard Webhooks, "Signature scheme") */
void cz_webhook_sign(const uint8_t *key, size_t key_len, const char *msg_id, const char *ts,
                     const char *body, size_t body_len, char out[CZ_WEBHOOK_SIG_LEN]) {
  cz_hmac h;
  uint8_t mac[32];
  cz_hmac_sha256_init(&h, key, key_len);
  cz_hmac_sha256_update(&h, msg_id, strlen(msg_id));
  cz_hmac_sha256_update(&h, ".", 1);
  cz_hmac_sha256_update(&h, ts, strlen(ts));
  cz_hmac_sha256_update(&h, ".", 1);
  cz_hmac_sha256_update(&h, body, body_len);
  cz_hmac_sha256_final(&h, mac);
  char b64[CZ_BASE64_ENCODED_LEN(32)];
  cz_base64_encode(mac, sizeof mac, false, b64);
  snprintf(out, CZ_WEBHOOK_SIG_LEN, "v1,%s", b64);
}

static size_t discard(char *p, size_t size, size_t n, void *cls) {
  (void)p;
  (void)cls;
  return size * n;
}

/* libcurl's progress hook: abort a transfer in progress when the daemon stops. */
static int progress(void *cls, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
  (void)a, (void)b, (void)c, (void)d;
  cz_webhook *w = cls;
  return atomic_load(&w->stop) ? 1 : 0;
}

/* One try. true = 2xx. *status: the HTTP status (0 without one); why: the failure. */
static bool post(cz_webhook *w, const char *url, const char *msg_id, const uint8_t *key,
                 size_t key_len, const char *body, long *status, char *why, size_t why_len) {
  char ts[24];
  snprintf(ts, sizeof ts, "%" PRId64, now_ms() / 1000);
  char sig[CZ_WEBHOOK_SIG_LEN];
  cz_webhook_sign(key, key_len, msg_id, ts, body, strlen(body), sig);
  char hid[64], hts[64], hsig[96];
  snprintf(hid, sizeof hid, "webhook-id: %s", msg_id);
  snprintf(hts, sizeof hts, "webhook-timestamp: %s", ts);
  snprintf(hsig, sizeof hsig, "webhook-signature: %s", sig);
  struct curl_slist *hdrs = NULL, *t;
  const char *lines[] = {"Content-Type: application/json", hid, hts, hsig, "Expect:"};
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
    if (!(t = curl_slist_append(hdrs, lines[i]))) {
      curl_slist_free_all(hdrs);
      snprintf(why, why_len, "out of memory");
      return false;
    }
    hdrs = t;
  }
  char errbuf[CURL_ERROR_SIZE] = "";
  CURL *c = w->curl;
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "compressd/" CZ_VERSION);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->o.timeout_s * 1000L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(w->o.timeout_s * 1000L < CONNECT_TIMEOUT_MS ? w->o.timeout_s * 1000L
                                                                      : CONNECT_TIMEOUT_MS));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, w);
  CURLcode rc = curl_easy_perform(c);
  *status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(hdrs);
  if (rc != CURLE_OK) {
    snprintf(why, why_len, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    return false;
  }
  if (*status >= 200 && *status < 300) return true;
  snprintf(why, why_len, "HTTP status %ld", *status);
  return false;
}

static void deliver_due(cz_webhook *w) {
  json_t *rows;
  cz_error e = {0};
  if (cz_store_webhook_due(w->store, now_ms(), BATCH, &rows, &e)) {
    cz_log(CZ_LOG_WARN, "webhook: store", "error", e.msg, NULL);
    return;
  }
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    if (atomic_load(&w->stop)) break;
#define S(k) json_string_value(json_object_get(row, k))
    const char *job = S("job_id"), *url = S("url"), *msg_id = S("msg_id"), *body = S("payload");
    int tries = (int)json_integer_value(json_object_get(row, "attempts")) + 1,
        max = (int)json_integer_value(json_object_get(row, "max_attempts"));
    uint8_t key[CZ_WEBHOOK_MAX_KEY];
    size_t key_len = 0;
    long status = 0;
    char why[CURL_ERROR_SIZE + 32] = "";
    bool ok = false;
    if (!job || !url || !msg_id || !body || !S("secret"))
      snprintf(why, sizeof why, "incomplete row");
    else if (!cz_webhook_secret_decode(S("secret"), key, &key_len, &e))
      snprintf(why, sizeof why, "%s", e.msg);
    else
      ok = post(w, url, msg_id, key, key_len, body, &status, why, sizeof why);
#undef S
    memset(key, 0, sizeof key);
    int64_t now = now_ms();
    if (cz_store_webhook_attempt(w->store, job, ok, (int)status, ok ? NULL : why, now,
                                 now + cz_webhook_delay_ms(w->o.backoff_ms, tries), &e))
      cz_log(CZ_LOG_WARN, "webhook: cannot record a try", "job", job, "error", e.msg, NULL);
    cz_metrics_webhook_try(ok ? "delivered" : tries >= max ? "failed" : "retry");
    cz_log(ok ? CZ_LOG_INFO : CZ_LOG_WARN, ok ? "webhook delivered" : "webhook try failed",
           "job", job, "webhook_id", msg_id, "attempt", CZ_LOG_INT(tries), "max_attempts",
           CZ_LOG_INT(max), "status", CZ_LOG_INT(status), "error", ok ? "" : why, NULL);
  }
  json_decref(rows);
}

/* ---- the thread ---- */

static void *run(void *cls) {
  cz_webhook *w = cls;
  while (!atomic_load(&w->stop)) {
    schedule_finished(w);
    deliver_due(w);
    int64_t next = INT64_MAX, now = now_ms(), wait = POLL_MS;
    cz_error e;
    if (!cz_store_webhook_next(w->store, &next, &e) && next != INT64_MAX)
      wait = next <= now ? 0 : (next - now < POLL_MS ? next - now : POLL_MS);
    pthread_mutex_lock(&w->mu);
    if (!w->kicked && !atomic_load(&w->stop) && wait > 0) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      ts.tv_sec += (time_t)(wait / 1000);
      ts.tv_nsec += (long)(wait % 1000) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    w->kicked = false;
    pthread_mutex_unlock(&w->mu);
  }
  return NULL;
}

cz_err_code cz_webhook_start(cz_store *store, const cz_webhook_opts *o, cz_webhook **out,
                             cz_error *err) {
  /* not thread-safe by libcurl's contract: done here, on the main thread at start-up */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return cz_err_set(err, CZ_E_INTERNAL, "webhooks: libcurl does not initialize");
  cz_webhook *w = calloc(1, sizeof *w);
  if (!w || !(w->curl = curl_easy_init())) {
    free(w);
    curl_global_cleanup();
    return cz_err_set(err, CZ_E_NO_MEMORY, "webhooks: out of memory");
  }
  w->store = store;
  w->o = *o;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&w->mu, NULL);
  if (pthread_create(&w->thread, NULL, run, w) != 0) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    curl_easy_cleanup(w->curl);
    free(w);
    curl_global_cleanup();
    return cz_err_set(err, CZ_E_INTERNAL, "webhooks: cannot start the delivery thread");
  }
  *out = w;
  return CZ_E_OK;
}

void cz_webhook_kick(cz_webhook *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->kicked = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

void cz_webhook_stop(cz_webhook *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  atomic_store(&w->stop, true);
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  curl_easy_cleanup(w->curl);
  free(w);
  curl_global_cleanup();
}
