//! The SIP endpoint: the sans-IO core that turns received bytes into answers.
//!
//! It owns the transaction layer, the registrar, the digest verifier and the lock-out table,
//! and decides what every request gets (RFC 3261 §8.2 order: method → URI scheme → Require →
//! content → authentication → the method's own processing). It never touches a socket or a
//! clock: the shell passes `now` (monotonic, for transaction timers and lock-out windows) and
//! `unix` (wall-clock seconds, for nonces and binding expiry) with every input.
//!
//! ```text
//! shell                              Endpoint
//!   handle_message(now, unix, from, bytes) ─▶ parse → stamp Via → transactions → decide
//!   handle_persisted(now, token, ok)       ─▶ the 200 OK of a REGISTER leaves only now
//!   handle_timeout(now, unix)              ─▶ timers A…K, expiry, pruning
//!   poll_transmit() ◀─ bytes for a socket     poll_event() ◀─ Persist { token, changes }
//!   poll_timeout()  ◀─ next wake-up
//! ```
use crate::auth::{
    AccountSecret, Admission, Credentials, DigestConfig, Lockout, LockoutConfig, ParseError,
    ServerSecret, Verdict, Verifier,
};
use crate::registrar::{Binding, Change, RegisterError, Registrar, RegistrarConfig, Source};
use crate::sip::msg::{
    self, Framing, HeaderName, Headers, Message, Method, Request, Response, Scheme,
};
use crate::sip::transaction::{Incoming, ServerTxId, TimerConfig, TransactionLayer, TxEvent};
use crate::sip::transport::{ConnId, Target, Transmit, Transport};
use bytes::Bytes;
pub use calls::{
    check_dtmf_duration, parse_dtmf, AgentControl, AgentSettings, CallControlError, CallSettings,
    ClickError, ClickOrder, ClickTarget, ClickToDial, DtmfTarget, EndReason, LiveCall, NoSuchCall,
    NumberRoute, QueueSettings, TestLineSettings, TransferError, TransferTarget, TrunkRoute,
    MAX_DTMF_DIGITS, MAX_DTMF_DURATION, MIN_DTMF_DURATION,
};
pub use flows::{FlowSet, HttpRequest};
use ipnet::IpNet;
use switchboard_media::control::{Command, SessionId};

#[cfg(test)]
mod call_tests;
mod calls;
#[cfg(test)]
mod click_tests;
mod flows;
#[cfg(test)]
mod test_net;
#[cfg(test)]
mod transfer_tests;
mod trunks;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The methods Switchboard answers. Later capabilities add to it.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, REFER";
/// Option tags we support (none yet: an unknown `Require` gets 420).
const SUPPORTED: &[&str] = &[];
/// How often expired bindings, nonces and lock-out entries are swept.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Everything the endpoint needs, already validated (the shell builds it from `Config`).
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// The `Server` header value; `None` sends none.
    pub user_agent: Option<String>,
    pub timers: TimerConfig,
    pub registrar: RegistrarConfig,
    pub digest: DigestConfig,
    pub lockout: LockoutConfig,
    /// Sources that skip digest authentication (trunks).
    pub trusted: Vec<IpNet>,
    /// SIP accounts: user → digest secret.
    pub accounts: Vec<(String, AccountSecret)>,
    pub calls: CallSettings,
}

/// How a message reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub transport: Transport,
    /// The listener it arrived on.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub conn: Option<ConnId>,
}

