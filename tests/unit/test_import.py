"""Importing a model from an artifact file, and the checks a user's model meets at export: constants,
state kept between calls, batched answers unlike single ones, a trace that fails. Each model here is
a small folder written by the test, served by its own handler.py (a folder without __init__.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from export.build import export_model
from export.paths import ROOT
from export.spec import load_spec
from export.verify import ExportError
from handlers.artifact import load_artifact, read_manifest

HANDLER = '''
import torch

from handlers.base import Decoded, ManifestHandler


class JsonTensors(ManifestHandler):
    """{"inputs": {name: nested list with the batch dimension}} -> one tensor per input."""

    def decode(self, body, content_type):
        return Decoded(tuple(torch.tensor(body["inputs"][s.name]) for s in self.input_specs), False)

    def encode(self, outputs, decoded):
        return [{"output": row} for row in outputs[0].tolist()]
'''
INPUTS = [
    {"name": "signal", "dtype": "float32", "shape": ["batch", 3], "dims": {"batch": {"min": 1, "max": 16}}},
    {"name": "weights", "dtype": "float32", "shape": ["batch", 5], "dims": {"batch": {"min": 1, "max": 16}}},
]
SAMPLES = [[[0.5, -1.0, 2.0]], [[1.0, 0.0, -0.5], [0.25, 0.75, 1.5]]]


class Mixer(torch.nn.Module):
    """Two tensor inputs and a non-tensor argument without a default."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.project = torch.nn.Linear(3, 2)

    def forward(self, signal: torch.Tensor, weights: torch.Tensor, gain: float) -> torch.Tensor:
        return torch.tanh(self.project(signal)) * gain + weights.mean(dim=1, keepdim=True)


