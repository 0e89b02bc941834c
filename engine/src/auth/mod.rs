//! SIP Digest authentication (RFC 7616, RFC 8760, RFC 3261 §22) and brute-force lock-out, as a
//! sans-IO core: no sockets, no clock, no database. Time arrives as a value — wall-clock
//! `unix_secs: u64` for nonce timestamps (nonces outlive restarts and may be checked by a peer
//! node), a monotonic `now: Instant` for lock-out windows and cool-downs.
//!
//! - [`digest`]: parse `Authorization` / `Proxy-Authorization` ([`Credentials::parse`]), build
//!   `WWW-Authenticate` / `Proxy-Authenticate` challenges ([`Verifier::challenges`]: SHA-256 then
//!   MD5), verify responses against a stored HA1 ([`Verifier::verify`] → [`Verdict`]). Nonces are
//!   stateless and self-validating (HMAC-SHA256); nonce counts are tracked in a bounded table.
//! - [`lockout`]: failure counting per source and per account name ([`Lockout`]).
//!
//! A registrar (or the INVITE path) drives them in this order:
//! ```text
//! Lockout::check(now, src_ip, username)    Locked  → 403 (do not verify)
//! Credentials::parse(header)               Err(UnsupportedScheme) / no header → 401 + challenges
//!                                          other Err → 400 (or 401 + challenges)
//! compare creds.uri with the Request-URI   mismatch → 400
//! Verifier::verify(method, &creds, account_secret_or_none, unix_secs)
//!   Ok        → Lockout::record_success(username); proceed
//!   Stale     → 401 + challenges(stale = true)
//!   Fail(r)   → if r.counts_as_failure(): Lockout::record_failure(now, src_ip, Some(username))
//!               → log/count each LockEvent once; 401 + challenges(stale = false)
//! ```
//! The account lookup must cost the same for unknown users (look up, then pass `None`), so that
//! neither the verdict nor the timing tells whether a username exists.

pub mod digest;
pub mod lockout;

pub use digest::{
    authorization, compute_response, ha1, AccountSecret, Algorithm, Challenge as DigestChallenge,
    Credentials, DigestConfig, FailReason, NonceStatus, ParseError, Qop, QopAuth, SecretError,
    ServerSecret, Verdict, Verifier,
};
pub use lockout::{Admission, LockEvent, LockKey, Lockout, LockoutConfig, MAX_ACCOUNT_KEY_BYTES};
