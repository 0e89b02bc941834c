//! Replays every seed and every saved regression through the three harnesses, on stable and
//! without instrumentation: `cargo test --manifest-path fuzz/Cargo.toml`. The torture vectors
//! go in raw (`parse_roundtrip`) and behind the same fixed prefixes `run.sh` gives them.
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"));
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vectors() -> Vec<PathBuf> {
    let base = root().join("../tests/vectors/sip-torture");
    let mut v = Vec::new();
    for d in ["valid", "invalid", "extra"] {
        v.extend(files(&base.join(d)));
    }
    assert!(
        v.len() > 50,
        "torture vectors not found under {}",
        base.display()
    );
    v
}

/// The same prefixes as run.sh's seeding.
const DATAGRAM_PREFIXES: &[&[u8]] = &[
    b"\x00\x04\x13\x53\xe9",
    b"\x01\x04\x13\x53\xe9",
    b"\x12\x09\x00\x00\x00",
];
const STREAM_PREFIXES: &[&[u8]] = &[
    b"\x00\xff\xff\xff\xff\x04\x13\x53\xe9",
    b"\x01\x07\x3f\x00\xff\x04\x13\x53\xe9",
];

fn with_prefix(p: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
fn torture_vectors() {
    let (mut udp, mut tcp) = (0, 0);
    for f in vectors() {
        let data = std::fs::read(&f).unwrap();
        eprintln!("{}", f.display());
        switchboard_fuzz::parse_roundtrip(&data);
        for p in DATAGRAM_PREFIXES {
            udp += switchboard_fuzz::sip_datagram(&with_prefix(p, &data));
        }
        let mut twice = data.clone();
        twice.extend_from_slice(&data);
        for p in STREAM_PREFIXES {
            tcp += switchboard_fuzz::sip_stream(&with_prefix(p, &twice));
        }
    }
    // The harness really drives the endpoint: most vectors get answers.
    eprintln!("sent: {udp} over UDP, {tcp} over TCP");
    assert!(
        udp > 100 && tcp > 50,
        "sent: {udp} over UDP, {tcp} over TCP"
    );
}

#[test]
fn handcrafted_seeds() {
    let seeds = files(&root().join("seeds"));
    assert!(!seeds.is_empty());
    for f in seeds {
        let data = std::fs::read(&f).unwrap();
        eprintln!("{}", f.display());
        for flags in [0x08u8, 0x09, 0x0c, 0x19] {
            switchboard_fuzz::sip_datagram(&with_prefix(&[flags, 0x04, 0x13, 0x53, 0xe9], &data));
        }
        // The same messages pipelined on one connection.
        let stream = String::from_utf8_lossy(&data).replace("%%NEXT%%", "");
        switchboard_fuzz::sip_stream(&with_prefix(STREAM_PREFIXES[1], stream.as_bytes()));
    }
}

/// Every input under regressions/<target>/ (raw libFuzzer artifacts, prefix included).
#[test]
fn regressions() {
    let r = root().join("regressions");
    for f in files(&r.join("sip_datagram")) {
        eprintln!("{}", f.display());
        switchboard_fuzz::sip_datagram(&std::fs::read(&f).unwrap());
    }
    for f in files(&r.join("sip_stream")) {
        eprintln!("{}", f.display());
        switchboard_fuzz::sip_stream(&std::fs::read(&f).unwrap());
    }
    for f in files(&r.join("parse_roundtrip")) {
        eprintln!("{}", f.display());
        switchboard_fuzz::parse_roundtrip(&std::fs::read(&f).unwrap());
    }
    for f in files(&r.join("flow_yaml")) {
        eprintln!("{}", f.display());
        switchboard_fuzz::flow_yaml(&std::fs::read(&f).unwrap());
    }
}

/// The shipped flows (and their tests' neighbours) through the flow harness: they validate
/// against its context or fail with in-range lines, and run without a panic.
#[test]
fn shipped_flows() {
    let dir = root().join("../ivr-flows");
    let flows: Vec<PathBuf> = files(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(!flows.is_empty(), "no flows under {}", dir.display());
    for f in flows {
        eprintln!("{}", f.display());
        switchboard_fuzz::flow_yaml(&std::fs::read(&f).unwrap());
    }
}
