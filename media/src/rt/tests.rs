//! The worker shell on real loopback sockets. No test sleeps: each waits for an event or a
//! datagram with a bounded timeout.
use super::*;
use crate::control::StreamParams;
use crate::prompt::{synth, Prompt};
use crate::record::RecordingInfo;
use crate::rtp::RtpPacket;
use crate::sdp::{Codec, Direction};
use std::sync::mpsc::Receiver;
use std::time::Instant;

const WAIT: Duration = Duration::from_secs(10);

fn engine(port_min: u16, port_max: u16) -> (MediaEngine, Receiver<MediaEvent>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let sink: EventSink = Arc::new(move |e| {
        let _ = tx.lock().unwrap().send(e);
    });
    let config = MediaConfig {
        address: IpAddr::from([127, 0, 0, 1]),
        port_min,
        port_max,
        workers: 2,
        inactivity: None,
    };
    (MediaEngine::start(config, sink).unwrap(), rx)
}

fn wait_for(rx: &Receiver<MediaEvent>, mut pred: impl FnMut(&MediaEvent) -> bool) -> MediaEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(e) => panic!("no matching media event within {WAIT:?}: {e}"),
        }
    }
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

fn params(remote: &UdpSocket, codec: Codec) -> StreamParams {
    StreamParams {
        remote: Some(remote.local_addr().unwrap()),
        remote_rtcp: None,
        codec,
        payload_type: codec.static_payload_type(),
        telephone_event: Some(101),
        direction: Direction::SendRecv,
        inband_dtmf: false,
        ptime: 20,
    }
}

/// Receives one RTP packet (skipping nothing: RTCP goes to port + 1), within `WAIT`.
fn recv_rtp(socket: &UdpSocket, deadline: Instant) -> Option<(u8, bool, u16, u32, u32, Vec<u8>)> {
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            return Some((
                p.payload_type,
                p.marker,
                p.sequence,
                p.timestamp,
                p.ssrc,
                p.payload.to_vec(),
            ));
        }
    }
    None
}

fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    RtpPacket::new(pt, seq, ts, 0xCA11, payload)
        .to_vec()
        .unwrap()
}

fn tone_ulaw() -> Vec<u8> {
    let pcm = synth::tone(1000.0, 20, 8000);
    let mut out = vec![0; pcm.len()];
    crate::g711::encode_ulaw_into(&pcm, &mut out);
    out
}

