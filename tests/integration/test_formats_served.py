"""Every format through a real TorchServe: the same answers from each, full concurrent batches, and
the text model against sentence-transformers' own output."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import yaml

from client.api import TorchServeError
from export.spec import load_spec
from tests.conftest import MODELS, OTHER_FORMATS, SERVED
from tests.support import (
    assert_same_answer,
    expected_outputs,
    load_handlers,
    run_handler,
    samples,
)

IDS = [served for *_, served in SERVED]


@pytest.fixture(scope="module")
def format_registered(client, registered, format_store):
    """The ONNX and AOTInductor archives registered beside the TorchScript ones (and removed after)."""
    others = [served for *_, served in OTHER_FORMATS]
    with ThreadPoolExecutor(len(others)) as pool:  # each waits for its worker: start them together
        list(pool.map(lambda served: client.register(f"{served}.mar", initial_workers=1), others))
    yield [served for *_, served in SERVED]
    for served in others:
        try:
            client.unregister(served)
        except TorchServeError:
            pass  # a test already removed it


@pytest.fixture(scope="module")
def in_process(format_unpacked):
    """Each served name's handler in process, with the model-config of its archive."""
    return load_handlers({served: format_unpacked[served] for *_, served in SERVED}, {s: n for n, _, s in SERVED})


def in_process_answer(in_process, format_unpacked, served, sample):
    [(status, answer)] = run_handler(in_process[served], format_unpacked[served], [(sample.raw, sample.content_type)])
    assert status == 200, answer
    return answer


@pytest.mark.parametrize("name", MODELS)
def test_every_format_serves_the_same_answers(client, format_registered, in_process, format_unpacked, name):
    tolerance = load_spec(name).tolerance["atol"]
    for sample in samples(name):
        want = in_process_answer(in_process, format_unpacked, name, sample)  # TorchScript, in process
        for other, _, served in SERVED:
            if other == name:
                got = client.predict(served, sample.raw, sample.content_type)
                assert_same_answer(got, want, tolerance, f"{served} {sample.path.name}")


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
        assert_same_answer(answer, want, 1e-5, f"{served} {sample.path.name}")


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers on the package's files (offline): the reference embeddings."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        from models.text_embedder.model import package_dir

        return SentenceTransformer(str(package_dir()), device="cpu")


@pytest.mark.parametrize("served", [s for name, _, s in SERVED if name == "text_embedder"])
def test_served_text_embeddings_match_sentence_transformers(client, format_registered, reference, served):
    sample = next(s for s in samples("text_embedder") if s.path.name == "sentences.json")
    answers = client.predict(served, sample.raw, sample.content_type)
    got = torch.tensor([a["embedding"] for a in answers])
    texts = json.loads(sample.raw)["texts"]
    want = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    assert bool((torch.nn.functional.cosine_similarity(got, want, dim=1) >= 0.999).all())
    expected = expected_outputs("text_embedder")["sentences.json"]
    cosine = got @ got.T
    assert min(float(cosine[i, j]) for i, j in expected["similar"]) > max(
        float(cosine[i, j]) for i, j in expected["unrelated"]
    )
    long = next(s for s in samples("text_embedder") if s.path.name == "long.txt")
    answer = client.predict(served, long.raw, long.content_type)
    assert answer["truncated"] is True and answer["tokens"] == 256 and "256 tokens" in answer["note"]


def test_bad_text_gets_a_json_422(client, format_registered):
    with pytest.raises(TorchServeError) as err:
        client.predict("text_embedder_onnx", {"texts": ["fine", ""]})
    assert err.value.status == 422 and '"texts"[1] must be a non-empty string' in err.value.message
