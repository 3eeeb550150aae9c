-- 0013-job-log: a per-job event log (GET /v1/jobs/{id}/log). Lines are numbered per job from
-- 1 (seq: the "since" cursor of a follower) and only the newest CZ_JOB_LOG_MAX_LINES = 1000
-- (daemon/cz_store.h) of a job are kept; the cap below must say the same number.
--
-- The state changes are logged by triggers on jobs rather than by each statement that makes
-- them (submit, retry, claim, release, finish, cancel, start-up recovery): a line is written in
-- the same transaction as its change, and a future code path that moves a job cannot forget
-- its line. The daemon adds the lines no row change shows (progress, per-tensor results, a lost
-- lease) with cz_store_job_log_append.
CREATE TABLE job_events (
  job_id  TEXT NOT NULL,
  seq     INTEGER NOT NULL,          -- 1, 2, ... per job; never reused, also after the cap
  at      INTEGER NOT NULL,          -- Unix milliseconds
  level   TEXT NOT NULL CHECK (level IN ('info', 'warn', 'error')),
  event   TEXT NOT NULL,             -- queued, claimed, progress, tensor, requeued, released,
                                     -- cancel_requested, lease_lost, retried, succeeded,
                                     -- failed, canceled
  message TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

-- keep the newest 1000 lines of the job (seq is dense, so this is one range of the key)
CREATE TRIGGER job_events_cap AFTER INSERT ON job_events
BEGIN
  DELETE FROM job_events WHERE job_id = NEW.job_id AND seq <= NEW.seq - 1000;
END;

CREATE TRIGGER job_events_submit AFTER INSERT ON jobs
BEGIN
  INSERT INTO job_events (job_id, seq, at, level, event, message)
  VALUES (NEW.id, 1, NEW.created_at, 'info', 'queued',
          CASE WHEN NEW.retry_of IS NULL THEN 'queued on model ' || NEW.model_id
               ELSE 'queued on model ' || NEW.model_id || ' as a retry of ' || NEW.retry_of END);
  INSERT INTO job_events (job_id, seq, at, level, event, message)
  SELECT NEW.retry_of, coalesce((SELECT max(seq) FROM job_events WHERE job_id = NEW.retry_of), 0) + 1,
         NEW.created_at, 'info', 'retried', 'retried as ' || NEW.id
  WHERE NEW.retry_of IS NOT NULL;
END;

CREATE TRIGGER job_events_state AFTER UPDATE OF state ON jobs
WHEN OLD.state IS NOT NEW.state
BEGIN
  INSERT INTO job_events (job_id, seq, at, level, event, message)
  SELECT NEW.id, coalesce((SELECT max(seq) FROM job_events WHERE job_id = NEW.id), 0) + 1,
         NEW.updated_at,
         CASE NEW.state WHEN 'failed' THEN 'error'
                        WHEN 'queued' THEN CASE WHEN NEW.attempts < OLD.attempts THEN 'info' ELSE 'warn' END
                        ELSE 'info' END,
         CASE WHEN NEW.state = 'running' THEN 'claimed'
              WHEN NEW.state = 'queued' AND NEW.attempts < OLD.attempts THEN 'released'
              WHEN NEW.state = 'queued' THEN 'requeued'
              ELSE NEW.state END,
         CASE WHEN NEW.state = 'running' THEN
                'claimed by ' || coalesce(NEW.lease_owner, '?') || ', attempt ' || NEW.attempts ||
                ' of ' || NEW.max_attempts
              WHEN NEW.state = 'queued' AND NEW.attempts < OLD.attempts THEN
                'handed back to the queue at shutdown (the attempt is not counted)'
              WHEN NEW.state = 'queued' THEN
                'back in the queue: the daemon stopped during attempt ' || NEW.attempts || ' of ' ||
                NEW.max_attempts
              WHEN NEW.state = 'succeeded' THEN
                'succeeded: ' || coalesce(NEW.artifact_format, '?') || ' artifact of ' ||
                coalesce(NEW.artifact_bytes, 0) || ' bytes, sha256 ' || coalesce(NEW.artifact_sha256, '?')
              WHEN NEW.state = 'canceled' THEN
                'canceled: ' || coalesce(NEW.error_message, 'by request') ||
                CASE OLD.state WHEN 'queued' THEN ' (before it started)' ELSE '' END
              ELSE 'failed: ' || coalesce(NEW.error_code, '?') || ': ' ||
                coalesce(NEW.error_message, '') END;
END;

CREATE TRIGGER job_events_cancel AFTER UPDATE OF cancel_requested ON jobs
WHEN NEW.cancel_requested = 1 AND OLD.cancel_requested = 0 AND NEW.state = 'running'
BEGIN
  INSERT INTO job_events (job_id, seq, at, level, event, message)
  SELECT NEW.id, coalesce((SELECT max(seq) FROM job_events WHERE job_id = NEW.id), 0) + 1,
         NEW.updated_at, 'info', 'cancel_requested',
         'cancel requested; the worker stops at its next chunk';
END;

-- a deleted job (retention) takes its log with it
CREATE TRIGGER job_events_delete AFTER DELETE ON jobs
BEGIN
  DELETE FROM job_events WHERE job_id = OLD.id;
END;
