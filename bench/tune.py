"""Measure the settings behind the defaults: ``python -m bench.tune [SWEEP ...]`` (``make bench-tune``).

Each sweep varies one group of settings from a base (the project's config.properties plus
``--set`` overrides, and each archive's model-config.yaml) and measures TorchServe at a few
concurrencies, rounds interleaving the variants. Results go to bench/results/tuning.json (merged
per sweep) and tuning.md; docs/PERFORMANCE.md explains the choices made from them.
(Over 250 lines: about a third is the table of sweeps, which is data.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import torchserve
from bench.archive import variant_archive
from bench.flask_process import FlaskServer
from bench.payloads import corpora, payloads
from bench.run import Settings, flask_point, in_process, torchserve_point, workload_id
from bench.summary import limits, server_cpu_ms
from client.api import TorchServeError
from client.server import Server
from export.paths import MODEL_STORE, ROOT, model_names

RESULTS = ROOT / "bench" / "results"
SWEEPS = ["length", "threads", "groups", "delay", "logging", "netty", "batching", "workers", "flask", "inprocess"]
LOGGING_KEYS = ("vmargs", "async_logging", "disable_system_metrics")
QUIET_LOGS = {"vmargs": f"-Dlog4j.configurationFile=file://{ROOT / 'bench' / 'log4j2.xml'}"}


@dataclass
class Variant:
    """One setting to measure: config.properties lines and model-config.yaml keys it changes."""

    label: str
    config: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # batchSize, maxBatchDelay, minWorkers, maxWorkers, threads
    flask_nodelay: bool | None = None  # set: measure the Flask server instead of TorchServe
    flask_threads: int = 0  # torch threads of the Flask server (0: torch's default)


@dataclass
class Sweep:
    """One group of settings to measure: the models and concurrencies, and the variants (the first is the base)."""

    models: list[str]
    concurrency: list[int]
    variants: list[Variant]


def sweeps(light: str, heavy: str) -> dict[str, Sweep]:
    """Every sweep, by name. ``light`` / ``heavy``: the archived models fastest / slowest in process
    (no names here)."""
    every = model_names()
    # The variants both text sweeps compare against: the old default, Flask, and plain batching.
    text_baseline = [
        Variant("batch 1; 2 workers x 1 thread (before)", model=_workers(1, 2, 1)),
        Variant("Flask as tutorials run it", flask_nodelay=False),
        Variant("batch 8, delay 1 ms; 2 x 1", model=_workers(8, 2, 1)),
        Variant("batch 16, delay 1 ms; 2 x 1", model=_workers(16, 2, 1)),
    ]
    return {
        "length": Sweep(
            [heavy],
            [1, 16, 64],
            [
                *text_baseline,
                Variant("batch 32, delay 1 ms; 2 x 1", model=_workers(32, 2, 1)),
                Variant("batch 16, delay 5 ms; 2 x 1", model=_workers(16, 2, 1) | {"maxBatchDelay": 5}),
                Variant("batch 16, delay 1 ms; 1 x 2", model=_workers(16, 1, 2)),
                Variant("batch 16, delay 1 ms; 3 x 1", model=_workers(16, 3, 1)),
                Variant(
                    "batch 16, delay 1 ms; 2 x 1; one padded call",
                    model=_workers(16, 2, 1) | {"handler.length_batching": False},
                ),
            ],
        ),
        "threads": Sweep(  # phase 2: the candidates for the defaults, with the planner in the handler
            [heavy],
            [1, 16, 64],
            [
                *text_baseline,
                Variant("batch 32, delay 1 ms; 2 x 1", model=_workers(32, 2, 1)),
                Variant("batch 8, delay 1 ms; 1 x 2", model=_workers(8, 1, 2)),
                Variant("batch 16, delay 1 ms; 1 x 2", model=_workers(16, 1, 2)),
            ],
        ),
        "groups": Sweep(  # phase 3: a batch's length groups one after another, or two at a time
            [heavy],
            [1, 4, 16, 64],
            [
                text_baseline[0],
                *(
                    Variant(f"batch 16, delay 1 ms; 2 x 1; groups {g} at a time", model=_workers(16, 2, 1) | groups(g))
                    for g in (1, 2)
                ),
            ],
        ),
        "delay": Sweep(
            [heavy],
            [1, 4],
            [
                Variant(f"batch 16, delay {d} ms; 2 x 1", model=_workers(16, 2, 1) | {"maxBatchDelay": d})
                for d in (0, 1, 5, 20, 50)
            ],
        ),
        "logging": Sweep(
            [light],
            [1, 16],
            [
                Variant("TorchServe's log4j2.xml"),
                Variant("async_logging=true", {"async_logging": "true"}),
                Variant("bench/log4j2.xml", QUIET_LOGS),
                Variant("bench/log4j2.xml + async_logging", QUIET_LOGS | {"async_logging": "true"}),
                Variant(
                    "+ disable_system_metrics",
                    QUIET_LOGS | {"async_logging": "true", "disable_system_metrics": "true"},
                ),
            ],
        ),
        "netty": Sweep(
            [light],
            [16, 64],
            [
                Variant("netty threads: default (= cores)"),
                Variant("1 server / 1 client thread", {"number_of_netty_threads": "1", "netty_client_threads": "1"}),
                Variant("4 / 4", {"number_of_netty_threads": "4", "netty_client_threads": "4"}),
            ],
        ),
        "batching": Sweep(
            every,
            [1, 16, 64],
            [
                Variant("archive's model-config.yaml"),
                Variant("batch 1", model={"batchSize": 1, "maxBatchDelay": 0}),
                Variant("batch 8, delay 1 ms", model={"batchSize": 8, "maxBatchDelay": 1}),
                Variant("batch 16, delay 1 ms", model={"batchSize": 16, "maxBatchDelay": 1}),
                Variant("batch 8, delay 1 ms, 2 workers", model=_workers(8, 2, 1)),
            ],
        ),
        "workers": Sweep(
            [heavy],
            [1, 16],
            [
                Variant("batch 1; 1 worker x 1 thread", model=_workers(1, 1, 1)),
                Variant("batch 1; 1 worker x 2 threads", model=_workers(1, 1, 2)),
                Variant("batch 1; 2 workers x 1 thread", model=_workers(1, 2, 1)),
            ],
        ),
        "flask": Sweep(
            [light, heavy],
            [1, 16],
            [
                Variant("Flask as tutorials run it", flask_nodelay=False),
                Variant("Flask + TCP_NODELAY", flask_nodelay=True),
                Variant("Flask + torch.set_num_threads(1)", flask_nodelay=False, flask_threads=1),
            ],
        ),
    }


def groups(threads: int) -> dict:
    """The handler setting for how many of a batch's length groups run at once."""
    return {"handler.group_threads": threads}


