"""``python -m bench`` (``make bench``): TorchServe vs LitServe vs Flask vs the in-process limit,
every model and corpus; writes bench/results/ (report.md, raw.json, bench.png)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import plot, report
from bench.run import Settings, Variant, run
from export.paths import MODEL_STORE, ROOT, model_names

RESULTS = ROOT / "bench" / "results"
SYSTEMS = {
    "torchserve": Variant("TorchServe"),
    # LitServe as its docs configure it, as many workers x threads as ours; batching off and on:
    # the report compares with the better of the two at each concurrency (bench-tune "litserve").
    "litserve": Variant("LitServe", "litserve", model={"workers": 2, "threads": 1, "batch": 0}),
    "litserve_batch": Variant("LitServe, batching", "litserve", model={"workers": 2, "threads": 1, "batch": 1}),
    "flask": Variant("Flask (tutorial)", "flask"),
}


def parser() -> argparse.ArgumentParser:
    """Every flag with its default."""
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=model_names(), help="(default: every model)")
    p.add_argument("--corpora", nargs="+", help="only these corpora (default: each model's bench/*.json, else samples)")
    p.add_argument("--concurrency", type=int, nargs="+", default=d.concurrency, help=f"(default: {d.concurrency})")
    p.add_argument("--duration", type=int, default=d.duration, help=f"s per measured run (default: {d.duration})")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"s of warm-up per point (default: {d.warmup})")
    p.add_argument("--repeats", type=int, default=d.repeats, help=f"rounds; figures are medians (default: {d.repeats})")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS), help="(default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config.properties line for ours")
    p.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE", help="a model-config key for ours")
    p.add_argument("--inprocess-seconds", type=float, default=d.inprocess_seconds, help="s per in-process batch size")
    p.add_argument("--inprocess-batches", type=int, nargs="+", default=d.inprocess_batches, help="batch sizes timed")
    p.add_argument(
        "--inprocess-bodies", type=int, default=d.inprocess_bodies, help="bodies each batch size is timed on"
    )
    p.add_argument("--checked", type=int, default=d.checked, help="bodies per corpus whose answers are compared")
    p.add_argument("--model-store", type=Path, default=MODEL_STORE, help="archives to serve (default: model_store)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: bench/results)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    return p


def value(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def main(argv: list[str] | None = None) -> int:
    """Run, then write report.md, raw.json and bench.png."""
    args = parser().parse_args(argv)
    missing = [m for m in args.models if not (args.model_store / f"{m}.mar").exists()]
    if missing:
        print(f"no archive for {missing} in {args.model_store}: run `make archive` first", file=sys.stderr)
        return 1
    variants = [SYSTEMS[s] for s in args.systems]
    if "torchserve" in args.systems:  # ours first: the report's ratios are its
        ours = Variant("TorchServe", config=dict(x.split("=", 1) for x in args.set))
        ours.model = {k: value(v) for k, v in (x.split("=", 1) for x in args.model_set)}
        variants = [ours, *(v for v in variants if v.system != "torchserve")]
    settings = Settings(
        models=args.models,
        corpora=args.corpora,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        repeats=args.repeats,
        model_store=args.model_store,
        inprocess_batches=args.inprocess_batches,
        inprocess_seconds=args.inprocess_seconds,
        inprocess_bodies=args.inprocess_bodies,
        checked=args.checked,
    )
    results = run(variants, settings, log=lambda line: print(line, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    plot_name = None if args.no_plot else plot.write(results, args.out / "bench.png").name
    path = report.write(results, args.out, plot_name)
    print(f"wrote {path} and {args.out / 'raw.json'}" + (f" and {args.out / plot_name}" if plot_name else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
