"""How each artifact format is written from the eager model (loading is in handlers/artifact.py).

- ``torchscript``: ``torch.jit.trace`` or ``torch.jit.script`` (the spec's ``method``), ``.pt``.
- ``onnx``: ``torch.onnx.export`` (the torch.export-based exporter), ``.onnx``, run by ONNX Runtime.
- ``aoti``: ``torch.export`` then AOTInductor, a ``.pt2`` package of compiled CPU code.

The two torch.export-based formats get the spec's bounds as their dynamic ranges: a dimension
bounded to one size (``time: {min: 64, max: 64}``) is exported static, the others dynamic
within ``[min, max]``. Each ``save`` returns what the manifest should record about the runtime.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from export.spec import ModelSpec


@dataclass(frozen=True)
class Format:
    """One artifact format: its file suffix, how it is made, and the saver."""

    suffix: str
    method: str  # how the artifact is made, for the manifest ("trace"/"script" come from the spec)
    save: Callable[[torch.nn.Module, ModelSpec, tuple[torch.Tensor, ...], Path], dict]


def to_torchscript(eager: torch.nn.Module, method: str, example) -> torch.jit.ScriptModule:
    """Trace with ``example`` (a tensor or a tuple of tensors) or script the model."""
    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.jit; TorchScript stays the default artifact TorchServe loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        if method == "script":
            return torch.jit.script(eager)
        with torch.inference_mode(False), torch.no_grad():
            return torch.jit.trace(eager, example, check_trace=False)


def dynamic_shapes(spec: ModelSpec) -> tuple[dict, ...]:
    """torch.export's ``dynamic_shapes``: per input, axis -> Dim for each dimension with a range.

    One ``Dim`` per name, shared by every input that has it (``input_ids`` and ``attention_mask``
    share ``batch`` and ``seq``), so the exported graph knows they are equal.
    """
    dims: dict[str, torch.export.Dim] = {}
    per_input = []
    for entry in spec.inputs:
        axes = {}
        for axis, dim in enumerate(entry["shape"]):
            if not isinstance(dim, str):
                continue
            bounds = entry.get("dims", {}).get(dim, {})
            low, high = bounds.get("min", 1), bounds.get("max")
            if low == high:
                continue  # one size only: exported static
            if dim not in dims:
                dims[dim] = torch.export.Dim(dim, min=low, max=high) if high else torch.export.Dim(dim, min=low)
            axes[axis] = dims[dim]
        per_input.append(axes)
    return tuple(per_input)


def _save_torchscript(eager: torch.nn.Module, spec: ModelSpec, example: tuple, path: Path) -> dict:
    to_torchscript(eager, spec.method, example[0] if len(example) == 1 else example).save(str(path))
    return {}


def _save_onnx(eager: torch.nn.Module, spec: ModelSpec, example: tuple, path: Path) -> dict:
    import onnx  # export-time only; the server needs onnxruntime alone
    import onnxruntime

    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter's chatter (progress, deprecations, "torchvision is not installed"), not findings.
        warnings.simplefilter("ignore")
        exporter_log.setLevel(logging.ERROR)
        torch.onnx.export(
            eager,
            example,
            str(path),
            input_names=[entry["name"] for entry in spec.inputs],
            dynamic_shapes=dynamic_shapes(spec),
            dynamo=True,
            external_data=False,  # one file (under protobuf's 2 GB), so one sha256 covers the weights
            optimize=True,
            verbose=False,
        )
    exporter_log.setLevel(level)
    opsets = {o.domain or "ai.onnx": o.version for o in onnx.load(str(path), load_external_data=False).opset_import}
    return {"opset": opsets.get("ai.onnx"), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _save_aoti(eager: torch.nn.Module, spec: ModelSpec, example: tuple, path: Path) -> dict:
    with torch.no_grad():
        program = torch.export.export(eager, example, dynamic_shapes=dynamic_shapes(spec))
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    # Compiled for this CPU's vector instructions: the loader refuses a CPU without them.
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability()}


FORMATS: dict[str, Format] = {
    "torchscript": Format(".pt", "torch.jit", _save_torchscript),
    "onnx": Format(".onnx", "torch.onnx.export (dynamo)", _save_onnx),
    "aoti": Format(".pt2", "torch.export + AOTInductor", _save_aoti),
}
