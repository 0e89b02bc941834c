//! One RTP stream's media state, sans-IO: what a call leg sends, what it received, its
//! DTMF, RTCP, inactivity and recording.
//!
//! # Drive-loop contract
//!
//! A [`Session`] never reads a clock or touches a socket. Its owner (the worker in
//! [`crate::rt`]) feeds it:
//!
//! * commands — [`configure`](Session::configure), [`play`](Session::play),
//!   [`echo`](Session::echo), [`silence`](Session::silence), [`bridged`](Session::bridged),
//!   [`send_dtmf`](Session::send_dtmf), [`record`](Session::record),
//!   [`stop_record`](Session::stop_record), [`close`](Session::close);
//! * datagrams — [`handle_rtp`](Session::handle_rtp) (which may hand back a [`Relay`] for
//!   the bridged peer, fed to it with [`send_relayed`](Session::send_relayed)) and
//!   [`handle_rtcp`](Session::handle_rtcp);
//! * time — [`tick`](Session::tick) every 20 ms (the packetisation clock).
//!
//! and after each input drains [`poll_transmit`](Session::poll_transmit) (datagrams to
//! send), [`poll_event`](Session::poll_event) (what to tell the engine) and
//! [`poll_finished_recording`](Session::poll_finished_recording) (recordings to finalize
//! off the packet path).
//!
//! # One outgoing stream
//!
//! Everything the session sends — prompt frames, in-band or RFC 4733 DTMF, echoed and
//! bridged audio — goes out as ONE RTP stream: one SSRC, sequence numbers increasing by
//! one per packet, timestamps following the session clock (they keep running through
//! silence and hold, RFC 3550 §5.1). The clock is a sample position: samples since the
//! session was created, advanced by [`tick`](Session::tick). Frames sent by `tick` sit on
//! exact frame boundaries; relayed audio keeps the input's timestamp spacing, re-based on
//! the clock at each source change, with the marker bit set there (RFC 3551 §4.1).
//!
//! The same positions place audio in a recording, so both channels line up.
use crate::control::{DtmfVia, MediaEvent, SessionId, SessionStats, StreamParams};
use crate::dtmf::goertzel::{Detector, ToneEvent};
use crate::dtmf::rfc4733::{self, Digit, DigitEvent};
use crate::g711;
use crate::prompt::{self, synth, Prompt};
use crate::record::{Channel, Recorder, RecorderHandle, RecordingConfig};
use crate::rtcp::{self, ReceiverReport, ReportBlock, RtcpPacket, SenderInfo, SenderReport};
use crate::rtp::{RtpPacket, SequenceTracker};
use crate::sdp::Codec;
use std::collections::VecDeque;
use std::iter::Peekable;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// G.711 samples per millisecond.
const SAMPLES_PER_MS: u64 = 8;
/// The worker's tick: 20 ms.
pub const TICK: Duration = Duration::from_millis(20);
/// Nominal RTCP report interval (RFC 3550 §6.2 minimum is 5 s); randomised ±50%.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// When the packetisation clock falls this far behind, frames are skipped, not burst.
const MAX_BURST_FRAMES: u64 = 5;
/// Gap after a generated in-band digit so consecutive digits stay distinct.
const INBAND_GAP_MS: u32 = 60;
/// Shortest digit we generate (RFC 4733 senders commonly use ≥ 40 ms; detectors need it).
const MIN_DIGIT: Duration = Duration::from_millis(40);
/// Longest digit we generate.
const MAX_DIGIT: Duration = Duration::from_secs(10);

/// Identity of the outgoing stream, chosen by the shell (random there; fixed in tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInit {
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
    /// RTCP SDES CNAME.
    pub cname: String,
    /// The wall clock at session creation as a 64-bit NTP timestamp (RTCP SR).
    pub ntp_at_start: u64,
    /// [`MediaEvent::Inactive`] after this long without RTP while the peer should send.
    pub inactivity: Option<Duration>,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    /// Send from the RTCP socket rather than the RTP socket.
    pub rtcp: bool,
    pub data: Vec<u8>,
}

