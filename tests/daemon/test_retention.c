/* test_retention: cz_retention's age and disk-quota sweeps and job deletion against a real
 * store and blob store, with the clock given by the test: what goes, in which order, and what
 * is never touched (a queued job and its model, a job whose webhook is still due, a model a
 * finished job names, a blob another row shares). */
#define _GNU_SOURCE /* nftw's FTW_DEPTH/FTW_PHYS */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_blob.h"
#include "cz_retention.h"
#include "cz_store.h"
#include "cz_test.h"

static char dir[256];
static cz_store *S;
static cz_blob_store *B;

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st, (void)type, (void)ftw;
  return remove(path) == 0 ? 0 : -1;
}

static void teardown(void) {
  cz_store_close(S);
  cz_blob_store_close(B);
  S = NULL;
  B = NULL;
  if (dir[0]) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  dir[0] = 0;
}

static bool setup(void) {
  snprintf(dir, sizeof dir, "/tmp/cz-test-retention.XXXXXX");
  if (mkdtemp(dir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    exit(2);
  }
  char db[320];
  snprintf(db, sizeof db, "%s/compressd.db", dir);
  cz_error e = {0};
  if (cz_store_open(db, &S, &e) || cz_blob_store_open(dir, &B, &e)) {
    printf("# open: %s\n", e.msg);
    cz_test_failures++;
    return false;
  }
  return true;
}

/* A blob of n bytes of value v; its sha256 into sha. */
static void put_blob(size_t n, int v, char sha[65]) {
  cz_blob_writer w;
  cz_error e = {0};
  uint64_t bytes;
  char *buf = malloc(n);
  memset(buf, v, n);
  CHECK(cz_blob_writer_open(B, &w, &e) == CZ_E_OK);
  CHECK(cz_blob_writer_write(&w, buf, n, &e) == CZ_E_OK);
  CHECK(cz_blob_writer_commit(&w, sha, &bytes, &e) == CZ_E_OK);
  free(buf);
}

static void add_model(const char *id, size_t n, int v, int64_t created) {
  char sha[65];
  put_blob(n, v, sha);
  cz_model_row row = {id, id, sha, "safetensors", n, 1, 1, "[]", created};
  cz_error e = {0};
  CHECK_EQ_INT(cz_store_model_insert(S, &row, &e), CZ_E_OK);
}

static void add_queued(const char *id, const char *model, int64_t at) {
  cz_error e = {0};
  CHECK_EQ_INT(cz_store_job_insert(S, id, model, "{}", 3, at, &e), CZ_E_OK);
}

/* A job on model that ran from finished-1 to finished and wrote an artifact of n bytes of v;
 * with hook, a webhook that is still waiting. */
static void add_finished(const char *id, const char *model, int64_t finished, size_t n, int v,
                         bool hook) {
  cz_error e = {0};
  cz_job_submit sub = {id, model, "{}", 3, finished - 1, NULL, 0,
                       hook ? "http://127.0.0.1:9/h" : NULL, hook ? "whsec_x" : NULL, 3};
  CHECK_EQ_INT(cz_store_job_submit(S, &sub, &e), CZ_E_OK);
  json_t *job = NULL;
  CHECK_EQ_INT(cz_store_job_claim(S, "test", 60000, finished - 1, &job, &e), CZ_E_OK);
  CHECK(job && strcmp(json_string_value(json_object_get(job, "id")), id) == 0);
  json_decref(job);
  char sha[65];
  put_blob(n, v, sha);
  cz_job_outcome o = {"succeeded", NULL, NULL, sha, "gguf", NULL, n};
  CHECK_EQ_INT(cz_store_job_finish(S, id, "test", &o, finished, &e), CZ_E_OK);
}

static bool model_exists(const char *id) {
  json_t *row = NULL;
  cz_error e;
  bool ok = cz_store_model_get(S, id, false, &row, &e) == CZ_E_OK;
  json_decref(row);
  return ok;
}

static bool job_exists(const char *id) {
  json_t *row = NULL;
  cz_error e;
  bool ok = cz_store_job_get(S, id, &row, &e) == CZ_E_OK;
  json_decref(row);
  return ok;
}

static uint64_t usage(uint64_t *count) {
  uint64_t bytes = 0, n = 0;
  cz_error e;
  CHECK_EQ_INT(cz_blob_usage(B, &bytes, &n, &e), CZ_E_OK);
  if (count) *count = n;
  return bytes;
}

static void test_age(void) {
  if (!setup()) return;
  /* cutoff = 100000 - 10000 = 90000 */
  add_model("m_old", 100, 1, 1000);       /* named only by j_old: goes after it */
  add_finished("j_old", "m_old", 2000, 50, 2, false);
  add_model("m_old2", 300, 3, 1500);      /* unused and old: goes; shares m_young's bytes */
  add_model("m_young", 300, 3, 99000);    /* young: stays (so does the shared blob) */
  add_model("m_busy", 100, 4, 1000);      /* a queued job: stays, and so does the job */
  add_model("m_y2", 100, 5, 500);         /* old, but a young finished job names it */
  add_finished("j_young", "m_y2", 99500, 50, 6, false);
  add_model("m_hook", 100, 7, 600);       /* old job whose webhook is still due: both stay */
  add_finished("j_hook", "m_hook", 3000, 50, 8, true);
  add_queued("q", "m_busy", 1200);        /* after the others: a claim takes the oldest */
  uint64_t n0;
  uint64_t u0 = usage(&n0);
  CHECK_EQ_INT(u0, 100 + 50 + 300 + 100 + 100 + 50 + 100 + 50);
  CHECK_EQ_INT(n0, 8);

  cz_retention_policy p = {10000, 0};
  cz_retention_stats st = {0};
  cz_error e = {0};
  CHECK_EQ_INT(cz_retention_sweep(S, B, &p, 100000, &st, &e), CZ_E_OK);
  CHECK(!job_exists("j_old"));
  CHECK(!model_exists("m_old"));
  CHECK(!model_exists("m_old2"));
  CHECK(model_exists("m_young"));
  CHECK(model_exists("m_busy") && job_exists("q"));
  CHECK(model_exists("m_y2") && job_exists("j_young"));
  CHECK(model_exists("m_hook") && job_exists("j_hook"));
  CHECK_EQ_INT(st.jobs_removed, 1);
  CHECK_EQ_INT(st.models_removed, 2);
  CHECK_EQ_INT(st.blobs_removed, 2);          /* j_old's artifact and m_old's file */
  CHECK_EQ_INT(st.bytes_reclaimed, 150);
  uint64_t n1;
  CHECK_EQ_INT(usage(&n1), u0 - 150);
  CHECK_EQ_INT(n1, 6);
  /* a second sweep at the same time finds nothing */
  cz_retention_stats st2 = {0};
  CHECK_EQ_INT(cz_retention_sweep(S, B, &p, 100000, &st2, &e), CZ_E_OK);
  CHECK_EQ_INT(st2.jobs_removed + st2.models_removed + st2.blobs_removed, 0);
  /* once the queued job has finished long ago, it and its model go too */
  json_t *job = NULL;
  CHECK_EQ_INT(cz_store_job_claim(S, "test", 60000, 5000, &job, &e), CZ_E_OK);
  json_decref(job);
  cz_job_outcome o = {"failed", "internal", "x", NULL, NULL, NULL, 0};
  CHECK_EQ_INT(cz_store_job_finish(S, "q", "test", &o, 5000, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_retention_sweep(S, B, &p, 100000, &st2, &e), CZ_E_OK);
  CHECK(!job_exists("q") && !model_exists("m_busy"));
  teardown();
}

static void test_quota(void) {
  if (!setup()) return;
  add_model("m_busy", 1000, 1, 50);       /* oldest, but a queued job uses it */
  add_model("m1", 2000, 2, 100);
  add_model("m2", 1500, 3, 150);
  add_finished("j1", "m2", 200, 3000, 4, false);
  add_model("m3", 1000, 5, 300);
  add_queued("q", "m_busy", 60);
  CHECK_EQ_INT(usage(NULL), 8500);
  cz_retention_policy p = {0, 4000};
  cz_retention_stats st = {0};
  cz_error e = {0};
  /* oldest first until under the quota: m1 (100), then j1 (200): 3500 left; m2 is unnamed
   * now but the quota is met, so it stays */
  CHECK_EQ_INT(cz_retention_sweep(S, B, &p, 1000000, &st, &e), CZ_E_OK);
  CHECK(!model_exists("m1"));
  CHECK(!job_exists("j1"));
  CHECK(model_exists("m2") && model_exists("m3") && model_exists("m_busy") && job_exists("q"));
  CHECK_EQ_INT(st.usage_bytes, 3500);
  CHECK_EQ_INT(usage(NULL), 3500);
  CHECK_EQ_INT(st.bytes_reclaimed, 5000);
  /* a quota nothing removable can meet: all but the busy model go, the sweep still succeeds */
  p.quota_bytes = 500;
  st = (cz_retention_stats){0};
  CHECK_EQ_INT(cz_retention_sweep(S, B, &p, 1000000, &st, &e), CZ_E_OK);
  CHECK(!model_exists("m2") && !model_exists("m3"));
  CHECK(model_exists("m_busy") && job_exists("q"));
  CHECK_EQ_INT(usage(NULL), 1000);
  CHECK_EQ_INT(st.models_removed, 2);
  teardown();
}

static void test_delete_job(void) {
  if (!setup()) return;
  add_model("m", 100, 1, 10);
  add_finished("j", "m", 20, 100, 1, false);  /* its artifact has the model's bytes */
  add_finished("j2", "m", 30, 70, 2, true);
  add_queued("q", "m", 40);
  cz_error e = {0};
  CHECK_EQ_INT(cz_retention_delete_job(S, B, "q", NULL, &e), CZ_E_CONFLICT);
  CHECK(job_exists("q"));
  cz_retention_stats st = {0};
  CHECK_EQ_INT(cz_retention_delete_job(S, B, "j", &st, &e), CZ_E_OK);
  CHECK(!job_exists("j"));
  CHECK_EQ_INT(st.blobs_removed, 0);            /* the model still names those bytes */
  CHECK_EQ_INT(usage(NULL), 170);
  CHECK_EQ_INT(cz_retention_delete_job(S, B, "j", &st, &e), CZ_E_NOT_FOUND);
  /* a job with a waiting webhook may be deleted on request; the webhook goes with it */
  CHECK_EQ_INT(cz_retention_delete_job(S, B, "j2", &st, &e), CZ_E_OK);
  json_t *w = NULL;
  CHECK_EQ_INT(cz_store_webhook_get(S, "j2", &w, &e), CZ_E_NOT_FOUND);
  CHECK_EQ_INT(st.blobs_removed, 1);
  CHECK_EQ_INT(st.bytes_reclaimed, 70);
  CHECK_EQ_INT(usage(NULL), 100);
  /* the model of a queued job: 409 */
  char sha[65];
  bool blob_free;
  CHECK_EQ_INT(cz_store_model_delete(S, "m", sha, &blob_free, &e), CZ_E_CONFLICT);
  teardown();
}

int main(void) {
  static const cz_test_case cases[] = {CZ_TEST(test_age), CZ_TEST(test_quota),
                                       CZ_TEST(test_delete_job)};
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
