"""Handlers in-process: a real ts Context, the real exported artifact from an unpacked archive."""

from __future__ import annotations

import json

import pytest

from export.spec import load_spec
from tests.conftest import MODELS
from tests.support import assert_same_answer, eager_model, expected_outputs, load_handlers, run_handler, samples


def reference_answer(name: str, handler, folder, sample):
    """The answer with the eager model (an independent reference) in place of the artifact."""
    artifact, handler.model = handler.model, eager_model(name)
    try:
        [(status, answer)] = run_handler(handler, folder, [(sample.raw, sample.content_type)])
    finally:
        handler.model = artifact
    assert status == 200, answer
    return answer


@pytest.fixture(scope="module")
def handlers(unpacked):
    """One initialized handler per model, as a worker would hold it."""
    return load_handlers({name: unpacked[name] for name in MODELS})


@pytest.mark.parametrize("name", MODELS)
def test_each_sample_matches_the_eager_model(handlers, unpacked, name):
    handler = handlers[name]
    for sample in samples(name):
        [(status, answer)] = run_handler(handler, unpacked[name], [(sample.raw, sample.content_type)])
        assert status == 200, answer
        assert_same_answer(answer, reference_answer(name, handler, unpacked[name], sample))


@pytest.mark.parametrize("name", MODELS)
def test_one_batch_answers_each_request_like_alone(handlers, unpacked, name):
    handler = handlers[name]
    batch = [(s.raw, s.content_type) for s in samples(name)]
    together = run_handler(handler, unpacked[name], batch)
    alone = [run_handler(handler, unpacked[name], [body])[0] for body in batch]
    assert [s for s, _ in together] == [200] * len(batch)
    for (_, a), (_, b) in zip(together, alone, strict=True):
        assert_same_answer(a, b)


def test_digits_samples_get_their_true_labels(handlers, unpacked):
    expected = expected_outputs("digits")
    for sample in samples("digits"):
        [(status, answer)] = run_handler(handlers["digits"], unpacked["digits"], [(sample.raw, sample.content_type)])
        assert status == 200
        assert answer[0]["label"] == expected[sample.path.name], sample.path.name
        assert len(answer) == 3 and answer[0]["probability"] >= answer[1]["probability"]


def test_digits_multipart_form_field_is_accepted(handlers, unpacked):
    raw = (load_spec("digits").folder / "samples" / "4.png").read_bytes()
    [(status, answer)] = run_handler(handlers["digits"], unpacked["digits"], [(raw, "image/png")], name="data")
    assert status == 200 and answer[0]["label"] == 4


def test_digits_json_list_of_images_answers_a_list(handlers, unpacked):
    image = json.loads((load_spec("digits").folder / "samples" / "digit.json").read_text())["image"]
    body = json.dumps({"images": [image, image, image]}).encode()
    [(status, answer)] = run_handler(handlers["digits"], unpacked["digits"], [(body, "application/json")])
    assert status == 200 and len(answer) == 3 and all(a[0]["label"] == 7 for a in answer)


def test_sensor_samples_get_the_expected_verdict(handlers, unpacked):
    expected = expected_outputs("sensor_anomaly")
    for sample in samples("sensor_anomaly"):
        [(status, answer)] = run_handler(
            handlers["sensor_anomaly"], unpacked["sensor_anomaly"], [(sample.raw, sample.content_type)]
        )
        assert status == 200, answer
        assert answer["anomaly"] is expected[sample.path.name], (sample.path.name, answer)
        assert answer["anomaly"] == (answer["score"] > answer["threshold"])
        assert set(answer["per_channel_error"]) == {"vibration", "temperature", "current", "pressure"}


PNG = (load_spec("digits").folder / "samples" / "3.png").read_bytes()
WINDOW = json.loads((load_spec("sensor_anomaly").folder / "samples" / "healthy.json").read_text())["window"]

BAD = [
    # (model, body, content type, status, words the message must contain)
    ("digits", b"", "image/png", 400, "empty request body"),
    ("digits", b"{not json", "application/json", 400, "not valid JSON"),
    ("digits", b'{"pixels": []}', "application/json", 400, 'expected a JSON object with "image" or "images"'),
    ("digits", b'{"image": [[1, 2], [3]]}', "application/json", 422, "ragged"),
    ("digits", b'{"image": [[1, 2], [3, 4]]}', "application/json", 422, "got shape [2, 2]"),
    ("digits", json.dumps({"image": [["a"] * 8] * 8}).encode(), "application/json", 422, "type string"),
    ("digits", json.dumps({"image": [[True] * 8] * 8}).encode(), "application/json", 422, "type boolean"),
    ("digits", json.dumps({"image": [[float("nan")] * 8] * 8}).encode(), "application/json", 422, "NaN or Inf"),
    ("digits", json.dumps({"image": [[300] * 8] * 8}).encode(), "application/json", 422, "within 0-255"),
    ("digits", json.dumps({"images": []}).encode(), "application/json", 422, "empty list"),
    (
        "digits",
        json.dumps({"images": [[[0] * 8] * 8] * 65}).encode(),
        "application/json",
        422,
        "at most 64 per request",
    ),
    ("digits", b"hello", "text/plain", 415, "not supported"),
    ("digits", b"not an image", "image/png", 400, "not a readable PNG"),
    ("digits", PNG[: len(PNG) // 2], "image/png", 400, "not a readable PNG"),
    ("sensor_anomaly", b'{"window": [[1, 2, 3]]}', "application/json", 422, "4 channels"),
    ("sensor_anomaly", json.dumps({"window": WINDOW[:8]}).encode(), "application/json", 422, "with time = 64"),
    (
        "sensor_anomaly",
        json.dumps({"window": [[1, 2, 3, float("inf")]] * 64}).encode(),
        "application/json",
        422,
        "NaN or Inf",
    ),
    ("sensor_anomaly", b"vibration,temperature,current,pressure\n1,2,x,4\n", "text/csv", 422, "CSV row 1"),
    ("sensor_anomaly", b"\x89PNG", "image/png", 415, "not supported"),
]


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
    assert_same_answer(answer, reference_answer(name, handlers[name], unpacked[name], good))
