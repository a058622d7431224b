"""Scale out: two instances serving one KServe model repository (`make kserve`'s layout) behind a
client-side round robin that survives losing one of them. (One repository per model, served by our
runtime: test_kserve_runtime.py.)"""

from __future__ import annotations

import threading
import time

import pytest

from client.answers import matches
from client.pool import RoundRobinClient
from client.server import STARTUP_TIMEOUT
from deploy.kserve import write_repository
from tests.conftest import MODELS
from tests.integration.kserve_support import KServeStyleServer
from tests.support import checked_samples, tolerance


@pytest.fixture(scope="module")
def repositories(model_store, tmp_path_factory):
    """`make kserve`'s layout for one model, from the session's archives."""
    out = tmp_path_factory.mktemp("kserve")
    name = MODELS[0]
    return {name: write_repository(name, out, "s3://bucket/prefix", store=model_store)}


def test_two_instances_one_repository_and_failover(repositories, tmp_path):
    name = MODELS[0]
    repo = repositories[name]
    servers = [KServeStyleServer.for_repository(repo, tmp_path / f"ts{i}") for i in range(2)]
    try:
        for server in servers:
            server.start(timeout=STARTUP_TIMEOUT, snapshots=False)
        pool = RoundRobinClient([s.client(timeout=30) for s in servers])
        checked = checked_samples(name)
        total, threads, answers, errors = 240, 4, [], []

        def worker(index: int) -> None:
            for i in range(index, total, threads):
                sample, pattern = checked[i % len(checked)]
                try:
                    answers.append((sample, pattern, pool.predict(name, sample.raw, sample.content_type)))
                except Exception as err:  # counted: the test asserts there are none
                    errors.append(err)

        started = time.perf_counter()
        pool_threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool_threads:
            t.start()
        while len(answers) < total // 3:
            time.sleep(0.01)
        servers[0].stop()  # one instance goes away mid-run
        for t in pool_threads:
            t.join(timeout=120)
        elapsed = time.perf_counter() - started

        assert errors == []
        assert len(answers) == total
        wrong = [s.path.name for s, pattern, answer in answers if not matches(answer, pattern, tolerance(name))]
        assert wrong == []
        first, second = (pool.served[c.inference_url] for c in pool.clients)
        assert first > 0 and second > first  # both served; the survivor took over
        print(
            f"\n{total} requests over 2 instances in {elapsed:.2f}s ({total / elapsed:.0f}/s), "
            f"served {first}+{second}, {pool.failovers} retried on the other instance"
        )
    finally:
        for server in servers:
            server.stop()
