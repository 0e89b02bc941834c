//! The tokio shell around [`Endpoint`]: sockets, the clock, the store, and nothing else.
//!
//! Tasks:
//! - one reader per UDP socket and one task per TCP connection, which frame messages
//!   ([`framing::check`]) and send them to the engine task;
//! - the **engine task**, sole owner of the [`Endpoint`]: feeds it inputs with the current
//!   time, sleeps until [`Endpoint::poll_timeout`], writes what [`Endpoint::poll_transmit`]
//!   returns, and hands [`Event::Persist`] to the writer;
//! - the **writer task**, which commits registrar changes in batches (group commit) and reports
//!   back, so a REGISTER is answered 200 only once its binding is on disk;
//! - a sweeper that deletes expired bindings from the store.
#![allow(clippy::disallowed_methods)] // the shell is where clocks are read

use crate::acd::{AcdError, AgentId};
use crate::auth::{AccountSecret, Algorithm, DigestConfig, LockoutConfig, ServerSecret};
use crate::config::{self, Config};
use crate::endpoint::{
    AgentControl, CallSettings, Endpoint, EndpointConfig, Event, HttpRequest, LiveCall, NoSuchCall,
    NumberRoute, PersistToken, Received, TestLineSettings, TransferError, TransferTarget,
    TrunkRoute,
};
use crate::ivr::model::{Flow, HttpMethod};
use crate::registrar::{Change, RegistrarConfig};
use crate::sip::framing::{self, Frame, FrameError};
use crate::sip::transaction::TimerConfig;
use crate::sip::transport::{ConnId, Transmit, Transport};
use crate::store::{Store, StoreError};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_media::control::MediaEvent;
use switchboard_media::prompt::{Prompt, PromptLibrary};
use switchboard_media::rt::{MediaConfig, MediaEngine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {transport} {addr}: {}", describe_bind(.source))]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the media workers: {0}")]
    Media(io::Error),
    #[error("{0}")]
    Prompts(String),
}

fn describe_bind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "address already in use (is another SIP server running?)".into()
        }
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// What reaches the engine task.
enum Input {
    Message {
        from: Received,
        data: Bytes,
    },
    ConnOpened {
        id: ConnId,
        tx: mpsc::Sender<Bytes>,
    },
    ConnClosed {
        id: ConnId,
    },
    /// A flow's HTTP request finished.
    Http {
        call: u64,
        token: u64,
        result: Result<(u16, String), String>,
    },
    /// Flows to publish (start-up load, or a changed file that validated).
    Flows(Vec<Arc<Flow>>),
    /// A request of the control interface (the HTTP API), answered on its reply channel.
    Control(Control),
}

/// What the control interface can ask the engine; each carries the channel its answer goes on.
enum Control {
    AgentLogin {
        agent: AgentId,
        reply: oneshot::Sender<Result<(), AcdError>>,
    },
    AgentLogout {
        agent: AgentId,
        reply: oneshot::Sender<Result<(), AcdError>>,
    },
    AgentState {
        agent: AgentId,
        state: AgentStateRequest,
        reply: oneshot::Sender<Result<(), AcdError>>,
    },
    Snapshot {
        reply: oneshot::Sender<AcdSnapshot>,
    },
    LiveCalls {
        reply: oneshot::Sender<Vec<LiveCall>>,
    },
    HangUp {
        call_id: String,
        reply: oneshot::Sender<Result<(), NoSuchCall>>,
    },
    SendDtmf {
        call_id: String,
        to: crate::endpoint::DtmfTarget,
        digits: String,
        duration: Duration,
        reply: oneshot::Sender<Result<(), crate::endpoint::CallControlError>>,
    },
    StartRecording {
        call_id: String,
        reply: oneshot::Sender<Result<String, crate::endpoint::CallControlError>>,
    },
    StopRecording {
        call_id: String,
        reply: oneshot::Sender<Result<(), crate::endpoint::CallControlError>>,
    },
    Transfer {
        call_id: String,
        target: TransferTarget,
        reply: oneshot::Sender<Result<(), TransferError>>,
    },
    /// The effective blacklist (configured ∪ stored), for calls from now on.
    SetBlacklist {
        generation: u64,
        blacklist: config::Blacklist,
        reply: oneshot::Sender<()>,
    },
    Flows {
        reply: oneshot::Sender<crate::endpoint::FlowSet>,
    },
    ClickToDial {
        request: crate::endpoint::ClickToDial,
        reply: oneshot::Sender<Result<String, crate::endpoint::ClickError>>,
    },
}

/// A state an agent can be put in from the control interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentStateRequest {
    Idle,
    Busy,
    /// One of the admin's break states, by name.
    Break(String),
}

/// Agents and queues as they stand, for the control interface.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AcdSnapshot {
    pub agents: Vec<AgentView>,
    pub queues: Vec<QueueView>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AgentView {
    pub id: String,
    /// `logged_out`, `idle`, `busy`, `break`, `ringing`, `talking` or `wrap_up`.
    pub state: &'static str,
    /// The break state's name, when on a break.
    pub break_name: Option<String>,
    pub skill_groups: Vec<String>,
    /// Calls answered (inbound) and placed (outbound) since the engine started.
    pub inbound_calls: u64,
    pub outbound_calls: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QueueView {
    pub id: String,
    pub waiting: usize,
    /// How long the caller waiting longest has waited, in milliseconds.
    pub longest_wait_ms: Option<u64>,
    /// Members by state: `idle`, `ringing`, `talking`, … (logged-out members included).
    pub agents_by_state: std::collections::BTreeMap<&'static str, usize>,
    pub entered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Answered within the service-level threshold, as a fraction of the callers who left
    /// (answered, abandoned or timed out); `None` before any.
    pub service_level: Option<f64>,
}

/// Why a control request got no answer from the engine.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the engine is shutting down")]
    Stopped,
    #[error(transparent)]
    Refused(#[from] AcdError),
}

/// A handle the control interface (the HTTP API) uses to ask the engine; cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    input: mpsc::Sender<Input>,
    blacklist: Arc<BlacklistSource>,
    publishers: crate::ivr::load::Publishers,
}

