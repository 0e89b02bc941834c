//! The server machines: INVITE (RFC 3261 §17.2.1, with the Accepted state of RFC 6026 §7.1)
//! and non-INVITE (RFC 3261 §17.2.2).
use super::key::{DialogAckKey, ServerKey};
use super::timer::{Timer, TimerTable};
use super::{Io, Next, ServerTxId, TxEvent};
use crate::sip::msg::{HeaderName, Request, Response};
use crate::sip::transport::Target;
use bytes::Bytes;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ServerState {
    /// Non-INVITE only: nothing sent yet; retransmissions are absorbed silently.
    Trying,
    /// A provisional response may have been sent (for an INVITE: the state it starts in).
    Proceeding,
    /// A final response was sent (non-2xx for an INVITE): it is re-sent on retransmissions.
    Completed,
    /// INVITE only: the ACK for the non-2xx final arrived; absorb its retransmissions.
    Confirmed,
    /// INVITE only, RFC 6026 §7.1: a 2xx was sent; absorb INVITE retransmissions, pass ACKs up.
    Accepted,
}

/// What became of an ACK that matched an INVITE server transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AckOutcome {
    /// The ACK for our non-2xx final response (or a retransmission of it): it ends here.
    Absorbed,
    /// An ACK in Accepted: it acknowledges a 2xx, so it belongs to the dialog layer.
    ToTu,
}

#[derive(Debug)]
pub(super) struct ServerTx {
    pub id: ServerTxId,
    pub invite: bool,
    pub state: ServerState,
    reply_to: Target,
    pub timers: TimerTable,
    /// The current interval of Timer G.
    interval: Duration,
    /// The last response sent, as it went on the wire: retransmissions re-send these bytes.
    last: Option<Bytes>,
    /// INVITE: the request, kept for the TU (the 487 a CANCEL calls for answers it) and for
    /// the 100 Trying sent if the TU stays silent for 200 ms (RFC 3261 §17.2.1).
    pub request: Option<Box<Request>>,
    /// Where this transaction sits in the layer's index, for removal.
    pub key: ServerKey,
    /// RFC 2543 INVITE with a final response: the key its ACK will have.
    pub legacy_ack: Option<ServerKey>,
    /// INVITE: the dialog identity of the ACK for a 2xx (the To tag is filled in by the 2xx).
    pub dialog_ack: Option<DialogAckKey>,
    /// Accepted: an ACK for the 2xx has been seen.
    acked: bool,
    /// Accepted: retransmit the 2xx on Timer G until an ACK arrives (RFC 3261 §13.3.1.4,
    /// done here on the TU's behalf when the layer is configured to).
    retransmit_2xx: bool,
}

impl ServerTx {
    pub fn new(
        id: ServerTxId,
        request: &Request,
        key: ServerKey,
        reply_to: Target,
        retransmit_2xx: bool,
    ) -> ServerTx {
        let invite = request.method == crate::sip::msg::Method::Invite;
        ServerTx {
            id,
            invite,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            reply_to,
            timers: TimerTable::default(),
            interval: Duration::ZERO,
            last: None,
            request: invite.then(|| Box::new(request.clone())),
            key,
            legacy_ack: None,
            dialog_ack: if invite {
                DialogAckKey::for_invite(&request.headers, None)
            } else {
                None
            },
            acked: false,
            retransmit_2xx,
        }
    }

    pub fn reply_to(&self) -> Target {
        self.reply_to
    }

    pub fn reliable(&self) -> bool {
        self.reply_to.transport.is_reliable()
    }

    /// RFC 3261 §17.2.1: the INVITE machine starts the 200 ms 100 Trying timer.
    pub fn start(&mut self, io: &mut Io<'_>) {
        if self.invite {
            io.arm(&mut self.timers, Timer::Trying);
        }
    }

    fn send(&mut self, io: &mut Io<'_>, payload: Bytes) {
        io.transmit(self.reply_to, payload.clone());
        self.last = Some(payload);
    }

    fn resend_last(&self, io: &mut Io<'_>) {
        if let Some(last) = &self.last {
            io.transmit(self.reply_to, last.clone());
        }
    }

    fn send_trying(&mut self, io: &mut Io<'_>) {
        self.timers.stop(Timer::Trying);
        let Some(request) = &self.request else {
            return;
        };
        let mut trying = Response::for_request(request, 100);
        // RFC 3261 §8.2.6.1: a 100 Trying copies the request's Timestamp.
        if let Some(ts) = request.headers.get(&HeaderName::Timestamp) {
            trying.headers.push(HeaderName::Timestamp, ts.clone());
        }
        self.send(io, trying.encode());
    }

