"""Export a model of the project to a verified artifact and its manifest, in any of its formats.

Usage: ``python -m export digits [--format onnx|aoti|torchscript|all]`` (or ``--all``); writes
``build/<served name>/``: ``build/digits/`` for TorchScript, ``build/digits_onnx/`` and so on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from export.formats import FORMATS, to_torchscript  # noqa: F401  (to_torchscript: importable from here)
from export.paths import BUILD, DEFAULT_FORMAT, ROOT, model_names, served_name
from export.samples import Sample
from export.spec import ModelSpec, load_spec, requested
from export.verify import Case, ExportError, parity_cases, verify_parity
from handlers.artifact import MANIFEST_FILE, open_artifact, sha256_of
from handlers.base import ManifestHandler

TRACE_HINT = (
    ". A traced artifact replays the path the trace input took; if the model has input-dependent "
    "control flow, set `method: script` in its spec.yaml."
)


def sample_handler(spec: ModelSpec) -> ManifestHandler:
    """The model's handler, configured from the spec (no artifact): decodes and joins samples."""
    handler = spec.handler_class()()
    handler.configure({"name": spec.name, "version": spec.version, "inputs": spec.inputs}, spec.folder, {})
    return handler


def sample_cases(spec: ModelSpec, handler: ManifestHandler | None = None) -> list[Case]:
    """The committed samples as model inputs, decoded by the model's own handler code."""
    handler = handler or sample_handler(spec)
    cases = []
    for path in spec.sample_paths():
        sample = Sample.read(path)
        decoded = handler.preprocess(sample.value, sample.content_type)
        handler.check_inputs(decoded)
        cases.append(Case(str(path.relative_to(spec.folder)), decoded.inputs))
    return cases


def outside_bounds(case: Case, spec: ModelSpec) -> str | None:
    """Why ``case`` lies outside the spec's dimension bounds (None if it is inside)."""
    for entry, tensor in zip(spec.inputs, case.tensors, strict=True):
        for dim, size in zip(entry["shape"], tensor.shape, strict=True):
            bounds = entry.get("dims", {}).get(dim, {}) if isinstance(dim, str) else {}
            low, high = bounds.get("min", 1), bounds.get("max")
            if size < low or (high is not None and size > high):
                return f"{dim}={size} is outside the exported range {low}..{high}"
    return None


def export_model(spec: ModelSpec, out: Path, fmt: str = DEFAULT_FORMAT) -> dict:
    """Build, save, reload and verify the artifact in ``fmt``; write the manifest. Returns the manifest.

    TorchScript is checked on every case; the torch.export-based formats only on cases inside the
    spec's bounds (their exported range), the others are listed as skipped in the manifest.

    Raises:
        ExportError: the spec does not list ``fmt``, or the saved artifact does not reproduce the
            eager model.
    """
    if fmt not in spec.formats:
        raise ExportError(f"{spec.name}: spec.yaml lists formats {spec.formats}; add {fmt} to build it")
    form = FORMATS[fmt]
    eager = spec.build_eager()
    handler = sample_handler(spec)
    samples = sample_cases(spec, handler)
    cases = parity_cases(samples, [entry["shape"] for entry in spec.inputs], spec.verify_sizes, handler.collate)
    skipped = []
    if fmt != DEFAULT_FORMAT:
        skipped = [{"input": c.label, "reason": why} for c in cases if (why := outside_bounds(c, spec))]
        cases = [c for c in cases if not outside_bounds(c, spec)]
    # TorchScript traces the first sample (as it always has); torch.export gets the samples as one
    # batch, so that no dynamic size is 1 (torch.export would specialize on it).
    example = samples[0] if fmt == DEFAULT_FORMAT else cases[len(samples)] if len(cases) > len(samples) else samples[0]
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / f"{spec.name}{form.suffix}"
    manifest = {
        "name": spec.name,
        "version": str(spec.version),
        "format": fmt,
        "method": spec.method if fmt == DEFAULT_FORMAT else form.method,
        "artifact": artifact.name,
    }
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        # Verify the file that will ship, loaded as the server loads it, then move it in place.
        candidate = Path(tmp) / artifact.name
        started = time.perf_counter()
        manifest["runtime"] = form.save(eager, spec, example.tensors, candidate)
        manifest["export_seconds"] = round(time.perf_counter() - started, 2)
        loaded = open_artifact(candidate, manifest)
        hint = TRACE_HINT if fmt == DEFAULT_FORMAT and spec.method == "trace" else ""
        report = verify_parity(served_name(spec.name, fmt), loaded, eager, cases, spec.tolerance, hint)
        del loaded  # an ONNX Runtime session keeps the file open
        candidate.replace(artifact)
    manifest |= {
        "sha256": sha256_of(artifact),
        "handler": spec.handler,
        "inputs": spec.inputs,
        "output": spec.output,
        "tolerance": spec.tolerance,
        "verification": report | {"skipped": skipped},
        "samples": [c.label for c in samples],
        "extra_files": spec.extra_files,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line: export one model, several, or all, in one format or all of theirs."""
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (folders of models/) or served names (digits_onnx)")
    parser.add_argument("--all", action="store_true", help="export every model (default: off)")
    parser.add_argument(
        "--format", default=DEFAULT_FORMAT, choices=[*FORMATS, "all"], help=f"format (default: {DEFAULT_FORMAT})"
    )
    parser.add_argument("--out", type=Path, default=BUILD, help=f"output root (default: {BUILD.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    names = model_names() if args.all else args.models
    if not names:
        parser.error(f"name a model ({', '.join(model_names())}) or pass --all")
    for model, fmt in requested(names, args.format):
        folder = args.out / served_name(model, fmt)
        try:
            manifest = export_model(load_spec(model), folder, fmt)
        except ExportError as err:
            print(f"export failed: {err}", file=sys.stderr)
            return 1
        checked = manifest["verification"]
        print(
            f"{model} {manifest['version']}: {fmt} ({manifest['method']}, {manifest['export_seconds']:.1f} s) -> "
            f"{folder / manifest['artifact']} verified on {len(checked['checked'])} inputs, max abs error "
            f"{checked['max_abs_error']:.2e} (atol {manifest['tolerance']['atol']})"
            + (f"; {len(checked['skipped'])} outside the exported range skipped" if checked["skipped"] else "")
        )
    return 0
