"""Measure every model in every format on this machine, and write the table that helps choose one.

Usage: ``python -m export.formats_table [--write README.md docs/FORMATS.md]`` (``make formats-table``).

Each (model, format) is exported afresh into a temporary folder by its own process, AOTInductor with
an empty compile cache, so the export time is what a first build on this machine costs. Then a
second process loads the artifact the way a worker does (sha256 check, the model's
``handler.threads``) and times the model call on batches made of the committed samples: one request,
and ``batchSize`` requests (the model-config's) collated as the handler collates them. The table
goes between ``<!-- formats-table:start -->`` and ``<!-- formats-table:end -->`` in each file given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from export.paths import ROOT, model_names, served_name

START, END = "<!-- formats-table:start -->", "<!-- formats-table:end -->"


def measure(folder: Path, repeats: int) -> dict:
    """Load time and median model-call latency at batch 1 and at the configured batch size."""
    import yaml

    from export.build import sample_handler
    from export.spec import load_spec
    from handlers.artifact import load_artifact, read_manifest
    from handlers.base import set_threads

    manifest = read_manifest(folder)
    spec = load_spec(manifest["name"])
    config = yaml.safe_load((spec.folder / "model-config.yaml").read_text())
    threads, batch_size = int(config["handler"]["threads"]), int(config["batchSize"])
    handler = sample_handler(spec)
    set_threads(threads)
    started = time.perf_counter()
    handler.model = load_artifact(folder, manifest, threads)
    load_ms = (time.perf_counter() - started) * 1000
    requests = [handler.preprocess(s.value, s.content_type) for s in spec.read_samples()]
    result = {"load_ms": load_ms, "threads": threads, "batch_size": batch_size}
    for label, count in (("batch1", 1), ("batchN", batch_size)):
        batch = handler.collate([requests[i % len(requests)].inputs for i in range(count)])
        for _ in range(3):  # warm-up: first calls allocate and (TorchScript) optimise
            handler.inference(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            handler.inference(batch)
            times.append(time.perf_counter() - started)
        result[f"{label}_ms"] = statistics.median(times) * 1000
        result[f"{label}_shape"] = [list(t.shape) for t in batch]
    return result


def run(name: str, fmt: str, work: Path, repeats: int) -> dict:
    """Export ``name`` in ``fmt`` under ``work`` and measure it, each step in its own process."""
    served = served_name(name, fmt)
    env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-cache" / served)}  # a cold compile
    subprocess.run(
        [sys.executable, "-m", "export", name, "--format", fmt, "--out", str(work)], check=True, cwd=ROOT, env=env
    )
    folder = work / served
    measured = subprocess.run(
        [sys.executable, "-m", "export.formats_table", "--measure", str(folder), "--repeats", str(repeats)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    return {
        "model": name,
        "format": fmt,
        "mb": (folder / manifest["artifact"]).stat().st_size / 1e6,
        "export_s": manifest["export_seconds"],
        "max_abs_error": manifest["verification"]["max_abs_error"],
    } | json.loads(measured.stdout.strip().splitlines()[-1])


def render(rows: list[dict], load: float) -> str:
    """The markdown table, with how and where it was measured (``load``: 1-min load average before)."""
    lines = [
        "| model | format | artifact MB | export s | load ms | batch 1 ms | batch N ms (N requests) "
        "| max error vs eager |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['format']} | {r['mb']:.2f} | {r['export_s']:.1f} | {r['load_ms']:.0f} | "
            f"{r['batch1_ms']:.3f} | {r['batchN_ms']:.3f} ({r['batch_size']}) | {r['max_abs_error']:.1e} |"
        )
    shapes = {r["model"]: (r["batch1_shape"], r["batchN_shape"]) for r in rows}
    import torch  # versions only

    threads = sorted({r["threads"] for r in rows})
    lines += [
        "",
        f"Measured by `make formats-table` on {os.cpu_count()} cores ({platform.machine()}, "
        f"{torch.backends.cpu.get_cpu_capability()}; load average {load:.1f} when it started), "
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"{'/'.join(map(str, threads))} thread(s) per worker as in the model-config.yaml files. "
        "Export: the save step alone (trace or script, ONNX export, torch.export + AOTInductor compile "
        "with an empty cache), not the parity checks. "
        "Load: sha256 check + runtime load, as a worker starts. Latency: median model call on the committed "
        "samples collated as the handler does, without TorchServe. Inputs (shape per model input): "
        + "; ".join(f"`{m}` batch 1 {a}, batch N {b}" for m, (a, b) in shapes.items())
        + ".",
    ]
    return "\n".join(lines)


def write_between_markers(path: Path, table: str) -> None:
    """Replace what lies between the table markers in ``path``."""
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path}: add the lines {START} and {END} where the table goes")
    head, rest = text.split(START, 1)
    path.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")


def main(argv: list[str] | None = None) -> int:
    """Command line: measure everything and print (and write) the table."""
    parser = argparse.ArgumentParser(prog="python -m export.formats_table", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", type=Path, nargs="*", default=[], help="files to write the table into (default: none)"
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed model calls per batch (default: 30)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeats)))
        return 0
    from export.spec import load_spec

    load = os.getloadavg()[0]  # other work on the machine shows in the numbers: say how much there was
    with tempfile.TemporaryDirectory(prefix="formats-table-") as tmp:
        rows = [run(m, f, Path(tmp), args.repeats) for m in model_names() for f in load_spec(m).formats]
    table = render(rows, load)
    print(table)
    for path in args.write:
        write_between_markers(path, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
