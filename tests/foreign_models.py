"""Model files no one in this project wrote, made on the fly as a user would bring them (issue 17):

- ``vision.onnx``: an image-like input [N, 3, H, W] whose dimensions are unnamed (``?``), symbolic
  (``batch_size``, ``height``) and fixed, and two outputs (scores and per-channel peaks);
- ``counter.jit``: a stateful TorchScript file with an exported ``reset_state`` method (so served
  without batching, one request per call);
- ``scaler.pt2``: a ``torch.export`` program with a dynamic batch.

``CHOOSE`` holds the values a user must set after ``make new-model`` (TorchScript records no sizes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

CHOOSE = {"counter": {"CHOOSE]": "4]"}}  # per model: text in spec.yaml -> what the user writes


class Vision(torch.nn.Module):
    """A tiny convolutional classifier: class scores and each channel's peak."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 5)

    def forward(self, image: torch.Tensor):
        features = torch.relu(self.conv(image))
        return self.head(features.mean(dim=(2, 3))), features.amax(dim=(2, 3))


class Counter(torch.nn.Module):
    """Adds how many times it was called since the last reset: state between calls."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * 0.5 + self.calls

    @torch.jit.export
    def reset_state(self) -> None:
        self.calls.zero_()


class Scaler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.linear = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


def vision_onnx(path: Path) -> Path:
    """The ONNX export, then its width renamed ``?`` as some exporters write an unknown size; the batch
    and height keep their symbolic names (``batch_size``, ``height``), the channel count is fixed."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Vision().eval(),
            (torch.randn(2, 3, 8, 8),),
            str(path),
            input_names=["image"],
            output_names=["scores", "peaks"],
            dynamic_axes={
                "image": {0: "batch_size", 2: "height", 3: "width"},
                "scores": {0: "batch_size"},
                "peaks": {0: "batch_size"},
            },
            dynamo=False,
        )
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "?"  # as some exporters write "unknown"
    onnx.save(model, str(path))
    return path


def counter_jit(path: Path) -> Path:
    torch.jit.script(Counter()).save(str(path))
    return path


def scaler_pt2(path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=32)
    program = torch.export.export(Scaler().eval(), (torch.randn(2, 6),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def make_all(folder: Path) -> dict[str, Path]:
    """Every foreign model file in ``folder``: model name -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "vision": vision_onnx(folder / "vision.onnx"),
        "counter": counter_jit(folder / "counter.jit"),
        "scaler": scaler_pt2(folder / "scaler.pt2"),
    }
