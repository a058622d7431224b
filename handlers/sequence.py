"""Sequence models: one request's input cut into fixed windows along its time axis, the model called
on them in order, the outputs joined; and per-window scores turned into timed segments.

The spec's ``sequence: {input: x, window: 512, combine: concat}`` makes ``Sequence``: per request,
after the model's ``reset`` (if declared, called once by the caller), the model on window 1, 2, ...
of ``x`` (axis 1, after the batch); the other inputs go unchanged to every call. A last partial
window is filled with ``x``'s ``pad`` value. ``combine``: ``concat`` joins each output along axis 1
(an output of shape [batch] per window becomes [batch, windows]); ``mean``, ``max`` or ``last``
reduce over the windows instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

COMBINE = ("concat", "mean", "max", "last")


class Sequence:
    """The ``sequence`` key of a spec: one request's model calls, window by window (see the module's
    docstring). The caller resets the model's state before calling this, once per request."""

    @classmethod
    def check(cls, options: dict, model) -> dict:
        """Validated options; ValueError naming the option and what is allowed."""
        names = [s.name for s in model.inputs]
        if set(options) - {"input", "window", "combine"}:
            unknown = sorted(set(options) - {"input", "window", "combine"})
            raise ValueError(f"sequence: unknown option(s) {unknown}; known: combine, input, window")
        if options.get("input") not in names:
            raise ValueError(f"sequence.input must name one of the inputs {names}; got {options.get('input')!r}")
        spec = model.inputs[names.index(options["input"])]
        if len(spec.shape) < 2:
            raise ValueError(f"sequence.input {spec.name!r} needs a time axis after the batch: [batch, steps, ...]")
        window = options.get("window")
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"sequence.window must be a positive whole number of steps; got {window!r}")
        combine = options.get("combine", "concat")
        if combine not in COMBINE:
            raise ValueError(f"sequence.combine must be one of {list(COMBINE)}; got {combine!r}")
        return {"input": spec.name, "window": window, "combine": combine}

    def __init__(self, options: dict, model):
        names = [s.name for s in model.inputs]
        self.index = names.index(options["input"])
        self.window, self.combine = int(options["window"]), options.get("combine", "concat")
        self.pad = float(model.inputs[self.index].pad)

    def __call__(self, inputs: tuple[torch.Tensor, ...], call: Callable) -> tuple[torch.Tensor, ...]:
        """``call`` (one model call: a tuple of tensors in, a tuple out) on each window in order."""
        outputs = [as_tuple(call(args)) for args in windows(inputs, self.index, self.window, self.pad)]
        return tuple(combine([o[k] for o in outputs], self.combine) for k in range(len(outputs[0])))


class Looped:
    """A model called as the server calls it under a ``sequence``: one call per window, joined (for
    export, which checks the artifact as it is served). Its other attributes (``reset``) are the model's."""

    def __init__(self, model: Callable, runner: Sequence):
        self.model, self.runner = model, runner

    def __call__(self, *tensors: torch.Tensor):
        joined = self.runner(tensors, lambda args: as_tuple(self.model(*args)))
        return joined[0] if len(joined) == 1 else joined

    def __getattr__(self, name: str):
        if name in ("model", "runner"):  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)


def looped(model: Callable, runner: Sequence | None) -> Callable:
    """``model`` called window by window when a sequence is declared, else ``model`` itself."""
    return model if runner is None else Looped(model, runner)


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
