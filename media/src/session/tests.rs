//! Session scenarios on virtual time: every `now` is `t0 + offset`, no clock is read.
use super::*;
use crate::dtmf::rfc4733::{Event, Sender, SenderConfig};
use crate::sdp::Direction;

const PEER: &str = "192.0.2.10:4000";
const NAT: &str = "198.51.100.7:31000";

/// The epoch of virtual time: read once, then only ever offset.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn init() -> SessionInit {
    SessionInit {
        ssrc: 0x5EED_0001,
        initial_sequence: 65530,
        initial_timestamp: 0xFFFF_FF00,
        cname: "test".into(),
        ntp_at_start: 0,
        inactivity: Some(Duration::from_secs(5)),
    }
}

fn params(codec: Codec) -> StreamParams {
    StreamParams {
        remote: Some(addr(PEER)),
        remote_rtcp: None,
        codec,
        payload_type: codec.static_payload_type(),
        telephone_event: Some(101),
        direction: Direction::SendRecv,
        inband_dtmf: false,
        ptime: 20,
    }
}

struct Harness {
    t0: Instant,
    s: Session,
    /// Ticks done so far (the next tick is at `t0 + ticks × 20 ms`).
    ticks: u32,
}

#[derive(Debug, Clone)]
struct Sent {
    to: SocketAddr,
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

impl Harness {
    fn new(codec: Codec) -> Harness {
        let t0 = epoch();
        let mut s = Session::new(SessionId(1), t0, init());
        s.configure(t0, params(codec));
        Harness { t0, s, ticks: 0 }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn now(&self) -> Instant {
        self.t0 + TICK * self.ticks
    }

    /// Runs `n` ticks, returning the RTP sent.
    fn tick(&mut self, n: u32) -> Vec<Sent> {
        for _ in 0..n {
            self.s.tick(self.now());
            self.ticks += 1;
        }
        self.sent()
    }

    fn sent(&mut self) -> Vec<Sent> {
        sent(&mut self.s)
    }

    fn events(&mut self) -> Vec<MediaEvent> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }
}

fn sent(s: &mut Session) -> Vec<Sent> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        if t.rtcp {
            continue;
        }
        let p = RtpPacket::parse(&t.data).unwrap();
        out.push(Sent {
            to: t.to,
            pt: p.payload_type,
            marker: p.marker,
            seq: p.sequence,
            ts: p.timestamp,
            ssrc: p.ssrc,
            payload: p.payload.to_vec(),
        });
    }
    out
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = RtpPacket::new(pt, seq, ts, ssrc, payload);
    p.marker = marker;
    p.to_vec().unwrap()
}

fn prompt(samples: usize, value: i16) -> Arc<Prompt> {
    Arc::new(Prompt::from_samples("p", &vec![value; samples]))
}

fn assert_continuous(packets: &[Sent]) {
    for w in packets.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{w:?}");
        assert_eq!(w[1].ssrc, w[0].ssrc);
        let dt = w[1].ts.wrapping_sub(w[0].ts);
        assert!(dt > 0 && dt % 160 == 0 && dt < 0x8000_0000, "{w:?}");
    }
}

#[test]
fn two_prompts_share_one_stream_with_a_marker_each() {
    let mut h = Harness::new(Codec::Pcmu);
    // 3 frames (the last one padded), then 2 frames.
    h.s.play(vec![prompt(400, 1000)], false, 7);
    let mut packets = h.tick(5);
    let events = h.events();
    assert_eq!(
        events,
        vec![MediaEvent::PlayDone {
            id: SessionId(1),
            token: 7
        }]
    );
    assert_eq!(packets.len(), 3);
    h.tick(3); // silence: nothing sent, the clock runs on
    h.s.play(vec![prompt(320, -1000)], false, 8);
    packets.extend(h.tick(4));
    assert_eq!(packets.len(), 5);
    assert_continuous(&packets);
    let markers: Vec<bool> = packets.iter().map(|p| p.marker).collect();
    assert_eq!(markers, [true, false, false, true, false]);
    assert_eq!(packets[0].seq, 65530);
    assert_eq!(packets[0].ts, 0xFFFF_FF00);
    // Sequence and timestamp wrap without a hiccup; the gap is 8 ticks of clock.
    assert_eq!(packets[3].ts, 0xFFFF_FF00u32.wrapping_add(8 * 160));
    assert!(packets.iter().all(|p| p.pt == 0 && p.to == addr(PEER)));
    assert!(packets.iter().all(|p| p.payload.len() == 160));
    // The padded tail of the first prompt is µ-law silence.
    assert_eq!(packets[2].payload[100], 0xFF);
    assert_eq!(
        h.events(),
        vec![MediaEvent::PlayDone {
            id: SessionId(1),
            token: 8
        }]
    );
}

