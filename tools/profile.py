"""Where a TorchServe worker spends its time under load: ``python -m tools.profile <model>``.

Starts TorchServe with the archive (its model-config.yaml, or ``--set`` config lines), loads it with
wrk at one concurrency, samples the worker with py-spy (requirements-bench.txt) and prints the share
of samples per part of the worker's path: the project's handler, TorchServe's protocol and socket,
its metrics, logging, and JSON encoding. Output: text, and the raw py-spy samples beside it.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import servers
from bench.loadgen import run_load
from bench.payloads import corpora, payloads
from client.server import Server
from export.paths import MODEL_STORE

# The first part (in this order) with a needle in any frame of a sampled stack names the stack.
PARTS = [
    ("model forward (torch)", ("torch/nn/modules/module.py", "torch/jit")),
    ("logging", ("logging/__init__.py",)),
    ("TorchServe metrics", ("ts/metrics/",)),
    ("JSON encoding of answers", ("json/encoder.py", "json/__init__.py")),
    ("handler: decode input", ("handlers/inputs.py", "PIL/", "preprocess", "tokenizers")),
    ("handler: encode answer", ("postprocess",)),
    ("handler: other", ("handlers/", "/handler.py")),  # the shared base, and the model folder's handler
    ("socket wait / protocol decode", ("otf_message_handler.py", "model_service_worker.py")),
]


def classify(stack: list[str]) -> str:
    """The part of the worker one sampled stack (root first) is in."""
    for name, needles in PARTS:
        if any(n in frame for frame in stack for n in needles):
            return name
    return "other (TorchServe service code)"


def main(argv: list[str] | None = None) -> int:
    """Profile one model's worker and print the shares."""
    parser = argparse.ArgumentParser(prog="python -m tools.profile", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default: 16)")
    parser.add_argument("--seconds", type=int, default=6, help="seconds sampled (default: 6)")
    parser.add_argument("--corpus", help="a corpus of the model's folder (default: its first, else its samples)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config.properties line")
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="archives (default: model_store)")
    parser.add_argument("--raw", type=Path, default=Path("/tmp/bench-profile.txt"), help="py-spy raw output")
    args = parser.parse_args(argv)
    bodies = payloads(args.model, args.corpus or corpora(args.model)[0])
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        settings = dict(item.split("=", 1) for item in args.set)
        with Server.throwaway(args.model_store, Path(tmp), **settings) as server:
            servers.register(server, args.model)
            url = f"{server.address('inference')}/predictions/{args.model}"
            token = server.client().token("inference")
            run_load(url, bodies, args.concurrency, 2, token)  # warm-up
            pid = servers.served_config(server, args.model)["pids"][0]
            load = threading.Thread(target=run_load, args=(url, bodies, args.concurrency, args.seconds + 2, token))
            load.start()
            time.sleep(1)
            command = [spy, "record", "-p", str(pid), "-d", str(args.seconds), "-r", "250", "-f", "raw"]
            subprocess.run([*command, "-o", str(args.raw)], check=True, capture_output=True)
            load.join()
    shares: collections.Counter = collections.Counter()
    for line in args.raw.read_text().splitlines():
        if line.strip():
            stack, count = line.rsplit(" ", 1)
            shares[classify(stack.split(";"))] += int(count)
    total = sum(shares.values())
    print(f"{args.model}, concurrency {args.concurrency}: {total} samples of the worker (raw: {args.raw})")
    for part, count in shares.most_common():
        print(f"  {count / total:6.1%}  {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
