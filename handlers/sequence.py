"""Sequence models: one request's input cut into fixed windows along its time axis, the model called
on them in order, the outputs joined; and per-window scores turned into timed segments.

The spec's ``sequence: {input: x, window: 512, combine: concat}`` wraps the artifact in ``Windowed``
(export verifies the wrapped call, the handler serves it): the model's ``reset`` (if declared) is
called once, then the model on window 1, 2, ... of ``x`` (axis 1, after the batch); the other inputs
go unchanged to every call. A last partial window is filled with ``x``'s ``pad`` value. ``combine``:
``concat`` joins each output along axis 1 (an output of shape [batch] per window becomes [batch,
windows]); ``mean``, ``max`` or ``last`` reduce over the windows instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

COMBINE = ("concat", "mean", "max", "last")


def check_sequence(value, input_names: list[str]) -> str | None:
    """Why a spec's ``sequence`` value is wrong (None when it is fine)."""
    if not isinstance(value, dict) or set(value) - {"input", "window", "combine"}:
        return "`sequence` must be {input: <input name>, window: <samples>, combine: concat|mean|max|last}"
    if value.get("input") not in input_names:
        return f"`sequence.input` must name one of the inputs {input_names}; got {value.get('input')!r}"
    window = value.get("window")
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        return f"`sequence.window` must be a positive whole number of steps; got {window!r}"
    if value.get("combine", "concat") not in COMBINE:
        return f"`sequence.combine` must be one of {list(COMBINE)}; got {value.get('combine')!r}"
    return None


class Windowed:
    """The model called window by window over one input (see the module's docstring). Attributes of
    the model (its ``reset`` method) stay reachable, so callers that reset it still can."""

    def __init__(self, model: Callable, index: int, window: int, combine: str = "concat", pad: float = 0, reset=None):
        self.model, self.index, self.window, self.combine, self.pad = model, index, window, combine, pad
        self.reset = reset  # the model's reset method name: called at the start of every windowed call

    @classmethod
    def wrap(cls, model: Callable, manifest: dict) -> Callable:
        """``model`` wrapped per the manifest's ``sequence`` (the model itself when there is none)."""
        sequence = manifest.get("sequence")
        if not sequence:
            return model
        names = [i["name"] for i in manifest["inputs"]]
        index = names.index(sequence["input"])
        pad = float(manifest["inputs"][index].get("pad", 0))
        return cls(model, index, int(sequence["window"]), sequence.get("combine", "concat"), pad, manifest.get("reset"))

    def __call__(self, *tensors: torch.Tensor):
        if self.reset:
            getattr(self.model, self.reset)()
        outputs = [as_tuple(self.model(*window)) for window in windows(tensors, self.index, self.window, self.pad)]
        joined = tuple(combine([o[k] for o in outputs], self.combine) for k in range(len(outputs[0])))
        return joined[0] if len(joined) == 1 else joined

    def __getattr__(self, name: str):
        if name == "model":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)


def windows(tensors: tuple[torch.Tensor, ...], index: int, window: int, pad: float = 0):
    """The call arguments per window: ``tensors[index]`` cut along axis 1 into ``window`` steps (the
    last filled with ``pad``), the other tensors as they are."""
    x = tensors[index]
    steps = x.shape[1]
    count = max(1, -(-steps // window))
    short = count * window - steps
    if short:
        filler = torch.full((x.shape[0], short, *x.shape[2:]), pad, dtype=x.dtype)
        x = torch.cat([x, filler], dim=1)
    for k in range(count):
        part = x.narrow(1, k * window, window)
        yield tuple(part if i == index else t for i, t in enumerate(tensors))


def combine(parts: list[torch.Tensor], how: str) -> torch.Tensor:
    """One output's per-window values joined over the windows (axis 1)."""
    if how == "concat":
        return torch.stack(parts, dim=1) if parts[0].dim() == 1 else torch.cat(parts, dim=1)
    stacked = torch.stack(parts, dim=1)
    if how == "mean":
        return stacked.mean(dim=1) if stacked.is_floating_point() else stacked.float().mean(dim=1)
    if how == "max":
        return stacked.amax(dim=1)
    return parts[-1]


def as_tuple(result) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float


def segments(
    scores, frame: float, threshold: float, min_duration: float = 0.0, duration: float | None = None
) -> list[Segment]:
    """Runs of consecutive frames whose score is at least ``threshold``, as (start, end) seconds.

    Frame k covers [k * frame, (k + 1) * frame); ``duration`` (the clip's true length) cuts the last
    segment where a padded last window would stretch it; runs shorter than ``min_duration`` are dropped.
    """
    found, start = [], None
    values = [float(s) for s in scores]
    for k, score in enumerate([*values, float("-inf")]):  # a sentinel closes a run at the end
        if score >= threshold and start is None:
            start = k
        elif score < threshold and start is not None:
            begin, end = start * frame, k * frame
            if duration is not None:
                end = min(end, duration)
            if end - begin >= min_duration and end > begin:
                found.append(Segment(round(begin, 6), round(end, 6)))
            start = None
    return found
