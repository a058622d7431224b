"""Our ServingRuntime without a container: the container command, args and env taken from the
manifest `make kserve` writes, run from the venv against each model's repository. Ready only after
warm-up; answers equal to the plain server's; readiness drops when a worker dies and comes back;
SIGTERM ends every process within a bound. (tests/container runs the same in the image.)"""

from __future__ import annotations

import pytest

from deploy.kserve import write_all
from tests.conftest import MODELS
from tests.integration.kserve_support import RuntimeProcess, runtime_container
from tests.support import assert_same_answer, samples, tolerance

READY_TIMEOUT = 300  # s: the JVM, every worker and the warm-up, on 2 busy cores
SHUTDOWN_BOUND = 30  # s from SIGTERM to the last process gone


@pytest.fixture(scope="module")
def kserve_out(model_store, tmp_path_factory):
    """`make kserve`'s output (ServingRuntime, NetworkPolicy, a repository per model)."""
    out = tmp_path_factory.mktemp("kserve")
    write_all(out, "s3://bucket/prefix", "localhost/torchserve-kit:test", store=model_store)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_the_runtime_command_serves_a_repository(kserve_out, client, registered, tmp_path, name):
    runtime = RuntimeProcess(runtime_container(kserve_out), kserve_out / name, tmp_path)
    runtime.start()
    try:
        waited = runtime.wait("ready", True, READY_TIMEOUT)
        assert runtime.probe("live").returncode == 0
        (record,) = runtime.warm_state()["models"].values()  # ready only because warm-up answered the samples
        assert record["samples"] == len(samples(name))
        print(f"\n{name}: ready after {waited:.1f}s ({record})")

        served = runtime.client(timeout=120)
        for sample in samples(name):
            want = client.predict(name, sample.raw, sample.content_type)
            got = served.predict(name, sample.raw, sample.content_type)
            assert_same_answer(got, want, tolerance(name), where=sample.path.name)

        for worker in runtime.workers():  # every worker of the model dies at once
            worker.kill()
        runtime.wait("ready", False, 30, interval=0.1)
        runtime.wait("ready", True, READY_TIMEOUT)
        assert runtime.probe("live").returncode == 0
    finally:
        took = runtime.terminate(SHUTDOWN_BOUND)
    assert took <= SHUTDOWN_BOUND, f"still running {SHUTDOWN_BOUND}s after SIGTERM"
