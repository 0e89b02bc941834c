//! Webhooks: every call event, pushed to the customer's systems (CRM, ticketing) as a signed JSON
//! POST, at least once and in order per call.
//!
//! ## Durable outbox
//! The shell hands each [`CallEvent`] to [`Outbox::enqueue`] in the order the endpoint raised it.
//! `enqueue` writes one row per subscribed webhook into the `webhook_outbox` table
//! (`migrations/sqlite/0004_webhook_outbox.sql`) in one transaction and returns once it is
//! committed; delivery happens later, from the table. So a receiver that is down for hours and an
//! engine restart in between both lose nothing: the rows wait, and [`spawn_delivery`] sends what is
//! left after a restart. Events of kinds no webhook subscribes to are not stored at all.
//!
//! ## Delivery contract
//! One worker per webhook. A row is attempted only when no earlier row (lower id) of the same call
//! and webhook is still pending, so the events of one call arrive in the order they happened. Rows
//! of different calls are independent: a call whose event keeps failing holds up only its own later
//! events, and the heads of different calls are sent concurrently. (Strict per-webhook order was
//! the alternative; it would let one poisoned event stop every call.)
//!
//! Each attempt is a `POST` of the stored body with
//!
//! | header | value |
//! |---|---|
//! | `Content-Type` | `application/json` |
//! | `X-Switchboard-Event` | the kind, `answered` |
//! | `X-Switchboard-Delivery` | the outbox row id; the same on every retry, so receivers de-duplicate on it |
//! | `X-Switchboard-Timestamp` | unix seconds when this attempt was signed |
//! | `X-Switchboard-Signature` | `v1=` + lowercase hex HMAC-SHA256(secret, `"<timestamp>.<body>"`) |
//!
//! The body is `{"event": "...", "call_id": "...", "at_ms": ..., "data": {...}}` (see
//! [`crate::events`]), serialized once at enqueue time: the bytes signed are the bytes stored. A
//! receiver recomputes the signature with [`verify`] (or its own HMAC) and should refuse timestamps
//! far from its clock, which stops replays of captured requests.
//!
//! Any 2xx marks the row delivered. Anything else (another status, a redirect, a timeout, a refused
//! or dropped connection) schedules a retry after `backoff_initial × 2^(failures − 1)`, capped at
//! `backoff_max`, then spread by ±20% ([`retry_delay`]) so that many rows failing together do not
//! come back together. With `max_attempts: N` a row is given up after its N-th failure: marked
//! `failed`, logged and counted, and the call's later events proceed. Delivery is at least once: a
//! receiver that processed a request but answered too slowly gets it again, with the same delivery
//! id.
//!
//! Delivered rows, and given-up rows, older than [`RETENTION`] are pruned hourly.
//!
//! ## Metrics
//! `webhook_deliveries_total{webhook, outcome}` with outcome `delivered`, `retry` or `failed` (given
//! up); `webhook_outbox_pending{webhook}`, the rows waiting. Failures are logged at warn with the
//! webhook's name, the status or error and the attempt number; never the secret or a signature.
mod delivery;
mod outbox;
#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use delivery::spawn_delivery;
pub use outbox::{Outbox, OutboxError};

use crate::config::WebhookConfig;
#[cfg(doc)]
use crate::events::CallEvent;

pub const EVENT_HEADER: &str = "X-Switchboard-Event";
pub const DELIVERY_HEADER: &str = "X-Switchboard-Delivery";
pub const TIMESTAMP_HEADER: &str = "X-Switchboard-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";

/// How long delivered and given-up rows stay in the outbox (for inspection) before pruning.
pub const RETENTION: Duration = Duration::from_secs(7 * 86_400);

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed), so this never fails.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Switchboard-Signature` value for `body` sent at `timestamp` (unix seconds):
/// `v1=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` (an `X-Switchboard-Signature` value) signs `body` at `timestamp` with
/// `secret`. Several comma-separated `v1=` values are accepted, any one matching, so that a
/// future sender can sign with an old and a new secret during a rotation. The comparison is
/// constant-time. Checking that `timestamp` is recent is the caller's business.
pub fn verify(secret: &[u8], timestamp: u64, body: &[u8], header: &str) -> bool {
    header.split(',').any(|part| {
        let Some(hex_mac) = part.trim().strip_prefix("v1=") else {
            return false;
        };
        let Ok(bytes) = hex::decode(hex_mac) else {
            return false;
        };
        mac(secret, timestamp, body).verify_slice(&bytes).is_ok()
    })
}

/// The wait before the next attempt after the `failures`-th failed one (1 for the first):
/// `initial × 2^(failures − 1)`, capped at `max`, then scaled by 0.8 to 1.2 as `unit` goes from 0
/// to 1 (`unit` is a uniform random number in `[0, 1)`; the caller draws it, so this stays
/// deterministic).
pub fn retry_delay(initial: Duration, max: Duration, failures: u32, unit: f64) -> Duration {
    let doublings = failures.saturating_sub(1);
    let base = match 1u32.checked_shl(doublings) {
        Some(factor) => initial.saturating_mul(factor).min(max),
        None => max,
    };
    base.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

/// What becomes of a row after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Try again at this unix millisecond.
    Retry { at_ms: i64 },
    /// `max_attempts` reached.
    GiveUp,
}

/// The decision after the `failures`-th failed attempt of a row, at `now_ms`.
pub(crate) fn after_failure(
    hook: &WebhookConfig,
    failures: u32,
    now_ms: i64,
    unit: f64,
) -> AfterFailure {
    if hook
        .max_attempts
        .is_some_and(|max: NonZeroU32| failures >= max.get())
    {
        return AfterFailure::GiveUp;
    }
    let delay = retry_delay(hook.backoff_initial, hook.backoff_max, failures, unit);
    AfterFailure::Retry {
        at_ms: now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
    }
}
