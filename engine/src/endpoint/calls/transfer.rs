//! Call transfers: blind (REFER, RFC 3515 and RFC 5589 §6), attended (REFER with Replaces,
//! RFC 5589 §7, RFC 3891) and transfers the engine is asked for ([`Endpoint::transfer`]).
//!
//! In every case the caller's leg (leg `a`, where we are the UAS) stays up and is moved to
//! the target; the leg it was talking to (the transferor: an agent's desk phone, any answered
//! outbound leg) leaves the call. Because Switchboard anchors both legs, nothing is asked of
//! the caller's phone: the transfer is a change of bridging inside the B2BUA.
//!
//! **Blind.** The transferor's phone sends REFER in its dialog. We resolve the target first;
//! one we cannot reach at all (an unknown name, an extension with no registered phone, a
//! number with no trunk) gets `202` and then a final NOTIFY with the failure (`SIP/2.0 404 Not
//! Found`, `480`), and the call stays exactly as it was, so the transferor can take the caller
//! back. Otherwise the transferor's leg is unbridged (the ACD hears that the agent's call
//! ended, and the agent goes to wrap-up) and the caller:
//! - rings an extension (its registered phones, or an agent's desk phones) or a number through
//!   a trunk, hearing `ringback` (or `hold`) meanwhile; the new leg has a
//!   [`LegKind::Transfer`] sub-record;
//! - is queued to a skill group (`queue:sales`, or a bare skill-group name);
//! - enters the flow of a service number.
//!
//! The transferor hears `SIP/2.0 100 Trying`, then the final status in NOTIFYs; once the
//! final NOTIFY is answered we send BYE (a phone that hangs up by itself after the `202` is
//! fine too: its dialog is simply over and gets no more NOTIFYs).
//!
//! A target that fails after ringing (busy, no answer, declined) ends the call: the caller
//! gets a BYE, as in Asterisk's blind transfer, where the transferor is already gone and no
//! one is left to take the caller back. The transferor's NOTIFY carries the failure.
//!
//! **The caller leaves its flow.** A transferred caller no longer runs the flow it was in
//! (as a blind transfer out of Asterisk's `Queue()` leaves the dialplan): the flow is frozen
//! and returned to the call only for its record (trail, inputs). A transfer to a service
//! number starts that number's flow. Queue outcomes other than an answer end a call that has
//! no flow to branch on.
//!
//! **Attended.** Agent A talks with caller C (call 1), holds C, calls B from the same phone
//! (call 2, A's phone being its caller), then sends REFER on call 1's dialog with
//! `Refer-To: <sip:B@…?Replaces=call2;to-tag=…;from-tag=…>`. B's leg moves from call 2 into
//! call 1: it gets a fresh RTP session on C's media worker (bridged legs must share one) and a
//! re-INVITE pointing B's phone at it; C is resumed (re-INVITE `sendrecv`) if it was held.
//! A's two legs are hung up (the REFER's leg after its final NOTIFY), call 2's record closes
//! (hung up by its caller, A), and call 1's record gets a `Transfer` sub-record for B. A REFER
//! on call 2's dialog naming call 1 in Replaces (phones do both) is recognised and gives the
//! same result.
use super::*;
use crate::acd::{AgentId, AnswerMode, CallId as AcdCall, QueueId};

/// Media token of the ringback the caller hears while a transfer target rings.
const RINGBACK_TOKEN: u64 = 1 << 40;

/// How long the implicit subscription of a REFER lasts (RFC 3515 §2.4.4); a transfer's final
/// NOTIFY comes well before.
const REFER_EXPIRES: u32 = 120;

/// Where an engine-side transfer sends the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferTarget {
    /// An agent's configured desk phones (or mobile, through its trunk).
    Agent(AgentId),
    /// A skill group's queue.
    Queue(QueueId),
    /// A published flow, by name.
    Flow(String),
    /// A number through the first trunk.
    Number(String),
    /// An account's registered phones.
    Extension(String),
}

/// Why a transfer could not start; the call is left as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("no call with id {call_id}")]
    NoSuchCall { call_id: String },
    #[error("call {call_id} is not answered yet")]
    NotAnswered { call_id: String },
    #[error("call {call_id} is already being transferred")]
    InProgress { call_id: String },
    #[error("no transfer target named {target:?}")]
    UnknownTarget { target: String },
    #[error("transfer target {target:?} cannot be reached now")]
    Unreachable { target: String },
}

