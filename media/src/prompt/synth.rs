//! Synthesised 8 kHz signals: tones, silence, the voicemail beep, DTMF digits.
//!
//! All functions return 8 kHz mono samples for [`Prompt::from_samples`](super::Prompt::from_samples)
//! and are deterministic, so tests and the shipped `prompts/beep.wav` can be regenerated
//! bit for bit.

use std::f64::consts::TAU;

use super::SAMPLE_RATE;
use crate::dtmf::Digit;

/// Frequency of [`beep`], Hz.
pub const BEEP_HZ: f64 = 1000.0;
/// Length of [`beep`], ms.
pub const BEEP_MS: u32 = 250;
/// Peak amplitude of [`beep`]: about −12 dBFS, loud but far from clipping after G.711.
pub const BEEP_AMPLITUDE: i16 = 8000;
/// Peak amplitude of each of the two [`dtmf_tone`] components.
pub const DTMF_AMPLITUDE: i16 = 6000;

fn samples_for(ms: u32) -> usize {
    (u64::from(ms) * u64::from(SAMPLE_RATE) / 1000) as usize
}

/// A sine of `freq` Hz, `ms` long, with peak `amplitude`, starting at phase 0.
pub fn tone(freq: f64, ms: u32, amplitude: i16) -> Vec<i16> {
    sum_of_sines(&[(freq, amplitude)], ms)
}

fn sum_of_sines(parts: &[(f64, i16)], ms: u32) -> Vec<i16> {
    let rate = f64::from(SAMPLE_RATE);
    (0..samples_for(ms))
        .map(|n| {
            let t = n as f64 / rate;
            let v: f64 = parts
                .iter()
                .map(|&(f, a)| f64::from(a) * (TAU * f * t).sin())
                .sum();
            v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// `ms` of digital silence.
pub fn silence(ms: u32) -> Vec<i16> {
    vec![0; samples_for(ms)]
}

/// The voicemail beep: 1 kHz for 250 ms.
pub fn beep() -> Vec<i16> {
    tone(BEEP_HZ, BEEP_MS, BEEP_AMPLITUDE)
}

/// The (low, high) frequency pair of a DTMF key (ITU-T Q.23).
pub fn dtmf_frequencies(digit: Digit) -> (f64, f64) {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (row, col) = match digit {
        Digit::D1 => (0, 0),
        Digit::D2 => (0, 1),
        Digit::D3 => (0, 2),
        Digit::A => (0, 3),
        Digit::D4 => (1, 0),
        Digit::D5 => (1, 1),
        Digit::D6 => (1, 2),
        Digit::B => (1, 3),
        Digit::D7 => (2, 0),
        Digit::D8 => (2, 1),
        Digit::D9 => (2, 2),
        Digit::C => (2, 3),
        Digit::Star => (3, 0),
        Digit::D0 => (3, 1),
        Digit::Pound => (3, 2),
        Digit::D => (3, 3),
    };
    (ROWS[row], COLS[col])
}

/// The in-band tone of `digit`, `ms` long: both frequencies at [`DTMF_AMPLITUDE`].
pub fn dtmf_tone(digit: Digit, ms: u32) -> Vec<i16> {
    let (low, high) = dtmf_frequencies(digit);
    sum_of_sines(&[(low, DTMF_AMPLITUDE), (high, DTMF_AMPLITUDE)], ms)
}

/// 8 kHz mono 16-bit WAV bytes of `samples` (how `prompts/beep.wav` is made).
pub fn wav_bytes(samples: &[i16]) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec)?;
    for &s in samples {
        writer.write_sample(s)?;
    }
    writer.finalize()?;
    Ok(cursor.into_inner())
}
