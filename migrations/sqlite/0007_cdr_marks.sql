-- Marks on call records (标记): a supervisor or an agent flags a call for follow-up, with an
-- optional note (engine/src/store/marks.rs). A mark is independent of the call's progress: it can
-- be set while the call is up and survives the close, which never writes these columns. Rows
-- written before this migration are unmarked.
ALTER TABLE cdrs ADD COLUMN marked       INTEGER NOT NULL DEFAULT 0; -- 1 when marked
ALTER TABLE cdrs ADD COLUMN mark_note    TEXT;    -- at most 500 characters
ALTER TABLE cdrs ADD COLUMN marked_by    TEXT;    -- the API token's id that set the mark
ALTER TABLE cdrs ADD COLUMN marked_at_ms INTEGER; -- when it was set (unix ms)

-- "Marked calls, newest first" reads only the few marked rows.
CREATE INDEX cdrs_marked ON cdrs (started_at_ms) WHERE marked = 1;
