//! ITU-T G.711 (11/88) PCM of voice frequencies: µ-law (PCMU, RTP payload type 0) and
//! A-law (PCMA, payload type 8), RFC 3551 §4.5.14.
//!
//! The arithmetic is the classic reference formulation (the one in the ITU-T Software Tool
//! Library and Sun's `g711.c`), which reproduces G.711 Tables 1a/2a exactly:
//!
//! * A-law works on 13-bit magnitudes (linear >> 3), 8 segments, and inverts the even bits
//!   of the code word (XOR 0x55); decode returns the midpoint of the quantisation interval.
//! * µ-law works on 14-bit magnitudes (linear >> 2), adds the bias 33 (= 0x84 / 4), and
//!   inverts all bits of the code word; it has two zeros (0xFF = +0, 0x7F = −0).
//!
//! Decoding is a lookup in a 256-entry `const` table built at compile time. Encoding is the
//! standard segment search (at most 8 comparisons, no table) — small and branch-predictable.
//! The PCMU↔PCMA tables are computed *via linear* (decode, then encode) at compile time, so
//! they agree exactly with decode→encode. G.711's own µ↔A conversion tables are tuned so
//! that repeated conversion is transparent and may differ from these by one quantisation
//! step for some codes; via-linear keeps one source of truth and the difference is inaudible.
//!
//! All functions are total: every `i16` and every `u8` is a valid input.

const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const ULAW_SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// µ-law bias (0x84) expressed on the 14-bit scale.
const ULAW_BIAS_14: i32 = 0x84 >> 2;
/// Largest 14-bit magnitude that does not overflow segment 7 once the bias is added.
const ULAW_CLIP_14: i32 = 8159;

/// Index of the first segment whose end is >= `v`, or 8 if `v` exceeds them all.
const fn segment(v: i32, ends: &[i32; 8]) -> i32 {
    let mut i = 0;
    while i < 8 {
        if v <= ends[i] {
            return i as i32;
        }
        i += 1;
    }
    8
}

/// Encodes one 16-bit linear sample as A-law (G.711 Table 1a, even bits inverted).
pub const fn linear_to_alaw(sample: i16) -> u8 {
    let mut v = (sample as i32) >> 3;
    let mask;
    if v >= 0 {
        mask = 0xD5;
    } else {
        mask = 0x55;
        // One's-complement magnitude: A-law has no zero code, −1 maps like +0.
        v = -v - 1;
    }
    let seg = segment(v, &ALAW_SEG_END);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mantissa = if seg < 2 {
        (v >> 1) & 0xF
    } else {
        (v >> seg) & 0xF
    };
    (((seg << 4) | mantissa) ^ mask) as u8
}

/// Decodes one A-law code word to 16-bit linear (midpoint of the interval).
pub const fn alaw_to_linear(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

/// Encodes one 16-bit linear sample as µ-law (G.711 Table 2a, all bits inverted).
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    let mut v = (sample as i32) >> 2;
    let mask;
    if v < 0 {
        v = -v;
        mask = 0x7F;
    } else {
        mask = 0xFF;
    }
    if v > ULAW_CLIP_14 {
        v = ULAW_CLIP_14;
    }
    v += ULAW_BIAS_14;
    let seg = segment(v, &ULAW_SEG_END);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let code = (seg << 4) | ((v >> (seg + 1)) & 0xF);
    (code ^ mask) as u8
}

/// Decodes one µ-law code word to 16-bit linear.
pub const fn ulaw_to_linear(code: u8) -> i16 {
    let u = (!code) as i32;
    let t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        (0x84 - t) as i16
    } else {
        (t - 0x84) as i16
    }
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_to_linear(i as u8);
        i += 1;
    }
    t
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_to_linear(i as u8);
        i += 1;
    }
    t
}

const fn build_ulaw_to_alaw() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = linear_to_alaw(ulaw_to_linear(i as u8));
        i += 1;
    }
    t
}

const fn build_alaw_to_ulaw() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = linear_to_ulaw(alaw_to_linear(i as u8));
        i += 1;
    }
    t
}

