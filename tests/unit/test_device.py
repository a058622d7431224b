"""Device placement (handlers/device.py) with CUDA unavailable: the CPU, one log line saying why,
``handler.device`` overriding; a manifest without an artifact for the worker's device refused; ONNX
Runtime's providers; and `make gpu-check` on a machine without CUDA (one line, exit 0)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import torch
from ts.context import Context

from export.paths import ROOT
from export.spec import load_spec
from handlers.artifact import ArtifactIncompatible, load_artifact, onnx_providers
from handlers.device import Placement, choose_device, device_entry
from tests.conftest import MODELS
from tests.support import run_handler


@pytest.fixture
def no_cuda(monkeypatch):
    """CUDA unavailable, as on these machines (and forced so on a GPU machine)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    ("gpu_id", "setting", "reason"),
    [
        (0, "auto", "TorchServe assigned gpu_id 0, but torch"),
        (None, "auto", "TorchServe assigned no GPU"),
        (3, "cpu", "handler.device is cpu"),
        (None, "cpu", "handler.device is cpu"),
    ],
)
def test_without_cuda_the_worker_is_on_the_cpu_and_says_why(no_cuda, gpu_id, setting, reason):
    device, why = choose_device(gpu_id, setting)
    assert device == torch.device("cpu")
    assert why.startswith(reason), why


def test_cuda_required_without_cuda_refuses_to_load(no_cuda):
    with pytest.raises(RuntimeError, match="handler.device is cuda in model-config.yaml, but torch .* no CUDA device"):
        choose_device(0, "cuda")
    with pytest.raises(ValueError, match="must be one of"):
        choose_device(0, "gpu")


def context_with_gpu(folder, gpu_id, settings: dict) -> Context:
    """A real ts Context as a worker gets it when TorchServe assigned it ``gpu_id``."""
    manifest = json.loads((folder / "MAR-INF" / "MANIFEST.json").read_text())
    model_yaml = {"handler": {"threads": 1} | settings}
    return Context(manifest["model"]["modelName"], str(folder), manifest, 1, gpu_id, "0.12.0", True, None, model_yaml)


@pytest.mark.parametrize("name", MODELS)
def test_a_worker_given_a_gpu_id_without_cuda_logs_one_line_and_answers(no_cuda, unpacked, caplog, name):
    handler = load_spec(name).handler_class()()
    with caplog.at_level(logging.INFO, logger="handlers"):
        handler.initialize(context_with_gpu(unpacked[name], 0, {}))
    fallback = [r.getMessage() for r in caplog.records if "runs on the CPU" in r.getMessage()]
    assert fallback == [
        f"{name} runs on the CPU: TorchServe assigned gpu_id 0, but torch {torch.__version__} finds no CUDA device"
    ]
    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded ")]
    assert loaded and loaded[-1].endswith("on device cpu, precision fp32"), loaded
    assert handler.placement == Placement(torch.device("cpu"))
    sample = load_spec(name).read_samples()[0]
    [(status, _)] = run_handler(handler, unpacked[name], [(sample.raw, sample.content_type)])
    assert status == 200


def test_a_manifest_without_the_workers_device_is_refused_with_the_fix(unpacked):
    name = MODELS[0]
    manifest = json.loads((unpacked[name] / "manifest.json").read_text())
    manifest["runtime"]["devices"].pop("cuda")
    manifest["runtime"]["missing_devices"] = {"cuda": "CUDA was not available at export"}
    with pytest.raises(
        ArtifactIncompatible, match="no torchscript artifact for cuda .CUDA was not available at export"
    ):
        load_artifact(unpacked[name], manifest, 1, torch.device("cuda", 0))
    assert device_entry(manifest, torch.device("cpu"))["artifact"] == manifest["artifact"]


def test_onnx_runs_on_cuda_only_with_its_provider(caplog):
    cuda = torch.device("cuda", 1)
    assert onnx_providers(cuda, ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == (
        "CUDAExecutionProvider",
        {"device_id": 1},
    )
    with caplog.at_level(logging.INFO, logger="handlers"):
        assert onnx_providers(cuda, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert any("no CUDAExecutionProvider (install onnxruntime-gpu)" in r.getMessage() for r in caplog.records)
    assert onnx_providers(torch.device("cpu"), ["CUDAExecutionProvider"]) == ["CPUExecutionProvider"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: `make gpu-check` runs in full")
def test_gpu_check_without_cuda_prints_one_line_and_exits_0():
    run = subprocess.run(
        [sys.executable, "-m", "export.gpu_check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("\n") == 1 and "no CUDA" in run.stdout, run.stdout
