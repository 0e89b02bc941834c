#!/usr/bin/env bash
# bench/media.sh: the media cost of N concurrent calls to the test line, server on one core.
#
# Starts the release `switchboard` pinned to one core (taskset -c 0), 127.0.0.1 trusted, the
# test line 9999, RTP ports 20000-29998 (below the ephemeral range SIPp's ports come from).
# SIPp (pinned to the other core) places N calls at RATE calls/s and holds each HOLD seconds.
# Two modes:
#   --mode echo (default): bench/sipp/uac_trusted_pcap.xml plays SIPp's 7 s G.711 A-law capture
#     (PCMA); the test line (the 6 s `hold` prompt) plays its prompt and echoes what it hears
#     (PCMA both ways, 50 packets/s per direction per call). An echoed packet leaves when SIPp's
#     arrives, so the send jitter includes SIPp's pacing.
#   --mode prompt: bench/sipp/uac_trusted_silent.xml sends no RTP; the test line plays a 60 s
#     prompt (a tone generated into the bench's temp folder, set as media.prompts_dir and
#     calls.test_line.prompt) for the whole call, so every packet the server sends is paced by
#     its own 20 ms media clock. media.rtp_timeout_s is 0, so silence does not end the calls.
# The server runs with media.workers = WORKERS (default 1: one media worker on its one core).
# While all N calls are up (calls_active = N in /metrics) it measures, over a WINDOW (default 5 s):
#   - server CPU (utime+stime of all threads, /proc/PID/stat) per call, % of one core, and the
#     calls one core carries at that cost (100 % / CPU per call);
#   - RSS per call: (VmRSS with N calls up - VmRSS before the first call) / N;
#   - the send intervals of the server's RTP: `tcpdump -i lo` (pinned to SIPp's core, 64 MB
#     buffer, 64-byte snaplen) captures the window, and bench/rtp_intervals.py groups packets by
#     SSRC and reports interval p50/p99/max and the deviation from 20 ms (jitter) p50/p99, over
#     consecutive sequence numbers only (a packet tcpdump missed is not a 40 ms gap); `captured`
#     is the share of the packets sent (by sequence number) the capture holds, `drop` what tcpdump
#     says the kernel dropped.
# tcpdump needs root (or CAP_NET_RAW). All traffic on 127.0.0.1; N <= 2000, RATE <= 100/s,
# HOLD <= 120 s (<= 55 s in prompt mode, inside the 60 s prompt).
#
# Usage: bench/media.sh [--mode echo|prompt] [--calls "N1 N2 ..."] [--hold S] [--window S]
#                       [--rate R] [--workers W] [--no-build] [--keep]
set -euo pipefail

MODE=echo
CALLS=""
HOLD=""
WINDOW=5
RATE=""
WORKERS=1
BUILD=1
KEEP=0
SERVER_CPU=${SERVER_CPU:-0}
SIPP_CPU=${SIPP_CPU:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        --mode) MODE="$2"; shift 2 ;;
        --calls) CALLS="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --hold) HOLD="$2"; shift 2 ;;
        --window) WINDOW="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$MODE" in
    echo) CALLS=${CALLS:-"50 200 500"}; HOLD=${HOLD:-15}; RATE=${RATE:-50}; MAX_HOLD=120
          SCENARIO=uac_trusted_pcap.xml ;;
    prompt) CALLS=${CALLS:-"200 500 1000 2000"}; HOLD=${HOLD:-30}; RATE=${RATE:-100}; MAX_HOLD=55
          SCENARIO=uac_trusted_silent.xml ;;
    *) echo "--mode must be echo or prompt" >&2; exit 2 ;;
esac
for n in $CALLS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 2000 ] || { echo "bad call count: $n" >&2; exit 2; }
done
[[ $HOLD =~ ^[1-9][0-9]*$ ]] && [ "$HOLD" -le "$MAX_HOLD" ] || { echo "--hold must be 1..$MAX_HOLD" >&2; exit 2; }
[[ $RATE =~ ^[1-9][0-9]*$ ]] && [ "$RATE" -le 100 ] || { echo "--rate must be 1..100" >&2; exit 2; }
[[ $WORKERS =~ ^[0-9]+$ ]] || { echo "--workers must be a number (0: one per core)" >&2; exit 2; }
[[ $WINDOW =~ ^[1-9][0-9]*$ ]] || { echo "--window must be a positive integer" >&2; exit 2; }

source "$(dirname "$0")/common.sh"
need sipp "apt-get install sip-tester"
need tcpdump "apt-get install tcpdump"
need taskset "util-linux"
need curl "apt-get install curl"
build
WORK=$(mktemp -d /tmp/switchboard-bench-media.XXXXXX)
trap cleanup EXIT INT TERM
export MEDIA_WORKERS=$WORKERS
PROMPT=hold
if [ "$MODE" = prompt ]; then
    # A 60 s tone (8 kHz mono 16-bit): the test line plays it once, for the whole call.
    PROMPT=bench-tone
    export PROMPTS_DIR=$WORK/prompts
    mkdir -p "$PROMPTS_DIR"
    python3 - "$PROMPTS_DIR/$PROMPT.wav" <<'PY'
import math, struct, sys, wave
rate, secs = 8000, 60
frame = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(rate))
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    w.writeframes(frame * secs)
PY
fi
echo "== mode $MODE, rate $RATE/s, hold $HOLD s, window $WINDOW s, media.workers $WORKERS"

printf '%-6s %6s %7s %14s %12s %10s %s\n' calls ok failed cpu_per_call rss_kb_call calls_core rtp
for n in $CALLS; do
    ramp=$(( (n + RATE - 1) / RATE ))
    if [ "$HOLD" -le $((ramp + WINDOW + 2)) ]; then
        echo "--hold $HOLD is too short for $n calls at $RATE/s plus a $WINDOW s window" >&2
        exit 2
    fi
    step=media-$n
    start_server "$step" "$PROMPT"
    rss0=$(rss_kb "$SERVER_PID")
    taskset -c "$SIPP_CPU" sipp "$SIP" -sf "$ROOT/bench/sipp/$SCENARIO" -s 9999 \
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
    taskset -c "$SIPP_CPU" tcpdump -i lo -B 65536 -s 64 -w "$WORK/$step/rtp.pcap" \
        udp and src portrange 20000-29998 >/dev/null 2>"$WORK/$step/tcpdump.log" &
    CAP_PID=$!
    sleep 1 # tcpdump up before the window starts
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
    drop=$(awk '/dropped by kernel/ {print $1}' "$WORK/$step/tcpdump.log")
    python3 -c "
n,up,ok,failed=$n,$up,$ok,$failed
pc=100*($c1-$c0)/$HZ/($t1-$t0)/max(up,1)
core=f'{100/pc:.0f}' if pc > 0 else '-'
print(f'{n:<6} {ok:>6} {failed:>7} {pc:>13.3f}% {($rss1-$rss0)/max(up,1):>12.0f} {core:>10} (up {up}, drop ${drop:-?}) $rtp')"
    stop_pid "$SERVER_PID" TERM
    SERVER_PID=""
done
