use std::path::{Path, PathBuf};
use std::time::Duration;

use super::synth::{self, beep, dtmf_tone, silence, tone, wav_bytes};
use super::*;
use crate::dtmf::Digit;
use crate::g711::{linear_to_alaw, linear_to_ulaw};

/// Writes a 16-bit WAV of `channels` interleaved channels at `rate`, each channel a sine of
/// the given frequency (0.0 = silence) and peak, `secs` long.
fn write_wav(path: &Path, rate: u32, chans: &[(f64, f64)], secs: f64) {
    let spec = hound::WavSpec {
        channels: chans.len() as u16,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (f64::from(rate) * secs).round() as usize;
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        for &(f, a) in chans {
            let v = a * (std::f64::consts::TAU * f * t).sin();
            w.write_sample(v.round() as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Goertzel power of `freq` over `x` at 8 kHz, normalised by length².
fn power(x: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * freq / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (x.len() as f64).powi(2)
}

fn zero_crossings(x: &[i16]) -> usize {
    x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

fn peak(x: &[i16]) -> i32 {
    x.iter().map(|&v| i32::from(v).abs()).max().unwrap_or(0)
}

fn file_errors(err: PromptError) -> Vec<FileError> {
    match err {
        PromptError::Files { errors, .. } => errors,
        other => panic!("expected file errors, got {other}"),
    }
}

fn shipped_prompts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts")
}

#[test]
fn wav_at_every_rate_and_layout_loads_at_8k_with_the_tone_kept() {
    let dir = tempfile::tempdir().unwrap();
    let rates = [8000, 16000, 22050, 44100, 48000];
    for rate in rates {
        write_wav(
            &dir.path().join(format!("mono{rate}.wav")),
            rate,
            &[(1000.0, 10000.0)],
            1.0,
        );
        write_wav(
            &dir.path().join(format!("stereo{rate}.wav")),
            rate,
            &[(1000.0, 10000.0), (1000.0, 10000.0)],
            1.0,
        );
    }
    let lib = PromptLibrary::load(dir.path()).unwrap();
    assert_eq!(lib.len(), 2 * rates.len());
    for rate in rates {
        for name in [format!("mono{rate}"), format!("stereo{rate}")] {
            let p = lib.get(&name).unwrap();
            assert_eq!(p.name(), name);
            let n = p.len() as i64;
            assert!((n - 8000).abs() <= 160, "{name}: {n} samples");
            let d = p.duration().as_secs_f64();
            assert!((d - 1.0).abs() <= 0.02, "{name}: {d} s");
            // Skip the edges, where a resampler may ramp.
            let mid = &p.samples()[400..7600];
            let zc = zero_crossings(mid) as f64;
            let expected = 2.0 * 1000.0 * mid.len() as f64 / 8000.0;
            assert!((zc - expected).abs() <= 4.0, "{name}: {zc} zero crossings");
            let at_1k = power(mid, 1000.0);
            for other in [300.0, 500.0, 1500.0, 2000.0, 3000.0, 3900.0] {
                assert!(
                    at_1k > 1000.0 * power(mid, other),
                    "{name}: leak at {other} Hz"
                );
            }
            // RMS of a sine of peak 10000 (the peak *sample* depends on the sub-sample phase).
            let r = rms(mid);
            assert!((r - 7071.0).abs() < 150.0, "{name}: rms {r}");
        }
    }
}

#[test]
fn stereo_is_downmixed_by_averaging() {
    let dir = tempfile::tempdir().unwrap();
    // Left a tone, right silent: the mono result is the tone at half amplitude.
    write_wav(
        &dir.path().join("half.wav"),
        8000,
        &[(1000.0, 10000.0), (0.0, 0.0)],
        0.5,
    );
    let lib = PromptLibrary::load(dir.path()).unwrap();
    let p = lib.get("half").unwrap();
    assert_eq!(p.len(), 4000);
    let pk = peak(p.samples());
    assert!((4900..=5100).contains(&pk), "peak {pk}");
}

#[test]
fn an_8k_mono_file_comes_back_sample_exact() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<i16> = [
        tone(440.0, 300, 20000),
        silence(20),
        vec![i16::MIN, i16::MAX, -1, 1],
    ]
    .concat();
    std::fs::write(dir.path().join("exact.wav"), wav_bytes(&samples).unwrap()).unwrap();
    let lib = PromptLibrary::load(dir.path()).unwrap();
    assert_eq!(lib.get("exact").unwrap().samples(), &samples[..]);
}

#[test]
fn encodings_equal_the_g711_encoders_applied_to_the_samples() {
    let samples: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).collect();
    let p = Prompt::from_samples("ramp", &samples);
    let ulaw: Vec<u8> = samples.iter().map(|&s| linear_to_ulaw(s)).collect();
    let alaw: Vec<u8> = samples.iter().map(|&s| linear_to_alaw(s)).collect();
    assert_eq!(p.encoded(Codec::Pcmu), &ulaw[..]);
    assert_eq!(p.encoded(Codec::Pcma), &alaw[..]);
    assert_eq!(p.samples(), &samples[..]);
}

#[test]
fn frames_are_20ms_with_the_last_padded_with_codec_silence() {
    // 2.5 frames of a loud constant signal: the padding is distinguishable from it.
    let p = Prompt::from_samples("x", &[12345; 400]);
    for codec in [Codec::Pcmu, Codec::Pcma] {
        let frames: Vec<&[u8]> = p.frames(codec, SAMPLES_PER_FRAME).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(p.frames(codec, SAMPLES_PER_FRAME).len(), 3);
        assert!(frames.iter().all(|f| f.len() == 160));
        let loud = p.encoded(codec)[0];
        assert!(frames[0].iter().chain(frames[1]).all(|&b| b == loud));
        assert!(frames[2][..80].iter().all(|&b| b == loud));
        assert!(frames[2][80..].iter().all(|&b| b == silence_byte(codec)));
    }
    assert_eq!(silence_byte(Codec::Pcmu), linear_to_ulaw(0));
    assert_eq!(silence_byte(Codec::Pcma), linear_to_alaw(0));

    // Exact multiple: no extra frame. Other ptimes work too.
    let p = Prompt::from_samples("y", &[0; 320]);
    assert_eq!(p.frames(Codec::Pcmu, 160).count(), 2);
    assert_eq!(p.frames(Codec::Pcmu, 240).count(), 2);
    assert!(p.frames(Codec::Pcma, 240).all(|f| f.len() == 240));
    assert_eq!(p.duration(), Duration::from_millis(40));
    // Absurd frame sizes are clamped, never a panic.
    assert_eq!(p.frames(Codec::Pcmu, 0).count(), 320);
    assert_eq!(
        p.frames(Codec::Pcmu, usize::MAX).next().unwrap().len(),
        MAX_SAMPLES_PER_FRAME
    );
    assert_eq!(
        Prompt::from_samples("z", &[])
            .frames(Codec::Pcmu, 160)
            .count(),
        0
    );
}

#[test]
fn prompts_are_shared_not_copied() {
    let mut lib = PromptLibrary::new();
    let added = lib.add(Prompt::from_samples("beep", &beep()));
    let got = lib.get("beep").unwrap();
    assert!(Arc::ptr_eq(&added, &got));
    assert!(lib.get("nope").is_none());
    assert_eq!(lib.names().collect::<Vec<_>>(), ["beep"]);
}

#[test]
fn missing_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-prompts");
    let err = PromptLibrary::load(&missing).unwrap_err();
    assert!(matches!(err, PromptError::Folder { ref dir, .. } if *dir == missing));
    assert!(err.to_string().contains("no-such-prompts"), "{err}");
}

#[test]
fn truncated_wav_header_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = wav_bytes(&beep()).unwrap();
    std::fs::write(dir.path().join("cut.wav"), &good[..20]).unwrap();
    let err = PromptLibrary::load(dir.path()).unwrap_err();
    let msg = err.to_string();
    let errors = file_errors(err);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].path.ends_with("cut.wav"));
    assert!(
        matches!(errors[0].cause, FileErrorCause::Corrupt { .. }),
        "{:?}",
        errors[0]
    );
    assert!(msg.contains("cut.wav"), "{msg}");
}

