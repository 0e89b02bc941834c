//! Calls in IVR flows: the endpoint runs a call's [`Interpreter`] and carries out its actions
//! with the call's media (prompts, keys, recording), the shell (HTTP) and outbound legs
//! (dial, third-party bridge), feeding the results back as interpreter events.
//!
//! Everything stays sans-IO: an HTTP request leaves as [`Event::Http`] and comes back through
//! [`Endpoint::handle_http`]; timers live in the call timer heap.
use super::calls::{CallKey, TimerKey};
use super::{Endpoint, Event};
use crate::ivr::interp::{Action, Event as FlowEvent, Interpreter, LegOutcome};
use crate::ivr::model::Flow;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::control::{Command, RecordRequest};

/// Media play tokens at or above this belong to flows (the test line uses small ones).
const FLOW_PLAY_TOKENS: u64 = 1 << 32;

/// The flows new calls start in, by name. Replaced whole on publish: calls in progress keep
/// the `Arc<Flow>` they started with (and sub-flows are looked up here when entered).
#[derive(Debug, Default, Clone)]
pub struct FlowSet(pub HashMap<String, Arc<Flow>>);

impl crate::ivr::interp::FlowSource for FlowSet {
    fn flow(&self, name: &str) -> Option<Arc<Flow>> {
        self.0.get(name).cloned()
    }
}

/// An HTTP request a flow wants made; answer with [`Endpoint::handle_http`].
pub use crate::ivr::interp::HttpRequest;

/// Where a flow call stands beyond what the interpreter knows.
#[derive(Debug)]
pub(super) struct FlowRun {
    pub interp: Interpreter,
    pub flow: String,
    pub version: String,
    /// The media token of the prompt playing for the interpreter (`None`: nothing of its).
    play_token: Option<u64>,
    next_token: u64,
    /// An HTTP request in flight (its token).
    http: Option<u64>,
    voicemail: Voicemail,
    /// Inputs and scores for the call record.
    pub inputs: Vec<(String, String)>,
    pub scores: Vec<(u8, u8)>,
    /// A dial leg answered at some point.
    pub leg_answered: bool,
    /// A voicemail message was recorded.
    pub voicemail_left: bool,
}

#[derive(Debug, Default)]
enum Voicemail {
    #[default]
    Idle,
    /// Playing the beep; then record up to `max`.
    Beep {
        mailbox: String,
        max: Duration,
    },
    Recording,
    /// Asked to stop (`#` or the maximum length): waiting for the file to be finished.
    Stopping,
}

impl FlowRun {
    pub(super) fn new(interp: Interpreter, flow: &Flow) -> FlowRun {
        FlowRun {
            interp,
            flow: flow.name.clone(),
            version: flow.version.clone(),
            play_token: None,
            next_token: FLOW_PLAY_TOKENS,
            http: None,
            voicemail: Voicemail::Idle,
            inputs: Vec::new(),
            scores: Vec::new(),
            leg_answered: false,
            voicemail_left: false,
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }
}

impl Endpoint {
    /// Feed an event to a call's interpreter and carry out what it asks, until nothing is left
    /// (some actions answer at once, e.g. a queue with no agents).
    pub(super) fn flow_event(&mut self, now: Instant, key: CallKey, event: FlowEvent) {
        self.run_flow(now, key, event);
        // A `queue` node may have given the ACD a caller to offer.
        self.acd_pump(now);
    }

    fn run_flow(&mut self, now: Instant, key: CallKey, event: FlowEvent) {
        let mut queue = VecDeque::from([event]);
        while let Some(ev) = queue.pop_front() {
            let Some(run) = self.calls.flow_mut(key) else {
                return;
            };
            let actions = run.interp.handle(ev, now, &self.flows);
            for action in actions {
                if let Some(next) = self.flow_action(now, key, action) {
                    queue.push_back(next);
                }
            }
            let ended = self
                .calls
                .flow_mut(key)
                .and_then(|r| r.interp.end().cloned());
            if let Some(end) = ended {
                self.flow_ended(now, key, end);
                return;
            }
        }
    }

