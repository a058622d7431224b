"""The markdown report (bench/results/report.md) and the raw JSON beside it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.summary import summarize, targets

SYSTEM_NAMES = {"torchserve": "TorchServe", "flask": "Flask", "baseline": "TorchServe, baseline settings"}


def _f(value, digits: int = 1) -> str:
    return "–" if value is None or value != value else f"{value:,.{digits}f}"


def render(results: dict, plot_name: str | None) -> str:
    """The report as markdown."""
    summary = summarize(results)
    m, s = results["machine"], results["settings"]
    lines = [
        "# Benchmark: TorchServe vs the in-process limit vs Flask",
        "",
        f"Written by `make bench` (`python -m bench`) on {time.strftime('%Y-%m-%d %H:%M', time.localtime())}; "
        "raw numbers in `raw.json`. What the columns mean and how the defaults were chosen: docs/PERFORMANCE.md.",
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}); client and servers on the same machine. "
        f"Load average (1, 5, 15 min) before {m['loadavg_before']}, after {m.get('loadavg_after')}.",
        f"- Versions: Python {m['python']}, torch {m['torch']}, TorchServe {m['torchserve']}, Flask {m['flask']}, "
        f"{m['wrk']}.",
        f"- Each point: {s['warmup']} s warm-up (discarded), then {s['duration']} s measured; the median of "
        f"{s['repeats']} rounds (systems interleaved). Concurrency = connections of the closed-loop load generator "
        "(wrk, 1 thread), each sending the bodies of the corpus in turn.",
        "- Served with `config.properties`"
        + (f" plus {s['overrides']}" if s.get("overrides") else "")
        + " and each archive's model-config.yaml"
        + (f" with {s['model_overrides']}" if s.get("model_overrides") else "")
        + ".",
        f"- Whole run: {m.get('seconds', 0) / 60:.1f} min. 1-minute load average after each point: "
        f"{_load_range(results)} (2 cores: above 2 means other work was waiting for them).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for row in targets(results, summary):
        lines.append(f"| {row['target']} | {row['measured']} | {'yes' if row['met'] else 'NO, ' + row['gap']} |")
    lines += _overview(summary)
    if plot_name:
        lines += ["", f"![throughput and latency against concurrency]({plot_name})"]
    for name, model in results["models"].items():
        lines += _model_section(name, model, summary[name])
    lines += _memory_section(results)
    return "\n".join(lines) + "\n"


def _overview(summary: dict) -> list[str]:
    lines = [
        "",
        "## Overview",
        "",
        "Per model and corpus (the model folder's `bench/*.json`, else its samples): TorchServe's items/s as a "
        "ratio to Flask's and to the in-process limit at the best batch, and both p50s.",
        "",
        "| model/corpus | concurrency | TorchServe items/s | ×Flask | ×limit (best batch) | p50 ms TS / Flask |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        lim = s["limits"]
        flask = s["systems"].get("flask", {})
        for c, p in sorted(s["systems"].get("torchserve", {}).items()):
            f = flask.get(c)
            lines.append(
                f"| {name} | {c} | {_f(p['items_per_s'])} | {_f(p.get('vs_flask'), 2)} | "
                f"{p['vs_inprocess']:.2f} (batch {lim['best_batch']}) | {_f(p['p50'], 2)} / {_f(f and f['p50'], 2)} |"
            )
    return lines


def _load_range(results: dict) -> str:
    loads = sorted(
        p["loadavg_1m"]
        for model in results["models"].values()
        for by_c in model["runs"].values()
        for ps in by_c.values()
        for p in ps
        if "loadavg_1m" in p
    )
    return f"median {loads[len(loads) // 2]:.1f}, range {loads[0]:.1f}–{loads[-1]:.1f}" if loads else "not recorded"


def _model_section(name: str, model: dict, summary: dict) -> list[str]:
    cfg, lim, ip = model.get("served_config", {}), summary["limits"], model["inprocess"]
    wrong = {k: v for k, v in model.get("wrong_answers", {}).items() if v}
    lines = [
        "",
        f"## {name}",
        "",
        f"Served with batchSize {cfg.get('batchSize')}, maxBatchDelay {cfg.get('maxBatchDelay')} ms, "
        f"{cfg.get('minWorkers')} worker(s) of {cfg.get('threads')} torch thread(s). Archive "
        f"{model['archive_bytes'] / 1024:,.0f} KiB; registration (synchronous, model load included) "
        f"{model.get('register_s', 0):.2f} s; WorkerLoadTime {model.get('worker_load_ms')} ms; in-process load "
        f"{ip['load_s'] * 1000:.0f} ms. {ip['items_per_request']:g} item(s) per request on average.",
        "",
        "Answers checked against the in-process handler before the load: "
        + ("all samples match on every system." if not wrong else f"**MISMATCH** {wrong}"),
        "",
        f"**In process** (`handler.handle` on N requests, same archive, same threads; median of "
        f"{len(ip.get('rounds', [1]))} measurements, one before each round):",
        "",
        "| batch | items/s | ms per call (p50) |",
        "|---:|---:|---:|",
    ]
    for b in ip["batches"]:
        mark = " (configured)" if b["batch"] == lim["configured_batch"] else ""
        mark += " (best)" if b["batch"] == lim["best_batch"] else ""
        lines.append(f"| {b['batch']}{mark} | {_f(b['items_per_s'])} | {_f(b['ms_per_call_p50'], 3)} |")
    base = model.get("baseline")
    if base:
        cfg = base["served_config"]
        lines += [
            "",
            f"**Baseline**: {base.get('label', 'other settings')}: the same archive with {base['settings']}, served "
            f"as `{base['served_as']}` (batchSize {cfg['batchSize']}, maxBatchDelay {cfg['maxBatchDelay']} ms, "
            f"{cfg['minWorkers']} worker(s)), measured right after TorchServe in each round.",
        ]
    lines += [
        "",
        f"**Served** (median of rounds; ×limit = served items/s ÷ the in-process limit: best batch "
        f"{lim['best_batch']}, {lim['best']:,.1f} items/s"
        + (f" × {lim['scale']} workers = {lim['limit']:,.1f}" if lim["scale"] > 1 else "")
        + "):",
        "",
        "| system | concurrency | req/s | items/s | p50 ms | p90 ms | p99 ms | errors | server CPU ms/req | ×limit "
        "| TS/Flask | TS/baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, points in summary["systems"].items():
        for c, p in sorted(points.items()):
            ratio = p["items_per_s"] / lim["limit"]
            lines.append(
                f"| {SYSTEM_NAMES.get(system, system)} | {c} | {_f(p['rps'])} | {_f(p['items_per_s'])} | "
                f"{_f(p['p50'], 2)} | {_f(p['p90'], 2)} | {_f(p['p99'], 2)} | {p['errors']} | "
                f"{_f(p['cpu_ms_per_request'], 3)} | {ratio:.2f} | "
                f"{_f(p.get('vs_flask'), 2) if 'vs_flask' in p else ''} | "
                f"{_f(p.get('vs_baseline'), 2) if 'vs_baseline' in p else ''} |"
            )
    ts_points = summary["systems"].get("torchserve", {})
    if ts_points:
        lines += [
            "",
            "**Where a TorchServe request spends its time** (ms per request, means; frontend and queue from "
            "TorchServe's `ts_inference_latency_microseconds` / `ts_queue_latency_microseconds` counters, "
            "PredictionTime per batch from the worker's metric lines; padding %: the mean share of padded "
            "positions in the model calls of batches of more than one row, for models with length-aware batching):",
            "",
            "| concurrency | client mean | frontend total | of which queue | requests per batch | PredictionTime per "
            "batch | PredictionTime per request | client − frontend | padding % |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c, p in sorted(ts_points.items()):
            sp = p.get("split", {})
            lines.append(
                f"| {c} | {_f(p['mean'], 2)} | {_f(sp.get('frontend_ms'), 2)} | {_f(sp.get('queue_ms'), 2)} | "
                f"{_f(sp.get('mean_batch'), 2)} | {_f(sp.get('prediction_ms_per_batch'), 2)} | "
                f"{_f(sp.get('prediction_ms_per_request'), 3)} | {_f(p['mean'] - sp.get('frontend_ms', 0), 2)} | "
                f"{_f(sp.get('padded_percent'))} |"
            )
    return lines


def _memory_section(results: dict) -> list[str]:
    mem = results.get("memory", {})
    lines = ["", "## Memory after the run (RSS)", ""]
    if mem:
        lines.append(f"- TorchServe frontend (JVM): {mem['frontend_mb']:,.0f} MB")
        for name, workers in mem["workers_mb"].items():
            flask = [w.get("flask_mb") for w in results["models"].values() if w.get("model", name) == name]
            lines.append(f"- {name}: TorchServe worker(s) {workers} MB; Flask server {flask} MB")
    runs = [
        p for model in results["models"].values() for by_c in model["runs"].values() for ps in by_c.values() for p in ps
    ]
    if runs:
        cpu = sorted(p["cpu_us_per_request"] for p in runs)
        share = max(p["cpu_us_per_request"] * p["rps"] / 1e6 for p in runs)
        lines += [
            "",
            "## Load generator cost",
            "",
            f"wrk used {cpu[len(cpu) // 2]:.0f} µs of CPU per request (median over runs; range {cpu[0]:.0f}–"
            f"{cpu[-1]:.0f}, start-up included), at most {share:.0%} of one core in any run.",
        ]
    return lines


def write(results: dict, out: Path, plot_name: str | None) -> Path:
    """Write report.md and raw.json into ``out``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw.json").write_text(json.dumps(results, indent=1) + "\n")
    report = out / "report.md"
    report.write_text(render(results, plot_name))
    return report
