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
    """One input the artifact must reproduce the eager model on."""

    label: str
    tensor: torch.Tensor


def parity_cases(samples: list[Case], shape: list, verify_sizes: dict) -> list[Case]:
    """Every sample alone, all samples as one batch, and that batch resized along each dynamic
    dimension to the extra sizes the spec lists (e.g. other batch sizes, other sequence lengths)."""
    cases = list(samples)
    if len({tuple(c.tensor.shape[1:]) for c in samples}) != 1:
        return cases  # samples differ beyond the batch dimension: they cannot form one batch
    batch = torch.cat([c.tensor for c in samples])
    cases.append(Case(f"all {len(samples)} samples as one batch", batch))
    for dim, sizes in verify_sizes.items():
        axis = shape.index(dim)
        for size in sizes:
            cases.append(Case(f"the samples with {dim}={size}", _resize(batch, axis, size)))
    return cases


def _resize(x: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """Cut or cycle ``x`` along ``axis`` to ``size`` (real data, not zeros)."""
    repeats = math.ceil(size / x.shape[axis])
    return torch.cat([x] * repeats, dim=axis).narrow(axis, 0, size).contiguous()


def verify_parity(
    name: str, artifact: Callable, eager: Callable, cases: list[Case], tolerance: dict, hint: str = ""
) -> dict:
    """Check ``artifact(x)`` against ``eager(x)`` on every case, within ``tolerance``.

    Returns:
        ``{"max_abs_error", "checked": [{"input", "shape", "max_abs_error"}, ...]}`` for the manifest.

    Raises:
        ExportError: on the first case that fails, raises or differs in shape or value.
    """
    atol, rtol = float(tolerance["atol"]), float(tolerance["rtol"])
    checked = []
    for case in cases:
        where = f"{name}: on {case.label} (input shape {list(case.tensor.shape)})"
        with torch.inference_mode():
            want = eager(case.tensor)
            try:
                got = artifact(case.tensor)
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
        checked.append({"input": case.label, "shape": list(case.tensor.shape), "max_abs_error": error})
    return {"max_abs_error": max(c["max_abs_error"] for c in checked), "checked": checked}
