//! End-to-end harness: the real `switchboard` binary against real peers (SIPp, baresip, raw
//! sockets) on loopback.
//!
//! Every test owns everything it touches: a temporary directory (config, SQLite database, ready
//! file, logs, SIPp traces), a server on ports the system picked (`127.0.0.1:0`, never 5060 or
//! 8080) and its own peers. Nothing waits for wall-clock time and hopes: every wait is for an
//! observable event (a ready file, a metric value, a process exit, a line of output) with a
//! deadline, and every child process is killed when its guard drops, also when a test panics.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]
// Deadlines for real processes and sockets are wall-clock time; the clippy.toml ban on
// `Instant::now` is for the sans-IO core. Test files use [`Deadline`] instead.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod api;

/// The binary under test, built by Cargo for integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);
/// How long a server may take to write its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The default bound for waiting on a metric or a line of output.
pub const WAIT: Duration = Duration::from_secs(10);

/// `tests/sipp/<name>`.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// `tests/vectors/<rel>`.
pub fn vectors(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(rel)
}

/// A unique number within this test process (file names of successive runs in one directory).
fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A point in time a wait gives up at.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit)
    }

    pub fn passed(self) -> bool {
        Instant::now() >= self.0
    }

    /// Sleep one polling interval (async).
    pub async fn tick(self) {
        tokio::time::sleep(POLL).await;
    }
}

/// Days since 1970-01-01 in UTC, now: for tests that must write today's date into a config.
pub fn unix_days_now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    (secs / 86_400) as i64
}

/// Poll `f` every 20 ms until it returns `Some`, for at most `limit`.
pub fn poll_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// A child process that is killed (SIGKILL) and reaped when the guard drops, also while a test
/// panics: no test leaves a process behind.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> io::Result<ChildGuard> {
        cmd.spawn().map(|c| ChildGuard(Some(c)))
    }

    pub fn id(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// The exit status if it has exited (it is then reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.0.as_mut()?.try_wait().ok().flatten()?;
        self.0 = None;
        Some(status)
    }

    pub fn is_running(&mut self) -> bool {
        self.0.is_some() && self.try_wait().is_none()
    }

    /// Wait for it to exit, for at most `limit`; kill it if it does not (`None`).
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.0.as_ref()?;
        let status = poll_until(limit, || self.try_wait());
        if status.is_none() {
            self.kill();
        }
        status
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of a file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Ports and randomness
// ---------------------------------------------------------------------------------------------

/// A loopback port free for both UDP and TCP, for peers that cannot take port 0.
///
/// SIPp reads `-p 0` as "the default", not "any": it takes 5060, shared (four SIPps started at
/// once all bound it), and answers land in the wrong process. So the port is picked here by binding
/// `127.0.0.1:0` and releasing it. Between the release and the peer's own bind another process
/// could take it (a tiny race: the kernel hands out ephemeral ports at random); within this test
/// process no port is handed out twice.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..1000 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on loopback");
        let port = udp.local_addr().expect("local address").port();
        let Ok(_tcp) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// An even loopback UDP port with the three above it free too: SIPp takes `-mp` for audio RTP
/// and the port two above for video, and a peer's RTCP would take the odd ones.
pub fn free_media_port() -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        if port % 2 != 0 || port > u16::MAX - 3 {
            continue;
        }
        let others: Vec<_> = (1..4)
            .map_while(|i| UdpSocket::bind(("127.0.0.1", port + i)).ok())
            .collect();
        if others.len() == 3 {
            return port;
        }
    }
    panic!("no free pair of RTP ports found");
}

/// Wait until some process has bound UDP `port` on loopback (a peer started in the background
/// is listening); false after `limit`.
pub fn wait_udp_bound(port: u16, limit: Duration) -> bool {
    poll_until(limit, || {
        UdpSocket::bind(("127.0.0.1", port)).is_err().then_some(())
    })
    .is_some()
}

/// xorshift64: reproducible randomness for passwords and fuzz input.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `0..n` for tests.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts and configuration
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Account {
    pub user: String,
    pub password: String,
}

impl Account {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Account {
        Account {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The demo's `1001`…: password `demo-<n>` (weak, accepted because every listener is on
    /// loopback).
    pub fn demo(n: u32) -> Account {
        Account::new(n.to_string(), format!("demo-{n}"))
    }

    /// The SIPp keyword that answers a challenge with this account's credentials.
    pub fn sipp_auth(&self) -> String {
        format!(
            "[authentication username={} password={}]",
            self.user, self.password
        )
    }
}

/// `count` accounts numbered from `first`, with strong random passwords (16 characters of
/// letters and digits behind a fixed prefix: no dictionary word, run, repetition or user name).
pub fn strong_accounts(first: u32, count: u32, seed: u64) -> Vec<Account> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = Xorshift::new(seed);
    (first..first + count)
        .map(|n| {
            let body: String = (0..16)
                .map(|_| char::from(ALPHABET[rng.below(ALPHABET.len())]))
                .collect();
            Account::new(n.to_string(), format!("Sb-{body}"))
        })
        .collect()
}

/// An `-inf` file for the REGISTER scenarios: `user;[authentication ...]`, in order.
pub fn sipp_csv<'a>(rows: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let mut out = String::from("SEQUENTIAL\n");
    for (user, auth) in rows {
        let _ = writeln!(out, "{user};{auth}");
    }
    out
}

