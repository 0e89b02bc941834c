-- The trunk an outbound leg went out through (engine/src/cdr.rs: CdrLeg::trunk). A trunk's
-- quota of outbound minutes is seeded at start-up from the talk time of its legs in the current
-- period, so a restart does not forget the minutes already used. Rows written before this
-- migration have NULL: they count to no trunk.
ALTER TABLE cdr_legs ADD COLUMN trunk TEXT;

-- The start-up sum: one trunk's answered legs since the period began.
CREATE INDEX cdr_legs_trunk_answered ON cdr_legs (trunk, answered_at_ms) WHERE trunk IS NOT NULL;