#[test]
fn play_paces_fifty_packets_a_second() {
    let (media, events) = engine(42_000, 42_099);
    let id = SessionId(1);
    let local = media.open(id, None).unwrap();
    assert_eq!(local.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_eq!(local.port() % 2, 0);
    let phone = peer();
    media.command(Command::Configure {
        id,
        params: params(&phone, Codec::Pcmu),
    });
    let prompt = Arc::new(Prompt::from_samples(
        "two-seconds",
        &synth::tone(440.0, 2000, 4000),
    ));
    media.command(Command::Play {
        id,
        prompts: vec![prompt],
        repeat: false,
        token: 99,
    });
    let deadline = Instant::now() + WAIT;
    let mut arrivals = Vec::new();
    let mut packets = Vec::new();
    while packets.len() < 100 {
        let p = recv_rtp(&phone, deadline).expect("prompt packets keep coming");
        arrivals.push(Instant::now());
        packets.push(p);
    }
    wait_for(&events, |e| {
        matches!(e, MediaEvent::PlayDone { token: 99, .. })
    });
    assert!(packets[0].1, "marker on the first packet");
    for w in packets.windows(2) {
        assert_eq!(w[1].2, w[0].2.wrapping_add(1));
        assert_eq!(w[1].3.wrapping_sub(w[0].3), 160);
        assert_eq!(w[1].4, w[0].4);
        assert_eq!(w[1].0, 0);
    }
    // Measured, not asserted (CI machines stall): the spacing of the 20 ms clock.
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .collect();
    let max = gaps.iter().cloned().fold(0.0, f64::max);
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    eprintln!("packet spacing: mean {mean:.3} ms, max {max:.3} ms");
    media.shutdown();
}

#[test]
fn bridge_relays_both_ways_with_transcoding() {
    let (media, events) = engine(42_100, 42_199);
    let (a, b) = (SessionId(1), SessionId(2));
    let a_addr = media.open(a, None).unwrap();
    let b_addr = media.open(b, Some(a)).unwrap();
    let (phone_a, phone_b) = (peer(), peer());
    media.command(Command::Configure {
        id: a,
        params: params(&phone_a, Codec::Pcmu),
    });
    let mut pb = params(&phone_b, Codec::Pcma);
    pb.telephone_event = Some(96);
    media.command(Command::Configure { id: b, params: pb });
    media.command(Command::Bridge { a, b });

    let ulaw = tone_ulaw();
    let mut alaw = ulaw.clone();
    crate::g711::ulaw_to_alaw_in_place(&mut alaw);
    let deadline = Instant::now() + WAIT;
    // A → B: PCMU in, PCMA out. Resend until the bridge is in place (commands are async).
    let mut seq = 0u16;
    let got = loop {
        phone_a
            .send_to(&rtp(0, seq, u32::from(seq) * 160, &ulaw), a_addr)
            .unwrap();
        seq += 1;
        if let Some(p) = recv_rtp(&phone_b, Instant::now() + Duration::from_millis(200)) {
            break p;
        }
        assert!(Instant::now() < deadline, "nothing relayed A → B");
    };
    assert_eq!(got.0, 8);
    assert_eq!(got.5, alaw);
    // B → A: PCMA in, PCMU out.
    phone_b.send_to(&rtp(8, 1, 160, &alaw), b_addr).unwrap();
    let back = recv_rtp(&phone_a, deadline).expect("relayed B → A");
    assert_eq!(back.0, 0);
    let mut expect = alaw.clone();
    crate::g711::alaw_to_ulaw_in_place(&mut expect);
    assert_eq!(back.5, expect);
    wait_for(
        &events,
        |e| matches!(e, MediaEvent::Latched { id, .. } if *id == b),
    );

    // An RFC 4733 digit from A is re-sent on B with B's payload type.
    for p in crate::dtmf::rfc4733::Sender::new(
        crate::dtmf::rfc4733::Digit::D7,
        50_000,
        800,
        Default::default(),
    ) {
        let mut pkt = RtpPacket::new(101, seq, p.timestamp, 0xCA11, &[]);
        let bytes = p.event.to_bytes();
        pkt.payload = &bytes;
        pkt.marker = p.marker;
        phone_a.send_to(&pkt.to_vec().unwrap(), a_addr).unwrap();
        seq += 1;
    }
    let digit = wait_for(&events, |e| matches!(e, MediaEvent::Digit { .. }));
    assert!(matches!(
        digit,
        MediaEvent::Digit {
            id,
            relay_to: None,
            ..
        } if id == a
    ));
    let mut ends = 0;
    while ends < 3 {
        let p = recv_rtp(&phone_b, deadline).expect("DTMF relayed to B");
        if p.0 == 96 {
            let e = crate::dtmf::rfc4733::Event::parse(&p.5).unwrap();
            assert_eq!(e.code, 7);
            ends += usize::from(e.end);
        }
    }
    media.shutdown();
}

#[test]
fn record_writes_a_stereo_wav_with_the_caller_on_the_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    let (media, events) = engine(42_200, 42_299);
    let id = SessionId(7);
    let local = media.open(id, None).unwrap();
    let phone = peer();
    media.command(Command::Configure {
        id,
        params: params(&phone, Codec::Pcmu),
    });
    media.command(Command::Record {
        id,
        request: crate::control::RecordRequest { path: path.clone() },
    });
    media.command(Command::Echo { id });
    let ulaw = tone_ulaw();
    let deadline = Instant::now() + WAIT;
    // Wait for each echo before the next packet: the echo proves both the recording and
    // the echo mode are in place, and keeps the recorder's queue short.
    let mut seq = 0u16;
    let mut echoed = 0;
    while echoed < 20 {
        phone
            .send_to(&rtp(0, seq, u32::from(seq) * 160, &ulaw), local)
            .unwrap();
        seq += 1;
        if recv_rtp(&phone, Instant::now() + Duration::from_millis(100)).is_some() {
            echoed += 1;
        }
        assert!(Instant::now() < deadline, "no echo");
    }
    media.command(Command::StopRecord { id });
    let MediaEvent::Recorded { result, .. } =
        wait_for(&events, |e| matches!(e, MediaEvent::Recorded { .. }))
    else {
        unreachable!()
    };
    let info: RecordingInfo = result.unwrap();
    assert!(info.samples >= 20 * 160, "{info:?}");
    let mut reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().channels, 2);
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let left_peak = samples.iter().step_by(2).map(|s| s.unsigned_abs()).max();
    let right_peak = samples
        .iter()
        .skip(1)
        .step_by(2)
        .map(|s| s.unsigned_abs())
        .max();
    assert!(left_peak > Some(4000), "left {left_peak:?}");
    assert!(right_peak > Some(4000), "right {right_peak:?}");

    // Close finishes a running recording first: Recorded, then Closed.
    let second = dir.path().join("second.wav");
    media.command(Command::Record {
        id,
        request: crate::control::RecordRequest {
            path: second.clone(),
        },
    });
    media.command(Command::Close { id });
    let first = wait_for(&events, |e| {
        matches!(e, MediaEvent::Recorded { .. } | MediaEvent::Closed { .. })
    });
    assert!(
        matches!(&first, MediaEvent::Recorded { result: Ok(info), .. } if info.path == second),
        "{first:?}"
    );
    wait_for(&events, |e| matches!(e, MediaEvent::Closed { .. }));
    assert!(hound::WavReader::open(&second).is_ok());
    media.shutdown();
}

