#!/usr/bin/env bash
# bench/click_to_dial.sh: click-to-dial requests per second through the HTTP API, out through a
# trunk to a SIPp carrier.
#
# Starts the release `switchboard` pinned to one core (taskset -c 0) with a generated config:
# UDP and HTTP on 127.0.0.1:0, SQLite in the temp dir, logging at warn, a trunk `carrier` (no
# digest, national number format for China, a fixed display number +861088880000) pointing at
# SIPp's built-in `uas` scenario on a free 127.0.0.1 port (the other core), and a flow `bench`
# that plays the 0.25 s `beep` prompt and hangs up. It makes a developer token with
# `switchboard token create`, then bench/click_to_dial.py (also on SIPp's core) sends N
# `POST /api/v1/calls` {"customer": "<13800000000 + i>", "flow": "bench"}, paced at the target
# rate with bounded concurrency. Each accepted request is a call: INVITE to the carrier ->
# 180/200 -> ACK -> the flow plays beep -> our BYE -> 200.
#
# Reports: requests sent, 201s, other answers by status, the POST latency (p50/p95/p99/max),
# the achieved request rate; then, once the calls have ended (waiting at most 60 s + N / R),
# from the database: click-to-dial records, closed ones, answered ones, the closed ones by
# result and missed-call reason, records left open, the time from the first POST to the last
# record's end (its ended_at_ms) and to the moment every record was closed in the database (the
# records are written behind the calls, so the second may be later); also SIPp's
# successful/failed calls and the server's CPU.
#
# All traffic is on 127.0.0.1; bounded: N requests, SIPp's -m N and -timeout, a bounded wait.
# Every process started is stopped on exit (also on Ctrl-C or TERM).
#
# Usage: bench/click_to_dial.sh [--rate R] [--calls N] [--concurrency C] [--no-build]
#                               [--keep] [--out DIR]
#   --rate R          requests per second offered (default 50; 1..2000)
#   --calls N         requests in all (default 1000; 1..100000)
#   --concurrency C   requests in flight at most (default 32; 1..512)
#   --no-build        do not run `cargo build --release` first
#   --keep            keep the temp dir (config, logs, database, per-request CSV)
#   --out DIR         write the work files to DIR (kept) instead of a temp dir
set -euo pipefail

RATE=50
CALLS=1000
CONCURRENCY=32
BUILD=1
KEEP=0
OUT=""
SERVER_CPU=${SERVER_CPU:-0}
SIPP_CPU=${SIPP_CPU:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE="$2"; shift 2 ;;
        --calls) CALLS="$2"; shift 2 ;;
        --concurrency) CONCURRENCY="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        --out) OUT="$2"; KEEP=1; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ $RATE =~ ^[1-9][0-9]*$ ]] && [ "$RATE" -le 2000 ] || { echo "--rate must be 1..2000" >&2; exit 2; }
[[ $CALLS =~ ^[1-9][0-9]*$ ]] && [ "$CALLS" -le 100000 ] ||
    { echo "--calls must be 1..100000" >&2; exit 2; }
[[ $CONCURRENCY =~ ^[1-9][0-9]*$ ]] && [ "$CONCURRENCY" -le 512 ] ||
    { echo "--concurrency must be 1..512" >&2; exit 2; }

source "$(dirname "$0")/common.sh"
need sipp "apt-get install sip-tester"
need taskset "util-linux"
need python3 "python3"
build
if [ -n "$OUT" ]; then
    mkdir -p "$OUT"
    WORK=$(cd "$OUT" && pwd)
else
    WORK=$(mktemp -d /tmp/switchboard-bench-c2d.XXXXXX)
fi
CLIENT_PID=""
# common.sh's cleanup, after the request client (run in the background, so that a signal is
# handled at once rather than after the client's last request).
stop_all() {
    local rc=$?
    set +e # cleanup reads the exit status from $?, which must not stop this trap
    stop_pid "$CLIENT_PID" TERM
    (exit "$rc")
    cleanup
}
trap stop_all EXIT INT TERM

