//! Writes the prompts Switchboard ships in `prompts/`: short tones and chimes made here, so the
//! repository holds no recorded audio of unknown origin. Every file is 8 kHz mono 16-bit WAV,
//! the library's native format, and the output is deterministic: running this again gives the
//! same bytes.
//!
//! ```text
//! cargo run -p switchboard-media --example make_prompts            # rewrite prompts/
//! cargo run -p switchboard-media --example make_prompts -- --check # compare, exit 1 on drift
//! cargo run -p switchboard-media --example make_prompts -- DIR     # write elsewhere
//! ```

use std::f64::consts::TAU;
use std::path::PathBuf;
use std::process::ExitCode;

use switchboard_media::prompt::synth::{beep, silence, tone, wav_bytes};
use switchboard_media::prompt::SAMPLE_RATE;

/// Call-progress tone frequency of ETSI ES 201 970 / ITU-T E.180 (most of Europe).
const CALL_PROGRESS_HZ: f64 = 425.0;
/// Peak amplitude of the call-progress tones: −13 dBm0 (0 dBm0 is 0.694 of full scale).
const CALL_PROGRESS_AMPLITUDE: i16 = 5100;
/// Peak of the chimes and the hold music before any overlap, about −14 dBFS.
const CHIME_PEAK: f64 = 6500.0;

/// Equal-tempered note frequencies used below (A4 = 440 Hz).
const C5: f64 = 523.25;
const E5: f64 = 659.26;
const G5: f64 = 783.99;
const A4: f64 = 440.0;
const C4: f64 = 261.63;
const E4: f64 = 329.63;
const F4: f64 = 349.23;
const G4: f64 = 392.0;
const A3: f64 = 220.0;
const B4: f64 = 493.88;
const D5: f64 = 587.33;
const F3: f64 = 174.61;
const G3: f64 = 196.0;
const C3: f64 = 130.81;

fn samples(ms: u32) -> usize {
    (u64::from(ms) * u64::from(SAMPLE_RATE) / 1000) as usize
}

/// A mixing buffer of `ms` milliseconds; notes are added into it, then it is quantised once.
struct Mix(Vec<f64>);

impl Mix {
    fn new(ms: u32) -> Self {
        Mix(vec![0.0; samples(ms)])
    }

    /// A struck-bell note at `at_ms`: a 5 ms attack (no click), then an exponential decay with
    /// time constant `decay_ms`; a softer octave partial gives it a chime's colour. The note is
    /// cut where the buffer ends, so the last note's decay must fit.
    fn bell(&mut self, at_ms: u32, freq: f64, peak: f64, decay_ms: f64) -> &mut Self {
        let rate = f64::from(SAMPLE_RATE);
        let attack = samples(5) as f64;
        for (n, out) in self.0.iter_mut().skip(samples(at_ms)).enumerate() {
            let t = n as f64 / rate;
            let env = (n as f64 / attack).min(1.0) * (-t * 1000.0 / decay_ms).exp();
            let partials = (TAU * freq * t).sin()
                + 0.25 * (-t * 2000.0 / decay_ms).exp() * (TAU * 2.0 * freq * t).sin();
            *out += peak * env * partials;
        }
        self
    }

    /// Quantised to 16 bits, with the last 20 ms faded out so a looped or cut prompt never clicks.
    fn finish(&self) -> Vec<i16> {
        let fade = samples(20);
        let len = self.0.len();
        self.0
            .iter()
            .enumerate()
            .map(|(n, &v)| {
                let left = len - n;
                let v = if left < fade {
                    v * left as f64 / fade as f64
                } else {
                    v
                };
                v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
            })
            .collect()
    }
}

/// `welcome`: an ascending two-note chime (C5, then G5 a quarter second later), 1 s.
fn welcome() -> Vec<i16> {
    Mix::new(1000)
        .bell(0, C5, CHIME_PEAK, 220.0)
        .bell(250, G5, CHIME_PEAK, 220.0)
        .finish()
}

/// `goodbye`: a descending three-note chime (G5, E5, C5), 1.2 s.
fn goodbye() -> Vec<i16> {
    Mix::new(1200)
        .bell(0, G5, CHIME_PEAK, 200.0)
        .bell(200, E5, CHIME_PEAK, 200.0)
        .bell(400, C5, CHIME_PEAK, 260.0)
        .finish()
}

/// `ringback`: one ETSI cadence, 425 Hz for 1 s then 4 s of silence; played in a loop.
fn ringback() -> Vec<i16> {
    let mut out = tone(CALL_PROGRESS_HZ, 1000, CALL_PROGRESS_AMPLITUDE);
    out.extend(silence(4000));
    out
}

/// `busy`: one ETSI cadence, 425 Hz for 0.5 s then 0.5 s of silence; played in a loop.
fn busy() -> Vec<i16> {
    let mut out = tone(CALL_PROGRESS_HZ, 500, CALL_PROGRESS_AMPLITUDE);
    out.extend(silence(500));
    out
}

/// `hold`: 6 s of soft arpeggios over C – Am – F – G, a music-on-hold stand-in that loops
/// seamlessly (it starts and ends near silence on the tonic). One note at a time is struck,
/// so no two simultaneous tones ever form a DTMF pair.
fn hold() -> Vec<i16> {
    const BARS: [[f64; 4]; 4] = [
        [C3, E4, G4, C5],
        [A3, E4, A4, C5],
        [F3, F4, A4, C5],
        [G3, D5, G4, B4],
    ];
    let mut mix = Mix::new(6000);
    for (bar, notes) in BARS.iter().enumerate() {
        for (i, &f) in notes.iter().enumerate() {
            let at = bar as u32 * 1500 + i as u32 * 375;
            let peak = if i == 0 { 0.45 } else { 0.3 } * CHIME_PEAK;
            mix.bell(at, f, peak, 300.0);
        }
    }
    // A soft low C under the first bar so the loop has a root.
    mix.bell(0, C4, 0.2 * CHIME_PEAK, 600.0);
    mix.finish()
}

/// Every shipped prompt: file name and samples.
fn prompts() -> Vec<(&'static str, Vec<i16>)> {
    vec![
        ("beep.wav", beep()),
        ("welcome.wav", welcome()),
        ("goodbye.wav", goodbye()),
        ("ringback.wav", ringback()),
        ("busy.wav", busy()),
        ("hold.wav", hold()),
    ]
}

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            other => dir = PathBuf::from(other),
        }
    }
    let mut drift = false;
    for (name, samples) in prompts() {
        let path = dir.join(name);
        let bytes = wav_bytes(&samples).expect("WAV encoding into memory cannot fail");
        if check {
            if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                eprintln!("{} differs from what make_prompts writes", path.display());
                drift = true;
            }
        } else if let Err(e) = std::fs::write(&path, &bytes) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!(
                "{} ({} ms)",
                path.display(),
                samples.len() * 1000 / SAMPLE_RATE as usize
            );
        }
    }
    if drift {
        eprintln!("regenerate with: cargo run -p switchboard-media --example make_prompts");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
