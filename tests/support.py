"""Helpers the tests share: requests as TorchServe hands them to a handler, the reference
(in-process, eager) answer for a sample, and each model's expected answers (samples/expected.json)."""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

import torch
import yaml
from ts.context import Context
from ts.service import Service

from client.answers import difference
from client.answers import matches as matches  # the contract's name for tests: tests.support.matches
from export.samples import Sample, torchserve_value
from export.spec import load_spec


def unpack(mar: Path, into: Path) -> Path:
    """Unzip an archive as TorchServe does for a worker; returns the model folder."""
    with zipfile.ZipFile(mar) as z:
        z.extractall(into)
    return into


def make_context(model_dir: Path, requests: list[tuple[str, str]]) -> Context:
    """A real ts Context for one batch of (parameter name, content type), with the archive's
    model-config.yaml, built the way ts.service.Service builds it for a worker."""
    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    model_yaml = yaml.safe_load((model_dir / "model-config.yaml").read_text())
    ctx = Context(manifest["model"]["modelName"], str(model_dir), manifest, 8, None, "0.12.0", True, None, model_yaml)
    batch = [
        {"requestId": f"req-{i}".encode(), "parameters": [{"name": name, "contentType": ctype, "value": b""}]}
        for i, (name, ctype) in enumerate(requests)
    ]
    headers, _, ids = Service.retrieve_data_for_inference(batch)
    ctx.request_processor, ctx.request_ids = headers, ids
    return ctx


def run_handler(handler, model_dir: Path, bodies: list[tuple[bytes, str]], name: str = "body"):
    """Send raw (body, content type) pairs through ``handler.handle`` as one batch.

    Returns:
        [(status, answer)] per request.
    """
    ctx = make_context(model_dir, [(name, ctype) for _, ctype in bodies])
    rows = [{name: torchserve_value(raw, ctype)} for raw, ctype in bodies]
    answers = handler.handle(rows, ctx)
    assert len(answers) == len(bodies)
    return [(ctx.get_response_status(i)[0], answers[i]) for i in range(len(bodies))]


def samples(model: str) -> list[Sample]:
    """The committed samples of a model, as listed by its spec (with the spec's content types)."""
    return load_spec(model).read_samples()


def expected_answers(model: str) -> dict:
    """``samples/expected.json`` of a model: sample file name -> the pattern its answer must match
    (see ``client.answers.matches``); empty when the model has none."""
    path = load_spec(model).folder / "samples" / "expected.json"
    answers = json.loads(path.read_text()) if path.exists() else {}
    return {name: pattern for name, pattern in answers.items() if name != "note"}


expected_outputs = expected_answers  # the old name, until every test file uses the new one


def checked_samples(model: str) -> list[tuple[Sample, object]]:
    """(sample, the pattern its answer must match) for every sample listed in samples/expected.json."""
    expected = expected_answers(model)
    assert expected, f"{model}: no samples/expected.json"
    return [(s, expected[s.path.name]) for s in samples(model) if s.path.name in expected]


def tolerance(model: str) -> dict:
    """The spec's ``{"atol", "rtol"}``: how close numbers must be, in every comparison."""
    return load_spec(model).tolerance


def assert_matches(answer, pattern, tol=None, where: str = "answer") -> None:
    """``answer`` has everything ``pattern`` says (``client.answers.matches``), numbers within ``tol``."""
    found = difference(answer, pattern, tol, where=where)
    assert found is None, found


@functools.cache
def eager_model(model: str) -> torch.nn.Module:
    """The eager model, built once per session (the text model takes a second to build)."""
    return load_spec(model).build_eager()


def eager_output(model: str, handler, sample: Sample):
    """The eager model's output on a sample, decoded by the handler's own preprocessing, as the
    handler's ``postprocess`` takes it (a tensor, or paired with what the request said)."""
    decoded = handler.preprocess(sample.value, sample.content_type)
    with torch.inference_mode():
        return handler.request_output(eager_model(model)(*decoded.tensors), decoded)


def random_inputs(model: str) -> tuple[torch.Tensor, ...]:
    """Plausible random inputs with every dimension at its maximum: pixels or readings around
    their typical values, or token ids with an attention mask whose rows have random lengths."""
    spec = load_spec(model)
    generator = torch.Generator().manual_seed(0)
    sizes = [[e.bounds(d)[1] if isinstance(d, str) else d for d in e.shape] for e in spec.inputs]
    if model == "text_embedder":
        ids = torch.randint(1000, 29000, sizes[0], generator=generator)
        lengths = torch.randint(2, sizes[0][1] + 1, (sizes[0][0],), generator=generator)
        mask = (torch.arange(sizes[0][1]) < lengths[:, None]).to(torch.int64)
        return ids * mask, mask
    x = torch.randn(*sizes[0], generator=generator) * 0.5
    if model == "sensor_anomaly":
        x = x + torch.tensor(json.loads((spec.folder / "calibration.json").read_text())["mean"])
    return (x,)


def assert_same_answer(got, want, tol=1e-5, where: str = "answer") -> None:
    """Equal JSON structure; numbers equal within ``tol`` (a float, or a spec's ``{"atol", "rtol"}``)."""
    found = difference(got, want, tol, strict=True, where=where)
    assert found is None, found


def load_handlers(folders: dict[str, Path], names: dict[str, str] | None = None) -> dict:
    """Initialized handlers, as workers hold them: served name -> handler, each loaded from its
    unpacked archive. ``names`` maps a served name to its model (default: the same name)."""
    loaded = {}
    for served, folder in folders.items():
        handler = load_spec((names or {}).get(served, served)).handler_class()()
        handler.initialize(make_context(folder, []))
        loaded[served] = handler
    return loaded


def reference_answer(model: str, handler, sample: Sample):
    """What a request must be answered: the eager model's output through the handler's postprocess."""
    items = handler.postprocess(eager_output(model, handler, sample))
    return items[0] if len(items) == 1 else items
