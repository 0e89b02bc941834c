//! Loading and live publishing of the flow folder (the shell's side of flows).
//!
//! At start-up every `*.yaml` in `ivr.flows_dir` is validated and the valid ones are published;
//! an invalid file is logged with all its errors and left out. With `ivr.watch`, the folder
//! is checked every second: a changed file that validates is published (new calls take it,
//! calls in progress finish on the version they started with); one that does not is rejected
//! with its errors logged, and the version that was serving keeps serving. Every publish and
//! every rejection goes to the operation log (`flow_publications`) with a unified diff.
//!
//! A file written by the HTTP API is logged with the API token as its actor: the API records
//! who wrote which version in [`Publishers`] before it renames the file into place, and the
//! watcher takes that record when it meets exactly that version. A file edited by hand (or a
//! version nobody announced) logs as `file-watch`.
//!
//! The folder is polled rather than watched with inotify: a handful of files, checked once a
//! second, cost nothing, and polling behaves the same on every file system (network mounts,
//! editors that replace files by rename).

use super::model::Flow;
use super::validate::{self, Context, FlowError};
use crate::config::Config;
use crate::store::{FlowPublication, PublishAction, Store};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use switchboard_media::prompt::PromptLibrary;
use tokio::sync::{mpsc, watch as watch_channel};

/// How often the folder is checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// The actor the operation log names for a change the watcher found on its own.
pub const FILE_WATCH: &str = "file-watch";

/// Who wrote which version of which flow file, announced by the writer (the HTTP API) and
/// taken by the watcher when it publishes or rejects that version. Cheap to clone; one lock,
/// never held across an `.await`.
///
/// Bounded: an announcement the watcher never meets (the same text written twice, a file
/// overwritten again before the next poll, a watcher that is off) is dropped once
/// [`Publishers::MAX_PENDING`] newer ones have arrived, or after [`Publishers::TTL_MS`].
#[derive(Clone, Debug, Default)]
pub struct Publishers(Arc<Mutex<VecDeque<Announced>>>);

#[derive(Debug)]
struct Announced {
    flow: String,
    version: String,
    actor: String,
    at_ms: i64,
}

impl Publishers {
    pub const MAX_PENDING: usize = 256;
    /// Long past the watcher's one-second poll.
    pub const TTL_MS: i64 = 10 * 60 * 1000;

    /// `actor` is about to write `version` (the SHA-256 of the text) of `flow`.
    pub fn announce(&self, flow: &str, version: &str, actor: &str, now_ms: i64) {
        let mut pending = self.0.lock().expect("publishers lock");
        // A newer announcement of the same version replaces an older one.
        pending.retain(|a| !(a.flow == flow && a.version == version));
        if pending.len() >= Self::MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back(Announced {
            flow: flow.to_owned(),
            version: version.to_owned(),
            actor: actor.to_owned(),
            at_ms: now_ms,
        });
    }

    /// Who announced `version` of `flow`, consumed; `None` for a change nobody announced.
    pub fn take(&self, flow: &str, version: &str, now_ms: i64) -> Option<String> {
        let mut pending = self.0.lock().expect("publishers lock");
        pending.retain(|a| now_ms - a.at_ms < Self::TTL_MS);
        let i = pending
            .iter()
            .rposition(|a| a.flow == flow && a.version == version)?;
        pending.remove(i).map(|a| a.actor)
    }
}

/// What the validator needs to know about the rest of the configuration: the prompts (by
/// name), the queues, the accounts, and the other flows.
pub fn context(config: &Config, prompts: &PromptLibrary, flow_names: BTreeSet<String>) -> Context {
    let mut names: BTreeSet<String> = prompts.names().map(str::to_owned).collect();
    names.extend(prompt_names(&config.media.prompts_dir));
    Context {
        prompts: names,
        queues: config.acd.queues.iter().map(|q| q.id.0.clone()).collect(),
        flows: flow_names,
        extensions: config.accounts.iter().map(|a| a.user.clone()).collect(),
    }
}

