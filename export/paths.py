"""Every project path, derived once from the project root, and the names artifacts are served under.

Command line (for `make serve`): ``python -m export.paths demo <served name>`` prints the demo
sample of the model and its content type, as arguments of ``python -m client predict``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# KIT_MODELS_DIR points the whole kit at another models directory (tests use a temporary copy).
MODELS = Path(os.environ.get("KIT_MODELS_DIR") or ROOT / "models").resolve()
HANDLERS = ROOT / "handlers"
GENERIC_HANDLER = "handlers/tensor.py"  # project-relative: the handler of a model without its own
BUILD = ROOT / "build"
MODEL_STORE = ROOT / "model_store"
CONFIG = ROOT / "config.properties"

# Artifact formats. A model is served as <name> in its primary format (the first its spec lists;
# torchscript for a model.py) and as <name>_<format> in the others: build/<served name>/,
# model_store/<served name>.mar. "exported" is a torch.export ExportedProgram (.pt2) run by torch.
FORMATS = ("torchscript", "onnx", "aoti", "exported")
DEFAULT_FORMAT = FORMATS[0]
# The primary format of a model imported from a file, by the file's suffix.
SOURCE_FORMATS = {".pt": "torchscript", ".jit": "torchscript", ".pt2": "exported", ".onnx": "onnx"}


def model_names() -> list[str]:
    """Every model of the project: each folder of the models directory with a spec.yaml."""
    return sorted(p.parent.name for p in MODELS.glob("*/spec.yaml"))


def spec_formats(model: str) -> list[str]:
    """The formats ``models/<model>/spec.yaml`` lists, or its source's one format by default."""
    import yaml  # only here: the Makefile imports this module for names, which need no YAML

    path = MODELS / model / "spec.yaml"
    raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    source = str(raw.get("source", "model.py"))
    return list(raw.get("formats") or [SOURCE_FORMATS.get(Path(source).suffix, DEFAULT_FORMAT)])


def served_name(model: str, fmt: str | None = None) -> str:
    """The name a model's artifact in ``fmt`` has in build/, the model store and TorchServe."""
    return model if fmt is None or fmt == spec_formats(model)[0] else f"{model}_{fmt}"


def parse_served_name(name: str) -> tuple[str, str]:
    """``digits_onnx`` → ``("digits", "onnx")``; a bare model name is its primary format."""
    for fmt in FORMATS:
        model = name.removesuffix(f"_{fmt}")
        if name.endswith(f"_{fmt}") and (MODELS / model / "spec.yaml").exists():
            return model, fmt
    return name, spec_formats(name)[0]


def main(argv: list[str]) -> int:
    """Print the demo sample of a served model as ``<path> --content-type <type>``."""
    if argv[:1] == ["demo"] and len(argv) == 2:
        from export.spec import load_spec  # the spec knows the demo sample and its content type

        sample = load_spec(parse_served_name(argv[1])[0]).demo_sample()
        path = sample.path.relative_to(ROOT) if sample.path.is_relative_to(ROOT) else sample.path
        print(f"{path} --content-type {sample.content_type}")
    else:
        print("usage: python -m export.paths demo <served name>", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
