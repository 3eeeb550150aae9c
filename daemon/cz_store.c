/* cz_store: SQLite implementation of the model and job store (see cz_store.h). */
#include "cz_store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a statement waits for another connection's lock (e.g. an operator's sqlite3
 * shell) before giving up with SQLITE_BUSY. */
#define BUSY_TIMEOUT_MS 5000

/* Read statements kept prepared for the connection's life (see prepare_cached). Only the
 * fixed SQL of the read queries goes through it, a few dozen texts at most; when it is full a
 * statement is prepared and finalized as before. */
#define STMT_CACHE_SLOTS 48

struct cz_store {
  sqlite3 *db;
  pthread_mutex_t lock;
  /* used under lock only; sql is the statement's own copy of its text (the key) */
  struct {
    char *sql;
    sqlite3_stmt *st;
  } stmts[STMT_CACHE_SLOTS];
  int n_stmts;
  /* told after a job's state changed (cz_store_set_job_listener) */
  void (*job_listener)(void *cls, const char *job_id);
  void *job_listener_cls;
  /* bumped by update_hook on every row this connection inserts, updates or deletes */
  _Atomic uint64_t generation;
};

/* sqlite3_update_hook: every row change through this connection (the only writer: the data
 * dir is flock'ed) bumps the generation, in whichever function and table it happens, so no
 * write path can be forgotten. It runs under the connection's mutex before the COMMIT, so a
 * reader that loads the generation and then queries either sees the change or a later number.
 * Only the WITHOUT ROWID job_log table does not fire it; no generation user depends on it. */
static void on_update(void *cls, int op, const char *db, const char *table, sqlite3_int64 row) {
  (void)op, (void)db, (void)table, (void)row;
  atomic_fetch_add_explicit(&((cz_store *)cls)->generation, 1, memory_order_release);
}

uint64_t cz_store_generation(cz_store *s) {
  return atomic_load_explicit(&s->generation, memory_order_acquire);
}

/* After a committed change of a job's state, outside the lock. */
static void job_changed(cz_store *s, const char *id) {
  if (s->job_listener && id) s->job_listener(s->job_listener_cls, id);
}

static cz_err_code db_error(cz_store *s, cz_error *err, const char *what) {
  int code = sqlite3_errcode(s->db);
  cz_err_code c = code == SQLITE_FULL         ? CZ_E_NO_SPACE
                  : code == SQLITE_CONSTRAINT ? CZ_E_CONFLICT
                  : code == SQLITE_BUSY || code == SQLITE_LOCKED ? CZ_E_UNAVAILABLE
                                                                 : CZ_E_INTERNAL;
  return cz_err_set(err, c, "database: %s: %s", what, sqlite3_errmsg(s->db));
}

static cz_err_code exec(cz_store *s, const char *sql, cz_error *err) {
  char *msg = NULL;
  if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    cz_err_code rc = db_error(s, err, msg ? msg : sql);
    sqlite3_free(msg);
    return rc;
  }
  return CZ_E_OK;
}

static cz_err_code prepare(cz_store *s, const char *sql, sqlite3_stmt **st, cz_error *err) {
  if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) return db_error(s, err, "prepare");
  return CZ_E_OK;
}

/* A prepared read statement from the cache, or prepared now and cached. Parsing the SQL of
 * every GET showed in the profile of GET /v1/jobs/{id} under load (bench/load-bench.sh).
 * *cached false: the cache is full, the caller finalizes st; true: the caller resets it.
 * Caller holds s->lock. */
static cz_err_code prepare_cached(cz_store *s, const char *sql, sqlite3_stmt **st, bool *cached,
                                  cz_error *err) {
  for (int i = 0; i < s->n_stmts; i++)
    if (strcmp(s->stmts[i].sql, sql) == 0) {
      *st = s->stmts[i].st;
      *cached = true;
      return CZ_E_OK;
    }
  *cached = false;
  if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
    return db_error(s, err, "prepare");
  char *key;
  if (s->n_stmts < STMT_CACHE_SLOTS && (key = strdup(sql)) != NULL) {
    s->stmts[s->n_stmts].sql = key;
    s->stmts[s->n_stmts].st = *st;
    s->n_stmts++;
    *cached = true;
  }
  return CZ_E_OK;
}

