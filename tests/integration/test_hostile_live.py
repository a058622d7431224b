"""The fuzz suite's regression corpus and issue 10's hostile requests, sent to a real TorchServe for
every model over REST (/predictions) and v2 (/v2/models/.../infer): never a 5xx, the same worker
processes afterwards, and each worker's peak memory grows by at most RSS_MB."""

from __future__ import annotations

import pytest
import requests

from export.spec import load_spec
from reliability.record import record
from tests.conftest import MODELS
from tests.integration.reliability_support import TIMEOUT, peak_rss_mb, worker_pids
from tests.unit.fuzz_cases import corpus
from tests.unit.fuzz_issue import issue_cases

RSS_MB = 300  # generous: a worker decoding one refused request in full would take gigabytes
ROUTES = {"rest": "/predictions/{model}", "v2": "/v2/models/{model}/infer"}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("model", MODELS)
def test_hostile_requests_get_no_5xx_and_workers_survive(server, client, registered, model, route):
    pids = worker_pids(client, model)
    peaks = {pid: peak_rss_mb(pid) for pid in pids}
    cases = corpus(model) + issue_cases(model, load_spec(model).handler_class().v2_inputs)
    url = server.address("inference") + ROUTES[route].format(model=model)
    token = {"Authorization": f"Bearer {client.token('inference')}"}
    failures, statuses = [], {}
    for label, case in cases:
        headers = token | case.headers | ({"Content-Type": case.content_type} if case.content_type else {})
        response = requests.post(url, data=case.body, headers=headers, timeout=TIMEOUT)
        statuses[label] = response.status_code
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
    record("hostile_live", model=model, route=route, cases=len(cases), statuses=statuses)
    assert not failures, "\n".join(failures)
    assert worker_pids(client, model) == pids, "a worker restarted"
    for pid, before in peaks.items():
        if before is not None:
            assert peak_rss_mb(pid) - before <= RSS_MB, (pid, before, peak_rss_mb(pid))
