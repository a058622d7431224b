"""Start, wait for and stop a TorchServe: used by `make serve`/`make stop` and the test fixtures.

Usage: ``python -m client.server start|stop|restart|status``.
Each server gets a state folder holding its TMPDIR (TorchServe keeps its PID file there, one
server per TMPDIR), its logs and its config snapshots; the server runs in ``workdir``, where it
writes key_file.json. ``private_config`` gives a throwaway server its own free ports.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from client.api import TorchServeClient, TorchServeError, read_properties

ROOT = Path(__file__).resolve().parent.parent
TORCHSERVE = Path(sys.executable).parent / "torchserve"


class ServerError(RuntimeError):
    """TorchServe did not start, or did not become healthy in time."""


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free right now (held open together so they differ)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def private_config(target: Path, model_store: Path, base: Path = ROOT / "config.properties") -> Path:
    """Write ``base`` to ``target`` with free ports and ``model_store``: a server that runs beside
    others (tests, `make soak`) without touching the project's ports or archives."""
    inference, management, metrics, grpc_inference, grpc_management, worker = free_ports(6)
    text = Path(base).read_text()
    for key, port in (("inference", inference), ("management", management), ("metrics", metrics)):
        text = re.sub(rf"^{key}_address=.*$", f"{key}_address=http://127.0.0.1:{port}", text, flags=re.M)
    text = re.sub(r"^grpc_inference_port=.*$", f"grpc_inference_port={grpc_inference}", text, flags=re.M)
    text = re.sub(r"^grpc_management_port=.*$", f"grpc_management_port={grpc_management}", text, flags=re.M)
    text = re.sub(r"^model_store=.*$", f"model_store={model_store}", text, flags=re.M)
    target.write_text(text + f"\ninitial_worker_port={worker}\n")
    return target


