//! Offer/answer (RFC 3264) for one audio stream, with hold and resume (RFC 6337).

use std::net::{IpAddr, SocketAddr};

use super::SessionDescription;
use super::{Attribute, Connection, Direction, Line, MediaDescription, Origin, RtpMap};

/// The codecs we can send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static payload type (RFC 3551 Table 4).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    pub fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    fn from_static(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::Pcmu),
            8 => Some(Self::Pcma),
            _ => None,
        }
    }

    fn from_rtpmap(m: &RtpMap) -> Option<Self> {
        if m.clock_rate != 8000 || m.channels.is_some_and(|c| c != 1) {
            return None;
        }
        [Self::Pcmu, Self::Pcma]
            .into_iter()
            .find(|c| m.encoding.eq_ignore_ascii_case(c.encoding_name()))
    }

    fn rtpmap(self, payload_type: u8) -> Attribute {
        Attribute::RtpMap(RtpMap {
            payload_type,
            encoding: self.encoding_name().into(),
            clock_rate: 8000,
            channels: None,
        })
    }
}

/// A codec and the payload type it travels under on this leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadCodec {
    pub codec: Codec,
    pub payload_type: u8,
}

/// What we can do. `codecs` is our preference order for offers; in answers the offerer's
/// order wins (RFC 3264 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub codecs: Vec<Codec>,
    /// RFC 4733 events 0–15 (DTMF).
    pub telephone_event: bool,
    /// Packetisation we prefer, ms.
    pub ptime: u32,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime: 20,
        }
    }
}

/// The payload type we use for telephone-event in our own offers.
pub const OUR_TELEPHONE_EVENT_PT: u8 = 101;
/// RFC 4733 events we handle: the 16 DTMF tones.
const TELEPHONE_EVENTS: &str = "0-15";

/// The outcome of a negotiation, for the media engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP. `None` when the peer gave no usable address, notably RFC 2543 hold
    /// (`c=IN IP4 0.0.0.0`); `direction` then never includes sending.
    pub remote_addr: Option<SocketAddr>,
    /// Where to send RTCP: `a=rtcp` (RFC 3605) if given, else the RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// The codec and the payload type to *send* with.
    pub codec: PayloadCodec,
    /// RFC 4733 payload type on this leg (the offerer's number; legs differ, e.g. 101 vs 96).
    pub telephone_event_pt: Option<u8>,
    /// Packetisation to send with, ms.
    pub ptime: u32,
    /// From OUR point of view: `SendOnly` = we send, they do not.
    pub direction: Direction,
    /// Index of the audio `m=` line in the SDP.
    pub media_index: usize,
}

/// Why a negotiation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Answer the offer with 488 Not Acceptable Here and a `Warning` header
    /// (RFC 3261 §20.43); see [`Reject::warning_header`].
    #[error("not acceptable: {code} {warning}")]
    NotAcceptable { code: u16, warning: String },
    /// Our offer had no audio stream to negotiate.
    #[error("our offer has no audio stream")]
    NoAudioOffered,
    /// The answer lacks our audio `m=` line or rejected it with port 0.
    #[error("the answer rejected our audio stream")]
    AudioRejected,
    /// The answer picked no codec from our offer (RFC 3264 §6.1 violation).
    #[error("the answer picked no codec from our offer")]
    CodecNotOffered,
}

impl Reject {
    /// The `Warning` header value for a 488, e.g.
    /// `305 switchboard.example "Incompatible media format: ..."`.
    pub fn warning_header(&self, agent: &str) -> Option<String> {
        match self {
            Self::NotAcceptable { code, warning } => {
                let text = warning.replace(['"', '\\'], "'");
                Some(format!("{code} {agent} \"{text}\""))
            }
            _ => None,
        }
    }
}

/// Our side of one SDP session (RFC 3264 §8): the `o=` line and our wish for direction.
/// Keep one per leg for the life of the dialog and pass it to every [`offer`] and [`answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSession {
    pub username: String,
    session_id: u64,
    version: u64,
    /// What we want: `SendRecv` normally, `SendOnly` while we hold the peer, `Inactive` when
    /// both hold. [`offer`] stores its direction here; [`answer`] never grants more.
    pub direction: Direction,
    last: Option<SessionDescription>,
}

