"""A worker dies (SIGKILL) while requests flow: only the requests in flight fail, predictions succeed
again within a bound, and the model keeps its registration and its number of workers."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from reliability.record import record
from tests.conftest import MODELS
from tests.integration.reliability_support import TIMEOUT, register_as, worker_pids
from tests.support import assert_same_answer, samples, tolerance

CLIENTS = 4  # requests in flight at any moment: the most that can fail
# Measured on 2 cores: the first answer after the kill came 2.0-2.1 s later (TorchServe restarts a
# worker at once the first time, then backs off; loading Python, torch and the model takes ~2 s).
# The bound is ~15x that, for busy CI machines; the measured time is recorded and printed.
RECOVERY_BOUND_S = 30.0
# SIGKILL is delivered and the frontend sees the closed socket within milliseconds; a request sent in
# that window can still be handed to the dead worker, so it counts as in flight.
DETECTION_GRACE_S = 0.5


class Traffic:
    """CLIENTS threads sending one sample in a closed loop; every request's send/answer time and status."""

    def __init__(self, url: str, token: str, body: bytes, content_type: str):
        self.url, self.body = url, body
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        self.log: list[tuple[float, float, int, str]] = []  # (sent, answered, status, body)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]

    def _run(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                response = session.post(self.url, data=self.body, headers=self.headers, timeout=TIMEOUT)
                status, text = response.status_code, response.text
            except requests.RequestException as err:  # recorded as a failure, not lost with the thread
                status, text = 0, f"{type(err).__name__}: {err}"
            self.log.append((sent, time.monotonic(), status, text))

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join()

    def first_success_after(self, moment: float) -> float | None:
        """When the first request sent after ``moment`` was answered 200."""
        times = [answered for sent, answered, status, _ in list(self.log) if status == 200 and sent > moment]
        return min(times) if times else None


@pytest.mark.parametrize("model", MODELS)
def test_a_killed_worker_fails_only_its_requests_and_comes_back(server, client, registered, reference, model):
    name = f"{model}_crash"
    sample = samples(model)[0]
    register_as(client, f"{model}.mar", name)
    try:
        client.scale(name, 1)  # one worker: its death must not be hidden by a second one
        [victim] = worker_pids(client, name)
        url = f"{server.address('inference')}/predictions/{name}"
        with Traffic(url, client.token("inference"), sample.raw, sample.content_type) as traffic:
            while sum(1 for *_, status, _ in list(traffic.log) if status == 200) < 20:
                time.sleep(0.05)  # requests are flowing
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            while (back := traffic.first_success_after(killed)) is None and time.monotonic() - killed < TIMEOUT:
                time.sleep(0.05)
            time.sleep(0.5)  # and keep flowing a little after the recovery
        workers = client.describe(name)[0]["workers"]
        answer = client.predict(name, sample.raw, sample.content_type)
    finally:
        client.unregister(name)

    failed = [(sent - killed, done - killed, status, text) for sent, done, status, text in traffic.log if status != 200]
    recovery = None if back is None else round(back - killed, 2)
    statuses = sorted({status for _, _, status, _ in failed})
    record(
        "worker_crash",
        model=model,
        requests=len(traffic.log),
        failed=len(failed),
        statuses=statuses,
        recovery_s=recovery,
        bound_s=RECOVERY_BOUND_S,
        workers_after=len(workers),
    )
    print(f"{model}: {len(traffic.log)} requests, {len(failed)} failed, answers again {recovery} s after SIGKILL")
    assert recovery is not None and recovery < RECOVERY_BOUND_S, f"no answer within {RECOVERY_BOUND_S} s"
    assert len(failed) <= CLIENTS, failed
    for sent, answered, status, text in failed:  # in flight: sent before the kill, answered after it
        assert sent < DETECTION_GRACE_S and answered >= 0, f"sent {sent:.2f} s, failed {answered:.2f} s after the kill"
        assert status >= 500 and "Worker died" in text, (status, text)  # TorchServe 0.12: 507
    assert len(workers) == 1 and workers[0]["status"] == "READY" and workers[0]["pid"] != victim, workers
    assert_same_answer(answer, reference.answer(model, sample), tolerance(model))
