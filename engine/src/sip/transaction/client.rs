//! The client machines: INVITE (RFC 3261 §17.1.1, with the Accepted state of RFC 6026 §7.2)
//! and non-INVITE (RFC 3261 §17.1.2).
use super::key::{raw_top_via, ClientKey};
use super::timer::{Timer, TimerTable};
use super::{ClientTxId, Io, Next, TxEvent};
use crate::sip::msg::{HeaderName, Method, Request, Response, Uri};
use crate::sip::transport::Target;
use bytes::Bytes;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ClientState {
    /// INVITE: sent, no response yet (Timers A and B).
    Calling,
    /// Non-INVITE: sent, no response yet (Timers E and F).
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (non-2xx for an INVITE): absorb its retransmissions.
    Completed,
    /// INVITE only, RFC 6026 §7.2: a 2xx arrived; further 2xx (retransmissions, other forks)
    /// still go to the TU, which ACKs each.
    Accepted,
}

/// What an INVITE's ACK for a non-2xx final response is made of (RFC 3261 §17.1.1.3): all but
/// the To header, which comes from the response.
#[derive(Debug)]
struct AckParts {
    uri: Uri,
    via: Option<Bytes>,
    routes: Vec<Bytes>,
    max_forwards: Bytes,
    from: Option<Bytes>,
    call_id: Option<Bytes>,
    seq: u32,
}

impl AckParts {
    fn of(invite: &Request) -> AckParts {
        let h = &invite.headers;
        AckParts {
            uri: invite.uri.clone(),
            via: raw_top_via(invite).map(|v| Bytes::copy_from_slice(v.as_bytes())),
            routes: h.get_all(&HeaderName::Route).cloned().collect(),
            max_forwards: h
                .get(&HeaderName::MaxForwards)
                .cloned()
                .unwrap_or(Bytes::from_static(b"70")),
            from: h.get(&HeaderName::From).cloned(),
            call_id: h.get(&HeaderName::CallId).cloned(),
            seq: h.cseq().map_or(0, |c| c.seq),
        }
    }

    /// §17.1.1.3: same Request-URI, Call-ID, From, top Via (so the same branch) and CSeq number
    /// as the INVITE, method ACK; the To of the response (with its tag); the INVITE's Route set.
    fn ack(&self, response: &Response) -> Request {
        let mut ack = Request::new(Method::Ack, self.uri.clone());
        let h = &mut ack.headers;
        if let Some(via) = &self.via {
            h.push(HeaderName::Via, via.clone());
        }
        for route in &self.routes {
            h.push(HeaderName::Route, route.clone());
        }
        h.push(HeaderName::MaxForwards, self.max_forwards.clone());
        if let Some(from) = &self.from {
            h.push(HeaderName::From, from.clone());
        }
        if let Some(to) = response.headers.get(&HeaderName::To) {
            h.push(HeaderName::To, to.clone());
        }
        if let Some(call_id) = &self.call_id {
            h.push(HeaderName::CallId, call_id.clone());
        }
        h.push(HeaderName::CSeq, format!("{} ACK", self.seq));
        ack
    }
}

#[derive(Debug)]
pub(super) struct ClientTx {
    pub id: ClientTxId,
    invite: bool,
    pub state: ClientState,
    target: Target,
    /// The request as it went on the wire: retransmissions re-send these bytes.
    request: Bytes,
    pub timers: TimerTable,
    /// The current interval of Timer A or E.
    interval: Duration,
    /// INVITE: the makings of the ACK for a non-2xx final response.
    ack_parts: Option<Box<AckParts>>,
    /// Completed (INVITE): the ACK sent, re-sent on every retransmission of the final response.
    ack: Option<Bytes>,
    pub key: ClientKey,
}

impl ClientTx {
    pub fn new(id: ClientTxId, request: &Request, key: ClientKey, target: Target) -> ClientTx {
        let invite = request.method == Method::Invite;
        ClientTx {
            id,
            invite,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            target,
            request: request.encode(),
            timers: TimerTable::default(),
            interval: Duration::ZERO,
            ack_parts: invite.then(|| Box::new(AckParts::of(request))),
            ack: None,
            key,
        }
    }

    pub fn reliable(&self) -> bool {
        self.target.transport.is_reliable()
    }

    /// §17.1.1.2 / §17.1.2.2: send the request; on an unreliable transport start the
    /// retransmission timer (A or E); start the transaction timeout (B or F).
    pub fn start(&mut self, io: &mut Io<'_>) {
        io.transmit(self.target, self.request.clone());
        let (retransmit, timeout) = if self.invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !io.reliable {
            self.interval = io.cfg.first_retransmit();
            io.arm_after(&mut self.timers, retransmit, self.interval);
        }
        io.arm(&mut self.timers, timeout);
    }

