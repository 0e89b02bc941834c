//! The negotiation matrix, hold and resume, real-world offers, the SIP torture vectors, and
//! garbage. Sample SDP is written one line per string and joined with CRLF.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const PORT: u16 = 40000;

fn sdp(lines: &[&str]) -> SessionDescription {
    let text: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    SessionDescription::parse(&text).expect("test SDP parses")
}

/// An offer from 198.51.100.7:5004 with the given m= tail and extra media-level lines.
fn offer_with(formats: &str, extra: &[&str]) -> SessionDescription {
    let m = format!("m=audio 5004 RTP/AVP {formats}");
    let mut lines = vec![
        "v=0",
        "o=alice 2890844526 2890844526 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        m.as_str(),
    ];
    lines.extend_from_slice(extra);
    sdp(&lines)
}

fn session() -> LocalSession {
    LocalSession::new(1000, 1)
}

fn answer_default(offer: &SessionDescription) -> Result<(SessionDescription, Negotiated), Reject> {
    answer(offer, &Capabilities::default(), LOCAL, PORT, &mut session())
}

fn remote() -> Option<SocketAddr> {
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        5004,
    ))
}

#[test]
fn pcmu_only_answer_is_printed_exactly() {
    let (ans, n) = answer_default(&offer_with("0", &[])).unwrap();
    assert_eq!(
        ans.to_string(),
        "v=0\r\n\
         o=switchboard 1000 1 IN IP4 192.0.2.10\r\n\
         s=-\r\n\
         c=IN IP4 192.0.2.10\r\n\
         t=0 0\r\n\
         m=audio 40000 RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
    assert_eq!(
        n,
        Negotiated {
            remote_addr: remote(),
            remote_rtcp: Some("198.51.100.7:5005".parse().unwrap()),
            codec: PayloadCodec {
                codec: Codec::Pcmu,
                payload_type: 0
            },
            telephone_event_pt: None,
            ptime: 20,
            direction: Direction::SendRecv,
            media_index: 0,
        }
    );
}

#[test]
fn pcma_only() {
    let (_, n) = answer_default(&offer_with("8", &["a=rtpmap:8 PCMA/8000"])).unwrap();
    assert_eq!(n.codec.codec, Codec::Pcma);
    assert_eq!(n.codec.payload_type, 8);
}

#[test]
fn offer_order_is_the_preference() {
    let (ans, n) = answer_default(&offer_with("8 0", &[])).unwrap();
    assert_eq!(n.codec.codec, Codec::Pcma);
    assert_eq!(ans.media[0].formats, ["8"]);
    let (_, n) = answer_default(&offer_with("18 0 8", &[])).unwrap();
    assert_eq!(n.codec.codec, Codec::Pcmu);
}

#[test]
fn g729_only_is_488_with_warning() {
    let err = answer_default(&offer_with("18", &["a=rtpmap:18 G729/8000"])).unwrap_err();
    let Reject::NotAcceptable { code, warning } = &err else {
        panic!("expected NotAcceptable, got {err:?}");
    };
    assert_eq!(*code, 305);
    assert!(warning.contains("G729/8000"), "{warning}");
    assert!(warning.contains("PCMU/8000, PCMA/8000"), "{warning}");
    assert_eq!(
        err.warning_header("sb.example").unwrap(),
        "305 sb.example \"Incompatible media format: offered G729/8000; \
         we support PCMU/8000, PCMA/8000\""
    );
}

#[test]
fn static_g729_without_rtpmap_is_named_in_the_warning() {
    let err = answer_default(&offer_with("18", &[])).unwrap_err();
    assert!(err.to_string().contains("G729/8000"), "{err}");
}

#[test]
fn telephone_event_101_is_echoed() {
    let (ans, n) = answer_default(&offer_with(
        "0 101",
        &["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"],
    ))
    .unwrap();
    assert_eq!(n.telephone_event_pt, Some(101));
    let text = ans.to_string();
    assert!(text.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"));
}

#[test]
fn telephone_event_96_keeps_the_offerers_payload_type() {
    let (ans, n) = answer_default(&offer_with(
        "0 96",
        &["a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-16"],
    ))
    .unwrap();
    assert_eq!(n.telephone_event_pt, Some(96));
    assert_eq!(ans.media[0].formats, ["0", "96"]);
    // We only handle DTMF, so we answer the subset 0-15 (RFC 4733 §2.5.1.3).
    assert_eq!(ans.media[0].fmtp(96), Some("0-15"));
}

#[test]
fn wideband_telephone_event_is_not_taken() {
    let (_, n) = answer_default(&offer_with(
        "0 100 101",
        &[
            "a=rtpmap:100 telephone-event/48000",
            "a=rtpmap:101 telephone-event/8000",
        ],
    ))
    .unwrap();
    assert_eq!(n.telephone_event_pt, Some(101));
}

#[test]
fn telephone_event_off_in_caps() {
    let caps = Capabilities {
        telephone_event: false,
        ..Capabilities::default()
    };
    let offer = offer_with("0 101", &["a=rtpmap:101 telephone-event/8000"]);
    let (ans, n) = answer(&offer, &caps, LOCAL, PORT, &mut session()).unwrap();
    assert_eq!(n.telephone_event_pt, None);
    assert_eq!(ans.media[0].formats, ["0"]);
}

#[test]
fn dynamic_payload_type_for_pcmu() {
    let (ans, n) = answer_default(&offer_with("97", &["a=rtpmap:97 pcmu/8000"])).unwrap();
    assert_eq!(
        n.codec,
        PayloadCodec {
            codec: Codec::Pcmu,
            payload_type: 97
        }
    );
    assert!(ans.to_string().contains("a=rtpmap:97 PCMU/8000\r\n"));
}

#[test]
fn video_is_rejected_with_port_0_in_place() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        "m=video 5006 RTP/AVP 31 96",
        "a=rtpmap:96 H264/90000",
        "m=audio 5004 RTP/AVP 0",
    ]);
    let (ans, n) = answer_default(&offer).unwrap();
    assert_eq!(n.media_index, 1);
    assert_eq!(ans.media.len(), 2);
    let text = ans.to_string();
    assert!(
        text.contains("t=0 0\r\nm=video 0 RTP/AVP 31 96\r\nm=audio 40000 RTP/AVP 0\r\n"),
        "{text}"
    );
}