impl EngineHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Control,
    ) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.input
            .send(Input::Control(make(reply)))
            .await
            .map_err(|_| ControlError::Stopped)?;
        answer.await.map_err(|_| ControlError::Stopped)
    }

    /// The flows new calls start in, as published.
    pub async fn flows(&self) -> Result<crate::endpoint::FlowSet, ControlError> {
        self.ask(|reply| Control::Flows { reply }).await
    }

    /// Where a writer of flow files announces itself, so the watcher's operation log entry
    /// names it rather than `file-watch`.
    pub fn flow_publishers(&self) -> &crate::ivr::load::Publishers {
        &self.publishers
    }

    pub async fn agent_login(&self, agent: AgentId) -> Result<(), ControlError> {
        Ok(self
            .ask(|reply| Control::AgentLogin { agent, reply })
            .await??)
    }

    pub async fn agent_logout(&self, agent: AgentId) -> Result<(), ControlError> {
        Ok(self
            .ask(|reply| Control::AgentLogout { agent, reply })
            .await??)
    }

    pub async fn agent_state(
        &self,
        agent: AgentId,
        state: AgentStateRequest,
    ) -> Result<(), ControlError> {
        Ok(self
            .ask(|reply| Control::AgentState {
                agent,
                state,
                reply,
            })
            .await??)
    }

    pub async fn acd_snapshot(&self) -> Result<AcdSnapshot, ControlError> {
        self.ask(|reply| Control::Snapshot { reply }).await
    }

    /// Every call in progress, oldest first.
    pub async fn live_calls(&self) -> Result<Vec<LiveCall>, ControlError> {
        self.ask(|reply| Control::LiveCalls { reply }).await
    }

    /// Hang up the call whose record id is `call_id`. The outer error: the engine did not
    /// answer; the inner one: no such call.
    pub async fn hang_up(&self, call_id: String) -> Result<Result<(), NoSuchCall>, ControlError> {
        self.ask(|reply| Control::HangUp { call_id, reply }).await
    }

    /// Send `digits` to one party of `call_id` (see [`Endpoint::send_dtmf`]).
    pub async fn send_dtmf(
        &self,
        call_id: String,
        to: crate::endpoint::DtmfTarget,
        digits: String,
        duration: Duration,
    ) -> Result<Result<(), crate::endpoint::CallControlError>, ControlError> {
        self.ask(|reply| Control::SendDtmf {
            call_id,
            to,
            digits,
            duration,
            reply,
        })
        .await
    }

    /// Start recording `call_id`; the answer is the file's path (see
    /// [`Endpoint::start_recording`]).
    pub async fn start_recording(
        &self,
        call_id: String,
    ) -> Result<Result<String, crate::endpoint::CallControlError>, ControlError> {
        self.ask(|reply| Control::StartRecording { call_id, reply })
            .await
    }

    /// Stop recording `call_id` (see [`Endpoint::stop_recording`]).
    pub async fn stop_recording(
        &self,
        call_id: String,
    ) -> Result<Result<(), crate::endpoint::CallControlError>, ControlError> {
        self.ask(|reply| Control::StopRecording { call_id, reply })
            .await
    }

    /// Start a click-to-dial call; the call record's id comes back once the first leg is on
    /// its way (see [`Endpoint::click_to_dial`]).
    pub async fn click_to_dial(
        &self,
        request: crate::endpoint::ClickToDial,
    ) -> Result<Result<String, crate::endpoint::ClickError>, ControlError> {
        self.ask(|reply| Control::ClickToDial { request, reply })
            .await
    }

    /// Move the caller of `call_id` to `target` (see [`Endpoint::transfer`]).
    pub async fn transfer(
        &self,
        call_id: String,
        target: TransferTarget,
    ) -> Result<Result<(), TransferError>, ControlError> {
        self.ask(|reply| Control::Transfer {
            call_id,
            target,
            reply,
        })
        .await
    }

    /// The configuration file's blacklist, which the stored entries add to (read-only over the
    /// API).
    pub fn configured_blacklist(&self) -> &config::Blacklist {
        &self.blacklist.configured
    }

    /// Reads the stored blacklist entries and gives the engine the configured ones plus these;
    /// the next call is checked against them. Call after every change to the stored entries.
    pub async fn reload_blacklist(&self, store: &Store) -> Result<(), BlacklistError> {
        // Taken before the read: an update that reads later carries a higher number and sees
        // every change this one saw, so the engine can drop one that arrives after it.
        let generation = self.blacklist.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let stored = store.stored_blacklist().await?;
        let blacklist = effective_blacklist(&self.blacklist.configured, stored);
        self.ask(|reply| Control::SetBlacklist {
            generation,
            blacklist,
            reply,
        })
        .await?;
        Ok(())
    }
}

/// The configured blacklist, and the count that orders updates of the effective one.
struct BlacklistSource {
    configured: config::Blacklist,
    generation: AtomicU64,
}

/// Why [`EngineHandle::reload_blacklist`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BlacklistError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] ControlError),
}

/// The configured entries, then the stored ones the configuration does not already list.
pub fn effective_blacklist(
    configured: &config::Blacklist,
    stored: config::Blacklist,
) -> config::Blacklist {
    let add = |mut list: Vec<config::NumberPattern>, more: Vec<config::NumberPattern>| {
        for p in more {
            if !list.contains(&p) {
                list.push(p);
            }
        }
        list
    };
    config::Blacklist {
        inbound: add(configured.inbound.clone(), stored.inbound),
        outbound: add(configured.outbound.clone(), stored.outbound),
    }
}

/// Agents and queues as the engine's ACD has them now.
fn acd_snapshot(endpoint: &Endpoint, at: Instant) -> AcdSnapshot {
    let acd = endpoint.acd();
    let agents = acd
        .agents()
        .map(|a| {
            let status = a.state().status();
            AgentView {
                id: a.id().0.clone(),
                state: status.code(),
                break_name: match &status {
                    crate::acd::AgentStatus::Break(n) => Some(n.clone()),
                    _ => None,
                },
                skill_groups: a
                    .config()
                    .skill_groups
                    .keys()
                    .map(|q| q.0.clone())
                    .collect(),
                inbound_calls: a.stats().answered,
                outbound_calls: a.stats().outbound,
            }
        })
        .collect();
    let queues = acd
        .queues()
        .map(|q| {
            let id = &q.config().id;
            let mut by_state = std::collections::BTreeMap::new();
            for a in acd
                .agents()
                .filter(|a| a.config().skill_groups.contains_key(id))
            {
                *by_state.entry(a.state().status().code()).or_insert(0) += 1;
            }
            let stats = q.stats();
            QueueView {
                id: id.0.clone(),
                waiting: q.len(),
                longest_wait_ms: q.longest_wait(at).map(|d| d.as_millis() as u64),
                agents_by_state: by_state,
                entered: stats.entered,
                answered: stats.answered,
                abandoned: stats.abandoned,
                service_level: stats.service_level(),
            }
        })
        .collect();
    AcdSnapshot { agents, queues }
}

