"""The generic handler at the edges a new user met: inputs of different batch sizes, a finite input
whose output overflows, and error messages that name the input (a two-input model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from handlers.artifact import sha256_of
from handlers.tensor import TensorHandler
from tests.support import make_context, run_handler


class Pair(torch.nn.Module):
    """x [b, 6] and y [b, 3] -> x's first three columns times 2 plus y (float32 overflows past 3.4e38)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x[:, :3] * 2 + y


def pair_folder(root: Path) -> Path:
    """An unpacked archive of Pair (TorchScript) as the loader sees it."""
    (root / "MAR-INF").mkdir(parents=True)
    (root / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({"model": {"modelName": "pair"}}))
    (root / "model-config.yaml").write_text("handler: {threads: 1}\n")
    torch.jit.script(Pair()).save(str(root / "pair.pt"))
    dims = {"batch": {"min": 1, "max": 8}}
    inputs = [{"name": n, "dtype": "float32", "shape": ["batch", w], "dims": dims} for n, w in (("x", 6), ("y", 3))]
    doc = {"name": "pair", "version": "1", "format": "torchscript", "artifact": "pair.pt", "inputs": inputs}
    doc |= {"sha256": sha256_of(root / "pair.pt"), "outputs": [{"name": "out", "dtype": "float32"}]}
    (root / "manifest.json").write_text(json.dumps(doc))
    return root


def send(folder: Path, *docs, handler: TensorHandler | None = None) -> list:
    if handler is None:
        handler = TensorHandler()
        handler.initialize(make_context(folder, []))
    return run_handler(handler, folder, [(json.dumps(d).encode(), "application/json") for d in docs])


ROW = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_inputs_with_different_batch_sizes_are_the_clients_422(tmp_path):
    folder = pair_folder(tmp_path)
    [(status, error)] = send(folder, {"inputs": {"x": [ROW, ROW], "y": [[1.0, 2.0, 3.0]]}})
    assert status == 422 and "first dimensions differ" in error["message"], error
    assert "x: 2" in error["message"] and "y: 1" in error["message"], error
    [(status, error)] = send(folder, {"inputs": {"x": 5, "y": 3}})  # numbers, not lists: no batch dimension
    assert status == 422 and 'input "x"' in error["message"] and "scalar" in error["message"], error


def test_v2_inputs_with_different_batch_sizes_are_the_clients_422(tmp_path):
    folder = pair_folder(tmp_path)
    x = {"name": "x", "shape": [2, 6], "datatype": "FP32", "data": ROW * 2}
    y = {"name": "y", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}
    [(status, error)] = send(folder, {"inputs": [x, y]})
    assert status == 422 and "first dimensions differ" in error["error"], error


def test_a_shape_error_names_the_input(tmp_path):
    folder = pair_folder(tmp_path)
    [(status, error)] = send(folder, {"inputs": {"x": [[1.0, 2.0, 3.0]], "y": [[1.0, 2.0, 3.0]]}})
    assert status == 422, error
    assert error["message"].startswith('input "x": expected float32 tensor of shape [batch, 6], got shape [1, 3]')


def test_an_output_that_overflows_is_that_requests_422_and_batch_mates_are_answered(tmp_path):
    folder = pair_folder(tmp_path)
    good, huge = {"inputs": {"x": ROW, "y": [0.0] * 3}}, {"inputs": {"x": [3e38] * 6, "y": [0.0] * 3}}
    answers = send(folder, good, huge, good)
    assert [s for s, _ in answers] == [200, 422, 200], answers
    assert "not finite" in answers[1][1]["message"] and "range" in answers[1][1]["message"]
    assert answers[0][1] == {"out": [2.0, 4.0, 6.0]}  # computed by hand: x[:3] * 2 + y


class InventsNaN(TensorHandler):
    """A handler whose own encode makes a NaN from a finite output: its bug, a 500."""

    def encode(self, outputs, decoded):
        return [{"out": math.nan} for _ in range(outputs[0].shape[0])]


def test_a_nan_a_handler_invents_stays_a_500(tmp_path):
    folder = pair_folder(tmp_path)
    handler = InventsNaN()
    handler.initialize(make_context(folder, []))
    [(status, error)] = send(folder, {"inputs": {"x": ROW, "y": [0.0] * 3}}, handler=handler)
    assert status == 500, error
