"""Trains DigitsCNN on scikit-learn's 8x8 digits and writes serving artifacts.

Run from the repository root::

    python -m models.digits.train [--out DIR] [--seed N] [--epochs N]

Writes ``weights.pt``, ``normalization.json``, ``train_report.json`` and
held-out sample inputs under ``samples/`` into ``--out``.
"""

import json
import pathlib
import time

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from models.digits.model import DigitsCNN
from models.training import parse_training_args, seed_everything, write_expected, write_json

SCALE = 255  # Pixels are stored as 8-bit PNGs, exactly as the server reads them.
RAW_MAX = 16  # load_digits values are integers in 0..16.
TEST_SIZE = 0.2
# The split is fixed independently of --seed so accuracies stay comparable.
SPLIT_SEED = 0
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
NOTE = "pixel p in 0..255 (white ink on black, as sklearn's digits): x = (p/scale - mean)/std"


def to_pixels(raw: np.ndarray) -> np.ndarray:
    """Maps raw 0..16 digit values to uint8 pixels p = round(v * 255 / 16).

    Rounds half up explicitly (v = 8 gives exactly 127.5 -> 128) so the result
    does not depend on a library's tie-breaking rule.
    """
    return np.floor(raw * SCALE / RAW_MAX + 0.5).astype(np.uint8)


def to_input(pixels: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """Applies the server's transform to uint8 pixels ``[N, 8, 8]``.

    Returns:
        float32 ``[N, 1, 8, 8]`` tensor x = (p / 255 - mean) / std.
    """
    x = torch.from_numpy(pixels).to(torch.float32).unsqueeze(1) / SCALE
    return (x - mean) / std


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    """Trains ``model`` in place with Adam on shuffled mini-batches."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    # A dedicated generator makes the batch order depend on --seed only.
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
        scheduler.step()
    model.eval()


def write_samples(folder: pathlib.Path, pixels: np.ndarray, labels: np.ndarray, correct: np.ndarray) -> None:
    """Writes ``0.png``..``9.png``, ``digit.json`` and ``expected.json`` (each answer starts with the true label).

    Each PNG is the first held-out image of its class that the model gets
    right; ``digit.json`` is the first other correctly classified one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    used: set[int] = set()
    label_map: dict[str, int] = {}
    for digit in range(10):
        i = int(np.flatnonzero((labels == digit) & correct)[0])
        used.add(i)
        # 2-D uint8 arrays become mode "L"; fromarray(mode=) is deprecated.
        Image.fromarray(pixels[i]).save(folder / f"{digit}.png")
        label_map[f"{digit}.png"] = digit
    j = next(int(k) for k in np.flatnonzero(correct) if int(k) not in used)
    image = {"image": pixels[j].astype(int).tolist()}
    (folder / "digit.json").write_text(json.dumps(image) + "\n")
    label_map["digit.json"] = int(labels[j])
    note = "held-out test images, never seen in training; each answer's top-k list starts with the true label"
    expected = {"note": note} | {name: [{"label": label}] for name, label in label_map.items()}
    write_expected(folder / "expected.json", expected)


def main() -> None:
    """Trains, evaluates on the held-out split and writes all artifacts."""
    args = parse_training_args(__doc__.splitlines()[0], pathlib.Path(__file__).resolve().parent, 40)
    seed_everything(args.seed)

    digits = load_digits()
    pixels = to_pixels(digits.images)
    labels = digits.target.astype(np.int64)
    p_train, p_test, y_train, y_test = train_test_split(
        pixels, labels, test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    # Scalar statistics over training pixels only, on the same 0..1 scale the
    # server uses after dividing by 255.
    mean = float((p_train / SCALE).mean())
    std = float((p_train / SCALE).std())
    x_train, x_test = to_input(p_train, mean, std), to_input(p_test, mean, std)

    model = DigitsCNN()
    started = time.perf_counter()
    train(model, x_train, torch.from_numpy(y_train), args.epochs, args.seed)
    seconds = time.perf_counter() - started

    with torch.no_grad():
        predicted = model(x_test).argmax(dim=1).numpy()
    correct = predicted == y_test
    accuracy = float(correct.mean())
    print(f"test accuracy {accuracy:.4f} ({correct.sum()}/{len(y_test)})")
    print(f"training took {seconds:.1f} s")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    write_json(
        out / "normalization.json",
        {"scale": SCALE, "mean": mean, "std": std, "note": NOTE},
    )
    write_json(
        out / "train_report.json",
        {
            "test_accuracy": accuracy,
            "n_train": len(y_train),
            "n_test": len(y_test),
            "seed": args.seed,
            "epochs": args.epochs,
            "torch_version": torch.__version__,
        },
    )
    write_samples(out / "samples", p_test, y_test, correct)
    print(f"wrote artifacts to {out}")


if __name__ == "__main__":
    main()
