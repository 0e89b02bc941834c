//! Brute-force lock-out for Digest authentication: counts failed attempts per source address and
//! per account name, and refuses both for a cool-down once either passes its threshold.
//!
//! Sans-IO: every method takes `now` (a monotonic [`Instant`] from the shell); nothing reads a
//! clock. Guidance: OWASP Authentication Cheat Sheet ("account lockout"), RFC 3261 §26.3.2.2 on
//! registrar password guessing.
//!
//! ## How the caller drives it
//! 1. [`Lockout::check`] before verifying; `Locked` → answer without verifying (403 Forbidden, or a
//!    fresh 401 — but never run the digest, so a locked key gives no oracle).
//! 2. After [`super::Verifier::verify`]: on a failure that
//!    [counts](super::FailReason::counts_as_failure), [`Lockout::record_failure`]; each returned
//!    [`LockEvent`] is a key that just became locked (log and count it once); on success,
//!    [`Lockout::record_success`].
//! 3. Now and then (e.g. every minute), [`Lockout::prune`].
//!
//! ## Decisions
//! - **Accounts are tracked by the name as sent, known or not.** Whether a name is locked must not
//!   reveal whether it exists, so unknown names are counted exactly like real ones. Names are
//!   clipped to [`MAX_ACCOUNT_KEY_BYTES`] so a key costs bounded memory.
//! - **Sources are tracked per IPv4 address and per IPv6 /64** (configurable): one IPv6 host
//!   usually owns a whole /64, so per-address counting would not stop it. IPv4-mapped IPv6
//!   addresses count as IPv4.
//! - **The source threshold is separate and higher** ([`LockoutConfig::ip_max_failures`]): a whole
//!   office behind one NAT address shares it, and one phone with a stale password must lock its
//!   own account, not every desk in the building. An enumerating attacker still hits it.
//! - **Success clears the account's count, not the source's**: otherwise an attacker holding one
//!   valid account could reset its source counter between guesses at other accounts.
//! - **A lock is not extended** by attempts during it (the caller does not verify them anyway), so
//!   a cool-down always ends on time.
//! - **Memory is bounded**: each table holds at most [`LockoutConfig::max_tracked`] keys. When full,
//!   idle keys (no lock, no failure within the window) go first; if still full, the least recently
//!   failed unlocked keys are evicted in a batch of one eighth of the table (so the scan is
//!   amortised), and locked keys only if nothing else is left.
//! - The per-account lock lets anyone lock a known account for one cool-down with a few bad
//!   attempts: the classic lock-out trade-off, bounded by the short default cool-down.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv6Net};

/// Account names longer than this (in bytes) are tracked by their first bytes only.
pub const MAX_ACCOUNT_KEY_BYTES: usize = 128;

/// Lock-out settings. Plain struct with `Default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Failures per account name within `window` that lock it (default 5). `0` is treated as 1.
    pub max_failures: u32,
    /// Failures per source (IPv4 address / IPv6 prefix) within `window` that lock it (default 20,
    /// higher than per account because of NAT). `0` is treated as 1.
    pub ip_max_failures: u32,
    /// How long a failure is remembered (default 60 s).
    pub window: Duration,
    /// How long a lock lasts (default 300 s).
    pub cooldown: Duration,
    /// IPv6 sources are grouped by this prefix length (default 64; clamped to 128).
    pub ipv6_prefix_len: u8,
    /// Most keys tracked per table (sources, accounts); default 100 000.
    pub max_tracked: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            max_failures: 5,
            ip_max_failures: 20,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(300),
            ipv6_prefix_len: 64,
            max_tracked: 100_000,
        }
    }
}

/// What is locked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A source: an IPv4 /32 or an IPv6 prefix (by default /64).
    Ip(IpNet),
    /// An account name as sent (clipped to [`MAX_ACCOUNT_KEY_BYTES`]).
    Account(String),
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockKey::Ip(net) => write!(f, "source {net}"),
            LockKey::Account(name) => write!(f, "account {name:?}"),
        }
    }
}

/// The answer of [`Lockout::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Go on and verify.
    Allowed,
    /// Refuse without verifying until `until` (when both keys are locked, the later one).
    Locked {
        /// When the lock lifts.
        until: Instant,
        /// Which key is locked.
        key: LockKey,
    },
}

