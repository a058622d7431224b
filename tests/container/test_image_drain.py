"""Issue 18 in the image: SIGTERM under load. Threads send one model's sample as fast as it is
answered, each request on a new connection, while ``podman stop`` sends SIGTERM. The test plays the
router: it runs the readiness probe and stops sending once it fails, as a Service drops a pod that is
not ready. start.sh drops readiness first, drains, then stops the server: every request sent is
answered 200.

Needs podman and a built image: `make test-image`; skipped otherwise."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest
import requests

from tests.conftest import MODELS
from tests.container.test_image import Container, kserve_out, podman  # noqa: F401 - kserve_out: a fixture
from tests.integration.kserve_support import runtime_container
from tests.support import samples

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(os.environ.get("KIT_CONTAINER_TESTS") != "1", reason="needs the image: make test-image"),
]
THREADS, LOAD_BEFORE_STOP_S = 8, 3.0


def test_sigterm_under_load_answers_every_accepted_request(kserve_out):  # noqa: F811
    name = MODELS[0]
    sample = samples(name)[0]
    container = Container(runtime_container(kserve_out), kserve_out / name, f"kit-drain-{name}")
    container.run()
    outcomes: Counter = Counter()
    stopping = threading.Event()
    url = f"http://127.0.0.1:{container.ports['inference']}/predictions/{name}"

    def send() -> None:
        while not stopping.is_set():
            try:
                headers = {"Content-Type": sample.content_type, "Connection": "close"}
                got = requests.post(url, data=sample.raw, headers=headers, timeout=60)
                outcomes[str(got.status_code)] += 1
            except requests.ConnectionError as err:  # refused: never accepted; reset/closed: accepted, lost
                outcomes["refused" if "refused" in str(err).lower() else f"lost: {type(err).__name__}"] += 1
            except requests.Timeout:
                outcomes["lost: timeout"] += 1

    try:
        container.wait("ready", True, 300)
        threads = [threading.Thread(target=send) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(LOAD_BEFORE_STOP_S)
        stopped: dict = {}
        stopper = threading.Thread(target=lambda: stopped.update(zip(("took", "code"), container.stop(), strict=True)))
        stopper.start()  # SIGTERM
        deadline = time.monotonic() + 30
        while container.probe("ready").returncode == 0 and time.monotonic() < deadline:
            pass  # each probe is one `podman exec`, about as often as a kubelet with periodSeconds 1
        stopping.set()  # the router sends no more
        for thread in threads:
            thread.join(90)
        stopper.join(90)
        took, code = stopped["took"], stopped["code"]
    finally:
        stopping.set()
        podman("rm", "--force", container.name, check=False)
    print(f"\n{name}: SIGTERM under {THREADS} threads: {dict(outcomes)}; stopped in {took:.1f}s, exit {code}")
    assert outcomes["200"] > 0
    assert set(outcomes) <= {"200", "refused"}, dict(outcomes)
    assert code == 0, f"exit code {code} after {took:.1f}s"
