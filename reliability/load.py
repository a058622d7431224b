"""A bounded, threaded load generator on loopback that checks every answer.

``run_load`` sends exactly ``total`` requests from ``concurrency`` threads (closed loop: a thread sends
its next request when its previous answer arrives), taking the models in turn and each model's samples
in turn. An
error is an answer that is not 200 or differs from that sample's reference answer. The short form
runs in the tests (tests/integration/test_load.py); the long form is `make soak`:

    python -m reliability.load --requests 5000 --concurrency 16
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from client.api import TorchServeClient
from export.paths import MODEL_STORE, model_names
from export.samples import Sample
from export.spec import load_spec
from reliability.harness import register_all, rss_mb, throwaway_server

TOLERANCE = 1e-4  # answers are rounded to 6 decimals; a batch of other sizes may move the last digit


@dataclass(frozen=True)
class Target:
    """One request body the load cycles through."""

    model: str
    name: str  # "<model>/<sample file>", the key of its reference answer
    body: bytes
    content_type: str


@dataclass
class LoadResult:
    """What a run held: counts, errors (with a few examples) and latency percentiles in ms, in all and
    per model."""

    requests: int
    concurrency: int
    seconds: float
    errors: int
    latency_ms: dict
    latency_ms_by_model: dict
    error_examples: list = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"rps": round(self.rps, 1)}


def sample_targets(models: list[str]) -> list[Target]:
    """Every committed sample of every model, in a stable order."""
    targets = []
    for model in models:
        for path in load_spec(model).sample_paths():
            sample = Sample.read(path)
            targets.append(Target(model, f"{model}/{path.name}", sample.raw, sample.content_type))
    return targets


def first_answers(client: TorchServeClient, targets: list[Target]) -> dict[str, Any]:
    """Each target's answer from the server, one request at a time (also warms the workers up)."""
    return {t.name: client.predict(t.model, t.body, t.content_type) for t in targets}


def run_load(
    client: TorchServeClient,
    targets: list[Target],
    references: dict[str, Any],
    total: int,
    concurrency: int,
    timeout: float = 30.0,
) -> LoadResult:
    """Send ``total`` requests over ``concurrency`` connections; check each answer against ``references``."""
    url, token = client.inference_url, client.token("inference")
    by_model: dict[str, list[Target]] = {}
    for t in targets:
        by_model.setdefault(t.model, []).append(t)
    models = list(by_model)
    counter, lock = itertools.count(), threading.Lock()
    latencies: dict[str, list[float]] = {t.model: [] for t in targets}
    failures: list[str] = []

    def worker() -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        while True:
            with lock:
                i = next(counter)
            if i >= total:
                return
            own = by_model[models[i % len(models)]]  # every model gets an equal share
            target = own[(i // len(models)) % len(own)]
            start = time.perf_counter()
            failure = _send(session, f"{url}/predictions/{target.model}", target, headers, references, timeout)
            elapsed = time.perf_counter() - start
            with lock:
                latencies[target.model].append(elapsed * 1000)
                if failure:
                    failures.append(f"{target.name}: {failure}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    every = sorted(ms for own in latencies.values() for ms in own)
    by_model = {m: summarize(sorted(own)) for m, own in latencies.items() if own}
    return LoadResult(
        len(every), concurrency, round(seconds, 2), len(failures), summarize(every), by_model, failures[:5]
    )


def summarize(ordered: list[float]) -> dict:
    """How many, and p50, p90, p99 and max of ascending latencies in ms."""
    percentiles = {f"p{q}": round(percentile(ordered, q), 2) for q in (50, 90, 99)}
    return {"requests": len(ordered)} | percentiles | {"max": round(ordered[-1], 2)}


def _send(session, url: str, target: Target, headers: dict, references: dict, timeout: float) -> str | None:
    """One request; None when the answer is 200 and matches the reference, else what was wrong."""
    try:
        response = session.post(
            url, data=target.body, headers=headers | {"Content-Type": target.content_type}, timeout=timeout
        )
    except requests.RequestException as err:
        return f"{type(err).__name__}: {err}"
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    try:
        answer = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]}"
    if not close(answer, references[target.name]):
        return f"answer {json.dumps(answer)[:200]} differs from the reference"
    return None


def close(got: Any, want: Any, tol: float = TOLERANCE) -> bool:
    """Equal JSON structure, numbers within ``tol``."""
    if isinstance(want, dict):
        return isinstance(got, dict) and set(got) == set(want) and all(close(got[k], want[k], tol) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(close, got, want, [tol] * len(want)))
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and abs(got - want) <= tol
    return got == want


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def soak(requests_total: int, concurrency: int, model_store: Path = MODEL_STORE) -> dict:
    """The long run: a throwaway server on ``model_store``, every model registered, memory before and after."""
    models = model_names()
    missing = [m for m in models if not (model_store / f"{m}.mar").exists()]
    if missing:
        raise FileNotFoundError(f"no archive for {missing} in {model_store}: run `make archive`")
    with throwaway_server(model_store) as server:
        client = server.client()
        register_all(client, models)
        targets = sample_targets(models)
        references = first_answers(client, targets)
        before = rss_mb(server)
        result = run_load(client, targets, references, requests_total, concurrency)
        after = rss_mb(server)
    growth = {k: round(after[k] - before[k], 1) for k in ("frontend", "workers")}
    return result.to_dict() | {"rss_mb_before": before, "rss_mb_after": after, "rss_mb_growth": growth}


def summary(run: dict) -> str:
    """A few lines for people."""
    before, after, growth = run["rss_mb_before"], run["rss_mb_after"], run["rss_mb_growth"]
    lines = [
        f"{run['requests']} requests at concurrency {run['concurrency']} in {run['seconds']} s "
        f"({run['rps']} req/s): {run['errors']} errors",
        "latency ms: " + ", ".join(f"{k} {v}" for k, v in run["latency_ms"].items()),
        *(f"  {m}: {run['latency_ms_by_model'][m]}" for m in run["latency_ms_by_model"]),
        f"RSS MB frontend {before['frontend']} -> {after['frontend']} ({growth['frontend']:+}), "
        f"{after['worker_count']} workers {before['workers']} -> {after['workers']} ({growth['workers']:+})",
    ]
    return "\n".join(lines + [f"error: {e}" for e in run["error_examples"]])


def main(argv: list[str] | None = None) -> int:
    """`make soak`: exit 1 on any error."""
    parser = argparse.ArgumentParser(prog="python -m reliability.load", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests in all (default: 5000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default: 16)")
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="archives (default: model_store/)")
    parser.add_argument("--json", type=Path, help="also write the numbers here (default: none)")
    args = parser.parse_args(argv)
    run = soak(args.requests, args.concurrency, args.model_store)
    print(summary(run))
    if args.json:
        args.json.write_text(json.dumps(run, indent=2) + "\n")
    return 1 if run["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