/// A key that just became locked: reported once per lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEvent {
    /// The key.
    pub key: LockKey,
    /// When the lock lifts.
    pub until: Instant,
    /// Failures within the window that triggered it (the threshold).
    pub failures: u32,
}

#[derive(Debug)]
struct Entry {
    /// Failure times within the window, oldest first; never longer than the threshold.
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

impl Entry {
    fn is_locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|u| u > now)
    }

    fn forget_old(&mut self, now: Instant, window: Duration) {
        while self
            .failures
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            self.failures.pop_front();
        }
    }

    fn is_idle(&self, now: Instant, window: Duration) -> bool {
        !self.is_locked(now)
            && self
                .failures
                .back()
                .is_none_or(|&t| now.saturating_duration_since(t) >= window)
    }
}

/// One bounded table of keys.
#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, Entry>,
    capacity: usize,
    threshold: u32,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(capacity: usize, threshold: u32) -> Self {
        Table {
            map: HashMap::new(),
            capacity: capacity.max(1),
            threshold: threshold.max(1),
        }
    }

    fn locked_until(&self, key: &K, now: Instant) -> Option<Instant> {
        self.map
            .get(key)
            .filter(|e| e.is_locked(now))
            .and_then(|e| e.locked_until)
    }

    /// Records a failure; returns the lock's end if this failure locked the key.
    fn fail(
        &mut self,
        key: &K,
        now: Instant,
        window: Duration,
        cooldown: Duration,
    ) -> Option<Instant> {
        if !self.map.contains_key(key) {
            self.make_room(now, window);
        }
        let threshold = self.threshold;
        let entry = self.map.entry(key.clone()).or_insert_with(|| Entry {
            failures: VecDeque::new(),
            locked_until: None,
            last_seen: now,
        });
        entry.last_seen = entry.last_seen.max(now);
        if entry.is_locked(now) {
            return None;
        }
        entry.locked_until = None;
        entry.forget_old(now, window);
        entry.failures.push_back(now);
        if entry.failures.len() < threshold as usize {
            return None;
        }
        entry.failures.clear();
        let until = now + cooldown;
        entry.locked_until = Some(until);
        Some(until)
    }

    fn clear(&mut self, key: &K) {
        if let Some(e) = self.map.get_mut(key) {
            e.failures.clear();
        }
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        self.map.retain(|_, e| !e.is_idle(now, window));
    }

    fn make_room(&mut self, now: Instant, window: Duration) {
        if self.map.len() < self.capacity {
            return;
        }
        self.prune(now, window);
        if self.map.len() < self.capacity {
            return;
        }
        // Evict a batch so that an attacker flooding new keys pays for the scan only once per
        // capacity/8 insertions. Unlocked keys first, least recently failed first.
        let batch = (self.capacity / 8).max(1);
        let mut order: Vec<(bool, Instant, K)> = self
            .map
            .iter()
            .map(|(k, e)| (e.is_locked(now), e.last_seen, k.clone()))
            .collect();
        if batch < order.len() {
            order.select_nth_unstable_by_key(batch, |e| (e.0, e.1));
        }
        for (_, _, k) in order.into_iter().take(batch) {
            self.map.remove(&k);
        }
    }
}

/// Failure counting and locks per source and per account. See the module docs.
#[derive(Debug)]
pub struct Lockout {
    config: LockoutConfig,
    ips: Table<IpNet>,
    accounts: Table<String>,
}