impl From<Vec<Arc<Flow>>> for Input {
    fn from(flows: Vec<Arc<Flow>>) -> Input {
        Input::Flows(flows)
    }
}

/// Call record writes, in the order the engine made them.
enum CdrOp {
    Open(crate::cdr::CdrOpen),
    Leg(crate::cdr::CdrLeg),
    Event(crate::events::CallEvent),
    /// An agent's or a queue's change.
    Acd(crate::events::AcdEvent),
    Close {
        call_id: String,
        close: crate::cdr::CdrClose,
    },
}

/// The writer's report: these REGISTERs' changes are committed (or failed). On a channel of
/// its own, unbounded (it carries at most one entry per REGISTER waiting for the store), so the
/// writer never waits on the engine while the engine waits on the writer.
struct Persisted {
    tokens: Vec<PersistToken>,
    ok: bool,
}

/// A running SIP service.
pub struct Running {
    /// The sockets actually bound (port 0 in the config becomes a real port here).
    pub listeners: Vec<(Transport, SocketAddr)>,
    /// For the control interface: ask the engine to change or report agents and queues.
    pub engine: EngineHandle,
    /// Call events and agent/queue changes as they happen (`GET /api/v1/events`).
    pub events: crate::live::EventHub,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stop accepting, let the writer commit what it holds, and wait for every task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // The writer has published its last event: end the streams, so HTTP can stop.
        self.events.close();
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The endpoint settings derived from the validated file configuration.
pub fn endpoint_config(config: &Config) -> EndpointConfig {
    let realm = config.auth.realm.clone();
    EndpointConfig {
        user_agent: config.sip.user_agent.clone(),
        timers: TimerConfig {
            t1: config.sip.timers.t1,
            t2: config.sip.timers.t2,
            t4: config.sip.timers.t4,
        },
        registrar: RegistrarConfig {
            min_expires: config.registrar.min_expires.as_secs() as u32,
            default_expires: config.registrar.default_expires.as_secs() as u32,
            max_expires: config.registrar.max_expires.as_secs() as u32,
            max_contacts: config.registrar.max_contacts_per_aor,
        },
        digest: DigestConfig {
            realm: realm.clone(),
            nonce_lifetime: config.auth.nonce_lifetime,
            allow_no_qop: config.auth.allow_no_qop,
            algorithms: config
                .auth
                .algorithms
                .iter()
                .map(|a| match a {
                    config::DigestAlgorithm::Sha256 => Algorithm::Sha256,
                    config::DigestAlgorithm::Md5 => Algorithm::Md5,
                })
                .collect(),
            ..DigestConfig::default()
        },
        lockout: match config.auth.lockout.max_failures {
            // `max_failures: 0` turns lock-out off.
            0 => LockoutConfig {
                max_failures: u32::MAX,
                ip_max_failures: u32::MAX,
                ..LockoutConfig::default()
            },
            n => LockoutConfig {
                max_failures: n,
                // One address may carry many phones (an office behind NAT): it locks at four
                // times the per-account threshold, and never below the default.
                ip_max_failures: n
                    .saturating_mul(4)
                    .max(LockoutConfig::default().ip_max_failures),
                window: config.auth.lockout.window,
                cooldown: config.auth.lockout.cooldown,
                ..LockoutConfig::default()
            },
        },
        trusted: config
            .auth
            .trusted
            .iter()
            .copied()
            .chain(
                config
                    .trunks
                    .iter()
                    .filter(|t| t.enabled)
                    .flat_map(|t| t.inbound_sources()),
            )
            .collect(),
        accounts: config
            .accounts
            .iter()
            .filter(|a| a.enabled)
            .map(|a| {
                (
                    a.user.clone(),
                    AccountSecret::from_password(&a.user, &realm, a.password.expose()),
                )
            })
            .collect(),
        calls: CallSettings {
            domain: config.sip.domain.clone(),
            media_address: config.media.rtp_address,
            test_line: config.calls.test_line.as_ref().map(|t| TestLineSettings {
                number: t.number.clone(),
                prompt: None,
            }),
            ring_timeout: config.calls.ring_timeout,
            record_calls: config.media.record_calls,
            recordings_dir: config.media.recordings_dir.clone(),
            numbers: config
                .numbers
                .iter()
                .map(|n| NumberRoute {
                    number: n.number.clone(),
                    trunk: n.trunk.clone(),
                    flow: n.flow.clone(),
                    enabled: n.enabled,
                })
                .collect(),
            trunks: config
                .trunks
                .iter()
                .filter(|t| t.enabled)
                .map(|t| TrunkRoute {
                    name: t.name.clone(),
                    address: t.address,
                    sources: t.inbound_sources(),
                })
                .collect(),
            blacklist: config.blacklist.clone(),
            queueing: queue_settings(config),
            trunk_plan: crate::trunk::Trunks::new(config),
            ..CallSettings::default()
        },
    }
}

/// Agents and skill groups as the call layer drives them.
fn queue_settings(config: &Config) -> crate::endpoint::QueueSettings {
    use crate::config::SignIn;
    let acd = &config.acd;
    crate::endpoint::QueueSettings {
        acd: acd.acd_config(),
        queues: acd.queues.clone(),
        agents: acd
            .agents
            .iter()
            .map(|a| crate::endpoint::AgentSettings {
                config: a.config.clone(),
                pin: a.pin.clone(),
                mobile_trunk: a.mobile_trunk.clone(),
                login_at_start: matches!(a.sign_in, SignIn::AtStart),
                schedule: match &a.sign_in {
                    SignIn::Schedule(s) => Some(s.clone()),
                    _ => None,
                },
                caller_id: a.caller_id.clone(),
            })
            .collect(),
        login_code: acd.feature_codes.login.clone(),
        logout_code: acd.feature_codes.logout.clone(),
        seed: rand::random(),
    }
}

/// The prompt library: every file in `media.prompts_dir`, decoded once. A corrupt file is an
/// error naming it; a missing folder is only a warning (the test line then plays a tone).
pub fn load_prompts(config: &Config) -> Result<PromptLibrary, StartError> {
    let dir = &config.media.prompts_dir;
    if !dir.is_dir() {
        tracing::warn!(dir = %dir.display(), "prompt folder not found; built-in tones only");
        return Ok(PromptLibrary::new());
    }
    let library = PromptLibrary::load(dir).map_err(|e| StartError::Prompts(e.to_string()))?;
    tracing::info!(dir = %dir.display(), prompts = library.len(), "prompts loaded");
    Ok(library)
}

/// The test line's greeting: the configured prompt, or a short chime if it is missing.
fn test_line_prompt(config: &Config, library: &PromptLibrary) -> Option<Arc<Prompt>> {
    let t = config.calls.test_line.as_ref()?;
    match library.get(&t.prompt) {
        Some(p) => Some(p),
        None => {
            tracing::warn!(prompt = %t.prompt, dir = %config.media.prompts_dir.display(), "test line prompt not found; playing a tone instead");
            let mut samples = switchboard_media::prompt::synth::tone(660.0, 200, 8000);
            samples.extend(switchboard_media::prompt::synth::silence(60));
            samples.extend(switchboard_media::prompt::synth::tone(880.0, 300, 8000));
            Some(Arc::new(Prompt::from_samples(t.prompt.clone(), &samples)))
        }
    }
}

/// Seeds each trunk quota with the talk time its legs in the records used this period: the
/// running count lives in memory, and without this a restart would let a trunk over its quota
/// place calls again until the period ends.
pub async fn seed_trunk_quotas(
    store: &Store,
    config: &Config,
    trunks: &mut crate::trunk::Trunks,
    now_ms: i64,
) -> Result<(), StoreError> {
    for t in &config.trunks {
        let Some(limit) = &t.quota else {
            continue;
        };
        let quota = trunks.quota_mut();
        let Some(since) = quota.period_start_ms(&t.name, now_ms) else {
            continue;
        };
        let used = store.trunk_usage_since(&t.name, since).await?;
        quota.seed(&t.name, used, now_ms);
        tracing::info!(
            trunk = %t.name,
            minutes_used = (used as f64 / 6.0).round() / 10.0,
            minutes_limit = limit.outbound_minutes,
            "trunk quota seeded from the call records"
        );
    }
    Ok(())
}

/// Bind every listener, open the store, restore registrations and start the tasks.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let mut listeners = Vec::new();
    for l in config
        .sip
        .listen
        .iter()
        .filter(|l| l.transport == config::Transport::Udp)
    {
        let sock =
            bind_udp(l.address).map_err(|source| bind_error(Transport::Udp, l.address, source))?;
        let addr = sock
            .local_addr()
            .map_err(|source| bind_error(Transport::Udp, l.address, source))?;
        listeners.push((Transport::Udp, addr));
        udp.push((addr, Arc::new(sock)));
    }
    for l in config
        .sip
        .listen
        .iter()
        .filter(|l| l.transport == config::Transport::Tcp)
    {
        let listener = bind_tcp(l.address, &listeners).await?;
        let addr = listener
            .local_addr()
            .map_err(|source| bind_error(Transport::Tcp, l.address, source))?;
        listeners.push((Transport::Tcp, addr));
        tcp.push((addr, listener));
    }