#[test]
fn savp_only_is_488() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        "m=audio 5004 RTP/SAVP 0",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    ]);
    let err = answer_default(&offer).unwrap_err();
    assert!(
        matches!(&err, Reject::NotAcceptable { code: 302, warning } if warning.contains("RTP/SAVP")),
        "{err:?}"
    );
}

#[test]
fn savp_then_avp_accepts_the_avp_stream() {
    let offer = sdp(&[
        "v=0",
        "c=IN IP4 198.51.100.7",
        "m=audio 5004 RTP/SAVP 0",
        "m=audio 5006 RTP/AVP 0",
    ]);
    let (ans, n) = answer_default(&offer).unwrap();
    assert_eq!((ans.media[0].port, ans.media[1].port), (0, PORT));
    assert_eq!(n.remote_addr.unwrap().port(), 5006);
}

#[test]
fn no_audio_at_all_is_304() {
    let offer = sdp(&["v=0", "c=IN IP4 198.51.100.7", "m=video 5006 RTP/AVP 31"]);
    let err = answer_default(&offer).unwrap_err();
    assert!(matches!(err, Reject::NotAcceptable { code: 304, .. }));
    let empty = sdp(&["v=0"]);
    assert!(matches!(
        answer_default(&empty),
        Err(Reject::NotAcceptable { code: 304, .. })
    ));
}

#[test]
fn direction_matrix() {
    use Direction::*;
    // (offered, answered = ours)
    for (offered, ours) in [
        (SendRecv, SendRecv),
        (SendOnly, RecvOnly),
        (RecvOnly, SendOnly),
        (Inactive, Inactive),
    ] {
        let attr = format!("a={}", offered.as_str());
        let (ans, n) = answer_default(&offer_with("0", &[&attr])).unwrap();
        assert_eq!(n.direction, ours, "offer {offered:?}");
        assert_eq!(ans.media[0].direction(), Some(ours));
        assert_eq!(
            n.remote_addr,
            remote(),
            "hold by attribute keeps the address"
        );
    }
}

