#!/usr/bin/env bash
# bench/media.sh: the media cost of N concurrent calls to the test line, server on one core.
#
# Starts the release `switchboard` pinned to one core (taskset -c 0), 127.0.0.1 trusted, the
# test line 9999 with the 6 s `hold` prompt, RTP ports 20000-29998 (below the ephemeral range SIPp's ports come from). SIPp (pinned to the other
# core, bench/sipp/uac_trusted_pcap.xml) places N calls at 50 calls/s; each plays SIPp's 7 s
# G.711 A-law capture (PCMA) and holds the call HOLD seconds, so the server plays the prompt and
# echoes what it hears (PCMA both ways, 50 packets/s per direction per call). While all N calls
# are up (calls_active = N in /metrics) it measures, over a WINDOW (default 5 s):
#   - server CPU (utime+stime of all threads, /proc/PID/stat) per call, % of one core;
#   - RSS per call: (VmRSS with N calls up - VmRSS before the first call) / N;
#   - the send intervals of the server's RTP: `tcpdump -i lo` captures the window, and
#     bench/rtp_intervals.py groups packets by SSRC and reports interval p50/p99 and the
#     deviation from 20 ms (jitter) p50/p99.
# tcpdump needs root (or CAP_NET_RAW). All traffic on 127.0.0.1; N <= 2000, HOLD <= 120 s.
#
# Usage: bench/media.sh [--calls "N1 N2 ..."] [--hold S] [--window S] [--no-build] [--keep]
set -euo pipefail

CALLS="50 200 500"
HOLD=15
WINDOW=5
BUILD=1
KEEP=0
SERVER_CPU=${SERVER_CPU:-0}
SIPP_CPU=${SIPP_CPU:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        --calls) CALLS="$2"; shift 2 ;;
        --hold) HOLD="$2"; shift 2 ;;
        --window) WINDOW="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done
for n in $CALLS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 2000 ] || { echo "bad call count: $n" >&2; exit 2; }
done
[[ $HOLD =~ ^[1-9][0-9]*$ ]] && [ "$HOLD" -le 120 ] || { echo "--hold must be 1..120" >&2; exit 2; }
[[ $WINDOW =~ ^[1-9][0-9]*$ ]] || { echo "--window must be a positive integer" >&2; exit 2; }

source "$(dirname "$0")/common.sh"
need sipp "apt-get install sip-tester"
need tcpdump "apt-get install tcpdump"
need taskset "util-linux"
need curl "apt-get install curl"
build
WORK=$(mktemp -d /tmp/switchboard-bench-media.XXXXXX)
trap cleanup EXIT INT TERM
RATE=50

printf '%-6s %6s %7s %14s %12s %s\n' calls ok failed cpu_per_call rss_kb_call rtp
for n in $CALLS; do
    ramp=$(( (n + RATE - 1) / RATE ))
    if [ "$HOLD" -le $((ramp + WINDOW + 2)) ]; then
        echo "--hold $HOLD is too short for $n calls at $RATE/s plus a $WINDOW s window" >&2
        exit 2
    fi
    step=media-$n
    start_server "$step" hold
    rss0=$(rss_kb "$SERVER_PID")
    taskset -c "$SIPP_CPU" sipp "$SIP" -sf "$ROOT/bench/sipp/uac_trusted_pcap.xml" -s 9999 \
        -d "$((HOLD * 1000))" -r "$RATE" -l "$n" -m "$n" -i 127.0.0.1 -p "$(free_port)" \
        -mp "$(free_port)" -nostdin -timeout "$((HOLD + ramp + 60))s" \
        -trace_stat -stf "$WORK/$step/stat.csv" -trace_err -error_file "$WORK/$step/errors.log" \
        >"$WORK/$step/sipp.log" 2>&1 &
    SIPP_PID=$!
    # Wait (bounded) for every call to be up.
    for _ in $(seq $(( (ramp + 10) * 10 ))); do
        [ "$(metric calls_active)" = "$n" ] && break
        sleep 0.1
    done
    up=$(metric calls_active)
    tcpdump -i lo -w "$WORK/$step/rtp.pcap" -s 64 udp portrange 20000-29999 >/dev/null 2>&1 &
    CAP_PID=$!
    c0=$(cpu_ticks "$SERVER_PID"); t0=$(date +%s.%N)
    sleep "$WINDOW"
    c1=$(cpu_ticks "$SERVER_PID"); t1=$(date +%s.%N)
    rss1=$(rss_kb "$SERVER_PID")
    stop_pid "$CAP_PID" INT; CAP_PID=""
    wait "$SIPP_PID" || true
    SIPP_PID=""
    read -r ok failed < <(python3 - "$WORK/$step/stat.csv" <<'PY'
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
h, last = rows[0], rows[-1]
col = lambda n: int(last[h.index(n)]) if n in h else 0
print(col("SuccessfulCall(C)"), col("FailedCall(C)"))
PY
)
    rtp=$(python3 "$ROOT/bench/rtp_intervals.py" "$WORK/$step/rtp.pcap" 20000 29998)
    python3 -c "
n,up,ok,failed=$n,$up,$ok,$failed
cpu=($c1-$c0)/$HZ/($t1-$t0)
print(f'{n:<6} {ok:>6} {failed:>7} {100*cpu/max(up,1):>13.3f}% {($rss1-$rss0)/max(up,1):>12.0f} (up {up}) $rtp')"
    stop_pid "$SERVER_PID" TERM
    SERVER_PID=""
done
