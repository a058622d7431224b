"""The text_embedder in process, in every format: against sentence-transformers' own output for the
same sentences, similar sentences closer than unrelated ones, truncation said, bad input refused."""

from __future__ import annotations

import json

import pytest
import torch

from export.spec import load_spec
from tests.conftest import SERVED
from tests.support import expected_outputs, make_context, run_handler, samples

TEXT = [(fmt, served) for name, fmt, served in SERVED if name == "text_embedder"]
IDS = [served for _, served in TEXT]
FOLDER = load_spec("text_embedder").folder


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers' SentenceTransformer on the package's files: the reference embeddings."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")  # the package's folder only; never a hub
        from sentence_transformers import SentenceTransformer

        from models.text_embedder.model import package_dir

        return SentenceTransformer(str(package_dir()), device="cpu")


@pytest.fixture(scope="module")
def text_handlers(format_unpacked):
    """An initialized text_embedder handler per format."""
    loaded = {}
    for _, served in TEXT:
        handler = load_spec("text_embedder").handler_class()()
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


@pytest.mark.parametrize(("fmt", "served"), TEXT, ids=IDS)
def test_embeddings_match_sentence_transformers(text_handlers, format_unpacked, reference, fmt, served):
    for sample in samples("text_embedder"):
        texts = sample_texts(sample)
        got = torch.tensor([a["embedding"] for a in embed(text_handlers[served], format_unpacked[served], sample)])
        want = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
        similarity = torch.nn.functional.cosine_similarity(got, want, dim=1)
        assert bool((similarity >= 0.999).all()), (served, sample.path.name, similarity.tolist())
        assert (got - want).abs().max() < 1e-4, (served, sample.path.name)


@pytest.mark.parametrize(("fmt", "served"), TEXT, ids=IDS)
def test_similar_sentences_score_higher_than_unrelated_ones(text_handlers, format_unpacked, fmt, served):
    expected = expected_outputs("text_embedder")
    answers = {s.path.name: embed(text_handlers[served], format_unpacked[served], s) for s in samples("text_embedder")}
    texts = torch.tensor([a["embedding"] for a in answers["sentences.json"]])
    cosine = texts @ texts.T  # unit vectors: the dot product is the cosine similarity
    similar = [float(cosine[i, j]) for i, j in expected["sentences.json"]["similar"]]
    unrelated = [float(cosine[i, j]) for i, j in expected["sentences.json"]["unrelated"]]
    assert min(similar) > max(unrelated), (similar, unrelated)
    for name, want in expected.items():
        if "nearest" in want:
            query = torch.tensor(answers[name][0]["embedding"])
            assert int((texts @ query).argmax()) == want["nearest"], name


@pytest.mark.parametrize(("fmt", "served"), TEXT, ids=IDS)
def test_answers_carry_dimension_tokens_and_truncation(text_handlers, format_unpacked, fmt, served):
    expected = expected_outputs("text_embedder")
    for sample in samples("text_embedder"):
        answers = embed(text_handlers[served], format_unpacked[served], sample)
        want = expected[sample.path.name]
        assert len(answers) == want["count"], sample.path.name
        for answer in answers:
            assert answer["dimension"] == len(answer["embedding"]) == 384
            assert abs(sum(v * v for v in answer["embedding"]) - 1) < 1e-4  # L2-normalised
            assert answer["truncated"] is want["truncated"], sample.path.name
            if want["truncated"]:
                assert answer["tokens"] == 256 and "maximum of 256 tokens" in answer["note"]
            else:
                assert 2 < answer["tokens"] < 256 and "note" not in answer


def test_a_single_text_answers_an_object_and_a_list_answers_a_list(text_handlers, format_unpacked):
    served = "text_embedder"
    one = {"text": "A man is playing a guitar."}
    [(_, single), (_, listed)] = run_handler(
        text_handlers[served],
        format_unpacked[served],
        [
            (json.dumps(one).encode(), "application/json"),
            (json.dumps({"texts": [one["text"]]}).encode(), "application/json"),
        ],
    )
    assert isinstance(single, dict) and isinstance(listed, list) and listed == [single]


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


@pytest.mark.parametrize(("body", "ctype", "status", "words"), BAD, ids=[f"text-{i}" for i in range(len(BAD))])
def test_bad_text_input_gets_its_status_and_a_clear_message(text_handlers, format_unpacked, body, ctype, status, words):
    served, good = "text_embedder", samples("text_embedder")[0]
    [(bad_status, error), (good_status, answer)] = run_handler(
        text_handlers[served], format_unpacked[served], [(body, ctype), (good.raw, good.content_type)]
    )
    assert bad_status == status and error["code"] == status and words in error["message"], error
    assert good_status == 200 and answer["dimension"] == 384
