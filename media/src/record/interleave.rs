//! The sans-IO heart of the recorder: turns per-channel frames stamped with sample
//! positions into one stream of stereo sample frames, aligned with the call's timeline.
//!
//! * Positions are in samples at the recording rate, counted from the start of the
//!   recording (sample 0). Both channels share that timeline.
//! * Nothing is emitted until it leaves a reordering window of `window` samples behind the
//!   furthest end seen on either channel, so a packet that arrives up to `window` samples
//!   late (reordered, or the other side's packet delivered a little later) still lands in
//!   place.
//! * Positions nobody wrote (lost packets, a side on hold or silent) are zero: silence.
//! * Inside the window, a frame overwrites what its channel already holds at those
//!   positions (a duplicated RTP packet carries the same audio, so "last write wins" is
//!   harmless). Samples for positions already emitted are **dropped** — never mixed — and
//!   counted in [`Interleaver::late_samples`]; a frame straddling the boundary keeps its
//!   tail.
//!
//! Memory is bounded by the window: a jump far ahead emits the gap as silence in chunks
//! instead of buffering it.

use std::collections::VecDeque;

/// Which side of the call a frame belongs to, and so which stereo channel it lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The calling party: the left channel.
    Caller,
    /// The other party (agent, callee, IVR prompts): the right channel.
    Other,
}

impl Channel {
    /// Index into a `[left, right]` stereo frame.
    const fn index(self) -> usize {
        match self {
            Channel::Caller => 0,
            Channel::Other => 1,
        }
    }
}

/// One stereo sample frame: `[caller (left), other (right)]`.
pub type StereoFrame = [i16; 2];

/// Silence handed to the sink for gaps, a chunk at a time.
const SILENCE: [StereoFrame; 256] = [[0; 2]; 256];

/// Orders, aligns and interleaves the two channels; emits committed frames to a sink.
#[derive(Debug, Clone)]
pub struct Interleaver {
    window: u64,
    /// Frames emitted so far; positions below this are final.
    committed: u64,
    /// Frames at positions `committed..committed + pending.len()`, still open to writes.
    pending: VecDeque<StereoFrame>,
    late_samples: u64,
}

impl Interleaver {
    /// `window` is the reordering window in samples (e.g. 3 × 160 for 20 ms G.711 frames).
    pub fn new(window: u32) -> Self {
        Self {
            window: u64::from(window),
            committed: 0,
            pending: VecDeque::with_capacity(window as usize),
            late_samples: 0,
        }
    }

    /// Frames handed to the sink so far (the recording's length, per channel).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// One past the furthest position received so far on either channel.
    pub fn end(&self) -> u64 {
        self.committed + self.pending.len() as u64
    }

    /// Samples dropped because their position had already been emitted.
    pub fn late_samples(&self) -> u64 {
        self.late_samples
    }

    /// Places `samples` on `channel` starting at position `at`, and emits to `sink` every
    /// frame that has fallen out of the reordering window. A sink error is returned as is;
    /// the interleaver stays consistent (the frames handed over count as emitted).
    pub fn insert<E>(
        &mut self,
        channel: Channel,
        at: u64,
        samples: &[i16],
        sink: &mut impl FnMut(&[StereoFrame]) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = at.saturating_add(samples.len() as u64);
        self.commit_to(end.saturating_sub(self.window), sink)?;

        let skip = usize::try_from(self.committed.saturating_sub(at))
            .map_or(samples.len(), |s| s.min(samples.len()));
        self.late_samples += skip as u64;
        let samples = &samples[skip..];
        if samples.is_empty() {
            return Ok(());
        }
        // After `commit_to`, `committed >= end - window`, so both offsets are < window
        // plus one frame and fit in memory; `at + skip >= committed` by construction.
        let start = (at.saturating_add(skip as u64) - self.committed) as usize;
        let needed = start + samples.len();
        if self.pending.len() < needed {
            self.pending.resize(needed, [0; 2]);
        }
        let ch = channel.index();
        for (slot, &s) in self.pending.range_mut(start..needed).zip(samples) {
            slot[ch] = s;
        }
        Ok(())
    }

