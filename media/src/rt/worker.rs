//! One media worker thread: a `mio::Poll` over its sessions' sockets, a command channel
//! woken by a `mio::Waker`, and one deadline clock ticking every session every 20 ms.
#![allow(clippy::disallowed_methods)]

use super::{EventSink, Msg, Registry};
use crate::control::{Command, MediaEvent, SessionId};
use crate::record::RecorderHandle;
use crate::session::{Relay, Session, SessionInit, TICK};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(super) const WAKER: Token = Token(usize::MAX);
/// Falling further behind than this resynchronises the clock instead of catching up.
const MAX_LAG: Duration = Duration::from_millis(100);
/// Wake this much before a tick and spin the rest: epoll timeouts are whole milliseconds.
const SPIN: Duration = Duration::from_millis(1);
/// Seconds from 1900 (NTP era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

struct Slot {
    session: Session,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    rtp_port: u16,
    token: usize,
}

pub(super) struct Worker {
    poll: Poll,
    rx: mpsc::Receiver<Msg>,
    sink: EventSink,
    registry: Arc<Registry>,
    load: Arc<AtomicUsize>,
    inactivity: Option<Duration>,
    sessions: HashMap<SessionId, Slot>,
    /// Token number (RTP = 2n, RTCP = 2n + 1) → session.
    tokens: HashMap<usize, SessionId>,
    next_token: usize,
    random: RandomState,
    random_counter: u64,
    /// Threads finalizing recordings (a WAV finish waits on its writer; never on the
    /// packet path). Joined before the worker exits.
    finishers: Vec<JoinHandle<()>>,
}

impl Worker {
    pub(super) fn new(
        poll: Poll,
        rx: mpsc::Receiver<Msg>,
        sink: EventSink,
        registry: Arc<Registry>,
        load: Arc<AtomicUsize>,
        inactivity: Option<Duration>,
    ) -> Worker {
        Worker {
            poll,
            rx,
            sink,
            registry,
            load,
            inactivity,
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 0,
            random: RandomState::new(),
            random_counter: 0,
            finishers: Vec::new(),
        }
    }

