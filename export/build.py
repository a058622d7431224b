"""Export a model of the project to a verified artifact and its manifest.

Usage: ``python -m export digits`` (or ``--all``); writes ``build/<name>/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from export.paths import BUILD, ROOT, model_names
from export.samples import Sample
from export.spec import ModelSpec, load_spec
from export.verify import Case, ExportError, parity_cases, verify_parity
from handlers.artifact import MANIFEST_FILE, InputSpec, sha256_of

TRACE_HINT = (
    ". A traced artifact replays the path the trace input took; if the model has input-dependent "
    "control flow, set `method: script` in its spec.yaml."
)


def sample_cases(spec: ModelSpec) -> list[Case]:
    """The committed samples as model inputs, decoded by the model's own handler code."""
    handler = spec.handler_class()()
    handler.configure({"name": spec.name, "version": spec.version, "inputs": [spec.input]}, spec.folder, {})
    input_spec = InputSpec.from_dict(spec.input)
    cases = []
    for path in spec.sample_paths():
        sample = Sample.read(path)
        tensor = handler.preprocess(sample.value, sample.content_type).tensor
        input_spec.check(tensor)
        cases.append(Case(str(path.relative_to(spec.folder)), tensor))
    return cases


def to_torchscript(eager: torch.nn.Module, method: str, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace with ``example`` or script the model."""
    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.jit; TorchScript stays the default artifact TorchServe loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        if method == "script":
            return torch.jit.script(eager)
        with torch.inference_mode(False), torch.no_grad():
            return torch.jit.trace(eager, example, check_trace=False)


def export_model(spec: ModelSpec, out: Path) -> dict:
    """Build, save, reload and verify the artifact; write the manifest. Returns the manifest.

    Raises:
        ExportError: the saved artifact does not reproduce the eager model.
    """
    eager = spec.build_eager()
    cases = sample_cases(spec)
    scripted = to_torchscript(eager, spec.method, cases[0].tensor)
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / f"{spec.name}.pt"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        # Verify the file that will ship, as TorchServe will load it, then move it in place.
        candidate = Path(tmp) / artifact.name
        scripted.save(str(candidate))
        loaded = torch.jit.load(str(candidate)).eval()
        hint = TRACE_HINT if spec.method == "trace" else ""
        report = verify_parity(
            spec.name, loaded, eager, parity_cases(cases, spec.input["shape"], spec.verify_sizes), spec.tolerance, hint
        )
        candidate.replace(artifact)
    manifest = {
        "name": spec.name,
        "version": str(spec.version),
        "format": "torchscript",
        "method": spec.method,
        "artifact": artifact.name,
        "sha256": sha256_of(artifact),
        "handler": spec.handler,
        "inputs": [spec.input],
        "output": spec.output,
        "tolerance": spec.tolerance,
        "verification": report,
        "samples": [c.label for c in cases],
        "extra_files": spec.extra_files,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line: export one model, several, or all."""
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (folders of models/); default: none")
    parser.add_argument("--all", action="store_true", help="export every model (default: off)")
    parser.add_argument("--out", type=Path, default=BUILD, help=f"output root (default: {BUILD.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    names = model_names() if args.all else args.models
    if not names:
        parser.error(f"name a model ({', '.join(model_names())}) or pass --all")
    for name in names:
        try:
            manifest = export_model(load_spec(name), args.out / name)
        except ExportError as err:
            print(f"export failed: {err}", file=sys.stderr)
            return 1
        checked = manifest["verification"]
        print(
            f"{name} {manifest['version']}: {manifest['method']} -> {args.out / name / manifest['artifact']} "
            f"verified on {len(checked['checked'])} inputs, max abs error {checked['max_abs_error']:.2e} "
            f"(atol {manifest['tolerance']['atol']})"
        )
    return 0
