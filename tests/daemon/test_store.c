/* test_store: the SQLite store (schema, models, the job queue), each test in a fresh directory.
 * What the store wrote is read back both through its API and through a separate sqlite3
 * connection, so that columns the API does not return (the lease) are checked too. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH/FTW_PHYS */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_store.h"
#include "cz_test.h"

/* ---- helpers ---- */

static char dir[256];
static char db_path[320];

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)type;
  (void)ftw;
  return remove(path) == 0 ? 0 : -1;
}

/* A fresh directory and database path per test. */
static void fresh(void) {
  if (dir[0]) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  snprintf(dir, sizeof dir, "/tmp/cz-test-store.XXXXXX");
  if (mkdtemp(dir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    exit(2);
  }
  snprintf(db_path, sizeof db_path, "%s/compressd.db", dir);
}

static cz_store *open_store(void) {
  cz_store *s = NULL;
  cz_error err = {0};
  cz_err_code rc = cz_store_open(db_path, &s, &err);
  if (rc != CZ_E_OK) {
    printf("# cz_store_open(%s): %s: %s\n", db_path, cz_err_name(rc), err.msg);
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
      printf("# %s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cz_err_name(_rc));    \
    }                                                                                     \
  } while (0)

#define CHECK_CODE(call, want)                                                            \
  do {                                                                                    \
    cz_err_code _rc = (call);                                                             \
    if (_rc != (want)) {                                                                  \
      cz_test_failures++;                                                                 \
      printf("# %s:%d: %s returned %s, want %s\n", __FILE__, __LINE__, #call,             \
             cz_err_name(_rc), cz_err_name(want));                                        \
    }                                                                                     \
  } while (0)

/* A second, independent connection to the database file. */
static sqlite3 *raw_open(void) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    printf("# sqlite3_open %s: %s\n", db_path, db ? sqlite3_errmsg(db) : "?");
    cz_test_failures++;
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

/* First column of the first row of sql, as int64 (-12345 when there is no row / an error) or
 * text (copied to buf, "<none>" / "<null>"). */
static int64_t raw_int(const char *sql) {
  sqlite3 *db = raw_open();
  sqlite3_stmt *st = NULL;
  int64_t v = -12345;
  if (db && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    v = sqlite3_column_int64(st, 0);
  else if (db && st == NULL)
    printf("# %s: %s\n", sql, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static const char *raw_text(const char *sql, char *buf, size_t n) {
  sqlite3 *db = raw_open();
  sqlite3_stmt *st = NULL;
  snprintf(buf, n, "<none>");
  if (db && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    snprintf(buf, n, "%s",
             sqlite3_column_type(st, 0) == SQLITE_NULL ? "<null>"
                                                       : (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return buf;
}

static bool raw_exec(const char *sql) {
  sqlite3 *db = raw_open();
  char *msg = NULL;
  bool ok = db && sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK;
  if (!ok) {
    printf("# %s: %s\n", sql, msg ? msg : "?");
    cz_test_failures++;
  }
  sqlite3_free(msg);
  sqlite3_close(db);
  return ok;
}

static const char *str_of(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}
static json_int_t int_of(const json_t *o, const char *key) {
  return json_integer_value(json_object_get(o, key));
}

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define SHA_D "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
#define RECIPE "{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"output\":{\"format\":\"gguf\"}}"
#define LEASE 30000

static cz_err_code add_model(cz_store *s, const char *id, const char *sha, int64_t t) {
  cz_model_row m = {.id = id,
                    .name = "tiny.gguf",
                    .sha256 = sha,
                    .format = "gguf",
                    .bytes = 12345,
                    .n_tensors = 2,
                    .n_params = 4096,
                    .tensors_json = "[{\"name\":\"a.weight\",\"dtype\":\"F16\",\"shape\":[64,32]}]",
                    .created_at = t};
  cz_error err = {0};
  cz_err_code rc = cz_store_model_insert(s, &m, &err);
  if (rc) printf("# model insert %s: %s\n", id, err.msg);
  return rc;
}

static cz_err_code add_job(cz_store *s, const char *id, const char *model, int max_attempts,
                           int64_t t) {
  cz_error err = {0};
  cz_err_code rc = cz_store_job_insert(s, id, model, RECIPE, max_attempts, t, &err);
  if (rc && rc != CZ_E_NOT_FOUND) printf("# job insert %s: %s\n", id, err.msg);
  return rc;
}

/* Claim and return the claimed id in buf ("" when nothing was queued). */
static const char *claim(cz_store *s, const char *owner, int64_t now, char *buf, size_t n) {
  json_t *job = NULL;
  cz_error err = {0};
  buf[0] = 0;
  cz_err_code rc = cz_store_job_claim(s, owner, LEASE, now, &job, &err);
  if (rc) {
    printf("# claim: %s: %s\n", cz_err_name(rc), err.msg);
    cz_test_failures++;
  }
  if (job) snprintf(buf, n, "%s", str_of(job, "id"));
  json_decref(job);
  return buf;
}

static json_t *get_job(cz_store *s, const char *id) {
  json_t *j = NULL;
  cz_error err = {0};
  if (cz_store_job_get(s, id, &j, &err) != CZ_E_OK) {
    printf("# job get %s: %s\n", id, err.msg);
    cz_test_failures++;
    return json_object();
  }
  return j;
}

static void check_job_state(cz_store *s, const char *id, const char *state) {
  json_t *j = get_job(s, id);
  if (!str_of(j, "state") || strcmp(str_of(j, "state"), state) != 0) {
    printf("# job %s is %s, want %s\n", id, str_of(j, "state") ? str_of(j, "state") : "?", state);
    cz_test_failures++;
  }
  json_decref(j);
}

/* ---- schema ---- */

static void test_open_schema(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  int last = cz_migrations[cz_migrations_count - 1].version;
  CHECK(cz_migrations_count >= 1);
  CHECK_EQ_INT(cz_store_schema_version(s), last);
  CHECK(cz_store_ping(s));
  CHECK_OK(add_model(s, "mdl_1", SHA_A, 1000));
  cz_store_close(s);

  /* what the file holds, seen by another connection */
  CHECK_EQ_INT(raw_int("PRAGMA user_version"), last);
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                       "('models', 'jobs')"), 2);
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                       "('jobs_state', 'jobs_model')"), 2);

  /* reopen: no migration is applied twice, data stays */
  for (int i = 0; i < 2; i++) {
    s = open_store();
    if (!s) return;
    CHECK_EQ_INT(cz_store_schema_version(s), last);
    json_t *m = NULL;
    cz_error err = {0};
    CHECK_OK(cz_store_model_get(s, "mdl_1", false, &m, &err));
    CHECK_EQ_STR(str_of(m, "sha256"), SHA_A);
    json_decref(m);
    cz_store_close(s);
  }
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM models"), 1);
}

static void test_newer_schema_refused(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_store_close(s);
  raw_exec("PRAGMA user_version = 99");
  s = NULL;
  cz_error err = {0};
  CHECK_EQ_INT(cz_store_open(db_path, &s, &err), CZ_E_UNSUPPORTED_VERSION);
  CHECK_EQ_INT(err.code, CZ_E_UNSUPPORTED_VERSION);
  CHECK(strstr(err.msg, "newer") != NULL);
  CHECK(strstr(err.msg, "99") != NULL);
  CHECK(s == NULL);
  if (s) cz_store_close(s);
  /* and the file was left alone */
  CHECK_EQ_INT(raw_int("PRAGMA user_version"), 99);
}

static void test_wal_mode(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  char buf[32];
  CHECK_EQ_STR(raw_text("PRAGMA journal_mode", buf, sizeof buf), "wal");
  cz_store_close(s);
  /* WAL is persistent: the file stays in WAL mode after close */
  CHECK_EQ_STR(raw_text("PRAGMA journal_mode", buf, sizeof buf), "wal");
}

/* Two processes starting at once on a fresh file (a daemon and a CLI, two daemons) must both
 * open it: the migration must not be applied twice. */
typedef struct {
  pthread_barrier_t *barrier;
  cz_err_code rc;
  cz_error err;
} open_arg;

static void *open_thread(void *p) {
  open_arg *a = p;
  cz_store *s = NULL;
  pthread_barrier_wait(a->barrier);
  a->rc = cz_store_open(db_path, &s, &a->err);
  if (s) cz_store_close(s);
  return NULL;
}

static void test_concurrent_first_open(void) {
  int failures = 0, rounds = 20;
  for (int r = 0; r < rounds; r++) {
    fresh();
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, 2);
    open_arg a[2] = {{&b, CZ_E_OK, {0}}, {&b, CZ_E_OK, {0}}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, open_thread, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&b);
    for (int i = 0; i < 2; i++) {
      if (a[i].rc != CZ_E_OK && failures++ < 3)
        printf("# round %d: concurrent cz_store_open: %s: %s\n", r, cz_err_name(a[i].rc),
               a[i].err.msg);
    }
  }
  if (failures) printf("# %d of %d concurrent opens of a fresh database failed\n", failures,
                       2 * rounds);
  CHECK_EQ_INT(failures, 0);
}

/* ---- models ---- */

static void test_models(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  char id[32];
  for (int i = 1; i <= 5; i++) {
    snprintf(id, sizeof id, "mdl_%d", i);
    CHECK_OK(add_model(s, id, i % 2 ? SHA_A : SHA_B, 1000 + i));
  }
  json_t *m = NULL;
  CHECK_OK(cz_store_model_get(s, "mdl_2", false, &m, &err));
  CHECK_EQ_STR(str_of(m, "id"), "mdl_2");
  CHECK_EQ_STR(str_of(m, "name"), "tiny.gguf");
  CHECK_EQ_STR(str_of(m, "sha256"), SHA_B);
  CHECK_EQ_STR(str_of(m, "format"), "gguf");
  CHECK_EQ_INT(int_of(m, "bytes"), 12345);
  CHECK_EQ_INT(int_of(m, "n_tensors"), 2);
  CHECK_EQ_INT(int_of(m, "n_params"), 4096);
  CHECK_EQ_INT(int_of(m, "created_at"), 1002);
  CHECK(json_object_get(m, "tensors") == NULL);
  CHECK(json_is_integer(json_object_get(m, "seq")));
  json_decref(m);
  m = NULL;
  CHECK_OK(cz_store_model_get(s, "mdl_2", true, &m, &err));
  CHECK_EQ_STR(str_of(m, "tensors"), "[{\"name\":\"a.weight\",\"dtype\":\"F16\",\"shape\":[64,32]}]");
  json_decref(m);
  m = NULL;
  CHECK_EQ_INT(cz_store_model_get(s, "mdl_nope", false, &m, &err), CZ_E_NOT_FOUND);
  CHECK(strstr(err.msg, "mdl_nope") != NULL);
  CHECK(m == NULL);

  /* paging: newest first, next_seq until the end, for several page sizes */
  for (int limit = 1; limit <= 6; limit++) {
    int64_t before = 0, next = -1;
    int seen = 0, expect = 5, pages = 0;
    bool ordered = true;
    do {
      json_t *items = NULL;
      CHECK_OK(cz_store_model_list(s, limit, before, &items, &next, &err));
      if (!items) break;
      CHECK((int)json_array_size(items) <= limit);
      size_t i;
      json_t *it;
      json_array_foreach(items, i, it) {
        snprintf(id, sizeof id, "mdl_%d", expect);
        ordered &= str_of(it, "id") && strcmp(str_of(it, "id"), id) == 0;
        ordered &= json_object_get(it, "tensors") == NULL;
        expect--;
        seen++;
      }
      /* a full page with more to come points past its last row; the last page says 0 */
      if (next) CHECK_EQ_INT(next, int_of(json_array_get(items, json_array_size(items) - 1), "seq"));
      json_decref(items);
      before = next;
      pages++;
    } while (next != 0 && pages < 10);
    if (!ordered || seen != 5 || pages != (5 + limit - 1) / limit) {
      printf("# model_list limit %d: %d rows in %d pages, ordered %d\n", limit, seen, pages,
             ordered);
      cz_test_failures++;
    }
  }
  cz_store_close(s);
}

static void test_model_delete(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  char sha[65] = "";
  bool blob_free = true;
  CHECK_OK(add_model(s, "mdl_a1", SHA_A, 1));
  CHECK_OK(add_model(s, "mdl_a2", SHA_A, 2));
  CHECK_OK(add_model(s, "mdl_b", SHA_B, 3));
  CHECK_OK(add_model(s, "mdl_c", SHA_C, 4));

  /* shared blob: the first delete keeps it, the last frees it */
  CHECK_OK(cz_store_model_delete(s, "mdl_a1", sha, &blob_free, &err));
  CHECK_EQ_STR(sha, SHA_A);
  CHECK(!blob_free);
  json_t *m = NULL;
  CHECK_EQ_INT(cz_store_model_get(s, "mdl_a1", false, &m, &err), CZ_E_NOT_FOUND);
  CHECK_EQ_INT(cz_store_model_delete(s, "mdl_a1", sha, &blob_free, &err), CZ_E_NOT_FOUND);
  CHECK(!blob_free);
  CHECK_OK(cz_store_model_delete(s, "mdl_a2", sha, &blob_free, &err));
  CHECK_EQ_STR(sha, SHA_A);
  CHECK(blob_free);

  /* a queued job holds its model */
  CHECK_OK(add_job(s, "job_1", "mdl_b", 3, 10));
  blob_free = true;
  CHECK_EQ_INT(cz_store_model_delete(s, "mdl_b", sha, &blob_free, &err), CZ_E_CONFLICT);
  CHECK(!blob_free);
  CHECK(strstr(err.msg, "mdl_b") != NULL);
  m = NULL;
  CHECK_OK(cz_store_model_get(s, "mdl_b", false, &m, &err));
  json_decref(m);
  /* ... and a running one */
  char id[64];
  CHECK_EQ_STR(claim(s, "w1", 20, id, sizeof id), "job_1");
  CHECK_EQ_INT(cz_store_model_delete(s, "mdl_b", sha, &blob_free, &err), CZ_E_CONFLICT);
  /* finished jobs do not */
  cz_job_outcome o = {.state = "failed", .error_code = "internal", .error_message = "x"};
  CHECK_OK(cz_store_job_finish(s, "job_1", "w1", &o, 30, &err));
  CHECK_OK(cz_store_model_delete(s, "mdl_b", sha, &blob_free, &err));
  CHECK_EQ_STR(sha, SHA_B);
  CHECK(blob_free);

  /* a canceled (queued) job does not either */
  CHECK_OK(add_job(s, "job_2", "mdl_c", 3, 40));
  bool was_running = true;
  CHECK_OK(cz_store_job_cancel(s, "job_2", 41, &was_running, &err));
  CHECK_OK(cz_store_model_delete(s, "mdl_c", sha, &blob_free, &err));
  CHECK(blob_free);
  cz_store_close(s);
}

/* ---- jobs ---- */

static void test_job_insert_claim(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  char id[64], buf[128];
  CHECK_EQ_INT(add_job(s, "job_x", "mdl_missing", 3, 1), CZ_E_NOT_FOUND);
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM jobs"), 0);
  CHECK_EQ_STR(claim(s, "w1", 5, id, sizeof id), "");
  CHECK_OK(add_model(s, "mdl_1", SHA_A, 1));
  CHECK_OK(add_job(s, "job_1", "mdl_1", 3, 100));
  CHECK_OK(add_job(s, "job_2", "mdl_1", 3, 90)); /* an earlier clock: order is by insertion */
  CHECK_OK(add_job(s, "job_3", "mdl_1", 3, 110));

  json_t *j = get_job(s, "job_1");
  CHECK_EQ_STR(str_of(j, "state"), "queued");
  CHECK_EQ_INT(int_of(j, "attempts"), 0);
  CHECK_EQ_INT(int_of(j, "max_attempts"), 3);
  CHECK_EQ_STR(str_of(j, "recipe"), RECIPE);
  CHECK_EQ_STR(str_of(j, "model_id"), "mdl_1");
  CHECK_EQ_INT(int_of(j, "created_at"), 100);
  CHECK(json_is_null(json_object_get(j, "started_at")));
  json_decref(j);

  json_t *row = NULL;
  CHECK_OK(cz_store_job_claim(s, "worker-A", LEASE, 1000, &row, &err));
  CHECK(row != NULL);
  CHECK_EQ_STR(str_of(row, "id"), "job_1");
  CHECK_EQ_STR(str_of(row, "state"), "running");
  CHECK_EQ_INT(int_of(row, "attempts"), 1);
  CHECK_EQ_INT(int_of(row, "started_at"), 1000);
  CHECK_EQ_STR(str_of(row, "recipe"), RECIPE);
  json_decref(row);
  CHECK_EQ_STR(raw_text("SELECT lease_owner FROM jobs WHERE id = 'job_1'", buf, sizeof buf),
               "worker-A");
  CHECK_EQ_INT(raw_int("SELECT lease_expires_at FROM jobs WHERE id = 'job_1'"), 1000 + LEASE);
  check_job_state(s, "job_1", "running");

  CHECK_EQ_STR(claim(s, "worker-A", 1001, id, sizeof id), "job_2");
  CHECK_EQ_STR(claim(s, "worker-B", 1002, id, sizeof id), "job_3");
  CHECK_EQ_STR(raw_text("SELECT lease_owner FROM jobs WHERE id = 'job_3'", buf, sizeof buf),
               "worker-B");
  CHECK_EQ_STR(claim(s, "worker-A", 1003, id, sizeof id), "");
  row = (json_t *)1;
  CHECK_OK(cz_store_job_claim(s, "worker-A", LEASE, 1004, &row, &err));
  CHECK(row == NULL);
  CHECK_EQ_INT(cz_store_job_get(s, "job_nope", &row, &err), CZ_E_NOT_FOUND);
  cz_store_close(s);
}

enum { N_CONCURRENT_JOBS = 50 };

typedef struct {
  cz_store *s;
  const char *owner;
  int pace_us; /* pause between claims, as if running the job */
  pthread_barrier_t *barrier;
  char ids[N_CONCURRENT_JOBS + 1][32];
  int n, errors;
} claimer;

static void *claim_thread(void *p) {
  claimer *c = p;
  pthread_barrier_wait(c->barrier);
  for (int spins = 0; spins < 10 * N_CONCURRENT_JOBS; spins++) {
    json_t *job = NULL;
    cz_error err = {0};
    cz_err_code rc = cz_store_job_claim(c->s, c->owner, LEASE, 5000 + spins, &job, &err);
    if (rc) {
      if (c->errors++ < 3) printf("# %s: claim: %s: %s\n", c->owner, cz_err_name(rc), err.msg);
      continue;
    }
    if (job == NULL) break;
    if (c->n <= N_CONCURRENT_JOBS) snprintf(c->ids[c->n], sizeof c->ids[0], "%s", str_of(job, "id"));
    c->n++;
    json_decref(job);
    if (c->pace_us) usleep((useconds_t)c->pace_us);
  }
  return NULL;
}

/* Two "processes" (threads with their own handle on the same file) race for 50 jobs. */
static void concurrent_claims(int pace_us) {
  fresh();
  cz_store *a = open_store(), *b = a ? open_store() : NULL;
  if (!a || !b) {
    cz_store_close(a);
    return;
  }
  CHECK_OK(add_model(a, "mdl_1", SHA_A, 1));
  char id[32];
  for (int i = 0; i < N_CONCURRENT_JOBS; i++) {
    snprintf(id, sizeof id, "job_%02d", i);
    CHECK_OK(add_job(i % 2 ? a : b, id, "mdl_1", 3, 100 + i));
  }
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, 2);
  static claimer c[2];
  memset(c, 0, sizeof c);
  c[0] = (claimer){.s = a, .owner = "proc-A", .pace_us = pace_us, .barrier = &barrier};
  c[1] = (claimer){.s = b, .owner = "proc-B", .pace_us = pace_us, .barrier = &barrier};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, claim_thread, &c[i]);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&barrier);

  int count[N_CONCURRENT_JOBS] = {0}, bad = 0;
  for (int t = 0; t < 2; t++)
    for (int k = 0; k < c[t].n && k <= N_CONCURRENT_JOBS; k++) {
      int n = -1;
      if (sscanf(c[t].ids[k], "job_%d", &n) == 1 && n >= 0 && n < N_CONCURRENT_JOBS) count[n]++;
      else bad++;
    }
  int dup = 0, lost = 0;
  for (int i = 0; i < N_CONCURRENT_JOBS; i++) {
    dup += count[i] > 1;
    lost += count[i] == 0;
  }
  printf("# claims (pause %d us): proc-A %d, proc-B %d; duplicates %d, lost %d, errors %d/%d\n",
         pace_us, c[0].n, c[1].n, dup, lost, c[0].errors, c[1].errors);
  /* with a pause between claims both must have had their turn, or nothing raced */
  if (pace_us) CHECK(c[0].n > 0 && c[1].n > 0);
  CHECK_EQ_INT(c[0].n + c[1].n, N_CONCURRENT_JOBS);
  CHECK_EQ_INT(dup, 0);
  CHECK_EQ_INT(lost, 0);
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(c[0].errors + c[1].errors, 0);
  /* the database agrees: every job running once, owned by the thread that got it */
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM jobs WHERE state = 'running' AND attempts = 1"),
               N_CONCURRENT_JOBS);
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM jobs WHERE lease_owner = 'proc-A'"), c[0].n);
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM jobs WHERE lease_owner = 'proc-B'"), c[1].n);
  cz_store_close(a);
  cz_store_close(b);
}

static void test_concurrent_claims(void) {
  concurrent_claims(0);    /* back to back: the most contention on the write lock */
  /* interleaved: a pause longer than the first steps of SQLite's busy-handler backoff
   * (1, 2, 5 ms), so that the waiting connection gets the lock in it even on a loaded
   * machine (with 1 ms, one side sometimes took all 50 under load) */
  concurrent_claims(5000);
}

static void test_heartbeat_and_fencing(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  char id[64], buf[64];
  bool cancel = true, was_running = false;
  CHECK_OK(add_model(s, "mdl_1", SHA_A, 1));
  CHECK_OK(add_job(s, "job_1", "mdl_1", 3, 10));
  /* not running yet: nobody holds it */
  CHECK_EQ_INT(cz_store_job_heartbeat(s, "job_1", "w1", 0, 0, 0, 0, LEASE, 15, &cancel, &err),
               CZ_E_CONFLICT);
  CHECK_EQ_STR(claim(s, "w1", 20, id, sizeof id), "job_1");

  CHECK_OK(cz_store_job_heartbeat(s, "job_1", "w1", 3, 10, 300, 1000, LEASE, 50, &cancel, &err));
  CHECK(!cancel);
  json_t *j = get_job(s, "job_1");
  CHECK_EQ_INT(int_of(j, "tensors_done"), 3);
  CHECK_EQ_INT(int_of(j, "tensors_total"), 10);
  CHECK_EQ_INT(int_of(j, "bytes_done"), 300);
  CHECK_EQ_INT(int_of(j, "bytes_total"), 1000);
  CHECK_EQ_INT(int_of(j, "updated_at"), 50);
  CHECK_EQ_INT(int_of(j, "cancel_requested"), 0);
  json_decref(j);
  CHECK_EQ_INT(raw_int("SELECT lease_expires_at FROM jobs WHERE id = 'job_1'"), 50 + LEASE);

  /* cancel of a running job: a request the heartbeat carries back */
  CHECK_OK(cz_store_job_cancel(s, "job_1", 60, &was_running, &err));
  CHECK(was_running);
  check_job_state(s, "job_1", "running");
  CHECK_OK(cz_store_job_heartbeat(s, "job_1", "w1", 4, 10, 400, 1000, LEASE, 70, &cancel, &err));
  CHECK(cancel);

  /* fencing: another owner can neither heartbeat nor finish */
  cancel = true;
  CHECK_EQ_INT(cz_store_job_heartbeat(s, "job_1", "w2", 9, 10, 900, 1000, LEASE, 80, &cancel,
                                      &err),
               CZ_E_CONFLICT);
  CHECK(!cancel);
  cz_job_outcome ok = {.state = "succeeded", .artifact_sha256 = SHA_B, .artifact_format = "gguf",
                       .report_sha256 = SHA_C, .artifact_bytes = 777};
  CHECK_EQ_INT(cz_store_job_finish(s, "job_1", "w2", &ok, 90, &err), CZ_E_CONFLICT);
  CHECK_EQ_INT(cz_store_job_finish(s, "job_1", NULL, &ok, 90, &err), CZ_E_CONFLICT);
  j = get_job(s, "job_1");
  CHECK_EQ_STR(str_of(j, "state"), "running");
  CHECK_EQ_INT(int_of(j, "tensors_done"), 4);
  CHECK(json_is_null(json_object_get(j, "artifact_sha256")));
  json_decref(j);
  CHECK_EQ_STR(raw_text("SELECT lease_owner FROM jobs WHERE id = 'job_1'", buf, sizeof buf), "w1");
  CHECK_EQ_INT(cz_store_job_heartbeat(s, "job_nope", "w1", 0, 0, 0, 0, LEASE, 95, &cancel, &err),
               CZ_E_CONFLICT);

  /* the owner finishes it canceled; after that even the owner is fenced off */
  cz_job_outcome canceled = {.state = "canceled", .error_code = "canceled",
                             .error_message = "canceled by request"};
  CHECK_OK(cz_store_job_finish(s, "job_1", "w1", &canceled, 100, &err));
  check_job_state(s, "job_1", "canceled");
  CHECK_EQ_INT(cz_store_job_heartbeat(s, "job_1", "w1", 5, 10, 0, 0, LEASE, 110, &cancel, &err),
               CZ_E_CONFLICT);
  CHECK_EQ_INT(cz_store_job_finish(s, "job_1", "w1", &ok, 120, &err), CZ_E_CONFLICT);
  check_job_state(s, "job_1", "canceled");
  cz_store_close(s);
}

static void test_finish_and_cancel(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  char id[64], buf[64];
  bool cancel = false, was_running = true;
  CHECK_OK(add_model(s, "mdl_1", SHA_A, 1));
  CHECK_OK(add_job(s, "job_ok", "mdl_1", 3, 10));
  CHECK_OK(add_job(s, "job_fail", "mdl_1", 3, 11));
  CHECK_OK(add_job(s, "job_q", "mdl_1", 3, 12));

  /* succeeded: artifact fields stored, progress completed */
  CHECK_EQ_STR(claim(s, "w1", 20, id, sizeof id), "job_ok");
  CHECK_OK(cz_store_job_heartbeat(s, "job_ok", "w1", 3, 39, 100, 5000, LEASE, 30, &cancel, &err));
  cz_job_outcome ok = {.state = "succeeded", .artifact_sha256 = SHA_B, .artifact_format = "gguf",
                       .report_sha256 = SHA_C, .artifact_bytes = 777};
  CHECK_OK(cz_store_job_finish(s, "job_ok", "w1", &ok, 40, &err));
  json_t *j = get_job(s, "job_ok");
  CHECK_EQ_STR(str_of(j, "state"), "succeeded");
  CHECK_EQ_STR(str_of(j, "artifact_sha256"), SHA_B);
  CHECK_EQ_INT(int_of(j, "artifact_bytes"), 777);
  CHECK_EQ_STR(str_of(j, "artifact_format"), "gguf");
  CHECK_EQ_STR(str_of(j, "report_sha256"), SHA_C);
  CHECK_EQ_INT(int_of(j, "tensors_done"), 39);
  CHECK_EQ_INT(int_of(j, "tensors_total"), 39);
  CHECK_EQ_INT(int_of(j, "bytes_done"), 5000);
  CHECK_EQ_INT(int_of(j, "finished_at"), 40);
  CHECK_EQ_INT(int_of(j, "updated_at"), 40);
  CHECK(json_is_null(json_object_get(j, "error_code")));
  CHECK(json_is_null(json_object_get(j, "error_message")));
  json_decref(j);
  CHECK_EQ_STR(raw_text("SELECT lease_owner FROM jobs WHERE id = 'job_ok'", buf, sizeof buf),
               "<null>");
  bool used = false;
  CHECK_OK(cz_store_blob_used(s, SHA_B, &used, &err));
  CHECK(used);
  CHECK_OK(cz_store_blob_used(s, SHA_C, &used, &err));
  CHECK(used);
  CHECK_OK(cz_store_blob_used(s, SHA_A, &used, &err)); /* the model's */
  CHECK(used);
  CHECK_OK(cz_store_blob_used(s, SHA_D, &used, &err));
  CHECK(!used);

  /* failed: error stored, no artifact, progress kept as it was */
  CHECK_EQ_STR(claim(s, "w1", 50, id, sizeof id), "job_fail");
  CHECK_OK(cz_store_job_heartbeat(s, "job_fail", "w1", 2, 39, 10, 5000, LEASE, 55, &cancel, &err));
  cz_job_outcome bad = {.state = "failed", .error_code = "non_finite_values",
                        .error_message = "tensor x: NaN"};
  CHECK_OK(cz_store_job_finish(s, "job_fail", "w1", &bad, 60, &err));
  j = get_job(s, "job_fail");
  CHECK_EQ_STR(str_of(j, "state"), "failed");
  CHECK_EQ_STR(str_of(j, "error_code"), "non_finite_values");
  CHECK_EQ_STR(str_of(j, "error_message"), "tensor x: NaN");
  CHECK(json_is_null(json_object_get(j, "artifact_sha256")));
  CHECK(json_is_null(json_object_get(j, "artifact_bytes")));
  CHECK_EQ_INT(int_of(j, "tensors_done"), 2);
  json_decref(j);

  /* cancel of a queued job: canceled at once, never claimed */
  CHECK_OK(cz_store_job_cancel(s, "job_q", 70, &was_running, &err));
  CHECK(!was_running);
  j = get_job(s, "job_q");
  CHECK_EQ_STR(str_of(j, "state"), "canceled");
  CHECK_EQ_INT(int_of(j, "finished_at"), 70);
  CHECK_EQ_STR(str_of(j, "error_code"), "canceled");
  json_decref(j);
  CHECK_EQ_STR(claim(s, "w1", 80, id, sizeof id), "");

  /* cancel of a finished job, of any kind: CONFLICT, nothing changes */
  CHECK_EQ_INT(cz_store_job_cancel(s, "job_ok", 90, &was_running, &err), CZ_E_CONFLICT);
  CHECK_EQ_INT(cz_store_job_cancel(s, "job_fail", 90, &was_running, &err), CZ_E_CONFLICT);
  CHECK_EQ_INT(cz_store_job_cancel(s, "job_q", 90, &was_running, &err), CZ_E_CONFLICT);
  check_job_state(s, "job_ok", "succeeded");
  CHECK_EQ_INT(cz_store_job_cancel(s, "job_nope", 90, &was_running, &err), CZ_E_NOT_FOUND);
  cz_store_close(s);
}

static void test_release(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  char id[64], buf[64];
  CHECK_OK(add_model(s, "mdl_1", SHA_A, 1));
  CHECK_OK(add_job(s, "job_1", "mdl_1", 3, 10));
  CHECK_OK(add_job(s, "job_2", "mdl_1", 3, 11));
  CHECK_EQ_STR(claim(s, "w1", 20, id, sizeof id), "job_1");

  /* somebody else's release changes nothing */
  cz_store_job_release(s, "job_1", "w2", 25, &err);
  json_t *j = get_job(s, "job_1");
  CHECK_EQ_STR(str_of(j, "state"), "running");
  CHECK_EQ_INT(int_of(j, "attempts"), 1);
  json_decref(j);

  CHECK_OK(cz_store_job_release(s, "job_1", "w1", 30, &err));
  j = get_job(s, "job_1");
  CHECK_EQ_STR(str_of(j, "state"), "queued");
  CHECK_EQ_INT(int_of(j, "attempts"), 0);
  CHECK_EQ_INT(int_of(j, "updated_at"), 30);
  json_decref(j);
  CHECK_EQ_STR(raw_text("SELECT lease_owner FROM jobs WHERE id = 'job_1'", buf, sizeof buf),
               "<null>");
  /* released, it is still the oldest: claimed next, as attempt 1 again */
  json_t *row = NULL;
  CHECK_OK(cz_store_job_claim(s, "w3", LEASE, 40, &row, &err));
  CHECK_EQ_STR(str_of(row, "id"), "job_1");
  CHECK_EQ_INT(int_of(row, "attempts"), 1);
  json_decref(row);
  /* the old owner is fenced off */
  bool cancel;
  CHECK_EQ_INT(cz_store_job_heartbeat(s, "job_1", "w1", 1, 2, 3, 4, LEASE, 45, &cancel, &err),
               CZ_E_CONFLICT);
  cz_store_close(s);
}

static void test_recover(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  char id[64], buf[64];
  CHECK_OK(add_model(s, "mdl_1", SHA_A, 1));
  CHECK_OK(add_job(s, "job_retry", "mdl_1", 3, 10));   /* running, 1 of 3 attempts */
  CHECK_OK(add_job(s, "job_spent", "mdl_1", 1, 11));   /* running, 1 of 1 */
  CHECK_OK(add_job(s, "job_done", "mdl_1", 1, 12));    /* succeeded */
  CHECK_OK(add_job(s, "job_waiting", "mdl_1", 3, 13)); /* queued */
  CHECK_EQ_STR(claim(s, "dead", 20, id, sizeof id), "job_retry");
  CHECK_EQ_STR(claim(s, "dead", 21, id, sizeof id), "job_spent");
  CHECK_EQ_STR(claim(s, "dead", 22, id, sizeof id), "job_done");
  cz_job_outcome ok = {.state = "succeeded", .artifact_sha256 = SHA_B, .artifact_format = "gguf",
                       .report_sha256 = SHA_C, .artifact_bytes = 1};
  CHECK_OK(cz_store_job_finish(s, "job_done", "dead", &ok, 23, &err));
  cz_store_close(s);

  /* the process died; a new one starts */
  s = open_store();
  if (!s) return;
  int requeued = -1, failed = -1;
  CHECK_OK(cz_store_recover(s, 1000, &requeued, &failed, &err));
  CHECK_EQ_INT(requeued, 1);
  CHECK_EQ_INT(failed, 1);
  json_t *j = get_job(s, "job_retry");
  CHECK_EQ_STR(str_of(j, "state"), "queued");
  CHECK_EQ_INT(int_of(j, "attempts"), 1);
  json_decref(j);
  CHECK_EQ_STR(raw_text("SELECT lease_owner FROM jobs WHERE id = 'job_retry'", buf, sizeof buf),
               "<null>");
  j = get_job(s, "job_spent");
  CHECK_EQ_STR(str_of(j, "state"), "failed");
  CHECK_EQ_STR(str_of(j, "error_code"), "worker_crash");
  CHECK(str_of(j, "error_message") != NULL);
  CHECK_EQ_INT(int_of(j, "finished_at"), 1000);
  json_decref(j);
  check_job_state(s, "job_done", "succeeded");
  check_job_state(s, "job_waiting", "queued");
  /* the dead owner is fenced off from both */
  bool cancel;
  CHECK_EQ_INT(cz_store_job_heartbeat(s, "job_retry", "dead", 1, 2, 3, 4, LEASE, 1001, &cancel,
                                      &err),
               CZ_E_CONFLICT);
  CHECK_EQ_INT(cz_store_job_finish(s, "job_spent", "dead", &ok, 1002, &err), CZ_E_CONFLICT);
  /* the requeued job runs again as attempt 2, before the younger queued one */
  json_t *row = NULL;
  CHECK_OK(cz_store_job_claim(s, "alive", LEASE, 1100, &row, &err));
  CHECK_EQ_STR(str_of(row, "id"), "job_retry");
  CHECK_EQ_INT(int_of(row, "attempts"), 2);
  json_decref(row);
  /* nothing left to recover twice */
  cz_store_close(s);
  s = open_store();
  if (!s) return;
  requeued = failed = -1;
  CHECK_OK(cz_store_recover(s, 2000, &requeued, &failed, &err));
  CHECK_EQ_INT(requeued, 1); /* job_retry again, held by "alive" which is gone too */
  CHECK_EQ_INT(failed, 0);
  cz_store_close(s);
}

static void test_job_list(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  char id[64];
  CHECK_OK(add_model(s, "mdl_a", SHA_A, 1));
  CHECK_OK(add_model(s, "mdl_b", SHA_B, 2));
  /* job_0..job_9: even on mdl_a, odd on mdl_b; job_0 and job_1 running, job_2 canceled */
  for (int i = 0; i < 10; i++) {
    snprintf(id, sizeof id, "job_%d", i);
    CHECK_OK(add_job(s, id, i % 2 ? "mdl_b" : "mdl_a", 3, 100 + i));
  }
  CHECK_EQ_STR(claim(s, "w", 200, id, sizeof id), "job_0");
  CHECK_EQ_STR(claim(s, "w", 201, id, sizeof id), "job_1");
  bool was_running;
  CHECK_OK(cz_store_job_cancel(s, "job_2", 202, &was_running, &err));

  static const struct {
    const char *state, *model;
    const char *want; /* ids in order, newest first */
  } cases[] = {
      {NULL, NULL, "9 8 7 6 5 4 3 2 1 0"},
      {"queued", NULL, "9 8 7 6 5 4 3"},
      {"running", NULL, "1 0"},
      {"canceled", NULL, "2"},
      {"succeeded", NULL, ""},
      {NULL, "mdl_a", "8 6 4 2 0"},
      {NULL, "mdl_b", "9 7 5 3 1"},
      {"queued", "mdl_a", "8 6 4"},
      {"running", "mdl_b", "1"},
      {NULL, "mdl_none", ""},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    for (int limit = 1; limit <= 11; limit += 2) {
      char got[128] = "";
      int64_t before = 0, next = 0;
      int pages = 0, max_page = 0;
      do {
        json_t *items = NULL;
        CHECK_OK(cz_store_job_list(s, limit, before, cases[c].state, cases[c].model, &items,
                                   &next, &err));
        if (!items) break;
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
          int n = -1;
          sscanf(str_of(it, "id") ? str_of(it, "id") : "", "job_%d", &n);
          snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", got[0] ? " " : "", n);
          if (cases[c].state && strcmp(str_of(it, "state"), cases[c].state) != 0) max_page = 99;
        }
        if ((int)json_array_size(items) > max_page) max_page = (int)json_array_size(items);
        json_decref(items);
        before = next;
        pages++;
      } while (next != 0 && pages < 20);
      if (strcmp(got, cases[c].want) != 0 || max_page > limit) {
        printf("# job_list state=%s model=%s limit=%d: got [%s], want [%s] (page max %d)\n",
               cases[c].state ? cases[c].state : "*", cases[c].model ? cases[c].model : "*",
               limit, got, cases[c].want, max_page);
        cz_test_failures++;
      }
    }
  }
  /* a page has the job's columns */
  json_t *items = NULL;
  int64_t next = -1;
  CHECK_OK(cz_store_job_list(s, 1, 0, "running", NULL, &items, &next, &err));
  json_t *it = json_array_get(items, 0);
  CHECK_EQ_STR(str_of(it, "id"), "job_1");
  CHECK_EQ_STR(str_of(it, "model_id"), "mdl_b");
  CHECK_EQ_INT(int_of(it, "attempts"), 1);
  CHECK_EQ_INT(next, int_of(it, "seq"));
  json_decref(items);
  cz_store_close(s);
}