/* Give a statement from prepare_cached back. */
static void release_stmt(sqlite3_stmt *st, bool cached) {
  if (!cached) {
    sqlite3_finalize(st);
    return;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* One row as {column: value}. */
static json_t *row_json(sqlite3_stmt *st) {
  json_t *o = json_object();
  for (int i = 0; i < sqlite3_column_count(st); i++) {
    json_t *v;
    switch (sqlite3_column_type(st, i)) {
      case SQLITE_INTEGER: v = json_integer(sqlite3_column_int64(st, i)); break;
      case SQLITE_FLOAT: v = json_real(sqlite3_column_double(st, i)); break;
      case SQLITE_NULL: v = json_null(); break;
      default: v = json_string((const char *)sqlite3_column_text(st, i)); break;
    }
    json_object_set_new(o, sqlite3_column_name(st, i), v ? v : json_null());
  }
  return o;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) {
  if (v) sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(st, i);
}

/* ---- open and migrate ---- */

static int user_version(cz_store *s) {
  sqlite3_stmt *st;
  int v = -1;
  if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return v;
}

static cz_err_code migrate(cz_store *s, cz_error *err) {
  int have = user_version(s);
  int newest = cz_migrations_count ? cz_migrations[cz_migrations_count - 1].version : 0;
  if (have < 0) return db_error(s, err, "reading user_version");
  if (have > newest)
    return cz_err_set(err, CZ_E_UNSUPPORTED_VERSION,
                      "the database schema is version %d but this compressd knows only up to %d: "
                      "it was written by a newer compressd; run that version or restore a backup",
                      have, newest);
  for (int i = 0; i < cz_migrations_count; i++) {
    if (cz_migrations[i].version <= have) continue;
    /* Under the write lock, look again: another process opening the same database may have
     * applied this migration since we read the version. */
    cz_err_code rc = exec(s, "BEGIN IMMEDIATE", err);
    if (rc) return rc;
    have = user_version(s);
    if (have >= cz_migrations[i].version) {
      exec(s, "COMMIT", err);
      continue;
    }
    char setv[64];
    snprintf(setv, sizeof setv, "PRAGMA user_version = %d", cz_migrations[i].version);
    if ((rc = exec(s, cz_migrations[i].sql, err)) || (rc = exec(s, setv, err)) ||
        (rc = exec(s, "COMMIT", err))) {
      sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
      return rc;
    }
    have = cz_migrations[i].version;
  }
  return CZ_E_OK;
}

cz_err_code cz_store_open(const char *path, cz_store **out, cz_error *err) {
  cz_store *s = calloc(1, sizeof *s);
  if (!s) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  pthread_mutex_init(&s->lock, NULL);
  cz_err_code rc;
  if (sqlite3_open_v2(path, &s->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      NULL) != SQLITE_OK) {
    rc = cz_err_set(err, CZ_E_IO, "opening database %s: %s", path,
                    s->db ? sqlite3_errmsg(s->db) : "out of memory");
    goto fail;
  }
  sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
  sqlite3_update_hook(s->db, on_update, s);
  /* Switching a new database to WAL takes an exclusive lock and does not wait on the busy
   * handler, so a second process opening the same fresh file retries for a while. */
  for (int tries = 0;; tries++) {
    rc = exec(s, "PRAGMA journal_mode=WAL", err);
    if (rc != CZ_E_UNAVAILABLE || tries >= BUSY_TIMEOUT_MS / 10) break;
    usleep(10000);
  }
  if (rc || (rc = exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;", err)) ||
      (rc = migrate(s, err)))
    goto fail;
  *out = s;
  return CZ_E_OK;
fail:
  cz_store_close(s);
  return rc;
}

void cz_store_close(cz_store *s) {
  if (!s) return;
  for (int i = 0; i < s->n_stmts; i++) {
    sqlite3_finalize(s->stmts[i].st);
    free(s->stmts[i].sql);
  }
  sqlite3_close(s->db);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

int cz_store_schema_version(cz_store *s) {
  pthread_mutex_lock(&s->lock);
  int v = user_version(s);
  pthread_mutex_unlock(&s->lock);
  return v;
}

bool cz_store_ping(cz_store *s) { return cz_store_schema_version(s) > 0; }

/* ---- a transaction runner: lock, BEGIN IMMEDIATE, body, COMMIT or ROLLBACK ---- */

typedef cz_err_code (*txn_fn)(cz_store *s, void *cls, cz_error *err);

static cz_err_code run_txn(cz_store *s, txn_fn fn, void *cls, cz_error *err) {
  pthread_mutex_lock(&s->lock);
  cz_err_code rc = exec(s, "BEGIN IMMEDIATE", err);
  if (!rc) {
    rc = fn(s, cls, err);
    if (!rc) rc = exec(s, "COMMIT", err);
    if (rc) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* Run a statement expecting no row back; *changes gets the number of rows changed. */
static cz_err_code step_done(cz_store *s, sqlite3_stmt *st, int *changes, cz_error *err) {
  int r = sqlite3_step(st);
  cz_err_code rc = r == SQLITE_DONE ? CZ_E_OK : db_error(s, err, "step");
  if (changes) *changes = sqlite3_changes(s->db);
  sqlite3_finalize(st);
  return rc;
}

/* Collect every row of st into a JSON array (st is left to the caller). */
static cz_err_code collect_rows(cz_store *s, sqlite3_stmt *st, json_t **items, cz_error *err) {
  json_t *arr = json_array();
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) json_array_append_new(arr, row_json(st));
  if (r != SQLITE_DONE) {
    json_decref(arr);
    return db_error(s, err, "query");
  }
  *items = arr;
  return CZ_E_OK;
}

/* collect_rows, then finalize st. */
static cz_err_code collect(cz_store *s, sqlite3_stmt *st, json_t **items, cz_error *err) {
  cz_err_code rc = collect_rows(s, st, items, err);
  sqlite3_finalize(st);
  return rc;
}

/* Read queries share this: lock, prepare, bind by the callback, collect. */
typedef void (*bind_fn)(sqlite3_stmt *st, const void *cls);

static cz_err_code query(cz_store *s, const char *sql, bind_fn bind, const void *cls,
                         json_t **items, cz_error *err) {
  pthread_mutex_lock(&s->lock);
  sqlite3_stmt *st;
  bool cached;
  cz_err_code rc = prepare_cached(s, sql, &st, &cached, err);
  if (!rc) {
    bind(st, cls);
    rc = collect_rows(s, st, items, err);
    release_stmt(st, cached);
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static cz_err_code query_one(cz_store *s, const char *sql, bind_fn bind, const void *cls,
                             const char *what, const char *id, json_t **out, cz_error *err) {
  json_t *items;
  cz_err_code rc = query(s, sql, bind, cls, &items, err);
  if (rc) return rc;
  if (json_array_size(items) == 0) {
    json_decref(items);
    return cz_err_set(err, CZ_E_NOT_FOUND, "%s %s not found", what, id);
  }
  *out = json_incref(json_array_get(items, 0));
  json_decref(items);
  return CZ_E_OK;
}

/* Page of a list: fetch limit+1 rows to know whether there is a next page. */
static void finish_page(json_t *items, int limit, int64_t *next_seq) {
  *next_seq = 0;
  if ((int)json_array_size(items) > limit) {
    json_array_remove(items, (size_t)limit);
    *next_seq = json_integer_value(json_object_get(json_array_get(items, (size_t)limit - 1), "seq"));
  }
}

/* ---- models ---- */

static cz_err_code model_insert_txn(cz_store *s, void *cls, cz_error *err) {
  const cz_model_row *m = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s,
                           "INSERT INTO models (id, name, sha256, bytes, format, n_tensors, "
                           "n_params, tensors, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                           &st, err);
  if (rc) return rc;
  bind_text(st, 1, m->id);
  bind_text(st, 2, m->name);
  bind_text(st, 3, m->sha256);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)m->bytes);
  bind_text(st, 5, m->format);
  sqlite3_bind_int64(st, 6, (sqlite3_int64)m->n_tensors);
  sqlite3_bind_int64(st, 7, (sqlite3_int64)m->n_params);
  bind_text(st, 8, m->tensors_json);
  sqlite3_bind_int64(st, 9, m->created_at);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_model_insert(cz_store *s, const cz_model_row *m, cz_error *err) {
  return run_txn(s, model_insert_txn, (void *)m, err);
}

static void bind_id(sqlite3_stmt *st, const void *id) { bind_text(st, 1, id); }

#define MODEL_COLS "seq, id, name, sha256, bytes, format, n_tensors, n_params, created_at"

cz_err_code cz_store_model_get(cz_store *s, const char *id, bool with_tensors, json_t **out,
                               cz_error *err) {
  const char *sql = with_tensors ? "SELECT " MODEL_COLS ", tensors FROM models WHERE id = ?"
                                 : "SELECT " MODEL_COLS " FROM models WHERE id = ?";
  return query_one(s, sql, bind_id, id, "model", id, out, err);
}

typedef struct {
  int limit;
  int64_t before;
  const char *state, *model;
} page_args;

static void bind_page(sqlite3_stmt *st, const void *cls) {
  const page_args *a = cls;
  sqlite3_bind_int64(st, 1, a->before > 0 ? a->before : INT64_MAX);
  sqlite3_bind_int(st, 2, a->limit + 1);
  if (sqlite3_bind_parameter_count(st) >= 4) {
    bind_text(st, 3, a->state);
    bind_text(st, 4, a->model);
  }
}

cz_err_code cz_store_model_list(cz_store *s, int limit, int64_t before_seq, json_t **items,
                                int64_t *next_seq, cz_error *err) {
  page_args a = {limit, before_seq, NULL, NULL};
  cz_err_code rc = query(s, "SELECT " MODEL_COLS " FROM models WHERE seq < ? ORDER BY seq DESC "
                            "LIMIT ?", bind_page, &a, items, err);
  if (!rc) finish_page(*items, limit, next_seq);
  return rc;
}

typedef struct {
  const char *id;
  char *sha256;
  bool *blob_free;
} model_delete_args;

static cz_err_code model_delete_txn(cz_store *s, void *cls, cz_error *err) {
  model_delete_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "SELECT sha256, (SELECT count(*) FROM jobs WHERE model_id = m.id "
                              "AND state IN ('queued','running')) FROM models m WHERE id = ?",
                           &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return cz_err_set(err, CZ_E_NOT_FOUND, "model %s not found", a->id);
  }
  snprintf(a->sha256, 65, "%s", (const char *)sqlite3_column_text(st, 0));
  int active = sqlite3_column_int(st, 1);
  sqlite3_finalize(st);
  if (active)
    return cz_err_set(err, CZ_E_CONFLICT, "model %s is used by %d queued or running job(s)",
                      a->id, active);
  if ((rc = prepare(s, "DELETE FROM models WHERE id = ?", &st, err))) return rc;
  bind_text(st, 1, a->id);
  if ((rc = step_done(s, st, NULL, err))) return rc;
  if ((rc = prepare(s, "SELECT count(*) FROM models WHERE sha256 = ?", &st, err))) return rc;
  bind_text(st, 1, a->sha256);
  *a->blob_free = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0;
  sqlite3_finalize(st);
  return CZ_E_OK;
}

cz_err_code cz_store_model_delete(cz_store *s, const char *id, char sha256[65], bool *blob_free,
                                  cz_error *err) {
  model_delete_args a = {id, sha256, blob_free};
  *blob_free = false;
  return run_txn(s, model_delete_txn, &a, err);
}

/* ---- jobs ---- */

#define JOB_COLS                                                                              \
  "seq, id, model_id, recipe, state, attempts, max_attempts, cancel_requested, tensors_done, " \
  "tensors_total, bytes_done, bytes_total, error_code, error_message, artifact_sha256, "      \
  "artifact_bytes, artifact_format, report_sha256, created_at, started_at, finished_at, "     \
  "updated_at, retry_of"

/* The insert shared by submit and retry, inside their transaction: the model must exist
 * and, with a limit, the queue must have room. */
static cz_err_code job_insert_txn(cz_store *s, void *cls, cz_error *err) {
  const cz_job_submit *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "SELECT 1 FROM models WHERE id = ?", &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->model_id);
  bool found = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  if (!found) return cz_err_set(err, CZ_E_NOT_FOUND, "model: %s not found", a->model_id);
  if (a->max_queued > 0) {
    if ((rc = prepare(s, "SELECT count(*) FROM jobs WHERE state = 'queued'", &st, err))) return rc;
    int64_t queued = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (queued >= a->max_queued)
      return cz_err_set(err, CZ_E_QUEUE_FULL,
                        "the queue is full (%lld jobs waiting, the limit is %d); try again later",
                        (long long)queued, a->max_queued);
  }
  if ((rc = prepare(s, "INSERT INTO jobs (id, model_id, recipe, state, max_attempts, created_at, "
                       "updated_at, retry_of) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)", &st, err)))
    return rc;
  bind_text(st, 1, a->id);
  bind_text(st, 2, a->model_id);
  bind_text(st, 3, a->recipe_json);
  sqlite3_bind_int(st, 4, a->max_attempts);
  sqlite3_bind_int64(st, 5, a->now);
  sqlite3_bind_int64(st, 6, a->now);
  bind_text(st, 7, a->retry_of);
  if ((rc = step_done(s, st, NULL, err)) || !a->webhook_url) return rc;
  if ((rc = prepare(s, "INSERT INTO webhooks (job_id, url, secret, max_attempts, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", &st, err)))
    return rc;
  bind_text(st, 1, a->id);
  bind_text(st, 2, a->webhook_url);
  bind_text(st, 3, a->webhook_secret);
  sqlite3_bind_int(st, 4, a->webhook_max_attempts > 0 ? a->webhook_max_attempts : 1);
  sqlite3_bind_int64(st, 5, a->now);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_job_insert(cz_store *s, const char *id, const char *model_id,
                                const char *recipe_json, int max_attempts, int64_t now,
                                cz_error *err) {
  cz_job_submit a = {id, model_id, recipe_json, max_attempts, now, NULL, 0, NULL, NULL, 0};
  return run_txn(s, job_insert_txn, &a, err);
}

cz_err_code cz_store_job_get(cz_store *s, const char *id, json_t **out, cz_error *err) {
  return query_one(s, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", bind_id, id, "job", id, out,
                   err);
}

cz_err_code cz_store_job_list(cz_store *s, int limit, int64_t before_seq, const char *state,
                              const char *model_id, json_t **items, int64_t *next_seq,
                              cz_error *err) {
  page_args a = {limit, before_seq, state, model_id};
  cz_err_code rc = query(s, "SELECT " JOB_COLS " FROM jobs WHERE seq < ?1 AND (?3 IS NULL OR "
                            "state = ?3) AND (?4 IS NULL OR model_id = ?4) ORDER BY seq DESC "
                            "LIMIT ?2", bind_page, &a, items, err);
  if (!rc) finish_page(*items, limit, next_seq);
  return rc;
}

typedef struct {
  const char *id;
  int64_t now;
  bool *was_running;
} cancel_args;

static cz_err_code job_cancel_txn(cz_store *s, void *cls, cz_error *err) {
  cancel_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "SELECT state FROM jobs WHERE id = ?", &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return cz_err_set(err, CZ_E_NOT_FOUND, "job %s not found", a->id);
  }
  char state[16];
  snprintf(state, sizeof state, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  const char *sql;
  if (strcmp(state, "queued") == 0) {
    sql = "UPDATE jobs SET state = 'canceled', error_code = 'canceled', error_message = "
          "'canceled by request', finished_at = ?2, updated_at = ?2 WHERE id = ?1";
    *a->was_running = false;
  } else if (strcmp(state, "running") == 0) {
    sql = "UPDATE jobs SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1";
    *a->was_running = true;
  } else {
    return cz_err_set(err, CZ_E_CONFLICT, "job %s has already finished (%s)", a->id, state);
  }
  if ((rc = prepare(s, sql, &st, err))) return rc;
  bind_text(st, 1, a->id);
  sqlite3_bind_int64(st, 2, a->now);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_job_cancel(cz_store *s, const char *id, int64_t now, bool *was_running,
                                cz_error *err) {
  cancel_args a = {id, now, was_running};
  cz_err_code rc = run_txn(s, job_cancel_txn, &a, err);
  if (!rc) job_changed(s, id);
  return rc;
}

typedef struct {
  const char *owner;
  int64_t lease_ms, now;
  json_t **job;
} claim_args;

static cz_err_code job_claim_txn(cz_store *s, void *cls, cz_error *err) {
  claim_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(
      s,
      "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?1, "
      "lease_expires_at = ?2 + ?3, started_at = coalesce(started_at, ?2), updated_at = ?2, "
      "tensors_done = 0, bytes_done = 0 "
      "WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1) "
      "RETURNING " JOB_COLS,
      &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->owner);
  sqlite3_bind_int64(st, 2, a->now);
  sqlite3_bind_int64(st, 3, a->lease_ms);
  *a->job = NULL;
  json_t *rows;
  if ((rc = collect(s, st, &rows, err))) return rc;
  if (json_array_size(rows)) *a->job = json_incref(json_array_get(rows, 0));
  json_decref(rows);
  return CZ_E_OK;
}

cz_err_code cz_store_job_claim(cz_store *s, const char *owner, int64_t lease_ms, int64_t now,
                               json_t **job, cz_error *err) {
  claim_args a = {owner, lease_ms, now, job};
  cz_err_code rc = run_txn(s, job_claim_txn, &a, err);
  if (!rc && *job) job_changed(s, json_string_value(json_object_get(*job, "id")));
  return rc;
}

typedef struct {
  const char *id, *owner;
  uint64_t td, tt, bd, bt;
  int64_t lease_ms, now;
  bool *cancel;
} heartbeat_args;

static cz_err_code job_heartbeat_txn(cz_store *s, void *cls, cz_error *err) {
  heartbeat_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s,
                           "UPDATE jobs SET tensors_done = ?3, tensors_total = ?4, bytes_done = "
                           "?5, bytes_total = ?6, lease_expires_at = ?7 + ?8, updated_at = ?7 "
                           "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running' "
                           "RETURNING cancel_requested",
                           &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  bind_text(st, 2, a->owner);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)a->td);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)a->tt);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)a->bd);
  sqlite3_bind_int64(st, 6, (sqlite3_int64)a->bt);
  sqlite3_bind_int64(st, 7, a->now);
  sqlite3_bind_int64(st, 8, a->lease_ms);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    *a->cancel = sqlite3_column_int(st, 0) != 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    }
  } else if (r == SQLITE_DONE) {
    sqlite3_finalize(st);
    return cz_err_set(err, CZ_E_CONFLICT, "job %s is no longer leased by this process", a->id);
  }
  sqlite3_finalize(st);
  return r == SQLITE_DONE ? CZ_E_OK : db_error(s, err, "heartbeat");
}