/// Deterministic noise with no 0xFF byte, so no MPEG frame sync can appear by chance.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8 & 0x7F
        })
        .collect()
}

#[test]
fn corrupt_mp3_ogg_flac_are_all_reported_with_their_names() {
    // Positive decoding of these formats needs encoder-made files (sox/ffmpeg/espeak-ng),
    // left to the end-to-end tests; here: every bad file is reported, not only the first.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("noise.mp3"), garbage(4096)).unwrap();
    std::fs::write(
        dir.path().join("fake.ogg"),
        [b"OggS".as_slice(), &garbage(4096)].concat(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.flac"),
        [b"fLaC".as_slice(), &garbage(4096)].concat(),
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.ogg"), []).unwrap();
    write_wav(&dir.path().join("fine.wav"), 8000, &[(1000.0, 1000.0)], 0.1);
    let err = PromptLibrary::load(dir.path()).unwrap_err();
    let msg = err.to_string();
    let errors = file_errors(err);
    let names: Vec<_> = errors
        .iter()
        .map(|e| e.path.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["bad.flac", "empty.ogg", "fake.ogg", "noise.mp3"],
        "{msg}"
    );
    for n in names {
        assert!(msg.contains(n), "{msg}");
    }
}

#[test]
fn duplicate_names_empty_audio_unsupported_and_too_long_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    write_wav(
        &dir.path().join("welcome.wav"),
        8000,
        &[(500.0, 1000.0)],
        0.1,
    );
    std::fs::write(dir.path().join("welcome.mp3"), garbage(100)).unwrap();
    write_wav(
        &dir.path().join("nothing.wav"),
        16000,
        &[(500.0, 1000.0)],
        0.0,
    );
    write_wav(&dir.path().join("long.wav"), 8000, &[(500.0, 1000.0)], 2.5);
    std::fs::write(dir.path().join("music.aiff"), garbage(100)).unwrap();
    // Not audio: ignored.
    std::fs::write(dir.path().join("README.md"), "notes").unwrap();
    std::fs::write(dir.path().join(".hidden.wav"), "junk").unwrap();
    std::fs::create_dir(dir.path().join("sub.wav")).unwrap();

    let err =
        PromptLibrary::load_with_max_duration(dir.path(), Duration::from_secs(2)).unwrap_err();
    let msg = err.to_string();
    let errors = file_errors(err);
    assert_eq!(errors.len(), 4, "{msg}");
    let cause = |file: &str| {
        &errors
            .iter()
            .find(|e| e.path.file_name().unwrap() == file)
            .unwrap_or_else(|| panic!("{file} not reported: {msg}"))
            .cause
    };
    assert!(matches!(cause("long.wav"), FileErrorCause::TooLong { max } if max.as_secs() == 2));
    assert!(matches!(cause("nothing.wav"), FileErrorCause::Empty));
    assert!(matches!(
        cause("music.aiff"),
        FileErrorCause::UnsupportedFormat { .. }
    ));
    let dup = errors
        .iter()
        .find(|e| matches!(e.cause, FileErrorCause::DuplicateName { .. }))
        .unwrap();
    let FileErrorCause::DuplicateName { name, others } = &dup.cause else {
        unreachable!()
    };
    assert_eq!(name, "welcome");
    assert_eq!(others.len(), 1);
    assert!(
        msg.contains("welcome.mp3") && msg.contains("welcome.wav"),
        "{msg}"
    );

    // The same folder under the default ten-minute cap: long.wav is fine.
    let errors = file_errors(PromptLibrary::load(dir.path()).unwrap_err());
    assert_eq!(errors.len(), 3);
}

#[test]
fn synth_signals_have_the_right_length_and_frequencies() {
    let b = beep();
    assert_eq!(b.len(), 2000);
    assert_eq!(zero_crossings(&b), 499);
    assert!(power(&b, 1000.0) > 1000.0 * power(&b, 1500.0));
    assert_eq!(silence(20), vec![0; 160]);
    for digit in Digit::ALL {
        let x = dtmf_tone(digit, 100);
        assert_eq!(x.len(), 800);
        let (low, high) = synth::dtmf_frequencies(digit);
        let p_low = power(&x, low);
        let p_high = power(&x, high);
        assert!((p_low / p_high - 1.0).abs() < 0.2, "{digit:?}");
        for f in [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0] {
            if f != low && f != high {
                assert!(power(&x, f) * 50.0 < p_low, "{digit:?} leaks at {f} Hz");
            }
        }
    }
}

/// `prompts/beep.wav` is made by `synth::beep()`; regenerate it in memory and compare, so the
/// shipped file can never drift from the code that claims to produce it.
#[test]
fn shipped_beep_wav_is_what_synth_makes() {
    let path = shipped_prompts().join("beep.wav");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes,
        wav_bytes(&beep()).unwrap(),
        "regenerate {}",
        path.display()
    );
    let lib = PromptLibrary::load(&shipped_prompts()).unwrap();
    assert_eq!(lib.get("beep").unwrap().samples(), &beep()[..]);
}