#[test]
fn repeating_play_never_reports_done() {
    let mut h = Harness::new(Codec::Pcma);
    h.s.play(vec![prompt(160, 500), prompt(160, -500)], true, 1);
    let packets = h.tick(10);
    assert_eq!(packets.len(), 10);
    assert!(packets.iter().all(|p| p.pt == 8));
    assert_eq!(packets.iter().filter(|p| p.marker).count(), 1);
    assert!(h.events().is_empty());
}

#[test]
fn latches_to_the_real_source_and_drops_others() {
    let mut h = Harness::new(Codec::Pcmu);
    h.s.play(vec![prompt(8000, 100)], false, 1);
    assert!(h.tick(1).iter().all(|p| p.to == addr(PEER)));
    // Garbage and a wrong payload type latch nothing.
    assert_eq!(h.s.handle_rtp(h.now(), addr(NAT), &[0x80, 0x00]), None);
    h.s.handle_rtp(h.now(), addr(NAT), &rtp(18, 1, 0, 9, false, &[0; 20]));
    assert!(h.events().is_empty());
    h.s.handle_rtp(h.now(), addr(NAT), &rtp(0, 1, 0, 9, false, &[0xFF; 160]));
    assert_eq!(
        h.events(),
        vec![MediaEvent::Latched {
            id: SessionId(1),
            remote: addr(NAT)
        }]
    );
    assert!(h.tick(2).iter().all(|p| p.to == addr(NAT)));
    h.s.handle_rtp(h.now(), addr(PEER), &rtp(0, 2, 160, 9, false, &[0xFF; 160]));
    let stats = h.s.stats();
    assert_eq!(stats.packets_foreign, 1);
    assert_eq!(stats.packets_received, 1);
    assert_eq!(h.s.counters().rtp_malformed, 1);
    assert_eq!(h.s.counters().unexpected_payload_type, 1);
    // A re-INVITE to a new address drops the latch.
    let mut p = params(Codec::Pcmu);
    p.remote = Some(addr("192.0.2.99:5000"));
    h.s.configure(h.now(), p);
    assert!(h.tick(1).iter().all(|p| p.to == addr("192.0.2.99:5000")));
}

#[test]
fn rfc4733_press_is_one_digit() {
    let mut h = Harness::new(Codec::Pcmu);
    let packets: Vec<_> = Sender::new(Digit::D5, 48_000, 800, SenderConfig::default()).collect();
    for (seq, p) in (10..).zip(&packets) {
        // Every packet twice (duplicates on the path).
        for _ in 0..2 {
            let bytes = rtp(101, seq, p.timestamp, 42, p.marker, &p.event.to_bytes());
            h.s.handle_rtp(h.now(), addr(PEER), &bytes);
        }
    }
    let digits: Vec<_> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, MediaEvent::Digit { .. }))
        .collect();
    assert_eq!(
        digits,
        vec![MediaEvent::Digit {
            id: SessionId(1),
            digit: Digit::D5,
            via: DtmfVia::Rfc4733,
            duration: Duration::from_millis(100),
            relay_to: None,
        }]
    );
}

