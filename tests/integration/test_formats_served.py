"""Every format through a real TorchServe: the same answers from each, full concurrent batches, JSON
errors from each, and embeddings that keep their meaning (models with samples/similarity.json)."""

from __future__ import annotations

import importlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import yaml

from client.api import TorchServeError
from export.spec import load_spec
from tests.conftest import MODELS, OTHER_FORMATS, SERVED
from tests.support import assert_same_answer, run_handler, samples, tolerance, unregister_all

IDS = [served for *_, served in SERVED]


@pytest.fixture(scope="module")
def format_registered(server, client, registered, format_store, artifacts):
    """Each model's other formats (``<model>_<format>``) registered beside the primary ones, which
    ``registered`` holds (each served name once); removed after. One the server refuses fails its tests."""
    others = [served for *_, served in OTHER_FORMATS if artifacts.failure(served) is None]
    patient = server.client(timeout=300)  # six workers loading at once on two busy cores

    def register(served):
        try:
            patient.register(f"{served}.mar", initial_workers=1)
        except Exception as error:  # noqa: BLE001 - kept for that served name's tests
            artifacts.refused[served] = error

    with ThreadPoolExecutor(max(len(others), 1)) as pool:  # each waits for its worker: start them together
        list(pool.map(register, others))
    yield [served for *_, served in SERVED]
    unregister_all(client, others)


@pytest.fixture(scope="module")
def in_process(handlers):
    """Each served name's handler in process, with the model-config of its archive."""
    return handlers


def in_process_answer(in_process, format_unpacked, served, sample):
    [(status, answer)] = run_handler(in_process[served], format_unpacked[served], [(sample.raw, sample.content_type)])
    assert status == 200, answer
    return answer


@pytest.mark.parametrize("name", MODELS)
def test_every_format_serves_the_same_answers(client, format_registered, in_process, format_unpacked, name):
    for sample in samples(name):
        want = in_process_answer(in_process, format_unpacked, name, sample)  # the primary format, in process
        for other, _, served in SERVED:
            if other == name:
                got = client.predict(served, sample.raw, sample.content_type)
                assert_same_answer(got, want, tolerance(name), f"{served} {sample.path.name}")


@pytest.mark.parametrize(("name", "fmt", "served"), SERVED, ids=IDS)
def test_a_full_batch_of_concurrent_requests(server, format_registered, in_process, format_unpacked, name, fmt, served):
    """batchSize requests at once (the samples in turn): each answered as in process."""
    config = yaml.safe_load((format_unpacked[served] / "model-config.yaml").read_text())
    chosen = [samples(name)[i % len(samples(name))] for i in range(config["batchSize"])]

    def predict(sample):
        return server.client().predict(served, sample.raw, sample.content_type)

    with ThreadPoolExecutor(len(chosen)) as pool:
        answers = list(pool.map(predict, chosen))
    for sample, answer in zip(chosen, answers, strict=True):
        want = in_process_answer(in_process, format_unpacked, served, sample)
        assert_same_answer(answer, want, tolerance(name), f"{served} {sample.path.name}")


def similarity(name: str) -> dict | None:
    """``samples/similarity.json``: what an embedding model's answers must say about meaning."""
    path = load_spec(name).folder / "samples" / "similarity.json"
    return json.loads(path.read_text()) if path.exists() else None


EMBEDDERS = [(name, served) for name, _, served in SERVED if similarity(name)]


def embeddings(client, served: str, sample) -> torch.Tensor:
    """The served embeddings of a sample, one row per text."""
    answer = client.predict(served, sample.raw, sample.content_type)
    return torch.tensor([a["embedding"] for a in (answer if isinstance(answer, list) else [answer])])


@pytest.mark.parametrize(("name", "served"), EMBEDDERS, ids=[served for _, served in EMBEDDERS])
def test_served_embeddings_keep_their_meaning(client, format_registered, name, served):
    meaning = similarity(name)
    texts = next(s for s in samples(name) if s.path.name == meaning["sample"])
    got = embeddings(client, served, texts)
    cosine = got @ got.T
    similar = min(float(cosine[i, j]) for i, j in meaning["similar"])
    assert similar > max(float(cosine[i, j]) for i, j in meaning["unrelated"])
    for sample in samples(name):
        if sample.path.name in meaning.get("nearest", {}):
            nearest = int((embeddings(client, served, sample) @ got.T).argmax())
            assert nearest == meaning["nearest"][sample.path.name], sample.path.name


@pytest.fixture(scope="module")
def sentence_transformers():
    """sentence-transformers on a model package's files (offline): the reference embeddings, per model."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

    def load(name: str):
        module = importlib.import_module(f"models.{name}.model")
        if not hasattr(module, "package_dir"):
            pytest.skip(f"{name}: no sentence-transformers package to compare with")
        with pytest.MonkeyPatch.context() as env:
            env.setenv("HF_HUB_OFFLINE", "1")
            return SentenceTransformer(str(module.package_dir()), device="cpu")

    return load


@pytest.mark.parametrize(("name", "served"), EMBEDDERS, ids=[served for _, served in EMBEDDERS])
def test_served_embeddings_match_sentence_transformers(client, format_registered, sentence_transformers, name, served):
    sample = next(s for s in samples(name) if s.path.name == similarity(name)["sample"])
    got = embeddings(client, served, sample)
    texts = json.loads(sample.raw)["texts"]
    want = sentence_transformers(name).encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    assert bool((torch.nn.functional.cosine_similarity(got, want, dim=1) >= 0.999).all())


@pytest.mark.parametrize("served", [served for *_, served in OTHER_FORMATS])
def test_bad_input_gets_a_json_4xx_from_every_format(client, format_registered, served):
    with pytest.raises(TorchServeError) as err:
        client.predict(served, {"no such input": [[1, 2], [3, 4]]})
    assert 400 <= err.value.status < 500 and err.value.type and err.value.message.strip(), err.value.body
