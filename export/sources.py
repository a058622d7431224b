"""Where a model comes from, loaded as the reference its artifacts are verified against.

- ``model.py``: ``build(folder)`` gives an ``nn.Module`` (the eager model), or a ScriptModule.
- an artifact file named by the spec's ``source``: a TorchScript file (``.pt``/``.jit``), a torch.export
  ExportedProgram (``.pt2``) or an ONNX graph (``.onnx``). There is no eager source: the file itself,
  loaded with its own runtime (not the kit's loader), is the reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from export.spec import ModelSpec
from handlers.artifact import Bound, OnnxModel, sha256_of


@dataclass
class Source:
    """The model an export starts from: ``kind`` is "eager" (an nn.Module with Python source) or the
    format of what it is (torchscript, exported, onnx); ``model`` is what the formats are made from
    (the module, ScriptModule or ExportedProgram; the file's path for ONNX); ``reference`` is the
    callable the artifacts must reproduce; ``record`` says in the manifest what the reference was."""

    kind: str
    model: Any
    reference: Callable
    record: dict


def load_source(spec: ModelSpec) -> Source:
    """The spec's model as a Source: built from model.py, or loaded from its artifact file."""
    if not spec.imported:
        eager = spec.build_eager()
        kind = "torchscript" if isinstance(eager, torch.jit.ScriptModule) else "eager"
        record = {"kind": "model.py build()", "returned": "a ScriptModule" if kind != "eager" else "an nn.Module"}
        return Source(kind, eager, Bound(eager, spec.constants), record)
    path, kind = spec.source_path, spec.source_format
    record = {"kind": "imported file", "file": spec.source, "format": kind, "sha256": sha256_of(path)}
    if kind == "onnx":
        return Source(kind, path, OnnxModel.plain(path), record)
    if kind == "exported":
        program = torch.export.load(str(path))
        return Source(kind, program, Bound(program.module(), spec.constants), record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit
        module = torch.jit.load(str(path), map_location="cpu").eval()
    return Source(kind, module, Bound(module, spec.constants), record)


# What each kind of source can become, and why not otherwise.
CANNOT = {
    ("torchscript", "aoti"): "torch.export needs the model's Python code (an nn.Module); a TorchScript file "
    "holds only its compiled graph",
    ("onnx", "torchscript"): "nothing converts an ONNX graph back into a torch model",
    ("exported", "torchscript"): "torch.jit needs the model's Python code; an ExportedProgram holds only its graph",
}
CANNOT[("torchscript", "exported")] = CANNOT[("torchscript", "aoti")]
CANNOT[("onnx", "aoti")] = CANNOT[("onnx", "exported")] = CANNOT[("onnx", "torchscript")]
SUFFIX = {"torchscript": "a TorchScript model", "exported": "an ExportedProgram (.pt2)", "onnx": "an ONNX file"}


def why_not(source_kind: str, fmt: str) -> str | None:
    """Why a source of this kind cannot become ``fmt`` (None if it can)."""
    reason = CANNOT.get((source_kind, fmt))
    if reason is None:
        return None
    made = [f for f in ("torchscript", "onnx", "aoti", "exported") if (source_kind, f) not in CANNOT]
    return f"{SUFFIX[source_kind]} cannot become {fmt}: {reason}. Formats it can become: {made}"