class Counter(torch.nn.Module):
    """Keeps state between calls: each call adds one more than the last."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return signal[:, :2] + weights[:, :2] + self.calls

    @torch.jit.export
    def reset(self) -> None:
        self.calls.zero_()


class BatchMean(torch.nn.Module):
    """Its answer to one request depends on the others in the batch."""

    def forward(self, signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return signal[:, :2] - signal[:, :2].mean(dim=0, keepdim=True) + weights[:, :1]


def folder_with(tmp_path: Path, name: str, spec: dict, scripted: torch.nn.Module | None = None) -> Path:
    """models/<name>/ with spec.yaml, handler.py, two JSON samples and the TorchScript file if given."""
    folder = tmp_path / name
    (folder / "samples").mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for i, rows in enumerate(SAMPLES):
        weights = torch.randn(len(rows), 5, generator=generator).tolist()
        (folder / "samples" / f"{i}.json").write_text(json.dumps({"inputs": {"signal": rows, "weights": weights}}))
    (folder / "samples" / "expected.json").write_text("{}")  # answers, not a request: never decoded
    (folder / "handler.py").write_text(HANDLER)
    if scripted is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.script(scripted.eval()).save(str(folder / "model.pt"))
    base = {"name": name, "version": "1.0", "handler": "handler.py", "inputs": INPUTS}
    base |= {"samples": ["samples/*.json"], "verify_sizes": {"batch": [1, 7]}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(base | spec))
    return tmp_path


def test_a_torchscript_file_is_served_with_its_constant_and_checked_against_itself(tmp_path):
    models = folder_with(tmp_path, "mixer", {"source": "model.pt", "constants": {"gain": 0.5}}, Mixer())
    manifest = export_model(load_spec("mixer", models), tmp_path / "build" / "mixer")
    assert manifest["format"] == "torchscript" and manifest["call_constants"] == {"gain": 0.5}
    assert manifest["reference"]["kind"] == "imported file" and manifest["reference"]["file"] == "model.pt"
    x = (torch.randn(4, 3), torch.randn(4, 5))
    served = load_artifact(tmp_path / "build" / "mixer", read_manifest(tmp_path / "build" / "mixer"))
    with torch.inference_mode():
        want = torch.jit.load(str(models / "mixer" / "model.pt"))(*x, gain=0.5)
        torch.testing.assert_close(served(*x), want)


def test_a_torchscript_file_becomes_onnx_but_not_pt2(tmp_path):
    spec = {"source": "model.pt", "constants": {"gain": 0.5}, "formats": ["torchscript", "onnx", "aoti"]}
    models = folder_with(tmp_path, "mixer", spec, Mixer())
    manifest = export_model(load_spec("mixer", models), tmp_path / "mixer_onnx", "onnx")
    assert manifest["call_constants"] == {} and "TorchScript" in manifest["method"]  # the gain is baked in
    import onnxruntime as ort

    x = (torch.randn(3, 3), torch.randn(3, 5))
    session = ort.InferenceSession(str(tmp_path / "mixer_onnx" / manifest["artifact"]))
    got = session.run(None, {"signal": x[0].numpy(), "weights": x[1].numpy()})[0]
    want = torch.jit.load(str(models / "mixer" / "model.pt"))(*x, gain=0.5).detach().numpy()
    assert abs(got - want).max() < 1e-5
    with pytest.raises(ExportError, match=r"a TorchScript model cannot become aoti: torch.export needs"):
        export_model(load_spec("mixer", models), tmp_path / "mixer_aoti", "aoti")


def test_an_exported_program_with_a_constant_is_called_with_it_and_becomes_onnx(tmp_path):
    spec = {"source": "model.pt2", "constants": {"gain": 0.5}, "formats": ["exported", "onnx"]}
    models = folder_with(tmp_path, "mixer", spec)
    batch = torch.export.Dim("batch", min=1, max=16)
    shapes = {"signal": {0: batch}, "weights": {0: batch}, "gain": None}
    program = torch.export.export(
        Mixer().eval(), (torch.ones(2, 3), torch.ones(2, 5)), {"gain": 0.5}, dynamic_shapes=shapes
    )
    torch.export.save(program, str(models / "mixer" / "model.pt2"))
    x = (torch.randn(4, 3), torch.randn(4, 5))
    with torch.inference_mode():
        want = Mixer().eval()(*x, gain=0.5)
    for fmt, constants in (("exported", {"gain": 0.5}), ("onnx", {})):  # the program's signature keeps the gain
        out = tmp_path / f"mixer_{fmt}"
        manifest = export_model(load_spec("mixer", models), out, fmt)
        assert manifest["call_constants"] == constants, fmt
        with torch.inference_mode():
            torch.testing.assert_close(load_artifact(out, read_manifest(out))(*x), want, atol=1e-5, rtol=1e-5)


def test_a_missing_constant_is_explained(tmp_path):
    models = folder_with(tmp_path, "mixer", {"source": "model.pt"}, Mixer())
    with pytest.raises(ExportError, match=r"non-tensor argument 'gain' .* `constants: \{gain: <value>\}`"):
        export_model(load_spec("mixer", models), tmp_path / "out")


def test_a_model_that_keeps_state_is_refused_unless_it_declares_a_reset(tmp_path):
    models = folder_with(tmp_path, "counter", {"source": "model.pt"}, Counter())
    with pytest.raises(ExportError, match=r"differently when called again .* `reset: <method name>`"):
        export_model(load_spec("counter", models), tmp_path / "out")
    spec = load_spec("counter", models)
    spec.reset = "reset"
    spec.batching = False
    manifest = export_model(spec, tmp_path / "out")
    assert manifest["reset"] == "reset" and manifest["batching"] is False


def test_a_model_with_a_reset_is_refused_in_formats_that_drop_the_method(tmp_path):
    models = folder_with(
        tmp_path, "counter", {"source": "model.pt", "reset": "reset", "formats": ["torchscript", "onnx"]}, Counter()
    )
    with pytest.raises(
        ValueError, match=r"reset \('reset'\) is served as TorchScript only.*\['onnx'\].*formats: \[torchscript\]"
    ):
        load_spec("counter", models)


def test_batched_answers_unlike_single_ones_need_batching_false(tmp_path):
    models = folder_with(tmp_path, "batchmean", {"source": "model.pt"}, BatchMean())
    with pytest.raises(ExportError, match=r"differently in one batch than one at a time .* `batching: false`"):
        export_model(load_spec("batchmean", models), tmp_path / "out")
    spec = load_spec("batchmean", models)
    spec.batching = False
    manifest = export_model(spec, tmp_path / "out")
    assert manifest["batching"] is False and manifest["verification"]["batching"]["agrees"] is False


def export_python_model(tmp_path, name: str, forward: str, spec: dict | None = None, build: str = "M().eval()"):
    """Export a model.py route model whose class M has the ``forward`` source given."""
    models = folder_with(tmp_path, name, spec or {})
    source = f"import torch\n\n\nclass M(torch.nn.Module):\n{forward}\n\ndef build(folder):\n    return {build}\n"
    (models / name / "model.py").write_text(source)
    return export_model(load_spec(name, models), tmp_path / "out")


def test_a_trace_that_fails_says_what_to_do(tmp_path):
    forward = (
        "    def forward(self, signal, weights):\n"
        "        if torch.jit.is_tracing():  # stands for any code the tracer cannot record\n"
        "            raise RuntimeError('not traceable')\n"
        "        return signal[:, :2]\n"
    )
    with pytest.raises(ExportError, match=r"torch.jit.trace failed .* `method: script` .* `constants:`"):
        export_python_model(tmp_path, "untraceable", forward, {"method": "trace"})


def test_a_model_that_returns_no_tensor_is_told_so(tmp_path):
    forward = "    def forward(self, signal, weights):\n        return signal, None\n"
    with pytest.raises(ExportError, match=r"output 1 is a NoneType; forward\(\) must return tensors"):
        export_python_model(tmp_path, "untensored", forward)


def test_the_models_directory_can_be_moved(tmp_path):
    folder_with(tmp_path, "mixer", {"source": "model.pt", "constants": {"gain": 1.0}}, Mixer())
    code = "from export.paths import model_names; print(model_names())"
    env = {"KIT_MODELS_DIR": str(tmp_path), "PATH": ""}
    listed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert listed.stdout.strip() == "['mixer']"


def test_a_raw_scriptmodule_from_build_gets_the_constants_hint(tmp_path):
    forward = (
        "    def forward(self, signal: torch.Tensor, weights: torch.Tensor, mode: int) -> torch.Tensor:\n"
        "        return signal * mode\n"
    )
    with pytest.raises(ExportError, match=r"non-tensor argument 'mode' .* `constants: \{mode: <value>\}`"):
        export_python_model(tmp_path, "raw", forward, build="torch.jit.script(M().eval())")


def test_new_model_reads_what_each_file_says(tmp_path):
    from export.scaffold_read import onnx_inputs, torchscript_inputs

    folder_with(tmp_path, "mixer", {"source": "model.pt", "constants": {"gain": 1.0}}, Mixer())
    inputs, constants = torchscript_inputs(tmp_path / "mixer" / "model.pt")
    assert [i["name"] for i in inputs] == ["signal", "weights"] and all("CHOOSE" in i["shape"] for i in inputs)
    assert constants == {"gain": "CHOOSE (float)"}  # no default in the file: the user chooses
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            BatchMean(),
            (torch.randn(2, 3), torch.randn(2, 5)),
            str(tmp_path / "m.onnx"),
            input_names=["signal", "weights"],
            dynamic_axes={"signal": {0: "n"}, "weights": {0: "n"}},
            dynamo=False,
        )
    inputs, _ = onnx_inputs(tmp_path / "m.onnx")
    assert inputs == [
        {"name": "signal", "dtype": "float32", "shape": ["batch", 3], "dims": {"batch": {"min": 1, "max": 64}}},
        {"name": "weights", "dtype": "float32", "shape": ["batch", 5], "dims": {"batch": {"min": 1, "max": 64}}},
    ]