cz_err_code cz_store_job_heartbeat(cz_store *s, const char *id, const char *owner,
                                   uint64_t tensors_done, uint64_t tensors_total,
                                   uint64_t bytes_done, uint64_t bytes_total, int64_t lease_ms,
                                   int64_t now, bool *cancel, cz_error *err) {
  heartbeat_args a = {id, owner, tensors_done, tensors_total, bytes_done, bytes_total,
                      lease_ms, now, cancel};
  *cancel = false;
  return run_txn(s, job_heartbeat_txn, &a, err);
}

typedef struct {
  const char *id, *owner;
  const cz_job_outcome *o;
  int64_t now;
} finish_args;

static cz_err_code job_finish_txn(cz_store *s, void *cls, cz_error *err) {
  finish_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(
      s,
      "UPDATE jobs SET state = ?3, error_code = ?4, error_message = ?5, artifact_sha256 = ?6, "
      "artifact_bytes = ?7, artifact_format = ?8, report_sha256 = ?9, finished_at = ?10, "
      "updated_at = ?10, lease_owner = NULL, lease_expires_at = NULL, "
      "tensors_done = CASE WHEN ?3 = 'succeeded' THEN tensors_total ELSE tensors_done END, "
      "bytes_done = CASE WHEN ?3 = 'succeeded' THEN bytes_total ELSE bytes_done END "
      "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
      &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  bind_text(st, 2, a->owner);
  bind_text(st, 3, a->o->state);
  bind_text(st, 4, a->o->error_code);
  bind_text(st, 5, a->o->error_message);
  bind_text(st, 6, a->o->artifact_sha256);
  if (a->o->artifact_sha256) sqlite3_bind_int64(st, 7, (sqlite3_int64)a->o->artifact_bytes);
  else sqlite3_bind_null(st, 7);
  bind_text(st, 8, a->o->artifact_format);
  bind_text(st, 9, a->o->report_sha256);
  sqlite3_bind_int64(st, 10, a->now);
  int changes = 0;
  if ((rc = step_done(s, st, &changes, err))) return rc;
  if (changes == 0)
    return cz_err_set(err, CZ_E_CONFLICT, "job %s is no longer leased by this process", a->id);
  return CZ_E_OK;
}

cz_err_code cz_store_job_finish(cz_store *s, const char *id, const char *owner,
                                const cz_job_outcome *o, int64_t now, cz_error *err) {
  finish_args a = {id, owner, o, now};
  cz_err_code rc = run_txn(s, job_finish_txn, &a, err);
  if (!rc) job_changed(s, id);
  return rc;
}

static cz_err_code job_release_txn(cz_store *s, void *cls, cz_error *err) {
  finish_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "UPDATE jobs SET state = 'queued', attempts = max(attempts - 1, 0), "
                              "lease_owner = NULL, lease_expires_at = NULL, updated_at = ?3 "
                              "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                           &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  bind_text(st, 2, a->owner);
  sqlite3_bind_int64(st, 3, a->now);
  int changes = 0;
  if ((rc = step_done(s, st, &changes, err))) return rc;
  if (changes == 0)
    return cz_err_set(err, CZ_E_CONFLICT, "job %s is no longer leased by this process", a->id);
  return CZ_E_OK;
}

cz_err_code cz_store_job_release(cz_store *s, const char *id, const char *owner, int64_t now,
                                 cz_error *err) {
  finish_args a = {id, owner, NULL, now};
  cz_err_code rc = run_txn(s, job_release_txn, &a, err);
  if (!rc) job_changed(s, id);
  return rc;
}

typedef struct {
  int64_t now;
  int *requeued, *failed;
} recover_args;

static cz_err_code recover_txn(cz_store *s, void *cls, cz_error *err) {
  recover_args *a = cls;
  sqlite3_stmt *st;
  /* a cancel that was requested before the crash is honoured rather than re-run */
  cz_err_code rc = prepare(s,
                           "UPDATE jobs SET state = 'canceled', error_code = 'canceled', "
                           "error_message = 'canceled by request', finished_at = ?1, "
                           "updated_at = ?1, lease_owner = NULL, lease_expires_at = NULL "
                           "WHERE state = 'running' AND cancel_requested = 1",
                           &st, err);
  if (rc) return rc;
  sqlite3_bind_int64(st, 1, a->now);
  if ((rc = step_done(s, st, NULL, err))) return rc;
  /* An orderly shutdown hands its jobs back (job_release_txn, attempt not counted), so a job
   * still 'running' here was held by a process that died: kill -9, OOM, or a crash inside
   * the compressor. Each such death consumed the attempt counted at claim; once they are all
   * used, the job is failed rather than crash the daemon again (a poison input). */
  rc = prepare(s,
                           "UPDATE jobs SET state = 'failed', error_code = 'worker_crash', "
                           "error_message = 'the daemon died while running the job ' || "
                           "attempts || ' time(s); giving up after max_attempts', finished_at = ?1, "
                           "updated_at = ?1, lease_owner = NULL, lease_expires_at = NULL "
                           "WHERE state = 'running' AND attempts >= max_attempts",
                           &st, err);
  if (rc) return rc;
  sqlite3_bind_int64(st, 1, a->now);
  if ((rc = step_done(s, st, a->failed, err))) return rc;
  if ((rc = prepare(s, "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = "
                       "NULL, updated_at = ?1 WHERE state = 'running'", &st, err)))
    return rc;
  sqlite3_bind_int64(st, 1, a->now);
  if ((rc = step_done(s, st, a->requeued, err))) return rc;
  /* the requests that held these claims died with the process */
  return exec(s, "DELETE FROM idempotency_keys WHERE state = 'in_flight'", err);
}

cz_err_code cz_store_recover(cz_store *s, int64_t now, int *requeued, int *failed,
                             cz_error *err) {
  recover_args a = {now, requeued, failed};
  *requeued = *failed = 0;
  return run_txn(s, recover_txn, &a, err);
}

static void bind_sha(sqlite3_stmt *st, const void *sha) {
  bind_text(st, 1, sha);
}

cz_err_code cz_store_blob_used(cz_store *s, const char *sha256, bool *used, cz_error *err) {
  json_t *items;
  cz_err_code rc = query(s, "SELECT 1 FROM models WHERE sha256 = ?1 UNION ALL SELECT 1 FROM jobs "
                            "WHERE artifact_sha256 = ?1 OR report_sha256 = ?1 UNION ALL "
                            "SELECT 1 FROM calibrations WHERE sha256 = ?1 LIMIT 1",
                         bind_sha, sha256, &items, err);
  if (rc) return rc;
  *used = json_array_size(items) > 0;
  json_decref(items);
  return CZ_E_OK;
}

/* ---- idempotency keys ---- */

typedef struct {
  const char *scope, *key, *hash, *resource;
  int64_t now, ttl_ms;
  int status;
  cz_idem_entry *out;
} idem_args;

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t cap) {
  const char *v = (const char *)sqlite3_column_text(st, i);
  snprintf(dst, cap, "%s", v ? v : "");
}

