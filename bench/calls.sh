#!/usr/bin/env bash
# bench/calls.sh: call set-ups per second to the test line, server on one core.
#
# Starts the release `switchboard` pinned to one core (taskset -c 0) with a generated config
# (UDP on 127.0.0.1, 127.0.0.1 trusted so no digest, the test line 9999 with the 0.25 s `beep`
# prompt, RTP ports 20000-29998) and drives it with SIPp's built-in `uac` scenario pinned to the
# other core: INVITE -> 100/180 -> 200 (with SDP: an RTP session opened, the prompt started)
# -> ACK -> BYE at once (-d 0) -> 200. One successful SIPp call is one call set up and torn
# down. It steps the offered rate up; per step it reports the offered rate, successful and
# failed calls, SIPp retransmissions, calls/s achieved, the server's CPU (% of one core, from
# /proc/PID/stat) and CPU per call. Each step gets a fresh server.
#
# All traffic is on 127.0.0.1; every step is bounded: rate x duration calls, SIPp's -timeout.
#
# Usage: bench/calls.sh [--rates "R1 R2 ..."] [--duration S] [--no-build] [--keep]
set -euo pipefail

RATES="100 250 500 1000 2000"
DURATION=10
BUILD=1
KEEP=0
SERVER_CPU=${SERVER_CPU:-0}
SIPP_CPU=${SIPP_CPU:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        --rates|--rate) RATES="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[1-9][0-9]*$ ]] && [ "$DURATION" -le 120 ] ||
    { echo "--duration must be 1..120 seconds" >&2; exit 2; }
for r in $RATES; do
    [[ $r =~ ^[1-9][0-9]*$ ]] && [ "$r" -le 20000 ] || { echo "bad rate: $r" >&2; exit 2; }
done

source "$(dirname "$0")/common.sh"
need sipp "apt-get install sip-tester"
need taskset "util-linux"
need curl "apt-get install curl"
build
WORK=$(mktemp -d /tmp/switchboard-bench-calls.XXXXXX)
trap cleanup EXIT INT TERM

printf '%-6s %8s %7s %8s %9s %11s %12s\n' rate ok failed retrans ok_per_s server_cpu us_per_call
for rate in $RATES; do
    step=calls-$rate
    start_server "$step" beep
    calls=$((rate * DURATION))
    t0=$(date +%s.%N)
    c0=$(cpu_ticks "$SERVER_PID")
    taskset -c "$SIPP_CPU" sipp "$SIP" -sn uac -s 9999 -d 0 -r "$rate" -rp 1000 -m "$calls" \
        -i 127.0.0.1 -p "$(free_port)" -mp "$(free_port)" -nostdin -timeout "$((DURATION * 2 + 30))s" \
        -trace_stat -stf "$WORK/$step/stat.csv" -trace_err -error_file "$WORK/$step/errors.log" \
        >"$WORK/$step/sipp.log" 2>&1 &
    SIPP_PID=$!
    wait "$SIPP_PID" || true
    SIPP_PID=""
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$SERVER_PID")
    read -r ok failed retrans < <(python3 - "$WORK/$step/stat.csv" <<'PY'
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
h, last = rows[0], rows[-1]
col = lambda n: int(last[h.index(n)]) if n in h else 0
print(col("SuccessfulCall(C)"), col("FailedCall(C)"), col("Retransmissions(C)"))
PY
)
    wall=$(echo "$t1 - $t0" | bc -l)
    line=$(python3 -c "
ok,failed,retrans,wall,cpu,hz,rate=$ok,$failed,$retrans,$wall,$((c1 - c0)),$HZ,$rate
secs=cpu/hz
print(f'{rate:<6} {ok:>8} {failed:>7} {retrans:>8} {ok/wall:>9.0f} {100*secs/wall:>10.0f}% {1e6*secs/max(ok,1):>12.0f}')")
    echo "$line"
    stop_pid "$SERVER_PID" TERM
    SERVER_PID=""
done
