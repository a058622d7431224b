"""The README's "Adding your own model", executed: in a copy of the project, a TorchScript file and an
ONNX file of a model that is none of the examples are scaffolded with `make new-model`, archived with
`make archive`, served by a real TorchServe, and answer over REST and v2 as the artifact does when
called in process. Only the new model's folder changes in the project.

The copy holds the kit without the example models (their exports would only slow this down).
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
import yaml

from client.register import sync
from client.server import Server
from tests.support import copy_project

V2_TYPES = {"float32": "FP32", "int64": "INT64"}
GAIN = 0.75  # the TorchScript model's constant, chosen in its spec (its default is 1.5)


class Mixer(torch.nn.Module):
    """Two inputs and a non-tensor argument: none of the example models."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.project = torch.nn.Linear(3, 2)

    def forward(self, signal: torch.Tensor, weights: torch.Tensor, gain: float = 1.5) -> torch.Tensor:
        return torch.tanh(self.project(signal)) * gain + weights.mean(dim=1, keepdim=True)


class FixedGain(torch.nn.Module):
    """The mixer with its gain fixed: ONNX graphs take tensors only."""

    def __init__(self, mixer: Mixer, gain: float):
        super().__init__()
        self.mixer, self.gain = mixer, gain

    def forward(self, signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.mixer(signal, weights, self.gain)


def make_artifacts(folder: Path) -> dict[str, Path]:
    """mixer.pt (TorchScript, scripted: keeps ``gain``) and mixer.onnx (two named inputs, dynamic batch)."""
    model = Mixer().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(model).save(str(folder / "mixer.pt"))
        example = (torch.randn(2, 3), torch.randn(2, 5))
        torch.onnx.export(
            FixedGain(model, 1.5),
            example,
            str(folder / "mixer.onnx"),
            input_names=["signal", "weights"],
            output_names=["mixed"],
            dynamic_axes={"signal": {0: "batch"}, "weights": {0: "batch"}, "mixed": {0: "batch"}},
            dynamo=False,
        )
    return {"pt": folder / "mixer.pt", "onnx": folder / "mixer.onnx"}


def in_process(artifact: Path, inputs: dict[str, list], constants: dict) -> np.ndarray:
    """The artifact called directly with its own runtime: the independent reference."""
    if artifact.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        return session.run(None, {k: np.asarray(v, np.float32) for k, v in inputs.items()})[0]
    module = torch.jit.load(str(artifact))
    with torch.inference_mode():
        return module(*(torch.tensor(v) for v in inputs.values()), **constants).numpy()


def numbers(answer) -> list[float]:
    """Every number of an answer, in order: the generic handler's answer holds only the output values."""
    if isinstance(answer, dict):
        return [x for v in answer.values() for x in numbers(v)]
    if isinstance(answer, list):
        return [x for v in answer for x in numbers(v)]
    return [answer] if isinstance(answer, (int, float)) and not isinstance(answer, bool) else []


def run(project: Path, *command: str) -> str:
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the working tree (no model folders), as a git repository."""
    return copy_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def served(project, tmp_path_factory):
    """Both artifacts scaffolded, archived and registered on a throwaway TorchServe."""
    files = make_artifacts(tmp_path_factory.mktemp("artifacts"))
    run(project, "make", "new-model", "NAME=mixer_ts", f"FROM={files['pt']}")
    spec = project / "models" / "mixer_ts" / "spec.yaml"
    # The one edit: TorchScript records argument names and types, not sizes; and a gain other than
    # the file's default, so that a constant the server dropped would show.
    text = spec.read_text().replace("CHOOSE]", "3]", 1).replace("CHOOSE]", "5]", 1)
    spec.write_text(text.replace("gain: 1.5", f"gain: {GAIN}"))
    run(project, "make", "new-model", "NAME=mixer_ts")
    run(project, "make", "new-model", "NAME=mixer_onnx", f"FROM={files['onnx']}")  # ONNX says it all
    run(project, "make", "archive")
    work, store = tmp_path_factory.mktemp("torchserve"), project / "model_store"
    with Server.throwaway(store, work, base=project / "config.properties") as server:
        sync(server.client(), ["mixer_ts", "mixer_onnx"], False, store, work / "registered.json")  # as `make serve`
        yield server, files


@pytest.mark.parametrize(("name", "kind"), [("mixer_ts", "pt"), ("mixer_onnx", "onnx")])
def test_own_model_answers_as_the_artifact_does(project, served, name, kind):
    server, files = served
    folder = project / "models" / name
    spec = yaml.safe_load((folder / "spec.yaml").read_text())
    body = json.loads((folder / "samples" / "sample.json").read_text())
    want = in_process(files[kind], body["inputs"], {"gain": GAIN} if kind == "pt" else {})
    tol = spec["tolerance"]

    rest = server.client().predict(name, body)
    np.testing.assert_allclose(np.asarray(numbers(rest)), want.ravel(), atol=tol["atol"], rtol=tol["rtol"])

    v2_inputs = [
        {"name": k, "shape": list(np.shape(v)), "datatype": V2_TYPES[entry["dtype"]], "data": np.ravel(v).tolist()}
        for (k, v), entry in zip(body["inputs"].items(), spec["inputs"], strict=True)
    ]
    token = json.loads(server.key_file.read_text())["inference"]["key"]
    answer = requests.post(
        f"{server.address('inference')}/v2/models/{name}/infer",
        json={"inputs": v2_inputs},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    got = np.asarray(output["data"], np.float32).reshape(output["shape"])
    np.testing.assert_allclose(got, want, atol=tol["atol"], rtol=tol["rtol"])


def test_a_rebuilt_archive_is_served_after_make_serve_registers_again(project, served):
    server, files = served
    spec = project / "models" / "mixer_ts" / "spec.yaml"
    spec.write_text(spec.read_text().replace(f"gain: {GAIN}", "gain: 2.5"))
    run(project, "make", "archive")
    body = json.loads((spec.parent / "samples" / "sample.json").read_text())
    sync(
        server.client(), ["mixer_ts", "mixer_onnx"], False, project / "model_store", server.workdir / "registered.json"
    )
    want = in_process(files["pt"], body["inputs"], {"gain": 2.5})
    got = numbers(server.client().predict("mixer_ts", body))
    np.testing.assert_allclose(np.asarray(got), want.ravel(), atol=1e-5, rtol=1e-5)


def test_only_the_new_model_folders_changed(project, served):
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True).stdout
    changed = [line[3:] for line in status.splitlines()]
    assert changed and all(path.startswith(("models/mixer_ts/", "models/mixer_onnx/")) for path in changed), changed
