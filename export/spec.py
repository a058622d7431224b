"""A model's spec: ``models/<name>/spec.yaml``, the one place that describes a model.

Keys (see the README, "Adding your own model"): ``name``, ``version``, ``source`` (``model.py`` or an
artifact file in the folder), ``method``, ``handler`` (a path relative to the folder; default the
generic ``handlers/tensor.py``), ``inputs`` (or one ``input``), ``outputs``, ``output`` (words for
people), ``constants``, ``reset``, ``batching``, ``samples``, ``demo``, ``empty_hint``, ``tolerance``,
``verify_sizes``, ``extra_files``, ``formats``, ``devices``, ``precision``, ``precision_tolerance``,
``sequence``; per input and per output ``codec`` (handlers/codec.py: checked here, carried in the
manifest as ``codecs``).

Command line (for `make serve`): ``python -m export.spec demo <served name>`` prints the model's demo
sample and its content type, as arguments of ``python -m client predict``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import yaml

from export.paths import FORMATS, GENERIC_HANDLER, MODELS, ROOT, SOURCE_FORMATS, formats_in, parse_served_name
from export.samples import Sample, content_type_of
from handlers.schema import InputSpec

EXPECTED = "expected.json"  # samples/expected.json holds the expected answers, never a request
CHOOSE = "CHOOSE"  # what `make new-model` writes where the artifact does not say: the user decides


@dataclass
class ModelSpec:
    """What export, archive and serve need to know about one model."""

    name: str
    version: str
    samples: list  # globs under the folder, or {path, content_type} entries: request bodies as sent
    folder: Path
    source: str = "model.py"  # or the artifact file it is imported from (.pt/.jit, .pt2, .onnx)
    method: str = "trace"  # "trace" or "script": how model.py becomes TorchScript
    handler: str | None = None  # handler file, relative to the folder; None: the generic one
    inputs: list = field(default_factory=list)  # InputSpec per forward() tensor argument, in order
    outputs: list[dict] = field(default_factory=list)  # {"name", "dtype", "shape"} per output tensor
    output: str = ""  # what the model returns, in words for people
    constants: dict = field(default_factory=dict)  # non-tensor forward() arguments, by keyword
    reset: str | None = None  # model method that clears its state, called before each request
    batching: bool = True  # false: one request per model call
    demo: str | None = None  # the sample `make serve` sends (default: the first)
    empty_hint: str | None = None  # what the empty-body error tells a client to send
    tolerance: dict = field(default_factory=lambda: {"atol": 1e-5, "rtol": 1e-5})
    verify_sizes: dict = field(default_factory=dict)  # dynamic dim -> extra sizes to check
    extra_files: list[str] = field(default_factory=list)  # files the handler reads, shipped as is
    formats: list[str] = field(default_factory=list)  # what `FORMAT=all` builds, the primary first
    devices: list[str] = field(default_factory=lambda: ["cpu"])  # cpu, cuda: an AOTInductor package each
    precision: str = "fp32"  # fp16 or bf16: what GPU workers compute in (verified at export; CPU stays fp32)
    precision_tolerance: dict = field(default_factory=lambda: {"atol": 1e-2, "rtol": 1e-2})  # vs fp32
    sequence: dict | None = None  # {input, window, ...}: the model called on windows in turn (handlers/codec.py)
    codecs: dict = field(default_factory=dict, init=False)  # the declared codecs, checked (from `codec:` keys)

    def __post_init__(self):
        if not self.inputs:
            raise ValueError(f"{self.name}: spec.yaml needs `inputs` (a list) or `input` (one input)")
        declared = {e["name"]: e["codec"] for e in self.inputs if isinstance(e, dict) and e.get("codec") is not None}
        self.inputs = [entry if isinstance(entry, InputSpec) else input_spec(self.name, entry) for entry in self.inputs]
        outputs = {o["name"]: o.get("codec") for o in self.outputs if isinstance(o, dict) and o.get("codec")}
        self.outputs = [{k: v for k, v in o.items() if k != "codec"} for o in self.outputs]
        if declared or outputs or self.sequence is not None:
            from handlers.codec import check_codecs, codec_files

            try:
                self.codecs = check_codecs(self.inputs, self.outputs, declared, outputs, self.sequence, self.folder)
            except ValueError as err:
                raise ValueError(f"{self.folder / 'spec.yaml'}: {err}") from None
            self.extra_files = list(dict.fromkeys([*self.extra_files, *codec_files(self.codecs)]))
            self.batching = self.batching and self.sequence is None  # windows in turn: one request per call
        self.formats = list(self.formats) or [self.source_format]
        self.batching = bool(self.batching) and not self.reset  # a reset is per request

    @property
    def imported(self) -> bool:
        """True when the model comes from an artifact file rather than model.py."""
        return self.source != "model.py"

    @property
    def source_format(self) -> str:
        """The format of the source: torchscript for model.py, else by the file's suffix."""
        return SOURCE_FORMATS[Path(self.source).suffix] if self.imported else FORMATS[0]

    @property
    def source_path(self) -> Path:
        return self.folder / self.source

    def serving(self) -> dict:
        """The serving-relevant keys, as the manifest carries them (and handlers read them)."""
        return {
            "name": self.name,
            "version": str(self.version),
            "inputs": [dataclasses.asdict(s) for s in self.inputs],
            "outputs": self.outputs,
            "reset": self.reset,
            "batching": self.batching,
            "empty_hint": self.empty_hint or self.default_empty_hint(),
            "tolerance": self.tolerance,
        } | ({"codecs": self.codecs} if self.codecs else {})

    def default_empty_hint(self) -> str:
        types = list(dict.fromkeys(s.content_type for s in self.read_samples()))
        return f"POST the input with a Content-Type header: {' or '.join(types)} (see the model's samples)"

    def build_eager(self):
        """The eager model with its committed weights, from ``build(folder)`` in the folder's model.py."""
        if self.imported:
            raise ValueError(f"{self.name}: imported from {self.source}; it has no model.py to build")
        return load_file(self.folder / "model.py", f"kit_models.{self.name}.model").build(self.folder)

    @property
    def handler_path(self) -> Path:
        """The handler file: the spec's (relative to the folder), else the generic tensor handler."""
        if self.handler is None:
            return ROOT / GENERIC_HANDLER
        if "/" not in self.handler and not self.handler.endswith(".py"):
            return ROOT / "handlers" / f"{self.handler}.py"  # the pre-folder form: a module of handlers/
        return self.folder / self.handler

    def handler_class(self) -> type:
        """The one ManifestHandler subclass the handler file defines."""
        from handlers.base import ManifestHandler

        path = self.handler_path
        if not path.exists():
            raise FileNotFoundError(f"{self.name}: handler {path} does not exist")
        if path.parent == ROOT / "handlers":
            module = importlib.import_module(f"handlers.{path.stem}")  # shared code: one copy
        else:
            module = load_file(path, f"kit_models.{self.name}.{path.stem}")
        classes = [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if c.__module__ == module.__name__ and issubclass(c, ManifestHandler)
        ]
        if len(classes) != 1:
            raise ValueError(f"{path} must define exactly one ManifestHandler subclass, found {len(classes)}")
        return classes[0]

    def sample_entries(self) -> list[tuple[Path, str]]:
        """(file, content type) of every committed sample, in a stable order."""
        entries = []
        for item in self.samples:
            pattern, ctype = (item["path"], item.get("content_type")) if isinstance(item, dict) else (item, None)
            found = [p for p in sorted(self.folder.glob(pattern)) if p.name != EXPECTED]
            entries += [(p, ctype or content_type_of(p)) for p in found]
        if not entries:
            raise FileNotFoundError(f"{self.name}: no sample inputs match {self.samples} in {self.folder}")
        return entries

    def sample_paths(self) -> list[Path]:
        """The committed sample files, in a stable order."""
        return [path for path, _ in self.sample_entries()]

    def read_samples(self) -> list[Sample]:
        """The committed samples with their content types."""
        return [Sample.read(path, ctype) for path, ctype in self.sample_entries()]

    def demo_sample(self) -> Sample:
        """The sample `make serve` sends: the spec's ``demo``, else the first sample."""
        samples = self.read_samples()
        if self.demo is None:
            return samples[0]
        for sample in samples:
            if sample.path == self.folder / self.demo:
                return sample
        raise ValueError(f"{self.name}: demo {self.demo!r} is not one of its samples {self.samples}")


