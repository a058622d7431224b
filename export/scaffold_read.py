"""What an artifact file says about its inputs, for ``make new-model`` (export/scaffold.py).

One reader per format: ONNX (names, dtypes, shapes), a torch.export program (input specs and ranges),
TorchScript (argument names and types, not shapes). ``read`` turns a file no reader can open into
``Unusable``: one sentence saying what is wrong and what to do, never a traceback.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from export.paths import SOURCE_FORMATS

DEFAULT_BOUNDS = {"min": 1, "max": 64}
# A dimension name that is plain in YAML and in Python: not "?", "-1", "N/A", "s0 + 1", "yes", "null".
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none"}


class Unusable(Exception):
    """A file `make new-model` cannot scaffold from; the message says what to do instead."""


def dim_name(axis: int, given: str | None, taken: set[str]) -> str:
    """The spec's name for a dynamic dimension: ``batch`` for axis 0, the file's own name when it is a
    plain word, else ``dim<axis>`` (made unique: unnamed dimensions are not tied to one another)."""
    if axis == 0:
        return "batch"
    if given and PLAIN_NAME.fullmatch(given) and given.lower() not in YAML_WORDS and given != "batch":
        return given
    name, n = f"dim{axis}", 1
    while name in taken:
        name, n = f"dim{axis}_{n}", n + 1
    return name


def onnx_inputs(path: Path) -> tuple[list[dict], dict]:
    """Names, dtypes and shapes of an ONNX graph's inputs (initializers are weights, not inputs).
    A dimension without a positive value is dynamic, whatever the file calls it (a name, ``?``, none)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    inputs, names, taken = [], {}, set()  # names: the file's symbol -> the spec's name (shared symbols stay shared)
    for value in (v for v in graph.input if v.name not in weights):
        tensor = value.type.tensor_type
        shape = []
        for axis, d in enumerate(tensor.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
                continue
            symbol = d.dim_param if PLAIN_NAME.fullmatch(d.dim_param or "") else None
            name = "batch" if axis == 0 else names.get(symbol) or dim_name(axis, symbol, taken)
            if symbol:
                names.setdefault(symbol, name)
            taken.add(name)
            shape.append(name)
        dims = {d: dict(DEFAULT_BOUNDS) for d in shape if isinstance(d, str)}
        dtype = str(tensor_dtype_to_np_dtype(tensor.elem_type))
        inputs.append({"name": value.name, "dtype": dtype, "shape": shape, "dims": dims})
    return inputs, {}


def torchscript_inputs(path: Path) -> tuple[list[dict], dict]:
    """Argument names and types of a TorchScript forward(); shapes are not recorded in the file."""
    module = torch.jit.load(str(path), map_location="cpu")
    inputs, constants = [], {}
    for arg in module.forward.schema.arguments[1:]:  # [0] is self
        if str(arg.type) == "Tensor":
            inputs.append({"name": arg.name, "dtype": "float32", "shape": ["batch", "CHOOSE"], "guessed": True})
        else:
            constants[arg.name] = arg.default_value if arg.has_default_value() else f"CHOOSE ({arg.type})"
    return inputs, constants


def exported_inputs(path: Path) -> tuple[list[dict], dict]:
    """An ExportedProgram's user inputs: names, dtypes, shapes, named dynamic dimensions and ranges."""
    logger = logging.getLogger("torch.export")  # it logs a traceback of its own before raising
    level, logger.level = logger.level, logging.CRITICAL
    try:
        program = torch.export.load(str(path))
    finally:
        logger.setLevel(level)
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    ranges = {str(k): v for k, v in program.range_constraints.items()}
    inputs, constants, names, bounds = [], {}, {}, {}
    for spec in program.graph_signature.input_specs:
        if spec.kind.name != "USER_INPUT":
            continue
        if not hasattr(spec.arg, "name") or spec.arg.name not in nodes:
            constants[f"arg{len(inputs) + len(constants)}"] = getattr(spec.arg, "value", "CHOOSE")
            continue
        val = nodes[spec.arg.name].meta["val"]
        shape = []
        for axis, size in enumerate(val.shape):
            if isinstance(size, int):
                shape.append(size)
                continue
            name = names.setdefault(str(size), dim_name(axis, None, set(names.values())))
            shape.append(name)
            low, high = ranges[str(size)].lower, ranges[str(size)].upper
            bounds[name] = {"min": int(low), "max": int(high) if high.is_finite else DEFAULT_BOUNDS["max"]}
        dims = {d: bounds[d] for d in shape if isinstance(d, str)}
        inputs.append(
            {"name": spec.arg.name, "dtype": str(val.dtype).removeprefix("torch."), "shape": shape, "dims": dims}
        )
    return inputs, constants


def torchscript_reset(path: Path) -> str | None:
    """An exported method of a TorchScript file that looks like it clears the model's state
    (``reset``, ``reset_state``, ...: named reset*, taking no argument), or None."""
    module = torch.jit.load(str(path), map_location="cpu")
    for name in sorted(module._c._method_names()):  # every compiled method: forward and the exported ones
        if name.lower().startswith("reset") and len(getattr(module, name).schema.arguments) == 1:
            return name
    return None


READERS = {"onnx": onnx_inputs, "torchscript": torchscript_inputs, "exported": exported_inputs}
ADVICE = {
    "onnx": "export it again with torch.onnx.export (or check that it was copied whole)",
    "torchscript": "save it with torch.jit.script(model).save(path); for a state_dict or a pickled module, "
    "run `make new-model NAME=<name>` without FROM and load it in model.py's build()",
    "exported": "save it with torch.export.save(torch.export.export(model, example_inputs), path)",
}


def read(path: Path) -> tuple[str, list[dict], dict, str | None]:
    """(format, inputs, constants, reset method) of an artifact file, or ``Unusable`` saying why not."""
    fmt = SOURCE_FORMATS.get(path.suffix)
    if fmt is None:
        raise Unusable(
            f"{path}: not a model file this kit imports; FROM takes a file ending in {sorted(SOURCE_FORMATS)}"
        )
    if not path.is_file():
        raise Unusable(f"{path}: no such file; FROM takes the path of a model file")
    try:
        empty = path.stat().st_size == 0
        path.open("rb").close()
    except OSError as error:
        raise Unusable(f"{path}: cannot be read ({error.strerror}); make it readable and run again") from error
    if empty:
        raise Unusable(f"{path}: the file is empty; {ADVICE[fmt]}")
    try:
        inputs, constants = READERS[fmt](path)
        reset = torchscript_reset(path) if fmt == "torchscript" else None
    except Exception as error:  # whatever the runtime raises on a file it cannot parse
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0][:160]
        raise Unusable(f"{path}: not a readable {fmt} file ({first}); {ADVICE[fmt]}") from error
    if not inputs:
        raise Unusable(f"{path}: the model takes no tensor input; the kit serves models that take tensors")
    return fmt, inputs, constants, reset
