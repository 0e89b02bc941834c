# bench/common.sh: what calls.sh and media.sh share (sourced, not run).
# Starts one release server with a generated config in $WORK, stops what it started on exit.

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
SERVER_PID=""
SIPP_PID=""
CAP_PID=""

need() { command -v "$1" >/dev/null || { echo "missing: $1 ($2)" >&2; exit 1; }; }

stop_pid() { # pid, signal: stop one process we started and reap it (10 s, then KILL)
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill "-$2" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$CAP_PID" INT
    stop_pid "$SIPP_PID" TERM
    stop_pid "$SERVER_PID" TERM
    if [ "${KEEP:-0}" = 1 ]; then echo "work files kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}

build() {
    if [ "${BUILD:-1}" = 1 ]; then
        echo "== cargo build --release (a no-op when up to date)"
        (cd "$ROOT" && cargo build --release --bin switchboard)
    fi
    [ -x "$BIN" ] || { echo "no binary at $BIN (build it, or drop --no-build)" >&2; exit 1; }
}

# start_server NAME PROMPT: a fresh server in $WORK/NAME, pinned to $SERVER_CPU; sets SERVER_PID,
# SIP (ip:port) and HTTP (ip:port). 127.0.0.1 is trusted (auth.trusted), so no digest.
# PROMPTS_DIR (default: the repository's prompts/) and MEDIA_WORKERS (default 0: one per core
# the server may run on, so 1 under taskset) override media.prompts_dir and media.workers.
# EXTRA_YAML, when set, is added to the config as top-level keys (trunks, ivr, ...).
start_server() {
    local dir=$WORK/$1
    mkdir -p "$dir"
    cat >"$dir/switchboard.yaml" <<YAML
sip:
  listen:
    - transport: udp
      address: "127.0.0.1:0"
http:
  listen: "127.0.0.1:0"
database:
  url: "sqlite://$dir/switchboard.db"
auth:
  algorithms: [md5]
  lockout:
    max_failures: 0
  # The bench's callers skip digest: calls/s measures calls, not authentication.
  trusted: ["127.0.0.1/32"]
accounts: []
media:
  workers: ${MEDIA_WORKERS:-0}
  rtp_address: "127.0.0.1"
  rtp_port_min: 20000
  rtp_port_max: 29998
  prompts_dir: "${PROMPTS_DIR:-$ROOT/prompts}"
  recordings_dir: "$dir/recordings"
  rtp_timeout_s: 0
calls:
  test_line:
    number: "9999"
    prompt: $2
${EXTRA_YAML:-}
logging:
  level: warn
YAML
    taskset -c "$SERVER_CPU" "$BIN" --config "$dir/switchboard.yaml" --ready-file "$dir/ready.json" \
        >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        [ -s "$dir/ready.json" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -s "$dir/ready.json" ] || { echo "server not ready" >&2; exit 1; }
    SIP=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print([l["address"] for l in d["sip"] if l["transport"]=="udp"][0])' "$dir/ready.json")
    HTTP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/ready.json")
}

# CPU ticks (utime+stime, all threads) of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { curl -s "http://$HTTP/metrics" | awk -v s="$1" '$1 == s {print $2; f=1} END {if (!f) print 0}'; }
HZ=$(getconf CLK_TCK)
# A free loopback UDP port, even (for SIPp's -mp, which also takes the port two above).
free_port() {
    python3 - <<'PY'
import socket
while True:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    if p % 2 == 0 and p < 65000:
        print(p)
        break
PY
}
