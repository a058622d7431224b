"""The probes (`python -m client.health`) against a real TorchServe with tokens on, as `make serve`
runs it: not ready until warm-up, not ready while a model has no live worker, a model registered
later is not ready until it is warmed too, live as long as the frontend answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from client.server import ROOT, Server
from tests.conftest import MODELS


@pytest.fixture(scope="module")
def fresh(model_store, tmp_path_factory):
    """A server of its own with every model registered (one worker each), never warmed up."""
    with Server.throwaway(model_store, tmp_path_factory.mktemp("health")) as srv:
        for name in MODELS:
            srv.client(timeout=120).register(f"{name}.mar", initial_workers=1)
        yield srv


def health(server, check: str) -> subprocess.CompletedProcess:
    """The CLI as a probe runs it: beside the server, config and key file given, no token passed."""
    command = [sys.executable, "-m", "client.health", check, "--config", str(server.config)]
    command += ["--key-file", str(server.key_file), "--timeout", "120"]
    env = {"KIT_HEALTH_STATE": str(server.workdir / "warm.json"), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=server.workdir, env=env, capture_output=True, text=True, timeout=180)


def test_ready_only_after_warm_up(fresh):
    assert health(fresh, "live").returncode == 0
    before = health(fresh, "ready")
    assert before.returncode == 1
    assert all(f"{name}/1.0: not warmed up" in before.stderr for name in MODELS), before.stderr
    warm = health(fresh, "warmup")
    assert warm.returncode == 0, warm.stderr
    assert sorted(json.loads(warm.stdout)) == sorted(f"{name}/1.0" for name in MODELS)
    after = health(fresh, "ready")
    assert after.returncode == 0, after.stderr


def test_not_ready_while_a_model_has_no_live_worker(fresh):
    assert health(fresh, "warmup").returncode == 0
    name = MODELS[-1]
    client = fresh.client(timeout=120)
    client.scale(name, 0)
    try:
        down = health(fresh, "ready")
        assert down.returncode == 1 and f"{name}/1.0: workers []" in down.stderr, down.stderr
        assert health(fresh, "live").returncode == 0  # the frontend still answers: no restart wanted
    finally:
        client.scale(name, 1)
    assert health(fresh, "ready").returncode == 0  # warmed once since start: enough


def test_a_model_registered_later_waits_for_its_own_warm_up(fresh):
    assert health(fresh, "warmup").returncode == 0
    client = fresh.client(timeout=120)
    client.register(f"{MODELS[0]}.mar", initial_workers=1, model_name="kit_late")
    try:
        late = health(fresh, "ready")
        assert late.returncode == 1 and "kit_late/1.0: not warmed up" in late.stderr, late.stderr
        assert health(fresh, "warmup").returncode == 0
        assert health(fresh, "ready").returncode == 0
    finally:
        client.unregister("kit_late")


def test_not_live_once_the_frontend_is_gone(fresh):
    fresh.stop()
    assert health(fresh, "live").returncode == 1
    assert health(fresh, "ready").returncode == 1
