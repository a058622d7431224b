"""A GPU-declared model on a machine without CUDA (issue #20): a copy of the smallest model folder
with ``precision: fp16`` and ``devices: [cpu, cuda]`` in its spec and ``deviceType: gpu`` in its
model-config, exported and archived, then served by a real TorchServe whose frontend assigns the
worker a GPU (``number_of_gpu=1``; TorchServe counts the GPUs of CUDA_VISIBLE_DEVICES). The worker
answers every sample as samples/expected.json says, and its own log says it runs on the CPU in fp32
and why; the manifest records fp32 for the CPU and the verified fp16 for CUDA."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from client.server import Server
from export.paths import ROOT
from export.spec import load_spec
from tests.conftest import MODELS
from tests.support import assert_matches, checked_samples

COPY = "gpudeclared"  # a name no code or test knows
# Exported and archived in a process of its own, which finds the copy the way the kit finds models.
BUILD = """
import sys
from pathlib import Path
from export.archive import build_archive
from export.build import export_model
from export.spec import load_spec
build, store = Path(sys.argv[1]), Path(sys.argv[2])
export_model(load_spec("{name}"), build / "{name}")
build_archive("{name}", store=store, build=build)
"""


def smallest() -> str:
    """The model whose inputs hold the fewest elements (the quickest to export and serve)."""
    return min(MODELS, key=lambda m: sum(s.max_elements(1 << 30) for s in load_spec(m).inputs))


pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA here: `make gpu-check` covers the GPU")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The copy's archive, in a model store of its own."""
    root = tmp_path_factory.mktemp("gpu_declared")
    folder = root / "models" / COPY
    shutil.copytree(load_spec(smallest()).folder, folder, ignore=shutil.ignore_patterns("__pycache__"))
    spec = folder / "spec.yaml"
    text = re.sub(r"^name: .*$", f"name: {COPY}", spec.read_text(), count=1, flags=re.M)
    text = re.sub(r"^(devices|precision|precision_tolerance):.*\n", "", text, flags=re.M)
    spec.write_text(text + "devices: [cpu, cuda]\nprecision: fp16\nprecision_tolerance: {atol: 0.1, rtol: 0.05}\n")
    config = folder / "model-config.yaml"
    text = re.sub(r"^(minWorkers|maxWorkers|deviceType|deviceIds):.*\n", "", config.read_text(), flags=re.M)
    config.write_text("minWorkers: 1\nmaxWorkers: 1\ndeviceType: gpu\ndeviceIds: [0]\n" + text)
    env = os.environ | {"KIT_MODELS_DIR": str(root / "models")}
    command = [sys.executable, "-c", BUILD.format(name=COPY), str(root / "build"), str(root / "store")]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=600)
    return root / "store"


def test_a_worker_given_a_gpu_without_cuda_serves_fp32_on_the_cpu_and_says_why(store, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # what the frontend counts GPUs by, before nvidia-smi
    with Server.throwaway(store, tmp_path / "server", number_of_gpu="1") as server:
        client = server.client()
        client.register(f"{COPY}.mar")
        model = smallest()
        for sample, pattern in checked_samples(model):
            answer = client.predict(COPY, sample.raw, sample.content_type)
            assert_matches(answer, pattern, load_spec(model).tolerance, where=sample.path.name)
        log = (server.log_dir / "model_log.log").read_text()
    fallback = [line for line in log.splitlines() if "runs on the CPU" in line]
    assert len(fallback) == 1, fallback  # one worker, one line
    assert f"{COPY} runs on the CPU: TorchServe assigned gpu_id 0, but torch" in fallback[0], fallback
    assert "finds no CUDA device" in fallback[0], fallback
    assert re.search(rf"loaded {COPY} \S+ \(torchscript\) on device cpu, precision fp32$", log, flags=re.M), log[-3000:]


def test_the_manifest_records_fp32_for_the_cpu_and_the_verified_fp16_for_cuda(store):
    with zipfile.ZipFile(store / f"{COPY}.mar") as mar:
        manifest = json.loads(mar.read("manifest.json"))
    devices = manifest["runtime"]["devices"]
    assert devices["cpu"]["precision"] == "fp32" and devices["cuda"]["precision"] == "fp16", devices
    assert devices["cpu"]["artifact"] == devices["cuda"]["artifact"] == manifest["artifact"]
    precision = manifest["verification"]["precision"]
    assert precision["verified_on"] == "cpu" and precision["how"] == "autocast", precision
    assert precision["checked"] == len(manifest["verification"]["checked"]), precision  # every case
    assert precision["tolerance"] == {"atol": 0.1, "rtol": 0.05}, precision  # its own, not the fp32 one
    assert 0 < precision["max_abs_error"] <= 0.1, precision  # fp16 really ran: it differs from fp32
