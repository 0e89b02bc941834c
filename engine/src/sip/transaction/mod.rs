//! The transaction layer: the four machines of RFC 3261 §17 (INVITE and non-INVITE, client and
//! server), their matching rules, and their timers — sans-IO.
//!
//! # Drive-loop contract
//! [`TransactionLayer`] never touches a socket and never reads a clock: every input carries
//! `now`, and every output is polled.
//! - Inputs: [`handle_request`](TransactionLayer::handle_request) and
//!   [`handle_response`](TransactionLayer::handle_response) for parsed messages off the wire;
//!   [`respond`](TransactionLayer::respond) and [`send_request`](TransactionLayer::send_request)
//!   from the transaction user (TU: the endpoint, dialogs, the registrar);
//!   [`handle_timeout`](TransactionLayer::handle_timeout) when the instant last returned by
//!   [`poll_timeout`](TransactionLayer::poll_timeout) is reached (calling it early or late is
//!   harmless: it fires what is due at `now`).
//! - Outputs, to drain after every input: [`poll_transmit`](TransactionLayer::poll_transmit)
//!   (encoded messages with their [`Target`]), [`poll_event`](TransactionLayer::poll_event)
//!   ([`TxEvent`]s for the TU), and [`poll_timeout`](TransactionLayer::poll_timeout) (the next
//!   wake-up, which any input may move).
//!
//! # What the TU must do
//! - Answer every [`Incoming::Request`] with [`respond`](TransactionLayer::respond), at least
//!   with a final response. An INVITE server transaction sends 100 Trying on its own after
//!   200 ms of silence (RFC 3261 §17.2.1).
//! - CANCEL (RFC 3261 §9.2) arrives as a server transaction of its own. The TU asks
//!   [`cancel_target`](TransactionLayer::cancel_target): `Some(invite)` → answer the CANCEL
//!   200 and the INVITE 487; `None` → answer the CANCEL 481.
//! - An ACK for a 2xx is not part of the INVITE transaction (RFC 3261 §13.2.2.4, §17.1.1.3):
//!   it comes up as [`Incoming::Ack2xx`]. The ACK for a non-2xx final response is absorbed on
//!   the server side and generated on the client side by this layer.
//! - A 2xx to an INVITE is retransmitted by the TU (RFC 3261 §13.3.1.4) unless
//!   [`TransactionLayer::set_retransmit_2xx`] asks this layer to do it. In the Accepted state
//!   (RFC 6026 §7.1) the layer sends the TU's 2xx retransmissions and re-sends the last 2xx
//!   when the INVITE itself is retransmitted.
//! - [`TxEvent::Terminated`] is the last event of every transaction: its id is dead from then
//!   on ([`respond`](TransactionLayer::respond) returns false) and the TU may drop whatever it
//!   keeps per transaction.
//!
//! # Scale
//! Transactions, their matching indexes and their timers are all hashed or heaped: no
//! operation scans the transactions (see [`timer`] for the schedule).
mod client;
mod key;
mod server;
pub mod timer;

#[cfg(test)]
mod tests;

pub use timer::{Timer, TimerConfig};

use crate::sip::msg::{HeaderName, Method, Request, Response};
use crate::sip::transport::{Target, Transmit};
use bytes::Bytes;
use client::ClientTx;
use key::{ClientKey, DialogAckKey, ServerKey};
use server::{AckOutcome, ServerState, ServerTx};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use timer::{Schedule, TimerTable};

/// A server transaction, as the TU names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(u64);

/// A client transaction, as the TU names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(u64);

/// Either kind of transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxKey {
    Server(ServerTxId),
    Client(ClientTxId),
}

/// What became of a request handed to [`TransactionLayer::handle_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A new server transaction; the TU must answer it with `respond` (CANCEL included: see
    /// [`TransactionLayer::cancel_target`]).
    Request { id: ServerTxId, request: Request },
    /// An ACK for a 2xx (it is its own transaction-less request, RFC 3261 §17.1.1.3/§13.2.2.4):
    /// to the dialog layer.
    Ack2xx { request: Request },
    /// A retransmission absorbed by an existing transaction (the last provisional/final
    /// response is re-sent where the RFC says so), or an ACK for a non-2xx final response
    /// absorbed by its INVITE transaction. Also: a request without the fields matching needs
    /// (top Via; for RFC 2543 matching From, To, Call-ID and CSeq), which is dropped.
    Absorbed,
}

