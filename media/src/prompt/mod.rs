//! The prompt library: announcements decoded once at start-up and kept pre-encoded.
//!
//! [`PromptLibrary::load`] reads every audio file of a folder (WAV, MP3, Ogg Vorbis, FLAC),
//! decodes it with symphonia, downmixes to mono, resamples to 8 kHz with rubato and stores
//! three renditions: the 8 kHz linear samples (for in-band DTMF mixing and recording) and the
//! PCMU and PCMA payload bytes. Playing a prompt is then only slicing: no decoding, resampling
//! or G.711 work happens per call, and a [`Prompt`] is shared as an `Arc`.
//!
//! Loading is all-or-nothing but reports *every* bad file at once ([`PromptError::Files`]),
//! so an administrator fixes the folder in one pass.

mod decode;
pub mod synth;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::g711::{encode_alaw_into, encode_ulaw_into};
use crate::sdp::Codec;

/// The only rate prompts are stored at: G.711's clock rate (RFC 3551 §4.5.14).
pub const SAMPLE_RATE: u32 = 8000;

/// 20 ms at 8 kHz, the default packetisation (RFC 3551 §4.5).
pub const SAMPLES_PER_FRAME: usize = 160;

/// The largest frame [`Prompt::frames`] hands out: 200 ms, beyond any `ptime` we negotiate.
/// Each rendition carries this much trailing silence so the last frame can be a plain slice.
pub const MAX_SAMPLES_PER_FRAME: usize = 1600;

/// Longest prompt [`PromptLibrary::load`] accepts; a longer file is almost certainly a
/// mistake (a music album dropped in the folder) and would pin memory for nothing.
pub const MAX_PROMPT_DURATION: Duration = Duration::from_secs(10 * 60);

/// Extensions that are decoded. Matching is case-insensitive.
pub const AUDIO_EXTENSIONS: [&str; 5] = ["wav", "mp3", "ogg", "oga", "flac"];

/// Extensions of audio formats we recognise but do not decode; such a file is reported as
/// unsupported instead of being ignored like `README.md`.
const OTHER_AUDIO_EXTENSIONS: [&str; 14] = [
    "aif", "aiff", "aac", "m4a", "mp4", "opus", "wma", "au", "gsm", "raw", "ul", "al", "sln",
    "webm",
];

/// The G.711 code of silence (linear 0) for each codec.
pub fn silence_byte(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0xFF,
        Codec::Pcma => 0xD5,
    }
}

/// One announcement, decoded and pre-encoded.
pub struct Prompt {
    name: String,
    /// 8 kHz mono samples, exactly the prompt's length.
    linear: Vec<i16>,
    /// `linear` as µ-law, followed by `MAX_SAMPLES_PER_FRAME` bytes of µ-law silence.
    pcmu: Vec<u8>,
    /// `linear` as A-law, followed by `MAX_SAMPLES_PER_FRAME` bytes of A-law silence.
    pcma: Vec<u8>,
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("name", &self.name)
            .field("samples", &self.linear.len())
            .finish()
    }
}

impl Prompt {
    /// A prompt from 8 kHz mono samples (synthesised tones, generated speech).
    pub fn from_samples(name: impl Into<String>, samples: &[i16]) -> Prompt {
        let encode = |codec: Codec, f: fn(&[i16], &mut [u8]) -> usize| {
            let mut out = vec![silence_byte(codec); samples.len() + MAX_SAMPLES_PER_FRAME];
            f(samples, &mut out);
            out
        };
        Prompt {
            name: name.into(),
            linear: samples.to_vec(),
            pcmu: encode(Codec::Pcmu, encode_ulaw_into),
            pcma: encode(Codec::Pcma, encode_alaw_into),
        }
    }

    /// The name it is looked up by: the file name without extension.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 8 kHz mono linear samples.
    pub fn samples(&self) -> &[i16] {
        &self.linear
    }

    /// The whole prompt encoded for `codec`, unpadded (one byte per sample).
    pub fn encoded(&self, codec: Codec) -> &[u8] {
        &self.padded(codec)[..self.linear.len()]
    }

    fn padded(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    /// Length in samples at 8 kHz.
    pub fn len(&self) -> usize {
        self.linear.len()
    }

    pub fn is_empty(&self) -> bool {
        self.linear.is_empty()
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        let n = self.linear.len() as u64;
        let rate = u64::from(SAMPLE_RATE);
        Duration::from_secs(n / rate) + Duration::from_nanos((n % rate) * 1_000_000_000 / rate)
    }

    /// RTP payloads of `samples_per_frame` bytes each (160 = 20 ms), in order; the last one
    /// is padded with the codec's silence. `samples_per_frame` is clamped to
    /// `1..=MAX_SAMPLES_PER_FRAME`.
    pub fn frames(&self, codec: Codec, samples_per_frame: usize) -> Frames<'_> {
        let spf = samples_per_frame.clamp(1, MAX_SAMPLES_PER_FRAME);
        Frames {
            buf: self.padded(codec),
            spf,
            next: 0,
            count: self.linear.len().div_ceil(spf),
        }
    }
}

