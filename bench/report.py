"""From a run's raw results: medians over rounds, ratios, the targets, and report.md."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def point(runs: list[dict], items_per_request: float) -> dict:
    """The median of each figure over the rounds of one point; errors summed."""
    out = {k: median([r["latency_ms"][k] for r in runs]) for k in ("p50", "p90", "p99", "mean")}
    out |= {
        "rps": median([r["rps"] for r in runs]),
        "errors": sum(r["error_count"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "loadgen_cpu_us": median([r["cpu_us_per_request"] for r in runs]),
        "cpu_ms": median([r["cpu_ms_per_request"] for r in runs]),
        "load": median([r["loadavg_1m"] for r in runs]),
    }
    out["items_per_s"] = out["rps"] * items_per_request
    splits = [r["torchserve"] for r in runs if "torchserve" in r]
    if splits:
        out["split"] = {k: median([s[k] for s in splits if k in s]) for k in sorted({k for s in splits for k in s})}
    return out


def limits(inprocess: dict, workers: int = 1, cores: int = 1) -> dict:
    """In-process items/s at batch 1 and at the best batch; the best scaled to the served workers
    (one handler per worker, as many as the cores hold at its threads) is the limit."""
    best = max(inprocess["batches"], key=lambda b: b["items_per_s"])
    scale = max(1, min(workers, cores // max(1, inprocess["threads"])))
    batch1 = next(b for b in inprocess["batches"] if b["batch"] == 1)["items_per_s"]
    return {"batch1": batch1, "best": best["items_per_s"], "best_batch": best["batch"], "scale": scale} | {
        "limit": best["items_per_s"] * scale
    }


def summarize(results: dict) -> dict:
    """Per workload: limits, and per variant and concurrency the median point. The first TorchServe
    variant is "ours"; its points get ratios to Flask, to the best LitServe variant at that
    concurrency, to the corpus's baseline, and to the limit."""
    out = {}
    for name, w in results["workloads"].items():
        ipr, systems = w["inprocess"]["items_per_request"], w["systems"]
        ours = next((label for label, s in systems.items() if s == "torchserve" and label in w["runs"]), None)
        workers = (w["served"].get(ours, {}).get("config") or {}).get("minWorkers", 1)
        lim = limits(w["inprocess"], workers, results["machine"].get("cores") or 1)
        points = {label: {int(c): point(r, ipr) for c, r in by_c.items() if r} for label, by_c in w["runs"].items()}
        for c, p in points.get(ours, {}).items():
            p["vs_limit"] = p["items_per_s"] / lim["limit"]
            peers = {
                "flask": [q for label, q in points.items() if systems[label] == "flask" and c in q],
                "litserve": [q for label, q in points.items() if systems[label] == "litserve" and c in q],
                "baseline": [q for label, q in points.items() if label.startswith("baseline") and c in q],
            }
            for kind, found in peers.items():
                if found:
                    best = max((q[c] for q in found), key=lambda q: q["items_per_s"])
                    p[f"vs_{kind}"] = p["items_per_s"] / best["items_per_s"] if best["items_per_s"] else float("nan")
                    fastest = min(q[c]["p50"] for q in found)  # 0: a point that finished no request
                    p[f"p50_vs_{kind}"] = p["p50"] / fastest if fastest else float("nan")
        out[name] = {"limits": lim, "ours": ours, "points": points}
    return out


# Every workload's targets (docs/PERFORMANCE.md); a corpus file's "targets" add to them or tighten them.
DEFAULT_TARGETS = {
    "1": {"p50_vs_litserve": 1.0, "vs_litserve": 0.9, "p50_vs_flask": 1.0},
    "16": {"vs_litserve": 1.2, "vs_flask": 1.0, "p99_vs_p50": 3.0},
    "64": {"vs_litserve": 1.2},
}
SAMPLES_TARGETS = {"16": {"vs_limit": 0.5}}  # models benchmarked on their samples (no corpus of their own)
KINDS = {  # kind -> (what is measured, at least (True) or at most)
    "vs_flask": ("items/s ÷ Flask's", True),
    "vs_litserve": ("items/s ÷ LitServe's best", True),
    "vs_baseline": ("items/s ÷ the corpus's baseline settings'", True),
    "vs_limit": ("items/s ÷ the in-process limit", True),
    "p50_vs_flask": ("p50 ÷ Flask's", False),
    "p50_vs_litserve": ("p50 ÷ LitServe's best", False),
    "p99_vs_p50": ("p99 ÷ p50", False),
}


def targets(results: dict, summary: dict) -> list[dict]:
    """Each workload's targets: what was measured and whether it holds (absent systems: no row)."""
    rows = []
    for name, s in summary.items():
        w = results["workloads"][name]
        wanted = {c: dict(v) for c, v in DEFAULT_TARGETS.items()}
        for c, kinds in [*(SAMPLES_TARGETS.items() if w["corpus"] == "samples" else []), *w["targets"].items()]:
            wanted.setdefault(c, {}).update(kinds)
        for c, kinds in sorted(wanted.items(), key=lambda item: int(item[0])):
            p = s["points"].get(s["ours"], {}).get(int(c))
            for kind, bound in kinds.items():
                value = (
                    (p["p99"] / p["p50"] if p["p50"] else None) if p and kind == "p99_vs_p50" else (p or {}).get(kind)
                )
                if value is None:
                    continue
                what, at_least = KINDS[kind]
                met = value >= bound if at_least else value <= bound
                gap = "" if met else f"{abs(bound - value):.2f} {'short' if at_least else 'over'}"
                rows.append(
                    {"target": f"{name} c={c}: {what} {'≥' if at_least else '≤'} {bound:g}"}
                    | {"measured": f"{value:.2f}", "met": met, "gap": gap, "load": p["load"]}
                )
    return rows