/// Prompt names: the stems of the audio files in the prompt folder (decoding them is not
/// needed to know their names).
pub fn prompt_names(dir: &Path) -> BTreeSet<String> {
    stems(dir, &["wav", "mp3", "ogg", "oga", "flac"])
}

/// Flow names: the stems of the `*.yaml` files in a folder.
pub fn flow_names(dir: &Path) -> BTreeSet<String> {
    flow_files(dir).into_keys().collect()
}

fn stems(dir: &Path, extensions: &[&str]) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| extensions.contains(&x.to_ascii_lowercase().as_str()))
        })
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect()
}

fn flow_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                out.insert(stem.to_owned(), p);
            }
        }
    }
    out
}

fn log_errors(errors: &[FlowError]) {
    for e in errors {
        tracing::error!("{e}");
    }
}

/// Validate every flow in the folder; the valid ones are returned for publishing.
pub fn startup(config: &Config, prompts: &PromptLibrary) -> Vec<Arc<Flow>> {
    let dir = &config.ivr.flows_dir;
    if !dir.is_dir() {
        tracing::warn!(dir = %dir.display(), "flow folder not found; no service number has a flow");
        return Vec::new();
    }
    let names = flow_files(dir).into_keys().collect();
    let ctx = context(config, prompts, names);
    let (flows, errors) = validate::load_dir(dir, &ctx);
    if !errors.is_empty() {
        tracing::error!(
            errors = errors.len(),
            "some flows are invalid and were not published"
        );
        log_errors(&errors);
    }
    flows.into_iter().map(Arc::new).collect()
}

/// Log the flows published at start-up whose version differs from the last one the operation
/// log knows (a file edited while the server was down is a publish too).
pub async fn log_startup(store: &Store, flows: &[Arc<Flow>]) {
    for f in flows {
        let last = match store.flow_publications(&f.name).await {
            Ok(entries) => entries
                .into_iter()
                .rev()
                .find(|e| e.entry.action == PublishAction::Published)
                .map(|e| e.entry.version),
            Err(e) => {
                tracing::error!(error = %e, "operation log not readable");
                return;
            }
        };
        if last.as_deref() == Some(f.version.as_str()) {
            continue;
        }
        let entry = FlowPublication {
            at_ms: crate::rt::unix_ms(),
            flow: f.name.clone(),
            version: f.version.clone(),
            actor: "start-up".into(),
            action: PublishAction::Published,
            diff: None,
            errors: None,
        };
        if let Err(e) = store.log_flow_publication(&entry).await {
            tracing::error!(error = %e, "operation log not written");
        }
    }
}

/// A unified diff of two versions of a flow file (`None` when there was no previous one).
pub fn diff(old: Option<&str>, new: &str, name: &str) -> Option<String> {
    let old = old?;
    let d = similar::TextDiff::from_lines(old, new);
    Some(
        d.unified_diff()
            .context_radius(2)
            .header(&format!("{name} (serving)"), &format!("{name} (new)"))
            .to_string(),
    )
}

