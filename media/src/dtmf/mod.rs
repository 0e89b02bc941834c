//! DTMF: RFC 4733 telephone-events and in-band tone detection (ITU-T Q.23/Q.24).
pub mod goertzel;
pub mod rfc4733;

pub use rfc4733::Digit;
