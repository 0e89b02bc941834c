//! In-band DTMF detection (ITU-T Q.23 frequencies, Q.24-style acceptance rules) with the
//! Goertzel algorithm, for callers whose gateway sends tones in the audio instead of RFC 4733
//! events.
//!
//! Input is 8 kHz linear 16-bit audio in chunks of any size ([`Detector::push_samples`]); output
//! is one [`ToneEvent::DigitStarted`] and one [`ToneEvent::DigitEnded`] per key press, positioned
//! by sample index since the detector was created (time is the sample count, never a clock).
//!
//! # Block size
//! Analysis runs on blocks of [`BLOCK`] = 102 samples (12.75 ms). The Goertzel filters use the
//! exact DTMF frequencies (`2·cos(2πf/fs)`, not the nearest DFT bin), so the block length only
//! trades resolution against time: the rectangular window's main lobe is ±78 Hz wide, enough to
//! separate the closest pair (697/770 Hz, leakage −22 dB), while blocks stay short enough that a
//! 40 ms tone always covers two whole blocks (2·102 + 101 ≤ 320) and a 20 ms tone never does
//! (160 < 2·102). Three 34-sample thirds per block give the stationarity check below. The
//! classic 205-sample block resolves better but cannot honour the 40 ms / 20 ms limits without
//! overlapping blocks.
//!
//! # Per-block decision (all must hold)
//! - **Level**: each tone ≥ [`MIN_TONE_AMPLITUDE`] (−36.5 dBm0 per tone; 0 dBm0 is a sine of
//!   amplitude 0.694 of full scale in G.711): tones at −36 dBm0 are accepted, at −37 dBm0
//!   rejected.
//! - **Peak**: the strongest row tone is ≥ 8 dB above the other rows, likewise for columns.
//! - **Twist**: column up to 8 dB above row (normal twist) and row up to 4 dB above column
//!   (reverse twist) are accepted; 9 dB and 5 dB are rejected (thresholds half-way).
//!
//!   Level and twist use the two tones' powers from a joint least-squares fit of both sinusoids
//!   to the block (`Detector::pair_power`), not the Goertzel outputs: over 102 samples each
//!   Goertzel filter also sees the other tone through the window's side lobes, which moved the
//!   measured twist by up to 2 dB with the tones' phases, so a "8 dB" limit accepted anything
//!   between 6.6 and 8.6 dB. The fit is exact for two pure tones; measured on the tests'
//!   signals the transition is now within ±0.1 dB of the threshold.
//! - **Signal to rest of band**: the two tones hold ≥ 70 % of the block's energy (speech, music
//!   and noise spread theirs).
//! - **Frequency**: each tone is stronger at its nominal frequency than at ±5 % of it. For a
//!   rectangular window the crossover is half-way, so deviations up to ≈ 2.5 % pass: Q.24 asks
//!   to accept ±1.5 % and reject ±3.5 %.
//! - **Second harmonic** (talk-off guard): the column tone's second harmonic (2418–3266 Hz, no
//!   DTMF tone near it) is ≥ 10 dB below the tone. Rows are not checked: their harmonics fall
//!   within 4–6 % of column tones, which leak into the harmonic filter.
//!
//! # Time rules
//! A block whose decision names a digit is *present*; it is a *hit* if, in addition, its three
//! 34-sample thirds carry similar energy (min ≥ ½ max): the tone fills the whole block rather
//! than starting or stopping inside it. (Both tones beat at 268–936 Hz; over 34 samples that moves
//! a third's energy by ≤ ±22 %.) A digit starts after [`HITS_TO_START`] = 2 consecutive hits and
//! ends after [`MISSES_TO_END`] = 2 consecutive blocks that are not present. So:
//! - a tone ≥ 38.1 ms (305 samples) always contains two whole blocks: accepted (Q.24: ≥ 40 ms);
//! - a tone ≤ 20 ms (160 samples) is never accepted: a partly covered block is a hit only if
//!   its emptiest third is at least half filled (≥ 85 samples of tone), and 160 samples cannot
//!   make two such blocks, whole or not (102 + 85 > 160);
//! - the same digit repeats only after a gap of two absent blocks (≥ 25.5 ms), so a single
//!   dropped block inside a long tone does not split it.
//!
//! Talk-off is tested with seeded white noise, chords, sweeps and speech synthesised by
//! `espeak-ng` (digits spoken aloud included), all of which must produce no digit.

