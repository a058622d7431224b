"""What a model takes and returns, as its manifest declares it: the schema that export, the handlers
and batching all read (``export/spec.py`` writes it from spec.yaml; archives ship this file).

A manifest's ``inputs`` are one ``InputSpec`` each (name, dtype, shape with named dynamic dimensions
and their bounds, padding value); its ``outputs`` are ``{name, dtype, shape}`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from handlers.errors import InvalidInput

# The deepest nesting a request's array may have (REST JSON, v2 "data") and the most dimensions of a
# v2 "shape": numpy's own limit on dimensions, checked before numpy is handed the data.
MAX_DEPTH = 32


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, dtype and shape, where named dimensions are dynamic.

    ``shape`` mixes ints (fixed) and names (dynamic, e.g. ``"batch"``); ``dims`` bounds the
    dynamic ones: ``{"batch": {"min": 1, "max": 64}}``. ``pad`` fills the dynamic dimensions
    when requests of different sizes share a batch (e.g. the padding token id).
    """

    name: str
    dtype: str
    shape: tuple
    dims: dict
    pad: float = 0

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        """Build from the manifest's ``inputs[i]`` entry."""
        return cls(d["name"], d["dtype"], tuple(d["shape"]), dict(d.get("dims", {})), d.get("pad", 0))

    def bounds(self, dim: str | int) -> tuple[int, int | None]:
        """(min, max) of a dimension: a fixed one's size both; a named one's from ``dims`` (min 1 and
        max None, unbounded, unless declared)."""
        if isinstance(dim, int):
            return dim, dim
        bounds = self.dims.get(dim, {})
        return int(bounds.get("min", 1)), None if bounds.get("max") is None else int(bounds["max"])

    def varies(self, dim: str | int) -> bool:
        """Whether requests may differ in this dimension (its bounds allow more than one size)."""
        low, high = self.bounds(dim)
        return high is None or low != high

    def outside(self, shape) -> int | None:
        """The axis of the first dimension of ``shape`` (this input's rank) outside its bounds, or None."""
        for axis, (size, dim) in enumerate(zip(shape, self.shape, strict=True)):
            low, high = self.bounds(dim)
            if size < low or (high is not None and size > high):
                return axis
        return None

    def max_elements(self, unbounded: int) -> int:
        """The most elements a tensor of this spec holds (``unbounded`` if a dimension has no maximum)."""
        count = 1
        for size in self.shape:
            most = self.bounds(size)[1]
            if most is None:
                return unbounded
            count *= most
        return count

    def describe(self) -> str:
        """The spec as users read it: ``float32 tensor of shape [batch, 1, 8, 8]``."""
        return f"{self.dtype} tensor of shape [{', '.join(str(s) for s in self.shape)}]"

    def check(self, x: torch.Tensor) -> None:
        """Raise InvalidInput unless ``x`` has this dtype, rank, fixed sizes and dynamic bounds; the
        message names the input (a model may take several)."""
        expected = f'input "{self.name}": expected {self.describe()}'
        if str(x.dtype).removeprefix("torch.") != self.dtype:
            raise InvalidInput(f"{expected}, got dtype {str(x.dtype).removeprefix('torch.')}")
        if x.dim() != len(self.shape):
            raise InvalidInput(f"{expected}, got shape {list(x.shape)}")
        if (axis := self.outside(x.shape)) is not None:
            want = self.shape[axis]
            if isinstance(want, int):
                raise InvalidInput(f"{expected}, got shape {list(x.shape)}")
            low, high = self.bounds(want)
            limit = f"= {low}" if low == high else f"between {low} and {high}" if high else f">= {low}"
            raise InvalidInput(f"{expected} with {want} {limit}, got shape {list(x.shape)}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise InvalidInput(f"{expected} of finite numbers, got NaN or Inf")


def input_specs(manifest: dict) -> list[InputSpec]:
    """Every model input the manifest lists, in the order the model takes them."""
    return [InputSpec.from_dict(d) for d in manifest["inputs"]]
