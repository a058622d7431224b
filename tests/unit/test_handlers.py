"""Handlers in-process: a real ts Context, the real exported artifact from an unpacked archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from handlers.artifact import sha256_of
from handlers.tensor import TensorHandler
from tests.conftest import MODELS
from tests.support import (
    assert_answer_is_right,
    assert_matches,
    assert_same_answer,
    expected_answers,
    handler_name,
    make_context,
    run_handler,
    samples,
    tolerance,
)


@pytest.mark.parametrize("name", MODELS)
def test_each_sample_matches_the_model_run_directly_and_expected_json(handlers, unpacked, name):
    """References made without the handler: the model called on tensors built here (generic handler,
    JSON samples) and samples/expected.json; every sample meets at least one."""
    for sample in samples(name):
        [(status, answer)] = run_handler(handlers[name], unpacked[name], [(sample.raw, sample.content_type)])
        assert status == 200, answer
        assert assert_answer_is_right(name, sample, answer), f"{sample.path.name}: not in expected.json"


@pytest.mark.parametrize("name", MODELS)
def test_samples_get_their_expected_answers(handlers, unpacked, name):
    expected = expected_answers(name)
    assert expected, f"{name}: no samples/expected.json"
    by_file = {s.path.name: s for s in samples(name)}
    assert set(expected) <= set(by_file), f"expected.json names files the spec does not list as samples: {expected}"
    for file, pattern in expected.items():
        body = [(by_file[file].raw, by_file[file].content_type)]
        [(status, answer)] = run_handler(handlers[name], unpacked[name], body)
        assert status == 200, answer
        assert_matches(answer, pattern, tolerance(name), where=file)


@pytest.mark.parametrize("name", MODELS)
def test_one_batch_answers_each_request_like_alone(handlers, unpacked, name):
    handler = handlers[name]
    batch = [(s.raw, s.content_type) for s in samples(name)]
    together = run_handler(handler, unpacked[name], batch)
    alone = [run_handler(handler, unpacked[name], [body])[0] for body in batch]
    assert [s for s, _ in together] == [200] * len(batch)
    for (_, a), (_, b) in zip(together, alone, strict=True):
        assert_same_answer(a, b, tolerance(name))


@pytest.mark.parametrize("name", MODELS)
def test_a_sample_sent_as_a_form_field_gets_the_same_answer(handlers, unpacked, name):
    sample = samples(name)[0]  # multipart/form-data: TorchServe names the part after the form field
    body = [(sample.raw, sample.content_type)]
    [(status, answer)] = run_handler(handlers[name], unpacked[name], body, name="data")
    assert status == 200, answer
    assert_same_answer(answer, run_handler(handlers[name], unpacked[name], body)[0][1], tolerance(name))


# --- Domain handlers: cases for the handler class a model folder uses (any folder, copies too) ------


def first_sample(model: str, content_type: str):
    return next(s for s in samples(model) if s.content_type == content_type)


def image_cases(model: str) -> list[tuple]:
    """(body, content type, status, words) for a model served by the image handler."""
    png = first_sample(model, "image/png").raw
    return [
        (b"", "image/png", 400, "empty request body"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"pixels": []}', "application/json", 400, 'expected a JSON object with "image" or "images"'),
        (b'{"image": [[1, 2], [3]]}', "application/json", 422, "ragged"),
        (b'{"image": [[1, 2], [3, 4]]}', "application/json", 422, "got shape [2, 2]"),
        (json.dumps({"image": [["a"] * 8] * 8}).encode(), "application/json", 422, "type string"),
        (json.dumps({"image": [[True] * 8] * 8}).encode(), "application/json", 422, "type boolean"),
        (json.dumps({"image": [[float("nan")] * 8] * 8}).encode(), "application/json", 422, "NaN or Inf"),
        (json.dumps({"image": [[300] * 8] * 8}).encode(), "application/json", 422, "within 0-255"),
        (json.dumps({"images": []}).encode(), "application/json", 422, "empty list"),
        (json.dumps({"images": [[[0] * 8] * 8] * 65}).encode(), "application/json", 422, "at most 64 per request"),
        (b"hello", "text/plain", 415, "not supported"),
        (b"not an image", "image/png", 400, "not a readable PNG"),
        (png[: len(png) // 2], "image/png", 400, "not a readable PNG"),
    ]


def sensor_cases(model: str) -> list[tuple]:
    """(body, content type, status, words) for a model served by the sensor-window handler."""
    window = json.loads(first_sample(model, "application/json").raw)["window"]
    return [
        (b'{"window": [[1, 2, 3]]}', "application/json", 422, "4 channels"),
        (json.dumps({"window": window[:8]}).encode(), "application/json", 422, "with time = 64"),
        (json.dumps({"window": [[1, 2, 3, float("inf")]] * 64}).encode(), "application/json", 422, "NaN or Inf"),
        (b"vibration,temperature,current,pressure\n1,2,x,4\n", "text/csv", 422, "CSV row 1"),
        (b"\x89PNG", "image/png", 415, "not supported"),
    ]


DOMAIN_CASES = {"DigitsClassifier": image_cases, "SensorAnomalyDetector": sensor_cases}  # handler class -> cases
BAD = [(m, *case) for m in MODELS for case in DOMAIN_CASES.get(handler_name(m), lambda _: [])(m)]


@pytest.mark.parametrize(
    ("name", "body", "ctype", "status", "words"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_gets_its_status_and_a_clear_message(handlers, unpacked, name, body, ctype, status, words):
    good = samples(name)[0]
    # the bad request shares a batch with a good one: only the bad one fails
    [(bad_status, error), (good_status, answer)] = run_handler(
        handlers[name], unpacked[name], [(body, ctype), (good.raw, good.content_type)]
    )
    assert bad_status == status, error
    assert error["code"] == status and error["type"] and words in error["message"], error
    assert good_status == 200
    assert_answer_is_right(name, good, answer)


# --- The generic tensor handler (a model folder without handler.py) --------------------------------


class Toy(torch.nn.Module):
    """Two inputs, a constant argument, two outputs, and state that leaks between calls unless reset."""

    def __init__(self, stateful: bool = True):
        super().__init__()
        self.stateful = stateful
        self.register_buffer("calls", torch.zeros(1) if stateful else torch.ones(1))

    def forward(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stateful:
            self.calls += 1
        return x * scale + y + self.calls, (x - y).sum(dim=1)

    @torch.jit.export
    def reset(self) -> None:
        self.calls.zero_()


def toy_folder(root: Path, fmt: str = "torchscript", stateful: bool = True, **manifest) -> Path:
    """An unpacked archive of Toy as the loader sees it: artifact, manifest, model-config.yaml."""
    folder = root / fmt
    (folder / "MAR-INF").mkdir(parents=True)
    (folder / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({"model": {"modelName": "toy"}}))
    (folder / "model-config.yaml").write_text("handler: {threads: 1}\n")
    if fmt == "torchscript":
        artifact, constants = "toy.pt", {"scale": 2.0}
        torch.jit.script(Toy(stateful)).save(str(folder / artifact))
        manifest = manifest if stateful else {"reset": None} | manifest
    else:  # an ExportedProgram keeps only forward (no reset method): a stateless Toy
        artifact, manifest = "toy.pt2", {"reset": None} | manifest
        constants = {"scale": 2.0}  # specialised at export, yet still an argument of the call: by keyword
        example, batch = (torch.ones(2, 3), torch.ones(2, 3)), torch.export.Dim("batch", min=1, max=4)
        shapes = {"x": {0: batch}, "y": {0: batch}, "scale": None}
        exported = torch.export.export(Toy(stateful=False), example, constants, dynamic_shapes=shapes)
        torch.export.save(exported, str(folder / artifact))
    spec = {"dtype": "float32", "shape": ["batch", 3], "dims": {"batch": {"min": 1, "max": 4}}}
    doc = {"name": "toy", "version": "1", "format": fmt, "artifact": artifact, "sha256": sha256_of(folder / artifact)}
    doc |= {"inputs": [spec | {"name": "x"}, spec | {"name": "y"}], "call_constants": constants, "reset": "reset"}
    doc |= {"outputs": [{"name": "sum", "dtype": "float32"}, {"name": "diff", "dtype": "float32"}]} | manifest
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder


def toy_handler(folder: Path) -> TensorHandler:
    handler = TensorHandler()
    handler.initialize(make_context(folder, []))
    return handler


def toy_answer(x: list, y: list, calls: int = 1) -> dict:
    """Toy's answer for one instance, computed here in plain Python."""
    return {"sum": [a * 2 + b + calls for a, b in zip(x, y, strict=True)], "diff": sum(x) - sum(y)}