impl Lockout {
    /// A lock-out with `config`.
    pub fn new(mut config: LockoutConfig) -> Self {
        config.ipv6_prefix_len = config.ipv6_prefix_len.min(128);
        Lockout {
            ips: Table::new(config.max_tracked, config.ip_max_failures),
            accounts: Table::new(config.max_tracked, config.max_failures),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LockoutConfig {
        &self.config
    }

    /// The key `ip` is counted under: the address for IPv4, its prefix for IPv6.
    pub fn ip_key(&self, ip: IpAddr) -> IpNet {
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
            IpAddr::V6(v6) => Ipv6Net::new(v6, self.config.ipv6_prefix_len)
                .map_or(IpNet::from(IpAddr::V6(v6)), |n| IpNet::V6(n.trunc())),
        }
    }

    /// Is this attempt allowed? Call before verifying.
    pub fn check(&self, now: Instant, ip: IpAddr, account: Option<&str>) -> Admission {
        let ip_key = self.ip_key(ip);
        let mut verdict = self
            .ips
            .locked_until(&ip_key, now)
            .map(|until| (until, LockKey::Ip(ip_key)));
        if let Some(name) = account {
            let name = account_key(name);
            if let Some(until) = self.accounts.locked_until(&name, now) {
                if verdict.as_ref().is_none_or(|(u, _)| until > *u) {
                    verdict = Some((until, LockKey::Account(name)));
                }
            }
        }
        match verdict {
            None => Admission::Allowed,
            Some((until, key)) => Admission::Locked { until, key },
        }
    }

    /// Records a failed attempt (known or unknown account alike). Returns the keys that this
    /// failure locked — each lock is reported exactly once; usually the list is empty (no
    /// allocation), and it holds two events when source and account lock together.
    pub fn record_failure(
        &mut self,
        now: Instant,
        ip: IpAddr,
        account: Option<&str>,
    ) -> Vec<LockEvent> {
        let (window, cooldown) = (self.config.window, self.config.cooldown);
        let mut events = Vec::new();
        let ip_key = self.ip_key(ip);
        if let Some(until) = self.ips.fail(&ip_key, now, window, cooldown) {
            events.push(LockEvent {
                key: LockKey::Ip(ip_key),
                until,
                failures: self.ips.threshold,
            });
        }
        if let Some(name) = account {
            let name = account_key(name);
            if let Some(until) = self.accounts.fail(&name, now, window, cooldown) {
                events.push(LockEvent {
                    key: LockKey::Account(name),
                    until,
                    failures: self.accounts.threshold,
                });
            }
        }
        events
    }

    /// Records a successful authentication: forgets the account's failures. The source's count is
    /// kept on purpose (see the module docs); a running lock is not lifted.
    pub fn record_success(&mut self, account: &str) {
        self.accounts.clear(&account_key(account));
    }

    /// Drops keys with no running lock and no failure inside the window.
    pub fn prune(&mut self, now: Instant) {
        self.ips.prune(now, self.config.window);
        self.accounts.prune(now, self.config.window);
    }

    /// Number of sources tracked.
    pub fn tracked_ips(&self) -> usize {
        self.ips.map.len()
    }

    /// Number of account names tracked.
    pub fn tracked_accounts(&self) -> usize {
        self.accounts.map.len()
    }
}

/// The account name clipped to [`MAX_ACCOUNT_KEY_BYTES`] on a char boundary.
fn account_key(name: &str) -> String {
    if name.len() <= MAX_ACCOUNT_KEY_BYTES {
        return name.to_owned();
    }
    let mut end = MAX_ACCOUNT_KEY_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The one real clock reading in these tests; everything else is base + virtual offsets.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn lockout() -> Lockout {
        Lockout::new(LockoutConfig::default())
    }

    #[test]
    fn nth_failure_locks_the_account_once() {
        let b = base();
        let mut l = lockout();
        for i in 0..4 {
            assert!(l.record_failure(at(b, i), ip(1), Some("1001")).is_empty());
            assert_eq!(l.check(at(b, i), ip(1), Some("1001")), Admission::Allowed);
        }
        let ev = l.record_failure(at(b, 4), ip(1), Some("1001"));
        let until = at(b, 304);
        assert_eq!(
            ev,
            vec![LockEvent {
                key: LockKey::Account("1001".into()),
                until,
                failures: 5
            }]
        );
        assert_eq!(
            l.check(at(b, 5), ip(1), Some("1001")),
            Admission::Locked {
                until,
                key: LockKey::Account("1001".into())
            }
        );
        // Further failures while locked: no second event, no extension.
        for i in 5..10 {
            assert!(l.record_failure(at(b, i), ip(1), Some("1001")).is_empty());
        }
        assert_eq!(
            l.check(at(b, 303), ip(1), Some("1001")),
            Admission::Locked {
                until,
                key: LockKey::Account("1001".into())
            }
        );
        // Other accounts from the same source are unaffected.
        assert_eq!(l.check(at(b, 5), ip(1), Some("1002")), Admission::Allowed);
    }

    #[test]
    fn cooldown_lifts_the_lock_and_counting_restarts() {
        let b = base();
        let mut l = lockout();
        for i in 0..5 {
            l.record_failure(at(b, i), ip(1), Some("1001"));
        }
        assert!(matches!(
            l.check(at(b, 303), ip(1), Some("1001")),
            Admission::Locked { .. }
        ));
        assert_eq!(l.check(at(b, 304), ip(1), Some("1001")), Admission::Allowed);
        // A fresh count: one failure after the lock does not re-lock.
        assert!(l.record_failure(at(b, 305), ip(1), Some("1001")).is_empty());
        assert_eq!(l.check(at(b, 305), ip(1), Some("1001")), Admission::Allowed);
        for i in 306..309 {
            assert!(l.record_failure(at(b, i), ip(1), Some("1001")).is_empty());
        }
        assert_eq!(l.record_failure(at(b, 309), ip(1), Some("1001")).len(), 1);
    }

    #[test]
    fn window_forgets_old_failures() {
        let b = base();
        let mut l = lockout();
        // Failures at 0..=3; at 59 the one at 0 is 59 s old and still counts: the 5th locks.
        for i in 0..4 {
            l.record_failure(at(b, i), ip(1), Some("a"));
        }
        assert_eq!(l.record_failure(at(b, 59), ip(1), Some("a")).len(), 1);
        // The same at 63: all four are at least 60 s old and forgotten, so this is the 1st.
        for i in 0..4 {
            l.record_failure(at(b, i), ip(2), Some("1001"));
        }
        assert!(l.record_failure(at(b, 63), ip(2), Some("1001")).is_empty());
        for i in 64..67 {
            assert!(l.record_failure(at(b, i), ip(2), Some("1001")).is_empty());
        }
        assert_eq!(l.record_failure(at(b, 67), ip(2), Some("1001")).len(), 1);
    }

    #[test]
    fn account_locks_when_attacked_from_many_sources() {
        let b = base();
        let mut l = lockout();
        for i in 0..4u8 {
            assert!(l.record_failure(at(b, 0), ip(i), Some("1001")).is_empty());
        }
        let ev = l.record_failure(at(b, 1), ip(200), Some("1001"));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].key, LockKey::Account("1001".into()));
        // Locked for everyone, including a source that never failed.
        assert!(matches!(
            l.check(at(b, 2), ip(99), Some("1001")),
            Admission::Locked {
                key: LockKey::Account(_),
                ..
            }
        ));
    }

    #[test]
    fn source_locks_when_it_sprays_many_accounts() {
        let b = base();
        let mut l = lockout();
        for i in 0..19 {
            let name = format!("user{i}");
            assert!(l.record_failure(at(b, 1), ip(7), Some(&name)).is_empty());
        }
        let ev = l.record_failure(at(b, 2), ip(7), Some("user19"));
        assert_eq!(
            ev,
            vec![LockEvent {
                key: LockKey::Ip("192.0.2.7/32".parse().unwrap()),
                until: at(b, 302),
                failures: 20
            }]
        );
        // Any account, even one never tried, and no account at all.
        for acct in [Some("1001"), None] {
            assert!(matches!(
                l.check(at(b, 3), ip(7), acct),
                Admission::Locked {
                    key: LockKey::Ip(_),
                    ..
                }
            ));
        }
        assert_eq!(l.check(at(b, 3), ip(8), Some("1001")), Admission::Allowed);
    }

    #[test]
    fn both_keys_locking_together_give_two_events() {
        let b = base();
        let mut l = Lockout::new(LockoutConfig {
            ip_max_failures: 5,
            ..LockoutConfig::default()
        });
        for i in 0..4 {
            l.record_failure(at(b, i), ip(1), Some("1001"));
        }
        let ev = l.record_failure(at(b, 4), ip(1), Some("1001"));
        let keys: Vec<_> = ev.iter().map(|e| e.key.to_string()).collect();
        assert_eq!(keys, ["source 192.0.2.1/32", "account \"1001\""]);
    }

    #[test]
    fn check_reports_the_lock_that_ends_last() {
        let b = base();
        let mut l = Lockout::new(LockoutConfig {
            ip_max_failures: 3,
            ..LockoutConfig::default()
        });
        for i in 0..3 {
            l.record_failure(at(b, i), ip(1), Some("1001"));
        }
        // The source locked at 2 (until 302); the account locks at 4 from elsewhere (until 304).
        for i in 3..5 {
            l.record_failure(at(b, i), ip(2), Some("1001"));
        }
        assert_eq!(
            l.check(at(b, 5), ip(1), Some("1001")),
            Admission::Locked {
                until: at(b, 304),
                key: LockKey::Account("1001".into())
            }
        );
        assert_eq!(
            l.check(at(b, 5), ip(1), Some("1002")),
            Admission::Locked {
                until: at(b, 302),
                key: LockKey::Ip("192.0.2.1/32".parse().unwrap())
            }
        );
    }

    #[test]
    fn ipv6_sources_are_grouped_by_prefix() {
        let b = base();
        let mut l = lockout();
        for i in 0..20u16 {
            let addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, i, i, i, i));
            let ev = l.record_failure(at(b, 0), addr, Some(&format!("u{i}")));
            assert_eq!(ev.len(), usize::from(i == 19));
        }
        let sibling = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xffff, 0, 0, 1));
        assert!(matches!(
            l.check(at(b, 1), sibling, None),
            Admission::Locked { .. }
        ));
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(l.check(at(b, 1), other, None), Admission::Allowed);
        // IPv4-mapped IPv6 counts as the IPv4 address.
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(l.ip_key(mapped), l.ip_key(ip(1)));
    }

    #[test]
    fn success_resets_the_account_but_not_the_source() {
        let b = base();
        let mut l = lockout();
        for i in 0..4 {
            l.record_failure(at(b, i), ip(1), Some("1001"));
        }
        l.record_success("1001");
        for i in 4..8 {
            assert!(l.record_failure(at(b, i), ip(1), Some("1001")).is_empty());
        }
        assert_eq!(l.check(at(b, 8), ip(1), Some("1001")), Admission::Allowed);
        // The source has seen 8 failures; 12 more lock it, successes notwithstanding.
        for i in 0..11 {
            l.record_success("1001");
            assert!(l
                .record_failure(at(b, 9), ip(1), Some(&format!("x{i}")))
                .is_empty());
        }
        let ev = l.record_failure(at(b, 9), ip(1), Some("x11"));
        assert!(matches!(
            ev.as_slice(),
            [LockEvent {
                key: LockKey::Ip(_),
                ..
            }]
        ));
    }

    #[test]
    fn unknown_and_long_names_are_tracked_like_known_ones_within_bounds() {
        let b = base();
        let mut l = lockout();
        let long = "é".repeat(1000);
        for i in 0..4 {
            l.record_failure(at(b, i), ip(i as u8), Some(&long));
        }
        // A different long name with the same first 128 bytes shares the key.
        let mut other = "é".repeat(64);
        other.push('x');
        assert_eq!(l.record_failure(at(b, 4), ip(9), Some(&other)).len(), 1);
        assert!(matches!(
            l.check(at(b, 5), ip(10), Some(&long)),
            Admission::Locked { .. }
        ));
        assert!(l
            .accounts
            .map
            .keys()
            .all(|k| k.len() <= MAX_ACCOUNT_KEY_BYTES));
    }

    #[test]
    fn tables_stay_bounded_and_keep_locks_under_a_flood() {
        let b = base();
        let mut l = Lockout::new(LockoutConfig {
            max_tracked: 64,
            ..LockoutConfig::default()
        });
        for i in 0..5 {
            l.record_failure(at(b, i), ip(1), Some("victim"));
        }
        assert!(matches!(
            l.check(at(b, 5), ip(1), Some("victim")),
            Admission::Locked { .. }
        ));
        // A flood of random names from many sources, all within the window.
        for i in 0..10_000u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            l.record_failure(at(b, 5 + u64::from(i % 50)), src, Some(&format!("rnd{i}")));
            assert!(l.tracked_accounts() <= 64 && l.tracked_ips() <= 64);
        }
        assert!(matches!(
            l.check(at(b, 60), ip(2), Some("victim")),
            Admission::Locked { .. }
        ));
        // Everything idle after the cool-down and the window is pruned.
        l.prune(at(b, 1000));
        assert_eq!((l.tracked_ips(), l.tracked_accounts()), (0, 0));
    }

    #[test]
    fn prune_keeps_active_keys() {
        let b = base();
        let mut l = lockout();
        l.record_failure(at(b, 0), ip(1), Some("a"));
        l.record_failure(at(b, 50), ip(2), Some("b"));
        l.prune(at(b, 70));
        assert_eq!((l.tracked_ips(), l.tracked_accounts()), (1, 1));
        assert!(l.accounts.map.contains_key("b"));
    }
}
