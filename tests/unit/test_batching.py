"""Length-aware batching (handlers/batching.py), checked against brute force and independent sums.

The planner's answers are compared with exhaustive searches written here (every partition of the
rows, every cut of the sorted rows); its row lengths with a plain loop; its grouped calls with
each request run alone through the eager model of every model folder that declares a padded
dimension.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
import torch

from client.answers import difference
from export.spec import load_spec
from handlers.base import pad_and_cat
from handlers.batching import CostModel, Planner, calibrate, group_pool, padded_fraction, plan_groups
from tests.conftest import MODELS
from tests.support import make_context, run_handler, samples

COSTS = [CostModel(0, 1), CostModel(5, 0.1), CostModel(50, 1, 0.01), CostModel(0.5, 0, 0.1), CostModel(2, 0.3, 0)]


def partitions(items: list[int]):
    """Every set partition of ``items`` (Bell number many: keep ``items`` short)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first, *part[i]]] + part[i + 1 :]
        yield [[first], *part]


def cost_of(groups, lengths, model: CostModel) -> float:
    return sum(
        model.a + model.b * len(g) * max(lengths[i] for i in g) + model.c * len(g) * max(lengths[i] for i in g) ** 2
        for g in groups
    )


def allowed(group, lengths, cap, waste) -> bool:
    if len(group) == 1:
        return True
    longest = max(lengths[i] for i in group)
    return len(group) <= cap and sum(lengths[i] for i in group) >= (1 - waste) * len(group) * longest


def cases(seed: int, count: int, most: int):
    rng = random.Random(seed)
    for _ in range(count):
        lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, most))]
        yield lengths, rng.choice(COSTS), rng.choice([1, 2, 3, 8]), rng.choice([0.0, 0.1, 0.25, 0.5])


def test_without_a_padding_bound_the_plan_is_the_cheapest_of_all_partitions():
    for lengths, model, cap, _ in cases(seed=1, count=300, most=7):
        best = min(
            cost_of(p, lengths, model)
            for p in partitions(list(range(len(lengths))))
            if all(allowed(g, lengths, cap, 1.0) for g in p)
        )
        got = plan_groups(lengths, cap, model, max_waste=1.0)
        assert cost_of(got, lengths, model) == pytest.approx(best, rel=1e-12, abs=1e-12), (lengths, model, cap)


def test_with_a_padding_bound_the_plan_is_the_cheapest_cut_of_the_sorted_rows():
    for lengths, model, cap, waste in cases(seed=2, count=300, most=9):
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        best = float("inf")
        for mask in itertools.product([False, True], repeat=len(order) - 1):
            cuts = [0] + [k + 1 for k, cut in enumerate(mask) if cut] + [len(order)]
            groups = [order[a:b] for a, b in itertools.pairwise(cuts)]
            if all(allowed(g, lengths, cap, waste) for g in groups):
                best = min(best, cost_of(groups, lengths, model))
        got = plan_groups(lengths, cap, model, max_waste=waste)
        assert cost_of(got, lengths, model) == pytest.approx(best, rel=1e-12, abs=1e-12), (lengths, model, cap, waste)


def test_every_row_once_within_the_batch_and_padding_bounds():
    for lengths, model, cap, waste in cases(seed=3, count=500, most=40):
        groups = plan_groups(lengths, cap, model, max_waste=waste)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        for g in groups:
            assert allowed(g, lengths, cap, waste), (lengths, g)


def test_the_costs_decide_whether_to_split():
    lengths = [10, 12, 11, 10]
    # Calls cost nothing by themselves: merging only adds padded positions, so no call pads.
    groups = plan_groups(lengths, 8, CostModel(0, 1))
    assert all(len({lengths[i] for i in g}) == 1 for g in groups)
    # A dear call: one call for all (12 * 4 = 48 positions, 43 used: 10% padding).
    assert plan_groups(lengths, 8, CostModel(100, 1)) == [[0, 3, 2, 1]]
    # ... unless the batch bound or the padding bound forbids it.
    # At most 3 rows a call: 10,10 | 11,12 (244) beats 10 | 10,11,12 (246).
    assert plan_groups(lengths, 3, CostModel(100, 1)) == [[0, 3], [2, 1]]
    assert plan_groups([1, 10], 8, CostModel(100, 1)) == [[0], [1]]


def test_padded_fraction_counts_positions_beyond_each_rows_length():
    assert padded_fraction([2, 4, 4], [[0, 1, 2]]) == pytest.approx(1 - 10 / 12)
    assert padded_fraction([2, 4, 4], [[0], [1, 2]]) == 0