/// Corpus test: everything shipped in `prompts/` loads.
#[test]
fn every_shipped_prompt_loads() {
    let lib = PromptLibrary::load(&shipped_prompts()).unwrap();
    assert!(!lib.is_empty());
    for name in lib.names() {
        assert!(!lib.get(name).unwrap().is_empty(), "{name}");
    }
}

/// The prompts `media/examples/make_prompts.rs` ships: each loads with a sensible length, and
/// none of them (chimes, call-progress tones, hold music) looks like a DTMF key to the in-band
/// detector, which may hear them echoed back from the caller.
#[test]
fn shipped_prompts_load_with_their_lengths_and_no_dtmf() {
    let lib = PromptLibrary::load(&shipped_prompts()).unwrap();
    let expected = [
        ("beep", 250),
        ("welcome", 1000),
        ("goodbye", 1200),
        ("ringback", 5000),
        ("busy", 1000),
        ("hold", 6000),
    ];
    for (name, ms) in expected {
        let prompt = lib
            .get(name)
            .unwrap_or_else(|| panic!("prompts/{name}.wav is missing"));
        assert_eq!(prompt.duration(), Duration::from_millis(ms), "{name}");
        assert!(peak(prompt.samples()) > 1000, "{name} is silent");
        let mut detector = crate::dtmf::goertzel::Detector::new();
        for chunk in prompt.samples().chunks(SAMPLES_PER_FRAME) {
            detector.push_samples(chunk);
        }
        detector.finish();
        assert_eq!(detector.poll_event(), None, "{name} sounds like DTMF");
    }
}

/// The spoken queue announcements (`scripts/make_speech_prompts.sh`) load, are speech-length and
/// audible, and no key is heard in them: a caller's announcement must never press a key.
#[test]
fn shipped_speech_prompts_load_audible_and_without_dtmf() {
    let lib = PromptLibrary::load(&shipped_prompts()).unwrap();
    let mut names: Vec<String> = vec![
        "queue-position".into(),
        "queue-wait".into(),
        "minutes".into(),
    ];
    names.extend((0..10).map(|d| format!("digit-{d}")));
    for name in &names {
        let prompt = lib
            .get(name)
            .unwrap_or_else(|| panic!("prompts/{name}.wav is missing"));
        let d = prompt.duration();
        assert!(
            d > Duration::from_millis(200) && d < Duration::from_secs(4),
            "{name}: {d:?}"
        );
        assert!(peak(prompt.samples()) > 1000, "{name} is silent");
        let mut detector = crate::dtmf::goertzel::Detector::new();
        for chunk in prompt.samples().chunks(SAMPLES_PER_FRAME) {
            detector.push_samples(chunk);
        }
        detector.finish();
        assert_eq!(detector.poll_event(), None, "{name} sounds like DTMF");
    }
}