/// µ-law code → linear, indexed by code word.
pub static ULAW_DECODE: [i16; 256] = build_ulaw_decode();
/// A-law code → linear, indexed by code word.
pub static ALAW_DECODE: [i16; 256] = build_alaw_decode();
/// PCMU code → PCMA code (via linear).
pub static ULAW_TO_ALAW: [u8; 256] = build_ulaw_to_alaw();
/// PCMA code → PCMU code (via linear).
pub static ALAW_TO_ULAW: [u8; 256] = build_alaw_to_ulaw();

/// Encodes `pcm` into `out` as µ-law; converts `min(pcm.len(), out.len())` samples and
/// returns that count (never panics on mismatched lengths).
pub fn encode_ulaw_into(pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = linear_to_ulaw(s);
    }
    n
}

/// Encodes `pcm` into `out` as A-law; returns the number of samples converted.
pub fn encode_alaw_into(pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = linear_to_alaw(s);
    }
    n
}

/// Decodes µ-law `codes` into `out`; returns the number of samples converted.
pub fn decode_ulaw_into(codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ULAW_DECODE[usize::from(c)];
    }
    n
}

/// Decodes A-law `codes` into `out`; returns the number of samples converted.
pub fn decode_alaw_into(codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ALAW_DECODE[usize::from(c)];
    }
    n
}

/// Transcodes a PCMU payload to PCMA in place (the relay path between unlike legs).
pub fn ulaw_to_alaw_in_place(codes: &mut [u8]) {
    for c in codes {
        *c = ULAW_TO_ALAW[usize::from(*c)];
    }
}

