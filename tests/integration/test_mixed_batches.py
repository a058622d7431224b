"""A bad request does not fail its batch-mates: good and bad requests sent at the same moment share
one batch (each answer's X-Kit-Batch header proves it), the good ones get correct answers, each bad
one its own 4xx."""

from __future__ import annotations

import json
import threading
from itertools import cycle, islice

import pytest

from handlers.base import BATCH_HEADER
from reliability.record import record
from tests.conftest import MODELS
from tests.integration.reliability_support import call, register_as
from tests.support import assert_same_answer, samples, tolerance

BATCH = 8
# The frontend waits this long (ms) for a batch to fill; it sends it as soon as BATCH requests are
# in, so the test takes milliseconds, and the requests of one burst cannot miss each other.
MAX_BATCH_DELAY = 5000
# Bad for every model: no body, a content type no model takes, a v2 tensor with a zero-size dimension.
ZERO_SIZE = json.dumps({"inputs": [{"name": "x", "shape": [0], "datatype": "FP32", "data": []}]}).encode()
BAD = [(b"", "application/json", 400), (b"<input/>", "application/xml", 415), (ZERO_SIZE, "application/json", 422)]


def burst(server, client, model: str, requests: list[tuple[bytes, str]]) -> list:
    """Send every request at the same moment (one thread each); responses in order."""
    barrier, responses = threading.Barrier(len(requests)), [None] * len(requests)

    def send(i: int, body: bytes, content_type: str) -> None:
        barrier.wait()
        responses[i] = call(server, client, f"/predictions/{model}", body, content_type)

    threads = [threading.Thread(target=send, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return responses


@pytest.mark.parametrize("model", MODELS)
def test_good_and_bad_requests_in_one_batch(server, client, registered, reference, model):
    name = f"{model}_batched"
    good = list(islice(cycle(samples(model)), BATCH - len(BAD)))
    requests = [(s.raw, s.content_type) for s in good] + [(body, ctype) for body, ctype, _ in BAD]
    register_as(client, f"{model}.mar", name, batch_size=BATCH, max_batch_delay=MAX_BATCH_DELAY)
    try:
        responses = burst(server, client, name, requests)
    finally:
        client.unregister(name)

    statuses = [r.status_code for r in responses]
    batches = sorted({r.headers.get(BATCH_HEADER, "none") for r in responses})
    record("mixed_batch", model=model, batches=batches, statuses=statuses)
    assert batches == [f"{BATCH} requests, {len(BAD)} rejected"], batches
    for sample, response in zip(good, responses, strict=False):
        assert response.status_code == 200, response.text
        assert_same_answer(response.json(), reference.answer(model, sample), tolerance(model), sample.path.name)
    for (_, _, status), response in zip(BAD, responses[len(good) :], strict=True):
        assert response.status_code == status, response.text
        error = response.json()  # its own JSON error, with a message (v2 names it "error")
        assert error["code"] == status and (error.get("message") or error.get("error")), response.text
