"""Medians over repeats, ratios and the issue's targets, from a run's raw results."""

from __future__ import annotations

import statistics

TEXT_MODEL = "text_embedder"


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
            flask = systems.get("flask", {}).get(c)
            if flask and flask["items_per_s"]:
                p["vs_flask"] = p["items_per_s"] / flask["items_per_s"]
        out[name] = {"limits": lim, "systems": systems}
    return out


def heaviest(results: dict) -> str:
    """text_embedder when it is there, else the model with the fewest items/s in process at batch 1."""
    models = results["models"]
    if TEXT_MODEL in models:
        return TEXT_MODEL
    return min(models, key=lambda m: limits(models[m]["inprocess"])["batch1"])


def targets(results: dict, summary: dict) -> list[dict]:
    """The issue's targets: what was measured, the bound, and whether it holds."""
    rows = []
    heavy = heaviest(results)
    ts16 = summary[heavy]["systems"].get("torchserve", {}).get(16)
    fl16 = summary[heavy]["systems"].get("flask", {}).get(16)
    if ts16:
        ratio, lim = ts16["vs_inprocess"], summary[heavy]["limits"]
        rows.append(
            {
                "target": f"{heavy} c=16: served >= 85% of in-process (best batch)",
                "measured": f"{ts16['items_per_s']:.0f} vs {lim['limit']:.0f} items/s (batch {lim['best_batch']}"
                + (f", x{lim['scale']} workers" if lim["scale"] > 1 else "")
                + f") = {ratio:.0%}",
                "met": ratio >= 0.85,
                "gap": "" if ratio >= 0.85 else f"{0.85 - ratio:.0%} short",
            }
        )
    if ts16 and fl16:
        ratio = ts16["vs_flask"]
        rows.append(
            {
                "target": f"{heavy} c=16: served >= 2x Flask",
                "measured": f"{ts16['items_per_s']:.0f} vs {fl16['items_per_s']:.0f} items/s = {ratio:.2f}x",
                "met": ratio >= 2,
                "gap": "" if ratio >= 2 else f"{2 - ratio:.2f}x short",
            }
        )
    if "digits" in summary:
        ts1 = summary["digits"]["systems"].get("torchserve", {}).get(1)
        fl1 = summary["digits"]["systems"].get("flask", {}).get(1)
        if ts1 and fl1:
            diff = ts1["p50"] - fl1["p50"]
            rows.append(
                {
                    "target": "digits c=1: served p50 within 1.5 ms of Flask",
                    "measured": f"{ts1['p50']:.2f} vs {fl1['p50']:.2f} ms ({diff:+.2f} ms)",
                    "met": diff <= 1.5,
                    "gap": "" if diff <= 1.5 else f"{diff - 1.5:.2f} ms over",
                }
            )
    for name, s in summary.items():
        p = s["systems"].get("torchserve", {}).get(16)
        if p:
            ratio = p["p99"] / p["p50"]
            rows.append(
                {
                    "target": f"{name} c=16: served p99 <= 3x p50",
                    "measured": f"{p['p99']:.2f} / {p['p50']:.2f} ms = {ratio:.1f}x",
                    "met": ratio <= 3,
                    "gap": "" if ratio <= 3 else f"{ratio - 3:.1f}x over",
                }
            )
    return rows
