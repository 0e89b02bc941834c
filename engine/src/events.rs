//! Call events pushed to the customer's systems (对接中心): what happened to a call, as it
//! happens, in the order it happened.
//!
//! The endpoint raises them as [`crate::endpoint::Event::CallEvent`]; the shell stores each in
//! the webhook outbox in the same order, and the outbox delivers them to every configured URL
//! at least once, in order per call (see [`crate::webhook`]).

use serde::Serialize;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEventKind {
    /// An inbound call reached us and is being routed (呼入振铃).
    InboundRinging,
    /// A leg we placed rings: an agent's phone, a dialled number, a customer (外呼振铃).
    OutboundRinging,
    /// A person answered: an agent or dialled party on a leg, or the customer on an outbound
    /// call (客户接听).
    Answered,
    /// A leg or the whole call hung up (挂机).
    Hangup,
    /// The call record is written and final (话单推送); `data` carries it.
    CdrWritten,
}

impl CallEventKind {
    pub const ALL: [CallEventKind; 5] = [
        CallEventKind::InboundRinging,
        CallEventKind::OutboundRinging,
        CallEventKind::Answered,
        CallEventKind::Hangup,
        CallEventKind::CdrWritten,
    ];

    /// The stable name, as in the JSON body and in `webhooks[].events`.
    pub fn code(self) -> &'static str {
        match self {
            CallEventKind::InboundRinging => "inbound_ringing",
            CallEventKind::OutboundRinging => "outbound_ringing",
            CallEventKind::Answered => "answered",
            CallEventKind::Hangup => "hangup",
            CallEventKind::CdrWritten => "cdr_written",
        }
    }

    pub fn from_code(code: &str) -> Option<CallEventKind> {
        CallEventKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One event. Serialized as the webhook's JSON body:
/// `{"event": "answered", "call_id": "…", "at_ms": 1732000000000, "data": {…}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallEvent {
    #[serde(rename = "event")]
    pub kind: CallEventKind,
    /// The call record's id ([`crate::cdr::CdrOpen::call_id`]).
    pub call_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Event details: `caller`, `callee`, `leg_id`, `agent`, `queue`, `reason`, … (absent keys
    /// are unknown or do not apply); for `cdr_written`, the record itself.
    pub data: serde_json::Value,
}

/// An agent's or a skill group's change, for the realtime stream (`/api/v1/events`) and the
/// agent-state log the agent report is computed from. Raised by the endpoint as
/// [`crate::endpoint::Event::Acd`], only when something changed, in the order it changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AcdEvent {
    /// An agent entered a state: `logged_out`, `idle`, `busy`, `break` (with the admin's break
    /// name), `ringing`, `talking` or `wrap_up`.
    AgentState {
        agent: String,
        state: &'static str,
        break_name: Option<String>,
        /// Unix milliseconds.
        at_ms: i64,
    },
    /// A skill group's queue changed: callers waiting, and how long the longest has waited.
    QueueState {
        queue: String,
        waiting: usize,
        longest_wait_ms: Option<u64>,
        /// Unix milliseconds.
        at_ms: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_json() {
        for k in CallEventKind::ALL {
            assert_eq!(CallEventKind::from_code(k.code()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::from(k.code())
            );
        }
        assert_eq!(CallEventKind::from_code("ringing"), None);
    }
}