def _workers(batch: int, workers: int, threads: int) -> dict:
    return {
        "batchSize": batch,
        "maxBatchDelay": 0 if batch == 1 else 1,
        "minWorkers": workers,
        "maxWorkers": workers,
    } | {"threads": threads}


def run_sweep(name: str, sweep: Sweep, base: dict, settings: Settings, log) -> dict:
    """Every variant of one sweep for each model and corpus, ``settings.repeats`` interleaved rounds."""
    models, concurrency, variants = sweep.models, sweep.concurrency, sweep.variants
    loads = [(m, c) for m in models for c in corpora(m) if settings.corpora is None or c in settings.corpora]
    points: dict = {workload_id(*w): {v.label: {str(c): [] for c in concurrency} for v in variants} for w in loads}
    with tempfile.TemporaryDirectory(prefix=f"bench-tune-{name}-") as tmp, ExitStack() as running:
        work, store = Path(tmp), Path(tmp) / "store"
        store.mkdir()
        server, server_config, starts = None, None, 0
        for round_ in range(settings.repeats):
            for variant in variants:
                config = base | variant.config
                if variant.flask_nodelay is None and config != server_config:
                    running.close()  # the previous server, if any
                    starts += 1
                    server = running.enter_context(Server.throwaway(store, work / f"ts-{starts}", **config))
                    server_config = config
                for model in models:
                    variant_archive(settings.model_store / f"{model}.mar", store / f"{model}.mar", variant.model)
                    for corpus, c, point in measure_variant(server, model, concurrency, variant, settings, work):
                        points[workload_id(model, corpus)][variant.label][str(c)].append(point)
                        log(
                            f"  {name} round {round_ + 1} {workload_id(model, corpus)} [{variant.label}] c={c}: "
                            f"{point['rps']:.0f} req/s p50 {point['latency_ms']['p50']:.2f} "
                            f"p99 {point['latency_ms']['p99']:.2f} ms errors {point['error_count']}"
                        )
    return {"base": base, "concurrency": concurrency, "variants": [v.__dict__ for v in variants], "points": points}


