"""Fuzzing every model's handler on every path (REST JSON, REST raw bodies, v2 JSON, v2 binary), in
process with a real ts Context: generated and mutated bodies up to max_request_size must get a 2xx,
or a 4xx with a short JSON error, never a 5xx or an escaped exception, with valid JSON, while a good
batch-mate is still answered. Bounds per request (generous, so a busy machine does not flake): at
most SECONDS s of CPU time in the handler outside the model call (the model's own time is bounded by the batch
limits, not by the body, and reported), PEAK_MB MB of traced (Python and numpy) memory; the process's
peak RSS may grow by at most RSS_MB MB over one model-path. ``KIT_FUZZ=long`` (``make fuzz``) runs many more examples.

A failing example (shrunk by Hypothesis) is printed; ``make fuzz`` writes it to tests/fuzz_corpus/<model>/
(commit it, and test_fuzz_corpus.py replays it ever after), ``make test`` only to a scratch folder outside
the project ($KIT_FUZZ_FAILURES, default <tmp>/kit-fuzz-failures/), so the tracked tree stays untouched."""

from __future__ import annotations

import json
import os
import resource

import pytest
from hypothesis import HealthCheck, assume, given, settings

from reliability.record import record
from tests.conftest import MODELS
from tests.support import samples
from tests.unit.fuzz_cases import MAX_REQUEST, PATHS, Case, Measure, Strategies, check, keep_failure

SECONDS, PEAK_MB, RSS_MB = 2.0, 200.0, 400.0
PROFILE = os.environ.get("KIT_FUZZ", "quick")
EXAMPLES = int(os.environ.get("KIT_FUZZ_EXAMPLES", 0)) or {"quick": 60, "long": 1500}[PROFILE]
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # time is measured per request and bounded generously below
    derandomize=PROFILE == "quick",  # `make test` runs the same examples every time
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def measures(request):
    """Examples run and worst time/memory per model and path, printed at the end of the module."""
    found: dict[tuple[str, str], Measure] = {}
    yield found
    lines = [
        f"fuzz {model:>16} {path:<10} {m.examples:6d} examples; worst per request: {m.seconds * 1000:6.0f} ms "
        f"CPU in the handler, {m.total * 1000:6.0f} ms wall with the model, {m.peak_mb:5.1f} MB traced"
        for (model, path), m in sorted(found.items())
    ]
    for (model, path), m in sorted(found.items()):
        record(
            "fuzz",
            model=model,
            path=path,
            examples=m.examples,
            worst_cpu_ms=round(m.seconds * 1000, 1),
            worst_wall_ms=round(m.total * 1000, 1),
            peak_mb=round(m.peak_mb, 1),
        )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown without -s, as `make fuzz` promises
        print("", *lines, sep="\n")
    if os.environ.get("KIT_FUZZ_REPORT"):
        doc = {f"{m}/{p}": vars(v) for (m, p), v in found.items()}
        with open(os.environ["KIT_FUZZ_REPORT"], "w") as f:
            json.dump(doc, f, indent=1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model", MODELS)
def test_hostile_bodies_get_a_4xx_never_a_5xx(handlers, unpacked, measures, model, path):
    handler, sample = handlers[model], samples(model)[0]
    good = Case(sample.content_type, [(sample.raw, 1)])
    measure = measures.setdefault((model, path), Measure())
    last: dict[str, Case] = {}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    @SETTINGS
    @given(Strategies(model, handler).of(path))
    def run(case: Case) -> None:
        assume(sum(len(piece) * times for piece, times in case.parts) <= MAX_REQUEST)  # larger: TorchServe's 413
        last["case"] = case
        check(handler, unpacked[model], case, good, measure)

    try:
        run()
    except BaseException:
        if "case" in last:  # Hypothesis replays the shrunk example last
            saved = keep_failure(last["case"], model, path, PROFILE)
            print(f"failing example {json.dumps(last['case'].to_json())[:2000]}\nsaved as {saved}")
        raise
    assert measure.seconds <= SECONDS and measure.peak_mb <= PEAK_MB, vars(measure)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss <= RSS_MB
