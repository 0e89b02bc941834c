//! RFC 4733 telephone-events: the 4-byte event payload, a de-duplicating [`Receiver`] and a
//! packet-schedule [`Sender`].
//!
//! Both machines are sans-IO and clock-free: time is the RTP timestamp (8 kHz samples for
//! `telephone-event/8000`). The RTP header itself (marker bit, timestamp, payload type) is parsed
//! elsewhere; this module sees `(timestamp, marker, payload)`.
//!
//! One event is one key press. All packets of an event (or of one segment of a long event,
//! RFC 4733 §2.5.2.1) carry the same RTP timestamp; the duration field grows with each update
//! and the final packet, with the E bit, is sent three times (§2.5.1.4). The receiver therefore
//! keys events by timestamp and reports each digit exactly once, whatever is lost, duplicated or
//! reordered.

use std::collections::VecDeque;
use std::fmt;

/// A DTMF key. RFC 4733 §3.2 assigns event codes 0–9 to the digits, 10 to `*`, 11 to `#` and
/// 12–15 to A–D.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digit {
    D0,
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
    Star,
    Pound,
    A,
    B,
    C,
    D,
}

impl Digit {
    /// All sixteen keys in event-code order.
    pub const ALL: [Digit; 16] = [
        Digit::D0,
        Digit::D1,
        Digit::D2,
        Digit::D3,
        Digit::D4,
        Digit::D5,
        Digit::D6,
        Digit::D7,
        Digit::D8,
        Digit::D9,
        Digit::Star,
        Digit::Pound,
        Digit::A,
        Digit::B,
        Digit::C,
        Digit::D,
    ];

    /// The key for an RFC 4733 event code, `None` for non-DTMF events (flash, fax tones…).
    pub fn from_code(code: u8) -> Option<Digit> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The RFC 4733 event code (0–15).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The key as printed on the keypad: `'0'..='9'`, `'*'`, `'#'`, `'A'..='D'`.
    pub fn as_char(self) -> char {
        b"0123456789*#ABCD"[self as usize] as char
    }

    /// Inverse of [`Digit::as_char`]; lower-case `a`–`d` are accepted.
    pub fn from_char(c: char) -> Option<Digit> {
        let c = c.to_ascii_uppercase();
        Self::ALL.into_iter().find(|d| d.as_char() == c)
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// Why a telephone-event payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventError {
    /// The payload is not exactly 4 bytes. Several events in one payload only occur with RFC 2198
    /// redundancy (RFC 4733 §2.5.1.3), which has its own payload type and is not supported here.
    BadLength { len: usize },
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::BadLength { len } => {
                write!(f, "telephone-event payload is {len} bytes, expected 4")
            }
        }
    }
}

impl std::error::Error for EventError {}

/// One telephone-event payload (RFC 4733 §2.3):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// |     event     |E|R| volume    |          duration             |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Event code; 0–15 are DTMF ([`Event::digit`]), other codes are kept as they are.
    pub code: u8,
    /// E bit: this packet ends the event (or, for long events, the last segment).
    pub end: bool,
    /// Power level as −dBm0, 0–63 (§2.3.4). Only the low 6 bits are encoded.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units, counted from the packet's RTP timestamp.
    pub duration: u16,
}

impl Event {
    /// Encoded size of one event.
    pub const LEN: usize = 4;

