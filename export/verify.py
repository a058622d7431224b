"""What export checks: the reference model on its own (it runs, its outputs are finite and as the
spec says, it answers the same input the same way twice, batched answers match single ones), then
the saved artifact against the reference on every case."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from handlers.base import as_tuple
from handlers.schema import InputSpec

MISSING_ARGUMENT = re.compile(r"forward\(\) (?:is )?missing (?:a )?value for argument '(\w+)'")


class ExportError(RuntimeError):
    """The artifact cannot be trusted; the message names the model, the input and the error."""


@dataclass(frozen=True)
class Case:
    """One input the artifact must reproduce the reference on: one tensor per model input."""

    label: str
    inputs: tuple[torch.Tensor, ...]

    @property
    def shape(self) -> list:
        """The shape of each input, for messages and the manifest (one input: just its shape)."""
        shapes = [list(t.shape) for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes


def call(model: Callable, inputs: tuple[torch.Tensor, ...], reset: str | None = None) -> tuple[torch.Tensor, ...]:
    """One model call, after the model's ``reset`` method if it has one declared."""
    with torch.inference_mode():
        if reset:
            getattr(model, reset)()
        return as_tuple(model(*inputs))


def explain(err: Exception) -> str:
    """A hint for the errors a user's model typically raises here."""
    if found := MISSING_ARGUMENT.search(str(err)):
        arg = found.group(1)
        return (
            f". forward() takes a non-tensor argument {arg!r} the kit does not know: declare it in spec.yaml "
            f"as `constants: {{{arg}: <value>}}` (passed by keyword at every call)"
        )
    return ""


def parity_cases(
    samples: list[Case],
    inputs: list[InputSpec],
    verify_sizes: dict,
    collate: Callable[[list[tuple[torch.Tensor, ...]]], tuple[torch.Tensor, ...]],
) -> list[Case]:
    """Every sample alone, all samples as one batch (joined by the handler's ``collate``), and that
    batch resized along each dynamic dimension to the extra sizes the spec lists."""
    batch = tuple(collate([c.inputs for c in samples]))
    cases = [*samples, Case(f"all {len(samples)} samples as one batch", batch)]
    for dim, sizes in verify_sizes.items():
        for size in sizes:
            resized = tuple(
                _resize(t, s.shape.index(dim), size) if dim in s.shape else t
                for t, s in zip(batch, inputs, strict=True)
            )
            cases.append(Case(f"the samples with {dim}={size}", resized))
    return cases