    /// One action; returns an event to feed back at once, if the action is answered now.
    fn flow_action(&mut self, now: Instant, key: CallKey, action: Action) -> Option<FlowEvent> {
        let session = self.calls.caller_session(key)?;
        match action {
            Action::Play { prompts, .. } => {
                let resolved: Vec<_> = prompts
                    .iter()
                    .filter_map(|p| {
                        let found = self.call_cfg.prompts.get(p);
                        if found.is_none() {
                            tracing::warn!(prompt = %p, "prompt missing from the library; skipped");
                        }
                        found
                    })
                    .collect();
                let run = self.calls.flow_mut(key)?;
                let token = run.token();
                run.play_token = Some(token);
                if resolved.is_empty() {
                    run.play_token = None;
                    return Some(FlowEvent::PlayDone);
                }
                self.events.push_back(Event::Media(Command::Play {
                    id: session,
                    prompts: resolved,
                    repeat: false,
                    token,
                }));
                None
            }
            Action::Stop => {
                if let Some(run) = self.calls.flow_mut(key) {
                    run.play_token = None;
                }
                self.events
                    .push_back(Event::Media(Command::Silence { id: session }));
                None
            }
            Action::StartTimer { token, after } => {
                self.calls.arm(now + after, key, TimerKey::Flow(token));
                None
            }
            Action::Http(request) => {
                let run = self.calls.flow_mut(key)?;
                let token = run.token();
                run.http = Some(token);
                self.events.push_back(Event::Http {
                    call: key.0,
                    token,
                    request,
                });
                None
            }
            Action::Enqueue {
                queue,
                priority,
                max_wait,
                announce_every,
                music,
                exit_key,
            } => self
                .enqueue_call(
                    now,
                    key,
                    &queue,
                    priority,
                    max_wait,
                    announce_every,
                    music.as_deref(),
                    exit_key,
                )
                .map(FlowEvent::Queue),
            Action::Dial {
                target,
                ring_timeout,
                headers,
            } => {
                if self.dial_from_flow(now, key, &target, ring_timeout, &headers) {
                    None
                } else {
                    Some(FlowEvent::Leg {
                        outcome: LegOutcome::Failed,
                        headers: Vec::new(),
                    })
                }
            }
            Action::Record {
                mailbox,
                beep,
                max_length,
            } => {
                let beep_prompt = self.call_cfg.prompts.get("beep");
                match (beep, beep_prompt) {
                    (true, Some(p)) => {
                        let run = self.calls.flow_mut(key)?;
                        let token = run.token();
                        run.play_token = Some(token);
                        run.voicemail = Voicemail::Beep {
                            mailbox,
                            max: max_length,
                        };
                        self.events.push_back(Event::Media(Command::Play {
                            id: session,
                            prompts: vec![p],
                            repeat: false,
                            token,
                        }));
                    }
                    _ => self.start_voicemail(now, key, &mailbox, max_length),
                }
                None
            }
            // The interpreter has ended: `flow_ended` hangs up with the end's cause.
            Action::Hangup { .. } => None,
            Action::Input {
                node,
                variable,
                value,
            } => {
                let run = self.calls.flow_mut(key)?;
                run.inputs.push((format!("{node}.{variable}"), value));
                None
            }
            Action::Score { question, score } => {
                self.calls.flow_mut(key)?.scores.push((question, score));
                None
            }
        }
    }

    fn start_voicemail(&mut self, now: Instant, key: CallKey, mailbox: &str, max: Duration) {
        let Some(session) = self.calls.caller_session(key) else {
            return;
        };
        let safe: String = mailbox
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path: PathBuf = self
            .call_cfg
            .recordings_dir
            .join("voicemail")
            .join(safe)
            .join(format!("call-{}-{}.wav", key.0, self.tags.next()));
        if let Some(run) = self.calls.flow_mut(key) {
            run.voicemail = Voicemail::Recording;
            run.voicemail_left = true;
        }
        // The record names the file from the start: a caller who hangs up mid-message ends
        // the call before the recording reports its length.
        self.calls.set_recording(key, path.display().to_string());
        self.events.push_back(Event::Media(Command::Record {
            id: session,
            request: RecordRequest { path },
        }));
        self.calls.arm(now + max, key, TimerKey::VoicemailMax);
    }

    fn stop_voicemail(&mut self, key: CallKey) {
        let Some(session) = self.calls.caller_session(key) else {
            return;
        };
        if let Some(run) = self.calls.flow_mut(key) {
            if matches!(run.voicemail, Voicemail::Recording) {
                run.voicemail = Voicemail::Stopping;
                self.events
                    .push_back(Event::Media(Command::StopRecord { id: session }));
            }
        }
    }

