"""``make new-model`` never shows a traceback (issue 17): ONNX dimensions that are unnamed (``?``, none),
``-1`` or symbolic become named dims with bounds in valid YAML; the ``CHOOSE`` marker goes once its value
is set; a file it cannot use gets one sentence and a non-zero exit, and leaves no folder behind."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import pytest
import torch
import yaml

import export.scaffold as scaffold
from export.paths import ROOT


class Pool(torch.nn.Module):
    def forward(self, image: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return image.mean(dim=(2, 3)) + bias


def odd_onnx(path: Path) -> Path:
    """Two inputs whose dims are written every way exporters write them: symbolic, ``?``, ``-1``, none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pool(),
            (torch.randn(2, 3, 5, 6), torch.randn(2, 3)),
            str(path),
            input_names=["image", "bias"],
            dynamic_axes={"image": {0: "batch_size", 2: "h", 3: "w"}, "bias": {0: "batch_size"}},
            dynamo=False,
        )
    model = onnx.load(str(path))
    image, bias = (i.type.tensor_type.shape.dim for i in model.graph.input)
    image[2].dim_param = "height"  # symbolic
    image[3].dim_param = "?"  # unknown, as some exporters write it
    bias[0].ClearField("dim_param")
    bias[0].dim_value = -1  # -1, as others do
    onnx.save(model, str(path))
    return path


def new_model(models: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KIT_MODELS_DIR": str(models)}
    cmd = [sys.executable, "-m", "export.scaffold", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_unnamed_minus_one_and_symbolic_onnx_dims_become_named_dims_with_bounds(tmp_path):
    done = new_model(tmp_path / "models", "odd", "--from", str(odd_onnx(tmp_path / "odd.onnx")))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    spec = yaml.safe_load((tmp_path / "models" / "odd" / "spec.yaml").read_text())
    image, bias = spec["inputs"]
    assert image["shape"] == ["batch", 3, "height", "dim3"] and bias["shape"] == ["batch", 3]
    assert image["dims"] == {d: {"min": 1, "max": 64} for d in ("batch", "height", "dim3")}
    assert bias["dims"] == {"batch": {"min": 1, "max": 64}}
    assert [o["name"] for o in spec["outputs"]] and (tmp_path / "models" / "odd" / "samples" / "expected.json").exists()
    # Completed at once: the bounds' marker went with the first run, so a re-run has nothing to warn about.
    assert "CHOOSE" not in (tmp_path / "models" / "odd" / "spec.yaml").read_text()
    again = new_model(tmp_path / "models", "odd")
    assert again.returncode == 0 and "CHOOSE" not in again.stdout + again.stderr and "value(s)" not in again.stdout


def test_the_choose_marker_goes_when_its_value_is_set(tmp_path):
    class Two(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    torch.jit.script(Two()).save(str(tmp_path / "two.pt"))
    first = new_model(tmp_path / "models", "two", "--from", str(tmp_path / "two.pt"))
    assert first.returncode == 0 and "replace CHOOSE" in first.stdout, first.stdout + first.stderr
    spec = tmp_path / "models" / "two" / "spec.yaml"
    spec.write_text(spec.read_text().replace("CHOOSE]", "3]"))  # the one value a user must set
    second = new_model(tmp_path / "models", "two")
    assert second.returncode == 0 and "shape: [batch, 3]" in second.stdout, second.stdout + second.stderr
    assert "CHOOSE" not in spec.read_text()  # the comments stay, without the marker
    third = new_model(tmp_path / "models", "two")
    assert third.returncode == 0 and "CHOOSE" not in third.stdout and "value(s)" not in third.stdout


def corrupt_onnx(path: Path) -> Path:
    odd_onnx(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short, as a failed copy leaves it
    return path


BAD_FILES = {
    "corrupt.onnx": corrupt_onnx,
    "random.pt": lambda p: p.write_bytes(os.urandom(4096)) and p,
    "empty.pt2": lambda p: p.write_bytes(b"") or p,
    "random.pt2": lambda p: p.write_bytes(os.urandom(512)) and p,
    "weights.txt": lambda p: p.write_text("1 2 3") and p,
    "missing.onnx": lambda p: p,
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_file_it_cannot_use_gets_one_sentence_and_no_folder(tmp_path, monkeypatch, capsys, name):
    path = tmp_path / name
    BAD_FILES[name](path)
    monkeypatch.setattr(scaffold, "MODELS", tmp_path / "models")
    assert scaffold.main(["bad", "--from", str(path)]) != 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"make new-model: {path}: ") and ("; " in err), err  # what is wrong; what to do
    assert not (tmp_path / "models" / "bad").exists()  # nothing half-made to delete before a second try


def test_an_unreadable_file_says_so(tmp_path, monkeypatch, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "locked.onnx"
    odd_onnx(path).chmod(0)
    monkeypatch.setattr(scaffold, "MODELS", tmp_path / "models")
    assert scaffold.main(["locked", "--from", str(path)]) == 1
    assert "cannot be read" in capsys.readouterr().err


def test_a_name_that_is_not_a_folder_name_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scaffold, "MODELS", tmp_path / "models")
    assert scaffold.main(["../elsewhere"]) == 2
    assert "letters, digits and underscores" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()
