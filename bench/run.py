"""One benchmark run: for each model, the in-process limit, TorchServe and Flask, on one machine.

Order: every model's in-process limit (a subprocess each), then one TorchServe with every archive
registered; per model a Flask server on the same archive, both checked against the in-process
answers, then ``repeats`` rounds of (TorchServe, Flask) x concurrencies, each point a warm-up run
that is thrown away and a measured run. A corpus that names a ``baseline`` (other model-config
values, e.g. the defaults before a change) has the same archive served under them as well, measured
right after TorchServe in every round. Rounds interleave the systems so that slow drift on a
shared machine hits both alike. (Over 250 lines: the steps of one run, kept together in order.)
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import requests

from bench import torchserve
from bench.archive import variant_archive
from bench.flask_process import FlaskServer
from bench.loadgen import run_load, wrk_binary
from bench.payloads import corpora, corpus_baseline, corpus_targets, payloads
from client.answers import same
from client.server import Server
from export.paths import MODEL_STORE, ROOT, model_names
from export.samples import Sample


@dataclass
class Settings:
    """What to run; the defaults are `make bench`'s."""

    models: list[str] = field(default_factory=model_names)
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    duration: int = 5  # s per measured run
    warmup: int = 1  # s per warm-up run before each measured one (0: none)
    repeats: int = 3
    systems: list[str] = field(default_factory=lambda: ["torchserve", "flask"])
    model_store: Path = MODEL_STORE
    inprocess_batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    inprocess_seconds: float = 2.0
    overrides: dict = field(default_factory=dict)  # config.properties key -> value
    model_overrides: dict = field(default_factory=dict)  # model -> {model-config.yaml key (or threads): value}
    corpora: list[str] | None = None  # only these corpora (default: every corpus each model folder offers)
    checked: int = 24  # bodies of each corpus whose answers are compared before the load
    inprocess_bodies: int = 96  # bodies of each corpus every in-process batch size is timed on


def workloads(settings: Settings) -> list[tuple[str, str]]:
    """(model, corpus) pairs to measure: each model's corpora (bench/*.json in its folder, else samples)."""
    return [(m, c) for m in settings.models for c in corpora(m) if settings.corpora is None or c in settings.corpora]


def workload_id(model: str, corpus: str) -> str:
    """The key of one (model, corpus) in the results and the report."""
    return f"{model}/{corpus}"


def machine() -> dict:
    """Where the run happens: load, CPU, versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    wrk = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchserve": _version("torchserve"),
        "flask": _version("flask"),
        "wrk": wrk.split(" Copyright")[0].strip(),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def in_process(name: str, archive: Path, settings: Settings, corpus: str = "samples") -> dict:
    """The limit, measured in a subprocess (bench/inprocess.py)."""
    command = [sys.executable, "-m", "bench.inprocess", name, "--archive", str(archive), "--corpus", corpus]
    command += ["--answers", str(settings.checked), "--bodies", str(settings.inprocess_bodies)]
    command += ["--batch-sizes", *map(str, settings.inprocess_batches), "--seconds", str(settings.inprocess_seconds)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"in-process run of {name} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def check_answers(url: str, bodies: list[Sample], expected: dict, token: str | None) -> list[str]:
    """Send each body whose in-process answer is known once; list those whose status or answer differs."""
    wrong = []
    for p in (p for p in bodies if p.path.name in expected):
        headers = {"Content-Type": p.content_type} | ({"Authorization": f"Bearer {token}"} if token else {})
        response = requests.post(url, data=p.raw, headers=headers, timeout=60)
        want = expected[p.path.name]
        # 1e-4: Flask runs the model on torch's default thread count, in-process on the handler's.
        if response.status_code != want["status"] or not same(response.json(), want["answer"], 1e-4):
            wrong.append(f"{p.path.name}: {response.status_code} {response.text[:200]}")
    return wrong


def flask_point(flask: FlaskServer, bodies: list[Sample], concurrency: int, settings: Settings) -> dict:
    """A warm-up run (discarded), then the measured run; each followed by a drain."""
    if settings.warmup:
        run_load(flask.url, bodies, concurrency, settings.warmup)
        flask.wait_idle()
    cpu = flask.cpu_seconds()
    result = run_load(flask.url, bodies, concurrency, settings.duration)
    cpu = flask.cpu_seconds() - cpu
    return result.to_dict() | {
        "flask": {"cpu_ms_per_request": round(cpu * 1000 / max(1, result.requests), 4)},
        "drain_s": round(flask.wait_idle(), 1),
    }


def torchserve_point(server, name: str, bodies: list[Sample], concurrency: int, settings: Settings, token: str) -> dict:
    """One measured TorchServe point, with TorchServe's own split of the time per request."""
    url = f"{server.address('inference')}/predictions/{name}"
    if settings.warmup:
        run_load(url, bodies, concurrency, settings.warmup, token)
    torchserve.drain(server, name, bodies[0], token)
    before = torchserve.model_counters(torchserve.scrape(server), name)
    offset, logged = torchserve.log_size(server), torchserve.log_bytes(server)
    cpu = torchserve.cpu_seconds(server)
    result = run_load(url, bodies, concurrency, settings.duration, token)
    cpu = {k: v - cpu[k] for k, v in torchserve.cpu_seconds(server).items()}
    after, logged = torchserve.model_counters(torchserve.scrape(server), name), torchserve.log_bytes(server) - logged
    drained = torchserve.drain(server, name, bodies[0], token)  # requests still queued when wrk stopped
    batches = torchserve.batches_since(server, offset, name)
    served = max(1.0, after["requests"] - before["requests"])
    split = {
        "frontend_ms": round((after["latency_us"] - before["latency_us"]) / served / 1000, 3),
        "queue_ms": round((after["queue_us"] - before["queue_us"]) / served / 1000, 3),
        "log_bytes_per_request": round(logged / served),
        "drain_s": round(drained, 1),
        "frontend_cpu_ms_per_request": round(cpu["frontend"] * 1000 / served, 4),
        "worker_cpu_ms_per_request": round(cpu["workers"] * 1000 / served, 4),
    }
    padded = padded_percents(server, offset, name)
    if padded:  # models with length-aware batching report each batch's padding (handlers/batching.py)
        split["padded_percent"] = round(statistics.mean(padded), 1)
    if batches:
        requests_in_batches = sum(n for _, n in batches)
        split |= {
            "batches": len(batches),
            "mean_batch": round(requests_in_batches / len(batches), 2),
            "prediction_ms_per_batch": round(sum(t for t, _ in batches) / len(batches), 3),
            "prediction_ms_per_request": round(sum(t for t, _ in batches) / requests_in_batches, 3),
        }
    return result.to_dict() | {"torchserve": split}


