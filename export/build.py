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

from export.devices import device_runtime
from export.formats import EXPORTERS
from export.paths import BUILD, ROOT, model_names, served_name
from export.sources import Source, load_source, why_not
from export.spec import ModelSpec, load_spec, requested
from export.verify import Case, ExportError, check_batching, check_reference, parity_cases, verify_parity
from handlers.artifact import MANIFEST_FILE, open_artifact, sha256_of
from handlers.base import ManifestHandler
from handlers.sequence import looped

TRACE_HINT = (
    ". A traced artifact replays the path the trace input took; if the model has input-dependent "
    "control flow, set `method: script` in its spec.yaml."
)


def sample_handler(spec: ModelSpec) -> ManifestHandler:
    """The model's handler, configured from the spec (no artifact): decodes and joins samples."""
    handler = spec.handler_class()()
    handler.configure(spec.serving(), spec.folder, {})
    return handler


def sample_cases(spec: ModelSpec, handler: ManifestHandler | None = None) -> list[Case]:
    """The committed samples as model inputs, decoded by the model's own handler code."""
    handler = handler or sample_handler(spec)
    cases = []
    for sample in spec.read_samples():
        decoded = handler.preprocess(sample.value, sample.content_type)
        handler.check_inputs(decoded)
        # A tuple by the handler contract; the examples' handlers of before still give one input bare.
        inputs = decoded.inputs if isinstance(decoded.inputs, tuple) else (decoded.inputs,)
        cases.append(Case(str(sample.path.relative_to(spec.folder)), inputs))
    return cases


def outside_bounds(case: Case, spec: ModelSpec) -> str | None:
    """Why ``case`` lies outside the spec's dimension bounds (None if it is inside)."""
    for entry, tensor in zip(spec.inputs, case.inputs, strict=True):
        if (axis := entry.outside(tensor.shape)) is not None:
            dim, (low, high) = entry.shape[axis], entry.bounds(entry.shape[axis])
            return f"{dim}={tensor.shape[axis]} is outside the exported range {low}..{high}"
    return None


def save(source: Source, spec: ModelSpec, fmt: str, example: tuple, path: Path) -> dict:
    """Write the artifact; a failure becomes an ExportError saying what failed and what to try."""
    try:
        return EXPORTERS[fmt].save(source, spec, example, path)
    except Exception as err:  # torch's exporters raise anything; the user needs the gist and the fix
        first = str(err).strip().splitlines()[0][:400] if str(err).strip() else ""
        if fmt == "torchscript" and source.kind == "eager" and spec.method == "trace":
            fix = (
                "If forward() branches or loops on the data, set `method: script` in spec.yaml; if it takes "
                "non-tensor arguments, declare them under `constants:`."
            )
            raise ExportError(f"{spec.name}: torch.jit.trace failed ({type(err).__name__}: {first}). {fix}") from err
        raise ExportError(f"{spec.name}: making the {fmt} artifact failed ({type(err).__name__}: {first})") from err


def reference_checks(spec: ModelSpec, source: Source, cases: list[Case], samples: list[Case], handler) -> tuple:
    """Run the reference on every case (see verify.check_reference) and compare its batched answers
    with single ones; a difference fails the build unless the spec turns batching off."""
    reference = looped(source.reference, handler.sequence)  # called as the server calls it
    wants = check_reference(spec.name, reference, cases, spec.inputs, spec.outputs, spec.tolerance, spec.reset)
    if spec.reset:
        return wants, {"agrees": None, "why": f"reset {spec.reset!r}: one request per model call"}
    batching = check_batching(spec.name, reference, samples, handler.collate, spec.tolerance)
    if spec.batching and not batching["agrees"]:
        why = batching.get("why") or f"they differ by up to {batching['max_abs_error']:.3g}"
        raise ExportError(
            f"{spec.name}: the reference answers the samples differently in one batch than one at a time ({why}; "
            f"tolerance {spec.tolerance}). Set `batching: false` in spec.yaml to serve one request per model call."
        )
    return wants, batching