#[test]
fn session_level_direction_applies() {
    let offer = sdp(&[
        "v=0",
        "c=IN IP4 198.51.100.7",
        "a=sendonly",
        "m=audio 5004 RTP/AVP 0",
    ]);
    let (_, n) = answer_default(&offer).unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    // A media-level attribute overrides the session level.
    let offer = sdp(&[
        "v=0",
        "c=IN IP4 198.51.100.7",
        "a=sendonly",
        "m=audio 5004 RTP/AVP 0",
        "a=sendrecv",
    ]);
    assert_eq!(
        answer_default(&offer).unwrap().1.direction,
        Direction::SendRecv
    );
}

#[test]
fn legacy_hold_c_0000() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 2 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "m=audio 5004 RTP/AVP 0",
    ]);
    let (ans, n) = answer_default(&offer).unwrap();
    assert_eq!(n.remote_addr, None);
    assert_eq!(n.remote_rtcp, None);
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(ans.media[0].direction(), Some(Direction::RecvOnly));
    // Legacy hold with a=recvonly: neither side sends.
    let offer = offer_with("0", &["c=IN IP4 0.0.0.0", "a=recvonly"]);
    assert_eq!(
        answer_default(&offer).unwrap().1.direction,
        Direction::Inactive
    );
}

#[test]
fn ipv6_connection() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::1",
        "s=-",
        "c=IN IP6 2001:db8::1",
        "t=0 0",
        "m=audio 5004 RTP/AVP 8",
    ]);
    let local6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
    let (ans, n) = answer(
        &offer,
        &Capabilities::default(),
        local6,
        PORT,
        &mut session(),
    )
    .unwrap();
    assert_eq!(n.remote_addr, Some("[2001:db8::1]:5004".parse().unwrap()));
    let text = ans.to_string();
    assert!(
        text.contains("o=switchboard 1000 1 IN IP6 2001:db8::10\r\n"),
        "{text}"
    );
    assert!(text.contains("c=IN IP6 2001:db8::10\r\n"), "{text}");
    // IPv6 hold address.
    let held = offer_with("0", &["c=IN IP6 ::"]);
    assert_eq!(answer_default(&held).unwrap().1.remote_addr, None);
}

#[test]
fn ptime_and_maxptime() {
    let ptime = |extra: &[&str]| answer_default(&offer_with("0", extra)).unwrap().1.ptime;
    assert_eq!(ptime(&[]), 20);
    assert_eq!(ptime(&["a=ptime:30"]), 30);
    assert_eq!(ptime(&["a=ptime:10"]), 10);
    assert_eq!(ptime(&["a=ptime:25"]), 20, "not a multiple of 10 ms");
    assert_eq!(ptime(&["a=ptime:200"]), 20);
    assert_eq!(ptime(&["a=maxptime:10"]), 10);
    assert_eq!(ptime(&["a=ptime:40", "a=maxptime:30"]), 30);
    assert_eq!(ptime(&["a=maxptime:5"]), 10);
    let (ans, _) = answer_default(&offer_with("0", &["a=ptime:30"])).unwrap();
    assert_eq!(ans.media[0].ptime(), Some(30));
}

#[test]
fn rtcp_attribute() {
    let (_, n) = answer_default(&offer_with("0", &["a=rtcp:6000"])).unwrap();
    assert_eq!(n.remote_rtcp, Some("198.51.100.7:6000".parse().unwrap()));
    let (_, n) = answer_default(&offer_with("0", &["a=rtcp:6000 IN IP4 203.0.113.1"])).unwrap();
    assert_eq!(n.remote_rtcp, Some("203.0.113.1:6000".parse().unwrap()));
}

