//! RTP data packets and per-stream bookkeeping (RFC 3550).
//!
//! * [`RtpPacket`] — a borrowed view of one packet (RFC 3550 §5.1), parsed with `rtp-rs`'s
//!   `RtpReader` (which checks version, CSRC/extension/padding lengths up front) and copied
//!   into plain fields so the rest of the code never touches `rtp-rs` types. Built back with
//!   `rtp-rs`'s `RtpPacketBuilder` ([`RtpPacket::write_into`]); padding is not reproduced on
//!   build (the builder can only "round to N", and nothing we send needs padding).
//! * [`SequenceTracker`] — RFC 3550 Appendix A.1 (source validation, extended sequence
//!   numbers, restart detection), A.3 (expected/lost/fraction lost per interval) and A.8
//!   (interarrival jitter). Arrival time is a parameter, in RTP timestamp units.
//! * [`Rewriter`] — gives a relayed or prompt-switched stream one continuous output
//!   (fixed SSRC, seq + 1, timestamps advancing by elapsed media time, marker on switch).
//!
//! Nothing here reads a clock or panics on network input.

use std::fmt;

use rtp_rs::{RtpPacketBuildError, RtpPacketBuilder, RtpReader, RtpReaderError};

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer than the 12 bytes of fixed header.
    TooShort { len: usize },
    /// Version field other than 2.
    UnsupportedVersion { version: u8 },
    /// CSRC list or header extension runs past the end of the datagram.
    HeaderTruncated {
        header_len: usize,
        buffer_len: usize,
    },
    /// Padding flag set but the padding count is 0 or larger than the payload.
    InvalidPadding { pad_len: u8 },
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(f, "RTP packet too short ({len} bytes)"),
            Self::UnsupportedVersion { version } => write!(f, "unsupported RTP version {version}"),
            Self::HeaderTruncated {
                header_len,
                buffer_len,
            } => write!(
                f,
                "RTP header needs {header_len} bytes, datagram has {buffer_len}"
            ),
            Self::InvalidPadding { pad_len } => write!(f, "invalid RTP padding length {pad_len}"),
        }
    }
}

impl std::error::Error for RtpError {}

impl From<RtpReaderError> for RtpError {
    fn from(e: RtpReaderError) -> Self {
        match e {
            RtpReaderError::BufferTooShort(len) => Self::TooShort { len },
            RtpReaderError::UnsupportedVersion(version) => Self::UnsupportedVersion { version },
            RtpReaderError::HeadersTruncated {
                header_len,
                buffer_len,
            } => Self::HeaderTruncated {
                header_len,
                buffer_len,
            },
            RtpReaderError::PaddingLengthInvalid(pad_len) => Self::InvalidPadding { pad_len },
        }
    }
}

/// Why a packet could not be serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpBuildError {
    /// The output buffer is smaller than the packet.
    BufferTooSmall { needed: usize, available: usize },
    /// Payload type above 127.
    PayloadTypeInvalid { payload_type: u8 },
    /// Header extension data not a multiple of 4 bytes, or longer than 65535 bytes.
    ExtensionInvalid { len: usize },
}

impl fmt::Display for RtpBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed, available } => {
                write!(f, "RTP packet needs {needed} bytes, buffer has {available}")
            }
            Self::PayloadTypeInvalid { payload_type } => {
                write!(f, "invalid RTP payload type {payload_type}")
            }
            Self::ExtensionInvalid { len } => write!(f, "invalid RTP extension length {len}"),
        }
    }
}

impl std::error::Error for RtpBuildError {}

/// Up to 15 contributing sources (the CC field is 4 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CsrcList {
    ids: [u32; 15],
    len: u8,
}

