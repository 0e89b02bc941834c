//! RTCP Sender and Receiver Reports (RFC 3550 §6.4) and compound packets (§6.1).
//!
//! * [`parse_compound`] splits a datagram into [`RtcpPacket`]s by each packet's length field.
//!   SR, RR and SDES are decoded; any other type (BYE, APP, RTPFB, XR…) is kept as
//!   [`RtcpPacket::Other`] with its raw body, so a new type from a peer never makes us drop
//!   the reports beside it. Every length is checked before it is used: a length running
//!   past the datagram, a report count that does not fit, bad padding or a truncated SDES
//!   chunk is an [`RtcpError`], never a panic. We do not insist that the first packet is
//!   an SR/RR (RFC 3550 A.2) so that reduced-size RTCP (RFC 5506) still parses, and we
//!   accept padding on any packet of the compound, not only the last.
//! * [`write_compound`] / [`RtcpPacket::write`] serialise; [`report_compound`] builds the
//!   minimal compound RFC 3550 §6.1 requires: SR or RR followed by SDES with a CNAME.
//! * [`ReportBlock::from_tracker`] turns a [`SequenceTracker`]'s interval (RFC 3550 A.3)
//!   into a report block; LSR/DLSR come from the caller, who knows when the last SR arrived.

use std::fmt;
use std::time::Duration;

use crate::rtp::SequenceTracker;

/// Sender Report.
pub const PT_SR: u8 = 200;
/// Receiver Report.
pub const PT_RR: u8 = 201;
/// Source Description.
pub const PT_SDES: u8 = 202;
/// Goodbye.
pub const PT_BYE: u8 = 203;
/// Application-defined.
pub const PT_APP: u8 = 204;
/// SDES item type CNAME (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;

const HEADER_LEN: usize = 4;
const REPORT_BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;
/// Counts (RC / SC) are 5-bit fields.
const MAX_COUNT: usize = 31;

/// Why a datagram is not valid RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    /// Empty datagram.
    Empty,
    /// Fewer than 4 bytes left for a packet header at `offset`.
    TruncatedHeader { offset: usize, available: usize },
    /// Version field other than 2.
    UnsupportedVersion { offset: usize, version: u8 },
    /// The length field claims more bytes than the datagram holds.
    LengthExceedsBuffer {
        offset: usize,
        length: usize,
        available: usize,
    },
    /// Padding count 0 or larger than the packet body.
    InvalidPadding { offset: usize, pad_len: u8 },
    /// The body is too short for the fixed part and the announced report blocks.
    BodyTooShort {
        offset: usize,
        packet_type: u8,
        needed: usize,
        body_len: usize,
    },
    /// An SDES chunk or item runs past the end of the packet.
    SdesTruncated { offset: usize },
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty RTCP datagram"),
            Self::TruncatedHeader { offset, available } => write!(
                f,
                "RTCP header at {offset} truncated ({available} bytes left)"
            ),
            Self::UnsupportedVersion { offset, version } => {
                write!(f, "RTCP version {version} at {offset}")
            }
            Self::LengthExceedsBuffer {
                offset,
                length,
                available,
            } => write!(
                f,
                "RTCP packet at {offset} claims {length} bytes, {available} available"
            ),
            Self::InvalidPadding { offset, pad_len } => {
                write!(f, "RTCP packet at {offset} has invalid padding {pad_len}")
            }
            Self::BodyTooShort {
                offset,
                packet_type,
                needed,
                body_len,
            } => write!(
                f,
                "RTCP type {packet_type} at {offset} needs {needed} body bytes, has {body_len}"
            ),
            Self::SdesTruncated { offset } => write!(f, "SDES truncated in packet at {offset}"),
        }
    }
}

impl std::error::Error for RtcpError {}

/// Why a packet could not be serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpBuildError {
    /// More than 31 report blocks or SDES chunks (5-bit count field).
    CountTooLarge { count: usize },
    /// An SDES item longer than 255 bytes.
    SdesItemTooLong { len: usize },
    /// SDES item type 0 is the chunk terminator and cannot be sent as an item.
    SdesItemTypeZero,
    /// A raw body that is not whole 32-bit words.
    BodyNotAligned { len: usize },
    /// `count` field of a raw packet above 31.
    RawCountTooLarge { count: u8 },
    /// Packet longer than the 16-bit length field allows.
    PacketTooLong { len: usize },
}