    /// A retransmission of the request that created this transaction.
    pub fn on_retransmission(&mut self, io: &mut Io<'_>) {
        match self.state {
            // Non-INVITE, nothing from the TU yet: absorbed silently (§17.2.2).
            ServerState::Trying => {}
            // The client is still waiting and the TU has said nothing: answer 100 now rather
            // than at 200 ms, which stops the client's Timer A.
            ServerState::Proceeding if self.invite && self.last.is_none() => self.send_trying(io),
            // §17.2.1 / §17.2.2: re-send the last provisional or final response. In Accepted
            // that is the 2xx: re-sending it helps a client that lost it.
            ServerState::Proceeding | ServerState::Completed | ServerState::Accepted => {
                self.resend_last(io);
            }
            ServerState::Confirmed => {}
        }
    }

    /// An ACK that matched this (INVITE) transaction.
    pub fn on_ack(&mut self, io: &mut Io<'_>) -> (AckOutcome, Next) {
        if !self.invite {
            return (AckOutcome::Absorbed, Next::Stay);
        }
        match self.state {
            // §17.2.1: Completed → Confirmed; G and H stop, I starts (zero when reliable).
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.timers.stop_all();
                (AckOutcome::Absorbed, self.lifetime(io, Timer::I))
            }
            ServerState::Accepted => {
                self.mark_acked();
                (AckOutcome::ToTu, Next::Stay)
            }
            // An ACK before any final response acknowledges nothing; one in Confirmed is a
            // retransmission.
            ServerState::Trying | ServerState::Proceeding | ServerState::Confirmed => {
                (AckOutcome::Absorbed, Next::Stay)
            }
        }
    }

    /// An ACK for our 2xx arrived (matched by dialog identity, RFC 3261 §13.3.1.4).
    pub fn mark_acked(&mut self) {
        if self.state == ServerState::Accepted {
            self.acked = true;
            self.timers.stop(Timer::G);
        }
    }

    /// The TU sends `response` (already checked to be 100–699). `None` if this state accepts no
    /// such response (a second final response, anything after Completed).
    pub fn respond(&mut self, io: &mut Io<'_>, response: &Response) -> Option<Next> {
        let provisional = response.code < 200;
        let success = (200..300).contains(&response.code);
        match (self.invite, self.state) {
            // §17.2.2.
            (false, ServerState::Trying | ServerState::Proceeding) => {
                self.send(io, response.encode());
                if provisional {
                    self.state = ServerState::Proceeding;
                    Some(Next::Stay)
                } else {
                    self.state = ServerState::Completed;
                    Some(self.lifetime(io, Timer::J))
                }
            }
            // §17.2.1.
            (true, ServerState::Proceeding) => {
                self.timers.stop(Timer::Trying);
                self.send(io, response.encode());
                if provisional {
                    return Some(Next::Stay);
                }
                if success {
                    // RFC 6026 §7.1.
                    self.state = ServerState::Accepted;
                    if self.retransmit_2xx && !self.reliable() {
                        self.start_retransmissions(io);
                    }
                    io.arm(&mut self.timers, Timer::L);
                } else {
                    self.state = ServerState::Completed;
                    if !self.reliable() {
                        self.start_retransmissions(io);
                    }
                    io.arm(&mut self.timers, Timer::H);
                }
                Some(Next::Stay)
            }
            // RFC 6026 §7.1: the TU's own retransmissions of the 2xx pass through.
            (true, ServerState::Accepted) if success => {
                self.send(io, response.encode());
                Some(Next::Stay)
            }
            _ => None,
        }
    }

    fn start_retransmissions(&mut self, io: &mut Io<'_>) {
        self.interval = io.cfg.first_retransmit();
        io.arm_after(&mut self.timers, Timer::G, self.interval);
    }

    /// Arm the timer that ends the current state, or end it now if that timer is zero.
    fn lifetime(&mut self, io: &mut Io<'_>, timer: Timer) -> Next {
        if io.cfg.duration(timer, self.reliable()).is_zero() {
            Next::Terminate
        } else {
            io.arm(&mut self.timers, timer);
            Next::Stay
        }
    }

    pub fn on_timer(&mut self, io: &mut Io<'_>, timer: Timer) -> Next {
        match timer {
            Timer::Trying => {
                if self.state == ServerState::Proceeding && self.last.is_none() {
                    self.send_trying(io);
                }
                Next::Stay
            }
            // §17.2.1: re-send the final response, doubling up to T2. In Accepted (only when
            // the layer retransmits 2xx for the TU) the same schedule, §13.3.1.4.
            Timer::G => {
                let due = self.state == ServerState::Completed
                    || (self.state == ServerState::Accepted && !self.acked);
                if due {
                    self.resend_last(io);
                    self.interval = io.cfg.back_off(self.interval, true);
                    io.arm_after(&mut self.timers, Timer::G, self.interval);
                }
                Next::Stay
            }
            Timer::H => {
                io.event(TxEvent::AckTimeout { id: self.id });
                Next::Terminate
            }
            Timer::L => {
                if self.retransmit_2xx && !self.acked {
                    io.event(TxEvent::AckTimeout { id: self.id });
                }
                Next::Terminate
            }
            Timer::I | Timer::J => Next::Terminate,
            Timer::A | Timer::B | Timer::D | Timer::E | Timer::F | Timer::K | Timer::M => {
                Next::Stay
            }
        }
    }
}
