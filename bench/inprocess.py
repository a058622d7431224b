"""The limit: the served artifact and handler code, called in process with no server in between.

Usage: ``python -m bench.inprocess <model> --archive model_store/<model>.mar [--corpus NAME]
[--batch-sizes 1 8]``; prints one JSON document. The runner starts it as a subprocess so that
torch's thread settings and the archive's handler modules stay out of its own process.

Times ``handler.handle(rows, context)`` on batches of N requests (the committed samples, or the
bodies of one of the model folder's corpora, parsed as TorchServe hands them over), after a
warm-up, for at least one pass over the same bodies per batch size. A batch's length groups run
one at a time here (``handler.group_threads`` is set to 1): the limit is one handler on its own
threads, multiplied by the served workers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.payloads import payloads
from export.samples import torchserve_value
from tools.fake_worker import context, load_handler, unpack


def measure(handler, model_dir, name, config, bodies, batch_size: int, seconds: float, passes_of: int) -> dict:
    """Throughput and per-call latency of handle() on batches of ``batch_size`` requests: passes
    over the first ``passes_of`` bodies (the same bodies at every batch size, in batches of
    consecutive bodies, wrapping around) until ``seconds`` have passed, at least one pass."""
    count, span = len(bodies), min(passes_of, len(bodies))
    batches = []
    for start in range(0, span, batch_size):
        chosen = [bodies[(start + j) % count] for j in range(batch_size)]
        rows = [{"body": value} for value, _, _ in chosen]
        ctx = context(model_dir, [("body", c) for _, c, _ in chosen], config)
        batches.append((rows, ctx, sum(i for *_, i in chosen)))
    deadline = time.perf_counter() + min(1.0, seconds / 2)
    for rows, ctx, _ in batches:  # warm-up: TorchScript specializes on the first calls
        handler.handle(rows, ctx)
        if time.perf_counter() > deadline:
            break
    calls, items, times = 0, 0, []
    start, cpu = time.perf_counter(), time.process_time()
    while calls < len(batches) or time.perf_counter() < start + seconds:
        rows, ctx, n = batches[calls % len(batches)]
        t0 = time.perf_counter()
        handler.handle(rows, ctx)
        times.append(time.perf_counter() - t0)
        calls, items = calls + 1, items + n
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "batch": batch_size,
        "calls": calls,
        "requests_per_s": round(calls * batch_size / elapsed, 1),
        "items_per_s": round(items / elapsed, 1),
        # CPU time: what other work on a shared machine disturbs least (one thread per handler).
        "items_per_cpu_s": round(items / max(cpu, 1e-9), 1),
        "ms_per_call_p50": round(statistics.median(times) * 1000, 4),
    }


def run(
    name: str,
    archive: Path,
    batch_sizes: list[int],
    seconds: float,
    threads: int | None,
    corpus: str,
    answered: int,
    span: int,
) -> dict:
    """Load the archive's handler and measure every batch size; also return the answers to the
    first ``answered`` bodies (each sent alone), which the servers' answers are compared with."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        model_dir = unpack(archive, Path(tmp))
        t0 = time.perf_counter()
        # A batch's length groups one at a time: the handler uses only its own threads here.
        handler, config = load_handler(model_dir, {"group_threads": 1} | ({"threads": threads} if threads else {}))
        load_s = time.perf_counter() - t0
        bodies, answers = [], {}
        for k, p in enumerate(payloads(name, corpus)):
            value = torchserve_value(p.raw, p.content_type)
            if k < answered:
                ctx = context(model_dir, [("body", p.content_type)], config)
                answer = json.loads(handler.handle([{"body": value}], ctx)[0])
                answers[p.path.name] = {"status": ctx.get_response_status(0)[0], "answer": answer}
            # Items (images, windows, texts) in this request: the first dimension of its input.
            items = instances(handler.preprocess(value, p.content_type))
            bodies.append((value, p.content_type, items))
        configured = int(config.get("batchSize", 1))
        sizes = sorted(set(batch_sizes) | {1, configured})
        return {
            "model": name,
            "corpus": corpus,
            "threads": int(config.get("handler", {}).get("threads", 1)),
            "configured_batch": configured,
            "load_s": round(load_s, 3),
            "bodies": len(bodies),
            "items_per_request": round(sum(i for *_, i in bodies) / len(bodies), 3),
            "batches": [measure(handler, model_dir, name, config, bodies, b, seconds, span) for b in sizes],
            "answers": answers,
        }


def instances(decoded) -> int:
    """Instances in one decoded request: the first dimension of its (first) input tensor."""
    return int(decoded.inputs[0].shape[0])


def main(argv: list[str] | None = None) -> int:
    """Command line: print the measurements as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name (a folder of models/)")
    parser.add_argument("--archive", type=Path, required=True, help="the .mar to load")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1], help="batch sizes (default: 1)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per batch size (default: 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the archive's handler.threads)")
    parser.add_argument("--corpus", default="samples", help="a corpus of the model's folder (default: samples)")
    parser.add_argument("--answers", type=int, default=1000, help="bodies whose answers to return (default: 1000)")
    parser.add_argument("--bodies", type=int, default=96, help="bodies each batch size is timed on (default: 96)")
    args = parser.parse_args(argv)
    result = run(
        args.model, args.archive, args.batch_sizes, args.seconds, args.threads, args.corpus, args.answers, args.bodies
    )
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
