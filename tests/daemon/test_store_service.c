/* test_store_service: the store functions of the service features (issue 6): idempotency
 * keys (claim, complete, release, expiry, recovery), retry, the queue limit. Each test in a
 * fresh directory. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH/FTW_PHYS */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_store.h"
#include "cz_test.h"

static char dir[256];
static char db_path[320];

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)type;
  (void)ftw;
  return remove(path) == 0 ? 0 : -1;
}

static void cleanup(void) {
  if (dir[0]) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  dir[0] = 0;
}

static cz_store *fresh_store(void) {
  cleanup();
  snprintf(dir, sizeof dir, "/tmp/cz-test-store-svc.XXXXXX");
  if (mkdtemp(dir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    exit(2);
  }
  snprintf(db_path, sizeof db_path, "%s/compressd.db", dir);
  cz_store *s = NULL;
  cz_error err = {0};
  if (cz_store_open(db_path, &s, &err)) {
    printf("# cz_store_open: %s\n", err.msg);
    cz_test_failures++;
    return NULL;
  }
  return s;
}

static cz_store *reopen(cz_store *s) {
  cz_store_close(s);
  cz_error err = {0};
  if (cz_store_open(db_path, &s, &err)) {
    printf("# cz_store_open: %s\n", err.msg);
    cz_test_failures++;
    return NULL;
  }
  return s;
}

#define CHECK_OK(call)                                                                    \
  do {                                                                                    \
    cz_err_code _rc = (call);                                                             \
    if (_rc != CZ_E_OK) {                                                                 \
      cz_test_failures++;                                                                 \
      printf("# %s:%d: %s failed: %s %s\n", __FILE__, __LINE__, #call, cz_err_name(_rc),  \
             err.msg);                                                                    \
    }                                                                                     \
  } while (0)

#define HOUR (3600LL * 1000)
static const char *const H1 = "1111111111111111111111111111111111111111111111111111111111111111";
static const char *const H2 = "2222222222222222222222222222222222222222222222222222222222222222";

/* ---- idempotency keys ---- */

static void test_idem_claim_complete_replay(void) {
  cz_store *s = fresh_store();
  if (!s) return;
  cz_error err = {0};
  cz_idem_entry e;
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k1", H1, 1000, 24 * HOUR, &e, &err));
  CHECK(!e.found);
  /* a second claim while the first is in flight sees it */
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k1", H1, 1001, 24 * HOUR, &e, &err));
  CHECK(e.found && !e.done);
  CHECK_EQ_STR(e.request_hash, H1);
  CHECK_OK(cz_store_idem_complete(s, "POST /v1/jobs", "k1", H1, "job_a", 202, &err));
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k1", H2, 1002, 24 * HOUR, &e, &err));
  CHECK(e.found && e.done);
  CHECK_EQ_STR(e.request_hash, H1);  /* the first request's, not the asker's */
  CHECK_EQ_STR(e.resource_id, "job_a");
  CHECK_EQ_INT(e.status, 202);
  /* scopes are separate */
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/models", "k1", NULL, 1003, 24 * HOUR, &e, &err));
  CHECK(!e.found);
  /* durable */
  s = reopen(s);
  if (!s) return;
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k1", H1, 1004, 24 * HOUR, &e, &err));
  CHECK(e.found && e.done);
  CHECK_EQ_STR(e.resource_id, "job_a");
  cz_store_close(s);
}

static void test_idem_release(void) {
  cz_store *s = fresh_store();
  if (!s) return;
  cz_error err = {0};
  cz_idem_entry e;
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k", H1, 1000, HOUR, &e, &err));
  CHECK_OK(cz_store_idem_release(s, "POST /v1/jobs", "k", &err));
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k", H2, 1001, HOUR, &e, &err));
  CHECK(!e.found);  /* released: the key is new again */
  CHECK_OK(cz_store_idem_complete(s, "POST /v1/jobs", "k", H2, "job_b", 202, &err));
  /* release never removes a completed record */
  CHECK_OK(cz_store_idem_release(s, "POST /v1/jobs", "k", &err));
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k", H2, 1002, HOUR, &e, &err));
  CHECK(e.found && e.done);
  /* completing a key that was never claimed is an error */
  CHECK(cz_store_idem_complete(s, "POST /v1/jobs", "nope", H1, "job_c", 202, &err) ==
        CZ_E_NOT_FOUND);
  cz_store_close(s);
}

static void test_idem_expiry(void) {
  cz_store *s = fresh_store();
  if (!s) return;
  cz_error err = {0};
  cz_idem_entry e;
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k", H1, 0, HOUR, &e, &err));
  CHECK_OK(cz_store_idem_complete(s, "POST /v1/jobs", "k", H1, "job_a", 202, &err));
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k", H2, HOUR - 1, HOUR, &e, &err));
  CHECK(e.found);
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/jobs", "k", H2, HOUR, HOUR, &e, &err));
  CHECK(!e.found);  /* expired: forgotten, and claimed anew */
  cz_store_close(s);
}

static void test_idem_upload_hash_later(void) {
  cz_store *s = fresh_store();
  if (!s) return;
  cz_error err = {0};
  cz_idem_entry e;
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/models", "u", NULL, 0, HOUR, &e, &err));
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/models", "u", NULL, 1, HOUR, &e, &err));
  CHECK(e.found && !e.done);
  CHECK_EQ_STR(e.request_hash, "");  /* unknown while the upload streams */
  CHECK_OK(cz_store_idem_complete(s, "POST /v1/models", "u", H1, "mdl_a", 201, &err));
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/models", "u", NULL, 2, HOUR, &e, &err));
  CHECK_EQ_STR(e.request_hash, H1);
  CHECK_EQ_INT(e.status, 201);
  cz_store_close(s);
}

static void test_idem_recover(void) {
  cz_store *s = fresh_store();
  if (!s) return;
  cz_error err = {0};
  cz_idem_entry e;
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/models", "in-flight", NULL, 0, HOUR, &e, &err));
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/models", "done", NULL, 0, HOUR, &e, &err));
  CHECK_OK(cz_store_idem_complete(s, "POST /v1/models", "done", H1, "mdl_a", 201, &err));
  s = reopen(s);  /* as after a crash */
  if (!s) return;
  int requeued = -1, failed = -1;
  CHECK_OK(cz_store_recover(s, 10, &requeued, &failed, &err));
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/models", "in-flight", NULL, 11, HOUR, &e, &err));
  CHECK(!e.found);  /* the dead process's claim is gone */
  CHECK_OK(cz_store_idem_claim(s, "POST /v1/models", "done", NULL, 11, HOUR, &e, &err));
  CHECK(e.found && e.done);  /* a completed record stays */
  cz_store_close(s);
}

/* ---- retry and the queue limit ---- */

static void add_model(cz_store *s, const char *id) {
  cz_error err = {0};
  cz_model_row m = {id, "m", H1, "gguf", 10, 1, 1, "[]", 0};
  CHECK_OK(cz_store_model_insert(s, &m, &err));
}

static const char *state_of(cz_store *s, const char *id, char *buf) {
  json_t *j = NULL;
  cz_error err = {0};
  buf[0] = 0;
  if (cz_store_job_get(s, id, &j, &err) == CZ_E_OK)
    snprintf(buf, 16, "%s", json_string_value(json_object_get(j, "state")));
  json_decref(j);
  return buf;
}

/* Claim the oldest queued job and finish it with state. */
static void run_to(cz_store *s, const char *state, int64_t now) {
  cz_error err = {0};
  json_t *j = NULL;
  CHECK_OK(cz_store_job_claim(s, "w", 1000, now, &j, &err));
  if (!j) {
    CHECK(j != NULL);
    return;
  }
  cz_job_outcome o = {.state = state, .error_code = "internal", .error_message = "boom"};
  if (strcmp(state, "succeeded") == 0) {
    o.error_code = o.error_message = NULL;
    o.artifact_sha256 = o.report_sha256 = H2;
    o.artifact_format = "gguf";
    o.artifact_bytes = 1;
  }
  CHECK_OK(cz_store_job_finish(s, json_string_value(json_object_get(j, "id")), "w", &o, now, &err));
  json_decref(j);
}

static void test_job_retry(void) {
  cz_store *s = fresh_store();
  if (!s) return;
  cz_error err = {0};
  char st[16];
  add_model(s, "mdl_a");
  CHECK_OK(cz_store_job_insert(s, "job_1", "mdl_a", "{\"steps\":[]}", 3, 1, &err));
  CHECK(cz_store_job_retry(s, "job_1", "job_x", 3, 0, 2, &err) == CZ_E_CONFLICT);  /* queued */
  run_to(s, "failed", 3);
  CHECK_OK(cz_store_job_retry(s, "job_1", "job_2", 5, 0, 4, &err));
  json_t *j = NULL;
  CHECK_OK(cz_store_job_get(s, "job_2", &j, &err));
  CHECK_EQ_STR(json_string_value(json_object_get(j, "state")), "queued");
  CHECK_EQ_STR(json_string_value(json_object_get(j, "retry_of")), "job_1");
  CHECK_EQ_STR(json_string_value(json_object_get(j, "model_id")), "mdl_a");
  CHECK_EQ_STR(json_string_value(json_object_get(j, "recipe")), "{\"steps\":[]}");
  CHECK_EQ_INT(json_integer_value(json_object_get(j, "max_attempts")), 5);
  CHECK_EQ_INT(json_integer_value(json_object_get(j, "attempts")), 0);
  json_decref(j);
  CHECK_EQ_STR(state_of(s, "job_1", st), "failed");  /* the original is untouched */
  CHECK(cz_store_job_retry(s, "nope", "job_x", 3, 0, 5, &err) == CZ_E_NOT_FOUND);
  run_to(s, "succeeded", 6);                         /* job_2 */
  CHECK(cz_store_job_retry(s, "job_2", "job_x", 3, 0, 7, &err) == CZ_E_CONFLICT);
  CHECK_OK(cz_store_job_insert(s, "job_3", "mdl_a", "{}", 3, 8, &err));
  CHECK_OK(cz_store_job_cancel(s, "job_3", 9, &(bool){false}, &err));
  CHECK_OK(cz_store_job_retry(s, "job_3", "job_4", 3, 0, 10, &err));  /* canceled: fine */
  /* a model deleted since: conflict, nothing inserted */
  run_to(s, "failed", 11);                           /* job_4 */
  char sha[65];
  bool blob_free;
  CHECK_OK(cz_store_model_delete(s, "mdl_a", sha, &blob_free, &err));
  CHECK(cz_store_job_retry(s, "job_4", "job_5", 3, 0, 12, &err) == CZ_E_CONFLICT);
  CHECK(cz_store_job_get(s, "job_5", &j, &err) == CZ_E_NOT_FOUND);
  cz_store_close(s);
}

static void test_queue_limit(void) {
  cz_store *s = fresh_store();
  if (!s) return;
  cz_error err = {0};
  add_model(s, "mdl_a");
  cz_job_submit a = {"job_1", "mdl_a", "{}", 3, 1, NULL, 2, NULL, NULL, 0};
  CHECK_OK(cz_store_job_submit(s, &a, &err));
  a.id = "job_2";
  CHECK_OK(cz_store_job_submit(s, &a, &err));
  a.id = "job_3";
  CHECK(cz_store_job_submit(s, &a, &err) == CZ_E_QUEUE_FULL);
  a.max_queued = 0;  /* no limit */
  CHECK_OK(cz_store_job_submit(s, &a, &err));
  a.id = "job_4";
  a.max_queued = 4;
  CHECK_OK(cz_store_job_submit(s, &a, &err));
  run_to(s, "failed", 2);  /* job_1 leaves the queue */
  CHECK_OK(cz_store_job_retry(s, "job_1", "job_5", 3, 4, 3, &err));
  CHECK(cz_store_job_retry(s, "job_1", "job_6", 3, 4, 3, &err) == CZ_E_QUEUE_FULL);
  a.id = "job_7";
  a.model_id = "mdl_missing";
  a.max_queued = 0;
  CHECK(cz_store_job_submit(s, &a, &err) == CZ_E_NOT_FOUND);
  cz_store_close(s);
}

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_idem_claim_complete_replay), CZ_TEST(test_idem_release),
      CZ_TEST(test_idem_expiry),                CZ_TEST(test_idem_upload_hash_later),
      CZ_TEST(test_idem_recover),               CZ_TEST(test_job_retry),
      CZ_TEST(test_queue_limit),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  cleanup();
  return rc;
}