/// Transfers in progress; part of [`Calls`].
#[derive(Debug, Default)]
pub(super) struct Transfers {
    /// Calls whose caller rings a transfer target, and the transferor waiting for the result.
    ringing: HashMap<CallKey, Option<LegId>>,
    /// Transferors' legs whose final NOTIFY is out: BYE when it is answered.
    bye_after_notify: HashMap<LegId, ()>,
    /// The `id` of each transferor's REFER (its CSeq), for the NOTIFYs' Event header.
    refer_ids: HashMap<LegId, u32>,
    /// Legs moved by an attended transfer, waiting for their new RTP port to re-offer.
    reoffer: HashMap<LegId, CallKey>,
    /// The flows transferred callers left, given back to the call for its record.
    frozen: HashMap<CallKey, Box<FlowRun>>,
}

/// A target resolved to something we can ring or enter.
#[derive(Debug)]
enum Dest {
    /// Ring these accounts' phones; `peer` names the target in the sub-record.
    Phones {
        peer: String,
        contacts: Vec<crate::registrar::Binding>,
    },
    Trunk {
        number: String,
        trunk: Option<String>,
    },
    Queue(QueueId),
    Flow {
        number: String,
        flow: Arc<Flow>,
    },
}

/// A target that cannot be reached, with the status the transferor's NOTIFY carries.
#[derive(Debug)]
struct Unreachable {
    code: u16,
    error: TransferError,
}

/// The parts of a `Replaces` header (RFC 3891 §6.1).
#[derive(Debug, PartialEq, Eq)]
struct Replaces {
    call_id: String,
    to_tag: String,
    from_tag: String,
}

impl Replaces {
    fn parse(value: &str) -> Option<Replaces> {
        let mut parts = value.split(';');
        let call_id = parts.next()?.trim().to_owned();
        let (mut to_tag, mut from_tag) = (None, None);
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "to-tag" => to_tag = Some(v.trim().to_owned()),
                "from-tag" => from_tag = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        if call_id.is_empty() {
            return None;
        }
        Some(Replaces {
            call_id,
            to_tag: to_tag?,
            from_tag: from_tag?,
        })
    }
}

/// `%XX` escapes decoded (URI headers carry `;` and `=` escaped); `None` if not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The `Replaces` header embedded in a Refer-To URI (`?Replaces=…&…`), if any.
fn replaces_of(uri: &Uri) -> Option<Option<Replaces>> {
    let headers = uri.headers.as_deref()?;
    let value = headers.split('&').find_map(|h| {
        let (name, value) = h.split_once('=')?;
        name.eq_ignore_ascii_case("replaces").then_some(value)
    })?;
    Some(percent_decode(value).and_then(|v| Replaces::parse(&v)))
}

/// The reason phrase of a status a NOTIFY's sipfrag carries.
fn status_text(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Failed",
    }
}

impl Endpoint {
    // -----------------------------------------------------------------------------------------
    // REFER
    // -----------------------------------------------------------------------------------------

    /// A REFER inside one of our dialogs.
    pub(super) fn on_refer(&mut self, now: Instant, leg_id: LegId, id: ServerTxId, req: &Request) {
        let refer_to = req.headers.get_str(&HeaderName::ReferTo).map(str::to_owned);
        let uri = refer_to.as_deref().and_then(|v| {
            NameAddr::parse(v.trim())
                .map(|n| n.uri)
                .or_else(|_| Uri::parse(v.trim()))
                .ok()
        });
        let Some(uri) = uri else {
            let reason = if refer_to.is_none() {
                "Bad Request (no Refer-To)"
            } else {
                "Bad Request (malformed Refer-To)"
            };
            return self.refer_reply(now, leg_id, id, req, 400, Some(reason));
        };
        let key = self
            .calls
            .legs
            .get(&leg_id)
            .and_then(|l| l.call)
            .filter(|k| self.calls.calls.contains_key(k));
        let Some(key) = key else {
            // The leg has left its call (a transfer is already under way, say).
            return self.refer_reply(now, leg_id, id, req, 403, None);
        };
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        match replaces_of(&uri) {
            Some(Some(replaces)) => {
                return self.attended_refer(now, key, leg_id, id, req, seq, &replaces)
            }
            Some(None) => {
                return self.refer_reply(
                    now,
                    leg_id,
                    id,
                    req,
                    400,
                    Some("Bad Request (malformed Replaces)"),
                )
            }
            None => {}
        }
        let call = &self.calls.calls[&key];
        if call.winner != Some(leg_id) {
            // Only the answering side transfers the caller (the caller's own phone would
            // transfer the party it called, which this B2BUA does not model).
            return self.refer_reply(now, leg_id, id, req, 403, None);
        }
        if self.calls.transfers.ringing.contains_key(&key) {
            return self.refer_reply(now, leg_id, id, req, 491, None);
        }
        // `sip:queue:sales@…` parses as user `queue`, password `sales`.
        let target = match &uri.password {
            Some(p) => format!("{}:{p}", user_of(&uri)),
            None => user_of(&uri),
        };
        self.refer_reply(now, leg_id, id, req, 202, None);
        self.calls.transfers.refer_ids.insert(leg_id, seq);
        let dest = match self.resolve_refer_target(&target) {
            Ok(d) => d,
            Err(u) => {
                tracing::info!(call = key.0, %target, error = %u.error, "transfer target unreachable; call unchanged");
                self.notify_refer(now, leg_id, u.code, true);
                return;
            }
        };
        tracing::info!(call = key.0, %target, "blind transfer");
        metrics::counter!("transfers_total", "kind" => "blind").increment(1);
        self.notify_refer(now, leg_id, 100, false);
        self.detach_other(now, key, leg_id, HangupBy::Callee, false);
        self.route_caller(now, key, dest, Some(leg_id));
    }