impl LocalSession {
    /// `session_id` and the first `version` come from the caller (e.g. an NTP timestamp or a
    /// random number): the core reads no clock.
    pub fn new(session_id: u64, version: u64) -> Self {
        Self {
            username: "switchboard".into(),
            session_id,
            version,
            direction: Direction::SendRecv,
            last: None,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The SDP we sent last.
    pub fn last(&self) -> Option<&SessionDescription> {
        self.last.as_ref()
    }

    /// Sets `o=`, raising the version by one only if the SDP differs from the last one
    /// (RFC 3264 §8: an unchanged re-offer keeps its version).
    fn stamp(&mut self, mut sdp: SessionDescription, local_addr: IpAddr) -> SessionDescription {
        if let Some(last) = &self.last {
            let unchanged = SessionDescription {
                origin: None,
                ..last.clone()
            } == sdp;
            if !unchanged {
                self.version = self.version.wrapping_add(1);
            }
        }
        let c = Connection::new(local_addr);
        sdp.origin = Some(Origin {
            username: self.username.clone(),
            session_id: self.session_id.to_string(),
            session_version: self.version,
            net_type: c.net_type,
            addr_type: c.addr_type,
            address: c.address,
        });
        self.last = Some(SessionDescription {
            origin: None,
            ..sdp.clone()
        });
        sdp
    }
}

fn skeleton(local_addr: IpAddr, media: Vec<MediaDescription>) -> SessionDescription {
    SessionDescription {
        origin: None,
        session_name: Some("-".into()),
        connection: Some(Connection::new(local_addr)),
        lines: vec![Line {
            kind: 't',
            value: "0 0".into(),
        }],
        attributes: Vec::new(),
        media,
    }
}

fn audio_section(
    port: u16,
    proto: &str,
    codecs: &[PayloadCodec],
    telephone_event_pt: Option<u8>,
    ptime: u32,
    direction: Direction,
) -> MediaDescription {
    let mut formats: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
    let mut attributes: Vec<Attribute> = codecs
        .iter()
        .map(|c| c.codec.rtpmap(c.payload_type))
        .collect();
    if let Some(pt) = telephone_event_pt {
        formats.push(pt.to_string());
        attributes.push(Attribute::RtpMap(RtpMap {
            payload_type: pt,
            encoding: "telephone-event".into(),
            clock_rate: 8000,
            channels: None,
        }));
        attributes.push(Attribute::Fmtp {
            payload_type: pt,
            params: TELEPHONE_EVENTS.into(),
        });
    }
    attributes.push(Attribute::Ptime(ptime));
    attributes.push(Attribute::Direction(direction));
    MediaDescription {
        media: "audio".into(),
        port,
        port_count: None,
        proto: proto.into(),
        formats,
        connection: None,
        lines: Vec::new(),
        attributes,
    }
}

fn is_rtp_avp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP")
}

/// The codec behind a payload type: `a=rtpmap` if present (in `m`, else in `fallback`),
/// else the static table.
fn codec_of(pt: u8, m: &MediaDescription, fallback: Option<&MediaDescription>) -> Option<Codec> {
    match m.rtpmap(pt).or_else(|| fallback.and_then(|f| f.rtpmap(pt))) {
        Some(map) => Codec::from_rtpmap(map),
        None => Codec::from_static(pt),
    }
}

fn is_telephone_event(pt: u8, m: &MediaDescription, fallback: Option<&MediaDescription>) -> bool {
    m.rtpmap(pt)
        .or_else(|| fallback.and_then(|f| f.rtpmap(pt)))
        .is_some_and(|r| r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == 8000)
}

/// Packetisation to send with: the peer's `a=ptime` if we can do it (10–60 ms in steps of
/// 10), else ours; never above the peer's `a=maxptime` (RFC 4566 §6).
fn choose_ptime(theirs: Option<u32>, max: Option<u32>, ours: u32) -> u32 {
    let mut p = match theirs {
        Some(p) if (10..=60).contains(&p) && p % 10 == 0 => p,
        _ => ours,
    };
    if let Some(max) = max {
        if p > max {
            p = (max / 10 * 10).clamp(10, 60);
        }
    }
    p
}

/// Where the peer wants RTP and RTCP. `None` for hold (`0.0.0.0`, `::`) or no usable address.
fn remote_addrs(
    sdp: &SessionDescription,
    m: &MediaDescription,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let ip = sdp
        .media_connection(m)
        .and_then(Connection::ip)
        .filter(|ip| !ip.is_unspecified());
    let Some(ip) = ip else {
        return (None, None);
    };
    let rtp = SocketAddr::new(ip, m.port);
    let rtcp = m.attributes.iter().find_map(|a| match a {
        Attribute::Rtcp { port, rest } => {
            let ip = rest
                .as_deref()
                .and_then(|r| r.split_whitespace().nth(2))
                .and_then(|a| a.parse().ok())
                .unwrap_or(ip);
            Some(SocketAddr::new(ip, *port))
        }
        _ => None,
    });
    let rtcp = rtcp.or_else(|| m.port.checked_add(1).map(|p| SocketAddr::new(ip, p)));
    (Some(rtp), rtcp)
}

/// Our direction given the peer's (from their point of view), what we want, and whether we
/// have an address to send to.
fn our_direction(theirs: Direction, wish: Direction, can_send: bool) -> Direction {
    let d = theirs.reversed().intersect(wish);
    if can_send {
        d
    } else {
        d.intersect(Direction::RecvOnly)
    }
}

fn describe_formats(m: &MediaDescription) -> String {
    let names: Vec<String> = m
        .formats
        .iter()
        .map(|f| match f.parse::<u8>() {
            Ok(pt) => match (m.rtpmap(pt), pt) {
                (Some(r), _) => format!("{}/{}", r.encoding, r.clock_rate),
                (None, 0) => "PCMU/8000".into(),
                (None, 8) => "PCMA/8000".into(),
                (None, 18) => "G729/8000".into(),
                (None, 9) => "G722/8000".into(),
                (None, 3) => "GSM/8000".into(),
                (None, _) => format!("payload type {pt}"),
            },
            Err(_) => f.clone(),
        })
        .collect();
    names.join(", ")
}

/// Answers an offer (RFC 3264 §6). The first audio `m=` line over RTP/AVP with a codec in
/// common is accepted; every other `m=` line is rejected with port 0, in place, so the
/// answer has as many `m=` lines as the offer. Our codec is the first one *the offerer*
/// lists that we support; telephone-event keeps the offerer's payload type.
///
/// Hold: the answer mirrors the offered direction (sendonly → recvonly, recvonly →
/// sendonly, inactive → inactive), never granting more than `session.direction`; an offer
/// with `c=0.0.0.0` is RFC 2543 hold, so we do not send.
pub fn answer(
    offer: &SessionDescription,
    caps: &Capabilities,
    local_addr: IpAddr,
    local_port: u16,
    session: &mut LocalSession,
) -> Result<(SessionDescription, Negotiated), Reject> {
    let mut media = Vec::with_capacity(offer.media.len());
    let mut negotiated = None;
    // The most specific reason seen so far: 305 codec > 302 transport > 304 no audio.
    let mut failure = Reject::NotAcceptable {
        code: 304,
        warning: "Media type not available: no audio stream offered".into(),
    };
    for (index, m) in offer.media.iter().enumerate() {
        let is_audio = m.media.eq_ignore_ascii_case("audio") && m.port != 0;
        if negotiated.is_none() && is_audio {
            if !is_rtp_avp(&m.proto) {
                if !matches!(failure, Reject::NotAcceptable { code: 305, .. }) {
                    failure = Reject::NotAcceptable {
                        code: 302,
                        warning: format!(
                            "Incompatible transport protocol: {} not supported, only RTP/AVP",
                            m.proto
                        ),
                    };
                }
            } else if let Some((section, n)) =
                answer_audio(offer, m, index, caps, local_port, session.direction)
            {
                media.push(section);
                negotiated = Some(n);
                continue;
            } else {
                let ours: Vec<String> = caps
                    .codecs
                    .iter()
                    .map(|c| format!("{}/8000", c.encoding_name()))
                    .collect();
                failure = Reject::NotAcceptable {
                    code: 305,
                    warning: format!(
                        "Incompatible media format: offered {}; we support {}",
                        describe_formats(m),
                        ours.join(", ")
                    ),
                };
            }
        }
        media.push(MediaDescription {
            media: m.media.clone(),
            port: 0,
            port_count: None,
            proto: m.proto.clone(),
            formats: m.formats.clone(),
            connection: None,
            lines: Vec::new(),
            attributes: Vec::new(),
        });
    }
    let negotiated = negotiated.ok_or(failure)?;
    let sdp = session.stamp(skeleton(local_addr, media), local_addr);
    Ok((sdp, negotiated))
}

fn answer_audio(
    offer: &SessionDescription,
    m: &MediaDescription,
    media_index: usize,
    caps: &Capabilities,
    local_port: u16,
    wish: Direction,
) -> Option<(MediaDescription, Negotiated)> {
    let codec = m.payload_types().find_map(|pt| {
        codec_of(pt, m, None)
            .filter(|c| caps.codecs.contains(c))
            .map(|codec| PayloadCodec {
                codec,
                payload_type: pt,
            })
    })?;
    let telephone_event_pt = if caps.telephone_event {
        m.payload_types()
            .find(|&pt| is_telephone_event(pt, m, None))
    } else {
        None
    };
    let ptime = choose_ptime(m.ptime(), m.maxptime(), caps.ptime);
    let (remote_addr, remote_rtcp) = remote_addrs(offer, m);
    let direction = our_direction(offer.media_direction(m), wish, remote_addr.is_some());
    let section = audio_section(
        local_port,
        &m.proto,
        &[codec],
        telephone_event_pt,
        ptime,
        direction,
    );
    let negotiated = Negotiated {
        remote_addr,
        remote_rtcp,
        codec,
        telephone_event_pt,
        ptime,
        direction,
        media_index,
    };
    Some((section, negotiated))
}

/// Builds our offer (initial INVITE to a B-leg, a late-offer 200 OK, or a re-INVITE for
/// hold/resume): one audio stream with our codecs in preference order and telephone-event
/// 101. `direction` is stored in `session` and bounds later answers. The `o=` version rises
/// only if the SDP changed since the last one we sent.
pub fn offer(
    caps: &Capabilities,
    local_addr: IpAddr,
    local_port: u16,
    direction: Direction,
    session: &mut LocalSession,
) -> SessionDescription {
    let mut codecs: Vec<PayloadCodec> = Vec::new();
    for &codec in &caps.codecs {
        if !codecs.iter().any(|c| c.codec == codec) {
            codecs.push(PayloadCodec {
                codec,
                payload_type: codec.static_payload_type(),
            });
        }
    }
    let te = caps.telephone_event.then_some(OUR_TELEPHONE_EVENT_PT);
    let section = audio_section(local_port, "RTP/AVP", &codecs, te, caps.ptime, direction);
    session.direction = direction;
    session.stamp(skeleton(local_addr, vec![section]), local_addr)
}

/// Reads the peer's answer to `our_offer` (RFC 3264 §7). The codec is the first one in the
/// answer that we offered; telephone-event takes the payload type the answerer uses.
pub fn process_answer(
    our_offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, Reject> {
    let (media_index, om) = our_offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.media == "audio" && m.port != 0)
        .ok_or(Reject::NoAudioOffered)?;
    let am = answer
        .media
        .get(media_index)
        .filter(|m| m.port != 0 && m.media.eq_ignore_ascii_case("audio"))
        .ok_or(Reject::AudioRejected)?;
    let offered: Vec<Codec> = om
        .payload_types()
        .filter_map(|pt| codec_of(pt, om, None))
        .collect();
    let codec = am
        .payload_types()
        .find_map(|pt| {
            codec_of(pt, am, Some(om))
                .filter(|c| offered.contains(c))
                .map(|codec| PayloadCodec {
                    codec,
                    payload_type: pt,
                })
        })
        .ok_or(Reject::CodecNotOffered)?;
    let offered_te = om
        .payload_types()
        .any(|pt| is_telephone_event(pt, om, None));
    let telephone_event_pt = am
        .payload_types()
        .find(|&pt| is_telephone_event(pt, am, Some(om)))
        .filter(|_| offered_te);
    let (remote_addr, remote_rtcp) = remote_addrs(answer, am);
    let direction = our_direction(
        answer.media_direction(am),
        our_offer.media_direction(om),
        remote_addr.is_some(),
    );
    let ptime = choose_ptime(am.ptime(), am.maxptime(), om.ptime().unwrap_or(20));
    Ok(Negotiated {
        remote_addr,
        remote_rtcp,
        codec,
        telephone_event_pt,
        ptime,
        direction,
        media_index,
    })
}
