"""The regression corpus (tests/fuzz_corpus/: shrunk examples the fuzz suite found) and the hostile
requests issue 10 lists, replayed in process on every model with the fuzz suite's properties."""

from __future__ import annotations

import pytest

from tests.conftest import MODELS
from tests.support import load_handlers, samples
from tests.unit.fuzz_cases import Case, Measure, check, corpus
from tests.unit.fuzz_issue import issue_cases
from tests.unit.test_fuzz import PEAK_MB, SECONDS


@pytest.fixture(scope="module")
def handlers(unpacked):
    return load_handlers({name: unpacked[name] for name in MODELS})


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
