-- Blacklist entries (客户号码黑名单) managed through the HTTP API (engine/src/store/blacklist.rs).
-- The engine refuses the configured entries (`blacklist:` in the configuration file) and these;
-- an entry added here takes effect for the next call and survives a restart.
CREATE TABLE blacklist (
    id            INTEGER NOT NULL PRIMARY KEY,
    direction     TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    pattern       TEXT    NOT NULL, -- normalized: digits, no `+`, no spaces; `*` last for a prefix
    note          TEXT,             -- why it is listed, at most 200 characters
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL, -- the API token's id that added it
    UNIQUE (direction, pattern)
);