    let prompts = load_prompts(config)?;
    if config.media.record_calls {
        std::fs::create_dir_all(&config.media.recordings_dir).map_err(|e| {
            StartError::Prompts(format!(
                "cannot create the recordings folder {}: {e}",
                config.media.recordings_dir.display()
            ))
        })?;
    }
    let (media_tx, media_rx) = mpsc::unbounded_channel::<MediaEvent>();
    let media = MediaEngine::start(
        MediaConfig {
            address: config.media.rtp_address,
            port_min: config.media.rtp_port_min,
            port_max: config.media.rtp_port_max,
            workers: config.media.workers,
            inactivity: config.media.rtp_timeout,
        },
        Arc::new(move |ev| {
            let _ = media_tx.send(ev);
        }),
    )
    .map_err(StartError::Media)?;

    let store = Store::open(&config.database.url).await?;
    let unix = unix_now();
    let bindings = store.load_bindings(unix).await?;
    let restored = bindings.len();
    let repaired = store.repair_open_cdrs(unix_ms()).await?;
    let states = store.repair_open_agent_states(unix_ms()).await?;
    if states > 0 {
        tracing::warn!(
            states,
            "agent states left open by an earlier stop were closed"
        );
    }
    if repaired > 0 {
        tracing::warn!(
            repaired,
            "call records left open by an earlier stop were closed as system failures"
        );
    }
    let mut ep_config = endpoint_config(config);
    seed_trunk_quotas(&store, config, &mut ep_config.calls.trunk_plan, unix_ms()).await?;
    if let Some(t) = &mut ep_config.calls.test_line {
        t.prompt = test_line_prompt(config, &prompts);
    }
    ep_config.calls.prompts = Arc::new(prompts.clone());
    let mut endpoint = Endpoint::new(ep_config, ServerSecret::random(), rand::random());
    endpoint.restore_bindings(bindings, unix);
    let stored = store.stored_blacklist().await?;
    tracing::info!(
        inbound = stored.inbound.len(),
        outbound = stored.outbound.len(),
        "blacklist entries added through the API loaded from the store"
    );
    endpoint.set_blacklist(0, effective_blacklist(&config.blacklist, stored));
    if let Some(&(_, udp)) = listeners.iter().find(|(t, _)| *t == Transport::Udp) {
        let trunks = crate::trunk::RegisterSettings::from_config(config);
        endpoint.start_trunk_registrations(now(), trunks, udp);
        endpoint.set_originate_from(udp);
    }
    tracing::info!(restored, "registrations restored from the store");

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (input_tx, input_rx) = mpsc::channel::<Input>(16_384);
    let (persist_tx, persist_rx) = mpsc::channel::<(PersistToken, Vec<Change>)>(16_384);
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Persisted>();
    let mut tasks = JoinSet::new();
    let max = config.sip.max_message_bytes;

