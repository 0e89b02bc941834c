//! File → 8 kHz mono i16: symphonia decodes, we downmix, rubato resamples.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::{FileErrorCause, SAMPLE_RATE};

/// Decodes the whole file to 8 kHz mono.
pub(super) fn decode_to_8k(path: &Path, max: Duration) -> Result<Vec<i16>, FileErrorCause> {
    let (mono, rate) = decode_mono(path, max)?;
    if mono.is_empty() {
        return Err(FileErrorCause::Empty);
    }
    let resampled = if rate == SAMPLE_RATE {
        mono
    } else {
        resample(&mono, rate)?
    };
    Ok(resampled.iter().map(|&x| to_i16(x)).collect())
}

/// Exact inverse of symphonia's i16 → f32 conversion (x / 32768), so an 8 kHz 16-bit file
/// comes back bit for bit.
fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

fn corrupt(e: SymError) -> FileErrorCause {
    match e {
        SymError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            FileErrorCause::Unreadable(io)
        }
        SymError::Unsupported(what) => FileErrorCause::UnsupportedFormat {
            detail: what.to_owned(),
        },
        other => FileErrorCause::Corrupt {
            detail: other.to_string(),
        },
    }
}

/// Decodes the default audio track, averaging channels. Returns the samples and their rate.
fn decode_mono(path: &Path, max: Duration) -> Result<(Vec<f32>, u32), FileErrorCause> {
    let file = File::open(path).map_err(FileErrorCause::Unreadable)?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            // The probe says "unsupported" for anything it cannot recognise, including
            // garbage and truncated headers: for a file with an audio extension that is
            // corruption as far as an administrator is concerned.
            SymError::Unsupported(what) => FileErrorCause::Corrupt {
                detail: format!("not a recognisable audio file ({what})"),
            },
            other => corrupt(other),
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or(FileErrorCause::Empty)?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| FileErrorCause::UnsupportedFormat {
            detail: "no audio codec parameters".to_owned(),
        })?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(corrupt)?;

    let mut mono: Vec<f32> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut rate: Option<u32> = None;
    let mut max_frames = usize::MAX;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) | Err(SymError::ResetRequired) => break,
            // A file cut short mid-packet: keep what decoded, as players do.
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(corrupt(e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).map_err(corrupt)?;
        let spec_rate = buf.spec().rate();
        let channels = buf.spec().channels().count();
        match rate {
            None => {
                if spec_rate == 0 || channels == 0 {
                    return Err(FileErrorCause::Corrupt {
                        detail: format!("{spec_rate} Hz, {channels} channels"),
                    });
                }
                rate = Some(spec_rate);
                let frames = max.as_millis() * u128::from(spec_rate) / 1000;
                max_frames = usize::try_from(frames).unwrap_or(usize::MAX);
            }
            Some(r) if r != spec_rate => {
                return Err(FileErrorCause::UnsupportedFormat {
                    detail: format!("sample rate changes from {r} to {spec_rate} Hz"),
                });
            }
            Some(_) => {}
        }
        buf.copy_to_vec_interleaved(&mut interleaved);
        let scale = 1.0 / channels as f32;
        mono.extend(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
        if mono.len() > max_frames {
            return Err(FileErrorCause::TooLong { max });
        }
    }
    Ok((mono, rate.unwrap_or(SAMPLE_RATE)))
}

/// Band-limited resampling to 8 kHz. The synchronous FFT resampler suits fixed integer rate
/// pairs; `process_all` trims its start-up delay so the output lines up with the input.
fn resample(mono: &[f32], rate: u32) -> Result<Vec<f32>, FileErrorCause> {
    let fail = |e: &dyn std::fmt::Display| FileErrorCause::UnsupportedFormat {
        detail: format!("cannot resample {rate} Hz to {SAMPLE_RATE} Hz: {e}"),
    };
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| fail(&e))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| fail(&e))?;
    let out = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|e| fail(&e))?;
    Ok(out.take_data())
}
