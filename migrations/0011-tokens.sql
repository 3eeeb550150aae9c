-- 0011-tokens: API tokens (compressd token create|list|revoke). A token is shown once, at
-- creation; only its sha256 is stored. Its id is also the token's visible prefix, so a
-- presented token is found by id and then compared by hash in constant time.
CREATE TABLE api_tokens (
  id         TEXT PRIMARY KEY,       -- "tok_" + 16 hex digits
  name       TEXT NOT NULL,          -- what the operator called it
  scope      TEXT NOT NULL CHECK (scope IN ('read', 'write')),  -- read: GET and HEAD only
  hash       TEXT NOT NULL,          -- sha256 hex of the whole token
  created_at INTEGER NOT NULL,
  revoked_at INTEGER                 -- NULL while valid
);
