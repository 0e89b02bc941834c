//! Configuration: `sip-config/switchboard.yaml` → [`Config`], the only configuration type the engine sees.
//!
//! ## Parse, don't validate
//! The file is read in two steps. `raw` mirrors the YAML with serde structs that deny unknown keys and
//! fill in defaults; [`Config::from_yaml_str`] then checks every value and builds [`Config`]: addresses
//! parsed into [`SocketAddr`], CIDR ranges into [`IpNet`], durations into [`Duration`], cross-field rules
//! (`min_expires_s <= default_expires_s <= max_expires_s`, unique users and trunk names, service numbers
//! that name configured trunks and collide with no account or test line) enforced. Past this point nothing
//! re-checks the configuration. Which IVR flows exist is the flow loader's business (`ivr.flows_dir`):
//! here a service number's flow is only checked to be a well-formed name.
//!
//! ## Errors name the file, line, column and field
//! ```text
//! sip-config/switchboard.yaml:15:7: sip.listen[1].transport: unknown variant `sctp`, expected `udp` or `tcp`
//! ```
//! serde_yaml reports a position only for what fails while deserializing, and once a value is
//! deserialized its position is gone. So the text is also scanned once by `locate::Index`, a small
//! indentation-aware reader of block-style YAML that records where each key path (`accounts[3].password`)
//! starts. Semantic errors take their position from it; deserialization errors use it too, so that both
//! point at the offending key (serde_yaml places "unknown field" at the document start when the key is at
//! the top level, and "duplicate field" at the mapping rather than the duplicate).
//!
//! ## Weak passwords
//! The SIP account password policy is in [`password`]. While every SIP listener is on a loopback address a
//! weak password is a [`ConfigWarning`] (so the shipped demo, `demo-1001`…, works at once on one
//! machine); as soon as any listener is reachable from elsewhere it is an error.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub mod acd;
pub mod password;
mod raw;
pub mod trunks;
pub mod webhooks;

pub use acd::{AcdSection, ConfiguredAgent, FeatureCodes, SignIn};
pub use password::{check_password, WeakPassword};
pub use trunks::{
    CallerIdGroupConfig, CallerIdPolicy, GroupNumber, NumberFormat, QuotaPeriod, RegionPrefix,
    RegionsConfig, TrunkCredentials, TrunkNumber, TrunkQuota, TrunkRegister, WireFormat,
};
pub use webhooks::WebhookConfig;

use raw::{
    RawAccount, RawAuth, RawBlacklist, RawCalls, RawConfig, RawIvr, RawMedia, RawRegistrar,
    RawServiceNumber, RawSip, RawTrunk,
};

/// The validated configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub registrar: RegistrarConfig,
    pub auth: AuthConfig,
    /// SIP accounts (desk phones), in file order; user names are unique.
    pub accounts: Vec<Account>,
    /// SIP trunks (carriers, other PBXs), in file order; names are unique.
    pub trunks: Vec<Trunk>,
    pub logging: LoggingConfig,
    pub media: MediaSettings,
    pub calls: CallsConfig,
    pub ivr: IvrSettings,
    /// Service numbers bound to IVR flows, in file order; (number, trunk) pairs are unique.
    pub numbers: Vec<ServiceNumber>,
    pub blacklist: Blacklist,
    /// Display number groups (外显号码组) for trunks with `caller_id: { mode: region }`.
    pub caller_id_groups: Vec<CallerIdGroupConfig>,
    /// Number prefixes to city and province (号码归属地), for picking a display number by region.
    pub regions: RegionsConfig,
    /// Receivers of call events ([`crate::webhook`]), in file order; names are unique.
    pub webhooks: Vec<WebhookConfig>,
    /// `acd:`, `skill_groups:` and `agents:`: the ACD's queues and agents.
    pub acd: AcdSection,
    /// What the file got away with: weak passwords on a loopback-only server, trusted ranges that cover
    /// this machine. The binary logs them with [`Config::log_warnings`]; none contains a secret.
    pub warnings: Vec<ConfigWarning>,
}

/// `sip:` — listeners and protocol parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipConfig {
    /// Never empty.
    pub listen: Vec<Listener>,
    /// The SIP domain this server is authoritative for (`sip:1001@<domain>`).
    pub domain: String,
    pub timers: SipTimers,
    /// Larger messages are refused (RFC 3261 §18.1.1 bounds UDP; the same cap guards TCP framing).
    pub max_message_bytes: usize,
    /// A TCP connection with no traffic for this long is closed. Phones that send RFC 5626 CRLF
    /// keep-alives (or re-register) more often than this stay connected.
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections per listener; more are refused at once.
    pub tcp_max_connections: usize,
    /// Open TCP connections per listener from one source address (generous: an office's phones
    /// may share one NAT address).
    pub tcp_max_connections_per_source: usize,
    /// The `User-Agent`/`Server` header value; `None` sends neither header.
    pub user_agent: Option<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060);
        SipConfig {
            listen: vec![
                Listener {
                    transport: Transport::Udp,
                    address: loopback,
                },
                Listener {
                    transport: Transport::Tcp,
                    address: loopback,
                },
            ],
            domain: "switchboard".to_owned(),
            timers: SipTimers::default(),
            max_message_bytes: 65_535,
            tcp_idle_timeout: Duration::from_secs(300),
            tcp_max_connections: 20_000,
            tcp_max_connections_per_source: 1_000,
            user_agent: Some(DEFAULT_USER_AGENT.to_owned()),
        }
    }
}

impl SipConfig {
    /// True when no listener is reachable from another machine — the condition under which demo-grade
    /// passwords are tolerated.
    pub fn loopback_only(&self) -> bool {
        self.listen.iter().all(|l| l.address.ip().is_loopback())
    }
}

/// The default `User-Agent`/`Server` header value.
pub const DEFAULT_USER_AGENT: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

/// One socket to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listener {
    pub transport: Transport,
    pub address: SocketAddr,
}

/// A SIP transport; TLS and WebSocket come later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// RFC 3261 §17 timer base values (§A: T1 = RTT estimate, T2 = maximum non-INVITE retransmit
/// interval, T4 = maximum time a message stays in the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipTimers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for SipTimers {
    fn default() -> Self {
        SipTimers {
            t1: Duration::from_millis(500),
            t2: Duration::from_millis(4000),
            t4: Duration::from_millis(5000),
        }
    }
}

/// `http:` — the API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
        }
    }
}

/// `database:` — where registrations, CDRs and the rest of the produced data live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// An sqlx URL: `sqlite://…` (a relative path is relative to the working directory) or
    /// `postgres://…`.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/switchboard.db".to_owned(),
        }
    }
}

/// `registrar:` — REGISTER handling (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shorter requested expiries get `423 Interval Too Brief` with this as `Min-Expires`.
    pub min_expires: Duration,
    /// Used when the request names no expiry.
    pub default_expires: Duration,
    /// Longer requested expiries are shortened to this.
    pub max_expires: Duration,
    /// Bindings per address-of-record; never 0.
    pub max_contacts_per_aor: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: Duration::from_secs(60),
            default_expires: Duration::from_secs(3600),
            max_expires: Duration::from_secs(7200),
            max_contacts_per_aor: 10,
        }
    }
}

/// `auth:` — digest authentication (RFC 3261 §22, RFC 7616 / RFC 8760 algorithms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The digest realm; `sip.domain` unless set.
    pub realm: String,
    pub nonce_lifetime: Duration,
    /// Offered in this order, one challenge header each (RFC 8760 §2.4: most preferred first). Never empty,
    /// no duplicates.
    pub algorithms: Vec<DigestAlgorithm>,
    /// Accept RFC 2069-style responses without `qop` (old phones).
    pub allow_no_qop: bool,
    pub lockout: LockoutPolicy,
    /// Requests from these ranges skip digest authentication altogether.
    pub trusted: Vec<IpNet>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            realm: SipConfig::default().domain,
            nonce_lifetime: Duration::from_secs(300),
            // MD5 alone by default: SHA-256 (RFC 8760) is supported, but common phones and test
            // tools (baresip 1.0, SIPp 3.6) fail as soon as any challenge names it. See
            // sip-config/README.md.
            algorithms: vec![DigestAlgorithm::Md5],
            allow_no_qop: true,
            lockout: LockoutPolicy::default(),
            trusted: Vec::new(),
        }
    }
}

/// A digest algorithm as named in the file (`sha256`, `md5`; RFC spellings `SHA-256`, `MD5` also read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum DigestAlgorithm {
    #[serde(rename = "sha256", alias = "SHA-256")]
    Sha256,
    #[serde(rename = "md5", alias = "MD5")]
    Md5,
}

impl DigestAlgorithm {
    /// The `algorithm=` token (RFC 7616 §3.3).
    pub fn token(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Md5 => "MD5",
        }
    }
}

/// Brute-force protection: after `max_failures` failed authentications from one source within `window`,
/// that source is refused for `cooldown`. `max_failures == 0` disables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(300),
        }
    }
}

/// A SIP account (a desk phone or softphone registers with it). `Debug` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user part: letters, digits and `.-_+`.
    pub user: String,
    pub password: Password,
    /// Free text without control characters; the SIP layer quotes it.
    pub display_name: Option<String>,
    pub enabled: bool,
}

/// A secret that prints as `<redacted>` in `Debug` and has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Password(secret.into())
    }

    /// The secret itself, for computing digests. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A SIP trunk: a carrier or another PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub name: String,
    /// Where calls to this trunk are sent. (IP literal and port for now; DNS names come with RFC 3263.)
    pub address: SocketAddr,
    /// Requests from these ranges skip digest authentication and are attributed to this trunk.
    pub trusted_sources: Vec<IpNet>,
    pub enabled: bool,
    /// Answers the carrier's digest challenges (`auth:`).
    pub auth: Option<TrunkCredentials>,
    /// REGISTER to the carrier (`register:` with `enabled: true`; implies `auth`).
    pub register: Option<TrunkRegister>,
    /// The trunk numbers (中继号码) the trunk carries, E.164, unique across trunks.
    pub numbers: Vec<TrunkNumber>,
    pub number_format: NumberFormat,
    pub caller_id: CallerIdPolicy,
    pub quota: Option<TrunkQuota>,
    /// At most this many calls at once through the trunk; `None`: no cap.
    pub max_concurrent_calls: Option<u32>,
}

impl Trunk {
    /// Where the trunk's inbound requests come from: its `trusted_sources`, and for a trunk
    /// that registers with its carrier the carrier's own address too — the carrier sends the
    /// calls for a registered trunk from there, and does not answer digest challenges.
    pub fn inbound_sources(&self) -> Vec<IpNet> {
        let mut nets = self.trusted_sources.clone();
        if self.register.is_some() {
            let own = IpNet::from(self.address.ip());
            if !nets.iter().any(|n| n.contains(&self.address.ip())) {
                nets.push(own);
            }
        }
        nets
    }
}

