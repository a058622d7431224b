"""Dimension bounds (handlers/schema.py), as the handlers, export and batching read them, against sizes
written here by hand from one declared input."""

from __future__ import annotations

import pytest
import torch

from export.build import outside_bounds
from export.verify import Case
from handlers.batching import Planner
from handlers.errors import InvalidInput
from handlers.schema import InputSpec

pytestmark = pytest.mark.unit

DECLARED = {
    "name": "ids",
    "dtype": "int64",
    "shape": ["batch", "seq", 3, "fixed"],
    "dims": {"batch": {"max": 4}, "seq": {"min": 2, "max": 8}, "fixed": {"min": 5, "max": 5}},
}
# shape -> whether it is inside the declared bounds
SHAPES = {
    (1, 2, 3, 5): True,
    (4, 8, 3, 5): True,
    (5, 8, 3, 5): False,  # batch above its max
    (0, 8, 3, 5): False,  # batch below the default min, 1
    (2, 1, 3, 5): False,  # seq below its min
    (2, 9, 3, 5): False,  # seq above its max
    (2, 4, 2, 5): False,  # the fixed size
    (2, 4, 3, 6): False,  # a named dimension held at one size
}


@pytest.mark.parametrize("shape", SHAPES)
def test_handler_check_and_export_agree_with_the_declared_bounds(shape):
    spec = InputSpec.from_dict(DECLARED)
    tensor = torch.zeros(shape, dtype=torch.int64)
    if SHAPES[shape]:
        spec.check(tensor)
    else:
        with pytest.raises(InvalidInput):
            spec.check(tensor)

    class Spec:  # the one attribute outside_bounds reads of a ModelSpec
        inputs = [spec]

    assert (outside_bounds(Case("x", (tensor,)), Spec) is None) == SHAPES[shape]


def test_bounds_and_what_may_vary():
    spec = InputSpec.from_dict(DECLARED)
    assert [spec.bounds(d) for d in spec.shape] == [(1, 4), (2, 8), (3, 3), (5, 5)]
    assert [spec.varies(d) for d in spec.shape] == [True, True, False, False]
    assert spec.max_elements(-1) == 4 * 8 * 3 * 5
    assert InputSpec.from_dict(DECLARED | {"dims": {}}).max_elements(-1) == -1
    # batching pads the one named dimension besides the batch that may differ between requests: seq.
    assert Planner.padded_axes([DECLARED]) == [1]