/// What the layer tells the TU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxEvent {
    /// A response for a client transaction that the TU must see (provisionals, finals, and 2xx
    /// retransmissions in Accepted, RFC 6026).
    Response { id: ClientTxId, response: Response },
    /// Timer B or F fired (or the transport failed): the TU acts as if it received 408
    /// (RFC 3261 §8.1.3.1).
    ClientTimeout { id: ClientTxId },
    /// Timer H fired: no ACK ever came for our final non-2xx response to an INVITE. Also, only
    /// when [`TransactionLayer::set_retransmit_2xx`] is on, Timer L fired without an ACK for
    /// our 2xx: the TU should end the dialog with a BYE (RFC 3261 §13.3.1.4).
    AckTimeout { id: ServerTxId },
    /// The transaction is gone; its id will not be seen again.
    Terminated(TxKey),
}

/// Whether a machine lives on after an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Stay,
    Terminate,
}

/// What a machine may do while it handles one input: send, arm its timers, tell the TU.
struct Io<'a> {
    now: Instant,
    cfg: &'a TimerConfig,
    key: TxKey,
    reliable: bool,
    out: &'a mut Outputs,
}

impl Io<'_> {
    fn transmit(&mut self, target: Target, payload: Bytes) {
        self.out.transmits.push_back(Transmit { target, payload });
    }

    fn event(&mut self, event: TxEvent) {
        self.out.events.push_back(event);
    }

    /// Arm `timer` with its RFC value (see [`TimerConfig::duration`]).
    fn arm(&mut self, table: &mut TimerTable, timer: Timer) {
        let after = self.cfg.duration(timer, self.reliable);
        self.arm_after(table, timer, after);
    }

    fn arm_after(&mut self, table: &mut TimerTable, timer: Timer, after: Duration) {
        let at = self.now + after;
        self.out.schedule.arm(table, self.key, timer, at);
    }
}

#[derive(Debug, Default)]
struct Outputs {
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    schedule: Schedule,
}

/// Hash maps keyed by what peers send (branches, Call-IDs): foldhash is fast and seeded per
/// process, so keys cannot be chosen to collide.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The transaction layer; see the module documentation for how to drive it.
#[derive(Debug)]
pub struct TransactionLayer {
    cfg: TimerConfig,
    retransmit_2xx: bool,
    next_id: u64,
    branch_salt: u64,
    branch_seq: u64,
    /// Boxed: a registrar holds hundreds of thousands of transactions, and growing the map
    /// then moves pointers, not whole transactions (an unboxed rehash stalled the engine for
    /// hundreds of milliseconds under load).
    servers: Map<ServerTxId, Box<ServerTx>>,
    /// RFC 3261 §17.2.3 / RFC 2543 keys of live server transactions.
    server_index: Map<ServerKey, ServerTxId>,
    /// RFC 2543 INVITE transactions that sent a final response: the key of their ACK (whose To
    /// tag is the response's).
    legacy_acks: Map<ServerKey, ServerTxId>,
    /// INVITE transactions in Accepted: the dialog identity of the ACK for their 2xx.
    accepted: Map<DialogAckKey, ServerTxId>,
    clients: Map<ClientTxId, Box<ClientTx>>,
    client_index: Map<ClientKey, ClientTxId>,
    out: Outputs,
}

impl TransactionLayer {
    pub fn new(timers: TimerConfig) -> TransactionLayer {
        TransactionLayer {
            cfg: timers,
            retransmit_2xx: false,
            next_id: 0,
            branch_salt: rand::random(),
            branch_seq: 0,
            servers: Map::default(),
            server_index: Map::default(),
            legacy_acks: Map::default(),
            accepted: Map::default(),
            clients: Map::default(),
            client_index: Map::default(),
            out: Outputs::default(),
        }
    }

    pub fn timers(&self) -> &TimerConfig {
        &self.cfg
    }

    /// When on, an INVITE server transaction that sent a 2xx over an unreliable transport
    /// re-sends it on Timer G's schedule (T1 doubling up to T2) until an ACK for it arrives,
    /// which is the UAS core's job in RFC 3261 §13.3.1.4 done here on its behalf; and if no
    /// ACK came when Timer L ends the transaction, [`TxEvent::AckTimeout`] is raised. Off by
    /// default: the TU retransmits its 2xx itself.
    pub fn set_retransmit_2xx(&mut self, on: bool) {
        self.retransmit_2xx = on;
    }

