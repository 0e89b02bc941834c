//! The flow interpreter: one per call, sans-IO. Events in, actions out; the call executes the
//! actions (media, HTTP, ACD, dialling) and reports their results as events. Time arrives as
//! `now` (monotonic, for timers) and `local` (the wall clock, for service hours).
use super::model::{Flow, HangupCause, HttpMethod, NodeId, PromptName};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the call knows when it enters a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    /// The caller's number (user part of From, or the trunk's E.164 number).
    pub caller: String,
    /// The dialled service number.
    pub called: String,
    /// Variables set before the flow starts (e.g. click-to-dial parameters).
    pub vars: BTreeMap<String, String>,
}

/// Something that happened to the call.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Enter the flow at its start node.
    Start,
    /// The prompts of the last `Play` action have all been sent.
    PlayDone,
    /// A DTMF key from the caller.
    Digit(char),
    /// A timer armed by `Action::StartTimer` fired (stale tokens are ignored).
    Timer(u64),
    /// The answer to `Action::Http`.
    HttpResponse { status: u16, body: String },
    /// `Action::Http` failed (timeout, connection error).
    HttpFailed { reason: String },
    /// The outcome of `Action::Enqueue`.
    Queue(QueueOutcome),
    /// The outcome of `Action::Dial` or `Action::Bridge`; `headers` from the far end's
    /// answer and BYE (for a bridge's `result_headers`).
    Leg {
        outcome: LegOutcome,
        headers: Vec<(String, String)>,
    },
    /// `Action::Record` finished.
    Recorded { path: String, duration: Duration },
    /// The caller hung up.
    CallerHangup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueOutcome {
    /// An agent answered; the agent leg has ended (the caller is still here).
    AgentDone,
    Timeout,
    /// The caller pressed the exit key.
    Exited,
    NoAgents,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegOutcome {
    /// Answered, then the far end hung up (the caller is still here).
    AnsweredThenHungUp,
    NoAnswer,
    Busy,
    Failed,
}

/// What the call must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Play prompts (replacing what plays); `PlayDone` follows unless `Stop` or another
    /// `Play` comes first. `barge_in`: keys arrive as `Digit` during playback.
    Play {
        prompts: Vec<PromptName>,
        barge_in: bool,
    },
    /// Stop playing.
    Stop,
    /// Arm a timer; `Event::Timer(token)` after `after`.
    StartTimer { token: u64, after: Duration },
    /// An HTTP request (templates already rendered).
    Http {
        method: HttpMethod,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<String>,
        timeout: Duration,
    },
    /// Queue the caller.
    Enqueue {
        queue: String,
        priority: i64,
        max_wait: Duration,
        announce_every: Option<Duration>,
        music: Option<PromptName>,
        exit_key: Option<char>,
    },
    /// Dial an extension, a number or a URI and bridge the caller to it.
    Dial {
        target: DialSpec,
        ring_timeout: Duration,
        headers: Vec<(String, String)>,
    },
    /// Record the caller (voicemail): `beep` first; ends on `#`, silence or `max_length`.
    Record {
        mailbox: String,
        beep: bool,
        max_length: Duration,
    },
    /// End the call.
    Hangup { cause: HangupCause },
    /// A collected input for the call record (`value` already masked when sensitive).
    Input {
        node: String,
        variable: String,
        value: String,
    },
    /// A survey score for the call record.
    Score { question: u8, score: u8 },
}

/// A resolved dial target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialSpec {
    Extension(String),
    Number {
        number: String,
        trunk: Option<String>,
    },
    Uri(String),
}

/// One step of the IVR trail: a node entered, with the exit that led out of it once known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailStep {
    pub flow: String,
    pub node: String,
    pub exit: Option<String>,
}

/// How the flow ended, once it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The flow hung up (a `hangup` node, or `return` at top level).
    Hangup(HangupCause),
    /// The caller hung up while in the flow, at this node.
    CallerHangup { node: String },
    /// Looked up flows (goto/subflow) are missing at run time (the validator checks names
    /// against the flows it knows; a flow deleted later lands here).
    Error(String),
}

/// Resolves `goto`/`subflow` targets at run time to the currently published flows.
pub trait FlowSource {
    fn flow(&self, name: &str) -> Option<Arc<Flow>>;
}

/// One call's walk through its flows.
#[derive(Debug)]
pub struct Interpreter {
    _private: (),
}

impl Interpreter {
    /// `local` is the call's wall-clock start in Unix seconds (hours are evaluated at the time
    /// each `hours` node is reached: `local + (now - start)`).
    pub fn new(flow: Arc<Flow>, call: CallInfo, now: Instant, local_unix: i64) -> Interpreter {
        let _ = (flow, call, now, local_unix);
        todo!()
    }

    /// Feed one event; returns the actions to execute, in order.
    pub fn handle(&mut self, event: Event, now: Instant, flows: &dyn FlowSource) -> Vec<Action> {
        let _ = (event, now, flows);
        todo!()
    }

    /// The nodes passed so far, in order.
    pub fn trail(&self) -> &[TrailStep] {
        todo!()
    }

    /// Call variables (collected inputs, `set`, HTTP results).
    pub fn vars(&self) -> &BTreeMap<String, String> {
        todo!()
    }

    /// `Some` once the flow has ended.
    pub fn end(&self) -> Option<&End> {
        todo!()
    }

    /// The node the call is in now.
    pub fn current(&self) -> Option<NodeId> {
        todo!()
    }
}
