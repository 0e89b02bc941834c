//! Bearer tokens and roles.
//!
//! A token reads `sb_<id>_<secret>`: `id` (12 hex digits) is public and names the row, `secret`
//! is 32 random bytes in hex. It is shown once, when created; the store keeps only the SHA-256 of
//! the whole token, so neither a copy of the database nor a log line yields a usable token. Logs
//! name a token by its id, never by its secret.
//!
//! Every `/api/v1` endpoint except the OpenAPI document takes a [`Caller`] (the
//! `Authorization: Bearer …` extractor) and states which roles it admits with
//! [`Caller::require`]. A missing, malformed, unknown or revoked token is `401` with
//! `WWW-Authenticate: Bearer`; a valid token of another role is `403`. Wrong tokens are counted
//! per source address ([`FailureLimiter`]): past the limit the address gets `429` until a cooldown
//! passes, which makes guessing secrets over HTTP pointless. A request with no token at all
//! guesses nothing and is not counted.
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchboard_engine::store::tokens::TokenRow;
use switchboard_engine::store::{Store, StoreError};

/// What a token may do. Endpoints list the roles they admit; there is no hierarchy beyond that
/// list (an admin is admitted where the endpoint says so, like any other role).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including tokens.
    Admin,
    /// Team leads: records, reports, call monitoring.
    Supervisor,
    /// A desk agent's own calls.
    Agent,
    /// Integrations: records, click-to-dial, webhooks.
    Developer,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Supervisor, Role::Agent, Role::Developer];

    /// The stable code stored and sent.
    pub fn code(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Agent => "agent",
            Role::Developer => "developer",
        }
    }

    pub fn from_code(code: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.code() == code)
    }
}

/// How long a token's id is, in hex digits.
const ID_HEX: usize = 12;
/// How long a token's secret is, in hex digits (32 bytes).
const SECRET_HEX: usize = 64;

/// A new token: the row to store, and the token itself, to show once.
pub fn new_token(name: &str, role: Role, now_ms: i64) -> (TokenRow, String) {
    let id = hex::encode(rand::random::<[u8; ID_HEX / 2]>());
    let secret = hex::encode(rand::random::<[u8; SECRET_HEX / 2]>());
    let token = format!("sb_{id}_{secret}");
    let row = TokenRow {
        id,
        name: name.to_owned(),
        role: role.code().to_owned(),
        hash: hash(&token),
        created_at_ms: now_ms,
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    (row, token)
}

/// Creates and stores a token; returns the stored row and the token (the only time it exists).
pub async fn create_token(
    store: &Store,
    name: &str,
    role: Role,
    now_ms: i64,
) -> Result<(TokenRow, String), StoreError> {
    let (row, token) = new_token(name, role, now_ms);
    store.insert_token(&row).await?;
    Ok((row, token))
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The id of a well-formed token (`sb_<12 hex>_<64 hex>`).
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("sb_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some(id)
}

/// Compares without an early exit, so timing does not tell how much of a hash matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Failed authentications per source address: `max_failures` within `window` block the address
/// for `cooldown`. Sans-IO: the caller passes `now`.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    cooldown: Duration,
    by_source: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

/// Beyond this many tracked addresses, stale entries are dropped before adding one.
const MAX_TRACKED: usize = 10_000;

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration, cooldown: Duration) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            cooldown,
            by_source: Mutex::new(HashMap::new()),
        }
    }

    /// How long `source` must still wait, if it is blocked.
    pub fn blocked(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.by_source.lock().expect("limiter lock");
        let until = map.get(&source)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure; returns the block it started, if this one reached the limit.
    pub fn fail(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = self.by_source.lock().expect("limiter lock");
        if map.len() >= MAX_TRACKED && !map.contains_key(&source) {
            let horizon = self.window.max(self.cooldown);
            map.retain(|_, f| now.duration_since(f.since) < horizon);
        }
        let f = map.entry(source).or_insert(Failures {
            since: now,
            count: 0,
            blocked_until: None,
        });
        if now.duration_since(f.since) >= self.window {
            *f = Failures {
                since: now,
                count: 0,
                blocked_until: f.blocked_until.filter(|&u| u > now),
            };
        }
        f.count += 1;
        if f.count >= self.max_failures {
            f.blocked_until = Some(now + self.cooldown);
            f.count = 0;
            f.since = now;
            return Some(self.cooldown);
        }
        None
    }
}

