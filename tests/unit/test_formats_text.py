"""Text embedding models (folders with samples/similarity.json) in process, in every format: against
sentence-transformers' own output for the same sentences, similar sentences closer than unrelated
ones, truncation said, bad input refused."""

from __future__ import annotations

import json

import pytest
import torch

from export.spec import load_file, load_spec
from tests.conftest import SERVED
from tests.support import assert_matches, expected_answers, make_context, run_handler, samples, tolerance


def similarity(name: str) -> dict | None:
    """The model's samples/similarity.json (what its embeddings must say about meaning), if it has one."""
    path = load_spec(name).folder / "samples" / "similarity.json"
    return json.loads(path.read_text()) if path.exists() else None


# Text embedding models: the folders with a samples/similarity.json, in each of their formats.
TEXT = [(name, served) for name, _, served in SERVED if similarity(name)]
IDS = [served for _, served in TEXT]
pytestmark = pytest.mark.skipif(not TEXT, reason="no model folder has samples/similarity.json")


@pytest.fixture(scope="module")
def sentence_transformers():
    """sentence-transformers' SentenceTransformer on each model's package files: the reference embeddings."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")  # the package's folder only; never a hub
        from sentence_transformers import SentenceTransformer

        models = {}
        for name in {name for name, _ in TEXT}:
            folder = load_spec(name).folder
            package_dir = load_file(folder / "model.py", f"kit_models.{name}.model").package_dir
            models[name] = SentenceTransformer(str(package_dir()), device="cpu")
        return models


@pytest.fixture(scope="module")
def text_handlers(format_unpacked):
    """An initialized handler per served name of each text model."""
    loaded = {}
    for name, served in TEXT:
        handler = load_spec(name).handler_class()()
        handler.initialize(make_context(format_unpacked[served], []))
        loaded[served] = handler
    return loaded


def sample_texts(sample) -> list[str]:
    """The texts a sample request carries."""
    if sample.content_type == "text/plain":
        return [sample.raw.decode()]
    doc = json.loads(sample.raw)
    return [doc["text"]] if "text" in doc else doc["texts"]


def embed(handler, folder, sample) -> list[dict]:
    """The handler's answers for one sample request, as a list (one item per text)."""
    [(status, answer)] = run_handler(handler, folder, [(sample.raw, sample.content_type)])
    assert status == 200, answer
    return answer if isinstance(answer, list) else [answer]


@pytest.mark.parametrize(("name", "served"), TEXT, ids=IDS)
def test_embeddings_match_sentence_transformers(text_handlers, format_unpacked, sentence_transformers, name, served):
    for sample in samples(name):
        texts = sample_texts(sample)
        got = torch.tensor([a["embedding"] for a in embed(text_handlers[served], format_unpacked[served], sample)])
        want = sentence_transformers[name].encode(texts, convert_to_tensor=True, normalize_embeddings=True)
        cosine = torch.nn.functional.cosine_similarity(got, want, dim=1)
        assert bool((cosine >= 0.999).all()), (served, sample.path.name, cosine.tolist())
        assert (got - want).abs().max() < 1e-4, (served, sample.path.name)


@pytest.mark.parametrize(("name", "served"), TEXT, ids=IDS)
def test_similar_sentences_score_higher_than_unrelated_ones(text_handlers, format_unpacked, name, served):
    meaning = similarity(name)
    answers = {s.path.name: embed(text_handlers[served], format_unpacked[served], s) for s in samples(name)}
    texts = torch.tensor([a["embedding"] for a in answers[meaning["sample"]]])
    cosine = texts @ texts.T  # unit vectors: the dot product is the cosine similarity
    similar = [float(cosine[i, j]) for i, j in meaning["similar"]]
    unrelated = [float(cosine[i, j]) for i, j in meaning["unrelated"]]
    assert min(similar) > max(unrelated), (similar, unrelated)
    for file, nearest in meaning["nearest"].items():
        query = torch.tensor(answers[file][0]["embedding"])
        assert int((texts @ query).argmax()) == nearest, file


@pytest.mark.parametrize(("name", "served"), TEXT, ids=IDS)
def test_answers_match_expected_and_say_when_they_were_cut(text_handlers, format_unpacked, name, served):
    expected = expected_answers(name)
    for sample in samples(name):
        [(status, answer)] = run_handler(
            text_handlers[served], format_unpacked[served], [(sample.raw, sample.content_type)]
        )
        assert status == 200, answer
        if sample.path.name in expected:
            assert_matches(answer, expected[sample.path.name], tolerance(name), where=sample.path.name)
        for item in answer if isinstance(answer, list) else [answer]:
            assert item["dimension"] == len(item["embedding"])
            assert abs(sum(v * v for v in item["embedding"]) - 1) < 1e-4  # L2-normalised
            assert ("note" in item) is item["truncated"], item.get("note")


@pytest.mark.parametrize(("name", "served"), TEXT, ids=IDS)
def test_a_single_text_answers_an_object_and_a_list_answers_a_list(
    text_handlers, format_unpacked, sentence_transformers, name, served
):
    one = {"text": "A man is playing a guitar."}
    [(_, single), (_, listed)] = run_handler(
        text_handlers[served],
        format_unpacked[served],
        [
            (json.dumps(one).encode(), "application/json"),
            (json.dumps({"texts": [one["text"]]}).encode(), "application/json"),
        ],
    )
    assert isinstance(single, dict) and isinstance(listed, list) and len(listed) == 1
    want = sentence_transformers[name].encode([one["text"]], convert_to_tensor=True, normalize_embeddings=True)[0]
    for answer in (single, listed[0]):  # each against sentence-transformers, not against each other
        assert (torch.tensor(answer["embedding"]) - want).abs().max() < 1e-4, served


BAD = [
    # (body, content type, status, words the message must contain)
    (b'{"text": ""}', "application/json", 422, '"text" must be a non-empty string; got an empty string'),
    (b'{"text": 42}', "application/json", 422, '"text" must be a non-empty string; got a number'),
    (b'{"texts": []}', "application/json", 422, '"texts" must be a non-empty list of strings; got an empty list'),
    (b'{"texts": "one text"}', "application/json", 422, '"texts" must be a non-empty list of strings; got a string'),
    (b'{"texts": ["fine", null]}', "application/json", 422, '"texts"[1] must be a non-empty string; got null'),
    (json.dumps({"texts": ["a"] * 33}).encode(), "application/json", 422, "holds 33 texts; at most 32 per request"),
    (b'{"sentence": "hi"}', "application/json", 400, 'expected a JSON object with "text" or "texts"'),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"   \n", "text/plain", 422, "the text/plain body must be a non-empty string"),
    (b"\x89PNG", "image/png", 415, "not supported"),
]


PRIMARY = [(name, served) for name, served in TEXT if name == served]


@pytest.mark.parametrize("name", [name for name, _ in PRIMARY])
@pytest.mark.parametrize(("body", "ctype", "status", "words"), BAD, ids=[f"text-{i}" for i in range(len(BAD))])
def test_bad_text_input_gets_its_status_and_a_clear_message(
    text_handlers, format_unpacked, name, body, ctype, status, words
):
    good = samples(name)[0]
    [(bad_status, error), (good_status, answer)] = run_handler(
        text_handlers[name], format_unpacked[name], [(body, ctype), (good.raw, good.content_type)]
    )
    assert bad_status == status and error["code"] == status and words in error["message"], error
    assert good_status == 200 and answer["dimension"] == len(answer["embedding"])