static cz_err_code idem_claim_txn(cz_store *s, void *cls, cz_error *err) {
  idem_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "DELETE FROM idempotency_keys WHERE expires_at <= ?1", &st, err);
  if (rc) return rc;
  sqlite3_bind_int64(st, 1, a->now);
  if ((rc = step_done(s, st, NULL, err))) return rc;
  if ((rc = prepare(s, "SELECT state, request_hash, resource_id, status FROM idempotency_keys "
                       "WHERE scope = ?1 AND key = ?2", &st, err)))
    return rc;
  bind_text(st, 1, a->scope);
  bind_text(st, 2, a->key);
  memset(a->out, 0, sizeof *a->out);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    a->out->found = true;
    a->out->done = strcmp((const char *)sqlite3_column_text(st, 0), "done") == 0;
    copy_col(st, 1, a->out->request_hash, sizeof a->out->request_hash);
    copy_col(st, 2, a->out->resource_id, sizeof a->out->resource_id);
    a->out->status = sqlite3_column_int(st, 3);
  }
  sqlite3_finalize(st);
  if (r != SQLITE_ROW && r != SQLITE_DONE) return db_error(s, err, "idempotency lookup");
  if (a->out->found) return CZ_E_OK;
  if ((rc = prepare(s, "INSERT INTO idempotency_keys (scope, key, state, request_hash, "
                       "created_at, expires_at) VALUES (?1, ?2, 'in_flight', ?3, ?4, ?4 + ?5)",
                    &st, err)))
    return rc;
  bind_text(st, 1, a->scope);
  bind_text(st, 2, a->key);
  bind_text(st, 3, a->hash);
  sqlite3_bind_int64(st, 4, a->now);
  sqlite3_bind_int64(st, 5, a->ttl_ms);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_idem_claim(cz_store *s, const char *scope, const char *key,
                                const char *request_hash, int64_t now, int64_t ttl_ms,
                                cz_idem_entry *out, cz_error *err) {
  idem_args a = {scope, key, request_hash, NULL, now, ttl_ms, 0, out};
  return run_txn(s, idem_claim_txn, &a, err);
}

