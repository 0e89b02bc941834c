//! The flow interpreter: one per call, sans-IO. Events in, actions out; the call executes the
//! actions (media, HTTP, ACD, dialling) and reports their results as events. Time arrives as
//! `now` (monotonic, for timers) and `local` (the wall clock, for service hours).
//!
//! # Drive-loop contract
//! - Feed `Event::Start` once; then every event with `handle`, executing the returned actions
//!   in order before feeding the next event. Nodes that need no caller input (`set`,
//!   `switch`, `hours`, `goto`, `subflow`, `return`) run within one `handle` call, at most
//!   [`MAX_CHAIN`] of them, else the call ends with [`End::Error`].
//! - `PlayDone` must answer the latest `Play` only: after `Stop` or a newer `Play`, drop the
//!   older playback's completion. The interpreter cannot tell them apart.
//! - `StartTimer { token, after }`: feed `Timer(token)` after `after`. Timers are never
//!   cancelled; an outdated token is ignored, so the call may simply let them all fire.
//! - `Http { timeout, .. }`: the call enforces the timeout and reports it as `HttpFailed`.
//! - `Enqueue`: the call (ACD) plays music and announcements and handles the exit key; it
//!   reports one `Queue(outcome)`; `AgentDone` once the agent leg has ended with the caller
//!   still there. Keys during the queue, a dial or a bridge are not the flow's and are ignored.
//! - `Dial`: one `Leg { outcome, headers }` once the leg is over (for a bridge, `headers` are
//!   the far end's answer and BYE headers, in order; the last occurrence of a name wins and
//!   names compare case-insensitively).
//! - `Record`: one `Recorded { path, duration }`.
//! - Every end the flow decides comes with `Action::Hangup` as the last action: `hangup`
//!   nodes (their cause), `return` at top level and a queue's `AgentDone` without
//!   `after_agent` (`Normal`), [`End::Error`] (`Unavailable`). `CallerHangup` ends the flow
//!   with no action. After the end every event returns nothing.
//!
//! # Keys
//! A key during a barge-in prompt stops it (`Stop` comes first among the actions). A key that
//! ends a barge-in `play`, or arrives during an `http` request, is kept (type-ahead) and
//! consumed first by the next `menu`, `collect` or `survey`, which then skips its prompt.
//! Keys during a `play` without barge-in or a `voicemail` prompt are dropped. Type-ahead is
//! dropped when the caller enters a queue, dial, bridge or voicemail.
//!
//! `menu` and `collect` count failed attempts together: the first `retries` failures (no
//! input or invalid) replay with that failure's prompts (the main prompts if it has none);
//! the next one takes its `no_input` or `invalid` exit.
//!
//! # Failures inside a node
//! Nothing here panics or stops the call on a bad value: a `switch` condition that fails to
//! evaluate is false, a `set` template that fails leaves its variable unchanged, a failed
//! `http` URL/header/body template takes `error`, a failed dial target or bridge header takes
//! `failed`, a queue priority that is not an integer is 0, and an `hours` node whose calendar
//! is missing or has an unknown zone takes `closed`; each is logged with `tracing::warn!`.
//! An HTTP answer counts as `ok` only with a 2xx status and a JSON body (an empty body is
//! not JSON). Extracted values: strings as they are, numbers and booleans as text, arrays and
//! objects as JSON text; `null` and missing pointers leave the variable unset.
//!
//! # Trail
//! Entering a node appends a [`TrailStep`]; leaving it records the exit: a menu key (`"1"`),
//! `next`, `ok`, `no_input`, `invalid`, `open`, `closed`, `case1`… / `default`, `error`,
//! `timeout`, `exit`, `no_agents`, `full`, `agent_unavailable`, `agent_done`, `answered`,
//! `no_answer`, `busy`, `failed`, `returned`, `done`, `goto`, `subflow`, `return`. The node
//! where the flow ended keeps `exit: None`.
use super::hours;
use super::model::{
    DialTarget, Expr, Flow, HangupCause, HttpMethod, NodeId, NodeKind, PromptName, Template,
};
use std::collections::BTreeMap;
use std::collections::VecDeque;
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
    /// Call memory's fallback: the caller's number is bound to an agent who is not available
    /// and the ACD refused to queue the caller. Takes the node's `agent_unavailable` exit, or
    /// `no_agents` when it has none.
    AgentUnavailable,
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
    Http(HttpRequest),
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

/// An `http` node's request, rendered; the call's shell makes it within `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout: Duration,
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
/// The call record's own type, so the trail is stored as the interpreter keeps it.
pub use crate::cdr::TrailStep;

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

