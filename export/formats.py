"""How each artifact format is written from its source (loading is in handlers/artifact.py).

- ``torchscript``: ``torch.jit.trace`` or ``torch.jit.script`` (the spec's ``method``), ``.pt``; a
  TorchScript source is saved as it is.
- ``onnx``: ``torch.onnx.export``, ``.onnx``, run by ONNX Runtime: the torch.export-based exporter from
  an nn.Module or an ExportedProgram, the legacy (TorchScript) exporter from a TorchScript source.
- ``aoti``: ``torch.export`` then AOTInductor, a ``.pt2`` package of compiled CPU code.
- ``exported``: a ``torch.export`` ExportedProgram saved as ``.pt2``, run by torch.

The torch.export-based formats get the spec's bounds as their dynamic ranges: a dimension bounded to
one size (``time: {min: 64, max: 64}``) is exported static, the others dynamic within ``[min, max]``.
Each ``save`` returns what the manifest records: the runtime and the constants still passed at call
time (``call_constants``: TorchScript keeps non-tensor arguments; torch.export bakes them in).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from export.onnx_optimize import optimize_onnx
from export.sources import Source
from export.spec import ModelSpec
from handlers.artifact import Bound


@dataclass(frozen=True)
class Format:
    """One artifact format: its file suffix, how it is made, and the saver."""

    suffix: str
    method: str  # how the artifact is made, for the manifest ("trace"/"script" come from the spec)
    save: Callable[[Source, ModelSpec, tuple[torch.Tensor, ...], Path], dict]


def to_torchscript(model: torch.nn.Module, method: str, example: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    """Trace with ``example`` (one tensor per input) or script the model."""
    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.jit; TorchScript stays the default artifact TorchServe loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        if method == "script":
            return torch.jit.script(model)
        with torch.inference_mode(False), torch.no_grad():
            return torch.jit.trace(model, example, check_trace=False)


def dynamic_shapes(spec: ModelSpec) -> tuple[dict, ...]:
    """torch.export's ``dynamic_shapes``: per input, axis -> Dim for each dimension with a range.

    One ``Dim`` per name, shared by every input that has it (``input_ids`` and ``attention_mask``
    share ``batch`` and ``seq``), so the exported graph knows they are equal.
    """
    dims: dict[str, torch.export.Dim] = {}
    per_input = []
    for entry in spec.inputs:
        axes = {}
        for axis, dim in enumerate(entry.shape):
            low, high = entry.bounds(dim) if isinstance(dim, str) else (dim, dim)
            if low == high:
                continue  # one size only: exported static
            if dim not in dims:
                dims[dim] = torch.export.Dim(dim, min=low, max=high) if high else torch.export.Dim(dim, min=low)
            axes[axis] = dims[dim]
        per_input.append(axes)
    return tuple(per_input)


def exportable(source: Source, spec: ModelSpec) -> tuple[torch.nn.Module, tuple]:
    """The module torch.export sees and its ``dynamic_shapes``: the model itself, or, when it takes
    constants, the model with them bound (one varargs argument, hence the extra tuple)."""
    if not spec.constants:
        return source.model, dynamic_shapes(spec)
    return Bound(source.model, spec.constants), (dynamic_shapes(spec),)


def output_names(spec: ModelSpec) -> list[str] | None:
    return [o["name"] for o in spec.outputs] or None


def _save_torchscript(source: Source, spec: ModelSpec, example: tuple, path: Path) -> dict:
    if source.kind == "torchscript":  # already TorchScript: ship it as it is
        if spec.imported:
            shutil.copyfile(spec.source_path, path)
        else:
            source.model.save(str(path))
        return {"call_constants": spec.constants}
    if spec.method == "script":
        to_torchscript(source.model, "script", example).save(str(path))
        return {"call_constants": spec.constants}
    model = Bound(source.model, spec.constants) if spec.constants else source.model
    to_torchscript(model, "trace", example).save(str(path))
    return {"call_constants": {}}  # a trace records the constants' effect


def _save_onnx(source: Source, spec: ModelSpec, example: tuple, path: Path) -> dict:
    import onnx  # export-time only; the server needs onnxruntime alone
    import onnxruntime

    method = {"onnx": "as imported", "torchscript": "torch.onnx.export (legacy, from TorchScript)"}.get(source.kind)
    if source.kind == "onnx":
        shutil.copyfile(spec.source_path, path)
    else:
        _export_onnx(source, spec, example, path)
    opsets = {o.domain or "ai.onnx": o.version for o in onnx.load(str(path), load_external_data=False).opset_import}
    runtime = {"opset": opsets.get("ai.onnx"), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    if source.kind != "onnx":  # fused transformer ops, kept only where answers stay; an import ships as given
        runtime["fusions"] = optimize_onnx(path, spec)
    return {"runtime": runtime, "call_constants": {}} | ({"method": method} if method else {})


def _export_onnx(source: Source, spec: ModelSpec, example: tuple, path: Path) -> None:
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    names = [entry.name for entry in spec.inputs]
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter's chatter (progress, deprecations, "torchvision is not installed"), not findings.
        warnings.simplefilter("ignore")
        exporter_log.setLevel(logging.ERROR)
        if source.kind == "torchscript":
            # The legacy exporter takes TorchScript; tracing the bound module first bakes the constants in.
            traced = to_torchscript(Bound(source.model, spec.constants), "trace", example)
            axes = {e.name: {a: d for a, d in enumerate(e.shape) if isinstance(d, str)} for e in spec.inputs}
            outs = output_names(spec) or ["output"]
            axes |= {name: {0: spec.inputs[0].shape[0]} for name in outs if isinstance(spec.inputs[0].shape[0], str)}
            torch.onnx.export(
                traced, example, str(path), input_names=names, output_names=outs, dynamic_axes=axes, dynamo=False
            )
        else:
            module, shapes = exportable(source, spec) if source.kind == "eager" else (source.model, None)
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=names,
                # No output_names: the dynamo exporter keeps the module's own value names, and one may
                # already be the spec's output name (BERT's "embedding"), an invalid duplicate. The
                # loader takes outputs in order, as the spec lists them.
                dynamic_shapes=shapes,
                dynamo=True,
                external_data=False,  # one file (under protobuf's 2 GB), so one sha256 covers the weights
                optimize=True,
                verbose=False,
            )
    exporter_log.setLevel(level)


def _program(source: Source, spec: ModelSpec, example: tuple) -> torch.export.ExportedProgram:
    """The source as an ExportedProgram: torch.export of the eager model, or the imported one."""
    if source.kind == "exported":
        return source.model
    module, shapes = exportable(source, spec)
    with torch.no_grad():
        return torch.export.export(module, example, dynamic_shapes=shapes)


def _save_aoti(source: Source, spec: ModelSpec, example: tuple, path: Path) -> dict:
    program = _program(source, spec, example)
    with torch.no_grad():
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    # Compiled for this CPU's vector instructions: the loader refuses a CPU without them.
    constants = spec.constants if source.kind == "exported" else {}
    return {"runtime": {"cpu_capability": torch.backends.cpu.get_cpu_capability()}, "call_constants": constants}


def _save_exported(source: Source, spec: ModelSpec, example: tuple, path: Path) -> dict:
    if source.kind == "exported":
        shutil.copyfile(spec.source_path, path)
        return {"call_constants": spec.constants, "method": "as imported"}  # its own signature may take them
    torch.export.save(_program(source, spec, example), str(path))
    return {"call_constants": {}}


EXPORTERS: dict[str, Format] = {
    "torchscript": Format(".pt", "torch.jit", _save_torchscript),
    "onnx": Format(".onnx", "torch.onnx.export (dynamo)", _save_onnx),
    "aoti": Format(".pt2", "torch.export + AOTInductor", _save_aoti),
    "exported": Format(".pt2", "torch.export", _save_exported),
}