impl CsrcList {
    /// The CSRC identifiers in header order.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..usize::from(self.len)]
    }

    /// Appends one CSRC; returns `false` (and drops it) if 15 are already present.
    pub fn push(&mut self, csrc: u32) -> bool {
        match self.ids.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = csrc;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

/// Header extension (RFC 3550 §5.3.1): profile-defined id and data (whole 32-bit words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// One RTP packet (RFC 3550 §5.1), borrowing extension and payload from the datagram.
/// The version is always 2 (anything else is rejected by [`RtpPacket::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc: CsrcList,
    pub extension: Option<RtpExtension<'a>>,
    /// Number of padding bytes (including the count byte) if the P bit was set.
    pub padding: Option<u8>,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Fixed header length.
    pub const HEADER_LEN: usize = 12;

    /// Parses a datagram. Never panics; every malformation is an [`RtpError`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let r = RtpReader::new(buf)?;
        let mut csrc = CsrcList::default();
        for id in r.csrc() {
            csrc.push(id);
        }
        Ok(Self {
            marker: r.mark(),
            payload_type: r.payload_type(),
            sequence: r.sequence_number().into(),
            timestamp: r.timestamp(),
            ssrc: r.ssrc(),
            csrc,
            extension: r
                .extension()
                .map(|(profile, data)| RtpExtension { profile, data }),
            padding: r.padding(),
            payload: r.payload(),
        })
    }

    /// A packet with no CSRC, extension or padding.
    pub fn new(
        payload_type: u8,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
        payload: &'a [u8],
    ) -> Self {
        Self {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc: CsrcList::default(),
            extension: None,
            padding: None,
            payload,
        }
    }

    fn builder(&self) -> RtpPacketBuilder<'a> {
        let mut b = RtpPacketBuilder::new()
            .payload_type(self.payload_type)
            .marked(self.marker)
            .sequence(self.sequence.into())
            .timestamp(self.timestamp)
            .ssrc(self.ssrc)
            // CsrcList holds at most 15, so rtp-rs's `set_csrc` cannot overflow its array.
            .set_csrc(self.csrc.as_slice())
            .payload(self.payload);
        if let Some(ext) = self.extension {
            b = b.extension(ext.profile, ext.data);
        }
        b
    }

    /// Serialised length (without padding).
    pub fn encoded_len(&self) -> usize {
        self.builder().target_length()
    }

    fn validate(&self) -> Result<(), RtpBuildError> {
        if self.payload_type > 127 {
            return Err(RtpBuildError::PayloadTypeInvalid {
                payload_type: self.payload_type,
            });
        }
        if let Some(ext) = self.extension {
            // rtp-rs caps the extension at 0xFFFF bytes (the field could say 0xFFFF words).
            if ext.data.len() % 4 != 0 || ext.data.len() > 0xFFFF {
                return Err(RtpBuildError::ExtensionInvalid {
                    len: ext.data.len(),
                });
            }
        }
        Ok(())
    }

    /// Writes the packet with `rtp-rs`'s builder; returns the number of bytes written.
    /// Padding is not reproduced.
    pub fn write_into(&self, out: &mut [u8]) -> Result<usize, RtpBuildError> {
        self.validate()?;
        let b = self.builder();
        let needed = b.target_length();
        if out.len() < needed {
            return Err(RtpBuildError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let available = out.len();
        b.build_into(out).map_err(|e| match e {
            RtpPacketBuildError::BufferTooSmall => {
                RtpBuildError::BufferTooSmall { needed, available }
            }
            RtpPacketBuildError::PayloadTypeInvalid => RtpBuildError::PayloadTypeInvalid {
                payload_type: self.payload_type,
            },
            RtpPacketBuildError::ExtensionTooLarge
            | RtpPacketBuildError::ExtensionMissingPadding => RtpBuildError::ExtensionInvalid {
                len: self.extension.map_or(0, |e| e.data.len()),
            },
        })
    }

    /// Serialises into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, RtpBuildError> {
        let mut v = vec![0; self.encoded_len()];
        let n = self.write_into(&mut v)?;
        v.truncate(n);
        Ok(v)
    }
}

/// RFC 3550 A.1: packets further ahead than this are a jump, not loss.
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: packets this far behind are late, further is a jump.
pub const MAX_MISORDER: u16 = 100;
/// RFC 3550 A.1: sequential packets needed before a new source is valid.
pub const MIN_SEQUENTIAL: u8 = 2;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// Width of the duplicate-detection window (covers MAX_MISORDER).
const SEEN_WINDOW: u64 = 128;

