//! SDP (RFC 8866, formerly RFC 4566) for telephony audio, and the offer/answer model
//! (RFC 3264) including hold and resume (RFC 6337).
//!
//! # Why a hand-written parser
//! `ARCHITECTURE.md` prefers a maintained crate. Both candidates were checked and set aside:
//! - `webrtc-sdp` 0.3.17 (Firefox) targets the JSEP/WebRTC subset, is MPL-2.0 and needs
//!   Rust 1.88 (the workspace pins 1.85). It is strict where SIP trunks are sloppy: a body
//!   without `t=` is an error ("Missing timing type at session level"), and so is a media
//!   section without any `c=`.
//! - `sdp` (webrtc-rs; `cargo info` offers 0.5.3 for our toolchain, latest 0.17.2) parses
//!   with a strict line-order state machine (`SdpInvalidSyntax` for a line out of RFC order) and pulls in
//!   `url`, `rand` and `substring` for WebRTC features a B2BUA does not use.
//!
//! A telephony B2BUA needs a small, *lenient* subset: `v o s c t`, `m=audio` with `c=`,
//! `a=rtpmap`, `a=fmtp`, `a=ptime`, `a=maxptime`, `a=rtcp` and the direction attributes. That
//! is a few hundred lines here, with no dependency beyond `thiserror` (already in the
//! workspace), and every quirk we tolerate is written down in a test.
//!
//! # Leniency (what real trunks send)
//! - `\n` or `\r\n` line ends, trailing whitespace, blank lines;
//! - missing `o=`, `s=` or `t=`; lines out of the RFC order;
//! - unknown type letters and unknown `a=` attributes are kept (and printed back);
//! - an `a=rtpmap`/`a=fmtp`/`a=ptime` we cannot read is kept as an unknown attribute;
//! - `c=` with a multicast TTL (`/127`) or a host name is kept; [`Connection::ip`] tells.
//!
//! Hard errors ([`ParseError`]) are reserved for what would make negotiation wrong: no
//! `v=` first, an unreadable `o=`, `c=` or `m=` line. No input panics.
//!
//! # Printing
//! [`SessionDescription`] implements `Display`, always with CRLF line ends and in the
//! RFC 8866 line order. What we build ourselves ([`offer`], [`answer`]) prints byte-exactly
//! as the tests show. Attributes keep their order, so parse → print → parse is an identity.
//!
//! # Offer/answer
//! [`answer`], [`offer`] and [`process_answer`] are pure functions; the `o=` line of our SDP
//! comes from a [`LocalSession`] that the dialog keeps for the life of the call and that
//! raises the version only when the SDP changes (RFC 3264 §8).
//!
//! # For the dialog / B2BUA layer
//! - Keep one [`LocalSession`] per leg for the whole dialog; [`offer`] and [`answer`] both
//!   stamp `o=` from it, so a refresh re-INVITE with unchanged SDP keeps the version.
//! - Early offer: [`answer`] the INVITE's SDP. Late offer (INVITE without a body): send
//!   [`offer`] in the 200 OK and [`process_answer`] the SDP in the ACK.
//! - [`Reject::NotAcceptable`] → 488 with `Warning: {Reject::warning_header}`. Any other
//!   [`Reject`] comes from [`process_answer`]: the answer arrived in a 2xx or ACK, so the
//!   dialog exists — ACK it, then BYE.
//! - Payload types are per leg: telephone-event may be 101 on one leg and 96 on the other,
//!   and the codec may differ (PCMU/PCMA), so the relay maps PTs and transcodes with
//!   `g711` from each leg's [`Negotiated`].
//! - [`Negotiated::direction`] is from our point of view: do not send unless it
//!   [`Direction::sends`]; `remote_addr` is `None` during RFC 2543 hold (`c=0.0.0.0`).
//! - To hold a peer, re-offer with [`Direction::SendOnly`]; later answers to their
//!   re-offers never grant more than the direction of our last [`offer`] (or
//!   [`LocalSession::direction`], which may be set directly).

