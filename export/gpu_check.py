"""`make gpu-check`: every model's handler in process on CUDA against the CPU, and items/s per batch size.

For every model and format the machine can run: export it afresh (``devices: [cpu, cuda]``, the
spec's precision, or fp16 where it declares none), then run the model's own handler in process, as a
worker given ``gpu_id`` 0 runs it, on CUDA in fp32 and in that precision, and compare with the same
handler on the CPU in fp32 on every sample and verify size (the cases export checks). Then items/s
per batch size on CUDA and on the CPU. Writes the table into docs/GPU.md. Needs no Java (no
TorchServe frontend) and no ONNX Runtime (ONNX rows are skipped with the reason). Without CUDA it
prints one line and exits 0.

Usage: ``python -m export.gpu_check [--models ...] [--budget 420] [--no-write]``
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

DOC = Path(__file__).resolve().parent.parent / "docs" / "GPU.md"
BEGIN, END = "<!-- gpu-check:begin -->", "<!-- gpu-check:end -->"
SWEEP = (1, 8, 32, 64)  # rows per call, capped at the model's batch bound
BUILD_ONLY = {"atol": 1e30, "rtol": 1e30}  # export builds; this script compares, with the spec's tolerance


def stage(spec, fmt: str, root: Path) -> Path:
    """Export ``spec`` in ``fmt`` and lay it out as a worker's unpacked archive (no archiver: no Java)."""
    from export.archive import device_artifacts, stage_extra_files
    from export.build import export_model

    out = root / f"{spec.name}_{fmt}"
    manifest = export_model(spec, out, fmt)
    folder = stage_extra_files(spec, out, str(spec.version))
    for name in [manifest["artifact"], *device_artifacts(manifest)]:
        shutil.copy2(out / name, folder / name)
    return folder


def worker(spec, folder: Path, gpu_id: int | None, precision: str | None = None):
    """The model's handler initialized as a TorchServe worker would be (``gpu_id`` None: the CPU);
    ``precision`` rewrites the manifest's CUDA precision (fp32 beside the verified one)."""
    if precision is not None:
        path = folder / "manifest.json"
        manifest = json.loads(path.read_text())
        if "cuda" not in manifest["runtime"]["devices"]:
            raise RuntimeError(f"no CUDA artifact: {manifest['runtime'].get('missing_devices', {}).get('cuda')}")
        manifest["runtime"]["devices"]["cuda"]["precision"] = precision
        path.write_text(json.dumps(manifest))
    settings = (yaml.safe_load((spec.folder / "model-config.yaml").read_text()) or {}).get("handler", {})
    context = SimpleNamespace(
        system_properties={"model_dir": str(folder), "gpu_id": gpu_id}, model_yaml_config={"handler": settings}
    )
    handler = spec.handler_class()()
    handler.initialize(context)
    return handler


def compare(cpu, gpu, cases, tolerance: dict) -> tuple[bool, float]:
    """Whether ``gpu`` answers every case as ``cpu`` does within ``tolerance``; the largest difference."""
    ok, worst = True, 0.0
    for case in cases:
        want, got = cpu.grouped(case.inputs), gpu.grouped(case.inputs)
        for w, g in zip(want, got, strict=True):
            worst = max(worst, (w.double() - g.double()).abs().max().item())
            ok = ok and torch.allclose(
                g.float(), w.float(), atol=float(tolerance["atol"]), rtol=float(tolerance["rtol"])
            )
    return ok, worst


def items_per_second(handler, batch: tuple, seconds: float = 0.5) -> float:
    """Rows per second of ``handler.grouped`` on ``batch`` (to the device and back, as served)."""
    for _ in range(3):
        handler.grouped(batch)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        handler.grouped(batch)
        calls += 1
    return calls * batch[0].shape[0] / (time.perf_counter() - start)


def resized(batch: tuple, rows: int) -> tuple:
    return tuple(t[torch.arange(rows) % t.shape[0]] for t in batch)