/// `logging:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// A `tracing_subscriber::EnvFilter` directive: a level (`info`) optionally followed by
    /// `target=level` pairs (`info,switchboard_engine::sip=debug`). `RUST_LOG` takes precedence.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".to_owned(),
        }
    }
}

/// `media:` — RTP and prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// Address RTP binds to and SDP advertises (RFC 4566 §5.7 `c=`). File key `rtp_address`; by default
    /// the IP of the first SIP listener. Never unspecified (`0.0.0.0`, `::`) or multicast: a peer could
    /// not send to it.
    pub rtp_address: IpAddr,
    /// The first port of the RTP range (keys `rtp_port_min`, `rtp_port_max`, inclusive). Even and at
    /// least 1024: RTP takes the even port of a pair and RTCP the odd one above it (RFC 3550 §11).
    pub rtp_port_min: u16,
    /// The last port of the range; above `rtp_port_min`, so the range holds at least one pair.
    pub rtp_port_max: u16,
    /// Media worker threads; 0 means one per core.
    pub workers: usize,
    /// No RTP for this long while the peer should be sending ends the call; `None` (key `rtp_timeout_s: 0`)
    /// never does.
    pub rtp_timeout: Option<Duration>,
    /// Where prompts are loaded from; a relative path is relative to the working directory.
    pub prompts_dir: PathBuf,
    /// Where call recordings are written; a relative path is relative to the working directory.
    pub recordings_dir: PathBuf,
    /// Record every bridged call (stereo WAV, one party per channel).
    pub record_calls: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            rtp_address: SipConfig::default().listen[0].address.ip(),
            rtp_port_min: 10_000,
            rtp_port_max: 20_000,
            workers: 0,
            rtp_timeout: Some(Duration::from_secs(30)),
            prompts_dir: PathBuf::from("prompts"),
            recordings_dir: PathBuf::from("data/recordings"),
            record_calls: false,
        }
    }
}

/// `calls:` — call routing basics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallsConfig {
    /// A number any phone can dial to hear a prompt and check its audio; `None` when the file sets
    /// `calls.test_line.enabled: false`.
    pub test_line: Option<TestLine>,
    /// How long a dialled account's phones ring before the call gives up (1 s to 10 minutes).
    pub ring_timeout: Duration,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            test_line: Some(TestLine::default()),
            ring_timeout: Duration::from_secs(60),
        }
    }
}

/// The test line: dialling `number` answers and plays `prompt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestLine {
    /// Digits, `*`, `#` and `+`; never an account's user.
    pub number: String,
    /// A prompt name: a file in `media.prompts_dir` without its extension (`welcome` for `welcome.wav`).
    pub prompt: String,
}

impl Default for TestLine {
    fn default() -> Self {
        TestLine {
            number: "9999".to_owned(),
            prompt: "welcome".to_owned(),
        }
    }
}

/// `ivr:` — where flows live and how they are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvrSettings {
    /// The folder of flow files (`<name>.yaml`), relative to the working directory.
    pub flows_dir: PathBuf,
    /// Publish a flow when its file changes (a broken file is rejected and the old version keeps
    /// serving); `false` loads flows at start-up only.
    pub watch: bool,
}

impl Default for IvrSettings {
    fn default() -> Self {
        IvrSettings {
            flows_dir: PathBuf::from("ivr-flows"),
            watch: true,
        }
    }
}

/// A service number (服务号) bound to an IVR flow: a call to `number` enters `flow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNumber {
    /// Digits, `*`, `#` and `+`; never an account's user or the test line's number.
    pub number: String,
    /// A flow name: the stem of a file in `ivr.flows_dir` (`main` for `main.yaml`). Whether the flow
    /// exists is checked when flows are loaded, not here.
    pub flow: String,
    /// When set, only calls arriving on this trunk (a configured trunk's name) match; an entry with a
    /// trunk wins over one without for the same number.
    pub trunk: Option<String>,
    /// `false`: calls to the number are refused as "trunk number disabled" (中继号码停用).
    pub enabled: bool,
}

/// `blacklist:` — numbers refused before any routing (客户号码黑名单).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blacklist {
    /// Callers refused on inbound calls.
    pub inbound: Vec<NumberPattern>,
    /// Customer numbers outbound calls may not dial (`blacklist.outbound`), same rules.
    pub outbound: Vec<NumberPattern>,
}

impl Blacklist {
    /// Whether an inbound call from `number` is refused. Spaces are dropped (a number pasted as
    /// `138 0000 0000`) and a leading `+` is ignored on both sides; otherwise numbers compare as
    /// written: no country-code rewriting, so list both `+8613800000000` and `13800000000` if callers
    /// arrive in both forms.
    pub fn blocks(&self, number: &str) -> bool {
        let number = normalize_number(number);
        !number.is_empty() && self.inbound.iter().any(|p| p.matches(&number))
    }

    /// Whether an outbound call to `number` is refused; compared like [`Blacklist::blocks`].
    pub fn blocks_outbound(&self, number: &str) -> bool {
        let number = normalize_number(number);
        !number.is_empty() && self.outbound.iter().any(|p| p.matches(&number))
    }
}

/// A blacklist entry, kept without spaces and without a leading `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberPattern {
    /// `"+8613800000000"`: exactly this number.
    Exact(String),
    /// `"1380000*"`: every number starting with these digits.
    Prefix(String),
}

impl NumberPattern {
    /// An entry as written in `blacklist:` or sent to the API: a number (`+8613800000000`) or a
    /// prefix ending in `*` (`1380000*`), digits only once spaces and a leading `+` are dropped.
    pub fn parse(text: &str) -> Option<NumberPattern> {
        let compact = normalize_number(text);
        let (digits, prefix) = match compact.strip_suffix('*') {
            Some(head) => (head, true),
            None => (compact.as_str(), false),
        };
        let ok = !digits.is_empty()
            && digits.len() <= MAX_NUMBER_LEN
            && digits.chars().all(|c| c.is_ascii_digit());
        ok.then(|| {
            if prefix {
                NumberPattern::Prefix(digits.to_owned())
            } else {
                NumberPattern::Exact(digits.to_owned())
            }
        })
    }

    /// The normalized text: the digits, with `*` after a prefix; [`NumberPattern::parse`] reads
    /// it back.
    pub fn text(&self) -> String {
        match self {
            NumberPattern::Exact(n) => n.clone(),
            NumberPattern::Prefix(p) => format!("{p}*"),
        }
    }

    /// `number` is already normalized.
    fn matches(&self, number: &str) -> bool {
        match self {
            NumberPattern::Exact(n) => number == n,
            NumberPattern::Prefix(p) => number.starts_with(p.as_str()),
        }
    }
}

fn normalize_number(number: &str) -> String {
    let compact: String = number.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.strip_prefix('+') {
        Some(rest) => rest.to_owned(),
        None => compact,
    }
}

/// Why a request may skip digest authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestExemption<'a> {
    /// The source is in `auth.trusted`.
    Trusted(&'a IpNet),
    /// The source is in an enabled trunk's `trusted_sources`.
    Trunk(&'a Trunk),
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Config::from_yaml_str(&text, &file)
    }

    /// Validates `text`; `file` is only used to name the source in errors and warnings.
    pub fn from_yaml_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        let ctx = Ctx {
            file,
            index: locate::Index::build(text),
        };
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|err| ctx.deserialize_error(&err))?;
        validate(raw, &ctx)
    }

    /// The account with user part `user`, enabled or not.
    pub fn account(&self, user: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.user == user)
    }

    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// The service number a call to `number` arriving on `trunk` (a trunk name, `None` from a
    /// phone) reaches, enabled or not: the entry bound to that trunk first, then the one for any trunk.
    pub fn service_number(&self, number: &str, trunk: Option<&str>) -> Option<&ServiceNumber> {
        let bound = trunk.and_then(|t| {
            self.numbers
                .iter()
                .find(|n| n.number == number && n.trunk.as_deref() == Some(t))
        });
        bound.or_else(|| {
            self.numbers
                .iter()
                .find(|n| n.number == number && n.trunk.is_none())
        })
    }

    /// Whether a request from `source` skips digest authentication, and why: `auth.trusted` first, then
    /// the enabled trunks in file order.
    pub fn digest_exemption(&self, source: IpAddr) -> Option<DigestExemption<'_>> {
        if let Some(net) = self.auth.trusted.iter().find(|n| n.contains(&source)) {
            return Some(DigestExemption::Trusted(net));
        }
        self.trunks
            .iter()
            .filter(|t| t.enabled)
            .find(|t| t.inbound_sources().iter().any(|n| n.contains(&source)))
            .map(DigestExemption::Trunk)
    }

    /// Logs every warning with `tracing::warn!`.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!(target: "switchboard::config", "{warning}");
        }
    }
}

/// A configuration that can not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `file:line:column: field: message`. `field` is a key path such as `accounts[3].password`; it is
    /// empty only for YAML syntax errors that no key can be blamed for.
    #[error("{file}:{line}:{column}: {}{message}", field_prefix(.field))]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    #[error("{file}: cannot read the configuration: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Something the file got away with; displayed like [`ConfigError::Invalid`]. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}{}",
            self.file,
            self.line,
            self.column,
            field_prefix(&self.field),
            self.message
        )
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Upper bounds that keep durations far from `Instant` overflow while allowing any sane setting.
const MAX_TIMER_MS: u64 = 60_000;
const DAY_S: u64 = 86_400;
const MAX_EXPIRES_S: u64 = 7 * DAY_S;
const MAX_NAME_LEN: usize = 64;

/// Where errors are reported: the file name and the positions of its keys.
struct Ctx<'a> {
    file: &'a str,
    index: locate::Index,
}

impl Ctx<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.index.nearest(field);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn warning(&self, field: &str, message: impl Into<String>) -> ConfigWarning {
        let (line, column) = self.index.nearest(field);
        ConfigWarning {
            file: self.file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A serde_yaml error, placed on the key it is about.
    fn deserialize_error(&self, err: &serde_yaml::Error) -> ConfigError {
        let placed = locate::place_serde_error(&self.index, err);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: placed.line,
            column: placed.column,
            field: placed.field,
            message: placed.message,
        }
    }
}