mod negotiate;
#[cfg(test)]
mod tests;

pub use negotiate::{
    answer, offer, process_answer, Capabilities, Codec, LocalSession, Negotiated, PayloadCodec,
    Reject, OUR_TELEPHONE_EVENT_PT,
};

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why an SDP body could not be read. `line` numbers count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    #[error("SDP must start with v=0")]
    MissingVersion,
    #[error("malformed o= line (line {line})")]
    BadOrigin { line: usize },
    #[error("malformed c= line (line {line})")]
    BadConnection { line: usize },
    #[error("malformed m= line (line {line})")]
    BadMedia { line: usize },
}

/// Media direction (RFC 3264 §5.1), as seen by whoever wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_parts(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Self::SendRecv,
            (true, false) => Self::SendOnly,
            (false, true) => Self::RecvOnly,
            (false, false) => Self::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// The same stream seen from the other end: sendonly ↔ recvonly (RFC 3264 §6.1).
    pub fn reversed(self) -> Self {
        Self::from_parts(self.receives(), self.sends())
    }

    /// Only what both allow.
    pub fn intersect(self, other: Self) -> Self {
        Self::from_parts(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    /// Kept as text: some stacks send ids that do not fit a `u64`.
    pub session_id: String,
    pub session_version: u64,
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

/// `c=<nettype> <addrtype> <connection-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub net_type: String,
    pub addr_type: String,
    /// As written, possibly with a multicast `/ttl` suffix or a host name.
    pub address: String,
}

impl Connection {
    pub fn new(ip: IpAddr) -> Self {
        Self {
            net_type: "IN".into(),
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, if it is one (the multicast `/ttl/count` suffix is dropped).
    pub fn ip(&self) -> Option<IpAddr> {
        let addr = self.address.split('/').next().unwrap_or("");
        addr.parse().ok()
    }

    /// RFC 2543 hold (`c=IN IP4 0.0.0.0`), still sent by many phones; RFC 3264 §8.4.
    pub fn is_hold(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock-rate>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

/// One `a=` line, typed where negotiation needs it, otherwise kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    RtpMap(RtpMap),
    Fmtp {
        payload_type: u8,
        params: String,
    },
    Ptime(u32),
    MaxPtime(u32),
    Direction(Direction),
    /// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605); the address part is kept as text.
    Rtcp {
        port: u16,
        rest: Option<String>,
    },
    Other {
        name: String,
        value: Option<String>,
    },
}

impl Attribute {
    fn parse(text: &str) -> Self {
        let (name, value) = match text.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let typed = match (name, value) {
            ("rtpmap", Some(v)) => parse_rtpmap(v).map(Self::RtpMap),
            ("fmtp", Some(v)) => {
                let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
                pt.trim().parse().ok().map(|payload_type| Self::Fmtp {
                    payload_type,
                    params: params.trim().to_string(),
                })
            }
            ("ptime", Some(v)) => v.trim().parse().ok().map(Self::Ptime),
            ("maxptime", Some(v)) => v.trim().parse().ok().map(Self::MaxPtime),
            ("rtcp", Some(v)) => {
                let (port, rest) = match v.trim().split_once(' ') {
                    Some((p, r)) => (p, Some(r.trim().to_string())),
                    None => (v.trim(), None),
                };
                port.parse().ok().map(|port| Self::Rtcp { port, rest })
            }
            (d, None) => Direction::parse(d).map(Self::Direction),
            _ => None,
        };
        typed.unwrap_or_else(|| Self::Other {
            name: name.to_string(),
            value: value.map(str::to_string),
        })
    }
}

fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.trim();
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.trim().parse().ok()?),
        None => None,
    };
    if encoding.is_empty() || parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        payload_type: pt.trim().parse().ok()?,
        encoding: encoding.to_string(),
        clock_rate,
        channels,
    })
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RtpMap(m) => {
                write!(
                    f,
                    "rtpmap:{} {}/{}",
                    m.payload_type, m.encoding, m.clock_rate
                )?;
                match m.channels {
                    Some(c) => write!(f, "/{c}"),
                    None => Ok(()),
                }
            }
            Self::Fmtp {
                payload_type,
                params,
            } => write!(f, "fmtp:{payload_type} {params}"),
            Self::Ptime(p) => write!(f, "ptime:{p}"),
            Self::MaxPtime(p) => write!(f, "maxptime:{p}"),
            Self::Direction(d) => f.write_str(d.as_str()),
            Self::Rtcp { port, rest: None } => write!(f, "rtcp:{port}"),
            Self::Rtcp {
                port,
                rest: Some(r),
            } => write!(f, "rtcp:{port} {r}"),
            Self::Other { name, value: None } => f.write_str(name),
            Self::Other {
                name,
                value: Some(v),
            } => write!(f, "{name}:{v}"),
        }
    }
}

