"""GPU deployment (issue #20): a GPU model's InferenceService requests a GPU on our CUDA runtime with
the user's node selector and tolerations; the CUDA image's requirements differ from the runtime set only
in torch's and ONNX Runtime's CUDA builds; the configs document how TorchServe assigns GPUs."""

from __future__ import annotations

import re

from deploy.kserve import RUNTIME, inference_service, serving_runtime
from deploy.kserve_gpu import CUDA_IMAGE, GPU_RUNTIME, cuda_runtime, gpu_service
from export.paths import ROOT, model_names
from export.spec import load_spec


def pins(path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / path).read_text(), flags=re.M)
    return dict(found)


def test_a_gpu_model_requests_a_gpu_on_the_cuda_runtime_with_the_users_placement():
    values = {"nodeSelector": {"gpu": "h200"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}
    plain = inference_service("m", "s3://bucket/kit")
    service = gpu_service(plain, values)
    predictor = service["spec"]["predictor"]
    assert predictor["model"]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert predictor["model"]["runtime"] == GPU_RUNTIME
    assert predictor["nodeSelector"] == {"gpu": "h200"} and predictor["tolerations"] == values["tolerations"]
    assert plain["spec"]["predictor"]["model"]["runtime"] == RUNTIME  # the CPU service is left as it was
    bare = gpu_service(plain, {})["spec"]["predictor"]
    assert "nodeSelector" not in bare and "tolerations" not in bare  # left to the user's values


def test_the_cuda_runtime_is_ours_on_the_cuda_image_chosen_by_name():
    runtime = cuda_runtime(serving_runtime("cpu-image"), CUDA_IMAGE)
    assert runtime["metadata"]["name"] == GPU_RUNTIME
    assert runtime["spec"]["containers"][0]["image"] == CUDA_IMAGE
    assert runtime["spec"]["supportedModelFormats"][0]["autoSelect"] is False
    assert serving_runtime("cpu-image")["spec"]["containers"][0]["image"] == "cpu-image"


def test_the_cuda_requirements_are_the_runtime_set_with_cuda_builds():
    runtime, cuda = pins("requirements-runtime.txt"), pins("requirements-cuda.txt")
    assert cuda.pop("torch") == runtime.pop("torch") + "+cu128"
    assert cuda.pop("onnxruntime-gpu") == runtime.pop("onnxruntime")
    assert cuda == runtime


def test_the_configs_document_gpu_assignment():
    assert re.search(r"^# .*number_of_gpu", (ROOT / "config.properties").read_text(), flags=re.M)
    for name in model_names():
        text = (load_spec(name).folder / "model-config.yaml").read_text()
        assert "deviceType" in text and "deviceIds" in text, name
