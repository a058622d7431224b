"""A short bounded load across every model (the long one is `make soak`): no errors, every answer
equal to the in-process model's; latency and memory are printed and recorded, not asserted."""

from __future__ import annotations

from reliability.harness import rss_mb
from reliability.load import key, run_load, sample_targets
from reliability.record import record
from tests.conftest import MODELS

REQUESTS, CONCURRENCY = 300, 8


def test_short_load_has_no_errors(server, client, registered, reference):
    targets = sample_targets(MODELS)
    references = {key(t): reference.answer(*t) for t in targets}
    before = rss_mb(server)
    result = run_load(client, targets, references, REQUESTS, CONCURRENCY)
    after = rss_mb(server)
    run = result.to_dict() | {"rss_mb_before": before, "rss_mb_after": after}
    record("load", kind="short (make test)", **run)
    print(f"\n{REQUESTS} requests at concurrency {CONCURRENCY}: {run['latency_ms']} ms, {run['rps']} req/s")
    print(f"RSS MB {before} -> {after}")
    assert result.error_count == 0, result.error_examples
    by_model = {m: lat["requests"] for m, lat in result.latency_ms_by_model.items()}
    share = REQUESTS / len(MODELS)  # the models take turns
    assert result.requests == REQUESTS and set(by_model) == set(MODELS), by_model
    assert all(abs(n - share) < 1 for n in by_model.values()), by_model
