"""Bad input, per model: each case gets its 4xx and a JSON error naming what was wrong and what is
expected; then a good request succeeds on the same worker (same PIDs: nothing restarted)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest
import yaml
from PIL import Image

from client.api import read_properties
from export.spec import load_spec
from reliability.record import record
from tests.conftest import MODELS
from tests.integration.reliability_support import (
    bomb_png,
    call,
    error_of,
    peak_rss_mb,
    png,
    worker_pids,
)
from tests.support import assert_same_answer, handler_name, samples, tolerance

JSON = "application/json"


@dataclass(frozen=True)
class Case:
    """One bad request and what it must get: status, error type, words of the message."""

    name: str
    body: bytes | None
    content_type: str | None
    status: int
    type: str
    words: tuple[str, ...] = ()
    method: str = "POST"


def doc(value) -> bytes:
    return json.dumps(value).encode()


def first_sample(model: str, content_type: str):
    return next(s for s in samples(model) if s.content_type == content_type)


def max_pixels(model: str) -> int:
    """The image handler's cap: model-config.yaml's handler.max_pixels, or its default."""
    config = yaml.safe_load((load_spec(model).folder / "model-config.yaml").read_text())
    return int((config.get("handler") or {}).get("max_pixels", 512 * 512))


def image_cases(model: str) -> list[Case]:
    """For a model served by the image handler (8x8 grayscale digits)."""
    png_bytes = first_sample(model, "image/png").raw
    most = max_pixels(model)
    bmp = io.BytesIO()
    Image.open(io.BytesIO(png_bytes)).save(bmp, format="BMP")
    image = [[0] * 8] * 8
    return [
        Case("invalid JSON", b'{"image": [1,', JSON, 400, "MalformedRequest", ("not valid JSON",)),
        Case("JSON without the key", doc({"pixels": image}), JSON, 400, "MalformedRequest", ('"image" or "images"',)),
        Case("JSON not an object", b"[1, 2]", JSON, 400, "MalformedRequest", ("got an array",)),
        Case("wrong nesting", doc({"image": [0] * 64}), JSON, 422, "InvalidInput", ("8x8", "got shape [64]")),
        Case("wrong shape", doc({"image": [[0] * 8] * 7}), JSON, 422, "InvalidInput", ("8x8", "got shape [7, 8]")),
        Case("ragged list", doc({"image": [[1, 2], [3]]}), JSON, 422, "InvalidInput", ("ragged",)),
        Case("strings", doc({"image": [["a"] * 8] * 8}), JSON, 422, "InvalidInput", ("8x8", "string")),
        Case("booleans", doc({"image": [[True] * 8] * 8}), JSON, 422, "InvalidInput", ("8x8", "boolean")),
        Case("nested objects", doc({"image": [[{"v": 1}] * 8] * 8}), JSON, 422, "InvalidInput", ("8x8", "object")),
        Case("nulls", doc({"image": [[None] * 8] * 8}), JSON, 422, "InvalidInput", ("8x8", "object")),
        Case("NaN", doc({"image": [[float("nan")] * 8] * 8}), JSON, 422, "InvalidInput", ("NaN or Inf",)),
        Case("Infinity", doc({"image": [[float("inf")] * 8] * 8}), JSON, 422, "InvalidInput", ("NaN or Inf",)),
        Case("out of range", doc({"image": [[300] * 8] * 8}), JSON, 422, "InvalidInput", ("0-255", "300")),
        Case("empty batch", doc({"images": []}), JSON, 422, "InvalidInput", ("a list of", "empty list")),
        Case("65 images (max 64)", doc({"images": [image] * 65}), JSON, 422, "InvalidInput", ("64", "65")),
        Case(
            "1,000,000 numbers",
            doc({"image": [[0] * 1000] * 1000}),
            JSON,
            422,
            "InvalidInput",
            ("8x8", "[1000, 1000]"),
        ),
        Case(
            "100,000 nested lists",
            b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            JSON,
            400,
            "MalformedRequest",
            ("nested too deeply",),
        ),
        Case("bytes that are not an image", b"not an image", "image/png", 400, "MalformedRequest", ("PNG or JPEG",)),
        Case("truncated PNG", png_bytes[: len(png_bytes) // 2], "image/png", 400, "MalformedRequest", ("PNG",)),
        Case("a BMP sent as image/png", bmp.getvalue(), "image/png", 400, "MalformedRequest", ("PNG or JPEG",)),
        Case(
            "12000x12000 PNG bomb (140 KB)",
            bomb_png(12000),
            "image/png",
            422,
            "InvalidInput",
            ("12000x12000", str(most)),
        ),
        Case(
            "100000x100000 PNG header",
            png(100_000, 100_000, b""),
            "image/png",
            422,
            "InvalidInput",
            ("too large", str(most)),
        ),
        Case("text/plain", b"seven", "text/plain", 415, "UnsupportedMediaType", ("text/plain", "image/png")),
    ]


def sensor_cases(model: str) -> list[Case]:
    """For a model served by the sensor-window handler (64 steps of 4 channels)."""
    window = json.loads(first_sample(model, "application/json").raw)["window"]
    header = b"vibration,temperature,current,pressure\n"
    return [
        Case("invalid JSON", b'{"window": [[1,', JSON, 400, "MalformedRequest", ("not valid JSON",)),
        Case("JSON without the key", doc({"rows": window}), JSON, 400, "MalformedRequest", ('"window" or "windows"',)),
        Case("wrong nesting", doc({"window": [0.1, 60, 10, 3]}), JSON, 422, "InvalidInput", ("4 channels",)),
        Case("3 channels", doc({"window": [r[:3] for r in window]}), JSON, 422, "InvalidInput", ("4 channels",)),
        Case("8 time steps (64 expected)", doc({"window": window[:8]}), JSON, 422, "InvalidInput", ("64", "8, 4")),
        Case("strings", doc({"window": [["a"] * 4] * 64}), JSON, 422, "InvalidInput", ("string",)),
        Case("booleans", doc({"window": [[True] * 4] * 64}), JSON, 422, "InvalidInput", ("boolean",)),
        Case("nested objects", doc({"window": [[{"v": 1}] * 4] * 64}), JSON, 422, "InvalidInput", ("object",)),
        Case("nulls", doc({"window": [[None] * 4] * 64}), JSON, 422, "InvalidInput", ("object",)),
        Case("NaN", doc({"window": [[float("nan")] * 4] * 64}), JSON, 422, "InvalidInput", ("NaN or Inf",)),
        Case("Infinity", doc({"window": [[1, 2, 3, float("inf")]] * 64}), JSON, 422, "InvalidInput", ("NaN or Inf",)),
        Case("empty batch", doc({"windows": []}), JSON, 422, "InvalidInput", ("empty list",)),
        Case("65 windows (max 64)", doc({"windows": [window] * 65}), JSON, 422, "InvalidInput", ("64", "65")),
        Case(
            "100,000 time steps",
            doc({"window": [[0.1, 60, 10, 3]] * 100_000}),
            JSON,
            422,
            "InvalidInput",
            ("64", "100000"),
        ),
        Case(
            "100,000 nested lists",
            b'{"window": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            JSON,
            400,
            "MalformedRequest",
            ("nested too deeply",),
        ),
        Case("CSV not numbers", header + b"1,2,x,4\n", "text/csv", 422, "InvalidInput", ("CSV row 1", "numbers")),
        Case("CSV 3 columns", header + b"1,2,3\n", "text/csv", 422, "InvalidInput", ("3 values", "expected 4")),
        Case("CSV NaN", header + b"1,2,3,nan\n", "text/csv", 422, "InvalidInput", ("NaN or Infinity",)),
        Case("CSV header only", header, "text/csv", 400, "MalformedRequest", ("no data rows",)),
        Case("an image", b"\x89PNG\r\n\x1a\n", "image/png", 415, "UnsupportedMediaType", ("image/png", "text/csv")),
    ]


def generic_cases() -> list[Case]:
    """Cases every model answers the same way (the shared input code and the frontend decide)."""
    return [
        Case("empty body", b"", JSON, 400, "MalformedRequest", ("empty request body", "POST")),
        Case("application/xml", b"<input/>", "application/xml", 415, "UnsupportedMediaType", ("application/xml",)),
        # TorchServe 0.12 routes every method on /predictions to the model: a GET reaches the handler.
        Case("GET (no body)", None, None, 400, "MalformedRequest", ("empty request body", "POST"), method="GET"),
    ]


# Domain handlers' own cases, by the handler class a model folder uses (copies of a folder get them too).
DOMAIN_CASES = {"DigitsClassifier": image_cases, "SensorAnomalyDetector": sensor_cases}
CASES = [(m, c) for m in MODELS for c in [*generic_cases(), *DOMAIN_CASES.get(handler_name(m), lambda _: [])(m)]]


def assert_still_serving(client, reference, model: str, pids: list[int]) -> None:
    """A good request answers correctly, and the model's workers are the same processes."""
    good = samples(model)[0]
    answer = client.predict(model, good.raw, good.content_type)
    assert_same_answer(answer, reference.answer(model, good), tolerance(model))
    assert worker_pids(client, model) == pids, "a worker restarted"