    /// A fresh RFC 3261 branch (§8.1.1.7): the magic cookie, a per-layer random salt and a
    /// counter, so branches are unique across restarts and within one run.
    pub fn new_branch(&mut self) -> String {
        self.branch_seq += 1;
        format!(
            "{}{:016x}.{:x}",
            key::MAGIC_COOKIE,
            self.branch_salt,
            self.branch_seq
        )
    }

    /// Transactions alive (for the `transactions alive` metric).
    pub fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // -----------------------------------------------------------------------------------------
    // Server side
    // -----------------------------------------------------------------------------------------

    /// A request arrived. `reply_to` is where responses for this request go (the endpoint
    /// computes it per RFC 3261 §18.2.2 / RFC 3581).
    ///
    /// RFC 3261 §17.2.3 matching (and the RFC 2543 fallback for branches without the magic
    /// cookie): a retransmission is absorbed by its transaction, an ACK for a non-2xx final
    /// response ends in its INVITE transaction, an ACK for a 2xx goes up as
    /// [`Incoming::Ack2xx`], anything else starts a server transaction.
    pub fn handle_request(&mut self, now: Instant, request: Request, reply_to: Target) -> Incoming {
        let incoming = self.handle_request_inner(now, request, reply_to);
        self.purge_stale_timers();
        incoming
    }

    fn handle_request_inner(
        &mut self,
        now: Instant,
        request: Request,
        reply_to: Target,
    ) -> Incoming {
        let Ok(via) = request.headers.top_via() else {
            return Incoming::Absorbed;
        };
        if request.method == Method::Ack {
            return self.handle_ack(now, request, &via);
        }
        let Some(key) = ServerKey::of(&request, &via, request.method.clone()) else {
            return Incoming::Absorbed;
        };
        if let Some(&id) = self.server_index.get(&key) {
            if let Some(tx) = self.servers.get_mut(&id) {
                let reliable = tx.reliable();
                let mut io = Io {
                    now,
                    cfg: &self.cfg,
                    key: TxKey::Server(id),
                    reliable,
                    out: &mut self.out,
                };
                tx.on_retransmission(&mut io);
                return Incoming::Absorbed;
            }
        }
        let id = ServerTxId(self.next_id());
        let mut tx = ServerTx::new(id, &request, key.clone(), reply_to, self.retransmit_2xx);
        let mut io = Io {
            now,
            cfg: &self.cfg,
            key: TxKey::Server(id),
            reliable: reply_to.transport.is_reliable(),
            out: &mut self.out,
        };
        tx.start(&mut io);
        self.server_index.insert(key, id);
        self.servers.insert(id, Box::new(tx));
        Incoming::Request { id, request }
    }

    fn handle_ack(
        &mut self,
        now: Instant,
        request: Request,
        via: &crate::sip::msg::Via,
    ) -> Incoming {
        // The INVITE transaction this ACK belongs to: by branch (§17.2.3), or for an RFC 2543
        // peer by the To tag of the final response we sent.
        let id = ServerKey::of(&request, via, Method::Invite).and_then(|key| match &key {
            ServerKey::Branch { .. } => self.server_index.get(&key).copied(),
            ServerKey::Legacy(_) => self
                .legacy_acks
                .get(&key)
                .or_else(|| self.server_index.get(&key))
                .copied(),
        });
        let dialog = DialogAckKey::of_ack(&request);
        if let Some(id) = id {
            if let Some(tx) = self.servers.get_mut(&id) {
                let reliable = tx.reliable();
                let mut io = Io {
                    now,
                    cfg: &self.cfg,
                    key: TxKey::Server(id),
                    reliable,
                    out: &mut self.out,
                };
                let (outcome, next) = tx.on_ack(&mut io);
                if next == Next::Terminate {
                    self.terminate_server(id);
                }
                return match outcome {
                    AckOutcome::Absorbed => Incoming::Absorbed,
                    AckOutcome::ToTu => Incoming::Ack2xx { request },
                };
            }
        }
        // An ACK for a 2xx with its own branch, as RFC 3261 §13.2.2.4 has it: tell the INVITE
        // transaction in Accepted (it may be retransmitting the 2xx), pass it up.
        if let Some(tx) = dialog
            .and_then(|d| self.accepted.get(&d).copied())
            .and_then(|id| self.servers.get_mut(&id))
        {
            tx.mark_acked();
        }
        Incoming::Ack2xx { request }
    }

