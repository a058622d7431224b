"""The limit: the served artifact and handler code, called in process with no server in between.

Usage: ``python -m bench.inprocess digits --archive model_store/digits.mar [--batch-sizes 1 8]``;
prints one JSON document. The runner starts it as a subprocess so that torch's thread settings and
the archive's handler modules stay out of its own process.

Times ``handler.handle(rows, context)`` on batches of N requests (the committed samples in turn,
parsed as TorchServe hands them over), after a warm-up, for a fixed time per batch size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.archive import context, load_handler, unpack
from bench.payloads import payloads
from export.samples import torchserve_value


def measure(handler, model_dir, name, config, bodies, batch_size: int, seconds: float) -> dict:
    """Throughput and per-call latency of handle() on batches of ``batch_size`` requests."""
    count = len(bodies)
    batches = []
    for start in range(count):  # every sample at every position, in turn
        chosen = [bodies[(start + j) % count] for j in range(batch_size)]
        rows = [{"body": value} for value, _, _ in chosen]
        batches.append((rows, context(model_dir, name, config, [c for _, c, _ in chosen]), sum(i for *_, i in chosen)))
    deadline = time.perf_counter() + min(1.0, seconds / 2)
    while time.perf_counter() < deadline:  # warm-up: TorchScript specializes on the first calls
        for rows, ctx, _ in batches:
            handler.handle(rows, ctx)
    calls, items, times = 0, 0, []
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        rows, ctx, n = batches[calls % len(batches)]
        t0 = time.perf_counter()
        handler.handle(rows, ctx)
        times.append(time.perf_counter() - t0)
        calls, items = calls + 1, items + n
    elapsed = time.perf_counter() - start
    return {
        "batch": batch_size,
        "calls": calls,
        "requests_per_s": round(calls * batch_size / elapsed, 1),
        "items_per_s": round(items / elapsed, 1),
        "ms_per_call_p50": round(statistics.median(times) * 1000, 4),
    }


def run(name: str, archive: Path, batch_sizes: list[int], seconds: float, threads: int | None) -> dict:
    """Load the archive's handler and measure every batch size; also return each sample's answer."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        model_dir = unpack(archive, Path(tmp))
        t0 = time.perf_counter()
        handler, config = load_handler(model_dir, threads)
        load_s = time.perf_counter() - t0
        bodies, answers = [], {}
        for p in payloads(name):
            value = torchserve_value(p.raw, p.content_type)
            ctx = context(model_dir, name, config, [p.content_type])
            answer = handler.handle([{"body": value}], ctx)[0]
            status = ctx.get_response_status(0)[0]
            answers[p.path.name] = {"status": status, "answer": answer}
            # Items (images, windows, texts) in this request: the first dimension of its input.
            items = instances(handler.preprocess(value, p.content_type))
            bodies.append((value, p.content_type, items))
        configured = int(config.get("batchSize", 1))
        sizes = sorted(set(batch_sizes) | {1, configured})
        return {
            "model": name,
            "threads": int(config.get("handler", {}).get("threads", 1)),
            "configured_batch": configured,
            "load_s": round(load_s, 3),
            "items_per_request": round(sum(i for *_, i in bodies) / len(bodies), 3),
            "batches": [measure(handler, model_dir, name, config, bodies, b, seconds) for b in sizes],
            "answers": answers,
        }


def instances(decoded) -> int:
    """Instances in one decoded request: the first dimension of its (first) input tensor."""
    tensors = getattr(decoded, "tensors", None) or (decoded.tensor,)
    return int(tensors[0].shape[0])


def main(argv: list[str] | None = None) -> int:
    """Command line: print the measurements as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name (a folder of models/)")
    parser.add_argument("--archive", type=Path, required=True, help="the .mar to load")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1], help="batch sizes (default: 1)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per batch size (default: 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the archive's handler.threads)")
    args = parser.parse_args(argv)
    json.dump(run(args.model, args.archive, args.batch_sizes, args.seconds, args.threads), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
