#!/usr/bin/env bash
# bench/register.sh: authenticated SIP REGISTERs per second, server on one core.
#
# Starts the release `switchboard` pinned to one core (taskset -c 0) with a generated config
# (UDP on 127.0.0.1, SQLite in a temp dir, N accounts, MD5 digest only) and drives it with
# SIPp pinned to the other core (taskset -c 1) running tests/sipp/register_auth.xml: each SIPp
# call is REGISTER -> 401 -> REGISTER with credentials -> 200, so one successful call is one
# authenticated REGISTER. It steps the offered rate up and reports, per step: the offered rate,
# the successful calls/s achieved, failed calls, SIPp retransmissions, the CPU the server
# used (% of one core), SIPp's own CPU, the registrations in /metrics and the server RSS.
# Each step gets a fresh server and database, so steps do not inherit each other's
# transactions (a non-INVITE server transaction lingers 64*T1 = 32 s on UDP: Timer J).
#
# All traffic is on 127.0.0.1; every run is bounded (calls = rate x duration, plus SIPp's
# -timeout). The default sweep (up to 6 steps of 20 s, stopping at the first failing one) takes
# 2-4 minutes; --wait-quiet may add up to a minute per step. See bench/README.md.
#
# Usage: bench/register.sh [--rate R | --rates "R1 R2 ..."] [--duration S] [--accounts N]
#                          [--no-build] [--nice N] [--wait-quiet S] [--perf] [--keep] [--out DIR]
set -euo pipefail

RATES="5000 10000 15000 20000 25000 30000"
SINGLE=0
DURATION=20
ACCOUNTS=10000
BUILD=1
PERF=0
KEEP=0
WAIT_QUIET=60
NICE=0
OUT=""
SERVER_CPU=${SERVER_CPU:-0}
SIPP_CPU=${SIPP_CPU:-1}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --rate R          one run at R calls/s instead of the sweep (--rate "R1 R2": each rate is
                    run, without stopping at a failing one)
  --rates "R ..."   the sweep's rates (default: 5000 10000 15000 20000 25000 30000);
                    the sweep stops after the first step that fails
  --duration S      seconds of traffic per step (default 20): SIPp sends R x S calls
  --accounts N      accounts in the generated config (default 10000: users 100000...)
  --no-build        do not run cargo build; use target/release/switchboard as it is
                    (or $SWITCHBOARD_BIN)
  --perf            also `perf record` the server during each step (perf.data in the work dir;
                    perf costs CPU, so figures of a --perf run are not the reference ones)
  --wait-quiet S    before each step, wait up to S seconds (default 60) for both cores to be
                    idle (<= 10% busy); then run anyway, with a warning
  --nice N          run the server and SIPp with this nice value (e.g. -15, needs root): on a
                    machine where other work (builds, fuzzers) cannot be stopped, a negative
                    value gives the bench's processes their cores back (CFS weight); the
                    default 0 measures the machine as it is
  --keep            keep the work dir (configs, SIPp stats and logs, metrics) at the end
  --out DIR         write the work files to DIR (kept) instead of a temp dir
Environment: SERVER_CPU (default 0), SIPP_CPU (default 1), SWITCHBOARD_BIN.
A step passes when it has 0 failed calls, retransmissions <= 1% of the REGISTERs sent and an
achieved rate >= 95% of the offered one.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATES="$2"; SINGLE=1; shift 2 ;;
        --rates) RATES="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --accounts) ACCOUNTS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --perf) PERF=1; shift ;;
        --keep) KEEP=1; shift ;;
        --wait-quiet) WAIT_QUIET="$2"; shift 2 ;;
        --nice) NICE="$2"; shift 2 ;;
        --out) OUT="$2"; KEEP=1; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done

[[ $NICE =~ ^-?[0-9]+$ ]] && [ "$NICE" -ge -20 ] && [ "$NICE" -le 19 ] ||
    { echo "--nice must be a number from -20 to 19" >&2; exit 2; }
[[ $WAIT_QUIET =~ ^[0-9]+$ ]] || { echo "--wait-quiet must be a whole number of seconds" >&2; exit 2; }
for v in DURATION ACCOUNTS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "--${v,,} must be a positive integer" >&2; exit 2; }
done
for r in $RATES; do
    [[ $r =~ ^[1-9][0-9]*$ ]] || { echo "bad rate: $r" >&2; exit 2; }