/* The event log: triggers write the state changes (queued, claimed, requeued after a crash,
 * released, failed), appends number on, the cap keeps the newest CZ_JOB_LOG_MAX_LINES (the
 * migration's trigger must say the same number), and a deleted job takes its lines along. */
static void test_job_log(void) {
  fresh();
  cz_store *s = open_store();
  cz_error err = {0};
  CHECK(add_model(s, "mdl_a", "aa", 1) == CZ_E_OK);
  CHECK(add_job(s, "job_1", "mdl_a", 2, 10) == CZ_E_OK);
  char buf[64];
  CHECK_EQ_STR(claim(s, "w1", 20, buf, sizeof buf), "job_1");
  cz_job_log_line l[2] = {{"info", "progress", "half"}, {"warn", "lease_lost", "gone"}};
  CHECK(cz_store_job_log_append(s, "job_1", 30, l, 2, &err) == CZ_E_OK);
  CHECK(cz_store_job_log_append(s, "job_nope", 30, l, 1, &err) == CZ_E_NOT_FOUND);
  cz_job_log_line bad = {"loud", "x", "y"};
  CHECK(cz_store_job_log_append(s, "job_1", 30, &bad, 1, &err) == CZ_E_INVALID_ARGUMENT);
  int req, fail;
  CHECK(cz_store_recover(s, 40, &req, &fail, &err) == CZ_E_OK);   /* a crash: requeued */
  CHECK_EQ_STR(claim(s, "w2", 50, buf, sizeof buf), "job_1");
  CHECK(cz_store_job_release(s, "job_1", "w2", 60, &err) == CZ_E_OK);  /* shutdown */
  CHECK_EQ_STR(claim(s, "w3", 70, buf, sizeof buf), "job_1");
  cz_job_outcome o = {.state = "failed", .error_code = "io_error", .error_message = "disk"};
  CHECK(cz_store_job_finish(s, "job_1", "w3", &o, 80, &err) == CZ_E_OK);
  json_t *log = NULL;
  CHECK(cz_store_job_log(s, "job_1", 0, 100, &log, &err) == CZ_E_OK);
  static const char *const want[][3] = {
      {"queued", "info", "queued on model mdl_a"},
      {"claimed", "info", "claimed by w1, attempt 1 of 2"},
      {"progress", "info", "half"},
      {"lease_lost", "warn", "gone"},
      {"requeued", "warn", "back in the queue: the daemon stopped during attempt 1 of 2"},
      {"claimed", "info", "claimed by w2, attempt 2 of 2"},
      {"released", "info", "handed back to the queue at shutdown (the attempt is not counted)"},
      {"claimed", "info", "claimed by w3, attempt 2 of 2"},
      {"failed", "error", "failed: io_error: disk"},
  };
  json_t *lines = json_object_get(log, "lines");
  CHECK_EQ_INT(json_array_size(lines), sizeof want / sizeof want[0]);
  for (size_t i = 0; i < json_array_size(lines) && i < sizeof want / sizeof want[0]; i++) {
    json_t *ln = json_array_get(lines, i);
    CHECK_EQ_INT(int_of(ln, "seq"), (json_int_t)i + 1);
    CHECK_EQ_STR(str_of(ln, "event"), want[i][0]);
    CHECK_EQ_STR(str_of(ln, "level"), want[i][1]);
    CHECK_EQ_STR(str_of(ln, "message"), want[i][2]);
  }
  CHECK_EQ_STR(str_of(log, "state"), "failed");
  json_decref(log);
  /* since and limit */
  CHECK(cz_store_job_log(s, "job_1", 7, 1, &log, &err) == CZ_E_OK);
  CHECK_EQ_INT(json_array_size(json_object_get(log, "lines")), 1);
  CHECK_EQ_INT(int_of(json_array_get(json_object_get(log, "lines"), 0), "seq"), 8);
  CHECK_EQ_INT(int_of(log, "last_seq"), 9);
  json_decref(log);
  CHECK(cz_store_job_log(s, "job_nope", 0, 10, &log, &err) == CZ_E_NOT_FOUND);
  /* the cap: fill well past it; the newest CZ_JOB_LOG_MAX_LINES stay, numbering goes on */
  static cz_job_log_line many[CZ_JOB_LOG_MAX_LINES];
  for (int i = 0; i < CZ_JOB_LOG_MAX_LINES; i++) many[i] = (cz_job_log_line){"info", "tensor", "t"};
  CHECK(cz_store_job_log_append(s, "job_1", 90, many, CZ_JOB_LOG_MAX_LINES, &err) == CZ_E_OK);
  CHECK(cz_store_job_log_append(s, "job_1", 91, many, 5, &err) == CZ_E_OK);
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM job_events WHERE job_id = 'job_1'"), CZ_JOB_LOG_MAX_LINES);
  CHECK(cz_store_job_log(s, "job_1", 0, CZ_JOB_LOG_MAX_LINES, &log, &err) == CZ_E_OK);
  CHECK_EQ_INT(int_of(log, "first_seq"), 9 + CZ_JOB_LOG_MAX_LINES + 5 - CZ_JOB_LOG_MAX_LINES + 1);
  CHECK_EQ_INT(int_of(log, "last_seq"), 9 + CZ_JOB_LOG_MAX_LINES + 5);
  json_decref(log);
  /* a long message is cut */
  static char longmsg[CZ_JOB_LOG_MAX_MESSAGE * 2];
  memset(longmsg, 'x', sizeof longmsg - 1);
  cz_job_log_line lm = {"info", "progress", longmsg};
  CHECK(cz_store_job_log_append(s, "job_1", 92, &lm, 1, &err) == CZ_E_OK);
  CHECK_EQ_INT(raw_int("SELECT length(message) FROM job_events WHERE job_id = 'job_1' ORDER BY seq DESC LIMIT 1"),
               CZ_JOB_LOG_MAX_MESSAGE);
  CHECK(raw_exec("DELETE FROM jobs WHERE id = 'job_1'"));
  CHECK_EQ_INT(raw_int("SELECT count(*) FROM job_events"), 0);
  cz_store_close(s);
}