fn validate(raw: RawConfig, ctx: &Ctx<'_>) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let sip = validate_sip(raw.sip, ctx)?;
    let http = HttpConfig {
        listen: socket_addr(ctx, "http.listen", &raw.http.listen)?,
    };
    let database = DatabaseConfig {
        url: database_url(ctx, raw.database.url)?,
    };
    let registrar = validate_registrar(&raw.registrar, ctx)?;
    let auth = validate_auth(raw.auth, &sip.domain, ctx)?;
    let accounts = validate_accounts(raw.accounts, sip.loopback_only(), ctx, &mut warnings)?;
    let trunks = validate_trunks(raw.trunks, ctx)?;
    let (caller_id_groups, regions) = trunks::validate_caller_id(
        raw.caller_id_groups,
        raw.regions,
        &trunks,
        ctx,
        &mut warnings,
    )?;
    let logging = LoggingConfig {
        level: log_level(ctx, raw.logging.level)?,
    };
    let media = validate_media(raw.media, &sip, ctx)?;
    let calls = validate_calls(raw.calls, &accounts, ctx)?;
    let ivr = validate_ivr(raw.ivr, ctx)?;
    let numbers = validate_numbers(raw.numbers, &accounts, &trunks, &calls, ctx)?;
    let blacklist = validate_blacklist(raw.blacklist, ctx)?;
    let webhooks = webhooks::validate_webhooks(raw.webhooks, ctx)?;
    let acd = acd::validate(
        acd::RawSections {
            acd: raw.acd,
            skill_groups: raw.skill_groups,
            agents: raw.agents,
        },
        &acd::Known {
            accounts: &accounts,
            trunks: &trunks,
            calls: &calls,
            numbers: &numbers,
        },
        ctx,
    )?;
    let mut config = Config {
        sip,
        http,
        database,
        registrar,
        auth,
        accounts,
        trunks,
        logging,
        media,
        calls,
        ivr,
        numbers,
        blacklist,
        caller_id_groups,
        regions,
        webhooks,
        acd,
        warnings,
    };
    config
        .warnings
        .extend(trusted_loopback_warnings(&config, ctx));
    Ok(config)
}

fn validate_sip(raw: RawSip, ctx: &Ctx<'_>) -> Result<SipConfig, ConfigError> {
    if raw.listen.is_empty() {
        return Err(ctx.error("sip.listen", "at least one listener is required"));
    }
    let mut listen: Vec<Listener> = Vec::with_capacity(raw.listen.len());
    for (i, l) in raw.listen.iter().enumerate() {
        let listener = Listener {
            transport: l.transport,
            address: socket_addr(ctx, &format!("sip.listen[{i}].address"), &l.address)?,
        };
        if let Some(first) = listen.iter().position(|x| *x == listener) {
            return Err(ctx.error(
                &format!("sip.listen[{i}]"),
                format!(
                    "{} {} is already listed as sip.listen[{first}]",
                    listener.transport, listener.address
                ),
            ));
        }
        listen.push(listener);
    }
    if !is_host(&raw.domain) {
        return Err(ctx.error(
            "sip.domain",
            format!("expected a host name or IP address such as `switchboard` or `pbx.example.com`, got {:?}", raw.domain),
        ));
    }
    let timer = |key: &str, ms: u64| -> Result<Duration, ConfigError> {
        if ms == 0 || ms > MAX_TIMER_MS {
            return Err(ctx.error(
                &format!("sip.timers.{key}"),
                format!("must be between 1 and {MAX_TIMER_MS} milliseconds, got {ms}"),
            ));
        }
        Ok(Duration::from_millis(ms))
    };
    let timers = SipTimers {
        t1: timer("t1_ms", raw.timers.t1_ms)?,
        t2: timer("t2_ms", raw.timers.t2_ms)?,
        t4: timer("t4_ms", raw.timers.t4_ms)?,
    };
    if timers.t2 < timers.t1 {
        return Err(ctx.error(
            "sip.timers.t2_ms",
            format!(
                "T2 ({} ms) must not be shorter than T1 ({} ms)",
                raw.timers.t2_ms, raw.timers.t1_ms
            ),
        ));
    }
    const MAX_MESSAGE: usize = 16 * 1024 * 1024;
    if !(1024..=MAX_MESSAGE).contains(&raw.max_message_bytes) {
        return Err(ctx.error(
            "sip.max_message_bytes",
            format!(
                "must be between 1024 and {MAX_MESSAGE}, got {}",
                raw.max_message_bytes
            ),
        ));
    }
    let tcp_idle_timeout = seconds(
        ctx,
        "sip.tcp_idle_timeout_s",
        raw.tcp_idle_timeout_s,
        1,
        DAY_S,
    )?;
    for (field, value) in [
        ("sip.tcp_max_connections", raw.tcp_max_connections),
        (
            "sip.tcp_max_connections_per_source",
            raw.tcp_max_connections_per_source,
        ),
    ] {
        if !(1..=1_000_000).contains(&value) {
            return Err(ctx.error(field, format!("must be between 1 and 1000000, got {value}")));
        }
    }
    let user_agent = match raw.user_agent {
        None => Some(DEFAULT_USER_AGENT.to_owned()),
        Some(ua) if ua.is_empty() => None,
        Some(ua) => {
            if ua.chars().any(char::is_control) || ua.len() > 256 {
                return Err(ctx.error(
                    "sip.user_agent",
                    "must be at most 256 characters without control characters",
                ));
            }
            Some(ua)
        }
    };
    Ok(SipConfig {
        listen,
        domain: raw.domain,
        timers,
        max_message_bytes: raw.max_message_bytes,
        tcp_idle_timeout,
        tcp_max_connections: raw.tcp_max_connections,
        tcp_max_connections_per_source: raw.tcp_max_connections_per_source,
        user_agent,
    })
}

fn validate_registrar(raw: &RawRegistrar, ctx: &Ctx<'_>) -> Result<RegistrarConfig, ConfigError> {
    let min = seconds(
        ctx,
        "registrar.min_expires_s",
        raw.min_expires_s,
        1,
        MAX_EXPIRES_S,
    )?;
    let default = seconds(
        ctx,
        "registrar.default_expires_s",
        raw.default_expires_s,
        1,
        MAX_EXPIRES_S,
    )?;
    let max = seconds(
        ctx,
        "registrar.max_expires_s",
        raw.max_expires_s,
        1,
        MAX_EXPIRES_S,
    )?;
    if min > max {
        return Err(ctx.error(
            "registrar.min_expires_s",
            format!(
                "min_expires_s ({}) must not exceed max_expires_s ({})",
                raw.min_expires_s, raw.max_expires_s
            ),
        ));
    }
    if default < min || default > max {
        return Err(ctx.error(
            "registrar.default_expires_s",
            format!(
                "default_expires_s ({}) must lie between min_expires_s ({}) and max_expires_s ({})",
                raw.default_expires_s, raw.min_expires_s, raw.max_expires_s
            ),
        ));
    }
    if !(1..=1000).contains(&raw.max_contacts_per_aor) {
        return Err(ctx.error(
            "registrar.max_contacts_per_aor",
            format!(
                "must be between 1 and 1000, got {}",
                raw.max_contacts_per_aor
            ),
        ));
    }
    Ok(RegistrarConfig {
        min_expires: min,
        default_expires: default,
        max_expires: max,
        max_contacts_per_aor: raw.max_contacts_per_aor,
    })
}

fn validate_auth(raw: RawAuth, domain: &str, ctx: &Ctx<'_>) -> Result<AuthConfig, ConfigError> {
    let realm = match raw.realm {
        None => domain.to_owned(),
        Some(realm) => {
            // The realm is sent as a quoted-string (RFC 3261 §25.1); keep it free of what needs escaping.
            if realm.is_empty()
                || realm
                    .chars()
                    .any(|c| c.is_control() || c == '"' || c == '\\')
            {
                return Err(ctx.error(
                    "auth.realm",
                    "must be non-empty, without quotes, backslashes or control characters",
                ));
            }
            realm
        }
    };
    let nonce_lifetime = seconds(ctx, "auth.nonce_lifetime_s", raw.nonce_lifetime_s, 1, DAY_S)?;
    if raw.algorithms.is_empty() {
        return Err(ctx.error(
            "auth.algorithms",
            "at least one algorithm is required (sha256, md5)",
        ));
    }
    for (i, alg) in raw.algorithms.iter().enumerate() {
        if raw.algorithms[..i].contains(alg) {
            return Err(ctx.error(
                &format!("auth.algorithms[{i}]"),
                format!("{} is listed twice", alg.token()),
            ));
        }
    }
    let lockout = if raw.lockout.max_failures == 0 {
        LockoutPolicy {
            max_failures: 0,
            window: Duration::from_secs(raw.lockout.window_s.min(DAY_S)),
            cooldown: Duration::from_secs(raw.lockout.cooldown_s.min(DAY_S)),
        }
    } else {
        LockoutPolicy {
            max_failures: raw.lockout.max_failures,
            window: seconds(ctx, "auth.lockout.window_s", raw.lockout.window_s, 1, DAY_S)?,
            cooldown: seconds(
                ctx,
                "auth.lockout.cooldown_s",
                raw.lockout.cooldown_s,
                1,
                DAY_S,
            )?,
        }
    };
    let trusted = ip_nets(ctx, "auth.trusted", &raw.trusted)?;
    Ok(AuthConfig {
        realm,
        nonce_lifetime,
        algorithms: raw.algorithms,
        allow_no_qop: raw.allow_no_qop,
        lockout,
        trusted,
    })
}