done
# Bounds: no step longer than 2 minutes of traffic, no more than 100,000 accounts.
if [ "$DURATION" -gt 120 ] || [ "$ACCOUNTS" -gt 100000 ]; then
    echo "--duration is capped at 120 s and --accounts at 100000" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
SCENARIO=$ROOT/tests/sipp/register_auth.xml

need() { command -v "$1" >/dev/null || { echo "missing: $1 ($2)" >&2; exit 1; }; }
need sipp "apt-get install sip-tester"
need taskset "util-linux"
need curl "apt-get install curl"
[ "$PERF" = 0 ] || need perf "apt-get install linux-perf"
if [ "$(nproc --all)" -lt 2 ]; then
    echo "this benchmark needs 2 cores (server and SIPp each on its own)" >&2
    exit 1
fi

if [ "$BUILD" = 1 ]; then
    echo "== cargo build --release (a no-op when up to date)"
    (cd "$ROOT" && cargo build --release --bin switchboard)
fi
[ -x "$BIN" ] || { echo "no binary at $BIN (build it, or drop --no-build)" >&2; exit 1; }

if [ -n "$OUT" ]; then
    mkdir -p "$OUT"
    WORK=$(cd "$OUT" && pwd)
else
    WORK=$(mktemp -d /tmp/switchboard-bench.XXXXXX)
fi

SERVER_PID=""
SIPP_PID=""
PERF_PID=""
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
    stop_pid "$PERF_PID" INT
    stop_pid "$SIPP_PID" TERM
    stop_pid "$SERVER_PID" TERM
    if [ "$KEEP" = 1 ]; then
        echo "work files kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Accounts and config
# ---------------------------------------------------------------------------------------------
echo "== generating $ACCOUNTS accounts and the bench config in $WORK"
# 16 random characters from [A-Za-z0-9] per password (12 random bytes = 16 base64 characters;
# '+' and '/' mapped to letters): well past the 12-character minimum, and nothing in them that
# YAML, the CSV or SIPp's [authentication ...] keyword would read specially. Except one thing:
# SIPp 3.6.1 takes a password that starts with "0x" as hex-encoded bytes, computes a wrong
# digest and fails the call (1 password in ~2,000), so a password never starts with a digit.
head -c $((ACCOUNTS * 12)) /dev/urandom | base64 -w0 | tr '+/' 'xK' |
    awk -v n="$ACCOUNTS" '{ for (i = 0; i < n; i++) {
            p = substr($0, i * 16 + 1, 16)
            if (substr(p, 1, 1) ~ /[0-9]/) p = "P" substr(p, 2)
            print p } }' >"$WORK/passwords.txt"
seq 100000 $((100000 + ACCOUNTS - 1)) | paste -d' ' - "$WORK/passwords.txt" >"$WORK/accounts.txt"
rm "$WORK/passwords.txt"

# SIPp injection file. SEQUENTIAL: call k uses line k mod N, so every account registers in turn.
# The whole [authentication ...] keyword is one field: SIPp 3.6.1 does not expand a field
# nested inside it (see tests/sipp/register_auth.xml).
{
    echo "SEQUENTIAL"
    awk '{ printf "%s;[authentication username=%s password=%s]\n", $1, $1, $2 }' "$WORK/accounts.txt"
} >"$WORK/accounts.csv"

