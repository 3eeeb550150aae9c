/* retention-bench: what the retention sweep costs against a store of N models and N finished
 * jobs (1 KiB blob each): cz_blob_usage over 2N files, an age sweep that removes everything,
 * and a quota sweep that removes the older half one candidate at a time (the quota pass
 * re-measures the blob store after every removal). Also the page-token round trip.
 * usage: retention-bench N DIR */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cz_blob.h"
#include "cz_retention.h"
#include "cz_store.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put(cz_blob_store *b, uint32_t v, char sha[65]) {
  cz_blob_writer w;
  cz_error e;
  uint64_t n;
  char buf[1024];
  for (size_t i = 0; i < sizeof buf; i += 4) memcpy(buf + i, &v, 4);
  if (cz_blob_writer_open(b, &w, &e) || cz_blob_writer_write(&w, buf, sizeof buf, &e) ||
      cz_blob_writer_commit(&w, sha, &n, &e)) {
    fprintf(stderr, "blob: %s\n", e.msg);
    exit(1);
  }
}

static void fill(cz_store *s, cz_blob_store *b, int n) {
  cz_error e;
  for (int i = 0; i < n; i++) {
    char mid[32], jid[32], sha[65];
    snprintf(mid, sizeof mid, "m%06d", i);
    snprintf(jid, sizeof jid, "j%06d", i);
    put(b, (uint32_t)(2 * i), sha);
    cz_model_row row = {mid, mid, sha, "safetensors", 1024, 1, 1, "[]", 1000 + 10 * i};
    json_t *job = NULL;
    if (cz_store_model_insert(s, &row, &e) ||
        cz_store_job_insert(s, jid, mid, "{}", 3, 1001 + 10 * i, &e) ||
        cz_store_job_claim(s, "bench", 60000, 1002 + 10 * i, &job, &e)) {
      fprintf(stderr, "store: %s\n", e.msg);
      exit(1);
    }
    json_decref(job);
    put(b, (uint32_t)(2 * i + 1), sha);
    cz_job_outcome o = {"succeeded", NULL, NULL, sha, "gguf", NULL, 1024};
    if (cz_store_job_finish(s, jid, "bench", &o, 1003 + 10 * i, &e)) {
      fprintf(stderr, "finish: %s\n", e.msg);
      exit(1);
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  int n = atoi(argv[1]);
  char db[4096];
  snprintf(db, sizeof db, "%s/compressd.db", argv[2]);
  cz_store *s;
  cz_blob_store *b;
  cz_error e;
  if (cz_store_open(db, &s, &e) || cz_blob_store_open(argv[2], &b, &e)) {
    fprintf(stderr, "open: %s\n", e.msg);
    return 1;
  }
  double t0 = now_s();
  fill(s, b, n);
  double t1 = now_s();
  uint64_t bytes, count;
  cz_blob_usage(b, &bytes, &count, &e);
  double t2 = now_s();
  printf("fill %d models + %d finished jobs: %.2f s\n", n, n, t1 - t0);
  printf("cz_blob_usage over %" PRIu64 " files (%" PRIu64 " bytes): %.2f ms\n", count, bytes,
         (t2 - t1) * 1e3);
  /* quota: keep half of the bytes: removes the older half of the jobs and models */
  cz_retention_policy q = {0, bytes / 2};
  cz_retention_stats st = {0};
  double t3 = now_s();
  if (cz_retention_sweep(s, b, &q, 1000000000, &st, &e)) fprintf(stderr, "quota: %s\n", e.msg);
  double t4 = now_s();
  printf("quota sweep: %d jobs + %d models, %d blobs, %" PRIu64 " bytes in %.2f s (%.2f ms "
         "per removal)\n", st.jobs_removed, st.models_removed, st.blobs_removed,
         st.bytes_reclaimed, t4 - t3,
         (t4 - t3) * 1e3 / (st.jobs_removed + st.models_removed + 1e-9));
  cz_retention_policy a = {1, 0};
  cz_retention_stats st2 = {0};
  double t5 = now_s();
  if (cz_retention_sweep(s, b, &a, 1000000000, &st2, &e)) fprintf(stderr, "age: %s\n", e.msg);
  double t6 = now_s();
  printf("age sweep: %d jobs + %d models, %d blobs in %.2f s (%.2f ms per removal)\n",
         st2.jobs_removed, st2.models_removed, st2.blobs_removed, t6 - t5,
         (t6 - t5) * 1e3 / (st2.jobs_removed + st2.models_removed + 1e-9));
  cz_retention_stats st3 = {0};
  double t7 = now_s();
  cz_retention_sweep(s, b, &a, 1000000000, &st3, &e);
  printf("an idle sweep (nothing to remove): %.3f ms\n", (now_s() - t7) * 1e3);
  cz_store_close(s);
  cz_blob_store_close(b);
  return 0;
}