STEP=c2d
DIR=$WORK/$STEP
# The carrier's SIP port and media port (SIPp's -mp, which also takes the port two above),
# held together while picked so that they differ; SIPp binds them before the server starts.
read -r CARRIER_PORT CARRIER_MEDIA_PORT < <(python3 - <<'PY'
import socket
held, ports = [], []
while len(ports) < 2:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)
    p = s.getsockname()[1]
    if p % 2 == 0 and p < 65000 and all(abs(p - q) > 2 for q in ports):
        ports.append(p)
print(*ports)
PY
)
SEND_S=$(( (CALLS + RATE - 1) / RATE ))
SETTLE_S=$((60 + SEND_S))
mkdir -p "$WORK/flows" "$DIR"
cat >"$WORK/flows/bench.yaml" <<'YAML'
# The click-to-dial bench's flow: a short prompt to the customer, then we hang up.
start: greet
nodes:
  greet:
    type: play
    prompt: beep
    next: bye
  bye:
    type: hangup
YAML
EXTRA_YAML="trunks:
  - name: carrier
    address: \"127.0.0.1:$CARRIER_PORT\"
    number_format:
      country_code: \"86\"
      national_prefix: \"0\"
      outbound: national
    caller_id:
      mode: fixed
      number: \"+861088880000\"
ivr:
  flows_dir: \"$WORK/flows\"
  watch: false"
export EXTRA_YAML
# The carrier: answers every INVITE (180, 200 with SDP), waits for our BYE; quits after N calls,
# or at -timeout whatever happens.
taskset -c "$SIPP_CPU" sipp -sn uas -i 127.0.0.1 -p "$CARRIER_PORT" -mp "$CARRIER_MEDIA_PORT" \
    -m "$CALLS" -nostdin -timeout "$((SETTLE_S + 30))s" -fd 1 \
    -trace_stat -stf "$DIR/sipp-stat.csv" -trace_err -error_file "$DIR/sipp-errors.log" \
    >"$DIR/sipp.log" 2>&1 &
SIPP_PID=$!
for _ in $(seq 100); do # bound: 10 s
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))' \
        "$CARRIER_PORT" 2>/dev/null || break
    kill -0 "$SIPP_PID" 2>/dev/null || { cat "$DIR/sipp.log" >&2; exit 1; }
    sleep 0.1
done

start_server "$STEP" beep
TOKEN=$("$BIN" --config "$DIR/switchboard.yaml" token create --role developer --name bench 2>/dev/null)
[[ $TOKEN == sb_* ]] || { echo "no token from switchboard token create" >&2; exit 1; }

echo "== $CALLS click-to-dial requests at $RATE/s (at most $CONCURRENCY in flight), carrier SIPp on 127.0.0.1:$CARRIER_PORT"
c0=$(cpu_ticks "$SERVER_PID")
t0=$(date +%s.%N)
taskset -c "$SIPP_CPU" python3 "$ROOT/bench/click_to_dial.py" --http "$HTTP" --token "$TOKEN" \
    --flow bench --rate "$RATE" --calls "$CALLS" --concurrency "$CONCURRENCY" \
    --csv "$DIR/requests.csv" >"$DIR/client.json" &
CLIENT_PID=$!
wait "$CLIENT_PID" || { echo "the request client failed" >&2; exit 1; }
CLIENT_PID=""

# Wait (bounded) until every accepted call's record is closed.
db_counts() {
    python3 - "$DIR/switchboard.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=5)
total, closed = db.execute("SELECT count(*), count(ended_at_ms) FROM cdrs WHERE call_type = 'click_to_dial'").fetchone()
print(total, closed)
PY
}
created=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["created"])' "$DIR/client.json")
deadline=$(( $(date +%s) + SETTLE_S ))
while :; do
    read -r total closed < <(db_counts)
    echo "$(date +%s.%N) $total $closed" >>"$DIR/settle.log"
    [ "$closed" -ge "$created" ] && [ "$total" -eq "$closed" ] && break
    [ "$(date +%s)" -ge "$deadline" ] && { echo "!! gave up waiting after ${SETTLE_S}s: $closed of $created records closed"; break; }
    sleep 0.2