use std::collections::VecDeque;

use super::rfc4733::Digit;

/// Sample rate the detector expects.
pub const SAMPLE_RATE: u32 = 8000;
/// Analysis block length in samples (12.75 ms at 8 kHz).
pub const BLOCK: usize = 102;
/// Length of the thirds used for the stationarity check.
const THIRD: usize = BLOCK / 3;
/// Minimum peak amplitude of each tone, as a fraction of full scale (−36.5 dBm0 ≈ −39.7 dBFS),
/// half-way between the accepted −36 dBm0 and the rejected −37 dBm0.
pub const MIN_TONE_AMPLITUDE: f32 = 0.694 * 0.014_96;
/// Consecutive whole-block hits needed to start a digit.
pub const HITS_TO_START: u8 = 2;
/// Consecutive absent blocks that end a digit.
pub const MISSES_TO_END: u8 = 2;

/// Q.23 row (low group) and column (high group) frequencies.
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Keypad layout: `KEYS[row][col]`.
const KEYS: [[Digit; 4]; 4] = [
    [Digit::D1, Digit::D2, Digit::D3, Digit::A],
    [Digit::D4, Digit::D5, Digit::D6, Digit::B],
    [Digit::D7, Digit::D8, Digit::D9, Digit::C],
    [Digit::Star, Digit::D0, Digit::Pound, Digit::D],
];

/// Power ratios for the rules in the module docs.
const PEAK_RATIO: f32 = 6.31; // 8 dB
const NORMAL_TWIST: f32 = 7.08; // 8.5 dB, column louder
const REVERSE_TWIST: f32 = 2.82; // 4.5 dB, row louder
const TONE_FRACTION: f32 = 0.7;
const PROBE_OFFSET: f32 = 0.05;
const HARMONIC_RATIO: f32 = 0.1; // 10 dB
const STATIONARY_RATIO: f32 = 0.5;

/// What the detector reports; positions are sample indices since the detector was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToneEvent {
    /// Reported once the digit has been present for two whole blocks, i.e. ≈ 25–38 ms after
    /// `start`.
    DigitStarted { digit: Digit, start: u64 },
    /// `duration` is in samples, block-quantised (±1 block).
    DigitEnded {
        digit: Digit,
        start: u64,
        duration: u64,
    },
}

/// A Goertzel filter coefficient, `2·cos(2πf/fs)`.
fn coeff(freq: f32) -> f32 {
    2.0 * (2.0 * std::f32::consts::PI * freq / SAMPLE_RATE as f32).cos()
}

