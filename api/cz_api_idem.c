/* cz_api_idem: Idempotency-Key on POST /v1/models and POST /v1/jobs
 * (draft-ietf-httpapi-idempotency-key-header; api-conventions.md 3.3).
 *
 * A request with a key claims it in the store (cz_store_idem_claim) before it creates
 * anything; the claim is completed with the id and status of the created resource just
 * before the answer is queued (so a client that got the answer never sees "in flight"), and
 * forgotten when the request fails, so a failed request may be retried with its key. Then:
 *   same key, same request      -> the same resource with the original status, and the
 *                                  header Idempotent-Replayed: true (the resource as it is
 *                                  now: a job may have moved on since)
 *   same key, different request -> 422 idempotency_key_mismatch
 *   same key, first still going -> 409 idempotency_key_in_flight
 * The request's fingerprint is the sha256 of the JSON body for jobs, and for uploads the
 * sha256 of "<sha256 of the uploaded bytes>\n<model name>": a replayed upload is streamed and
 * hashed but not stored again. Keys live CZ_IDEM_TTL_MS and are scoped per route and per
 * API token (the request's principal).
 * Without the header nothing changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_api_service.h"
#include "cz_http_parse.h"
#include "cz_log.h"
#include "cz_sha256.h"

#define CZ_IDEM_TTL_MS (24LL * 3600 * 1000)  /* a key is remembered this long after its claim */
#define CZ_IDEM_MAX_KEY 255                   /* bytes of an Idempotency-Key */
#define SCOPE_JOBS "POST /v1/jobs"
#define SCOPE_MODELS "POST /v1/models"
#define DEFAULT_MODEL_NAME "model"            /* as cz_api.c names an upload without ?name= */

typedef enum { IDEM_NEW, IDEM_REPLAY } idem_mode;

typedef struct {
  idem_mode mode;
  const char *scope;           /* SCOPE_JOBS or SCOPE_MODELS */
  char store_scope[96];        /* scope + the caller's token id: keys are per caller */
  char key[CZ_IDEM_MAX_KEY + 1];
  char hash[65];              /* jobs: known at claim; uploads: computed when completing */
  bool settled;               /* the claim was completed or released */
  cz_idem_entry entry;        /* replay: the first request's record */
  cz_sha256 sha;              /* replay of an upload: the body's hash */
  uint64_t bytes;
  bool too_large;
} idem_state;

static void hex_of(const void *data, size_t len, char hex[65]) {
  cz_sha256 c;
  uint8_t d[32];
  cz_sha256_init(&c);
  cz_sha256_update(&c, data, len);
  cz_sha256_final(&c, d);
  cz_sha256_hex(d, hex);
}

