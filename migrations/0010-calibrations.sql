-- 0010-calibrations: importance matrices (llama.cpp imatrix GGUF or legacy .dat) that jobs
-- use for weighted quantization. The file is a blob like a model; a job names one with
-- "calibration" in its stored recipe.

CREATE TABLE calibrations (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  id          TEXT NOT NULL UNIQUE,
  name        TEXT NOT NULL,
  sha256      TEXT NOT NULL,          -- content address of the blob
  bytes       INTEGER NOT NULL,
  format      TEXT NOT NULL CHECK (format IN ('gguf', 'dat')),
  n_entries   INTEGER NOT NULL,       -- weights it has importance values for
  chunk_count INTEGER NOT NULL,       -- imatrix.chunk_count (0 when the file does not say)
  chunk_size  INTEGER NOT NULL,       -- imatrix.chunk_size (0 when the file does not say)
  datasets    TEXT NOT NULL,          -- JSON array of dataset names
  created_at  INTEGER NOT NULL
);

CREATE INDEX calibrations_sha256 ON calibrations(sha256);