def test_the_cost_model_fit_recovers_known_costs_and_stays_non_negative():
    truth = CostModel(0.004, 2e-4, 3e-7)
    points = [(r, n, truth.cost(r, n)) for r in (1, 4) for n in (8, 64, 128)]
    fitted = CostModel.fit(points)
    for r, n, seconds in points:
        assert fitted.cost(r, n) == pytest.approx(seconds, rel=1e-6)
    # Costs that fall with length would need a negative term: the fit keeps every term >= 0.
    falling = CostModel.fit([(1, 8, 0.010), (1, 64, 0.012), (1, 128, 0.011), (4, 8, 0.011)])
    assert min(falling.a, falling.b, falling.c) >= 0


def text_like(rows: list[int], width: int, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for r, n in enumerate(rows):
        ids[r, :n] = torch.arange(100, 100 + n)
        mask[r, :n] = 1
    return ids, mask


def test_row_lengths_are_one_past_the_last_non_pad_position_of_any_padded_input():
    planner = Planner([1, 1], [0, 0], 32, CostModel(1, 0))
    ids, mask = text_like([3, 7, 1, 5], 9)
    ids[1, 6] = 0  # a pad value inside a row: the mask still says the row is 7 long
    want = [max((k + 1 for k in range(9) if ids[r, k] != 0 or mask[r, k] != 0), default=1) for r in range(4)]
    assert planner.lengths((ids, mask)) == want == [3, 7, 1, 5]
    # Never below the dimension's lower bound (what export verified): the 1-long row runs at 2.
    assert Planner([1, 1], [0, 0], 32, CostModel(1, 0), shortest=2).lengths((ids, mask)) == [3, 7, 2, 5]
    # A padded dimension that is not the second axis, with a pad other than 0, beside an unpadded input.
    x = torch.full((3, 2, 6), -1.0)
    for r, n in enumerate([2, 6, 4]):
        x[r, :, :n] = torch.rand(2, n) + 1
    planner = Planner([2, None], [-1.0, 0], None, CostModel(1, 0))
    assert planner.lengths((x, torch.zeros(3, 5))) == [2, 6, 4]


@pytest.mark.parametrize("threads", [1, 2, 3], ids=lambda n: f"groups {n} at a time")
def test_grouped_calls_answer_every_row_in_place_with_the_calls_cut_to_the_batch_bound(threads):
    calls, torch_threads = [], set()

    def model(ids, mask):  # per row: sum of its ids, and the row echoed (an output with the padded width)
        calls.append(tuple(ids.shape))
        torch_threads.add(torch.get_num_threads())
        return (ids * mask).sum(dim=1, keepdim=True), ids.clone()

    rows = [3, 30, 4, 28, 3, 5, 31, 2]
    batch = text_like(rows, 32)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what a worker runs on; the group threads must take the same
    try:
        planner = Planner([1, 1], [0, 0], 3, CostModel(1e-3, 1e-6), pool=group_pool(threads))
    finally:
        torch.set_num_threads(before)
    assert (planner.pool is None) == (threads == 1)
    (sums, echoed), stats = planner.run(batch, lambda t: model(*t))
    assert sums[:, 0].tolist() == [sum(range(100, 100 + n)) for n in rows]
    for r, n in enumerate(rows):
        assert echoed[r, :n].tolist() == list(range(100, 100 + n))
        assert not echoed[r, n:].any()
    assert all(shape[0] <= 3 for shape in calls)
    assert torch_threads == ({before} if threads == 1 else {1}), torch_threads
    assert stats["calls"] == len(calls) and stats["padded"] < stats["padded_one_call"]
    assert stats["padded"] == pytest.approx(1 - sum(rows) / sum(r * w for r, w in calls))


def test_a_model_without_padded_dimensions_or_with_one_request_per_call_gets_no_planner():
    text = [
        {"name": "ids", "shape": ["batch", "seq"], "dtype": "int64", "pad": 0},
        {"name": "mask", "shape": ["batch", "seq"], "dtype": "int64", "pad": 0},
    ]
    assert Planner.for_model({"inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]}, {}, None) is None
    # A named dimension that cannot differ between requests is never padded, pad value or not.
    time = {"time": {"min": 64, "max": 64}}
    fixed = {"name": "w", "shape": ["batch", "time", 4], "dtype": "float32", "pad": 0, "dims": time}
    assert Planner.for_model({"inputs": [fixed]}, {}, None) is None
    assert Planner.for_model({"inputs": text, "reset": "reset"}, {}, None) is None
    assert Planner.for_model({"inputs": text, "batching": False}, {}, None) is None
    assert Planner.for_model({"inputs": text}, {"length_batching": False}, None) is None
    given = Planner.for_model({"inputs": text}, {"batch_cost": {"a": 1, "b": 2}}, None)
    assert (given.axes, given.cost, given.max_batch) == ([1, 1], CostModel(1, 2), None)


def test_calibration_calls_the_model_within_its_declared_bounds():
    inputs = [
        {
            "name": "ids",
            "shape": ["batch", "seq"],
            "dtype": "int64",
            "pad": 0,
            "dims": {"batch": {"max": 2}, "seq": {"min": 2, "max": 64}},
        },
        {"name": "extra", "shape": ["batch", 3], "dtype": "float32"},
    ]
    shapes = []
    model = calibrate(inputs, [1, None], lambda t: shapes.append([tuple(x.shape) for x in t]))
    assert {s[0][0] for s in shapes} <= {1, 2} and {s[0][1] for s in shapes} <= set(range(2, 65))
    assert all(s[1] == (s[0][0], 3) for s in shapes) and len({s[0] for s in shapes}) >= 4
    assert min(model.a, model.b, model.c) >= 0


def spec_inputs(name: str) -> list[dict]:
    """The model's inputs as the manifest lists them (dicts), whatever type the spec holds."""
    return [e if isinstance(e, dict) else dataclasses.asdict(e) for e in load_spec(name).inputs]


PADDED = [m for m in MODELS if Planner.padded_axes(spec_inputs(m))]


def random_request(spec: dict, first: bool, axis: int | None, length: int, rng) -> torch.Tensor:
    """One row of one input, ``length`` long on its padded axis, with no pad value inside: the
    first input as token-like ids, any other integer input as a mask of ones, floats above 0."""
    shape = [1 if k == 0 else length if k == axis else d for k, d in enumerate(spec["shape"])]
    if spec["dtype"].startswith("int"):
        return torch.randint(1, 1000, shape, generator=rng) if first else torch.ones(shape, dtype=torch.int64)
    return torch.rand(shape, generator=rng) + 1


@pytest.mark.parametrize("name", PADDED)
def test_grouped_answers_equal_each_request_run_alone(name):
    """The eager model on length-aware groups of random-length rows against each row alone."""
    spec, inputs = load_spec(name), spec_inputs(name)
    axes = Planner.padded_axes(inputs)
    model = spec.build_eager()
    rng = torch.Generator().manual_seed(0)
    alone = [
        tuple(random_request(e, i == 0, axes[i], n, rng) for i, e in enumerate(inputs))
        for n in [2, 5, 6, 40, 7, 38, 3, 64]
    ]
    batch = tuple(pad_and_cat([a[i] for a in alone], e.get("pad", 0)) for i, e in enumerate(inputs))
    planner = Planner(axes, [float(e.get("pad", 0)) for e in inputs], 3, CostModel(1e-3, 1e-5))
    with torch.inference_mode():
        grouped, stats = planner.run(batch, lambda t: model(*t))
        want = torch.cat([model(*a) for a in alone])
    assert stats["calls"] > 1
    tol = spec.tolerance
    torch.testing.assert_close(grouped, want, atol=tol["atol"], rtol=tol["rtol"])


@pytest.mark.parametrize("name", PADDED)
def test_the_served_handler_answers_a_mixed_batch_in_length_groups_as_each_request_alone(name, unpacked):
    """handle() on the archive, its samples (of different lengths) as one batch: more than one model
    call, and every answer as the same request gets when it is sent alone."""
    handler = load_spec(name).handler_class()()
    handler.initialize(make_context(unpacked[name], []))
    served, calls = handler.model, []

    def counted(*tensors):
        calls.append(tuple(tensors[0].shape))
        return served(*tensors)

    handler.model = counted
    bodies = [(s.raw, s.content_type) for s in samples(name)]
    together = run_handler(handler, unpacked[name], bodies)
    assert len(calls) > 1, calls
    for body, (status, answer) in zip(bodies, together, strict=True):
        [(alone_status, alone)] = run_handler(handler, unpacked[name], [body])
        assert status == alone_status == 200
        assert difference(answer, alone, load_spec(name).tolerance, strict=True) is None