    fn refer_reply(
        &mut self,
        now: Instant,
        leg_id: LegId,
        id: ServerTxId,
        req: &Request,
        code: u16,
        reason: Option<&str>,
    ) {
        let Some(d) = self.calls.legs.get(&leg_id).and_then(|l| l.dialog.as_ref()) else {
            return;
        };
        let mut resp = d.response_to(req, code);
        if let Some(r) = reason {
            resp = resp.with_reason(r.to_owned());
        }
        if code == 202 {
            resp.headers.push(HeaderName::Allow, super::super::ALLOW);
        }
        self.reply_in_dialog(now, id, resp);
    }

    /// The transfer target a REFER names: an account, a skill group (`queue:NAME` or its bare
    /// name), a service number, or else a number through the first trunk.
    fn resolve_refer_target(&self, target: &str) -> Result<Dest, Unreachable> {
        let unknown = || Unreachable {
            code: 404,
            error: TransferError::UnknownTarget {
                target: target.to_owned(),
            },
        };
        if target.is_empty() {
            return Err(unknown());
        }
        if let Some(q) = target.strip_prefix("queue:") {
            return self.resolve(&TransferTarget::Queue(QueueId::from(q)));
        }
        if self.accounts.contains_key(target) {
            return self.resolve(&TransferTarget::Extension(target.to_owned()));
        }
        if self.acd.acd.queue(&QueueId::from(target)).is_some() {
            return self.resolve(&TransferTarget::Queue(QueueId::from(target)));
        }
        if let Some(n) = self
            .call_cfg
            .numbers
            .iter()
            .find(|n| n.number == target && n.enabled)
        {
            return match self.flows.0.get(&n.flow) {
                Some(flow) => Ok(Dest::Flow {
                    number: target.to_owned(),
                    flow: flow.clone(),
                }),
                None => Err(unknown()),
            };
        }
        let dialable = target
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'));
        if dialable && !self.call_cfg.trunks.is_empty() {
            return self.resolve(&TransferTarget::Number(target.to_owned()));
        }
        Err(unknown())
    }