fn validate_accounts(
    raw: Vec<RawAccount>,
    loopback_only: bool,
    ctx: &Ctx<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Vec<Account>, ConfigError> {
    let mut accounts: Vec<Account> = Vec::with_capacity(raw.len());
    for (i, a) in raw.into_iter().enumerate() {
        let user_field = format!("accounts[{i}].user");
        if !is_user_part(&a.user) {
            return Err(ctx.error(
                &user_field,
                format!(
                    "a user must be 1 to {MAX_NAME_LEN} letters, digits or `.-_+`, got {:?}",
                    a.user
                ),
            ));
        }
        if let Some(first) = accounts.iter().position(|x| x.user == a.user) {
            let (line, _) = ctx.index.nearest(&format!("accounts[{first}].user"));
            return Err(ctx.error(
                &user_field,
                format!(
                    "user {} is already defined (accounts[{first}], line {line})",
                    a.user
                ),
            ));
        }
        let password_field = format!("accounts[{i}].password");
        if a.password.is_empty() || a.password.chars().any(char::is_control) {
            return Err(ctx.error(
                &password_field,
                "a password must be non-empty and free of control characters",
            ));
        }
        if let Err(weak) = check_password(&a.user, &a.password) {
            if loopback_only {
                warnings.push(ctx.warning(
                    &password_field,
                    format!(
                        "weak password for user {}: {weak}; accepted only because every SIP listener is on loopback",
                        a.user
                    ),
                ));
            } else {
                return Err(ctx.error(
                    &password_field,
                    format!(
                        "weak password for user {}: {weak}; weak passwords are accepted only while every SIP listener is on a loopback address",
                        a.user
                    ),
                ));
            }
        }
        if let Some(name) = &a.display_name {
            if name.chars().any(char::is_control) {
                return Err(ctx.error(
                    &format!("accounts[{i}].display_name"),
                    "must not contain control characters",
                ));
            }
        }
        accounts.push(Account {
            user: a.user,
            password: Password(a.password),
            display_name: a.display_name,
            enabled: a.enabled,
        });
    }
    Ok(accounts)
}

fn validate_trunks(raw: Vec<RawTrunk>, ctx: &Ctx<'_>) -> Result<Vec<Trunk>, ConfigError> {
    let mut trunks: Vec<Trunk> = Vec::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        let name_field = format!("trunks[{i}].name");
        let name_ok = !t.name.is_empty()
            && t.name.len() <= MAX_NAME_LEN
            && t.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(ctx.error(
                &name_field,
                format!(
                    "a trunk name must be 1 to {MAX_NAME_LEN} letters, digits or `-_.`, got {:?}",
                    t.name
                ),
            ));
        }
        if let Some(first) = trunks.iter().position(|x| x.name == t.name) {
            let (line, _) = ctx.index.nearest(&format!("trunks[{first}].name"));
            return Err(ctx.error(
                &name_field,
                format!(
                    "trunk {} is already defined (trunks[{first}], line {line})",
                    t.name
                ),
            ));
        }
        let address = socket_addr(ctx, &format!("trunks[{i}].address"), &t.address)?;
        let extras = trunks::validate_extras(
            i,
            trunks::RawTrunkExtras {
                auth: t.auth,
                register: t.register,
                numbers: t.numbers,
                number_format: t.number_format,
                caller_id: t.caller_id,
                quota: t.quota,
                max_concurrent_calls: t.max_concurrent_calls,
            },
            address,
            ctx,
        )?;
        trunks.push(Trunk {
            address,
            trusted_sources: ip_nets(
                ctx,
                &format!("trunks[{i}].trusted_sources"),
                &t.trusted_sources,
            )?,
            name: t.name,
            enabled: t.enabled,
            auth: extras.auth,
            register: extras.register,
            numbers: extras.numbers,
            number_format: extras.number_format,
            caller_id: extras.caller_id,
            quota: extras.quota,
            max_concurrent_calls: extras.max_concurrent_calls,
        });
    }
    trunks::check_numbers_across_trunks(&trunks, ctx)?;
    Ok(trunks)
}

fn validate_media(
    raw: RawMedia,
    sip: &SipConfig,
    ctx: &Ctx<'_>,
) -> Result<MediaSettings, ConfigError> {
    const FIELD: &str = "media.rtp_address";
    let rtp_address = match raw.rtp_address {
        Some(text) => text.trim().parse::<IpAddr>().map_err(|_| {
            ctx.error(
                FIELD,
                format!(
                    "expected an IP address such as `192.0.2.10` or `2001:db8::10`, got {text:?}"
                ),
            )
        })?,
        None => {
            let first = sip.listen[0].address;
            if first.ip().is_unspecified() {
                return Err(ctx.error(
                    FIELD,
                    format!(
                        "required because the first SIP listener ({first}) is on every address: give the address phones send RTP to, such as `192.0.2.10`"
                    ),
                ));
            }
            first.ip()
        }
    };
    if rtp_address.is_unspecified() || rtp_address.is_multicast() {
        return Err(ctx.error(
            FIELD,
            format!(
                "{rtp_address} can not be advertised in SDP: give the address phones send RTP to"
            ),
        ));
    }
    let (min, max) = (raw.rtp_port_min, raw.rtp_port_max);
    if min < 1024 || min % 2 != 0 {
        return Err(ctx.error(
            "media.rtp_port_min",
            format!("must be an even port of at least 1024 (RTP on even ports, RTCP on the odd one above), got {min}"),
        ));
    }
    if max <= min {
        return Err(ctx.error(
            "media.rtp_port_max",
            format!("rtp_port_max ({max}) must be above rtp_port_min ({min})"),
        ));
    }
    const MAX_WORKERS: usize = 1024;
    if raw.workers > MAX_WORKERS {
        return Err(ctx.error(
            "media.workers",
            format!(
                "must be between 0 (one per core) and {MAX_WORKERS}, got {}",
                raw.workers
            ),
        ));
    }
    let rtp_timeout = match raw.rtp_timeout_s {
        0 => None,
        s => Some(seconds(ctx, "media.rtp_timeout_s", s, 1, DAY_S)?),
    };
    let dir = |field: &str, text: String| -> Result<PathBuf, ConfigError> {
        if text.trim().is_empty() || text.chars().any(char::is_control) {
            return Err(ctx.error(
                field,
                "must be a directory path, non-empty and free of control characters",
            ));
        }
        Ok(PathBuf::from(text))
    };
    Ok(MediaSettings {
        rtp_address,
        rtp_port_min: min,
        rtp_port_max: max,
        workers: raw.workers,
        rtp_timeout,
        prompts_dir: dir("media.prompts_dir", raw.prompts_dir)?,
        recordings_dir: dir("media.recordings_dir", raw.recordings_dir)?,
        record_calls: raw.record_calls,
    })
}

const MAX_NUMBER_LEN: usize = 32;

/// A dialable number as the routing tables hold it: digits, `*`, `#` and `+`.
fn is_dial_number(number: &str) -> bool {
    !number.is_empty()
        && number.len() <= MAX_NUMBER_LEN
        && number
            .chars()
            .all(|c| c.is_ascii_digit() || "*#+".contains(c))
}

fn validate_calls(
    raw: RawCalls,
    accounts: &[Account],
    ctx: &Ctx<'_>,
) -> Result<CallsConfig, ConfigError> {
    let line = raw.test_line;
    if !is_dial_number(&line.number) {
        return Err(ctx.error(
            "calls.test_line.number",
            format!(
                "a number must be 1 to {MAX_NUMBER_LEN} digits, `*`, `#` or `+`, got {:?}",
                line.number
            ),
        ));
    }
    // A disabled test line routes nothing, so its number may be handed to an account.
    if line.enabled {
        if let Some(i) = accounts.iter().position(|a| a.user == line.number) {
            let (account_line, _) = ctx.index.nearest(&format!("accounts[{i}].user"));
            return Err(ctx.error(
                "calls.test_line.number",
                format!(
                    "{} is also the user of accounts[{i}] (line {account_line}); pick another number or set calls.test_line.enabled: false",
                    line.number
                ),
            ));
        }
    }
    // Hidden files are never loaded as prompts, so a leading dot could not name one (and rules out `..`).
    let prompt_ok = !line.prompt.is_empty()
        && line.prompt.len() <= 255
        && !line.prompt.starts_with('.')
        && !line
            .prompt
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if !prompt_ok {
        return Err(ctx.error(
            "calls.test_line.prompt",
            format!(
                "expected a prompt name (a file in media.prompts_dir without its extension, such as `welcome`), got {:?}",
                line.prompt
            ),
        ));
    }
    let ring_timeout = seconds(ctx, "calls.ring_timeout_s", raw.ring_timeout_s, 1, 600)?;
    Ok(CallsConfig {
        test_line: line.enabled.then_some(TestLine {
            number: line.number,
            prompt: line.prompt,
        }),
        ring_timeout,
    })
}

fn validate_ivr(raw: RawIvr, ctx: &Ctx<'_>) -> Result<IvrSettings, ConfigError> {
    if raw.flows_dir.trim().is_empty() || raw.flows_dir.chars().any(char::is_control) {
        return Err(ctx.error(
            "ivr.flows_dir",
            "must be a directory path, non-empty and free of control characters",
        ));
    }
    Ok(IvrSettings {
        flows_dir: PathBuf::from(raw.flows_dir),
        watch: raw.watch,
    })
}

/// A flow name as the flow loader derives it from a file name: no path, no extension, no leading dot.
/// A flow's name (and a skill group's): letters, digits, `-` and `_`, 1 to 64 of them, so a
/// name is also a safe file name in the flows folder.
pub fn is_flow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

fn validate_numbers(
    raw: Vec<RawServiceNumber>,
    accounts: &[Account],
    trunks: &[Trunk],
    calls: &CallsConfig,
    ctx: &Ctx<'_>,
) -> Result<Vec<ServiceNumber>, ConfigError> {
    let mut numbers: Vec<ServiceNumber> = Vec::with_capacity(raw.len());
    for (i, n) in raw.into_iter().enumerate() {
        let number_field = format!("numbers[{i}].number");
        if !is_dial_number(&n.number) {
            return Err(ctx.error(
                &number_field,
                format!(
                    "a number must be 1 to {MAX_NUMBER_LEN} digits, `*`, `#` or `+`, got {:?}",
                    n.number
                ),
            ));
        }
        if !is_flow_name(&n.flow) {
            return Err(ctx.error(
                &format!("numbers[{i}].flow"),
                format!(
                    "expected a flow name (a file in ivr.flows_dir without its extension, such as `main`): 1 to {MAX_NAME_LEN} letters, digits or `-_`, got {:?}",
                    n.flow
                ),
            ));
        }
        if let Some(trunk) = &n.trunk {
            if !trunks.iter().any(|t| &t.name == trunk) {
                return Err(ctx.error(
                    &format!("numbers[{i}].trunk"),
                    format!("no trunk is named {trunk:?}"),
                ));
            }
        }
        if let Some(first) = numbers
            .iter()
            .position(|x| x.number == n.number && x.trunk == n.trunk)
        {
            let (line, _) = ctx.index.nearest(&format!("numbers[{first}].number"));
            let on = match &n.trunk {
                Some(t) => format!(" on trunk {t}"),
                None => String::new(),
            };
            return Err(ctx.error(
                &number_field,
                format!(
                    "number {}{on} is already bound (numbers[{first}], line {line})",
                    n.number
                ),
            ));
        }
        if let Some(a) = accounts.iter().position(|a| a.user == n.number) {
            let (line, _) = ctx.index.nearest(&format!("accounts[{a}].user"));
            return Err(ctx.error(
                &number_field,
                format!(
                    "{} is also the user of accounts[{a}] (line {line}); a dialled number must reach one thing",
                    n.number
                ),
            ));
        }
        if let Some(test_line) = calls.test_line.as_ref().filter(|t| t.number == n.number) {
            let whose = match ctx.index.occurrence("calls.test_line.number", 0) {
                Some((line, _)) => format!("the test line's number (line {line})"),
                None => "the test line's default number".to_owned(),
            };
            return Err(ctx.error(
                &number_field,
                format!(
                    "{} is also {whose}; pick another number or set calls.test_line.enabled: false",
                    test_line.number
                ),
            ));
        }
        numbers.push(ServiceNumber {
            number: n.number,
            flow: n.flow,
            trunk: n.trunk,
            enabled: n.enabled,
        });
    }
    Ok(numbers)
}