def send(handler, folder, *docs) -> list:
    return run_handler(handler, folder, [(json.dumps(d).encode(), "application/json") for d in docs])


@pytest.mark.parametrize("fmt", ["torchscript", "exported"])
def test_tensor_handler_answers_named_outputs(tmp_path, fmt):
    folder = toy_folder(tmp_path, fmt)
    handler = toy_handler(folder)
    x, y = [1.0, 2.0, 3.0], [0.0, 0.5, 1.0]
    one, batch = {"inputs": {"x": x, "y": y}}, {"inputs": {"x": [x, y], "y": [y, y]}}
    # three requests in one call: each answered alone, the model's state reset before each
    answers = send(handler, folder, one, batch, one)
    assert [s for s, _ in answers] == [200] * 3, answers
    assert_same_answer(answers[0][1], toy_answer(x, y))
    assert_same_answer(answers[1][1], [toy_answer(x, y), toy_answer(y, y)])
    assert answers[2][1] == answers[0][1]


def test_tensor_handler_v2_inputs_and_outputs_by_name(tmp_path):
    folder = toy_folder(tmp_path)
    x, y = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    tensors = [{"name": n, "shape": [2, 3], "datatype": "FP32", "data": v} for n, v in (("y", y), ("x", x))]
    [(status, answer)] = send(toy_handler(folder), folder, {"id": "a", "inputs": tensors})
    assert status == 200, answer
    want = [toy_answer(a, b) for a, b in zip(x, y, strict=True)]
    by_name = {o["name"]: o for o in answer["outputs"]}
    assert by_name["sum"]["shape"] == [2, 3] and by_name["sum"]["datatype"] == "FP32"
    assert by_name["sum"]["data"] == [v for w in want for v in w["sum"]]
    assert by_name["diff"] == {"name": "diff", "shape": [2], "datatype": "FP32", "data": [w["diff"] for w in want]}


