//! The file format: serde structs that mirror `switchboard.yaml` key for key.
//!
//! Nothing here is seen by the engine. Every struct denies unknown keys (a typo must not silently fall
//! back to a default) and takes its defaults from the typed sections in [`super`], so the two can not
//! drift apart. Addresses and CIDR ranges stay strings here: [`super`] parses them, so that their errors
//! carry the same file/line/field wording as every other semantic check.
use std::fmt;

use serde::Deserialize;

use super::{
    AuthConfig, CallsConfig, DatabaseConfig, DigestAlgorithm, HttpConfig, IvrSettings, Listener,
    LockoutPolicy, LoggingConfig, MediaSettings, RegistrarConfig, SipConfig, SipTimers, TestLine,
    Transport,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawConfig {
    pub sip: RawSip,
    pub http: RawHttp,
    pub database: RawDatabase,
    pub registrar: RawRegistrar,
    pub auth: RawAuth,
    pub accounts: Vec<RawAccount>,
    pub trunks: Vec<RawTrunk>,
    pub media: RawMedia,
    pub calls: RawCalls,
    pub ivr: RawIvr,
    pub numbers: Vec<RawServiceNumber>,
    pub blacklist: RawBlacklist,
    pub caller_id_groups: Vec<super::trunks::RawCallerIdGroup>,
    pub regions: super::trunks::RawRegions,
    pub logging: RawLogging,
    pub webhooks: Vec<super::webhooks::RawWebhook>,
    pub acd: super::acd::RawAcd,
    pub skill_groups: Vec<super::acd::RawSkillGroup>,
    pub agents: Vec<super::acd::RawAgent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawSip {
    pub listen: Vec<RawListener>,
    pub domain: String,
    pub timers: RawTimers,
    pub max_message_bytes: usize,
    pub tcp_idle_timeout_s: u64,
    pub tcp_max_connections: usize,
    pub tcp_max_connections_per_source: usize,
    /// Absent: `Switchboard/<version>`; empty: send no `User-Agent`/`Server` header.
    pub user_agent: Option<String>,
}

impl Default for RawSip {
    fn default() -> Self {
        let d = SipConfig::default();
        RawSip {
            listen: d.listen.iter().map(RawListener::from).collect(),
            domain: d.domain,
            timers: RawTimers::default(),
            max_message_bytes: d.max_message_bytes,
            tcp_idle_timeout_s: d.tcp_idle_timeout.as_secs(),
            tcp_max_connections: d.tcp_max_connections,
            tcp_max_connections_per_source: d.tcp_max_connections_per_source,
            user_agent: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawListener {
    pub transport: Transport,
    pub address: String,
}

impl From<&Listener> for RawListener {
    fn from(l: &Listener) -> Self {
        RawListener {
            transport: l.transport,
            address: l.address.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawTimers {
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
}

impl Default for RawTimers {
    fn default() -> Self {
        let d = SipTimers::default();
        RawTimers {
            t1_ms: millis(d.t1),
            t2_ms: millis(d.t2),
            t4_ms: millis(d.t4),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawHttp {
    pub listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: HttpConfig::default().listen.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawDatabase {
    pub url: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            url: DatabaseConfig::default().url,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawRegistrar {
    pub min_expires_s: u64,
    pub default_expires_s: u64,
    pub max_expires_s: u64,
    pub max_contacts_per_aor: usize,
}

impl Default for RawRegistrar {
    fn default() -> Self {
        let d = RegistrarConfig::default();
        RawRegistrar {
            min_expires_s: d.min_expires.as_secs(),
            default_expires_s: d.default_expires.as_secs(),
            max_expires_s: d.max_expires.as_secs(),
            max_contacts_per_aor: d.max_contacts_per_aor,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawAuth {
    /// Absent: the same as `sip.domain`.
    pub realm: Option<String>,
    pub nonce_lifetime_s: u64,
    pub algorithms: Vec<DigestAlgorithm>,
    pub allow_no_qop: bool,
    pub lockout: RawLockout,
    pub trusted: Vec<String>,
}

impl Default for RawAuth {
    fn default() -> Self {
        let d = AuthConfig::default();
        RawAuth {
            realm: None,
            nonce_lifetime_s: d.nonce_lifetime.as_secs(),
            algorithms: d.algorithms,
            allow_no_qop: d.allow_no_qop,
            lockout: RawLockout::default(),
            trusted: d.trusted.iter().map(ToString::to_string).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawLockout {
    pub max_failures: u32,
    pub window_s: u64,
    pub cooldown_s: u64,
}

impl Default for RawLockout {
    fn default() -> Self {
        let d = LockoutPolicy::default();
        RawLockout {
            max_failures: d.max_failures,
            window_s: d.window.as_secs(),
            cooldown_s: d.cooldown.as_secs(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawAccount {
    pub user: String,
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

/// Written by hand so that a password never reaches a log line or a panic message.
impl fmt::Debug for RawAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAccount")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("display_name", &self.display_name)
            .field("enabled", &self.enabled)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawTrunk {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub trusted_sources: Vec<String>,
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub auth: Option<super::trunks::RawTrunkAuth>,
    #[serde(default)]
    pub register: Option<super::trunks::RawTrunkRegister>,
    #[serde(default)]
    pub numbers: Vec<super::trunks::RawTrunkNumber>,
    #[serde(default)]
    pub number_format: super::trunks::RawNumberFormat,
    #[serde(default)]
    pub caller_id: Option<super::trunks::RawCallerId>,
    #[serde(default)]
    pub quota: Option<super::trunks::RawQuota>,
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawMedia {
    /// Absent: the address of the first SIP listener.
    pub rtp_address: Option<String>,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub workers: usize,
    /// `0` disables the timeout.
    pub rtp_timeout_s: u64,
    pub prompts_dir: String,
    pub recordings_dir: String,
    pub record_calls: bool,
}

impl Default for RawMedia {
    fn default() -> Self {
        let d = MediaSettings::default();
        RawMedia {
            rtp_address: None,
            rtp_port_min: d.rtp_port_min,
            rtp_port_max: d.rtp_port_max,
            workers: d.workers,
            rtp_timeout_s: d.rtp_timeout.map_or(0, |t| t.as_secs()),
            prompts_dir: d.prompts_dir.to_string_lossy().into_owned(),
            recordings_dir: d.recordings_dir.to_string_lossy().into_owned(),
            record_calls: d.record_calls,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawCalls {
    pub test_line: RawTestLine,
    pub ring_timeout_s: u64,
}

impl Default for RawCalls {
    fn default() -> Self {
        RawCalls {
            test_line: RawTestLine::default(),
            ring_timeout_s: CallsConfig::default().ring_timeout.as_secs(),
        }
    }
}

/// Switched off with `enabled: false`, like accounts and trunks, and in no other way: not an `Option`,
/// so `test_line: null` is refused (as `sip: null` is) and `test_line:` with nothing after it means the
/// defaults, as for any empty section. An empty key must not quietly remove the line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawTestLine {
    pub number: String,
    pub prompt: String,
    pub enabled: bool,
}

impl Default for RawTestLine {
    fn default() -> Self {
        let d = TestLine::default();
        RawTestLine {
            number: d.number,
            prompt: d.prompt,
            enabled: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawIvr {
    pub flows_dir: String,
    pub watch: bool,
}

impl Default for RawIvr {
    fn default() -> Self {
        let d = IvrSettings::default();
        RawIvr {
            flows_dir: d.flows_dir.to_string_lossy().into_owned(),
            watch: d.watch,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawServiceNumber {
    pub number: String,
    pub flow: String,
    #[serde(default)]
    pub trunk: Option<String>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawBlacklist {
    pub inbound: Vec<String>,
    pub outbound: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawLogging {
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            level: LoggingConfig::default().level,
        }
    }
}

fn enabled() -> bool {
    true
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
