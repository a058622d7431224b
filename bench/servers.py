"""The servers under load: TorchServe (a ``client.server.Server.throwaway``, and what it reports
about itself), and the peers of bench/apps.py (Flask, LitServe) each in its own process group."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import requests
import yaml

from client.api import TorchServeError
from client.server import Server, free_ports
from export.paths import ROOT
from export.samples import Sample


def session() -> requests.Session:
    """An HTTP session that ignores HTTP(S)_PROXY and .netrc: the bench talks to loopback only."""
    s = requests.Session()
    s.trust_env = False
    return s


HTTP = session()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its children so far."""
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children (MB)."""
    root = psutil.Process(pid)
    return round(sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20, 1)


class Peer:
    """``with Peer("litserve", archive, options, log, probe) as peer: peer.url``: a peer on a free
    port serving the archive's artifact (bench/apps.py), stopped with its children on exit."""

    def __init__(self, system: str, archive: Path, options: dict, log: Path, probe: Sample, timeout: float = 180):
        self.system, self.archive, self.log, self.probe, self.timeout = system, archive, log, probe, timeout
        self.options = [f"--{k}={v}" for k, v in options.items()]
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}/predict"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Peer:
        command = [sys.executable, "-m", "bench.apps", self.system, f"--archive={self.archive}", f"--port={self.port}"]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                command + self.options, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
                raise RuntimeError(f"{self.system} exited with {self.process.returncode}: {tail[0][:300]}")
            try:
                if post(self.url, self.probe, None, timeout=10).status_code == 200:
                    self.pause()
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"{self.system} did not answer within {self.timeout:.0f}s; see {self.log}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def pause(self, paused: bool = True) -> None:
        """Stop (or continue) the peer's processes: LitServe's batching loop polls its queue and
        uses CPU while idle, which would slow every other system measured meanwhile."""
        os.killpg(self.process.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def rss_mb(self) -> float:
        return tree_rss_mb(self.process.pid)

    def settle(self, timeout: float = 120) -> float:
        """Wait until the server has finished the requests of clients that went away when a run
        ended: its CPU use per 0.5 s is under 5% of a core, or steady (LitServe's batching loop
        polls at a steady rate when idle). Returns the wait."""
        start, used, last = time.monotonic(), self.cpu_seconds(), None
        while time.monotonic() - start < timeout:
            time.sleep(0.5)
            now = self.cpu_seconds()
            if now - used < 0.025 or (last is not None and abs(now - used - last) < 0.01):
                break
            used, last = now, now - used
        return time.monotonic() - start

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.pause(False)
            os.killpg(self.process.pid, signal.SIGTERM)  # LitServe's workers are its children
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


# --- TorchServe --------------------------------------------------------------------------------


def register(server: Server, name: str) -> float:
    """Register ``<name>.mar`` synchronously (its model-config.yaml decides); returns the seconds."""
    t0 = time.perf_counter()
    server.client(timeout=300).register(f"{name}.mar", model_name=name)  # a variant's name, not its manifest's
    return time.perf_counter() - t0


def unregister(server: Server, name: str, attempts: int = 5) -> None:
    """Unregister; TorchServe 0.12 sometimes answers 500 ConcurrentModificationException while its
    workers are still stopping, and a later try succeeds."""
    for attempt in range(attempts):
        try:
            server.client().unregister(name)
            return
        except TorchServeError as err:
            if "ConcurrentModification" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)


def served_config(server: Server, name: str) -> dict:
    """The batching and worker settings TorchServe reports for a registered model."""
    d = server.client().describe(name, None)[0]
    return {k: d[k] for k in ("batchSize", "maxBatchDelay", "minWorkers", "maxWorkers")} | {
        "pids": [w["pid"] for w in d["workers"]]
    }


SAMPLE_LINE = re.compile(r"^(\w+)\{(.*)\}\s+(\S+)$")
COUNTERS = {
    "ts_inference_requests_total": "requests",
    "ts_inference_latency_microseconds": "latency_us",
    "ts_queue_latency_microseconds": "queue_us",
}


