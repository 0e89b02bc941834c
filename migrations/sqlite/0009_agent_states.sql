-- The agent-state log (座席状态): one row per state an agent was in, from the engine's agent-state
-- events (engine/src/events.rs: AcdEvent::AgentState). The agent report's time in each state is
-- summed from these rows. States are the event's codes (`idle`, `busy`, `break`, `ringing`,
-- `talking`, `wrap_up`, `logged_out`); a `break` row names the admin's break state. Times are
-- unix milliseconds.
--
-- Each event closes the agent's open row and opens the next in one transaction, so an agent has
-- at most one open row (ended_at_ms NULL). A row still open at start-up was left by a crash or a
-- stop and is closed at the last time the engine wrote anything.
CREATE TABLE agent_states (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    agent         TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    break_name    TEXT,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER            -- NULL while the agent is in this state
);
-- Reports read the rows begun in a time range, and the few begun before it and still going.
CREATE INDEX agent_states_started ON agent_states (started_at_ms, ended_at_ms);
CREATE INDEX agent_states_ended ON agent_states (ended_at_ms, started_at_ms);
CREATE INDEX agent_states_agent ON agent_states (agent, started_at_ms);
-- Each event closes its agent's open row; start-up repair looks only at open rows.
CREATE INDEX agent_states_open ON agent_states (agent) WHERE ended_at_ms IS NULL;

-- The agent report counts the agent legs (子话单) started in a time range.
CREATE INDEX cdr_legs_agent_started ON cdr_legs (started_at_ms) WHERE kind = 'agent';
