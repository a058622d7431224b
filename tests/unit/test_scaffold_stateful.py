"""``make new-model`` on a stateful TorchScript file (an exported reset method), as a new user meets
it: the spec declares the reset, generated answers start each sample from a cleared state, the
closing advice matches what is left, and a folder with its own handler keeps its own samples."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from export.paths import ROOT

HANDLER = '''
import numpy as np
import torch

from handlers.base import Decoded, ManifestHandler


class Raw(ManifestHandler):
    """application/octet-stream: little-endian float32 rows of 3 values."""

    def decode(self, body, content_type):
        return Decoded((torch.from_numpy(np.frombuffer(bytes(body), dtype="<f4").reshape(-1, 3).copy()),), False)

    def encode(self, outputs, decoded):
        return [{"level": row} for row in outputs[0].tolist()]
'''


class Counter(torch.nn.Module):
    """Adds how many times it was called: state that leaks between requests unless reset."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + self.calls

    @torch.jit.export
    def reset_state(self) -> None:
        self.calls.zero_()


def new_model(models: Path, *args: str) -> str:
    """Run ``python -m export.scaffold`` on a models directory; its printed output."""
    env = {**os.environ, "KIT_MODELS_DIR": str(models)}
    cmd = [sys.executable, "-m", "export.scaffold", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def scaffolded(tmp_path: Path) -> Path:
    """The Counter file scaffolded, its one CHOOSE value and every CHOOSE comment replaced."""
    torch.jit.script(Counter()).save(str(tmp_path / "counter.pt"))
    new_model(tmp_path / "models", "counter", "--from", str(tmp_path / "counter.pt"))
    spec = tmp_path / "models" / "counter" / "spec.yaml"
    text = spec.read_text().replace("CHOOSE]", "3]")
    spec.write_text(re.sub(r"#\s*CHOOSE.*", "# checked", text))
    return spec.parent


def test_a_torchscript_reset_method_is_declared_and_each_sample_starts_cleared(tmp_path):
    folder = scaffolded(tmp_path)
    spec = (folder / "spec.yaml").read_text()
    assert re.search(r"^reset: reset_state\b", spec, re.M) and re.search(r"^batching: false\b", spec, re.M), spec
    row = {"inputs": {"x": [[1.0, 2.0, 3.0]]}}
    for name in ("a.json", "b.json"):  # the same body twice: a leaking state would answer b differently
        (folder / "samples" / name).write_text(json.dumps(row))
    printed = new_model(tmp_path / "models", "counter")
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    assert expected["a.json"] == expected["b.json"] == [{"output": [2.0, 3.0, 4.0]}], expected  # x + 1 call
    assert "CHOOSE" not in printed, printed  # none left: nothing to check there


def test_a_folder_with_its_own_handler_keeps_its_own_samples(tmp_path):
    folder = scaffolded(tmp_path)
    (folder / "handler.py").write_text(HANDLER)
    (folder / "samples" / "levels.bin").write_bytes(torch.tensor([1.0, 2.0, 3.0]).numpy().astype("<f4").tobytes())
    spec = (folder / "spec.yaml").read_text().replace("samples: [samples/*.json]", "samples: [samples/*.bin]")
    (folder / "spec.yaml").write_text(spec + "handler: handler.py\n")
    new_model(tmp_path / "models", "counter")
    assert sorted(p.name for p in (folder / "samples").iterdir()) == ["expected.json", "levels.bin"]
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    assert expected["levels.bin"] == [{"level": [2.0, 3.0, 4.0]}], expected