fn validate_blacklist(raw: RawBlacklist, ctx: &Ctx<'_>) -> Result<Blacklist, ConfigError> {
    Ok(Blacklist {
        inbound: number_patterns(&raw.inbound, "blacklist.inbound", ctx)?,
        outbound: number_patterns(&raw.outbound, "blacklist.outbound", ctx)?,
    })
}

fn number_patterns(
    texts: &[String],
    field: &str,
    ctx: &Ctx<'_>,
) -> Result<Vec<NumberPattern>, ConfigError> {
    let mut patterns = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let Some(pattern) = NumberPattern::parse(text) else {
            return Err(ctx.error(
                &format!("{field}[{i}]"),
                format!(
                    "expected a number (`+8613800000000`) or a prefix ending in `*` (`1380000*`), digits only, got {text:?}"
                ),
            ));
        };
        patterns.push(pattern);
    }
    Ok(patterns)
}

/// A trusted range that covers a loopback address lets every phone on this machine skip digest; that is
/// sometimes intended (a local SBC) but never by accident.
fn trusted_loopback_warnings(config: &Config, ctx: &Ctx<'_>) -> Vec<ConfigWarning> {
    let covers_loopback = |net: &IpNet| match net {
        IpNet::V4(n) => n.contains(&Ipv4Addr::LOCALHOST),
        IpNet::V6(n) => n.contains(&std::net::Ipv6Addr::LOCALHOST),
    };
    let message = |net: &IpNet| {
        format!("{net} covers this machine's loopback address: every local phone and tool skips digest authentication")
    };
    let mut warnings = Vec::new();
    for (i, net) in config.auth.trusted.iter().enumerate() {
        if covers_loopback(net) {
            warnings.push(ctx.warning(&format!("auth.trusted[{i}]"), message(net)));
        }
    }
    for (t, trunk) in config.trunks.iter().enumerate().filter(|(_, t)| t.enabled) {
        for (i, net) in trunk.trusted_sources.iter().enumerate() {
            if covers_loopback(net) {
                warnings
                    .push(ctx.warning(&format!("trunks[{t}].trusted_sources[{i}]"), message(net)));
            }
        }
        if trunk.register.is_some() && trunk.address.ip().is_loopback() {
            warnings.push(ctx.warning(
                &format!("trunks[{t}].register"),
                format!(
                    "a registering trunk's carrier address {} is trusted for inbound calls, and it is this machine's loopback address: every local phone and tool skips digest authentication",
                    trunk.address.ip()
                ),
            ));
        }
    }
    warnings
}

fn seconds(
    ctx: &Ctx<'_>,
    field: &str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    if value < min || value > max {
        return Err(ctx.error(
            field,
            format!("must be between {min} and {max} seconds, got {value}"),
        ));
    }
    Ok(Duration::from_secs(value))
}

fn socket_addr(ctx: &Ctx<'_>, field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ctx.error(
            field,
            format!("expected an IP address and port such as `127.0.0.1:5060` or `[::1]:5060`, got {text:?}"),
        )
    })
}

fn ip_nets(ctx: &Ctx<'_>, field: &str, texts: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| ip_net(ctx, &format!("{field}[{i}]"), text))
        .collect()
}

/// A CIDR range; a bare address means just that host (`/32`, `/128`). Host bits must be clear, so that
/// `192.168.1.10/24` (which trusts the whole /24) is not mistaken for one host.
fn ip_net(ctx: &Ctx<'_>, field: &str, text: &str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    let net = if text.contains('/') {
        text.parse::<IpNet>().map_err(|_| {
            ctx.error(
                field,
                format!(
                    "expected a CIDR range such as `203.0.113.0/24` or an address, got {text:?}"
                ),
            )
        })?
    } else {
        let addr = text.parse::<IpAddr>().map_err(|_| {
            ctx.error(
                field,
                format!(
                    "expected a CIDR range such as `203.0.113.0/24` or an address, got {text:?}"
                ),
            )
        })?;
        IpNet::from(addr)
    };
    if net.trunc() != net {
        return Err(ctx.error(
            field,
            format!(
                "{text} has host bits set; write the range as {} or the single host as {}",
                net.trunc(),
                net.addr()
            ),
        ));
    }
    if net.prefix_len() == 0 {
        return Err(ctx.error(
            field,
            format!("{text} trusts every address, which turns authentication off"),
        ));
    }
    Ok(net)
}

fn database_url(ctx: &Ctx<'_>, url: String) -> Result<String, ConfigError> {
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if !known.iter().any(|scheme| url.starts_with(scheme)) {
        return Err(ctx.error(
            "database.url",
            format!("expected an sqlite: or postgres:// URL such as `sqlite://data/switchboard.db`, got {url:?}"),
        ));
    }
    Ok(url)
}

/// Accepts what `EnvFilter` accepts for the usual cases, but insists on explicit levels: a lone word that
/// is not a level would be read by `EnvFilter` as a target name and silently log nothing.
fn log_level(ctx: &Ctx<'_>, level: String) -> Result<String, ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let ok = !level.trim().is_empty()
        && level.split(',').map(str::trim).all(|directive| {
            let lvl = directive
                .rsplit_once('=')
                .map_or(
                    directive,
                    |(target, lvl)| {
                        if target.is_empty() {
                            ""
                        } else {
                            lvl
                        }
                    },
                );
            LEVELS.contains(&lvl.to_ascii_lowercase().as_str())
        });
    if !ok {
        return Err(ctx.error(
            "logging.level",
            format!("expected a level (trace, debug, info, warn, error, off), optionally followed by `,target=level` pairs, got {level:?}"),
        ));
    }
    Ok(level)
}

fn is_user_part(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_NAME_LEN
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c))
}

fn is_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