static cz_err_code idem_complete_txn(cz_store *s, void *cls, cz_error *err) {
  idem_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "UPDATE idempotency_keys SET state = 'done', request_hash = ?3, "
                              "resource_id = ?4, status = ?5 WHERE scope = ?1 AND key = ?2",
                           &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->scope);
  bind_text(st, 2, a->key);
  bind_text(st, 3, a->hash);
  bind_text(st, 4, a->resource);
  sqlite3_bind_int(st, 5, a->status);
  int changes = 0;
  if ((rc = step_done(s, st, &changes, err))) return rc;
  if (changes == 0)
    return cz_err_set(err, CZ_E_NOT_FOUND, "idempotency key %s is not claimed", a->key);
  return CZ_E_OK;
}

cz_err_code cz_store_idem_complete(cz_store *s, const char *scope, const char *key,
                                   const char *request_hash, const char *resource_id,
                                   int status, cz_error *err) {
  idem_args a = {scope, key, request_hash, resource_id, 0, 0, status, NULL};
  return run_txn(s, idem_complete_txn, &a, err);
}

static cz_err_code idem_release_txn(cz_store *s, void *cls, cz_error *err) {
  idem_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND "
                              "state = 'in_flight'", &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->scope);
  bind_text(st, 2, a->key);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_idem_release(cz_store *s, const char *scope, const char *key,
                                  cz_error *err) {
  idem_args a = {scope, key, NULL, NULL, 0, 0, 0, NULL};
  return run_txn(s, idem_release_txn, &a, err);
}

/* ---- change notification ---- */

void cz_store_set_job_listener(cz_store *s, void (*fn)(void *cls, const char *job_id),
                               void *cls) {
  pthread_mutex_lock(&s->lock);
  s->job_listener = fn;
  s->job_listener_cls = cls;
  pthread_mutex_unlock(&s->lock);
}

/* ---- submit with a queue limit, retry ---- */