/// A line we keep but do not interpret (`i= u= e= p= b= t= r= z= k=` and unknown letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: char,
    pub value: String,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `image`, …
    pub media: String,
    /// 0 = stream rejected or disabled (RFC 3264 §5.1, §6).
    pub port: u16,
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, …
    pub proto: String,
    /// Formats as written (payload types for RTP).
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub lines: Vec<Line>,
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::RtpMap(m) if m.payload_type == pt => Some(m),
            _ => None,
        })
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Fmtp {
                payload_type,
                params,
            } if *payload_type == pt => Some(params.as_str()),
            _ => None,
        })
    }

    pub fn ptime(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Ptime(p) => Some(*p),
            _ => None,
        })
    }

    pub fn maxptime(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::MaxPtime(p) => Some(*p),
            _ => None,
        })
    }

    /// The media-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Direction(d) => Some(*d),
            _ => None,
        })
    }

    /// Formats that are payload types (non-numeric formats are skipped).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse().ok())
    }
}

/// A whole SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Option<Origin>,
    pub session_name: Option<String>,
    pub connection: Option<Connection>,
    /// Other session-level lines, including `t=`; printed in RFC 8866 order.
    pub lines: Vec<Line>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        parse(text)
    }

    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, ParseError> {
        std::str::from_utf8(bytes)
            .map_err(|_| ParseError::NotUtf8)
            .and_then(parse)
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Direction(d) => Some(*d),
            _ => None,
        })
    }

    /// Direction of a media section: media level, else session level, else sendrecv
    /// (RFC 3264 §5.1).
    pub fn media_direction(&self, m: &MediaDescription) -> Direction {
        m.direction()
            .or_else(|| self.direction())
            .unwrap_or(Direction::SendRecv)
    }

    /// Connection of a media section: media level, else session level.
    pub fn media_connection<'a>(&'a self, m: &'a MediaDescription) -> Option<&'a Connection> {
        m.connection.as_ref().or(self.connection.as_ref())
    }
}

impl FromStr for SessionDescription {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

fn parse_connection(v: &str, line: usize) -> Result<Connection, ParseError> {
    let mut it = v.split_whitespace();
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(n), Some(a), Some(addr), None) => Ok(Connection {
            net_type: n.into(),
            addr_type: a.into(),
            address: addr.into(),
        }),
        _ => Err(ParseError::BadConnection { line }),
    }
}

fn parse_origin(v: &str, line: usize) -> Result<Origin, ParseError> {
    let f: Vec<&str> = v.split_whitespace().collect();
    let bad = ParseError::BadOrigin { line };
    if f.len() != 6 {
        return Err(bad);
    }
    Ok(Origin {
        username: f[0].into(),
        session_id: f[1].into(),
        session_version: f[2].parse().map_err(|_| bad)?,
        net_type: f[3].into(),
        addr_type: f[4].into(),
        address: f[5].into(),
    })
}

