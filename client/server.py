"""Start, wait for and stop a TorchServe: used by `make serve`/`make stop` and the test fixtures.

Usage: ``python -m client.server start|stop [--config config.properties] [--model-store model_store]``.
Each server gets a state folder holding its TMPDIR (TorchServe keeps its PID file there, one
server per TMPDIR) and its logs; the server runs in ``workdir``, where it writes key_file.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from client.api import TorchServeClient, read_properties

ROOT = Path(__file__).resolve().parent.parent
TORCHSERVE = Path(sys.executable).parent / "torchserve"


class ServerError(RuntimeError):
    """TorchServe did not start, or did not become healthy in time."""


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
            restore: start from the last snapshot instead of ``config`` (no ``--ts-config``; the
                config file is then read from ``workdir/config.properties``).
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
    parser.add_argument("action", choices=("start", "stop", "status"), help="what to do")
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
