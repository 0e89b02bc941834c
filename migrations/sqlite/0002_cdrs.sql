-- Call detail records (engine/src/cdr.rs). Enum columns hold the stable codes of engine::cdr
-- (`answered`, `blacklisted`, …), never numbers; times are unix milliseconds.

-- The main record (主话单): inserted when a call arrives, updated once when it ends. A row whose
-- ended_at_ms is still NULL at start-up was left open by a crash and is closed as a system failure.
CREATE TABLE cdrs (
    call_id               TEXT    NOT NULL PRIMARY KEY,
    call_type             TEXT    NOT NULL,
    direction             TEXT    NOT NULL,
    customer_number       TEXT    NOT NULL,
    trunk_number          TEXT,
    service_number        TEXT,
    started_at_ms         INTEGER NOT NULL,
    -- The last time the call was known to be alive: the start, then any progress the runtime
    -- records. A crashed call's end is taken from here rather than invented.
    last_seen_ms          INTEGER NOT NULL,
    ring_at_ms            INTEGER,
    answered_at_ms        INTEGER,
    ended_at_ms           INTEGER,           -- NULL while the call is up
    result                TEXT,              -- NULL while the call is up
    missed_reason         TEXT,
    ivr_trail             TEXT    NOT NULL DEFAULT '[]', -- JSON array of "flow:node→exit"
    inputs                TEXT    NOT NULL DEFAULT '[]', -- JSON array of {"name", "value"}, masked
    flow                  TEXT,
    flow_version          TEXT,
    hangup_by             TEXT,
    recording_path        TEXT,
    recording_duration_ms INTEGER
);
CREATE INDEX cdrs_started_at ON cdrs (started_at_ms);
CREATE INDEX cdrs_customer_number ON cdrs (customer_number);
CREATE INDEX cdrs_trunk_number ON cdrs (trunk_number);
CREATE INDEX cdrs_result ON cdrs (result);
-- Start-up repair looks only at open rows.
CREATE INDEX cdrs_open ON cdrs (call_id) WHERE ended_at_ms IS NULL;

-- Sub-records (子话单): one per leg to an agent, a transfer target, a third-party system or an
-- outbound number.
CREATE TABLE cdr_legs (
    leg_id          TEXT    NOT NULL PRIMARY KEY,
    call_id         TEXT    NOT NULL REFERENCES cdrs (call_id),
    kind            TEXT    NOT NULL,
    peer            TEXT    NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    answered_at_ms  INTEGER,
    ended_at_ms     INTEGER,
    result          TEXT,
    reason          TEXT
);
CREATE INDEX cdr_legs_call_id ON cdr_legs (call_id);

-- The IVR operation log: every publish of a flow, accepted or rejected (who, when, what).
CREATE TABLE flow_publications (
    id        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    flow      TEXT    NOT NULL,
    version   TEXT    NOT NULL, -- content hash of the file published
    actor     TEXT    NOT NULL, -- who or what: "file-watch", "start-up", an API user
    action    TEXT    NOT NULL, -- published | rejected
    diff      TEXT,             -- unified diff against the version that was serving
    errors    TEXT              -- validation errors of a rejected file, one per line
);
CREATE INDEX flow_publications_flow ON flow_publications (flow, id);
