"""The regression corpus (tests/fuzz_corpus/: shrunk examples the fuzz suite found) and the hostile
requests issue 10 lists, replayed in process on every model with the fuzz suite's properties."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MODELS
from tests.support import samples
from tests.unit import fuzz_cases
from tests.unit.fuzz_cases import Case, Measure, check, corpus, keep_failure
from tests.unit.fuzz_issue import issue_cases
from tests.unit.test_fuzz import PEAK_MB, SECONDS


@pytest.mark.parametrize("model", MODELS)
def test_corpus_and_issue_cases_get_a_4xx_never_a_5xx(handlers, unpacked, model):
    handler, sample = handlers[model], samples(model)[0]
    good = Case(sample.content_type, [(sample.raw, 1)])
    cases = corpus(model) + issue_cases(model, handlers[model].v2_inputs)
    failures = []
    for label, case in cases:
        measure = Measure()
        try:
            check(handler, unpacked[model], case, good, measure)
            assert measure.seconds <= SECONDS and measure.peak_mb <= PEAK_MB, vars(measure)
        except AssertionError as err:
            failures.append(f"{label}: {str(err)[:300]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("profile", ["quick", "long"])
def test_only_make_fuzz_writes_a_failing_example_into_the_tracked_corpus(tmp_path, monkeypatch, profile):
    monkeypatch.setattr(fuzz_cases, "CORPUS", tmp_path / "corpus")  # stands in for tests/fuzz_corpus
    monkeypatch.setenv("KIT_FUZZ_FAILURES", str(tmp_path / "scratch"))
    case = Case("application/json", [(b'{"x": 1}', 2)])
    saved = keep_failure(case, "some_model", "rest_json", profile)
    where = tmp_path / ("corpus" if profile == "long" else "scratch") / "some_model"
    assert saved.parent == where and Case.from_json(json.loads(saved.read_text())) == case
    assert not (tmp_path / ("scratch" if profile == "long" else "corpus")).exists()