/// Audio received on a bridged session, to be sent on its peer with
/// [`Session::send_relayed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    pub ssrc: u32,
    pub timestamp: u32,
    pub marker: bool,
    pub codec: Codec,
    pub payload: Vec<u8>,
}

/// Counters beyond [`SessionStats`], for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams that did not parse as RTP.
    pub rtp_malformed: u64,
    /// RTP with a payload type this leg did not negotiate.
    pub unexpected_payload_type: u64,
    /// RTCP datagrams that did not parse.
    pub rtcp_malformed: u64,
    /// Telephone-event payloads that did not parse.
    pub dtmf_malformed: u64,
}

/// What the session sends on its own (paced by `tick`).
#[derive(Debug)]
enum Mode {
    Silence,
    Play(Playout),
    Echo,
    /// Relaying for the bridged peer: `tick` sends nothing, [`Session::send_relayed`] does.
    Bridged(SessionId),
}

#[derive(Debug)]
struct Playout {
    prompts: Vec<Arc<Prompt>>,
    repeat: bool,
    token: u64,
    index: usize,
    /// Sample offset into the current prompt.
    offset: usize,
}

#[derive(Debug)]
enum DtmfOut {
    Rfc4733 {
        packets: Peekable<rfc4733::Sender>,
        /// Clock position the event started at.
        start: u64,
        payload_type: u8,
    },
    /// Pre-encoded tone plus gap, sent frame by frame in place of other audio.
    Inband { encoded: Vec<u8>, offset: usize },
}

/// Maps an input RTP timestamp line onto the session clock, re-based on source changes.
#[derive(Clone, Copy, Debug)]
struct TimeMap {
    ssrc: u32,
    in_ts: u32,
    pos: u64,
}

impl TimeMap {
    /// Position of `ts`, or `None` when it is too far from the base to be the same stream.
    fn map(&self, ssrc: u32, ts: u32) -> Option<u64> {
        if ssrc != self.ssrc {
            return None;
        }
        let d = i64::from(ts.wrapping_sub(self.in_ts) as i32);
        // More than 10 s either way: a timestamp jump, treat as a new source.
        if d.unsigned_abs() > 80_000 {
            return None;
        }
        u64::try_from(self.pos as i64 + d).ok()
    }
}

struct Recording {
    handle: RecorderHandle,
    /// Clock position of sample 0 of the file.
    start: u64,
}

/// Per-stream media state; see the module docs.
pub struct Session {
    id: SessionId,
    init: SessionInit,
    created: Instant,
    params: Option<StreamParams>,
    mode: Mode,
    dtmf_out: Option<DtmfOut>,
    dtmf_queue: VecDeque<(Digit, Duration)>,

    // Outgoing stream.
    sequence: u16,
    /// Clock position (samples since creation) of the next frame `tick` owes.
    next_frame: u64,
    /// Highest position sent so far (end of the last frame), to keep relayed audio moving
    /// forward across source changes.
    sent_until: u64,
    /// The next packet starts a talkspurt (marker bit).
    talkspurt: bool,
    relay_map: Option<TimeMap>,
    sent_since_report: bool,

    // Receiving.
    latched: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    tracker: Option<(u32, SequenceTracker)>,
    lost_before: i64,
    rx_map: Option<TimeMap>,
    dtmf_in: rfc4733::Receiver,
    detector: Detector,
    /// The in-band detector hears a digit right now.
    inband_digit: bool,
    decode_buf: Vec<i16>,
    last_rx: Option<Instant>,
    /// When the inactivity timer was (re-)armed.
    armed_at: Instant,
    inactive_reported: bool,

    // RTCP.
    next_rtcp: Instant,
    rtcp_count: u32,
    /// Middle 32 bits of the last SR's NTP timestamp and when it arrived.
    last_sr: Option<(u32, Instant)>,

