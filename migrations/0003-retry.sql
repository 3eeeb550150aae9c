-- 0003-retry: a job made by POST /v1/jobs/{id}:retry names the failed or canceled job it
-- repeats (same model, same recipe). NULL for jobs submitted directly.
ALTER TABLE jobs ADD COLUMN retry_of TEXT;

CREATE INDEX jobs_retry_of ON jobs(retry_of);
