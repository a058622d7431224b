"""Updates under load on a real TorchServe (client/updates.py): a reload with a rebuilt archive, a
rollback, a scale 2 -> 1 -> 2, and two failing new versions (one breaks at load, one answers its
samples wrongly), each while threads send the model's samples over keep-alive connections.

Every answer must be 200 and equal to the answer the model gave before any update, and each thread
must see the answering version (the handler's X-Kit-Model-Version header) change exactly once per
version change. The failing versions go through the command line: it must exit non-zero naming the
cause while the old version keeps serving. `make reliability` runs the same with 8 threads and at
least 5,000 requests per phase (reliability/updates.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.api import TorchServeClient
from client.config import private_config
from client.samples import archive_samples
from client.server import Server
from client.trust import record_digest
from client.updates import UpdateError, Updater
from client.versions import History
from deploy.kserve import CONTAINER_CONFIG
from export.paths import ROOT
from export.spec import EXPECTED, load_spec
from reliability.record import record
from reliability.updates import Load, phase, prepare_store, references
from tests.conftest import MODELS

DRAIN_DELAY = 3.0  # s: start.sh's KIT_DRAIN_DELAY in the SIGTERM test
THREADS, REQUESTS = 4, 200  # per phase: the phase lasts as long as its update, and at least this many answers


def cheapest(store) -> str:
    """The model with the smallest archive among those whose samples have expected answers."""
    checked = [m for m in MODELS if (load_spec(m).folder / "samples" / EXPECTED).exists()]
    return min(checked, key=lambda m: (store / f"{m}.mar").stat().st_size)


@pytest.fixture(scope="module")
def served(model_store, tmp_path_factory):
    """A throwaway server on a private store holding one model's archive and its variants,
    the model registered through the kit (its first version)."""
    model = cheapest(model_store)
    store = tmp_path_factory.mktemp("update-store")
    prepare_store(model_store / f"{model}.mar", store)
    with Server.throwaway(store, tmp_path_factory.mktemp("update-server")) as server:
        client = server.client(timeout=300)
        updater = Updater(client, store, History(server.workdir / "versions.json"), log_dir=server.log_dir)
        updater.update(f"{model}.mar")
        yield server, updater, model


def command_line(server: Server, *args: str) -> dict:
    """``python -m client <args>`` against the server; UpdateError with its stderr when it exits non-zero."""
    done = subprocess.run(
        [sys.executable, "-m", "client", "--config", str(server.config), "--key-file", str(server.key_file)]
        + [*args, "--state", str(server.workdir / "versions.json"), "--log-dir", str(server.log_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise UpdateError(f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1]}")
    return {}


def test_updates_under_load_lose_nothing(served):
    server, updater, model = served
    client = updater.ts
    samples = archive_samples(server.model_store / f"{model}.mar")
    refs = references(client, model, samples)

    def load_of() -> Load:
        return Load(server.client(), model, samples, refs, THREADS)

    updater.scale(model, 2)  # whatever the archive's minWorkers: the scale phases go 2 -> 1 -> 2
    plan = [  # (phase, action, version changes seen per thread, what the error must name)
        ("reload (rebuilt archive)", lambda: updater.update(f"{model}-rebuilt.mar"), 1, None),
        ("rollback", lambda: updater.rollback(model), 1, None),
        ("scale 2 -> 1", lambda: updater.scale(model, 1), 1, None),
        ("scale 1 -> 2", lambda: updater.scale(model, 2), 0, None),  # in place: the same version
        (
            "new version fails to load",
            lambda: command_line(server, "update", f"{model}-broken.mar"),
            0,
            ("exit 1", "failed to load", "ArtifactMismatch", "still serves"),
        ),
        (
            "new version answers wrongly",
            lambda: command_line(server, "update", f"{model}-wrong.mar"),
            0,
            ("exit 1", "answered wrongly", EXPECTED, "still serves"),
        ),
    ]
    for name, action, switches, cause in plan:
        serving = updater.default(model)["modelVersion"]
        workers = 1 if name == "scale 2 -> 1" else 2  # an update keeps the serving version's worker count
        got = phase(load_of, action, name, REQUESTS)
        record("update", kind="short (make test)", **got)
        print(f"\n{name}: {got}")
        assert got["failed"] == 0, got["examples"]
        assert got["requests"] >= REQUESTS
        assert got["switches_per_thread"] == [switches], got
        now = updater.default(model)["modelVersion"]
        if switches:
            assert got["error"] is None and got["versions_seen"] == [serving, now] and now != serving, got
        else:
            assert got["versions_seen"] == [serving] == [now], got
        assert all(word in (got["error"] or "") for word in cause or ()), got["error"]
        assert (got["error"] is None) == (cause is None), got["error"]
        described = updater.default(model)
        assert [w["status"] for w in described["workers"]] == ["READY"] * workers, described["workers"]
    # The failed versions left nothing registered; what is left is the history's (default + parked).
    history = History(server.workdir / "versions.json").model(model)["defaults"]
    assert set(updater.versions(model)) <= set(history), (updater.versions(model).keys(), history)


def test_sigterm_drains_before_the_server_stops(model_store, tmp_path):
    """deploy/container/start.sh with the container's config on a venv TorchServe: SIGTERM to the
    whole group (as tini -g sends it) turns readiness off at once, requests under way and sent
    until then are answered, then the server stops within the grace period."""
    model = cheapest(model_store)
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy2(model_store / f"{model}.mar", store)
    record_digest(store, store / f"{model}.mar")  # start.sh serves pinned archives only (client/trust.py)
    config = private_config(tmp_path / "config.properties", store, CONTAINER_CONFIG, default_workers_per_model="1")
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "TS_CONFIG_FILE": str(config),
        "TMPDIR": str(tmp_path),
        "LOG_LOCATION": str(tmp_path / "log"),
        "METRICS_LOCATION": str(tmp_path / "log"),
        "KIT_HEALTH_STATE": str(tmp_path / "warm.json"),
        "KIT_DRAIN_DELAY": str(DRAIN_DELAY),
        "KIT_DRAIN_GRACE": "15",
        "KIT_BAKED_CONFIG": str(config),  # the image's own config: here the same file
    }
    probe = [sys.executable, "-m", "client.health", "ready", "--config", str(config)]

    def ready() -> bool:
        return subprocess.run(probe, env=env, cwd=tmp_path, capture_output=True, timeout=30).returncode == 0

    start = ROOT / "deploy" / "container" / "start.sh"
    entry = subprocess.Popen(["sh", str(start)], cwd=tmp_path, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert time.monotonic() < deadline and entry.poll() is None, "the server never became ready"
            time.sleep(1)
        client = TorchServeClient.from_config(config, key_file=None)
        samples = archive_samples(store / f"{model}.mar")
        load = Load(client, model, samples, references(client, model, samples), THREADS).start()
        time.sleep(1)
        os.killpg(entry.pid, signal.SIGTERM)  # tini -g: the whole group
        signalled = time.monotonic()
        while ready():
            assert time.monotonic() - signalled < DRAIN_DELAY, "readiness still on after the drain delay"
        not_ready_after = time.monotonic() - signalled
        time.sleep(0.5)  # what a load balancer takes to notice: requests keep coming meanwhile
        load.stop()
        code = entry.wait(timeout=60)
        stopped_after = time.monotonic() - signalled
    finally:
        if entry.poll() is None:
            os.killpg(entry.pid, signal.SIGKILL)
    failures = [f for own in load.answers for (_, _, f) in own if f]
    print(f"\nSIGTERM: not ready after {not_ready_after:.2f} s, {load.count} requests, {len(failures)} failed, "
          f"stopped after {stopped_after:.1f} s (exit {code})")  # fmt: skip
    assert failures == [] and load.count > 0, failures[:3]
    assert code == 143
    assert DRAIN_DELAY <= stopped_after < DRAIN_DELAY + 15 + 10
