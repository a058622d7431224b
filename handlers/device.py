"""Where a worker runs its model, and in which precision.

TorchServe gives a worker a GPU (``context.system_properties["gpu_id"]``) when ``number_of_gpu`` is
above 0 and the model's ``deviceType`` is not ``cpu``. The worker then runs on ``cuda:<gpu_id>`` if
this torch has CUDA; otherwise on the CPU, and one log line says why. ``handler.device`` in
model-config.yaml (``auto``, ``cpu`` or ``cuda``) overrides the choice.

Precision: the manifest's ``runtime.devices`` says, per device, which artifact to load and in which
precision export verified it (``fp32``, or the spec's ``precision`` for GPU workers); a device it
does not list runs the manifest's artifact in fp32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)
SETTINGS = ("auto", "cpu", "cuda")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PIN_BYTES = 1 << 20  # pinning costs a host copy: only inputs this large gain from an async copy


def choose_device(gpu_id, setting: str = "auto") -> tuple[torch.device, str]:
    """The worker's device and, for the CPU, why; ``gpu_id`` is TorchServe's (None: not assigned).

    Raises:
        ValueError: ``setting`` is not auto, cpu or cuda.
        RuntimeError: ``cuda`` is required but this torch has no usable CUDA device.
    """
    if setting not in SETTINGS:
        raise ValueError(f"handler.device in model-config.yaml must be one of {list(SETTINGS)}, got {setting!r}")
    if setting == "cpu":
        return torch.device("cpu"), "handler.device is cpu in model-config.yaml"
    index = int(gpu_id) if gpu_id is not None else 0
    if not torch.cuda.is_available():
        why = f"torch {torch.__version__} finds no CUDA device"
        if setting == "cuda":
            raise RuntimeError(f"handler.device is cuda in model-config.yaml, but {why}; set it to auto or cpu")
        if gpu_id is None:
            return torch.device("cpu"), "TorchServe assigned no GPU (number_of_gpu is 0 or deviceType is cpu)"
        return torch.device("cpu"), f"TorchServe assigned gpu_id {gpu_id}, but {why}"
    if gpu_id is None and setting == "auto":
        return torch.device("cpu"), "TorchServe assigned no GPU (number_of_gpu is 0 or deviceType is cpu)"
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"gpu_id {index} is assigned, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index), ""


def device_entry(manifest: dict, device: torch.device) -> dict:
    """What ``device`` loads: ``{"artifact", "sha256", "precision"}`` from the manifest's
    ``runtime.devices``, else the manifest's one artifact in fp32 (manifests of before).

    Raises:
        LookupError: the manifest lists devices, not this one (an AOTInductor package per device).
    """
    devices = manifest.get("runtime", {}).get("devices")
    if not devices:
        return {"artifact": manifest["artifact"], "sha256": manifest["sha256"], "precision": "fp32"}
    if device.type not in devices:
        missing = manifest.get("runtime", {}).get("missing_devices", {}).get(device.type, "the spec does not list it")
        raise LookupError(
            f"{manifest['name']}: no {manifest['format']} artifact for {device.type} ({missing}); it has "
            f"{sorted(devices)}. Export on a machine with {device.type} and `devices: [..., {device.type}]` in "
            f"spec.yaml, serve another format, or set handler.device in model-config.yaml"
        )
    return devices[device.type]


@dataclass(frozen=True)
class Placement:
    """A worker's device and precision; ``inputs`` is where input tensors go (ONNX Runtime copies
    host arrays to its device itself, so an ONNX worker keeps them on the host)."""

    device: torch.device
    precision: str = "fp32"
    inputs: torch.device = torch.device("cpu")

    def to_device(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The batch on ``inputs``, once per batch: large tensors pinned and copied asynchronously."""
        if self.inputs.type == "cpu":
            return batch
        return tuple(_to(t, self.inputs) for t in batch)

    def to_host(self, outputs):
        """Outputs (a tensor or a tuple of them) back on the CPU, once per batch."""
        if isinstance(outputs, (tuple, list)):
            return tuple(self.to_host(o) for o in outputs)
        return outputs.cpu() if isinstance(outputs, torch.Tensor) else outputs

    def describe(self) -> str:
        name = f"{self.device} ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else "cpu"
        return f"device {name}, precision {self.precision}"


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if tensor.device == device:
        return tensor
    if tensor.numel() * tensor.element_size() >= PIN_BYTES:
        return tensor.pin_memory().to(device, non_blocking=True)  # ordered before the model on the stream
    return tensor.to(device)


def placement(system_properties: dict, settings: dict, manifest: dict) -> Placement:
    """The worker's placement from TorchServe's ``gpu_id``, ``handler.device`` and the manifest;
    logs one line on a CPU fallback saying why."""
    device, why = choose_device(system_properties.get("gpu_id"), str(settings.get("device", "auto")))
    if device.type == "cpu":
        log.info("%s runs on the CPU: %s", manifest.get("name", "model"), why)
    precision = device_entry(manifest, device).get("precision", "fp32")
    if device.type == "cuda" and precision == "fp32":
        exact_fp32()
    inputs = torch.device("cpu") if manifest.get("format") == "onnx" else device
    return Placement(device, precision, inputs)


def exact_fp32() -> None:
    """fp32 on CUDA computes in fp32: TensorFloat-32 (10-bit mantissa) is off for convolutions and
    matrix products (torch turns it on for convolutions), so fp32 answers match the CPU's."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class Autocast(torch.nn.Module):
    """The model run under ``torch.autocast`` in ``dtype`` on ``device_type``; reduced-precision
    outputs come back as float32, the dtype the manifest declares."""

    def __init__(self, model, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.model, self.device_type, self.dtype = model, device_type, dtype

    def forward(self, *tensors: torch.Tensor):
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.model(*tensors)
        if isinstance(out, (tuple, list)):
            return tuple(_float32(o) for o in out)
        return _float32(out)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)  # the model's own methods (its ``reset``)


def _float32(t):
    return t.float() if isinstance(t, torch.Tensor) and t.dtype in (torch.float16, torch.bfloat16) else t


def with_precision(model, device: torch.device, precision: str):
    """``model`` computing in ``precision`` (autocast) on ``device``; fp32 leaves it as it is."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {list(DTYPES)}, got {precision!r}")
    return model if precision == "fp32" else Autocast(model, device.type, DTYPES[precision])
