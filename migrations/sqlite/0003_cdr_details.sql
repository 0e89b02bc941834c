-- The ACD fields of the main record and the columns a sub-record needs (engine/src/cdr.rs:
-- CdrClose, CdrLeg). Added to existing tables: 0002 may already be applied in a running
-- database, and its rows stay valid (every new column is NULL or an empty list).

-- The main record (主话单).
ALTER TABLE cdrs ADD COLUMN agent         TEXT;    -- the agent who served the call last
ALTER TABLE cdrs ADD COLUMN queue         TEXT;    -- the skill group the call was last queued to
ALTER TABLE cdrs ADD COLUMN queue_wait_ms INTEGER; -- summed over every queue the call entered
ALTER TABLE cdrs ADD COLUMN talk_ms       INTEGER; -- summed over the answered legs
ALTER TABLE cdrs ADD COLUMN wrap_up_ms    INTEGER; -- the serving agent's wrap-up (话后整理)
-- JSON array of {"question", "score"}, in the order the caller answered.
ALTER TABLE cdrs ADD COLUMN satisfaction  TEXT NOT NULL DEFAULT '[]';
ALTER TABLE cdrs ADD COLUMN caller_id     TEXT;    -- the display number shown to the customer

-- Sub-records (子话单): written when a leg starts and again when it ends (keyed by leg_id).
ALTER TABLE cdr_legs ADD COLUMN agent     TEXT;
ALTER TABLE cdr_legs ADD COLUMN queue     TEXT;
ALTER TABLE cdr_legs ADD COLUMN hangup_by TEXT;
ALTER TABLE cdr_legs ADD COLUMN caller_id TEXT;

-- A record is read with its legs in start order; this index serves that and every lookup the
-- plain call_id index served, which it replaces.
CREATE INDEX cdr_legs_call_started ON cdr_legs (call_id, started_at_ms, leg_id);
DROP INDEX cdr_legs_call_id;
-- Start-up repair looks only at open legs.
CREATE INDEX cdr_legs_open ON cdr_legs (call_id) WHERE ended_at_ms IS NULL;