/// The YAML a test server runs with. Listeners and HTTP on `127.0.0.1:0`; the database in the
/// test's directory.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub accounts: Vec<Account>,
    /// `None`: the server's default (`[md5]`).
    pub algorithms: Option<Vec<&'static str>>,
    pub lockout_max_failures: Option<u32>,
    pub trusted: Vec<String>,
    pub tcp_idle_timeout_s: Option<u64>,
    pub tcp_max_connections_per_source: Option<usize>,
    pub udp_listen: Option<String>,
    pub tcp_listen: Option<String>,
    pub http_listen: String,
    /// The RTP range (`media.rtp_port_min`, `rtp_port_max`); `None`: [`Server::start_in`] picks
    /// one of its own, see [`rtp_range`].
    pub rtp_ports: Option<(u16, u16)>,
    pub record_calls: bool,
    /// `None`: `recordings/` in the server's directory (set by [`Server::start_in`]).
    pub recordings_dir: Option<PathBuf>,
    /// `media.rtp_timeout_s`; `None`: the server's default.
    pub rtp_timeout_s: Option<u64>,
    /// `calls.ring_timeout_s`; `None`: the server's default.
    pub ring_timeout_s: Option<u64>,
    /// IVR flows, `(name, YAML)`: written to `flows/<name>.yaml` in the server's directory before
    /// it starts, and that folder becomes `ivr.flows_dir`. Empty: the `ivr` section is left out
    /// (the server's default folder).
    pub flows: Vec<(String, String)>,
    /// `ivr.flows_dir`; `None`: `flows/` in the server's directory when there are [`flows`]
    /// (set by [`Server::start_in`]).
    ///
    /// [`flows`]: ServerConfig::flows
    pub flows_dir: Option<PathBuf>,
    /// `ivr.watch`; `None`: the server's default.
    pub ivr_watch: Option<bool>,
    /// `numbers`: `(service number, flow, enabled)`.
    pub numbers: Vec<(String, String, bool)>,
    /// `blacklist.inbound`.
    pub blacklist: Vec<String>,
    /// More top-level sections, verbatim (skill groups, agents, webhooks, …).
    pub extra_yaml: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            accounts: Vec::new(),
            algorithms: None,
            lockout_max_failures: None,
            trusted: Vec::new(),
            tcp_idle_timeout_s: None,
            tcp_max_connections_per_source: None,
            udp_listen: Some("127.0.0.1:0".into()),
            tcp_listen: Some("127.0.0.1:0".into()),
            http_listen: "127.0.0.1:0".into(),
            rtp_ports: None,
            record_calls: false,
            recordings_dir: None,
            rtp_timeout_s: None,
            ring_timeout_s: None,
            flows: Vec::new(),
            flows_dir: None,
            ivr_watch: None,
            numbers: Vec::new(),
            blacklist: Vec::new(),
            extra_yaml: String::new(),
        }
    }
}

impl ServerConfig {
    pub fn with_accounts(accounts: impl IntoIterator<Item = Account>) -> ServerConfig {
        ServerConfig {
            accounts: accounts.into_iter().collect(),
            ..ServerConfig::default()
        }
    }

    /// For servers SIPp authenticates against: SIPp 3.6.1 reads only the first challenge and
    /// computes only MD5. Pinned here, so these tests do not depend on the default.
    pub fn md5_only(mut self) -> ServerConfig {
        self.algorithms = Some(vec!["md5"]);
        self
    }

    pub fn lockout(mut self, max_failures: u32) -> ServerConfig {
        self.lockout_max_failures = Some(max_failures);
        self
    }

    pub fn trust(mut self, range: &str) -> ServerConfig {
        self.trusted.push(range.into());
        self
    }

    pub fn tcp_max_connections_per_source(mut self, n: usize) -> ServerConfig {
        self.tcp_max_connections_per_source = Some(n);
        self
    }

    pub fn tcp_idle_timeout_s(mut self, s: u64) -> ServerConfig {
        self.tcp_idle_timeout_s = Some(s);
        self
    }

    /// Record bridged calls (stereo WAV) into [`Server::recordings_dir`].
    pub fn record_calls(mut self) -> ServerConfig {
        self.record_calls = true;
        self
    }

    pub fn rtp_timeout_s(mut self, s: u64) -> ServerConfig {
        self.rtp_timeout_s = Some(s);
        self
    }

    pub fn ring_timeout_s(mut self, s: u64) -> ServerConfig {
        self.ring_timeout_s = Some(s);
        self
    }

    /// An IVR flow `name` (the file `<name>.yaml` in the flows folder) with this YAML.
    pub fn flow(mut self, name: &str, yaml: impl Into<String>) -> ServerConfig {
        self.flows.push((name.into(), yaml.into()));
        self
    }

    /// `ivr.watch`.
    pub fn ivr_watch(mut self, on: bool) -> ServerConfig {
        self.ivr_watch = Some(on);
        self
    }

    /// Bind service `number` to `flow` (`numbers`).
    pub fn number(mut self, number: &str, flow: &str) -> ServerConfig {
        self.numbers.push((number.into(), flow.into(), true));
        self
    }

    /// Bind service `number` to `flow`, switched off (`enabled: false`).
    pub fn disabled_number(mut self, number: &str, flow: &str) -> ServerConfig {
        self.numbers.push((number.into(), flow.into(), false));
        self
    }

    /// Refuse calls from `entry` (`blacklist.inbound`: a number, or a prefix ending in `*`).
    /// Append top-level YAML sections to the configuration.
    pub fn extra(mut self, yaml: &str) -> ServerConfig {
        self.extra_yaml.push_str(yaml);
        self
    }

    pub fn blacklist(mut self, entry: &str) -> ServerConfig {
        self.blacklist.push(entry.into());
        self
    }

