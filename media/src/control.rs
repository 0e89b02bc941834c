//! The vocabulary between a call and its media: the commands the engine's call core sends
//! to the media workers and the events they send back. Plain data, so the call core stays
//! sans-IO and its tests can script media behaviour.
use crate::dtmf::rfc4733::Digit;
use crate::prompt::Prompt;
use crate::sdp::{Codec, Direction};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One RTP stream (one call leg's media), named by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// What offer/answer settled for a stream: where to send, how, and which way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamParams {
    /// Where the peer said to send RTP. The worker latches to the address RTP really comes
    /// from (symmetric RTP, for phones behind NAT). `None`: hold (`c=0.0.0.0`), send nothing.
    pub remote: Option<SocketAddr>,
    /// Where to send RTCP (`a=rtcp`, else RTP port + 1); latched like RTP.
    pub remote_rtcp: Option<SocketAddr>,
    pub codec: Codec,
    /// The payload type to send audio with on this leg.
    pub payload_type: u8,
    /// RFC 4733 payload type as this leg negotiated it; `None`: the peer does not do RFC 4733.
    pub telephone_event: Option<u8>,
    /// From our point of view: `sends()` = we may send, `receives()` = the peer may send.
    pub direction: Direction,
    /// Run the in-band (Goertzel) detector on received audio (trunks that send tones).
    pub inband_dtmf: bool,
    /// Packetisation, ms (20 unless the peer asked otherwise).
    pub ptime: u32,
}

/// How a digit reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfVia {
    Rfc4733,
    Inband,
}

/// Which way a recorded channel carries audio: the left channel is what the session's peer
/// sent us (the caller on an inbound leg), the right what we sent them (prompt or the other
/// party's voice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRequest {
    pub path: PathBuf,
}

/// A command to the worker that owns a session.
#[derive(Clone, Debug)]
pub enum Command {
    /// Set (or change, after a re-INVITE) what offer/answer settled.
    Configure { id: SessionId, params: StreamParams },
    /// Play these prompts one after another (then `repeat` from the first, or report
    /// [`MediaEvent::PlayDone`] with `token`). Replaces what the session was sending; the
    /// RTP stream (SSRC, sequence, timestamp) continues, with the marker bit on the new
    /// talkspurt.
    Play {
        id: SessionId,
        prompts: Vec<Arc<Prompt>>,
        repeat: bool,
        token: u64,
    },
    /// Send what we receive straight back (echo test).
    Echo { id: SessionId },
    /// Stop playing or echoing; send nothing.
    Silence { id: SessionId },
    /// Relay RTP between two sessions of the same worker, both ways, rewriting
    /// SSRC/sequence/timestamp on source changes and transcoding PCMU↔PCMA when the legs
    /// differ. DTMF received on one leg is re-sent on the other as that leg negotiated it
    /// (RFC 4733 with its payload type; a leg without RFC 4733 gets [`MediaEvent::Digit`]
    /// with `relay_to` set so the engine can send SIP INFO).
    Bridge { a: SessionId, b: SessionId },
    /// End a relay (each session falls back to silence).
    Unbridge { id: SessionId },
    /// Send a DTMF digit as the session negotiated it (RFC 4733; in-band tones if the leg
    /// has no telephone-event).
    SendDtmf {
        id: SessionId,
        digit: Digit,
        duration: Duration,
    },
    /// Record this session, stereo: left = what the peer sent us, right = what we sent.
    Record {
        id: SessionId,
        request: RecordRequest,
    },
    /// Stop recording (a [`MediaEvent::Recorded`] follows).
    StopRecord { id: SessionId },
    /// Close the session (a [`MediaEvent::Closed`] follows; a recording is finished first).
    Close { id: SessionId },
}

impl Command {
    /// The session the command is for (a bridge is routed by `a`).
    pub fn session(&self) -> SessionId {
        match self {
            Command::Configure { id, .. }
            | Command::Play { id, .. }
            | Command::Echo { id }
            | Command::Silence { id }
            | Command::Unbridge { id }
            | Command::SendDtmf { id, .. }
            | Command::Record { id, .. }
            | Command::StopRecord { id }
            | Command::Close { id } => *id,
            Command::Bridge { a, .. } => *a,
        }
    }
}

/// Counters of one session, reported when it closes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub packets_sent: u64,
    pub octets_sent: u64,
    pub packets_received: u64,
    pub octets_received: u64,
    /// Cumulative loss as RFC 3550 counts it (may be negative with duplicates).
    pub packets_lost: i64,
    /// Interarrival jitter, timestamp units.
    pub jitter: u32,
    /// Packets from an address other than the latched one, dropped.
    pub packets_foreign: u64,
}

/// What a worker tells the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    /// A digit ended (reported once, however it was sent). `relay_to` is the bridged
    /// session that has no RFC 4733 (the engine relays the digit by SIP INFO).
    Digit {
        id: SessionId,
        digit: Digit,
        via: DtmfVia,
        duration: Duration,
        relay_to: Option<SessionId>,
    },
    /// The prompts of a non-repeating `Play` have all been sent.
    PlayDone { id: SessionId, token: u64 },
    /// No RTP for the configured inactivity time while the peer was meant to send.
    Inactive { id: SessionId, silent_for: Duration },
    /// The session now sends to this address: RTP came from there (symmetric RTP).
    Latched { id: SessionId, remote: SocketAddr },
    /// A recording was finished (on `StopRecord`, `Close` or a write error).
    Recorded {
        id: SessionId,
        result: Result<crate::record::RecordingInfo, String>,
    },
    /// The session is closed and its ports are free.
    Closed { id: SessionId, stats: SessionStats },
}

impl MediaEvent {
    pub fn session(&self) -> SessionId {
        match self {
            MediaEvent::Digit { id, .. }
            | MediaEvent::PlayDone { id, .. }
            | MediaEvent::Inactive { id, .. }
            | MediaEvent::Latched { id, .. }
            | MediaEvent::Recorded { id, .. }
            | MediaEvent::Closed { id, .. } => *id,
        }
    }
}