CONFIG=$WORK/bench.yaml
{
    cat <<EOF
# Generated by bench/register.sh: the REGISTER benchmark's server configuration.
sip:
  listen:
    # Port 0: the system picks a free port, read back from the ready file (never 5060, so the
    # bench does not collide with a demo server on this machine).
    - transport: udp
      address: "127.0.0.1:0"
  domain: switchboard

http:
  listen: "127.0.0.1:0"

database:
  url: "sqlite://$WORK/bench.db"

registrar:
  # The scenario asks for Expires: 3600.
  min_expires_s: 60
  default_expires_s: 3600
  max_expires_s: 7200
  max_contacts_per_aor: 10

auth:
  # MD5 only, whatever the server's default is: SIPp 3.6.1 reads only the first WWW-Authenticate
  # of a 401 and computes only MD5 digests. With an SHA-256 challenge first (algorithms:
  # [sha256, md5], the RFC 8760 order) SIPp would answer it with an MD5 response and every call
  # would fail (and count toward the lock-out).
  algorithms: [md5]
  nonce_lifetime_s: 300
  allow_no_qop: true
  # The default lock-out stays on: a correct run has no failures, so it never triggers.
  lockout:
    max_failures: 5
    window_s: 60
    cooldown_s: 300
  trusted: []

trunks: []

logging:
  # warn: the bench measures the SIP path, not log formatting.
  level: warn

accounts:
EOF
    awk '{ printf "  - user: \"%s\"\n    password: \"%s\"\n", $1, $2 }' "$WORK/accounts.txt"
} >"$CONFIG"
"$BIN" --config "$CONFIG" config check | tail -n 1

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
cpu_ticks() { # utime + stime of a process (all its threads), in clock ticks
    local stat
    stat=$(cat "/proc/$1/stat") || { echo 0; return; }
    # Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
    awk '{ print $12 + $13 }' <<<"${stat##*) }"
}
HZ=$(getconf CLK_TCK)

threads_snapshot() { # pid: one line per thread: "name ticks voluntary_switches involuntary_switches"
    local t
    for t in /proc/"$1"/task/*; do
        { awk '{ sub(/^.*\) /, ""); printf "%s ", $12 + $13 }' "$t/stat"
          awk '/^Name:/ { n = $2 } /^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { i = $2 }
               END { print v, i, n }' "$t/status"; } 2>/dev/null
    done
}

threads_delta() { # before-file after-file seconds: CPU % and switches/s per thread name
    awk -v hz="$HZ" -v w="$3" '
        FNR == NR { b[$4] += $1; bv[$4] += $2; bi[$4] += $3; next }
        { a[$4] += $1; av[$4] += $2; ai[$4] += $3 }
        END { for (n in a) { c = (a[n] - b[n]) / hz / w * 100; sw = (av[n] - bv[n] + ai[n] - bi[n]) / w
                             if (c >= 0.5 || sw >= 100) printf "%s %.0f%% CPU, %.0f switches/s; ", n, c, sw } }' "$1" "$2"
}

cpu_busy() { # cpu index: "busy total" jiffies of that core since boot, from /proc/stat
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

pct() { # busy0 total0 busy1 total1: % busy between two cpu_busy samples
    awk -v b0="$1" -v t0="$2" -v b1="$3" -v t1="$4" 'BEGIN { printf "%.0f", (t1 > t0 ? (b1 - b0) / (t1 - t0) * 100 : 0) }'
}

# The two cores must be ours: a compiler on either one steals time from the server or SIPp,
# and the server's socket buffer overflows during the pauses (retransmissions that are not the
# server's). Before each step, wait (up to --wait-quiet seconds) until both cores are idle.
wait_quiet() {
    local waited=0 a0 a1 b0 b1 p0 p1
    while :; do
        read -r a0 a1 < <(cpu_busy "$SERVER_CPU"); read -r b0 b1 < <(cpu_busy "$SIPP_CPU")
        sleep 1
        read -r a2 a3 < <(cpu_busy "$SERVER_CPU"); read -r b2 b3 < <(cpu_busy "$SIPP_CPU")
        p0=$(pct "$a0" "$a1" "$a2" "$a3"); p1=$(pct "$b0" "$b1" "$b2" "$b3")
        if [ "$p0" -le 10 ] && [ "$p1" -le 10 ]; then
            [ "$waited" = 0 ] || echo "   machine quiet after ${waited}s"
            return 0
        fi
        if [ "$waited" -ge "$WAIT_QUIET" ]; then
            echo "   WARNING: the cores are busy before the step (CPU $SERVER_CPU ${p0}%, CPU $SIPP_CPU ${p1}%):" \
                "another process competes, figures will be low; see 'other load' below"
            ps -eo pid,psr,pcpu,comm --sort=-pcpu | sed -n '2,4p' | sed 's/^/     /'
            return 0
        fi
        [ "$waited" != 0 ] || echo "   waiting for idle cores (CPU $SERVER_CPU ${p0}%, CPU $SIPP_CPU ${p1}% busy)..."
        waited=$(( waited + 1 ))
    done
}

udp_rcvbuf_errors() { # machine-wide count of UDP datagrams dropped for a full receive buffer
    awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp
}

udp_socket_drops() { # 127.0.0.1 port: datagrams the kernel dropped on that socket (full buffer)
    awk -v p="$(printf '%04X' "$1")" '$2 == "0100007F:" p { print $NF; f = 1 } END { if (!f) print "?" }' /proc/net/udp
}

metric() { # file, metric name (with optional {labels}): sum of the matching series
    awk -v m="$2" '
        /^#/ { next }
        { name = $1; sub(/\{.*/, "", name) }
        (m ~ /\{/ ? index($1, m) == 1 : name == m) { s += $NF; found = 1 }
        END { printf "%d\n", found ? s : 0 }' "$1"
}

