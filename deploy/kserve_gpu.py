"""The GPU parts of ``make kserve`` (deploy/kserve.py): which models ask for a GPU, their
InferenceService's GPU request, and the ServingRuntime on the CUDA image (docs/GPU.md)."""

from __future__ import annotations

import copy

import yaml

from export.spec import load_spec

GPU_RUNTIME, CUDA_IMAGE = "torchserve-kit-cuda", "localhost/torchserve-kit:cuda"  # `make image-cuda`


def declares_gpu(name: str) -> bool:
    """Whether a model asks for a GPU: ``cuda`` in its spec's ``devices``, or ``deviceType: gpu`` in its
    model-config.yaml."""
    spec = load_spec(name)
    config = yaml.safe_load((spec.folder / "model-config.yaml").read_text()) or {}
    return "cuda" in spec.devices or str(config.get("deviceType", "")).lower() == "gpu"


def gpu_service(service: dict, values: dict) -> dict:
    """A GPU model's InferenceService: our CUDA runtime, ``nvidia.com/gpu`` limits (``gpus``, default 1;
    KServe merges them into the runtime's container), and the ``nodeSelector`` and ``tolerations`` of the
    user's values (none by default: clusters label and taint their GPU nodes differently)."""
    service = copy.deepcopy(service)
    predictor = service["spec"]["predictor"]
    predictor["model"]["runtime"] = GPU_RUNTIME
    predictor["model"]["resources"] = {"limits": {"nvidia.com/gpu": str(values.get("gpus", 1))}}
    predictor |= {key: values[key] for key in ("nodeSelector", "tolerations") if values.get(key)}
    return service


def cuda_runtime(runtime: dict, image: str) -> dict:
    """The ServingRuntime of GPU models: ours on the CUDA image, chosen by name only."""
    cuda = copy.deepcopy(runtime)
    cuda["metadata"]["name"] = GPU_RUNTIME
    cuda["spec"]["supportedModelFormats"][0]["autoSelect"] = False
    cuda["spec"]["containers"][0]["image"] = image
    return cuda