#[test]
fn inband_tones_are_detected_when_asked() {
    let mut h = Harness::new(Codec::Pcmu);
    let mut p = params(Codec::Pcmu);
    p.inband_dtmf = true;
    h.s.configure(h.now(), p);
    let mut pcm = synth::dtmf_tone(Digit::Pound, 120);
    pcm.extend(synth::silence(100));
    let mut ulaw = vec![0; pcm.len()];
    g711::encode_ulaw_into(&pcm, &mut ulaw);
    for (i, frame) in ulaw.chunks(160).enumerate() {
        let bytes = rtp(0, i as u16, i as u32 * 160, 7, i == 0, frame);
        h.s.handle_rtp(h.at(i as u64 * 20), addr(PEER), &bytes);
    }
    let digits: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            MediaEvent::Digit { digit, via, .. } => Some((digit, via)),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec![(Digit::Pound, DtmfVia::Inband)]);
}

#[test]
fn send_dtmf_uses_rfc4733_and_pauses_audio() {
    let mut h = Harness::new(Codec::Pcmu);
    h.s.play(vec![prompt(8000, 100)], false, 1);
    let before = h.tick(2);
    h.s.send_dtmf(Digit::D9, Duration::from_millis(100));
    let packets = h.tick(12);
    let events: Vec<_> = packets.iter().filter(|p| p.pt == 101).collect();
    // 100 ms at 20 ms: updates at 0..80 ms, then the final duration three times.
    assert_eq!(events.len(), 4 + 3);
    let parsed: Vec<Event> = events
        .iter()
        .map(|p| Event::parse(&p.payload).unwrap())
        .collect();
    assert_eq!(parsed.iter().filter(|e| e.end).count(), 3);
    assert!(parsed.iter().all(|e| e.code == 9));
    assert_eq!(parsed.last().unwrap().duration, 800);
    assert!(events[0].marker && events[1..].iter().all(|p| !p.marker));
    assert!(events.iter().all(|p| p.ts == events[0].ts));
    // No audio while the event is sent; the prompt resumes afterwards with a marker.
    let first_event = packets.iter().position(|p| p.pt == 101).unwrap();
    let last_event = packets.iter().rposition(|p| p.pt == 101).unwrap();
    assert!(packets[first_event..=last_event]
        .iter()
        .all(|p| p.pt == 101));
    let resumed = &packets[last_event + 1];
    assert!(resumed.pt == 0 && resumed.marker);
    let mut all = before;
    all.extend(packets);
    for w in all.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
    }
}

#[test]
fn send_dtmf_without_telephone_event_is_inband() {
    let mut h = Harness::new(Codec::Pcma);
    let mut p = params(Codec::Pcma);
    p.telephone_event = None;
    h.s.configure(h.now(), p);
    h.s.send_dtmf(Digit::D3, Duration::from_millis(100));
    let packets = h.tick(10);
    assert!(packets.iter().all(|p| p.pt == 8));
    // 100 ms of tone + 60 ms gap = 8 frames.
    assert_eq!(packets.len(), 8);
    // The tones decode as digit 3.
    let mut det = Detector::new();
    for p in &packets {
        let mut pcm = vec![0; p.payload.len()];
        g711::decode_alaw_into(&p.payload, &mut pcm);
        det.push_samples(&pcm);
    }
    det.finish();
    let found: Vec<_> = std::iter::from_fn(|| det.poll_event())
        .filter_map(|e| match e {
            ToneEvent::DigitEnded { digit, .. } => Some(digit),
            _ => None,
        })
        .collect();
    assert_eq!(found, vec![Digit::D3]);
}

#[test]
fn inactivity_fires_once_after_the_timeout() {
    let mut h = Harness::new(Codec::Pcmu);
    h.tick(249); // up to 4.96 s
    assert!(h.events().is_empty());
    h.tick(2); // 5.0 s
    let inactive: Vec<_> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, MediaEvent::Inactive { .. }))
        .collect();
    assert_eq!(
        inactive,
        vec![MediaEvent::Inactive {
            id: SessionId(1),
            silent_for: Duration::from_secs(5)
        }]
    );
    h.tick(100);
    assert!(h
        .events()
        .iter()
        .all(|e| !matches!(e, MediaEvent::Inactive { .. })));
    // A packet re-arms it.
    h.s.handle_rtp(h.now(), addr(PEER), &rtp(0, 1, 0, 1, false, &[0xFF; 160]));
    h.tick(249);
    assert!(h
        .events()
        .iter()
        .all(|e| !matches!(e, MediaEvent::Inactive { .. })));
    h.tick(2);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, MediaEvent::Inactive { .. })));
}

