//! The `switchboard` binary: wires the engine and the HTTP API together, and the CLI.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use switchboard_api::auth::{self, Role};
use switchboard_engine::cdr::{self, Lang};
use switchboard_engine::config::{Config, ConfigError};
use switchboard_engine::endpoint::FlowSet;
use switchboard_engine::ivr::model::Flow;
use switchboard_engine::ivr::validate::{self, FlowError};
use switchboard_engine::ivr::{flowtest, graph, load};
use switchboard_engine::rt;
use switchboard_engine::store::{CdrRow, Store};
use switchboard_media::prompt::PromptLibrary;
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
    /// Call records (CDRs) from the database.
    Cdr {
        #[command(subcommand)]
        command: CdrCommand,
    },
    /// Bearer tokens of the HTTP API, in the configured database.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Admin,
    Supervisor,
    Agent,
    Developer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Supervisor => Role::Supervisor,
            RoleArg::Agent => Role::Agent,
            RoleArg::Developer => Role::Developer,
        }
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it, once: only its hash is stored.
    Create {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// What the token is for ("ci", "crm").
        #[arg(long)]
        name: String,
    },
    /// Every token (id, role, name, created, last used, revoked); never the secrets.
    List,
    /// Revoke a token by id: it stops working at once.
    Revoke { id: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LangArg {
    En,
    Zh,
}

impl From<LangArg> for Lang {
    fn from(l: LangArg) -> Lang {
        match l {
            LangArg::En => Lang::En,
            LangArg::Zh => Lang::Zh,
        }
    }
}

#[derive(Subcommand)]
enum CdrCommand {
    /// The most recent call records, newest first: start, call id, type, customer, service
    /// number, agent, skill group, result, missed-call reason and IVR trail.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, value_enum, default_value = "en")]
        lang: LangArg,
    },
    /// One call record in full, with its legs (sub-records).
    Show {
        call_id: String,
        #[arg(long, value_enum, default_value = "en")]
        lang: LangArg,
        /// Print the record as JSON, the shape the `cdr_written` webhook carries.
        #[arg(long)]
        json: bool,
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
    /// Run flow tests (a file, or every `*.yaml` of a folder; default `<flows_dir>/tests`)
    /// against the configuration's flows. Exits 1 if any fails.
    Test { path: Option<PathBuf> },
    /// Draw a flow: SVG (default) or Graphviz DOT, to stdout or `--output`.
    Graph {
        file: PathBuf,
        #[arg(long)]
        dot: bool,
        #[arg(long, short)]
        output: Option<PathBuf>,
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
        Command::Flow {
            command: FlowCommand::Test { path },
        } => {
            let path = path.unwrap_or_else(|| config.ivr.flows_dir.join("tests"));
            test_flows(&config, &path)
        }
        Command::Flow {
            command: FlowCommand::Graph { file, dot, output },
        } => graph_flow(&config, &file, dot, output.as_deref()),
        Command::Cdr { command } => cdr_command(&config, command),
        Command::Token { command } => token_command(&config, command),
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
    let (flows, errors) = load_flows(config, path);
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

/// A flow file or a folder of flows, validated against the configuration.
fn load_flows(config: &Config, path: &Path) -> (Vec<Flow>, Vec<FlowError>) {
    let library = PromptLibrary::new();
    if path.is_dir() {
        let ctx = load::context(config, &library, load::flow_names(path));
        validate::load_dir(path, &ctx)
    } else {
        // A single file may refer to its neighbours.
        let names = path.parent().map(load::flow_names).unwrap_or_default();
        let ctx = load::context(config, &library, names);
        match validate::load_file(path, &ctx) {
            Ok(flow) => (vec![flow], Vec::new()),
            Err(errors) => (Vec::new(), errors),
        }
    }
}

/// `switchboard flow test`: run the flow tests against the flows of the configuration.
fn test_flows(config: &Config, tests: &Path) -> ExitCode {
    let (flows, errors) = load_flows(config, &config.ivr.flows_dir);
    for e in &errors {
        eprintln!("error: {e}");
    }
    let set = FlowSet(
        flows
            .into_iter()
            .map(|f| (f.name.clone(), Arc::new(f)))
            .collect(),
    );
    let summary = if tests.is_dir() {
        flowtest::run_dir(tests, &set).map_err(|e| format!("{}: {e}", tests.display()))
    } else {
        Ok(flowtest::Summary {
            files: vec![(tests.to_path_buf(), flowtest::run_file(tests, &set))],
        })
    };
    match summary {
        Ok(s) => {
            println!("{s}");
            if s.ok() && errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `switchboard flow graph`: the picture of one flow, SVG (default) or Graphviz DOT.
fn graph_flow(config: &Config, file: &Path, dot: bool, out: Option<&Path>) -> ExitCode {
    let (flows, errors) = load_flows(config, file);
    for e in &errors {
        eprintln!("error: {e}");
    }
    let Some(flow) = flows.first() else {
        return ExitCode::FAILURE;
    };
    let text = if dot {
        graph::dot(flow)
    } else {
        graph::svg(flow)
    };
    match out {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                println!("{}: {} written", flow.name, path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}

/// `switchboard token create|list|revoke`: the API's bearer tokens in the configured database.
fn token_command(config: &Config, command: TokenCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<()> = runtime.block_on(async {
        let store = Store::open(&config.database.url).await?;
        match command {
            TokenCommand::Create { role, name } => {
                let name = name.trim();
                anyhow::ensure!(!name.is_empty(), "the token needs a --name");
                let (row, token) = auth::create_token(&store, name, role.into(), unix_ms()).await?;
                eprintln!(
                    "token {} ({}, {}): shown once, keep it safe",
                    row.id, row.role, row.name
                );
                println!("{token}");
            }
            TokenCommand::List => {
                println!(
                    "{:<14} {:<11} {:<20} {:<25} {:<25} REVOKED",
                    "ID", "ROLE", "NAME", "CREATED", "LAST USED"
                );
                for t in store.tokens().await? {
                    println!(
                        "{:<14} {:<11} {:<20} {:<25} {:<25} {}",
                        t.id,
                        t.role,
                        t.name,
                        time_text(Some(t.created_at_ms)),
                        time_text(t.last_used_at_ms),
                        time_text(t.revoked_at_ms),
                    );
                }
            }
            TokenCommand::Revoke { id } => {
                anyhow::ensure!(store.revoke_token(&id, unix_ms()).await?, "no token {id}");
                println!("revoked {id}");
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn unix_ms() -> i64 {
    #[allow(clippy::disallowed_methods)] // the binary's edge, where the clock is read
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A unix-ms time as RFC 3339 (UTC, whole seconds), or `-`.
fn time_text(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_second(ms.div_euclid(1000)).ok())
        .map_or_else(|| "-".to_owned(), |t| t.to_string())
}

/// `switchboard cdr list|show`: read call records from the configured database.
fn cdr_command(config: &Config, command: CdrCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<()> = runtime.block_on(async {
        let store = Store::open(&config.database.url).await?;
        match command {
            CdrCommand::List { limit, lang } => {
                for row in store.recent_cdrs(limit).await? {
                    println!("{}", cdr_line(&row, lang.into()));
                }
            }
            CdrCommand::Show {
                call_id,
                lang,
                json,
            } => match store.cdr(&call_id).await? {
                Some(row) if json => {
                    println!("{}", serde_json::to_string_pretty(&cdr::to_json(&row))?)
                }
                Some(row) => println!("{}", cdr_details(&row, lang.into())),
                None => anyhow::bail!("no call record {call_id}"),
            },
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// A duration for people: `8.5s`, `1m35s`, `1h02m03s`.
fn span(ms: i64) -> String {
    if ms < 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}.{}s", (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

/// Columns a terminal gives a character: two for CJK ideographs and full-width forms, so that
/// Chinese labels line up.
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

fn pad(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(display_width(text));
    format!("{text}{}", " ".repeat(fill))
}

/// One line per record: start, id, type, customer, service number, agent, skill group, result,
/// reason, trail.
fn cdr_line(row: &CdrRow, lang: Lang) -> String {
    let o = &row.open;
    let (result, reason, trail) = match &row.close {
        Some(c) => (
            c.result.label(lang).to_string(),
            c.missed_reason
                .map(|r| r.label(lang).to_string())
                .unwrap_or_default(),
            c.ivr_trail.join(" "),
        ),
        None => (in_progress(lang).into(), String::new(), String::new()),
    };
    let close = row.close.as_ref();
    format!(
        "{}  {}  {}  {}  {}  {}  {}  {}  {}  {}",
        when(o.started_at_ms),
        o.call_id,
        o.call_type.label(lang),
        o.customer_number,
        o.service_number.as_deref().unwrap_or("-"),
        close.and_then(|c| c.agent.as_deref()).unwrap_or("-"),
        close.and_then(|c| c.queue.as_deref()).unwrap_or("-"),
        result,
        if reason.is_empty() { "-" } else { &reason },
        trail
    )
}

fn in_progress(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "(in progress)",
        Lang::Zh => "（进行中）",
    }
}

/// `cdr show`: one field a line, names in the chosen language, values aligned.
fn cdr_details(row: &CdrRow, lang: Lang) -> String {
    let mut out = String::new();
    let mut field = |en: &str, zh: &str, value: &str| {
        let (name, width) = match lang {
            Lang::En => (format!("{en}:"), 16),
            Lang::Zh => (format!("{zh}："), 14),
        };
        out.push_str(&format!("{}{value}\n", pad(&name, width)));
    };
    let opt = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let opt_span = |v: Option<i64>| v.map(span).unwrap_or_else(|| "-".into());
    let o = &row.open;
    field("call id", "通话ID", &o.call_id);
    field("type", "通话类型", o.call_type.label(lang));
    field("direction", "呼叫类型", o.direction.label(lang));
    field("customer", "客户号码", &o.customer_number);
    field("trunk number", "中继号码", &opt(o.trunk_number.as_deref()));
    field(
        "service number",
        "服务号",
        &opt(o.service_number.as_deref()),
    );
    field("started", "开始时间", &when(o.started_at_ms));
    match &row.close {
        None => field(
            "state",
            "状态",
            match lang {
                Lang::En => "(in progress, or left open by a crash until the next start)",
                Lang::Zh => "（通话中，或因崩溃未结束，下次启动时补全）",
            },
        ),
        Some(c) => {
            if let Some(ring) = c.ring_at_ms {
                field("ringing", "振铃时间", &when(ring));
            }
            field(
                "answered",
                "接通时间",
                &c.answered_at_ms.map(when).unwrap_or_else(|| "-".into()),
            );
            field("ended", "结束时间", &when(c.ended_at_ms));
            field("duration", "总时长", &opt_span(row.duration_ms()));
            field("ring time", "振铃时长", &opt_span(row.ring_ms()));
            field("talk time", "通话时长", &opt_span(row.talk_ms()));
            field("result", "通话结果", c.result.label(lang));
            field(
                "missed reason",
                "未接原因",
                c.missed_reason.map(|r| r.label(lang)).unwrap_or("-"),
            );
            field(
                "hung up by",
                "挂机方",
                c.hangup_by.map(|h| h.label(lang)).unwrap_or("-"),
            );
            field("caller ID", "外显号码", &opt(c.caller_id.as_deref()));
            field("agent", "座席", &opt(c.agent.as_deref()));
            field("skill group", "技能组", &opt(c.queue.as_deref()));
            field("queue wait", "排队时长", &opt_span(c.queue_wait_ms));
            field("wrap-up", "话后整理", &opt_span(c.wrap_up_ms));
            let answers: Vec<String> = c
                .satisfaction
                .iter()
                .map(|(question, score)| match lang {
                    Lang::En => format!("Q{question}={score}"),
                    Lang::Zh => format!("问题{question}={score}分"),
                })
                .collect();
            field(
                "satisfaction",
                "满意度",
                &if answers.is_empty() {
                    "-".into()
                } else {
                    answers.join(" ")
                },
            );
            let version = c
                .flow_version
                .as_deref()
                .map(|v| &v[..v.len().min(12)])
                .unwrap_or("");
            field(
                "flow",
                "流程",
                &format!("{} {version}", opt(c.flow.as_deref())),
            );
            field("IVR trail", "IVR轨迹", &c.ivr_trail.join(" "));
            for (name, value) in &c.inputs {
                field("input", "输入", &format!("{name} = {value}"));
            }
            if let Some(p) = &c.recording_path {
                field("recording", "录音", p);
            }
        }
    }
    if !row.legs.is_empty() {
        out.push_str(&legs_table(row, lang));
    }
    out
}

/// The legs (sub-records) of `cdr show`, one a line under a header.
fn legs_table(row: &CdrRow, lang: Lang) -> String {
    let header: [&str; 8] = match lang {
        Lang::En => [
            "kind",
            "peer",
            "trunk",
            "started",
            "ring",
            "talk",
            "result",
            "hung up by",
        ],
        Lang::Zh => [
            "类型",
            "对端",
            "中继",
            "开始",
            "振铃",
            "通话",
            "结果",
            "挂机方",
        ],
    };
    let mut rows: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    for leg in &row.legs {
        let peer = match leg.agent.as_deref() {
            Some(agent) if agent != leg.peer => format!("{} ({agent})", leg.peer),
            _ => leg.peer.clone(),
        };
        let peer = match leg.queue.as_deref() {
            Some(queue) => format!("{peer} @{queue}"),
            None => peer,
        };
        let result = match (leg.result, leg.reason) {
            (Some(result), Some(reason)) => {
                format!("{} / {}", result.label(lang), reason.label(lang))
            }
            (Some(result), None) => result.label(lang).to_owned(),
            (None, Some(reason)) => reason.label(lang).to_owned(),
            (None, None) if leg.ended_at_ms.is_none() => in_progress(lang).to_owned(),
            (None, None) => "-".to_owned(),
        };
        let started = jiff::Timestamp::from_millisecond(leg.started_at_ms)
            .map(|t| t.strftime("%H:%M:%S").to_string())
            .unwrap_or_else(|_| leg.started_at_ms.to_string());
        rows.push([
            leg.kind.label(lang).to_owned(),
            peer,
            leg.trunk.clone().unwrap_or_else(|| "-".into()),
            started,
            leg.ring_ms().map(span).unwrap_or_else(|| "-".into()),
            leg.talk_ms().map(span).unwrap_or_else(|| "-".into()),
            result,
            leg.hangup_by
                .map(|h| h.label(lang))
                .unwrap_or("-")
                .to_owned(),
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(display_width(cell));
        }
    }
    let mut out = match lang {
        Lang::En => format!("legs ({}):\n", row.legs.len()),
        Lang::Zh => format!("子话单（{}）：\n", row.legs.len()),
    };
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(widths).map(|(cell, w)| pad(cell, w)).collect();
        out.push_str(&format!("  {}\n", cells.join("  ").trim_end()));
    }
    out
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
    // The API's own pool on the same database: the engine's has migrated it already, and WAL
    // lets the API's reads run beside the engine's writes.
    let store = Store::open(&config.database.url).await?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(switchboard_api::serve(
        http,
        switchboard_api::AppState::new(metrics, store)
            .with_engine(running.engine.clone())
            .with_events(running.events.clone())
            .with_config(Arc::new(config.clone())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_engine::cdr::{
        CallResult, CallType, CdrClose, CdrLeg, CdrOpen, Direction, HangupBy, LegKind, MissedReason,
    };

    fn served_call() -> CdrRow {
        let t0 = 1_700_000_000_000;
        let leg = CdrLeg {
            leg_id: "l-1".into(),
            call_id: "c-1".into(),
            kind: LegKind::Agent,
            peer: "8002".into(),
            started_at_ms: t0 + 8_000,
            answered_at_ms: None,
            ended_at_ms: Some(t0 + 20_000),
            result: Some(CallResult::NotAnswered),
            reason: Some(MissedReason::AgentNoAnswer),
            agent: Some("8002".into()),
            queue: Some("sales".into()),
            hangup_by: Some(HangupBy::System),
            caller_id: None,
            trunk: None,
        };
        CdrRow {
            open: CdrOpen {
                call_id: "c-1".into(),
                call_type: CallType::Inbound,
                direction: Direction::Inbound,
                customer_number: "13800000001".into(),
                trunk_number: None,
                service_number: Some("4000".into()),
                started_at_ms: t0,
            },
            close: Some(CdrClose {
                ended_at_ms: t0 + 95_000,
                answered_at_ms: Some(t0 + 25_000),
                result: CallResult::Answered,
                hangup_by: Some(HangupBy::Caller),
                agent: Some("8001".into()),
                queue: Some("sales".into()),
                queue_wait_ms: Some(12_000),
                wrap_up_ms: Some(30_000),
                satisfaction: vec![(1, 5)],
                inputs: vec![("account".into(), "1234".into())],
                ..CdrClose::default()
            }),
            legs: vec![
                leg.clone(),
                CdrLeg {
                    leg_id: "l-2".into(),
                    peer: "8001".into(),
                    agent: Some("8001".into()),
                    started_at_ms: t0 + 20_000,
                    answered_at_ms: Some(t0 + 25_000),
                    ended_at_ms: Some(t0 + 95_000),
                    result: Some(CallResult::Answered),
                    reason: None,
                    hangup_by: Some(HangupBy::Caller),
                    ..leg
                },
            ],
            mark: None,
        }
    }

    #[test]
    fn show_prints_the_acd_fields_and_a_legs_table() {
        let text = cdr_details(&served_call(), Lang::En);
        for line in [
            "agent:          8001",
            "skill group:    sales",
            "queue wait:     12.0s",
            "talk time:      1m10s",
            "wrap-up:        30.0s",
            "satisfaction:   Q1=5",
            "input:          account = 1234",
            "legs (2):",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        let legs: Vec<&str> = text.lines().skip_while(|l| *l != "legs (2):").collect();
        assert_eq!(
            legs[1..],
            [
                "  kind   peer         trunk  started   ring   talk   result                               hung up by",
                "  Agent  8002 @sales  -      22:13:28  12.0s  -      Not answered / Agent did not answer  System",
                "  Agent  8001 @sales  -      22:13:40  5.0s   1m10s  Answered                             Caller",
            ]
        );
        // A call out names the trunk it went through.
        let mut row = served_call();
        row.legs[1] = CdrLeg {
            kind: LegKind::Outbound,
            peer: "+8613800000000".into(),
            agent: None,
            queue: None,
            trunk: Some("carrier".into()),
            ..row.legs[1].clone()
        };
        let text = cdr_details(&row, Lang::En);
        assert!(
            text.contains("  Outbound  +8613800000000  carrier  22:13:40"),
            "{text}"
        );
    }

    #[test]
    fn chinese_labels_line_up() {
        let text = cdr_details(&served_call(), Lang::Zh);
        assert!(text.contains("技能组：      sales\n"), "{text}");
        assert!(text.contains("满意度：      问题1=5分\n"), "{text}");
        // Every value starts in the same terminal column, whatever the label's width.
        let columns: Vec<usize> = text
            .lines()
            .take_while(|l| !l.starts_with("子话单"))
            .map(|l| {
                let value = l.split_once('：').unwrap().1.trim_start();
                display_width(&l[..l.len() - value.len()])
            })
            .collect();
        assert!(columns.iter().all(|&c| c == 14), "{columns:?}\n{text}");
        assert!(
            text.contains(
                "  座席  8002 @sales  -     22:13:28  12.0s  -      未接通 / 座席未接听  系统挂机\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn list_has_agent_and_skill_group_columns() {
        let line = cdr_line(&served_call(), Lang::En);
        assert!(line.contains("  4000  8001  sales  Answered  -"), "{line}");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(span(8_500), "8.5s");
        assert_eq!(span(95_000), "1m35s");
        assert_eq!(span(3_723_000), "1h02m03s");
        assert_eq!(span(-5), "-5ms");
    }
}
