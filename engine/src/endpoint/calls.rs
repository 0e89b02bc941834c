//! Calls: the B2BUA part of the endpoint (sans-IO).
//!
//! A call is one inbound leg (the caller's dialog, where we are the UAS) and, for a call to
//! another account, outbound legs (one per registered contact, where we are the UAC; the
//! first to answer wins and the others are cancelled). Every leg anchors its own RTP session
//! in the media workers, so the two sides negotiate codecs and payload types independently
//! and the workers relay, transcode and translate DTMF between them.
//!
//! The core asks the shell for media ([`Event::OpenMedia`], [`Event::Media`]) and hears back
//! through [`Endpoint::handle_media_opened`] and [`Endpoint::handle_media`]. Offer/answer is
//! done per leg with [`switchboard_media::sdp`]; hold and resume on one leg become a fresh
//! offer/answer on the other (RFC 6337), so each phone sees a consistent session.
mod click;
mod control;
mod live;
mod outbound;
mod queueing;
mod records;
mod transfer;

pub use click::{ClickError, ClickOrder, ClickTarget, ClickToDial};
pub use control::{
    check_dtmf_duration, parse_dtmf, CallControlError, DtmfTarget, MAX_DTMF_DIGITS,
    MAX_DTMF_DURATION, MIN_DTMF_DURATION,
};
pub use live::{LiveCall, NoSuchCall};
pub(super) use queueing::AcdState;
pub use queueing::{AgentControl, AgentSettings, QueueSettings};
pub use transfer::{TransferError, TransferTarget};

use super::flows::FlowRun;
use super::{Endpoint, Event, Received};
use crate::cdr::{self, CallResult, CallType, CdrClose, CdrOpen, HangupBy, LegKind, MissedReason};
use crate::events::CallEventKind;
use crate::ivr::interp::{CallInfo, End, Event as FlowEvent, LegOutcome};
use crate::ivr::model::Flow;
use crate::sip::dialog::{Dialog, DialogError, DialogId, DialogState};
use crate::sip::info_dtmf;
use crate::sip::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};
use crate::sip::transaction::{ClientTxId, ServerTxId, TxKey};
use crate::sip::transport::{Target, Transport};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::control::{
    Command, DtmfVia, MediaEvent, RecordRequest, SessionId, StreamParams,
};
use switchboard_media::dtmf::rfc4733::Digit;
use switchboard_media::prompt::{Prompt, PromptLibrary};
use switchboard_media::sdp::{
    self, Capabilities, Direction, LocalSession, Negotiated, SessionDescription,
};

/// How calls behave; part of [`super::EndpointConfig`].
#[derive(Clone, Debug)]
pub struct CallSettings {
    /// Our SIP domain: the host of the From/To URIs we write.
    pub domain: String,
    /// The address RTP binds to and SDP advertises.
    pub media_address: IpAddr,
    pub capabilities: Capabilities,
    pub test_line: Option<TestLineSettings>,
    /// How long a dialled account's phones ring before the caller hears "no answer".
    pub ring_timeout: Duration,
    /// Record bridged calls (stereo WAV) into `recordings_dir`.
    pub record_calls: bool,
    pub recordings_dir: PathBuf,
    /// Prompts flows play, by name.
    pub prompts: Arc<PromptLibrary>,
    /// Service numbers and the flows they run.
    pub numbers: Vec<NumberRoute>,
    /// Trunks: where calls to numbers go, and which sources are a trunk's.
    pub trunks: Vec<TrunkRoute>,
    /// Callers refused before routing.
    pub blacklist: crate::config::Blacklist,
    /// Agents, skill groups and the desk-phone feature codes (the ACD).
    pub queueing: QueueSettings,
    /// Outbound calls through trunks: numbers, display numbers, blacklist, quota, channels.
    pub trunk_plan: crate::trunk::Trunks,
    /// The UDP listener calls the control interface starts (click-to-dial) leave from; set by
    /// the shell once it is bound.
    pub originate_from: Option<SocketAddr>,
}

/// A service number bound to a flow (`numbers:` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberRoute {
    pub number: String,
    /// Only calls arriving from this trunk (`None`: from anywhere).
    pub trunk: Option<String>,
    pub flow: String,
    /// A disabled number refuses calls (missed-call reason: trunk number disabled).
    pub enabled: bool,
}

/// A trunk as calls see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkRoute {
    pub name: String,
    /// Where calls out through the trunk go.
    pub address: SocketAddr,
    /// Sources whose calls are this trunk's.
    pub sources: Vec<ipnet::IpNet>,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            domain: "switchboard".into(),
            media_address: IpAddr::from([127, 0, 0, 1]),
            capabilities: Capabilities::default(),
            test_line: None,
            ring_timeout: Duration::from_secs(60),
            record_calls: false,
            recordings_dir: PathBuf::from("data/recordings"),
            prompts: Arc::new(PromptLibrary::new()),
            numbers: Vec::new(),
            trunks: Vec::new(),
            blacklist: crate::config::Blacklist::default(),
            queueing: QueueSettings::default(),
            trunk_plan: crate::trunk::Trunks::new(&crate::config::Config::default()),
            originate_from: None,
        }
    }
}

/// The echo/DTMF test line (a PBX's `*43`).
#[derive(Clone, Debug)]
pub struct TestLineSettings {
    pub number: String,
    /// Played when the call is answered; then the line echoes what it hears.
    pub prompt: Option<Arc<Prompt>>,
}

/// Why a call ended, for the log and (later) the call record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    CallerHangup,
    CalleeHangup,
    CallerCancelled,
    NoAnswer,
    Busy,
    Declined,
    Unavailable,
    Rejected(u16),
    MediaTimeout,
    NoAck,
    MediaFailure,
    Shutdown,
    /// Hung up from the control interface (an administrator, a supervisor, an integration).
    Administrative,
    /// The flow hung up (a `hangup` node, the end of a flow).
    FlowHangup,
    /// The flow could not go on (a flow it needed is gone).
    FlowError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct CallKey(pub(super) u64);

/// What a call timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum TimerKey {
    /// The dialled phones have rung for `calls.ring_timeout` (or a flow's ring timeout).
    Ring,
    /// A timer the flow interpreter armed.
    Flow(u64),
    /// A voicemail reached its maximum length.
    VoicemailMax,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct LegId(u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    TestLine,
    Bridge,
    /// A service number: the call runs an IVR flow.
    Flow,
    /// A desk-phone feature code (agent login/logout): answered, confirmed with a prompt,
    /// hung up.
    Feature,
}

#[derive(Debug)]
struct Call {
    kind: Kind,
    a: LegId,
    /// Outbound legs still ringing (before answer) or the winner (after).
    forks: Vec<LegId>,
    winner: Option<LegId>,
    /// Final codes from forks that failed, for the caller's answer (RFC 3261 §16.7 style).
    fork_codes: Vec<u16>,
    ring_deadline: Option<Instant>,
    answered: bool,
    caller: String,
    callee: String,
    /// The flow to start when the caller's ACK comes (service numbers).
    flow_def: Option<Arc<Flow>>,
    /// The running flow.
    flow: Option<Box<FlowRun>>,
    /// The call record being built.
    cdr: CdrDraft,
    /// Why we hang up on the caller, for the BYE's `Reason` header (RFC 3326), when a flow
    /// says.
    bye_reason: Option<&'static str>,
    /// The caller's visit to a skill group's queue (current or last).
    queue: Option<queueing::QueueVisit>,
    /// A click-to-dial call: its first leg is one we placed.
    click: Option<Box<click::Click>>,
}

/// What the call record will say, gathered as the call goes.
#[derive(Debug)]
struct CdrDraft {
    call_id: String,
    started_ms: i64,
    answered_ms: Option<i64>,
    ring_ms: Option<i64>,
    /// The call's recording: path, and duration once finished.
    recording: Option<(String, Option<i64>)>,
    /// The control interface asked the running recording to stop: it is being finished.
    recording_stopping: bool,
    /// The agent who served the call last, and the wrap-up they were given.
    agent: Option<String>,
    wrap_up_ms: Option<i64>,
    /// The skill group the call was last queued to, and the time spent in queues.
    queue: Option<String>,
    queue_wait: Duration,
    /// Talk time on answered legs.
    talk_ms: i64,
    /// Why the last queue visit did not end with an agent (queue timeout, full, …).
    queue_miss: Option<MissedReason>,
    /// The display number shown to the customer on an outbound call.
    caller_id: Option<String>,
    /// Set while the flow reacts to the far end (agent, dialled party) hanging up: a call the
    /// flow ends right then was hung up by the far end.
    far_end_hung_up: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The caller's leg: we are the UAS.
    Inbound,
    /// A leg we placed: we are the UAC.
    Outbound,
}

#[derive(Debug)]
struct Leg {
    call: Option<CallKey>,
    side: Side,
    /// Where requests to this peer go: the flow its INVITE or REGISTER came on.
    target: Target,
    contact: NameAddr,
    local_tag: String,
    dialog: Option<Dialog>,
    session: SessionId,
    local_rtp: Option<SocketAddr>,
    sdp: LocalSession,
    negotiated: Option<Negotiated>,
    /// The peer's last offer or answer (its stated direction matters for hold).
    remote_sdp: Option<SessionDescription>,
    /// Our offer awaiting an answer (late offer in a 200, a re-INVITE, a B-leg INVITE).
    our_offer: Option<SessionDescription>,
    // Inbound.
    invite: Option<Request>,
    invite_tx: Option<ServerTxId>,
    offer_in_invite: Option<SessionDescription>,
    sent_ringing: bool,
    // Outbound.
    out_invite: Option<Request>,
    out_tx: Option<ClientTxId>,
    provisional_seen: bool,
    cancel_wanted: bool,
    cancelled: bool,
    acked_cseq: Option<u32>,
    /// A re-INVITE from this leg's peer, waiting for the other leg's answer.
    reinvite_in: Option<(ServerTxId, Request)>,
    /// Our re-INVITE on this leg (passing on the other leg's offer).
    reinvite_out: Option<ClientTxId>,
    bye_sent: bool,
    media_closed: bool,
    playing_intro: bool,
    /// Live transactions of this leg: it is forgotten only when none is left.
    transactions: u32,
    /// The agent this leg rings, and the skill group that offered the call.
    agent: Option<(crate::acd::AgentId, Option<crate::acd::QueueId>)>,
    /// The leg's sub-record while it is open.
    record: Option<records::LegRecord>,
    /// The trunk the leg went out through (its channel is counted until the leg ends).
    trunk: Option<String>,
    /// The INVITE was sent again with credentials after the carrier's challenge.
    auth_sent: bool,
}

/// What a client transaction of ours was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Invite,
    Reinvite,
    Bye,
    /// A NOTIFY telling a transferor how its REFER goes.
    Notify,
}

/// All calls of the endpoint.
#[derive(Debug, Default)]
pub(super) struct Calls {
    calls: HashMap<CallKey, Call>,
    legs: HashMap<LegId, Leg>,
    by_dialog: HashMap<DialogId, LegId>,
    by_server_tx: HashMap<ServerTxId, LegId>,
    by_client_tx: HashMap<ClientTxId, (LegId, Purpose)>,
    by_session: HashMap<SessionId, LegId>,
    timers: BinaryHeap<Reverse<(Instant, CallKey, TimerKey)>>,
    next_id: u64,
    transfers: transfer::Transfers,
}

impl Calls {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn track_client(&mut self, tx: ClientTxId, leg: LegId, purpose: Purpose) {
        if self.by_client_tx.insert(tx, (leg, purpose)).is_none() {
            if let Some(l) = self.legs.get_mut(&leg) {
                l.transactions += 1;
            }
        }
    }

    fn track_server(&mut self, tx: ServerTxId, leg: LegId) {
        if self.by_server_tx.insert(tx, leg).is_none() {
            if let Some(l) = self.legs.get_mut(&leg) {
                l.transactions += 1;
            }
        }
    }

