-- 0012-webhooks: the optional webhook of a job (POST /v1/jobs {"webhook": {...}}) and the state
-- of its delivery, kept here so that a restart loses no pending delivery.
--   waiting   the job has not finished yet
--   pending   the job finished: msg_id, event and payload are fixed (every try sends the
--             same body and webhook-id, so the receiver can deduplicate); next try at
--             next_attempt_at (Unix ms)
--   delivered a try got a 2xx answer
--   failed    max attempts used without a 2xx
-- secret is the whsec_ secret as given: it signs every try, and is never shown by the API.
CREATE TABLE webhooks (
  job_id          TEXT PRIMARY KEY,
  url             TEXT NOT NULL,
  secret          TEXT NOT NULL,
  state           TEXT NOT NULL DEFAULT 'waiting'
                  CHECK (state IN ('waiting', 'pending', 'delivered', 'failed')),
  msg_id          TEXT,
  event           TEXT,
  payload         TEXT,
  attempts        INTEGER NOT NULL DEFAULT 0,
  max_attempts    INTEGER NOT NULL,
  next_attempt_at INTEGER,
  last_status     INTEGER,
  last_error      TEXT,
  created_at      INTEGER NOT NULL,
  delivered_at    INTEGER
);

CREATE INDEX webhooks_due ON webhooks(state, next_attempt_at);