/// Poll the flow folder and publish changed files through `publish` (the engine's input).
pub fn watch<I: From<Vec<Arc<Flow>>> + Send + 'static>(
    config: &Config,
    prompts: &PromptLibrary,
    publish: mpsc::Sender<I>,
    mut shutdown: watch_channel::Receiver<bool>,
    store: Store,
    publishers: Publishers,
) {
    let dir = config.ivr.flows_dir.clone();
    let config = config.clone();
    let prompts = prompts.clone();
    tokio::spawn(async move {
        // What each file held when last seen (text), and its modification stamp; and the text
        // of the version each flow is serving, which a publish's diff is taken against.
        let mut seen: BTreeMap<String, (Option<SystemTime>, u64, String)> = BTreeMap::new();
        let mut serving: BTreeMap<String, String> = BTreeMap::new();
        let names: BTreeSet<String> = flow_files(&dir).into_keys().collect();
        for (name, path) in flow_files(&dir) {
            if let (Ok(meta), Ok(text)) = (std::fs::metadata(&path), std::fs::read_to_string(&path))
            {
                let ctx = context(&config, &prompts, names.clone());
                if validate::validate(&path.display().to_string(), &text, &ctx).is_ok() {
                    serving.insert(name.clone(), text.clone());
                }
                seen.insert(name, (meta.modified().ok(), meta.len(), text));
            }
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let files = flow_files(&dir);
            let names: BTreeSet<String> = files.keys().cloned().collect();
            for (name, path) in &files {
                let Ok(meta) = std::fs::metadata(path) else {
                    continue;
                };
                let stamp = (meta.modified().ok(), meta.len());
                if seen.get(name).is_some_and(|(m, l, _)| (*m, *l) == stamp) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(path) else {
                    continue;
                };
                let last_seen = seen.get(name).map(|(_, _, t)| t.clone());
                seen.insert(name.clone(), (stamp.0, stamp.1, text.clone()));
                if last_seen.as_deref() == Some(text.as_str()) {
                    continue; // touched, not changed
                }
                let previous = serving.get(name).cloned();
                let ctx = context(&config, &prompts, names.clone());
                let file = path.display().to_string();
                let version_of = |t: &str| {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(t.as_bytes()))
                };
                let version = version_of(&text);
                let now_ms = crate::rt::unix_ms();
                let actor = publishers
                    .take(name, &version, now_ms)
                    .unwrap_or_else(|| FILE_WATCH.to_owned());
                let entry = |action, errors: Option<String>| FlowPublication {
                    at_ms: now_ms,
                    flow: name.clone(),
                    version: version.clone(),
                    actor: actor.clone(),
                    action,
                    diff: diff(previous.as_deref(), &text, name),
                    errors,
                };
                match validate::validate(&file, &text, &ctx) {
                    Ok(flow) => {
                        serving.insert(name.clone(), text.clone());
                        tracing::info!(flow = %name, %actor, "flow file changed; publishing the new version");
                        if let Err(e) = store
                            .log_flow_publication(&entry(PublishAction::Published, None))
                            .await
                        {
                            tracing::error!(error = %e, "operation log not written");
                        }
                        if publish.send(I::from(vec![Arc::new(flow)])).await.is_err() {
                            return;
                        }
                    }
                    Err(errors) => {
                        tracing::error!(flow = %name, errors = errors.len(), "flow file changed but is invalid; the serving version stays");
                        log_errors(&errors);
                        metrics::counter!("flow_publish_rejected_total").increment(1);
                        let text = errors
                            .iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("\n");
                        if let Err(e) = store
                            .log_flow_publication(&entry(PublishAction::Rejected, Some(text)))
                            .await
                        {
                            tracing::error!(error = %e, "operation log not written");
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_version_names_its_writer_once() {
        let p = Publishers::default();
        p.announce("main", "v2", "api:ops", 1_000);
        // Another version, or another flow, is not the announced change.
        assert_eq!(p.take("main", "v3", 1_500), None);
        assert_eq!(p.take("sales", "v2", 1_500), None);
        assert_eq!(p.take("main", "v2", 2_000).as_deref(), Some("api:ops"));
        // Taken: the same text written again by hand logs as the file watcher.
        assert_eq!(p.take("main", "v2", 2_500), None);
    }

    #[test]
    fn stale_and_surplus_announcements_are_dropped() {
        let p = Publishers::default();
        p.announce("main", "old", "api:ops", 0);
        assert_eq!(p.take("main", "old", Publishers::TTL_MS), None);
        for i in 0..=Publishers::MAX_PENDING {
            p.announce("main", &i.to_string(), "api:ops", 0);
        }
        assert_eq!(p.take("main", "0", 1), None, "the oldest went first");
        let last = Publishers::MAX_PENDING.to_string();
        assert_eq!(p.take("main", &last, 1).as_deref(), Some("api:ops"));
    }
}