/// What [`SequenceTracker::update`] made of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// New source still on probation (A.1); the packet is not counted and should not be
    /// played out yet.
    Probation,
    /// Newest packet so far; `gap` packets between the previous highest and this one are
    /// missing (0 if consecutive).
    InOrder { extended: u64, gap: u64 },
    /// Older than the highest seen and not seen before (counted as received).
    Reordered { extended: u64 },
    /// Seen before within the last 128 sequence numbers (counted as received, as RFC 3550
    /// A.3 does — which is why cumulative loss can go negative).
    Duplicate { extended: u64 },
    /// A large jump was confirmed by a second sequential packet: the sender restarted.
    /// Statistics were reset and this packet is the new base.
    Restarted { extended: u64 },
    /// A large jump (or very late packet) not yet confirmed; the packet is not counted.
    Jump,
}

/// Per-interval loss statistics (RFC 3550 A.3), the raw material of a report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossReport {
    /// Loss fraction since the previous report, in 1/256 (0 if none or if duplicates
    /// outnumbered losses).
    pub fraction_lost: u8,
    /// Cumulative lost since the start (expected − received); may be negative.
    pub cumulative_lost: i64,
    /// Extended highest sequence number received (low 32 bits, as on the wire).
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

/// Receive-side sequence bookkeeping for one SSRC: RFC 3550 A.1 + A.3 + A.8.
///
/// Create it on the first packet of a source with [`SequenceTracker::new`] (which puts the
/// source on probation) and feed every packet of that SSRC to [`SequenceTracker::update`].
#[derive(Debug, Clone)]
pub struct SequenceTracker {
    max_seq: u16,
    cycles: u64,
    base_seq: u64,
    bad_seq: u32,
    probation: u8,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    duplicates: u64,
    reordered: u64,
    /// Bit i set = extended sequence `max - i` has been received.
    seen: u128,
    /// Previous relative transit time (arrival − RTP timestamp), A.8.
    transit: Option<u32>,
    /// Jitter scaled by 16 (the integer form of A.8).
    jitter_q4: u64,
    /// Created by `new_validated`: the next packet becomes the base without probation.
    validated_start: bool,
}

impl SequenceTracker {
    /// Starts tracking a source whose first packet carried `seq` (A.1 `init_seq`, then
    /// probation). Call [`update`](Self::update) with that first packet too.
    pub fn new(seq: u16) -> Self {
        let mut t = Self {
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            duplicates: 0,
            reordered: 0,
            seen: 0,
            transit: None,
            jitter_q4: 0,
            validated_start: false,
        };
        t.init_seq(seq);
        t.max_seq = seq.wrapping_sub(1);
        t
    }

    /// A tracker with no probation, for sources already validated by other means (e.g. an
    /// SRTP-authenticated or signalled stream). The first `update` counts.
    pub fn new_validated(seq: u16) -> Self {
        let mut t = Self::new(seq);
        t.probation = 0;
        t.validated_start = true;
        t
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.seen = 1;
        self.transit = None;
        self.jitter_q4 = 0;
    }

