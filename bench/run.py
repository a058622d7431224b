"""One run loop: ``run(variants, settings)`` measures every variant on every workload.

A variant is TorchServe under some config.properties lines and model-config.yaml keys, or a peer
serving the same archive's artifact (Flask as tutorials run it; LitServe). ``make bench`` and every
tuning sweep are lists of variants. Order: each workload's in-process limit (a subprocess each);
then per model its TorchServe variants registered and its peers started, every variant's answers
checked against the in-process ones before any load, and ``repeats`` rounds of variants x
concurrencies, each point a discarded warm-up and a measured run. Rounds interleave the variants,
so that slow drift on a shared machine hits all alike. A corpus's ``baseline`` adds a variant.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import servers
from bench.loadgen import run_load, wrk_binary
from bench.payloads import corpora, corpus_baseline, corpus_targets, payloads
from client.answers import same
from client.api import TorchServeError
from client.server import Server
from export.paths import MODEL_STORE, ROOT, model_names


@dataclass
class Variant:
    """One system under one setting. ``config``: config.properties lines (TorchServe); ``model``:
    model-config.yaml keys for TorchServe (``threads``/``handler.KEY`` go under ``handler``), or a
    peer's options (LitServe: workers, threads, batch)."""

    label: str
    system: str = "torchserve"  # torchserve, flask or litserve
    config: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.system not in ("torchserve", "flask", "litserve"):
            raise ValueError(f"variant {self.label!r}: unknown system {self.system!r}")


@dataclass
class Settings:
    """What to run; the defaults are `make bench`'s."""

    models: list[str] = field(default_factory=model_names)
    corpora: list[str] | None = None  # only these corpora (default: every corpus each model folder offers)
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    duration: int = 5  # s per measured run
    warmup: int = 1  # s of warm-up before each measured run (0: none)
    repeats: int = 3
    model_store: Path = MODEL_STORE
    inprocess_batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    inprocess_seconds: float = 2.0
    inprocess_bodies: int = 96  # bodies of each corpus every in-process batch size is timed on
    checked: int = 24  # bodies of each corpus whose answers are compared before the load


def workloads(settings: Settings) -> list[tuple[str, str]]:
    """(model, corpus) pairs: each model's corpora (bench/*.json in its folder, else its samples)."""
    return [(m, c) for m in settings.models for c in corpora(m) if settings.corpora is None or c in settings.corpora]


def machine() -> dict:
    """Where the run happens: load, CPU, versions."""
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    wrk = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("torch", "torchserve", "flask", "litserve")},
        "wrk": wrk.split(" Copyright")[0].strip(),
    }


def in_process(name: str, archive: Path, settings: Settings, corpus: str) -> dict:
    """The limit, measured in a subprocess (bench/inprocess.py)."""
    command = [sys.executable, "-m", "bench.inprocess", name, "--archive", str(archive), "--corpus", corpus]
    command += ["--answers", str(settings.checked), "--bodies", str(settings.inprocess_bodies)]
    command += ["--batch-sizes", *map(str, settings.inprocess_batches), "--seconds", str(settings.inprocess_seconds)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"in-process run of {name} failed:\n{done.stderr}")
    return json.loads(done.stdout)


