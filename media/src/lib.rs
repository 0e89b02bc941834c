//! # switchboard-media
//!
//! Switchboard's media layer: RTP/RTCP, SDP offer/answer, G.711, DTMF (RFC 4733, in-band),
//! and — as calls arrive — prompts, recording and the B2BUA relay. It depends on no other
//! Switchboard crate.
//!
//! Everything here is sans-IO: packet parsing and building, codecs, DTMF detection and SDP
//! negotiation are pure functions and state machines that take time as an input. The RTP
//! socket loop lives in the engine's shell.
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