@pytest.mark.parametrize(("model", "case"), CASES, ids=[f"{m}-{c.name}" for m, c in CASES])
def test_bad_input_gets_its_4xx_and_the_worker_keeps_serving(server, client, registered, reference, model, case):
    pids = worker_pids(client, model)
    peak = peak_rss_mb(pids[0])
    response = call(server, client, f"/predictions/{model}", case.body, case.content_type, method=case.method)
    error = error_of(response)
    record("bad_input", model=model, case=case.name, status=response.status_code, type=error["type"])
    assert response.status_code == case.status and error["type"] == case.type, error
    if case.status == 415:  # README (the handler contract): every 415 begins with the content type received
        assert error["message"].startswith(f"content type {case.content_type!r} is not supported"), error
    for word in case.words:
        assert word in error["message"], (word, error["message"])
    if peak is not None:  # refused before decoding: a 12000x12000 image would take 144 MB more
        assert peak_rss_mb(pids[0]) - peak < 64, "the worker's peak memory grew: did it decode the image?"
    assert_still_serving(client, reference, model, pids)


@pytest.mark.parametrize("model", MODELS)
def test_frontend_refusals_are_4xx_and_the_worker_keeps_serving(server, client, registered, reference, model):
    pids = worker_pids(client, model)
    limit = int(read_properties(server.config)["max_request_size"])
    seen = {}

    too_big = call(server, client, f"/predictions/{model}", b"0" * (limit + 1), JSON)
    seen["body over max_request_size"] = too_big.status_code
    assert too_big.status_code == 413  # TorchServe answers with an empty body here, not JSON

    version = call(server, client, f"/predictions/{model}/9.9", samples(model)[0].raw, samples(model)[0].content_type)
    seen["unknown version"] = version.status_code
    assert version.status_code == 404 and error_of(version)["type"] == "ModelVersionNotFoundException"
    assert "9.9" in error_of(version)["message"]

    method = call(server, client, f"/models/{model}", method="POST", api="management")
    seen["POST on /models/<model> (management)"] = method.status_code
    assert method.status_code == 405 and error_of(method)["type"] == "MethodNotAllowedException"

    for case, status in seen.items():
        record("bad_input", model=model, case=case, status=status)
    assert_still_serving(client, reference, model, pids)


def test_unknown_model_is_404(server, client, registered):
    response = call(server, client, "/predictions/no_such_model", b"{}", JSON)
    record("bad_input", model="(any)", case="unknown model", status=response.status_code)
    assert response.status_code == 404
    assert error_of(response)["type"] == "ModelNotFoundException" and "no_such_model" in error_of(response)["message"]