def counters(server: Server, model: str) -> dict:
    """The frontend's cumulative Prometheus counters for one model: requests, latency and queue (us)."""
    out = dict.fromkeys(COUNTERS.values(), 0.0)
    for line in HTTP.get(f"{server.address('metrics')}/metrics", timeout=10).text.splitlines():
        match = SAMPLE_LINE.match(line.strip())
        if match and match.group(1) in COUNTERS and f'model_name="{model}"' in match.group(2):
            out[COUNTERS[match.group(1)]] += float(match.group(3))
    return out


def post(url: str, sample: Sample, token: str | None, timeout: float = 300) -> requests.Response:
    """One request on a connection of its own (a kept one may have been closed by a paused peer)."""
    headers = {"Content-Type": sample.content_type, "Connection": "close"}
    headers |= {"Authorization": f"Bearer {token}"} if token else {}
    return HTTP.post(url, data=sample.raw, headers=headers, timeout=timeout)


def drain(url: str, probe: Sample, token: str | None) -> float:
    """Send one request and wait for its answer: TorchServe still answers the queued requests of
    clients that went away when a run ended, in order, so then the queue is empty. Returns the wait."""
    start = time.monotonic()
    post(url, probe, token)
    return time.monotonic() - start


# "[METRICS]PredictionTime.Milliseconds:1.71|#ModelName:digits,...|#hostname:vm,<ts>,<request ids> pattern=..."
# "[METRICS]PaddedPercent.Percent:12.5|#ModelName:digits,...": one per batch of more than one row.
METRIC_LINE = re.compile(
    r"\[METRICS\](PredictionTime|PaddedPercent)\.\w+:([\d.]+)\|#ModelName:([^,|]+).*?#hostname:[^,]+,\d+,([\w,-]*)"
)


def log_offset(server: Server) -> int:
    """Current size of ts_log.log: where the next run's lines start."""
    path = server.log_dir / "ts_log.log"
    return path.stat().st_size if path.exists() else 0


def worker_metrics(server: Server, offset: int, model: str) -> dict:
    """The model's per-batch metric lines in ts_log.log since ``offset``: ``batches`` as
    (PredictionTime ms, requests) and ``padded`` percents. TorchServe's default log config writes
    each line twice; the request ids tell the copies apart."""
    path = server.log_dir / "ts_log.log"
    seen: dict = {"PredictionTime": {}, "PaddedPercent": {}}
    if path.exists():
        with open(path, "rb") as f:
            f.seek(offset if path.stat().st_size >= offset else 0)  # rolled over: part is lost
            for raw in f:
                match = METRIC_LINE.search(raw.decode("utf-8", "replace"))
                if match and match.group(3) == model:
                    kind, value, ids = match.group(1), float(match.group(2)), match.group(4).rstrip(",")
                    seen[kind][ids] = (value, len(ids.split(",")))
    return {"batches": list(seen["PredictionTime"].values()), "padded": [v for v, _ in seen["PaddedPercent"].values()]}


def log_bytes(server: Server) -> int:
    """Bytes in every log file of the server: what logging writes per request."""
    return sum(p.stat().st_size for p in server.log_dir.glob("*") if p.is_file())


def cpu_split(server: Server) -> dict:
    """CPU seconds so far of the frontend and of all its workers together."""
    frontend = sum(psutil.Process(server.pid).cpu_times()[:2])
    return {"frontend": frontend, "workers": tree_cpu_seconds(server.pid) - frontend}


def variant_archive(source: Path, target: Path, changes: dict) -> Path:
    """``source`` with ``changes`` laid over its model-config.yaml (a hard link when none)."""
    target.unlink(missing_ok=True)  # another server's variant of the same name: the same bytes
    if not changes:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy(source, target)
        return target
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "model-config.yaml":
                config = yaml.safe_load(data) or {}
                for key, value in changes.items():
                    if key == "threads" or key.startswith("handler."):
                        config.setdefault("handler", {})[key.removeprefix("handler.")] = value
                    else:
                        config[key] = value
                data = yaml.safe_dump(config, sort_keys=False).encode()
            zout.writestr(item, data)
    return target
