//! # switchboard-media
//!
//! Switchboard's media layer: RTP/RTCP, SDP offer/answer, G.711, DTMF (RFC 4733, SIP INFO,
//! in-band), prompts, recording and the B2BUA relay. It depends on no other Switchboard crate.
//!
//! It is empty today: the SIP signaling core comes first, and calls with sound in them are the
//! next capability. Packet parsing, codecs and DTMF detection will be pure functions here; the
//! RTP socket loop will be the only I/O.