csv_col() { # SIPp stat CSV, column name, line ("last" or a number): that field
    awk -F';' -v c="$2" -v l="$3" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) col = i; next }
        { last = $col; if (l != "last" && NR == l) { print $col; exit } }
        END { if (l == "last") print last }' "$1"
}

steady_rate() { # SIPp stat CSV: median of the per-period successful calls/s, middle periods only
    awk -F';' '
        NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "SuccessfulCall(P)") s = i; if ($i == "ElapsedTime(P)") e = i }; next }
        { split($e, t, ":"); secs = t[1] * 3600 + t[2] * 60 + t[3] + t[4] / 1e6
          if (secs > 0.5) r[++n] = $s / secs }
        END {
            if (n < 3) { print 0; exit }
            # Drop the first and last periods (ramp-up, tail), then take the median.
            m = 0; for (i = 2; i < n; i++) v[++m] = r[i]
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
            printf "%d\n", v[int((m + 1) / 2)]
        }' "$1"
}

# ---------------------------------------------------------------------------------------------
# One step
# ---------------------------------------------------------------------------------------------
SUMMARY=$WORK/summary.tsv
printf 'rate\tcalls\tok\tfailed\tretrans\tok_per_s\tsteady_ok_per_s\tserver_cpu\tus_per_call\tsipp_cpu\tother_load\tudp_drops\tregistrations\t403\trss_mb\tverdict\n' >"$SUMMARY"
BEST=0

