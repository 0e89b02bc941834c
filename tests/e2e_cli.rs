//! End to end: the command line — `config check`, start-up failures, and stopping on SIGTERM.
mod common;

use common::{run_switchboard, Account, Finished, Server, ServerConfig};
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// `switchboard config check --config <file>` in `dir`.
fn check(dir: &Path, file: &Path) -> Finished {
    run_switchboard(
        dir,
        &[
            OsStr::new("config"),
            OsStr::new("check"),
            OsStr::new("--config"),
            file.as_os_str(),
        ],
        LIMIT,
    )
}

/// Write `yaml` to `dir/name` and check it.
fn check_yaml(dir: &Path, name: &str, yaml: &str) -> (String, Finished) {
    let path = dir.join(name);
    fs::write(&path, yaml).unwrap();
    (path.display().to_string(), check(dir, &path))
}

/// The `line:column: field` of the error line naming `file`.
#[track_caller]
fn assert_error_at(run: &Finished, file: &str, line: u32, field: &str) {
    assert!(
        !run.status.success(),
        "a bad configuration must be refused\n{run:?}"
    );
    let located = run.stderr.lines().find_map(|l| {
        let rest = l
            .strip_prefix("error: ")?
            .strip_prefix(file)?
            .strip_prefix(':')?;
        let (l, rest) = rest.split_once(':')?;
        let (c, rest) = rest.split_once(':')?;
        let f = rest.trim_start().split(':').next()?;
        Some((l.parse::<u32>().ok()?, c.parse::<u32>().ok()?, f.to_owned()))
    });
    let Some((l, c, f)) = located else {
        panic!("no `{file}:line:column: field` in stderr:\n{}", run.stderr)
    };
    assert_eq!((l, f.as_str()), (line, field), "{}", run.stderr);
    assert!(c >= 1, "{}", run.stderr);
}

#[test]
fn config_check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::with_accounts(common::strong_accounts(4001, 3, 7));
    let (file, run) = check_yaml(dir.path(), "good.yaml", &config.yaml("sqlite://db.sqlite"));
    assert!(run.status.success(), "{run:?}");
    assert!(
        run.stdout.contains(&format!("{file}: OK")),
        "{}",
        run.stdout
    );
    // Checking binds nothing and creates no database.
    assert!(!dir.path().join("db.sqlite").exists());
}

#[test]
fn config_check_names_file_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();

    // A misspelt key never falls back to a default.
    let (file, run) = check_yaml(dir.path(), "unknown.yaml", "sip:\n  domian: example\n");
    assert_error_at(&run, &file, 2, "sip.domian");
    assert!(
        run.stderr.contains("unknown field `domian`"),
        "{}",
        run.stderr
    );

    // A value of the wrong type.
    let (file, run) = check_yaml(
        dir.path(),
        "type.yaml",
        "sip:\n  domain: example\n  max_message_bytes: \"lots\"\n",
    );
    assert_error_at(&run, &file, 3, "sip.max_message_bytes");
    assert!(run.stderr.contains("invalid type"), "{}", run.stderr);

    // A weak password is refused as soon as a listener is reachable from other machines; the
    // error names the account and the line, never the password.
    let (file, run) = check_yaml(
        dir.path(),
        "weak.yaml",
        "sip:\n  listen:\n    - transport: udp\n      address: \"0.0.0.0:5070\"\n\
         accounts:\n  - user: \"1001\"\n    password: \"demo-1001\"\n",
    );
    assert_error_at(&run, &file, 7, "accounts[0].password");
    assert!(run.stderr.contains("weak password"), "{}", run.stderr);
    assert!(!run.stderr.contains("demo-1001"), "{}", run.stderr);
    // The same account on loopback only is accepted with a warning.
    let (_, run) = check_yaml(
        dir.path(),
        "weak-loopback.yaml",
        "sip:\n  listen:\n    - transport: udp\n      address: \"127.0.0.1:5070\"\n\
         accounts:\n  - user: \"1001\"\n    password: \"demo-1001\"\n",
    );
    assert!(run.status.success(), "{run:?}");
    assert!(run.stdout.contains("warning: "), "{}", run.stdout);
}

/// A SIP port that is already taken: the server exits non-zero at once, says so, and never
/// writes its ready file.
#[test]
fn start_fails_when_the_sip_port_is_taken() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    refuses_to_start(ServerConfig {
        udp_listen: Some(taken.local_addr().unwrap().to_string()),
        ..ServerConfig::default()
    });
}

/// The same for the HTTP port.
#[test]
fn start_fails_when_the_http_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    refuses_to_start(ServerConfig {
        http_listen: taken.local_addr().unwrap().to_string(),
        ..ServerConfig::default()
    });
}

/// Start with `config`, whose port is taken: the server exits non-zero at once, says the
/// address is in use, and never writes its ready file.
fn refuses_to_start(config: ServerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let (file, ready) = (dir.path().join("taken.yaml"), dir.path().join("ready.json"));
    fs::write(&file, config.yaml(&common::db_url(dir.path()))).unwrap();
    let run = run_switchboard(
        dir.path(),
        &[
            OsStr::new("--config"),
            file.as_os_str(),
            OsStr::new("--ready-file"),
            ready.as_os_str(),
        ],
        LIMIT,
    );
    assert!(!run.status.success(), "{run:?}");
    assert!(run.stderr.contains("already in use"), "{}", run.stderr);
    assert!(!ready.exists());
}

/// SIGTERM stops a running server cleanly: exit status 0 within 10 s.
#[tokio::test]
async fn sigterm_exits_zero() {
    let mut server = Server::start(&ServerConfig::with_accounts([Account::demo(1001)]));
    assert_eq!(server.healthz().await, 200);
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("still running 10 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(server.log().contains("stopped"), "{}", server.log());
}