    for (addr, sock) in &udp {
        tasks.spawn(udp_reader(
            *addr,
            sock.clone(),
            max,
            input_tx.clone(),
            shutdown_rx.clone(),
        ));
    }
    let next_conn = Arc::new(std::sync::atomic::AtomicU64::new(1));
    for (addr, listener) in tcp {
        tasks.spawn(tcp_acceptor(
            addr,
            listener,
            TcpSettings {
                max,
                idle: config.sip.tcp_idle_timeout,
                max_connections: config.sip.tcp_max_connections,
                max_per_source: config.sip.tcp_max_connections_per_source,
            },
            next_conn.clone(),
            input_tx.clone(),
            shutdown_rx.clone(),
        ));
    }
    tasks.spawn(writer(store.clone(), persist_rx, done_tx));
    let (cdr_tx, cdr_rx) = mpsc::unbounded_channel::<CdrOp>();
    let outbox = (!config.webhooks.is_empty()).then(|| {
        let outbox = crate::webhook::Outbox::new(store.pool().clone(), config.webhooks.clone());
        crate::webhook::spawn_delivery(outbox.clone(), shutdown_rx.clone());
        outbox
    });
    let events = crate::live::EventHub::new(
        crate::live::first_id(unix_ms()),
        crate::live::DEFAULT_CAPACITY,
    );
    tasks.spawn(cdr_writer(store.clone(), cdr_rx, outbox, events.clone()));
    let flows = crate::ivr::load::startup(config, &prompts);
    crate::ivr::load::log_startup(&store, &flows).await;
    let _ = input_tx.send(Input::Flows(flows)).await;
    let publishers = crate::ivr::load::Publishers::default();
    if config.ivr.watch {
        crate::ivr::load::watch(
            config,
            &prompts,
            input_tx.clone(),
            shutdown_rx.clone(),
            store.clone(),
            publishers.clone(),
        );
    }
    tasks.spawn(sweeper(store, shutdown_rx.clone()));
    let sockets: HashMap<SocketAddr, Arc<UdpSocket>> = udp.into_iter().collect();
    tasks.spawn(engine_task(
        endpoint,
        Io {
            sockets,
            media,
            persist: persist_tx,
            http: reqwest::Client::builder()
                .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| StartError::Prompts(format!("cannot build the HTTP client: {e}")))?,
            input: input_tx.clone(),
            cdr: cdr_tx,
        },
        input_rx,
        done_rx,
        media_rx,
        shutdown_rx,
    ));
    for (t, a) in &listeners {
        tracing::info!(transport = %t, address = %a, "SIP listening");
    }
    Ok(Running {
        listeners,
        events,
        engine: EngineHandle {
            input: input_tx,
            publishers,
            blacklist: Arc::new(BlacklistSource {
                configured: config.blacklist.clone(),
                generation: AtomicU64::new(0),
            }),
        },
        shutdown,
        tasks,
    })
}

fn bind_error(transport: Transport, addr: SocketAddr, source: io::Error) -> StartError {
    StartError::Bind {
        transport,
        addr,
        source,
    }
}

/// Socket buffers asked for on UDP listeners. The kernel's default (about 200 KB) holds ~400
/// REGISTERs: a burst larger than that while the engine is busy is dropped by the kernel and
/// costs the phones a retransmission timer.
const UDP_BUFFER_BYTES: usize = 4 << 20;

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps both at net.core.{r,w}mem_max.
    let _ = sock.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = sock.set_send_buffer_size(UDP_BUFFER_BYTES);
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    let granted = sock.recv_buffer_size().unwrap_or(0);
    // Linux reads back twice what it granted, so a full grant reads back larger than asked.
    if granted < UDP_BUFFER_BYTES {
        tracing::info!(
            %addr,
            granted,
            wanted = UDP_BUFFER_BYTES,
            "UDP receive buffer is smaller than asked for; raise net.core.rmem_max for bursts of traffic"
        );
    }
    UdpSocket::from_std(sock.into())
}

/// Bind a TCP listener; with port 0, prefer the port a UDP listener on the same address got,
/// so a phone finds both transports on one port.
async fn bind_tcp(
    addr: SocketAddr,
    bound: &[(Transport, SocketAddr)],
) -> Result<TcpListener, StartError> {
    if addr.port() == 0 {
        if let Some((_, u)) = bound
            .iter()
            .find(|(t, a)| *t == Transport::Udp && a.ip() == addr.ip())
        {
            if let Ok(l) = TcpListener::bind(*u).await {
                return Ok(l);
            }
        }
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| bind_error(Transport::Tcp, addr, source))
}

async fn udp_reader(
    local: SocketAddr,
    sock: Arc<UdpSocket>,
    max: usize,
    input: mpsc::Sender<Input>,
    mut shutdown: watch::Receiver<bool>,
) {
    // One receive buffer, reused: each datagram is copied out at its own size. (Splitting it
    // off instead would pin a 64 KiB allocation to every message for as long as any header
    // slice of it lives — a queue of them, or a transaction holding its request.)
    let mut buf = vec![0u8; max + 1];
    loop {
        let r = tokio::select! {
            _ = shutdown.changed() => return,
            r = sock.recv_from(&mut buf) => r,
        };
        match r {
            Ok((n, remote)) => {
                if n > max {
                    metrics::counter!("sip_messages_dropped_total", "reason" => "too_large")
                        .increment(1);
                    continue;
                }
                let data = Bytes::copy_from_slice(&buf[..n]);
                let from = Received {
                    transport: Transport::Udp,
                    local,
                    remote: canonical(remote),
                    conn: None,
                };
                if input.send(Input::Message { from, data }).await.is_err() {
                    return;
                }
            }
            // ICMP errors surface as recv errors on some platforms: not fatal for a server.
            Err(e) => tracing::debug!(error = %e, "UDP receive error"),
        }
    }
}

/// An IPv4 peer on a dual-stack socket appears as `::ffff:a.b.c.d`; as itself, it matches
/// IPv4 trusted ranges and is written as IPv4 in `received`.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[derive(Clone, Copy)]
struct TcpSettings {
    max: usize,
    idle: Duration,
    /// Open connections on this listener, in all and from one source address.
    max_connections: usize,
    max_per_source: usize,
}