done
t1=$(date +%s.%N)
c1=$(cpu_ticks "$SERVER_PID")
rss=$(rss_kb "$SERVER_PID")
# SIPp's uas keeps each call 4 s after our BYE (timewait), then quits after its N calls: wait for
# that (at most 10 s: fewer calls reach it when requests were refused), so its counts are final.
for _ in $(seq 100); do
    kill -0 "$SIPP_PID" 2>/dev/null || break
    sleep 0.1
done
stop_pid "$SIPP_PID" TERM
SIPP_PID=""
stop_pid "$SERVER_PID" TERM
SERVER_PID=""

python3 - "$DIR" "$((c1 - c0))" "$HZ" "$t0" "$t1" "$rss" <<'PY'
import collections, json, sqlite3, sys
d, ticks, hz, t0, t1, rss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
c = json.load(open(f"{d}/client.json"))
lat = c["latency_ms"]
others = {k: v for k, v in c["by_status"].items() if k != "201"}
print(f"requests sent      {c['sent']}")
print(f"201 Created        {c['created']}")
print(f"other answers      {others or 'none'}" + ("   (0 = no answer: connection failed)" if "0" in others else ""))
print(f"POST latency ms    p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  max {lat['max']:.1f}")
print(f"request rate       offered {c['offered_rate']:g}/s, achieved {c['achieved_rate'] or 0:.1f}/s "
      f"(sends late by p50 {c['late_ms']['p50']:.1f} / p99 {c['late_ms']['p99']:.1f} / max {c['late_ms']['max']:.1f} ms)")
db = sqlite3.connect(f"file:{d}/switchboard.db?mode=ro", uri=True, timeout=5)
q = lambda sql: db.execute(sql).fetchall()
total, closed, answered, last_end = q("""SELECT count(*), count(ended_at_ms), count(answered_at_ms), max(ended_at_ms)
    FROM cdrs WHERE call_type = 'click_to_dial'""")[0]
print(f"records            {total} click_to_dial, {closed} closed, {total - closed} left open, {answered} answered")
by = q("""SELECT coalesce(result, '-'), coalesce(missed_reason, '-'), count(*) FROM cdrs
    WHERE call_type = 'click_to_dial' AND ended_at_ms IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC""")
print("closed by result   " + ", ".join(f"{r}/{m}: {n}" for r, m, n in by))
other_types = q("SELECT call_type, count(*) FROM cdrs WHERE call_type != 'click_to_dial' GROUP BY 1")
if other_types:
    print(f"other records      {other_types}")
if last_end:
    print(f"first POST -> last record closed  {(last_end - c['first_sent_unix_ms']) / 1000:.2f} s "
          f"(sending took {c['wall_s']:.2f} s); all closed in the database "
          f"{t1 - c['first_sent_unix_ms'] / 1000:.1f} s after the first POST")
stat = f"{d}/sipp-stat.csv"
try:
    rows = [l.rstrip("\n").split(";") for l in open(stat) if l.strip()]
    h, last = rows[0], rows[-1]
    col = lambda n: int(last[h.index(n)]) if n in h else 0
    print(f"carrier (SIPp uas) {col('SuccessfulCall(C)')} calls ok, {col('FailedCall(C)')} failed, "
          f"{col('Retransmissions(C)')} retransmissions")
except (OSError, IndexError, ValueError):
    print("carrier (SIPp uas) no statistics")
secs = ticks / hz
print(f"server             CPU {secs:.2f} s over {t1 - t0:.1f} s ({100 * secs / (t1 - t0):.0f} % of one core), "
      f"{1000 * secs / max(c['created'], 1):.2f} ms per accepted call, RSS {rss / 1024:.0f} MB at the end")
# The generated config trusts 127.0.0.1 (common.sh), which the server warns about once at start.
log = [l for l in open(f"{d}/server.log", errors="replace") if " WARN " in l or " ERROR " in l]
log = [l for l in log if "auth.trusted" not in l]
print(f"server log         {len(log)} warnings/errors" + (f", first: {log[0].strip()[:160]}" if log else ""))
PY
