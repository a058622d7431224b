"""client.answers: what samples/expected.json means (``matches``) and the strict comparison (``same``),
with the spec's tolerance; reliability.record: observations that break the schema are refused."""

from __future__ import annotations

import pytest

from client.answers import matches, same
from reliability.record import record

SPEC = {"atol": 1e-5, "rtol": 1e-4}


@pytest.mark.parametrize(
    ("answer", "pattern"),
    [
        ([{"label": 3, "probability": 0.9}, {"label": 5}], [{"label": 3}]),  # a prefix of the top-k
        ({"anomaly": True, "score": 0.7}, {"anomaly": True}),  # some keys of an object
        ({"x": 100.0099}, {"x": 100.0}),  # within atol + rtol * |x|
        ({"x": 0.5000015}, {"x": 0.5}),  # within the rounding of 6 decimals
        ("text", "text"),
    ],
)
def test_matching_answers(answer, pattern):
    assert matches(answer, pattern, SPEC)


@pytest.mark.parametrize(
    ("answer", "pattern"),
    [
        ([{"label": 5}, {"label": 3}], [{"label": 3}]),  # the right label, but second
        ([], [{"label": 3}]),
        ({"score": 0.7}, {"anomaly": True}),  # a missing key
        ({"anomaly": 1}, {"anomaly": True}),  # 1 is not true
        ({"x": 100.02}, {"x": 100.0}),
        ({"x": "1.0"}, {"x": 1.0}),
        ({"anomaly": True}, [{"anomaly": True}]),  # an object where a list is expected
    ],
)
def test_answers_that_do_not_match(answer, pattern):
    assert not matches(answer, pattern, SPEC)


def test_same_wants_the_same_keys_and_lengths():
    assert same({"a": [1.0, 2.0]}, {"a": [1.000001, 2.0]}, SPEC)
    assert not same({"a": [1.0, 2.0, 3.0]}, {"a": [1.0, 2.0]}, SPEC)
    assert not same({"a": 1.0, "b": 2}, {"a": 1.0}, SPEC)


def test_a_bare_float_is_an_absolute_tolerance():
    assert same(1.0009, 1.0, 1e-3) and not same(1.0011, 1.0, 1e-3)


def test_a_record_outside_its_schema_is_refused():
    assert record("security", check="c", expected="e", seen="s").seen == "s"
    with pytest.raises(TypeError):
        record("security", check="c", expected="e")  # a missing field
    with pytest.raises(TypeError):
        record("bad_input", model="m", case="c", status=400, colour="red")  # an unknown one