    pub fn yaml(&self, db_url: &str) -> String {
        let mut y = String::from("sip:\n  listen:\n");
        for (transport, addr) in [("udp", &self.udp_listen), ("tcp", &self.tcp_listen)] {
            if let Some(a) = addr {
                let _ = writeln!(y, "    - transport: {transport}\n      address: \"{a}\"");
            }
        }
        if let Some(s) = self.tcp_idle_timeout_s {
            let _ = writeln!(y, "  tcp_idle_timeout_s: {s}");
        }
        if let Some(n) = self.tcp_max_connections_per_source {
            let _ = writeln!(y, "  tcp_max_connections_per_source: {n}");
        }
        let _ = writeln!(y, "http:\n  listen: \"{}\"", self.http_listen);
        let _ = writeln!(y, "database:\n  url: \"{db_url}\"");
        y.push_str("auth:\n");
        if let Some(algs) = &self.algorithms {
            let _ = writeln!(y, "  algorithms: [{}]", algs.join(", "));
        }
        if let Some(n) = self.lockout_max_failures {
            let _ = writeln!(
                y,
                "  lockout:\n    max_failures: {n}\n    window_s: 60\n    cooldown_s: 300"
            );
        }
        let trusted: Vec<String> = self.trusted.iter().map(|t| format!("\"{t}\"")).collect();
        let _ = writeln!(y, "  trusted: [{}]", trusted.join(", "));
        if self.accounts.is_empty() {
            y.push_str("accounts: []\n");
        } else {
            y.push_str("accounts:\n");
            for a in &self.accounts {
                let _ = writeln!(
                    y,
                    "  - user: \"{}\"\n    password: \"{}\"",
                    a.user, a.password
                );
            }
        }
        // Media: the repository's prompts whatever the working directory, the shipped `beep` as
        // the test line's prompt (the only prompt the repository ships), loopback RTP.
        let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let _ = writeln!(
            y,
            "media:\n  rtp_address: \"127.0.0.1\"\n  prompts_dir: \"{}\"\n  record_calls: {}",
            prompts.display(),
            self.record_calls
        );
        if let Some((min, max)) = self.rtp_ports {
            let _ = writeln!(y, "  rtp_port_min: {min}\n  rtp_port_max: {max}");
        }
        if let Some(dir) = &self.recordings_dir {
            let _ = writeln!(y, "  recordings_dir: \"{}\"", dir.display());
        }
        if let Some(s) = self.rtp_timeout_s {
            let _ = writeln!(y, "  rtp_timeout_s: {s}");
        }
        y.push_str("calls:\n  test_line:\n    number: \"9999\"\n    prompt: beep\n");
        if let Some(s) = self.ring_timeout_s {
            let _ = writeln!(y, "  ring_timeout_s: {s}");
        }
        if let Some(dir) = &self.flows_dir {
            let _ = writeln!(y, "ivr:\n  flows_dir: \"{}\"", dir.display());
            if let Some(on) = self.ivr_watch {
                let _ = writeln!(y, "  watch: {on}");
            }
        }
        if !self.numbers.is_empty() {
            y.push_str("numbers:\n");
            for (number, flow, enabled) in &self.numbers {
                let _ = writeln!(
                    y,
                    "  - number: \"{number}\"\n    flow: \"{flow}\"\n    enabled: {enabled}"
                );
            }
        }
        if !self.blacklist.is_empty() {
            let entries: Vec<String> = self.blacklist.iter().map(|b| format!("\"{b}\"")).collect();
            let _ = writeln!(y, "blacklist:\n  inbound: [{}]", entries.join(", "));
        }
        y.push_str(&self.extra_yaml);
        y.push_str("logging:\n  level: info\n");
        y
    }
}