impl fmt::Display for RtcpBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CountTooLarge { count } => write!(f, "{count} entries exceed RTCP's 31"),
            Self::SdesItemTooLong { len } => write!(f, "SDES item of {len} bytes exceeds 255"),
            Self::SdesItemTypeZero => write!(f, "SDES item type 0 is reserved"),
            Self::BodyNotAligned { len } => write!(f, "RTCP body of {len} bytes not 32-bit"),
            Self::RawCountTooLarge { count } => write!(f, "RTCP count {count} exceeds 31"),
            Self::PacketTooLong { len } => write!(f, "RTCP packet of {len} bytes too long"),
        }
    }
}

impl std::error::Error for RtcpBuildError {}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24-bit signed on the wire (clamped when written).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from `ssrc` (0 if none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s (0 if none).
    pub delay_since_last_sr: u32,
}

const CUMULATIVE_LOST_MAX: i64 = 0x7F_FFFF;
const CUMULATIVE_LOST_MIN: i64 = -0x80_0000;

impl ReportBlock {
    /// Closes the tracker's reporting interval (RFC 3550 A.3) and fills a block from it.
    /// `last_sr` / `delay_since_last_sr` as in the fields (see [`ntp_middle32`],
    /// [`dlsr_units`]).
    pub fn from_tracker(
        ssrc: u32,
        tracker: &mut SequenceTracker,
        last_sr: u32,
        delay_since_last_sr: u32,
    ) -> Self {
        let r = tracker.take_report();
        Self {
            ssrc,
            fraction_lost: r.fraction_lost,
            cumulative_lost: r
                .cumulative_lost
                .clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX)
                as i32,
            extended_highest_seq: r.extended_highest_seq,
            jitter: r.jitter,
            last_sr,
            delay_since_last_sr,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let lost = i64::from(self.cumulative_lost).clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX);
        let lost = (lost as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&self.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }

    /// `b` is exactly 24 bytes (checked by the caller).
    fn parse(b: &[u8]) -> Self {
        let w = |i: usize| be32(b, i);
        let second = w(4);
        Self {
            ssrc: w(0),
            fraction_lost: (second >> 24) as u8,
            // Sign-extend the 24-bit field.
            cumulative_lost: ((second << 8) as i32) >> 8,
            extended_highest_seq: w(8),
            jitter: w(12),
            last_sr: w(16),
            delay_since_last_sr: w(20),
        }
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp: the LSR field (RFC 3550 §6.4.1).
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A delay in the DLSR unit of 1/65536 s, saturating.
pub fn dlsr_units(delay: Duration) -> u32 {
    let units = delay.as_secs().saturating_mul(65536)
        + (u64::from(delay.subsec_nanos()) * 65536) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// Sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp (seconds since 1900 in the high 32 bits) — supplied by the
    /// caller from its wall clock.
    pub ntp_timestamp: u64,
    /// The same instant in the stream's RTP timestamp units.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    pub ssrc: u32,
    pub sender_info: SenderInfo,
    pub reports: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    pub ssrc: u32,
    pub reports: Vec<ReportBlock>,
}

/// One SDES item (RFC 3550 §6.5): type and up to 255 bytes of UTF-8 text (kept as bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: u32,
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    /// The CNAME item, if present.
    pub fn cname(&self) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|i| i.kind == SDES_CNAME)
            .map(|i| i.value.as_slice())
    }
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    Sdes(Vec<SdesChunk>),
    /// Any other type, skipped by its length; `body` excludes header and padding.
    Other {
        packet_type: u8,
        count: u8,
        body: Vec<u8>,
    },
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parses a compound RTCP datagram (RFC 3550 §6.1) into its packets.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let rest = &buf[offset..];
        if rest.len() < HEADER_LEN {
            return Err(RtcpError::TruncatedHeader {
                offset,
                available: rest.len(),
            });
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::UnsupportedVersion { offset, version });
        }
        let padded = rest[0] & 0x20 != 0;
        let count = rest[0] & 0x1F;
        let packet_type = rest[1];
        let length = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if length > rest.len() {
            return Err(RtcpError::LengthExceedsBuffer {
                offset,
                length,
                available: rest.len(),
            });
        }
        let mut body = &rest[HEADER_LEN..length];
        if padded {
            let pad_len = body.last().copied().unwrap_or(0);
            if pad_len == 0 || usize::from(pad_len) > body.len() {
                return Err(RtcpError::InvalidPadding { offset, pad_len });
            }
            body = &body[..body.len() - usize::from(pad_len)];
        }
        packets.push(parse_one(offset, packet_type, count, body)?);
        offset += length;
    }
    Ok(packets)
}