/// Mean-square power of the component at the filter's frequency, scaled so that a sine of
/// amplitude `a` gives `a²/2`.
fn tone_power(block: &[f32; BLOCK], coeff: f32) -> f32 {
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in block {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let magnitude2 = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * magnitude2 / (BLOCK * BLOCK) as f32
}

#[derive(Debug, Clone, Copy)]
struct Active {
    digit: Digit,
    start: u64,
    /// End of the last present block.
    end: u64,
    misses: u8,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    digit: Digit,
    start: u64,
    hits: u8,
}

/// Stateful in-band DTMF detector; see the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Detector {
    rows: [f32; 4],
    cols: [f32; 4],
    row_probes: [[f32; 2]; 4],
    col_probes: [[f32; 2]; 4],
    col_harmonics: [f32; 4],
    block: [f32; BLOCK],
    fill: usize,
    /// Samples consumed before the current block.
    position: u64,
    candidate: Option<Candidate>,
    active: Option<Active>,
    events: VecDeque<ToneEvent>,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

impl Detector {
    pub fn new() -> Self {
        let probes = |f: f32| {
            [
                coeff(f * (1.0 - PROBE_OFFSET)),
                coeff(f * (1.0 + PROBE_OFFSET)),
            ]
        };
        Detector {
            rows: ROWS.map(coeff),
            cols: COLS.map(coeff),
            row_probes: ROWS.map(probes),
            col_probes: COLS.map(probes),
            col_harmonics: COLS.map(|f| coeff(2.0 * f)),
            block: [0.0; BLOCK],
            fill: 0,
            position: 0,
            candidate: None,
            active: None,
            events: VecDeque::new(),
        }
    }

    /// Feeds audio (8 kHz, linear, any chunk size). Allocates nothing per sample.
    pub fn push_samples(&mut self, samples: &[i16]) {
        for &s in samples {
            self.block[self.fill] = f32::from(s) / 32768.0;
            self.fill += 1;
            if self.fill == BLOCK {
                self.fill = 0;
                let (digit, whole) = self.analyse();
                self.step(digit, whole);
                self.position += BLOCK as u64;
            }
        }
    }

    /// Ends a digit still sounding when the audio stops (end of call, switch to RFC 4733).
    pub fn finish(&mut self) {
        if let Some(a) = self.active.take() {
            self.push_end(&a);
        }
        self.candidate = None;
    }

    /// The next report, in order.
    pub fn poll_event(&mut self) -> Option<ToneEvent> {
        self.events.pop_front()
    }

    /// Per-block decision: the digit present, if any, and whether the block is a whole-block hit.
    fn analyse(&self) -> (Option<Digit>, bool) {
        let block = &self.block;
        let rows = self.rows.map(|c| tone_power(block, c));
        let cols = self.cols.map(|c| tone_power(block, c));
        let (Some(r), Some(c)) = (dominant(&rows), dominant(&cols)) else {
            return (None, false);
        };
        let (pr, pc) = (rows[r], cols[c]);
        // Level and twist come from a joint fit of the two tones, free of their mutual leakage.
        let (fr, fc) = self.pair_power(r, c);
        let min_power = MIN_TONE_AMPLITUDE * MIN_TONE_AMPLITUDE / 2.0;
        if fr < min_power || fc < min_power {
            return (None, false);
        }
        if fc > fr * NORMAL_TWIST || fr > fc * REVERSE_TWIST {
            return (None, false);
        }
        let total = block.iter().map(|x| x * x).sum::<f32>() / BLOCK as f32;
        if pr + pc < TONE_FRACTION * total {
            return (None, false);
        }
        let on_frequency =
            |p: f32, probes: &[f32; 2]| probes.iter().all(|&k| tone_power(block, k) < p);
        if !on_frequency(pr, &self.row_probes[r]) || !on_frequency(pc, &self.col_probes[c]) {
            return (None, false);
        }
        if tone_power(block, self.col_harmonics[c]) > pc * HARMONIC_RATIO {
            return (None, false);
        }
        let thirds: [f32; 3] = std::array::from_fn(|i| {
            block[i * THIRD..(i + 1) * THIRD]
                .iter()
                .map(|x| x * x)
                .sum()
        });
        let (lo, hi) = thirds
            .iter()
            .fold((f32::MAX, 0.0f32), |(lo, hi), &e| (lo.min(e), hi.max(e)));
        (Some(KEYS[r][c]), lo >= STATIONARY_RATIO * hi)
    }

    /// Mean-square power of the row tone `r` and the column tone `c`, fitted jointly: the block
    /// is projected by least squares onto `cos` and `sin` of both frequencies (a 4×4 normal
    /// system). A Goertzel filter alone also picks up the other tone through the rectangular
    /// window's side lobes (−20 dB at the closest row/column spacing, 268 Hz), which moved the
    /// measured level and twist by up to 2 dB depending on phase; the fit cancels that exactly
    /// for two pure tones, so the level and twist limits are sharp.
    fn pair_power(&self, r: usize, c: usize) -> (f32, f32) {
        let w = |f: f32| 2.0 * std::f64::consts::PI * f64::from(f) / f64::from(SAMPLE_RATE);
        let (wr, wc) = (w(ROWS[r]), w(COLS[c]));
        let mut gram = [[0.0f64; 4]; 4];
        let mut proj = [0.0f64; 4];
        for (n, &x) in self.block.iter().enumerate() {
            let t = n as f64;
            let basis = [
                (wr * t).cos(),
                (wr * t).sin(),
                (wc * t).cos(),
                (wc * t).sin(),
            ];
            for ((row, p), &bi) in gram.iter_mut().zip(&mut proj).zip(&basis) {
                *p += bi * f64::from(x);
                for (g, &bj) in row.iter_mut().zip(&basis) {
                    *g += bi * bj;
                }
            }
        }
        let a = solve4(gram, proj);
        let power = |p: f64, q: f64| ((p * p + q * q) / 2.0) as f32;
        (power(a[0], a[1]), power(a[2], a[3]))
    }

    fn step(&mut self, digit: Option<Digit>, whole: bool) {
        let (start, end) = (self.position, self.position + BLOCK as u64);
        self.candidate = match (digit, self.candidate) {
            (Some(d), Some(c)) if whole && c.digit == d => Some(Candidate {
                hits: c.hits.saturating_add(1),
                ..c
            }),
            (Some(d), _) if whole => Some(Candidate {
                digit: d,
                start,
                hits: 1,
            }),
            _ => None,
        };
        if let Some(mut a) = self.active {
            if digit == Some(a.digit) {
                a.misses = 0;
                a.end = end;
                // Still the same press: don't let it count towards a repeat.
                self.candidate = None;
                self.active = Some(a);
            } else {
                a.misses += 1;
                self.active = Some(a);
                if a.misses >= MISSES_TO_END {
                    self.active = None;
                    self.push_end(&a);
                }
            }
        }
        if self.active.is_none() {
            if let Some(c) = self.candidate.filter(|c| c.hits >= HITS_TO_START) {
                self.events.push_back(ToneEvent::DigitStarted {
                    digit: c.digit,
                    start: c.start,
                });
                self.active = Some(Active {
                    digit: c.digit,
                    start: c.start,
                    end,
                    misses: 0,
                });
                self.candidate = None;
            }
        }
    }

    fn push_end(&mut self, a: &Active) {
        self.events.push_back(ToneEvent::DigitEnded {
            digit: a.digit,
            start: a.start,
            duration: a.end - a.start,
        });
    }
}

/// Solves `m·x = v` by Gaussian elimination with partial pivoting. The systems here are normal
/// equations of four well-separated sinusoids over 102 samples, far from singular; a zero pivot
/// (impossible for these frequencies) yields zeros rather than a panic or NaN.
fn solve4(mut m: [[f64; 4]; 4], mut v: [f64; 4]) -> [f64; 4] {
    for col in 0..4 {
        let pivot = (col..4)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap_or(col);
        m.swap(col, pivot);
        v.swap(col, pivot);
        if m[col][col].abs() < 1e-9 {
            return [0.0; 4];
        }
        let (pivot_row, pivot_v) = (m[col], v[col]);
        for (row, vr) in m.iter_mut().zip(&mut v).skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (x, &p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *x -= f * p;
            }
            *vr -= f * pivot_v;
        }
    }
    let mut x = [0.0f64; 4];
    for row in (0..4).rev() {
        let tail: f64 = (row + 1..4).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - tail) / m[row][row];
    }
    x
}

