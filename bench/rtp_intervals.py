#!/usr/bin/env python3
"""bench/rtp_intervals.py PCAP PORT_MIN PORT_MAX: send intervals of the server's RTP.

Reads a tcpdump capture (link type EN10MB, as `tcpdump -i lo` writes it), keeps the UDP packets
sent from the server's RTP range, groups them by SSRC and prints, over every gap between
consecutive packets of one stream: the count, p50, p99 and max of the interval, and p50/p99 of
its deviation from the 20 ms packetisation time (the jitter of the server's sending clock).

Only gaps between packets with consecutive RTP sequence numbers count: a packet missing from the
capture (tcpdump dropped it) would otherwise show as a 40 ms gap the server never made. Such
gaps are counted apart (`skipped`), with the packets captured (`packets`) and the share of each
stream's packets, between its first and last sequence number captured, that the capture holds
(`captured`).
"""
import struct
import sys


def packets(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        yield sec + frac / (1e9 if nano else 1e6), linktype, data[off:off + incl]
        off += incl


def main():
    path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    streams = {}
    for t, linktype, pkt in packets(path):
        ip = pkt[14:] if linktype == 1 else pkt[16:] if linktype == 113 else pkt
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        sport = struct.unpack(">H", ip[ihl:ihl + 2])[0]
        rtp = ip[ihl + 8:]
        if not lo <= sport <= hi or len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        if 192 <= rtp[1] <= 223:  # RTCP (packet types 192-223), from the odd port
            continue
        seq = struct.unpack(">H", rtp[2:4])[0]
        ssrc = struct.unpack(">I", rtp[8:12])[0]
        streams.setdefault((sport, ssrc), []).append((t, seq))
    gaps, skipped = [], 0
    for pkts in streams.values():
        for (a, sa), (b, sb) in zip(pkts, pkts[1:]):
            if (sb - sa) & 0xFFFF == 1:
                gaps.append((b - a) * 1000)
            else:
                skipped += 1
    npkts = sum(len(p) for p in streams.values())
    sent = sum(((p[-1][1] - p[0][1]) & 0xFFFF) + 1 for p in streams.values())
    if not gaps:
        print("no RTP from the server's range in the capture")
        return
    gaps.sort()
    dev = sorted(abs(g - 20) for g in gaps)
    q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))]
    print(f"streams {len(streams)} packets {npkts} intervals {len(gaps)} skipped {skipped} "
          f"captured {100 * npkts / max(sent, 1):.1f}% "
          f"interval_ms p50 {q(gaps, .5):.2f} p99 {q(gaps, .99):.2f} max {gaps[-1]:.2f} "
          f"jitter_ms p50 {q(dev, .5):.3f} p99 {q(dev, .99):.3f}")


main()