fn parse_one(
    offset: usize,
    packet_type: u8,
    count: u8,
    body: &[u8],
) -> Result<RtcpPacket, RtcpError> {
    let blocks = |fixed: usize| -> Result<Vec<ReportBlock>, RtcpError> {
        let needed = fixed + usize::from(count) * REPORT_BLOCK_LEN;
        if body.len() < needed {
            return Err(RtcpError::BodyTooShort {
                offset,
                packet_type,
                needed,
                body_len: body.len(),
            });
        }
        // Anything after the blocks is a profile-specific extension: ignored.
        Ok(body[fixed..needed]
            .chunks_exact(REPORT_BLOCK_LEN)
            .map(ReportBlock::parse)
            .collect())
    };
    Ok(match packet_type {
        PT_SR => {
            let reports = blocks(4 + SENDER_INFO_LEN)?;
            RtcpPacket::SenderReport(SenderReport {
                ssrc: be32(body, 0),
                sender_info: SenderInfo {
                    ntp_timestamp: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                    rtp_timestamp: be32(body, 12),
                    packet_count: be32(body, 16),
                    octet_count: be32(body, 20),
                },
                reports,
            })
        }
        PT_RR => {
            let reports = blocks(4)?;
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: be32(body, 0),
                reports,
            })
        }
        PT_SDES => RtcpPacket::Sdes(parse_sdes(offset, count, body)?),
        _ => RtcpPacket::Other {
            packet_type,
            count,
            body: body.to_vec(),
        },
    })
}

