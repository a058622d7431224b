"""Helpers the tests share: requests as TorchServe hands them to a handler, and the reference
(in-process, eager) answer for a sample."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
import yaml
from ts.context import Context
from ts.service import Service

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
    """The committed samples of a model, as listed by its spec."""
    return [Sample.read(p) for p in load_spec(model).sample_paths()]


def expected_outputs(model: str) -> dict:
    """Per sample file: the label (digits) or anomaly flag (sensor_anomaly) it must get."""
    folder = load_spec(model).folder / "samples"
    path = folder / ("labels.json" if model == "digits" else "expected.json")
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "note"}


def eager_output(model: str, handler, sample: Sample) -> torch.Tensor:
    """The eager model's raw output on a sample, decoded by the handler's own preprocessing."""
    eager = load_spec(model).build_eager()
    with torch.inference_mode():
        return eager(handler.preprocess(sample.value, sample.content_type).tensor)


def assert_same_answer(got, want, tol: float = 1e-5, where: str = "answer") -> None:
    """Equal JSON structure; numbers equal within ``tol`` (the export tolerance)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: {got!r} != {want!r}"
        for key in want:
            assert_same_answer(got[key], want[key], tol, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_answer(g, w, tol, f"{where}[{i}]")
    elif isinstance(want, bool) or not isinstance(want, (int, float)):
        assert got == want, f"{where}: {got!r} != {want!r}"
    else:
        assert abs(got - want) <= tol, f"{where}: {got} != {want} (tolerance {tol})"