    /// A prompt ended on the caller's session: the flow's, or the voicemail beep.
    pub(super) fn flow_play_done(&mut self, now: Instant, key: CallKey, token: u64) {
        let Some(run) = self.calls.flow_mut(key) else {
            return;
        };
        if run.play_token != Some(token) {
            return; // replaced by a later Play or stopped
        }
        run.play_token = None;
        match std::mem::take(&mut run.voicemail) {
            Voicemail::Beep { mailbox, max } => self.start_voicemail(now, key, &mailbox, max),
            other => {
                run.voicemail = other;
                self.flow_event(now, key, FlowEvent::PlayDone);
            }
        }
    }

    /// A key from the caller.
    pub(super) fn flow_digit(&mut self, now: Instant, key: CallKey, digit: char) {
        let recording = self
            .calls
            .flow_mut(key)
            .is_some_and(|r| matches!(r.voicemail, Voicemail::Recording | Voicemail::Stopping));
        if recording {
            if digit == '#' {
                self.stop_voicemail(key);
            }
            return;
        }
        self.flow_event(now, key, FlowEvent::Digit(digit));
    }

    pub(super) fn flow_timer(&mut self, now: Instant, key: CallKey, timer: TimerKey) {
        match timer {
            TimerKey::Flow(token) => self.flow_event(now, key, FlowEvent::Timer(token)),
            TimerKey::VoicemailMax => self.stop_voicemail(key),
            TimerKey::Ring => {}
        }
    }

    /// A voicemail recording could not be made (or written): the flow goes on as if an empty
    /// message had been left, rather than waiting for a recording that will never end.
    pub(super) fn flow_recording_failed(&mut self, now: Instant, key: CallKey) {
        let Some(run) = self.calls.flow_mut(key) else {
            return;
        };
        if !matches!(run.voicemail, Voicemail::Recording | Voicemail::Stopping) {
            return;
        }
        run.voicemail = Voicemail::Idle;
        run.voicemail_left = false;
        self.flow_event(
            now,
            key,
            FlowEvent::Recorded {
                path: String::new(),
                duration: Duration::ZERO,
            },
        );
    }

    /// A recording on the caller's session finished.
    pub(super) fn flow_recorded(
        &mut self,
        now: Instant,
        key: CallKey,
        path: String,
        duration: Duration,
    ) {
        // Only a voicemail's recording answers the flow (a whole-call recording does not).
        let Some(run) = self.calls.flow_mut(key) else {
            return;
        };
        if !matches!(run.voicemail, Voicemail::Recording | Voicemail::Stopping) {
            return;
        }
        run.voicemail = Voicemail::Idle;
        self.flow_event(now, key, FlowEvent::Recorded { path, duration });
    }

    /// The answer to an [`Event::Http`]: `Ok((status, body))` or `Err(reason)` (including the
    /// request's own timeout, which the shell enforces).
    pub fn handle_http(
        &mut self,
        now: Instant,
        call: u64,
        token: u64,
        result: Result<(u16, String), String>,
    ) {
        let key = CallKey(call);
        let Some(run) = self.calls.flow_mut(key) else {
            return;
        };
        if run.http != Some(token) {
            return;
        }
        run.http = None;
        let event = match result {
            Ok((status, body)) => FlowEvent::HttpResponse { status, body },
            Err(reason) => FlowEvent::HttpFailed { reason },
        };
        self.flow_event(now, key, event);
        self.drain_tx_events(now);
    }

    /// Replace the published flows (new calls start in these; calls in progress keep theirs).
    pub fn publish_flows(&mut self, flows: impl IntoIterator<Item = Arc<Flow>>) {
        for f in flows {
            self.flows.0.insert(f.name.clone(), f);
        }
    }

    /// Remove flows that no longer exist (their numbers then answer 404 to new calls).
    pub fn retract_flow(&mut self, name: &str) {
        self.flows.0.remove(name);
    }

    pub fn flows(&self) -> &FlowSet {
        &self.flows
    }

    /// Start a call's flow (after the caller's ACK).
    pub(super) fn start_flow(
        &mut self,
        now: Instant,
        key: CallKey,
        flow: Arc<Flow>,
        info: crate::ivr::interp::CallInfo,
    ) {
        let interp = Interpreter::new(flow.clone(), info, now, self.last_unix as i64);
        self.calls.set_flow(key, FlowRun::new(interp, &flow));
        self.flow_event(now, key, FlowEvent::Start);
    }
}