#[test]
fn close_reports_stats_and_frees_the_ports() {
    let (media, events) = engine(42_300, 42_399);
    let id = SessionId(3);
    let local = media.open(id, None).unwrap();
    assert_eq!(media.sessions(), 1);
    let phone = peer();
    media.command(Command::Configure {
        id,
        params: params(&phone, Codec::Pcmu),
    });
    media.command(Command::Echo { id });
    let deadline = Instant::now() + WAIT;
    let ulaw = tone_ulaw();
    let (mut sent, mut echoed) = (0u16, 0);
    while echoed < 5 {
        phone
            .send_to(&rtp(0, sent, u32::from(sent) * 160, &ulaw), local)
            .unwrap();
        sent += 1;
        if recv_rtp(&phone, Instant::now() + Duration::from_millis(100)).is_some() {
            echoed += 1;
        }
        assert!(Instant::now() < deadline, "no echo");
    }
    // Garbage on both ports is counted, never fatal.
    phone.send_to(&[0xFF; 3], local).unwrap();
    let rtcp_port = SocketAddr::new(local.ip(), local.port() + 1);
    phone.send_to(&[0x80, 0xC8, 0xFF], rtcp_port).unwrap();
    media.command(Command::Close { id });
    let MediaEvent::Closed { stats, .. } =
        wait_for(&events, |e| matches!(e, MediaEvent::Closed { .. }))
    else {
        unreachable!()
    };
    assert!(stats.packets_received >= 5 && stats.packets_received <= u64::from(sent));
    assert!(stats.packets_sent >= 5);
    assert_eq!(stats.octets_sent, stats.packets_sent * 160);
    assert_eq!(media.sessions(), 0);
    // The pair is free again: bind it ourselves.
    drop(UdpSocket::bind(local).unwrap());
    media.shutdown();
    media.shutdown();
    assert!(matches!(media.open(id, None), Err(OpenError::Stopped)));
}

