#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of the SIP engine, on the stable toolchain.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      default: 60 s, all four targets
#   FUZZ_RUNS=100000 fuzz/run.sh 0 sip_stream         a fixed number of executions instead
#
# Seeds the corpus (fuzz/corpus/<target>/, git-ignored) from tests/vectors/sip-torture and
# fuzz/seeds at run time, builds with `cargo fuzz build --sanitizer none` (no nightly needed),
# runs each target for the given time, and prints one line per target: executions, exec/s,
# wall seconds, edges covered, libFuzzer's corpus (units) and the files in corpus/<target>/,
# crashes. A crash leaves its input in fuzz/artifacts/<target>/ and makes the
# script exit 1. Full libFuzzer logs: fuzz/target/run-logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sip_datagram sip_stream parse_roundtrip flow_yaml)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

vectors=../tests/vectors/sip-torture
delim='%%NEXT%%'

# Seeds. Input layouts are documented in src/lib.rs; the prefixes here are the ones
# tests/replay.rs replays. Steps 0x04 0x13 0x53 0xe9 = 250 ms, 1 s, 4 s, 64 s.
seed_datagram() {
    local out=corpus/sip_datagram f name i p
    mkdir -p "$out"
    for f in "$vectors"/{valid,invalid,extra}/*.sip; do
        name=$(basename "$(dirname "$f")")-$(basename "$f" .sip)
        i=0
        for p in '\x00\x04\x13\x53\xe9' '\x01\x04\x13\x53\xe9' '\x12\x09\x00\x00\x00'; do
            { printf "$p"; cat "$f"; } >"$out/vec-$name-$i"
            i=$((i + 1))
        done
    done
    for f in seeds/*.sip; do
        name=$(basename "$f" .sip)
        # multi-datagram mode: untrusted, trusted, trusted with store failures, repeated
        for p in '\x08' '\x09' '\x0d' '\x19'; do
            { printf "$p"'\x04\x13\x53\xe9'; cat "$f"; } >"$out/seed-$name-${p#\\x}"
        done
    done
}

seed_stream() {
    local out=corpus/sip_stream f name
    mkdir -p "$out"
    for f in "$vectors"/{valid,invalid,extra}/*.sip; do
        name=$(basename "$(dirname "$f")")-$(basename "$f" .sip)
        # the message twice, pipelined: whole-buffer chunks, then small odd-sized ones
        { printf '\x00\xff\xff\xff\xff\x04\x13\x53\xe9'; cat "$f" "$f"; } >"$out/vec-$name-0"
        { printf '\x01\x07\x3f\x00\xff\x04\x13\x53\xe9'; cat "$f" "$f"; } >"$out/vec-$name-1"
    done
    for f in seeds/*.sip; do
        name=$(basename "$f" .sip)
        { printf '\x01\x07\x3f\x00\xff\x04\x13\x53\xe9'; sed "s/$delim//g" "$f"; } >"$out/seed-$name"
    done
}

seed_roundtrip() {
    local out=corpus/parse_roundtrip f
    mkdir -p "$out"
    for f in "$vectors"/{valid,invalid,extra}/*.sip; do
        cp "$f" "$out/vec-$(basename "$(dirname "$f")")-$(basename "$f" .sip)"
    done
}

seed_flows() {
    local out=corpus/flow_yaml f
    mkdir -p "$out"
    for f in ../ivr-flows/*.yaml; do
        cp "$f" "$out/flow-$(basename "$f" .yaml)"
    done
}

seed_datagram
seed_stream
seed_roundtrip
seed_flows

logs=target/run-logs
mkdir -p "$logs"
if ! cargo fuzz build --sanitizer none >"$logs/build.log" 2>&1; then
    tail -30 "$logs/build.log" >&2
    exit 2
fi
if [ -n "${FUZZ_RUNS:-}" ]; then
    bound=(-runs="$FUZZ_RUNS")
    what="$FUZZ_RUNS runs"
else
    bound=(-max_total_time="$secs")
    what="${secs} s"
fi

failed=0
printf '%-16s %11s %7s %8s %6s %7s %7s %7s\n' target executions exec/s seconds edges corpus files crashes
for t in "${targets[@]}"; do
    mkdir -p "artifacts/$t"
    before=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
    start=$(date +%s)
    set +e
    cargo fuzz run --sanitizer none "$t" "corpus/$t" -- \
        "${bound[@]}" -dict=sip.dict -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$logs/$t.log" 2>&1
    rc=$?
    set -e
    elapsed=$(($(date +%s) - start))
    after=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
    # the last status line: "#N DONE cov: EDGES ft: F corp: UNITS/SIZE ..."
    last=$(grep -E '^#[0-9]+' "$logs/$t.log" | tail -1)
    edges=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
    units=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    files=$(find "corpus/$t" -type f | wc -l)
    crashes=$((after - before))
    printf '%-16s %11s %7s %8s %6s %7s %7s %7s\n' "$t" "${execs:-?}" "${rate:-?}" "$elapsed" \
        "${edges:-?}" "${units:-?}" "$files" "$crashes"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        echo "  $t: libFuzzer exited $rc; log $logs/$t.log; inputs in fuzz/artifacts/$t/" >&2
        grep -m1 -A3 "panicked at" "$logs/$t.log" >&2 || tail -20 "$logs/$t.log" >&2
    fi
done
echo "bound: $what per target; sanitizer none; toolchain $(rustc --version)"
exit "$failed"
