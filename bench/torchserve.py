"""TorchServe for the benchmark (a ``client.server.Server.throwaway``): the archives registered, and
what TorchServe itself reports (metrics counters, per-batch PredictionTime, memory)."""

from __future__ import annotations

import re
import time

import psutil
import requests

from client.server import Server
from export.samples import Sample

# "[METRICS]PredictionTime.Milliseconds:1.71|#ModelName:digits,...|#hostname:vm,<ts>,<request ids>"
PREDICTION_LINE = re.compile(
    r"\[METRICS\]PredictionTime\.Milliseconds:([\d.]+)\|#ModelName:([^,|]+).*?#hostname:[^,]+,\d+,([\w,-]*?),? pattern="
)
SAMPLE_LINE = re.compile(r"^(\w+)\{(.*)\}\s+(\S+)$")


def register(server: Server, name: str, **params) -> float:
    """Register ``<name>.mar`` synchronously; returns the seconds it took (model load included).
    ``params`` go to the API as they are (batch_size, max_batch_delay, initial_workers): without
    them the archive's model-config.yaml decides."""
    client = server.client(timeout=300)
    t0 = time.perf_counter()
    client.register(f"{name}.mar", **params)
    return time.perf_counter() - t0


def describe(server: Server, name: str) -> dict:
    """The default version's description (workers with their pids, batchSize, maxBatchDelay)."""
    return server.client().describe(name, None)[0]


def scrape(server: Server) -> list[tuple[str, dict, float]]:
    """The Prometheus metrics as (name, labels, value)."""
    text = requests.get(f"{server.address('metrics')}/metrics", timeout=10).text
    samples = []
    for line in text.splitlines():
        match = SAMPLE_LINE.match(line.strip())
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def model_counters(samples: list[tuple[str, dict, float]], model: str) -> dict:
    """The frontend's cumulative counters for one model: requests, total latency and queue time (us)."""
    names = {
        "ts_inference_requests_total": "requests",
        "ts_inference_latency_microseconds": "latency_us",
        "ts_queue_latency_microseconds": "queue_us",
    }
    out = dict.fromkeys(names.values(), 0.0)
    for name, labels, value in samples:
        if name in names and labels.get("model_name") == model:
            out[names[name]] += value
    return out


def drain(server: Server, model: str, probe: Sample, token: str, timeout: float = 300) -> float:
    """Send one request and wait for its answer: TorchServe still answers the queued requests of
    clients that went away when a run ended, in order, so once the probe is answered the queue is
    empty and the next run starts clean. Returns the wait (s)."""
    start = time.monotonic()
    requests.post(
        f"{server.address('inference')}/predictions/{model}",
        data=probe.raw,
        headers={"Content-Type": probe.content_type, "Authorization": f"Bearer {token}"},
        timeout=timeout,
    )
    return time.monotonic() - start


def worker_load_ms(samples: list[tuple[str, dict, float]], model: str) -> list[float]:
    """WorkerLoadTime (ms) of each of the model's workers, as the frontend measured it."""
    return [v for n, labels, v in samples if n == "WorkerLoadTime" and f"-{model}_" in labels.get("WorkerName", "")]


def log_size(server: Server) -> int:
    """Current size of ts_log.log: where the next run's lines start."""
    path = server.log_dir / "ts_log.log"
    return path.stat().st_size if path.exists() else 0


def log_bytes(server: Server) -> int:
    """Bytes in every log file of the server (stdout included): what logging writes per request."""
    return sum(p.stat().st_size for p in server.log_dir.glob("*") if p.is_file())


def batches_since(server: Server, offset: int, model: str) -> list[tuple[float, int]]:
    """(PredictionTime ms, requests in the batch) of each batch the model's workers ran since
    ``offset`` in ts_log.log. Empty when the log level hides these lines."""
    path = server.log_dir / "ts_log.log"
    if not path.exists():
        return []
    seen: dict[str, tuple[float, int]] = {}  # TorchServe's default log config writes each line twice
    if path.stat().st_size < offset:
        offset = 0  # rolled over (every 100 MB: seconds under load with TorchServe's logging); part is lost
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            match = PREDICTION_LINE.search(raw.decode("utf-8", "replace").rstrip())
            if match and match.group(2) == model:
                ids = match.group(3)
                seen[ids] = (float(match.group(1)), len(ids.split(",")))
    return list(seen.values())


def cpu_seconds(server: Server) -> dict:
    """CPU seconds (user + system) used so far by the frontend and by all its workers together."""
    frontend = psutil.Process(server.pid)
    used = {"frontend": sum(frontend.cpu_times()[:2]), "workers": 0.0}
    for child in frontend.children(recursive=True):
        try:
            used["workers"] += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return used


def memory(server: Server, models: list[str]) -> dict:
    """Resident memory (MB) of the frontend and of each model's workers."""
    mb = 1024 * 1024
    out = {"frontend_mb": round(psutil.Process(server.pid).memory_info().rss / mb, 1), "workers_mb": {}}
    for name in models:
        pids = [w["pid"] for w in describe(server, name)["workers"]]
        out["workers_mb"][name] = [round(psutil.Process(p).memory_info().rss / mb, 1) for p in pids]
    return out


def token(server: Server) -> str:
    """The inference key (TorchServe writes it when it starts)."""
    return server.client().token("inference")
