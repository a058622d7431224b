"""ONNX before and after export/onnx_optimize.py, beside TorchScript, in process on batches.

Usage: ``python -m tools.onnx_fusions <model> [--sizes 1x12 8x12 16x64 ...]`` after
``make export FORMAT=all`` (or at least the TorchScript and ONNX builds of the model). Copies the
ONNX artifact, fuses the copy, and times the three on inputs of each size (rows x length of the
model's dynamic dimensions; the first integer input as token ids, others as masks of ones), one
thread each, the fastest of ``--repeats`` calls. Times are thread CPU time: on a shared machine
other processes change wall time far more than the CPU time a call needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from export.onnx_optimize import _session, optimize_onnx
from export.paths import BUILD, served_name
from export.spec import load_spec


def inputs(spec, rows: int, length: int, rng) -> list[np.ndarray]:
    """One array per model input: every named dimension but the first at ``length``."""
    out = []
    for k, entry in enumerate(spec.inputs):
        entry = entry if isinstance(entry, dict) else dataclasses.asdict(entry)  # an InputSpec
        shape = [rows] + [length if isinstance(d, str) else d for d in entry["shape"][1:]]
        if entry["dtype"].startswith("int"):
            out.append(rng.integers(1000, 2000, shape) if k == 0 else np.ones(shape, dtype=np.int64))
        else:
            out.append(rng.standard_normal(shape).astype(entry["dtype"]))
    return out


def fastest(call, repeats: int) -> float:
    """Thread CPU ms of the fastest of ``repeats`` calls, after two warm-up calls."""
    call()
    call()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    return round(min(times) * 1000, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.onnx_fusions", description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--sizes", nargs="+", default=["1x12", "8x12", "32x12", "8x64", "1x256", "4x256"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    spec = load_spec(args.model)
    torch.set_num_threads(1)
    onnx_file = next((BUILD / served_name(args.model, "onnx")).glob("*.onnx"))
    script = torch.jit.load(str(next((BUILD / args.model).glob("*.pt"))))
    with tempfile.TemporaryDirectory(prefix="onnx-fusions-") as tmp:
        fused_file = Path(tmp) / onnx_file.name
        shutil.copyfile(onnx_file, fused_file)
        print(json.dumps(optimize_onnx(fused_file, spec)))
        plain, fused = _session(onnx_file), _session(fused_file)
        names = [i.name for i in plain.get_inputs()]
        print("rows x length | ONNX ms | fused ONNX ms | TorchScript ms | fused max abs diff")
        rng = np.random.default_rng(0)
        for size in args.sizes:
            rows, length = map(int, size.split("x"))
            arrays = inputs(spec, rows, length, rng)
            feeds = dict(zip(names, arrays, strict=True))
            tensors = [torch.from_numpy(a) for a in arrays]
            diff = float(np.max(np.abs(plain.run(None, feeds)[0] - fused.run(None, feeds)[0])))
            with torch.inference_mode():
                times = [fastest(lambda s=s, f=feeds: s.run(None, f), args.repeats) for s in (plain, fused)]
                times.append(fastest(lambda t=tensors: script(*t), args.repeats))
            print(f"{size} | " + " | ".join(map(str, times)) + f" | {diff:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