/// An RTP range of 200 ports for one server: parallel tests must not share one, or one server's
/// sessions would find every port taken by another's. The base is a port the system just handed
/// out (random, even after rounding down), moved into 20000–58800; a port some other process
/// holds meanwhile is skipped by the server, which tries the next pair.
pub fn rtp_range() -> (u16, u16) {
    let base = (free_port() & !1).clamp(20_000, 58_800);
    (base, base + 199)
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// A running `switchboard`: killed (SIGKILL) and reaped on drop. When the test is panicking, the
/// tail of its log goes to stderr first.
pub struct Server {
    dir: Arc<TempDir>,
    child: ChildGuard,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    pub pid: u32,
    recordings: PathBuf,
    flows: Option<PathBuf>,
    config_path: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    http_client: reqwest::Client,
}

impl Server {
    /// Start a server in a fresh temporary directory.
    pub fn start(config: &ServerConfig) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("create a temporary directory"));
        Server::start_in(dir, config)
    }

    /// Start a server in `dir`; its database is `dir/switchboard.db`, so a second server in the
    /// same directory finds what the first one stored.
    pub fn start_in(dir: Arc<TempDir>, config: &ServerConfig) -> Server {
        let n = next_id();
        let path = dir.path();
        let mut config = config.clone();
        config.rtp_ports.get_or_insert_with(rtp_range);
        let recordings = config
            .recordings_dir
            .get_or_insert_with(|| path.join("recordings"))
            .clone();
        if !config.flows.is_empty() {
            let flows = config
                .flows_dir
                .get_or_insert_with(|| path.join("flows"))
                .clone();
            fs::create_dir_all(&flows).expect("create the flows folder");
            for (name, yaml) in &config.flows {
                write_flow(&flows, name, yaml);
            }
        }
        let flows = config.flows_dir.clone();
        let config_path = path.join(format!("switchboard-{n}.yaml"));
        fs::write(&config_path, config.yaml(&db_url(path))).expect("write the config");
        let ready = path.join(format!("ready-{n}.json"));
        let stdout = path.join(format!("server-{n}.stdout.log"));
        let stderr = path.join(format!("server-{n}.stderr.log"));
        let mut child = ChildGuard::spawn(
            Command::new(BIN)
                .arg("--config")
                .arg(&config_path)
                .arg("--ready-file")
                .arg(&ready)
                .env_remove("RUST_LOG")
                .env_remove("SWITCHBOARD_CONFIG")
                .stdin(Stdio::null())
                .stdout(fs::File::create(&stdout).expect("create the stdout log"))
                .stderr(fs::File::create(&stderr).expect("create the stderr log")),
        )
        .expect("start switchboard");
        // The ready file appears (written then renamed, so never half) once every listener is up.
        let doc = poll_until(READY_TIMEOUT, || {
            if let Some(status) = child.try_wait() {
                return Some(Err(status));
            }
            let text = fs::read_to_string(&ready).ok()?;
            Some(Ok(
                serde_json::from_str::<serde_json::Value>(&text).expect("ready file is JSON")
            ))
        });
        let doc = match doc {
            Some(Ok(doc)) => doc,
            Some(Err(status)) => panic!(
                "switchboard exited before it was ready ({status}):\n{}\n{}",
                tail(&stdout, 30),
                tail(&stderr, 30)
            ),
            None => {
                child.kill();
                panic!(
                    "switchboard was not ready within {READY_TIMEOUT:?}:\n{}",
                    tail(&stdout, 30)
                )
            }
        };
        let listener = |transport: &str| -> SocketAddr {
            doc["sip"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["transport"] == transport))
                .and_then(|l| l["address"].as_str())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {transport} listener in the ready file: {doc}"))
        };
        let udp = listener("udp");
        let tcp = listener("tcp");
        let http: SocketAddr = doc["http"].as_str().unwrap().parse().unwrap();
        let pid = doc["pid"].as_u64().unwrap() as u32;
        assert_eq!(Some(pid), child.id(), "the ready file names the process");
        Server {
            dir,
            child,
            udp,
            tcp,
            http,
            pid,
            recordings,
            flows,
            config_path,
            stdout,
            stderr,
            // A fresh connection per request: nothing pooled can go stale while a test drives
            // other processes, or across a server's restart.
            http_client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory, to start a successor in (it outlives this server).
    pub fn dir_handle(&self) -> Arc<TempDir> {
        self.dir.clone()
    }

    /// Where call recordings go (`media.recordings_dir`).
    pub fn recordings_dir(&self) -> &Path {
        &self.recordings
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("switchboard.db")
    }

    /// What the server logged so far (the tracing output goes to stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// No task panicked. tokio catches a panic in a spawned task (a connection's reader, say)
    /// and the server stays up, so liveness alone would hide it; the panic message is on stderr.
    #[track_caller]
    pub fn assert_no_panic(&self) {
        let stderr = self.stderr();
        assert!(!stderr.contains("panicked"), "a task panicked:\n{stderr}");
    }

    /// SIGKILL, as a crash or the OOM killer would.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM, as a service manager stops it; the exit status, or `None` when it was still
    /// running after `limit` (it is then killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let pid = self.child.id()?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.child.wait(limit)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http_client
            .get(format!("http://{}{path}", self.http))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn healthz(&self) -> u16 {
        self.get("/healthz").await.status().as_u16()
    }

    pub async fn metrics(&self) -> Metrics {
        let resp = self.get("/metrics").await;
        assert_eq!(resp.status().as_u16(), 200, "GET /metrics");
        Metrics::parse(&resp.text().await.expect("metrics body"))
    }

    /// Poll `/metrics` until `series` (a name, or `name{label="v"}`) satisfies `ok`; the value.
    pub async fn wait_metric(&self, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let m = self.metrics().await;
            let v = m.value(series);
            if ok(v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{series} is {v} after {WAIT:?}, not the value awaited\n{}",
                    m.text
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A read-only connection to the server's SQLite database.
    pub async fn db(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.db_path())
            .read_only(true);
        sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open the server's database")
    }

    /// `(aor, transport, user_agent)` of every row in `registrations`.
    pub async fn stored_registrations(&self) -> Vec<(String, String, Option<String>)> {
        let mut db = self.db().await;
        sqlx::query_as("SELECT aor, transport, user_agent FROM registrations ORDER BY aor")
            .fetch_all(&mut db)
            .await
            .expect("query registrations")
    }

    /// A SIPp run against this server over UDP (`.tcp()` for TCP).
    /// Register `account` with digest from SIP port `port`, as a desk phone does. SIPp then
    /// exits and a UAS (or a socket of the test) takes the port over: the server sends INVITEs
    /// to the address the REGISTER came from.
    pub async fn register_from(&self, account: &Account, port: u16) {
        self.sipp()
            .scenario("register_auth.xml")
            .csv(sipp_csv([(account.user.as_str(), account.sipp_auth())]))
            .port(port)
            .run()
            .await
            .assert_all_successful(1);
    }

    /// A desk phone: `account` registered from `port`, then `scenario` running there in the
    /// background once it listens.
    pub async fn phone(
        &self,
        account: &Account,
        scenario: Sipp,
        port: u16,
    ) -> tokio::task::JoinHandle<SippRun> {
        self.register_from(account, port).await;
        let run = tokio::spawn(scenario.port(port).run());
        wait_listening(port).await;
        run
    }

    pub fn sipp(&self) -> Sipp {
        Sipp::new(self.dir(), self.udp, self.tcp)
    }

    /// A SIPp caller: `scenario` from `from` (the `caller` key) dialling `number`. Callers add
    /// their own keys and arguments.
    pub fn dial(&self, scenario: &str, from: &str, number: &str) -> Sipp {
        self.sipp()
            .scenario(scenario)
            .arg("-s")
            .arg(number)
            .key("caller", from)
    }

    /// Run a caller SIPp to its end and require that its one call succeeded.
    pub async fn run_ok(&self, sipp: Sipp) -> SippRun {
        let run = sipp.run().await;
        assert!(
            run.code == Some(0) && run.successful == 1 && run.failed == 0,
            "the SIPp call failed\n{}\n--- messages ---\n{}\n--- server log ---\n{}",
            run.report(),
            run.messages,
            self.log()
        );
        run
    }

    /// An API token of `role` made with `switchboard token create` (the CLI), as printed.
    pub fn token(&self, role: &str, name: &str) -> String {
        let run = self.cli(&["token", "create", "--role", role, "--name", name]);
        assert!(run.status.success(), "{run:?}");
        let token = run.stdout.trim().to_owned();
        assert!(token.starts_with("sb_"), "{run:?}");
        token
    }

    /// The configuration file the server runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Run a `switchboard` command (`cdr list`, …) on this server's configuration, to completion
    /// (at most [`WAIT`]).
    pub fn cli(&self, args: &[&str]) -> Finished {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        all.push(std::ffi::OsStr::new("--config"));
        all.push(self.config_path.as_os_str());
        run_switchboard(self.dir(), &all, WAIT)
    }

    /// The IVR flows folder (`ivr.flows_dir`), when the config had flows.
    pub fn flows_dir(&self) -> &Path {
        self.flows
            .as_deref()
            .expect("the server was started without flows")
    }

    /// Replace (or add) the flow file `<name>.yaml`, whole: the watcher never sees half a file.
    pub fn write_flow(&self, name: &str, yaml: &str) {
        write_flow(self.flows_dir(), name, yaml);
    }

    /// Wait until at least `min_rows` call records match `by` and the newest of them is closed
    /// (its call ended), for at most [`WAIT`]; that record.
    pub async fn wait_cdr(&self, by: CdrBy<'_>, min_rows: usize) -> Cdr {
        let (column, value) = match by {
            CdrBy::Service(n) => ("service_number", n),
            CdrBy::Caller(n) => ("customer_number", n),
        };
        let mut db = self.db().await;
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {CDR_COLUMNS} FROM cdrs WHERE {column} = ? \
                 ORDER BY started_at_ms DESC, rowid DESC"
            ))
            .bind(value)
            .fetch_all(&mut db)
            .await
            .expect("query cdrs");
            if rows.len() >= min_rows {
                let newest = Cdr::from_row(&rows[0]);
                if newest.ended_at_ms.is_some() {
                    return newest;
                }
            }
            if Instant::now() >= deadline {
                let all = sqlx::query(&format!("SELECT {CDR_COLUMNS} FROM cdrs"))
                    .fetch_all(&mut db)
                    .await
                    .expect("query cdrs");
                let all: Vec<Cdr> = all.iter().map(Cdr::from_row).collect();
                panic!(
                    "no closed call record for {column} = {value} (at least {min_rows} rows) \
                     within {WAIT:?}; every record:\n{all:#?}\n--- server log ---\n{}",
                    tail(&self.stderr, 60)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The operation log of flow `name` (`flow_publications`), oldest first.
    pub async fn publications(&self, name: &str) -> Vec<Publication> {
        use sqlx::Row;
        let mut db = self.db().await;
        sqlx::query(
            "SELECT version, actor, action, diff, errors FROM flow_publications \
             WHERE flow = ? ORDER BY id",
        )
        .bind(name)
        .fetch_all(&mut db)
        .await
        .expect("query flow_publications")
        .iter()
        .map(|r| Publication {
            version: r.get("version"),
            actor: r.get("actor"),
            action: r.get("action"),
            diff: r.get("diff"),
            errors: r.get("errors"),
        })
        .collect()
    }

    /// Poll the operation log of flow `name` until `ok` holds for some entry, for at most
    /// [`WAIT`]; that entry.
    pub async fn wait_publication(
        &self,
        name: &str,
        ok: impl Fn(&Publication) -> bool,
    ) -> Publication {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.publications(name).await;
            if let Some(p) = log.iter().find(|p| ok(p)) {
                return p.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "no such entry in the operation log of flow {name} within {WAIT:?}:\n{log:#?}\n--- server log ---\n{}",
                    tail(&self.stderr, 60)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Write `<dir>/<name>.yaml` through a temporary file and a rename (atomic on one file system).
pub fn write_flow(dir: &Path, name: &str, yaml: &str) {
    let tmp = dir.join(format!(".{name}.yaml.tmp"));
    fs::write(&tmp, yaml).expect("write a flow file");
    fs::rename(&tmp, dir.join(format!("{name}.yaml"))).expect("rename a flow file into place");
}

/// Which call records [`Server::wait_cdr`] looks at.
#[derive(Clone, Copy, Debug)]
pub enum CdrBy<'a> {
    /// `service_number`: calls to a number bound to a flow.
    Service(&'a str),
    /// `customer_number`: calls from this caller (also refused ones, whose dialled number was
    /// not a service number).
    Caller(&'a str),
}

const CDR_COLUMNS: &str = "call_id, customer_number, service_number, started_at_ms, \
    answered_at_ms, ended_at_ms, result, missed_reason, ivr_trail, inputs, flow, flow_version, \
    hangup_by, recording_path";

/// A call's main record (`cdrs`), as stored.
#[derive(Clone, Debug)]
pub struct Cdr {
    pub call_id: String,
    pub customer_number: String,
    pub service_number: Option<String>,
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub result: Option<String>,
    pub missed_reason: Option<String>,
    /// `flow:node→exit` entries, in order.
    pub ivr_trail: Vec<String>,
    /// `(name, value)` of collected inputs, masked where sensitive.
    pub inputs: Vec<(String, String)>,
    pub flow: Option<String>,
    pub flow_version: Option<String>,
    pub hangup_by: Option<String>,
    pub recording_path: Option<String>,
}

impl Cdr {
    fn from_row(r: &sqlx::sqlite::SqliteRow) -> Cdr {
        use sqlx::Row;
        let trail: String = r.get("ivr_trail");
        let inputs: String = r.get("inputs");
        let inputs: Vec<serde_json::Value> =
            serde_json::from_str(&inputs).expect("inputs is a JSON array");
        Cdr {
            call_id: r.get("call_id"),
            customer_number: r.get("customer_number"),
            service_number: r.get("service_number"),
            started_at_ms: r.get("started_at_ms"),
            answered_at_ms: r.get("answered_at_ms"),
            ended_at_ms: r.get("ended_at_ms"),
            result: r.get("result"),
            missed_reason: r.get("missed_reason"),
            ivr_trail: serde_json::from_str(&trail).expect("ivr_trail is a JSON array of strings"),
            inputs: inputs
                .iter()
                .map(|i| {
                    (
                        i["name"].as_str().unwrap_or_default().to_owned(),
                        i["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            flow: r.get("flow"),
            flow_version: r.get("flow_version"),
            hangup_by: r.get("hangup_by"),
            recording_path: r.get("recording_path"),
        }
    }
}

/// One entry of a flow's operation log (`flow_publications`).
#[derive(Clone, Debug)]
pub struct Publication {
    pub version: String,
    pub actor: String,
    /// `published` or `rejected`.
    pub action: String,
    pub diff: Option<String>,
    pub errors: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- switchboard (pid {}) log tail, {} ---\n{}\n--- stderr ---\n{}",
                self.pid,
                self.dir.path().display(),
                tail(&self.stdout, 40),
                tail(&self.stderr, 20)
            );
        }
        self.kill();
    }
}

pub fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("switchboard.db").display())
}

/// Run `switchboard` with `args` to completion (at most `limit`): exit status, stdout, stderr.
pub fn run_switchboard(dir: &Path, args: &[&std::ffi::OsStr], limit: Duration) -> Finished {
    let n = next_id();
    let out = dir.join(format!("run-{n}.stdout"));
    let err = dir.join(format!("run-{n}.stderr"));
    let mut child = ChildGuard::spawn(
        Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("SWITCHBOARD_CONFIG")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap()),
    )
    .expect("start switchboard");
    let status = child
        .wait(limit)
        .unwrap_or_else(|| panic!("switchboard {args:?} still running after {limit:?}"));
    Finished {
        status,
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    }
}

#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// A Prometheus text exposition, parsed into `(series, value)`; `series` is the name with its
/// labels as printed (`sip_responses_sent_total{status="404"}`).
pub struct Metrics {
    pub text: String,
    samples: Vec<(String, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.trim().to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        Metrics {
            text: text.to_owned(),
            samples,
        }
    }

    /// The value of one series (exactly as printed); 0 when absent (a counter never incremented
    /// is not exported).
    pub fn value(&self, series: &str) -> f64 {
        self.samples
            .iter()
            .find(|(s, _)| s == series)
            .map_or(0.0, |(_, v)| *v)
    }

    /// The sum over every label set of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(s, _)| s == name || s.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
            .map(|(_, v)| v)
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------------------------

/// One SIPp run: a builder, then [`Sipp::run`]. Traces go to the test's directory under names of
/// their own; the run is bounded by SIPp's `-timeout` (with `-timeout_error`, so reaching it is
/// a failure) and, should SIPp itself hang, by a wall-clock limit after which it is killed.
pub struct Sipp {
    dir: PathBuf,
    udp: SocketAddr,
    tcp: SocketAddr,
    transport_tcp: bool,
    scenario: Option<PathBuf>,
    builtin: Option<&'static str>,
    csv: Option<String>,
    calls: u32,
    rate: u32,
    timeout_s: u32,
    trace_msg: bool,
    port: Option<u16>,
    media_port: Option<u16>,
    extra: Vec<OsString>,
}

impl Sipp {
    fn new(dir: &Path, udp: SocketAddr, tcp: SocketAddr) -> Sipp {
        Sipp {
            dir: dir.to_owned(),
            udp,
            tcp,
            transport_tcp: false,
            scenario: None,
            builtin: None,
            csv: None,
            calls: 1,
            rate: 10,
            timeout_s: 20,
            trace_msg: false,
            port: None,
            media_port: None,
            extra: Vec::new(),
        }
    }

    /// A scenario file under `tests/sipp/`.
    pub fn scenario(mut self, name: &str) -> Sipp {
        self.scenario = Some(scenario(name));
        self
    }

    /// One of SIPp's built-in scenarios (`uac`, …).
    pub fn builtin(mut self, name: &'static str) -> Sipp {
        self.builtin = Some(name);
        self
    }

    /// The `-inf` injection file's content.
    pub fn csv(mut self, content: String) -> Sipp {
        self.csv = Some(content);
        self
    }

    pub fn calls(mut self, m: u32) -> Sipp {
        self.calls = m;
        self
    }

    pub fn rate(mut self, r: u32) -> Sipp {
        self.rate = r;
        self
    }

    /// TCP, one connection for all calls (`-t t1`).
    pub fn tcp(mut self) -> Sipp {
        self.transport_tcp = true;
        self
    }

    /// Keep every message sent and received (`-trace_msg`), see [`SippRun::received`].
    pub fn trace_msg(mut self) -> Sipp {
        self.trace_msg = true;
        self
    }

    /// SIPp's own SIP port (`-p`), for a peer the test must address or that must take over a
    /// port another SIPp registered from; by default one of [`free_port`]'s.
    pub fn port(mut self, port: u16) -> Sipp {
        self.port = Some(port);
        self
    }

    /// SIPp's RTP port (`-mp`); by default one of [`free_media_port`]'s, never SIPp's fixed 6000
    /// that parallel runs would share.
    pub fn media_port(mut self, port: u16) -> Sipp {
        self.media_port = Some(port);
        self
    }

    /// Overall limit (`-timeout`, in seconds; reaching it fails the run).
    pub fn timeout_s(mut self, s: u32) -> Sipp {
        self.timeout_s = s;
        self
    }

    /// A scenario keyword: `[name]` in the scenario becomes `value` (`-key name value`).
    pub fn key(self, name: &str, value: impl std::fmt::Display) -> Sipp {
        self.arg("-key").arg(name).arg(value.to_string())
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Sipp {
        self.extra.push(a.into());
        self
    }

    pub fn remote(&self) -> SocketAddr {
        if self.transport_tcp {
            self.tcp
        } else {
            self.udp
        }
    }

    pub async fn run(self) -> SippRun {
        tokio::task::spawn_blocking(move || self.run_blocking())
            .await
            .expect("the SIPp runner panicked")
    }

    pub fn run_blocking(self) -> SippRun {
        let n = next_id();
        let name = format!("sipp-{n}");
        let file = |suffix: &str| self.dir.join(format!("{name}.{suffix}"));
        let (stat, errors, screen, messages, stdout) = (
            file("stat.csv"),
            file("errors.log"),
            file("screen.log"),
            file("messages.log"),
            file("stdout.log"),
        );
        let port = self.port.unwrap_or_else(free_port);
        let media_port = self.media_port.unwrap_or_else(free_media_port);
        let mut cmd = Command::new("sipp");
        cmd.arg(self.remote().to_string());
        match (&self.scenario, self.builtin) {
            (Some(sf), _) => cmd.arg("-sf").arg(sf),
            (None, Some(sn)) => cmd.arg("-sn").arg(sn),
            (None, None) => panic!("a SIPp run needs a scenario"),
        };
        if let Some(csv) = &self.csv {
            let path = file("inf.csv");
            fs::write(&path, csv).unwrap();
            cmd.arg("-inf").arg(path);
        }
        if self.transport_tcp {
            cmd.args(["-t", "t1"]);
        }
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-m", &self.calls.to_string(), "-r", &self.rate.to_string()])
            .arg("-nostdin")
            .args([
                "-timeout",
                &format!("{}s", self.timeout_s),
                "-timeout_error",
            ])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&errors)
            .arg("-trace_stat")
            .arg("-stf")
            .arg(&stat)
            .arg("-trace_screen")
            .arg("-screen_file")
            .arg(&screen);
        if self.trace_msg {
            cmd.arg("-trace_msg").arg("-message_file").arg(&messages);
        }
        let out = fs::File::create(&stdout).unwrap();
        cmd.args(&self.extra)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stderr(out.try_clone().unwrap())
            .stdout(out);
        let command = format!("{cmd:?}");
        let mut child =
            ChildGuard::spawn(&mut cmd).expect("start sipp (Debian package sip-tester)");
        let status = child.wait(Duration::from_secs(u64::from(self.timeout_s) + 10));
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        let (successful, failed) = parse_stat(&read(&stat));
        SippRun {
            command,
            code: status.and_then(|s| s.code()),
            successful,
            failed,
            screen: read(&screen),
            errors: read(&errors),
            messages: read(&messages),
            stdout: read(&stdout),
        }
    }
}

/// Cumulative successful and failed calls from the last row of a `-trace_stat` file.
fn parse_stat(csv: &str) -> (u64, u64) {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let Some(last) = lines.next_back() else {
        return (0, 0);
    };
    let header: Vec<&str> = header.split(';').collect();
    let row: Vec<&str> = last.split(';').collect();
    let column = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| row.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (column("SuccessfulCall(C)"), column("FailedCall(C)"))
}

/// What a SIPp run left behind.
pub struct SippRun {
    pub command: String,
    /// SIPp's exit code: 0 every call succeeded, 1 at least one failed, 97/99 stopped without
    /// completing, 255/254 fatal (bad arguments, cannot bind); `None`: killed at the wall-clock
    /// limit.
    pub code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub screen: String,
    pub errors: String,
    pub messages: String,
    pub stdout: String,
}

impl SippRun {
    /// Everything about the run, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "{}\nexit code {:?}, {} successful, {} failed\n--- screen ---\n{}\n--- errors ---\n{}\n--- output ---\n{}",
            self.command,
            self.code,
            self.successful,
            self.failed,
            self.screen,
            self.errors,
            self.stdout
        )
    }

    /// Exit code 0 and exactly `calls` successful calls, none failed.
    #[track_caller]
    pub fn assert_all_successful(&self, calls: u64) {
        assert!(
            self.code == Some(0) && self.successful == calls && self.failed == 0,
            "expected {calls} successful SIPp calls and none failed\n{}",
            self.report()
        );
    }

    /// Every message SIPp received, in order (needs [`Sipp::trace_msg`]).
    pub fn received(&self) -> Vec<String> {
        self.messages
            .split("\n-----------------------------------------------")
            .filter(|block| block.contains(" message received "))
            .filter_map(|block| {
                let start = block.find("SIP/2.0 ")?;
                Some(block[start..].trim_end().to_owned())
            })
            .collect()
    }
}

/// The shape of a SIP message, without the values that differ per transaction: the start line
/// and the header names in order.
pub fn message_shape(msg: &str) -> (String, Vec<String>) {
    let mut lines = msg.lines().map(|l| l.trim_end_matches('\r'));
    let start = lines.next().unwrap_or_default().to_owned();
    let names = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, _)| n.trim().to_ascii_lowercase())
        })
        .collect();
    (start, names)
}

