//! End to end: `switchboard flow validate` on the shipped flows and on a broken one.
mod common;

use common::{run_switchboard, Finished};
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `switchboard flow validate <path>` in a scratch folder whose `prompts` is the shipped library
/// (the built-in demo configuration reads prompts from `./prompts`).
fn validate(dir: &Path, path: &Path) -> Finished {
    let prompts = dir.join("prompts");
    if !prompts.exists() {
        std::os::unix::fs::symlink(Path::new(REPO).join("prompts"), prompts).unwrap();
    }
    run_switchboard(
        dir,
        &[OsStr::new("flow"), OsStr::new("validate"), path.as_os_str()],
        LIMIT,
    )
}

#[test]
fn the_shipped_flows_validate() {
    let dir = tempfile::tempdir().unwrap();
    let run = validate(dir.path(), &Path::new(REPO).join("ivr-flows"));
    assert!(run.status.success(), "{run:?}");
    assert!(run.stdout.contains("2 flows OK"), "{}", run.stdout);
}

#[test]
fn a_broken_flow_lists_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "start: menu\nnodes:\n  menu:\n    type: menu\n    prompt: nosuch\n    choices: { \"1\": gone }\n    no_input: bye\n    invalid: bye\n  bye: { type: hangup }\n",
    )
    .unwrap();
    let run = validate(dir.path(), &file);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let file = file.display();
    for expected in [
        format!("error: {file}:5:5: [menu] prompt: no prompt named `nosuch`"),
        format!("error: {file}:6:16: [menu] choices.1: no node named `gone`"),
    ] {
        assert!(run.stderr.contains(&expected), "{expected}\n{}", run.stderr);
    }
}