def export_model(spec: ModelSpec, out: Path, fmt: str | None = None) -> dict:
    """Load the source, check it, make the artifact in ``fmt`` (default: the spec's primary format),
    reload it and verify it against the source; write the manifest. Returns the manifest.

    TorchScript is checked on every case; the other formats only on cases inside the spec's bounds
    (their exported range), the others are listed as skipped in the manifest.

    Raises:
        ExportError: the spec does not list ``fmt``, the source cannot become it, the source fails its
            own checks, or the saved artifact does not reproduce it.
    """
    fmt = fmt or spec.formats[0]
    if fmt not in spec.formats:
        raise ExportError(f"{spec.name}: spec.yaml lists formats {spec.formats}; add {fmt} to build it")
    source = load_source(spec)
    if why := why_not(source.kind, fmt):
        raise ExportError(f"{spec.name}: {why}")
    handler = sample_handler(spec)
    samples = sample_cases(spec, handler)
    cases = parity_cases(samples, spec.inputs, spec.verify_sizes, handler.collate)
    skipped = []
    if fmt != "torchscript":
        skipped = [{"input": c.label, "reason": why} for c in cases if (why := outside_bounds(c, spec))]
        cases = [c for c in cases if not outside_bounds(c, spec)]
    wants, batching = reference_checks(spec, source, cases, samples, handler)
    # TorchScript traces the first sample (as it always has); torch.export gets the samples as one
    # batch, so that no dynamic size is 1 (torch.export would specialize on it).
    example = samples[0] if fmt == "torchscript" else cases[len(samples)] if len(cases) > len(samples) else samples[0]
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / f"{spec.name}{EXPORTERS[fmt].suffix}"
    traced = fmt == "torchscript" and source.kind == "eager"
    as_is = "as imported" if spec.imported else "as built"  # a ScriptModule from build() is saved as it is
    method = (spec.method if traced else as_is) if fmt == "torchscript" else EXPORTERS[fmt].method
    manifest = {"name": spec.name, "served_name": served_name(spec.name, fmt), "version": str(spec.version)}
    manifest |= {"format": fmt, "method": method}
    manifest |= {"artifact": artifact.name, "source": spec.source, "reference": source.record}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        # Verify the file that will ship, loaded as the server loads it, then move it in place.
        candidate = Path(tmp) / artifact.name
        started = time.perf_counter()
        made = save(source, spec, fmt, example.inputs, candidate)
        manifest |= {"runtime": made.get("runtime", {}), "call_constants": made["call_constants"]}
        manifest["method"] = made.get("method", method)
        manifest["export_seconds"] = round(time.perf_counter() - started, 2)
        loaded = looped(open_artifact(candidate, manifest | spec.serving()), handler.sequence)
        hint = TRACE_HINT if traced and spec.method == "trace" else ""
        report = verify_parity(served_name(spec.name, fmt), loaded, cases, wants, spec.tolerance, hint, spec.reset)
        del loaded  # an ONNX Runtime session keeps the file open
        # Per device: the file it loads (AOTInductor: a package each) and its verified precision.
        runtime, report["precision"] = device_runtime(
            spec, fmt, source, example.inputs, candidate, manifest, cases, wants
        )
        manifest["runtime"] |= runtime
        for name in {entry["artifact"] for entry in runtime["devices"].values()}:
            (Path(tmp) / name).replace(out / name)
    manifest |= spec.serving() | {
        "sha256": sha256_of(artifact),
        "handler": spec.handler_path.name,
        "output": spec.output,
        "verification": report | {"skipped": skipped, "batching": batching},
        # The requests the archive carries, with the content types to send them with (health warm-up).
        "samples": [{"path": str(p.relative_to(spec.folder)), "content_type": t} for p, t in spec.sample_entries()],
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
        "--format", default="", choices=[*EXPORTERS, "all"], help="format (default: the spec's first, its primary)"
    )
    parser.add_argument("--out", type=Path, default=BUILD, help=f"output root (default: {BUILD.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    names = model_names() if args.all else args.models
    if not names:
        parser.error(f"name a model ({', '.join(model_names())}) or pass --all")
    try:
        pairs = requested(names, args.format)
    except (ValueError, FileNotFoundError) as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 1
    for model, fmt in pairs:
        folder = args.out / served_name(model, fmt)
        try:
            manifest = export_model(load_spec(model), folder, fmt)
        except (ExportError, ValueError, FileNotFoundError) as err:
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
