"""Length-aware batching: which rows of a batch share a model call, so that padding costs little.

A model with a named dynamic dimension besides the batch whose bounds let it differ between
requests (the text model's ``seq``) receives requests of different lengths in one TorchServe
batch, which ``collate`` pads with each input's ``pad`` value: every short row pays for the
longest. Here the rows (of all requests together) are sorted by their true length and cut into
groups, contiguous in that order, chosen by dynamic programming to minimise the calls' predicted
cost (``CostModel``, fitted from timings of the artifact itself), with at most ``max_batch`` rows
and at most ``max_waste`` padding per call. Each group is one call; the outputs go back to their
rows' places, so answers keep their order.

A batch that needs several calls can run them on ``group_threads`` threads of the worker at once
(each call on the worker's own torch threads): TorchServe gives a whole queue to the first free
worker, so without this the groups of a small batch run one after another while the other worker
idles. Under full load every core is busy anyway and the extra thread only shares them.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from handlers.schema import InputSpec

log = logging.getLogger(__name__)
MAX_WASTE = 0.25  # at most this share of a call's positions may be padding


@dataclass(frozen=True)
class CostModel:
    """Predicted seconds of one call on ``rows`` rows padded to ``length``:
    ``a + b * rows * length + c * rows * length**2`` (per call, per position, attention)."""

    a: float
    b: float
    c: float = 0.0

    def cost(self, rows: int, length: int) -> float:
        return self.a + self.b * rows * length + self.c * rows * length * length

    @classmethod
    def fit(cls, points: Sequence[tuple[int, int, float]]) -> CostModel:
        """Non-negative least squares on (rows, length, seconds), each point weighted by 1/seconds
        so that short calls (where merging pays or not) count as much as long ones."""
        x = np.array([[1.0, r * n, r * n * n] for r, n, _ in points])
        y = np.array([s for *_, s in points], dtype=float)
        w = 1.0 / np.maximum(y, 1e-9)
        best, best_err = np.zeros(3), float("inf")
        for keep in itertools.chain.from_iterable(itertools.combinations(range(3), k) for k in (1, 2, 3)):
            cols = list(keep)  # every subset of the terms: the exact NNLS solution is one of them
            coef, *_ = np.linalg.lstsq(x[:, cols] * w[:, None], y * w, rcond=None)
            if (coef < 0).any():
                continue
            full = np.zeros(3)
            full[cols] = coef
            err = float(np.sum(((x @ full - y) * w) ** 2))
            if err < best_err:
                best, best_err = full, err
        return cls(*map(float, best))


def plan_groups(
    lengths: Sequence[int], max_batch: int | None, cost: CostModel, max_waste: float = MAX_WASTE
) -> list[list[int]]:
    """Row indices per call: each group sorted by length, groups from shortest to longest.

    Minimises the summed ``cost`` of the calls over every cut of the sorted rows into runs of at
    most ``max_batch`` rows whose padding (positions beyond a row's length, over the call's
    rows x longest) is at most ``max_waste``. A single row is always a valid call.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    sizes = [int(lengths[i]) for i in order]
    n, cap = len(sizes), max_batch or len(sizes)
    prefix = list(itertools.accumulate(sizes, initial=0))
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest plan for the j shortest rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = sizes[j - 1]
        for i in range(j - 1, max(-1, j - 1 - cap), -1):
            rows = j - i
            if rows > 1 and 1 - (prefix[j] - prefix[i]) / (rows * longest) > max_waste:
                break  # adding shorter rows only adds padding
            total = best[i] + cost.cost(rows, longest)
            if total < best[j]:
                best[j], cut[j] = total, i
    groups, j = [], n
    while j:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def padded_fraction(lengths: Sequence[int], groups: list[list[int]]) -> float:
    """Share of the positions computed by these calls that are padding."""
    computed = sum(len(g) * max(lengths[i] for i in g) for g in groups)
    return 1 - sum(lengths) / computed if computed else 0.0