    fn resolve(&self, target: &TransferTarget) -> Result<Dest, Unreachable> {
        let name = match target {
            TransferTarget::Agent(a) => a.0.clone(),
            TransferTarget::Queue(q) => q.0.clone(),
            TransferTarget::Flow(f) | TransferTarget::Number(f) | TransferTarget::Extension(f) => {
                f.clone()
            }
        };
        let unknown = || Unreachable {
            code: 404,
            error: TransferError::UnknownTarget {
                target: name.clone(),
            },
        };
        let unreachable = || Unreachable {
            code: 480,
            error: TransferError::Unreachable {
                target: name.clone(),
            },
        };
        let phones = |accounts: &[String]| -> Vec<crate::registrar::Binding> {
            accounts
                .iter()
                .flat_map(|a| {
                    self.registrar
                        .lookup(a, self.last_unix)
                        .into_iter()
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        match target {
            TransferTarget::Extension(user) => {
                if !self.accounts.contains_key(user) {
                    return Err(unknown());
                }
                let contacts = phones(std::slice::from_ref(user));
                if contacts.is_empty() {
                    return Err(unreachable());
                }
                Ok(Dest::Phones {
                    peer: user.clone(),
                    contacts,
                })
            }
            TransferTarget::Agent(agent) => {
                let Some(a) = self.acd.acd.agent(agent) else {
                    return Err(unknown());
                };
                match &a.config().answer_mode {
                    AnswerMode::DeskPhone { accounts } => {
                        let contacts = phones(accounts);
                        if contacts.is_empty() {
                            return Err(unreachable());
                        }
                        Ok(Dest::Phones {
                            peer: agent.0.clone(),
                            contacts,
                        })
                    }
                    AnswerMode::Mobile { number } if !self.call_cfg.trunks.is_empty() => {
                        Ok(Dest::Trunk {
                            number: number.clone(),
                            trunk: None,
                        })
                    }
                    _ => Err(unreachable()),
                }
            }
            TransferTarget::Queue(q) => match self.acd.acd.queue(q) {
                Some(_) => Ok(Dest::Queue(q.clone())),
                None => Err(unknown()),
            },
            TransferTarget::Flow(name) => match self.flows.0.get(name) {
                Some(flow) => Ok(Dest::Flow {
                    number: name.clone(),
                    flow: flow.clone(),
                }),
                None => Err(unknown()),
            },
            TransferTarget::Number(number) => {
                if self.call_cfg.trunks.is_empty() || number.is_empty() {
                    return Err(unreachable());
                }
                Ok(Dest::Trunk {
                    number: number.clone(),
                    trunk: None,
                })
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Moving the caller
    // -----------------------------------------------------------------------------------------

    /// Take the leg the caller talks to (or the legs ringing for it) out of the call. The
    /// transferor's own leg is left up for its NOTIFYs; any other is hung up.
    fn detach_other(
        &mut self,
        now: Instant,
        key: CallKey,
        transferor: LegId,
        by: HangupBy,
        hang_up: bool,
    ) {
        let Some(call) = self.calls.calls.get_mut(&key) else {
            return;
        };
        let winner = call.winner.take();
        // After an answer the winner stays among the forks; only the others still ring.
        let forks: Vec<LegId> = std::mem::take(&mut call.forks)
            .into_iter()
            .filter(|f| Some(*f) != winner)
            .collect();
        call.ring_deadline = None;
        let a = call.a;
        // The caller leaves its flow; the run is kept for the record.
        if let Some(run) = call.flow.take() {
            self.calls.transfers.frozen.entry(key).or_insert(run);
        }
        call.flow_def = None;
        if call.kind == Kind::Flow {
            call.kind = Kind::Bridge;
        }
        for f in forks {
            self.cancel_fork(now, f);
        }
        // A caller still waiting in a queue leaves it.
        let waiting = self
            .calls
            .calls
            .get(&key)
            .and_then(|c| c.queue.as_ref())
            .is_some_and(|q| q.waiting);
        if waiting {
            if let Some(q) = self
                .calls
                .calls
                .get_mut(&key)
                .and_then(|c| c.queue.as_mut())
            {
                q.waiting = false;
            }
            if let Err(e) = self.acd.acd.caller_left(AcdCall(key.0), now) {
                tracing::debug!(call = key.0, error = %e, "queue visit already over");
            }
            self.acd_pump(now);
        }
        let Some(w) = winner else { return };
        if let Some(s) = self.calls.legs.get(&a).map(|l| l.session) {
            self.events
                .push_back(Event::Media(Command::Unbridge { id: s }));
        }
        // The agent's call is over: the ACD puts the agent in wrap-up.
        self.agent_call_over(now, key);
        self.finish_leg_record(
            now,
            w,
            if w == transferor {
                by
            } else {
                HangupBy::System
            },
        );
        if let Some(l) = self.calls.legs.get_mut(&w) {
            l.call = None;
        }
        self.close_media(w);
        if hang_up || w != transferor {
            self.hangup_leg(now, w, None);
        }
    }

    /// Send the caller to `dest`; `transferor` hears how it goes.
    fn route_caller(&mut self, now: Instant, key: CallKey, dest: Dest, transferor: Option<LegId>) {
        let Some(call) = self.calls.calls.get(&key) else {
            return;
        };
        let a = call.a;
        let Some(incoming) = self.calls.legs.get(&a).and_then(|l| l.invite.clone()) else {
            return;
        };
        let (forks, peer) = match dest {
            Dest::Phones { peer, contacts } => {
                (self.make_forks(key, &incoming, &contacts, &peer, &[]), peer)
            }
            Dest::Trunk { number, trunk } => (
                self.trunk_leg(now, key, &incoming, &number, trunk.as_deref())
                    .into_iter()
                    .collect(),
                number,
            ),
            Dest::Queue(queue) => return self.transfer_to_queue(now, key, queue, transferor),
            Dest::Flow { number, flow } => {
                if let Some(t) = transferor {
                    self.notify_refer(now, t, 200, true);
                }
                let (caller, _) = self.caller_and_callee(key);
                if let Some(c) = self.calls.calls.get_mut(&key) {
                    c.kind = Kind::Flow;
                }
                let info = CallInfo {
                    caller,
                    called: number,
                    vars: Default::default(),
                };
                self.start_flow(now, key, flow, info);
                return;
            }
        };
        if forks.is_empty() {
            if let Some(t) = transferor {
                self.notify_refer(now, t, 480, true);
            }
            self.end_call(now, key, EndReason::Unavailable, None);
            return;
        }
        for f in &forks {
            self.open_leg_record(now, key, *f, LegKind::Transfer, peer.clone());
        }
        let deadline = now + self.call_cfg.ring_timeout;
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.forks = forks;
            c.fork_codes.clear();
            c.ring_deadline = Some(deadline);
        }
        self.calls.arm(deadline, key, TimerKey::Ring);
        self.calls.transfers.ringing.insert(key, transferor);
        // The caller hears ringback (or the hold music) while the target rings.
        let session = self.calls.legs[&a].session;
        let prompt = self
            .call_cfg
            .prompts
            .get("ringback")
            .or_else(|| self.call_cfg.prompts.get("hold"));
        self.events.push_back(Event::Media(match prompt {
            Some(p) => Command::Play {
                id: session,
                prompts: vec![p],
                repeat: true,
                token: RINGBACK_TOKEN,
            },
            None => Command::Silence { id: session },
        }));
    }

    fn caller_and_callee(&self, key: CallKey) -> (String, String) {
        self.calls
            .calls
            .get(&key)
            .map(|c| (c.caller.clone(), c.callee.clone()))
            .unwrap_or_default()
    }

    fn transfer_to_queue(
        &mut self,
        now: Instant,
        key: CallKey,
        queue: QueueId,
        transferor: Option<LegId>,
    ) {
        let max_wait = self
            .acd
            .acd
            .queue(&queue)
            .map(|q| q.config().max_wait)
            .unwrap_or(Duration::from_secs(300));
        let refused = self.enqueue_call(now, key, &queue.0, 0, max_wait, None, None, None);
        if let Some(t) = transferor {
            let code = if refused.is_some() { 480 } else { 200 };
            self.notify_refer(now, t, code, true);
        }
        match refused {
            Some(outcome) => {
                tracing::info!(call = key.0, %queue, ?outcome, "transfer to a queue refused");
                self.queue_outcome_without_flow(now, key);
            }
            None => self.acd_pump(now),
        }
    }

    /// A queue outcome (timeout, no agents, full) for a call with no flow to branch on: the
    /// call ends, with the queue's missed-call reason. True if the call had no flow.
    pub(super) fn queue_outcome_without_flow(&mut self, now: Instant, key: CallKey) -> bool {
        if !self.calls.calls.contains_key(&key) || self.calls.flow_mut(key).is_some() {
            return false;
        }
        self.end_call(now, key, EndReason::FlowHangup, None);
        true
    }

    // -----------------------------------------------------------------------------------------
    // Hooks from the call code
    // -----------------------------------------------------------------------------------------

    /// A leg ringing for a transfer answered (before it is bridged): the caller stops hearing
    /// ringback and the transferor hears `200 OK`.
    pub(super) fn transfer_leg_answered(&mut self, now: Instant, key: CallKey) {
        let Some(transferor) = self.calls.transfers.ringing.remove(&key) else {
            return;
        };
        if let Some(s) = self.calls.caller_session(key) {
            self.events
                .push_back(Event::Media(Command::Silence { id: s }));
        }
        if let Some(t) = transferor {
            self.notify_refer(now, t, 200, true);
        }
    }

    /// A leg ringing for a transfer failed. True if the call was being transferred (handled
    /// here): when the last leg fails, the call ends with the target's failure.
    pub(super) fn transfer_fork_failed(
        &mut self,
        now: Instant,
        key: CallKey,
        leg_id: LegId,
        code: u16,
    ) -> bool {
        if !self.calls.transfers.ringing.contains_key(&key) {
            return false;
        }
        self.leg_failed_with(leg_id, code);
        self.finish_leg_record(now, leg_id, HangupBy::Callee);
        if let Some(l) = self.calls.legs.get_mut(&leg_id) {
            l.call = None;
        }
        self.close_media(leg_id);
        let Some(call) = self.calls.calls.get_mut(&key) else {
            return true;
        };
        call.forks.retain(|f| *f != leg_id);
        if code != 487 {
            call.fork_codes.push(code);
        }
        if !call.forks.is_empty() {
            return true;
        }
        let codes = call.fork_codes.clone();
        let (notify, reason) = if codes.iter().any(|c| matches!(c, 486 | 600)) {
            (486, EndReason::Busy)
        } else if codes.contains(&603) {
            (603, EndReason::Declined)
        } else {
            (480, EndReason::Unavailable)
        };
        self.transfer_failed(now, key, notify, reason);
        true
    }

    /// The transfer target did not answer in time. True if the call was being transferred.
    pub(super) fn transfer_ring_timeout(
        &mut self,
        now: Instant,
        key: CallKey,
        at: Instant,
    ) -> bool {
        let due = self
            .calls
            .calls
            .get(&key)
            .is_some_and(|c| c.ring_deadline == Some(at) && c.winner.is_none());
        if !due || !self.calls.transfers.ringing.contains_key(&key) {
            return false;
        }
        let forks = self
            .calls
            .calls
            .get_mut(&key)
            .map(|c| std::mem::take(&mut c.forks))
            .unwrap_or_default();
        for f in forks {
            self.leg_miss(f, crate::cdr::MissedReason::CustomerNoAnswer);
            self.cancel_fork(now, f);
        }
        self.transfer_failed(now, key, 480, EndReason::NoAnswer);
        true
    }

    fn transfer_failed(&mut self, now: Instant, key: CallKey, code: u16, reason: EndReason) {
        let transferor = self.calls.transfers.ringing.remove(&key).flatten();
        tracing::info!(
            call = key.0,
            code,
            "transfer target failed; the caller is hung up"
        );
        if let Some(t) = transferor {
            self.notify_refer(now, t, code, true);
        }
        self.end_call(now, key, reason, None);
    }

    /// The call is ending: a transferor still waiting hears `487`, and a frozen flow returns
    /// to the call for its record.
    pub(super) fn transfer_before_end(&mut self, now: Instant, key: CallKey) {
        if let Some(Some(t)) = self.calls.transfers.ringing.remove(&key) {
            self.notify_refer(now, t, 487, true);
        }
        if let Some(run) = self.calls.transfers.frozen.remove(&key) {
            if let Some(c) = self.calls.calls.get_mut(&key) {
                if c.flow.is_none() {
                    c.flow = Some(run);
                }
            }
        }
    }

    /// A NOTIFY of ours was answered (or timed out): after the final one, the transferor's
    /// leg is hung up.
    pub(super) fn transfer_notify_answered(&mut self, now: Instant, leg_id: LegId, code: u16) {
        if code < 200 {
            return;
        }
        if self
            .calls
            .transfers
            .bye_after_notify
            .remove(&leg_id)
            .is_some()
        {
            self.calls.transfers.refer_ids.remove(&leg_id);
            self.hangup_leg(now, leg_id, None);
        }
    }

    /// NOTIFY the transferor of the transfer's progress (RFC 3515 §2.4.5): a `message/sipfrag`
    /// status line; the final one ends the implicit subscription.
    fn notify_refer(&mut self, now: Instant, leg_id: LegId, code: u16, last: bool) {
        let refer_id = self.calls.transfers.refer_ids.get(&leg_id).copied();
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        let sendable = !leg.bye_sent
            && leg
                .dialog
                .as_ref()
                .is_some_and(|d| d.state() == DialogState::Confirmed);
        if !sendable {
            // The transferor hung up already: nobody to tell.
            self.calls.transfers.refer_ids.remove(&leg_id);
            return;
        }
        let contact = leg.contact.to_string();
        let d = leg.dialog.as_mut().expect("checked");
        let mut notify = d.request(Method::Notify);
        let h = &mut notify.headers;
        h.push(
            HeaderName::Event,
            match refer_id {
                Some(id) => format!("refer;id={id}"),
                None => "refer".to_owned(),
            },
        );
        h.push(
            HeaderName::Other("Subscription-State".into()),
            if last {
                "terminated;reason=noresource".to_owned()
            } else {
                format!("active;expires={REFER_EXPIRES}")
            },
        );
        h.push(HeaderName::Contact, contact);
        h.push(HeaderName::ContentType, "message/sipfrag;version=2.0");
        notify.body = Bytes::from(format!("SIP/2.0 {code} {}\r\n", status_text(code)));
        let target = leg.target;
        let tx = self.tx.send_request(now, notify, target);
        self.calls.track_client(tx, leg_id, Purpose::Notify);
        // A transferor that has left the call is hung up once it has heard the outcome; one
        // whose REFER failed at once keeps its call.
        let detached = self
            .calls
            .legs
            .get(&leg_id)
            .is_some_and(|l| l.call.is_none());
        if last && detached {
            self.calls.transfers.bye_after_notify.insert(leg_id, ());
        } else if last {
            self.calls.transfers.refer_ids.remove(&leg_id);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Attended transfer
    // -----------------------------------------------------------------------------------------

    /// A REFER whose Refer-To replaces a dialog: connect the two parties A was talking to.
    #[allow(clippy::too_many_arguments)]
    fn attended_refer(
        &mut self,
        now: Instant,
        key: CallKey,
        leg_id: LegId,
        id: ServerTxId,
        req: &Request,
        seq: u32,
        replaces: &Replaces,
    ) {
        // The replaced dialog is ours with A's phone; its tags may be written from either
        // side's point of view.
        let found = [
            (replaces.to_tag.as_str(), replaces.from_tag.as_str()),
            (replaces.from_tag.as_str(), replaces.to_tag.as_str()),
        ]
        .into_iter()
        .find_map(|(local, remote)| {
            let did = DialogId {
                call_id: replaces.call_id.as_str().into(),
                local_tag: local.into(),
                remote_tag: remote.into(),
            };
            self.calls.by_dialog.get(&did).copied()
        });
        let Some(other_leg) = found else {
            self.refer_reply(now, leg_id, id, req, 202, None);
            self.calls.transfers.refer_ids.insert(leg_id, seq);
            self.notify_refer(now, leg_id, 481, true);
            return;
        };
        let other_key = self
            .calls
            .legs
            .get(&other_leg)
            .and_then(|l| l.call)
            .filter(|k| self.calls.calls.contains_key(k));
        // Call 1: the caller C, answered by A (`x1`). Call 2: A's phone calling B (`a2`).
        let roles = other_key.and_then(|k2| {
            let (c1, c2) = (&self.calls.calls[&key], &self.calls.calls[&k2]);
            if k2 == key {
                None
            } else if c1.winner == Some(leg_id) && c2.a == other_leg && c2.winner.is_some() {
                Some((key, leg_id, k2))
            } else if c1.a == leg_id && c2.winner == Some(other_leg) && c1.winner.is_some() {
                // The REFER came on call 2's dialog, naming call 1.
                Some((k2, other_leg, key))
            } else {
                None
            }
        });
        self.refer_reply(now, leg_id, id, req, 202, None);
        self.calls.transfers.refer_ids.insert(leg_id, seq);
        let Some((k1, x1, k2)) = roles else {
            tracing::info!(
                call = key.0,
                "attended transfer between calls we cannot join"
            );
            self.notify_refer(now, leg_id, 403, true);
            return;
        };
        if self.calls.transfers.ringing.contains_key(&k1) {
            self.notify_refer(now, leg_id, 491, true);
            return;
        }
        tracing::info!(call = k1.0, other = k2.0, "attended transfer");
        metrics::counter!("transfers_total", "kind" => "attended").increment(1);
        let (a2, b) = {
            let c2 = &self.calls.calls[&k2];
            (c2.a, c2.winner.expect("checked"))
        };
        let b_peer = self.calls.calls[&k2].callee.clone();
        // B leaves call 2: its sub-record there ends, A's phone is unbridged.
        if let Some(s) = self.calls.legs.get(&a2).map(|l| l.session) {
            self.events
                .push_back(Event::Media(Command::Unbridge { id: s }));
        }
        // The leg lives on in call 1: its trunk channel stays taken (until it really ends).
        self.close_leg_record(now, b, HangupBy::System);
        if let Some(c2) = self.calls.calls.get_mut(&k2) {
            c2.winner = None;
            c2.forks.retain(|f| *f != b);
        }
        // A leaves call 1.
        self.detach_other(now, k1, x1, HangupBy::Callee, false);
        // B joins call 1.
        let c_session = self.calls.caller_session(k1);
        if let Some(l) = self.calls.legs.get_mut(&b) {
            l.call = Some(k1);
            l.agent = None;
        }
        let at = self.unix_ms(now);
        if let Some(c1) = self.calls.calls.get_mut(&k1) {
            c1.winner = Some(b);
            c1.forks = vec![b];
            c1.cdr.answered_ms.get_or_insert(at);
        }
        self.open_leg_record(now, k1, b, LegKind::Transfer, b_peer);
        self.leg_answered(now, b);
        // B's media moves to the caller's worker: a fresh session, re-offered to B's phone.
        let new_session = SessionId(self.calls.next());
        if let Some(l) = self.calls.legs.get_mut(&b) {
            let old = std::mem::replace(&mut l.session, new_session);
            l.local_rtp = None;
            l.media_closed = false;
            self.calls.by_session.remove(&old);
            self.events
                .push_back(Event::Media(Command::Close { id: old }));
        }
        self.calls.by_session.insert(new_session, b);
        self.calls.transfers.reoffer.insert(b, k1);
        self.events.push_back(Event::OpenMedia {
            id: new_session,
            near: c_session,
        });
        // C was most likely put on hold by A: resume.
        if let Some(c) = self.calls.calls.get(&k1).map(|c| c.a) {
            let held = self
                .calls
                .legs
                .get(&c)
                .and_then(|l| l.negotiated.as_ref())
                .is_some_and(|n| n.direction != Direction::SendRecv);
            if held {
                self.reoffer(now, c);
            }
        }
        // A's phone: the REFER's leg hears 200, then BYE; its other leg is hung up.
        self.notify_refer(now, leg_id, 200, true);
        self.end_call(now, k2, EndReason::CallerHangup, None);
        if leg_id != x1 {
            self.hangup_leg(now, x1, None);
        }
    }

    /// A moved leg's new RTP port is bound: offer it to the leg's phone and bridge it with
    /// the caller.
    pub(super) fn transfer_media_ready(&mut self, now: Instant, leg_id: LegId) {
        let Some(key) = self.calls.transfers.reoffer.remove(&leg_id) else {
            return;
        };
        self.reoffer(now, leg_id);
        let b = self.calls.legs.get(&leg_id).map(|l| l.session);
        if let (Some(a), Some(b)) = (self.calls.caller_session(key), b) {
            self.events
                .push_back(Event::Media(Command::Bridge { a, b }));
        }
    }

    /// A re-INVITE offering `sendrecv` from the leg's current port; the answer is taken by the
    /// call code's re-INVITE handling.
    fn reoffer(&mut self, now: Instant, leg_id: LegId) {
        let mut caps = self.call_cfg.capabilities.clone();
        let addr = self.call_cfg.media_address;
        let Some(l) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        let busy = l.reinvite_out.is_some()
            || l.dialog
                .as_ref()
                .is_none_or(|d| d.state() != DialogState::Confirmed || d.invite_pending());
        let Some(rtp) = l.local_rtp.filter(|_| !busy) else {
            tracing::debug!(leg = leg_id.0, "re-offer skipped: the leg is not ready");
            return;
        };
        if let Some(n) = &l.negotiated {
            caps.codecs.retain(|c| *c != n.codec.codec);
            caps.codecs.insert(0, n.codec.codec);
        }
        let ours = sdp::offer(&caps, addr, rtp.port(), Direction::SendRecv, &mut l.sdp);
        let mut reinvite = l.dialog.as_mut().expect("checked").request(Method::Invite);
        reinvite
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        reinvite.body = Bytes::from(ours.to_string());
        l.our_offer = Some(ours);
        let target = l.target;
        let tx = self.tx.send_request(now, reinvite, target);
        if let Some(l) = self.calls.legs.get_mut(&leg_id) {
            l.reinvite_out = Some(tx);
        }
        self.calls.track_client(tx, leg_id, Purpose::Reinvite);
    }

    // -----------------------------------------------------------------------------------------
    // Engine-side transfer
    // -----------------------------------------------------------------------------------------

    /// Move the caller of the call whose record id is `call_id` to `target`; the leg it talks
    /// to (or the legs ringing for it, or its queue) is let go. The caller leaves its flow,
    /// except to enter the target flow.
    pub fn transfer(
        &mut self,
        now: Instant,
        call_id: &str,
        target: TransferTarget,
    ) -> Result<(), TransferError> {
        let key = self
            .calls
            .calls
            .iter()
            .find(|(_, c)| c.cdr.call_id == call_id)
            .map(|(k, _)| *k)
            .ok_or_else(|| TransferError::NoSuchCall {
                call_id: call_id.to_owned(),
            })?;
        let call = &self.calls.calls[&key];
        if !call.answered {
            return Err(TransferError::NotAnswered {
                call_id: call_id.to_owned(),
            });
        }
        if self.calls.transfers.ringing.contains_key(&key) {
            return Err(TransferError::InProgress {
                call_id: call_id.to_owned(),
            });
        }
        let a = call.a;
        let dest = self.resolve(&target).map_err(|u| u.error)?;
        tracing::info!(call = key.0, ?target, "transfer by the engine");
        metrics::counter!("transfers_total", "kind" => "engine").increment(1);
        self.detach_other(now, key, a, HangupBy::System, true);
        self.route_caller(now, key, dest, None);
        self.drain_tx_events(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_in_a_refer_to_uri_is_decoded() {
        let uri = Uri::parse(
            "sip:1003@switchboard?Replaces=abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1&Require=replaces",
        )
        .unwrap();
        assert_eq!(
            replaces_of(&uri),
            Some(Some(Replaces {
                call_id: "abc@host".into(),
                to_tag: "t1".into(),
                from_tag: "f1".into(),
            }))
        );
        let plain = Uri::parse("sip:1003@switchboard").unwrap();
        assert_eq!(replaces_of(&plain), None);
    }

    #[test]
    fn malformed_replaces_is_refused_not_guessed() {
        for bad in [
            "Replaces=abc",
            "Replaces=%3Bto-tag%3Dx%3Bfrom-tag%3Dy",
            "Replaces=a%3Bto-tag%3Dx",
            "Replaces=%C3%3Bto-tag%3Dx%3Bfrom-tag%3Dy",
        ] {
            let uri = Uri::parse(&format!("sip:1003@switchboard?{bad}")).unwrap();
            assert_eq!(replaces_of(&uri), Some(None), "{bad}");
        }
    }

    #[test]
    fn percent_decoding_leaves_stray_percent_signs() {
        assert_eq!(percent_decode("a%3Bb%").as_deref(), Some("a;b%"));
        assert_eq!(percent_decode("%4").as_deref(), Some("%4"));
        assert_eq!(percent_decode("%C3"), None);
    }
}
