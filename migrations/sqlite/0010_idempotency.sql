-- Idempotency keys of the HTTP API (api/src/click.rs): a request sent again with the same
-- `Idempotency-Key` by the same token gets the first answer again instead of a second call.
-- A row without a status is a request still being served; rows older than a day are pruned.
CREATE TABLE api_idempotency (
    token_id      TEXT    NOT NULL,             -- the API token that sent the request
    key           TEXT    NOT NULL,             -- the client's Idempotency-Key
    request_hash  TEXT    NOT NULL,             -- hex SHA-256 of the method, path and body
    status        INTEGER,                      -- the answer's HTTP status, once there is one
    body          TEXT,                         -- the answer's JSON body
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (token_id, key)
);
CREATE INDEX api_idempotency_created ON api_idempotency (created_at_ms);