run_step() {
    local rate=$1 calls=$(( $1 * DURATION )) s=$WORK/step-$1
    mkdir -p "$s"
    echo
    echo "== step: $rate calls/s x ${DURATION} s = $calls calls (server on CPU $SERVER_CPU, SIPp on CPU $SIPP_CPU)"
    rm -f "$WORK/bench.db" "$WORK/bench.db-wal" "$WORK/bench.db-shm"

    nice -n "$NICE" taskset -c "$SERVER_CPU" "$BIN" --config "$CONFIG" --ready-file "$s/ready.json" \
        >"$s/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        [ -s "$s/ready.json" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$s/server.log" >&2; echo "server exited" >&2; exit 1; }
        sleep 0.1
    done
    [ -s "$s/ready.json" ] || { echo "server not ready after 30 s" >&2; exit 1; }
    local sip http
    sip=$(grep -o '"address":"[^"]*"' "$s/ready.json" | head -n 1 | cut -d'"' -f4)
    http=$(grep -o '"http":"[^"]*"' "$s/ready.json" | cut -d'"' -f4)
    echo "   server pid $SERVER_PID, SIP udp $sip, HTTP $http"

    if [ "$PERF" = 1 ]; then
        # On SIPp's core, so that the server's core carries only the server.
        taskset -c "$SIPP_CPU" perf record -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$s/perf.data" \
            >"$s/perf.log" 2>&1 &
        PERF_PID=$!
        sleep 0.5
    fi

    local cpu0 cpu1 t0 t1 rc=0 drops0 drops1 sock_drops open_max c0b c0t c1b c1t c0b2 c0t2 c1b2 c1t2
    local files; files=$(ulimit -n); [[ $files =~ ^[0-9]+$ ]] || files=1000000
    open_max=$(( rate * 3 ))
    [ "$open_max" -lt $(( files - 1000 )) ] || open_max=$(( files - 1000 ))
    wait_quiet
    drops0=$(udp_rcvbuf_errors)
    read -r c0b c0t < <(cpu_busy "$SERVER_CPU"); read -r c1b c1t < <(cpu_busy "$SIPP_CPU")
    cpu0=$(cpu_ticks "$SERVER_PID")
    threads_snapshot "$SERVER_PID" >"$s/threads.before"
    t0=$(date +%s.%N)
    # -l: at most 3 s worth of open calls, and fewer than the open-files limit (SIPp warns
    # otherwise); -buff_size: 4 MB socket buffers (net.core.rmem_max permitting), so that SIPp's
    # own socket does not drop bursts; -timeout bounds the run even if the server stops answering.
    nice -n "$NICE" taskset -c "$SIPP_CPU" sipp "$sip" -sf "$SCENARIO" -inf "$WORK/accounts.csv" \
        -i 127.0.0.1 -t u1 -r "$rate" -rp 1000 -m "$calls" -l "$open_max" \
        -buff_size 4194304 -timeout $(( DURATION * 2 + 30 ))s -nostdin \
        -trace_stat -stf "$s/stat.csv" -fd 1 \
        -trace_err -error_file "$s/errors.log" \
        -trace_screen -screen_file "$s/screen.log" \
        >"$s/sipp.out" 2>"$s/sipp.err" &
    SIPP_PID=$!
    # SIPp's own CPU: its utime+stime, sampled until it exits (the last 0.2 s are lost).
    local sipp_ticks=0 x
    while kill -0 "$SIPP_PID" 2>/dev/null; do
        x=$(cpu_ticks "$SIPP_PID" 2>/dev/null) && [ -n "$x" ] && [ "$x" -gt 0 ] && sipp_ticks=$x
        sleep 0.2
    done
    wait "$SIPP_PID" || rc=$?
    SIPP_PID=""
    t1=$(date +%s.%N)
    local alive=1
    kill -0 "$SERVER_PID" 2>/dev/null || { alive=0; echo "   the server EXITED during the step (see $s/server.log)"; }
    cpu1=$(cpu_ticks "$SERVER_PID")
    threads_snapshot "$SERVER_PID" >"$s/threads.after"
    read -r c0b2 c0t2 < <(cpu_busy "$SERVER_CPU"); read -r c1b2 c1t2 < <(cpu_busy "$SIPP_CPU")
    drops1=$(udp_rcvbuf_errors)
    sock_drops=$(udp_socket_drops "${sip##*:}")
    if [ -n "$PERF_PID" ]; then stop_pid "$PERF_PID" INT; PERF_PID=""; fi

    curl -fsS "http://$http/metrics" >"$s/metrics.txt" || : >"$s/metrics.txt"
    grep -E '^(VmRSS|VmHWM)' "/proc/$SERVER_PID/status" >"$s/rss.txt" || true
    stop_pid "$SERVER_PID" TERM
    SERVER_PID=""

    local ok failed retrans created wall
    ok=$(csv_col "$s/stat.csv" 'SuccessfulCall(C)' last)
    failed=$(csv_col "$s/stat.csv" 'FailedCall(C)' last)
    retrans=$(csv_col "$s/stat.csv" 'Retransmissions(C)' last)
    created=$(csv_col "$s/stat.csv" 'TotalCallCreated' last)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    local ok_s steady server_cpu sipp_cpu regs r403 rss verdict
    ok_s=$(awk -v o="${ok:-0}" -v w="$wall" 'BEGIN { printf "%d", o / w }')
    steady=$(steady_rate "$s/stat.csv")
    server_cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$HZ" -v w="$wall" 'BEGIN { printf "%.0f", (b - a) / hz / w * 100 }')
    sipp_cpu=$(awk -v t="$sipp_ticks" -v hz="$HZ" -v w="$wall" 'BEGIN { printf "%.0f", t / hz / w * 100 }')
    regs=$(metric "$s/metrics.txt" sip_registrations)
    r403=$(metric "$s/metrics.txt" 'sip_responses_sent_total{status="403"')
    rss=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "$s/rss.txt")

    verdict=pass
    if [ "${failed:-1}" != 0 ]; then verdict="FAIL(failed)"
    elif [ "${ok:-0}" -lt $(( calls * 99 / 100 )) ]; then verdict="FAIL(incomplete)"
    elif [ "${retrans:-0}" -gt $(( calls * 2 / 100 )) ]; then verdict="FAIL(retrans)"
    elif [ "$ok_s" -lt $(( rate * 95 / 100 )) ]; then verdict="FAIL(rate)"
    fi
    [ "$rc" = 0 ] || [ "$verdict" != pass ] || verdict="FAIL(sipp rc $rc)"
    [ "$alive" = 1 ] || verdict="FAIL(server exited)"

    echo "   calls created $created, successful $ok, failed $failed, retransmissions $retrans, SIPp exit $rc"
    echo "   wall ${wall}s: ${ok_s} ok calls/s overall, ${steady}/s steady (median of 1-s periods)"
    local us_call cap
    us_call=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$HZ" -v o="${ok:-0}" 'BEGIN { printf "%.1f", (o > 0 ? (b - a) / hz / o * 1e6 : 0) }')
    cap=$(awk -v u="$us_call" 'BEGIN { printf "%d", (u > 0 ? 1e6 / u : 0) }')
    echo "   server CPU ${server_cpu}% of one core, SIPp CPU ${sipp_cpu}% of one core"
    echo "   server CPU per successful call: ${us_call} us (a full core would do ~${cap} calls/s at this cost)"
    echo "   server threads: $(threads_delta "$s/threads.before" "$s/threads.after" "$wall")"
    local core0 core1 other0 other1
    core0=$(pct "$c0b" "$c0t" "$c0b2" "$c0t2"); core1=$(pct "$c1b" "$c1t" "$c1b2" "$c1t2")
    other0=$(( core0 - server_cpu )); [ "$other0" -ge 0 ] || other0=0
    other1=$(( core1 - sipp_cpu )); [ "$other1" -ge 0 ] || other1=0
    echo "   core $SERVER_CPU busy ${core0}% (other load ~${other0}%), core $SIPP_CPU busy ${core1}% (other load ~${other1}%)"
    if [ "$other0" -gt 10 ] || [ "$other1" -gt 10 ]; then
        echo "   WARNING: other processes used the bench's cores during the step: figures are not clean"
    fi
    echo "   UDP datagrams dropped for a full receive buffer: $sock_drops on the server's socket," \
        "$(( drops1 - drops0 )) machine-wide during the step"
    echo "   /metrics: registrations $regs, registered accounts $(metric "$s/metrics.txt" sip_registered_accounts)," \
        "auth failures $(metric "$s/metrics.txt" sip_auth_failures_total), 403 sent $r403," \
        "401 sent $(metric "$s/metrics.txt" 'sip_responses_sent_total{status="401"')," \
        "200 sent $(metric "$s/metrics.txt" 'sip_responses_sent_total{status="200"')," \
        "dropped $(metric "$s/metrics.txt" sip_messages_dropped_total)," \
        "transactions alive $(metric "$s/metrics.txt" sip_transactions_alive)," \
        "store batches $(metric "$s/metrics.txt" store_registration_batches_total)"
    echo "   server RSS at the end: $(tr '\n' ' ' <"$s/rss.txt")"
    if [ -s "$s/errors.log" ]; then
        echo "   SIPp unexpected messages (first lines of $s/errors.log):"
        head -n 5 "$s/errors.log" | sed 's/^/     /'
    fi
    grep -iE 'error|panic' "$s/server.log" | head -n 3 | sed 's/^/   server log: /' || true
    echo "   => $verdict"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s%%\t%s\t%s%%\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$calls" "${ok:-0}" "${failed:-?}" \
        "${retrans:-?}" "$ok_s" "$steady" "$server_cpu" "$us_call" "$sipp_cpu" "${other0}%/${other1}%" "$sock_drops" "$regs" "$r403" "$rss" "$verdict" >>"$SUMMARY"
    [ "$verdict" = pass ]
}

# Everything below runs in the work dir, so that nothing (SIPp traces included) lands elsewhere.
cd "$WORK"
echo "== checkout $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)');" \
    "binary $BIN, built $(date -r "$BIN" '+%F %T')"
[ "$NICE" = 0 ] || echo "== server and SIPp run at nice $NICE"
echo "== machine: $(nproc --all) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
for rate in $RATES; do
    if run_step "$rate"; then
        [ "$rate" -gt "$BEST" ] && BEST=$rate
    elif [ "$SINGLE" = 0 ]; then
        echo "   (the sweep stops at the first failing step)"
        break
    fi
done

echo
echo "== summary (calls = authenticated REGISTERs; each call also had one challenged REGISTER)"
column -t -s $'\t' "$SUMMARY"
echo
if [ "$BEST" -gt 0 ]; then
    echo "highest passing offered rate: $BEST authenticated REGISTERs/s"
else
    echo "no step passed"
fi