def _f(value, digits: int = 1) -> str:
    return "–" if value is None or value != value else f"{value:,.{digits}f}"


def variant_table(summary: dict) -> list[str]:
    """One workload's points, a row per variant and concurrency."""
    lim = summary["limits"]
    lines = [
        "| variant | c | req/s | items/s | p50 ms | p99 ms | errors | server CPU ms/req | ×limit | ×Flask "
        "| ×LitServe best | ×baseline | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, points in summary["points"].items():
        for c, p in sorted(points.items()):
            ratios = " | ".join(_f(p.get(k), 2) if k in p else "" for k in ("vs_flask", "vs_litserve", "vs_baseline"))
            lines.append(
                f"| {label} | {c} | {_f(p['rps'])} | {_f(p['items_per_s'])} | {_f(p['p50'], 2)} | {_f(p['p99'], 2)} | "
                f"{p['errors']} | {_f(p['cpu_ms'], 3)} | {p['items_per_s'] / lim['limit']:.2f} | {ratios} | "
                f"{_f(p['load'], 1)} |"
            )
    return lines


def split_table(summary: dict) -> list[str]:
    """Where our requests spent their time, per concurrency (TorchServe's own counters and metric lines)."""
    lines = [
        "| c | client mean | frontend total | of which queue | client − frontend | requests per batch | "
        "PredictionTime per batch | frontend / worker CPU ms per request | log bytes per request | padding % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, p in sorted(summary["points"].get(summary["ours"], {}).items()):
        sp = p.get("split", {})
        lines.append(
            f"| {c} | {_f(p['mean'], 2)} | {_f(sp.get('frontend_ms'), 2)} | {_f(sp.get('queue_ms'), 2)} | "
            f"{_f(p['mean'] - sp.get('frontend_ms', 0), 2)} | {_f(sp.get('mean_batch'), 2)} | "
            f"{_f(sp.get('prediction_ms_per_batch'), 2)} | {_f(sp.get('frontend_cpu_ms'), 3)} / "
            f"{_f(sp.get('worker_cpu_ms'), 3)} | {_f(sp.get('log_bytes_per_request'), 0)} | "
            f"{_f(sp.get('padded_percent'))} |"
        )
    return lines


def render(results: dict, plot_name: str | None = None) -> str:
    """report.md."""
    summary, m, s = summarize(results), results["machine"], results["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        "# Benchmark: TorchServe vs LitServe vs Flask vs the in-process limit",
        "",
        f"Written by `make bench` (`python -m bench`) on {time.strftime('%Y-%m-%d %H:%M')}; raw numbers in "
        "`raw.json`. What the columns mean: docs/PERFORMANCE.md.",
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}), client and servers on it. Load average (1, 5, 15 min) "
        f"before {m['loadavg_before']}, after {m.get('loadavg_after')}; the 1-minute one after each point is "
        "in the tables (above the core count: other work was waiting for them).",
        f"- Versions: Python {m['python']}, {versions}, {m['wrk']}.",
        f"- Each point: {s['warmup']} s warm-up (discarded), {s['duration']} s measured; median of {s['repeats']} "
        "rounds (variants interleaved). c = connections of the closed-loop load generator (wrk, 1 thread).",
        f"- Variants: {'; '.join(map(described, results['variants']))}.",
        f"- Whole run: {m.get('seconds', 0) / 60:.1f} min.",
        "",
        "## Targets",
        "",
        "| target | measured | met | load |",
        "|---|---|---|---:|",
    ]
    for row in targets(results, summary):
        lines.append(
            f"| {row['target']} | {row['measured']} | {'yes' if row['met'] else 'NO, ' + row['gap']} | "
            f"{row['load']:.1f} |"
        )
    if plot_name:
        lines += ["", f"![throughput and latency against concurrency]({plot_name})"]
    for name, w in results["workloads"].items():
        ip, lim, sm = w["inprocess"], summary[name]["limits"], summary[name]
        wrong = {k: v for k, v in w["wrong_answers"].items() if v}
        served = "; ".join(
            f"{k}: { ({x: y for x, y in v['config'].items() if x != 'pids'}) }, registered in {v['register_s']} s"
            for k, v in w["served"].items()
        )
        lines += [
            "",
            f"## {name}",
            "",
            f"{served.replace(chr(39), '')}. {ip['items_per_request']:g} item(s) per request on average. Answers "
            "checked against the in-process handler before the load: "
            + ("every variant matches." if not wrong else f"**MISMATCH** {wrong}"),
            "",
            "In process (`handler.handle` on batches; median of the measurements before each round): "
            + ", ".join(f"batch {b['batch']} {b['items_per_s']:,.0f} items/s" for b in ip["batches"])
            + f". Limit: batch {lim['best_batch']} × {lim['scale']} worker(s) = {lim['limit']:,.0f} items/s.",
            "",
            *variant_table(sm),
            "",
            f"Where {sm['ours']}'s requests spent their time (ms per request):",
            "",
            *split_table(sm),
        ]
    lines += ["", "## Memory after each model's points (RSS, MB)", ""]
    lines += [f"- {model}: {by}" for model, by in results.get("memory", {}).items()]
    lines.append(f"- TorchServe frontend(s) at the end: {list(results.get('frontend_mb', {}).values())}")
    return "\n".join(lines) + "\n"


def described(variant: dict) -> str:
    """A variant's label with the settings it changes."""
    changes = {k: v for k, v in (variant["config"] | variant["model"]).items()}
    return variant["label"] + (f" {changes}" if changes else "")


def write(results: dict, out: Path, plot_name: str | None) -> Path:
    """Write report.md and raw.json into ``out``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "report.md").write_text(render(results, plot_name))
    return out / "report.md"