impl Default for FailureLimiter {
    /// 10 failures a minute, then a minute's cooldown.
    fn default() -> FailureLimiter {
        FailureLimiter::new(10, Duration::from_secs(60), Duration::from_secs(60))
    }
}

/// The authenticated caller of an endpoint.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token_id: String,
    /// The name the token was created with (what operation logs show as its actor).
    pub token_name: String,
    pub role: Role,
}

impl Caller {
    /// `403 forbidden` unless the caller's role is one of `allowed`.
    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                role: self.role.code(),
                allowed: allowed.iter().map(|r| r.code()).collect(),
            })
        }
    }
}

/// A successful use is written at most this often per token.
const TOUCH_EVERY_MS: i64 = 60_000;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let now = crate::clock::monotonic();
        if let Some(wait) = state.limiter.blocked(source, now) {
            return Err(ApiError::TooManyRequests {
                retry_after_s: wait.as_secs().max(1),
            });
        }
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let id = presented.and_then(token_id);
        let row = match (presented, id) {
            (Some(token), Some(id)) => state
                .store
                .token(id)
                .await?
                .filter(|row| row.revoked_at_ms.is_none() && same(&row.hash, &hash(token))),
            _ => None,
        };
        let Some(row) = row else {
            // Only a presented token counts: a request without credentials guesses nothing.
            let blocked = presented.and_then(|_| state.limiter.fail(source, now));
            tracing::warn!(
                %source,
                token_id = id.unwrap_or("-"),
                presented = presented.is_some(),
                blocked_s = blocked.map(|d| d.as_secs()),
                "API authentication failed"
            );
            return Err(ApiError::Unauthorized);
        };
        let Some(role) = Role::from_code(&row.role) else {
            return Err(ApiError::internal(format!(
                "token {} has an unknown role {:?}",
                row.id, row.role
            )));
        };
        let now_ms = crate::clock::unix_ms();
        if row
            .last_used_at_ms
            .is_none_or(|last| now_ms - last >= TOUCH_EVERY_MS)
        {
            state.store.touch_token(&row.id, now_ms).await?;
        }
        Ok(Caller {
            token_id: row.id,
            token_name: row.name,
            role,
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a base instant; the limiter is driven by offsets
mod tests {
    use super::*;

    #[test]
    fn a_new_token_parses_and_only_its_hash_is_kept() {
        let (row, token) = new_token("ci", Role::Developer, 5);
        assert_eq!(token_id(&token), Some(row.id.as_str()));
        assert_eq!(row.hash, hash(&token));
        assert!(!row.hash.contains(&token[16..]), "the secret is not stored");
        assert_eq!(row.role, "developer");
        for bad in [
            "",
            "sb_",
            "sb_abc_def",
            &token[..token.len() - 1],
            &token.replace("sb_", "sk_"),
        ] {
            assert_eq!(token_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn roles_round_trip() {
        for &r in Role::ALL {
            assert_eq!(Role::from_code(r.code()), Some(r));
        }
        assert_eq!(Role::from_code("root"), None);
    }

    #[test]
    fn ten_failures_block_a_source_for_the_cooldown() {
        let limiter = FailureLimiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..9 {
            assert_eq!(limiter.fail(ip, t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(limiter.blocked(ip, t0 + Duration::from_secs(9)), None);
        assert!(limiter.fail(ip, t0 + Duration::from_secs(9)).is_some());
        assert!(limiter.blocked(ip, t0 + Duration::from_secs(10)).is_some());
        assert_eq!(limiter.blocked(other, t0 + Duration::from_secs(10)), None);
        assert_eq!(limiter.blocked(ip, t0 + Duration::from_secs(70)), None);
    }

    #[test]
    fn failures_spread_over_more_than_a_window_do_not_block() {
        let limiter = FailureLimiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..30 {
            assert_eq!(
                limiter.fail(ip, t0 + Duration::from_secs(i * 7)),
                None,
                "failure {i}"
            );
        }
    }
}