    /// Send `response` in server transaction `id`. Responses to unknown or terminated ids, and
    /// responses the transaction's state does not allow (anything after a final response, but
    /// for further 2xx to an INVITE in Accepted; a status outside 100–699), are ignored: false.
    pub fn respond(&mut self, now: Instant, id: ServerTxId, response: Response) -> bool {
        if !(100..=699).contains(&response.code) {
            return false;
        }
        let Some(tx) = self.servers.get_mut(&id) else {
            return false;
        };
        let was = tx.state;
        let reliable = tx.reliable();
        let mut io = Io {
            now,
            cfg: &self.cfg,
            key: TxKey::Server(id),
            reliable,
            out: &mut self.out,
        };
        let Some(next) = tx.respond(&mut io, &response) else {
            return false;
        };
        if tx.invite && was == ServerState::Proceeding && response.code >= 200 {
            let tag = key::to_tag(&response);
            if let Some(ack_key) = tx.key.legacy_ack(tag.as_deref()) {
                self.legacy_acks.insert(ack_key.clone(), id);
                tx.legacy_ack = Some(ack_key);
            }
            if response.code < 300 {
                if let Some(d) = tx.dialog_ack.take() {
                    let d = d.with_to_tag(tag.as_deref());
                    self.accepted.insert(d.clone(), id);
                    tx.dialog_ack = Some(d);
                }
            } else {
                tx.dialog_ack = None;
            }
        }
        if next == Next::Terminate {
            self.terminate_server(id);
        }
        self.purge_stale_timers();
        true
    }

    /// Answer request `id` statelessly (RFC 3261 §8.2.7) and forget its transaction: the
    /// response goes out once, and a retransmitted request starts afresh. This is what a
    /// server does for an unauthenticated challenge — keeping 32 s of transaction state (Timer J)
    /// for every 401 would double a registrar's memory for nothing, since a retransmission simply
    /// earns a fresh challenge. Returns false for an unknown id or a status outside 300–699.
    pub fn respond_stateless(&mut self, id: ServerTxId, response: Response) -> bool {
        if !(300..=699).contains(&response.code) {
            return false;
        }
        let Some(target) = self.servers.get(&id).map(|tx| tx.reply_to()) else {
            return false;
        };
        self.out.transmits.push_back(Transmit {
            target,
            payload: response.encode(),
        });
        self.terminate_server(id);
        self.purge_stale_timers();
        true
    }

    /// For a CANCEL request: the INVITE server transaction it cancels (RFC 3261 §9.2 matching:
    /// the same branch and sent-by, or for RFC 2543 peers the same Request-URI, tags, Call-ID,
    /// CSeq number and top Via), if that is still in Proceeding (no final response yet).
    pub fn cancel_target(&self, cancel: &Request) -> Option<ServerTxId> {
        let id = self.cancelled_invite(cancel)?;
        let tx = self.servers.get(&id)?;
        (tx.state == ServerState::Proceeding).then_some(id)
    }

    /// For a CANCEL request: whether it matches an INVITE server transaction in any state.
    /// RFC 3261 §9.2: a CANCEL that matches a transaction which already sent its final
    /// response is still answered 200 — it just has no effect; only a CANCEL matching nothing
    /// gets 481.
    pub fn cancel_matches(&self, cancel: &Request) -> bool {
        self.cancelled_invite(cancel).is_some()
    }

    fn cancelled_invite(&self, cancel: &Request) -> Option<ServerTxId> {
        if cancel.method != Method::Cancel {
            return None;
        }
        let via = cancel.headers.top_via().ok()?;
        let key = ServerKey::of(cancel, &via, Method::Invite)?;
        let id = *self.server_index.get(&key)?;
        self.servers.get(&id).filter(|tx| tx.invite).map(|_| id)
    }