def measure_variant(server, model: str, concurrency: list[int], variant: Variant, settings: Settings, work: Path):
    """Yield (corpus, concurrency, point) for one variant of one model, on each of its corpora."""
    chosen = [c for c in corpora(model) if settings.corpora is None or c in settings.corpora]
    if variant.flask_nodelay is not None:
        archive = settings.model_store / f"{model}.mar"
        probe = payloads(model, chosen[0])[0]
        with FlaskServer(archive, work / "flask.log", probe, variant.flask_nodelay, variant.flask_threads) as flask:
            for corpus in chosen:
                for c in concurrency:
                    yield corpus, c, flask_point(flask, payloads(model, corpus), c, settings)
        return
    torchserve.register(server, model)
    token = torchserve.token(server)
    try:
        for corpus in chosen:
            for c in concurrency:
                yield corpus, c, torchserve_point(server, model, payloads(model, corpus), c, settings, token)
    finally:
        torchserve.drain(server, model, payloads(model, chosen[0])[0], token)  # unregistering needs an empty queue
        unregister(server, model)


def unregister(server, model: str, attempts: int = 5) -> None:
    """Unregister ``model``; TorchServe 0.12 sometimes answers 500 ConcurrentModificationException
    while its workers are still stopping (seen with 3 workers), and a later try succeeds."""
    for attempt in range(attempts):
        try:
            server.client().unregister(model)
            return
        except TorchServeError as err:
            if "ConcurrentModification" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)


def inprocess_threads(model: str, settings: Settings, threads: list[int]) -> dict:
    """The limit of the heavy model at each thread count (it depends on it)."""
    out = {}
    for n in threads:
        command = [
            sys.executable,
            "-m",
            "bench.inprocess",
            model,
            "--archive",
            str(settings.model_store / f"{model}.mar"),
        ]
        command += ["--batch-sizes", *map(str, settings.inprocess_batches), "--threads", str(n)]
        command += ["--seconds", str(settings.inprocess_seconds)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout)
        out[str(n)] = [{k: b[k] for k in ("batch", "items_per_s", "ms_per_call_p50")} for b in result["batches"]]
    return out