/* Fingerprint of an upload: its content address and the name it is stored under. */
static void upload_hash(const char *file_sha, const char *name, char hex[65]) {
  char buf[64 + 1 + 512];
  int n = snprintf(buf, sizeof buf, "%s\n%s", file_sha, name);
  hex_of(buf, n < 0 ? 0 : ((size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1), hex);
}

static const char *upload_name(cz_req *r) {
  const char *n = cz_req_arg(r, "name");
  return n ? n : DEFAULT_MODEL_NAME;
}

static void release(cz_req *r, idem_state *st) {
  if (st->settled || st->mode != IDEM_NEW) return;
  st->settled = true;
  cz_api *api = r->app;
  cz_error e = {0};
  if (cz_store_idem_release(api->store, st->store_scope, st->key, &e))
    cz_log(CZ_LOG_WARN, "idempotency release failed", "key", st->key, "error", e.msg, NULL);
}

/* Just before the answer of the first request goes out: a success completes the claim. */
static void on_reply(cz_req *r, unsigned status, struct MHD_Response *resp) {
  idem_state *st = r->svc;
  if (!st || st->mode != IDEM_NEW || st->settled) return;
  if (status >= 300 || !r->created_id[0]) {
    release(r, st);
    return;
  }
  cz_api *api = r->app;
  cz_error e = {0};
  if (strcmp(st->scope, SCOPE_MODELS) == 0) {
    json_t *row;
    if (cz_store_model_get(api->store, r->created_id, false, &row, &e)) {
      release(r, st);
      return;
    }
    upload_hash(json_string_value(json_object_get(row, "sha256")), upload_name(r), st->hash);
    json_decref(row);
  }
  st->settled = true;
  if (cz_store_idem_complete(api->store, st->store_scope, st->key, st->hash, r->created_id,
                             (int)status, &e))
    cz_log(CZ_LOG_WARN, "idempotency record failed", "key", st->key, "error", e.msg, NULL);
}

static void svc_done(cz_req *r, bool ok) {
  idem_state *st = r->svc;
  if (!st) return;
  release(r, st);  /* never answered with a success: forget the claim */
  free(st);
  r->svc = NULL;
}

/* Parse the header and claim the key. Returns the state (r->svc), or NULL with *replied set
 * when an answer was queued (bad key, in flight, database error). No header: NULL, !*replied. */
static idem_state *begin(cz_req *r, const char *scope, const char *hash, bool *replied) {
  *replied = false;
  const char *h = cz_req_header(r, "Idempotency-Key");
  if (!h) return NULL;
  *replied = true;
  idem_state *st = calloc(1, sizeof *st);
  if (!st) {
    cz_reply_error(r, CZ_E_NO_MEMORY, "out of memory");
    return NULL;
  }
  if (!cz_idempotency_key_parse(h, CZ_IDEM_MAX_KEY, st->key)) {
    free(st);
    cz_reply_error(r, CZ_E_INVALID_ARGUMENT,
                   "Idempotency-Key: 1 to %d visible ASCII characters (optionally in double "
                   "quotes), e.g. a UUID", CZ_IDEM_MAX_KEY);
    return NULL;
  }
  st->scope = scope;
  snprintf(st->store_scope, sizeof st->store_scope, "%s%s%s", scope, r->principal[0] ? " " : "",
           r->principal);
  if (hash) snprintf(st->hash, sizeof st->hash, "%s", hash);
  cz_api *api = r->app;
  cz_error e = {0};
  if (cz_store_idem_claim(api->store, st->store_scope, st->key, hash, cz_api_now_ms(), CZ_IDEM_TTL_MS,
                          &st->entry, &e)) {
    free(st);
    cz_reply_err(r, &e);
    return NULL;
  }
  if (st->entry.found && !st->entry.done) {
    free(st);
    cz_reply_error(r, CZ_E_IDEMPOTENCY_IN_FLIGHT,
                   "a request with this Idempotency-Key is still being processed; retry "
                   "once it has been answered");
    return NULL;
  }
  st->mode = st->entry.found ? IDEM_REPLAY : IDEM_NEW;
  r->svc = st;
  r->svc_done = svc_done;
  if (st->mode == IDEM_NEW) r->on_reply = on_reply;
  *replied = false;
  return st;
}

static void replayed_header(cz_req *r, unsigned status, struct MHD_Response *resp) {
  MHD_add_response_header(resp, "Idempotent-Replayed", "true");
}

/* Answer a replay: the same request gets the same resource; another one 422. */
static enum MHD_Result replay(cz_req *r, idem_state *st, const char *hash) {
  if (strcmp(st->entry.request_hash, hash) != 0)
    return cz_reply_error(r, CZ_E_IDEMPOTENCY_MISMATCH,
                          "this Idempotency-Key was already used with a different request; "
                          "use a new key for a new request");
  r->on_reply = replayed_header;
  unsigned status = (unsigned)st->entry.status;
  if (strcmp(st->scope, SCOPE_JOBS) == 0)
    return cz_api_reply_job(r, status, st->entry.resource_id);
  return cz_api_reply_model(r, status, st->entry.resource_id);
}

enum MHD_Result cz_api_job_create_idem(cz_req *r) {
  if (!cz_req_header(r, "Idempotency-Key")) return cz_api_job_create(r);
  char hash[65];
  hex_of(r->body ? r->body : "", r->body_len, hash);
  bool replied;
  idem_state *st = begin(r, SCOPE_JOBS, hash, &replied);
  if (replied) return MHD_YES;
  if (!st) return cz_api_job_create(r);
  if (st->mode == IDEM_REPLAY) return replay(r, st, hash);
  return cz_api_job_create(r);  /* on_reply completes or releases the claim */
}

enum MHD_Result cz_api_model_upload_idem(cz_req *r, cz_upload_phase phase, const char *data,
                                         size_t len) {
  idem_state *st = r->svc;
  if (phase == CZ_UPLOAD_BEGIN) {
    bool replied;
    st = begin(r, SCOPE_MODELS, NULL, &replied);
    if (replied) return MHD_YES;
    if (st && st->mode == IDEM_REPLAY) {
      /* hash the body instead of storing it again: the first upload under this key was
       * valid, and a different body or name is refused below */
      cz_sha256_init(&st->sha);
      return MHD_YES;
    }
    return cz_api_model_upload(r, phase, data, len);
  }
  if (!st || st->mode == IDEM_NEW) return cz_api_model_upload(r, phase, data, len);
  cz_api *api = r->app;
  if (phase == CZ_UPLOAD_CHUNK) {
    if (len > api->max_upload_bytes - st->bytes) st->too_large = true;
    if (!st->too_large) {
      cz_sha256_update(&st->sha, data, len);
      st->bytes += len;
    }
    return MHD_YES;
  }
  if (st->too_large)
    return cz_reply_error(r, CZ_E_TOO_LARGE, "the upload exceeds the limit of %llu bytes",
                          (unsigned long long)api->max_upload_bytes);
  uint8_t d[32];
  char file_sha[65], hash[65];
  cz_sha256_final(&st->sha, d);
  cz_sha256_hex(d, file_sha);
  upload_hash(file_sha, upload_name(r), hash);
  return replay(r, st, hash);
}