def input_spec(model: str, entry: dict) -> InputSpec:
    """One ``inputs`` entry of spec.yaml as an InputSpec, with the missing key named."""
    missing = [key for key in ("name", "dtype", "shape") if key not in entry]
    if missing:
        raise ValueError(f"{model}: an input in spec.yaml lacks {missing}: {entry}")
    return InputSpec.from_dict(entry | {"dims": entry.get("dims") or {}})


def load_file(path: Path, module_name: str) -> ModuleType:
    """Import a Python file by its location (model folders need no ``__init__.py``), once."""
    if module_name not in sys.modules:
        found = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(found)
        sys.modules[module_name] = module  # before running it: torch.jit.script reads the source through it
        try:
            found.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    return sys.modules[module_name]


def choices_left(value, where: str = "") -> list[str]:
    """Where a spec still holds the ``CHOOSE`` placeholders `make new-model` wrote."""
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in choices_left(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in choices_left(v, f"{where}[{i}]")]
    return [where] if isinstance(value, str) and CHOOSE in value else []


def normalised(raw: dict, path: Path) -> dict:
    """The spec's keys as ModelSpec takes them: the one short form, ``input: {...}`` for a one-input
    model, becomes ``inputs: [{...}]``."""
    if "input" in raw:
        if "inputs" in raw:
            raise ValueError(f"{path}: give `inputs` (a list) or `input` (one input), not both")
        raw = {("inputs" if k == "input" else k): ([v] if k == "input" else v) for k, v in raw.items()}
    return raw


