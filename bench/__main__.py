"""Command line: ``python -m bench`` runs the benchmark and writes bench/results/ (see bench/run.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import plot, report
from bench.run import Settings, run
from export.paths import MODEL_STORE, ROOT, model_names

RESULTS = ROOT / "bench" / "results"


def parser() -> argparse.ArgumentParser:
    """Every flag with its default."""
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=model_names(), help="models (default: every model)")
    p.add_argument(
        "--corpora", nargs="+", help="only these corpora (default: each model folder's bench/*.json, else its samples)"
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=d.concurrency, help=f"(default: {d.concurrency})")
    p.add_argument("--duration", type=int, default=d.duration, help=f"s per measured run (default: {d.duration})")
    p.add_argument(
        "--warmup", type=int, default=d.warmup, help=f"s of warm-up per point, 0 for none (default: {d.warmup})"
    )
    p.add_argument("--repeats", type=int, default=d.repeats, help=f"rounds; figures are medians (default: {d.repeats})")
    p.add_argument("--systems", nargs="+", default=d.systems, choices=d.systems, help=f"(default: {d.systems})")
    p.add_argument("--inprocess-seconds", type=float, default=d.inprocess_seconds, help="s per in-process batch size")
    p.add_argument(
        "--inprocess-batches",
        type=int,
        nargs="+",
        default=d.inprocess_batches,
        help=f"(default: {d.inprocess_batches})",
    )
    p.add_argument(
        "--inprocess-bodies",
        type=int,
        default=d.inprocess_bodies,
        help=f"bodies of a corpus each in-process batch size is timed on (default: {d.inprocess_bodies})",
    )
    p.add_argument(
        "--checked",
        type=int,
        default=d.checked,
        help=f"bodies per corpus whose answers are compared (default: {d.checked})",
    )
    p.add_argument("--model-store", type=Path, default=MODEL_STORE, help="archives to serve (default: model_store)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config.properties line (repeatable)"
    )
    p.add_argument(
        "--model-set",
        action="append",
        default=[],
        metavar="MODEL:KEY=VALUE",
        help="override a model-config.yaml key of one archive (threads or handler.KEY: under handler; repeatable)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: bench/results)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed; default: plot)")
    return p


def model_overrides(items: list[str]) -> dict:
    """``["<model>:maxBatchDelay=1", ...]`` -> ``{"<model>": {"maxBatchDelay": 1}}``."""
    out: dict = {}
    for item in items:
        model, setting = item.split(":", 1)
        key, value = setting.split("=", 1)
        out.setdefault(model, {})[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def main(argv: list[str] | None = None) -> int:
    """Run, then write report.md, raw.json and bench.png."""
    args = parser().parse_args(argv)
    missing = [m for m in args.models if not (args.model_store / f"{m}.mar").exists()]
    if missing:
        print(f"no archive for {missing} in {args.model_store}: run `make archive` first", file=sys.stderr)
        return 1
    settings = Settings(
        models=args.models,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        repeats=args.repeats,
        systems=args.systems,
        model_store=args.model_store,
        inprocess_batches=args.inprocess_batches,
        inprocess_seconds=args.inprocess_seconds,
        overrides=dict(item.split("=", 1) for item in args.set),
        model_overrides=model_overrides(args.model_set),
        corpora=args.corpora,
        checked=args.checked,
        inprocess_bodies=args.inprocess_bodies,
    )
    results = run(settings, log=lambda line: print(line, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    plot_name = None if args.no_plot else plot.write(results, args.out / "bench.png").name
    path = report.write(results, args.out, plot_name)
    print(f"wrote {path} and {args.out / 'raw.json'}" + (f" and {args.out / plot_name}" if plot_name else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
