"""Every project path, derived once from the project root, and the names artifacts are served under."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
HANDLERS = ROOT / "handlers"
BUILD = ROOT / "build"
MODEL_STORE = ROOT / "model_store"
CONFIG = ROOT / "config.properties"

# Artifact formats, the default first. A model is served as <name> in the default format and as
# <name>_<format> in the others: build/<served name>/, model_store/<served name>.mar.
FORMATS = ("torchscript", "onnx", "aoti")
DEFAULT_FORMAT = FORMATS[0]


def model_names() -> list[str]:
    """Every model of the project: each folder of models/ with a spec.yaml."""
    return sorted(p.parent.name for p in MODELS.glob("*/spec.yaml"))


def served_name(model: str, fmt: str = DEFAULT_FORMAT) -> str:
    """The name a model's artifact in ``fmt`` has in build/, the model store and TorchServe."""
    return model if fmt == DEFAULT_FORMAT else f"{model}_{fmt}"


def parse_served_name(name: str) -> tuple[str, str]:
    """``digits_onnx`` → ``("digits", "onnx")``; a bare model name is the default format."""
    for fmt in FORMATS[1:]:
        if name.endswith(f"_{fmt}") and (MODELS / name.removesuffix(f"_{fmt}") / "spec.yaml").exists():
            return name.removesuffix(f"_{fmt}"), fmt
    return name, DEFAULT_FORMAT