/// Index of the strongest tone if it exceeds every other by [`PEAK_RATIO`].
fn dominant(powers: &[f32; 4]) -> Option<usize> {
    let (best, &p) = powers
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    let clear = powers
        .iter()
        .enumerate()
        .all(|(i, &q)| i == best || q * PEAK_RATIO < p);
    clear.then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row and column frequency of a key.
    fn freqs(d: Digit) -> (f32, f32) {
        for (r, row) in KEYS.iter().enumerate() {
            for (c, &k) in row.iter().enumerate() {
                if k == d {
                    return (ROWS[r], COLS[c]);
                }
            }
        }
        unreachable!()
    }

    /// Amplitude (fraction of full scale) of a sine at `dbm0` dBm0 (G.711: 0 dBm0 = 0.694 FS).
    fn amp(dbm0: f32) -> f32 {
        0.694 * 10f32.powf(dbm0 / 20.0)
    }

    /// Deterministic audio: tones, pauses and seeded white noise.
    struct Gen {
        out: Vec<f32>,
        seed: u64,
        noise: f32,
    }

    impl Gen {
        fn new(noise_dbfs: Option<f32>) -> Self {
            Gen {
                out: Vec::new(),
                seed: 0x2545_f491_4f6c_dd1d,
                noise: noise_dbfs.map_or(0.0, |d| 10f32.powf(d / 20.0)),
            }
        }

        fn uniform(&mut self) -> f32 {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            (self.seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }

        /// Approximately Gaussian with unit RMS (sum of 12 uniforms).
        fn gauss(&mut self) -> f32 {
            (0..12).map(|_| self.uniform()).sum()
        }

        fn signal(&mut self, len: usize, f: impl Fn(usize) -> f32) -> &mut Self {
            for n in 0..len {
                let v = f(n) + self.noise * self.gauss();
                self.out.push(v);
            }
            self
        }

        fn pause(&mut self, ms: usize) -> &mut Self {
            self.signal(ms * 8, |_| 0.0)
        }

        /// A key with per-tone levels (dBm0) and relative frequency deviations.
        fn key(&mut self, d: Digit, ms: usize, levels: (f32, f32), dev: (f32, f32)) -> &mut Self {
            let (fr, fc) = freqs(d);
            let (fr, fc) = (fr * (1.0 + dev.0), fc * (1.0 + dev.1));
            let (ar, ac) = (amp(levels.0), amp(levels.1));
            let w = 2.0 * std::f32::consts::PI / 8000.0;
            self.signal(ms * 8, |n| {
                let t = n as f32;
                ar * (w * fr * t).sin() + ac * (w * fc * t + 1.0).sin()
            })
        }

        fn samples(&self) -> Vec<i16> {
            self.out
                .iter()
                .map(|&v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
                .collect()
        }
    }

    fn detect_chunked(samples: &[i16], chunk: usize) -> Vec<ToneEvent> {
        let mut d = Detector::new();
        for c in samples.chunks(chunk) {
            d.push_samples(c);
        }
        d.finish();
        std::iter::from_fn(|| d.poll_event()).collect()
    }

    fn digits(samples: &[i16]) -> String {
        detect_chunked(samples, 160)
            .iter()
            .filter_map(|e| match e {
                ToneEvent::DigitStarted { digit, .. } => Some(digit.as_char()),
                ToneEvent::DigitEnded { .. } => None,
            })
            .collect()
    }

    const NOMINAL: (f32, f32) = (-10.0, -10.0);
    const NOISE: Option<f32> = Some(-50.0);

    /// One key after `lead` samples of silence, then silence.
    fn one(d: Digit, ms: usize, levels: (f32, f32), dev: (f32, f32), lead: usize) -> Vec<i16> {
        let mut g = Gen::new(NOISE);
        g.signal(lead, |_| 0.0).key(d, ms, levels, dev).pause(100);
        g.samples()
    }

    #[test]
    fn every_key_nominal() {
        for d in Digit::ALL {
            let s = one(d, 60, NOMINAL, (0.0, 0.0), 37);
            assert_eq!(digits(&s), d.to_string(), "key {d}");
        }
    }

    #[test]
    fn start_and_duration_are_reported() {
        let s = one(Digit::D5, 200, NOMINAL, (0.0, 0.0), 500);
        let events = detect_chunked(&s, 7);
        assert_eq!(events.len(), 2);
        let ToneEvent::DigitEnded {
            digit,
            start,
            duration,
        } = events[1]
        else {
            panic!("{events:?}")
        };
        assert_eq!(digit, Digit::D5);
        assert!((500..=500 + BLOCK as u64).contains(&start), "{start}");
        assert!(duration.abs_diff(1600) <= 2 * BLOCK as u64, "{duration}");
    }

    #[test]
    fn chunk_size_does_not_matter() {
        let mut g = Gen::new(NOISE);
        for d in [Digit::D1, Digit::Pound, Digit::D1] {
            g.key(d, 70, NOMINAL, (0.0, 0.0)).pause(60);
        }
        let s = g.samples();
        let reference = detect_chunked(&s, s.len());
        assert_eq!(reference.len(), 6);
        for chunk in [1, 3, 101, 102, 103, 160, 1000] {
            assert_eq!(detect_chunked(&s, chunk), reference, "chunk {chunk}");
        }
    }

    #[test]
    fn frequency_deviation_within_1_5_percent_is_accepted() {
        for d in Digit::ALL {
            for dev in [
                (0.015, 0.015),
                (-0.015, -0.015),
                (0.015, -0.015),
                (-0.015, 0.015),
            ] {
                let s = one(d, 60, NOMINAL, dev, 11);
                assert_eq!(digits(&s), d.to_string(), "key {d} deviation {dev:?}");
            }
        }
    }

    #[test]
    fn frequency_deviation_of_3_5_percent_is_rejected() {
        for d in Digit::ALL {
            for dev in [
                (0.035, 0.0),
                (-0.035, 0.0),
                (0.0, 0.035),
                (0.0, -0.035),
                (0.035, 0.035),
                (-0.035, -0.035),
            ] {
                let s = one(d, 100, NOMINAL, dev, 11);
                assert_eq!(digits(&s), "", "key {d} deviation {dev:?}");
            }
        }
    }

    #[test]
    fn forty_ms_accepted_twenty_ms_rejected_at_any_alignment() {
        for d in [Digit::D1, Digit::D0, Digit::D, Digit::D9] {
            for lead in (0..BLOCK).step_by(7) {
                let long = one(d, 40, NOMINAL, (0.0, 0.0), lead);
                assert_eq!(digits(&long), d.to_string(), "40 ms key {d} lead {lead}");
                let short = one(d, 20, NOMINAL, (0.0, 0.0), lead);
                assert_eq!(digits(&short), "", "20 ms key {d} lead {lead}");
            }
        }
    }

    /// Leads that put the tone's start at different places in the first block.
    const LEADS: [usize; 6] = [0, 17, 34, 51, 68, 85];

    #[test]
    fn twist_within_limits_is_accepted() {
        for d in Digit::ALL {
            // Normal twist: column up to 8 dB louder; reverse twist: row up to 4 dB louder.
            for levels in [
                (-16.0, -10.0),
                (-18.0, -10.0),
                (-10.0, -13.0),
                (-10.0, -14.0),
            ] {
                for lead in LEADS {
                    let s = one(d, 60, levels, (0.0, 0.0), lead);
                    let got = digits(&s);
                    assert_eq!(got, d.to_string(), "key {d} levels {levels:?} lead {lead}");
                }
            }
        }
    }

    #[test]
    fn twist_beyond_limits_is_rejected() {
        for d in Digit::ALL {
            // Column 9 and 10 dB louder (normal twist > 8 dB); row 5, 6 and 10 dB louder
            // (reverse twist > 4 dB).
            for levels in [
                (-19.0, -10.0),
                (-20.0, -10.0),
                (-10.0, -15.0),
                (-10.0, -16.0),
                (-5.0, -15.0),
            ] {
                for lead in LEADS {
                    let s = one(d, 100, levels, (0.0, 0.0), lead);
                    assert_eq!(digits(&s), "", "key {d} levels {levels:?} lead {lead}");
                }
            }
        }
    }

    #[test]
    fn level_limits() {
        let at = |d: Digit, dbm0: f32, lead: usize| {
            let mut g = Gen::new(None);
            g.signal(lead, |_| 0.0)
                .key(d, 60, (dbm0, dbm0), (0.0, 0.0))
                .pause(100);
            digits(&g.samples())
        };
        for d in Digit::ALL {
            let moderate = one(d, 60, (-25.0, -25.0), (0.0, 0.0), 0);
            assert_eq!(digits(&moderate), d.to_string(), "key {d} at -25 dBm0");
            // The documented limits: −36 dBm0 per tone accepted, −37 dBm0 rejected.
            for lead in LEADS {
                assert_eq!(at(d, -36.0, lead), d.to_string(), "key {d} at -36 dBm0");
                assert_eq!(at(d, -37.0, lead), "", "key {d} at -37 dBm0 lead {lead}");
            }
            let mut g = Gen::new(None);
            g.key(d, 200, (-45.0, -45.0), (0.0, 0.0));
            assert_eq!(digits(&g.samples()), "", "key {d} at -45 dBm0");
        }
        // Loud tones near full scale (clipping at the peaks) still work.
        let loud = one(Digit::D8, 60, (-1.0, -1.0), (0.0, 0.0), 0);
        assert_eq!(digits(&loud), "8");
    }

    #[test]
    fn sequence_with_50_ms_tones_and_pauses_is_detected_exactly_once() {
        let keys = "0123456789*#ABCD";
        let mut g = Gen::new(Some(-40.0));
        g.pause(30);
        for c in keys.chars() {
            g.key(Digit::from_char(c).unwrap(), 50, (-12.0, -10.0), (0.0, 0.0))
                .pause(50);
        }
        assert_eq!(digits(&g.samples()), keys);
    }

    #[test]
    fn repeated_key_needs_a_gap() {
        let mut g = Gen::new(NOISE);
        g.key(Digit::D1, 60, NOMINAL, (0.0, 0.0))
            .pause(50)
            .key(Digit::D1, 60, NOMINAL, (0.0, 0.0))
            .pause(50);
        assert_eq!(digits(&g.samples()), "11");
        // One continuous press with a 5 ms dropout stays one digit.
        let mut g = Gen::new(NOISE);
        g.key(Digit::D1, 100, NOMINAL, (0.0, 0.0)).pause(5).key(
            Digit::D1,
            100,
            NOMINAL,
            (0.0, 0.0),
        );
        assert_eq!(digits(&g.samples()), "1");
    }

    #[test]
    fn forty_ms_pause_separates_the_same_key() {
        for d in [Digit::D1, Digit::D5, Digit::Pound, Digit::D] {
            for lead in (0..BLOCK).step_by(7) {
                let mut g = Gen::new(NOISE);
                g.signal(lead, |_| 0.0)
                    .key(d, 40, NOMINAL, (0.0, 0.0))
                    .pause(40)
                    .key(d, 40, NOMINAL, (0.0, 0.0))
                    .pause(40)
                    .key(d, 40, NOMINAL, (0.0, 0.0))
                    .pause(100);
                assert_eq!(
                    digits(&g.samples()),
                    d.to_string().repeat(3),
                    "key {d} lead {lead}"
                );
            }
        }
    }

    #[test]
    fn accepted_in_moderate_noise() {
        // Tones at -20 dBm0 each (mean-square -26 dBFS each) in white noise at -40 dBFS RMS,
        // ~15 dB signal-to-noise over the whole band.
        for d in Digit::ALL {
            for lead in [0, 51] {
                let mut g = Gen::new(Some(-40.0));
                g.pause(lead)
                    .key(d, 45, (-20.0, -20.0), (0.0, 0.0))
                    .pause(60);
                assert_eq!(digits(&g.samples()), d.to_string(), "key {d} lead {lead}");
            }
        }
    }

    #[test]
    fn white_noise_detects_nothing() {
        for dbfs in [-40.0, -20.0, -10.0] {
            let mut g = Gen::new(Some(dbfs));
            g.pause(10_000);
            assert_eq!(digits(&g.samples()), "", "noise at {dbfs} dBFS");
        }
    }

    #[test]
    fn music_detects_nothing() {
        let w = 2.0 * std::f32::consts::PI / 8000.0;
        // A major chord over two octaves (A3..E6), none of it a DTMF pair.
        let chord = [
            220.0, 277.18, 329.63, 440.0, 554.37, 659.26, 880.0, 1108.73, 1318.51,
        ];
        let mut g = Gen::new(NOISE);
        g.signal(16_000, |n| {
            chord.iter().map(|&f| 0.08 * (w * f * n as f32).sin()).sum()
        });
        // Two-note intervals that are not DTMF pairs.
        for (a, b) in [
            (659.26, 1318.51),
            (880.0, 1174.66),
            (587.33, 1396.91),
            (1000.0, 2000.0),
        ] {
            g.signal(4000, |n| {
                0.2 * (w * a * n as f32).sin() + 0.2 * (w * b * n as f32).sin()
            });
        }
        assert_eq!(digits(&g.samples()), "");
    }

    #[test]
    fn chord_progressions_detect_nothing() {
        // Triads and seventh chords in several keys (equal temperament, A4 = 440 Hz), each held
        // 400 ms, with the upper partials of a plucked string (2nd and 3rd harmonic at −6 and
        // −12 dB), at three loudness levels. Some notes fall within 3 % of DTMF tones (D5 =
        // 587 Hz, F#6 = 1480 Hz), but never a row and a column alone.
        let w = 2.0 * std::f32::consts::PI / 8000.0;
        let note = |semitones_from_a4: i32| 440.0 * 2f32.powf(semitones_from_a4 as f32 / 12.0);
        let chords: [&[i32]; 8] = [
            &[-9, -5, -2],         // C major (C4 E4 G4)
            &[-4, 0, 3],           // F major
            &[-2, 2, 5, 8],        // G7
            &[0, 3, 7],            // A minor, an octave higher
            &[5, 9, 12],           // D major
            &[-7, -3, 0, 3],       // D minor 7
            &[10, 14, 17],         // G major, high
            &[-21, -9, -5, -2, 3], // C major, spread
        ];
        for scale in [0.02, 0.08, 0.2] {
            let mut g = Gen::new(NOISE);
            for chord in chords {
                let freqs: Vec<f32> = chord.iter().map(|&s| note(s)).collect();
                g.signal(3200, |n| {
                    let t = n as f32;
                    freqs
                        .iter()
                        .map(|&f| {
                            (w * f * t).sin()
                                + 0.5 * (2.0 * w * f * t).sin()
                                + 0.25 * (3.0 * w * f * t).sin()
                        })
                        .sum::<f32>()
                        * scale
                        / freqs.len() as f32
                });
            }
            assert_eq!(digits(&g.samples()), "", "scale {scale}");
        }
    }

    /// Speech talk-off: `espeak-ng` reads sentences full of spoken digits; the detector must stay
    /// silent at normal and at loud levels. Without espeak-ng the test is skipped, unless
    /// `SWITCHBOARD_REQUIRE_ESPEAK=1` (set by `scripts/test.sh`, which installs it) makes that a
    /// failure.
    #[test]
    fn speech_detects_nothing() {
        const TEXT: &str = "Welcome to the support line. Please enter your account number, \
            followed by the pound key. One two three four five six seven eight nine zero. \
            Your call is number forty two in the queue; the wait is about six minutes. \
            Press one for sales, two for billing, or star to return to the main menu. \
            Hash, oh, nine, eight, seven. Thank you for calling, goodbye.";
        let output = match std::process::Command::new("espeak-ng")
            .args(["--stdout", "-s", "160", TEXT])
            .output()
        {
            Ok(out) if out.status.success() => out.stdout,
            result => {
                let why = match result {
                    Ok(out) => format!("espeak-ng failed: {}", out.status),
                    Err(e) => format!("espeak-ng is not runnable: {e}"),
                };
                if std::env::var("SWITCHBOARD_REQUIRE_ESPEAK").as_deref() == Ok("1") {
                    panic!("{why}; install it (apt-get install espeak-ng) or unset SWITCHBOARD_REQUIRE_ESPEAK");
                }
                eprintln!("speech_detects_nothing skipped: {why}");
                return;
            }
        };
        // espeak-ng writes 22.05 kHz mono WAV (with an unknown-length header when piped); the
        // prompt loader decodes and resamples it to 8 kHz like any administrator's file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("speech.wav"), &output).unwrap();
        let lib = crate::prompt::PromptLibrary::load(dir.path()).unwrap();
        let speech = lib.get("speech").unwrap().samples().to_vec();
        assert!(speech.len() > 8000 * 10, "{} samples", speech.len());
        let peak = speech.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 1000, "speech is nearly silent (peak {peak})");
        for gain_db in [-20.0f32, -6.0, 0.0] {
            // Scale the peak to `gain_db` dBFS.
            let gain = 10f32.powf(gain_db / 20.0) * 32767.0 / f32::from(peak);
            let scaled: Vec<i16> = speech
                .iter()
                .map(|&s| (f32::from(s) * gain).round().clamp(-32768.0, 32767.0) as i16)
                .collect();
            assert_eq!(digits(&scaled), "", "speech peaking at {gain_db} dBFS");
        }
    }

    #[test]
    fn frequency_sweep_detects_nothing() {
        // Linear sweep 300 → 3400 Hz over 3 s, alone and on top of a steady 770 Hz tone.
        let (f0, f1, len) = (300.0f32, 3400.0f32, 24_000usize);
        let k = (f1 - f0) / len as f32 / 2.0;
        let w = 2.0 * std::f32::consts::PI / 8000.0;
        let sweep = move |n: usize| {
            let t = n as f32;
            (w * (f0 * t + k * t * t)).sin()
        };
        let mut g = Gen::new(NOISE);
        g.signal(len, |n| 0.3 * sweep(n));
        assert_eq!(digits(&g.samples()), "");
    }

    #[test]
    fn arbitrary_samples_never_panic() {
        let mut d = Detector::new();
        let mut x: u32 = 1;
        let mut buf = [0i16; 333];
        for _ in 0..200 {
            for s in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *s = x as i16;
            }
            d.push_samples(&buf);
            d.push_samples(&[i16::MIN; 50]);
            d.push_samples(&[i16::MAX; 50]);
        }
        d.finish();
        while d.poll_event().is_some() {}
    }
}