def check_model(name: str, root: Path, deadline: float, formats: list[str] | None = None) -> tuple[list, list]:
    """Parity rows and sweep rows of one model."""
    from export.build import outside_bounds, sample_cases, sample_handler
    from export.spec import load_spec
    from export.verify import parity_cases

    spec = copy.deepcopy(load_spec(name))
    declared = spec.precision
    spec.devices, spec.precision_tolerance = ["cpu", "cuda"], BUILD_ONLY
    spec.precision = declared if declared != "fp32" else "fp16"
    tolerance = load_spec(name).precision_tolerance
    parity, sweep = [], []
    handler = sample_handler(spec)
    samples = sample_cases(spec, handler)
    all_cases = parity_cases(samples, spec.inputs, spec.verify_sizes, handler.collate)
    for fmt in [f for f in spec.formats if not formats or f in formats]:
        label = f"{spec.precision}" + ("" if declared != "fp32" else " (not declared)")
        if time.monotonic() > deadline:
            parity.append((name, fmt, "-", "skipped", "", "the time budget is spent"))
            continue
        try:
            if fmt == "onnx":
                import onnxruntime  # noqa: F401 - serving ONNX needs it; say so when it is missing
            folder = stage(spec, fmt, root)
        except Exception as err:  # noqa: BLE001 - a row says why, the other formats still run
            parity.append((name, fmt, "-", "skipped", "", f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"))
            continue
        cases = all_cases if fmt == "torchscript" else [c for c in all_cases if not outside_bounds(c, spec)]
        cpu = worker(spec, folder, None)
        runs = [("fp32", spec.tolerance, "fp32"), (label, tolerance, spec.precision)]
        for shown, tol, rewrite in runs:
            if why := not_applicable(fmt, rewrite, spec.precision):
                parity.append((name, fmt, shown, "n/a", "", why))
                continue
            try:
                gpu = worker(spec, folder, 0, rewrite)
                ok, worst = compare(cpu, gpu, cases, tol)
                on = f"{gpu.placement.device}, {gpu.placement.precision}"
                if fmt == "onnx":
                    on += f", {gpu.model.session.get_providers()[0]}"
                parity.append(
                    (name, fmt, shown, "ok" if ok else "DIFFERS", f"{worst:.2e}", f"{len(cases)} cases; {on}")
                )
                if fmt == spec.formats[0]:
                    sweep += [(name, fmt, shown, *speeds(cpu, gpu, samples, handler))]
            except Exception as err:  # noqa: BLE001
                parity.append(
                    (name, fmt, shown, "FAILED", "", f"{type(err).__name__}: {str(err).splitlines()[0][:160]}")
                )
    return parity, sweep


def not_applicable(fmt: str, precision: str, compiled: str) -> str | None:
    """Why a format has no run in ``precision`` on CUDA (None: it has)."""
    if fmt == "aoti" and precision != compiled:
        return f"the CUDA package is compiled in {compiled}"
    if fmt == "onnx" and precision != "fp32":
        return "ONNX graphs are served in fp32"
    return None


def speeds(cpu, gpu, samples, handler) -> tuple[str, str]:
    """items/s per batch size on CUDA and on the CPU, as ``size: n`` lists."""
    joined = handler.collate([c.inputs for c in samples])
    top = gpu.max_instances(64)
    sizes = sorted({min(s, top) for s in SWEEP})
    on_gpu = ", ".join(f"{s}: {items_per_second(gpu, resized(joined, s)):.0f}" for s in sizes)
    on_cpu = ", ".join(f"{s}: {items_per_second(cpu, resized(joined, s), 0.3):.0f}" for s in sizes)
    return on_gpu, on_cpu


def table(parity: list, sweep: list, seconds: float) -> str:
    """The docs/GPU.md section: what ran where, parity rows, items/s rows."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (a dry run on the CPU)"
    lines = [
        f"Run by `make gpu-check` on {time.strftime('%Y-%m-%d')}: {device}, torch {torch.__version__}, "
        f"Python {sys.version.split()[0]}, {seconds:.0f} s.",
        "",
        "| model | format | precision on CUDA | parity with the CPU (fp32) | max abs difference | notes |",
        "|---|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in parity),
        "",
        "Items/s (rows per second through the handler, to the device and back) per batch size:",
        "",
        "| model | format | precision | CUDA | CPU (fp32, the model-config threads) |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in sweep),
    ]
    return "\n".join(lines)


def write(section: str, doc: Path = DOC) -> None:
    text = doc.read_text()
    body = f"{BEGIN}\n{section}\n{END}"
    doc.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="models to check (default: every model)")
    parser.add_argument("--budget", type=float, default=420, help="seconds before formats are skipped (default: 420)")
    parser.add_argument("--formats", nargs="*", help="formats to check (default: every format each spec lists)")
    parser.add_argument("--no-write", action="store_true", help="print the table only (default: also docs/GPU.md)")
    parser.add_argument(
        "--dry-run-on-cpu",
        action="store_true",
        help="run without CUDA (workers fall back to the CPU; checks this script)",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.dry_run_on_cpu:
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}); nothing checked, run it on a GPU machine")
        return 0
    from export.paths import FORMATS, model_names

    started = time.monotonic()
    parity, sweep = [], []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        # Format by format, the slowest to build (AOTInductor) last: the budget skips those first.
        for fmt in [f for f in FORMATS if not args.formats or f in args.formats]:
            for name in args.models or model_names():
                print(f"== {name} {fmt}", flush=True)
                rows, speeds_ = check_model(name, Path(tmp), started + args.budget, [fmt])
                parity += rows
                sweep += speeds_
                for row in rows:
                    print("  ", " | ".join(row), flush=True)
    section = table(parity, sweep, time.monotonic() - started)
    print(section)
    if not args.no_write:
        write(section)
    return 1 if any(row[3] in ("DIFFERS", "FAILED") for row in parity) else 0


if __name__ == "__main__":
    sys.exit(main())