fn parse_sdes(offset: usize, count: u8, body: &[u8]) -> Result<Vec<SdesChunk>, RtcpError> {
    let truncated = RtcpError::SdesTruncated { offset };
    let mut chunks = Vec::with_capacity(usize::from(count));
    let mut pos = 0;
    for _ in 0..count {
        let ssrc_bytes = body.get(pos..pos + 4).ok_or(truncated)?;
        let ssrc = be32(ssrc_bytes, 0);
        pos += 4;
        let mut items = Vec::new();
        loop {
            let kind = *body.get(pos).ok_or(truncated)?;
            if kind == 0 {
                // End of item list; the chunk is padded with nulls to a 32-bit boundary
                // (chunks start word-aligned, so alignment is relative to the body).
                // Be lenient if the body ends before that boundary.
                pos = ((pos / 4 + 1) * 4).min(body.len());
                break;
            }
            let len = usize::from(*body.get(pos + 1).ok_or(truncated)?);
            let value = body.get(pos + 2..pos + 2 + len).ok_or(truncated)?;
            items.push(SdesItem {
                kind,
                value: value.to_vec(),
            });
            pos += 2 + len;
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Ok(chunks)
}

impl RtcpPacket {
    /// Appends this packet (header, body, length field; never padded) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RtcpBuildError> {
        let start = out.len();
        let (count, packet_type) = match self {
            Self::SenderReport(sr) => (sr.reports.len(), PT_SR),
            Self::ReceiverReport(rr) => (rr.reports.len(), PT_RR),
            Self::Sdes(chunks) => (chunks.len(), PT_SDES),
            Self::Other {
                packet_type, count, ..
            } => {
                if usize::from(*count) > MAX_COUNT {
                    return Err(RtcpBuildError::RawCountTooLarge { count: *count });
                }
                (usize::from(*count), *packet_type)
            }
        };
        if count > MAX_COUNT {
            return Err(RtcpBuildError::CountTooLarge { count });
        }
        out.extend_from_slice(&[0x80 | count as u8, packet_type, 0, 0]);
        match self {
            Self::SenderReport(sr) => {
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                let i = &sr.sender_info;
                out.extend_from_slice(&i.ntp_timestamp.to_be_bytes());
                out.extend_from_slice(&i.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&i.packet_count.to_be_bytes());
                out.extend_from_slice(&i.octet_count.to_be_bytes());
                sr.reports.iter().for_each(|b| b.write(out));
            }
            Self::ReceiverReport(rr) => {
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                rr.reports.iter().for_each(|b| b.write(out));
            }
            Self::Sdes(chunks) => {
                for chunk in chunks {
                    let chunk_start = out.len();
                    out.extend_from_slice(&chunk.ssrc.to_be_bytes());
                    for item in &chunk.items {
                        if item.kind == 0 {
                            out.truncate(start);
                            return Err(RtcpBuildError::SdesItemTypeZero);
                        }
                        let Ok(len) = u8::try_from(item.value.len()) else {
                            out.truncate(start);
                            return Err(RtcpBuildError::SdesItemTooLong {
                                len: item.value.len(),
                            });
                        };
                        out.extend_from_slice(&[item.kind, len]);
                        out.extend_from_slice(&item.value);
                    }
                    // At least one null terminator, then nulls to the next word.
                    let used = out.len() - chunk_start;
                    out.resize(chunk_start + (used / 4 + 1) * 4, 0);
                }
            }
            Self::Other { body, .. } => {
                if body.len() % 4 != 0 {
                    out.truncate(start);
                    return Err(RtcpBuildError::BodyNotAligned { len: body.len() });
                }
                out.extend_from_slice(body);
            }
        }
        let len = out.len() - start;
        let Ok(words) = u16::try_from(len / 4 - 1) else {
            out.truncate(start);
            return Err(RtcpBuildError::PacketTooLong { len });
        };
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        Ok(())
    }
}

/// Serialises packets back to back into one compound datagram.
pub fn write_compound(packets: &[RtcpPacket]) -> Result<Vec<u8>, RtcpBuildError> {
    let mut out = Vec::new();
    for p in packets {
        p.write(&mut out)?;
    }
    Ok(out)
}

/// The minimal compound packet of RFC 3550 §6.1: `report` (an SR or RR) followed by an SDES
/// packet carrying `cname` for `ssrc` (which should be the report's own SSRC).
pub fn report_compound(
    report: &RtcpPacket,
    ssrc: u32,
    cname: &[u8],
) -> Result<Vec<u8>, RtcpBuildError> {
    let mut out = Vec::new();
    report.write(&mut out)?;
    RtcpPacket::Sdes(vec![SdesChunk {
        ssrc,
        items: vec![SdesItem {
            kind: SDES_CNAME,
            value: cname.to_vec(),
        }],
    }])
    .write(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x5566_7788,
            fraction_lost: 25,
            cumulative_lost: 10,
            extended_highest_seq: 0x0001_0005,
            jitter: 2,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 0x0001_0000,
        }
    }

    /// Written by hand from the RFC 3550 §6.4.2 and §6.5 diagrams, field by field; the
    /// length words were computed as (bytes / 4) − 1: RR = 32 bytes → 7, SDES = 16 → 3.
    const RR_SDES: [u8; 48] = [
        0x81, 0xC9, 0x00, 0x07, // V=2 P=0 RC=1, PT=201 RR, length 7
        0x11, 0x22, 0x33, 0x44, // SSRC of sender
        0x55, 0x66, 0x77, 0x88, // SSRC_1
        0x19, 0x00, 0x00, 0x0A, // fraction 25/256, cumulative lost 10
        0x00, 0x01, 0x00, 0x05, // extended highest seq: 1 cycle, seq 5
        0x00, 0x00, 0x00, 0x02, // jitter 2
        0x12, 0x34, 0x56, 0x78, // LSR
        0x00, 0x01, 0x00, 0x00, // DLSR 1 s
        0x81, 0xCA, 0x00, 0x03, // V=2 SC=1, PT=202 SDES, length 3
        0x11, 0x22, 0x33, 0x44, // chunk SSRC
        0x01, 0x02, b'a', b'b', // CNAME, length 2, "ab"
        0x00, 0x00, 0x00, 0x00, // end of items + pad to word
    ];

    #[test]
    fn known_vector_builds_and_parses() {
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 0x1122_3344,
            reports: vec![block()],
        });
        let built = report_compound(&rr, 0x1122_3344, b"ab").unwrap();
        assert_eq!(built, RR_SDES);
        let parsed = parse_compound(&RR_SDES).unwrap();
        assert_eq!(parsed[0], rr);
        let RtcpPacket::Sdes(chunks) = &parsed[1] else {
            panic!("expected SDES, got {:?}", parsed[1]);
        };
        assert_eq!(chunks[0].ssrc, 0x1122_3344);
        assert_eq!(chunks[0].cname(), Some(&b"ab"[..]));
    }

    #[test]
    fn sender_report_round_trip_with_negative_loss() {
        let mut b2 = block();
        b2.cumulative_lost = -3;
        let sr = RtcpPacket::SenderReport(SenderReport {
            ssrc: 42,
            sender_info: SenderInfo {
                ntp_timestamp: 0xE000_0000_8000_0000,
                rtp_timestamp: 160_000,
                packet_count: 1000,
                octet_count: 160_000,
            },
            reports: vec![block(), b2],
        });
        let sdes = RtcpPacket::Sdes(vec![
            SdesChunk {
                ssrc: 42,
                items: vec![
                    SdesItem {
                        kind: SDES_CNAME,
                        value: b"agent7@switchboard".to_vec(),
                    },
                    SdesItem {
                        kind: 2,
                        value: b"Agent Seven".to_vec(),
                    },
                ],
            },
            SdesChunk {
                ssrc: 43,
                items: vec![],
            },
        ]);
        let packets = vec![sr, sdes];
        let bytes = write_compound(&packets).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(parse_compound(&bytes).unwrap(), packets);
    }

    #[test]
    fn cumulative_lost_clamps_to_24_bits() {
        let mut b = block();
        b.cumulative_lost = 20_000_000;
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![b],
        });
        let parsed = parse_compound(&write_compound(&[rr]).unwrap()).unwrap();
        let RtcpPacket::ReceiverReport(rr) = &parsed[0] else {
            panic!("expected RR");
        };
        assert_eq!(rr.reports[0].cumulative_lost, 0x7F_FFFF);
    }

    #[test]
    fn unknown_types_are_skipped_by_length() {
        let mut bytes = RR_SDES[..32].to_vec();
        // BYE for 0x11223344 with reason "x" (padded to a word), then an APP packet.
        bytes.extend_from_slice(&[0x81, 0xCB, 0x00, 0x02, 0x11, 0x22, 0x33, 0x44]);
        bytes.extend_from_slice(&[0x01, b'x', 0x00, 0x00]);
        bytes.extend_from_slice(&[0x80, 0xCC, 0x00, 0x02, 0, 0, 0, 1, b'T', b'E', b'S', b'T']);
        bytes.extend_from_slice(&RR_SDES[32..]);
        let parsed = parse_compound(&bytes).unwrap();
        assert_eq!(parsed.len(), 4);
        assert!(matches!(parsed[0], RtcpPacket::ReceiverReport(_)));
        assert!(matches!(
            parsed[1],
            RtcpPacket::Other {
                packet_type: PT_BYE,
                count: 1,
                ..
            }
        ));
        assert!(matches!(
            parsed[2],
            RtcpPacket::Other {
                packet_type: PT_APP,
                ..
            }
        ));
        assert!(matches!(parsed[3], RtcpPacket::Sdes(_)));
        // Unknown packets survive a round trip.
        assert_eq!(
            parse_compound(&write_compound(&parsed).unwrap()).unwrap(),
            parsed
        );
    }

    #[test]
    fn malformed_lengths_are_rejected() {
        let mut long = RR_SDES;
        long[3] = 8; // RR claims 36 bytes; SDES header is then misread... then runs out
        assert!(parse_compound(&long).is_err());
        let mut huge = RR_SDES;
        huge[2] = 0xFF;
        assert_eq!(
            parse_compound(&huge),
            Err(RtcpError::LengthExceedsBuffer {
                offset: 0,
                length: (0xFF07 + 1) * 4,
                available: 48
            })
        );
        let mut rc = RR_SDES;
        rc[0] = 0x82; // two report blocks announced, room for one
        assert!(matches!(
            parse_compound(&rc),
            Err(RtcpError::BodyTooShort {
                packet_type: PT_RR,
                needed: 52,
                ..
            })
        ));
        let mut sdes = RR_SDES;
        sdes[41] = 0x09; // CNAME length past the packet end
        assert_eq!(
            parse_compound(&sdes),
            Err(RtcpError::SdesTruncated { offset: 32 })
        );
        let mut pad = RR_SDES;
        pad[32] = 0xA1; // padding flag on SDES whose last byte is 0
        assert_eq!(
            parse_compound(&pad),
            Err(RtcpError::InvalidPadding {
                offset: 32,
                pad_len: 0
            })
        );
        assert_eq!(
            parse_compound(&RR_SDES[..34]),
            Err(RtcpError::TruncatedHeader {
                offset: 32,
                available: 2
            })
        );
        assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
        let mut v1 = RR_SDES;
        v1[0] = 0x41;
        assert_eq!(
            parse_compound(&v1),
            Err(RtcpError::UnsupportedVersion {
                offset: 0,
                version: 1
            })
        );
    }

    #[test]
    fn garbage_never_panics() {
        for n in 0..=RR_SDES.len() {
            let _ = parse_compound(&RR_SDES[..n]);
        }
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut buf = [0u8; 80];
        for _ in 0..50_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Plausible headers so the body parsers are reached.
            buf[0] = (buf[0] & 0x3F) | 0x80;
            buf[1] = 200 + (buf[1] % 5);
            buf[2] = 0;
            buf[3] %= 20;
            let len = (x % 81) as usize;
            if let Ok(p) = parse_compound(&buf[..len]) {
                let _ = write_compound(&p);
            }
        }
    }

    /// RFC 3550 A.3: fraction is (lost_interval << 8) / expected_interval, and 0 when the
    /// interval's "loss" is negative because duplicates arrived.
    #[test]
    fn fraction_lost_from_tracker_intervals() {
        let mut t = SequenceTracker::new_validated(0);
        for s in 0..100u16 {
            if !(10..20).contains(&s) {
                t.update(s, 0, 0);
            }
        }
        let b = ReportBlock::from_tracker(7, &mut t, 0, 0);
        assert_eq!((b.fraction_lost, b.cumulative_lost), (25, 10));
        assert_eq!(b.extended_highest_seq, 99);
        // Next interval: 100 new packets and 5 duplicates: received 105 of 100 expected.
        for s in 100..200u16 {
            t.update(s, 0, 0);
        }
        for s in 195..200u16 {
            t.update(s, 0, 0);
        }
        let b = ReportBlock::from_tracker(7, &mut t, 0, 0);
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 5));
        // Then half of the next 8 lost: 4/8 = 128/256.
        for s in [200u16, 202, 204, 206] {
            t.update(s, 0, 0);
        }
        t.update(208, 0, 0);
        let b = ReportBlock::from_tracker(7, &mut t, 0, 0);
        // Expected 200..=208 = 9, received 5 → 4 lost → (4 << 8) / 9 = 113.
        assert_eq!((b.fraction_lost, b.cumulative_lost), (113, 9));
    }

    #[test]
    fn lsr_and_dlsr_units() {
        assert_eq!(ntp_middle32(0x1122_3344_5566_7788), 0x3344_5566);
        assert_eq!(dlsr_units(Duration::from_millis(1500)), 98_304);
        assert_eq!(dlsr_units(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
