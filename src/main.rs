//! The `switchboard` binary: wires the engine and the HTTP API together, and the CLI.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchboard_engine::config::{Config, ConfigError};
use switchboard_engine::rt;
use tracing_subscriber::EnvFilter;

/// A registrar holds hundreds of thousands of small, long-lived allocations (transactions, their
/// responses, bindings); glibc's malloc spent a fifth of the CPU in its free lists under load
/// (bench/README.md), mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The demo configuration, compiled in so that `cargo run` works from any directory.
const EMBEDDED_CONFIG: &str = include_str!("../sip-config/switchboard.yaml");
const DEFAULT_CONFIG: &str = "sip-config/switchboard.yaml";

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: a telephony-first contact-center engine"
)]
struct Cli {
    /// Configuration file. Without it, `sip-config/switchboard.yaml` is used when present,
    /// else the demo configuration built into the binary.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Log level or filter (`info`, `debug`, `info,switchboard_engine=debug`). Overrides the
    /// file's `logging.level`; `RUST_LOG` overrides both.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Once every listener is up, write the bound addresses here as JSON (for supervisors and
    /// tests that let the system pick ports with port 0).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Run,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// IVR flow tools.
    Flow {
        #[command(subcommand)]
        command: FlowCommand,
    },
}

#[derive(Subcommand)]
enum FlowCommand {
    /// Check a flow file, or every `*.yaml` in a folder, against the prompt library, the
    /// queues and the accounts of the configuration. Prints every error as
    /// `file:line:column: [node] field: message`; exits 1 if there is any.
    Validate {
        /// A flow file or a folder of flows (default: the configuration's `ivr.flows_dir`).
        path: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and exit: 0 when it loads; otherwise non-zero, naming the
    /// file, line, column and field of the first problem found.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, source) = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // The error already names file, line, column and field (or the I/O cause).
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cli.log_level.as_deref().unwrap_or(&config.logging.level));
    match cli.command.unwrap_or(Command::Run) {
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            for w in &config.warnings {
                println!("warning: {w}");
            }
            println!(
                "{source}: OK (listeners: {}, accounts: {}, trunks: {})",
                config.sip.listen.len(),
                config.accounts.len(),
                config.trunks.len()
            );
            ExitCode::SUCCESS
        }
        Command::Flow {
            command: FlowCommand::Validate { path },
        } => {
            let path = path.unwrap_or_else(|| config.ivr.flows_dir.clone());
            validate_flows(&config, &path)
        }
        Command::Run => {
            config.log_warnings();
            tracing::info!(config = %source, "starting Switchboard {}", env!("CARGO_PKG_VERSION"));
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config, cli.ready_file)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `switchboard flow validate`: every error of every flow, then a summary.
fn validate_flows(config: &Config, path: &Path) -> ExitCode {
    use switchboard_engine::ivr::validate::{load_dir, load_file, Context};
    let mut ctx = Context {
        prompts: prompt_names(&config.media.prompts_dir),
        // The demo's skill groups; the ACD's queue configuration adds to these.
        queues: ["sales", "support"].map(String::from).into(),
        flows: Default::default(),
        extensions: config.accounts.iter().map(|a| a.user.clone()).collect(),
    };
    let (flows, errors) = if path.is_dir() {
        load_dir(path, &ctx)
    } else {
        // A single file may refer to its neighbours.
        if let Some(dir) = path.parent() {
            ctx.flows = yaml_stems(dir);
        }
        match load_file(path, &ctx) {
            Ok(flow) => (vec![flow], Vec::new()),
            Err(errors) => (Vec::new(), errors),
        }
    };
    for e in &errors {
        eprintln!("error: {e}");
    }
    if errors.is_empty() {
        let n = flows.len();
        println!("{n} flow{} OK", if n == 1 { "" } else { "s" });
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} error{}; {} flow{} OK",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            flows.len(),
            if flows.len() == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    }
}

/// Prompt names: the stems of the audio files in the prompt folder (decoding them is not needed
/// to know their names).
fn prompt_names(dir: &Path) -> std::collections::BTreeSet<String> {
    stems(dir, &["wav", "mp3", "ogg", "oga", "flac"])
}

fn yaml_stems(dir: &Path) -> std::collections::BTreeSet<String> {
    stems(dir, &["yaml"])
}

fn stems(dir: &Path, extensions: &[&str]) -> std::collections::BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Default::default();
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

fn load_config(path: Option<&Path>) -> Result<(Config, String), ConfigError> {
    match path {
        Some(p) => Ok((Config::load(p)?, p.display().to_string())),
        None if Path::new(DEFAULT_CONFIG).exists() => {
            Ok((Config::load(DEFAULT_CONFIG)?, DEFAULT_CONFIG.to_owned()))
        }
        None => Ok((
            Config::from_yaml_str(EMBEDDED_CONFIG, "<built-in demo configuration>")?,
            "<built-in demo configuration>".to_owned(),
        )),
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Logs go to stderr (stdout stays free for command output), coloured only on a terminal.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(config: Config, ready_file: Option<PathBuf>) -> Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    // HTTP is bound first: if its port is taken, nothing else has started yet.
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on http {}: {}",
                config.http.listen,
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    "address already in use".to_owned()
                } else {
                    e.to_string()
                }
            )
        })?;
    let http_addr = http.local_addr()?;
    let running = rt::start(&config).await?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(switchboard_api::serve(
        http,
        switchboard_api::AppState { metrics },
        async move {
            let _ = stop_rx.await;
        },
    ));
    if let Some(path) = ready_file {
        let sip: Vec<serde_json::Value> = running
            .listeners
            .iter()
            .map(|(t, a)| serde_json::json!({ "transport": t.as_str().to_ascii_lowercase(), "address": a.to_string() }))
            .collect();
        let doc = serde_json::json!({ "sip": sip, "http": http_addr.to_string(), "pid": std::process::id() });
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, doc.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    tracing::info!("Switchboard is ready");

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    // Bounded: a store that hangs must not keep the process from stopping. What was
    // acknowledged is committed already; what was not, phones retransmit.
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        running.shutdown().await;
        let _ = http_task.await;
    })
    .await;
    if stopped.is_err() {
        tracing::warn!("shutdown took longer than 10 s; stopping anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
