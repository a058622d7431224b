"""Every project path, derived once from the project root."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
HANDLERS = ROOT / "handlers"
BUILD = ROOT / "build"
MODEL_STORE = ROOT / "model_store"
CONFIG = ROOT / "config.properties"


def model_names() -> list[str]:
    """Every model of the project: each folder of models/ with a spec.yaml."""
    return sorted(p.parent.name for p in MODELS.glob("*/spec.yaml"))