mod script;
#[cfg(test)]
mod tests;

pub use script::environment;

/// At most this many nodes are entered while handling one event. The validator rejects loops
/// without caller input, so reaching it means a flow changed under a running call (goto into
/// a newer version) or a validator bug; the call ends with [`End::Error`] instead of spinning.
pub const MAX_CHAIN: usize = 1000;

/// One call's walk through its flows.
#[derive(Debug)]
pub struct Interpreter {
    /// The flow the current node belongs to.
    flow: Arc<Flow>,
    /// Sub-flow calls in progress: the calling flow and where it goes on after `return`.
    returns: Vec<(Arc<Flow>, NodeId)>,
    caller: String,
    called: String,
    vars: BTreeMap<String, String>,
    /// Monotonic and wall-clock time at the start, and the wall clock of the event being
    /// handled (derived, never read).
    start: Instant,
    local_unix: i64,
    unix: i64,
    trail: Vec<TrailStep>,
    current: Option<NodeId>,
    wait: Wait,
    end: Option<End>,
    /// Keys pressed during a barge-in `play` (or an HTTP request), kept for the next node
    /// that reads keys. Dropped when the caller leaves the IVR (queue, dial, bridge, voicemail).
    typeahead: VecDeque<char>,
    /// The last timer token handed out; a `Timer` event counts only if the current node is
    /// waiting on exactly that token.
    last_token: u64,
}

/// Where a prompt-then-wait node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its prompt is playing.
    Prompt,
    /// The prompt is over; waiting for a key until the timer with this token fires.
    Waiting(u64),
}

/// What the current node waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wait {
    /// `Start` has not arrived.
    NotStarted,
    /// Between nodes while a chain runs (never seen between two events).
    Moving,
    /// `play`: its `PlayDone` (or a key, with barge-in).
    Play,
    Menu {
        failures: u32,
        phase: Phase,
    },
    Collect {
        failures: u32,
        digits: String,
        phase: Phase,
    },
    Http,
    Queue,
    Dial,
    Bridge,
    Voicemail {
        recording: bool,
    },
    Survey {
        question: u8,
        phase: Phase,
    },
    SurveyThanks,
    Ended,
}

/// What to do after a node has been entered or an event handled.
#[derive(Debug)]
enum Step {
    /// Enter this node of `self.flow` (the previous node's exit is already recorded).
    Enter(NodeId),
    /// Wait for the next event (or the flow has ended).
    Stay,
}

/// Why a menu, collect attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    NoInput,
    Invalid,
}

impl Interpreter {
    /// `local` is the call's wall-clock start in Unix seconds (hours are evaluated at the time
    /// each `hours` node is reached: `local + (now - start)`).
    pub fn new(flow: Arc<Flow>, call: CallInfo, now: Instant, local_unix: i64) -> Interpreter {
        Interpreter {
            flow,
            returns: Vec::new(),
            caller: call.caller,
            called: call.called,
            vars: call.vars,
            start: now,
            local_unix,
            unix: local_unix,
            trail: Vec::new(),
            current: None,
            wait: Wait::NotStarted,
            end: None,
            typeahead: VecDeque::new(),
            last_token: 0,
        }
    }