    recording: Option<Recording>,
    finished_recordings: VecDeque<RecorderHandle>,
    stats: SessionStats,
    counters: Counters,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    closed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("latched", &self.latched)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(id: SessionId, now: Instant, init: SessionInit) -> Session {
        let mut s = Session {
            id,
            created: now,
            params: None,
            mode: Mode::Silence,
            dtmf_out: None,
            dtmf_queue: VecDeque::new(),
            sequence: init.initial_sequence,
            next_frame: 0,
            sent_until: 0,
            talkspurt: true,
            relay_map: None,
            sent_since_report: false,
            latched: None,
            latched_rtcp: None,
            tracker: None,
            lost_before: 0,
            rx_map: None,
            dtmf_in: rfc4733::Receiver::new(),
            detector: Detector::new(),
            inband_digit: false,
            decode_buf: Vec::new(),
            last_rx: None,
            armed_at: now,
            inactive_reported: false,
            next_rtcp: now,
            rtcp_count: 0,
            last_sr: None,
            recording: None,
            finished_recordings: VecDeque::new(),
            stats: SessionStats::default(),
            counters: Counters::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
            init,
        };
        s.next_rtcp = now + s.rtcp_interval();
        s
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn params(&self) -> Option<&StreamParams> {
        self.params.as_ref()
    }

    pub fn ssrc(&self) -> u32 {
        self.init.ssrc
    }

    /// Counters so far (`packets_lost`/`jitter` from the current source).
    pub fn stats(&self) -> SessionStats {
        let mut stats = self.stats;
        if let Some((_, t)) = &self.tracker {
            stats.packets_lost = self.lost_before + t.lost();
            stats.jitter = t.jitter();
        } else {
            stats.packets_lost = self.lost_before;
        }
        stats
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The address RTP is sent to: the latched source, else what SDP said.
    pub fn remote(&self) -> Option<SocketAddr> {
        let p = self.params.as_ref()?;
        p.remote?;
        self.latched.or(p.remote)
    }

    /// The session it relays for, if bridged.
    pub fn bridge_peer(&self) -> Option<SessionId> {
        match self.mode {
            Mode::Bridged(peer) => Some(peer),
            _ => None,
        }
    }

    // ----- commands -----

    /// What offer/answer settled (again, after a re-INVITE). A new remote address drops the
    /// latch; the inactivity timer is re-armed.
    pub fn configure(&mut self, now: Instant, params: StreamParams) {
        let remote_changed = self.params.as_ref().map(|p| (p.remote, p.remote_rtcp))
            != Some((params.remote, params.remote_rtcp));
        if remote_changed {
            self.latched = None;
            self.latched_rtcp = None;
        }
        if self.params.as_ref().map(|p| p.codec) != Some(params.codec) {
            self.talkspurt = true;
        }
        self.dtmf_in.finish();
        self.drain_dtmf_in();
        self.params = Some(params);
        self.armed_at = now;
        self.inactive_reported = false;
    }

    /// Plays `prompts` in order from the next tick (replacing what was being sent).
    pub fn play(&mut self, prompts: Vec<Arc<Prompt>>, repeat: bool, token: u64) {
        self.talkspurt = true;
        self.mode = Mode::Play(Playout {
            prompts,
            repeat,
            token,
            index: 0,
            offset: 0,
        });
    }

    /// Sends received audio straight back.
    pub fn echo(&mut self) {
        self.talkspurt = true;
        self.relay_map = None;
        self.mode = Mode::Echo;
    }

    /// Sends nothing (the timestamp keeps running).
    pub fn silence(&mut self) {
        self.talkspurt = true;
        self.mode = Mode::Silence;
    }

    /// Relays for `peer`: received audio is handed back from [`handle_rtp`](Self::handle_rtp)
    /// as a [`Relay`] and the shell feeds the peer's to [`send_relayed`](Self::send_relayed).
    pub fn bridged(&mut self, peer: SessionId) {
        self.talkspurt = true;
        self.relay_map = None;
        self.mode = Mode::Bridged(peer);
    }

    /// Sends `digit` as negotiated: RFC 4733 if the leg has telephone-event, in-band tones
    /// otherwise. Digits queue behind one another; other audio pauses while one is sent.
    pub fn send_dtmf(&mut self, digit: Digit, duration: Duration) {
        self.dtmf_queue
            .push_back((digit, duration.clamp(MIN_DIGIT, MAX_DIGIT)));
    }

    /// Starts recording to `path` (finishing a recording already running).
    pub fn record(&mut self, now: Instant, path: PathBuf) {
        self.stop_record();
        match Recorder::start(path, RecordingConfig::default()) {
            Ok(handle) => {
                let start = self.position_at(now);
                self.recording = Some(Recording { handle, start });
            }
            Err(e) => self.events.push_back(MediaEvent::Recorded {
                id: self.id,
                result: Err(e.to_string()),
            }),
        }
    }

    /// Stops the recording, if any. The handle moves to
    /// [`poll_finished_recording`](Self::poll_finished_recording): finalizing waits for the
    /// writer thread, which the owner does off the packet path, then reports
    /// [`MediaEvent::Recorded`].
    pub fn stop_record(&mut self) {
        if let Some(rec) = self.recording.take() {
            self.finished_recordings.push_back(rec.handle);
        }
    }

    /// A stopped recording to finalize ([`RecorderHandle::finish`], blocking) and report as
    /// [`MediaEvent::Recorded`] for this session.
    pub fn poll_finished_recording(&mut self) -> Option<RecorderHandle> {
        self.finished_recordings.pop_front()
    }

    /// Stops the recording (see [`stop_record`](Self::stop_record)) and queues
    /// [`MediaEvent::Closed`]; the owner reports `Closed` after the recording's `Recorded`.
    /// Idempotent.
    pub fn close(&mut self) -> SessionStats {
        let stats = self.stats();
        if !self.closed {
            self.closed = true;
            self.dtmf_in.finish();
            self.drain_dtmf_in();
            self.stop_record();
            self.events
                .push_back(MediaEvent::Closed { id: self.id, stats });
        }
        stats
    }

    // ----- outputs -----

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    // ----- clock -----

    fn spf(&self) -> u64 {
        let ptime = self.params.as_ref().map_or(20, |p| p.ptime);
        let ptime = if ptime == 0 { 20 } else { ptime.clamp(10, 200) };
        u64::from(ptime) * SAMPLES_PER_MS
    }

    /// Samples since creation at `now`.
    fn position_at(&self, now: Instant) -> u64 {
        let micros = now.saturating_duration_since(self.created).as_micros();
        u64::try_from(micros * u128::from(SAMPLES_PER_MS) / 1000).unwrap_or(u64::MAX)
    }

    fn timestamp_of(&self, pos: u64) -> u32 {
        self.init.initial_timestamp.wrapping_add(pos as u32)
    }

    fn next_sequence(&mut self) -> u16 {
        let s = self.sequence;
        self.sequence = s.wrapping_add(1);
        s
    }

    fn rtcp_interval(&self) -> Duration {
        // Deterministic ±50% jitter (RFC 3550 §6.3.1 randomises to avoid synchronised
        // reports); derived from the SSRC and a report counter.
        let mut x = u64::from(self.init.ssrc) ^ (u64::from(self.rtcp_count) << 32);
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        let per_mille = x % 1000;
        RTCP_INTERVAL / 2 + RTCP_INTERVAL * (per_mille as u32) / 1000
    }

    /// The 20 ms clock: sends what is due (prompt frame, DTMF), RTCP when due, and checks
    /// inactivity.
    pub fn tick(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let spf = self.spf();
        let target = self.position_at(now);
        if target >= self.next_frame + MAX_BURST_FRAMES * spf {
            // The shell fell behind: skip to the present rather than burst.
            let behind = (target - self.next_frame) / spf;
            self.next_frame += behind * spf;
            self.talkspurt = true;
        }
        while self.next_frame <= target {
            let pos = self.next_frame;
            self.next_frame += spf;
            self.frame_due(pos, spf as usize);
        }
        self.check_inactivity(now);
        if now >= self.next_rtcp {
            self.rtcp_count = self.rtcp_count.wrapping_add(1);
            self.next_rtcp = now + self.rtcp_interval();
            self.send_report(now);
        }
    }

    fn sending(&self) -> Option<SocketAddr> {
        let p = self.params.as_ref()?;
        if !p.direction.sends() {
            return None;
        }
        self.remote()
    }

    /// One packetisation interval at `pos` is due.
    fn frame_due(&mut self, pos: u64, spf: usize) {
        let Some(codec) = self.params.as_ref().map(|p| p.codec) else {
            return;
        };
        if self.dtmf_out.is_none() {
            if let Some((digit, duration)) = self.dtmf_queue.pop_front() {
                self.start_dtmf(pos, digit, duration, codec);
            }
        }
        if let Some(out) = &mut self.dtmf_out {
            match out {
                DtmfOut::Rfc4733 {
                    packets,
                    start,
                    payload_type,
                } => {
                    let pt = *payload_type;
                    let elapsed = (pos - *start) as u32;
                    let mut due = Vec::new();
                    while let Some(p) = packets.next_if(|p| p.send_at <= elapsed) {
                        due.push(p);
                    }
                    let done = packets.peek().is_none();
                    for p in due {
                        let bytes = p.event.to_bytes();
                        self.send_packet(pt, p.timestamp, p.marker, &bytes, pos + spf as u64);
                    }
                    if done {
                        self.dtmf_out = None;
                        self.talkspurt = true;
                    }
                }
                DtmfOut::Inband { encoded, offset } => {
                    let mut frame = vec![prompt::silence_byte(codec); spf];
                    let end = (*offset + spf).min(encoded.len());
                    let n = end - *offset;
                    frame[..n].copy_from_slice(&encoded[*offset..end]);
                    *offset = end;
                    if end >= encoded.len() {
                        self.dtmf_out = None;
                    }
                    let pt = self.params.as_ref().map_or(0, |p| p.payload_type);
                    let marker = std::mem::take(&mut self.talkspurt);
                    self.send_audio_frame(pt, pos, marker, &frame, codec);
                    if self.dtmf_out.is_none() {
                        self.talkspurt = true;
                    }
                }
            }
            // Prompts pause while a digit is sent.
            return;
        }
        let frame = match &mut self.mode {
            Mode::Play(play) => next_prompt_frame(play, codec, spf),
            Mode::Silence => {
                self.talkspurt = true;
                return;
            }
            // Relayed audio is sent on receipt and keeps its own talkspurts.
            Mode::Echo | Mode::Bridged(_) => return,
        };
        match frame {
            PromptFrame::Frame(frame) => {
                let pt = self.params.as_ref().map_or(0, |p| p.payload_type);
                let marker = std::mem::take(&mut self.talkspurt);
                self.send_audio_frame(pt, pos, marker, &frame, codec);
            }
            PromptFrame::Done(token) => {
                self.mode = Mode::Silence;
                self.talkspurt = true;
                self.events
                    .push_back(MediaEvent::PlayDone { id: self.id, token });
            }
        }
    }

    fn start_dtmf(&mut self, pos: u64, digit: Digit, duration: Duration, codec: Codec) {
        let te = self.params.as_ref().and_then(|p| p.telephone_event);
        let spf = self.spf();
        let units = (duration.as_millis() as u64 * SAMPLES_PER_MS) as u32;
        self.dtmf_out = Some(match te {
            Some(payload_type) => DtmfOut::Rfc4733 {
                packets: rfc4733::Sender::new(
                    digit,
                    self.timestamp_of(pos),
                    units,
                    rfc4733::SenderConfig {
                        interval: spf as u32,
                        ..Default::default()
                    },
                )
                .peekable(),
                start: pos,
                payload_type,
            },
            None => {
                let mut pcm = synth::dtmf_tone(digit, duration.as_millis() as u32);
                pcm.extend(synth::silence(INBAND_GAP_MS));
                let mut encoded = vec![0; pcm.len()];
                match codec {
                    Codec::Pcmu => g711::encode_ulaw_into(&pcm, &mut encoded),
                    Codec::Pcma => g711::encode_alaw_into(&pcm, &mut encoded),
                };
                DtmfOut::Inband { encoded, offset: 0 }
            }
        });
        self.talkspurt = true;
    }

    /// Sends one audio frame at clock position `pos` and records it on the right channel.
    fn send_audio_frame(&mut self, pt: u8, pos: u64, marker: bool, payload: &[u8], codec: Codec) {
        let end = pos + payload.len() as u64;
        // The right channel is what the peer hears: nothing while on hold.
        if self.sending().is_some() {
            self.record_frame(Channel::Other, pos, payload, codec);
        }
        self.send_packet(pt, self.timestamp_of(pos), marker, payload, end);
    }

    /// Builds and queues one RTP packet of our stream (if we may send at all; the sequence
    /// number is spent only when a packet really goes out).
    fn send_packet(&mut self, pt: u8, timestamp: u32, marker: bool, payload: &[u8], end: u64) {
        self.sent_until = self.sent_until.max(end);
        let Some(to) = self.sending() else {
            return;
        };
        let mut packet = RtpPacket::new(pt, 0, timestamp, self.init.ssrc, payload);
        packet.sequence = self.next_sequence();
        packet.marker = marker;
        let Ok(data) = packet.to_vec() else {
            return;
        };
        self.stats.packets_sent += 1;
        self.stats.octets_sent += payload.len() as u64;
        self.sent_since_report = true;
        self.transmits.push_back(Transmit {
            to,
            rtcp: false,
            data,
        });
    }

    fn record_frame(&mut self, channel: Channel, pos: u64, payload: &[u8], codec: Codec) {
        let Some(rec) = &self.recording else {
            return;
        };
        let Some(at) = pos.checked_sub(rec.start) else {
            return;
        };
        match codec {
            Codec::Pcmu => rec.handle.push_ulaw(channel, at, payload),
            Codec::Pcma => rec.handle.push_alaw(channel, at, payload),
        };
    }

    fn check_inactivity(&mut self, now: Instant) {
        let (Some(limit), Some(p)) = (self.init.inactivity, self.params.as_ref()) else {
            return;
        };
        if self.inactive_reported || !p.direction.receives() || p.remote.is_none() {
            return;
        }
        let since = self.last_rx.map_or(self.armed_at, |t| t.max(self.armed_at));
        let silent_for = now.saturating_duration_since(since);
        if silent_for >= limit {
            self.inactive_reported = true;
            self.events.push_back(MediaEvent::Inactive {
                id: self.id,
                silent_for,
            });
        }
    }

    fn ntp_at(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.created);
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        self.init
            .ntp_at_start
            .wrapping_add((d.as_secs() << 32) | frac)
    }

    fn send_report(&mut self, now: Instant) {
        let Some(p) = self.params.as_ref() else {
            return;
        };
        let Some(rtp_to) = p.remote else {
            return;
        };
        let to = self
            .latched_rtcp
            .or(p.remote_rtcp)
            .unwrap_or_else(|| SocketAddr::new(rtp_to.ip(), rtp_to.port().wrapping_add(1)));
        let (lsr, dlsr) = self.last_sr.map_or((0, 0), |(lsr, at)| {
            (lsr, rtcp::dlsr_units(now.saturating_duration_since(at)))
        });
        let reports: Vec<ReportBlock> = match &mut self.tracker {
            Some((ssrc, t)) if !t.on_probation() => {
                vec![ReportBlock::from_tracker(*ssrc, t, lsr, dlsr)]
            }
            _ => Vec::new(),
        };
        let report = if std::mem::take(&mut self.sent_since_report) {
            RtcpPacket::SenderReport(SenderReport {
                ssrc: self.init.ssrc,
                sender_info: SenderInfo {
                    ntp_timestamp: self.ntp_at(now),
                    rtp_timestamp: self.timestamp_of(self.position_at(now)),
                    packet_count: self.stats.packets_sent as u32,
                    octet_count: self.stats.octets_sent as u32,
                },
                reports,
            })
        } else {
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.init.ssrc,
                reports,
            })
        };
        if let Ok(data) = rtcp::report_compound(&report, self.init.ssrc, self.init.cname.as_bytes())
        {
            self.transmits.push_back(Transmit {
                to,
                rtcp: true,
                data,
            });
        }
    }

    // ----- receiving -----

    /// One datagram on the RTP port. Returns audio for the bridged peer, if bridged.
    /// Never panics, whatever the bytes.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Option<Relay> {
        if self.closed {
            return None;
        }
        let Ok(packet) = RtpPacket::parse(datagram) else {
            self.counters.rtp_malformed += 1;
            return None;
        };
        let Some(params) = self.params.as_ref() else {
            self.counters.unexpected_payload_type += 1;
            return None;
        };
        let codec = params.codec;
        let is_audio = packet.payload_type == params.payload_type;
        let is_event = params.telephone_event == Some(packet.payload_type);
        let inband = params.inband_dtmf;
        if !is_audio && !is_event {
            self.counters.unexpected_payload_type += 1;
            return None;
        }
        match self.latched {
            Some(addr) if addr != from => {
                self.stats.packets_foreign += 1;
                return None;
            }
            Some(_) => {}
            None => {
                self.latched = Some(from);
                self.events.push_back(MediaEvent::Latched {
                    id: self.id,
                    remote: from,
                });
            }
        }
        self.last_rx = Some(now);
        self.inactive_reported = false;
        self.stats.packets_received += 1;
        self.stats.octets_received += packet.payload.len() as u64;

        let pos_now = self.position_at(now);
        let arrival = self.timestamp_of(pos_now);
        match &mut self.tracker {
            Some((ssrc, t)) if *ssrc == packet.ssrc => {
                t.update(packet.sequence, packet.timestamp, arrival);
            }
            _ => {
                if let Some((_, old)) = &self.tracker {
                    self.lost_before += old.lost();
                }
                let mut t = SequenceTracker::new_validated(packet.sequence);
                t.update(packet.sequence, packet.timestamp, arrival);
                self.tracker = Some((packet.ssrc, t));
            }
        }

        if is_event {
            if self
                .dtmf_in
                .handle_packet(packet.timestamp, packet.marker, packet.payload)
                .is_err()
            {
                self.counters.dtmf_malformed += 1;
            }
            self.drain_dtmf_in();
            return None;
        }

        // Audio. Place it on the session clock for the recording.
        let pos = match self
            .rx_map
            .and_then(|m| m.map(packet.ssrc, packet.timestamp))
        {
            Some(pos) => pos,
            None => {
                self.rx_map = Some(TimeMap {
                    ssrc: packet.ssrc,
                    in_ts: packet.timestamp,
                    pos: pos_now,
                });
                pos_now
            }
        };
        self.record_frame(Channel::Caller, pos, packet.payload, codec);
        if inband {
            self.decode_buf.resize(packet.payload.len(), 0);
            match codec {
                Codec::Pcmu => g711::decode_ulaw_into(packet.payload, &mut self.decode_buf),
                Codec::Pcma => g711::decode_alaw_into(packet.payload, &mut self.decode_buf),
            };
            self.detector.push_samples(&self.decode_buf);
            self.drain_detector();
        }
        let relay = Relay {
            ssrc: packet.ssrc,
            timestamp: packet.timestamp,
            marker: packet.marker,
            codec,
            payload: packet.payload.to_vec(),
        };
        match self.mode {
            Mode::Echo => {
                self.send_relayed(now, &relay);
                None
            }
            // A detected tone is not relayed as audio: the peer gets the digit regenerated
            // as it negotiated (the detector needs ≈ 30 ms, so the onset leaks through).
            Mode::Bridged(_) if self.inband_digit => None,
            Mode::Bridged(_) => Some(relay),
            _ => None,
        }
    }

    /// Sends audio received elsewhere (the bridged peer, or our own echo) on our stream:
    /// transcoded to our codec, with our payload type, SSRC, sequence and timestamp line.
    /// Dropped while a digit is being sent.
    pub fn send_relayed(&mut self, now: Instant, relay: &Relay) {
        if self.closed || self.dtmf_out.is_some() {
            return;
        }
        let Some(p) = self.params.as_ref() else {
            return;
        };
        let (codec, pt) = (p.codec, p.payload_type);
        let pos = match self
            .relay_map
            .and_then(|m| m.map(relay.ssrc, relay.timestamp))
        {
            // Within one source: keep its spacing, but never go back before what was sent.
            Some(pos) if pos + 80_000 > self.sent_until => pos,
            _ => {
                let pos = self.position_at(now).max(self.sent_until);
                self.relay_map = Some(TimeMap {
                    ssrc: relay.ssrc,
                    in_ts: relay.timestamp,
                    pos,
                });
                self.talkspurt = true;
                pos
            }
        };
        let marker = std::mem::take(&mut self.talkspurt) || relay.marker;
        let mut payload = relay.payload.clone();
        match (relay.codec, codec) {
            (Codec::Pcmu, Codec::Pcma) => g711::ulaw_to_alaw_in_place(&mut payload),
            (Codec::Pcma, Codec::Pcmu) => g711::alaw_to_ulaw_in_place(&mut payload),
            _ => {}
        }
        self.send_audio_frame(pt, pos, marker, &payload, codec);
    }

    /// One datagram on the RTCP port: parsed for the last SR (for our report blocks);
    /// malformed ones are counted and dropped.
    pub fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Ok(packets) = rtcp::parse_compound(datagram) else {
            self.counters.rtcp_malformed += 1;
            return;
        };
        if self.latched_rtcp.is_none() {
            self.latched_rtcp = Some(from);
        } else if self.latched_rtcp != Some(from) {
            return;
        }
        for p in packets {
            if let RtcpPacket::SenderReport(sr) = p {
                self.last_sr = Some((rtcp::ntp_middle32(sr.sender_info.ntp_timestamp), now));
            }
        }
    }

    fn drain_dtmf_in(&mut self) {
        while let Some(e) = self.dtmf_in.poll_event() {
            if let DigitEvent::DigitEnded {
                digit, duration, ..
            } = e
            {
                self.events.push_back(MediaEvent::Digit {
                    id: self.id,
                    digit,
                    via: DtmfVia::Rfc4733,
                    duration: samples_duration(u64::from(duration)),
                    relay_to: None,
                });
            }
        }
    }

    fn drain_detector(&mut self) {
        while let Some(e) = self.detector.poll_event() {
            match e {
                ToneEvent::DigitStarted { .. } => self.inband_digit = true,
                ToneEvent::DigitEnded {
                    digit, duration, ..
                } => {
                    self.inband_digit = false;
                    self.events.push_back(MediaEvent::Digit {
                        id: self.id,
                        digit,
                        via: DtmfVia::Inband,
                        duration: samples_duration(duration),
                        relay_to: None,
                    });
                }
            }
        }
    }
}

fn samples_duration(samples: u64) -> Duration {
    Duration::from_micros(samples * 1000 / SAMPLES_PER_MS)
}

enum PromptFrame {
    Frame(Vec<u8>),
    Done(u64),
}

fn next_prompt_frame(play: &mut Playout, codec: Codec, spf: usize) -> PromptFrame {
    // Bounded: each prompt is looked at most twice (skipping empty ones).
    for _ in 0..=2 * play.prompts.len() {
        let Some(prompt) = play.prompts.get(play.index) else {
            if play.repeat && play.prompts.iter().any(|p| !p.is_empty()) {
                play.index = 0;
                play.offset = 0;
                continue;
            }
            return PromptFrame::Done(play.token);
        };
        let encoded = prompt.encoded(codec);
        if play.offset >= encoded.len() {
            play.index += 1;
            play.offset = 0;
            continue;
        }
        let end = (play.offset + spf).min(encoded.len());
        let mut frame = vec![prompt::silence_byte(codec); spf];
        frame[..end - play.offset].copy_from_slice(&encoded[play.offset..end]);
        play.offset = end;
        return PromptFrame::Frame(frame);
    }
    PromptFrame::Done(play.token)
}
