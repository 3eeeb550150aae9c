/* test_store_service: the store functions of the service features (issue 6): idempotency
 * keys (claim, complete, release, expiry, recovery). Each test in a fresh directory. */
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

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_idem_claim_complete_replay), CZ_TEST(test_idem_release),
      CZ_TEST(test_idem_expiry),                CZ_TEST(test_idem_upload_hash_later),
      CZ_TEST(test_idem_recover),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  cleanup();
  return rc;
}