#[test]
fn our_offer_is_printed_exactly() {
    let mut s = session();
    let o = offer(
        &Capabilities::default(),
        LOCAL,
        PORT,
        Direction::SendRecv,
        &mut s,
    );
    assert_eq!(
        o.to_string(),
        "v=0\r\n\
         o=switchboard 1000 1 IN IP4 192.0.2.10\r\n\
         s=-\r\n\
         c=IN IP4 192.0.2.10\r\n\
         t=0 0\r\n\
         m=audio 40000 RTP/AVP 0 8 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
    assert_eq!(SessionDescription::parse(&o.to_string()).unwrap(), o);
}

#[test]
fn process_answer_pcma_with_telephone_event() {
    let o = offer(
        &Capabilities::default(),
        LOCAL,
        PORT,
        Direction::SendRecv,
        &mut session(),
    );
    let a = sdp(&[
        "v=0",
        "o=bob 1 1 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        "m=audio 5004 RTP/AVP 8 101",
        "a=rtpmap:101 telephone-event/8000",
        "a=ptime:30",
    ]);
    let n = process_answer(&o, &a).unwrap();
    assert_eq!(n.codec.codec, Codec::Pcma);
    assert_eq!(n.telephone_event_pt, Some(101));
    assert_eq!(n.ptime, 30);
    assert_eq!(n.remote_addr, remote());
    assert_eq!(n.direction, Direction::SendRecv);
}

#[test]
fn process_answer_without_rtpmaps_uses_our_offer() {
    let o = offer(
        &Capabilities::default(),
        LOCAL,
        PORT,
        Direction::SendRecv,
        &mut session(),
    );
    let a = sdp(&["v=0", "c=IN IP4 198.51.100.7", "m=audio 5004 RTP/AVP 0 101"]);
    let n = process_answer(&o, &a).unwrap();
    assert_eq!(n.codec.codec, Codec::Pcmu);
    assert_eq!(
        n.telephone_event_pt,
        Some(101),
        "rtpmap taken from our offer"
    );
    assert_eq!(n.ptime, 20);
}

#[test]
fn process_answer_directions_and_errors() {
    let mut s = session();
    let o = offer(
        &Capabilities::default(),
        LOCAL,
        PORT,
        Direction::SendRecv,
        &mut s,
    );
    let ans = |lines: &[&str]| {
        let mut all = vec!["v=0", "c=IN IP4 198.51.100.7"];
        all.extend_from_slice(lines);
        process_answer(&o, &sdp(&all))
    };
    let dir = |d: &str| ans(&["m=audio 5004 RTP/AVP 0", d]).unwrap().direction;
    assert_eq!(dir("a=recvonly"), Direction::SendOnly);
    assert_eq!(dir("a=sendonly"), Direction::RecvOnly);
    assert_eq!(dir("a=inactive"), Direction::Inactive);
    assert_eq!(ans(&["m=audio 0 RTP/AVP 0"]), Err(Reject::AudioRejected));
    assert_eq!(ans(&[]), Err(Reject::AudioRejected));
    assert_eq!(
        ans(&["m=audio 5004 RTP/AVP 18"]),
        Err(Reject::CodecNotOffered)
    );
    // Our hold offer: even a sendrecv answer does not make us receive.
    let hold = offer(
        &Capabilities::default(),
        LOCAL,
        PORT,
        Direction::SendOnly,
        &mut s,
    );
    let a = sdp(&["v=0", "c=IN IP4 198.51.100.7", "m=audio 5004 RTP/AVP 0"]);
    assert_eq!(
        process_answer(&hold, &a).unwrap().direction,
        Direction::SendOnly
    );
    let a = sdp(&[
        "v=0",
        "c=IN IP4 198.51.100.7",
        "m=audio 5004 RTP/AVP 0",
        "a=recvonly",
    ]);
    assert_eq!(
        process_answer(&hold, &a).unwrap().direction,
        Direction::SendOnly
    );
}

#[test]
fn offer_versions_rise_on_change_only() {
    let caps = Capabilities::default();
    let mut s = session();
    let version = |sdp: &SessionDescription| sdp.origin.as_ref().unwrap().session_version;
    let first = offer(&caps, LOCAL, PORT, Direction::SendRecv, &mut s);
    let same = offer(&caps, LOCAL, PORT, Direction::SendRecv, &mut s);
    assert_eq!((version(&first), version(&same)), (1, 1));
    assert_eq!(first, same);
    let hold = offer(&caps, LOCAL, PORT, Direction::SendOnly, &mut s);
    assert_eq!(version(&hold), 2);
    assert!(hold.to_string().contains("a=sendonly\r\n"));
    let resume = offer(&caps, LOCAL, PORT, Direction::SendRecv, &mut s);
    assert_eq!(version(&resume), 3);
    let moved = offer(&caps, LOCAL, PORT + 2, Direction::SendRecv, &mut s);
    assert_eq!(version(&moved), 4);
}

#[test]
fn hold_and_resume_by_reoffer_rfc6337() {
    let caps = Capabilities::default();
    let mut s = session();
    let version = |sdp: &SessionDescription| sdp.origin.as_ref().unwrap().session_version;
    let base = ["a=rtpmap:101 telephone-event/8000"];
    let (a1, n1) = answer(&offer_with("0 101", &base), &caps, LOCAL, PORT, &mut s).unwrap();
    assert_eq!((version(&a1), n1.direction), (1, Direction::SendRecv));
    // A refresh re-INVITE with the same SDP: same answer, same version.
    let (a2, _) = answer(&offer_with("0 101", &base), &caps, LOCAL, PORT, &mut s).unwrap();
    assert_eq!(a1, a2);
    // They hold us: we answer recvonly and stop sending.
    let hold = offer_with(
        "0 101",
        &["a=rtpmap:101 telephone-event/8000", "a=sendonly"],
    );
    let (a3, n3) = answer(&hold, &caps, LOCAL, PORT, &mut s).unwrap();
    assert_eq!((version(&a3), n3.direction), (2, Direction::RecvOnly));
    assert!(!n3.direction.sends());
    // Both on hold.
    let inactive = offer_with(
        "0 101",
        &["a=rtpmap:101 telephone-event/8000", "a=inactive"],
    );
    let (a4, n4) = answer(&inactive, &caps, LOCAL, PORT, &mut s).unwrap();
    assert_eq!((version(&a4), n4.direction), (3, Direction::Inactive));
    // Resume.
    let resume = offer_with(
        "0 101",
        &["a=rtpmap:101 telephone-event/8000", "a=sendrecv"],
    );
    let (a5, n5) = answer(&resume, &caps, LOCAL, PORT, &mut s).unwrap();
    assert_eq!((version(&a5), n5.direction), (4, Direction::SendRecv));
    assert_eq!(n5.remote_addr, remote());
}

#[test]
fn our_own_hold_bounds_the_answer() {
    let caps = Capabilities::default();
    let mut s = session();
    s.direction = Direction::SendOnly; // we hold the peer (music on hold)
    let (ans, n) = answer(&offer_with("0", &[]), &caps, LOCAL, PORT, &mut s).unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
    assert_eq!(ans.media[0].direction(), Some(Direction::SendOnly));
    // They hold too: nobody sends.
    let (_, n) = answer(
        &offer_with("0", &["a=sendonly"]),
        &caps,
        LOCAL,
        PORT,
        &mut s,
    )
    .unwrap();
    assert_eq!(n.direction, Direction::Inactive);
}

// ---- parsing ------------------------------------------------------------------------

#[test]
fn lenient_parsing() {
    // LF only, no o=, no s=, no t=, trailing spaces, blank lines, garbage line, unknown letter.
    let text = "v=0\nc=IN IP4 198.51.100.7  \n\nm=audio 5004 RTP/AVP 0 8\nnot sdp\nx=whatever\na=rtpmap:0 PCMU/8000\na=ptime:abc\n";
    let s = SessionDescription::parse(text).unwrap();
    assert_eq!(s.origin, None);
    assert_eq!(s.media[0].formats, ["0", "8"]);
    assert_eq!(
        s.media[0].lines,
        [Line {
            kind: 'x',
            value: "whatever".into()
        }]
    );
    assert_eq!(
        s.media[0].attributes[1],
        Attribute::Other {
            name: "ptime".into(),
            value: Some("abc".into())
        }
    );
    let (_, n) = answer_default(&s).unwrap();
    assert_eq!(n.codec.codec, Codec::Pcmu);
}

#[test]
fn multicast_ttl_and_hostname_connections() {
    let c = Connection {
        net_type: "IN".into(),
        addr_type: "IP4".into(),
        address: "224.2.1.1/127".into(),
    };
    assert_eq!(c.ip(), Some("224.2.1.1".parse().unwrap()));
    let offer = offer_with("0", &["c=IN IP4 media.example.com"]);
    let (_, n) = answer_default(&offer).unwrap();
    assert_eq!(n.remote_addr, None, "we do not resolve names");
    assert_eq!(n.direction, Direction::RecvOnly);
}

#[test]
fn hard_errors() {
    use ParseError::*;
    assert_eq!(SessionDescription::parse(""), Err(MissingVersion));
    assert_eq!(
        SessionDescription::parse("o=- 1 1 IN IP4 1.2.3.4\r\nv=0"),
        Err(MissingVersion)
    );
    assert_eq!(SessionDescription::parse("v=1\r\n"), Err(MissingVersion));
    assert_eq!(
        SessionDescription::parse("v=0\r\no=- 1\r\n"),
        Err(BadOrigin { line: 2 })
    );
    assert_eq!(
        SessionDescription::parse("v=0\r\nc=IN IP4\r\n"),
        Err(BadConnection { line: 2 })
    );
    assert_eq!(
        SessionDescription::parse("v=0\r\nm=audio 70000 RTP/AVP 0\r\n"),
        Err(BadMedia { line: 2 })
    );
    assert_eq!(
        SessionDescription::parse_bytes(b"v=0\r\ns=\xff\r\n"),
        Err(NotUtf8)
    );
}

const LINPHONE: &str = "v=0\r\n\
o=1001 3018 2417 IN IP4 192.168.1.20\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=ice-pwd:8b6d2f4c1a\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=fmtp:18 annexb=yes\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=rtcp:7079\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n";

const BARESIP: &str = "v=0\r\n\
o=- 1474253455 2102402153 IN IP4 10.0.0.5\r\n\
s=-\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
a=tool:baresip 3.10.1\r\n\
m=audio 10668 RTP/AVP 9 96 0 8 101\r\n\
b=AS:64\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:1503298392 cname:4b9c8d8b-5a4e\r\n";

const ASTERISK: &str = "v=0\r\n\
o=- 1733222447 1733222449 IN IP4 203.0.113.50\r\n\
s=Asterisk\r\n\
c=IN IP4 203.0.113.50\r\n\
t=0 0\r\n\
m=audio 17930 RTP/AVP 8 0 3 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

/// A carrier SBC: no a=rtpmap at all, session-level c=, an i= and b= line.
const CARRIER: &str = "v=0\r\n\
o=Sonus_UAC 489823 281972 IN IP4 198.18.0.1\r\n\
s=SIP Media Capabilities\r\n\
i=trunk\r\n\
c=IN IP4 198.18.0.2\r\n\
b=AS:80\r\n\
t=0 0\r\n\
m=audio 24680 RTP/AVP 18 0 101\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=maxptime:20\r\n";

#[test]
fn real_world_offers() {
    let cases = [
        (
            LINPHONE,
            Codec::Pcmu,
            Some(100),
            "192.168.1.20:7078",
            "192.168.1.20:7079",
        ),
        (
            BARESIP,
            Codec::Pcmu,
            Some(101),
            "10.0.0.5:10668",
            "10.0.0.5:10669",
        ),
        (
            ASTERISK,
            Codec::Pcma,
            Some(101),
            "203.0.113.50:17930",
            "203.0.113.50:17931",
        ),
        (
            CARRIER,
            Codec::Pcmu,
            Some(101),
            "198.18.0.2:24680",
            "198.18.0.2:24681",
        ),
    ];
    for (text, codec, te, rtp, rtcp) in cases {
        let offer = SessionDescription::parse(text).unwrap();
        let (ans, n) = answer_default(&offer).unwrap();
        assert_eq!(n.codec.codec, codec);
        assert_eq!(n.telephone_event_pt, te);
        assert_eq!(n.remote_addr, Some(rtp.parse().unwrap()));
        assert_eq!(n.remote_rtcp, Some(rtcp.parse().unwrap()));
        assert_eq!(n.ptime, 20);
        assert_eq!(SessionDescription::parse(&ans.to_string()).unwrap(), ans);
    }
}

#[test]
fn real_world_offers_print_back_unchanged() {
    // These samples are already in RFC order, so printing reproduces them byte for byte.
    for text in [LINPHONE, BARESIP, ASTERISK, CARRIER] {
        assert_eq!(SessionDescription::parse(text).unwrap().to_string(), text);
    }
}

fn torture_bodies() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/sip-torture/valid"
    );
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("torture vectors present") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let start = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2));
        if let Some(start) = start {
            out.push((path.display().to_string(), bytes[start..].to_vec()));
        }
    }
    out
}

