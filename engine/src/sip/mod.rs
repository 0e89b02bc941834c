//! SIP (RFC 3261): the message model and parser, stream framing, transport vocabulary and the
//! transaction layer.
pub mod dialog;
pub mod framing;
pub mod info_dtmf;
pub mod msg;
pub mod transaction;
pub mod transport;
