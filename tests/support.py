"""Helpers the tests share: requests as TorchServe hands them to a handler, the reference
answers of a sample computed without the handler (the model run directly; samples/expected.json)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

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


def primary_format(model: str) -> str:
    """The format a model is served in under its own name, read here from its spec.yaml: the first
    ``formats`` entry, else the source file's own format (model.py, .pt and .jit: TorchScript)."""
    raw = yaml.safe_load((load_spec(model).folder / "spec.yaml").read_text())
    suffix = Path(str(raw.get("source", "model.py"))).suffix
    return (raw.get("formats") or [{".onnx": "onnx", ".pt2": "exported"}.get(suffix, "torchscript")])[0]


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


def direct_answer(model: str, sample: Sample):
    """What a request must be answered, computed without any handler code: for a model served by the
    generic handler (no ``handler:`` in its spec) and a JSON sample, the sample's nested lists made into
    arrays here with numpy, the reference model (``reference_model``) called on them (its reset first),
    and each output's rows named as the spec's ``outputs``. None for a custom handler or another kind of
    sample: ``samples/expected.json`` checks those."""
    spec = load_spec(model)
    if spec.handler is not None or sample.content_type != "application/json":
        return None
    doc = json.loads(sample.raw)
    values = doc["inputs"] if isinstance(doc.get("inputs"), dict) else doc
    arrays = [np.asarray(values[entry.name], dtype=entry.dtype) for entry in spec.inputs]
    single = arrays[0].ndim == len(spec.inputs[0].shape) - 1  # one instance: no batch dimension
    tensors = [torch.from_numpy(a[None] if single else a) for a in arrays]
    called = reference_model(model)
    with torch.inference_mode():
        if spec.reset:
            getattr(called, spec.reset)()
        got = called(*tensors)
    outputs = [got] if isinstance(got, torch.Tensor) else list(got)
    names = [o["name"] for o in spec.outputs]
    if len(names) != len(outputs):
        names = [f"output_{i}" for i in range(len(outputs))] if len(outputs) > 1 else names[:1]
    rows = [{name: out[n].tolist() for name, out in zip(names, outputs, strict=True)} for n in range(len(tensors[0]))]
    return rows[0] if single else rows


def assert_answer_is_right(model: str, sample: Sample, answer) -> int:
    """``answer`` checked against every reference made without the handler: the model run directly
    (``direct_answer``) and ``samples/expected.json``. Returns how many there were (0: unchecked)."""
    checks = 0
    if (want := direct_answer(model, sample)) is not None:
        assert_same_answer(answer, want, tolerance(model), where=f"{sample.path.name} vs the model run directly")
        checks += 1
    if (pattern := expected_answers(model).get(sample.path.name)) is not None:
        assert_matches(answer, pattern, tolerance(model), where=f"{sample.path.name} vs expected.json")
        checks += 1
    return checks


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


def copy_project(into: Path) -> Path:
    """A copy of the working tree (tracked and untracked files, no model folders) as a git repository
    of its own, sharing this project's .venv: where a user's `make new-model` can be run and checked."""
    import os
    import shutil
    import subprocess

    from export.paths import ROOT

    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        parts = Path(name).parts
        if parts[0] == "models" and len(parts) > 2 or not (ROOT / name).is_file():
            continue
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, into / name)
    (into / ".venv").symlink_to((ROOT / ".venv").resolve())
    for name in ("requirements.txt", "requirements-runtime.txt"):  # the shared venv is up to date: no rebuild
        os.utime(into / name, (0, 0))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run([*git, *command], cwd=into, check=True, capture_output=True)
    return into