use crate::yamlpos as locate;

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED_PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sip-config/switchboard.yaml"
    );
    const SHIPPED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sip-config/switchboard.yaml"
    ));
    const FILE: &str = "sip-config/switchboard.yaml";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(text, "t.yaml")
    }

    /// The error's Display, after checking it is an `Invalid` at `line` naming `field`.
    fn rejected(text: &str, line: usize, field: &str) -> String {
        let err = load(text).expect_err("config should be rejected");
        let shown = err.to_string();
        match &err {
            ConfigError::Invalid {
                line: l, field: f, ..
            } => {
                assert_eq!((*l, f.as_str()), (line, field), "{shown}");
            }
            ConfigError::Io { .. } => panic!("{shown}"),
        }
        assert!(shown.starts_with(&format!("t.yaml:{line}:")), "{shown}");
        assert!(shown.contains(&format!(": {field}: ")), "{shown}");
        shown
    }

    /// 1-based number of the first line of `text` containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in text"))
            + 1
    }

    #[test]
    fn shipped_file_loads_with_the_demo_numbering_plan() {
        let config = Config::load(SHIPPED_PATH).expect("the shipped configuration must load");
        let loopback = "127.0.0.1:5060".parse().unwrap();
        assert_eq!(
            config.sip.listen,
            [
                Listener {
                    transport: Transport::Udp,
                    address: loopback
                },
                Listener {
                    transport: Transport::Tcp,
                    address: loopback
                },
            ]
        );
        assert!(config.sip.loopback_only());
        assert_eq!(config.sip.domain, "switchboard");
        assert_eq!(config.auth.realm, "switchboard");
        assert_eq!(config.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.database.url, "sqlite://data/switchboard.db");
        let users: Vec<&str> = config.accounts.iter().map(|a| a.user.as_str()).collect();
        let expected: Vec<String> = (1001..=1020).map(|n| n.to_string()).collect();
        assert_eq!(users, expected);
        for account in &config.accounts {
            assert_eq!(account.password.expose(), format!("demo-{}", account.user));
            assert!(account.enabled);
        }
        assert_eq!(config.trunks.len(), 1);
        let carrier = config.trunk("carrier").unwrap();
        assert_eq!(carrier.address, "127.0.0.1:5080".parse().unwrap());
        assert!(carrier.enabled);
        // The demo trunk must not let loopback phones skip digest.
        assert!(carrier.trusted_sources.is_empty());
        assert_eq!(config.digest_exemption("127.0.0.1".parse().unwrap()), None);
        assert_eq!(config.media.rtp_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            config.calls.test_line,
            Some(TestLine {
                number: "9999".into(),
                prompt: "welcome".into()
            })
        );
        assert_eq!(config.ivr, IvrSettings::default());
        assert_eq!(
            config.numbers,
            [ServiceNumber {
                number: "4000".into(),
                flow: "main".into(),
                trunk: None,
                enabled: true,
            }]
        );
        assert_eq!(config.blacklist, Blacklist::default());
        // The demo ACD: sales and support, five desk-phone agents each, logged in at start.
        let acd = &config.acd;
        assert_eq!(
            acd.break_states,
            ["lunch", "training"].map(String::from).into()
        );
        assert_eq!(acd.feature_codes, FeatureCodes::default());
        assert_eq!(acd.memory, crate::acd::MemoryConfig::default());
        assert_eq!(
            acd.queues,
            [
                crate::acd::QueueConfig::new("sales", crate::acd::Strategy::RoundRobin),
                crate::acd::QueueConfig::new("support", crate::acd::Strategy::LongestIdleState),
            ]
        );
        assert_eq!(acd.agents.len(), 10);
        for (n, agent) in (1..=10).zip(&acd.agents) {
            let id = format!("80{n:02}");
            let queue = if n <= 5 { "sales" } else { "support" };
            let mut expected = crate::acd::AgentConfig::new(id.as_str()).in_queue(queue);
            expected.answer_mode = crate::acd::AnswerMode::DeskPhone {
                accounts: vec![format!("10{n:02}")],
            };
            expected.wrap_up = Duration::from_secs(5);
            expected.max_ring = Duration::from_secs(15);
            assert_eq!(agent.config, expected);
            assert_eq!(agent.pin.as_deref(), Some(id.as_str()));
            assert_eq!(agent.sign_in, SignIn::AtStart);
        }
        // The shipped values are the defaults: a minimal file behaves like the demo minus its accounts,
        // trunk, display number groups, regions, service number and ACD.
        let minimal = load("").unwrap();
        assert_eq!(
            Config {
                accounts: Vec::new(),
                trunks: Vec::new(),
                caller_id_groups: Vec::new(),
                regions: RegionsConfig::default(),
                numbers: Vec::new(),
                acd: AcdSection::default(),
                warnings: Vec::new(),
                ..config
            },
            minimal
        );
        assert_eq!(minimal, Config::default());
    }

    #[test]
    fn shipped_demo_passwords_warn_once_per_account_on_its_line() {
        let config = Config::from_yaml_str(SHIPPED, FILE).unwrap();
        assert_eq!(config.warnings.len(), 20, "{:#?}", config.warnings);
        for (i, (warning, account)) in config.warnings.iter().zip(&config.accounts).enumerate() {
            let secret = account.password.expose();
            let line = line_of(SHIPPED, &format!("password: \"{secret}\""));
            assert_eq!(warning.field, format!("accounts[{i}].password"));
            assert_eq!(
                (warning.file.as_str(), warning.line, warning.column),
                (FILE, line, 5)
            );
            let shown = warning.to_string();
            assert!(
                shown.starts_with(&format!(
                    "{FILE}:{line}:5: accounts[{i}].password: weak password"
                )),
                "{shown}"
            );
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn demo_passwords_are_rejected_on_a_reachable_listener() {
        let exposed = SHIPPED.replacen(
            "address: \"127.0.0.1:5060\"",
            "address: \"0.0.0.0:5060\"",
            1,
        );
        let err = Config::from_yaml_str(&exposed, FILE)
            .unwrap_err()
            .to_string();
        let line = line_of(&exposed, "password: \"demo-1001\"");
        assert!(
            err.starts_with(&format!(
                "{FILE}:{line}:5: accounts[0].password: weak password for user 1001"
            )),
            "{err}"
        );
        assert!(!err.contains("demo-1001"), "{err}");
    }

    #[test]
    fn strong_passwords_pass_on_a_reachable_listener() {
        let text = "\
sip:
  listen:
    - transport: udp
      address: \"0.0.0.0:5060\"
accounts:
  - user: \"1001\"
    password: \"Vr7-tkq9-LmZp\"
media:
  rtp_address: \"192.0.2.10\"
";
        let config = load(text).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert!(!config.sip.loopback_only());
        let debug = format!("{config:?}");
        assert!(!debug.contains("Vr7-tkq9-LmZp"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    /// Every mapping of the shipped file, in turn, gets a key nobody knows; each must be refused on that key's line.
    /// (hickory-dns does the same to its fixtures: a misspelt key must never fall back to a default.)
    #[test]
    fn a_bogus_key_in_any_mapping_of_the_shipped_file_is_rejected() {
        const BOGUS: &str = "bogus_key_for_test";
        let index = locate::Index::build(SHIPPED);
        let mut mappings: Vec<&str> = Vec::new();
        for entry in &index.entries {
            if let locate::Kind::Key { .. } = entry.kind {
                let parent = locate::parent(&entry.path).unwrap();
                if !mappings.contains(&parent) {
                    mappings.push(parent);
                }
            }
        }
        // The root, sip, two listeners, timers, http, database, registrar, auth, lockout, 20 accounts,
        // one trunk with auth, register, two numbers, number_format, caller_id and quota, one
        // caller_id_group with three numbers, regions with four prefixes and capitals, media, calls,
        // test_line, ivr, one service number, acd, feature_codes, call_memory, two skill groups, ten
        // agents, blacklist, logging.
        assert_eq!(mappings.len(), 70, "{mappings:?}");
        let lines: Vec<&str> = SHIPPED.lines().collect();
        for mapping in mappings {
            // Its keys are province names: any key is valid there.
            if mapping == "regions.capitals" {
                continue;
            }
            let keys: Vec<&locate::Entry> = index
                .entries
                .iter()
                .filter(|e| matches!(e.kind, locate::Kind::Key { .. }))
                .filter(|e| locate::parent(&e.path) == Some(mapping))
                .collect();
            // Before a key that opens its line, or after a one-line key that follows `- `.
            let (insert_at, column) = if let Some(k) = keys.iter().find(|k| {
                matches!(
                    k.kind,
                    locate::Kind::Key {
                        first_on_line: true,
                        ..
                    }
                )
            }) {
                (k.line - 1, k.column)
            } else {
                let k = keys
                    .iter()
                    .find(|k| {
                        matches!(
                            k.kind,
                            locate::Kind::Key {
                                inline_value: true,
                                ..
                            }
                        )
                    })
                    .unwrap_or_else(|| panic!("{mapping}: write it in block style"));
                (k.line, k.column)
            };
            let mut mutated: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            mutated.insert(insert_at, format!("{}{BOGUS}: 1", " ".repeat(column - 1)));
            let text = mutated.join("\n");
            let err = Config::from_yaml_str(&text, FILE)
                .expect_err(mapping)
                .to_string();
            let field = locate::join(mapping, BOGUS);
            let expected = format!(
                "{FILE}:{}:{column}: {field}: unknown field `{BOGUS}`",
                insert_at + 1
            );
            assert!(
                err.starts_with(&expected),
                "expected {expected}\n     got {err}"
            );
        }
    }

    #[test]
    fn wrong_types_name_the_key() {
        let shown = rejected("sip:\n  timers:\n    t1_ms: fast\n", 3, "sip.timers.t1_ms");
        assert!(
            shown.contains("invalid type: string \"fast\", expected u64"),
            "{shown}"
        );
        rejected(
            "registrar:\n  max_contacts_per_aor: -1\n",
            2,
            "registrar.max_contacts_per_aor",
        );
        let shown = rejected("sip: [udp]\n", 1, "sip");
        assert!(
            shown.ends_with("sip: invalid type: sequence, expected a mapping"),
            "{shown}"
        );
        rejected("auth:\n  allow_no_qop: maybe\n", 2, "auth.allow_no_qop");
        rejected(
            "accounts:\n  - user: \"1001\"\n    password: [a, b]\n",
            3,
            "accounts[0].password",
        );
    }

    #[test]
    fn unknown_enum_variants_name_the_key() {
        let text = "\
sip:
  listen:
    - transport: udp
      address: \"127.0.0.1:5060\"
    - transport: sctp
      address: \"127.0.0.1:5061\"
";
        let shown = rejected(text, 5, "sip.listen[1].transport");
        assert!(shown.starts_with("t.yaml:5:7: sip.listen[1].transport: unknown variant `sctp`, expected `udp` or `tcp`"), "{shown}");
        let shown = rejected(
            "auth:\n  algorithms: [sha256, sha512]\n",
            2,
            "auth.algorithms[1]",
        );
        assert!(shown.starts_with("t.yaml:2:24: "), "{shown}");
    }

    #[test]
    fn structural_errors_name_the_key() {
        let shown = rejected("logging:\n  level: info\nbogus: 1\n", 3, "bogus");
        assert!(
            shown.starts_with("t.yaml:3:1: bogus: unknown field `bogus`"),
            "{shown}"
        );
        let shown = rejected("sip:\n  domain: a\n  domain: b\n", 3, "sip.domain");
        assert!(shown.contains("duplicate field `domain`"), "{shown}");
        let shown = rejected("accounts:\n  - password: \"x\"\n", 2, "accounts[0]");
        assert!(shown.contains("missing field `user`"), "{shown}");
        let err = load("sip:\n  domain: a\n bad: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.yaml:3:"), "{err}");
    }

    #[test]
    fn duplicate_users_are_refused_on_the_second_occurrence() {
        let text = "\
accounts:
  - user: \"1001\"
    password: \"demo-1001\"
  - user: \"1002\"
    password: \"demo-1002\"
  - user: \"1001\"
    password: \"demo-1001\"
";
        let shown = rejected(text, 6, "accounts[2].user");
        assert!(
            shown.ends_with("user 1001 is already defined (accounts[0], line 2)"),
            "{shown}"
        );
        rejected(
            "accounts:\n  - user: \"10 01\"\n    password: \"x\"\n",
            2,
            "accounts[0].user",
        );
        rejected(
            "accounts:\n  - user: \"1001\"\n    password: \"\"\n",
            3,
            "accounts[0].password",
        );
    }

    #[test]
    fn expiry_bounds_must_be_ordered() {
        let shown = rejected(
            "registrar:\n  min_expires_s: 600\n  max_expires_s: 300\n",
            2,
            "registrar.min_expires_s",
        );
        assert!(
            shown.contains("must not exceed max_expires_s (300)"),
            "{shown}"
        );
        // A default that was not written is blamed on its section.
        let shown = rejected(
            "registrar:\n  max_expires_s: 1800\n",
            1,
            "registrar.default_expires_s",
        );
        assert!(shown.starts_with("t.yaml:1:1: "), "{shown}");
        rejected(
            "registrar:\n  default_expires_s: 30\n",
            2,
            "registrar.default_expires_s",
        );
        rejected(
            "registrar:\n  min_expires_s: 0\n",
            2,
            "registrar.min_expires_s",
        );
        rejected(
            "registrar:\n  max_contacts_per_aor: 0\n",
            2,
            "registrar.max_contacts_per_aor",
        );
    }

    #[test]
    fn cidr_ranges_are_checked() {
        let shown = rejected(
            "auth:\n  trusted:\n    - \"10.0.0.0/33\"\n",
            3,
            "auth.trusted[0]",
        );
        assert!(
            shown.starts_with("t.yaml:3:5: auth.trusted[0]: expected a CIDR range"),
            "{shown}"
        );
        rejected(
            "auth:\n  trusted: [10.0.0.0/8, nonsense]\n",
            2,
            "auth.trusted[1]",
        );
        let text = "\
trunks:
  - name: carrier
    address: \"127.0.0.1:5080\"
    trusted_sources: [\"192.168.1.10/24\"]
";
        let shown = rejected(text, 4, "trunks[0].trusted_sources[0]");
        assert!(
            shown.contains("write the range as 192.168.1.0/24 or the single host as 192.168.1.10"),
            "{shown}"
        );
        rejected("auth:\n  trusted: [\"0.0.0.0/0\"]\n", 2, "auth.trusted[0]");
        let config = load("auth:\n  trusted: [203.0.113.7, \"2001:db8::/32\"]\n").unwrap();
        assert_eq!(
            config.auth.trusted,
            [
                "203.0.113.7/32".parse::<IpNet>().unwrap(),
                "2001:db8::/32".parse().unwrap()
            ]
        );
    }

    #[test]
    fn other_semantic_errors_name_the_key() {
        rejected("http:\n  listen: \"localhost:8080\"\n", 2, "http.listen");
        rejected("sip:\n  listen: []\n", 2, "sip.listen");
        rejected("sip:\n  domain: \"bad domain\"\n", 2, "sip.domain");
        rejected(
            "sip:\n  timers:\n    t1_ms: 500\n    t2_ms: 100\n",
            4,
            "sip.timers.t2_ms",
        );
        rejected(
            "sip:\n  max_message_bytes: 10\n",
            2,
            "sip.max_message_bytes",
        );
        rejected(
            "sip:\n  user_agent: \"a\\r\\nVia: x\"\n",
            2,
            "sip.user_agent",
        );
        let text = "\
sip:
  listen:
    - transport: udp
      address: \"127.0.0.1:5060\"
    - transport: udp
      address: \"127.0.0.1:5060\"
";
        rejected(text, 5, "sip.listen[1]");
        rejected("database:\n  url: \"mysql://x\"\n", 2, "database.url");
        rejected("auth:\n  algorithms: []\n", 2, "auth.algorithms");
        rejected("auth:\n  algorithms: [md5, MD5]\n", 2, "auth.algorithms[1]");
        rejected("auth:\n  nonce_lifetime_s: 0\n", 2, "auth.nonce_lifetime_s");
        rejected(
            "auth:\n  lockout:\n    window_s: 0\n",
            3,
            "auth.lockout.window_s",
        );
        rejected("logging:\n  level: verbose\n", 2, "logging.level");
        let text = "\
trunks:
  - name: carrier
    address: \"127.0.0.1:5080\"
  - name: carrier
    address: \"127.0.0.1:5081\"
";
        rejected(text, 4, "trunks[1].name");
    }

    #[test]
    fn optional_values_resolve() {
        let config = load(
            "sip:\n  domain: pbx.example.com\n  user_agent: \"\"\nauth:\n  realm: Example\n  algorithms: [MD5]\n  lockout:\n    max_failures: 0\nlogging:\n  level: \"warn,switchboard_engine::sip=debug\"\n",
        )
        .unwrap();
        assert_eq!(config.sip.user_agent, None);
        assert_eq!(config.auth.realm, "Example");
        assert_eq!(config.auth.algorithms, [DigestAlgorithm::Md5]);
        assert_eq!(config.auth.lockout.max_failures, 0);
        assert_eq!(config.logging.level, "warn,switchboard_engine::sip=debug");
        let config = load("sip:\n  domain: pbx.example.com\n").unwrap();
        assert_eq!(config.auth.realm, "pbx.example.com");
        assert_eq!(config.sip.user_agent.as_deref(), Some(DEFAULT_USER_AGENT));
    }

    #[test]
    fn a_registering_trunks_carrier_address_is_its_inbound_source() {
        let yaml = "trunks:\n  - name: carrier\n    address: \"192.0.2.7:5060\"\n    auth: { username: \"sb\", password: \"carrier-secret-1\" }\n    register: { enabled: true }\n  - name: plain\n    address: \"192.0.2.8:5060\"\n";
        let config = load(yaml).expect("loads");
        let carrier: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(matches!(
            config.digest_exemption(carrier),
            Some(DigestExemption::Trunk(t)) if t.name == "carrier"
        ));
        assert_eq!(
            config.digest_exemption("192.0.2.8".parse().unwrap()),
            None,
            "a trunk that does not register is trusted only by trusted_sources"
        );
        assert_eq!(
            config.trunks[0].inbound_sources(),
            vec!["192.0.2.7/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn trusted_sources_skip_digest_and_loopback_ranges_warn() {
        let text = "\
auth:
  trusted: [\"127.0.0.0/8\"]
trunks:
  - name: carrier
    address: \"203.0.113.5:5060\"
    trusted_sources: [\"203.0.113.0/24\"]
  - name: old
    address: \"198.51.100.5:5060\"
    trusted_sources: [\"198.51.100.0/24\"]
    enabled: false
";
        let config = load(text).unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(
            (config.warnings[0].line, config.warnings[0].field.as_str()),
            (2, "auth.trusted[0]")
        );
        assert!(matches!(
            config.digest_exemption("127.0.0.1".parse().unwrap()),
            Some(DigestExemption::Trusted(_))
        ));
        assert!(matches!(
            config.digest_exemption("203.0.113.9".parse().unwrap()),
            Some(DigestExemption::Trunk(t)) if t.name == "carrier"
        ));
        assert_eq!(
            config.digest_exemption("198.51.100.9".parse().unwrap()),
            None
        );
    }

    #[test]
    fn media_and_calls_defaults() {
        let config = load("").unwrap();
        assert_eq!(
            config.media,
            MediaSettings {
                rtp_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                rtp_port_min: 10_000,
                rtp_port_max: 20_000,
                workers: 0,
                rtp_timeout: Some(Duration::from_secs(30)),
                prompts_dir: PathBuf::from("prompts"),
                recordings_dir: PathBuf::from("data/recordings"),
                record_calls: false,
            }
        );
        assert_eq!(
            config.calls,
            CallsConfig {
                test_line: Some(TestLine {
                    number: "9999".into(),
                    prompt: "welcome".into(),
                }),
                ring_timeout: Duration::from_secs(60),
            }
        );
        // The RTP address follows the first listener, whichever family it is.
        let config =
            load("sip:\n  listen:\n    - transport: udp\n      address: \"[::1]:5060\"\n").unwrap();
        assert_eq!(config.media.rtp_address, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn media_and_calls_values_resolve() {
        let text = "\
media:
  rtp_address: \"2001:db8::10\"
  rtp_port_min: 30000
  rtp_port_max: 30001
  workers: 4
  rtp_timeout_s: 0
  prompts_dir: /srv/prompts
  recordings_dir: rec
  record_calls: true
calls:
  test_line:
    number: \"*43\"
    prompt: echo-test
  ring_timeout_s: 600
";
        let config = load(text).unwrap();
        assert_eq!(
            config.media,
            MediaSettings {
                rtp_address: "2001:db8::10".parse().unwrap(),
                rtp_port_min: 30_000,
                rtp_port_max: 30_001,
                workers: 4,
                rtp_timeout: None,
                prompts_dir: PathBuf::from("/srv/prompts"),
                recordings_dir: PathBuf::from("rec"),
                record_calls: true,
            }
        );
        assert_eq!(
            config.calls.test_line,
            Some(TestLine {
                number: "*43".into(),
                prompt: "echo-test".into()
            })
        );
        assert_eq!(config.calls.ring_timeout, Duration::from_secs(600));
    }

    #[test]
    fn the_rtp_address_is_required_behind_an_unspecified_listener() {
        let text = "\
sip:
  listen:
    - transport: udp
      address: \"0.0.0.0:5060\"
media:
  rtp_port_min: 10000
";
        // Not written, so blamed on its section.
        let shown = rejected(text, 5, "media.rtp_address");
        assert!(
            shown.contains("required because the first SIP listener (0.0.0.0:5060)"),
            "{shown}"
        );
        let config = load(&format!("{text}  rtp_address: \"192.0.2.10\"\n")).unwrap();
        assert_eq!(
            config.media.rtp_address,
            "192.0.2.10".parse::<IpAddr>().unwrap()
        );
        // With no media section at all, the document start.
        rejected(
            "sip:\n  listen:\n    - transport: tcp\n      address: \"[::]:5060\"\n",
            1,
            "media.rtp_address",
        );
        rejected(
            "media:\n  rtp_address: \"0.0.0.0\"\n",
            2,
            "media.rtp_address",
        );
        rejected(
            "media:\n  rtp_address: \"239.1.1.1\"\n",
            2,
            "media.rtp_address",
        );
        let shown = rejected(
            "media:\n  rtp_address: \"pbx.local\"\n",
            2,
            "media.rtp_address",
        );
        assert!(
            shown.starts_with("t.yaml:2:3: media.rtp_address: expected an IP address"),
            "{shown}"
        );
    }

    #[test]
    fn media_values_are_checked() {
        let shown = rejected("media:\n  rtp_port_min: 10001\n", 2, "media.rtp_port_min");
        assert!(shown.contains("must be an even port"), "{shown}");
        rejected(
            "media:\n  rtp_port_min: 1000\n  rtp_port_max: 2000\n",
            2,
            "media.rtp_port_min",
        );
        let shown = rejected(
            "media:\n  rtp_port_min: 20000\n  rtp_port_max: 20000\n",
            3,
            "media.rtp_port_max",
        );
        assert!(
            shown.ends_with("rtp_port_max (20000) must be above rtp_port_min (20000)"),
            "{shown}"
        );
        // A maximum that was not written is blamed on its section.
        rejected("\nmedia:\n  rtp_port_min: 30000\n", 2, "media.rtp_port_max");
        let shown = rejected("media:\n  rtp_port_max: 70000\n", 2, "media.rtp_port_max");
        assert!(shown.contains("expected u16"), "{shown}");
        rejected("media:\n  workers: 100000\n", 2, "media.workers");
        rejected(
            "media:\n  rtp_timeout_s: 100000\n",
            2,
            "media.rtp_timeout_s",
        );
        rejected("media:\n  prompts_dir: \"\"\n", 2, "media.prompts_dir");
        rejected(
            "media:\n  recordings_dir: \" \"\n",
            2,
            "media.recordings_dir",
        );
        rejected(
            "media:\n  record_calls: sometimes\n",
            2,
            "media.record_calls",
        );
    }

    #[test]
    fn the_test_line_is_checked() {
        let text = "\
accounts:
  - user: \"1001\"
    password: \"demo-1001\"
  - user: \"9999\"
    password: \"demo-9999\"
calls:
  ring_timeout_s: 30
";
        // The default number collides: blamed on the section, naming the account's line.
        let shown = rejected(text, 6, "calls.test_line.number");
        assert!(
            shown.contains("9999 is also the user of accounts[1] (line 4)"),
            "{shown}"
        );
        let moved = format!("{text}  test_line:\n    number: \"1001\"\n");
        let shown = rejected(&moved, 9, "calls.test_line.number");
        assert!(shown.starts_with("t.yaml:9:5: "), "{shown}");
        // Switched off, the number is free for an account.
        let off = load(&format!("{text}  test_line:\n    enabled: false\n")).unwrap();
        assert_eq!(off.calls.test_line, None);
        assert_eq!(off.calls.ring_timeout, Duration::from_secs(30));
        // There is one way to switch it off. `test_line:` left empty is an empty section like any
        // other (the defaults), and an explicit null is refused like a null `sip:`.
        let empty = load("calls:\n  test_line:\n").unwrap();
        assert_eq!(empty.calls, CallsConfig::default());
        for null in ["~", "null"] {
            let shown = rejected(
                &format!("calls:\n  test_line: {null}\n"),
                2,
                "calls.test_line",
            );
            assert!(shown.ends_with("expected a mapping"), "{shown}");
        }
        rejected("sip: ~\n", 1, "sip");
        for bad in ["\"\"", "\"12 34\"", "\"1001a\"", "\"sip:9999\""] {
            rejected(
                &format!("calls:\n  test_line:\n    number: {bad}\n"),
                3,
                "calls.test_line.number",
            );
        }
        let config = load("calls:\n  test_line: {number: \"+#*0\"}\n").unwrap();
        assert_eq!(config.calls.test_line.unwrap().number, "+#*0");
        for bad in [
            "\"\"",
            "\"../etc/passwd\"",
            "\"a/b\"",
            "'a\\b'",
            "\".hidden\"",
        ] {
            let shown = rejected(
                &format!("calls:\n  test_line:\n    prompt: {bad}\n"),
                3,
                "calls.test_line.prompt",
            );
            assert!(shown.contains("expected a prompt name"), "{shown}");
        }
        rejected("calls:\n  ring_timeout_s: 0\n", 2, "calls.ring_timeout_s");
        rejected("calls:\n  ring_timeout_s: 601\n", 2, "calls.ring_timeout_s");
    }

    #[test]
    fn unknown_keys_in_media_and_calls_are_rejected() {
        let shown = rejected("media:\n  rtp_port: 10000\n", 2, "media.rtp_port");
        assert!(
            shown.starts_with("t.yaml:2:3: media.rtp_port: unknown field `rtp_port`"),
            "{shown}"
        );
        let shown = rejected("calls:\n  ring_timeout: 60\n", 2, "calls.ring_timeout");
        assert!(shown.contains("unknown field `ring_timeout`"), "{shown}");
        let shown = rejected(
            "calls:\n  test_line:\n    number: \"9999\"\n    promt: welcome\n",
            4,
            "calls.test_line.promt",
        );
        assert!(
            shown.starts_with("t.yaml:4:5: calls.test_line.promt: unknown field `promt`"),
            "{shown}"
        );
    }

    #[test]
    fn ivr_numbers_and_blacklist_defaults() {
        let config = load("ivr:\nblacklist:\n").unwrap();
        assert_eq!(
            config.ivr,
            IvrSettings {
                flows_dir: PathBuf::from("ivr-flows"),
                watch: true
            }
        );
        assert!(config.numbers.is_empty());
        assert!(config.blacklist.inbound.is_empty());
        assert!(!config.blacklist.blocks("13800000000"));
    }

    #[test]
    fn service_numbers_resolve() {
        let text = "\
trunks:
  - name: carrier
    address: \"127.0.0.1:5080\"
  - name: backup
    address: \"127.0.0.1:5081\"
ivr:
  flows_dir: \"/etc/switchboard/flows\"
  watch: false
numbers:
  - number: \"4000\"
    flow: main
  - number: \"4000\"
    flow: main-backup
    trunk: backup
  - number: \"+862188880000\"
    flow: sales_2
    trunk: carrier
    enabled: false
";
        let config = load(text).unwrap();
        assert_eq!(
            config.ivr.flows_dir,
            PathBuf::from("/etc/switchboard/flows")
        );
        assert!(!config.ivr.watch);
        assert_eq!(config.numbers.len(), 3);
        assert_eq!(
            config.numbers[2],
            ServiceNumber {
                number: "+862188880000".into(),
                flow: "sales_2".into(),
                trunk: Some("carrier".into()),
                enabled: false,
            }
        );
        // The entry bound to the call's trunk wins; otherwise the one for any trunk.
        let flow = |number, trunk| {
            config
                .service_number(number, trunk)
                .map(|n| n.flow.as_str())
        };
        assert_eq!(flow("4000", Some("backup")), Some("main-backup"));
        assert_eq!(flow("4000", Some("carrier")), Some("main"));
        assert_eq!(flow("4000", None), Some("main"));
        assert_eq!(flow("+862188880000", Some("carrier")), Some("sales_2"));
        assert_eq!(flow("+862188880000", Some("backup")), None);
        assert_eq!(flow("+862188880000", None), None);
        assert_eq!(flow("4001", None), None);
    }

    #[test]
    fn service_numbers_are_checked() {
        let number = |line: &str| format!("numbers:\n  - number: {line}\n    flow: main\n");
        let shown = rejected(&number("\"40-00\""), 2, "numbers[0].number");
        assert!(
            shown.starts_with("t.yaml:2:5: numbers[0].number: a number must be"),
            "{shown}"
        );
        rejected(&number("\"\""), 2, "numbers[0].number");
        // serde_yaml reads an unquoted number as its digits; the README still says to quote (a leading
        // zero or `+` would not survive as a YAML number).
        assert_eq!(load(&number("4000")).unwrap().numbers[0].number, "4000");
        for flow in ["\"main.yaml\"", "\"../main\"", "\"\"", "\".hidden\""] {
            let shown = rejected(
                &format!("numbers:\n  - number: \"4000\"\n    flow: {flow}\n"),
                3,
                "numbers[0].flow",
            );
            assert!(shown.contains("expected a flow name"), "{shown}");
        }
        let shown = rejected("numbers:\n  - number: \"4000\"\n", 2, "numbers[0]");
        assert!(shown.contains("missing field `flow`"), "{shown}");
        let shown = rejected(
            "numbers:\n  - number: \"4000\"\n    flow: main\n    trunk: nowhere\n",
            4,
            "numbers[0].trunk",
        );
        assert!(shown.contains("no trunk is named \"nowhere\""), "{shown}");
        let text = "\
trunks:
  - name: carrier
    address: \"127.0.0.1:5080\"
numbers:
  - number: \"4000\"
    flow: main
    trunk: carrier
  - number: \"4000\"
    flow: other
  - number: \"4000\"
    flow: other
    trunk: carrier
";
        let shown = rejected(text, 10, "numbers[2].number");
        assert!(
            shown.contains("number 4000 on trunk carrier is already bound (numbers[0], line 5)"),
            "{shown}"
        );
        let text = "\
numbers:
  - number: \"4000\"
    flow: main
  - number: \"4000\"
    flow: other
";
        let shown = rejected(text, 4, "numbers[1].number");
        assert!(
            shown.contains("number 4000 is already bound (numbers[0], line 2)"),
            "{shown}"
        );
        let text = "\
accounts:
  - user: \"1001\"
    password: \"demo-1001\"
numbers:
  - number: \"1001\"
    flow: main
";
        let shown = rejected(text, 5, "numbers[0].number");
        assert!(
            shown.contains("1001 is also the user of accounts[0] (line 2)"),
            "{shown}"
        );
        // The test line's number, default or written out; free once the test line is off.
        let shown = rejected(&number("\"9999\""), 2, "numbers[0].number");
        assert!(
            shown.contains("9999 is also the test line's default number"),
            "{shown}"
        );
        let text = format!(
            "calls:\n  test_line:\n    number: \"8888\"\n{}",
            number("\"8888\"")
        );
        let shown = rejected(&text, 5, "numbers[0].number");
        assert!(
            shown.contains("8888 is also the test line's number (line 3)"),
            "{shown}"
        );
        let off = format!(
            "calls:\n  test_line:\n    enabled: false\n{}",
            number("\"9999\"")
        );
        assert_eq!(load(&off).unwrap().numbers[0].number, "9999");
    }

    #[test]
    fn the_inbound_blacklist_matches_numbers_and_prefixes() {
        let config = load(
            "blacklist:\n  inbound: [\"+8613800000000\", \"1380000*\", \" 021 5555 \", \"+44*\"]\n",
        )
        .unwrap();
        assert_eq!(
            config.blacklist.inbound,
            [
                NumberPattern::Exact("8613800000000".into()),
                NumberPattern::Prefix("1380000".into()),
                NumberPattern::Exact("0215555".into()),
                NumberPattern::Prefix("44".into()),
            ]
        );
        let blocks = |n| config.blacklist.blocks(n);
        assert!(blocks("+8613800000000"));
        assert!(blocks("8613800000000"));
        assert!(blocks(" +86 138 0000 0000 "));
        assert!(!blocks("86138000000001"));
        assert!(blocks("13800001234"));
        assert!(blocks("138 0000 1234"));
        assert!(!blocks("13800011234"));
        assert!(blocks("0215555"));
        assert!(blocks("+447700900123"));
        assert!(!blocks(""));
        assert!(!blocks("anonymous"));
        for (bad, why) in [
            ("\"*\"", "matches everyone"),
            ("\"+\"", "empty"),
            ("\"138*0\"", "star inside"),
            ("\"138-0000\"", "punctuation"),
            ("\"sip:1380000\"", "a URI"),
        ] {
            let shown = rejected(
                &format!("blacklist:\n  inbound:\n    - \"1\"\n    - {bad}\n"),
                4,
                "blacklist.inbound[1]",
            );
            assert!(
                shown.contains("or a prefix ending in `*`"),
                "{why}: {shown}"
            );
        }
    }

    #[test]
    fn unknown_keys_in_ivr_numbers_and_blacklist_are_rejected() {
        let shown = rejected("ivr:\n  flow_dir: flows\n", 2, "ivr.flow_dir");
        assert!(
            shown.starts_with("t.yaml:2:3: ivr.flow_dir: unknown field `flow_dir`"),
            "{shown}"
        );
        let shown = rejected(
            "numbers:\n  - number: \"4000\"\n    flow: main\n    trunks: carrier\n",
            4,
            "numbers[0].trunks",
        );
        assert!(shown.contains("unknown field `trunks`"), "{shown}");
        let shown = rejected("blacklist:\n  outgoing: []\n", 2, "blacklist.outgoing");
        assert!(shown.contains("unknown field `outgoing`"), "{shown}");
        rejected("ivr:\n  flows_dir: \"\"\n", 2, "ivr.flows_dir");
    }

    /// "A malformed input never panics": truncations of the shipped file and stray YAML punctuation on
    /// every line must each give `Ok` or `Err`, never a panic or a hang.
    #[test]
    fn mangled_input_never_panics() {
        for cut in (0..SHIPPED.len()).step_by(7) {
            // Cut at a character boundary: the file holds non-ASCII (em dashes in comments).
            let cut = (0..=cut)
                .rev()
                .find(|&c| SHIPPED.is_char_boundary(c))
                .unwrap_or(0);
            let _ = load(&SHIPPED[..cut]);
        }
        let lines: Vec<&str> = SHIPPED.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            for junk in [
                "[", "{", "]", "}", "\"", "'", "- ", ": ", "#", "|", "\t", "[{]", "ü",
            ] {
                for at in [0, line.len() / 2, line.len()] {
                    if !line.is_char_boundary(at) {
                        continue;
                    }
                    let mut mutated = lines.clone();
                    let changed = format!("{}{junk}{}", &line[..at], &line[at..]);
                    mutated[n] = &changed;
                    let _ = load(&mutated.join("\n"));
                }
            }
        }
        for deep in [
            "[".repeat(1000),
            "- ".repeat(1000),
            "{a: ".repeat(1000),
            "a:\n ".repeat(1000),
        ] {
            assert!(load(&deep).is_err());
        }
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let err = Config::load("/nonexistent/switchboard.yaml").unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(
            err.to_string()
                .starts_with("/nonexistent/switchboard.yaml: cannot read"),
            "{err}"
        );
    }
}