cz_err_code cz_store_job_submit(cz_store *s, const cz_job_submit *a, cz_error *err) {
  return run_txn(s, job_insert_txn, (void *)a, err);
}

typedef struct {
  const char *id;
  cz_job_submit sub;   /* model and recipe filled from the original */
} retry_args;

static cz_err_code job_retry_txn(cz_store *s, void *cls, cz_error *err) {
  retry_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "SELECT state, model_id, recipe FROM jobs WHERE id = ?", &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return cz_err_set(err, CZ_E_NOT_FOUND, "job %s not found", a->id);
  }
  char state[16];
  copy_col(st, 0, state, sizeof state);
  char *model = strdup((const char *)sqlite3_column_text(st, 1));
  char *recipe = strdup((const char *)sqlite3_column_text(st, 2));
  sqlite3_finalize(st);
  if (!model || !recipe) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  } else if (strcmp(state, "failed") != 0 && strcmp(state, "canceled") != 0) {
    rc = cz_err_set(err, CZ_E_CONFLICT,
                    "job %s is %s: only a failed or canceled job can be retried", a->id, state);
  } else {
    a->sub.model_id = model;
    a->sub.recipe_json = recipe;
    a->sub.retry_of = a->id;
    rc = job_insert_txn(s, &a->sub, err);
    if (rc == CZ_E_NOT_FOUND)
      rc = cz_err_set(err, CZ_E_CONFLICT, "job %s cannot be retried: its model %s was deleted",
                      a->id, model);
  }
  free(model);
  free(recipe);
  return rc;
}

cz_err_code cz_store_job_retry(cz_store *s, const char *id, const char *new_id,
                               int max_attempts, int max_queued, int64_t now, cz_error *err) {
  retry_args a = {id, {new_id, NULL, NULL, max_attempts, now, id, max_queued, NULL, NULL, 0}};
  return run_txn(s, job_retry_txn, &a, err);
}

/* ---- counts for /metrics ---- */

static void bind_nothing(sqlite3_stmt *st, const void *cls) {
  (void)st;
  (void)cls;
}

cz_err_code cz_store_job_counts(cz_store *s, int64_t counts[5], cz_error *err) {
  static const char *const states[] = {"queued", "running", "succeeded", "failed", "canceled"};
  json_t *rows;
  cz_err_code rc = query(s, "SELECT state, count(*) AS n FROM jobs GROUP BY state", bind_nothing,
                         NULL, &rows, err);
  if (rc) return rc;
  memset(counts, 0, 5 * sizeof counts[0]);
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    const char *st = json_string_value(json_object_get(row, "state"));
    for (int k = 0; k < 5; k++)
      if (st && strcmp(st, states[k]) == 0) counts[k] = json_integer_value(json_object_get(row, "n"));
  }
  json_decref(rows);
  return CZ_E_OK;
}

/* ---- calibrations ---- */

static cz_err_code calibration_insert_txn(cz_store *s, void *cls, cz_error *err) {
  const cz_calibration_row *c = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s,
                           "INSERT INTO calibrations (id, name, sha256, bytes, format, n_entries, "
                           "chunk_count, chunk_size, datasets, created_at) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?)",
                           &st, err);
  if (rc) return rc;
  bind_text(st, 1, c->id);
  bind_text(st, 2, c->name);
  bind_text(st, 3, c->sha256);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)c->bytes);
  bind_text(st, 5, c->format);
  sqlite3_bind_int64(st, 6, (sqlite3_int64)c->n_entries);
  sqlite3_bind_int64(st, 7, (sqlite3_int64)c->chunk_count);
  sqlite3_bind_int64(st, 8, (sqlite3_int64)c->chunk_size);
  bind_text(st, 9, c->datasets_json);
  sqlite3_bind_int64(st, 10, c->created_at);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_calibration_insert(cz_store *s, const cz_calibration_row *c, cz_error *err) {
  return run_txn(s, calibration_insert_txn, (void *)c, err);
}

#define CALIBRATION_COLS \
  "seq, id, name, sha256, bytes, format, n_entries, chunk_count, chunk_size, datasets, created_at"

cz_err_code cz_store_calibration_get(cz_store *s, const char *id, json_t **out, cz_error *err) {
  return query_one(s, "SELECT " CALIBRATION_COLS " FROM calibrations WHERE id = ?", bind_id, id,
                   "calibration", id, out, err);
}

cz_err_code cz_store_calibration_list(cz_store *s, int limit, int64_t before_seq, json_t **items,
                                      int64_t *next_seq, cz_error *err) {
  page_args a = {limit, before_seq, NULL, NULL};
  cz_err_code rc = query(s, "SELECT " CALIBRATION_COLS " FROM calibrations WHERE seq < ? "
                            "ORDER BY seq DESC LIMIT ?", bind_page, &a, items, err);
  if (!rc) finish_page(*items, limit, next_seq);
  return rc;
}

/* ---- API tokens ---- */

typedef struct {
  const char *id, *name, *scope, *hash;
  int64_t now;
} token_args;