#[test]
fn sip_torture_sdp_bodies_parse() {
    let mut with_sdp = 0;
    for (name, body) in torture_bodies() {
        let parsed = SessionDescription::parse_bytes(&body);
        if body.starts_with(b"v=0") {
            with_sdp += 1;
            let sdp = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
            let again = SessionDescription::parse(&sdp.to_string()).unwrap();
            assert_eq!(again, sdp, "{name}: print → parse");
        }
        if let Ok(sdp) = SessionDescription::parse_bytes(&body) {
            let _ = answer_default(&sdp);
        }
    }
    assert!(with_sdp >= 10, "found {with_sdp} SDP bodies");
}

#[test]
fn ipv6_torture_vector_is_rejected_for_its_codec() {
    let (_, body) = torture_bodies()
        .into_iter()
        .find(|(n, _)| n.ends_with("/ipv6-in-sdp.sip"))
        .unwrap();
    let sdp = SessionDescription::parse_bytes(&body).unwrap();
    assert_eq!(
        sdp.connection.as_ref().and_then(Connection::ip),
        Some("2001:db8::20".parse().unwrap())
    );
    // It offers only G726-32, so: 305 naming it.
    let err = answer_default(&sdp).unwrap_err();
    assert!(err.to_string().contains("G726-32/8000"), "{err}");
}