    /// Random enough for SSRC and initial sequence/timestamp (RFC 3550 §5.1): std's
    /// randomly keyed SipHash over a counter.
    fn random(&mut self) -> u64 {
        self.random_counter += 1;
        let mut h = self.random.build_hasher();
        h.write_u64(self.random_counter);
        h.finish()
    }

    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut buf = vec![0u8; 2048];
        let mut next_tick = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            if now + SPIN >= next_tick {
                // Spin out the last stretch so ticks land on the deadline.
                while Instant::now() < next_tick {
                    std::thread::yield_now();
                }
                let tick_at = next_tick;
                self.tick_all(tick_at);
                next_tick += TICK;
                let now = Instant::now();
                if now > next_tick + MAX_LAG {
                    tracing::warn!(lag = ?(now - next_tick), "media worker fell behind; resynchronising");
                    next_tick = now + TICK;
                }
            }
            let timeout = next_tick
                .saturating_duration_since(Instant::now())
                .saturating_sub(SPIN);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media worker poll failed");
                    self.close_all();
                    return;
                }
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    continue;
                }
                let Some(&id) = self.tokens.get(&(token.0 / 2)) else {
                    continue;
                };
                self.drain_socket(id, token.0 % 2 == 1, &mut buf);
            }
            // Commands are drained on every wake-up (the waker's event only says "look").
            if !self.drain_commands() {
                self.close_all();
                return;
            }
        }
    }

    fn tick_all(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(slot) = self.sessions.get_mut(&id) {
                slot.session.tick(now);
            }
            self.flush(id);
        }
    }

    /// Reads until `WouldBlock`, handing each datagram to the session.
    fn drain_socket(&mut self, id: SessionId, rtcp: bool, buf: &mut [u8]) {
        loop {
            let Some(slot) = self.sessions.get_mut(&id) else {
                return;
            };
            let socket = if rtcp { &slot.rtcp } else { &slot.rtp };
            let (n, from) = match socket.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ICMP port unreachable and the like surface here on some systems; the
                // socket stays usable.
                Err(_) => continue,
            };
            let now = Instant::now();
            let datagram = &buf[..n];
            if rtcp {
                slot.session.handle_rtcp(now, from, datagram);
                self.flush(id);
                continue;
            }
            let relay = slot.session.handle_rtp(now, from, datagram);
            let peer = slot.session.bridge_peer();
            self.flush(id);
            if let (Some(relay), Some(peer)) = (relay, peer) {
                self.relay(now, peer, &relay);
            }
        }
    }

    fn relay(&mut self, now: Instant, peer: SessionId, relay: &Relay) {
        if let Some(slot) = self.sessions.get_mut(&peer) {
            slot.session.send_relayed(now, relay);
            self.flush(peer);
        }
    }

    /// Sends what the session queued and delivers its events (relaying digits of a bridge).
    fn flush(&mut self, id: SessionId) {
        let Some(slot) = self.sessions.get_mut(&id) else {
            return;
        };
        while let Some(t) = slot.session.poll_transmit() {
            let socket = if t.rtcp { &slot.rtcp } else { &slot.rtp };
            // Errors (full buffer, unreachable) drop the packet: media is loss-tolerant.
            let _ = socket.send_to(&t.data, t.to);
        }
        let mut recordings = Vec::new();
        while let Some(r) = slot.session.poll_finished_recording() {
            recordings.push(r);
        }
        let peer = slot.session.bridge_peer();
        let mut events = Vec::new();
        while let Some(e) = slot.session.poll_event() {
            events.push(e);
        }
        for mut event in events {
            if let (
                Some(peer),
                MediaEvent::Digit {
                    digit,
                    duration,
                    relay_to,
                    ..
                },
            ) = (peer, &mut event)
            {
                *relay_to = self.relay_digit(peer, *digit, *duration);
            }
            (self.sink)(event);
        }
        if !recordings.is_empty() {
            self.finish_recordings(id, recordings, Vec::new());
        }
    }

    /// Finalizes recordings on a helper thread, reports them, then reports `after` (a
    /// session's `Closed`, so the engine sees the file complete before the leg is gone).
    fn finish_recordings(
        &mut self,
        id: SessionId,
        recordings: Vec<RecorderHandle>,
        after: Vec<MediaEvent>,
    ) {
        self.finishers.retain(|t| !t.is_finished());
        let sink = self.sink.clone();
        let job = move || {
            for r in recordings {
                let result = r.finish().map_err(|e| e.to_string());
                sink(MediaEvent::Recorded { id, result });
            }
            for e in after {
                sink(e);
            }
        };
        let spawned = std::thread::Builder::new()
            .name("sb-record-finish".into())
            .spawn(job);
        match spawned {
            Ok(t) => self.finishers.push(t),
            // The closure (and its handles, which finalize on drop) is gone with the error.
            Err(e) => tracing::error!(session = %id, error = %e, "cannot finish recording"),
        }
    }

    /// A digit ended on a bridged leg: re-send it on `peer` as the peer negotiated it.
    /// Returns `Some(peer)` when the peer has no RFC 4733 (the engine may send SIP INFO).
    fn relay_digit(
        &mut self,
        peer: SessionId,
        digit: crate::dtmf::rfc4733::Digit,
        duration: Duration,
    ) -> Option<SessionId> {
        let slot = self.sessions.get_mut(&peer)?;
        let has_te = slot
            .session
            .params()
            .is_some_and(|p| p.telephone_event.is_some());
        // Regenerated whichever way it came: RFC 4733 packets are not relayed as audio, and
        // the session holds back detected in-band tones from the relay.
        slot.session.send_dtmf(digit, duration);
        (!has_te).then_some(peer)
    }

    /// Returns false when the engine is gone or asked to stop.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Open { id, rtp, rtcp }) => self.open(id, rtp, rtcp),
                Ok(Msg::Command(c)) => self.command(c),
                Ok(Msg::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn open(&mut self, id: SessionId, rtp: std::net::UdpSocket, rtcp: std::net::UdpSocket) {
        let rtp_port = rtp.local_addr().map_or(0, |a| a.port());
        let mut rtp = UdpSocket::from_std(rtp);
        let mut rtcp = UdpSocket::from_std(rtcp);
        let n = self.next_token;
        self.next_token += 1;
        let registered = self
            .poll
            .registry()
            .register(&mut rtp, Token(2 * n), Interest::READABLE)
            .and_then(|()| {
                self.poll
                    .registry()
                    .register(&mut rtcp, Token(2 * n + 1), Interest::READABLE)
            });
        if let Err(e) = registered {
            tracing::error!(session = %id, error = %e, "cannot register media sockets");
            drop((rtp, rtcp));
            self.registry.release(id, rtp_port);
            self.load.fetch_sub(1, Ordering::Relaxed);
            (self.sink)(MediaEvent::Closed {
                id,
                stats: Default::default(),
            });
            return;
        }
        let r = self.random();
        let ntp_at_start = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
            ((d.as_secs() + NTP_UNIX_OFFSET) << 32)
                | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
        });
        let ssrc = r as u32;
        let init = SessionInit {
            ssrc,
            initial_sequence: (r >> 32) as u16,
            initial_timestamp: (r >> 16) as u32 ^ (self.random() as u32),
            cname: format!("switchboard-{ssrc:08x}"),
            ntp_at_start,
            inactivity: self.inactivity,
        };
        let session = Session::new(id, Instant::now(), init);
        self.tokens.insert(n, id);
        self.sessions.insert(
            id,
            Slot {
                session,
                rtp,
                rtcp,
                rtp_port,
                token: n,
            },
        );
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        let id = command.session();
        match command {
            Command::Bridge { a, b } => {
                if a == b || !self.sessions.contains_key(&a) || !self.sessions.contains_key(&b) {
                    tracing::warn!(%a, %b, "bridge of unknown sessions ignored");
                    return;
                }
                for (x, y) in [(a, b), (b, a)] {
                    // A leg bridged elsewhere before is released first.
                    self.unbridge(x);
                    if let Some(slot) = self.sessions.get_mut(&x) {
                        slot.session.bridged(y);
                    }
                }
            }
            Command::Unbridge { id } => self.unbridge(id),
            Command::Close { id } => {
                self.unbridge(id);
                self.close(id);
                return;
            }
            other => {
                if matches!(
                    other,
                    Command::Play { .. } | Command::Echo { .. } | Command::Silence { .. }
                ) {
                    // A leg that starts playing on its own leaves its bridge.
                    self.unbridge(id);
                }
                let Some(slot) = self.sessions.get_mut(&id) else {
                    return;
                };
                let s = &mut slot.session;
                match other {
                    Command::Configure { params, .. } => s.configure(now, params),
                    Command::Play {
                        prompts,
                        repeat,
                        token,
                        ..
                    } => s.play(prompts, repeat, token),
                    Command::Echo { .. } => s.echo(),
                    Command::Silence { .. } => s.silence(),
                    Command::SendDtmf {
                        digit, duration, ..
                    } => s.send_dtmf(digit, duration),
                    Command::Record { request, .. } => s.record(now, request.path),
                    Command::StopRecord { .. } => s.stop_record(),
                    Command::Bridge { .. } | Command::Unbridge { .. } | Command::Close { .. } => {}
                }
            }
        }
        self.flush(id);
    }

    /// Ends `id`'s bridge, if any: both legs fall back to silence.
    fn unbridge(&mut self, id: SessionId) {
        let Some(peer) = self.sessions.get(&id).and_then(|s| s.session.bridge_peer()) else {
            return;
        };
        for x in [id, peer] {
            if let Some(slot) = self.sessions.get_mut(&x) {
                if slot.session.bridge_peer().is_some() {
                    slot.session.silence();
                }
            }
        }
    }

    fn close(&mut self, id: SessionId) {
        let Some(mut slot) = self.sessions.remove(&id) else {
            return;
        };
        self.tokens.remove(&slot.token);
        slot.session.close();
        let _ = self.poll.registry().deregister(&mut slot.rtp);
        let _ = self.poll.registry().deregister(&mut slot.rtcp);
        let Slot {
            mut session,
            rtp,
            rtcp,
            rtp_port,
            ..
        } = slot;
        drop((rtp, rtcp));
        self.registry.release(id, rtp_port);
        self.load.fetch_sub(1, Ordering::Relaxed);
        let mut recordings = Vec::new();
        while let Some(r) = session.poll_finished_recording() {
            recordings.push(r);
        }
        let events: Vec<MediaEvent> = std::iter::from_fn(|| session.poll_event()).collect();
        if recordings.is_empty() {
            for e in events {
                (self.sink)(e);
            }
        } else {
            // Closed waits for the recording's Recorded.
            let (closed, before): (Vec<_>, Vec<_>) = events
                .into_iter()
                .partition(|e| matches!(e, MediaEvent::Closed { .. }));
            for e in before {
                (self.sink)(e);
            }
            self.finish_recordings(id, recordings, closed);
        }
    }

    /// Closes every session and waits for their recordings to be finalized.
    fn close_all(&mut self) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        for t in self.finishers.drain(..) {
            let _ = t.join();
        }
    }
}