@dataclass
class Planner:
    """Runs one batch's requests as length-aware groups for a model with one padded dimension."""

    axes: list[int | None]  # per input: the padded dimension's axis, None if the input has none
    pads: list[float]
    max_batch: int | None
    cost: CostModel
    max_waste: float = MAX_WASTE
    shortest: int = 1  # the dimension's lower bound: no call is cut below what export verified
    pool: ThreadPoolExecutor | None = None  # runs a batch's groups at once (``group_threads`` > 1)

    @classmethod
    def for_model(cls, manifest: dict, settings: dict, call: Callable) -> Planner | None:
        """The planner for a served model, or None when its calls are not to be split: no padded
        dimension, one request per call (``batching: false``, ``reset``), or the handler setting
        ``length_batching: false``. The cost model comes from ``batch_cost: {a, b, c}`` (seconds)
        in the handler settings, else from timing ``call`` now (``calibrate``)."""
        inputs = manifest["inputs"]
        axes = cls.padded_axes(inputs)
        if axes is None or manifest.get("reset") or manifest.get("batching") is False:
            return None
        if not settings.get("length_batching", True):
            return None
        given = settings.get("batch_cost")
        cost = CostModel(**given) if given else calibrate(inputs, axes, call)
        batch = inputs[0]["shape"][0]  # the verified maximum: export checked the artifact up to it
        max_batch = InputSpec.from_dict(inputs[0]).bounds(batch)[1] if isinstance(batch, str) else None
        pads = [float(i.get("pad", 0)) for i in inputs]
        lead = next(i for i, a in zip(inputs, axes, strict=True) if a is not None)
        shortest = InputSpec.from_dict(lead).bounds(lead["shape"][axes[inputs.index(lead)]])[0]
        waste = float(settings.get("max_padding", MAX_WASTE))
        return cls(axes, pads, max_batch, cost, waste, shortest, group_pool(int(settings.get("group_threads", 1))))

    @staticmethod
    def padded_axes(inputs: list[dict]) -> list[int | None] | None:
        """Per input the axis of the padded dimension; None unless exactly one named dimension
        besides the batch may differ between requests (its bounds allow more than one size):
        ``collate`` pads such a dimension with the input's ``pad`` value (0 unless declared)."""
        names = {d for i in inputs for d in i["shape"][1:] if isinstance(d, str) and InputSpec.from_dict(i).varies(d)}
        if len(names) != 1:
            return None
        (name,) = names
        return [list(i["shape"]).index(name) if name in i["shape"] else None for i in inputs]

    def lengths(self, tensors: tuple[torch.Tensor, ...]) -> list[int]:
        """Each row's true length: one past the last position where a padded input differs from its pad."""
        used = None
        for t, axis, pad in zip(tensors, self.axes, self.pads, strict=True):
            if axis is not None:
                other = [d for d in range(1, t.dim()) if d != axis]
                mask = (t != pad).amax(dim=other) if other else t != pad  # [rows, width]
                used = mask if used is None else used | mask
        positions = torch.arange(1, used.shape[1] + 1, device=used.device)
        return torch.where(used, positions, 0).amax(dim=1).clamp(min=self.shortest).tolist()

    def run(self, batch: tuple[torch.Tensor, ...], call: Callable) -> tuple[object, dict]:
        """``call`` (the model on a tuple of tensors) on each group of ``batch`` (requests already
        padded together); returns the outputs in row order and the batch's padding figures."""
        lengths = self.lengths(batch)
        groups = plan_groups(lengths, self.max_batch, self.cost, self.max_waste)
        stats = {
            "rows": len(lengths),
            "calls": len(groups),
            "padded": padded_fraction(lengths, groups),
            "padded_one_call": padded_fraction(lengths, [list(range(len(lengths)))]),
        }
        lead = next(k for k, a in enumerate(self.axes) if a is not None)
        if len(groups) == 1 and max(lengths) == batch[lead].shape[self.axes[lead]]:
            return call(batch), stats  # nothing to cut: one call on the batch as it is
        widths = [max(lengths[i] for i in group) for group in groups]
        parts = []
        for group, width in zip(groups, widths, strict=True):
            index = torch.tensor(group, device=batch[0].device)
            part = tuple(
                t.index_select(0, index) if axis is None else t.index_select(0, index).narrow(axis, 0, width)
                for t, axis in zip(batch, self.axes, strict=True)
            )
            parts.append(part)
        if self.pool is None or len(groups) == 1:
            results = [call(part) for part in parts]
        else:  # costliest first, so that the threads finish together
            order = sorted(range(len(groups)), key=lambda k: -self.cost.cost(len(groups[k]), widths[k]))
            futures = {k: self.pool.submit(call, parts[k]) for k in order}
            results = [futures[k].result() for k in range(len(groups))]
        return scatter(list(zip(groups, results, strict=True)), len(lengths)), stats