#[test]
fn hold_sends_nothing_but_the_clock_runs() {
    let mut h = Harness::new(Codec::Pcmu);
    let mut p = params(Codec::Pcmu);
    p.remote = None;
    h.s.configure(h.now(), p);
    h.s.play(vec![prompt(320, 100)], false, 3);
    assert!(h.tick(5).is_empty());
    assert!(h.events().contains(&MediaEvent::PlayDone {
        id: SessionId(1),
        token: 3
    }));
    let mut p = params(Codec::Pcmu);
    p.direction = Direction::RecvOnly;
    h.s.configure(h.now(), p.clone());
    h.s.play(vec![prompt(320, 100)], false, 4);
    assert!(h.tick(5).is_empty());
    // Back to sendrecv: the stream resumes where the clock is, with an unspent sequence.
    p.direction = Direction::SendRecv;
    h.s.configure(h.now(), p);
    h.s.play(vec![prompt(320, 100)], false, 5);
    let packets = h.tick(1);
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].ts, 0xFFFF_FF00u32.wrapping_add(10 * 160));
    assert_eq!(packets[0].seq, 65530, "no sequence number spent on hold");
    assert!(h.tick(300).len() == 1);
}

#[test]
fn echo_returns_audio_on_our_stream() {
    let mut h = Harness::new(Codec::Pcmu);
    h.s.echo();
    for i in 0..3u16 {
        let bytes = rtp(
            0,
            500 + i,
            9000 + u32::from(i) * 160,
            77,
            i == 0,
            &[i as u8; 160],
        );
        assert_eq!(
            h.s.handle_rtp(h.at(u64::from(i) * 20), addr(NAT), &bytes),
            None
        );
    }
    let packets = h.sent();
    assert_eq!(packets.len(), 3);
    assert_continuous(&packets);
    assert!(packets
        .iter()
        .all(|p| p.ssrc == 0x5EED_0001 && p.to == addr(NAT)));
    assert_eq!(packets[1].payload, vec![1u8; 160]);
    assert!(packets[0].marker && !packets[1].marker);
}

#[test]
fn bridge_transcodes_and_keeps_one_outgoing_stream() {
    let t0 = epoch();
    let mut a = Session::new(SessionId(1), t0, init());
    a.configure(t0, params(Codec::Pcmu));
    let mut b_init = init();
    b_init.ssrc = 0xB0B;
    let mut b = Session::new(SessionId(2), t0, b_init);
    let mut pb = params(Codec::Pcma);
    pb.payload_type = 8;
    pb.remote = Some(addr(NAT));
    b.configure(t0, pb);
    a.bridged(SessionId(2));
    b.bridged(SessionId(1));
    let ulaw: Vec<u8> = (0..160).map(|i| i as u8).collect();
    let feed = |ssrc: u32, seq: u16, ts: u32, ms: u64, a: &mut Session, b: &mut Session| {
        let now = t0 + Duration::from_millis(ms);
        let relay = a
            .handle_rtp(now, addr(PEER), &rtp(0, seq, ts, ssrc, false, &ulaw))
            .expect("bridged audio is handed back for the peer");
        b.send_relayed(now, &relay);
    };
    for i in 0..3u16 {
        feed(
            0xAAAA,
            100 + i,
            1000 + u32::from(i) * 160,
            u64::from(i) * 20,
            &mut a,
            &mut b,
        );
        b.tick(t0 + TICK * u32::from(i));
    }
    // The caller's phone changes SSRC (e.g. after a transfer on its side).
    for i in 0..3u16 {
        feed(
            0xCCCC,
            40000 + i,
            7 + u32::from(i) * 160,
            60 + u64::from(i) * 20,
            &mut a,
            &mut b,
        );
    }
    let packets = sent(&mut b);
    assert_eq!(packets.len(), 6);
    assert_continuous(&packets);
    assert!(packets
        .iter()
        .all(|p| p.ssrc == 0xB0B && p.pt == 8 && p.to == addr(NAT)));
    let mut alaw = ulaw.clone();
    g711::ulaw_to_alaw_in_place(&mut alaw);
    assert!(packets.iter().all(|p| p.payload == alaw));
    let markers: Vec<bool> = packets.iter().map(|p| p.marker).collect();
    assert_eq!(markers, [true, false, false, true, false, false]);
    // A sends nothing of its own while bridged.
    a.tick(t0 + TICK * 4);
    assert!(sent(&mut a).is_empty());
}

