//! Call recording: the caller on the left channel, the other party on the right, 16-bit
//! PCM WAV (via `hound`), written off the packet path.
//!
//! ```text
//!  packet path                     bounded queue            writer thread
//!  RecorderHandle::push ──try_send──▶ [queue_frames] ──▶ Interleaver ──▶ hound::WavWriter
//!     (never blocks; full ⇒ drop + count)                 (reorder, align,   (flush every
//!                                                          fill silence)      `flush_every`)
//! ```
//!
//! * **Time is sample positions.** Every frame carries `at_sample`, its position on the
//!   recording's timeline (sample 0 = start of the recording, at `sample_rate`). The
//!   recorder never reads a clock; the duration is `samples / sample_rate`.
//! * **Alignment.** Positions nobody wrote become silence, so both channels stay aligned
//!   with the call's timeline; samples for positions already written are dropped (not
//!   mixed). See [`interleave`].
//! * **Always a valid file.** The writer calls `WavWriter::flush` every `flush_every`
//!   samples of audio; hound's `flush` rewrites the RIFF and `data` sizes and flushes the
//!   file, so if the process dies the file on disk is a valid WAV holding everything up to
//!   the last flush (what was written after it is past the declared `data` size and
//!   ignored by readers). [`RecorderHandle::finish`] — or dropping the handle — drains the
//!   queue and finalizes. The file is written in place: no temporary file, no rename.
//! * **Off the packet path.** A plain `std::thread` and a bounded
//!   `std::sync::mpsc::sync_channel`; the engine's shell may wrap it.

pub mod interleave;

pub use interleave::{Channel, Interleaver, StereoFrame};

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::g711;

/// Bytes in the canonical 44-byte PCM header hound writes for ≤ 2 channels, 16-bit.
const WAV_HEADER_BYTES: u64 = 44;
/// Bytes per stereo 16-bit frame.
const FRAME_BYTES: u64 = 4;
/// The most frames a RIFF file (32-bit sizes) can hold: about 37 hours at 8 kHz.
const MAX_FRAMES: u64 = (u32::MAX as u64 - WAV_HEADER_BYTES) / FRAME_BYTES;

/// How a recording is written. `Default` is 8 kHz narrowband (G.711) with 20 ms frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Samples per second per channel; frame positions are in these units.
    pub sample_rate: u32,
    /// Capacity of the queue between the packet path and the writer, in pushed frames.
    /// When full, pushes are dropped and counted rather than blocking.
    pub queue_frames: usize,
    /// Reordering window in samples: audio is committed to the file only once it is this
    /// far behind the furthest position seen. Default 480 (3 × 20 ms at 8 kHz).
    pub reorder_window: u32,
    /// Flush (rewrite the WAV header sizes and flush to the OS) every this many samples
    /// of audio. Default 8000 (one second at 8 kHz). Bounds what a crash can lose.
    pub flush_every: u32,
    /// A frame starting more than this many samples beyond the furthest position written
    /// so far is rejected (counted in [`RecordingInfo::rejected_frames`]) instead of
    /// filling the gap with silence: it guards against a bogus position (an RTP timestamp
    /// jump mapped naively) writing gigabytes of silence. Default one hour at 8 kHz.
    pub max_jump: u64,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            sample_rate: 8000,
            queue_frames: 64,
            reorder_window: 480,
            flush_every: 8000,
            max_jump: 8000 * 3600,
        }
    }
}

/// Errors starting or writing a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("invalid recording config: {field} {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    #[error("cannot create recording {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    #[error("writing recording {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    #[error("recording {path} reached the WAV size limit of {max_samples} samples per channel")]
    TooLong { path: PathBuf, max_samples: u64 },
    #[error("cannot start the recording writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the recording writer thread panicked")]
    WriterPanicked,
    /// The writer has stopped (after an error, reported by `finish`).
    #[error("the recording writer has stopped")]
    WriterGone,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for the writer (or empty: nothing to queue).
    Queued,
    /// Dropped and counted in [`RecorderHandle::dropped`]: the queue was full, or the
    /// writer has stopped after an error.
    Dropped,
}

/// Where the writer stands, as of a [`RecorderHandle::sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPoint {
    /// Samples per channel written to the file (excludes the reordering window).
    pub written_samples: u64,
    /// Samples per channel covered by the header on disk at the last flush: what a reader
    /// of the file would see if the process died now.
    pub flushed_samples: u64,
}

/// The outcome of a finished recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub path: PathBuf,
    /// `samples / sample_rate`.
    pub duration: Duration,
    /// Samples per channel, i.e. stereo frames in the file.
    pub samples: u64,
    /// Frames dropped on the packet path (queue full or writer stopped).
    pub dropped: u64,
    /// Samples dropped by the writer because their position had already been written.
    pub late_samples: u64,
    /// Frames rejected by the writer for jumping more than `max_jump` ahead.
    pub rejected_frames: u64,
}

/// Entry point; see [`Recorder::start`].
#[derive(Debug)]
pub struct Recorder;