// ---------------------------------------------------------------------------------------------
// Raw SIP over sockets
// ---------------------------------------------------------------------------------------------

/// Send an OPTIONS over UDP from a fresh socket and wait for its final response (retransmitted
/// every 500 ms like Timer E, for at most `limit`). The response's text, or `None`.
pub fn udp_options(server: SocketAddr, limit: Duration) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    let local = sock.local_addr().ok()?;
    let id = next_id();
    let call_id = format!("probe-{id}-{}@127.0.0.1", std::process::id());
    let msg = format!(
        "OPTIONS sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=probe{id}\r\n\
         To: <sip:{server}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        sock.send_to(msg.as_bytes(), server).ok()?;
        let retransmit = (Instant::now() + Duration::from_millis(500)).min(deadline);
        loop {
            let left = retransmit.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left)).ok()?;
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    // A final answer to this request; provisional ones and strays are skipped.
                    if text.contains(&call_id) && !text.starts_with("SIP/2.0 1") {
                        return Some(text);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => return None,
            }
        }
    }
    None
}

/// Read from `stream` until EOF, an error, or `limit`; what arrived.
pub fn read_to_end_within(stream: &mut std::net::TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return out;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// baresip
// ---------------------------------------------------------------------------------------------

/// A headless baresip with its own config directory: no audio or video modules, only the
/// `account` module that reads the accounts file, and SIP tracing (`-s`) into its output file.
/// Killed on drop.
pub struct Baresip {
    child: ChildGuard,
    pub output: PathBuf,
}

/// Where Debian's package puts the modules (`dpkg -L baresip`).
pub const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";

impl Baresip {
    /// Register `account` at `server` over UDP (`regint` 600 s). baresip quits by itself after
    /// 60 s should the test not get to kill it.
    pub fn register(dir: &Path, server: SocketAddr, account: &Account) -> Baresip {
        Baresip::spawn(
            dir,
            &format!(
                "sip_listen\t\t127.0.0.1:0\n\
                 module_path\t\t{BARESIP_MODULES}\n\
                 module_app\t\taccount.so\n"
            ),
            &format!(
                "<sip:{}@{server};transport=udp>;auth_pass={};regint=600\n",
                account.user, account.password
            ),
        )
    }

    /// A phone that makes calls: G.711 only, the repository's `prompts/hold.wav` as its
    /// microphone, auto-answer, and the `ctrl_tcp` control socket on `ctrl` (see
    /// [`Baresip::command`]). Registers `account` at `server` over UDP.
    pub fn phone(dir: &Path, server: SocketAddr, account: &Account, ctrl: u16) -> Baresip {
        let mic = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/hold.wav");
        Baresip::spawn(
            dir,
            &format!(
                "sip_listen\t\t127.0.0.1:0\n\
                 module_path\t\t{BARESIP_MODULES}\n\
                 module\t\t\tg711.so\n\
                 module\t\t\taufile.so\n\
                 module\t\t\tctrl_tcp.so\n\
                 module_app\t\taccount.so\n\
                 module_app\t\tmenu.so\n\
                 ctrl_tcp_listen\t\t127.0.0.1:{ctrl}\n\
                 audio_source\t\taufile,{}\n\
                 audio_alert\t\taufile,/dev/null\n",
                mic.display()
            ),
            &format!(
                "<sip:{}@{server};transport=udp>;auth_pass={};regint=600;answermode=auto\n",
                account.user, account.password
            ),
        )
    }

    /// Writes the config and accounts files into a fresh folder and starts baresip on them.
    fn spawn(dir: &Path, config: &str, accounts: &str) -> Baresip {
        let n = next_id();
        let conf = dir.join(format!("baresip-{n}"));
        fs::create_dir_all(&conf).unwrap();
        fs::write(conf.join("config"), config).unwrap();
        fs::write(conf.join("accounts"), accounts).unwrap();
        let output = dir.join(format!("baresip-{n}.log"));
        let out = fs::File::create(&output).unwrap();
        let child = ChildGuard::spawn(
            Command::new("baresip")
                .arg("-f")
                .arg(&conf)
                .args(["-s", "-t", "60"])
                .stdin(Stdio::null())
                .stderr(out.try_clone().unwrap())
                .stdout(out),
        )
        .expect("start baresip (Debian package baresip)");
        Baresip { child, output }
    }

    /// Send one command to a [`Baresip::phone`]'s control socket (netstring-framed JSON,
    /// baresip's `ctrl_tcp`) and return what it answered within a bounded wait.
    pub fn command(ctrl: u16, command: &str, params: Option<&str>) -> String {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut sock = loop {
            match std::net::TcpStream::connect(("127.0.0.1", ctrl)) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("baresip control socket {ctrl}: {e}"),
            }
        };
        let mut body = serde_json::json!({ "command": command, "token": "t" });
        if let Some(p) = params {
            body["params"] = serde_json::Value::from(p);
        }
        let body = body.to_string();
        sock.write_all(format!("{}:{body},", body.len()).as_bytes())
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&got).contains(r#""response":true"#) {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// The highest receive bit rate baresip's status line showed (`audio=<tx>/<rx> (bit/s)`).
    pub fn max_rx_bitrate(&self) -> u64 {
        let out = fs::read(&self.output).unwrap_or_default();
        let text = String::from_utf8_lossy(&out);
        text.split("audio=")
            .skip(1)
            .filter_map(|s| {
                let (_, rest) = s.split_once('/')?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.output).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- baresip output ---\n{}", tail(&self.output, 60));
        }
        self.kill();
    }
}

/// Wait (bounded) until a SIPp started in the background has bound UDP `port`.
pub async fn wait_listening(port: u16) {
    let bound = tokio::task::spawn_blocking(move || wait_udp_bound(port, WAIT))
        .await
        .unwrap();
    assert!(bound, "the SIPp never bound port {port}");
}
