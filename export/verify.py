"""Parity between an exported artifact and the eager model it came from."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


class ExportError(RuntimeError):
    """The artifact cannot be trusted; the message names the model, the input and the error."""


@dataclass(frozen=True)
class Case:
    """One input the artifact must reproduce the eager model on: a tensor, or a tuple of tensors
    (one per model input) for a model with several inputs."""

    label: str
    inputs: torch.Tensor | tuple[torch.Tensor, ...]

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The inputs as a tuple, one tensor per model input."""
        return self.inputs if isinstance(self.inputs, tuple) else (self.inputs,)

    @property
    def tensor(self) -> torch.Tensor:
        """The input of a one-input model."""
        (only,) = self.tensors
        return only

    @property
    def shape(self) -> list:
        """The shape of each input, for messages and the manifest (one input: just its shape)."""
        shapes = [list(t.shape) for t in self.tensors]
        return shapes[0] if len(shapes) == 1 else shapes


def _concatenate(requests: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.cat(parts) for parts in zip(*requests, strict=True))


def parity_cases(
    samples: list[Case],
    shapes: list,
    verify_sizes: dict,
    collate: Callable[[list[tuple[torch.Tensor, ...]]], tuple[torch.Tensor, ...]] | None = None,
) -> list[Case]:
    """Every sample alone, all samples as one batch, and that batch resized along each dynamic
    dimension to the extra sizes the spec lists (e.g. other batch sizes, other sequence lengths).

    Args:
        samples: the committed samples, decoded.
        shapes: the shape of each input (names for dynamic dimensions); one shape for one input.
        verify_sizes: dynamic dimension name -> extra sizes.
        collate: joins samples into one batch, as the handler does (padding sequences, say);
            without it, samples that differ beyond the batch dimension are not joined.
    """
    shapes = [shapes] if shapes and not isinstance(shapes[0], (list, tuple)) else shapes
    cases = list(samples)
    if collate is None:
        if len({tuple(t.shape[1:] for t in c.tensors) for c in samples}) != 1:
            return cases  # samples differ beyond the batch dimension: they cannot form one batch
        collate = _concatenate
    batch = tuple(collate([c.tensors for c in samples]))
    cases.append(Case(f"all {len(samples)} samples as one batch", _unwrap(batch)))
    for dim, sizes in verify_sizes.items():
        for size in sizes:
            resized = tuple(
                _resize(t, list(s).index(dim), size) if dim in s else t for t, s in zip(batch, shapes, strict=True)
            )
            cases.append(Case(f"the samples with {dim}={size}", _unwrap(resized)))
    return cases


def _unwrap(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    return tensors[0] if len(tensors) == 1 else tensors


def _resize(x: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """Cut or cycle ``x`` along ``axis`` to ``size`` (real data, not zeros)."""
    repeats = math.ceil(size / x.shape[axis])
    return torch.cat([x] * repeats, dim=axis).narrow(axis, 0, size).contiguous()


def verify_parity(
    name: str, artifact: Callable, eager: Callable, cases: list[Case], tolerance: dict, hint: str = ""
) -> dict:
    """Check ``artifact(*inputs)`` against ``eager(*inputs)`` on every case, within ``tolerance``.

    Returns:
        ``{"max_abs_error", "checked": [{"input", "shape", "max_abs_error"}, ...]}`` for the manifest.

    Raises:
        ExportError: on the first case that fails, raises or differs in shape or value.
    """
    atol, rtol = float(tolerance["atol"]), float(tolerance["rtol"])
    checked = []
    for case in cases:
        where = f"{name}: on {case.label} (input shape {case.shape})"
        with torch.inference_mode():
            want = eager(*case.tensors)
            try:
                got = artifact(*case.tensors)
            except Exception as err:  # Any failure of the artifact is reported with its input.
                raise ExportError(f"{where} the artifact raised {type(err).__name__}: {err}{hint}") from err
        if got.shape != want.shape:
            raise ExportError(f"{where} the artifact returned shape {list(got.shape)}, eager {list(want.shape)}{hint}")
        error = (got - want).abs().max().item()
        if not torch.allclose(got, want, atol=atol, rtol=rtol):
            raise ExportError(
                f"{where} the artifact differs from eager by up to {error:.3g} "
                f"(tolerance atol={atol:g}, rtol={rtol:g}){hint}"
            )
        checked.append({"input": case.label, "shape": case.shape, "max_abs_error": error})
    return {"max_abs_error": max(c["max_abs_error"] for c in checked), "checked": checked}