    /// The request of a live INVITE server transaction — what the 487 for a CANCEL answers
    /// (see [`cancel_target`](Self::cancel_target)). `None` for other methods: only INVITEs
    /// are kept, a non-INVITE request is the TU's to keep if it needs it.
    pub fn request_of(&self, id: ServerTxId) -> Option<&Request> {
        self.servers.get(&id)?.request.as_deref()
    }

    fn terminate_server(&mut self, id: ServerTxId) {
        let Some(tx) = self.servers.remove(&id) else {
            return;
        };
        remove_if(&mut self.server_index, &tx.key, id);
        if let Some(k) = &tx.legacy_ack {
            remove_if(&mut self.legacy_acks, k, id);
        }
        if let Some(d) = &tx.dialog_ack {
            remove_if(&mut self.accepted, d, id);
        }
        self.out
            .events
            .push_back(TxEvent::Terminated(TxKey::Server(id)));
    }

    // -----------------------------------------------------------------------------------------
    // Client side
    // -----------------------------------------------------------------------------------------

    /// Start a client transaction: send `request` to `target`, retransmit it on an unreliable
    /// transport (Timer A or E), give up on Timer B or F.
    ///
    /// The request should carry its top Via with a branch from [`new_branch`](Self::new_branch).
    /// If its top Via has no RFC 3261 branch one is set; if it has no Via at all, one is added
    /// for `target.local` (so responses can always be matched, RFC 3261 §17.1.3).
    ///
    /// A CANCEL (RFC 3261 §9.1) carries its INVITE's branch and is a transaction of its own;
    /// send it only after a provisional response to the INVITE. If the INVITE then gets no final
    /// response within 64·T1, its transaction ends with [`TxEvent::ClientTimeout`].
    ///
    /// An ACK is not a transaction (an ACK for a 2xx is the TU's, RFC 3261 §13.2.2.4): it is
    /// sent once and its id is terminated at once.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        target: Target,
    ) -> ClientTxId {
        let id = ClientTxId(self.next_id());
        let branch = self.ensure_branch(&mut request, &target);
        if request.method == Method::Ack {
            self.out.transmits.push_back(Transmit {
                target,
                payload: request.encode(),
            });
            self.out
                .events
                .push_back(TxEvent::Terminated(TxKey::Client(id)));
            return id;
        }
        let key = ClientKey::new(&branch, request.method.clone());
        let mut tx = ClientTx::new(id, &request, key.clone(), target);
        let mut io = Io {
            now,
            cfg: &self.cfg,
            key: TxKey::Client(id),
            reliable: target.transport.is_reliable(),
            out: &mut self.out,
        };
        tx.start(&mut io);
        if request.method == Method::Cancel {
            let invite = ClientKey::new(&branch, Method::Invite);
            if let Some(inv) = self.client_index.get(&invite).copied() {
                if let Some(inv_tx) = self.clients.get_mut(&inv) {
                    let mut io = Io {
                        now,
                        cfg: &self.cfg,
                        key: TxKey::Client(inv),
                        reliable: inv_tx.reliable(),
                        out: &mut self.out,
                    };
                    inv_tx.on_cancel_sent(&mut io);
                }
            }
        }
        self.client_index.insert(key, id);
        self.clients.insert(id, Box::new(tx));
        self.purge_stale_timers();
        id
    }

    /// The branch of `request`'s top Via, set or added first if it has no RFC 3261 branch.
    fn ensure_branch(&mut self, request: &mut Request, target: &Target) -> String {
        match request.headers.top_via() {
            Ok(via) if via.branch().is_some_and(key::is_rfc3261_branch) => {
                via.branch().unwrap_or_default().to_owned()
            }
            Ok(mut via) => {
                let branch = self.new_branch();
                via.params.set("branch", Some(branch.clone()));
                request.headers.set_top_via(&via);
                branch
            }
            Err(_) => {
                let branch = self.new_branch();
                let local = target.local;
                let value = format!("SIP/2.0/{} {local};branch={branch}", target.transport);
                request
                    .headers
                    .0
                    .insert(0, crate::sip::msg::Header::new(HeaderName::Via, value));
                branch
            }
        }
    }

    /// A response arrived. RFC 3261 §17.1.3 matching (top Via branch and CSeq method). False if
    /// no client transaction matched: the TU may handle a stray 2xx to an INVITE (RFC 3261
    /// §13.2.2.4, RFC 6026), and drops anything else (§18.1.2).
    pub fn handle_response(&mut self, now: Instant, response: Response) -> bool {
        let Some(id) =
            ClientKey::of_response(&response).and_then(|k| self.client_index.get(&k).copied())
        else {
            return false;
        };
        let Some(tx) = self.clients.get_mut(&id) else {
            return false;
        };
        let reliable = tx.reliable();
        let mut io = Io {
            now,
            cfg: &self.cfg,
            key: TxKey::Client(id),
            reliable,
            out: &mut self.out,
        };
        let (deliver, next) = tx.on_response(&mut io, &response);
        if deliver {
            self.out
                .events
                .push_back(TxEvent::Response { id, response });
        }
        if next == Next::Terminate {
            self.terminate_client(id);
        }
        self.purge_stale_timers();
        true
    }

    fn terminate_client(&mut self, id: ClientTxId) {
        let Some(tx) = self.clients.remove(&id) else {
            return;
        };
        remove_if(&mut self.client_index, &tx.key, id);
        self.out
            .events
            .push_back(TxEvent::Terminated(TxKey::Client(id)));
    }

    /// The transport reported that it could not deliver this transaction's messages (RFC 3261
    /// §17.1.4, §17.2.4): a client transaction raises [`TxEvent::ClientTimeout`]; both kinds
    /// are terminated. False if `key` is not alive.
    pub fn handle_transport_error(&mut self, key: TxKey) -> bool {
        let alive = match key {
            TxKey::Server(id) => self.servers.contains_key(&id),
            TxKey::Client(id) => self.clients.contains_key(&id),
        };
        if alive {
            match key {
                TxKey::Server(id) => self.terminate_server(id),
                TxKey::Client(id) => {
                    self.out.events.push_back(TxEvent::ClientTimeout { id });
                    self.terminate_client(id);
                }
            }
            self.purge_stale_timers();
        }
        alive
    }

    // -----------------------------------------------------------------------------------------
    // Time and outputs
    // -----------------------------------------------------------------------------------------

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.out.schedule.pop_due(now) {
            match entry.key {
                TxKey::Server(id) => {
                    let Some(tx) = self.servers.get_mut(&id) else {
                        continue;
                    };
                    if !tx.timers.take(entry.timer, entry.at) {
                        continue;
                    }
                    let reliable = tx.reliable();
                    let mut io = Io {
                        now,
                        cfg: &self.cfg,
                        key: entry.key,
                        reliable,
                        out: &mut self.out,
                    };
                    if tx.on_timer(&mut io, entry.timer) == Next::Terminate {
                        self.terminate_server(id);
                    }
                }
                TxKey::Client(id) => {
                    let Some(tx) = self.clients.get_mut(&id) else {
                        continue;
                    };
                    if !tx.timers.take(entry.timer, entry.at) {
                        continue;
                    }
                    let reliable = tx.reliable();
                    let mut io = Io {
                        now,
                        cfg: &self.cfg,
                        key: entry.key,
                        reliable,
                        out: &mut self.out,
                    };
                    if tx.on_timer(&mut io, entry.timer) == Next::Terminate {
                        self.terminate_client(id);
                    }
                }
            }
        }
        self.purge_stale_timers();
    }

    /// Drop heap entries of stopped timers and dead transactions from the top of the
    /// schedule, so that [`poll_timeout`](Self::poll_timeout) is a peek.
    fn purge_stale_timers(&mut self) {
        while let Some(entry) = self.out.schedule.peek() {
            let live = match entry.key {
                TxKey::Server(id) => self
                    .servers
                    .get(&id)
                    .is_some_and(|tx| tx.timers.is_armed(entry.timer, entry.at)),
                TxKey::Client(id) => self
                    .clients
                    .get(&id)
                    .is_some_and(|tx| tx.timers.is_armed(entry.timer, entry.at)),
            };
            if live {
                return;
            }
            self.out.schedule.pop();
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) has work at; `None` when no
    /// timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.out.schedule.peek().map(|e| e.at)
    }
}

/// Remove `key` from `map` if it still names `id` (a newer transaction may have taken it).
fn remove_if<K: std::hash::Hash + Eq, V: PartialEq>(map: &mut Map<K, V>, key: &K, id: V) {
    if map.get(key) == Some(&id) {
        map.remove(key);
    }
}