/// Every prefix of every sample, and a few mangled forms, must parse or fail — never panic —
/// and whatever parses must negotiate or reject without panicking.
#[test]
fn prefixes_and_garbage_never_panic() {
    let mut samples: Vec<Vec<u8>> = [LINPHONE, BARESIP, ASTERISK, CARRIER]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    samples.extend(torture_bodies().into_iter().map(|(_, b)| b));
    samples.push(b"v=0\r\nm=\r\nm=audio\r\nm=audio x RTP/AVP\r\na=rtpmap:\r\na=rtpmap:0\r\na=rtpmap:999 X/1/2/3\r\na=fmtp:\r\na=rtcp:99999\r\n=\r\n==\r\n".to_vec());
    samples.push(b"v=0\r\nc=IN IP4 0.0.0.0/\r\nm=audio 65535/2 RTP/AVP 0 0 0 255 -1\r\na=maxptime:4294967295\r\na=ptime:0\r\n".to_vec());
    samples.push(
        "v=0\r\ns=\u{e9}\u{1F600}\r\nm=audio 1 RTP/AVP 0\r\na=\u{1F600}:\u{e9}\r\n\u{e9}=x\r\n"
            .as_bytes()
            .to_vec(),
    );
    let caps = Capabilities::default();
    for sample in &samples {
        for end in 0..=sample.len() {
            let Ok(sdp) = SessionDescription::parse_bytes(&sample[..end]) else {
                continue;
            };
            let text = sdp.to_string();
            assert_eq!(
                SessionDescription::parse(&text).as_ref(),
                Ok(&sdp),
                "{text}"
            );
            let mut s = LocalSession::new(u64::MAX, u64::MAX);
            if answer(&sdp, &caps, LOCAL, PORT, &mut s).is_ok() {
                let _ = answer(&sdp, &caps, LOCAL, PORT, &mut s);
            }
            let ours = offer(&caps, LOCAL, PORT, Direction::SendRecv, &mut s);
            let _ = process_answer(&ours, &sdp);
            let _ = process_answer(&sdp, &ours);
        }
    }
}