/// Transcodes a PCMA payload to PCMU in place.
pub fn alaw_to_ulaw_in_place(codes: &mut [u8]) {
    for c in codes {
        *c = ALAW_TO_ULAW[usize::from(*c)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_decode_known_values() {
        // G.711 Table 2a decoder outputs on the 16-bit scale (14-bit value << 2).
        assert_eq!(ULAW_DECODE[0xFF], 0);
        assert_eq!(ULAW_DECODE[0x7F], 0); // negative zero
        assert_eq!(ULAW_DECODE[0x80], 32124);
        assert_eq!(ULAW_DECODE[0x00], -32124);
        assert_eq!(ULAW_DECODE[0xFE], 8); // smallest non-zero step: 2 on the 14-bit scale
        assert_eq!(ULAW_DECODE[0xEF], 132); // segment 1 start: (33 << 1) - 33, times 4
        assert_eq!(ULAW_DECODE[0x7E], -8);
    }

    #[test]
    fn alaw_decode_known_values() {
        // G.711 Table 1a decoder outputs on the 16-bit scale (13-bit value << 3).
        assert_eq!(ALAW_DECODE[0xD5], 8);
        assert_eq!(ALAW_DECODE[0x55], -8);
        assert_eq!(ALAW_DECODE[0xAA], 32256);
        assert_eq!(ALAW_DECODE[0x2A], -32256);
        assert_eq!(ALAW_DECODE[0xC5], 264); // first code of segment 1 (0x50 ^ 0x55 | sign)
    }

    #[test]
    fn decode_then_encode_is_identity() {
        for c in 0..=255u8 {
            let u = linear_to_ulaw(ULAW_DECODE[usize::from(c)]);
            if c == 0x7F {
                assert_eq!(u, 0xFF, "µ-law negative zero encodes as +0");
            } else {
                assert_eq!(u, c, "µ-law code {c:#04x}");
            }
            assert_eq!(
                linear_to_alaw(ALAW_DECODE[usize::from(c)]),
                c,
                "A-law {c:#04x}"
            );
        }
    }

    /// Codes sorted by decoded value must be strictly increasing once the sign/inversion
    /// is undone: positive magnitudes grow with (segment, mantissa).
    #[test]
    fn decode_is_monotonic_over_segments() {
        let mut prev_u = -1i32;
        let mut prev_a = 0i32;
        for m in 0..128u8 {
            // µ-law: positive half is !m with sign bit set; larger m = larger magnitude.
            let u = i32::from(ULAW_DECODE[usize::from(!m)]);
            assert!(u > prev_u, "µ-law not increasing at magnitude {m}");
            prev_u = u;
            let a = i32::from(ALAW_DECODE[usize::from((m | 0x80) ^ 0x55)]);
            assert!(a > prev_a, "A-law not increasing at magnitude {m}");
            prev_a = a;
            // Symmetry: negative half mirrors the positive half.
            assert_eq!(i32::from(ULAW_DECODE[usize::from(!m & 0x7F)]), -u);
            assert_eq!(i32::from(ALAW_DECODE[usize::from(m ^ 0x55)]), -a);
        }
    }

    #[test]
    fn encode_saturates_at_extremes() {
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_ulaw(-32767), 0x00);
        assert_eq!(linear_to_alaw(32767), 0xAA);
        assert_eq!(linear_to_alaw(-32768), 0x2A);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
    }

    #[test]
    fn encode_is_monotonic_over_all_inputs() {
        let mut prev_u = i32::MIN;
        let mut prev_a = i32::MIN;
        for s in i16::MIN..=i16::MAX {
            let u = i32::from(ULAW_DECODE[usize::from(linear_to_ulaw(s))]);
            let a = i32::from(ALAW_DECODE[usize::from(linear_to_alaw(s))]);
            assert!(u >= prev_u && a >= prev_a, "not monotonic at {s}");
            prev_u = u;
            prev_a = a;
        }
    }

    /// Position of a code on the monotonic quantiser scale (0..=255), for "within one step".
    fn ulaw_rank(c: u8) -> i32 {
        let m = i32::from(!c & 0x7F);
        if c & 0x80 != 0 {
            128 + m
        } else {
            127 - m
        }
    }

    fn alaw_rank(c: u8) -> i32 {
        let x = c ^ 0x55;
        let m = i32::from(x & 0x7F);
        if x & 0x80 != 0 {
            128 + m
        } else {
            127 - m
        }
    }

    #[test]
    fn transcoding_tables_agree_with_decode_encode() {
        for c in 0..=255u8 {
            let via = linear_to_alaw(ULAW_DECODE[usize::from(c)]);
            let direct = ULAW_TO_ALAW[usize::from(c)];
            assert!((alaw_rank(via) - alaw_rank(direct)).abs() <= 1);
            let via = linear_to_ulaw(ALAW_DECODE[usize::from(c)]);
            let direct = ALAW_TO_ULAW[usize::from(c)];
            assert!((ulaw_rank(via) - ulaw_rank(direct)).abs() <= 1);
            // And the round trip µ→A→µ lands within one segment-0 µ-law step (8 on the
            // 16-bit scale) of the start; measured, that is also the worst case.
            let back = ALAW_TO_ULAW[usize::from(ULAW_TO_ALAW[usize::from(c)])];
            let d =
                i32::from(ULAW_DECODE[usize::from(back)]) - i32::from(ULAW_DECODE[usize::from(c)]);
            assert!(d.abs() <= 8, "µ {c:#04x} → {back:#04x}");
        }
    }

    #[test]
    fn slice_helpers_handle_length_mismatch() {
        let pcm = [0i16, 1000, -1000, 32767];
        let mut u = [0u8; 3];
        assert_eq!(encode_ulaw_into(&pcm, &mut u), 3);
        let mut back = [0i16; 8];
        assert_eq!(decode_ulaw_into(&u, &mut back), 3);
        assert_eq!(back[0], 0);
        let mut a = [0u8; 4];
        assert_eq!(encode_alaw_into(&pcm, &mut a), 4);
        assert_eq!(decode_alaw_into(&a, &mut back), 4);
        assert_eq!(back[3], 32256);
        let mut t = a;
        alaw_to_ulaw_in_place(&mut t);
        ulaw_to_alaw_in_place(&mut t);
        assert_eq!(t[3], 0xAA);
    }
}
