"""Start, wait for and stop a TorchServe: the project's (`make serve`, see ``client.server_cli``) and
throwaway ones for tests, benchmarks and reliability runs (``Server.throwaway``).

Each server gets a state folder holding its TMPDIR (TorchServe keeps its PID file there, one
server per TMPDIR), its logs and its config snapshots; the server runs in ``workdir``, where it
writes key_file.json. The command line is ``python -m client.server_cli start|stop|restart|status``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from client.api import TorchServeClient, TorchServeError, read_properties
from client.config import free_ports as free_ports  # importable from here too, as before
from client.config import private_config
from client.health import versions as described
from client.health import workers_ready
from export.paths import CONFIG, ROOT

TORCHSERVE = Path(sys.executable).parent / "torchserve"
STARTUP_TIMEOUT = 180.0  # s: two busy cores, a JVM and one Python worker per model
LOG_TAIL = 40  # lines of each log printed when a throwaway server fails
OUT_LIMIT = 10 * 1024 * 1024  # bytes of torchserve.out kept before it is rotated at the next start


def rotate(path: Path, limit: int = OUT_LIMIT, keep: int = 3) -> None:
    """Before a start: ``path`` over ``limit`` bytes becomes ``path.1`` (``.1`` -> ``.2``...; ``keep``
    kept). The frontend's console copy of ts_log.log lands there and log4j never rotates it."""
    if not path.exists() or path.stat().st_size <= limit:
        return
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


class ServerError(RuntimeError):
    """TorchServe did not start, or did not become healthy in time."""


@dataclass
class Server:
    """A TorchServe instance: where it runs and how to reach it."""

    config: Path
    model_store: Path
    workdir: Path  # cwd of the server: key_file.json lands here
    state: Path  # tmp/ (PID file) and log/ (logs and config snapshots)

    @classmethod
    @contextmanager
    def throwaway(
        cls,
        model_store: Path,
        work: Path | None = None,
        snapshots: bool = False,
        timeout: float = STARTUP_TIMEOUT,
        base: Path = CONFIG,
        **settings: str,
    ) -> Iterator[Server]:
        """A running server on ``base`` (the project's config) with free ports and ``settings``
        (config.properties lines), in ``work`` (default: a temporary folder); stopped whatever happens.
        When starting or the body fails, the tails of its logs are printed to stderr (pytest shows them)."""
        with ExitStack() as stack:
            if work is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="torchserve-")))
            work.mkdir(parents=True, exist_ok=True)
            config = private_config(work / "config.properties", model_store, base, **settings)
            server = cls(config, model_store, work, work / "state")
            try:
                server.start(timeout, snapshots=snapshots)
                yield server
            except Exception:
                server.print_logs()
                raise
            finally:
                server.stop()

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
    def running(self) -> bool:
        """Whether the frontend named by the PID file is alive."""
        pid = self.pid
        return pid is not None and psutil.pid_exists(pid)

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
        if not self.running:
            return []
        frontend = psutil.Process(self.pid)
        return [frontend, *frontend.children(recursive=True)]

    def client(self, **kwargs) -> TorchServeClient:
        """A client for this server's addresses and keys."""
        return TorchServeClient.from_config(self.config, key_file=self.key_file, **kwargs)

    def address(self, api: str) -> str:
        """``inference``, ``management`` or ``metrics`` address from the config."""
        return read_properties(self.config)[f"{api}_address"]

    def start(self, timeout: float = STARTUP_TIMEOUT, snapshots: bool = True, restore: bool = False) -> None:
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
        rotate(self.log_dir / "torchserve.out")
        private = os.open(self.log_dir / "torchserve.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(private, "ab") as out:
            # Redirected: torchserve --start leaves a server attached to our stdout otherwise.
            # umask 077: key_file.json is never readable by others, not even before TorchServe's chmod,
            # and neither are the logs and snapshots.
            subprocess.run(
                command,
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=60,
                umask=0o077,
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
        client = self.client(timeout=5)
        while time.monotonic() < deadline:
            try:
                versions = described(client)
                waiting = [
                    f"{d['modelName']} {d['modelVersion']}" for d in versions if not workers_ready(d, d["default"])
                ]
                if not waiting:
                    return versions
                last = f"waiting for workers of {', '.join(waiting)}"
            except (requests.RequestException, TorchServeError, ValueError, KeyError, OSError) as err:
                last = str(err)
            time.sleep(0.25)
        raise ServerError(f"workers not READY within {timeout:.0f}s ({last}); see {self.log_dir}/model_log.log")

    def restart(self, timeout: float = STARTUP_TIMEOUT) -> list[dict]:
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
        procs = self.processes()
        subprocess.run(
            [str(TORCHSERVE), "--stop"], cwd=self.workdir, env=self.env, capture_output=True, timeout=timeout
        )
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for proc in alive:  # A worker that outlived its frontend would hold memory and a port.
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
        (self.state / "tmp" / ".model_server.pid").unlink(missing_ok=True)

    def print_logs(self, lines: int = LOG_TAIL) -> None:
        """The last ``lines`` of each of the server's logs, to stderr (what went wrong, in the test output)."""
        for path in sorted(self.log_dir.glob("*.log")) + sorted(self.log_dir.glob("*.out")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {path} (last {len(tail)} lines)", *tail, sep="\n", file=sys.stderr)


def project_server() -> Server:
    """The server `make serve` runs: the project's config, model store and var/ folder."""
    return Server(CONFIG, ROOT / "model_store", ROOT, ROOT / "var")