/* ---- the generation (the key of the API's job cache) ---- */

/* Every write path of a job, its webhook included, moves cz_store_generation; reads do not
 * (else the API's cache would never hit) and failed writes may. */
static void test_generation(void) {
  fresh();
  cz_store *s = open_store();
  if (!s) return;
  cz_error err = {0};
  uint64_t g = cz_store_generation(s), g2;
#define MOVED(what)                                                           \
  do {                                                                        \
    g2 = cz_store_generation(s);                                              \
    if (g2 <= g) {                                                            \
      printf("# %s did not move the generation (%llu)\n", what,              \
             (unsigned long long)g2);                                         \
      cz_test_failures++;                                                     \
    }                                                                         \
    g = g2;                                                                   \
  } while (0)
  CHECK_OK(add_model(s, "mdl_a", SHA_A, 1));
  MOVED("model insert");
  CHECK_OK(add_job(s, "job_1", "mdl_a", 5, 10));
  MOVED("job insert");
  /* reads leave it alone */
  json_t *j = get_job(s, "job_1");
  json_decref(j);
  json_t *w = NULL;
  CHECK_EQ_INT(cz_store_webhook_get(s, "job_1", &w, &err), CZ_E_NOT_FOUND);
  CHECK(cz_store_generation(s) == g);
  char id[64];
  CHECK_EQ_STR(claim(s, "w1", 20, id, sizeof id), "job_1");
  MOVED("claim");
  bool cancel = true;
  CHECK_OK(cz_store_job_heartbeat(s, "job_1", "w1", 1, 4, 100, 400, LEASE, 21, &cancel, &err));
  MOVED("heartbeat (progress)");
  CHECK_OK(cz_store_job_release(s, "job_1", "w1", 23, &err));
  MOVED("release");
  CHECK_EQ_STR(claim(s, "w2", 24, id, sizeof id), "job_1");
  MOVED("claim again");
  int requeued = 0, failed = 0;
  CHECK_OK(cz_store_recover(s, 25, &requeued, &failed, &err));
  CHECK_EQ_INT(requeued, 1);
  MOVED("recover");
  CHECK_EQ_STR(claim(s, "w3", 26, id, sizeof id), "job_1");
  g = cz_store_generation(s);
  bool was_running = false;
  CHECK_OK(cz_store_job_cancel(s, "job_1", 26, &was_running, &err));
  CHECK(was_running);
  MOVED("cancel of a running job (cancel_requested)");
  cz_job_outcome o = {.state = "failed", .error_code = "internal", .error_message = "x"};
  CHECK_OK(cz_store_job_finish(s, "job_1", "w3", &o, 27, &err));
  MOVED("finish");
  CHECK_OK(cz_store_job_retry(s, "job_1", "job_2", 2, 0, 28, &err));
  MOVED("retry");
  cz_job_submit sub = {"job_3", "mdl_a", RECIPE, 2, 29, NULL, 0, "https://example.com/h",
                       "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 3};
  CHECK_OK(cz_store_job_submit(s, &sub, &err));
  MOVED("submit with a webhook");
  CHECK_EQ_STR(claim(s, "w4", 30, id, sizeof id), "job_2");
  CHECK_EQ_STR(claim(s, "w4", 30, id, sizeof id), "job_3");
  g = cz_store_generation(s);
  o = (cz_job_outcome){.state = "canceled", .error_code = "canceled", .error_message = "x"};
  CHECK_OK(cz_store_job_finish(s, "job_3", "w4", &o, 31, &err));
  MOVED("finish of the webhook's job");
  CHECK_OK(cz_store_webhook_schedule(s, "job_3", "msg_1", "job.canceled", "{}", 32, &err));
  MOVED("webhook schedule");
  CHECK_OK(cz_store_webhook_attempt(s, "job_3", false, 500, "boom", 33, 40, &err));
  MOVED("webhook attempt");
  char art[65], rep[65];
  CHECK_OK(cz_store_job_delete(s, "job_1", art, rep, &err));
  MOVED("job delete");
#undef MOVED
  cz_store_close(s);
}

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_open_schema),         CZ_TEST(test_newer_schema_refused),
      CZ_TEST(test_wal_mode),            CZ_TEST(test_concurrent_first_open),
      CZ_TEST(test_models),              CZ_TEST(test_model_delete),
      CZ_TEST(test_job_insert_claim),    CZ_TEST(test_concurrent_claims),
      CZ_TEST(test_heartbeat_and_fencing), CZ_TEST(test_finish_and_cancel),
      CZ_TEST(test_release),             CZ_TEST(test_recover),
      CZ_TEST(test_job_list),            CZ_TEST(test_job_log),
      CZ_TEST(test_generation),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  if (dir[0]) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