impl Recorder {
    /// Creates (truncating) the WAV file at `path` — stereo, 16-bit, `sample_rate` — and
    /// starts its writer thread. The file is a valid, empty WAV from this point on.
    pub fn start(
        path: impl Into<PathBuf>,
        config: RecordingConfig,
    ) -> Result<RecorderHandle, RecordError> {
        let path = path.into();
        if config.sample_rate == 0 {
            return Err(RecordError::InvalidConfig {
                field: "sample_rate",
                reason: "must be positive",
            });
        }
        if config.queue_frames == 0 {
            return Err(RecordError::InvalidConfig {
                field: "queue_frames",
                reason: "must be positive (0 would drop every frame)",
            });
        }
        if config.flush_every == 0 {
            return Err(RecordError::InvalidConfig {
                field: "flush_every",
                reason: "must be positive",
            });
        }
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: config.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let create_err = |source| RecordError::Create {
            path: path.clone(),
            source,
        };
        // Recordings are filed in folders (per mailbox, per day): make the folder first.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| create_err(hound::Error::IoError(e)))?;
        }
        let mut wav = hound::WavWriter::create(&path, spec).map_err(create_err)?;
        // Make the empty file valid on disk before the first sample arrives.
        wav.flush().map_err(create_err)?;

        let (tx, rx) = mpsc::sync_channel(config.queue_frames);
        let writer = Writer {
            interleaver: Interleaver::new(config.reorder_window),
            max_jump: config.max_jump,
            rejected_frames: 0,
            file: WavSink {
                path: path.clone(),
                wav,
                flush_every: u64::from(config.flush_every),
                written: 0,
                flushed: 0,
            },
        };
        let thread = std::thread::Builder::new()
            .name("sb-record".into())
            .spawn(move || writer.run(rx))
            .map_err(RecordError::Spawn)?;
        Ok(RecorderHandle {
            path,
            sample_rate: config.sample_rate,
            tx: Some(tx),
            thread: Some(thread),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }
}

enum Command {
    Frame {
        channel: Channel,
        at: u64,
        samples: Vec<i16>,
    },
    Sync(SyncSender<SyncPoint>),
    /// Test hook: the writer reports it has stopped, then waits for `resume`.
    #[cfg(test)]
    Pause {
        paused: SyncSender<()>,
        resume: Receiver<()>,
    },
}

/// What the writer thread returns when its queue closes.
#[derive(Debug)]
struct WriterSummary {
    samples: u64,
    late_samples: u64,
    rejected_frames: u64,
}

/// The call's side of a recording. Not `Clone`: one owner (the media session) pushes both
/// channels. Dropping it finalizes the file like [`finish`](Self::finish), ignoring errors.
#[derive(Debug)]
pub struct RecorderHandle {
    path: PathBuf,
    sample_rate: u32,
    tx: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<Result<WriterSummary, RecordError>>>,
    dropped: Arc<AtomicU64>,
}

impl RecorderHandle {
    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames dropped so far on the packet path (queue full or writer stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues linear PCM for `channel` at position `at_sample`. Never blocks: if the queue
    /// is full the frame is dropped and counted. Allocates one `Vec` per frame.
    pub fn push(&self, channel: Channel, at_sample: u64, samples: &[i16]) -> Push {
        if samples.is_empty() {
            return Push::Queued;
        }
        self.push_owned(channel, at_sample, samples.to_vec())
    }

    /// [`push`](Self::push) for a G.711 µ-law (PCMU) payload: one sample per byte.
    pub fn push_ulaw(&self, channel: Channel, at_sample: u64, payload: &[u8]) -> Push {
        let mut pcm = vec![0; payload.len()];
        g711::decode_ulaw_into(payload, &mut pcm);
        self.push_owned(channel, at_sample, pcm)
    }

    /// [`push`](Self::push) for a G.711 A-law (PCMA) payload: one sample per byte.
    pub fn push_alaw(&self, channel: Channel, at_sample: u64, payload: &[u8]) -> Push {
        let mut pcm = vec![0; payload.len()];
        g711::decode_alaw_into(payload, &mut pcm);
        self.push_owned(channel, at_sample, pcm)
    }

    fn push_owned(&self, channel: Channel, at: u64, samples: Vec<i16>) -> Push {
        if samples.is_empty() {
            return Push::Queued;
        }
        let Some(tx) = &self.tx else {
            return Push::Dropped;
        };
        match tx.try_send(Command::Frame {
            channel,
            at,
            samples,
        }) {
            Ok(()) => Push::Queued,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Push::Dropped
            }
        }
    }

    /// Waits (blocking — not for the packet path) until the writer has processed every
    /// frame queued before this call, and reports where it stands. It does not force a
    /// flush: `flushed_samples` is what the file on disk holds if the process dies now.
    pub fn sync(&self) -> Result<SyncPoint, RecordError> {
        let tx = self.tx.as_ref().ok_or(RecordError::WriterGone)?;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        tx.send(Command::Sync(ack_tx))
            .map_err(|_| RecordError::WriterGone)?;
        ack_rx.recv().map_err(|_| RecordError::WriterGone)
    }