    /// Parses a payload that carries exactly one event. The R bit is ignored, as §2.3.3 requires.
    pub fn parse(payload: &[u8]) -> Result<Event, EventError> {
        let [code, flags, d0, d1] = <[u8; 4]>::try_from(payload)
            .map_err(|_| EventError::BadLength { len: payload.len() })?;
        Ok(Event {
            code,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// Encodes the event; the R bit is sent as 0 and `volume` is truncated to 6 bits.
    pub fn to_bytes(&self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3f);
        [self.code, flags, d0, d1]
    }

    /// The DTMF key, if the event code is one.
    pub fn digit(&self) -> Option<Digit> {
        Digit::from_code(self.code)
    }
}

/// What the [`Receiver`] reports. Each event yields exactly one `DigitStarted` and, unless the
/// stream stops mid-event and [`Receiver::finish`] is never called, exactly one `DigitEnded`.
/// Use `DigitStarted` for low-latency IVR input, `DigitEnded` when the duration matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitEvent {
    DigitStarted {
        digit: Digit,
        /// RTP timestamp of the event (of its first segment).
        timestamp: u32,
    },
    DigitEnded {
        digit: Digit,
        timestamp: u32,
        /// Total duration in RTP timestamp units, across all segments. For an event whose end
        /// packets were all lost this is the last duration seen.
        duration: u32,
    },
}

/// Tolerance, in timestamp units, when recognising the next segment of a long event: the new
/// segment's timestamp should be the old one plus 0xFFFF (§2.5.2.1); we accept ±1 s at 8 kHz.
const SEGMENT_SLACK: u32 = 8000;

#[derive(Debug, Clone, Copy)]
struct Current {
    digit: Digit,
    /// Timestamp of the first segment seen.
    start: u32,
    /// Timestamp of the segment being received.
    segment: u32,
    /// Largest duration seen in the current segment.
    duration: u16,
    ended: bool,
}

impl Current {
    fn total(&self) -> u32 {
        self.segment.wrapping_sub(self.start) + u32::from(self.duration)
    }
}

/// `a` is after `b` in RTP serial-number arithmetic.
fn is_after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x8000_0000
}

/// Turns a stream of telephone-event packets into one report per key press.
///
/// Rules (RFC 4733 §2.5.2): packets are keyed by RTP timestamp; a packet older than the current
/// event is a late duplicate and is dropped; a packet with a newer timestamp starts a new event
/// (the previous one, if its end packets were lost, ends implicitly) — unless it is the next
/// segment of a long event: same code, no marker, previous segment not ended, timestamp about
/// 0xFFFF later. Non-DTMF event codes are ignored.
#[derive(Debug, Default)]
pub struct Receiver {
    current: Option<Current>,
    events: VecDeque<DigitEvent>,
}

impl Receiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one RTP packet of the telephone-event payload type. A malformed payload is
    /// returned as an error and otherwise ignored; it never disturbs the state.
    pub fn handle_packet(
        &mut self,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), EventError> {
        let event = Event::parse(payload)?;
        let Some(digit) = event.digit() else {
            return Ok(());
        };
        match self.current {
            Some(mut cur) if timestamp == cur.segment => {
                // Update, retransmitted end, or duplicate of the current segment.
                if cur.ended || digit != cur.digit {
                    return Ok(());
                }
                cur.duration = cur.duration.max(event.duration);
                if event.end {
                    cur.ended = true;
                    self.end(&cur);
                }
                self.current = Some(cur);
            }
            Some(cur) if !is_after(timestamp, cur.segment) => {
                // Late packet of an earlier event or segment.
            }
            Some(mut cur)
                if !cur.ended
                    && !marker
                    && digit == cur.digit
                    && timestamp.wrapping_sub(cur.segment).abs_diff(0xFFFF) <= SEGMENT_SLACK =>
            {
                // Next segment of a long event (§2.5.2.1): same press, no new digit.
                cur.segment = timestamp;
                cur.duration = event.duration;
                if event.end {
                    cur.ended = true;
                    self.end(&cur);
                }
                self.current = Some(cur);
            }
            prev => {
                if let Some(prev) = prev.filter(|p| !p.ended) {
                    self.end(&prev);
                }
                let cur = Current {
                    digit,
                    start: timestamp,
                    segment: timestamp,
                    duration: event.duration,
                    ended: event.end,
                };
                self.events
                    .push_back(DigitEvent::DigitStarted { digit, timestamp });
                if cur.ended {
                    self.end(&cur);
                }
                self.current = Some(cur);
            }
        }
        Ok(())
    }

    /// Ends an event whose end packets never came (the stream stopped or the call was
    /// re-negotiated). The caller decides when that is, e.g. after a media timeout.
    pub fn finish(&mut self) {
        if let Some(cur) = self.current.as_mut().filter(|c| !c.ended) {
            cur.ended = true;
            let cur = *cur;
            self.end(&cur);
        }
    }

    /// The next report, in arrival order.
    pub fn poll_event(&mut self) -> Option<DigitEvent> {
        self.events.pop_front()
    }

    fn end(&mut self, cur: &Current) {
        self.events.push_back(DigitEvent::DigitEnded {
            digit: cur.digit,
            timestamp: cur.start,
            duration: cur.total(),
        });
    }
}