/// Something the shell must do for the core.
#[derive(Debug)]
pub enum Event {
    /// Make these registrar changes durable, then call [`Endpoint::handle_persisted`].
    Persist {
        token: PersistToken,
        changes: Vec<Change>,
    },
    /// Open an RTP session (bind a port pair) — on the worker of `near` if given — then call
    /// [`Endpoint::handle_media_opened`].
    OpenMedia {
        id: SessionId,
        near: Option<SessionId>,
    },
    /// A command for the media worker that owns the session.
    Media(Command),
    /// An HTTP request for a call's flow; answer with [`Endpoint::handle_http`].
    Http {
        call: u64,
        token: u64,
        request: HttpRequest,
    },
    /// Insert a call record (the call has arrived).
    CdrOpen(crate::cdr::CdrOpen),
    /// Complete a call record (the call has ended).
    CdrClose {
        call_id: String,
        close: crate::cdr::CdrClose,
    },
    /// Insert or update a sub-record (a leg); written when the leg starts and again when it
    /// ends, always after its main record's [`Event::CdrOpen`].
    CdrLeg(crate::cdr::CdrLeg),
    /// A call event for the customer's systems (webhooks), in the order they happened.
    CallEvent(crate::events::CallEvent),
    /// An agent's or a queue's change, in the order it happened.
    Acd(crate::events::AcdEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PersistToken(u64);

pub struct Endpoint {
    user_agent: Option<Bytes>,
    trusted: Vec<IpNet>,
    accounts: HashMap<String, AccountSecret>,
    tx: TransactionLayer,
    registrar: Registrar,
    verifier: Verifier,
    /// `None` when lock-out is turned off (`max_failures: 0`): then nothing is tracked at all.
    lockout: Option<Lockout>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// REGISTERs waiting for the store: the transaction, its 200, and the account's bindings
    /// before the change (put back if the store fails, so memory never holds what the store
    /// does not).
    pending: HashMap<PersistToken, Pending>,
    next_token: u64,
    next_housekeeping: Option<Instant>,
    tags: TagSource,
    metrics: Gauges,
    counters: Counters,
    calls: calls::Calls,
    /// Agents, skill groups and their queues.
    acd: calls::AcdState,
    call_cfg: CallSettings,
    /// The last update of the blacklists applied ([`Endpoint::set_blacklist`]).
    blacklist_generation: u64,
    /// The published flows new calls start in.
    flows: FlowSet,
    /// Registrations to carriers (`trunks[].register`).
    trunk_regs: trunks::TrunkRegistrations,
    /// The shell's last wall-clock reading: (monotonic instant, Unix milliseconds).
    clock: Option<(Instant, i64)>,
    /// Unix seconds of the last input (binding expiry for lookups made by flows).
    last_unix: u64,
}

impl Endpoint {
    pub fn new(config: EndpointConfig, secret: ServerSecret, tag_seed: u64) -> Endpoint {
        let mut tx = TransactionLayer::new(config.timers);
        // Our 2xx to an INVITE is re-sent until its ACK comes (RFC 3261 §13.3.1.4), by the
        // transaction layer on our behalf.
        tx.set_retransmit_2xx(true);
        Endpoint {
            user_agent: config.user_agent.map(Bytes::from),
            trusted: config.trusted,
            accounts: config.accounts.into_iter().collect(),
            tx,
            registrar: Registrar::new(config.registrar),
            verifier: Verifier::new(config.digest, secret),
            lockout: (config.lockout.max_failures != u32::MAX)
                .then(|| Lockout::new(config.lockout)),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pending: HashMap::new(),
            next_token: 0,
            next_housekeeping: None,
            tags: TagSource::new(tag_seed),
            metrics: Gauges::new(),
            counters: Counters::new(),
            calls: calls::Calls::default(),
            acd: calls::AcdState::new(&config.calls.queueing),
            call_cfg: config.calls,
            blacklist_generation: 0,
            flows: FlowSet::default(),
            clock: None,
            last_unix: 0,
            trunk_regs: trunks::TrunkRegistrations::default(),
        }
    }

    /// Bindings loaded from the store at start-up.
    pub fn restore_bindings(&mut self, bindings: Vec<Binding>, unix: u64) {
        // Only accounts that exist (and are enabled) now: a removed or disabled account's phones
        // are not reachable after a restart.
        let known: Vec<Binding> = bindings
            .into_iter()
            .filter(|b| self.accounts.contains_key(&b.aor))
            .collect();
        self.registrar.restore(known, unix);
        self.metrics
            .update(&self.registrar, &self.tx, self.calls.active());
    }

    /// Replaces the blacklists, inbound (callers refused) and outbound (numbers the trunks may
    /// not dial), for calls from now on. `generation` orders updates read concurrently: one
    /// older than the last applied is dropped (`false`), as it may miss that one's changes.
    pub fn set_blacklist(&mut self, generation: u64, blacklist: crate::config::Blacklist) -> bool {
        if generation < self.blacklist_generation {
            return false;
        }
        self.blacklist_generation = generation;
        self.call_cfg.trunk_plan.set_blacklist(blacklist.clone());
        self.call_cfg.blacklist = blacklist;
        true
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn transactions(&self) -> usize {
        self.tx.len()
    }

    /// One datagram (UDP) or one frame cut by [`crate::sip::framing`] (TCP).
    /// The wall clock now, in Unix milliseconds, for call records. The shell calls it now and
    /// then (the core derives later times from `now`); without it, records use the seconds
    /// passed with each input.
    pub fn set_clock(&mut self, now: Instant, unix_ms: i64) {
        self.clock = Some((now, unix_ms));
        self.acd_start(now);
    }

    fn note_time(&mut self, now: Instant, unix: u64) {
        self.last_unix = unix;
        if self.clock.is_none() {
            self.clock = Some((now, unix as i64 * 1000));
        }
        self.acd_start(now);
    }

    pub fn handle_message(&mut self, now: Instant, unix: u64, from: Received, data: Bytes) {
        self.note_time(now, unix);
        self.arm_housekeeping(now);
        let framing = match from.transport {
            Transport::Udp => Framing::Datagram,
            Transport::Tcp => Framing::Stream,
        };
        match msg::parse(data, framing) {
            Ok(Message::Request(req)) => {
                self.counters.requests_in.count(&req.method);
                self.on_request(now, unix, from, req);
            }
            Ok(Message::Response(resp)) => {
                self.counters.responses_in.count(resp.code);
                if !self.tx.handle_response(now, resp) {
                    metrics::counter!("sip_messages_dropped_total", "reason" => "stray_response")
                        .increment(1);
                }
            }
            Err(e) => self.on_parse_error(from, e),
        }
        self.drain_tx_events(now);
        self.metrics
            .update(&self.registrar, &self.tx, self.calls.active());
    }

    /// The store finished (or failed) making a REGISTER's changes durable.
    pub fn handle_persisted(&mut self, now: Instant, token: PersistToken, ok: bool) {
        let Some(Pending {
            id,
            response: resp,
            aor,
            before,
        }) = self.pending.remove(&token)
        else {
            return;
        };
        let resp = if ok {
            resp
        } else {
            tracing::error!("registration could not be stored; answering 500");
            self.registrar.set_bindings(&aor, before);
            let mut r = Response::from_headers(&resp.headers, 500);
            r.headers.push(HeaderName::RetryAfter, "5");
            r
        };
        self.respond(now, id, resp);
        self.drain_tx_events(now);
    }

    pub fn handle_timeout(&mut self, now: Instant, unix: u64) {
        self.note_time(now, unix);
        self.tx.handle_timeout(now);
        self.drain_tx_events(now);
        self.call_timeouts(now);
        self.trunk_timeouts(now);
        self.acd_timeouts(now);
        if self.next_housekeeping.is_some_and(|t| t <= now) {
            self.next_housekeeping = Some(now + HOUSEKEEPING);
            self.registrar.expire(unix);
            self.verifier.prune(unix);
            if let Some(l) = &mut self.lockout {
                l.prune(now);
            }
        }
        self.drain_tx_events(now);
        self.metrics
            .update(&self.registrar, &self.tx, self.calls.active());
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self
            .transmits
            .pop_front()
            .or_else(|| self.tx.poll_transmit())?;
        self.counters.count_sent(&t.payload);
        Some(t)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.tx.poll_timeout(),
            self.next_housekeeping,
            self.calls.poll_timeout(),
            self.trunk_regs.poll_timeout(),
            self.acd_poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn arm_housekeeping(&mut self, now: Instant) {
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(now + HOUSEKEEPING);
        }
    }

    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(ev) = self.tx.poll_event() {
            // Our REGISTERs to carriers are not calls.
            let Some(ev) = self.trunk_tx_event(now, ev) else {
                continue;
            };
            match ev {
                TxEvent::AckTimeout { id } => {
                    tracing::debug!(?id, "no ACK for a final response (Timer H or L)");
                    self.call_ack_timeout(now, id);
                }
                TxEvent::ClientTimeout { id } => {
                    tracing::debug!(?id, "client transaction timed out");
                    self.call_client_timeout(now, id);
                }
                TxEvent::Response { id, response } => {
                    self.call_response(now, id, response);
                }
                TxEvent::Terminated(key) => self.call_tx_terminated(key),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Requests
    // -----------------------------------------------------------------------------------------

    fn on_parse_error(&mut self, from: Received, e: msg::ParseError) {
        metrics::counter!("sip_parse_errors_total").increment(1);
        let Some(a) = e.answerable else {
            tracing::debug!(remote = %from.remote, error = %e.kind, "dropped unparseable message");
            metrics::counter!("sip_messages_dropped_total", "reason" => "unparseable").increment(1);
            return;
        };
        // Never answer an ACK (RFC 3261 §17.1.1.3).
        if a.method == Some(Method::Ack) {
            return;
        }
        tracing::debug!(remote = %from.remote, error = %e.kind, code = a.code, "rejected malformed request");
        let mut headers = a.headers;
        let target = stamp_via(&mut headers, from);
        let mut resp = Response::from_headers(&headers, a.code).with_reason(a.reason);
        self.decorate(&mut resp);
        if let Some(target) = target {
            self.transmits.push_back(Transmit {
                target,
                payload: resp.encode(),
            });
        }
    }

    fn on_request(&mut self, now: Instant, unix: u64, from: Received, mut req: Request) {
        let Some(reply_to) = stamp_via(&mut req.headers, from) else {
            metrics::counter!("sip_messages_dropped_total", "reason" => "unroutable").increment(1);
            return;
        };
        match self.tx.handle_request(now, req, reply_to) {
            Incoming::Request { id, request } => self.dispatch(now, unix, from, id, request),
            Incoming::Ack2xx { request } => self.call_ack(now, &request),
            Incoming::Absorbed => {}
        }
    }

    fn dispatch(&mut self, now: Instant, unix: u64, from: Received, id: ServerTxId, req: Request) {
        // RFC 3261 §8.2.1: methods first.
        match &req.method {
            Method::Extension(_) => return self.reject_allow(id, &req, 501),
            Method::Update
            | Method::Prack
            | Method::Subscribe
            | Method::Notify
            | Method::Message
            | Method::Publish => return self.reject_allow(id, &req, 405),
            _ => {}
        }
        // §8.2.2.1: a Request-URI scheme we do not serve.
        if !matches!(req.uri.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) {
            return self.reject(id, &req, 416);
        }
        // §8.2.2.3: extensions the client requires that we do not support.
        if !matches!(req.method, Method::Cancel | Method::Ack) {
            let unsupported: Vec<&str> = req
                .headers
                .tokens(&HeaderName::Require)
                .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .collect();
            if !unsupported.is_empty() {
                let mut resp = self.response(&req, 420);
                resp.headers
                    .push(HeaderName::Unsupported, unsupported.join(", "));
                return self.reject_with(id, resp);
            }
        }
        // Inside a dialog of ours (RFC 3261 §12.2.2): the call's business. The dialog's
        // unguessable tags are what admits these requests, as with any UA.
        if !matches!(req.method, Method::Cancel | Method::Ack)
            && req.headers.to().is_ok_and(|t| t.tag().is_some())
            && self.call_request(now, id, &req)
        {
            return;
        }
        match req.method {
            Method::Options => self.on_options(now, id, &req),
            Method::Register => self.on_register(now, unix, from, id, &req),
            Method::Invite => self.on_invite(now, unix, from, id, &req),
            Method::Cancel => self.on_cancel(now, id, &req),
            // REFER transfers a call, so only inside one of our calls' dialogs (RFC 3515
            // allows it outside; we do not accept it there).
            Method::Refer if req.headers.to().is_ok_and(|t| t.tag().is_none()) => {
                self.reject_allow(id, &req, 403)
            }
            // No dialogs exist yet, so an in-dialog BYE matches nothing (§15.1.2).
            _ => self.reject(id, &req, 481),
        }
    }

    fn on_options(&mut self, now: Instant, id: ServerTxId, req: &Request) {
        // Answered without authentication: it is how trunks and monitors probe liveness
        // (RFC 3261 §11), and it reveals nothing about accounts.
        let mut resp = self.response(req, 200);
        resp.headers.push(HeaderName::Allow, ALLOW);
        resp.headers.push(HeaderName::Accept, "application/sdp");
        resp.headers.push(HeaderName::AcceptEncoding, "identity");
        resp.headers.push(HeaderName::AcceptLanguage, "en");
        resp.headers
            .push(HeaderName::Supported, SUPPORTED.join(", "));
        self.respond(now, id, resp);
    }

    fn on_invite(
        &mut self,
        now: Instant,
        unix: u64,
        from: Received,
        id: ServerTxId,
        req: &Request,
    ) {
        if let Some(code) = content_check(req) {
            let mut resp = self.response(req, code);
            resp.headers.push(HeaderName::Accept, "application/sdp");
            return self.reject_with(id, resp);
        }
        if req.headers.to().is_ok_and(|t| t.tag().is_some()) {
            // A re-INVITE for a dialog we do not have.
            return self.reject(id, req, 481);
        }
        // A B2BUA re-originates calls, so a request that has run out of hops stops here
        // (loop protection); OPTIONS and REGISTER are served locally and ignore it (RFC 4475 zeromf).
        if req.headers.max_forwards().ok().flatten() == Some(0) {
            return self.reject(id, req, 483);
        }
        let account = match self.authenticate(now, unix, from, id, req, Challenge::Proxy) {
            None => return,
            Some(Identity::Account(user)) => Some(user),
            Some(Identity::Trusted) => None,
        };
        self.start_call(now, unix, from, id, req, account);
    }

    fn on_cancel(&mut self, now: Instant, id: ServerTxId, req: &Request) {
        // RFC 3261 §9.2: 200 to the CANCEL, 487 to the INVITE it matches.
        match self.tx.cancel_target(req) {
            Some(invite) => {
                self.reply(now, id, req, 200);
                if self.call_cancelled(now, invite) {
                    return;
                }
                if let Some(inv) = self.tx.request_of(invite).cloned() {
                    self.reply(now, invite, &inv, 487);
                }
            }
            // §9.2: too late to cancel (the INVITE has its final answer): 200, no effect.
            None if self.tx.cancel_matches(req) => self.reply(now, id, req, 200),
            None => self.reject(id, req, 481),
        }
    }

    fn on_register(
        &mut self,
        now: Instant,
        unix: u64,
        from: Received,
        id: ServerTxId,
        req: &Request,
    ) {
        let to = match req.headers.to() {
            Ok(to) if to.uri.is_sip() => to,
            // An AOR must be a SIP or SIPS URI (RFC 3261 §10.2; RFC 4475 unksm2).
            _ => return self.reject(id, req, 416),
        };
        let Some(aor) = to
            .uri
            .user_decoded()
            .and_then(|u| String::from_utf8(u).ok())
        else {
            return self.reject(id, req, 404);
        };
        // A Contact list we cannot read is a syntax error, answered before authentication
        // (it says nothing about accounts; RFC 4475 regbadct).
        if req.headers.contacts().is_err() || req.headers.expires().is_err() {
            let resp = self
                .response(req, 400)
                .with_reason("Bad Request (malformed Contact or Expires)");
            return self.reject_with(id, resp);
        }
        let identity = match self.authenticate(now, unix, from, id, req, Challenge::Www) {
            None => return,
            Some(identity) => identity,
        };
        match identity {
            Identity::Account(user) if user != aor => {
                // Authenticated, but as someone else: one account may not register another.
                let resp = self
                    .response(req, 403)
                    .with_reason("Forbidden (identity mismatch)");
                return self.respond(now, id, resp);
            }
            _ => {}
        }
        let source = Source {
            transport: from.transport,
            addr: from.remote,
            local: from.local,
            conn: from.conn,
        };
        match self.registrar.register(&aor, req, source, unix) {
            Ok(outcome) => {
                let mut resp = self.response(req, 200);
                for b in &outcome.bindings {
                    resp.headers.push(
                        HeaderName::Contact,
                        format!("<{}>;expires={}", b.contact, b.remaining(unix)),
                    );
                }
                resp.headers.push(HeaderName::Date, http_date(unix));
                if outcome.changes.is_empty() {
                    self.respond(now, id, resp);
                } else {
                    let token = PersistToken(self.next_token);
                    self.next_token += 1;
                    self.pending.insert(
                        token,
                        Pending {
                            id,
                            response: resp,
                            aor,
                            before: outcome.previous,
                        },
                    );
                    self.events.push_back(Event::Persist {
                        token,
                        changes: outcome.changes,
                    });
                }
            }
            Err(e) => {
                let (code, reason) = e.status();
                let mut resp = self.response(req, code).with_reason(reason);
                if let RegisterError::IntervalTooBrief { min } = e {
                    resp.headers.push(HeaderName::MinExpires, min.to_string());
                }
                self.respond(now, id, resp);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Authentication (RFC 3261 §22, RFC 7616, RFC 8760)
    // -----------------------------------------------------------------------------------------

    /// `Some` when the request may proceed; `None` when it has been answered (challenge,
    /// lock-out or error).
    fn authenticate(
        &mut self,
        now: Instant,
        unix: u64,
        from: Received,
        id: ServerTxId,
        req: &Request,
        kind: Challenge,
    ) -> Option<Identity> {
        let ip = from.remote.ip();
        // Trusted ranges (trunks, a front proxy) may place calls without digest; they may not
        // register phones: a spoofed datagram from a carrier's address would otherwise take
        // over any account's binding.
        if matches!(kind, Challenge::Proxy) && self.trusted.iter().any(|net| net.contains(&ip)) {
            return Some(Identity::Trusted);
        }
        let realm = self.verifier.config().realm.clone();
        // Of several credentials, the ones for our realm count (§22.4).
        let mut parsed: Option<Result<Credentials, ParseError>> = None;
        for raw in req.headers.get_all(&kind.credentials_header()) {
            let c = Credentials::parse(&String::from_utf8_lossy(raw));
            let ours = matches!(&c, Ok(c) if c.realm == realm);
            if ours || parsed.is_none() {
                parsed = Some(c);
            }
            if ours {
                break;
            }
        }
        let username = match &parsed {
            Some(Ok(c)) => Some(c.username.as_str()),
            _ => None,
        };
        let locked = self.lockout.as_ref().map(|l| l.check(now, ip, username));
        if let Some(Admission::Locked { .. }) = locked {
            metrics::counter!("sip_auth_rejected_locked_total").increment(1);
            // Stateless, like a challenge: a locked-out flood must not cost us state.
            let resp = self.response(req, 403);
            self.tx.respond_stateless(id, resp);
            return None;
        }
        let creds = match parsed {
            None | Some(Err(ParseError::UnsupportedScheme { .. })) => {
                self.challenge(unix, id, req, kind, false);
                return None;
            }
            Some(Err(_)) => {
                let resp = self
                    .response(req, 400)
                    .with_reason("Bad Request (malformed credentials)");
                self.reject_with(id, resp);
                return None;
            }
            Some(Ok(c)) => c,
        };
        // §22.4: the digest-uri must be the Request-URI the client signed.
        let uri_ok = creds.uri == req.uri.to_string()
            || msg::Uri::parse(&creds.uri).is_ok_and(|u| u == req.uri);
        if !uri_ok {
            let resp = self
                .response(req, 400)
                .with_reason("Bad Request (digest uri does not match Request-URI)");
            self.reject_with(id, resp);
            return None;
        }
        let secret = self.accounts.get(&creds.username);
        match self
            .verifier
            .verify(req.method.as_str(), &creds, secret, unix)
        {
            Verdict::Ok => {
                if let Some(l) = &mut self.lockout {
                    l.record_success(&creds.username);
                }
                Some(Identity::Account(creds.username))
            }
            Verdict::Stale => {
                self.challenge(unix, id, req, kind, true);
                None
            }
            Verdict::Fail(reason) => {
                metrics::counter!("sip_auth_failures_total").increment(1);
                let events = match &mut self.lockout {
                    Some(l) if reason.counts_as_failure() => {
                        l.record_failure(now, ip, Some(&creds.username))
                    }
                    _ => Vec::new(),
                };
                {
                    for ev in events {
                        // Logged once per lock; the name is what the client sent, never a secret.
                        tracing::warn!(key = %ev.key, failures = ev.failures, "authentication locked out after repeated failures");
                        metrics::counter!("sip_auth_lockouts_total", "key" => match ev.key {
                            crate::auth::LockKey::Ip(_) => "source",
                            crate::auth::LockKey::Account(_) => "account",
                        })
                        .increment(1);
                    }
                }
                self.challenge(unix, id, req, kind, false);
                None
            }
        }
    }

    fn challenge(
        &mut self,
        unix: u64,
        id: ServerTxId,
        req: &Request,
        kind: Challenge,
        stale: bool,
    ) {
        let mut resp = self.response(req, kind.status());
        for c in self.verifier.challenges(unix, stale) {
            resp.headers.push(kind.challenge_header(), c);
        }
        // RFC 3261 §8.2.7: challenges are answered statelessly. A retransmitted request earns
        // a fresh challenge, and half of a registrar's transactions (with their 32 s of Timer J
        // on UDP) never exist.
        self.tx.respond_stateless(id, resp);
    }

    // -----------------------------------------------------------------------------------------
    // Responses
    // -----------------------------------------------------------------------------------------

    fn response(&mut self, req: &Request, code: u16) -> Response {
        let mut resp = Response::for_request(req, code);
        self.decorate(&mut resp);
        resp
    }

    /// To tag (RFC 3261 §8.2.6.2, on everything but 100) and Server header.
    fn decorate(&mut self, resp: &mut Response) {
        if resp.code > 100 {
            let tag = self.tags.next();
            resp.ensure_to_tag(&tag);
        }
        if let Some(ua) = &self.user_agent {
            resp.headers.push(HeaderName::Server, ua.clone());
        }
    }

    fn reply(&mut self, now: Instant, id: ServerTxId, req: &Request, code: u16) {
        let resp = self.response(req, code);
        self.respond(now, id, resp);
    }

    /// A rejection before authentication, answered statelessly (RFC 3261 §8.2.7): an
    /// unauthenticated sender must not be able to make us hold a transaction — and retransmit
    /// its answer to whatever address it claims — for 32 s.
    fn reject(&mut self, id: ServerTxId, req: &Request, code: u16) {
        let resp = self.response(req, code);
        self.reject_with(id, resp);
    }

    fn reject_with(&mut self, id: ServerTxId, resp: Response) {
        self.tx.respond_stateless(id, resp);
    }

    fn reject_allow(&mut self, id: ServerTxId, req: &Request, code: u16) {
        let mut resp = self.response(req, code);
        resp.headers.push(HeaderName::Allow, ALLOW);
        self.reject_with(id, resp);
    }

    fn respond(&mut self, now: Instant, id: ServerTxId, resp: Response) {
        self.tx.respond(now, id, resp);
    }
}

struct Pending {
    id: ServerTxId,
    response: Response,
    aor: String,
    before: Vec<Binding>,
}

enum Identity {
    Account(String),
    Trusted,
}

#[derive(Clone, Copy)]
enum Challenge {
    /// REGISTER: 401 with WWW-Authenticate (a registrar is a UAS).
    Www,
    /// Everything else: 407 with Proxy-Authenticate (we act for the whole domain).
    Proxy,
}

impl Challenge {
    fn status(self) -> u16 {
        match self {
            Challenge::Www => 401,
            Challenge::Proxy => 407,
        }
    }
    fn challenge_header(self) -> HeaderName {
        match self {
            Challenge::Www => HeaderName::WwwAuthenticate,
            Challenge::Proxy => HeaderName::ProxyAuthenticate,
        }
    }
    fn credentials_header(self) -> HeaderName {
        match self {
            Challenge::Www => HeaderName::Authorization,
            Challenge::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// RFC 3261 §18.2.1 and RFC 3581: record where a request really came from in its top Via
/// (`received`, `rport`), and work out where its responses go (§18.2.2). `None` when there
/// is nowhere safe to answer (a broadcast or multicast source, port 0).
fn stamp_via(headers: &mut Headers, from: Received) -> Option<Target> {
    let src = from.remote;
    if !is_unicast(src) {
        return None;
    }
    let mut port = src.port();
    if let Ok(mut via) = headers.top_via() {
        let mut changed = false;
        let rport_requested = via.rport() == Some(None);
        if via.host.ip() != Some(src.ip()) || rport_requested {
            via.params.set("received", Some(src.ip().to_string()));
            changed = true;
        }
        if rport_requested {
            via.params.set("rport", Some(src.port().to_string()));
            changed = true;
        }
        if changed {
            headers.set_top_via(&via);
        }
        // Without rport, an unreliable response goes to the source address and the Via port
        // (5060 when absent). A Via port of 0 names nothing reachable: answer where the
        // request came from instead.
        if from.transport == Transport::Udp && !rport_requested {
            port = match via.port {
                None => 5060,
                Some(0) => src.port(),
                Some(p) => p,
            };
        }
    }
    Some(Target {
        transport: from.transport,
        addr: SocketAddr::new(src.ip(), port),
        conn: from.conn,
        local: from.local,
    })
}

fn is_unicast(addr: SocketAddr) -> bool {
    addr.port() != 0
        && match addr.ip() {
            IpAddr::V4(a) => !(a.is_broadcast() || a.is_multicast() || a.is_unspecified()),
            IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified()),
        }
}

/// RFC 3261 §8.2.3 for an INVITE: 415 for a body we cannot read, 406 when the client accepts
/// nothing we could answer with.
fn content_check(req: &Request) -> Option<u16> {
    if !req.body.is_empty() {
        let ct = req.headers.get_str(&HeaderName::ContentType).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/sdp")
            && !mime.eq_ignore_ascii_case("multipart/mixed")
        {
            return Some(415);
        }
    }
    if req.headers.contains(&HeaderName::Accept) {
        let ok = req.headers.list(&HeaderName::Accept).any(|a| {
            let m = a.split(';').next().unwrap_or("").trim();
            m.eq_ignore_ascii_case("application/sdp")
                || m.eq_ignore_ascii_case("application/*")
                || m == "*/*"
        });
        if !ok {
            return Some(406);
        }
    }
    None
}

/// Unique, unguessable To tags (RFC 3261 §19.3: cryptographically random): a ChaCha stream
/// seeded from the shell's randomness, so no tag tells anything about the next one.
struct TagSource(rand::rngs::StdRng);

impl TagSource {
    fn new(seed: u64) -> TagSource {
        use rand::SeedableRng;
        TagSource(rand::rngs::StdRng::seed_from_u64(seed))
    }

    fn next_u64(&mut self) -> u64 {
        rand::Rng::random(&mut self.0)
    }

    fn next_u32(&mut self) -> u32 {
        rand::Rng::random(&mut self.0)
    }

    fn next(&mut self) -> String {
        use rand::Rng;
        format!("{:016x}", self.0.random::<u64>())
    }
}

/// RFC 3261 §20.17 / RFC 7231 IMF-fixdate from Unix seconds.
pub fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

struct Gauges {
    transactions: metrics::Gauge,
    bindings: metrics::Gauge,
    accounts: metrics::Gauge,
    calls: metrics::Gauge,
}

impl Gauges {
    fn new() -> Gauges {
        Gauges {
            transactions: metrics::gauge!("sip_transactions_alive"),
            bindings: metrics::gauge!("sip_registrations"),
            accounts: metrics::gauge!("sip_registered_accounts"),
            calls: metrics::gauge!("calls_active"),
        }
    }

    fn update(&self, registrar: &Registrar, tx: &TransactionLayer, calls: usize) {
        self.calls.set(calls as f64);
        self.transactions.set(tx.len() as f64);
        self.bindings.set(registrar.len() as f64);
        self.accounts.set(registrar.aor_count() as f64);
    }
}

/// Message counters by method and by status, looked up once per label and then kept: the
/// registry lookup (hashing name and labels) would otherwise run for every message in and out.
/// Created on first use, so `/metrics` lists only what was seen.
struct Counters {
    requests_in: ByMethod,
    responses_in: ByStatus,
    requests_out: ByMethod,
    responses_out: ByStatus,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            requests_in: ByMethod::new("sip_requests_received_total"),
            responses_in: ByStatus::new("sip_responses_received_total"),
            requests_out: ByMethod::new("sip_requests_sent_total"),
            responses_out: ByStatus::new("sip_responses_sent_total"),
        }
    }

    /// Count an outgoing message by its start line, retransmissions included.
    fn count_sent(&mut self, payload: &[u8]) {
        if let Some(rest) = payload.strip_prefix(b"SIP/2.0 ") {
            let code = rest
                .get(..3)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            self.responses_out.count(code);
        } else {
            let token = payload.split(|&c| c == b' ').next().unwrap_or_default();
            let method = Method::parse(token).unwrap_or(Method::Extension("".into()));
            self.requests_out.count(&method);
        }
    }
}

/// One counter per method; extension methods share the label `OTHER`, so a peer cannot grow
/// the metric registry without end.
struct ByMethod {
    name: &'static str,
    known: HashMap<&'static str, metrics::Counter>,
}

impl ByMethod {
    fn new(name: &'static str) -> ByMethod {
        ByMethod {
            name,
            known: HashMap::new(),
        }
    }

    fn count(&mut self, m: &Method) {
        let label = m.known_name().unwrap_or("OTHER");
        let name = self.name;
        self.known
            .entry(label)
            .or_insert_with(|| metrics::counter!(name, "method" => label))
            .increment(1);
    }
}

/// One counter per status code 100–699, and `other`.
struct ByStatus {
    name: &'static str,
    slots: Vec<Option<metrics::Counter>>,
}

impl ByStatus {
    fn new(name: &'static str) -> ByStatus {
        ByStatus {
            name,
            slots: vec![None; 601],
        }
    }

    fn count(&mut self, code: u16) {
        let i = code.checked_sub(100).map_or(600, usize::from).min(600);
        let name = self.name;
        self.slots[i]
            .get_or_insert_with(|| metrics::counter!(name, "status" => status_label(code)))
            .increment(1);
    }
}

fn status_label(code: u16) -> &'static str {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        (100..700u16)
            .map(|c| &*Box::leak(c.to_string().into_boxed_str()))
            .collect()
    });
    code.checked_sub(100)
        .and_then(|i| labels.get(usize::from(i)))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests;
