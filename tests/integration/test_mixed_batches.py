"""A bad request does not fail its batch-mates: good and bad requests sent at the same moment share
one batch (the worker's log line proves it), the good ones get correct answers, each bad one its own 4xx."""

from __future__ import annotations

import re
import threading
import time
from itertools import cycle, islice

import pytest

from reliability.record import record
from tests.conftest import MODELS
from tests.integration.reliability_support import InProcess, call, error_of, model_log, register_as
from tests.support import assert_same_answer, samples

BATCH = 8
# The frontend waits this long (ms) for a batch to fill; it sends it as soon as BATCH requests are
# in, so the test takes milliseconds, and the requests of one burst cannot miss each other.
MAX_BATCH_DELAY = 5000
GENERIC_BAD = [(b"", "application/json", 400), (b"<input/>", "application/xml", 415)]
MODEL_BAD = {  # one 422 each where we know the model's input; other models get a second empty body
    "digits": (b'{"image": [[1, 2], [3, 4]]}', "application/json", 422),
    "sensor_anomaly": (b'{"window": [[1, 2, 3]]}', "application/json", 422),
}


@pytest.fixture(scope="module")
def reference(unpacked):
    return InProcess(unpacked)


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


def batch_lines(server, name: str, timeout: float = 10.0) -> list[str]:
    """The base's "batch of N requests, M rejected" lines of the workers of model ``name``."""
    pattern = re.compile(rf"W-\d+-{re.escape(name)}_[^ ]+ MODEL_LOG - (batch of \d+ requests, \d+ rejected)")
    deadline = time.monotonic() + timeout
    while True:  # the frontend copies worker output into model_log.log asynchronously
        lines = pattern.findall(model_log(server))
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


@pytest.mark.parametrize("model", MODELS)
def test_good_and_bad_requests_in_one_batch(server, client, registered, reference, model):
    name = f"{model}_batched"
    bad = [*GENERIC_BAD, MODEL_BAD.get(model, (b"", "text/plain", 400))]
    good = list(islice(cycle(samples(model)), BATCH - len(bad)))
    requests = [(s.raw, s.content_type) for s in good] + [(body, ctype) for body, ctype, _ in bad]
    register_as(server, client, f"{model}.mar", name, batch_size=BATCH, max_batch_delay=MAX_BATCH_DELAY)
    try:
        responses = burst(server, client, name, requests)
        lines = batch_lines(server, name)
    finally:
        client.unregister(name)

    statuses = [r.status_code for r in responses]
    record("mixed_batch", model=model, batches=lines, statuses=statuses)
    assert lines == [f"batch of {BATCH} requests, {len(bad)} rejected"], lines
    for sample, response in zip(good, responses, strict=False):
        assert response.status_code == 200, response.text
        assert_same_answer(response.json(), reference.answer(model, sample), where=sample.path.name)
    for (_, _, status), response in zip(bad, responses[len(good) :], strict=True):
        assert response.status_code == status, response.text
        assert error_of(response)["message"], response.text  # its own JSON error, with a message