#[test]
fn rtcp_reports_every_few_seconds() {
    let mut h = Harness::new(Codec::Pcmu);
    h.s.play(vec![prompt(8000 * 20, 100)], false, 1);
    let mut reports = Vec::new();
    for _ in 0..(20_000 / 20) {
        h.s.tick(h.now());
        h.ticks += 1;
        while let Some(t) = h.s.poll_transmit() {
            if t.rtcp {
                reports.push((h.ticks, t));
            }
        }
    }
    // 5 s ± 50 %: between 2 and 8 reports in 20 s.
    assert!((2..=8).contains(&reports.len()), "{}", reports.len());
    for (_, t) in &reports {
        assert_eq!(t.to, addr("192.0.2.10:4001"));
        let packets = rtcp::parse_compound(&t.data).unwrap();
        assert!(matches!(packets[0], RtcpPacket::SenderReport(_)));
        assert!(matches!(packets[1], RtcpPacket::Sdes(_)));
    }
}

#[test]
fn arbitrary_datagrams_never_panic() {
    let mut h = Harness::new(Codec::Pcmu);
    let mut p = params(Codec::Pcmu);
    p.inband_dtmf = true;
    h.s.configure(h.now(), p);
    h.s.echo();
    h.s.record(h.now(), std::env::temp_dir().join("sb-never-panic.wav"));
    let mut x: u64 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let len = (next() % 300) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && !d.is_empty() {
            d[0] = 0x80 | (d[0] & 0x3F); // version 2, so parsing goes deeper
            if d.len() > 1 {
                d[1] = [0u8, 101, 0x80, 0xE5][i % 4];
            }
        }
        h.s.handle_rtp(h.now(), addr(PEER), &d);
        h.s.handle_rtcp(h.now(), addr(PEER), &d);
        if i % 50 == 0 {
            h.tick(1);
        }
    }
    h.s.close();
    let _ = h.events();
}

#[test]
fn detected_tones_are_not_relayed_as_audio() {
    let mut h = Harness::new(Codec::Pcmu);
    let mut p = params(Codec::Pcmu);
    p.inband_dtmf = true;
    h.s.configure(h.now(), p);
    h.s.bridged(SessionId(2));
    let mut pcm = synth::silence(60);
    pcm.extend(synth::dtmf_tone(Digit::D8, 200));
    pcm.extend(synth::silence(100));
    let mut ulaw = vec![0; pcm.len()];
    g711::encode_ulaw_into(&pcm, &mut ulaw);
    let relayed: Vec<bool> = ulaw
        .chunks(160)
        .enumerate()
        .map(|(i, frame)| {
            let bytes = rtp(0, i as u16, i as u32 * 160, 7, i == 0, frame);
            h.s.handle_rtp(h.at(i as u64 * 20), addr(PEER), &bytes)
                .is_some()
        })
        .collect();
    // Silence is relayed; from shortly after the tone's onset until its end, nothing.
    assert!(relayed[..3].iter().all(|&r| r));
    let held: usize = relayed.iter().filter(|&&r| !r).count();
    assert!((7..=11).contains(&held), "{relayed:?}");
    assert!(*relayed.last().unwrap());
    assert!(h.events().iter().any(|e| matches!(
        e,
        MediaEvent::Digit {
            digit: Digit::D8,
            via: DtmfVia::Inband,
            ..
        }
    )));
}