TOY_BAD = [
    ({"inputs": {"x": [1.0, 2.0, 3.0]}}, 400, 'expected {"inputs"'),
    ({"inputs": {"x": [1.0, 2.0], "y": [1.0, 2.0]}}, 422, "shape [batch, 3]"),
    ({"inputs": {"x": [[1.0, 2.0, 3.0]] * 5, "y": [[1.0, 2.0, 3.0]] * 5}}, 422, "at most 4"),
    ({"inputs": {"x": [1.0, 2.0, 3.0], "y": [[1.0, 2.0, 3.0]]}}, 422, "not a mix"),
    ({"inputs": {"x": ["a", "b", "c"], "y": [1.0, 2.0, 3.0]}}, 422, "type string"),
    (42, 400, "got a number"),
]


@pytest.mark.parametrize(("doc", "status", "words"), TOY_BAD, ids=[str(i) for i in range(len(TOY_BAD))])
def test_tensor_handler_refuses_bad_input(tmp_path, doc, status, words):
    folder = toy_folder(tmp_path)
    [(got, error)] = send(toy_handler(folder), folder, doc)
    assert got == status and words in error["message"], error


def test_empty_body_says_what_the_manifest_hints(tmp_path):
    folder = toy_folder(tmp_path, empty_hint='POST {"inputs": {"x": [...], "y": [...]}}')
    [(status, error)] = run_handler(toy_handler(folder), folder, [(b"", "application/json")])
    assert status == 400 and error["message"] == 'empty request body; POST {"inputs": {"x": [...], "y": [...]}}', error


def test_one_poisoned_request_fails_alone_with_a_500_naming_model_and_request(tmp_path):
    folder = toy_folder(tmp_path, stateful=False)  # batched: one model call for all three
    handler = toy_handler(folder)
    artifact = handler.model

    def poisoned(x, y):
        if bool((x == 666).any()):
            raise RuntimeError("poison")
        return artifact(x, y)

    handler.model = poisoned
    good, bad = {"inputs": {"x": [1.0, 2.0, 3.0], "y": [0.0] * 3}}, {"inputs": {"x": [666.0] * 3, "y": [0.0] * 3}}
    answers = send(handler, folder, good, bad, good)
    assert [s for s, _ in answers] == [200, 500, 200], answers
    assert "toy" in answers[1][1]["message"] and "req-1" in answers[1][1]["message"]
    assert answers[0][1] == answers[2][1] == toy_answer([1.0, 2.0, 3.0], [0.0] * 3)