def render(tuning: dict) -> str:
    """tuning.md: per sweep, per model, the median req/s, p50 and p99 of each variant."""
    lines = [
        "# Tuning measurements",
        "",
        "Written by `make bench-tune` (`python -m bench.tune`); raw numbers in `tuning.json`. Each cell: median "
        "over rounds of requests/s, p50 / p99 ms; log bytes and the server's CPU time (frontend + workers, or the "
        "Flask process) per request at the highest concurrency. The choices made from these: docs/PERFORMANCE.md.",
    ]
    for name, sweep in tuning.items():
        if name == "inprocess_threads":
            lines += ["", "## In-process limit by torch threads", ""]
            for model, by_threads in sweep.items():
                for n, rows in by_threads.items():
                    cells = ", ".join(f"batch {r['batch']}: {r['items_per_s']:.0f}/s" for r in rows)
                    lines.append(f"- {model}, {n} thread(s): {cells}")
            continue
        lines += ["", f"## {name}", "", f"Base: {sweep['meta']}", ""]
        concurrency = sweep["concurrency"]
        for model, by_variant in sweep["points"].items():
            lines += [
                f"**{model}**",
                "",
                "| variant | " + " | ".join(f"c={c}" for c in concurrency) + " | log B/req | CPU ms/req |",
            ]
            lines.append("|---|" + "---:|" * (len(concurrency) + 2))
            for label, by_c in by_variant.items():
                cells, logged, cpu = [], [], []
                for c in concurrency:
                    runs = by_c[str(c)]
                    if not runs:
                        cells.append("–")
                        continue
                    med = {k: statistics.median(r["latency_ms"][k] for r in runs) for k in ("p50", "p99")}
                    rps = statistics.median(r["rps"] for r in runs)
                    errors = sum(r["error_count"] for r in runs)
                    cells.append(
                        f"{rps:,.0f} /s, {med['p50']:.2f} / {med['p99']:.2f}" + (f" ({errors} err)" if errors else "")
                    )
                    logged += [r["torchserve"]["log_bytes_per_request"] for r in runs if "torchserve" in r]
                    # CPU per request at the highest concurrency: frontend + worker(s), or Flask.
                    cpu = [c for c in map(server_cpu_ms, runs) if c is not None]
                log_cell = f"{statistics.median(logged):,.0f}" if logged else ""
                cpu_cell = f"{statistics.median(cpu):.3f}" if cpu else ""
                lines.append(f"| {label} | " + " | ".join(cells) + f" | {log_cell} | {cpu_cell} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sweeps (default: all) and rewrite tuning.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="*", help=f"{', '.join(SWEEPS)} (default: all)")
    parser.add_argument("--duration", type=int, default=3, help="s per measured run (default: 3)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument("--models", nargs="+", help="restrict every sweep to these models (default: each sweep's)")
    parser.add_argument("--corpora", nargs="+", help="only these corpora of each model (default: all it offers)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="base config.properties line")
    parser.add_argument("--quiet-logs", action="store_true", help="base: bench/log4j2.xml + async logging")
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="archives (default: model_store)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: bench/results)")
    args = parser.parse_args(argv)
    settings = Settings(
        duration=args.duration, repeats=args.repeats, model_store=args.model_store, warmup=1, corpora=args.corpora
    )
    base = dict(item.split("=", 1) for item in args.set) | (
        QUIET_LOGS | {"async_logging": "true"} if args.quiet_logs else {}
    )
    ranked = ranked_models(settings.model_store)
    heavy = ranked[-1]
    table = sweeps(ranked[0], heavy)
    chosen = args.sweeps or [*table, "inprocess"]
    path = args.out / "tuning.json"
    tuning = json.loads(path.read_text()) if path.exists() else {}
    for name in chosen:
        print(f"== sweep {name}", flush=True)
        if name == "inprocess":
            tuning["inprocess_threads"] = {heavy: inprocess_threads(heavy, settings, [1, 2])}
        else:
            sweep = table[name]
            if args.models:
                sweep = Sweep(args.models, sweep.concurrency, sweep.variants)
            # The logging sweep measures the logging settings themselves: none of them in its base.
            sweep_base = {k: v for k, v in base.items() if name != "logging" or k not in LOGGING_KEYS}
            result = run_sweep(name, sweep, sweep_base, settings, lambda s: print(s, flush=True))
            result["meta"] = (
                f"config.properties + {sweep_base or 'nothing'}; {settings.repeats} rounds of {settings.duration} s"
            )
            if args.models and name in tuning:  # a rerun for some models keeps the others' numbers
                result["points"] = tuning[name]["points"] | result["points"]
            tuning[name] = result
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(tuning, indent=1) + "\n")
        (args.out / "tuning.md").write_text(render(tuning))
    print(f"wrote {path} and {args.out / 'tuning.md'}")
    return 0


def ranked_models(store: Path) -> list[str]:
    """The archived models, fastest in process at batch 1 first (a short measurement)."""
    archived = [m for m in model_names() if (store / f"{m}.mar").exists()]
    quick = Settings(model_store=store, inprocess_batches=[1], inprocess_seconds=0.3, checked=0)
    speed = {m: limits(in_process(m, store / f"{m}.mar", quick))["batch1"] for m in archived}
    return sorted(archived, key=lambda m: -speed[m])


if __name__ == "__main__":
    sys.exit(main())