async fn tcp_acceptor(
    local: SocketAddr,
    listener: TcpListener,
    settings: TcpSettings,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
    input: mpsc::Sender<Input>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Each connection task returns its peer's address, so the per-source count can go down.
    let mut conns: JoinSet<IpAddr> = JoinSet::new();
    let mut per_source: HashMap<IpAddr, usize> = HashMap::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Ok(ip) = done {
                    if let Some(n) = per_source.get_mut(&ip) {
                        *n -= 1;
                        if *n == 0 {
                            per_source.remove(&ip);
                        }
                    }
                }
                continue;
            }
        };
        match accepted {
            Ok((stream, remote)) => {
                let ip = remote.ip().to_canonical();
                let from_source = per_source.get(&ip).copied().unwrap_or(0);
                if conns.len() >= settings.max_connections || from_source >= settings.max_per_source
                {
                    // Refused at once (the stream is dropped, closing it): a peer must not be
                    // able to exhaust descriptors and memory by opening connections.
                    metrics::counter!("sip_tcp_connections_refused_total").increment(1);
                    tracing::debug!(%remote, "TCP connection refused: connection limit reached");
                    continue;
                }
                *per_source.entry(ip).or_insert(0) += 1;
                let id = ConnId(next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                let _ = stream.set_nodelay(true);
                let task = tcp_connection(
                    id,
                    local,
                    remote,
                    stream,
                    settings,
                    input.clone(),
                    shutdown.clone(),
                );
                conns.spawn(async move {
                    task.await;
                    ip
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                // Back off briefly so a persistent error (e.g. out of descriptors) cannot spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    conns.abort_all();
}

async fn tcp_connection(
    id: ConnId,
    local: SocketAddr,
    remote: SocketAddr,
    stream: TcpStream,
    settings: TcpSettings,
    input: mpsc::Sender<Input>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    if input
        .send(Input::ConnOpened { id, tx: tx.clone() })
        .await
        .is_err()
    {
        return;
    }
    metrics::gauge!("sip_tcp_connections").increment(1.0);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let from = Received {
        transport: Transport::Tcp,
        local,
        remote: canonical(remote),
        conn: Some(id),
    };
    let mut buf = BytesMut::with_capacity(8 * 1024);
    'conn: loop {
        // Hand over every whole frame already buffered.
        loop {
            match framing::check(&buf, settings.max) {
                Ok(Frame::Message(n)) => {
                    let data = buf.split_to(n).freeze();
                    if input.send(Input::Message { from, data }).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(Frame::Ping(n)) => {
                    let _ = buf.split_to(n);
                    // A peer that pings but never reads fills our queue: drop it rather than
                    // wait on it forever.
                    if tx.try_send(Bytes::from_static(b"\r\n")).is_err() {
                        break 'conn;
                    }
                }
                Ok(Frame::Skip(n)) => {
                    let _ = buf.split_to(n);
                }
                Err(FrameError::Incomplete) => break,
                Err(e) => {
                    // The stream cannot be resynchronised: close it (RFC 3261 §18.3).
                    tracing::debug!(%remote, error = %e, "closing TCP connection");
                    metrics::counter!("sip_messages_dropped_total", "reason" => "unframeable")
                        .increment(1);
                    break 'conn;
                }
            }
        }
        let read = tokio::select! {
            _ = shutdown.changed() => break,
            r = tokio::time::timeout(settings.idle, rd.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => {
                tracing::debug!(%remote, "closing idle TCP connection");
                break;
            }
        }
    }
    drop(tx);
    // The peer is done sending (or we gave up reading), but answers to what it sent may still
    // be on their way — a REGISTER's 200 waits for the store. Keep the connection writable a
    // moment (a half-closed peer still reads) before the engine forgets it; a peer that reset
    // the connection ends the writer, and the wait, at once.
    let mut writer = writer;
    tokio::select! {
        _ = shutdown.changed() => {}
        _ = tokio::time::sleep(TCP_LINGER) => {}
        _ = &mut writer => {}
    }
    let _ = input.send(Input::ConnClosed { id }).await;
    metrics::gauge!("sip_tcp_connections").decrement(1.0);
    // Let queued responses go out before the socket closes, but not forever: a peer that
    // stopped reading would otherwise hold the writer, and its descriptor, for good.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// How long a connection stays writable after its peer stopped sending.
const TCP_LINGER: Duration = Duration::from_millis(500);

/// What the engine task writes to: SIP sockets, the media workers, the store writer.
struct Io {
    sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    media: MediaEngine,
    persist: mpsc::Sender<(PersistToken, Vec<Change>)>,
    /// For flows' HTTP requests; answers come back as [`Input::Http`].
    http: reqwest::Client,
    input: mpsc::Sender<Input>,
    cdr: mpsc::UnboundedSender<CdrOp>,
}

async fn engine_task(
    mut endpoint: Endpoint,
    io: Io,
    mut input: mpsc::Receiver<Input>,
    mut done: mpsc::UnboundedReceiver<Persisted>,
    mut media_events: mpsc::UnboundedReceiver<MediaEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns: HashMap<ConnId, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        endpoint.set_clock(now(), unix_ms());
        // Timers first: under a flood the input branch is always ready, and a `biased` select
        // would never poll the sleep — no retransmission, no Timer J, no expiry.
        if endpoint.poll_timeout().is_some_and(|d| d <= now()) {
            endpoint.handle_timeout(now(), unix_now());
            flush(&mut endpoint, &io, &conns).await;
        }
        let deadline = endpoint.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(Persisted { tokens, ok }) = done.recv() => {
                let t = now();
                for token in tokens {
                    endpoint.handle_persisted(t, token, ok);
                }
                flush(&mut endpoint, &io, &conns).await;
            }
            Some(ev) = media_events.recv() => {
                endpoint.handle_media(now(), ev);
                flush(&mut endpoint, &io, &conns).await;
            }
            msg = input.recv() => {
                let Some(msg) = msg else { break };
                handle_input(&mut endpoint, &mut conns, msg);
                flush(&mut endpoint, &io, &conns).await;
                // Take what is already queued before looking at timers again: batching keeps
                // the per-message cost flat under load. Output is flushed after each input, so
                // an answer always leaves before a later input (a closed connection) is seen.
                for _ in 0..64 {
                    match input.try_recv() {
                        Ok(msg) => {
                            handle_input(&mut endpoint, &mut conns, msg);
                            flush(&mut endpoint, &io, &conns).await;
                        }
                        Err(_) => break,
                    }
                }
            }
            _ = sleep => {
                endpoint.handle_timeout(now(), unix_now());
                flush(&mut endpoint, &io, &conns).await;
            }
        }
    }
    // Calls end with a BYE (or a final answer) before the sockets close.
    endpoint.unregister_trunks(now());
    endpoint.end_all_calls(now());
    flush(&mut endpoint, &io, &conns).await;
    let media = io.media.clone();
    let _ = tokio::task::spawn_blocking(move || media.shutdown()).await;
    // Closing the persist channel lets the writer commit what it holds and stop.
    drop(io);
}

/// Write what the endpoint wants sent, hand store work to the writer and media work to the
/// media workers.
async fn flush(endpoint: &mut Endpoint, io: &Io, conns: &HashMap<ConnId, mpsc::Sender<Bytes>>) {
    loop {
        while let Some(t) = endpoint.poll_transmit() {
            send(&io.sockets, conns, t).await;
        }
        let Some(ev) = endpoint.poll_event() else {
            return;
        };
        match ev {
            Event::Persist { token, changes } => {
                // Never wait for the writer here: it may be waiting for the store, and the
                // engine must keep serving. A full queue (the store is far behind) or a writer
                // that is gone answers this REGISTER 500 with Retry-After at once.
                if io.persist.try_send((token, changes)).is_err() {
                    metrics::counter!("store_registration_overload_total").increment(1);
                    endpoint.handle_persisted(now(), token, false);
                }
            }
            Event::OpenMedia { id, near } => {
                // Two bind calls: quick enough to do inline, and the answer is immediate.
                let result = io.media.open(id, near).map_err(|e| e.to_string());
                endpoint.handle_media_opened(now(), id, result);
            }
            Event::Media(command) => io.media.command(command),
            Event::Http {
                call,
                token,
                request,
            } => {
                let client = io.http.clone();
                let input = io.input.clone();
                tokio::spawn(async move {
                    let result = http_request(&client, request).await;
                    let _ = input
                        .send(Input::Http {
                            call,
                            token,
                            result,
                        })
                        .await;
                });
            }
            Event::CdrOpen(open) => {
                let _ = io.cdr.send(CdrOp::Open(open));
            }
            Event::CdrClose { call_id, close } => {
                let _ = io.cdr.send(CdrOp::Close { call_id, close });
            }
            Event::CdrLeg(leg) => {
                let _ = io.cdr.send(CdrOp::Leg(leg));
            }
            Event::CallEvent(event) => {
                let _ = io.cdr.send(CdrOp::Event(event));
            }
            Event::Acd(event) => {
                let _ = io.cdr.send(CdrOp::Acd(event));
            }
        }
    }
}

fn handle_input(
    endpoint: &mut Endpoint,
    conns: &mut HashMap<ConnId, mpsc::Sender<Bytes>>,
    msg: Input,
) {
    match msg {
        Input::Message { from, data } => endpoint.handle_message(now(), unix_now(), from, data),
        Input::ConnOpened { id, tx } => {
            conns.insert(id, tx);
        }
        Input::ConnClosed { id } => {
            conns.remove(&id);
        }
        Input::Http {
            call,
            token,
            result,
        } => endpoint.handle_http(now(), call, token, result),
        Input::Control(c) => {
            let at = now();
            match c {
                Control::AgentLogin { agent, reply } => {
                    let _ = reply.send(endpoint.agent_login(at, &agent));
                }
                Control::AgentLogout { agent, reply } => {
                    let _ = reply.send(endpoint.agent_logout(at, &agent));
                }
                Control::AgentState {
                    agent,
                    state,
                    reply,
                } => {
                    let control = match &state {
                        AgentStateRequest::Idle => AgentControl::Idle,
                        AgentStateRequest::Busy => AgentControl::Busy,
                        AgentStateRequest::Break(name) => AgentControl::Break(name),
                    };
                    let _ = reply.send(endpoint.agent_set_state(at, &agent, control));
                }
                Control::Snapshot { reply } => {
                    let _ = reply.send(acd_snapshot(endpoint, at));
                }
                Control::LiveCalls { reply } => {
                    let _ = reply.send(endpoint.live_calls());
                }
                Control::HangUp { call_id, reply } => {
                    let _ = reply.send(endpoint.hang_up_call(at, &call_id));
                }
                Control::SendDtmf {
                    call_id,
                    to,
                    digits,
                    duration,
                    reply,
                } => {
                    let _ = reply.send(endpoint.send_dtmf(at, &call_id, to, &digits, duration));
                }
                Control::StartRecording { call_id, reply } => {
                    let _ = reply.send(endpoint.start_recording(at, &call_id));
                }
                Control::StopRecording { call_id, reply } => {
                    let _ = reply.send(endpoint.stop_recording(at, &call_id));
                }
                Control::Transfer {
                    call_id,
                    target,
                    reply,
                } => {
                    let _ = reply.send(endpoint.transfer(at, &call_id, target));
                }
                Control::ClickToDial { request, reply } => {
                    let _ = reply.send(endpoint.click_to_dial(at, request));
                }
                Control::SetBlacklist {
                    generation,
                    blacklist,
                    reply,
                } => {
                    endpoint.set_blacklist(generation, blacklist);
                    let _ = reply.send(());
                }
                Control::Flows { reply } => {
                    let _ = reply.send(endpoint.flows().clone());
                }
            }
        }
        Input::Flows(flows) => {
            for f in &flows {
                tracing::info!(flow = %f.name, version = %&f.version[..f.version.len().min(16)], "flow published");
            }
            endpoint.publish_flows(flows);
        }
    }
}

async fn send(
    sockets: &HashMap<SocketAddr, Arc<UdpSocket>>,
    conns: &HashMap<ConnId, mpsc::Sender<Bytes>>,
    t: Transmit,
) {
    match t.target.transport {
        Transport::Udp => {
            let sock = sockets
                .get(&t.target.local)
                .or_else(|| sockets.values().next());
            let Some(sock) = sock else { return };
            match sock.try_send_to(&t.payload, t.target.addr) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = sock.send_to(&t.payload, t.target.addr).await;
                }
                Err(e) => tracing::debug!(error = %e, to = %t.target.addr, "UDP send failed"),
            }
        }
        Transport::Tcp => {
            let conn = t.target.conn.and_then(|c| conns.get(&c));
            match conn {
                Some(c) => {
                    if c.try_send(t.payload).is_err() {
                        metrics::counter!("sip_messages_dropped_total", "reason" => "tcp_backlog")
                            .increment(1);
                    }
                }
                None => {
                    // Connection-less TCP sends (RFC 3261 §18.2.2: open a new connection to the
                    // Via address) arrive with outbound calls; a response whose connection is
                    // gone is dropped, and the client's transaction times out as it would.
                    metrics::counter!("sip_messages_dropped_total", "reason" => "tcp_closed")
                        .increment(1);
                }
            }
        }
    }
}

/// One flow HTTP request, bounded by its timeout. A body that is not UTF-8 is replaced
/// lossily (flows read JSON).
async fn http_request(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<(u16, String), String> {
    let method = match request.method {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
    };
    let mut builder = client
        .request(method, &request.url)
        .timeout(request.timeout);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let response = builder.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    // Bounded: a flow reads a few fields, not a download.
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if bytes.len() > 1 << 20 {
        return Err(format!(
            "response body of {} bytes is over 1 MiB",
            bytes.len()
        ));
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Writes call records and call events in the order the engine raised them: each open is
/// durable before the legs and the close that follow it, and each event is in the webhook
/// outbox before the next. A closed record adds its own `cdr_written` event, carrying the
/// record as stored. Each event then goes to the realtime stream, in the same order.
async fn cdr_writer(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<CdrOp>,
    outbox: Option<crate::webhook::Outbox>,
    events: crate::live::EventHub,
) {
    while let Some(op) = rx.recv().await {
        let result = match &op {
            CdrOp::Open(open) => store.open_cdr(open).await,
            CdrOp::Leg(leg) => store.upsert_cdr_leg(leg).await,
            CdrOp::Close { call_id, close } => store.close_cdr(call_id, close).await.map(|_| ()),
            CdrOp::Event(event) => {
                if let Some(outbox) = &outbox {
                    if let Err(e) = outbox.enqueue(event).await {
                        metrics::counter!("webhook_enqueue_errors_total").increment(1);
                        tracing::error!(error = %e, "call event not stored for delivery");
                    }
                }
                events.publish_call(event.clone());
                Ok(())
            }
            CdrOp::Acd(e) => {
                tracing::trace!(event = ?e, "agent or queue change");
                let logged = store.record_acd_event(e).await;
                events.publish_acd(e.clone());
                logged
            }
        };
        if let Err(e) = result {
            metrics::counter!("cdr_write_errors_total").increment(1);
            tracing::error!(error = %e, "call record not written");
            continue;
        }
        if let CdrOp::Close { call_id, close } = &op {
            let record = match store.cdr(call_id).await {
                Ok(Some(row)) => crate::cdr::to_json(&row),
                _ => continue,
            };
            let event = crate::events::CallEvent {
                kind: crate::events::CallEventKind::CdrWritten,
                call_id: call_id.clone(),
                at_ms: close.ended_at_ms,
                data: record,
            };
            if let Some(outbox) = &outbox {
                if let Err(e) = outbox.enqueue(&event).await {
                    metrics::counter!("webhook_enqueue_errors_total").increment(1);
                    tracing::error!(error = %e, "call record event not stored for delivery");
                }
            }
            events.publish_call(event);
        }
    }
    // The engine has stopped (a graceful stop): every agent's current state ends now, not at
    // the last write the next start-up would find.
    if let Err(e) = store.close_open_agent_states(unix_ms()).await {
        tracing::warn!(error = %e, "agent states not closed at shutdown");
    }
}

pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Commit registrar changes in batches: whatever queued up while the last commit ran goes
/// into the next transaction. The engine answers each REGISTER when its batch is durable.
async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<(PersistToken, Vec<Change>)>,
    done: mpsc::UnboundedSender<Persisted>,
) {
    const MAX_BATCH: usize = 1024;
    let mut tokens = Vec::with_capacity(MAX_BATCH);
    let mut changes = Vec::with_capacity(MAX_BATCH);
    while let Some((token, c)) = rx.recv().await {
        tokens.push(token);
        changes.extend(c);
        while tokens.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((token, c)) => {
                    tokens.push(token);
                    changes.extend(c);
                }
                Err(_) => break,
            }
        }
        let ok = match store.apply(&changes).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "storing registrations failed");
                false
            }
        };
        metrics::counter!("store_registration_batches_total").increment(1);
        changes.clear();
        // At shutdown the engine may be gone; the data is committed either way.
        let _ = done.send(Persisted {
            tokens: std::mem::take(&mut tokens),
            ok,
        });
    }
}

