"""Transformer graph fusions for an exported ONNX file, kept only when the answers stay the same.

``torch.onnx.export`` (dynamo) writes attention as its primitive ops (MatMul, Softmax, a NaN guard,
Transposes), which ONNX Runtime runs one by one. Two rewriters fuse such subgraphs into ONNX
Runtime's contrib ops (Attention, SkipLayerNormalization, BiasGelu): onnxscript's ``ort_fusions``
(which knows the dynamo exporter's patterns) and then ONNX Runtime's own transformer optimizer
(``onnxruntime.transformers.optimizer``, which finds what is left). A model without such
subgraphs (a CNN, an MLP) is left byte for byte as it was. Each step's result is run against the
graph before it on random inputs within the spec's bounds and kept only within the spec's
tolerance; export's own verification (against the eager model) runs after this as for any artifact.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def optimize_onnx(path: Path, spec) -> dict:
    """Rewrite ``path`` in place with the fusions that keep its answers; returns what was done
    (for the manifest): per step the ops it added (fused) and removed, or why it was skipped."""
    path = Path(path)
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="onnx-optimize-") as tmp:
        for name, step in (("onnxscript_ort_fusions", _onnxscript_fusions), ("ort_transformers", _ort_optimizer)):
            candidate = Path(tmp) / f"{name}.onnx"
            started = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # the rewriters print progress
                    step(path, candidate)
            except Exception as err:  # an optional speed-up: any failure leaves the graph as it was
                report[name] = {"skipped": f"{type(err).__name__}: {err}"[:300]}
                continue
            before, after = _ops(path), _ops(candidate)
            fused = {op: n - before[op] for op, n in after.items() if n > before[op]}
            entry = {"fused": fused, "nodes": [sum(before.values()), sum(after.values())]}
            entry["seconds"] = round(time.perf_counter() - started, 1)
            if not fused:
                entry["kept"] = False
            else:
                gap = _max_gap(path, candidate, spec)
                entry |= {"max_abs_diff": gap, "kept": gap is not None and _within(gap, spec)}
                if entry["kept"]:
                    shutil.copyfile(candidate, path)
            report[name] = entry
    return report


def _ops(path: Path) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def _onnxscript_fusions(source: Path, target: Path) -> None:
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model = ir.load(str(source))
    result = optimize_for_ort(model)  # rewrites in place; returns (model, counts)
    ir.save(result[0] if isinstance(result, tuple) else model, str(target))


def _ort_optimizer(source: Path, target: Path) -> None:
    from onnxruntime.transformers import optimizer

    # opt_level 0: only the Python fusions; the serving session applies ORT's own graph
    # optimizations when it loads the file (handlers/artifact.py).
    logging.disable(logging.WARNING)  # its modules log as top-level names ("symbolic shape inference ...")
    try:
        model = optimizer.optimize_model(str(source), model_type="bert", opt_level=0, use_gpu=False)
    finally:
        logging.disable(logging.NOTSET)
    model.save_model_to_file(str(target))


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_gap(before: Path, after: Path, spec) -> float | None:
    """Largest absolute difference between the two graphs' outputs over a few random inputs
    (None when the fused graph fails to load or run)."""
    old = _session(before)
    try:
        new = _session(after)
        gaps = []
        for rows, fraction in ((1, 0.25), (3, 1.0)):
            feeds = _feeds(spec, old, rows, fraction, np.random.default_rng(rows))
            a, b = old.run(None, feeds), new.run(None, feeds)
            gaps.append(max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True)))
        return max(gaps)
    except Exception as err:
        log.warning("fused ONNX graph failed to run: %s", err)
        return None


def _feeds(spec, session, rows: int, fraction: float, rng) -> dict:
    """Inputs of ``rows`` rows, each named dimension at ``fraction`` of its maximum. Integer inputs
    are 1 (a valid token id or mask value) with a random-length tail of the input's pad value."""
    feeds = {}
    names = [i.name for i in session.get_inputs()]
    for name, entry in zip(names, spec.inputs, strict=True):
        entry = entry if isinstance(entry, dict) else dataclasses.asdict(entry)  # an InputSpec
        dims = entry.get("dims", {})
        shape = [
            rows
            if k == 0
            else d
            if isinstance(d, int)
            else max(dims.get(d, {}).get("min", 1), int((dims.get(d, {}).get("max") or 8) * fraction))
            for k, d in enumerate(entry["shape"])
        ]
        if entry["dtype"].startswith("int"):
            value = np.ones(shape, dtype=entry["dtype"])
            if "pad" in entry and len(shape) > 1:
                for r in range(rows):  # rows of different lengths, as a padded batch has
                    value[r, int(rng.integers(2, shape[1] + 1)) :] = entry["pad"]
        else:
            value = rng.standard_normal(shape).astype(entry["dtype"])
        feeds[name] = value
    return feeds


def _within(gap: float, spec) -> bool:
    return gap <= spec.tolerance.get("atol", 1e-5) + 1e-6
