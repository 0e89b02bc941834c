-- Bearer tokens of the HTTP API (api/src/auth.rs). A token is shown once, when it is created;
-- only the SHA-256 of the whole token is kept, so a copy of the database does not leak a usable
-- secret. A revoked token stays listed (who had access, and until when).
CREATE TABLE api_tokens (
    id              TEXT    NOT NULL PRIMARY KEY, -- public part of the token: sb_<id>_<secret>
    name            TEXT    NOT NULL,             -- what it is for ("ci", "crm")
    role            TEXT    NOT NULL,             -- admin | supervisor | agent | developer
    hash            TEXT    NOT NULL,             -- lowercase hex SHA-256 of the whole token
    created_at_ms   INTEGER NOT NULL,
    last_used_at_ms INTEGER,
    revoked_at_ms   INTEGER
);