def _resize(x: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """Cut or cycle ``x`` along ``axis`` to ``size`` (real data, not zeros)."""
    repeats = math.ceil(size / x.shape[axis])
    return torch.cat([x] * repeats, dim=axis).narrow(axis, 0, size).contiguous()


def check_outputs(where: str, case: Case, got: tuple, inputs: list[InputSpec], outputs: list[dict]) -> None:
    """Raise ExportError unless ``got`` is finite and has the dtypes and shapes of the spec's ``outputs``
    (a named dimension that is also an input's must have that input's size)."""
    for i, t in enumerate(got):
        if not isinstance(t, torch.Tensor):
            raise ExportError(f"{where} output {i} is a {type(t).__name__}; forward() must return tensors")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ExportError(f"{where} output {i} holds NaN or Inf")
    if not outputs:
        return
    if len(got) != len(outputs):
        raise ExportError(f"{where} the model returned {len(got)} tensors; spec.yaml `outputs` lists {len(outputs)}")
    pairs = zip(inputs, case.inputs, strict=True)
    sizes = {d: n for spec, t in pairs for d, n in zip(spec.shape, t.shape, strict=False)}
    for t, spec in zip(got, outputs, strict=True):
        dtype, shape = str(t.dtype).removeprefix("torch."), list(t.shape)
        want = [sizes.get(d, n) if isinstance(d, str) else d for d, n in zip(spec["shape"], shape, strict=False)]
        if dtype != spec["dtype"] or len(shape) != len(spec["shape"]) or shape != want:
            raise ExportError(
                f"{where} output {spec['name']!r} is {dtype} {shape}; spec.yaml says {spec['dtype']} {spec['shape']}"
            )


def check_reference(
    name: str,
    model: Callable,
    cases: list[Case],
    inputs: list[InputSpec],
    spec_outputs: list,
    tolerance: dict,
    reset: str | None = None,
) -> list[tuple[torch.Tensor, ...]]:
    """Run the reference on every case and return its outputs. Raises ExportError if it fails, gives
    NaN/Inf or outputs unlike the spec's, or answers the first case differently when asked twice
    (state kept between calls: refused unless the spec declares a ``reset``)."""
    wants = []
    for case in cases:
        where = f"{name}: the reference model on {case.label} (input shape {case.shape})"
        try:
            wants.append(call(model, case.inputs, reset))
        except Exception as err:  # a user's model can raise anything: report it with its input
            raise ExportError(f"{where} raised {type(err).__name__}: {err}{explain(err)}") from err
        check_outputs(where, case, wants[-1], inputs, spec_outputs)
    again = call(model, cases[0].inputs, reset)
    atol, rtol = float(tolerance["atol"]), float(tolerance["rtol"])
    pairs = list(zip(again, wants[0], strict=True))
    if not all(torch.allclose(a, b, atol=atol, rtol=rtol) for a, b in pairs):
        differs = [(a.double() - b.double()).abs().max().item() for a, b in pairs]
        raise ExportError(
            f"{name}: the reference model answered {cases[0].label} differently when called again (by up to "
            f"{max(differs):.3g}): it keeps state between calls, and every request would change the next. "
            "If it has a method that clears that state, declare it in spec.yaml as `reset: <method name>` "
            "(called before each request, one request per call); otherwise make forward() stateless."
        )
    return wants


def check_batching(name: str, model: Callable, samples: list[Case], collate: Callable, tolerance: dict) -> dict:
    """Compare the reference's answers to the samples joined as one batch (as the server would) with
    its answers to each alone. Returns ``{"max_abs_error", "agrees"}`` for the manifest."""
    requests = [c.inputs for c in samples] * (2 if len(samples) == 1 else 1)  # at least two requests
    batched = call(model, tuple(collate(requests)))
    start, error, agrees = 0, 0.0, True
    for request in requests:
        size = request[0].shape[0]
        alone = call(model, request)
        for whole, single in zip(batched, alone, strict=True):
            rows = whole[start : start + size]
            if rows.shape != single.shape:
                why = f"an answer has shape {list(rows.shape)} in a batch, {list(single.shape)} alone"
                return {"max_abs_error": None, "agrees": False, "why": why}
            error = max(error, (rows.double() - single.double()).abs().max().item())
            agrees = agrees and torch.allclose(
                rows, single, atol=float(tolerance["atol"]), rtol=float(tolerance["rtol"])
            )
        start += size
    return {"max_abs_error": error, "agrees": bool(agrees)}


def verify_parity(
    name: str,
    artifact: Callable,
    cases: list[Case],
    wants: list[tuple[torch.Tensor, ...]],
    tolerance: dict,
    hint: str = "",
    reset: str | None = None,
) -> dict:
    """Check ``artifact`` against the reference outputs ``wants`` on every case, within ``tolerance``.

    Returns:
        ``{"max_abs_error", "checked": [{"input", "shape", "max_abs_error"}, ...]}`` for the manifest.

    Raises:
        ExportError: on the first case that fails, raises or differs in shape or value.
    """
    atol, rtol = float(tolerance["atol"]), float(tolerance["rtol"])
    checked = []
    for case, want in zip(cases, wants, strict=True):
        where = f"{name}: on {case.label} (input shape {case.shape})"
        try:
            got = call(artifact, case.inputs, reset)
        except Exception as err:  # Any failure of the artifact is reported with its input.
            raise ExportError(f"{where} the artifact raised {type(err).__name__}: {err}{explain(err) or hint}") from err
        if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want, strict=False)):
            shapes = [list(t.shape) for t in got], [list(t.shape) for t in want]
            raise ExportError(f"{where} the artifact returned shapes {shapes[0]}, the reference {shapes[1]}{hint}")
        error = max((g.double() - w.double()).abs().max().item() for g, w in zip(got, want, strict=True))
        if not all(torch.allclose(g, w, atol=atol, rtol=rtol) for g, w in zip(got, want, strict=True)):
            raise ExportError(
                f"{where} the artifact differs from the reference by up to {error:.3g} "
                f"(tolerance atol={atol:g}, rtol={rtol:g}){hint}"
            )
        checked.append({"input": case.label, "shape": case.shape, "max_abs_error": error})
    return {"max_abs_error": max(c["max_abs_error"] for c in checked), "checked": checked}
