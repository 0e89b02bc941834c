-- Registrar bindings (RFC 3261 §10). One row per account and contact URI; the source address
-- and transport are where the REGISTER came from (NAT), the listener is where it arrived.
CREATE TABLE registrations (
    aor            TEXT    NOT NULL,
    contact        TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL, -- unix seconds
    q              INTEGER NOT NULL, -- thousandths
    call_id        TEXT    NOT NULL,
    cseq           INTEGER NOT NULL,
    transport      TEXT    NOT NULL,
    source_addr    TEXT    NOT NULL,
    local_addr     TEXT    NOT NULL,
    user_agent     TEXT,
    registered_at  INTEGER NOT NULL, -- unix seconds
    PRIMARY KEY (aor, contact)
);
CREATE INDEX registrations_expires_at ON registrations (expires_at);
