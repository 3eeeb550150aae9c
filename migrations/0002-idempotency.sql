-- 0002-idempotency: what POST /v1/models and POST /v1/jobs answered to an Idempotency-Key.
-- A key is claimed (in_flight) when its first request starts and completed (done) with the
-- id and status of what that request created; a failed request forgets its claim, so the
-- client may try again with the same key. Entries expire (expires_at, Unix ms; 24 h after
-- the claim); in-flight claims of a process that died are forgotten at start.
CREATE TABLE idempotency_keys (
  scope        TEXT NOT NULL,        -- "POST /v1/jobs" or "POST /v1/models" (+ caller)
  key          TEXT NOT NULL,        -- the client's Idempotency-Key, quotes removed
  state        TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
  request_hash TEXT,                 -- sha256 hex of the request; NULL while an upload streams
  resource_id  TEXT,                 -- the model or job created (done)
  status       INTEGER,              -- the HTTP status first answered (done)
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys(expires_at);
