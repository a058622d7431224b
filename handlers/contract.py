"""What the base makes of a decoded request before and after the model: the contract's rules that a
handler cannot get wrong because it never writes them.

- ``Decoded``: one request's input tensors (instances in the first dimension), whether it was one
  instance, and ``info`` (optional: one entry per instance, or one value for all of them).
- ``per_instance``: ``info`` as exactly one entry per instance (the base calls it, not the handler).
- ``numeric_inputs``: v2 numeric tensors → the manifest's inputs, by name, checked against each spec.
- ``joined``: several decoded parts (v2 BYTES elements, REST files) as one Decoded.
- ``unsupported``: the one 415 message shape: the content type received, then what is expected.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from handlers.errors import InvalidInput, UnsupportedMediaType


class Decoded(NamedTuple):
    """One request's input: one tensor per model input, in the manifest's order, whose first
    dimension holds the request's instances."""

    inputs: tuple[torch.Tensor, ...]
    single: bool  # the request sent one instance (answer with an object, not a list)
    info: Any = None  # per instance (a list as long as the batch) or one value for every instance


def instances(decoded: Decoded) -> int:
    """How many instances a decoded request holds (its first input's first dimension)."""
    return int(decoded.inputs[0].shape[0]) if decoded.inputs else 0


def per_instance(decoded: Decoded) -> list:
    """``info`` as one entry per instance: None → Nones, a list as long as the batch → itself,
    anything else → that value for every instance."""
    count, info = instances(decoded), decoded.info
    if isinstance(info, list) and len(info) == count:
        return info
    return [info] * count


def with_info(decoded: Decoded) -> Decoded:
    """The same request with ``info`` made per instance."""
    return decoded._replace(info=per_instance(decoded))


def unsupported(content_type: str, message: str) -> UnsupportedMediaType:
    """A 415 whose message names the content type received first (the rule README states)."""
    received = f"content type {content_type!r}" if content_type else "a body without a content type"
    head = f"{received} is not supported"
    return UnsupportedMediaType(message if message.startswith(head) else f"{head}; {message}")


def numeric_tensor(spec, tensor) -> torch.Tensor:
    """A v2 numeric tensor as the input ``spec``'s dtype (integers for integer inputs, booleans
    for boolean ones); the shape is checked later, with the rest of the request."""
    if tensor.datatype == "BYTES":
        raise InvalidInput(f"input {spec.name!r} must be a numeric tensor: {spec.describe()}")
    kind, want = tensor.data.dtype.kind, torch.empty(0, dtype=getattr(torch, spec.dtype)).numpy().dtype
    if (want.kind in "iu" and kind not in "iu") or (want.kind == "b" and kind != "b"):
        raise InvalidInput(f"input {spec.name!r} must be {spec.describe()}; got {tensor.datatype}")
    if tensor.data.ndim == 0:  # a v2 tensor of shape []: no batch dimension to count
        raise InvalidInput(f'input "{spec.name}": expected {spec.describe()}, got a scalar (shape [])')
    with np.errstate(over="ignore", invalid="ignore"):  # beyond the dtype: refused by the spec check
        return torch.from_numpy(np.ascontiguousarray(tensor.data, dtype=want))


def same_batch(specs: list, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The client's tensors, unless their first (batch) dimensions differ: the client's error here
    (the base's check_inputs would call it a handler bug)."""
    for spec, tensor in zip(specs, tensors, strict=True):
        if tensor.dim() == 0:
            raise InvalidInput(f'input "{spec.name}": expected {spec.describe()}, got a scalar (shape [])')
    sizes = {s.name: t.shape[0] for s, t in zip(specs, tensors, strict=True)}
    if len(set(sizes.values())) > 1:
        raise InvalidInput(
            f"the inputs' first dimensions differ ({', '.join(f'{k}: {v}' for k, v in sizes.items())}); "
            "every input must hold the same number of instances"
        )
    return tuple(tensors)


def joined(parts: list[Decoded], collate, single: bool = False) -> Decoded:
    """Several decoded parts (each already checked) as one request, instances in order."""
    info = [x for part in parts for x in per_instance(part)]
    return Decoded(collate([p.inputs for p in parts]), single, info)


def all_finite(outputs: tuple) -> bool:
    """Whether every floating-point output tensor holds only finite numbers."""
    return all(bool(torch.isfinite(o).all()) for o in outputs if isinstance(o, torch.Tensor) and o.is_floating_point())


def pad_and_cat(tensors: list[torch.Tensor], value: float = 0) -> torch.Tensor:
    """Concatenate along the first dimension, padding every other dimension to the largest size."""
    if len(tensors) == 1:
        return tensors[0]
    if len({t.shape[1:] for t in tensors}) == 1:
        return torch.cat(tensors)
    widths = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    out = tensors[0].new_full((sum(t.shape[0] for t in tensors), *widths), value)
    start = 0
    for t in tensors:
        out[(slice(start, start + t.shape[0]), *(slice(0, s) for s in t.shape[1:]))] = t
        start += t.shape[0]
    return out


def output_specs(manifest: dict) -> list[dict]:
    """The model's outputs as the manifest lists them (``{name, dtype, shape}``); one float32
    ``output`` for manifests written before outputs were declared."""
    return manifest.get("outputs") or [{"name": "output", "dtype": "float32"}]


def as_tuple(output: Any) -> tuple[torch.Tensor, ...]:
    """A model's output (a tensor, or a tuple or list of them) as a tuple."""
    return tuple(output) if isinstance(output, (tuple, list)) else (output,)