/// Sender settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Volume field, −dBm0 (0–63). Default 10.
    pub volume: u8,
    /// Packet spacing in RTP timestamp units. Default 160 (20 ms at 8 kHz). 0 is treated as 1.
    pub interval: u32,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            volume: 10,
            interval: 160,
        }
    }
}

/// One packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// When to send it, in timestamp units after the event's start timestamp.
    pub send_at: u32,
    /// RTP timestamp (the event's, or its segment's for long events).
    pub timestamp: u32,
    /// RTP marker bit: set on the first packet of the event only.
    pub marker: bool,
    pub event: Event,
}

/// The packets for one key press (RFC 4733 §2.5.1), as an iterator in send order.
///
/// Packet `k` is sent at `k·interval` (the first at 0, with the marker bit) and, like an audio
/// packet, covers the interval that follows: it reports a duration of `(k+1)·interval`. The
/// packet covering the last interval reports the full duration with the E bit and is sent three
/// times, one interval apart (§2.5.1.4); durations are rounded up to whole intervals only in
/// the send times, never in the reported duration. Events longer than
/// 0xFFFF units are split per §2.5.2.1: the segment is closed with duration 0xFFFF (no E bit)
/// and the next segment starts with timestamp + 0xFFFF, no marker, and a fresh duration.
#[derive(Debug, Clone)]
pub struct Sender {
    digit: Digit,
    config: SenderConfig,
    start: u32,
    /// Total duration, at least one interval.
    duration: u32,
    /// Offset of the current segment from `start`.
    segment: u32,
    /// Send time of the next regular update.
    next: u32,
    first: bool,
    ending: bool,
    ends_sent: u8,
}

impl Sender {
    /// Packets for `digit` pressed at RTP timestamp `start` for `duration` timestamp units.
    pub fn new(digit: Digit, start: u32, duration: u32, config: SenderConfig) -> Self {
        let config = SenderConfig {
            interval: config.interval.max(1),
            ..config
        };
        Sender {
            digit,
            config,
            start,
            duration: duration.max(config.interval),
            segment: 0,
            next: 0,
            first: true,
            ending: false,
            ends_sent: 0,
        }
    }

    fn packet(&self, send_at: u32, elapsed: u32, end: bool) -> Packet {
        Packet {
            send_at,
            timestamp: self.start.wrapping_add(self.segment),
            marker: self.first,
            event: Event {
                code: self.digit.code(),
                end,
                volume: self.config.volume,
                // Callers keep `elapsed - segment` within a segment, i.e. ≤ 0xFFFF.
                duration: u16::try_from(elapsed - self.segment).unwrap_or(u16::MAX),
            },
        }
    }
}

impl Iterator for Sender {
    type Item = Packet;

