-- 0001-init: models, jobs and the queue state. Shipped migrations are never edited.
-- Times are Unix milliseconds (UTC). Ids are opaque strings ("mdl_...", "job_...").
-- seq gives a stable order for paging (newest first) that does not depend on clocks.
-- The daemon runs each migration in its own BEGIN IMMEDIATE transaction and sets
-- user_version itself, so a file holds only schema statements.

CREATE TABLE models (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  id         TEXT NOT NULL UNIQUE,
  name       TEXT NOT NULL,
  sha256     TEXT NOT NULL,          -- content address of the blob
  bytes      INTEGER NOT NULL,
  format     TEXT NOT NULL CHECK (format IN ('safetensors', 'gguf')),
  n_tensors  INTEGER NOT NULL,
  n_params   INTEGER NOT NULL,
  tensors    TEXT NOT NULL,          -- JSON array of {name, dtype, shape}
  created_at INTEGER NOT NULL
);

CREATE TABLE jobs (
  seq              INTEGER PRIMARY KEY AUTOINCREMENT,
  id               TEXT NOT NULL UNIQUE,
  model_id         TEXT NOT NULL REFERENCES models(id),
  recipe           TEXT NOT NULL,    -- the normalized recipe, JSON
  state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
  attempts         INTEGER NOT NULL DEFAULT 0,  -- counted when claimed
  max_attempts     INTEGER NOT NULL,
  lease_owner      TEXT,             -- the process that holds a running job
  lease_expires_at INTEGER,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  tensors_done     INTEGER NOT NULL DEFAULT 0,
  tensors_total    INTEGER NOT NULL DEFAULT 0,
  bytes_done       INTEGER NOT NULL DEFAULT 0,
  bytes_total      INTEGER NOT NULL DEFAULT 0,
  error_code       TEXT,
  error_message    TEXT,
  artifact_sha256  TEXT,
  artifact_bytes   INTEGER,
  artifact_format  TEXT,
  report_sha256    TEXT,
  created_at       INTEGER NOT NULL,
  started_at       INTEGER,
  finished_at      INTEGER,
  updated_at       INTEGER NOT NULL
);

CREATE INDEX jobs_state ON jobs(state, seq);
CREATE INDEX jobs_model ON jobs(model_id);
