//! Live calls as the control interface sees them, and hanging one up from there.
use super::*;

/// One call in progress.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LiveCall {
    /// The call record's id.
    pub call_id: String,
    pub caller: String,
    /// What the caller dialled.
    pub callee: String,
    /// `flow` (a service number), `account` (a call to a phone or out through a trunk),
    /// `click_to_dial`, `test_line` or `feature_code`.
    pub kind: &'static str,
    /// Where the call stands: `dialing` (our first leg, click-to-dial, not answered yet),
    /// `ringing` (a caller waits for a phone to answer), `ivr` (in the flow), `queued`
    /// (waiting for an agent), `talking` (connected to an agent or a dialled party).
    pub state: &'static str,
    pub started_at_ms: i64,
    /// When a person (agent, dialled party) answered, if one has.
    pub answered_at_ms: Option<i64>,
    /// The flow and the node the caller is in (the IVR position).
    pub flow: Option<String>,
    pub node: Option<String>,
    /// The skill group the caller is queued to or was served from.
    pub queue: Option<String>,
    /// Waiting in that queue now.
    pub waiting: bool,
    /// The agent on (or last on) the call.
    pub agent: Option<String>,
}

/// Why the control interface could not hang a call up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no call with id {call_id}")]
pub struct NoSuchCall {
    pub call_id: String,
}

impl Endpoint {
    /// Every call in progress, oldest first.
    pub fn live_calls(&self) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self
            .calls
            .calls
            .values()
            .map(|c| {
                let (flow, node) = match c.flow.as_deref().and_then(|r| r.interp.position()) {
                    Some((flow, node)) => (Some(flow), Some(node)),
                    None => (c.flow.as_deref().map(|r| r.flow.clone()), None),
                };
                LiveCall {
                    call_id: c.cdr.call_id.clone(),
                    caller: c.caller.clone(),
                    callee: c.callee.clone(),
                    kind: match c.kind {
                        _ if c.click.is_some() => "click_to_dial",
                        Kind::TestLine => "test_line",
                        Kind::Bridge => "account",
                        Kind::Flow => "flow",
                        Kind::Feature => "feature_code",
                    },
                    state: if c.winner.is_some() {
                        "talking"
                    } else if c.queue.as_ref().is_some_and(|q| q.waiting) {
                        "queued"
                    } else if !c.answered && c.click.is_some() {
                        "dialing"
                    } else if !c.answered || c.kind == Kind::Bridge {
                        "ringing"
                    } else if c.kind == Kind::Flow {
                        "ivr"
                    } else {
                        "talking"
                    },
                    started_at_ms: c.cdr.started_ms,
                    answered_at_ms: c.cdr.answered_ms,
                    flow,
                    node,
                    queue: c.cdr.queue.clone(),
                    waiting: c.queue.as_ref().is_some_and(|q| q.waiting),
                    agent: c.cdr.agent.clone(),
                }
            })
            .collect();
        calls.sort_by(|a, b| (a.started_at_ms, &a.call_id).cmp(&(b.started_at_ms, &b.call_id)));
        calls
    }

    /// Hang a call up from the control interface: every leg gets BYE or CANCEL (the caller a
    /// final answer if it has none yet), and the record says the system hung up.
    pub fn hang_up_call(&mut self, now: Instant, call_id: &str) -> Result<(), NoSuchCall> {
        let key = self
            .calls
            .calls
            .iter()
            .find(|(_, c)| c.cdr.call_id == call_id)
            .map(|(k, _)| *k)
            .ok_or_else(|| NoSuchCall {
                call_id: call_id.to_owned(),
            })?;
        tracing::info!(call = key.0, "hung up by the control interface");
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.bye_reason = Some("Q.850;cause=16;text=\"Normal call clearing\"");
        }
        self.end_call(now, key, EndReason::Administrative, Some(480));
        self.drain_tx_events(now);
        Ok(())
    }
}