    /// Feed one event; returns the actions to execute, in order.
    pub fn handle(&mut self, event: Event, now: Instant, flows: &dyn FlowSource) -> Vec<Action> {
        let mut out = Vec::new();
        if self.end.is_some() {
            return out;
        }
        let elapsed = now.saturating_duration_since(self.start).as_secs();
        self.unix = self
            .local_unix
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX));
        let step = match event {
            Event::CallerHangup => {
                let node = self
                    .current
                    .map(|id| self.flow.node(id).name.clone())
                    .unwrap_or_default();
                self.end = Some(End::CallerHangup { node });
                self.wait = Wait::Ended;
                return out;
            }
            Event::Start if self.wait == Wait::NotStarted => Step::Enter(self.flow.start),
            _ if self.wait == Wait::NotStarted => Step::Stay,
            Event::Start => Step::Stay,
            event => self.on_event(event, &mut out),
        };
        self.run(step, &mut out, flows);
        out
    }

    /// The nodes passed so far, in order.
    pub fn trail(&self) -> &[TrailStep] {
        &self.trail
    }

    /// Call variables (collected inputs, `set`, HTTP results).
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// `Some` once the flow has ended.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// The node the call is in now.
    pub fn current(&self) -> Option<NodeId> {
        self.current
    }

    /// Where the caller is, by name: the flow it is in now (a sub-flow, when it entered one)
    /// and that flow's node.
    pub fn position(&self) -> Option<(String, String)> {
        self.current
            .map(|id| (self.flow.name.clone(), self.flow.node(id).name.clone()))
    }

    /// Enter nodes until one waits for an event or the flow ends.
    fn run(&mut self, mut step: Step, out: &mut Vec<Action>, flows: &dyn FlowSource) {
        let mut entered = 0;
        while let Step::Enter(id) = step {
            if self.end.is_some() {
                return;
            }
            entered += 1;
            if entered > MAX_CHAIN {
                let node = &self.flow.node(id).name;
                let reason = format!(
                    "flow {}: more than {MAX_CHAIN} nodes without caller input, at node {node}",
                    self.flow.name
                );
                self.fail(reason, out);
                return;
            }
            step = self.enter(id, out, flows);
        }
    }

    /// Record the exit taken out of the current node and move to `target`.
    fn exit(&mut self, name: &str, target: NodeId) -> Step {
        self.leave(name);
        Step::Enter(target)
    }

    fn leave(&mut self, name: &str) {
        if let Some(step) = self.trail.last_mut() {
            step.exit = Some(name.to_string());
        }
        self.wait = Wait::Moving;
    }

    fn finish(&mut self, end: End, cause: HangupCause, out: &mut Vec<Action>) -> Step {
        out.push(Action::Hangup { cause });
        self.end = Some(end);
        self.wait = Wait::Ended;
        Step::Stay
    }

    fn fail(&mut self, reason: String, out: &mut Vec<Action>) -> Step {
        tracing::warn!(flow = %self.flow.name, %reason, "IVR flow failed");
        self.finish(End::Error(reason), HangupCause::Unavailable, out)
    }

    fn arm(&mut self, after: Duration, out: &mut Vec<Action>) -> u64 {
        self.last_token += 1;
        out.push(Action::StartTimer {
            token: self.last_token,
            after,
        });
        self.last_token
    }

    fn scope(&self) -> script::Scope<'_> {
        script::Scope {
            caller: &self.caller,
            called: &self.called,
            vars: &self.vars,
            calendars: &self.flow.calendars,
            unix: self.unix,
        }
    }

    fn render(&self, what: &str, template: &Template) -> Option<String> {
        match self.scope().render(&template.0) {
            Ok(s) => Some(s),
            Err(error) => {
                self.warn(what, &error);
                None
            }
        }
    }

    fn warn(&self, what: &str, error: &dyn std::fmt::Display) {
        let node = self
            .current
            .map(|id| self.flow.node(id).name.as_str())
            .unwrap_or("");
        tracing::warn!(flow = %self.flow.name, node, what, %error, "IVR template or expression failed");
    }

    fn enter(&mut self, id: NodeId, out: &mut Vec<Action>, flows: &dyn FlowSource) -> Step {
        let flow = self.flow.clone();
        let node = flow.node(id);
        self.current = Some(id);
        self.wait = Wait::Moving;
        self.trail.push(TrailStep {
            flow: flow.name.clone(),
            node: node.name.clone(),
            exit: None,
        });
        match &node.kind {
            NodeKind::Play {
                prompts,
                barge_in,
                next,
            } => {
                if prompts.is_empty() {
                    return self.exit("next", *next);
                }
                out.push(Action::Play {
                    prompts: prompts.clone(),
                    barge_in: *barge_in,
                });
                self.wait = Wait::Play;
                Step::Stay
            }
            NodeKind::Menu { prompts, .. } => self.menu_attempt(&node.kind, 0, prompts, out),
            NodeKind::Collect { prompts, .. } => self.collect_attempt(&node.kind, 0, prompts, out),
            NodeKind::Hours {
                calendar,
                open,
                closed,
            } => {
                let is_open = match flow.calendars.get(calendar) {
                    Some(cal) => hours::is_open(cal, self.unix).unwrap_or_else(|e| {
                        self.warn("calendar", &e);
                        false
                    }),
                    None => {
                        self.warn("calendar", &format!("no calendar {calendar:?}"));
                        false
                    }
                };
                if is_open {
                    self.exit("open", *open)
                } else {
                    self.exit("closed", *closed)
                }
            }
            NodeKind::Switch { cases, default } => {
                for (i, (expr, target)) in cases.iter().enumerate() {
                    match self.scope().eval(&expr.0) {
                        Ok(v) if v.is_true() => {
                            return self.exit(&format!("case{}", i + 1), *target)
                        }
                        Ok(_) => {}
                        Err(e) => self.warn(&expr.0, &e),
                    }
                }
                self.exit("default", *default)
            }
            NodeKind::Set { assignments, next } => {
                for (var, template) in assignments {
                    if let Some(value) = self.render(var, template) {
                        self.vars.insert(var.clone(), value);
                    }
                }
                self.exit("next", *next)
            }
            NodeKind::Http {
                method,
                url,
                headers,
                body,
                timeout,
                error,
                ..
            } => {
                let url = self.render("url", url);
                let headers: Option<Vec<(String, String)>> = headers
                    .iter()
                    .map(|(name, t)| self.render(name, t).map(|v| (name.clone(), v)))
                    .collect();
                let body = match body {
                    Some(t) => self.render("body", t).map(Some),
                    None => Some(None),
                };
                let (Some(url), Some(headers), Some(body)) = (url, headers, body) else {
                    return self.exit("error", *error);
                };
                out.push(Action::Http(HttpRequest {
                    method: *method,
                    url,
                    headers,
                    body,
                    timeout: *timeout,
                }));
                self.wait = Wait::Http;
                Step::Stay
            }
            NodeKind::Queue {
                queue,
                priority,
                max_wait,
                announce_every,
                music,
                exit_key,
                ..
            } => {
                self.typeahead.clear();
                let priority = priority.as_ref().map_or(0, |expr| self.priority(expr));
                out.push(Action::Enqueue {
                    queue: queue.clone(),
                    priority,
                    max_wait: *max_wait,
                    announce_every: *announce_every,
                    music: music.clone(),
                    exit_key: *exit_key,
                });
                self.wait = Wait::Queue;
                Step::Stay
            }
            NodeKind::Dial {
                target,
                ring_timeout,
                failed,
                ..
            } => {
                self.typeahead.clear();
                let spec = match target {
                    DialTarget::Extension(t) => {
                        self.render("extension", t).map(DialSpec::Extension)
                    }
                    DialTarget::Number { number, trunk } => {
                        self.render("number", number)
                            .map(|number| DialSpec::Number {
                                number,
                                trunk: trunk.clone(),
                            })
                    }
                    DialTarget::Uri(t) => self.render("uri", t).map(DialSpec::Uri),
                };
                let Some(target) = spec else {
                    return self.exit("failed", *failed);
                };
                out.push(Action::Dial {
                    target,
                    ring_timeout: *ring_timeout,
                    headers: Vec::new(),
                });
                self.wait = Wait::Dial;
                Step::Stay
            }
            NodeKind::Bridge {
                uri,
                headers,
                ring_timeout,
                failed,
                ..
            } => {
                self.typeahead.clear();
                let uri = self.render("uri", uri);
                let headers: Option<Vec<(String, String)>> = headers
                    .iter()
                    .map(|(name, t)| self.render(name, t).map(|v| (name.clone(), v)))
                    .collect();
                let (Some(uri), Some(headers)) = (uri, headers) else {
                    return self.exit("failed", *failed);
                };
                out.push(Action::Dial {
                    target: DialSpec::Uri(uri),
                    ring_timeout: *ring_timeout,
                    headers,
                });
                self.wait = Wait::Bridge;
                Step::Stay
            }
            NodeKind::Voicemail {
                prompts,
                beep,
                max_length,
                mailbox,
                ..
            } => {
                self.typeahead.clear();
                if prompts.is_empty() {
                    out.push(Action::Record {
                        mailbox: mailbox.clone(),
                        beep: *beep,
                        max_length: *max_length,
                    });
                    self.wait = Wait::Voicemail { recording: true };
                } else {
                    out.push(Action::Play {
                        prompts: prompts.clone(),
                        barge_in: false,
                    });
                    self.wait = Wait::Voicemail { recording: false };
                }
                Step::Stay
            }
            NodeKind::Survey { prompts, .. } => {
                self.wait = Wait::Survey {
                    question: 1,
                    phase: Phase::Prompt,
                };
                self.survey_ask(&node.kind, prompts, out)
            }
            NodeKind::Goto {
                flow: name,
                node: target,
            } => {
                let Some(next) = flows.flow(name) else {
                    return self.fail(format!("goto: no flow {name:?}"), out);
                };
                let id = match target {
                    None => next.start,
                    Some(target) => match next.find(target) {
                        Some(id) => id,
                        None => {
                            return self
                                .fail(format!("goto: flow {name:?} has no node {target:?}"), out)
                        }
                    },
                };
                self.leave("goto");
                self.flow = next;
                Step::Enter(id)
            }
            NodeKind::Subflow { flow: name, next } => {
                let Some(sub) = flows.flow(name) else {
                    return self.fail(format!("subflow: no flow {name:?}"), out);
                };
                self.leave("subflow");
                self.returns.push((self.flow.clone(), *next));
                let start = sub.start;
                self.flow = sub;
                Step::Enter(start)
            }
            NodeKind::Return => match self.returns.pop() {
                Some((caller, next)) => {
                    self.leave("return");
                    self.flow = caller;
                    Step::Enter(next)
                }
                None => self.finish(End::Hangup(HangupCause::Normal), HangupCause::Normal, out),
            },
            NodeKind::Hangup { cause } => self.finish(End::Hangup(*cause), *cause, out),
        }
    }

    /// A queue priority: the expression's integer value (a number, or a string of digits);
    /// anything else counts as 0.
    fn priority(&self, expr: &Expr) -> i64 {
        match self.scope().eval(&expr.0) {
            Ok(v) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .unwrap_or_else(|| {
                    self.warn("priority", &format!("{v:?} is not an integer"));
                    0
                }),
            Err(e) => {
                self.warn("priority", &e);
                0
            }
        }
    }

    /// An event for the node the call is in.
    fn on_event(&mut self, event: Event, out: &mut Vec<Action>) -> Step {
        let flow = self.flow.clone();
        let Some(id) = self.current else {
            return Step::Stay;
        };
        let kind = &flow.node(id).kind;
        match (kind, self.wait.clone(), event) {
            // play
            (NodeKind::Play { next, .. }, Wait::Play, Event::PlayDone) => self.exit("next", *next),
            (
                NodeKind::Play {
                    barge_in: true,
                    next,
                    ..
                },
                Wait::Play,
                Event::Digit(key),
            ) => {
                out.push(Action::Stop);
                self.typeahead.push_back(key);
                self.exit("next", *next)
            }

            // menu
            (NodeKind::Menu { timeout, .. }, Wait::Menu { failures, phase }, event) => {
                match (phase, event) {
                    (Phase::Prompt, Event::PlayDone) => {
                        let token = self.arm(*timeout, out);
                        self.wait = Wait::Menu {
                            failures,
                            phase: Phase::Waiting(token),
                        };
                        Step::Stay
                    }
                    (phase, Event::Digit(key)) => {
                        if phase == Phase::Prompt {
                            out.push(Action::Stop);
                        }
                        self.menu_key(kind, failures, key, out)
                    }
                    (Phase::Waiting(token), Event::Timer(t)) if t == token => {
                        self.menu_failure(kind, failures, Failure::NoInput, out)
                    }
                    _ => Step::Stay,
                }
            }

            // collect
            (
                NodeKind::Collect {
                    first_digit_timeout,
                    inter_digit_timeout,
                    min_digits,
                    ..
                },
                Wait::Collect {
                    failures,
                    digits,
                    phase,
                },
                event,
            ) => match (phase, event) {
                (Phase::Prompt, Event::PlayDone) => {
                    let token = self.arm(*first_digit_timeout, out);
                    self.wait = Wait::Collect {
                        failures,
                        digits,
                        phase: Phase::Waiting(token),
                    };
                    Step::Stay
                }
                (phase, Event::Digit(key)) => {
                    if phase == Phase::Prompt {
                        out.push(Action::Stop);
                    }
                    match self.collect_key(kind, key, out) {
                        Some(step) => step,
                        None => {
                            let token = self.arm(*inter_digit_timeout, out);
                            if let Wait::Collect { phase, .. } = &mut self.wait {
                                *phase = Phase::Waiting(token);
                            }
                            Step::Stay
                        }
                    }
                }
                (Phase::Waiting(token), Event::Timer(t)) if t == token => {
                    if digits.is_empty() {
                        self.collect_failure(kind, failures, Failure::NoInput, out)
                    } else if digits.len() >= *min_digits as usize {
                        self.collect_done(kind, out)
                    } else {
                        self.collect_failure(kind, failures, Failure::Invalid, out)
                    }
                }
                _ => Step::Stay,
            },

            // http
            (
                NodeKind::Http {
                    extract, ok, error, ..
                },
                Wait::Http,
                event,
            ) => match event {
                Event::HttpResponse { status, body } => {
                    let json = (200..300)
                        .contains(&status)
                        .then(|| serde_json::from_str::<serde_json::Value>(&body).ok())
                        .flatten();
                    let Some(json) = json else {
                        return self.exit("error", *error);
                    };
                    for (var, pointer) in extract {
                        let value = match json.pointer(pointer) {
                            None | Some(serde_json::Value::Null) => continue,
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                        };
                        self.vars.insert(var.clone(), value);
                    }
                    self.exit("ok", *ok)
                }
                Event::HttpFailed { reason } => {
                    self.warn("http", &reason);
                    self.exit("error", *error)
                }
                Event::Digit(key) => {
                    self.typeahead.push_back(key);
                    Step::Stay
                }
                _ => Step::Stay,
            },

            // queue
            (
                NodeKind::Queue {
                    after_agent,
                    timeout,
                    exit,
                    no_agents,
                    full,
                    agent_unavailable,
                    ..
                },
                Wait::Queue,
                Event::Queue(outcome),
            ) => match outcome {
                QueueOutcome::AgentDone => match after_agent {
                    Some(next) => self.exit("agent_done", *next),
                    None => {
                        self.leave("agent_done");
                        self.finish(End::Hangup(HangupCause::Normal), HangupCause::Normal, out)
                    }
                },
                QueueOutcome::Timeout => self.exit("timeout", *timeout),
                QueueOutcome::Exited => self.exit("exit", *exit),
                QueueOutcome::NoAgents => self.exit("no_agents", *no_agents),
                QueueOutcome::Full => self.exit("full", *full),
                QueueOutcome::AgentUnavailable => match agent_unavailable {
                    Some(next) => self.exit("agent_unavailable", *next),
                    None => self.exit("no_agents", *no_agents),
                },
            },

            // dial
            (
                NodeKind::Dial {
                    answered,
                    no_answer,
                    busy,
                    failed,
                    ..
                },
                Wait::Dial,
                Event::Leg { outcome, .. },
            ) => match outcome {
                LegOutcome::AnsweredThenHungUp => self.exit("answered", *answered),
                LegOutcome::NoAnswer => self.exit("no_answer", *no_answer),
                LegOutcome::Busy => self.exit("busy", *busy),
                LegOutcome::Failed => self.exit("failed", *failed),
            },

            // bridge
            (
                NodeKind::Bridge {
                    result_headers,
                    returned,
                    failed,
                    ..
                },
                Wait::Bridge,
                Event::Leg { outcome, headers },
            ) => match outcome {
                LegOutcome::AnsweredThenHungUp => {
                    for (header, var) in result_headers {
                        // The last occurrence wins: BYE headers come after the answer's.
                        if let Some((_, value)) = headers
                            .iter()
                            .rev()
                            .find(|(name, _)| name.eq_ignore_ascii_case(header))
                        {
                            self.vars.insert(var.clone(), value.clone());
                        }
                    }
                    self.exit("returned", *returned)
                }
                _ => self.exit("failed", *failed),
            },

            // voicemail
            (
                NodeKind::Voicemail {
                    beep,
                    max_length,
                    mailbox,
                    ..
                },
                Wait::Voicemail { recording: false },
                Event::PlayDone,
            ) => {
                out.push(Action::Record {
                    mailbox: mailbox.clone(),
                    beep: *beep,
                    max_length: *max_length,
                });
                self.wait = Wait::Voicemail { recording: true };
                Step::Stay
            }
            (
                NodeKind::Voicemail { done, .. },
                Wait::Voicemail { recording: true },
                Event::Recorded { path, duration },
            ) => {
                self.vars.insert("voicemail_path".into(), path);
                self.vars.insert(
                    "voicemail_duration_s".into(),
                    duration.as_secs().to_string(),
                );
                self.exit("done", *done)
            }

            // survey
            (NodeKind::Survey { timeout, .. }, Wait::Survey { question, phase }, event) => {
                match (phase, event) {
                    (Phase::Prompt, Event::PlayDone) => {
                        let token = self.arm(*timeout, out);
                        self.wait = Wait::Survey {
                            question,
                            phase: Phase::Waiting(token),
                        };
                        Step::Stay
                    }
                    (phase, Event::Digit(key)) => {
                        if phase == Phase::Prompt {
                            out.push(Action::Stop);
                        }
                        self.survey_key(kind, question, key, out)
                    }
                    (Phase::Waiting(token), Event::Timer(t)) if t == token => {
                        self.survey_next(kind, question, out)
                    }
                    _ => Step::Stay,
                }
            }
            (NodeKind::Survey { done, .. }, Wait::SurveyThanks, Event::PlayDone) => {
                self.exit("done", *done)
            }

            // Anything else (a stale timer, a key nobody reads, a late result) changes nothing.
            _ => Step::Stay,
        }
    }

    /// Start (or restart) a menu attempt: type-ahead first, else the prompt.
    fn menu_attempt(
        &mut self,
        kind: &NodeKind,
        failures: u32,
        prompts: &[PromptName],
        out: &mut Vec<Action>,
    ) -> Step {
        let NodeKind::Menu { timeout, .. } = kind else {
            return Step::Stay;
        };
        if let Some(key) = self.typeahead.pop_front() {
            return self.menu_key(kind, failures, key, out);
        }
        let phase = if prompts.is_empty() {
            Phase::Waiting(self.arm(*timeout, out))
        } else {
            out.push(Action::Play {
                prompts: prompts.to_vec(),
                barge_in: true,
            });
            Phase::Prompt
        };
        self.wait = Wait::Menu { failures, phase };
        Step::Stay
    }

    fn menu_key(
        &mut self,
        kind: &NodeKind,
        failures: u32,
        key: char,
        out: &mut Vec<Action>,
    ) -> Step {
        let NodeKind::Menu { choices, .. } = kind else {
            return Step::Stay;
        };
        match choices.iter().find(|(c, _)| *c == key) {
            Some((_, target)) => self.exit(&key.to_string(), *target),
            None => self.menu_failure(kind, failures, Failure::Invalid, out),
        }
    }

    fn menu_failure(
        &mut self,
        kind: &NodeKind,
        failures: u32,
        failure: Failure,
        out: &mut Vec<Action>,
    ) -> Step {
        match self.retry(kind, failures, failure) {
            Ok(prompts) => self.menu_attempt(kind, failures + 1, prompts, out),
            Err(step) => step,
        }
    }

    /// The retry rule menus and collects share: after `retries` failures the `no_input` or
    /// `invalid` exit (`Err`); before that, the prompts to retry with (the failure's own, or
    /// the node's prompts when it has none).
    fn retry<'k>(
        &mut self,
        kind: &'k NodeKind,
        failures: u32,
        failure: Failure,
    ) -> Result<&'k [PromptName], Step> {
        let (NodeKind::Menu {
            prompts,
            retries,
            no_input_prompts,
            invalid_prompts,
            no_input,
            invalid,
            ..
        }
        | NodeKind::Collect {
            prompts,
            retries,
            no_input_prompts,
            invalid_prompts,
            no_input,
            invalid,
            ..
        }) = kind
        else {
            return Err(Step::Stay);
        };
        let (retry_prompts, name, target) = match failure {
            Failure::NoInput => (no_input_prompts, "no_input", *no_input),
            Failure::Invalid => (invalid_prompts, "invalid", *invalid),
        };
        if failures >= *retries {
            return Err(self.exit(name, target));
        }
        Ok(if retry_prompts.is_empty() {
            prompts
        } else {
            retry_prompts
        })
    }

    /// Start (or restart) a collect attempt: type-ahead keys first, then the prompt (or, if
    /// type-ahead already began the input, the inter-digit timer).
    fn collect_attempt(
        &mut self,
        kind: &NodeKind,
        failures: u32,
        prompts: &[PromptName],
        out: &mut Vec<Action>,
    ) -> Step {
        let NodeKind::Collect {
            first_digit_timeout,
            inter_digit_timeout,
            ..
        } = kind
        else {
            return Step::Stay;
        };
        self.wait = Wait::Collect {
            failures,
            digits: String::new(),
            phase: Phase::Prompt,
        };
        while let Some(key) = self.typeahead.pop_front() {
            if let Some(step) = self.collect_key(kind, key, out) {
                return step;
            }
        }
        let started = matches!(&self.wait, Wait::Collect { digits, .. } if !digits.is_empty());
        let phase = if started {
            Phase::Waiting(self.arm(*inter_digit_timeout, out))
        } else if prompts.is_empty() {
            Phase::Waiting(self.arm(*first_digit_timeout, out))
        } else {
            out.push(Action::Play {
                prompts: prompts.to_vec(),
                barge_in: true,
            });
            Phase::Prompt
        };
        if let Wait::Collect { phase: p, .. } = &mut self.wait {
            *p = phase;
        }
        Step::Stay
    }

    /// One key into a collect; `Some` when it ended the input (end key or max digits).
    fn collect_key(&mut self, kind: &NodeKind, key: char, out: &mut Vec<Action>) -> Option<Step> {
        let NodeKind::Collect {
            max_digits,
            end_key,
            ..
        } = kind
        else {
            return Some(Step::Stay);
        };
        if *end_key == Some(key) {
            return Some(self.collect_done(kind, out));
        }
        let Wait::Collect { digits, .. } = &mut self.wait else {
            return Some(Step::Stay);
        };
        digits.push(key);
        if digits.chars().count() >= *max_digits as usize {
            return Some(self.collect_done(kind, out));
        }
        None
    }

    /// The input is complete: check it, store it, report it.
    fn collect_done(&mut self, kind: &NodeKind, out: &mut Vec<Action>) -> Step {
        let NodeKind::Collect {
            variable,
            min_digits,
            max_digits,
            pattern,
            sensitive,
            ok,
            ..
        } = kind
        else {
            return Step::Stay;
        };
        let Wait::Collect {
            failures, digits, ..
        } = std::mem::replace(&mut self.wait, Wait::Moving)
        else {
            return Step::Stay;
        };
        let len = digits.chars().count();
        let mut valid = len >= *min_digits as usize && len <= *max_digits as usize;
        if let (true, Some(pattern)) = (valid, pattern) {
            valid = script::full_match(pattern, &digits).unwrap_or_else(|e| {
                self.warn("pattern", &e);
                false
            });
        }
        if !valid {
            return self.collect_failure(kind, failures, Failure::Invalid, out);
        }
        let node = self
            .current
            .map(|id| self.flow.node(id).name.clone())
            .unwrap_or_default();
        out.push(Action::Input {
            node,
            variable: variable.clone(),
            value: if *sensitive {
                mask(&digits)
            } else {
                digits.clone()
            },
        });
        self.vars.insert(variable.clone(), digits);
        self.exit("ok", *ok)
    }

    fn collect_failure(
        &mut self,
        kind: &NodeKind,
        failures: u32,
        failure: Failure,
        out: &mut Vec<Action>,
    ) -> Step {
        match self.retry(kind, failures, failure) {
            Ok(prompts) => self.collect_attempt(kind, failures + 1, prompts, out),
            Err(step) => step,
        }
    }

    /// Ask the current survey question: a type-ahead key answers it at once.
    fn survey_ask(
        &mut self,
        kind: &NodeKind,
        prompts: &[PromptName],
        out: &mut Vec<Action>,
    ) -> Step {
        let (NodeKind::Survey { timeout, .. }, Wait::Survey { question, .. }) = (kind, &self.wait)
        else {
            return Step::Stay;
        };
        let question = *question;
        if let Some(key) = self.typeahead.pop_front() {
            return self.survey_key(kind, question, key, out);
        }
        let phase = if prompts.is_empty() {
            Phase::Waiting(self.arm(*timeout, out))
        } else {
            out.push(Action::Play {
                prompts: prompts.to_vec(),
                barge_in: true,
            });
            Phase::Prompt
        };
        self.wait = Wait::Survey { question, phase };
        Step::Stay
    }

    fn survey_key(
        &mut self,
        kind: &NodeKind,
        question: u8,
        key: char,
        out: &mut Vec<Action>,
    ) -> Step {
        let NodeKind::Survey { scores, second, .. } = kind else {
            return Step::Stay;
        };
        let scores = match (question, second) {
            (2, Some(second)) => &second.scores,
            _ => scores,
        };
        if let Some((_, score)) = scores.iter().find(|(k, _)| *k == key) {
            out.push(Action::Score {
                question,
                score: *score,
            });
        }
        self.survey_next(kind, question, out)
    }

    /// After a question (answered or not): the second question, else the thanks.
    fn survey_next(&mut self, kind: &NodeKind, question: u8, out: &mut Vec<Action>) -> Step {
        let NodeKind::Survey {
            second,
            thanks,
            done,
            ..
        } = kind
        else {
            return Step::Stay;
        };
        if let (1, Some(second)) = (question, second) {
            self.wait = Wait::Survey {
                question: 2,
                phase: Phase::Prompt,
            };
            return self.survey_ask(kind, &second.prompts, out);
        }
        if thanks.is_empty() {
            return self.exit("done", *done);
        }
        out.push(Action::Play {
            prompts: thanks.clone(),
            barge_in: false,
        });
        self.wait = Wait::SurveyThanks;
        Step::Stay
    }
}

/// A sensitive input as the call record shows it (`10**************10`).
pub use crate::cdr::mask;