    /// The TU sent a CANCEL for this INVITE. RFC 3261 §9.1: if no final response arrives
    /// within 64·T1 of the CANCEL, the INVITE transaction is abandoned — Timer B is re-armed
    /// for that (in Calling it still runs from the INVITE; a CANCEL should not be sent before a
    /// provisional response anyway).
    pub fn on_cancel_sent(&mut self, io: &mut Io<'_>) {
        if self.invite && self.state == ClientState::Proceeding {
            io.arm(&mut self.timers, Timer::B);
        }
    }

    /// A response matched this transaction. Returns whether the TU sees it, and what next.
    pub fn on_response(&mut self, io: &mut Io<'_>, response: &Response) -> (bool, Next) {
        let code = response.code;
        if !(100..=699).contains(&code) {
            return (false, Next::Stay);
        }
        if self.invite {
            self.on_invite_response(io, response)
        } else {
            self.on_non_invite_response(io, code)
        }
    }

    fn on_invite_response(&mut self, io: &mut Io<'_>, response: &Response) -> (bool, Next) {
        let code = response.code;
        match self.state {
            ClientState::Calling | ClientState::Proceeding => {
                if code < 200 {
                    // §17.1.1.2: no more retransmissions, and Timer B only runs in Calling.
                    self.timers.stop_all();
                    self.state = ClientState::Proceeding;
                    (true, Next::Stay)
                } else if code < 300 {
                    // RFC 6026 §7.2.
                    self.timers.stop_all();
                    self.state = ClientState::Accepted;
                    io.arm(&mut self.timers, Timer::M);
                    (true, Next::Stay)
                } else {
                    self.timers.stop_all();
                    self.state = ClientState::Completed;
                    if let Some(parts) = &self.ack_parts {
                        let ack = parts.ack(response).encode();
                        io.transmit(self.target, ack.clone());
                        self.ack = Some(ack);
                    }
                    (true, self.lifetime(io, Timer::D))
                }
            }
            // §17.1.1.2: a retransmitted final response is answered with the same ACK and
            // not passed up.
            ClientState::Completed => {
                if code >= 300 {
                    if let Some(ack) = &self.ack {
                        io.transmit(self.target, ack.clone());
                    }
                }
                (false, Next::Stay)
            }
            // RFC 6026 §7.2: every 2xx goes to the TU (it ACKs each); anything else is dropped.
            ClientState::Accepted => ((200..300).contains(&code), Next::Stay),
            ClientState::Trying => (false, Next::Stay),
        }
    }

    fn on_non_invite_response(&mut self, io: &mut Io<'_>, code: u16) -> (bool, Next) {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {
                if code < 200 {
                    // §17.1.2.2: Timer E keeps running; from its next firing on it uses T2.
                    self.state = ClientState::Proceeding;
                    (true, Next::Stay)
                } else {
                    self.timers.stop_all();
                    self.state = ClientState::Completed;
                    (true, self.lifetime(io, Timer::K))
                }
            }
            // Retransmitted responses are absorbed.
            ClientState::Completed | ClientState::Calling | ClientState::Accepted => {
                (false, Next::Stay)
            }
        }
    }

    fn lifetime(&mut self, io: &mut Io<'_>, timer: Timer) -> Next {
        if io.cfg.duration(timer, io.reliable).is_zero() {
            Next::Terminate
        } else {
            io.arm(&mut self.timers, timer);
            Next::Stay
        }
    }

    pub fn on_timer(&mut self, io: &mut Io<'_>, timer: Timer) -> Next {
        match (timer, self.state) {
            // §17.1.1.2: Timer A doubles without a cap (Timer B ends it first).
            (Timer::A, ClientState::Calling) => {
                io.transmit(self.target, self.request.clone());
                self.interval = io.cfg.back_off(self.interval, false);
                io.arm_after(&mut self.timers, Timer::A, self.interval);
                Next::Stay
            }
            // §17.1.2.2: in Trying E doubles up to T2; in Proceeding it is reset to T2.
            (Timer::E, ClientState::Trying | ClientState::Proceeding) => {
                io.transmit(self.target, self.request.clone());
                self.interval = if self.state == ClientState::Trying {
                    io.cfg.back_off(self.interval, true)
                } else {
                    io.cfg.t2.max(io.cfg.first_retransmit())
                };
                io.arm_after(&mut self.timers, Timer::E, self.interval);
                Next::Stay
            }
            // In Proceeding, B runs only if re-armed by a CANCEL (see `on_cancel_sent`).
            (Timer::B, ClientState::Calling | ClientState::Proceeding)
            | (Timer::F, ClientState::Trying | ClientState::Proceeding) => {
                io.event(TxEvent::ClientTimeout { id: self.id });
                Next::Terminate
            }
            (Timer::D | Timer::K | Timer::M, _) => Next::Terminate,
            _ => Next::Stay,
        }
    }
}