    /// Closes the queue, lets the writer drain it (including the reordering window),
    /// finalizes the WAV header, and reports the recording.
    pub fn finish(mut self) -> Result<RecordingInfo, RecordError> {
        let summary = self.close()?;
        let samples = summary.samples;
        Ok(RecordingInfo {
            path: self.path.clone(),
            duration: samples_to_duration(samples, self.sample_rate),
            samples,
            dropped: self.dropped(),
            late_samples: summary.late_samples,
            rejected_frames: summary.rejected_frames,
        })
    }

    fn close(&mut self) -> Result<WriterSummary, RecordError> {
        // Dropping the sender ends the writer's receive loop once the queue is drained.
        drop(self.tx.take());
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| RecordError::WriterPanicked)?,
            None => Err(RecordError::WriterGone),
        }
    }

    /// Test hook: parks the writer until the returned sender is dropped or sent to.
    #[cfg(test)]
    fn pause_writer(&self) -> SyncSender<()> {
        let (paused_tx, paused_rx) = mpsc::sync_channel(1);
        let (resume_tx, resume_rx) = mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .expect("open")
            .send(Command::Pause {
                paused: paused_tx,
                resume: resume_rx,
            })
            .expect("writer alive");
        paused_rx.recv().expect("writer paused");
        resume_tx
    }
}

impl Drop for RecorderHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.close();
        }
    }
}

/// Exact `samples / sample_rate` as a `Duration` (nanosecond resolution).
fn samples_to_duration(samples: u64, sample_rate: u32) -> Duration {
    let rate = u64::from(sample_rate.max(1));
    let whole = Duration::from_secs(samples / rate);
    let frac_nanos = (u128::from(samples % rate) * 1_000_000_000 / u128::from(rate)) as u64;
    whole + Duration::from_nanos(frac_nanos)
}

/// The writer thread's state.
struct Writer {
    interleaver: Interleaver,
    max_jump: u64,
    rejected_frames: u64,
    /// Apart from the interleaver, so the interleaver can write into it while both are
    /// borrowed from `self`.
    file: WavSink,
}

impl Writer {
    fn run(mut self, rx: Receiver<Command>) -> Result<WriterSummary, RecordError> {
        // On an error, return at once: the receiver drops, later pushes count as dropped,
        // and `wav`'s own Drop rewrites the header so the file stays valid.
        for cmd in rx {
            match cmd {
                Command::Frame {
                    channel,
                    at,
                    samples,
                } => {
                    if at.saturating_sub(self.interleaver.end()) > self.max_jump {
                        self.rejected_frames += 1;
                        continue;
                    }
                    let file = &mut self.file;
                    self.interleaver.insert(
                        channel,
                        at,
                        &samples,
                        &mut |f: &[StereoFrame]| file.write(f),
                    )?;
                }
                Command::Sync(ack) => {
                    let _ = ack.send(SyncPoint {
                        written_samples: self.file.written,
                        flushed_samples: self.file.flushed,
                    });
                }
                #[cfg(test)]
                Command::Pause { paused, resume } => {
                    let _ = paused.send(());
                    let _ = resume.recv();
                }
            }
        }
        let file = &mut self.file;
        self.interleaver
            .flush_all(&mut |f: &[StereoFrame]| file.write(f))?;
        let summary = WriterSummary {
            samples: self.file.written,
            late_samples: self.interleaver.late_samples(),
            rejected_frames: self.rejected_frames,
        };
        let WavSink { path, wav, .. } = self.file;
        wav.finalize()
            .map_err(|source| RecordError::Write { path, source })?;
        Ok(summary)
    }
}

/// The file: the interleaver's sink.
struct WavSink {
    path: PathBuf,
    wav: hound::WavWriter<BufWriter<File>>,
    flush_every: u64,
    written: u64,
    flushed: u64,
}

impl WavSink {
    /// Append frames, flushing the header every `flush_every`.
    fn write(&mut self, frames: &[StereoFrame]) -> Result<(), RecordError> {
        let path = &self.path;
        let write_err = |source| RecordError::Write {
            path: path.clone(),
            source,
        };
        let mut rest = frames;
        while !rest.is_empty() {
            if self.written >= MAX_FRAMES {
                return Err(RecordError::TooLong {
                    path: path.clone(),
                    max_samples: MAX_FRAMES,
                });
            }
            // Write up to the next flush point, so flushes land exactly on multiples of
            // `flush_every` (a crash loses at most `flush_every` samples plus the window).
            let to_flush = self.flush_every - (self.written - self.flushed);
            let n = (rest.len() as u64)
                .min(to_flush)
                .min(MAX_FRAMES - self.written) as usize;
            let (now, later) = rest.split_at(n);
            for &[left, right] in now {
                self.wav.write_sample(left).map_err(write_err)?;
                self.wav.write_sample(right).map_err(write_err)?;
            }
            self.written += n as u64;
            if self.written - self.flushed >= self.flush_every {
                self.wav.flush().map_err(write_err)?;
                self.flushed = self.written;
            }
            rest = later;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
