"""Plots a soak's per-second CSV (bench/soak): throughput, p99 latency, the
server's RSS, and its fds and threads over time, one panel each.

Usage: python bench/soak_plot.py SOAK.csv SOAK.json OUT.png

The capacity phase (closed-loop) is shaded, as are the last seconds after
the paced calls ended (drain); the RSS panel draws the
least-squares line fitted over the last two thirds of the soak phase, with
its slope from the JSON summary.
"""

import csv
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    csv_path, json_path, out = sys.argv[1:4]
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.load(open(json_path))
    col = lambda name: [float(r[name]) for r in rows]  # noqa: E731
    t = col("t_s")
    soak = [r["phase"] == "soak" for r in rows]
    t0 = max((x for x, r in zip(t, rows) if r["phase"] == "capacity"), default=t[0])

    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    title = (
        f"authd soak, {summary.get('label', '')} store: capacity "
        f"{summary['capacity']['calls_per_s_median']:.0f} calls/s, soak at "
        f"{summary['target_calls_per_s']:.0f}/s for {summary['soak_seconds']:.0f} s; "
        f"{summary['calls']:,} calls, {summary['unexpected']} unexpected "
        f"({summary.get('date', '')})"
    )
    fig.suptitle(title, fontsize=10)
    t1 = min((x for x, r in zip(t, rows) if r["phase"] == "drain"), default=None)
    for ax in axes:
        ax.axvspan(0, t0, color="0.9", lw=0)
        if t1 is not None:
            ax.axvspan(t1 - 1, t1, color="0.9", lw=0)
        ax.grid(True, alpha=0.3)

    ax = axes[0]
    ax.plot(t, col("calls_per_s"), lw=0.8, label="calls answered")
    ax.axhline(summary["target_calls_per_s"], color="C3", lw=0.8, ls="--", label="target")
    unexpected = col("unexpected")
    if any(unexpected):
        ax.plot(t, unexpected, lw=0.8, color="C3", label="unexpected")
    ax.set_ylabel("calls / s")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    ax.text(0.01, 0.05, "capacity (closed-loop)", transform=ax.transAxes, fontsize=8)

    ax = axes[1]
    ax.plot(t, col("verify_p99_us"), lw=0.8, label="VerifyToken mix p99")
    ax.plot(t, col("verify_p50_us"), lw=0.8, label="VerifyToken mix p50")
    session = [(x, y) for x, y in zip(t, col("session_p99_us")) if y > 0]
    if session:
        ax.plot(*zip(*session), lw=0.8, label="session calls p99")
    ax.set_yscale("log")
    ax.set_ylabel("latency, µs")
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[2]
    rss = [v / 1024 for v in col("rss_kib")]
    ax.plot(t, rss, lw=0.8, label="VmRSS")
    fit = summary["rss_kib"]
    slope = fit["slope_kib_per_min_last_two_thirds"]
    tail = [(x, y) for x, y, s in zip(t, rss, soak) if s and x >= fit["fit_from_s"]]
    if len(tail) >= 2:
        xs, ys = zip(*tail)
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        per_s = slope / 1024 / 60
        ax.plot(
            [xs[0], xs[-1]],
            [my + per_s * (xs[0] - mx), my + per_s * (xs[-1] - mx)],
            color="C3",
            lw=1,
            ls="--",
            label=f"fit, last 2/3: {slope:+.1f} KiB/min",
        )
    ax.set_ylabel("RSS, MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)

    ax = axes[3]
    ax.plot(t, col("fds"), lw=0.8, label="open fds")
    ax.plot(t, col("threads"), lw=0.8, label="threads")
    ax.set_ylabel("count")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since the driver started")
    ax.legend(loc="lower right", fontsize=8)

    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