# "[METRICS]PaddedPercent.Percent:12.5|#ModelName:<model>,...": one per batch of more than one row.
PADDED_LINE = re.compile(r"\[METRICS\]PaddedPercent\.Percent:([\d.]+)\|#ModelName:([^,|]+)")


def padded_percents(server, offset: int, model: str) -> list[float]:
    """Padding of each multi-row batch the model's workers ran since ``offset`` in ts_log.log
    (each line may be logged twice: its request ids tell them apart)."""
    path = server.log_dir / "ts_log.log"
    if not path.exists() or path.stat().st_size < offset:
        return []
    seen = {}
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            line = raw.decode("utf-8", "replace")
            match = PADDED_LINE.search(line)
            if match and match.group(2) == model:
                seen[line.split("#hostname:", 1)[-1]] = float(match.group(1))
    return list(seen.values())


def bench_workload(
    name: str, corpus: str, server, token: str, limit: dict, settings: Settings, work: Path, log, baseline: str | None
):
    """Every point of one model on one corpus: correctness first, then the rounds. ``baseline``:
    the served name of the same archive under the corpus's baseline settings, measured as a third
    system right after TorchServe (None: the corpus has no baseline)."""
    archive, bodies = settings.model_store / f"{name}.mar", payloads(name, corpus)
    systems = [*settings.systems]
    if baseline and "torchserve" in systems:
        systems.insert(systems.index("torchserve") + 1, "baseline")
    out = {"runs": {s: {str(c): [] for c in settings.concurrency} for s in systems}, "wrong_answers": {}}
    served = {"torchserve": name, "baseline": baseline}
    for system in (s for s in systems if s != "flask"):
        url = f"{server.address('inference')}/predictions/{served[system]}"
        out["wrong_answers"][system] = check_answers(url, bodies, limit["answers"], token)
    use_flask = "flask" in settings.systems
    flask_log = work / f"flask-{name}-{corpus}.log"
    with FlaskServer(archive, flask_log, bodies[0]) if use_flask else nullcontext() as flask:
        if use_flask:
            out["wrong_answers"]["flask"] = check_answers(flask.url, bodies, limit["answers"], None)
        for round_ in range(settings.repeats):
            if round_:  # the limit again, between rounds: the machine's load drifts for all alike
                limit["rounds"].append(in_process(name, archive, settings, corpus)["batches"])
            for system in systems:
                for c in settings.concurrency:
                    if system != "flask":
                        point = torchserve_point(server, served[system], bodies, c, settings, token)
                    else:
                        point = flask_point(flask, bodies, c, settings)
                    point["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine
                    out["runs"][system][str(c)].append(point)
                    log(
                        f"  {workload_id(name, corpus)} round {round_ + 1}/{settings.repeats} {system:10s} c={c:<3d} "
                        f"{point['rps']:8.1f} req/s  p50 {point['latency_ms']['p50']:7.2f} ms  "
                        f"p99 {point['latency_ms']['p99']:7.2f} ms  errors {point['error_count']}"
                    )
        out["flask_mb"] = flask.rss_mb() if use_flask else None
    limit["batches"] = median_batches(limit["rounds"])
    return out


def median_batches(rounds: list[list[dict]]) -> list[dict]:
    """Per batch size, the median of each in-process figure over the rounds."""
    out = []
    for i, first in enumerate(rounds[0]):
        values = [r[i] for r in rounds]
        out.append({k: first[k] if k == "batch" else statistics.median(v[k] for v in values) for k in first})
    return out


def run(settings: Settings, log=print) -> dict:
    """The whole run; returns everything measured (the report is made from it)."""
    started = time.time()
    results = {"machine": machine(), "settings": _jsonable(asdict(settings)), "models": {}}
    baselines = baseline_names(settings)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as store:
        if settings.model_overrides or baselines:  # serve (and measure in process) copies with changed configs
            for name in settings.models:
                source = settings.model_store / f"{name}.mar"
                variant_archive(source, Path(store) / source.name, settings.model_overrides.get(name, {}))
            for served, (name, changes) in {s: (m, c) for (m, _), (s, c) in baselines.items()}.items():
                variant_archive(Path(store) / f"{name}.mar", Path(store) / f"{served}.mar", changes)
            settings = replace(settings, model_store=Path(store))
        _run(settings, results, log, baselines)
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["seconds"] = round(time.time() - started, 1)
    return results


def baseline_names(settings: Settings) -> dict[tuple[str, str], tuple[str, dict]]:
    """(model, corpus) -> (served name, model-config changes) for each workload whose corpus names a
    baseline (bench/payloads.py); workloads of one model with the same changes share one name."""
    out, names = {}, {}
    if "torchserve" not in settings.systems:
        return out
    for name, corpus in workloads(settings):
        changes = corpus_baseline(name, corpus).get("settings")
        if changes:
            key = (name, json.dumps(changes, sort_keys=True))
            served = names.setdefault(key, f"{name}_baseline{sum(k[0] == name for k in names)}")
            out[(name, corpus)] = (served, changes)
    return out


def _run(settings: Settings, results: dict, log, baselines: dict | None = None) -> None:
    baselines = baselines or {}
    for name, corpus in workloads(settings):
        log(f"in process: {workload_id(name, corpus)}")
        limit = in_process(name, settings.model_store / f"{name}.mar", settings, corpus)
        limit["rounds"] = [limit["batches"]]
        results["models"][workload_id(name, corpus)] = {
            "model": name,
            "corpus": corpus,
            "targets": corpus_targets(name, corpus),
            "inprocess": limit,
            "archive_bytes": (settings.model_store / f"{name}.mar").stat().st_size,
        }
    with tempfile.TemporaryDirectory(prefix="bench-ts-") as tmp:
        work = Path(tmp)
        log("starting TorchServe")
        with Server.throwaway(settings.model_store, work / "torchserve", **settings.overrides) as server:
            served = {}
            for name in settings.models:
                seconds = round(torchserve.register(server, name), 3)
                served[name] = {"register_s": seconds, "served_config": served_config(server, name)}
            for served_name in sorted({n for n, _ in baselines.values()}):
                torchserve.register(server, served_name, model_name=served_name)
            token = torchserve.token(server)
            samples = torchserve.scrape(server)
            for name, corpus in workloads(settings):
                entry = results["models"][workload_id(name, corpus)]
                entry |= served[name] | {"worker_load_ms": torchserve.worker_load_ms(samples, name)}
                entry["served_config"] = served[name]["served_config"] | {"threads": entry["inprocess"]["threads"]}
                baseline = baselines.get((name, corpus))
                if baseline:
                    described = {"served_as": baseline[0], "served_config": served_config(server, baseline[0])}
                    entry["baseline"] = corpus_baseline(name, corpus) | described
                entry |= bench_workload(
                    name, corpus, server, token, entry["inprocess"], settings, work, log, baseline and baseline[0]
                )
            results["memory"] = torchserve.memory(server, settings.models)


def served_config(server, name: str) -> dict:
    """The batching and worker settings TorchServe reports for a registered model."""
    d = torchserve.describe(server, name)
    return {k: d[k] for k in ("batchSize", "maxBatchDelay", "minWorkers", "maxWorkers")}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
