"""The image, run the way our ServingRuntime runs it: each model's KServe repository mounted at
/mnt/models, the args and env of the manifest's container spec (plus TS_* variables moving the
ports, since the container shares the host's network here). Ready only after warm-up; every sample
answered over REST and v2 as the venv server answers it; readiness drops when the workers die and
comes back; SIGTERM ends the container cleanly within a bound.

Needs podman and a built image: `make test-image` (builds IMAGE first); skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from client.api import TorchServeClient
from client.server import ROOT, free_ports
from deploy.kserve import MOUNT, write_all
from tests.conftest import MODELS
from tests.integration.conftest import client, registered, server  # noqa: F401 - the venv server, as a reference
from tests.integration.kserve_support import PORTS, port_overrides, runtime_container, wait_for_probe
from tests.integration.test_oip_served import auth, v2_inputs
from tests.support import assert_same_answer, samples, tolerance

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(os.environ.get("KIT_CONTAINER_TESTS") != "1", reason="needs the image: make test-image"),
]
IMAGE = os.environ.get("IMAGE", "localhost/torchserve-kit:latest")
PODMAN_ENV = os.environ | {"CONTAINERS_CONF": str(ROOT / "deploy" / "container" / "containers.conf")}
READY_TIMEOUT = 300
STOP_BOUND = 30  # s from SIGTERM to exit


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    command = ["podman", *args]
    return subprocess.run(command, env=PODMAN_ENV, capture_output=True, text=True, check=check, timeout=timeout)


class Container:
    """One container of the image, started from the ServingRuntime's container spec."""

    def __init__(self, spec: dict, repo: Path, name: str):
        self.spec, self.repo, self.name = spec, repo, name
        self.ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))

    def run(self) -> None:
        env = {e["name"]: e["value"] for e in self.spec.get("env", [])} | port_overrides(self.ports)
        flags = [f"--env={k}={v}" for k, v in env.items()]
        mount = f"--volume={self.repo}:{MOUNT}:ro"
        podman("run", "--detach", f"--name={self.name}", "--network=host", mount, *flags, IMAGE, *self.spec["args"])

    def probe(self, check: str) -> subprocess.CompletedProcess:
        """The manifest's exec probe, run inside the container as the kubelet would."""
        key = "readinessProbe" if check == "ready" else "livenessProbe"
        return podman("exec", self.name, *self.spec[key]["exec"]["command"], check=False, timeout=60)

    def wait(self, check: str, want: bool, timeout: float, interval: float = 0.5) -> float:
        """Seconds until the probe says ``want``; on a timeout, the container's last log lines too."""
        logs = lambda: podman("logs", "--tail=40", self.name, check=False).stdout  # noqa: E731
        return wait_for_probe(self.probe, check, want, timeout, interval, logs=logs)

    def python(self, code: str) -> str:
        return podman("exec", self.name, "python", "-c", code).stdout

    def client(self) -> TorchServeClient:
        local = "http://127.0.0.1:{}".format
        return TorchServeClient(local(self.ports["inference"]), local(self.ports["management"]), None, timeout=120)

    def stop(self) -> tuple[float, int]:
        """``podman stop`` (SIGTERM, SIGKILL after the bound): seconds taken and the exit code."""
        started = time.monotonic()
        podman("stop", f"--time={STOP_BOUND}", self.name, timeout=STOP_BOUND + 30)
        took = time.monotonic() - started
        code = int(podman("inspect", "--format={{.State.ExitCode}}", self.name).stdout.strip())
        return took, code


KILL_WORKERS = """
import os, psutil
for p in psutil.process_iter(["cmdline"]):
    if "model_service_worker" in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid():
        p.kill()
"""  # (this script's own command line names the workers too)


@pytest.fixture(scope="module")
def kserve_out(model_store):
    """`make kserve`'s output, in a folder the image's user (uid 10001) can read."""
    out = Path(tempfile.mkdtemp(prefix="kit-kserve-"))
    try:
        write_all(out, "s3://bucket/prefix", IMAGE, store=model_store)
        for path in [out, *out.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def same_v2(got: triton.InferResult, want: triton.InferResult, where: str) -> None:
    names = [o["name"] for o in want.get_response()["outputs"]]
    assert [o["name"] for o in got.get_response()["outputs"]] == names, where
    for name in names:
        a, b = got.as_numpy(name), want.as_numpy(name)
        assert a.shape == b.shape, (where, name)
        if b.dtype == object:
            assert a.tolist() == b.tolist(), (where, name)
        else:
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=f"{where} {name}")


@pytest.mark.parametrize("name", MODELS)
def test_the_image_serves_a_repository_as_the_runtime_says(kserve_out, server, client, registered, name):  # noqa: F811
    container = Container(runtime_container(kserve_out), kserve_out / name, f"kit-test-{name}-{os.getpid()}")
    container.run()
    try:
        waited = container.wait("ready", True, READY_TIMEOUT)
        assert podman("healthcheck", "run", container.name, check=False).returncode == 0  # the image's HEALTHCHECK
        assert container.probe("live").returncode == 0
        state_file = f"/tmp/torchserve-kit-10001/warm-{container.ports['management']}.json"  # the image's uid
        state = json.loads(container.python(f"print(open({state_file!r}).read())"))
        (record,) = state["models"].values()
        assert record["samples"] == len(samples(name))
        print(f"\n{name} in the image: ready {waited:.1f}s after start ({record})")

        served = container.client()
        v2_here = triton.InferenceServerClient(f"127.0.0.1:{container.ports['inference']}", network_timeout=120)
        v2_venv = triton.InferenceServerClient(server.address("inference").removeprefix("http://"), network_timeout=120)
        for sample in samples(name):
            want = client.predict(name, sample.raw, sample.content_type)
            got = served.predict(name, sample.raw, sample.content_type)
            assert_same_answer(got, want, tolerance(name), where=sample.path.name)
            tensors, _ = v2_inputs(name, sample, binary=False)
            reference = v2_venv.infer(name, tensors, headers=auth(client))
            same_v2(v2_here.infer(name, tensors), reference, sample.path.name)

        container.python(KILL_WORKERS)
        container.wait("ready", False, 30, interval=0.1)
        container.wait("ready", True, READY_TIMEOUT)
    finally:
        took, code = container.stop()
        podman("rm", "--force", container.name, check=False)
        print(f"{name}: stopped {took:.1f}s after SIGTERM, exit code {code}")
    assert code == 0 and took < STOP_BOUND, f"exit code {code} after {took:.1f}s (137: killed, not stopped)"
