"""Start and stop the Flask comparison server (bench/flask_app.py) in its own process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from client.server import free_ports
from export.paths import ROOT
from export.samples import Sample


class FlaskError(RuntimeError):
    """The Flask server exited or did not answer in time."""


class FlaskServer:
    """``with FlaskServer(archive, log) as flask: flask.url``: the app on a free port, stopped on exit."""

    def __init__(
        self, archive: Path, log: Path, probe: Sample, nodelay: bool = False, threads: int = 0, timeout: float = 120
    ):
        self.archive, self.log, self.probe, self.timeout = archive, log, probe, timeout
        self.options = (["--nodelay"] if nodelay else []) + ([f"--torch-threads={threads}"] if threads else [])
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}/predict"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> FlaskServer:
        command = [sys.executable, "-m", "bench.flask_app", "--archive", str(self.archive), "--port", str(self.port)]
        command += self.options
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FlaskError(f"Flask server exited with {self.process.returncode}; see {self.log}")
            try:
                headers = {"Content-Type": self.probe.content_type}
                if requests.post(self.url, data=self.probe.raw, headers=headers, timeout=5).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise FlaskError(f"Flask server did not answer within {self.timeout:.0f}s; see {self.log}")

    def wait_idle(self, timeout: float = 120) -> float:
        """Wait until the server stops using CPU: its threads finish the requests of clients that
        went away when a run ended. Returns the wait."""
        process, start = psutil.Process(self.process.pid), time.monotonic()
        used = sum(process.cpu_times()[:2])
        while time.monotonic() - start < timeout:
            time.sleep(0.5)
            now = sum(process.cpu_times()[:2])
            if now - used < 0.025:  # under 5% of a core
                break
            used = now
        return time.monotonic() - start

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server has used so far."""
        return sum(psutil.Process(self.process.pid).cpu_times()[:2])

    def rss_mb(self) -> float:
        """Resident memory of the server process."""
        return round(psutil.Process(self.process.pid).memory_info().rss / (1024 * 1024), 1)

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