#[test]
fn a_two_port_range_holds_one_session() {
    // Find a free even pair so the test does not depend on what else runs.
    let base = (43_000u16..44_000)
        .step_by(2)
        .find(|&p| {
            UdpSocket::bind(("127.0.0.1", p)).is_ok()
                && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        })
        .unwrap();
    let (media, events) = engine(base, base + 1);
    let first = media.open(SessionId(1), None).unwrap();
    assert_eq!(first.port(), base);
    assert!(matches!(
        media.open(SessionId(1), None),
        Err(OpenError::Duplicate(SessionId(1)))
    ));
    assert!(matches!(
        media.open(SessionId(2), None),
        Err(OpenError::PortsExhausted { min, max }) if min == base && max == base + 1
    ));
    media.command(Command::Close { id: SessionId(1) });
    wait_for(&events, |e| matches!(e, MediaEvent::Closed { .. }));
    assert_eq!(media.open(SessionId(2), None).unwrap().port(), base);
    media.shutdown();
    // Shutdown closes what is left.
    wait_for(
        &events,
        |e| matches!(e, MediaEvent::Closed { id, .. } if *id == SessionId(2)),
    );
}

#[test]
fn digit_to_a_leg_without_telephone_event_is_tones_and_an_info_hint() {
    let (media, events) = engine(42_400, 42_499);
    let (a, b) = (SessionId(1), SessionId(2));
    let a_addr = media.open(a, None).unwrap();
    media.open(b, Some(a)).unwrap();
    let (phone_a, phone_b) = (peer(), peer());
    media.command(Command::Configure {
        id: a,
        params: params(&phone_a, Codec::Pcmu),
    });
    let mut pb = params(&phone_b, Codec::Pcmu);
    pb.telephone_event = None;
    media.command(Command::Configure { id: b, params: pb });
    media.command(Command::Bridge { a, b });
    let deadline = Instant::now() + WAIT;
    // Audio first, until it comes out on B: the bridge is in place.
    let mut seq = 0u16;
    let ulaw = tone_ulaw();
    loop {
        phone_a
            .send_to(&rtp(0, seq, u32::from(seq) * 160, &ulaw), a_addr)
            .unwrap();
        seq += 1;
        if recv_rtp(&phone_b, Instant::now() + Duration::from_millis(100)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "nothing relayed A → B");
    }
    for p in crate::dtmf::rfc4733::Sender::new(
        crate::dtmf::rfc4733::Digit::Star,
        90_000,
        960,
        Default::default(),
    ) {
        let bytes = p.event.to_bytes();
        let mut pkt = RtpPacket::new(101, seq, p.timestamp, 0xCA11, &bytes);
        pkt.marker = p.marker;
        phone_a.send_to(&pkt.to_vec().unwrap(), a_addr).unwrap();
        seq += 1;
    }
    let digit = wait_for(&events, |e| matches!(e, MediaEvent::Digit { .. }));
    assert_eq!(
        digit,
        MediaEvent::Digit {
            id: a,
            digit: crate::dtmf::rfc4733::Digit::Star,
            via: crate::control::DtmfVia::Rfc4733,
            duration: Duration::from_millis(120),
            relay_to: Some(b),
        }
    );
    // B hears the tones: run its audio through the detector until the digit shows.
    let mut detector = crate::dtmf::goertzel::Detector::new();
    let found = loop {
        let p = recv_rtp(&phone_b, deadline).expect("tones on B");
        assert_eq!(
            p.0, 0,
            "no telephone-event on a leg that did not negotiate it"
        );
        let mut pcm = vec![0; p.5.len()];
        crate::g711::decode_ulaw_into(&p.5, &mut pcm);
        detector.push_samples(&pcm);
        if let Some(crate::dtmf::goertzel::ToneEvent::DigitStarted { digit, .. }) =
            detector.poll_event()
        {
            break digit;
        }
    };
    assert_eq!(found, crate::dtmf::rfc4733::Digit::Star);
    media.shutdown();
}
