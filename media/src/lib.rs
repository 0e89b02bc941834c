//! # switchboard-media
//!
//! Switchboard's media layer: RTP/RTCP, SDP offer/answer, G.711, DTMF (RFC 4733, in-band),
//! prompts, recording and the B2BUA relay. It depends on no other Switchboard crate.
//!
//! Everything but [`rt`] is sans-IO: packet parsing and building, codecs, DTMF detection, SDP
//! negotiation and the per-stream [`session::Session`] are pure functions and state machines
//! that take time as an input. [`rt`] is the shell: worker threads that own the RTP/RTCP
//! sockets, pace all their sessions from one 20 ms clock each, and talk to the engine in the
//! vocabulary of [`control`] (commands in, events out).
//!
//! ```text
//! engine ── MediaEngine::open(id, near) ──▶ binds a port pair, picks a worker
//!        ── MediaEngine::command(Command) ─▶ worker ─▶ Session::{configure, play, ...}
//!        ◀── EventSink(MediaEvent) ──────── worker ◀─ Session::poll_event
//! ```
pub mod control;
pub mod dtmf;
pub mod g711;
pub mod prompt;
pub mod record;
pub mod rt;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod session;
