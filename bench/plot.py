"""The report's figure: throughput and latency against concurrency, one column per model."""

from __future__ import annotations

from pathlib import Path

from bench.report import summarize


def write(results: dict, path: Path) -> Path:
    """Draw the figure into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display here
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    summary = summarize(results)
    names = list(summary)
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 7.5), squeeze=False)
    for col, name in enumerate(names):
        top, bottom = axes[0][col], axes[1][col]
        limits = summary[name]["limits"]
        for i, (label, points) in enumerate(summary[name]["points"].items()):
            color = f"C{i}"
            cs = sorted(points)
            top.plot(cs, [points[c]["items_per_s"] for c in cs], "o-", color=color, label=label)
            bottom.plot(cs, [points[c]["p50"] for c in cs], "o-", color=color, label=f"{label} p50")
            bottom.plot(cs, [points[c]["p99"] for c in cs], "s--", color=color, alpha=0.7, label=f"{label} p99")
        scaled = f" x {limits['scale']} workers" if limits["scale"] > 1 else ""
        top.axhline(limits["limit"], color="black", ls=":", label=f"in process, batch {limits['best_batch']}{scaled}")
        top.axhline(limits["batch1"], color="gray", ls="-.", label="in process, batch 1")
        top.set_title(name)
        top.set_ylabel("items/s")
        top.set_ylim(bottom=0)
        bottom.set_ylabel("latency (ms)")
        bottom.set_yscale("log")
        bottom.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        bottom.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ticks = sorted({c for points in summary[name]["points"].values() for c in points})
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(c) for c in ticks])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlabel("concurrency (requests in flight)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("Served throughput and latency on 2 shared cores (median of rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
