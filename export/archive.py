"""Bundle an exported model into a TorchServe ``.mar`` with torch-model-archiver, then check it.

Usage: ``python -m export.archive digits [--format onnx|aoti|torchscript|exported|all] [--version 2.0]``.
The archive holds the artifact, the model's handler file (its folder's ``handler.py``, else the
generic ``handlers/tensor.py``), the shared ``handlers`` package, the
manifest, the handler's extra files, the sample inputs and the model's ``model-config.yaml``.
Each format is its own model in the store: ``digits.mar`` (TorchScript), ``digits_onnx.mar``,
``digits_aoti.mar``; all run the same handler, which picks the runtime from the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from export.paths import BUILD, FORMATS, HANDLERS, MODEL_STORE, ROOT, model_names, served_name
from export.spec import ModelSpec, load_spec, requested
from handlers.artifact import MANIFEST_FILE, read_manifest

ARCHIVER = Path(sys.executable).parent / "torch-model-archiver"


class ArchiveError(RuntimeError):
    """An archive is missing a part or its artifact does not match its manifest."""


def stage_extra_files(spec: ModelSpec, export_dir: Path, version: str) -> Path:
    """A folder whose contents land at the archive's root (torch-model-archiver flattens it)."""
    stage = export_dir / "extra"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "handlers").mkdir(parents=True)
    # The handler imports `handlers.base` etc.; the archive root is on the worker's sys.path.
    for module in HANDLERS.glob("*.py"):
        shutil.copy2(module, stage / "handlers" / module.name)
    manifest = read_manifest(export_dir) | {"version": version}
    (stage / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    for name in spec.extra_files:
        shutil.copy2(spec.folder / name, stage / name)
    for name in device_artifacts(manifest):  # e.g. an AOTInductor package for CUDA
        shutil.copy2(export_dir / name, stage / name)
    for sample in spec.sample_paths():
        target = stage / sample.relative_to(spec.folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(sample, target)
    return stage


def device_artifacts(manifest: dict) -> list[str]:
    """Files the manifest's devices load besides its artifact (shipped among the extra files)."""
    entries = manifest.get("runtime", {}).get("devices", {}).values()
    return sorted({e["artifact"] for e in entries} - {manifest["artifact"]})


def build_archive(name: str, version: str | None = None, store: Path = MODEL_STORE, build: Path = BUILD) -> Path:
    """Archive ``build/<name>`` as ``<store>/<name>.mar`` (``<name>-<version>.mar`` when a version is
    given that differs from the spec's), check it, and return its path. ``name`` is a served name:
    a model (its TorchScript build) or ``<model>_<format>``."""
    export_dir = build / name
    manifest = read_manifest(export_dir)
    spec = load_spec(manifest["name"])
    version = str(version or spec.version)
    stage = stage_extra_files(spec, export_dir, version)
    target = store / (f"{name}.mar" if version == str(spec.version) else f"{name}-{version}.mar")
    with tempfile.TemporaryDirectory() as tmp:
        # The archiver stages in $TMPDIR/<model-name>: a private TMPDIR keeps builds apart.
        command = [
            str(ARCHIVER),
            *("--model-name", name, "--version", version),
            *("--serialized-file", str(export_dir / manifest["artifact"])),
            *("--handler", str(spec.handler_path)),  # a file: the folder's own, or the generic one
            *("--extra-files", str(stage)),
            *("--config-file", str(spec.folder / "model-config.yaml")),
            *("--export-path", tmp, "-f"),
        ]
        subprocess.run(command, check=True, env=os.environ | {"TMPDIR": tmp})
        store.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(tmp) / f"{name}.mar", target)
    check_archive(target)
    return target


def check_archive(path: Path) -> dict:
    """Check that an archive holds its manifest, artifact, handler package and config, and that
    the artifact's sha256 matches the manifest. Returns the manifest."""
    with zipfile.ZipFile(path) as mar:
        names = set(mar.namelist())
        for required in (MANIFEST_FILE, "MAR-INF/MANIFEST.json", "handlers/base.py", "model-config.yaml"):
            if required not in names:
                raise ArchiveError(f"{path.name}: {required} is missing from the archive")
        manifest = json.loads(mar.read(MANIFEST_FILE))
        if manifest["artifact"] not in names:
            raise ArchiveError(f"{path.name}: artifact {manifest['artifact']} is missing from the archive")
        actual = hashlib.sha256(mar.read(manifest["artifact"])).hexdigest()
        if actual != manifest["sha256"]:
            raise ArchiveError(
                f"{path.name}: artifact sha256 {actual} does not match the manifest's {manifest['sha256']}"
            )
        for device, entry in manifest.get("runtime", {}).get("devices", {}).items():
            if (
                entry["artifact"] not in names
                or hashlib.sha256(mar.read(entry["artifact"])).hexdigest() != entry["sha256"]
            ):
                raise ArchiveError(f"{path.name}: the {device} artifact {entry['artifact']} is missing or altered")
        mar_info = json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]
        # Recorded at export (needs no models directory here); older manifests lack it.
        served = manifest.get("served_name") or served_name(manifest["name"], manifest["format"])
        if (mar_info["modelName"], mar_info["modelVersion"]) != (served, manifest["version"]):
            raise ArchiveError(
                f"{path.name}: MAR-INF names {mar_info['modelName']} {mar_info['modelVersion']}, "
                f"the manifest {served} ({manifest['format']}) {manifest['version']}"
            )
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line: archive models (exported beforehand by ``python -m export``)."""
    parser = argparse.ArgumentParser(prog="python -m export.archive", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model or served names (digits_onnx); default: every model")
    parser.add_argument(
        "--format", default="", choices=[*FORMATS, "all"], help="format (default: the spec's first, its primary)"
    )
    parser.add_argument("--version", help="archive version (default: the spec's)")
    parser.add_argument(
        "--store", type=Path, default=MODEL_STORE, help=f"model store (default: {MODEL_STORE.relative_to(ROOT)})"
    )
    parser.add_argument("--check", type=Path, nargs="+", help="only check these .mar files (default: build)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            for path in args.check:
                m = check_archive(path)
                print(f"{path}: ok ({m['name']} {m['version']}, {m['format']}, sha256 {m['sha256'][:12]}…)")
            return 0
        for model, fmt in requested(args.models or model_names(), args.format):
            path = build_archive(served_name(model, fmt), args.version, args.store)
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: built and checked")
    except (ArchiveError, FileNotFoundError, ValueError, subprocess.CalledProcessError) as err:
        print(f"archive failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
