"""Measure the settings behind the defaults: ``python -m bench.tune SWEEP ...`` (``make bench-tune``).

Each sweep is a list of variants (bench/run.py) on some models at some concurrencies, measured by
the one run loop; results go to bench/results/tune-<sweep>.json and .md. docs/PERFORMANCE.md
explains the choices made from them. Models are picked by archive size (the smallest is "light",
the largest "heavy"), never by name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import report
from bench.run import Settings, Variant, run
from export.paths import MODEL_STORE, ROOT, model_names

RESULTS = ROOT / "bench" / "results"
QUIET_LOGS = {"vmargs": f"-Dlog4j.configurationFile=file://{ROOT / 'bench' / 'log4j2.xml'}"}


def workers(batch: int, n: int, threads: int, delay: int = 1) -> dict:
    """model-config.yaml keys for batch size, delay, n workers of ``threads`` torch threads."""
    return {"batchSize": batch, "maxBatchDelay": delay if batch > 1 else 0, "minWorkers": n, "maxWorkers": n} | {
        "threads": threads
    }


def litserve(workers_: int, threads: int, batch: int) -> Variant:
    label = f"LitServe {workers_} x {threads}" + (", batching" if batch else "")
    return Variant(label, "litserve", model={"workers": workers_, "threads": threads, "batch": batch})


SWEEPS = {  # name -> (models: "light", "heavy" or "every"; concurrencies; variants, the first the base)
    "litserve": (
        "every",
        [1, 16, 64],
        [Variant("TorchServe")] + [litserve(w, 2 // w, b) for w in (1, 2) for b in (0, 1)],
    ),
    "light": (  # a lone request: what each hot-path setting costs (docs/PERFORMANCE.md, light load)
        "light",
        [1, 16],
        [
            Variant("archive's model-config.yaml"),
            Variant("batchSize 1", model={"batchSize": 1, "maxBatchDelay": 0}),
            Variant("bench/log4j2.xml + async", config=QUIET_LOGS | {"async_logging": "true"}),
            Variant("disable_system_metrics", config={"disable_system_metrics": "true"}),
            litserve(2, 1, 0),
        ],
    ),
    "batching": (
        "every",
        [1, 16, 64],
        [
            Variant("archive's model-config.yaml"),
            Variant("batch 1", model={"batchSize": 1, "maxBatchDelay": 0}),
            Variant("batch 8, delay 1 ms", model={"batchSize": 8, "maxBatchDelay": 1}),
            Variant("batch 16, delay 1 ms", model={"batchSize": 16, "maxBatchDelay": 1}),
        ],
    ),
    # model-config.yaml's maxBatchDelay 0 reads as unset (100 ms): 1 ms is the least it can set.
    "delay": ("heavy", [1, 4], [Variant(f"delay {d} ms", model={"maxBatchDelay": d}) for d in (1, 5, 20)]),
    "workers": (
        "heavy",
        [1, 16],
        [Variant(f"batch 16; {n} x {t}", model=workers(16, n, t)) for n, t in ((1, 1), (1, 2), (2, 1), (3, 1))],
    ),
    "logging": (
        "light",
        [1, 16],
        [
            Variant("TorchServe's log4j2.xml"),
            Variant("async_logging", config={"async_logging": "true"}),
            Variant("bench/log4j2.xml + async", config=QUIET_LOGS | {"async_logging": "true"}),
            Variant(
                "+ disable_system_metrics",
                config=QUIET_LOGS | {"async_logging": "true", "disable_system_metrics": "true"},
            ),
        ],
    ),
    "netty": (
        "light",
        [16, 64],
        [
            Variant("netty threads: default (= cores)"),
            Variant("1 server / 1 client thread", config={"number_of_netty_threads": "1", "netty_client_threads": "1"}),
            Variant("4 / 4", config={"number_of_netty_threads": "4", "netty_client_threads": "4"}),
        ],
    ),
}


def pick(which: str, store: Path) -> list[str]:
    """The sweep's models among the archived ones, by archive size."""
    archived = sorted(
        (m for m in model_names() if (store / f"{m}.mar").exists()), key=lambda m: (store / f"{m}.mar").stat().st_size
    )
    return {"light": archived[:1], "heavy": archived[-1:]}.get(which, archived)


def render(name: str, results: dict) -> str:
    """tune-<name>.md: per workload, the variant table (medians over rounds)."""
    m, summary = results["machine"], report.summarize(results)
    lines = [
        f"# Tuning sweep `{name}`",
        "",
        f"`python -m bench.tune {name}`; load average before "
        f"{m['loadavg_before']}, after {m['loadavg_after']}; {results['settings']['repeats']} rounds of "
        f"{results['settings']['duration']} s. Variants: {'; '.join(map(report.described, results['variants']))}.",
    ]
    for workload, s in summary.items():
        lines += ["", f"## {workload}", "", *report.variant_table(s)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sweeps and write their results."""
    parser = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", choices=list(SWEEPS))
    parser.add_argument("--duration", type=int, default=3, help="s per measured run (default: 3)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument("--models", nargs="+", help="these models instead of each sweep's")
    parser.add_argument("--corpora", nargs="+", help="only these corpora (default: all each model offers)")
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="archives (default: model_store)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: bench/results)")
    args = parser.parse_args(argv)
    for name in args.sweeps:
        which, concurrency, variants = SWEEPS[name]
        models = args.models or pick(which, args.model_store)
        settings = Settings(
            models=models,
            corpora=args.corpora,
            concurrency=concurrency,
            duration=args.duration,
            repeats=args.repeats,
            model_store=args.model_store,
            inprocess_batches=[1, 8, 16],
            inprocess_seconds=0.5,
            checked=4,
        )
        print(f"== sweep {name}: {models}", flush=True)
        results = run(variants, settings, log=lambda line: print(line, flush=True))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"tune-{name}.json").write_text(json.dumps(results, indent=1) + "\n")
        (args.out / f"tune-{name}.md").write_text(render(name, results))
        print(f"wrote {args.out / f'tune-{name}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