    fn untrack(&mut self, leg: LegId) {
        if let Some(l) = self.legs.get_mut(&leg) {
            l.transactions = l.transactions.saturating_sub(1);
        }
    }

    /// Entries in every index, for leak checks.
    #[cfg(test)]
    pub(super) fn footprint(&self) -> [usize; 7] {
        [
            self.calls.len(),
            self.legs.len(),
            self.by_dialog.len(),
            self.by_server_tx.len(),
            self.by_client_tx.len(),
            self.by_session.len(),
            self.timers.len(),
        ]
    }

    pub(super) fn arm(&mut self, at: Instant, key: CallKey, timer: TimerKey) {
        self.timers.push(Reverse((at, key, timer)));
    }

    pub(super) fn flow_mut(&mut self, key: CallKey) -> Option<&mut FlowRun> {
        self.calls.get_mut(&key)?.flow.as_deref_mut()
    }

    pub(super) fn set_flow(&mut self, key: CallKey, run: FlowRun) {
        if let Some(c) = self.calls.get_mut(&key) {
            c.flow = Some(Box::new(run));
        }
    }

    /// The call's recording file, known when recording starts (its length comes later).
    pub(super) fn set_recording(&mut self, key: CallKey, path: String) {
        if let Some(c) = self.calls.get_mut(&key) {
            c.cdr.recording = Some((path, None));
            c.cdr.recording_stopping = false;
        }
    }

    /// The live call a media session belongs to.
    fn call_of_session(&self, id: SessionId) -> Option<CallKey> {
        let leg = self.legs.get(self.by_session.get(&id)?)?;
        leg.call.filter(|k| self.calls.contains_key(k))
    }

    pub(super) fn caller_session(&self, key: CallKey) -> Option<SessionId> {
        let call = self.calls.get(&key)?;
        self.legs.get(&call.a).map(|l| l.session)
    }

    pub(super) fn active(&self) -> usize {
        self.calls.len()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _, _))| *t)
    }
}

const PLAY_INTRO: u64 = 1;

fn sdp_of(body: &Bytes) -> Option<Result<SessionDescription, ()>> {
    if body.is_empty() {
        return None;
    }
    Some(SessionDescription::parse_bytes(body).map_err(|_| ()))
}

fn is_sdp(msg_headers: &crate::sip::msg::Headers, body: &Bytes) -> bool {
    if body.is_empty() {
        return false;
    }
    let ct = msg_headers.get_str(&HeaderName::ContentType).unwrap_or("");
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/sdp")
}

fn params_of(n: &Negotiated) -> StreamParams {
    StreamParams {
        remote: n.remote_addr,
        remote_rtcp: n.remote_rtcp,
        codec: n.codec.codec,
        payload_type: n.codec.payload_type,
        telephone_event: n.telephone_event_pt,
        direction: n.direction,
        inband_dtmf: n.telephone_event_pt.is_none(),
        ptime: n.ptime,
    }
}

/// The direction the peer stated for its audio, from its own point of view.
fn stated_direction(sdp: &SessionDescription) -> Direction {
    match sdp
        .media
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
    {
        Some(m) => {
            let hold = sdp.media_connection(m).is_some_and(|c| c.is_hold());
            let d = sdp.media_direction(m);
            if hold {
                // RFC 2543 hold: the peer wants nothing sent to it.
                match d {
                    Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
                    _ => Direction::Inactive,
                }
            } else {
                d
            }
        }
        None => Direction::Inactive,
    }
}

/// `caps` narrowed to `codec` if `offer` can be answered with it alone: a leg keeps its codec
/// (or takes the other leg's) whenever the offer allows, so the relay need not transcode.
fn narrowed_to(
    offer: &SessionDescription,
    caps: &Capabilities,
    codec: Option<sdp::Codec>,
    addr: IpAddr,
    port: u16,
) -> Capabilities {
    let Some(codec) = codec else {
        return caps.clone();
    };
    let narrowed = Capabilities {
        codecs: vec![codec],
        ..caps.clone()
    };
    let mut scratch = LocalSession::new(0, 0);
    match sdp::answer(offer, &narrowed, addr, port, &mut scratch) {
        Ok(_) => narrowed,
        Err(_) => caps.clone(),
    }
}

fn user_of(uri: &Uri) -> String {
    uri.user_decoded()
        .and_then(|u| String::from_utf8(u).ok())
        .unwrap_or_default()
}

impl Endpoint {
    // -----------------------------------------------------------------------------------------
    // New calls
    // -----------------------------------------------------------------------------------------