    /// Emits everything still pending (end of the recording).
    pub fn flush_all<E>(
        &mut self,
        sink: &mut impl FnMut(&[StereoFrame]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.commit_to(self.end(), sink)
    }

    /// Emits every position below `target`: pending frames first, then silence.
    fn commit_to<E>(
        &mut self,
        target: u64,
        sink: &mut impl FnMut(&[StereoFrame]) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.committed < target && !self.pending.is_empty() {
            let want = usize::try_from(target - self.committed).unwrap_or(usize::MAX);
            let n = {
                let (front, _) = self.pending.as_slices();
                let n = front.len().min(want);
                sink(&front[..n])?;
                n
            };
            self.pending.drain(..n);
            self.committed += n as u64;
        }
        while self.committed < target {
            let n = (target - self.committed).min(SILENCE.len() as u64) as usize;
            sink(&SILENCE[..n])?;
            self.committed += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn run(window: u32, frames: &[(Channel, u64, Vec<i16>)]) -> (Vec<StereoFrame>, Interleaver) {
        let mut out = Vec::new();
        let mut il = Interleaver::new(window);
        let mut sink = |f: &[StereoFrame]| -> Result<(), Infallible> {
            out.extend_from_slice(f);
            Ok(())
        };
        for (ch, at, s) in frames {
            il.insert(*ch, *at, s, &mut sink).unwrap();
        }
        il.flush_all(&mut sink).unwrap();
        (out, il)
    }

    #[test]
    fn channels_land_on_their_side() {
        let (out, _) = run(
            4,
            &[
                (Channel::Caller, 0, vec![1, 2, 3]),
                (Channel::Other, 0, vec![-1, -2, -3]),
            ],
        );
        assert_eq!(out, vec![[1, -1], [2, -2], [3, -3]]);
    }

    #[test]
    fn gaps_are_silence() {
        let (out, _) = run(
            2,
            &[
                (Channel::Caller, 0, vec![5; 2]),
                (Channel::Caller, 4, vec![7; 2]),
            ],
        );
        assert_eq!(out, vec![[5, 0], [5, 0], [0, 0], [0, 0], [7, 0], [7, 0]]);
    }

    #[test]
    fn reordered_within_window_lands_in_place() {
        let (out, il) = run(
            4,
            &[
                (Channel::Caller, 0, vec![1; 2]),
                (Channel::Caller, 4, vec![3; 2]),
                (Channel::Caller, 2, vec![2; 2]),
            ],
        );
        assert_eq!(out, vec![[1, 0], [1, 0], [2, 0], [2, 0], [3, 0], [3, 0]]);
        assert_eq!(il.late_samples(), 0);
    }

    #[test]
    fn too_late_is_dropped_and_counted_and_straddlers_keep_their_tail() {
        // Window 2: after the frame ending at 8, positions < 6 are committed.
        let (out, il) = run(
            2,
            &[
                (Channel::Caller, 6, vec![9; 2]),
                (Channel::Other, 0, vec![4; 2]), // wholly late
                (Channel::Other, 5, vec![6; 2]), // 5 late, 6 kept
            ],
        );
        assert_eq!(out.len(), 8);
        assert!(out[..6].iter().all(|f| *f == [0, 0]));
        assert_eq!(&out[6..], &[[9, 6], [9, 0]]);
        assert_eq!(il.late_samples(), 3);
    }

    #[test]
    fn duplicate_overwrites_within_window() {
        let (out, _) = run(
            8,
            &[
                (Channel::Caller, 0, vec![1; 2]),
                (Channel::Caller, 0, vec![2; 2]),
            ],
        );
        assert_eq!(out, vec![[2, 0], [2, 0]]);
    }

    #[test]
    fn big_jump_streams_silence_with_bounded_buffer() {
        let mut il = Interleaver::new(480);
        let mut count = 0u64;
        let mut max_chunk = 0usize;
        let mut sink = |f: &[StereoFrame]| -> Result<(), Infallible> {
            count += f.len() as u64;
            max_chunk = max_chunk.max(f.len());
            Ok(())
        };
        il.insert(Channel::Caller, 1_000_000, &[1; 160], &mut sink)
            .unwrap();
        assert!(il.pending.len() <= 480 + 160);
        il.flush_all(&mut sink).unwrap();
        assert_eq!(count, 1_000_160);
        assert!(max_chunk <= 480 + 160);
    }

    #[test]
    fn position_near_u64_max_does_not_panic() {
        let mut il = Interleaver::new(480);
        let mut sink = |_: &[StereoFrame]| -> Result<(), &'static str> { Err("stop") };
        assert!(il
            .insert(Channel::Caller, u64::MAX - 1, &[1; 160], &mut sink)
            .is_err());
        let mut il = Interleaver::new(480);
        let mut ok = |_: &[StereoFrame]| -> Result<(), Infallible> { Ok(()) };
        il.insert(Channel::Other, 0, &[], &mut ok).unwrap();
        assert_eq!(il.committed(), 0);
    }
}