@dataclass
class Target:
    """Where one variant of one model answers, and how to measure a point against it."""

    variant: Variant
    url: str
    token: str | None = None
    server: Server | None = None  # TorchServe: the server, the served name, what it reports
    served: str | None = None
    served_config: dict | None = None
    register_s: float | None = None
    peer: servers.Peer | None = None

    def point(self, bodies: list, concurrency: int, settings: Settings) -> dict:
        """A warm-up run (discarded), then the measured run, with the server's CPU per request
        (and TorchServe's own split of the time)."""
        if settings.warmup:
            run_load(self.url, bodies, concurrency, settings.warmup, self.token)
        if self.peer:
            self.peer.settle()
            cpu = self.peer.cpu_seconds()
            result = run_load(self.url, bodies, concurrency, settings.duration)
            cpu_ms = (self.peer.cpu_seconds() - cpu) * 1000 / max(1, result.requests)
            return result.to_dict() | {"cpu_ms_per_request": round(cpu_ms, 4), "drain_s": round(self.peer.settle(), 1)}
        server, name = self.server, self.served
        servers.drain(self.url, bodies[0], self.token)
        before, offset, logged, cpu = servers.counters(server, name), *self._marks()
        result = run_load(self.url, bodies, concurrency, settings.duration, self.token)
        after, cpu_after, logged = (
            servers.counters(server, name),
            servers.cpu_split(server),
            servers.log_bytes(server) - logged,
        )
        drained = servers.drain(self.url, bodies[0], self.token)  # requests still queued when wrk stopped
        n = max(1.0, after["requests"] - before["requests"])
        cpu = {k: (cpu_after[k] - cpu[k]) * 1000 / n for k in cpu}
        split = {
            "frontend_ms": (after["latency_us"] - before["latency_us"]) / n / 1000,
            "queue_ms": (after["queue_us"] - before["queue_us"]) / n / 1000,
            "log_bytes_per_request": logged / n,
            "frontend_cpu_ms": cpu["frontend"],
            "worker_cpu_ms": cpu["workers"],
        }
        worker = servers.worker_metrics(server, offset, name)
        if worker["padded"]:  # models with length-aware batching report each batch's padding
            split["padded_percent"] = statistics.mean(worker["padded"])
        if worker["batches"]:
            rows = sum(k for _, k in worker["batches"])
            split["mean_batch"] = rows / len(worker["batches"])
            split["prediction_ms_per_batch"] = sum(t for t, _ in worker["batches"]) / len(worker["batches"])
        split = {k: round(v, 3) for k, v in split.items()}
        return (
            result.to_dict()
            | {"cpu_ms_per_request": round(cpu["frontend"] + cpu["workers"], 4)}
            | {
                "torchserve": split,
                "drain_s": round(drained, 1),
            }
        )

    def rss_mb(self) -> float:
        """Resident memory of the peer's processes, or of this model's TorchServe workers."""
        if self.peer:
            return self.peer.rss_mb()
        return round(sum(servers.tree_rss_mb(p) for p in self.served_config["pids"]), 1)

    def _marks(self):
        return servers.log_offset(self.server), servers.log_bytes(self.server), servers.cpu_split(self.server)


def check_answers(target: Target, bodies: list, expected: dict) -> list[str]:
    """Send each body whose in-process answer is known once; list those whose status or answer differs."""
    wrong = []
    for p in (p for p in bodies if p.path.name in expected):
        response, want = servers.post(target.url, p, target.token, timeout=60), expected[p.path.name]
        # 1e-4: the peers run on other thread counts than the in-process handler.
        if response.status_code != want["status"] or not same(response.json(), want["answer"], 1e-4):
            wrong.append(f"{p.path.name}: {response.status_code} {response.text[:200]}")
    return wrong


