-- The webhook outbox (engine/src/webhook.rs): one row per (webhook, call event), written when the
-- event is raised and delivered from here, so that neither a receiver that is down nor a restart of
-- the engine loses an event. Times are unix milliseconds.
CREATE TABLE webhook_outbox (
    -- AUTOINCREMENT: ids are never reused, even after delivered rows are pruned, because the id
    -- is the X-Switchboard-Delivery header receivers de-duplicate on. The id is also the order.
    id                 INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    webhook            TEXT    NOT NULL,          -- webhooks[].name
    call_id            TEXT    NOT NULL,
    kind               TEXT    NOT NULL,          -- the event code (`answered`, …)
    body               BLOB    NOT NULL,          -- the exact JSON bytes that are signed and sent
    created_at_ms      INTEGER NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    delivered_at_ms    INTEGER,                   -- NULL until a 2xx
    failed             INTEGER NOT NULL DEFAULT 0, -- 1: given up after max_attempts
    last_error         TEXT
);
-- "The next due rows of a webhook": only undelivered, not given-up rows are indexed.
CREATE INDEX webhook_outbox_due ON webhook_outbox (webhook, next_attempt_at_ms)
    WHERE delivered_at_ms IS NULL AND failed = 0;
-- "Is an earlier row of this call still pending?", asked for every candidate row.
CREATE INDEX webhook_outbox_call ON webhook_outbox (webhook, call_id, id)
    WHERE delivered_at_ms IS NULL AND failed = 0;
-- Pruning old delivered rows.
CREATE INDEX webhook_outbox_delivered ON webhook_outbox (delivered_at_ms)
    WHERE delivered_at_ms IS NOT NULL;