    fn next(&mut self) -> Option<Packet> {
        let interval = self.config.interval;
        if !self.ending {
            if self.next < self.duration {
                // A packet sent at `t` covers the interval [t, t + interval), like an audio packet.
                let elapsed = self.next.saturating_add(interval).min(self.duration);
                if elapsed - self.segment > 0xFFFF {
                    // Close this segment at its maximum; the next one starts 0xFFFF later with
                    // no marker and a fresh duration (§2.5.2.1).
                    let close = self.segment + 0xFFFF;
                    let p = self.packet(self.next, close, false);
                    self.segment = close;
                    self.first = false;
                    self.next = self.next.saturating_add(interval);
                    return Some(p);
                }
                if elapsed < self.duration {
                    let p = self.packet(self.next, elapsed, false);
                    self.first = false;
                    self.next = self.next.saturating_add(interval);
                    return Some(p);
                }
            }
            // The last interval is reported by the first of the three end packets.
            self.ending = true;
        }
        if self.ends_sent < 3 {
            let send_at = self
                .next
                .saturating_add(u32::from(self.ends_sent).saturating_mul(interval));
            let p = self.packet(send_at, self.duration, true);
            self.ends_sent += 1;
            self.first = false;
            return Some(p);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(receiver: &mut Receiver, packets: impl IntoIterator<Item = Packet>) {
        for p in packets {
            receiver
                .handle_packet(p.timestamp, p.marker, &p.event.to_bytes())
                .unwrap();
        }
    }

    fn drain(receiver: &mut Receiver) -> Vec<DigitEvent> {
        std::iter::from_fn(|| receiver.poll_event()).collect()
    }

    fn started(events: &[DigitEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                DigitEvent::DigitStarted { digit, .. } => Some(digit.as_char()),
                DigitEvent::DigitEnded { .. } => None,
            })
            .collect()
    }

    fn ended(events: &[DigitEvent]) -> Vec<(char, u32, u32)> {
        events
            .iter()
            .filter_map(|e| match *e {
                DigitEvent::DigitEnded {
                    digit,
                    timestamp,
                    duration,
                } => Some((digit.as_char(), timestamp, duration)),
                DigitEvent::DigitStarted { .. } => None,
            })
            .collect()
    }

    /// Sends `keys`, each `duration` long followed by a 100 ms pause, from timestamp `start`.
    fn send(keys: &str, start: u32, duration: u32) -> Vec<Packet> {
        let mut ts = start;
        let mut out = Vec::new();
        for c in keys.chars() {
            let d = Digit::from_char(c).unwrap();
            out.extend(Sender::new(d, ts, duration, SenderConfig::default()));
            ts = ts.wrapping_add(duration + 800);
        }
        out
    }

    #[test]
    fn digit_codes() {
        for (i, d) in Digit::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(d.code()), i);
            assert_eq!(Digit::from_code(d.code()), Some(d));
            assert_eq!(Digit::from_char(d.as_char()), Some(d));
        }
        assert_eq!(Digit::Star.as_char(), '*');
        assert_eq!(Digit::Pound.code(), 11);
        assert_eq!(Digit::from_code(16), None);
        assert_eq!(Digit::from_char('d'), Some(Digit::D));
        assert_eq!(Digit::from_char('x'), None);
    }

    #[test]
    fn parse_and_build_vectors() {
        let vectors: [([u8; 4], Event); 4] = [
            (
                [0x01, 0x0a, 0x00, 0xa0],
                Event {
                    code: 1,
                    end: false,
                    volume: 10,
                    duration: 160,
                },
            ),
            (
                [0x0b, 0x8a, 0x03, 0x20],
                Event {
                    code: 11,
                    end: true,
                    volume: 10,
                    duration: 800,
                },
            ),
            (
                [0x0f, 0x3f, 0xff, 0xff],
                Event {
                    code: 15,
                    end: false,
                    volume: 63,
                    duration: 0xffff,
                },
            ),
            // Flash (code 16) is kept as a code, not a digit.
            (
                [0x10, 0x80, 0x00, 0x00],
                Event {
                    code: 16,
                    end: true,
                    volume: 0,
                    duration: 0,
                },
            ),
        ];
        for (bytes, event) in vectors {
            assert_eq!(Event::parse(&bytes), Ok(event));
            assert_eq!(event.to_bytes(), bytes);
        }
        assert_eq!(
            Event::parse(&[0x01, 0x0a, 0, 0xa0]).unwrap().digit(),
            Some(Digit::D1)
        );
        assert_eq!(Event::parse(&[0x10, 0, 0, 0]).unwrap().digit(), None);
    }

    #[test]
    fn reserved_bit_ignored_and_volume_masked() {
        let e = Event::parse(&[0x05, 0xc0 | 20, 0x01, 0x00]).unwrap();
        assert_eq!(
            e,
            Event {
                code: 5,
                end: true,
                volume: 20,
                duration: 256
            }
        );
        let wide = Event {
            code: 5,
            end: false,
            volume: 0xff,
            duration: 0,
        };
        assert_eq!(wide.to_bytes()[1], 0x3f);
    }

    #[test]
    fn malformed_lengths_are_errors() {
        for len in [0, 1, 3, 5, 8, 12, 1500] {
            let payload = vec![0xffu8; len];
            assert_eq!(Event::parse(&payload), Err(EventError::BadLength { len }));
            let mut r = Receiver::new();
            assert!(r.handle_packet(0, true, &payload).is_err());
            assert_eq!(r.poll_event(), None);
        }
    }

    #[test]
    fn arbitrary_payloads_never_panic() {
        // xorshift: deterministic garbage of every short length, timestamps all over the place.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut r = Receiver::new();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            let len = (x >> 60) as usize % 7;
            let _ = r.handle_packet((x >> 20) as u32, x & 1 == 1, &bytes[..len]);
        }
        r.finish();
        let events = drain(&mut r);
        let starts = events.len() - ended(&events).len();
        assert_eq!(starts, ended(&events).len(), "every start has one end");
    }

    #[test]
    fn sender_packet_schedule() {
        // 100 ms = 800 samples in 20 ms packets: 4 updates then 3 end packets.
        let packets: Vec<Packet> =
            Sender::new(Digit::D5, 1000, 800, SenderConfig::default()).collect();
        let summary: Vec<(u32, bool, bool, u16)> = packets
            .iter()
            .map(|p| (p.send_at, p.marker, p.event.end, p.event.duration))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, true, false, 160),
                (160, false, false, 320),
                (320, false, false, 480),
                (480, false, false, 640),
                (640, false, true, 800),
                (800, false, true, 800),
                (960, false, true, 800),
            ]
        );
        assert!(packets
            .iter()
            .all(|p| p.timestamp == 1000 && p.event.code == 5));
        assert!(packets.iter().all(|p| p.event.volume == 10));
    }

    #[test]
    fn sender_short_event_and_volume() {
        let config = SenderConfig {
            volume: 20,
            interval: 160,
        };
        let packets: Vec<Packet> = Sender::new(Digit::Star, 0, 50, config).collect();
        assert_eq!(packets.len(), 3);
        assert!(packets[0].marker && packets.iter().all(|p| p.event.end));
        assert!(packets
            .iter()
            .all(|p| p.event.duration == 160 && p.event.volume == 20));
    }

    #[test]
    fn sender_splits_long_events() {
        // 9 s at 8 kHz = 72000 samples > 0xFFFF.
        let packets: Vec<Packet> =
            Sender::new(Digit::D9, 4000, 72_000, SenderConfig::default()).collect();
        assert_eq!(packets.iter().filter(|p| p.marker).count(), 1);
        let (first, second): (Vec<&Packet>, Vec<&Packet>) =
            packets.iter().partition(|p| p.timestamp == 4000);
        assert!(second.iter().all(|p| p.timestamp == 4000 + 0xFFFF));
        assert_eq!(first.last().unwrap().event.duration, 0xFFFF);
        assert!(first.iter().all(|p| !p.event.end));
        assert!(first
            .windows(2)
            .all(|w| w[0].event.duration <= w[1].event.duration));
        let ends: Vec<&&Packet> = second.iter().filter(|p| p.event.end).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends
            .iter()
            .all(|p| u32::from(p.event.duration) == 72_000 - 0xFFFF));
        assert!(packets.windows(2).all(|w| w[0].send_at <= w[1].send_at));
    }

    #[test]
    fn round_trip_gives_exactly_the_digits_sent() {
        let mut r = Receiver::new();
        run(&mut r, send("0123456789*#ABCD", 0, 800));
        let events = drain(&mut r);
        assert_eq!(started(&events), "0123456789*#ABCD");
        assert_eq!(ended(&events).len(), 16);
        assert!(ended(&events).iter().all(|&(_, _, d)| d == 800));
    }

    #[test]
    fn repeated_digit_is_two_presses() {
        let mut r = Receiver::new();
        run(&mut r, send("11", 0, 480));
        let events = drain(&mut r);
        assert_eq!(started(&events), "11");
        assert_eq!(ended(&events), vec![('1', 0, 480), ('1', 1280, 480)]);
    }

    #[test]
    fn long_press_is_one_digit_with_its_full_duration() {
        let mut r = Receiver::new();
        run(&mut r, send("9", 100, 72_000));
        let events = drain(&mut r);
        assert_eq!(started(&events), "9");
        assert_eq!(ended(&events), vec![('9', 100, 72_000)]);
    }

    #[test]
    fn long_press_across_timestamp_wrap() {
        let mut r = Receiver::new();
        run(&mut r, send("99", u32::MAX - 30_000, 140_000));
        let events = drain(&mut r);
        assert_eq!(started(&events), "99");
        assert!(ended(&events).iter().all(|&(_, _, d)| d == 140_000));
    }

    #[test]
    fn duplicates_and_reordering_do_not_repeat_digits() {
        let packets = send("121", 0, 800);
        let mut shuffled = Vec::new();
        for p in &packets {
            shuffled.push(*p);
            shuffled.push(*p);
        }
        // Swap neighbours: an update arrives after the next one, an end after the next start.
        for i in (0..shuffled.len() - 1).step_by(3) {
            shuffled.swap(i, i + 1);
        }
        shuffled.swap(5, 12);
        let mut r = Receiver::new();
        run(&mut r, shuffled);
        assert_eq!(started(&drain(&mut r)), "121");
    }

    #[test]
    fn late_end_packets_after_next_start_are_dropped() {
        let a: Vec<Packet> = Sender::new(Digit::D4, 0, 320, SenderConfig::default()).collect();
        let b: Vec<Packet> = Sender::new(Digit::D4, 1000, 320, SenderConfig::default()).collect();
        let mut r = Receiver::new();
        run(&mut r, a[..2].iter().copied());
        run(&mut r, b[..1].iter().copied());
        run(&mut r, a[2..].iter().copied());
        run(&mut r, b[1..].iter().copied());
        let events = drain(&mut r);
        assert_eq!(started(&events), "44");
        // The first press ended with its first end packet; its late retransmissions are dropped.
        assert_eq!(ended(&events), vec![('4', 0, 320), ('4', 1000, 320)]);
    }

    #[test]
    fn lost_start_packets_still_give_one_digit() {
        let packets = send("7", 0, 800);
        // Only updates seen.
        let mut r = Receiver::new();
        run(&mut r, packets[2..].iter().copied());
        assert_eq!(started(&drain(&mut r)), "7");
        // Only end packets seen.
        let mut r = Receiver::new();
        run(&mut r, packets.iter().copied().filter(|p| p.event.end));
        let events = drain(&mut r);
        assert_eq!(started(&events), "7");
        assert_eq!(ended(&events), vec![('7', 0, 800)]);
        // Only the second segment of a long press seen.
        let long = send("8", 0, 72_000);
        let mut r = Receiver::new();
        run(&mut r, long.iter().copied().filter(|p| p.timestamp != 0));
        assert_eq!(started(&drain(&mut r)), "8");
    }

    #[test]
    fn lost_end_packets_end_at_next_event_or_finish() {
        let packets = send("36", 0, 800);
        let mut r = Receiver::new();
        run(&mut r, packets.iter().copied().filter(|p| !p.event.end));
        let events = drain(&mut r);
        assert_eq!(started(&events), "36");
        assert_eq!(ended(&events), vec![('3', 0, 640)]);
        r.finish();
        assert_eq!(ended(&drain(&mut r)), vec![('6', 1600, 640)]);
        r.finish();
        assert_eq!(r.poll_event(), None);
    }

    #[test]
    fn start_is_reported_before_end() {
        let mut r = Receiver::new();
        let packets = send("5", 0, 800);
        run(&mut r, packets[..1].iter().copied());
        assert_eq!(
            drain(&mut r),
            vec![DigitEvent::DigitStarted {
                digit: Digit::D5,
                timestamp: 0
            }]
        );
        run(&mut r, packets[1..].iter().copied());
        assert_eq!(
            drain(&mut r),
            vec![DigitEvent::DigitEnded {
                digit: Digit::D5,
                timestamp: 0,
                duration: 800
            }]
        );
    }

    #[test]
    fn non_dtmf_events_are_ignored() {
        let mut r = Receiver::new();
        r.handle_packet(0, true, &[16, 0x80, 0, 160]).unwrap();
        assert_eq!(r.poll_event(), None);
    }
}
