"""A bounded, threaded load generator on loopback that checks every answer.

``run_load`` sends exactly ``total`` requests from ``concurrency`` threads (closed loop: a thread sends
its next request when its previous answer arrives), taking the models in turn and each model's samples
in turn. An error is an answer that is not 200 or differs from that sample's reference answer. The short form
runs in the tests (tests/integration/test_load.py); the long form is `make soak`:

    python -m reliability.load --requests 5000 --concurrency 16
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from client.answers import difference
from client.api import TorchServeClient
from client.load import LoadResult, latency_summary
from client.server import Server
from export.paths import MODEL_STORE, model_names
from export.samples import Sample
from export.spec import load_spec
from reliability.harness import register_all, rss_mb

TOLERANCE = 1e-4  # answers are rounded to 6 decimals; a batch of other sizes may move the last digit
Target = tuple[str, Sample]  # (model, one of its samples): a request body the load cycles through


def sample_targets(models: list[str]) -> list[Target]:
    """Every committed sample of every model, in a stable order."""
    return [(model, sample) for model in models for sample in load_spec(model).read_samples()]


def key(target: Target) -> tuple[str, str]:
    """(model, sample file name): what reference answers are keyed by."""
    model, sample = target
    return model, sample.path.name


def first_answers(client: TorchServeClient, targets: list[Target]) -> dict[tuple[str, str], Any]:
    """Each target's answer from the server, one request at a time (also warms the workers up)."""
    return {key(t): client.predict(t[0], t[1].raw, t[1].content_type) for t in targets}


def run_load(
    client: TorchServeClient,
    targets: list[Target],
    references: dict[tuple[str, str], Any],
    total: int,
    concurrency: int,
    timeout: float = 30.0,
) -> LoadResult:
    """Send ``total`` requests over ``concurrency`` connections; check each answer against ``references``."""
    url = client.inference_url
    by_model: dict[str, list[Target]] = {}
    for t in targets:
        by_model.setdefault(t[0], []).append(t)
    models = list(by_model)
    counter, lock = itertools.count(), threading.Lock()
    latencies: dict[str, list[float]] = {m: [] for m in models}
    failures: list[tuple[str, str]] = []  # (kind, what happened)

    def worker() -> None:
        session = requests.Session()
        session.trust_env = False  # no HTTP(S)_PROXY: the bearer key goes to the server only
        while (i := _next(counter, lock)) < total:
            headers = client.auth_headers("inference")  # per request: a run may outlive a key (renewed)
            own = by_model[models[i % len(models)]]  # every model gets an equal share
            target = own[(i // len(models)) % len(own)]
            start = time.perf_counter()
            failure = _send(session, f"{url}/predictions/{target[0]}", target[1], headers, references[key(target)])
            elapsed = time.perf_counter() - start
            with lock:
                latencies[target[0]].append(elapsed * 1000)
                if failure:
                    failures.append((failure[0], f"{target[0]}/{target[1].path.name}: {failure[1]}"))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    errors: dict[str, int] = {}
    for kind, _ in failures:
        errors[kind] = errors.get(kind, 0) + 1
    return LoadResult(
        concurrency=concurrency,
        requests=sum(map(len, latencies.values())),
        seconds=round(seconds, 2),
        errors=errors,
        latency_ms=latency_summary([ms for own in latencies.values() for ms in own]),
        latency_ms_by_model={m: latency_summary(own) for m, own in latencies.items() if own},
        error_examples=[text for _, text in failures[:5]],
    )


def _next(counter: itertools.count, lock: threading.Lock) -> int:
    with lock:
        return next(counter)


def _send(session, url: str, sample: Sample, headers: dict, reference: Any) -> tuple[str, str] | None:
    """One request; None when the answer is 200 and the same as the reference, else (kind, what was wrong)."""
    try:
        response = session.post(
            url, data=sample.raw, headers=headers | {"Content-Type": sample.content_type}, timeout=30
        )
    except requests.RequestException as err:
        return "connection", f"{type(err).__name__}: {err}"
    if response.status_code != 200:
        return "status", f"status {response.status_code}: {response.text[:200]}"
    try:
        answer = response.json()
    except ValueError:
        return "not json", response.text[:200]
    found = difference(answer, reference, TOLERANCE, strict=True)
    return None if found is None else ("answer", f"differs from the reference: {found}")


def soak(requests_total: int, concurrency: int, model_store: Path = MODEL_STORE) -> dict:
    """The long run: a throwaway server on ``model_store``, every model registered, memory before and after."""
    models = model_names()
    missing = [m for m in models if not (model_store / f"{m}.mar").exists()]
    if missing:
        raise FileNotFoundError(f"no archive for {missing} in {model_store}: run `make archive`")
    with Server.throwaway(model_store) as server:
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
        f"({run['rps']} req/s): {run['error_count']} errors {run['errors'] or ''}",
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
    return 1 if run["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
