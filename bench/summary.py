"""Medians over repeats, ratios and the issue's targets, from a run's raw results."""

from __future__ import annotations

import statistics


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def point(runs: list[dict], items_per_request: float) -> dict:
    """The median of each figure over the repeats of one point; errors are summed."""
    out = {
        "rps": median([r["rps"] for r in runs]),
        "p50": median([r["latency_ms"]["p50"] for r in runs]),
        "p90": median([r["latency_ms"]["p90"] for r in runs]),
        "p99": median([r["latency_ms"]["p99"] for r in runs]),
        "mean": median([r["latency_ms"]["mean"] for r in runs]),
        "errors": sum(r["error_count"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "loadgen_cpu_us": median([r["cpu_us_per_request"] for r in runs]),
        "repeats": len(runs),
    }
    out["items_per_s"] = out["rps"] * items_per_request
    cpu = [c for c in map(server_cpu_ms, runs) if c is not None]
    out["cpu_ms_per_request"] = median(cpu) if cpu else float("nan")  # the server's processes, all cores
    splits = [r["torchserve"] for r in runs if "torchserve" in r]
    if splits:
        keys = sorted({k for s in splits for k in s})
        out["split"] = {k: median([s[k] for s in splits if k in s]) for k in keys}
    return out


def server_cpu_ms(run: dict) -> float | None:
    """CPU ms per request of the server's processes in one run: the Flask process, or TorchServe's
    frontend + workers; None when the run did not measure it."""
    if "flask" in run:
        return run["flask"]["cpu_ms_per_request"]
    split = run.get("torchserve", {})
    if "frontend_cpu_ms_per_request" not in split:
        return None
    return split["frontend_cpu_ms_per_request"] + split["worker_cpu_ms_per_request"]


def limits(inprocess: dict, workers: int = 1, cores: int = 1) -> dict:
    """In-process throughput at batch 1, at the configured batch size, and at the best one measured;
    ``best`` scaled to the served workers (one in-process handler per worker, as many as the cores
    hold at the handler's threads) is the limit served throughput is compared with."""
    by_batch = {b["batch"]: b for b in inprocess["batches"]}
    best = max(inprocess["batches"], key=lambda b: b["items_per_s"])
    scale = max(1, min(workers, cores // max(1, inprocess["threads"])))
    return {
        "batch1": by_batch[1]["items_per_s"],
        "configured": by_batch[inprocess["configured_batch"]]["items_per_s"],
        "configured_batch": inprocess["configured_batch"],
        "best": best["items_per_s"],
        "best_batch": best["batch"],
        "scale": scale,
        "limit": best["items_per_s"] * scale,
    }


def summarize(results: dict) -> dict:
    """Per model: limits, and per system and concurrency the median point with its ratios."""
    out = {}
    for name, model in results["models"].items():
        ipr = model["inprocess"]["items_per_request"]
        workers = model.get("served_config", {}).get("minWorkers", 1)
        lim = limits(model["inprocess"], workers, results["machine"].get("cores") or 1)
        systems = {
            s: {int(c): point(runs, ipr) for c, runs in by_c.items() if runs} for s, by_c in model["runs"].items()
        }
        for c, p in systems.get("torchserve", {}).items():
            p["vs_inprocess"] = p["items_per_s"] / lim["limit"]
            for other in ("flask", "baseline"):
                q = systems.get(other, {}).get(c)
                if q and q["items_per_s"]:
                    p[f"vs_{other}"] = p["items_per_s"] / q["items_per_s"]
        out[name] = {"limits": lim, "systems": systems}
    return out


# Every workload's targets; a corpus file's "targets" add to them or tighten them.
DEFAULT_TARGETS = {"1": {"p50_vs_flask": 1.0}, "16": {"vs_flask": 1.0, "p99_vs_p50": 3.0}}
TARGET_KINDS = {  # kind -> (what is measured, at least (True) or at most)
    "vs_flask": ("served items/s ÷ Flask's", True),
    "vs_baseline": ("served items/s ÷ the same archive's at the corpus's baseline settings", True),
    "vs_limit": ("served items/s ÷ the in-process limit", True),
    "p50_vs_flask": ("served p50 ÷ Flask's p50", False),
    "p99_vs_p50": ("served p99 ÷ its p50", False),
}


def target_value(kind: str, ts: dict, flask: dict | None) -> float | None:
    """The measured ratio of one target kind, or None when the run lacks what it needs."""
    if kind in ("vs_flask", "vs_baseline"):
        return ts.get(kind)
    if kind == "vs_limit":
        return ts.get("vs_inprocess")
    if kind == "p50_vs_flask":
        return ts["p50"] / flask["p50"] if flask and flask["p50"] else None
    return ts["p99"] / ts["p50"] if ts["p50"] else None


def targets(results: dict, summary: dict) -> list[dict]:
    """Each workload's targets (the defaults plus its corpus's): what was measured and whether it holds."""
    rows = []
    for name, s in summary.items():
        wanted = {c: dict(v) for c, v in DEFAULT_TARGETS.items()}
        for c, kinds in results["models"][name].get("targets", {}).items():
            wanted.setdefault(c, {}).update(kinds)
        for c, kinds in sorted(wanted.items(), key=lambda item: int(item[0])):
            ts = s["systems"].get("torchserve", {}).get(int(c))
            flask = s["systems"].get("flask", {}).get(int(c))
            for kind, bound in kinds.items():
                value = target_value(kind, ts, flask) if ts else None
                if value is None:
                    continue
                what, at_least = TARGET_KINDS[kind]
                met = value >= bound if at_least else value <= bound
                rows.append(
                    {
                        "target": f"{name} c={c}: {what} {'>=' if at_least else '<='} {bound:g}",
                        "measured": f"{value:.2f}",
                        "met": met,
                        "gap": "" if met else f"{abs(bound - value):.2f} {'short' if at_least else 'over'}",
                    }
                )
    return rows
