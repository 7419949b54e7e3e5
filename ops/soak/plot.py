#!/usr/bin/env python3
"""Draws a soak CSV of `loadgen --soak` as four stacked panels over time: server RSS, open file
descriptors, retry queue depth (and dead letters), publish p99, with the goals marked.

    pip install matplotlib
    python3 ops/soak/plot.py [ops/soak/soak.csv] [ops/soak/soak.png] ["x-axis label: the machine"]
"""

import csv
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

WARM_UP = 0.2  # the share of the run before memory is judged, as loadgen does
RSS_BAND = 0.10  # memory after warm-up stays within this share of its median


def column(rows, name, scale=1.0):
    """(minutes, values) of the rows where `name` has a value."""
    points = [(float(r["elapsed_s"]) / 60, float(r[name]) * scale) for r in rows if r[name]]
    return [p[0] for p in points], [p[1] for p in points]


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "ops/soak/soak.csv"
    out = sys.argv[2] if len(sys.argv) > 2 else "ops/soak/soak.png"
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{src}: no samples")
    end = float(rows[-1]["elapsed_s"]) / 60
    warm = end * WARM_UP
    rate = sum(int(r["acked"]) for r in rows) / (end * 60)

    fig, (rss, fds, queue, p99) = plt.subplots(4, 1, sharex=True, figsize=(9, 10))
    fig.suptitle(f"loadgen --soak: {end:.0f} min, {rate:,.0f} events/s acknowledged")

    t, mib = column(rows, "rss_kib", 1 / 1024)
    rss.plot(t, mib, color="tab:blue")
    after = [m for x, m in zip(t, mib) if x >= warm]
    if after:
        median = statistics.median(after)
        rss.axhspan(median * (1 - RSS_BAND), median * (1 + RSS_BAND), color="tab:green",
                    alpha=0.15, label=f"goal: ±{RSS_BAND:.0%} of the median after warm-up")
        rss.axhline(median, color="tab:green", linewidth=0.8)
    rss.set_ylabel("RSS (MiB)")
    rss.set_ylim(bottom=0)

    t, n = column(rows, "open_fds")
    fds.plot(t, n, color="tab:orange")
    if n:
        fds.axhline(n[0], color="tab:green", linewidth=0.8, linestyle="--",
                    label="goal: no growth (first sample)")
    fds.set_ylabel("open fds")
    fds.set_ylim(bottom=0)

    t, depth = column(rows, "queue_depth")
    queue.plot(t, depth, color="tab:purple", label="retry queue: pending + in flight")
    queue.set_ylabel("retry queue")
    queue.set_ylim(bottom=0)
    dead_axis = queue.twinx()
    t, dead = column(rows, "dead_letters")
    dead_axis.plot(t, dead, color="tab:red", label="dead letters (right)")
    dead_axis.set_ylabel("dead letters")
    dead_axis.set_ylim(bottom=0, top=max(dead + [1]) * 1.1)
    dead_axis.legend(loc="lower right", fontsize="small")

    t, ms = column(rows, "publish_p99_ms")
    p99.plot(t, ms, color="tab:gray", linewidth=0.8, label="per sample")
    quarters = [[m for x, m in zip(t, ms) if q * end / 4 <= x < (q + 1) * end / 4 + 1e-9]
                for q in range(4)]
    for q, values in enumerate(quarters):
        if values:
            level = statistics.median(values)
            p99.hlines(level, q * end / 4, (q + 1) * end / 4, color="tab:green",
                       label="goal: no drift (median per quarter)" if q == 0 else None)
    p99.set_ylabel("publish p99 (ms)")
    p99.set_ylim(bottom=0)
    p99.set_xlabel(sys.argv[3] if len(sys.argv) > 3 else "minutes")

    for ax in (rss, fds, queue, p99):
        ax.axvspan(0, warm, color="0.9", zorder=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    rss.text(warm / 2, 0.05, "warm-up", transform=rss.get_xaxis_transform(), ha="center",
             fontsize="small", color="0.4")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