static cz_err_code token_insert_txn(cz_store *s, void *cls, cz_error *err) {
  token_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "INSERT INTO api_tokens (id, name, scope, hash, created_at) "
                              "VALUES (?, ?, ?, ?, ?)", &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  bind_text(st, 2, a->name);
  bind_text(st, 3, a->scope);
  bind_text(st, 4, a->hash);
  sqlite3_bind_int64(st, 5, a->now);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_token_insert(cz_store *s, const char *id, const char *name,
                                  const char *scope, const char *hash, int64_t now,
                                  cz_error *err) {
  token_args a = {id, name, scope, hash, now};
  return run_txn(s, token_insert_txn, &a, err);
}

cz_err_code cz_store_token_get(cz_store *s, const char *id, json_t **out, cz_error *err) {
  return query_one(s, "SELECT id, name, scope, hash, created_at, revoked_at FROM api_tokens "
                      "WHERE id = ?", bind_id, id, "token", id, out, err);
}

cz_err_code cz_store_token_list(cz_store *s, json_t **items, cz_error *err) {
  return query(s, "SELECT id, name, scope, created_at, revoked_at FROM api_tokens ORDER BY "
                  "created_at, id", bind_nothing, NULL, items, err);
}

static cz_err_code token_revoke_txn(cz_store *s, void *cls, cz_error *err) {
  token_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "SELECT revoked_at FROM api_tokens WHERE id = ?", &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  int r = sqlite3_step(st);
  bool revoked = r == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
  sqlite3_finalize(st);
  if (r != SQLITE_ROW) return cz_err_set(err, CZ_E_NOT_FOUND, "token %s not found", a->id);
  if (revoked) return cz_err_set(err, CZ_E_CONFLICT, "token %s is already revoked", a->id);
  if ((rc = prepare(s, "UPDATE api_tokens SET revoked_at = ? WHERE id = ?", &st, err))) return rc;
  sqlite3_bind_int64(st, 1, a->now);
  bind_text(st, 2, a->id);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_token_revoke(cz_store *s, const char *id, int64_t now, cz_error *err) {
  token_args a = {id, NULL, NULL, NULL, now};
  return run_txn(s, token_revoke_txn, &a, err);
}

/* ---- the per-job event log ---- */

typedef struct {
  const char *id;
  int64_t now;
  const cz_job_log_line *lines;
  size_t n;
} log_append_args;

static bool valid_level(const char *l) {
  return l && (!strcmp(l, "info") || !strcmp(l, "warn") || !strcmp(l, "error"));
}

static cz_err_code job_log_append_txn(cz_store *s, void *cls, cz_error *err) {
  log_append_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "SELECT coalesce((SELECT max(seq) FROM job_events WHERE job_id = ?1), 0) "
                              "FROM jobs WHERE id = ?1", &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return cz_err_set(err, CZ_E_NOT_FOUND, "job %s not found", a->id);
  }
  int64_t seq = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if ((rc = prepare(s, "INSERT INTO job_events (job_id, seq, at, level, event, message) "
                       "VALUES (?, ?, ?, ?, ?, ?)", &st, err)))
    return rc;
  for (size_t i = 0; i < a->n && !rc; i++) {
    const cz_job_log_line *l = &a->lines[i];
    if (!valid_level(l->level) || !l->event || !l->message) {
      rc = cz_err_set(err, CZ_E_INVALID_ARGUMENT, "log line %zu: level must be info, warn or error", i);
      break;
    }
    size_t len = strlen(l->message);
    if (len > CZ_JOB_LOG_MAX_MESSAGE) len = CZ_JOB_LOG_MAX_MESSAGE;
    sqlite3_reset(st);
    bind_text(st, 1, a->id);
    sqlite3_bind_int64(st, 2, ++seq);
    sqlite3_bind_int64(st, 3, a->now);
    bind_text(st, 4, l->level);
    bind_text(st, 5, l->event);
    sqlite3_bind_text(st, 6, l->message, (int)len, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_error(s, err, "appending to the job log");
  }
  sqlite3_finalize(st);
  return rc;
}

cz_err_code cz_store_job_log_append(cz_store *s, const char *id, int64_t now,
                                    const cz_job_log_line *lines, size_t n, cz_error *err) {
  if (n == 0) return CZ_E_OK;
  if (n > CZ_JOB_LOG_MAX_LINES)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%zu log lines at once; the limit is %d", n,
                      CZ_JOB_LOG_MAX_LINES);
  log_append_args a = {id, now, lines, n};
  return run_txn(s, job_log_append_txn, &a, err);
}

typedef struct {
  const char *id;
  int64_t since;
  int limit;
} log_read_args;

static void bind_log_read(sqlite3_stmt *st, const void *cls) {
  const log_read_args *a = cls;
  bind_text(st, 1, a->id);
  sqlite3_bind_int64(st, 2, a->since);
  sqlite3_bind_int(st, 3, a->limit);
}

cz_err_code cz_store_job_log(cz_store *s, const char *id, int64_t since, int limit,
                             json_t **out, cz_error *err) {
  if (limit < 1 || limit > CZ_JOB_LOG_MAX_LINES) limit = CZ_JOB_LOG_MAX_LINES;
  if (since < 0) since = 0;
  log_read_args a = {id, since, limit};
  /* one statement, so the state and the bounds agree with the lines (a job that has no line
   * past `since` still gives one row, with NULL seq) */
  json_t *rows;
  cz_err_code rc = query(
      s,
      "SELECT j.state AS state, "
      "coalesce((SELECT min(seq) FROM job_events WHERE job_id = j.id), 0) AS first_seq, "
      "coalesce((SELECT max(seq) FROM job_events WHERE job_id = j.id), 0) AS last_seq, "
      "e.seq AS seq, e.at AS at, e.level AS level, e.event AS event, e.message AS message "
      "FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id AND e.seq > ?2 "
      "WHERE j.id = ?1 ORDER BY e.seq LIMIT ?3",
      bind_log_read, &a, &rows, err);
  if (rc) return rc;
  if (json_array_size(rows) == 0) {
    json_decref(rows);
    return cz_err_set(err, CZ_E_NOT_FOUND, "job %s not found", id);
  }
  json_t *first = json_array_get(rows, 0);
  json_t *lines = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    if (json_is_null(json_object_get(row, "seq"))) continue;
    json_array_append_new(lines, json_pack("{s:O, s:O, s:O, s:O, s:O}", "seq", json_object_get(row, "seq"),
                                           "at", json_object_get(row, "at"), "level",
                                           json_object_get(row, "level"), "event",
                                           json_object_get(row, "event"), "message",
                                           json_object_get(row, "message")));
  }
  *out = json_pack("{s:O, s:O, s:O, s:o}", "state", json_object_get(first, "state"), "first_seq",
                   json_object_get(first, "first_seq"), "last_seq",
                   json_object_get(first, "last_seq"), "lines", lines);
  json_decref(rows);
  return *out ? CZ_E_OK : cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
}

/* ---- webhooks ---- */

#define WEBHOOK_COLS                                                                          \
  "job_id, url, state, msg_id, event, attempts, max_attempts, next_attempt_at, last_status, " \
  "last_error, created_at, delivered_at"

cz_err_code cz_store_webhook_get(cz_store *s, const char *job_id, json_t **out, cz_error *err) {
  return query_one(s, "SELECT " WEBHOOK_COLS " FROM webhooks WHERE job_id = ?", bind_id, job_id,
                   "webhook of job", job_id, out, err);
}

static void bind_limit(sqlite3_stmt *st, const void *cls) { sqlite3_bind_int(st, 1, *(const int *)cls); }

cz_err_code cz_store_webhook_finished(cz_store *s, int limit, json_t **jobs, cz_error *err) {
  return query(s, "SELECT " JOB_COLS " FROM jobs WHERE id IN (SELECT job_id FROM webhooks "
                  "WHERE state = 'waiting') AND state IN ('succeeded', 'failed', 'canceled') "
                  "ORDER BY finished_at LIMIT ?1", bind_limit, &limit, jobs, err);
}

typedef struct {
  const char *job_id, *msg_id, *event, *payload;
  int64_t now;
} schedule_args;

static cz_err_code webhook_schedule_txn(cz_store *s, void *cls, cz_error *err) {
  schedule_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "UPDATE webhooks SET state = 'pending', msg_id = ?2, event = ?3, "
                              "payload = ?4, next_attempt_at = ?5 "
                              "WHERE job_id = ?1 AND state = 'waiting'", &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->job_id);
  bind_text(st, 2, a->msg_id);
  bind_text(st, 3, a->event);
  bind_text(st, 4, a->payload);
  sqlite3_bind_int64(st, 5, a->now);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_webhook_schedule(cz_store *s, const char *job_id, const char *msg_id,
                                      const char *event, const char *payload, int64_t now,
                                      cz_error *err) {
  schedule_args a = {job_id, msg_id, event, payload, now};
  return run_txn(s, webhook_schedule_txn, &a, err);
}

