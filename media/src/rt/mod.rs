//! The media shell: worker threads that own the RTP/RTCP sockets and pace every session
//! from one clock per worker. See [`MediaEngine`].
//!
//! ```text
//!  engine ──open/command──▶ MediaEngine ──mpsc + mio::Waker──▶ worker thread (× N)
//!                             │ routes: SessionId → worker        │ mio::Poll: all RTP/RTCP sockets
//!                             │ ports: free even/odd pairs        │ one 20 ms deadline clock
//!                             ▼                                   ▼
//!                        (open/close only)               session::Session (sans-IO) per stream
//!  engine ◀──────────────── EventSink callback ◀──────────── MediaEvent
//! ```
//!
//! Only the worker reads the clock; each [`Session`](crate::session::Session) gets `now`.
//! The routing map is locked on `open`, `command` and close, never on the packet path.
//!
//! # Bridges and DTMF
//!
//! Both legs of a [`Command::Bridge`] must live on one worker (open the second leg with
//! `near`); otherwise the bridge is refused with a warning. Audio is relayed on receipt,
//! re-stamped into the other leg's own stream and transcoded PCMU↔PCMA. Digits are not
//! relayed packet by packet: when a digit *ends* on one leg (RFC 4733 or detected in-band;
//! detected tones are held back from the audio relay), the other leg regenerates it with
//! the measured duration — RFC 4733 with its own payload type if it negotiated
//! telephone-event, else in-band tones — and the [`MediaEvent::Digit`] of the first leg
//! carries `relay_to: Some(other)` in the in-band case. The tones are already sent, so
//! the engine should send SIP INFO only for a peer that needs it on top.
//! Playing, echoing or silencing either leg ends the bridge (both legs fall silent).
#![allow(clippy::disallowed_methods)]

#[cfg(test)]
mod tests;
mod worker;

use crate::control::{Command, MediaEvent, SessionId};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where events from the workers go (the engine wakes its task on each).
pub type EventSink = Arc<dyn Fn(MediaEvent) + Send + Sync>;

/// Media configuration, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaConfig {
    /// The address RTP sockets bind to and SDP advertises.
    pub address: IpAddr,
    /// Even port range for RTP (RTCP on the odd port above), inclusive.
    pub port_min: u16,
    pub port_max: u16,
    /// Worker threads, each pacing its sessions from one clock. 0: one per core.
    pub workers: usize,
    /// No RTP for this long while the peer should send ends the call
    /// ([`MediaEvent::Inactive`]). `None` disables it.
    pub inactivity: Option<Duration>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            address: IpAddr::from([127, 0, 0, 1]),
            port_min: 10000,
            port_max: 20000,
            workers: 0,
            inactivity: Some(Duration::from_secs(30)),
        }
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no free RTP port pair in {min}-{max}")]
    PortsExhausted { min: u16, max: u16 },
    #[error("session {0} already exists")]
    Duplicate(SessionId),
    #[error("the media engine has stopped")]
    Stopped,
}

/// A message to a worker.
enum Msg {
    Open {
        id: SessionId,
        rtp: UdpSocket,
        rtcp: UdpSocket,
    },
    Command(Command),
    Shutdown,
}

struct WorkerHandle {
    tx: mpsc::Sender<Msg>,
    waker: Arc<mio::Waker>,
    /// Sessions it owns (for least-loaded placement).
    load: Arc<AtomicUsize>,
}

impl WorkerHandle {
    fn send(&self, msg: Msg) -> bool {
        self.tx.send(msg).is_ok() && self.waker.wake().is_ok()
    }
}

/// State shared between the handle and the workers: who owns which session, which ports
/// are taken. Touched on open and close only.
struct Registry {
    routes: Mutex<HashMap<SessionId, usize>>,
    ports: Mutex<Ports>,
}

struct Ports {
    min: u16,
    max: u16,
    /// Next even port to try.
    cursor: u16,
    in_use: HashSet<u16>,
}

impl Ports {
    fn first_even(&self) -> u16 {
        self.min + (self.min & 1)
    }

    /// Even RTP ports in the range whose RTCP port is in it too.
    fn pairs(&self) -> usize {
        let first = self.first_even();
        if u32::from(first) + 1 > u32::from(self.max) {
            return 0;
        }
        usize::from((self.max - first - 1) / 2 + 1)
    }

    fn advance(&mut self) {
        let next = u32::from(self.cursor) + 2;
        self.cursor = if next + 1 > u32::from(self.max) {
            self.first_even()
        } else {
            next as u16
        };
    }
}

