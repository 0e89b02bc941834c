//! Recorder tests: real files in a temp dir, the writer thread for real, no sleeps — every
//! wait is on the writer's acknowledgement (`sync`, `finish`, the pause hook).

use super::*;
use crate::g711;

const FRAME: usize = 160; // 20 ms at 8 kHz

fn config(queue_frames: usize) -> RecordingConfig {
    RecordingConfig {
        sample_rate: 8000,
        queue_frames,
        ..RecordingConfig::default()
    }
}

/// A 400 Hz-ish square wave: loud, never zero.
fn tone(len: usize) -> Vec<i16> {
    (0..len)
        .map(|i| if (i / 10) % 2 == 0 { 8000 } else { -8000 })
        .collect()
}

fn read_all(path: &Path) -> (hound::WavSpec, Vec<StereoFrame>) {
    let mut r = hound::WavReader::open(path).expect("valid wav");
    let spec = r.spec();
    let s: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    assert_eq!(s.len() % 2, 0);
    (spec, s.chunks(2).map(|c| [c[0], c[1]]).collect())
}

/// Pushes and, if the queue is full, waits for the writer to catch up (tests only: the
/// packet path never retries).
fn push_all(h: &RecorderHandle, ch: Channel, at: u64, pcm: &[i16]) {
    while h.push(ch, at, pcm) == Push::Dropped {
        h.sync().unwrap();
    }
}

#[test]
fn caller_only_tone_is_left_and_right_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    let h = Recorder::start(&path, config(64)).unwrap();
    for k in 0..10u64 {
        assert_eq!(
            h.push(Channel::Caller, k * FRAME as u64, &tone(FRAME)),
            Push::Queued
        );
    }
    let info = h.finish().unwrap();
    let (_, frames) = read_all(&path);
    assert_eq!(frames.len(), 10 * FRAME);
    assert!(frames.iter().all(|f| f[0] != 0), "left carries the caller");
    assert!(frames.iter().all(|f| f[1] == 0), "right is silent");
    assert_eq!(info.samples, 10 * FRAME as u64);
    assert_eq!(info.dropped, 0);
}

#[test]
fn other_party_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    let h = Recorder::start(&path, config(64)).unwrap();
    h.push(Channel::Other, 0, &tone(FRAME));
    h.finish().unwrap();
    let (_, frames) = read_all(&path);
    assert!(frames.iter().all(|f| f[0] == 0 && f[1] != 0));
}

#[test]
fn gap_is_filled_with_silence_and_alignment_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gap.wav");
    let h = Recorder::start(&path, config(64)).unwrap();
    // The packet at 320 is lost.
    for at in [0u64, 160, 480] {
        h.push(Channel::Caller, at, &tone(FRAME));
    }
    // The other side talks across the gap: it must stay aligned with its own positions.
    h.push(Channel::Other, 320, &[1234; FRAME]);
    let info = h.finish().unwrap();
    let (_, frames) = read_all(&path);
    assert_eq!(frames.len(), 640);
    assert_eq!(info.samples, 640);
    assert!(frames[..320].iter().all(|f| f[0] != 0));
    assert!(
        frames[320..480].iter().all(|f| f[0] == 0),
        "lost packet → silence"
    );
    assert!(frames[480..].iter().all(|f| f[0] != 0));
    assert!(frames[320..480].iter().all(|f| f[1] == 1234));
    assert!(frames[..320]
        .iter()
        .chain(&frames[480..])
        .all(|f| f[1] == 0));
}

#[test]
fn one_second_is_8000_frames_and_reads_back_as_stereo_8k_16bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("1s.wav");
    let h = Recorder::start(&path, config(8)).unwrap();
    for k in 0..50u64 {
        push_all(&h, Channel::Caller, k * FRAME as u64, &tone(FRAME));
        push_all(&h, Channel::Other, k * FRAME as u64, &[-5; FRAME]);
    }
    let info = h.finish().unwrap();
    assert_eq!(info.samples, 8000);
    assert_eq!(info.duration, Duration::from_secs(1));
    assert_eq!(info.path, path);
    let r = hound::WavReader::open(&path).unwrap();
    assert_eq!(
        r.spec(),
        hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        }
    );
    assert_eq!(r.duration(), 8000);
}

#[test]
fn a_copy_taken_mid_call_is_valid_up_to_the_last_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.wav");
    let h = Recorder::start(&path, config(16)).unwrap();

    // Before any audio the file is already a valid, empty WAV.
    let (spec, frames) = read_all(&path);
    assert_eq!((spec.channels, frames.len()), (2, 0));

    // 2.5 s of audio: two flush points (8000, 16000) are reached; the rest is written
    // past the header's data size or still in the reordering window.
    for k in 0..125u64 {
        push_all(&h, Channel::Caller, k * FRAME as u64, &tone(FRAME));
    }
    let at = h.sync().unwrap();
    assert_eq!(at.flushed_samples, 16_000);
    assert_eq!(at.written_samples, 20_000 - 480, "window still open");

    // "Crash": read a copy while the writer still holds the file open, never finished.
    let copy = dir.path().join("copy.wav");
    std::fs::copy(&path, &copy).unwrap();
    let (spec, frames) = read_all(&copy);
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    assert_eq!(frames.len(), 16_000);
    assert_eq!(
        frames.iter().map(|f| f[0]).collect::<Vec<_>>(),
        tone(FRAME).repeat(100)
    );

    // And the real file finishes with everything.
    let info = h.finish().unwrap();
    assert_eq!(info.samples, 20_000);
    assert_eq!(read_all(&path).1.len(), 20_000);
}

