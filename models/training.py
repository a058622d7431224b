"""What the training scripts share: their command line, seeding, and writing JSON."""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import torch


def parse_training_args(description: str, folder: pathlib.Path, epochs: int) -> argparse.Namespace:
    """``--out`` (default: the model's folder), ``--seed`` and ``--epochs``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=pathlib.Path, default=folder, help="output folder (default: the model's folder)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default: {epochs})")
    return parser.parse_args()


def seed_everything(seed: int) -> None:
    """Seed torch and numpy and fix the thread count: keeps runtime bounded and reductions repeatable."""
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    np.random.seed(seed)


def write_json(path: pathlib.Path, obj: dict, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON with a trailing newline."""
    path.write_text(json.dumps(obj, indent=indent) + "\n")


def write_expected(path: pathlib.Path, expected: dict) -> None:
    """Write ``samples/expected.json`` (sample file -> the pattern its answer must match), one sample a line."""
    lines = [f"  {json.dumps(name)}: {json.dumps(pattern)}" for name, pattern in expected.items()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
