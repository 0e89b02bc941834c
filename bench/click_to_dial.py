#!/usr/bin/env python3
"""bench/click_to_dial.py: fire N click-to-dial requests at a target rate, bounded concurrency.

Request i (0-based) is due at start + i / rate; each of `--concurrency` worker threads, with its
own keep-alive HTTP connection, takes the next request, waits until it is due and sends
`POST /api/v1/calls` with {"customer": "<first number + i>", "flow": FLOW}. When every worker is
busy a request goes late, so the achieved rate shows whether the server kept up. Per request it
records when it was due, when it was sent, the latency (send to the whole answer read) and the
status (0: no answer, the connection failed). Python 3 standard library only.

Writes one CSV row per request to --csv and prints a JSON summary on stdout.
Usage: click_to_dial.py --http 127.0.0.1:PORT --token TOKEN --flow FLOW [--rate R] [--calls N]
       [--concurrency C] [--first-number 13800000000] [--csv FILE] [--timeout S]
"""
import argparse
import collections
import http.client
import json
import sys
import threading
import time


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--http", required=True, help="the server's HTTP address, host:port")
    ap.add_argument("--token", required=True)
    ap.add_argument("--flow", required=True)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second")
    ap.add_argument("--calls", type=int, default=1000, help="requests in all")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight at most")
    ap.add_argument("--first-number", type=int, default=13800000000,
                    help="the first customer number (national, no trunk prefix); +1 per request")
    ap.add_argument("--csv", help="per-request results")
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    a = ap.parse_args()
    if not (0 < a.rate <= 10000 and 0 < a.calls <= 1_000_000 and 0 < a.concurrency <= 1000):
        sys.exit("rate 0..10000, calls 1..1000000, concurrency 1..1000")

    host, port = a.http.rsplit(":", 1)
    headers = {"Authorization": f"Bearer {a.token}", "Content-Type": "application/json"}
    results = [None] * a.calls  # (due_s, sent_s, latency_s, status, sent_unix_ms)
    lock = threading.Lock()
    next_index = [0]
    start = time.monotonic() + 0.2  # time for every worker to be waiting
    start_unix = time.time() + 0.2

    def worker():
        conn = None
        while True:
            with lock:
                i = next_index[0]
                if i >= a.calls:
                    break
                next_index[0] += 1
            due = start + i / a.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = json.dumps({"customer": str(a.first_number + i), "flow": a.flow})
            sent = time.monotonic()
            status = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=a.timeout)
                conn.request("POST", "/api/v1/calls", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            done = time.monotonic()
            results[i] = (due - start, sent - start, done - sent, status,
                          int((start_unix + (sent - start)) * 1000))
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.monotonic()

    if a.csv:
        with open(a.csv, "w") as f:
            f.write("index,customer,due_s,sent_s,latency_ms,status,sent_unix_ms\n")
            for i, (due, sent, lat, status, sent_ms) in enumerate(results):
                f.write(f"{i},{a.first_number + i},{due:.6f},{sent:.6f},{lat * 1000:.3f},"
                        f"{status},{sent_ms}\n")

    lat = sorted(r[2] * 1000 for r in results)
    codes = collections.Counter(r[3] for r in results)
    first_sent = min(r[1] for r in results)
    last_sent = max(r[1] for r in results)
    late = sorted(max(0.0, r[1] - r[0]) * 1000 for r in results)
    span = last_sent - first_sent
    summary = {
        "sent": a.calls,
        "created": codes.get(201, 0),
        "by_status": {str(k): v for k, v in sorted(codes.items())},
        "latency_ms": {
            "p50": percentile(lat, 50), "p95": percentile(lat, 95),
            "p99": percentile(lat, 99), "max": lat[-1],
        },
        "late_ms": {"p50": percentile(late, 50), "p99": percentile(late, 99), "max": late[-1]},
        "offered_rate": a.rate,
        # requests sent ÷ time from the first send to the last (the pacing achieved)
        "achieved_rate": (a.calls - 1) / span if span > 0 else None,
        "wall_s": end - start,
        "first_sent_unix_ms": int((start_unix + first_sent) * 1000),
        "last_answer_unix_ms": int((start_unix + max(r[1] + r[2] for r in results)) * 1000),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