@dataclass
class Server:
    """A TorchServe instance: where it runs and how to reach it."""

    config: Path
    model_store: Path
    workdir: Path  # cwd of the server: key_file.json lands here
    state: Path  # tmp/ (PID file) and log/ (logs and config snapshots)

    @property
    def env(self) -> dict:
        tmp, log = self.state / "tmp", self.state / "log"
        return os.environ | {
            "TMPDIR": str(tmp),
            "TEMP": str(tmp),
            "LOG_LOCATION": str(log),
            "METRICS_LOCATION": str(log),
        }

    @property
    def log_dir(self) -> Path:
        return self.state / "log"

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    @property
    def pid(self) -> int | None:
        path = self.state / "tmp" / ".model_server.pid"
        return int(path.read_text().strip()) if path.exists() else None

    @property
    def snapshot_dir(self) -> Path:
        """Where TorchServe writes a config snapshot after every change ($LOG_LOCATION/config)."""
        return self.log_dir / "config"

    def latest_snapshot(self) -> Path | None:
        """The snapshot a restart restores: the newest (TorchServe names them by timestamp)."""
        snapshots = sorted(self.snapshot_dir.glob("*.cfg")) if self.snapshot_dir.exists() else []
        return snapshots[-1] if snapshots else None

    def processes(self) -> list[psutil.Process]:
        """The frontend (Java) first, then its worker processes; empty when not running."""
        pid = self.pid
        if not pid or not psutil.pid_exists(pid):
            return []
        frontend = psutil.Process(pid)
        return [frontend, *frontend.children(recursive=True)]

    def client(self, **kwargs) -> TorchServeClient:
        """A client for this server's addresses and keys."""
        return TorchServeClient.from_config(self.config, key_file=self.key_file, **kwargs)

    def address(self, api: str) -> str:
        """``inference``, ``management`` or ``metrics`` address from the config."""
        return read_properties(self.config)[f"{api}_address"]

    def start(self, timeout: float = 120.0, snapshots: bool = True, restore: bool = False) -> None:
        """Start in the background and wait until ``/ping`` answers.

        Args:
            timeout: seconds to wait for health before giving up (TorchServe itself waits forever).
            snapshots: keep config snapshots (off gives ``--ncs``, for throwaway servers).
            restore: start from the last snapshot instead of ``config`` (no ``--ts-config``): its
                models, versions, default versions and worker counts come back, and so do its
                settings (edits to ``config`` since are not read). Without any snapshot TorchServe
                reads ``workdir/config.properties``. See ``restart``.
        """
        for sub in ("tmp", "log"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        command = [str(TORCHSERVE), "--start", "--model-store", str(self.model_store)]
        command += [] if restore else ["--ts-config", str(self.config)]
        command += [] if snapshots else ["--ncs"]
        with open(self.log_dir / "torchserve.out", "ab") as out:
            # Redirected: torchserve --start leaves a server attached to our stdout otherwise.
            subprocess.run(
                command, cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=60
            )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        """Poll ``/ping`` until it answers 200, or raise ServerError naming the log."""
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            try:
                self.client(timeout=2).ping()
                return
            except (requests.RequestException, ValueError, KeyError, OSError) as err:
                last = str(err)
            time.sleep(0.25)
        raise ServerError(
            f"TorchServe did not answer /ping within {timeout:.0f}s (last: {last}); see {self.log_dir}/ts_log.log "
            f"and {self.log_dir}/model_log.log"
        )

    def wait_workers_ready(self, timeout: float) -> list[dict]:
        """Poll the management API until every version of every model has its minimum number of
        workers, all READY; return their descriptions. ``/ping`` is not enough after a restore:
        it answers Healthy while the restored workers are still loading."""
        deadline, last = time.monotonic() + timeout, "no answer"
        ts = self.client(timeout=5)
        while time.monotonic() < deadline:
            try:
                versions = [d for m in ts.list_models() for d in ts.describe(m["modelName"])]
                waiting = [
                    f"{d['modelName']} {d['modelVersion']}"
                    for d in versions
                    if len(d["workers"]) < d["minWorkers"] or any(w["status"] != "READY" for w in d["workers"])
                ]
                if not waiting:
                    return versions
                last = f"waiting for workers of {', '.join(waiting)}"
            except (requests.RequestException, TorchServeError, ValueError, KeyError, OSError) as err:
                last = str(err)
            time.sleep(0.25)
        raise ServerError(f"workers not READY within {timeout:.0f}s ({last}); see {self.log_dir}/model_log.log")

    def restart(self, timeout: float = 120.0) -> list[dict]:
        """Stop, then start from the last config snapshot and wait for every worker.

        This is the restart that keeps state: the models registered through the management API,
        their versions, default versions and worker counts come back with no re-registration.
        A start with ``--ts-config`` (``start()``, `make serve`) ignores snapshots and begins empty.
        """
        self.stop()
        if self.latest_snapshot() is None:
            raise ServerError(f"no config snapshot in {self.snapshot_dir}: nothing to restore")
        self.start(timeout, snapshots=True, restore=True)
        return self.wait_workers_ready(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server and every worker it started; leave no process behind."""
        pid = self.pid
        procs = []
        if pid and psutil.pid_exists(pid):
            frontend = psutil.Process(pid)
            procs = [frontend, *frontend.children(recursive=True)]
        subprocess.run(
            [str(TORCHSERVE), "--stop"], cwd=self.workdir, env=self.env, capture_output=True, timeout=timeout
        )
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for proc in alive:  # A worker that outlived its frontend would hold memory and a port.
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
        (self.state / "tmp" / ".model_server.pid").unlink(missing_ok=True)


def project_server() -> Server:
    """The server `make serve` runs: the project's config, model store and var/ folder."""
    return Server(ROOT / "config.properties", ROOT / "model_store", ROOT, ROOT / "var")


def main(argv: list[str] | None = None) -> int:
    """Command line for `make serve` / `make stop`."""
    parser = argparse.ArgumentParser(
        prog="python -m client.server", description="Start or stop the project's TorchServe."
    )
    parser.add_argument(
        "action",
        choices=("start", "stop", "restart", "status"),
        help="start (fresh, from config.properties), stop, restart (from the last config snapshot: same models, "
        "versions, defaults and workers), status",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /ping (default: 120)")
    args = parser.parse_args(argv)
    server = project_server()
    if args.action == "start":
        if server.pid and psutil.pid_exists(server.pid):
            print(f"TorchServe already running (pid {server.pid}); `make stop` first to restart it")
            return 0
        if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
            print(
                "TorchServe needs Java 17: install a JDK (e.g. apt-get install openjdk-17-jre-headless)",
                file=sys.stderr,
            )
            return 1
        try:
            server.start(args.timeout)
        except ServerError as err:
            print(err, file=sys.stderr)
            return 1
        print(f"TorchServe is up (pid {server.pid}); logs in {server.log_dir.relative_to(ROOT)}/")
    elif args.action == "restart":
        try:
            versions = server.restart(args.timeout)
        except ServerError as err:
            print(err, file=sys.stderr)
            return 1
        print(f"TorchServe restarted from its last snapshot in {server.snapshot_dir.relative_to(ROOT)}/:")
        for d in versions:
            print(f"  {d['modelName']} {d['modelVersion']}: {len(d['workers'])} workers")
    elif args.action == "stop":
        running = server.pid and psutil.pid_exists(server.pid)
        server.stop()
        print("TorchServe stopped" if running else "TorchServe was not running")
    else:
        running = bool(server.pid and psutil.pid_exists(server.pid))
        print(f"running (pid {server.pid})" if running else "not running")
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
