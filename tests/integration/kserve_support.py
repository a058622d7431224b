"""TorchServe started the way KServe starts it, on this machine: the old TorchServe-runtime layout
(``KServeStyleServer``), and our own ServingRuntime's container command run from the venv
(``RuntimeProcess``) or inside the image (tests/container)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from client.api import TorchServeClient
from client.server import ROOT, Server, free_ports
from deploy.kserve import MOUNT

# The image's entry point is `tini -g -e 143 -- /opt/kit/start.sh` (Containerfile); start.sh is this file.
ENTRY_POINT = ROOT / "deploy" / "container" / "start.sh"
PORTS = ("inference", "management", "metrics", "grpc_inference", "grpc_management")


def port_overrides(ports: dict[str, int]) -> dict[str, str]:
    """TS_* variables moving every address to a free loopback port (the configs honour them)."""
    env = {f"TS_{k.upper()}_ADDRESS": f"http://127.0.0.1:{p}" for k, p in ports.items() if "grpc" not in k}
    return env | {f"TS_{k.upper()}_PORT": str(p) for k, p in ports.items() if "grpc" in k}


def runtime_container(out: Path) -> dict:
    """The container spec of the ServingRuntime `make kserve` wrote into ``out``."""
    return yaml.safe_load((out / "servingruntime.yaml").read_text())["spec"]["containers"][0]


@dataclass
class KServeStyleServer(Server):
    """``torchserve --start --model-store <repo>/model-store --ts-config <repo>/config/config.properties``,
    with the addresses moved to free loopback ports by TS_* variables."""

    ports: dict = field(default_factory=dict)

    @classmethod
    def for_repository(cls, repo: Path, work: Path) -> KServeStyleServer:
        """A server for one model repository written by deploy/kserve.py."""
        ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
        work.mkdir(parents=True, exist_ok=True)
        return cls(repo / "config" / "config.properties", repo / "model-store", work, work / "state", ports)

    @property
    def env(self) -> dict:
        return super().env | port_overrides(self.ports)

    def address(self, api: str) -> str:
        return f"http://127.0.0.1:{self.ports[api]}"

    def client(self, **kwargs) -> TorchServeClient:
        # No tokens: the KServe layout leaves authentication to the cluster's ingress.
        return TorchServeClient(self.address("inference"), self.address("management"), key_file=None, **kwargs)


def service_env(repo: Path) -> dict:
    """The env the repository's InferenceService adds to the container (its pinned archive digest)."""
    service = yaml.safe_load((repo / "inferenceservice.yaml").read_text())
    return {e["name"]: e["value"] for e in service["spec"]["predictor"]["model"].get("env", [])}


@dataclass
class RuntimeProcess:
    """The ServingRuntime's container command (entry point, its args and env), run from the venv with
    the repository where the pod has /mnt/models; free loopback ports; its own TMPDIR and logs."""

    container: dict
    repo: Path
    work: Path
    ports: dict = field(default_factory=lambda: dict(zip(PORTS, free_ports(len(PORTS)), strict=True)))
    process: subprocess.Popen | None = None

    def mounted(self, value: str) -> str:
        return value.replace(MOUNT, str(self.repo))

    @property
    def env(self) -> dict:
        tmp = self.work / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        spec = {e["name"]: self.mounted(e["value"]) for e in self.container.get("env", [])}
        local = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "TMPDIR": str(tmp),
            "LOG_LOCATION": str(self.work / "logs"),
            "METRICS_LOCATION": str(self.work / "logs"),
            "TS_MODEL_STORE": str(self.repo / "model-store"),  # the config says /mnt/models/model-store
            "KIT_BAKED_CONFIG": str(ROOT / "deploy" / "container" / "config.properties"),  # the image's
        }
        return os.environ | spec | service_env(self.repo) | local | port_overrides(self.ports)

    def start(self) -> None:
        args = [self.mounted(a) for a in self.container.get("args", [])]
        log = open(self.work / "container.log", "ab")  # noqa: SIM115 - the process owns it until it exits
        # A session of its own: SIGTERM to the group is what tini -g does in the image.
        self.process = subprocess.Popen(
            ["sh", str(ENTRY_POINT), *args], cwd=self.work, env=self.env, stdout=log, stderr=log, start_new_session=True
        )

    def probe(self, check: str) -> subprocess.CompletedProcess:
        """The probe the ServingRuntime's spec runs for ``check`` (readiness or liveness), in this env."""
        probe = self.container["readinessProbe" if check == "ready" else "livenessProbe"]["exec"]["command"]
        command = [sys.executable if probe[0] == "python" else probe[0], *probe[1:]]
        return subprocess.run(command, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=60)

    def wait(self, check: str, want: bool, timeout: float, interval: float = 0.5) -> float:
        """Seconds until the probe says ``want``; raises TimeoutError with its last words."""
        return wait_for_probe(self.probe, check, want, timeout, interval, alive=self.alive)

    def alive(self) -> None:
        """Raise if the runtime's process has exited (waiting longer would only time out)."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the runtime exited ({self.process.returncode}); see {self.work}/container.log")

    def warm_state(self) -> dict:
        """What warm-up recorded (client.health writes it in a private folder of the server's TMPDIR)."""
        path = self.work / "tmp" / f"torchserve-kit-{os.geteuid()}" / f"warm-{self.ports['management']}.json"
        return json.loads(path.read_text())

    def workers(self) -> list[psutil.Process]:
        """The model workers: python processes under the frontend (java)."""
        found = []
        for proc in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if "model_service_worker" in " ".join(proc.cmdline()):
                    found.append(proc)
            except psutil.Error:
                pass  # gone, or a zombie
        return found

    def terminate(self, timeout: float) -> float:
        """SIGTERM to the process group; seconds until every process of it has exited."""
        group = os.getpgid(self.process.pid)
        members = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        started = time.monotonic()
        os.killpg(group, signal.SIGTERM)
        _, alive = psutil.wait_procs(members, timeout=timeout)
        elapsed = time.monotonic() - started
        for proc in alive:
            proc.kill()
        return elapsed if not alive else float("inf")

    def client(self, **kwargs) -> TorchServeClient:
        local = "http://127.0.0.1:{}".format
        return TorchServeClient(local(self.ports["inference"]), local(self.ports["management"]), None, **kwargs)


def wait_for_probe(
    probe, check: str, want: bool, timeout: float, interval: float = 0.5, alive=None, logs=None
) -> float:
    """Seconds until ``probe(check)`` exits 0 (``want`` True) or not (False), polled every ``interval``;
    ``alive()`` may raise to stop early; raises TimeoutError with the probe's last words and ``logs()``."""
    started, last = time.monotonic(), None
    while time.monotonic() - started < timeout:
        last = probe(check)
        if (last.returncode == 0) is want:
            return time.monotonic() - started
        if alive is not None:
            alive()
        time.sleep(interval)
    tail = f"\n{logs()}" if logs else ""
    raise TimeoutError(f"{check} not {want} after {timeout:.0f}s: {last.stderr if last else ''}{tail}")