def group_pool(threads: int) -> ThreadPoolExecutor | None:
    """Threads for running a batch's groups at once, each on as many torch threads as the worker
    (a thread's OpenMP setting is its own: set in each); None for one."""
    if threads <= 1:
        return None
    return ThreadPoolExecutor(threads, "groups", initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),))


def scatter(outputs: list[tuple[list[int], object]], rows: int):
    """Put each group's output rows back at their rows' places (a tensor, or a tuple of them)."""
    first = outputs[0][1]
    if isinstance(first, (tuple, list)):
        return tuple(scatter([(g, out[k]) for g, out in outputs], rows) for k in range(len(first)))
    # Outputs with a padded dimension of their own differ in width between groups: zero-filled.
    shape = [max(o.shape[d] for _, o in outputs) for d in range(1, first.dim())]
    result = first.new_zeros((rows, *shape))
    for group, out in outputs:
        result[(torch.tensor(group), *(slice(0, s) for s in out.shape[1:]))] = out
    return result


def calibrate(inputs: list[dict], axes: list[int | None], call: Callable, repeats: int = 2) -> CostModel:
    """Fit the cost model from timings of ``call`` on inputs of a few sizes (pad-filled tensors of
    each input's dtype; the fastest of ``repeats`` calls after one warm-up). With one torch thread
    the call runs on this thread, and its CPU time is what other processes disturb least."""
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    axis_input = next(i for i, a in zip(inputs, axes, strict=True) if a is not None)
    spec = InputSpec.from_dict(axis_input)
    low, high = spec.bounds(axis_input["shape"][axes[inputs.index(axis_input)]])
    high = high or 256
    batch_dim = axis_input["shape"][0]
    top_rows = min(4, spec.bounds(batch_dim)[1] or 4) if isinstance(batch_dim, str) else 1
    sizes = sorted({max(low, min(high, n)) for n in (8, high // 4, high // 2)})
    points = [(r, n) for r in sorted({1, top_rows}) for n in sizes if r == 1 or n < high // 2]
    timed = []
    for rows, length in points:
        tensors = tuple(_synthetic(i, a, rows, length) for i, a in zip(inputs, axes, strict=True))
        call(tensors)  # warm-up: a JIT specialises on its first calls at a shape
        times = []
        for _ in range(repeats):
            start = clock()
            call(tensors)
            times.append(clock() - start)
        timed.append((rows, length, min(times)))
    return CostModel.fit(timed)


def _synthetic(spec: dict, axis: int | None, rows: int, length: int) -> torch.Tensor:
    lowest = InputSpec.from_dict(spec).bounds
    shape = [rows if k == 0 else length if k == axis else lowest(d)[0] for k, d in enumerate(spec["shape"])]
    dtype = getattr(torch, spec["dtype"])
    # Not padding everywhere: a text model's mask of all zeros may take a different path.
    return torch.ones(shape, dtype=dtype) if "pad" in spec else torch.zeros(shape, dtype=dtype)


def report(context, stats: dict) -> None:
    """The batch's padding as a worker metric (``PaddedPercent``, a gauge per batch of more than
    one row; TorchServe lists it on /metrics only with ``model_metrics_auto_detect=true``, and
    writes it to model_metrics.log either way) and a DEBUG line."""
    log.debug(
        "%d rows in %d call(s): %.1f%% padding (%.1f%% as one call)",
        stats["rows"],
        stats["calls"],
        100 * stats["padded"],
        100 * stats["padded_one_call"],
    )
    metrics = getattr(context, "metrics", None)
    if metrics is not None and stats["rows"] > 1:
        from ts.metrics.metric_type_enum import MetricTypes

        metrics.add_metric("PaddedPercent", round(100 * stats["padded"], 2), "percent", metric_type=MetricTypes.GAUGE)