fn parse_media(v: &str, line: usize) -> Result<MediaDescription, ParseError> {
    let bad = ParseError::BadMedia { line };
    let mut it = v.split_whitespace();
    let (Some(media), Some(port), Some(proto)) = (it.next(), it.next(), it.next()) else {
        return Err(bad);
    };
    let (port, port_count) = match port.split_once('/') {
        Some((p, c)) => (p, Some(c.parse().map_err(|_| bad.clone())?)),
        None => (port, None),
    };
    Ok(MediaDescription {
        media: media.into(),
        port: port.parse().map_err(|_| bad)?,
        port_count,
        proto: proto.into(),
        formats: it.map(str::to_string).collect(),
        connection: None,
        lines: Vec::new(),
        attributes: Vec::new(),
    })
}

fn parse(text: &str) -> Result<SessionDescription, ParseError> {
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    match lines.next() {
        Some((_, l)) if l.strip_prefix("v=").is_some_and(|v| v.trim() == "0") => {}
        _ => return Err(ParseError::MissingVersion),
    }
    let mut sdp = SessionDescription {
        origin: None,
        session_name: None,
        connection: None,
        lines: Vec::new(),
        attributes: Vec::new(),
        media: Vec::new(),
    };
    for (n, line) in lines {
        let mut chars = line.chars();
        let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
            continue; // not an SDP line: trunks append garbage, skip it
        };
        let value = chars.as_str();
        match (sdp.media.last_mut(), kind) {
            (_, 'v') => {}
            (_, 'm') => sdp.media.push(parse_media(value, n)?),
            (None, 'o') => sdp.origin = Some(parse_origin(value, n)?),
            (None, 's') => sdp.session_name = Some(value.to_string()),
            (None, 'c') => sdp.connection = Some(parse_connection(value, n)?),
            (None, 'a') => sdp.attributes.push(Attribute::parse(value)),
            (None, _) => sdp.lines.push(Line {
                kind,
                value: value.to_string(),
            }),
            (Some(m), 'c') => m.connection = Some(parse_connection(value, n)?),
            (Some(m), 'a') => m.attributes.push(Attribute::parse(value)),
            (Some(m), _) => m.lines.push(Line {
                kind,
                value: value.to_string(),
            }),
        }
    }
    Ok(sdp)
}

fn write_lines(f: &mut fmt::Formatter<'_>, lines: &[Line], kinds: &str) -> fmt::Result {
    for l in lines.iter().filter(|l| kinds.contains(l.kind)) {
        write!(f, "{}={}\r\n", l.kind, l.value)?;
    }
    Ok(())
}

/// Letters printed in their RFC 8866 places; any other letter goes last, before `a=`.
const SESSION_BEFORE_C: &str = "iuep";
/// `t=` and `r=` share a group: each `r=` belongs to the `t=` before it.
const SESSION_AFTER_C: [&str; 4] = ["b", "tr", "z", "k"];

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        if let Some(o) = &self.origin {
            write!(
                f,
                "o={} {} {} {} {} {}\r\n",
                o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
            )?;
        }
        if let Some(s) = &self.session_name {
            write!(f, "s={s}\r\n")?;
        }
        write_lines(f, &self.lines, SESSION_BEFORE_C)?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for group in SESSION_AFTER_C {
            write_lines(f, &self.lines, group)?;
        }
        for l in &self.lines {
            let placed = SESSION_AFTER_C.iter().any(|g| g.contains(l.kind));
            if !SESSION_BEFORE_C.contains(l.kind) && !placed {
                write!(f, "{}={}\r\n", l.kind, l.value)?;
            }
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "m={} {}", m.media, m.port)?;
            if let Some(c) = m.port_count {
                write!(f, "/{c}")?;
            }
            write!(f, " {}", m.proto)?;
            for fmt in &m.formats {
                write!(f, " {fmt}")?;
            }
            f.write_str("\r\n")?;
            write_lines(f, &m.lines, "i")?;
            if let Some(c) = &m.connection {
                write!(f, "c={c}\r\n")?;
            }
            for l in &m.lines {
                if l.kind != 'i' {
                    write!(f, "{}={}\r\n", l.kind, l.value)?;
                }
            }
            for a in &m.attributes {
                write!(f, "a={a}\r\n")?;
            }
        }
        Ok(())
    }
}