typedef struct {
  int64_t now;
  int limit;
} due_args;

static void bind_due(sqlite3_stmt *st, const void *cls) {
  const due_args *a = cls;
  sqlite3_bind_int64(st, 1, a->now);
  sqlite3_bind_int(st, 2, a->limit);
}

cz_err_code cz_store_webhook_due(cz_store *s, int64_t now, int limit, json_t **items,
                                 cz_error *err) {
  due_args a = {now, limit};
  return query(s, "SELECT job_id, url, secret, msg_id, payload, attempts, max_attempts "
                  "FROM webhooks WHERE state = 'pending' AND next_attempt_at <= ?1 "
                  "ORDER BY next_attempt_at LIMIT ?2", bind_due, &a, items, err);
}

cz_err_code cz_store_webhook_next(cz_store *s, int64_t *at, cz_error *err) {
  json_t *items;
  int one = 1;
  cz_err_code rc = query(s, "SELECT min(next_attempt_at) AS t FROM webhooks WHERE state = "
                            "'pending' LIMIT ?1", bind_limit, &one, &items, err);
  if (rc) return rc;
  json_t *t = json_object_get(json_array_get(items, 0), "t");
  *at = json_is_integer(t) ? json_integer_value(t) : INT64_MAX;
  json_decref(items);
  return CZ_E_OK;
}

typedef struct {
  const char *job_id, *error;
  bool ok;
  int status;
  int64_t now, retry_at;
} attempt_args;

static cz_err_code webhook_attempt_txn(cz_store *s, void *cls, cz_error *err) {
  attempt_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(
      s,
      "UPDATE webhooks SET attempts = attempts + 1, last_status = ?3, last_error = ?4, "
      "state = CASE WHEN ?2 THEN 'delivered' WHEN attempts + 1 >= max_attempts THEN 'failed' "
      "ELSE 'pending' END, "
      "next_attempt_at = CASE WHEN ?2 OR attempts + 1 >= max_attempts THEN NULL ELSE ?6 END, "
      "delivered_at = CASE WHEN ?2 THEN ?5 ELSE NULL END "
      "WHERE job_id = ?1 AND state = 'pending'",
      &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->job_id);
  sqlite3_bind_int(st, 2, a->ok);
  if (a->status > 0) sqlite3_bind_int(st, 3, a->status);
  else sqlite3_bind_null(st, 3);
  bind_text(st, 4, a->error);
  sqlite3_bind_int64(st, 5, a->now);
  sqlite3_bind_int64(st, 6, a->retry_at);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_webhook_attempt(cz_store *s, const char *job_id, bool ok, int status,
                                     const char *error, int64_t now, int64_t retry_at,
                                     cz_error *err) {
  attempt_args a = {job_id, error, ok, status, now, retry_at};
  return run_txn(s, webhook_attempt_txn, &a, err);
}

/* ---- recent failures ---- */

cz_err_code cz_store_recent_failures(cz_store *s, json_t **out, cz_error *err) {
  /* SQLite gives the bare columns of a max() group from the row that has the max: the
   * newest failure of each code names its job and message */
  char sql[512];
  snprintf(sql, sizeof sql,
           "WITH recent AS (SELECT seq, id, error_code, error_message, finished_at FROM jobs "
           "WHERE state = 'failed' ORDER BY seq DESC LIMIT %d) "
           "SELECT coalesce(error_code, '?') AS code, count(*) AS count, max(seq) AS last_seq, "
           "finished_at AS last_at, id AS last_job, error_message AS last_message "
           "FROM recent GROUP BY code ORDER BY count DESC, last_seq DESC",
           CZ_RECENT_FAILURES);
  json_t *rows;
  cz_err_code rc = query(s, sql, bind_nothing, NULL, &rows, err);
  if (rc) return rc;
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) json_object_del(row, "last_seq");
  *out = rows;
  return CZ_E_OK;
}

/* ---- deletion and retention ---- */

typedef struct {
  const char *id;
  char *artifact, *report;
} job_delete_args;

static cz_err_code job_delete_txn(cz_store *s, void *cls, cz_error *err) {
  job_delete_args *a = cls;
  sqlite3_stmt *st;
  cz_err_code rc = prepare(s, "SELECT state, artifact_sha256, report_sha256 FROM jobs WHERE id = ?",
                           &st, err);
  if (rc) return rc;
  bind_text(st, 1, a->id);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return cz_err_set(err, CZ_E_NOT_FOUND, "job %s not found", a->id);
  }
  char state[16];
  copy_col(st, 0, state, sizeof state);
  copy_col(st, 1, a->artifact, 65);
  copy_col(st, 2, a->report, 65);
  sqlite3_finalize(st);
  if (!strcmp(state, "queued") || !strcmp(state, "running"))
    return cz_err_set(err, CZ_E_CONFLICT, "job %s is %s: cancel it first", a->id, state);
  if ((rc = prepare(s, "DELETE FROM webhooks WHERE job_id = ?", &st, err))) return rc;
  bind_text(st, 1, a->id);
  if ((rc = step_done(s, st, NULL, err))) return rc;
  if ((rc = prepare(s, "DELETE FROM jobs WHERE id = ?", &st, err))) return rc;
  bind_text(st, 1, a->id);
  return step_done(s, st, NULL, err);
}

cz_err_code cz_store_job_delete(cz_store *s, const char *id, char artifact[65], char report[65],
                                cz_error *err) {
  job_delete_args a = {id, artifact, report};
  artifact[0] = report[0] = '\0';
  return run_txn(s, job_delete_txn, &a, err);
}

static void bind_candidates(sqlite3_stmt *st, const void *cls) {
  const int64_t *v = cls;
  sqlite3_bind_int64(st, 1, v[0]);
  sqlite3_bind_int64(st, 2, v[1]);
}

cz_err_code cz_store_retention_candidates(cz_store *s, int64_t before, int limit,
                                          json_t **items, cz_error *err) {
  int64_t args[2] = {before, limit};
  return query(s,
               "SELECT 'job' AS kind, id, finished_at AS t FROM jobs j WHERE state IN "
               "('succeeded', 'failed', 'canceled') AND finished_at < ?1 AND NOT EXISTS "
               "(SELECT 1 FROM webhooks w WHERE w.job_id = j.id AND w.state IN ('waiting', "
               "'pending')) "
               "UNION ALL SELECT 'model', id, created_at FROM models m WHERE created_at < ?1 "
               "AND NOT EXISTS (SELECT 1 FROM jobs WHERE model_id = m.id) "
               "ORDER BY t, id LIMIT ?2",
               bind_candidates, args, items, err);
}