#[test]
fn full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.wav");
    let h = Recorder::start(&path, config(1)).unwrap();
    let resume = h.pause_writer();
    // The writer is parked; the queue holds one frame.
    assert_eq!(h.push(Channel::Caller, 0, &tone(FRAME)), Push::Queued);
    for k in 1..=5u64 {
        assert_eq!(
            h.push(Channel::Caller, k * FRAME as u64, &tone(FRAME)),
            Push::Dropped
        );
    }
    assert_eq!(
        h.push_ulaw(Channel::Other, 0, &[0xFF; FRAME]),
        Push::Dropped
    );
    assert_eq!(h.dropped(), 6);
    drop(resume);
    let info = h.finish().unwrap();
    assert_eq!(info.dropped, 6);
    assert_eq!(
        info.samples, FRAME as u64,
        "only the queued frame was written"
    );
}

#[test]
fn ulaw_and_alaw_helpers_decode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g711.wav");
    let h = Recorder::start(&path, config(64)).unwrap();
    let pcm: Vec<i16> = (0..FRAME as i32)
        .map(|i| (i * 200 - 16_000) as i16)
        .collect();
    let mut ulaw = vec![0u8; FRAME];
    let mut alaw = vec![0u8; FRAME];
    g711::encode_ulaw_into(&pcm, &mut ulaw);
    g711::encode_alaw_into(&pcm, &mut alaw);
    h.push_ulaw(Channel::Caller, 0, &ulaw);
    h.push_alaw(Channel::Other, 0, &alaw);
    h.finish().unwrap();
    let (_, frames) = read_all(&path);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f[0], g711::ulaw_to_linear(ulaw[i]));
        assert_eq!(f[1], g711::alaw_to_linear(alaw[i]));
        // And close to the original: G.711 is within a few percent.
        assert!((i32::from(f[0]) - i32::from(pcm[i])).abs() <= 512);
    }
    assert_eq!(frames.len(), FRAME);
}

#[test]
fn dropping_the_handle_finalizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dropped.wav");
    {
        let h = Recorder::start(&path, config(64)).unwrap();
        h.push(Channel::Caller, 0, &tone(FRAME));
        h.push(Channel::Caller, 160, &tone(FRAME));
    }
    let (_, frames) = read_all(&path);
    assert_eq!(frames.len(), 320);
}

#[test]
fn late_frames_are_dropped_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.wav");
    let h = Recorder::start(&path, config(64)).unwrap();
    for k in 0..10u64 {
        h.push(Channel::Caller, k * FRAME as u64, &[100; FRAME]);
    }
    // Position 0 is long committed (window 480): dropped, not mixed.
    h.push(Channel::Caller, 0, &[7; FRAME]);
    let info = h.finish().unwrap();
    assert_eq!(info.late_samples, FRAME as u64);
    assert_eq!(info.dropped, 0);
    assert!(read_all(&path).1.iter().all(|f| f[0] == 100));
}

#[test]
fn bad_config_and_unwritable_path_are_errors_missing_folders_are_made() {
    let dir = tempfile::tempdir().unwrap();
    let zero_rate = RecordingConfig {
        sample_rate: 0,
        ..RecordingConfig::default()
    };
    assert!(matches!(
        Recorder::start(dir.path().join("a.wav"), zero_rate),
        Err(RecordError::InvalidConfig {
            field: "sample_rate",
            ..
        })
    ));
    assert!(matches!(
        Recorder::start(dir.path().join("b.wav"), config(0)),
        Err(RecordError::InvalidConfig {
            field: "queue_frames",
            ..
        })
    ));
    // A missing folder is made (recordings are filed per mailbox and day)...
    let nested = dir.path().join("voicemail/sales/c.wav");
    let handle = Recorder::start(&nested, config(4)).expect("folders are created");
    handle.finish().unwrap();
    assert!(nested.is_file());
    // ...but a path through a regular file cannot be.
    std::fs::write(dir.path().join("plain"), b"x").unwrap();
    assert!(matches!(
        Recorder::start(dir.path().join("plain/d.wav"), config(4)),
        Err(RecordError::Create { .. })
    ));
}

#[test]
fn duration_is_exact_for_partial_seconds() {
    assert_eq!(samples_to_duration(8000, 8000), Duration::from_secs(1));
    assert_eq!(samples_to_duration(160, 8000), Duration::from_millis(20));
    assert_eq!(
        samples_to_duration(12_000, 8000),
        Duration::from_millis(1500)
    );
    assert_eq!(samples_to_duration(1, 48_000), Duration::from_nanos(20_833));
}

#[test]
fn a_bogus_jump_is_rejected_instead_of_writing_hours_of_silence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jump.wav");
    let cfg = RecordingConfig {
        max_jump: 8000,
        ..config(64)
    };
    let h = Recorder::start(&path, cfg).unwrap();
    h.push(Channel::Caller, 0, &tone(FRAME));
    // e.g. a new SSRC's random RTP timestamp mapped straight to a position.
    h.push(Channel::Other, 1 << 31, &tone(FRAME));
    // A legitimate gap (one side on hold, other silent) within max_jump is kept.
    h.push(Channel::Caller, 160 + 8000, &tone(FRAME));
    let info = h.finish().unwrap();
    assert_eq!(info.rejected_frames, 1);
    assert_eq!(info.samples, 8320);
}