impl Registry {
    fn routes(&self) -> MutexGuard<'_, HashMap<SessionId, usize>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ports(&self) -> MutexGuard<'_, Ports> {
        self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by a worker once a session's sockets are dropped.
    fn release(&self, id: SessionId, rtp_port: u16) {
        self.ports().in_use.remove(&rtp_port);
        self.routes().remove(&id);
    }
}

struct Inner {
    config: MediaConfig,
    workers: Vec<WorkerHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    registry: Arc<Registry>,
    stopped: AtomicBool,
}

/// Handle to the media workers. Cheap to share (`Arc` inside). Call
/// [`MediaEngine::shutdown`] to stop them and wait; if the last handle is merely dropped,
/// the workers notice their closed channel, close their sessions and exit unjoined.
#[derive(Clone)]
pub struct MediaEngine {
    inner: Arc<Inner>,
}

impl MediaEngine {
    /// Starts the workers.
    pub fn start(config: MediaConfig, sink: EventSink) -> std::io::Result<MediaEngine> {
        let n = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let first_even = config.port_min + (config.port_min & 1);
        let registry = Arc::new(Registry {
            routes: Mutex::new(HashMap::new()),
            ports: Mutex::new(Ports {
                min: config.port_min,
                max: config.port_max,
                cursor: first_even,
                in_use: HashSet::new(),
            }),
        });
        let mut workers = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for index in 0..n {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), worker::WAKER)?);
            let (tx, rx) = mpsc::channel();
            let load = Arc::new(AtomicUsize::new(0));
            let w = worker::Worker::new(
                poll,
                rx,
                sink.clone(),
                registry.clone(),
                load.clone(),
                config.inactivity,
            );
            let thread = std::thread::Builder::new()
                .name(format!("sb-media-{index}"))
                .spawn(move || w.run())?;
            workers.push(WorkerHandle { tx, waker, load });
            threads.push(thread);
        }
        Ok(MediaEngine {
            inner: Arc::new(Inner {
                config,
                workers,
                threads: Mutex::new(threads),
                registry,
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// Binds an RTP/RTCP port pair for a new session and hands it to a worker — the worker
    /// of `near` if given (the two legs of a bridge must share a worker), else the least
    /// loaded. Returns the local RTP address to put in SDP. Synchronous and quick (two
    /// `bind` calls), so the engine can call it inline.
    pub fn open(&self, id: SessionId, near: Option<SessionId>) -> Result<SocketAddr, OpenError> {
        let inner = &*self.inner;
        if inner.stopped.load(Ordering::Acquire) {
            return Err(OpenError::Stopped);
        }
        let mut routes = inner.registry.routes();
        if routes.contains_key(&id) {
            return Err(OpenError::Duplicate(id));
        }
        let index = near
            .and_then(|n| routes.get(&n).copied())
            .unwrap_or_else(|| {
                (0..inner.workers.len())
                    .min_by_key(|&i| inner.workers[i].load.load(Ordering::Relaxed))
                    .unwrap_or(0)
            });
        let (rtp, rtcp, port) = self.bind_pair()?;
        let local = SocketAddr::new(inner.config.address, port);
        let worker = &inner.workers[index];
        worker.load.fetch_add(1, Ordering::Relaxed);
        routes.insert(id, index);
        if !worker.send(Msg::Open { id, rtp, rtcp }) {
            routes.remove(&id);
            inner.registry.ports().in_use.remove(&port);
            return Err(OpenError::Stopped);
        }
        Ok(local)
    }

    fn bind_pair(&self) -> Result<(UdpSocket, UdpSocket, u16), OpenError> {
        let inner = &*self.inner;
        let mut ports = inner.registry.ports();
        let exhausted = OpenError::PortsExhausted {
            min: ports.min,
            max: ports.max,
        };
        for _ in 0..ports.pairs() {
            let port = ports.cursor;
            ports.advance();
            if ports.in_use.contains(&port) {
                continue;
            }
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(inner.config.address, port)) else {
                continue;
            };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(inner.config.address, port + 1)) else {
                continue;
            };
            if rtp.set_nonblocking(true).is_err() || rtcp.set_nonblocking(true).is_err() {
                continue;
            }
            ports.in_use.insert(port);
            return Ok((rtp, rtcp, port));
        }
        Err(exhausted)
    }

    /// Sends a command to the worker owning its session (unknown sessions are ignored).
    pub fn command(&self, command: Command) {
        let inner = &*self.inner;
        let routes = inner.registry.routes();
        let Some(&index) = routes.get(&command.session()) else {
            tracing::debug!(session = %command.session(), "media command for unknown session");
            return;
        };
        if let Command::Bridge { a, b } = &command {
            if routes.get(b) != Some(&index) {
                tracing::warn!(%a, %b, "bridge across media workers ignored (open b near a)");
                return;
            }
        }
        drop(routes);
        inner.workers[index].send(Msg::Command(command));
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.inner.registry.routes().len()
    }

    /// Stops the workers: finishes recordings, closes sockets, joins the threads.
    /// Idempotent.
    pub fn shutdown(&self) {
        let inner = &*self.inner;
        inner.stopped.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        if threads.is_empty() {
            return;
        }
        for w in &inner.workers {
            w.send(Msg::Shutdown);
        }
        for t in threads {
            let _ = t.join();
        }
    }
}