async fn sweeper(store: Store, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = every.tick() => {
                match store.delete_expired(unix_now()).await {
                    Ok(n) if n > 0 => tracing::debug!(removed = n, "expired registrations removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "removing expired registrations failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{CallType, CdrLeg, CdrOpen, Direction, LegKind};
    use crate::trunk::{OutboundRefusal, Trunks};

    /// A trunk that used its one minute kept calling after a restart: the running count was
    /// only in memory. Seeded from the records, the new process refuses as arrears too.
    #[tokio::test]
    async fn a_quota_used_before_a_restart_stays_used() {
        let config = Config::from_yaml_str(
            "trunks:
  - name: carrier
    address: \"192.0.2.1:5060\"
    quota: { outbound_minutes: 1, period: month }
  - name: spare
    address: \"192.0.2.2:5060\"
",
            "t.yaml",
        )
        .unwrap();
        let now = 1_773_144_000_000; // 2026-03-10T12:00:00Z
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/sb.db", dir.path().display()))
            .await
            .unwrap();
        store
            .open_cdr(&CdrOpen {
                call_id: "c-1".into(),
                call_type: CallType::Outbound,
                direction: Direction::Outbound,
                customer_number: "+8613800000000".into(),
                trunk_number: None,
                service_number: None,
                started_at_ms: now - 120_000,
            })
            .await
            .unwrap();
        store
            .upsert_cdr_leg(&CdrLeg {
                leg_id: "c-1-1".into(),
                call_id: "c-1".into(),
                kind: LegKind::Outbound,
                peer: "+8613800000000".into(),
                started_at_ms: now - 120_000,
                answered_at_ms: Some(now - 100_000),
                ended_at_ms: Some(now - 39_000),
                result: None,
                reason: None,
                agent: None,
                queue: None,
                hangup_by: None,
                caller_id: None,
                trunk: Some("carrier".into()),
            })
            .await
            .unwrap();

        // Without the records, the new process would let the call out.
        let mut forgetful = Trunks::new(&config);
        assert!(forgetful
            .plan_outbound("+8613800000001", Some("carrier"), None, now)
            .is_ok());

        let mut trunks = Trunks::new(&config);
        seed_trunk_quotas(&store, &config, &mut trunks, now)
            .await
            .unwrap();
        assert_eq!(trunks.quota_mut().used("carrier", now), 61);
        assert_eq!(
            trunks.plan_outbound("+8613800000001", Some("carrier"), None, now),
            Err(OutboundRefusal::Arrears)
        );
        // A trunk without a quota is not limited by it.
        assert!(trunks
            .plan_outbound("+8613800000001", Some("spare"), None, now)
            .is_ok());
        // Next month starts from zero.
        let april = 1_775_001_600_000; // 2026-04-01T00:00:00Z
        assert!(trunks
            .plan_outbound("+8613800000001", Some("carrier"), None, april)
            .is_ok());
    }
}