    /// An authenticated INVITE outside any dialog: route it (blacklist, test line, account,
    /// service number) and open its call record. Every INVITE that reaches here is answered.
    /// `account`: the account the INVITE authenticated as (`None` from a trusted source). It,
    /// not the From header, is who calls: an account cannot pose as another phone to log its
    /// agent out or to call out under another agent's display number.
    pub(super) fn start_call(
        &mut self,
        now: Instant,
        unix: u64,
        from: Received,
        id: ServerTxId,
        req: &Request,
        account: Option<String>,
    ) {
        let callee = user_of(&req.uri);
        let caller = account.unwrap_or_else(|| {
            req.headers
                .from()
                .map(|f| user_of(&f.uri))
                .unwrap_or_default()
        });
        let trunk = self
            .call_cfg
            .trunks
            .iter()
            .find(|t| t.sources.iter().any(|n| n.contains(&from.remote.ip())))
            .map(|t| t.name.clone());
        let started_ms = self.unix_ms(now);
        let call_id = format!("{:016x}{:016x}", self.tags.next_u64(), self.tags.next_u64());
        // An entry for the caller's trunk wins over one for any trunk.
        let route = self
            .call_cfg
            .numbers
            .iter()
            .filter(|n| n.number == callee && (n.trunk.is_none() || n.trunk == trunk))
            .max_by_key(|n| n.trunk.is_some())
            .cloned();
        let number_disabled = route.as_ref().is_some_and(|r| !r.enabled);
        let flow_route = route.map(|n| n.flow);
        let internal = self.accounts.contains_key(&caller) && trunk.is_none();
        let known_number = self.accounts.contains_key(&callee)
            || self
                .call_cfg
                .test_line
                .as_ref()
                .is_some_and(|t| t.number == callee);
        // A phone of ours dialling a number that is none of ours: out through a trunk.
        let caller_agent = self.acd.agent_of_phone(&caller);
        let outbound = (internal
            && !self.call_cfg.trunks.is_empty()
            && flow_route.is_none()
            && !known_number
            && outbound::looks_like_number(&callee)
            && self.feature_code(&caller, &callee).is_none())
        .then(|| self.plan_trunk_call(now, &callee, None, caller_agent.as_ref()));
        let open = match &outbound {
            Some(plan) => CdrOpen {
                call_id: call_id.clone(),
                call_type: CallType::Outbound,
                direction: cdr::Direction::Outbound,
                customer_number: match plan {
                    Ok(p) => p.callee_e164.clone(),
                    // Refused: still the number in E.164 when it is one, so searches find it.
                    Err(_) => self
                        .call_cfg
                        .trunks
                        .first()
                        .and_then(|t| self.call_cfg.trunk_plan.normalize_inbound(&t.name, &callee))
                        .map(|n| n.into_string())
                        .unwrap_or_else(|| callee.trim().to_owned()),
                },
                trunk_number: plan.as_ref().ok().and_then(|p| p.caller_id.clone()),
                service_number: None,
                started_at_ms: started_ms,
            },
            None => CdrOpen {
                call_id: call_id.clone(),
                call_type: if flow_route.is_some() || !internal {
                    CallType::Inbound
                } else {
                    CallType::Internal
                },
                direction: cdr::Direction::Inbound,
                customer_number: caller.trim().to_owned(),
                trunk_number: trunk.as_ref().map(|_| callee.clone()),
                // The number dialled, also when no route matched it: what a manager looks for.
                service_number: (flow_route.is_some() || !internal || !known_number)
                    .then(|| callee.clone()),
                started_at_ms: started_ms,
            },
        };
        let ringing = serde_json::json!({
            "caller": caller,
            "callee": callee,
            "trunk": trunk,
            "service_number": open.service_number,
        });
        let refuse = |ep: &mut Endpoint, code: u16, reason: &str, missed: MissedReason| {
            let resp = ep.response(req, code).with_reason(reason.to_owned());
            ep.respond(now, id, resp);
            ep.events.push_back(Event::CdrOpen(open.clone()));
            ep.call_event(
                now,
                &call_id,
                CallEventKind::InboundRinging,
                ringing.clone(),
            );
            ep.call_event(
                now,
                &call_id,
                CallEventKind::Hangup,
                serde_json::json!({
                    "hangup_by": HangupBy::System.code(),
                    "result": missed.result().code(),
                    "missed_reason": missed.code(),
                }),
            );
            ep.events.push_back(Event::CdrClose {
                call_id: call_id.clone(),
                close: CdrClose {
                    ended_at_ms: started_ms,
                    result: missed.result(),
                    missed_reason: Some(missed),
                    hangup_by: Some(HangupBy::System),
                    ..CdrClose::default()
                },
            });
            metrics::counter!("calls_refused_total", "reason" => missed.code()).increment(1);
        };
        if self.call_cfg.blacklist.blocks(&caller) {
            tracing::info!(%callee, "caller on the inbound blacklist; refused");
            refuse(self, 403, "Forbidden", MissedReason::Blacklisted);
            return;
        }
        if let Some(Err(refusal)) = &outbound {
            tracing::info!(%callee, %refusal, "outbound call refused");
            let (code, reason) = outbound::refusal_answer(refusal);
            refuse(self, code, reason, refusal.missed_reason());
            return;
        }
        let outbound = outbound.and_then(Result::ok);
        // A trunk number (中继号码) switched off on its trunk refuses its calls, too.
        let trunk_number_disabled = trunk.as_ref().is_some_and(|t| {
            self.call_cfg
                .trunk_plan
                .normalize_inbound(t, &callee)
                .is_some_and(|n| {
                    self.call_cfg
                        .trunk_plan
                        .inbound_number_disabled(t, n.as_str())
                })
        });
        if number_disabled || trunk_number_disabled {
            tracing::info!(%callee, "service number disabled; refused");
            refuse(
                self,
                480,
                "Temporarily Unavailable (number disabled)",
                MissedReason::TrunkNumberDisabled,
            );
            return;
        }
        let mut flow_def = None;
        let feature = if trunk.is_none() {
            self.feature_code(&caller, &callee)
        } else {
            None
        };
        let kind = if let Some(code) = &feature {
            if !self.run_feature_code(now, &caller, code) {
                refuse(self, 403, "Forbidden", MissedReason::InboundRouteNotMatched);
                return;
            }
            Kind::Feature
        } else if self
            .call_cfg
            .test_line
            .as_ref()
            .is_some_and(|t| t.number == callee)
        {
            Kind::TestLine
        } else if let Some(name) = &flow_route {
            match self.flows.0.get(name) {
                Some(f) => {
                    flow_def = Some(f.clone());
                    Kind::Flow
                }
                None => {
                    tracing::warn!(%callee, flow = %name, "service number bound to a flow that is not published");
                    refuse(self, 404, "Not Found", MissedReason::InboundRouteNotMatched);
                    return;
                }
            }
        } else if self.accounts.contains_key(&callee) || outbound.is_some() {
            Kind::Bridge
        } else {
            tracing::info!(%callee, "no route for the dialled number");
            refuse(self, 404, "Not Found", MissedReason::InboundRouteNotMatched);
            return;
        };
        let offer = match sdp_of(&req.body) {
            None => None,
            Some(Ok(s)) if is_sdp(&req.headers, &req.body) => Some(s),
            Some(Ok(_)) => None,
            Some(Err(())) => {
                let resp = self
                    .response(req, 400)
                    .with_reason("Bad Request (malformed SDP)");
                self.respond(now, id, resp);
                return;
            }
        };
        let contacts: Vec<crate::registrar::Binding> = if kind == Kind::Bridge && outbound.is_none()
        {
            self.registrar
                .lookup(&callee, unix)
                .into_iter()
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if kind == Kind::Bridge && outbound.is_none() && contacts.is_empty() {
            tracing::info!(%caller, %callee, "call to an account with no registered phone");
            refuse(
                self,
                480,
                "Temporarily Unavailable (not registered)",
                MissedReason::CustomerNoAnswer,
            );
            return;
        }
        let key = CallKey(self.calls.next());
        let target = Target {
            transport: from.transport,
            addr: from.remote,
            conn: from.conn,
            local: from.local,
        };
        let a = self.new_leg(Side::Inbound, target);
        {
            let leg = self.calls.legs.get_mut(&a).expect("just made");
            leg.call = Some(key);
            leg.invite = Some(req.clone());
            leg.invite_tx = Some(id);
            leg.offer_in_invite = offer;
        }
        self.calls.track_server(id, a);
        let session = self.calls.legs[&a].session;
        self.events.push_back(Event::OpenMedia {
            id: session,
            near: None,
        });
        let ring_deadline = (kind == Kind::Bridge).then(|| now + self.call_cfg.ring_timeout);
        if let Some(t) = ring_deadline {
            self.calls.arm(t, key, TimerKey::Ring);
        }
        self.events.push_back(Event::CdrOpen(open));
        self.call_event(now, &call_id, CallEventKind::InboundRinging, ringing);
        self.calls.calls.insert(
            key,
            Call {
                kind,
                a,
                forks: Vec::new(),
                winner: None,
                fork_codes: Vec::new(),
                ring_deadline,
                answered: false,
                caller: caller.clone(),
                callee: callee.clone(),
                flow_def,
                flow: None,
                bye_reason: None,
                queue: None,
                click: None,
                cdr: CdrDraft {
                    call_id,
                    started_ms,
                    answered_ms: None,
                    ring_ms: None,
                    recording: None,
                    recording_stopping: false,
                    agent: None,
                    wrap_up_ms: None,
                    queue: None,
                    queue_wait: Duration::ZERO,
                    talk_ms: 0,
                    queue_miss: None,
                    caller_id: None,
                    far_end_hung_up: false,
                },
            },
        );
        if let Some(plan) = &outbound {
            let leg = self.trunk_leg_planned(key, req, plan);
            if let Some(l) = leg {
                self.open_leg_record(now, key, l, LegKind::Outbound, plan.callee_e164.clone());
                if let Some(rec) = self.calls.legs.get_mut(&l).and_then(|x| x.record.as_mut()) {
                    rec.leg.caller_id = plan.caller_id.clone();
                    rec.leg.agent = caller_agent.as_ref().map(|a| a.0.clone());
                }
            }
            if let Some(c) = self.calls.calls.get_mut(&key) {
                c.forks = leg.into_iter().collect();
                c.cdr.caller_id = plan.caller_id.clone();
                c.cdr.agent = caller_agent.as_ref().map(|a| a.0.clone());
            }
            if let Some(agent) = &caller_agent {
                // The agent is on this call (not offered queue calls), and the customer is
                // remembered for call memory.
                if let Err(e) = self.acd.acd.outbound_started(
                    agent,
                    crate::acd::CallId(key.0),
                    Some(&plan.callee_e164),
                    now,
                ) {
                    tracing::debug!(%agent, error = %e, "agent's outbound call not counted");
                }
                self.acd_pump(now);
            }
        } else if kind == Kind::Bridge {
            let forks = self.make_forks(key, req, &contacts, &callee, &[]);
            for f in &forks {
                self.open_leg_record(now, key, *f, LegKind::Agent, callee.clone());
            }
            if let Some(c) = self.calls.calls.get_mut(&key) {
                c.forks = forks;
            }
        }
        tracing::info!(call = key.0, %caller, %callee, kind = ?kind, "call started");
        metrics::counter!("calls_total", "kind" => match kind { Kind::TestLine => "test_line", Kind::Bridge => "account", Kind::Flow => "flow", Kind::Feature => "feature_code" }).increment(1);
    }

    /// Outbound legs to every contact of a binding list (parallel fork); their RTP sessions
    /// open on the caller's worker, and each INVITE leaves once its port is bound.
    fn make_forks(
        &mut self,
        key: CallKey,
        incoming: &Request,
        contacts: &[crate::registrar::Binding],
        callee: &str,
        extra_headers: &[(String, String)],
    ) -> Vec<LegId> {
        let Some(session) = self.calls.caller_session(key) else {
            return Vec::new();
        };
        let mut forks = Vec::new();
        for b in contacts {
            let target = Target {
                transport: b.transport,
                addr: b.source,
                conn: b.conn,
                local: b.local,
            };
            let Ok(contact_uri) = NameAddr::parse(&b.contact)
                .map(|n| n.uri)
                .or_else(|_| Uri::parse(&b.contact))
            else {
                continue;
            };
            if let Some(l) = self.new_outbound(
                key,
                session,
                target,
                incoming,
                contact_uri,
                callee,
                extra_headers,
            ) {
                forks.push(l);
            }
        }
        forks
    }

    /// One outbound leg: its INVITE is built now and sent when its RTP port is bound.
    #[allow(clippy::too_many_arguments)]
    fn new_outbound(
        &mut self,
        key: CallKey,
        caller_session: SessionId,
        target: Target,
        incoming: &Request,
        uri: Uri,
        callee: &str,
        extra_headers: &[(String, String)],
    ) -> Option<LegId> {
        let leg_id = self.new_leg(Side::Outbound, target);
        let max_forwards = incoming
            .headers
            .max_forwards()
            .ok()
            .flatten()
            .unwrap_or(70)
            .saturating_sub(1);
        let mut invite = self.outbound_invite(leg_id, incoming, uri, callee, max_forwards);
        for (name, value) in extra_headers {
            invite
                .headers
                .push(HeaderName::Other(name.as_str().into()), value.clone());
        }
        let leg = self.calls.legs.get_mut(&leg_id)?;
        leg.call = Some(key);
        leg.out_invite = Some(invite);
        let s = leg.session;
        self.events.push_back(Event::OpenMedia {
            id: s,
            near: Some(caller_session),
        });
        Some(leg_id)
    }

    fn new_leg(&mut self, side: Side, target: Target) -> LegId {
        let id = LegId(self.calls.next());
        let session = SessionId(id.0);
        let contact_host = if target.local.ip().is_unspecified() {
            SocketAddr::new(self.call_cfg.media_address, target.local.port())
        } else {
            target.local
        };
        let transport = match target.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        let contact = NameAddr::parse(&format!("<sip:switchboard@{contact_host}{transport}>"))
            .expect("a well-formed Contact");
        let sdp_id = u64::from(self.tags.next_u32());
        let leg = Leg {
            call: None,
            side,
            target,
            contact,
            local_tag: self.tags.next(),
            dialog: None,
            session,
            local_rtp: None,
            sdp: LocalSession::new(sdp_id, sdp_id),
            negotiated: None,
            remote_sdp: None,
            our_offer: None,
            invite: None,
            invite_tx: None,
            offer_in_invite: None,
            sent_ringing: false,
            out_invite: None,
            out_tx: None,
            provisional_seen: false,
            cancel_wanted: false,
            cancelled: false,
            acked_cseq: None,
            reinvite_in: None,
            reinvite_out: None,
            bye_sent: false,
            media_closed: false,
            playing_intro: false,
            transactions: 0,
            agent: None,
            record: None,
            trunk: None,
            auth_sent: false,
        };
        self.calls.by_session.insert(session, id);
        self.calls.legs.insert(id, leg);
        id
    }

    /// The INVITE to one registered contact of the dialled account. The caller's identity
    /// travels in From, as the phone dialled it.
    fn outbound_invite(
        &mut self,
        leg: LegId,
        incoming: &Request,
        uri: Uri,
        callee: &str,
        max_forwards: u8,
    ) -> Request {
        let domain = self.call_cfg.domain.clone();
        let l = &self.calls.legs[&leg];
        let mut req = Request::new(Method::Invite, uri);
        let h = &mut req.headers;
        h.push(HeaderName::MaxForwards, max_forwards.to_string());
        let from = incoming.headers.from().ok();
        let caller = from.as_ref().map(|f| user_of(&f.uri)).unwrap_or_default();
        let display = from
            .as_ref()
            .and_then(|f| f.display.clone())
            .map(|d| format!("{d} "))
            .unwrap_or_default();
        let caller = if caller.is_empty() {
            "anonymous".to_string()
        } else {
            caller
        };
        h.push(
            HeaderName::From,
            format!("{display}<sip:{caller}@{domain}>;tag={}", l.local_tag),
        );
        h.push(HeaderName::To, format!("<sip:{callee}@{domain}>"));
        h.push(
            HeaderName::CallId,
            format!("{}-{}@switchboard", self.tags.next(), leg.0),
        );
        h.push(HeaderName::CSeq, "1 INVITE");
        h.push(HeaderName::Contact, l.contact.to_string());
        h.push(HeaderName::Allow, super::ALLOW);
        if let Some(ua) = &self.user_agent {
            h.push(HeaderName::UserAgent, ua.clone());
        }
        req
    }

    // -----------------------------------------------------------------------------------------
    // Media answers
    // -----------------------------------------------------------------------------------------

    /// The shell opened (or failed to open) the RTP session the core asked for.
    pub fn handle_media_opened(
        &mut self,
        now: Instant,
        id: SessionId,
        result: Result<SocketAddr, String>,
    ) {
        let Some(&leg_id) = self.calls.by_session.get(&id) else {
            return;
        };
        match result {
            Ok(addr) => {
                if let Some(leg) = self.calls.legs.get_mut(&leg_id) {
                    leg.local_rtp = Some(addr);
                }
            }
            Err(e) => {
                tracing::error!(session = %id, error = %e, "no RTP port for a call");
                if let Some(leg) = self.calls.legs.get_mut(&leg_id) {
                    leg.media_closed = true;
                }
                if let Some(key) = self.calls.legs.get(&leg_id).and_then(|l| l.call) {
                    self.end_call(now, key, EndReason::MediaFailure, Some(503));
                }
                return;
            }
        }
        let Some(key) = self.calls.legs.get(&leg_id).and_then(|l| l.call) else {
            return;
        };
        let Some(call) = self.calls.calls.get(&key) else {
            return;
        };
        let kind = call.kind;
        let leg = &self.calls.legs[&leg_id];
        match leg.side {
            // Each outbound INVITE leaves as soon as its own port is bound.
            Side::Outbound if leg.out_tx.is_none() => self.send_fork(now, leg_id),
            Side::Outbound => self.transfer_media_ready(now, leg_id),
            // The test line and flows answer at once; a call to an account waits for a phone.
            Side::Inbound => match kind {
                Kind::TestLine | Kind::Flow | Kind::Feature => self.answer_inbound(now, key, None),
                Kind::Bridge => {}
            },
        }
    }

    fn send_fork(&mut self, now: Instant, leg_id: LegId) {
        let caps = self.call_cfg.capabilities.clone();
        let addr = self.call_cfg.media_address;
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        let (Some(mut invite), Some(rtp)) = (leg.out_invite.take(), leg.local_rtp) else {
            return;
        };
        let offer = sdp::offer(&caps, addr, rtp.port(), Direction::SendRecv, &mut leg.sdp);
        invite
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        invite.body = Bytes::from(offer.to_string());
        leg.our_offer = Some(offer);
        let target = leg.target;
        // Our own Via, so the INVITE we keep is the one on the wire (CANCEL copies it).
        let host = if target.local.ip().is_unspecified() {
            SocketAddr::new(addr, target.local.port())
        } else {
            target.local
        };
        let via = format!(
            "SIP/2.0/{} {host};branch={};rport",
            target.transport,
            self.tx.new_branch()
        );
        invite
            .headers
            .0
            .insert(0, crate::sip::msg::Header::new(HeaderName::Via, via));
        let tx = self.tx.send_request(now, invite.clone(), target);
        let leg = self.calls.legs.get_mut(&leg_id).expect("exists");
        leg.out_invite = Some(invite);
        leg.out_tx = Some(tx);
        self.calls.track_client(tx, leg_id, Purpose::Invite);
    }

    /// Answer the caller: 200 with our answer (or our offer, when the INVITE had none).
    /// `prefer`: the codec the other leg settled on, tried first to avoid transcoding.
    fn answer_inbound(&mut self, now: Instant, key: CallKey, prefer: Option<sdp::Codec>) {
        let Some(call) = self.calls.calls.get(&key) else {
            return;
        };
        if call.answered {
            return; // a flow call, answered on arrival, now bridged to a dialled leg
        }
        let a = call.a;
        let mut caps = self.call_cfg.capabilities.clone();
        if let Some(c) = prefer {
            caps.codecs.retain(|x| *x != c);
            caps.codecs.insert(0, c);
        }
        let addr = self.call_cfg.media_address;
        let leg = self.calls.legs.get_mut(&a).expect("leg a");
        let (Some(rtp), Some(invite), Some(tx)) =
            (leg.local_rtp, leg.invite.clone(), leg.invite_tx)
        else {
            return;
        };
        let body = match leg.offer_in_invite.clone() {
            Some(offer) => {
                // Prefer the other leg's codec when the caller offers it.
                let answer_caps = narrowed_to(&offer, &caps, prefer, addr, rtp.port());
                match sdp::answer(&offer, &answer_caps, addr, rtp.port(), &mut leg.sdp) {
                    Ok((answer, negotiated)) => {
                        self.events.push_back(Event::Media(Command::Configure {
                            id: leg.session,
                            params: params_of(&negotiated),
                        }));
                        leg.negotiated = Some(negotiated);
                        leg.remote_sdp = Some(offer);
                        answer
                    }
                    Err(reject) => {
                        let warning = reject.warning_header("switchboard");
                        self.reject_offer(now, key, tx, &invite, warning);
                        return;
                    }
                }
            }
            None => {
                let offer = sdp::offer(&caps, addr, rtp.port(), Direction::SendRecv, &mut leg.sdp);
                leg.our_offer = Some(offer.clone());
                offer
            }
        };
        let dialog = match leg.dialog.take() {
            Some(d) => d,
            None => match Dialog::uas_from_invite(&invite, &leg.local_tag, leg.contact.clone()) {
                Ok(d) => d,
                Err(e) => {
                    let code = e.status();
                    self.end_call(now, key, EndReason::Rejected(code), Some(code));
                    return;
                }
            },
        };
        let mut resp = dialog.response_to(&invite, 200);
        resp.headers.push(HeaderName::Allow, super::ALLOW);
        resp.headers
            .push(HeaderName::ContentType, "application/sdp");
        resp.body = Bytes::from(body.to_string());
        let mut dialog = dialog;
        dialog.response_sent(&resp);
        self.calls.by_dialog.insert(dialog.id().clone(), a);
        leg.dialog = Some(dialog);
        self.decorate(&mut resp);
        self.tx.respond(now, tx, resp);
        let at = self.unix_ms(now);
        if let Some(call) = self.calls.calls.get_mut(&key) {
            call.answered = true;
            call.ring_deadline = None;
            if call.kind != Kind::Flow {
                call.cdr.answered_ms = Some(at);
            }
            tracing::info!(call = key.0, caller = %call.caller, callee = %call.callee, "call answered");
        }
    }

    fn reject_offer(
        &mut self,
        now: Instant,
        key: CallKey,
        tx: ServerTxId,
        invite: &Request,
        warning: Option<String>,
    ) {
        let mut resp = self.response(invite, 488);
        if let Some(w) = warning {
            resp.headers.push(HeaderName::Warning, w);
        }
        self.respond(now, tx, resp);
        if let Some(leg) = self
            .calls
            .calls
            .get(&key)
            .and_then(|c| self.calls.legs.get_mut(&c.a))
        {
            leg.invite_tx = None;
        }
        self.end_call(now, key, EndReason::Rejected(488), None);
    }

    // -----------------------------------------------------------------------------------------
    // Responses to our requests
    // -----------------------------------------------------------------------------------------

    /// A response for one of our client transactions. False if it belongs to no call.
    pub(super) fn call_response(&mut self, now: Instant, id: ClientTxId, resp: Response) -> bool {
        let Some(&(leg_id, purpose)) = self.calls.by_client_tx.get(&id) else {
            return false;
        };
        match purpose {
            Purpose::Invite => self.on_invite_response(now, leg_id, resp),
            Purpose::Reinvite => self.on_reinvite_response(now, leg_id, resp),
            Purpose::Bye => {}
            Purpose::Notify => self.transfer_notify_answered(now, leg_id, resp.code),
        }
        true
    }

    /// Timer B/F (or a transport failure) for one of our requests: as a 408.
    pub(super) fn call_client_timeout(&mut self, now: Instant, id: ClientTxId) {
        let Some(&(leg_id, purpose)) = self.calls.by_client_tx.get(&id) else {
            return;
        };
        let resp = match self
            .calls
            .legs
            .get(&leg_id)
            .and_then(|l| l.out_invite.as_ref())
        {
            Some(req) if purpose == Purpose::Invite => Response::for_request(req, 408),
            _ => Response::from_headers(&crate::sip::msg::Headers::new(), 408),
        };
        match purpose {
            Purpose::Invite => self.on_invite_response(now, leg_id, resp),
            Purpose::Reinvite => self.on_reinvite_response(now, leg_id, resp),
            Purpose::Bye => {}
            Purpose::Notify => self.transfer_notify_answered(now, leg_id, 408),
        }
    }

    /// A transaction is gone: forget it, and a leg with nothing left to wait for.
    pub(super) fn call_tx_terminated(&mut self, key: TxKey) {
        match key {
            TxKey::Client(id) => {
                if let Some((leg, _)) = self.calls.by_client_tx.remove(&id) {
                    self.calls.untrack(leg);
                    self.forget_leg_if_done(leg);
                }
            }
            TxKey::Server(id) => {
                if let Some(leg) = self.calls.by_server_tx.remove(&id) {
                    self.calls.untrack(leg);
                    self.forget_leg_if_done(leg);
                }
            }
        }
    }

    fn forget_leg_if_done(&mut self, leg_id: LegId) {
        let Some(leg) = self.calls.legs.get(&leg_id) else {
            return;
        };
        let call_alive = leg.call.is_some_and(|k| self.calls.calls.contains_key(&k));
        if call_alive {
            return;
        }
        if leg.transactions == 0 {
            if let Some(leg) = self.calls.legs.remove(&leg_id) {
                self.calls.by_session.remove(&leg.session);
                if let Some(d) = &leg.dialog {
                    self.calls.by_dialog.remove(d.id());
                }
            }
        }
    }

    fn on_invite_response(&mut self, now: Instant, leg_id: LegId, resp: Response) {
        let code = resp.code;
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        let Some(invite) = leg.out_invite.clone() else {
            return;
        };
        if code == 100 {
            // 100 Trying is a provisional response too (RFC 3261 §9.1): a CANCEL may go now,
            // and one waiting for it must, or a phone that sends only 100 rings on.
            leg.provisional_seen = true;
            if leg.cancel_wanted && !leg.cancelled {
                self.send_cancel(now, leg_id);
            }
            return;
        }
        // Dialog bookkeeping (RFC 3261 §12.1.2).
        if (101..300).contains(&code) {
            match &mut leg.dialog {
                Some(d) if DialogId::of_response(&resp).as_ref() == Some(d.id()) => {
                    d.response_received(&resp)
                }
                Some(_) => {
                    // Another fork of the same INVITE (a forking proxy behind the phone):
                    // only the first dialog is kept; a 2xx from another is answered below.
                }
                None => {
                    if let Ok(d) = Dialog::uac_from_response(&invite, &resp) {
                        self.calls.by_dialog.insert(d.id().clone(), leg_id);
                        leg.dialog = Some(d);
                    }
                }
            }
        }
        let call_key = leg.call.filter(|k| self.calls.calls.contains_key(k));
        if code < 200 {
            leg.provisional_seen = true;
            if leg.cancel_wanted && !leg.cancelled {
                self.send_cancel(now, leg_id);
                return;
            }
            let Some(key) = call_key else { return };
            let at = self.unix_ms(now);
            if let Some(c) = self.calls.calls.get_mut(&key) {
                // When the dialled side first rang, for the record.
                c.cdr.ring_ms.get_or_insert(at);
            }
            self.leg_ringing(now, leg_id);
            self.ring_caller(now, key);
            return;
        }
        if code >= 300 {
            if let Some(d) = &mut leg.dialog {
                d.response_received(&resp);
            }
            let Some(key) = call_key else { return };
            if self.answer_trunk_challenge(now, leg_id, &resp) {
                return;
            }
            self.fork_failed(now, key, leg_id, code);
            return;
        }
        // 2xx: ACK it (every 2xx, retransmissions included: RFC 3261 §13.2.2.4).
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        let same_dialog = leg
            .dialog
            .as_ref()
            .is_some_and(|d| DialogId::of_response(&resp).as_ref() == Some(d.id()));
        if !same_dialog {
            // A 2xx from a second fork behind the phone: ACK and BYE it (§13.2.2.4).
            if let Ok(mut d) = Dialog::uac_from_response(&invite, &resp) {
                let ack = d.ack_for(cseq.seq);
                self.tx.send_request(now, ack, leg.target);
                let bye = d.request(Method::Bye);
                let target = leg.target;
                self.tx.send_request(now, bye, target);
            }
            return;
        }
        let answered_before = leg.acked_cseq == Some(cseq.seq);
        let ack = leg
            .dialog
            .as_ref()
            .map(|d| d.ack_for(cseq.seq))
            .expect("dialog");
        leg.acked_cseq = Some(cseq.seq);
        let target = leg.target;
        self.tx.send_request(now, ack, target);
        if answered_before {
            return;
        }
        if let Some(key) = call_key.filter(|k| self.is_click_first_leg(*k, leg_id)) {
            self.click_first_answered(now, key, leg_id, &resp);
            return;
        }
        let won = call_key.filter(|k| {
            self.calls
                .calls
                .get(k)
                .is_some_and(|c| c.winner.is_none() && c.forks.contains(&leg_id))
        });
        let Some(key) = won else {
            // Too late: the call was answered elsewhere or is over.
            self.hangup_leg(now, leg_id, None);
            return;
        };
        // Read the answer to our offer first: an answer without usable audio is a failed leg,
        // before anyone (the ACD, a transfer) counts it as answered.
        let Some((negotiated, answer)) = self.read_answer(leg_id, &resp) else {
            tracing::warn!(
                call = key.0,
                "callee's answer had no usable audio; hanging up"
            );
            self.hangup_leg(now, leg_id, None);
            self.fork_failed(now, key, leg_id, 488);
            return;
        };
        if !self.agent_leg_answered(now, key, leg_id) {
            // The ACD withdrew the offer (ring time over, caller gone) as the agent answered.
            self.hangup_leg(now, leg_id, None);
            if let Some(c) = self.calls.calls.get_mut(&key) {
                c.forks.retain(|f| *f != leg_id);
            }
            if let Some(l) = self.calls.legs.get_mut(&leg_id) {
                l.call = None;
            }
            self.close_media(leg_id);
            self.finish_leg_record(now, leg_id, HangupBy::System);
            return;
        }
        self.transfer_leg_answered(now, key);
        let codec = negotiated.codec.codec;
        let b_session = self.settle_answer(leg_id, negotiated, answer);
        self.leg_answered(now, leg_id);
        let call = self.calls.calls.get_mut(&key).expect("call");
        call.winner = Some(leg_id);
        let others: Vec<LegId> = call
            .forks
            .iter()
            .copied()
            .filter(|f| *f != leg_id)
            .collect();
        call.forks.retain(|f| *f == leg_id);
        let a = call.a;
        for o in others {
            self.cancel_fork(now, o);
        }
        self.answer_inbound(now, key, Some(codec));
        let at = self.unix_ms(now);
        if let Some(call) = self.calls.calls.get_mut(&key) {
            call.ring_deadline = None;
            call.cdr.answered_ms.get_or_insert(at);
            if let Some(run) = call.flow.as_deref_mut() {
                run.leg_answered = true;
            }
        }
        let a_session = self.calls.legs[&a].session;
        self.events.push_back(Event::Media(Command::Bridge {
            a: a_session,
            b: b_session,
        }));
        self.record_if_configured(key, a_session);
    }

    /// The answer to our offer in a leg's 2xx, and what it settles; `None` when it has no
    /// usable audio (or there was no offer of ours to answer).
    fn read_answer(
        &self,
        leg_id: LegId,
        resp: &Response,
    ) -> Option<(Negotiated, SessionDescription)> {
        let offer = self.calls.legs.get(&leg_id)?.our_offer.as_ref()?;
        let answer = sdp_of(&resp.body)?.ok()?;
        let negotiated = sdp::process_answer(offer, &answer).ok()?;
        Some((negotiated, answer))
    }

    /// The leg's media take what its answer settled; its session.
    fn settle_answer(
        &mut self,
        leg_id: LegId,
        negotiated: Negotiated,
        answer: SessionDescription,
    ) -> SessionId {
        let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
        leg.our_offer = None;
        leg.remote_sdp = Some(answer);
        self.events.push_back(Event::Media(Command::Configure {
            id: leg.session,
            params: params_of(&negotiated),
        }));
        leg.negotiated = Some(negotiated);
        leg.session
    }

    /// With `media.record_calls`, record the caller's leg (caller left, the other side right)
    /// into a file named after the call.
    fn record_if_configured(&mut self, key: CallKey, caller_session: SessionId) {
        if !self.call_cfg.record_calls {
            return;
        }
        let name = format!("call-{}-{}.wav", key.0, self.tags.next());
        let path = self.call_cfg.recordings_dir.join(name);
        if let Some(c) = self.calls.calls.get_mut(&key) {
            // The duration is known when the file is finished, which may be after the record
            // is closed; the path is known now.
            c.cdr.recording = Some((path.display().to_string(), None));
            c.cdr.recording_stopping = false;
        }
        self.events.push_back(Event::Media(Command::Record {
            id: caller_session,
            request: RecordRequest { path },
        }));
    }

    /// Tell the caller it is ringing (once): 180 on the early dialog.
    fn ring_caller(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.calls.get(&key) else {
            return;
        };
        if call.answered {
            return;
        }
        let a = call.a;
        let leg = self.calls.legs.get_mut(&a).expect("leg a");
        if leg.sent_ringing {
            return;
        }
        let (Some(invite), Some(tx)) = (leg.invite.clone(), leg.invite_tx) else {
            return;
        };
        leg.sent_ringing = true;
        if leg.dialog.is_none() {
            if let Ok(d) = Dialog::uas_from_invite(&invite, &leg.local_tag, leg.contact.clone()) {
                leg.dialog = Some(d);
            }
        }
        let mut resp = match &leg.dialog {
            Some(d) => d.response_to(&invite, 180),
            None => return,
        };
        self.decorate(&mut resp);
        self.tx.respond(now, tx, resp);
    }

    fn fork_failed(&mut self, now: Instant, key: CallKey, leg_id: LegId, code: u16) {
        if self.click_leg_failed(now, key, leg_id, code)
            || self.agent_leg_failed(now, key, leg_id, code)
            || self.transfer_fork_failed(now, key, leg_id, code)
        {
            return;
        }
        self.leg_failed_with(leg_id, code);
        self.finish_leg_record(now, leg_id, HangupBy::Callee);
        let Some(call) = self.calls.calls.get_mut(&key) else {
            return;
        };
        call.forks.retain(|f| *f != leg_id);
        if call.winner == Some(leg_id) {
            return;
        }
        if code != 487 {
            call.fork_codes.push(code);
        }
        if let Some(leg) = self.calls.legs.get_mut(&leg_id) {
            leg.call = None;
            self.close_media(leg_id);
        }
        let Some(call) = self.calls.calls.get(&key) else {
            return;
        };
        // A flow call was answered by the flow itself: what matters is whether any dialled
        // leg is still ringing.
        if !call.forks.is_empty() || (call.answered && call.kind != Kind::Flow) {
            return;
        }
        if call.kind == Kind::Flow {
            let codes = call.fork_codes.clone();
            let outcome = if codes.iter().any(|c| matches!(c, 486 | 600 | 603)) {
                LegOutcome::Busy
            } else if codes.iter().any(|c| matches!(c, 408 | 480 | 487)) {
                LegOutcome::NoAnswer
            } else {
                LegOutcome::Failed
            };
            self.dial_finished(now, key, outcome, Vec::new());
            return;
        }
        // Every phone said no: the caller gets the most telling answer.
        let codes = &call.fork_codes;
        let (answer, reason) = if codes.iter().any(|c| matches!(c, 486 | 600)) {
            (486, EndReason::Busy)
        } else if codes.iter().any(|c| matches!(c, 603)) {
            (603, EndReason::Declined)
        } else if codes.iter().any(|c| matches!(c, 408)) {
            (480, EndReason::NoAnswer)
        } else if let Some(c) = codes
            .iter()
            .copied()
            .filter(|c| (400..700).contains(c))
            .min()
        {
            (if c == 488 { 488 } else { 480 }, EndReason::Unavailable)
        } else {
            (480, EndReason::Unavailable)
        };
        self.end_call(now, key, reason, Some(answer));
    }

    fn cancel_fork(&mut self, now: Instant, leg_id: LegId) {
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        leg.call = None;
        leg.cancel_wanted = true;
        if leg.provisional_seen && !leg.cancelled {
            self.send_cancel(now, leg_id);
        }
        self.close_media(leg_id);
        self.finish_leg_record(now, leg_id, HangupBy::System);
    }

    /// RFC 3261 §9.1: CANCEL copies the INVITE's Request-URI, Call-ID, From, To, CSeq number
    /// and top Via; only after a provisional response.
    fn send_cancel(&mut self, now: Instant, leg_id: LegId) {
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        let Some(invite) = leg.out_invite.as_ref() else {
            return;
        };
        leg.cancelled = true;
        let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
        for name in [
            HeaderName::Via,
            HeaderName::MaxForwards,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
        ] {
            if let Some(v) = invite.headers.get(&name) {
                cancel.headers.push(name, v.clone());
            }
        }
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        cancel
            .headers
            .push(HeaderName::CSeq, format!("{seq} CANCEL"));
        let target = leg.target;
        self.tx.send_request(now, cancel, target);
    }

    fn on_reinvite_response(&mut self, now: Instant, leg_id: LegId, resp: Response) {
        let code = resp.code;
        if code < 200 {
            return;
        }
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        if let Some(d) = &mut leg.dialog {
            d.response_received(&resp);
        }
        if code < 300 {
            if let (Some(d), Ok(cseq)) = (&leg.dialog, resp.headers.cseq()) {
                let ack = d.ack_for(cseq.seq);
                let target = leg.target;
                self.tx.send_request(now, ack, target);
            }
        }
        if leg.reinvite_out.is_none() {
            return; // a retransmitted 2xx, ACKed again above
        }
        leg.reinvite_out = None;
        let Some(key) = leg.call else { return };
        let other = self.other_leg(key, leg_id);
        let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
        let mut answered_dir = None;
        if code < 300 {
            let answer = sdp_of(&resp.body).and_then(Result::ok);
            if let (Some(offer), Some(ans)) = (&leg.our_offer, &answer) {
                if let Ok(n) = sdp::process_answer(offer, ans) {
                    self.events.push_back(Event::Media(Command::Configure {
                        id: leg.session,
                        params: params_of(&n),
                    }));
                    leg.negotiated = Some(n);
                    answered_dir = Some(stated_direction(ans));
                    leg.remote_sdp = answer;
                }
            }
            leg.our_offer = None;
        } else {
            leg.our_offer = None;
        }
        // Finish the re-INVITE the other leg's peer sent us.
        let Some(other) = other else { return };
        let Some(o) = self.calls.legs.get_mut(&other) else {
            return;
        };
        let Some((tx, reinvite)) = o.reinvite_in.take() else {
            return;
        };
        match answered_dir {
            Some(dir) => self.answer_reinvite(now, other, tx, &reinvite, dir),
            None => {
                let code = if code < 300 || code == 408 || code == 481 {
                    488
                } else {
                    code
                };
                let d = o.dialog.as_ref();
                let mut r = match d {
                    Some(d) => d.response_to(&reinvite, code),
                    None => Response::for_request(&reinvite, code),
                };
                if let Some(d) = &mut o.dialog {
                    d.response_sent(&r);
                }
                self.decorate(&mut r);
                self.tx.respond(now, tx, r);
            }
        }
    }

    fn other_leg(&self, key: CallKey, leg: LegId) -> Option<LegId> {
        let call = self.calls.calls.get(&key)?;
        if call.a == leg {
            call.winner
        } else if call.winner == Some(leg) {
            Some(call.a)
        } else {
            None
        }
    }

    // -----------------------------------------------------------------------------------------
    // Requests inside a dialog
    // -----------------------------------------------------------------------------------------

    /// An in-dialog request (To tag present). False when no dialog of ours matches.
    pub(super) fn call_request(&mut self, now: Instant, id: ServerTxId, req: &Request) -> bool {
        let Some(did) = DialogId::of_request(req) else {
            return false;
        };
        let Some(&leg_id) = self.calls.by_dialog.get(&did) else {
            return false;
        };
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return false;
        };
        let Some(dialog) = &mut leg.dialog else {
            return false;
        };
        if let Err(e) = dialog.receive_request(req) {
            let mut resp = dialog.response_to(req, e.status());
            if matches!(e, DialogError::InviteInProgress { .. }) {
                resp.headers.push(
                    HeaderName::RetryAfter,
                    (self.tags.next_u32() % 10).to_string(),
                );
            }
            self.decorate(&mut resp);
            self.tx.respond(now, id, resp);
            return true;
        }
        let key = leg.call;
        match req.method {
            Method::Bye => {
                let resp = dialog.response_to(req, 200);
                // The call's first leg is the caller's, also when we placed it (click-to-dial).
                let first = key
                    .and_then(|k| self.calls.calls.get(&k))
                    .is_some_and(|c| c.a == leg_id);
                let reason = if first || leg.side == Side::Inbound {
                    EndReason::CallerHangup
                } else {
                    EndReason::CalleeHangup
                };
                let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
                    return true;
                };
                leg.bye_sent = true; // the dialog is over: no BYE back
                self.reply_in_dialog(now, id, resp);
                let in_flow = key
                    .and_then(|k| self.calls.calls.get(&k))
                    .is_some_and(|c| c.kind == Kind::Flow);
                match key {
                    // A dialled party (or a third-party system) hung up: the caller goes on
                    // in the flow, with the BYE's headers for a bridge's results.
                    Some(key) if in_flow && reason == EndReason::CalleeHangup => {
                        let headers = req
                            .headers
                            .0
                            .iter()
                            .map(|h| (h.name.as_str().to_owned(), h.value_str().into_owned()))
                            .collect();
                        self.close_media(leg_id);
                        if let Some(l) = self.calls.legs.get_mut(&leg_id) {
                            l.call = None;
                        }
                        self.finish_leg_record(now, leg_id, HangupBy::Callee);
                        self.dial_finished(now, key, LegOutcome::AnsweredThenHungUp, headers);
                    }
                    Some(key) => {
                        if reason == EndReason::CalleeHangup {
                            self.finish_leg_record(now, leg_id, HangupBy::Callee);
                        }
                        if in_flow {
                            self.flow_event(now, key, FlowEvent::CallerHangup);
                        }
                        self.end_call(now, key, reason, None);
                    }
                    None => self.close_media(leg_id),
                }
            }
            Method::Invite => self.on_reinvite(now, leg_id, id, req),
            Method::Info => self.on_info(now, leg_id, id, req),
            Method::Refer => self.on_refer(now, leg_id, id, req),
            Method::Options => {
                let mut resp = dialog.response_to(req, 200);
                resp.headers.push(HeaderName::Allow, super::ALLOW);
                resp.headers.push(HeaderName::Accept, "application/sdp");
                self.reply_in_dialog(now, id, resp);
            }
            _ => {
                let mut resp = dialog.response_to(req, 405);
                resp.headers.push(HeaderName::Allow, super::ALLOW);
                self.reply_in_dialog(now, id, resp);
            }
        }
        true
    }

    fn reply_in_dialog(&mut self, now: Instant, id: ServerTxId, mut resp: Response) {
        self.decorate(&mut resp);
        self.tx.respond(now, id, resp);
    }

    /// The ACK for our 2xx: the late offer's answer, or the go-ahead to play.
    pub(super) fn call_ack(&mut self, now: Instant, req: &Request) {
        let Some(did) = DialogId::of_request(req) else {
            return;
        };
        let Some(&leg_id) = self.calls.by_dialog.get(&did) else {
            return;
        };
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        if let Some(offer) = leg.our_offer.take() {
            let answer = sdp_of(&req.body).and_then(Result::ok);
            match answer.as_ref().map(|a| sdp::process_answer(&offer, a)) {
                Some(Ok(n)) => {
                    self.events.push_back(Event::Media(Command::Configure {
                        id: leg.session,
                        params: params_of(&n),
                    }));
                    leg.negotiated = Some(n);
                    leg.remote_sdp = answer;
                }
                _ => {
                    // RFC 3264: an offer in a 2xx must be answered in the ACK; without one
                    // there is no media. End the call.
                    if let Some(key) = leg.call {
                        tracing::info!(call = key.0, "ACK carried no usable SDP answer");
                        self.end_call(now, key, EndReason::MediaFailure, None);
                    }
                    return;
                }
            }
        }
        let Some(key) = leg.call else { return };
        let flow_start = self.calls.calls.get_mut(&key).and_then(|c| {
            (c.a == leg_id && c.flow.is_none())
                .then(|| c.flow_def.take())
                .flatten()
                .map(|f| (f, c.caller.clone(), c.callee.clone()))
        });
        if let Some((flow, caller, called)) = flow_start {
            let info = CallInfo {
                caller,
                called,
                vars: Default::default(),
            };
            self.start_flow(now, key, flow, info);
            return;
        }
        let is_feature = self
            .calls
            .calls
            .get(&key)
            .is_some_and(|c| c.kind == Kind::Feature && c.a == leg_id);
        if is_feature {
            // Confirm the feature code with a short tone, then hang up.
            let session = self.calls.legs[&leg_id].session;
            match self.call_cfg.prompts.get("beep") {
                Some(p) => self.events.push_back(Event::Media(Command::Play {
                    id: session,
                    prompts: vec![p],
                    repeat: false,
                    token: PLAY_INTRO,
                })),
                None => self.end_call(now, key, EndReason::FlowHangup, None),
            }
            return;
        }
        let is_test = self
            .calls
            .calls
            .get(&key)
            .is_some_and(|c| c.kind == Kind::TestLine && c.a == leg_id);
        let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
        if is_test && !leg.playing_intro && leg.negotiated.is_some() {
            leg.playing_intro = true;
            let session = leg.session;
            self.record_if_configured(key, session);
            match self
                .call_cfg
                .test_line
                .as_ref()
                .and_then(|t| t.prompt.clone())
            {
                Some(p) => self.events.push_back(Event::Media(Command::Play {
                    id: session,
                    prompts: vec![p],
                    repeat: false,
                    token: PLAY_INTRO,
                })),
                None => self
                    .events
                    .push_back(Event::Media(Command::Echo { id: session })),
            }
        }
    }

    /// A re-INVITE (hold, resume, a new address): answer it on this leg after the other leg
    /// has agreed to the same change.
    fn on_reinvite(&mut self, now: Instant, leg_id: LegId, id: ServerTxId, req: &Request) {
        let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
        let offer = match sdp_of(&req.body) {
            Some(Ok(o)) => Some(o),
            Some(Err(())) => {
                let resp = leg.dialog.as_ref().expect("dialog").response_to(req, 400);
                let resp = resp.with_reason("Bad Request (malformed SDP)");
                if let Some(d) = &mut leg.dialog {
                    d.response_sent(&resp);
                }
                self.reply_in_dialog(now, id, resp);
                return;
            }
            None => None,
        };
        let key = leg.call;
        let other = key.and_then(|k| self.other_leg(k, leg_id));
        let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
        let Some(offer) = offer else {
            // No offer: we offer our current session in the 200 and take the answer from the
            // ACK (RFC 3261 §14.2). Nothing changes on the other leg.
            let Some(rtp) = leg.local_rtp else { return };
            let caps = self.call_cfg.capabilities.clone();
            let dir = leg.sdp.direction;
            let ours = sdp::offer(
                &caps,
                self.call_cfg.media_address,
                rtp.port(),
                dir,
                &mut leg.sdp,
            );
            let dialog = leg.dialog.as_mut().expect("dialog");
            let mut resp = dialog.response_to(req, 200);
            resp.headers
                .push(HeaderName::ContentType, "application/sdp");
            resp.body = Bytes::from(ours.to_string());
            dialog.response_sent(&resp);
            leg.our_offer = Some(ours);
            self.reply_in_dialog(now, id, resp);
            return;
        };
        let stated = stated_direction(&offer);
        let other = other.filter(|o| {
            self.calls.legs.get(o).is_some_and(|ol| {
                ol.dialog
                    .as_ref()
                    .is_some_and(|d| d.state() == DialogState::Confirmed)
            })
        });
        match other {
            Some(o) => {
                // Pass the change on as a fresh offer/answer on the other leg.
                let ol = self.calls.legs.get_mut(&o).expect("other");
                if ol.reinvite_out.is_some()
                    || ol.dialog.as_ref().is_some_and(|d| d.invite_pending())
                {
                    let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
                    let dialog = leg.dialog.as_mut().expect("dialog");
                    let resp = dialog.response_to(req, 491);
                    dialog.response_sent(&resp);
                    self.reply_in_dialog(now, id, resp);
                    return;
                }
                let Some(rtp) = ol.local_rtp else { return };
                let mut caps = self.call_cfg.capabilities.clone();
                if let Some(n) = &ol.negotiated {
                    caps.codecs.retain(|c| *c != n.codec.codec);
                    caps.codecs.insert(0, n.codec.codec);
                }
                let ours = sdp::offer(
                    &caps,
                    self.call_cfg.media_address,
                    rtp.port(),
                    stated,
                    &mut ol.sdp,
                );
                let mut reinvite = ol.dialog.as_mut().expect("dialog").request(Method::Invite);
                reinvite
                    .headers
                    .push(HeaderName::ContentType, "application/sdp");
                reinvite.body = Bytes::from(ours.to_string());
                ol.our_offer = Some(ours);
                let target = ol.target;
                let tx = self.tx.send_request(now, reinvite, target);
                self.calls.legs.get_mut(&o).expect("other").reinvite_out = Some(tx);
                self.calls.track_client(tx, o, Purpose::Reinvite);
                let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
                leg.reinvite_in = Some((id, req.clone()));
                leg.remote_sdp = Some(offer);
            }
            None => {
                // A leg on its own (the test line): answer directly.
                let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
                leg.remote_sdp = Some(offer);
                self.answer_reinvite(now, leg_id, id, req, Direction::SendRecv);
            }
        }
    }

    /// Answer a re-INVITE on `leg_id` granting at most `allowed` (the direction the other
    /// leg's peer agreed to, from its point of view).
    fn answer_reinvite(
        &mut self,
        now: Instant,
        leg_id: LegId,
        id: ServerTxId,
        req: &Request,
        allowed: Direction,
    ) {
        let caps = self.call_cfg.capabilities.clone();
        let addr = self.call_cfg.media_address;
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        let (Some(offer), Some(rtp)) = (leg.remote_sdp.clone(), leg.local_rtp) else {
            return;
        };
        // Keep the codec the leg already uses when the new offer still has it.
        let current = leg.negotiated.as_ref().map(|n| n.codec.codec);
        let answer_caps = narrowed_to(&offer, &caps, current, addr, rtp.port());
        leg.sdp.direction = allowed;
        let result = sdp::answer(&offer, &answer_caps, addr, rtp.port(), &mut leg.sdp);
        leg.sdp.direction = Direction::SendRecv;
        let dialog = leg.dialog.as_mut().expect("dialog");
        let resp = match result {
            Ok((answer, n)) => {
                self.events.push_back(Event::Media(Command::Configure {
                    id: leg.session,
                    params: params_of(&n),
                }));
                leg.negotiated = Some(n);
                let mut resp = dialog.response_to(req, 200);
                resp.headers
                    .push(HeaderName::ContentType, "application/sdp");
                resp.body = Bytes::from(answer.to_string());
                resp
            }
            Err(reject) => {
                let mut resp = dialog.response_to(req, 488);
                if let Some(w) = reject.warning_header("switchboard") {
                    resp.headers.push(HeaderName::Warning, w);
                }
                resp
            }
        };
        dialog.response_sent(&resp);
        self.reply_in_dialog(now, id, resp);
    }

    /// SIP INFO: DTMF (`application/dtmf-relay`, `application/dtmf`).
    fn on_info(&mut self, now: Instant, leg_id: LegId, id: ServerTxId, req: &Request) {
        let leg = self.calls.legs.get_mut(&leg_id).expect("leg");
        let ct = req
            .headers
            .get_str(&HeaderName::ContentType)
            .unwrap_or("")
            .to_owned();
        let dialog = leg.dialog.as_ref().expect("dialog");
        if req.body.is_empty() {
            // An empty INFO is a keep-alive probe (RFC 6086 §4.2.2).
            let resp = dialog.response_to(req, 200);
            return self.reply_in_dialog(now, id, resp);
        }
        match info_dtmf::parse(&ct, &req.body) {
            Ok(d) => {
                let resp = dialog.response_to(req, 200);
                self.reply_in_dialog(now, id, resp);
                let session = self.calls.legs[&leg_id].session;
                self.digit_heard(now, session, d.digit, "info", d.duration);
            }
            Err(info_dtmf::InfoDtmfError::UnsupportedType { .. }) => {
                let mut resp = dialog.response_to(req, 415);
                resp.headers.push(
                    HeaderName::Accept,
                    "application/dtmf-relay, application/dtmf",
                );
                self.reply_in_dialog(now, id, resp);
            }
            Err(e) => {
                let resp = dialog
                    .response_to(req, 400)
                    .with_reason(format!("Bad Request ({e})"));
                self.reply_in_dialog(now, id, resp);
            }
        }
    }

    /// A digit from a leg (RTP event, tones or INFO): the test line reports it; a bridge
    /// passes it to the other leg.
    fn digit_heard(
        &mut self,
        now: Instant,
        session: SessionId,
        digit: Digit,
        via: &'static str,
        duration: Duration,
    ) {
        let Some(&leg_id) = self.calls.by_session.get(&session) else {
            return;
        };
        let Some(key) = self.calls.legs.get(&leg_id).and_then(|l| l.call) else {
            return;
        };
        let Some(call) = self.calls.calls.get(&key) else {
            return;
        };
        match call.kind {
            Kind::TestLine => {
                tracing::info!(call = key.0, caller = %call.caller, digit = %digit.as_char(), via, "test line heard DTMF digit");
                metrics::counter!("test_line_digits_total", "digit" => digit_label(digit), "via" => via).increment(1);
                // Speak it back: the same digit, sent the way this leg negotiated.
                self.events.push_back(Event::Media(Command::SendDtmf {
                    id: session,
                    digit,
                    duration: duration.clamp(Duration::from_millis(80), Duration::from_millis(500)),
                }));
            }
            Kind::Flow if call.a == leg_id && call.winner.is_none() => {
                if !self.queue_digit(now, key, digit.as_char()) {
                    self.flow_digit(now, key, digit.as_char());
                }
            }
            Kind::Feature => {}
            Kind::Flow | Kind::Bridge => {
                if via == "info" {
                    if let Some(other) = self.other_leg(key, leg_id) {
                        let s = self.calls.legs[&other].session;
                        self.events.push_back(Event::Media(Command::SendDtmf {
                            id: s,
                            digit,
                            duration,
                        }));
                    }
                }
                metrics::counter!("dtmf_relayed_total", "via" => via).increment(1);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Media events, CANCEL, timers
    // -----------------------------------------------------------------------------------------

    /// Something the media workers saw.
    pub fn handle_media(&mut self, now: Instant, event: MediaEvent) {
        self.on_media_event(now, event);
        self.drain_tx_events(now);
        self.metrics
            .update(&self.registrar, &self.tx, self.calls.active());
    }

    fn on_media_event(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::Digit {
                id,
                digit,
                via,
                duration,
                relay_to,
            } => {
                let via = match via {
                    DtmfVia::Rfc4733 => "rfc4733",
                    DtmfVia::Inband => "inband",
                };
                // A leg without RFC 4733 (`relay_to`) has already had the digit played to it
                // as tones by the media worker; a SIP INFO as well would press it twice.
                let _ = relay_to;
                self.digit_heard(now, id, digit, via, duration);
            }
            MediaEvent::PlayDone { id, token } => {
                let flow_call = self.calls.call_of_session(id).filter(|k| {
                    self.calls
                        .calls
                        .get(k)
                        .is_some_and(|c| c.kind == Kind::Flow)
                });
                let feature_call = self.calls.call_of_session(id).filter(|k| {
                    self.calls
                        .calls
                        .get(k)
                        .is_some_and(|c| c.kind == Kind::Feature)
                });
                if let Some(key) = flow_call {
                    if !self.queue_play_done(key, token) {
                        self.flow_play_done(now, key, token);
                    }
                } else if let Some(key) = feature_call {
                    // The confirmation has been heard.
                    self.end_call(now, key, EndReason::FlowHangup, None);
                } else if token == PLAY_INTRO {
                    // The test line echoes after its greeting.
                    self.events.push_back(Event::Media(Command::Echo { id }));
                }
            }
            MediaEvent::Inactive { id, silent_for } => {
                if let Some(key) = self.calls.call_of_session(id) {
                    tracing::info!(call = key.0, session = %id, silent_s = silent_for.as_secs(), "no RTP from the peer; ending the call");
                    self.end_call(now, key, EndReason::MediaTimeout, Some(408));
                }
            }
            MediaEvent::Latched { id, remote } => {
                tracing::debug!(session = %id, %remote, "RTP latched to the address it comes from");
            }
            MediaEvent::Recorded { id, result } => {
                let key = self.calls.call_of_session(id);
                match result {
                    Ok(info) => {
                        tracing::info!(session = %id, path = %info.path.display(), duration_ms = info.duration.as_millis() as u64, "recording finished");
                        let path = info.path.display().to_string();
                        let Some(key) = key else { return };
                        let is_flow = match self.calls.calls.get_mut(&key) {
                            // A file the record no longer names was replaced by a later
                            // recording of the session (a voicemail after one started from the
                            // control interface): it neither ends nor overwrites that one.
                            Some(c) if c.cdr.recording.as_ref().is_some_and(|r| r.0 != path) => {
                                false
                            }
                            Some(c) => {
                                c.cdr.recording =
                                    Some((path.clone(), Some(info.duration.as_millis() as i64)));
                                c.kind == Kind::Flow && c.winner.is_none()
                            }
                            None => false,
                        };
                        if is_flow {
                            self.flow_recorded(now, key, path, info.duration);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "recording failed");
                        if let Some(key) = key {
                            if let Some(c) = self.calls.calls.get_mut(&key) {
                                c.cdr.recording = None;
                            }
                            self.flow_recording_failed(now, key);
                        }
                    }
                }
            }
            MediaEvent::Closed { id, stats } => {
                tracing::debug!(session = %id, sent = stats.packets_sent, received = stats.packets_received, lost = stats.packets_lost, "media session closed");
                if let Some(leg) = self.calls.by_session.remove(&id) {
                    self.forget_leg_if_done(leg);
                }
            }
        }
    }

    /// The caller cancelled its INVITE (the transaction layer matched the CANCEL). True if
    /// the INVITE belongs to a call, which answers it 487 itself.
    pub(super) fn call_cancelled(&mut self, now: Instant, invite: ServerTxId) -> bool {
        let Some(&leg_id) = self.calls.by_server_tx.get(&invite) else {
            return false;
        };
        let Some(key) = self.calls.legs.get(&leg_id).and_then(|l| l.call) else {
            return false;
        };
        self.end_call(now, key, EndReason::CallerCancelled, Some(487));
        true
    }

    /// Timer L without an ACK for our 2xx: the caller never confirmed; end the call.
    pub(super) fn call_ack_timeout(&mut self, now: Instant, id: ServerTxId) {
        if let Some(key) = self
            .calls
            .by_server_tx
            .get(&id)
            .and_then(|l| self.calls.legs.get(l))
            .and_then(|l| l.call)
        {
            let is_initial =
                self.calls.calls.get(&key).is_some_and(|c| {
                    self.calls.legs.get(&c.a).and_then(|l| l.invite_tx) == Some(id)
                });
            if is_initial {
                self.end_call(now, key, EndReason::NoAck, None);
            }
        }
    }

    pub(super) fn call_timeouts(&mut self, now: Instant) {
        while let Some(Reverse((t, key, timer))) = self.calls.timers.peek().copied() {
            if t > now {
                break;
            }
            self.calls.timers.pop();
            if timer == TimerKey::Ring
                && (self.transfer_ring_timeout(now, key, t) || self.click_ring_timeout(now, key, t))
            {
                continue;
            }
            let Some(call) = self.calls.calls.get(&key) else {
                continue;
            };
            match timer {
                TimerKey::Ring => {
                    if call.ring_deadline != Some(t) || call.winner.is_some() {
                        continue;
                    }
                    tracing::info!(call = key.0, "no answer within the ring timeout");
                    if call.kind == Kind::Flow {
                        let forks = call.forks.clone();
                        for f in forks {
                            self.cancel_fork(now, f);
                        }
                        if let Some(c) = self.calls.calls.get_mut(&key) {
                            c.forks.clear();
                            c.ring_deadline = None;
                        }
                        self.dial_finished(now, key, LegOutcome::NoAnswer, Vec::new());
                    } else if !call.answered {
                        self.end_call(now, key, EndReason::NoAnswer, Some(480));
                    }
                }
                other => self.flow_timer(now, key, other),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Ending
    // -----------------------------------------------------------------------------------------

    /// End a call: the caller gets `answer` if it has no final response yet, answered legs
    /// get BYE, ringing ones CANCEL, and every media session closes.
    fn end_call(&mut self, now: Instant, key: CallKey, reason: EndReason, answer: Option<u16>) {
        self.transfer_before_end(now, key);
        let left_queue = self
            .calls
            .calls
            .get(&key)
            .and_then(|c| c.queue.as_ref())
            .is_some_and(|q| q.waiting);
        self.queue_before_end(now, key);
        let leg_hangup_by = match reason {
            EndReason::CallerHangup | EndReason::CallerCancelled => HangupBy::Caller,
            EndReason::CalleeHangup => HangupBy::Callee,
            _ => HangupBy::System,
        };
        // The legs' sub-records close while the call is still here: their talk time belongs to
        // its record, and their hang-up events come before the call's own.
        if let Some(c) = self.calls.calls.get(&key) {
            let (a, winner, forks) = (c.a, c.winner, c.forks.clone());
            // A first leg we placed (click-to-dial) has a sub-record of its own.
            self.finish_leg_record(now, a, leg_hangup_by);
            if let Some(w) = winner {
                self.finish_leg_record(now, w, leg_hangup_by);
            }
            for f in forks {
                if left_queue {
                    // The agent did not fail the caller: the caller left.
                    self.leg_miss(f, MissedReason::AbandonedInQueue);
                }
                self.finish_leg_record(now, f, leg_hangup_by);
            }
        }
        let Some(call) = self.calls.calls.remove(&key) else {
            return;
        };
        tracing::info!(call = key.0, caller = %call.caller, callee = %call.callee, ?reason, "call ended");
        self.close_record(now, &call, reason);
        metrics::counter!("calls_ended_total", "reason" => reason_label(reason)).increment(1);
        // The caller's leg.
        let a = call.a;
        if let Some(leg) = self.calls.legs.get_mut(&a) {
            leg.call = None;
            let unanswered = !call.answered;
            if unanswered {
                if let (Some(invite), Some(tx)) = (leg.invite.clone(), leg.invite_tx) {
                    let code = answer.unwrap_or(480);
                    let mut resp = match &leg.dialog {
                        Some(d) => d.response_to(&invite, code),
                        None => Response::for_request(&invite, code),
                    };
                    if code == 480 && reason == EndReason::NoAnswer {
                        resp = resp.with_reason("No Answer");
                    }
                    if let Some(d) = &mut leg.dialog {
                        d.response_sent(&resp);
                    }
                    self.decorate(&mut resp);
                    self.tx.respond(now, tx, resp);
                }
            }
        }
        if call.answered {
            self.hangup_leg(now, a, call.bye_reason);
        } else if self
            .calls
            .legs
            .get(&a)
            .is_some_and(|l| l.side == Side::Outbound && !l.cancelled)
        {
            // Our own first leg still ringing (click-to-dial): CANCEL it.
            if let Some(l) = self.calls.legs.get_mut(&a) {
                l.cancel_wanted = true;
                if l.provisional_seen {
                    self.send_cancel(now, a);
                }
            }
        }
        self.close_media(a);
        for f in call.forks.iter().copied().chain(call.winner) {
            if Some(f) == call.winner {
                self.hangup_leg(now, f, None);
                self.close_media(f);
            } else {
                self.cancel_fork(now, f);
            }
            if let Some(l) = self.calls.legs.get_mut(&f) {
                l.call = None;
            }
        }
        for l in std::iter::once(a).chain(call.forks).chain(call.winner) {
            self.forget_leg_if_done(l);
        }
        self.queue_call_gone(now, key);
    }

    /// BYE on a confirmed dialog (once), with a `Reason` header when there is one to give.
    fn hangup_leg(&mut self, now: Instant, leg_id: LegId, reason: Option<&str>) {
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        if leg.bye_sent {
            return;
        }
        let Some(d) = leg.dialog.as_mut() else {
            return;
        };
        if d.state() != DialogState::Confirmed {
            return;
        }
        leg.bye_sent = true;
        let mut bye = d.request(Method::Bye);
        if let Some(r) = reason {
            bye.headers
                .push(HeaderName::Other("Reason".into()), r.to_owned());
        }
        d.terminate();
        let target = leg.target;
        let tx = self.tx.send_request(now, bye, target);
        self.calls.track_client(tx, leg_id, Purpose::Bye);
    }

    fn close_media(&mut self, leg_id: LegId) {
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        if leg.media_closed {
            return;
        }
        leg.media_closed = true;
        if leg.local_rtp.is_some() {
            self.events
                .push_back(Event::Media(Command::Close { id: leg.session }));
        } else {
            // Never opened (or the open failed): nothing to close, forget it now.
            self.calls.by_session.remove(&leg.session);
        }
    }

    /// End every call (shutdown): BYE or final answers go out before the sockets close.
    pub fn end_all_calls(&mut self, now: Instant) {
        let keys: Vec<CallKey> = self.calls.calls.keys().copied().collect();
        for k in keys {
            self.end_call(now, k, EndReason::Shutdown, Some(503));
        }
    }

    pub fn active_calls(&self) -> usize {
        self.calls.active()
    }
}

impl Endpoint {
    /// Wall-clock milliseconds for `now`, from the shell's last clock reading.
    pub(super) fn unix_ms(&self, now: Instant) -> i64 {
        let Some((at, ms)) = self.clock else {
            return self.last_unix as i64 * 1000;
        };
        match now.checked_duration_since(at) {
            Some(d) => ms + d.as_millis() as i64,
            None => ms - at.duration_since(now).as_millis() as i64,
        }
    }

    /// A flow's `dial` or `bridge`: ring the target; the outcome comes back as a leg event.
    /// False if there is nothing to ring (an extension with no phone, a bad URI).
    pub(super) fn dial_from_flow(
        &mut self,
        now: Instant,
        key: CallKey,
        target: &crate::ivr::interp::DialSpec,
        ring_timeout: Duration,
        headers: &[(String, String)],
    ) -> bool {
        use crate::ivr::interp::DialSpec;
        let Some(call) = self.calls.calls.get(&key) else {
            return false;
        };
        let a = call.a;
        let Some(a_leg) = self.calls.legs.get(&a) else {
            return false;
        };
        let (Some(incoming), local) = (a_leg.invite.clone(), a_leg.target.local) else {
            return false;
        };
        let caller_session = a_leg.session;
        let (leg_kind, peer) = match target {
            DialSpec::Extension(user) => (LegKind::Agent, user.clone()),
            DialSpec::Number { number, .. } => (LegKind::Outbound, number.clone()),
            DialSpec::Uri(uri) => (LegKind::ThirdParty, uri.clone()),
        };
        let forks = match target {
            DialSpec::Extension(user) => {
                let contacts: Vec<crate::registrar::Binding> = self
                    .registrar
                    .lookup(user, self.last_unix)
                    .into_iter()
                    .cloned()
                    .collect();
                self.make_forks(key, &incoming, &contacts, user, headers)
            }
            DialSpec::Number { number, trunk } => {
                let plan = match self.plan_trunk_call(now, number, trunk.as_deref(), None) {
                    Ok(p) => p,
                    Err(refusal) => {
                        tracing::warn!(call = key.0, %number, %refusal, "the flow's number cannot be dialled");
                        return false;
                    }
                };
                let leg = self.trunk_leg_planned(key, &incoming, &plan);
                if let (Some(l), false) = (leg, headers.is_empty()) {
                    if let Some(inv) = self
                        .calls
                        .legs
                        .get_mut(&l)
                        .and_then(|x| x.out_invite.as_mut())
                    {
                        for (name, value) in headers {
                            inv.headers
                                .push(HeaderName::Other(name.as_str().into()), value.clone());
                        }
                    }
                }
                leg.into_iter().collect()
            }
            DialSpec::Uri(text) => {
                let Ok(uri) = Uri::parse(text) else {
                    tracing::warn!(call = key.0, uri = %text, "bridge target is not a SIP URI");
                    return false;
                };
                let Some(ip) = uri.host.as_ref().and_then(|h| h.ip()) else {
                    tracing::warn!(call = key.0, uri = %text, "bridge target must name an IP address");
                    return false;
                };
                let target = Target {
                    transport: Transport::Udp,
                    addr: SocketAddr::new(ip, uri.port.unwrap_or(5060)),
                    conn: None,
                    local,
                };
                let user = user_of(&uri);
                self.new_outbound(key, caller_session, target, &incoming, uri, &user, headers)
                    .into_iter()
                    .collect()
            }
        };
        if forks.is_empty() {
            return false;
        }
        for f in &forks {
            self.open_leg_record(now, key, *f, leg_kind, peer.clone());
        }
        let deadline = now + ring_timeout;
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.forks = forks;
            c.fork_codes.clear();
            c.ring_deadline = Some(deadline);
        }
        self.calls.arm(deadline, key, TimerKey::Ring);
        true
    }

    /// A flow's dialled leg is over (or never answered): the caller is unbridged and the flow
    /// goes on.
    fn dial_finished(
        &mut self,
        now: Instant,
        key: CallKey,
        outcome: LegOutcome,
        headers: Vec<(String, String)>,
    ) {
        let Some(call) = self.calls.calls.get_mut(&key) else {
            return;
        };
        let had_winner = call.winner.take().is_some();
        call.forks.clear();
        call.fork_codes.clear();
        call.ring_deadline = None;
        let a = call.a;
        if had_winner {
            if let Some(s) = self.calls.legs.get(&a).map(|l| l.session) {
                self.events
                    .push_back(Event::Media(Command::Unbridge { id: s }));
            }
        }
        // The far end hung up: if the flow ends the call at once, it was the far end's doing.
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.cdr.far_end_hung_up = true;
        }
        if had_winner && self.agent_call_over(now, key) {
            // The agent hung up; the flow goes on after its queue node (a survey, say).
            self.flow_event(
                now,
                key,
                FlowEvent::Queue(crate::ivr::interp::QueueOutcome::AgentDone),
            );
        } else {
            self.flow_event(now, key, FlowEvent::Leg { outcome, headers });
        }
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.cdr.far_end_hung_up = false;
        }
    }

    /// The flow is over: end the call the way it says.
    pub(super) fn flow_ended(&mut self, now: Instant, key: CallKey, end: End) {
        use crate::ivr::model::HangupCause;
        let (reason, cause) = match &end {
            End::Hangup(c) => (EndReason::FlowHangup, Some(*c)),
            End::CallerHangup { .. } => (EndReason::CallerHangup, None),
            End::Error(e) => {
                tracing::error!(call = key.0, error = %e, "flow failed");
                (EndReason::FlowError, Some(HangupCause::Unavailable))
            }
        };
        // The flow answered the call, so its cause travels in the BYE (RFC 3326, ITU-T Q.850
        // cause values), where the caller's equipment can show or log it.
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.bye_reason = cause.map(|c| match c {
                HangupCause::Normal => "Q.850;cause=16;text=\"Normal call clearing\"",
                HangupCause::Busy => "Q.850;cause=17;text=\"User busy\"",
                HangupCause::Rejected => "Q.850;cause=21;text=\"Call rejected\"",
                HangupCause::Unavailable => "Q.850;cause=41;text=\"Temporary failure\"",
            });
        }
        self.end_call(now, key, reason, Some(480));
    }

    /// Close the call record: result and missed-call reason from how the call went.
    fn close_record(&mut self, now: Instant, call: &Call, reason: EndReason) {
        let ended = self.unix_ms(now);
        let answered = call.cdr.answered_ms.is_some();
        let in_flow = call.kind == Kind::Flow;
        let missed = match reason {
            EndReason::CallerHangup | EndReason::CallerCancelled if in_flow => {
                // The seed's rule: hanging up in the first seconds, before the flow could route
                // the call, is a route not completed.
                if ended - call.cdr.started_ms < 5_000 {
                    MissedReason::InboundRouteNotCompleted
                } else {
                    MissedReason::HungUpInIvr
                }
            }
            EndReason::FlowHangup => MissedReason::HungUpInIvr,
            // Cut off from outside while in the IVR, or while the other side rang.
            EndReason::Administrative if in_flow => MissedReason::HungUpInIvr,
            EndReason::Administrative => MissedReason::CustomerNoAnswer,
            EndReason::CallerHangup
            | EndReason::CallerCancelled
            | EndReason::CalleeHangup
            | EndReason::NoAnswer
            | EndReason::Unavailable => MissedReason::CustomerNoAnswer,
            EndReason::Busy | EndReason::Declined | EndReason::Rejected(_) => {
                MissedReason::CustomerBusy
            }
            EndReason::MediaTimeout
            | EndReason::NoAck
            | EndReason::MediaFailure
            | EndReason::Shutdown
            | EndReason::FlowError => MissedReason::SystemFailure,
        };
        // A flow call that served the caller (a dialled party answered, or a voicemail was
        // left) is not a missed call, however it ended afterwards.
        let served_by_flow = in_flow
            && (call
                .flow
                .as_ref()
                .is_some_and(|f| f.leg_answered || f.voicemail_left));
        // A caller who never reached an agent missed because of the queue, when there was one.
        let missed = match (reason, call.cdr.queue_miss) {
            (
                EndReason::CallerHangup
                | EndReason::CallerCancelled
                | EndReason::FlowHangup
                | EndReason::Administrative,
                Some(q),
            ) => q,
            _ => missed,
        };
        // A click-to-dial call whose customer (or agent) was never reached says why.
        let missed = match call
            .click
            .as_ref()
            .and_then(|c| c.missed_reason(call.answered))
        {
            Some(m) => m,
            None => missed,
        };
        let (result, missed) = if answered || served_by_flow {
            (CallResult::Answered, None)
        } else {
            (missed.result(), Some(missed))
        };
        let hangup_by = match reason {
            EndReason::CallerHangup | EndReason::CallerCancelled => HangupBy::Caller,
            EndReason::CalleeHangup => HangupBy::Callee,
            EndReason::FlowHangup if call.cdr.far_end_hung_up => HangupBy::Callee,
            _ => HangupBy::System,
        };
        let (trail, inputs, flow, version) = match &call.flow {
            Some(run) => (
                run.interp.trail().iter().map(ToString::to_string).collect(),
                run.inputs.clone(),
                Some(run.flow.clone()),
                Some(run.version.clone()).filter(|v| !v.is_empty()),
            ),
            None => (Vec::new(), Vec::new(), None, None),
        };
        let close = CdrClose {
            ended_at_ms: ended,
            ring_at_ms: call.cdr.ring_ms,
            answered_at_ms: (result == CallResult::Answered)
                .then(|| call.cdr.answered_ms.unwrap_or(ended)),
            result,
            missed_reason: missed,
            ivr_trail: trail,
            inputs,
            flow,
            flow_version: version,
            hangup_by: Some(hangup_by),
            recording_path: call.cdr.recording.as_ref().map(|r| r.0.clone()),
            recording_duration_ms: call.cdr.recording.as_ref().and_then(|r| r.1),
            agent: call.cdr.agent.clone(),
            queue: call.cdr.queue.clone(),
            queue_wait_ms: call
                .cdr
                .queue
                .as_ref()
                .map(|_| call.cdr.queue_wait.as_millis() as i64),
            talk_ms: (call.cdr.talk_ms > 0).then_some(call.cdr.talk_ms),
            wrap_up_ms: call.cdr.wrap_up_ms,
            satisfaction: call
                .flow
                .as_ref()
                .map(|f| f.scores.clone())
                .unwrap_or_default(),
            caller_id: call.cdr.caller_id.clone(),
        };
        self.call_event(
            now,
            &call.cdr.call_id,
            CallEventKind::Hangup,
            serde_json::json!({
                "hangup_by": hangup_by.code(),
                "result": close.result.code(),
                "missed_reason": close.missed_reason.map(|m| m.code()),
                "agent": close.agent,
                "queue": close.queue,
            }),
        );
        self.events.push_back(Event::CdrClose {
            call_id: call.cdr.call_id.clone(),
            close,
        });
    }
}

fn digit_label(d: Digit) -> &'static str {
    const LABELS: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D",
    ];
    LABELS[usize::from(d.code()).min(15)]
}

fn reason_label(r: EndReason) -> &'static str {
    match r {
        EndReason::CallerHangup => "caller_hangup",
        EndReason::CalleeHangup => "callee_hangup",
        EndReason::CallerCancelled => "caller_cancelled",
        EndReason::NoAnswer => "no_answer",
        EndReason::Busy => "busy",
        EndReason::Declined => "declined",
        EndReason::Unavailable => "unavailable",
        EndReason::Rejected(_) => "rejected",
        EndReason::MediaTimeout => "media_timeout",
        EndReason::NoAck => "no_ack",
        EndReason::MediaFailure => "media_failure",
        EndReason::Shutdown => "shutdown",
        EndReason::Administrative => "administrative",
        EndReason::FlowHangup => "flow_hangup",
        EndReason::FlowError => "flow_error",
    }
}