/// Iterator returned by [`Prompt::frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    spf: usize,
    next: usize,
    count: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.next >= self.count {
            return None;
        }
        let start = self.next * self.spf;
        self.next += 1;
        // In bounds: the buffer carries MAX_SAMPLES_PER_FRAME >= spf bytes of padding.
        self.buf.get(start..start + self.spf)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.count - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Frames<'_> {}

/// Prompts by name.
#[derive(Debug, Default, Clone)]
pub struct PromptLibrary {
    prompts: BTreeMap<String, Arc<Prompt>>,
}

impl PromptLibrary {
    /// An empty library.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every audio file in `dir` (not recursing), limited to [`MAX_PROMPT_DURATION`].
    pub fn load(dir: &Path) -> Result<PromptLibrary, PromptError> {
        Self::load_with_max_duration(dir, MAX_PROMPT_DURATION)
    }

    /// [`PromptLibrary::load`] with another length limit.
    ///
    /// Files with an extension in [`AUDIO_EXTENSIONS`] are decoded; files with another
    /// audio extension (`.aiff`, `.opus`, …) are errors; everything else (`README.md`,
    /// hidden files, sub-folders) is ignored.
    pub fn load_with_max_duration(
        dir: &Path,
        max_duration: Duration,
    ) -> Result<PromptLibrary, PromptError> {
        let folder_err = |source| PromptError::Folder {
            dir: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(folder_err)? {
            let entry = entry.map_err(folder_err)?;
            let is_file = entry.file_type().map_err(folder_err)?.is_file()
                || std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
            if is_file {
                paths.push(entry.path());
            }
        }
        paths.sort();

        let mut errors = Vec::new();
        // name -> files claiming it
        let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for path in paths {
            let Some(ext) = path.extension().and_then(OsStr::to_str) else {
                continue;
            };
            let ext = ext.to_ascii_lowercase();
            if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if OTHER_AUDIO_EXTENSIONS.contains(&ext.as_str()) {
                errors.push(FileError::new(
                    path,
                    FileErrorCause::UnsupportedFormat {
                        detail: format!(
                            ".{ext} files are not supported; use WAV, MP3, Ogg Vorbis or FLAC"
                        ),
                    },
                ));
                continue;
            }
            if !AUDIO_EXTENSIONS.contains(&ext.as_str()) {
                continue;
            }
            match path.file_stem().and_then(OsStr::to_str) {
                Some(stem) if !stem.is_empty() => {
                    by_name.entry(stem.to_owned()).or_default().push(path)
                }
                _ => errors.push(FileError::new(path, FileErrorCause::BadName)),
            }
        }

        let mut library = PromptLibrary::new();
        for (name, mut files) in by_name {
            if files.len() > 1 {
                let path = files.remove(0);
                errors.push(FileError::new(
                    path,
                    FileErrorCause::DuplicateName {
                        name,
                        others: files,
                    },
                ));
                continue;
            }
            let path = files.remove(0);
            match decode::decode_to_8k(&path, max_duration) {
                Ok(samples) => {
                    library.add(Prompt::from_samples(name, &samples));
                }
                Err(cause) => errors.push(FileError::new(path, cause)),
            }
        }

        if errors.is_empty() {
            Ok(library)
        } else {
            errors.sort_by(|a, b| a.path.cmp(&b.path));
            Err(PromptError::Files {
                dir: dir.to_path_buf(),
                errors,
            })
        }
    }

    /// Adds (or replaces) a prompt, e.g. one made with [`Prompt::from_samples`]; returns the
    /// shared handle.
    pub fn add(&mut self, prompt: Prompt) -> Arc<Prompt> {
        let prompt = Arc::new(prompt);
        self.prompts
            .insert(prompt.name.clone(), Arc::clone(&prompt));
        prompt
    }

    pub fn get(&self, name: &str) -> Option<Arc<Prompt>> {
        self.prompts.get(name).cloned()
    }

    /// Names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.prompts.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

/// Why the library did not load.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The folder itself is missing or unreadable.
    #[error("prompt folder {}: {source}", dir.display())]
    Folder {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One or more files are bad; all of them are listed.
    #[error("{} bad prompt file(s) in {}:{}", errors.len(), dir.display(), FileErrorList(errors))]
    Files {
        dir: PathBuf,
        errors: Vec<FileError>,
    },
}

struct FileErrorList<'a>(&'a [FileError]);

impl fmt::Display for FileErrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// One bad file and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {cause}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub cause: FileErrorCause,
}

impl FileError {
    fn new(path: PathBuf, cause: FileErrorCause) -> Self {
        FileError { path, cause }
    }
}

/// Why one file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum FileErrorCause {
    #[error("unreadable: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("unsupported format: {detail}")]
    UnsupportedFormat { detail: String },
    #[error("corrupt audio data: {detail}")]
    Corrupt { detail: String },
    #[error("no audio in file")]
    Empty,
    #[error("longer than the {}-second limit", max.as_secs())]
    TooLong { max: Duration },
    #[error("name {name:?} is also used by {}", DisplayPaths(others))]
    DuplicateName { name: String, others: Vec<PathBuf> },
    #[error("file name is not valid UTF-8 or has an empty stem")]
    BadName,
}

struct DisplayPaths<'a>(&'a [PathBuf]);

impl fmt::Display for DisplayPaths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", p.display())?;
        }
        Ok(())
    }
}
