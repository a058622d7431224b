"""Helpers the tests share: requests as TorchServe hands them to a handler, the reference
(in-process, the eager model) answer for a sample, and each model's expected answers (samples/expected.json)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from client.answers import difference
from client.answers import matches as matches  # the contract's name for tests: tests.support.matches
from export.build import sample_cases, sample_handler
from export.samples import Sample, torchserve_value
from export.sources import load_source
from export.spec import load_spec
from tools.fake_worker import context as make_context  # noqa: F401 - the tests' name for it
from tools.fake_worker import unpack as unpack  # the tests' name for it


def run_handler(handler, model_dir: Path, bodies: list[tuple[bytes, str]], name: str = "body"):
    """Send raw (body, content type) pairs through ``handler.handle`` as one batch.

    Returns:
        [(status, answer)] per request.
    """
    ctx = make_context(model_dir, [(name, ctype) for _, ctype in bodies])
    rows = [{name: torchserve_value(raw, ctype)} for raw, ctype in bodies]
    answers = handler.handle(rows, ctx)
    assert len(answers) == len(bodies) and all(isinstance(a, bytes) for a in answers), answers
    return [(ctx.get_response_status(i)[0], strict_json(answers[i])) for i in range(len(bodies))]


def strict_json(body: bytes):
    """A handler's answer decoded as JSON proper: NaN and Infinity (Python's extension) refused."""
    return json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} in an answer: not JSON"))


def samples(model: str) -> list[Sample]:
    """The committed samples of a model, as listed by its spec (with the spec's content types)."""
    return load_spec(model).read_samples()


def handler_name(model: str) -> str:
    """The class name of the handler a model's folder uses (domain tests pick their models by it)."""
    return load_spec(model).handler_class().__name__


def expected_answers(model: str) -> dict:
    """``samples/expected.json`` of a model: sample file name -> the pattern its answer must match
    (see ``client.answers.matches``); empty when the model has none."""
    path = load_spec(model).folder / "samples" / "expected.json"
    answers = json.loads(path.read_text()) if path.exists() else {}
    return {name: pattern for name, pattern in answers.items() if name != "note"}


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
def reference_model(model: str):
    """The independent reference of a model, built once per session: its eager model from model.py
    (or, for an imported artifact, the file loaded with its own runtime), with the spec's constants
    bound, so it is called like ``handler.model``: input tensors positionally."""
    return load_source(load_spec(model)).reference


def reference_answer(model: str, handler, folder: Path, sample: Sample):
    """What a request must be answered: the handler's own ``handle()`` with the reference model in
    place of the artifact (so only the model differs)."""
    artifact, handler.model = handler.model, reference_model(model)
    try:
        [(status, answer)] = run_handler(handler, folder, [(sample.raw, sample.content_type)])
    finally:
        handler.model = artifact
    assert status == 200, answer
    return answer


def random_inputs(model: str) -> tuple[torch.Tensor, ...]:
    """Plausible random inputs with every dimension at its maximum, made from the model's own samples:
    the decoded samples joined into one batch, repeated (rows cycled, padded with each input's ``pad``)
    up to the spec's bounds, floats jittered by a tenth of their spread."""
    spec = load_spec(model)
    handler = sample_handler(spec)
    joined = handler.collate([case.inputs for case in sample_cases(spec, handler)])
    generator = torch.Generator().manual_seed(0)
    return tuple(_grow(t, entry, generator) for t, entry in zip(joined, spec.inputs, strict=True))


def _grow(tensor: torch.Tensor, entry, generator: torch.Generator) -> torch.Tensor:
    """``tensor`` at the largest size ``entry`` (an InputSpec) allows: the batch dimension cycles
    through the rows, other dimensions are padded with the input's pad value."""
    sizes = [
        entry.bounds(d)[1] or n if isinstance(d, str) else d for d, n in zip(entry.shape, tensor.shape, strict=True)
    ]
    rows = tensor[torch.arange(sizes[0]) % tensor.shape[0]]
    out = rows.new_full(sizes, entry.pad)
    out[(slice(None), *(slice(0, n) for n in rows.shape[1:]))] = rows
    if out.is_floating_point():
        out = out + torch.randn(out.shape, generator=generator) * out.std() * 0.1
    return out


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


def unregister_all(client, names) -> None:
    """Unregister every one of ``names`` that is still registered (a test may have removed some)."""
    from client.api import TorchServeError

    for name in names:
        try:
            client.unregister(name)
        except TorchServeError:
            pass  # a test already removed it
