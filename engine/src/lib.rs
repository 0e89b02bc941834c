//! # switchboard-engine
//!
//! The SIP side of Switchboard: message parsing, transports, RFC 3261 transactions and dialogs,
//! the registrar, digest authentication, calls (the B2BUA in [`endpoint`]), configuration and
//! the database store.
//!
//! ## Architecture: sans-IO core, thin async shell
//! Every protocol decision is made in plain structs that never touch a socket or a clock
//! ([`sip::msg`], [`sip::transaction`], [`registrar`], [`auth`], [`endpoint`]). They take inputs — a datagram,
//! a stream chunk, the current time as a value — and produce outputs: messages to transmit, the next
//! instant they want to be woken at, and events. The [`rt`] module is the only place with sockets,
//! tokio tasks, timers and the database.
//!
//! ## Drive-loop contract
//! The shell feeds [`endpoint::Endpoint`] with `handle_*(now, …)` calls, then drains
//! `poll_transmit()` until `None`, asks `poll_timeout()` for the next wake-up and calls
//! `handle_timeout(now)` when it is reached. The core never reads a clock itself
//! (`clippy.toml` forbids `Instant::now` and `SystemTime::now` outside `rt`).
pub mod acd;
pub mod auth;
pub mod cdr;
pub mod config;
pub mod endpoint;
pub mod events;
pub mod ivr;
pub mod live;
pub mod registrar;
pub mod rt;
pub mod sip;
pub mod store;
pub mod trunk;
pub mod webhook;
pub(crate) mod yamlpos;