def run(variants: list[Variant], settings: Settings, log=print) -> dict:
    """Every variant on every workload; returns everything measured (the report is made from it)."""
    started = time.time()
    results = {"machine": machine(), "settings": json.loads(json.dumps(asdict(settings), default=str))}
    results |= {"variants": [asdict(v) for v in variants], "workloads": {}}
    for name, corpus in workloads(settings):
        log(f"in process: {name}/{corpus}")
        limit = in_process(name, settings.model_store / f"{name}.mar", settings, corpus)
        limit["rounds"] = [limit["batches"]]
        results["workloads"][f"{name}/{corpus}"] = {
            "model": name,
            "corpus": corpus,
            "targets": corpus_targets(name, corpus),
            "inprocess": limit,
            "archive_bytes": (settings.model_store / f"{name}.mar").stat().st_size,
        }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as running:
        work, store, started_servers = Path(tmp), Path(tmp) / "store", {}
        store.mkdir()

        def torchserve(config: dict) -> Server:  # one server per distinct config.properties overlay
            key = json.dumps(config, sort_keys=True)
            if key not in started_servers:
                log(f"starting TorchServe {config or ''}")
                path = work / f"ts-{len(started_servers)}"
                started_servers[key] = running.enter_context(Server.throwaway(store, path, **config))
            return started_servers[key]

        for model in settings.models:
            loads = [w for w in workloads(settings) if w[0] == model]
            extra = {c: baseline_variant(model, c) for _, c in loads}
            with ExitStack() as per_model:
                targets = {}
                skipped = {}
                for i, v in enumerate([*variants, *filter(None, extra.values())]):
                    if v.label not in targets:
                        try:
                            targets[v.label] = start(v, i, model, settings, work, store, torchserve, per_model, log)
                        except (RuntimeError, TorchServeError) as err:  # a row skipped, with the reason
                            skipped[v.label] = str(err)
                            log(f"  skipped {v.label} for {model}: {err}")
                for _, corpus in loads:
                    chosen = [*variants, *([extra[corpus]] if extra[corpus] else [])]
                    entry = results["workloads"][f"{model}/{corpus}"] | {"skipped": skipped}
                    results["workloads"][f"{model}/{corpus}"] = entry
                    measure(entry, [targets[v.label] for v in chosen if v.label in targets], settings, log)
                results["memory"] = results.get("memory", {}) | {
                    model: {label: t.rss_mb() for label, t in targets.items()}
                }
        results["frontend_mb"] = {k: servers.tree_rss_mb(s.pid) for k, s in started_servers.items()}
    results["machine"] |= {"loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    results["machine"]["seconds"] = round(time.time() - started, 1)
    return results


def baseline_variant(model: str, corpus: str) -> Variant | None:
    """The corpus file's ``baseline`` as a TorchServe variant (None when it names none)."""
    base = corpus_baseline(model, corpus)
    return Variant(f"baseline: {base.get('label', 'other settings')}", model=base["settings"]) if base else None


def start(variant, index, model, settings, work, store, torchserve, per_model, log) -> Target:
    """Serve ``model`` as ``variant`` for the model's workloads: register it, or start the peer."""
    archive = settings.model_store / f"{model}.mar"
    if variant.system != "torchserve":
        probe = payloads(model, corpora(model)[0])[0]
        log(f"starting {variant.label} for {model}")
        options = variant.model if variant.system == "litserve" else {}
        peer = servers.Peer(variant.system, archive, options, work / f"{variant.system}-{model}-{index}.log", probe)
        per_model.enter_context(peer)
        return Target(variant, peer.url, peer=peer)
    server = torchserve(variant.config)
    served = model if not variant.model else f"{model}_v{index}"
    servers.variant_archive(archive, store / f"{served}.mar", variant.model)
    register_s = servers.register(server, served)
    token = server.client().token("inference")
    url = f"{server.address('inference')}/predictions/{served}"
    per_model.callback(servers.unregister, server, served)
    per_model.callback(
        servers.drain, url, payloads(model, corpora(model)[0])[0], token
    )  # unregister needs an idle queue
    return Target(variant, url, token, server, served, servers.served_config(server, served), round(register_s, 3))


def measure(entry: dict, targets: list[Target], settings: Settings, log) -> None:
    """Answers checked, then the rounds, for one workload; fills ``entry``."""
    name, corpus, bodies = entry["model"], entry["corpus"], payloads(entry["model"], entry["corpus"])
    entry["systems"] = {t.variant.label: t.variant.system for t in targets}
    entry["served"] = {
        t.variant.label: {"config": t.served_config, "register_s": t.register_s} for t in targets if t.server
    }
    entry["wrong_answers"] = {}
    for t in targets:
        t.peer and t.peer.pause(False)
        entry["wrong_answers"][t.variant.label] = check_answers(t, bodies, entry["inprocess"]["answers"])
        t.peer and t.peer.pause()
    entry["runs"] = {t.variant.label: {str(c): [] for c in settings.concurrency} for t in targets}
    for round_ in range(settings.repeats):
        if round_:  # the limit again between rounds: the machine's load drifts for all alike
            archive = settings.model_store / f"{name}.mar"
            entry["inprocess"]["rounds"].append(in_process(name, archive, settings, corpus)["batches"])
        for t in targets:
            if t.peer:
                t.peer.pause(False)
            for c in settings.concurrency:
                point = t.point(bodies, c, settings) | {"loadavg_1m": round(os.getloadavg()[0], 2)}
                entry["runs"][t.variant.label][str(c)].append(point)
                log(
                    f"  {name}/{corpus} round {round_ + 1}/{settings.repeats} {t.variant.label:28s} c={c:<3d} "
                    f"{point['rps']:8.1f} req/s  p50 {point['latency_ms']['p50']:7.2f} ms  "
                    f"p99 {point['latency_ms']['p99']:7.2f} ms  errors {point['error_count']}  "
                    f"load {point['loadavg_1m']}"
                )
            if t.peer:
                t.peer.pause()
    rounds = entry["inprocess"]["rounds"]
    entry["inprocess"]["batches"] = [
        {k: b[k] if k == "batch" else statistics.median(r[i][k] for r in rounds) for k in b}
        for i, b in enumerate(rounds[0])
    ]
