"""The generic handler of tensor models (a model folder without ``handler.py``), driven by the
manifest's ``inputs`` and ``outputs``.

REST: ``application/json`` ``{"inputs": {<input name>: nested list, ...}}``, or for a one-input
model ``{<input name>: nested list}``. A value with every dimension of the input's shape (the batch
dimension first) is a batch and is answered with a list; a value without the batch dimension is
one instance and is answered with one object. Every input of a request must be the same form.
Answer per instance: ``{<output name>: nested list, ...}``.
v2: one tensor per model input, by name, with the batch dimension; one v2 output per model output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from handlers.base import Decoded, ManifestHandler, output_specs
from handlers.errors import InvalidInput, MalformedRequest, UnsupportedMediaType, excerpt
from handlers.inputs import json_kind, nested_rank, numeric_array, parse_json
from handlers.oip import V2Request


class TensorHandler(ManifestHandler):
    """Named nested lists in, named nested lists out (see the module's docstring)."""

    def preprocess(self, body: Any, content_type: str) -> Decoded:
        """A JSON object of named nested lists → one tensor per model input."""
        if content_type != "application/json":
            raise UnsupportedMediaType(
                f"content type {content_type!r} is not supported; send application/json {self.example()}"
            )
        doc, names = parse_json(body), {s.name for s in self.input_specs}
        if isinstance(doc, dict) and isinstance(doc.get("inputs"), dict):
            values = doc["inputs"]
        else:  # the short form of a one-input model: {<its name>: nested list}
            values = doc if isinstance(doc, dict) and len(names) == 1 else None
        if not isinstance(values, dict) or set(values) != names:
            got = f"keys {excerpt(list(values)[:5])}" if isinstance(values, dict) else json_kind(doc)
            raise MalformedRequest(f"expected {self.example()}; got {got}")
        forms = {nested_rank(values[s.name]) == len(s.shape) - 1 for s in self.input_specs}
        if len(forms) != 1:
            raise InvalidInput("every input must be one instance (no batch dimension) or all a batch, not a mix")
        single = forms.pop()
        tensors = []
        for spec in self.input_specs:
            value = [values[spec.name]] if single else values[spec.name]
            what = f"a nested list of {spec.describe()} (or one instance without the first dimension)"
            tensors.append(torch.from_numpy(numeric_array(value, spec.name, what, spec.dtype, self.max_instances())))
        return Decoded(self.same_batch(tensors), single)

    def preprocess_v2(self, request: V2Request) -> Decoded:
        """One v2 tensor per model input, matched by name, each with the batch dimension."""
        unknown = set(request.inputs) - {s.name for s in self.input_specs}
        if unknown:
            raise InvalidInput(f"unknown input tensor(s); this model takes {[s.name for s in self.input_specs]}")
        tensors = []
        for spec in self.input_specs:
            tensor = self.v2_input(request, spec.name)
            if tensor.datatype == "BYTES":
                raise InvalidInput(f"input {spec.name!r} must be a numeric tensor: {spec.describe()}")
            kind, want = tensor.data.dtype.kind, torch.empty(0, dtype=getattr(torch, spec.dtype)).numpy().dtype
            if (want.kind in "iu" and kind not in "iu") or (want.kind == "b" and kind != "b"):
                raise InvalidInput(f"input {spec.name!r} must be {spec.describe()}; got {tensor.datatype}")
            with np.errstate(over="ignore", invalid="ignore"):
                tensors.append(torch.from_numpy(np.ascontiguousarray(tensor.data, dtype=want)))
        return Decoded(self.same_batch(tensors), False)

    def same_batch(self, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The client's tensors, unless their first (batch) dimensions differ: the client's error here
        (the base's check_inputs would call it a handler bug)."""
        for spec, tensor in zip(self.input_specs, tensors, strict=True):
            if tensor.dim() == 0:  # a v2 tensor of shape []: no batch dimension to count
                raise InvalidInput(f'input "{spec.name}": expected {spec.describe()}, got a scalar (shape [])')
        sizes = {s.name: t.shape[0] for s, t in zip(self.input_specs, tensors, strict=True)}
        if len(set(sizes.values())) > 1:
            raise InvalidInput(
                f"the inputs' first dimensions differ ({', '.join(f'{k}: {v}' for k, v in sizes.items())}); "
                "every input must hold the same number of instances"
            )
        return tuple(tensors)

    def postprocess(self, outputs: tuple[torch.Tensor, ...], decoded: Decoded) -> list:
        """Per instance: each output's row as a nested list, under the output's name."""
        names = [o["name"] for o in output_specs(self.manifest)]
        if len(names) != len(outputs):
            names = [f"output_{i}" for i in range(len(outputs))] if len(outputs) > 1 else names[:1]
        rows = [o.tolist() for o in outputs]
        return [{name: rows[i][n] for i, name in enumerate(names)} for n in range(outputs[0].shape[0])]

    def example(self) -> str:
        """What a request looks like, for error messages."""
        named = ", ".join(f'"{s.name}": <{s.describe()}>' for s in self.input_specs)
        return f"{{{named}}}" if len(self.input_specs) == 1 else f'{{"inputs": {{{named}}}}}'
