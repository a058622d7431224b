"""A model's export spec: ``models/<name>/spec.yaml``, the one place that describes a model."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from export.paths import DEFAULT_FORMAT, FORMATS, MODELS, parse_served_name


@dataclass
class ModelSpec:
    """What `export` needs to know about one model (see models/digits/spec.yaml for an example)."""

    name: str
    version: str
    handler: str  # module in handlers/ holding the model's handler class
    method: str  # "trace" or "script" (TorchScript); the other formats go through torch.export
    output: str  # what the model returns, for people
    samples: list[str]  # globs under the model folder: request bodies, as a client sends them
    folder: Path
    input: dict | None = None  # {"name", "dtype", "shape", "dims"[, "pad"]}: a one-input model's spec
    inputs: list[dict] | None = None  # or one such spec per input, in the order forward() takes them
    tolerance: dict = field(default_factory=lambda: {"atol": 1e-5, "rtol": 1e-5})
    verify_sizes: dict = field(default_factory=dict)  # dynamic dim -> extra sizes to check
    extra_files: list[str] = field(default_factory=list)  # files the handler reads, shipped as is
    formats: list[str] = field(default_factory=lambda: [DEFAULT_FORMAT])  # what `FORMAT=all` builds

    def __post_init__(self):
        if self.inputs is None:
            if self.input is None:
                raise ValueError(f"{self.name}: spec.yaml needs `input` (one input) or `inputs` (a list)")
            self.inputs = [self.input]
        self.input = self.inputs[0]

    def build_eager(self):
        """The eager model with its committed weights, from ``models/<name>/model.py``."""
        module = importlib.import_module(f"models.{self.name}.model")
        return module.build(self.folder)

    def handler_class(self):
        """The handler class in ``handlers/<handler>.py`` (the module's one class)."""
        module = importlib.import_module(f"handlers.{self.handler}")
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
        if len(classes) != 1:
            raise ValueError(f"handlers/{self.handler}.py must define exactly one class, found {len(classes)}")
        return classes[0]

    def sample_paths(self) -> list[Path]:
        """The committed sample files, in a stable order."""
        paths = [p for pattern in self.samples for p in sorted(self.folder.glob(pattern))]
        if not paths:
            raise FileNotFoundError(f"{self.name}: no sample inputs match {self.samples} in {self.folder}")
        return paths


def load_spec(name: str, models_dir: Path = MODELS) -> ModelSpec:
    """Read and check ``models/<name>/spec.yaml``."""
    folder = models_dir / name
    path = folder / "spec.yaml"
    if not path.exists():
        known = sorted(p.parent.name for p in models_dir.glob("*/spec.yaml"))
        raise FileNotFoundError(f"no model {name!r}: {path} is missing; known models: {known}")
    raw = yaml.safe_load(path.read_text())
    spec = ModelSpec(folder=folder, **raw)
    if spec.name != name:
        raise ValueError(f"{path}: name {spec.name!r} differs from its folder {name!r}")
    if spec.method not in ("trace", "script"):
        raise ValueError(f"{path}: method must be 'trace' or 'script', got {spec.method!r}")
    unknown = sorted(set(spec.formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"{path}: unknown formats {unknown}; known: {list(FORMATS)}")
    return spec


def requested(names: list[str], fmt: str) -> list[tuple[str, str]]:
    """(model, format) pairs to build: served names (``digits_onnx``) name their format; ``all``
    means every format each model's spec lists."""
    pairs = []
    for name in names:
        model, own = parse_served_name(name)
        formats = [own] if own != DEFAULT_FORMAT else load_spec(model).formats if fmt == "all" else [fmt]
        pairs += [(model, f) for f in formats]
    return pairs