    /// Processes one packet's sequence number, and its RTP `timestamp` together with its
    /// `arrival` time expressed in the same timestamp units (for jitter; any epoch, wraps).
    pub fn update(&mut self, seq: u16, timestamp: u32, arrival: u32) -> SeqEvent {
        if self.validated_start {
            self.validated_start = false;
            self.init_seq(seq);
            self.received = 1;
            self.update_jitter(timestamp, arrival);
            return SeqEvent::InOrder {
                extended: self.extended_max(),
                gap: 0,
            };
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    self.update_jitter(timestamp, arrival);
                    return SeqEvent::InOrder {
                        extended: self.extended_max(),
                        gap: 0,
                    };
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqEvent::Probation;
        }
        let event;
        if udelta == 0 {
            self.duplicates += 1;
            event = SeqEvent::Duplicate {
                extended: self.extended_max(),
            };
        } else if udelta < MAX_DROPOUT {
            // In order, with permissible gap.
            if seq < self.max_seq {
                self.cycles += u64::from(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
            let d = u64::from(udelta);
            self.seen = if d >= SEEN_WINDOW { 0 } else { self.seen << d };
            self.seen |= 1;
            event = SeqEvent::InOrder {
                extended: self.extended_max(),
                gap: d - 1,
            };
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // The sequence number made a very large jump.
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets: assume the other side restarted without telling us.
                self.init_seq(seq);
                self.received += 1;
                self.update_jitter(timestamp, arrival);
                return SeqEvent::Restarted {
                    extended: self.extended_max(),
                };
            }
            self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
            return SeqEvent::Jump;
        } else {
            // Late: duplicate or reordered.
            let back = u64::from(self.max_seq.wrapping_sub(seq));
            let extended = self.extended_max().saturating_sub(back);
            if back < SEEN_WINDOW && self.seen & (1u128 << back) != 0 {
                self.duplicates += 1;
                event = SeqEvent::Duplicate { extended };
            } else {
                if back < SEEN_WINDOW {
                    self.seen |= 1u128 << back;
                }
                self.reordered += 1;
                event = SeqEvent::Reordered { extended };
            }
        }
        self.received += 1;
        if !matches!(event, SeqEvent::Duplicate { .. }) {
            self.update_jitter(timestamp, arrival);
        }
        event
    }

    /// RFC 3550 A.8, integer form: `J += |D| − (J + 8) / 16`, J scaled by 16.
    fn update_jitter(&mut self, timestamp: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(prev) = self.transit {
            let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.jitter_q4 = (self.jitter_q4 + d).saturating_sub((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// True while the source is still on probation.
    pub fn on_probation(&self) -> bool {
        self.probation > 0
    }

    /// Highest extended sequence number received (cycles + max_seq).
    pub fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// Packets expected since the base (A.3).
    pub fn expected(&self) -> u64 {
        if self.probation > 0 || self.validated_start {
            return 0;
        }
        (self.extended_max() + 1).saturating_sub(self.base_seq)
    }

    /// Packets received, duplicates included (A.3).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// expected − received; negative when duplicates outnumber losses.
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Duplicates seen (within the 128-packet window).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Late, not previously seen packets.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Interarrival jitter in timestamp units (A.8).
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// Closes a reporting interval (A.3): returns the fraction lost since the previous call
    /// and the cumulative figures, and starts the next interval.
    pub fn take_report(&mut self) -> LossReport {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior) as i64;
        self.expected_prior = expected;
        let received_interval = self.received as i64 - self.received_prior as i64;
        self.received_prior = self.received;
        let lost_interval = expected_interval - received_interval;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval <= expected_interval, so this is at most 256; clamp the edge.
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        LossReport {
            fraction_lost,
            cumulative_lost: self.lost(),
            extended_highest_seq: self.extended_max() as u32,
            jitter: self.jitter(),
        }
    }
}

/// Configuration of a [`Rewriter`]: the output stream's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriterConfig {
    /// SSRC of the output stream (fixed for its lifetime).
    pub ssrc: u32,
    /// First output sequence number (should be random, RFC 3550 §5.1; supplied by caller).
    pub initial_sequence: u16,
    /// First output timestamp (should be random; supplied by caller).
    pub initial_timestamp: u32,
    /// Packet duration in timestamp units assumed until one is observed (160 = 20 ms at
    /// 8 kHz). The output timestamp always advances by at least this on a switch.
    pub default_frame: u32,
}

/// Header fields for one output packet, produced by [`Rewriter::rewrite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// True if this packet started a new mapping (source change, jump or forced switch).
    pub rebased: bool,
}

impl Rewritten {
    /// Overwrites marker, sequence, timestamp and SSRC of an RTP datagram in place (the
    /// relay fast path: payload, CSRC and extensions untouched).
    pub fn apply_in_place(&self, datagram: &mut [u8]) -> Result<(), RtpError> {
        let len = datagram.len();
        let Some(h) = datagram.get_mut(..RtpPacket::HEADER_LEN) else {
            return Err(RtpError::TooShort { len });
        };
        if h[0] >> 6 != 2 {
            return Err(RtpError::UnsupportedVersion { version: h[0] >> 6 });
        }
        h[1] = (h[1] & 0x7F) | if self.marker { 0x80 } else { 0 };
        h[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        h[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    in_ssrc: u32,
    last_in_seq: u16,
    last_in_ts: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// Maps packets from a changing sequence of input sources (a caller leg, then a prompt, then
/// an agent leg…) onto one continuous output stream, as a B2BUA relay must: the far end
/// sees one SSRC whose sequence numbers increase by one and whose timestamps advance with
/// elapsed time, with the marker bit set at each switch (RFC 3551 §4.1: first packet of a
/// talkspurt), so its jitter buffer resynchronises instead of discarding.
///
/// Within one input source packets are mapped by fixed offsets, so input gaps and
/// reordering are preserved. A *switch* happens on a new input SSRC, on a sequence jump
/// outside (−MAX_MISORDER, MAX_DROPOUT), or when [`force_switch`](Self::force_switch) was
/// called (e.g. a prompt player reusing its SSRC for the next file).
#[derive(Debug, Clone)]
pub struct Rewriter {
    config: RewriterConfig,
    mapping: Option<Mapping>,
    force: bool,
    last_out_seq: u16,
    last_out_ts: u32,
    last_arrival: u32,
    frame: u32,
}

impl Rewriter {
    pub fn new(config: RewriterConfig) -> Self {
        Self {
            config,
            mapping: None,
            force: false,
            last_out_seq: config.initial_sequence.wrapping_sub(1),
            last_out_ts: config.initial_timestamp,
            last_arrival: 0,
            frame: config.default_frame,
        }
    }

    /// The next packet starts a new mapping even if its SSRC and sequence look continuous.
    pub fn force_switch(&mut self) {
        self.force = true;
    }

    /// Computes output header fields for an input packet (`ssrc`, `sequence`, `timestamp`,
    /// `marker` taken from it) that arrived at `arrival` (timestamp units of the output
    /// clock, any epoch; used only to measure elapsed time across a switch).
    pub fn rewrite(&mut self, packet: &RtpPacket<'_>, arrival: u32) -> Rewritten {
        let continuing = match self.mapping {
            Some(m) if !self.force && m.in_ssrc == packet.ssrc => {
                let d = packet.sequence.wrapping_sub(m.last_in_seq) as i16;
                d > -(MAX_MISORDER as i16) && d < MAX_DROPOUT as i16
            }
            _ => false,
        };
        let first = self.mapping.is_none();
        let mapping = match self.mapping {
            Some(mut m) if continuing => {
                let d = packet.sequence.wrapping_sub(m.last_in_seq) as i16;
                if d > 0 {
                    // Learn the packet duration from consecutive packets (for switches).
                    let ts_d = packet.timestamp.wrapping_sub(m.last_in_ts);
                    if d == 1 && ts_d > 0 && ts_d < 0x10000 {
                        self.frame = ts_d;
                    }
                    m.last_in_seq = packet.sequence;
                    m.last_in_ts = packet.timestamp;
                }
                m
            }
            _ => {
                let (out_seq, out_ts) = if first {
                    (self.config.initial_sequence, self.config.initial_timestamp)
                } else {
                    let elapsed = arrival.wrapping_sub(self.last_arrival);
                    // A wrapped (negative) or tiny elapsed time still advances one frame.
                    let elapsed = if elapsed > i32::MAX as u32 {
                        0
                    } else {
                        elapsed
                    };
                    (
                        self.last_out_seq.wrapping_add(1),
                        self.last_out_ts.wrapping_add(elapsed.max(self.frame)),
                    )
                };
                self.force = false;
                Mapping {
                    in_ssrc: packet.ssrc,
                    last_in_seq: packet.sequence,
                    last_in_ts: packet.timestamp,
                    seq_offset: out_seq.wrapping_sub(packet.sequence),
                    ts_offset: out_ts.wrapping_sub(packet.timestamp),
                }
            }
        };
        self.mapping = Some(mapping);
        let sequence = packet.sequence.wrapping_add(mapping.seq_offset);
        let timestamp = packet.timestamp.wrapping_add(mapping.ts_offset);
        // Only move the "last output" forward for the newest packet, not late ones.
        if !continuing || (sequence.wrapping_sub(self.last_out_seq) as i16) > 0 {
            self.last_out_seq = sequence;
            self.last_out_ts = timestamp;
            self.last_arrival = arrival;
        }
        Rewritten {
            ssrc: self.config.ssrc,
            sequence,
            timestamp,
            marker: packet.marker || !continuing,
            rebased: !continuing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_packet() -> Vec<u8> {
        let ext = [1, 2, 3, 4];
        let mut p = RtpPacket::new(0, 0x1234, 0xDEADBEEF, 0x11223344, b"hello");
        p.marker = true;
        p.csrc.push(7);
        p.csrc.push(8);
        p.extension = Some(RtpExtension {
            profile: 0xBEDE,
            data: &ext,
        });
        p.to_vec().unwrap()
    }

    #[test]
    fn parse_build_round_trip() {
        let bytes = sample_packet();
        let p = RtpPacket::parse(&bytes).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.sequence, 0x1234);
        assert_eq!(p.timestamp, 0xDEADBEEF);
        assert_eq!(p.ssrc, 0x11223344);
        assert_eq!(p.csrc.as_slice(), &[7, 8]);
        assert_eq!(p.extension.unwrap().profile, 0xBEDE);
        assert_eq!(p.extension.unwrap().data, &[1, 2, 3, 4]);
        assert_eq!(p.payload, b"hello");
        assert_eq!(p.padding, None);
        assert_eq!(p.to_vec().unwrap(), bytes);
    }

    #[test]
    fn parse_padding_and_errors() {
        // V=2 P=1, PT 8, seq 1, ts 2, ssrc 3, payload "ab", 2 bytes padding.
        let b = [0xA0, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, b'a', b'b', 0, 2];
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.padding, Some(2));
        assert_eq!(p.payload, b"ab");
        let mut bad = b;
        bad[15] = 0;
        assert_eq!(
            RtpPacket::parse(&bad),
            Err(RtpError::InvalidPadding { pad_len: 0 })
        );
        bad[15] = 10;
        assert_eq!(
            RtpPacket::parse(&bad),
            Err(RtpError::InvalidPadding { pad_len: 10 })
        );
        let mut v1 = b;
        v1[0] = 0x40;
        assert_eq!(
            RtpPacket::parse(&v1),
            Err(RtpError::UnsupportedVersion { version: 1 })
        );
        assert_eq!(
            RtpPacket::parse(&b[..11]),
            Err(RtpError::TooShort { len: 11 })
        );
        let p = RtpPacket::new(200, 0, 0, 0, &[]);
        assert_eq!(
            p.to_vec(),
            Err(RtpBuildError::PayloadTypeInvalid { payload_type: 200 })
        );
        let p = RtpPacket::new(0, 0, 0, 0, &[]);
        assert!(matches!(
            p.write_into(&mut [0u8; 11]),
            Err(RtpBuildError::BufferTooSmall { needed: 12, .. })
        ));
    }

    /// str0m's rule: a panic is a bug in our code, never bad input.
    #[test]
    fn garbage_never_panics() {
        let bytes = sample_packet();
        for n in 0..=bytes.len() {
            let _ = RtpPacket::parse(&bytes[..n]);
        }
        // Deterministic xorshift so failures reproduce.
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut buf = [0u8; 96];
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 97) as usize;
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Force version 2 half the time so the deeper checks are exercised.
            if x & 1 == 0 && len > 0 {
                buf[0] = (buf[0] & 0x3F) | 0x80;
            }
            if let Ok(p) = RtpPacket::parse(&buf[..len]) {
                let _ = p.to_vec();
            }
            let _ = Rewritten {
                ssrc: 1,
                sequence: 2,
                timestamp: 3,
                marker: true,
                rebased: false,
            }
            .apply_in_place(&mut buf[..len]);
        }
    }

    fn validated(seq: u16) -> SequenceTracker {
        let mut t = SequenceTracker::new(seq);
        assert_eq!(t.update(seq, 0, 0), SeqEvent::Probation);
        assert!(matches!(
            t.update(seq.wrapping_add(1), 0, 0),
            SeqEvent::InOrder { .. }
        ));
        t
    }

    #[test]
    fn wrap_around_extends_sequence() {
        let mut t = validated(65534);
        assert_eq!(t.extended_max(), 65535);
        assert_eq!(
            t.update(0, 0, 0),
            SeqEvent::InOrder {
                extended: 65536,
                gap: 0
            }
        );
        assert_eq!(t.extended_max(), 65536);
        assert_eq!(t.expected(), 2);
        assert_eq!(t.received(), 2);
        assert_eq!(t.take_report().extended_highest_seq, 65536);
        // Reordering across the wrap: 2 before 1, then the old 65535 again.
        assert_eq!(
            t.update(2, 0, 0),
            SeqEvent::InOrder {
                extended: 65538,
                gap: 1
            }
        );
        assert_eq!(t.update(1, 0, 0), SeqEvent::Reordered { extended: 65537 });
        assert_eq!(
            t.update(65535, 0, 0),
            SeqEvent::Duplicate { extended: 65535 }
        );
        assert_eq!((t.expected(), t.lost()), (4, -1));
    }

    #[test]
    fn probation_requires_sequential_packets() {
        let mut t = SequenceTracker::new(100);
        assert_eq!(t.update(100, 0, 0), SeqEvent::Probation);
        // Not sequential: probation restarts from 500.
        assert_eq!(t.update(500, 0, 0), SeqEvent::Probation);
        assert!(t.on_probation());
        assert_eq!(
            t.update(501, 0, 0),
            SeqEvent::InOrder {
                extended: 501,
                gap: 0
            }
        );
        assert!(!t.on_probation());
        // Base is the packet that ended probation (A.1).
        assert_eq!((t.expected(), t.received(), t.lost()), (1, 1, 0));
    }

    #[test]
    fn reordering_duplicates_and_loss() {
        let mut t = validated(10); // 11 counted
        assert_eq!(
            t.update(13, 0, 0),
            SeqEvent::InOrder {
                extended: 13,
                gap: 1
            }
        );
        assert_eq!(t.update(12, 0, 0), SeqEvent::Reordered { extended: 12 });
        assert_eq!(t.update(12, 0, 0), SeqEvent::Duplicate { extended: 12 });
        assert_eq!(t.update(13, 0, 0), SeqEvent::Duplicate { extended: 13 });
        assert_eq!((t.reordered(), t.duplicates()), (1, 2));
        // Expected 11..=13 = 3, received 11,13,12,12,13 = 5 → lost −2 (RFC semantics).
        assert_eq!((t.expected(), t.received(), t.lost()), (3, 5, -2));
    }

    #[test]
    fn large_jump_needs_confirmation_then_restarts() {
        let mut t = validated(1000);
        assert_eq!(t.update(40000, 0, 0), SeqEvent::Jump);
        assert_eq!(t.received(), 1);
        assert_eq!(
            t.update(40001, 0, 0),
            SeqEvent::Restarted { extended: 40001 }
        );
        assert_eq!((t.expected(), t.received()), (1, 1));
        // A single stray jump followed by normal traffic is just ignored.
        assert_eq!(t.update(9, 0, 0), SeqEvent::Jump);
        assert!(matches!(t.update(40002, 0, 0), SeqEvent::InOrder { .. }));
    }

    /// Hand computation (A.8, integer form, J scaled by 16):
    /// packets every 160 units, arriving 0, 170, 320, 500 → transit 0, 10, 0, 20,
    /// D = 10, 10, 20; J16 = 0+10−0 = 10; 10+10−((10+8)>>4 = 1) = 19; 19+20−1 = 38;
    /// reported 38 >> 4 = 2 (floating point gives 2.385).
    #[test]
    fn jitter_matches_hand_computation() {
        let mut t = SequenceTracker::new_validated(0);
        for (i, arrival) in [0u32, 170, 320, 500].into_iter().enumerate() {
            t.update(i as u16, i as u32 * 160, arrival);
        }
        assert_eq!(t.jitter_q4, 38);
        assert_eq!(t.jitter(), 2);
    }

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> RtpPacket<'static> {
        RtpPacket::new(0, seq, ts, ssrc, &[])
    }

    fn cfg() -> RewriterConfig {
        RewriterConfig {
            ssrc: 0xABCD,
            initial_sequence: 65534,
            initial_timestamp: 1000,
            default_frame: 160,
        }
    }

    #[test]
    fn rewriter_continuity_across_ssrc_change() {
        let mut r = Rewriter::new(cfg());
        let a = r.rewrite(&pkt(1, 500, 90_000), 0);
        assert_eq!((a.sequence, a.timestamp, a.marker), (65534, 1000, true));
        let b = r.rewrite(&pkt(1, 501, 90_160), 160);
        assert_eq!((b.sequence, b.timestamp, b.marker), (65535, 1160, false));
        // Reordered packet inside the source keeps its place.
        let c = r.rewrite(&pkt(1, 503, 90_480), 480);
        let late = r.rewrite(&pkt(1, 502, 90_320), 490);
        assert_eq!((c.sequence, late.sequence), (1, 0));
        assert!(!late.rebased);
        // New SSRC 100 units of silence after the last newest packet (arrival 480 → 600,
        // less than one frame): seq + 1, ts + one frame, marker set.
        let d = r.rewrite(&pkt(2, 7, 5), 600);
        assert_eq!(
            (d.ssrc, d.sequence, d.timestamp, d.marker, d.rebased),
            (0xABCD, 2, 1480 + 160, true, true)
        );
        let e = r.rewrite(&pkt(2, 8, 165), 760);
        assert_eq!((e.sequence, e.timestamp, e.marker), (3, 1800, false));
    }

    #[test]
    fn rewriter_prompt_switch_advances_by_elapsed_time() {
        let mut r = Rewriter::new(cfg());
        r.rewrite(&pkt(9, 0, 0), 0);
        r.rewrite(&pkt(9, 1, 160), 160);
        // Prompt player reuses SSRC 9 for the next file, restarting seq/ts; 2 s pass.
        r.force_switch();
        let p = r.rewrite(&pkt(9, 0, 0), 16_160);
        assert_eq!(
            (p.sequence, p.timestamp, p.marker),
            (0, 1160 + 16_000, true)
        );
        // Same SSRC with a sequence jump is also a switch, without force.
        let q = r.rewrite(&pkt(9, 30_000, 0), 16_320);
        assert_eq!((q.sequence, q.timestamp, q.marker), (1, 17_160 + 160, true));
        let mut buf = sample_packet();
        q.apply_in_place(&mut buf).unwrap();
        let out = RtpPacket::parse(&buf).unwrap();
        assert_eq!((out.ssrc, out.sequence, out.timestamp), (0xABCD, 1, 17_320));
        assert!(out.marker);
        assert_eq!(out.payload, b"hello");
    }

    #[test]
    fn fraction_lost_per_interval() {
        let mut t = SequenceTracker::new_validated(0);
        for s in 0..100u16 {
            if !(10..20).contains(&s) {
                t.update(s, 0, 0);
            }
        }
        let r = t.take_report();
        // 10 of 100 lost: (10 << 8) / 100 = 25.
        assert_eq!((r.fraction_lost, r.cumulative_lost), (25, 10));
        assert_eq!(r.extended_highest_seq, 99);
    }
}