def load_spec(name: str, models_dir: Path | None = None) -> ModelSpec:
    """Read and check ``<models dir>/<name>/spec.yaml``."""
    folder = (models_dir or MODELS) / name
    path = folder / "spec.yaml"
    if not path.exists():
        known = sorted(p.parent.name for p in folder.parent.glob("*/spec.yaml"))
        raise FileNotFoundError(f"no model {name!r}: {path} is missing; known models: {known}")
    text = path.read_text()
    raw = normalised(yaml.safe_load(text), path)
    keys = {f.name for f in dataclasses.fields(ModelSpec) if f.init} - {"folder"}
    unknown = sorted(set(raw) - keys)
    if unknown:
        known = sorted([*keys, "input"])
        raise ValueError(f"{path}: unknown keys {unknown}; known: {known}")
    if left := choices_left(raw):
        raise ValueError(f"{path}: replace the {CHOOSE} placeholders first: {', '.join(left)}")
    spec = ModelSpec(folder=folder, **raw)
    if spec.name != name:
        raise ValueError(f"{path}: name {spec.name!r} differs from its folder {name!r}")
    if spec.method not in ("trace", "script"):
        raise ValueError(f"{path}: method must be 'trace' or 'script', got {spec.method!r}")
    if spec.imported and (Path(spec.source).suffix not in SOURCE_FORMATS or not spec.source_path.exists()):
        raise ValueError(f"{path}: source {spec.source!r} must be model.py or a file {sorted(SOURCE_FORMATS)} here")
    if spec.constants and spec.source_format == "onnx":
        raise ValueError(f"{path}: an ONNX graph takes tensors only; declare {sorted(spec.constants)} as inputs")
    if spec.reset and (others := [f for f in spec.formats if f != "torchscript"]):
        # torch.export, AOTInductor and ONNX keep forward() alone: the reset before each request would be lost.
        raise ValueError(
            f"{path}: a model with a reset ({spec.reset!r}) is served as TorchScript only (its artifact keeps "
            f"the method); {others} artifacts keep forward() alone. Set `formats: [torchscript]`"
            + (" and import a TorchScript file." if spec.source_format != "torchscript" else ".")
        )
    if sorted(set(spec.devices) - {"cpu", "cuda"}) or spec.precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(
            f"{path}: devices must be cpu and/or cuda, precision fp32, fp16 or bf16; "
            f"got {spec.devices}, {spec.precision!r}"
        )
    if unknown := sorted(set(spec.formats) - set(FORMATS)):
        raise ValueError(f"{path}: unknown formats {unknown}; known: {list(FORMATS)}")
    if (plain := formats_in(text)) != spec.formats:  # what the Makefile's served names come from
        raise ValueError(
            f"{path}: served names read formats {plain} from this file, PyYAML {spec.formats}: write "
            "`formats:` as a plain list ([torchscript, onnx] or `- onnx` lines) and `source:` as one file name"
        )
    return spec


def requested(names: list[str], fmt: str) -> list[tuple[str, str]]:
    """(model, format) pairs to build: a served name (``digits_onnx``) names its format, a model
    name means ``fmt`` ("" or None: its primary format; ``all``: every format its spec lists)."""
    pairs = []
    for name in names:
        model, own = parse_served_name(name)
        formats = load_spec(model).formats
        if name != model or not fmt:
            chosen = [own]
        else:
            chosen = formats if fmt == "all" else [fmt]
        pairs += [(model, f) for f in chosen]
    return pairs


def main(argv: list[str]) -> int:
    """``demo <served name>``: print the model's demo sample as ``<path> --content-type <type>``."""
    if argv[:1] != ["demo"] or len(argv) != 2:
        print("usage: python -m export.spec demo <served name>", file=sys.stderr)
        return 2
    sample = load_spec(parse_served_name(argv[1])[0]).demo_sample()
    path = sample.path.relative_to(ROOT) if sample.path.is_relative_to(ROOT) else sample.path
    print(f"{path} --content-type {sample.content_type}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
