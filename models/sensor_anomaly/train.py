"""Trains SensorAutoencoder on healthy windows and writes serving artifacts.

Run from the repository root::

    python -m models.sensor_anomaly.train [--out DIR] [--seed N] [--epochs N]

Writes ``weights.pt``, ``calibration.json`` and held-out sample inputs under
``samples/`` into ``--out``. Nothing is downloaded: all data comes from the
seeded generator in ``data.py``.
"""

import json
import pathlib
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from models.sensor_anomaly.data import CHANNELS, FAULTS, healthy_windows, inject_fault
from models.sensor_anomaly.model import MIN_LENGTH, SensorAutoencoder, anomaly_score
from models.training import parse_training_args, seed_everything, write_expected, write_json

WINDOW_LENGTH = 64
N_TRAIN = 8192
N_CALIBRATION = 20000  # 100 windows above the 99.5th percentile: a stable tail estimate
N_EVAL_HEALTHY = 10000  # enough to measure a 0.5% false-positive rate
N_EVAL_PER_FAULT = 500
N_SAMPLE_CANDIDATES = 200
BATCH_SIZE = 128
LEARNING_RATE = 3e-3
PERCENTILE = 99.5
MIN_AUC = 0.95
# Samples must clear the threshold by this fraction, so that float differences
# between machines or between eager and scripted models cannot flip them.
SAMPLE_MARGIN = 0.1

# Independent random streams: each set of windows is drawn from its own seed,
# derived from --seed, so no evaluation window is ever a training window.
TRAIN, CALIBRATION, EVAL_HEALTHY, EVAL_FAULTY, EVAL_DRAWS, SAMPLES, SAMPLE_DRAWS = range(7)


def stream_seed(seed: int, stream: int) -> int:
    """Derives the seed of one data stream from the run's seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def score(model: torch.nn.Module, windows: np.ndarray) -> np.ndarray:
    """Anomaly scores ``[N]`` of raw windows ``[N, T, 4]``."""
    with torch.no_grad():
        return anomaly_score(model(torch.from_numpy(windows))).numpy()


def faulty_windows(n_per_fault: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Healthy windows with faults injected, ``n_per_fault`` of each kind.

    Returns:
        Windows ``[n_per_fault * len(FAULTS), 64, 4]`` and the index into
        ``FAULTS`` of each one's fault.
    """
    n = n_per_fault * len(FAULTS)
    base = healthy_windows(n, WINDOW_LENGTH, stream_seed(seed, EVAL_FAULTY))
    rng = np.random.default_rng(stream_seed(seed, EVAL_DRAWS))
    kinds = np.repeat(np.arange(len(FAULTS)), n_per_fault)
    windows = np.stack([inject_fault(w, FAULTS[k], rng) for w, k in zip(base, kinds, strict=True)])
    return windows, kinds


def train(model: SensorAutoencoder, windows: np.ndarray, epochs: int, seed: int) -> None:
    """Fits the normalization buffers, then trains ``model`` in place with Adam."""
    x = torch.from_numpy(windows)
    model.mean.copy_(x.mean(dim=(0, 1)))
    model.std.copy_(x.std(dim=(0, 1)))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    # A dedicated generator makes the batch order depend on --seed only.
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH_SIZE):
            optimizer.zero_grad()
            # The training loss is the anomaly score itself, averaged.
            model(x[order[start : start + BATCH_SIZE]]).mean().backward()
            optimizer.step()
        scheduler.step()
    model.eval()


def evaluate(healthy: np.ndarray, faulty: np.ndarray, kinds: np.ndarray, threshold: float) -> dict:
    """ROC AUC, recall and false-positive rate from held-out scores."""

    def auc(positives: np.ndarray) -> float:
        labels = np.r_[np.zeros(len(healthy)), np.ones(len(positives))]
        return float(roc_auc_score(labels, np.r_[healthy, positives]))

    return {
        "roc_auc": auc(faulty),
        "roc_auc_per_fault": {f: auc(faulty[kinds == i]) for i, f in enumerate(FAULTS)},
        "recall_at_threshold": {f: float((faulty[kinds == i] > threshold).mean()) for i, f in enumerate(FAULTS)},
        "false_positive_rate": float((healthy > threshold).mean()),
    }


def as_sent(window: np.ndarray) -> np.ndarray:
    """The window exactly as a client reads it back from a sample file.

    Rounds in float64 to 4 decimals (what the files hold), then converts to
    float32 as the server does, so checks run on the very numbers shipped.
    """
    return np.round(window.astype(np.float64), 4).astype(np.float32)


def pick_samples(model: torch.nn.Module, threshold: float, seed: int) -> dict[str, np.ndarray]:
    """Chooses held-out windows that the model classifies correctly, with margin.

    Returns:
        ``{"healthy": window, "<fault>": window, ...}``, each ``[64, 4]``
        float64 and already rounded to 4 decimals.
    """
    candidates = healthy_windows(N_SAMPLE_CANDIDATES, WINDOW_LENGTH, stream_seed(seed, SAMPLES))
    rng = np.random.default_rng(stream_seed(seed, SAMPLE_DRAWS))
    chosen = {}
    clear = score(model, as_sent(candidates)) < threshold * (1 - SAMPLE_MARGIN)
    chosen["healthy"] = np.round(candidates[first(clear, "healthy")].astype(np.float64), 4)
    for kind in FAULTS:
        faulty = np.stack([inject_fault(w, kind, rng) for w in candidates])
        clear = score(model, as_sent(faulty)) > threshold * (1 + SAMPLE_MARGIN)
        chosen[kind] = np.round(faulty[first(clear, kind)].astype(np.float64), 4)
    return chosen


def first(mask: np.ndarray, what: str) -> int:
    """Index of the first true entry of ``mask``; says which sample is missing."""
    hits = np.flatnonzero(mask)
    if len(hits) == 0:
        raise RuntimeError(f"no held-out {what} window is classified correctly with margin")
    return int(hits[0])


def write_samples(folder: pathlib.Path, chosen: dict[str, np.ndarray]) -> dict[str, bool]:
    """Writes one JSON per chosen window, ``healthy.csv`` and ``expected.json``.

    Returns:
        The expected verdicts, ``{file name: anomaly expected}``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, window in chosen.items():
        write_json(folder / f"{name}.json", {"window": window.tolist()}, indent=None)
        expected[f"{name}.json"] = name != "healthy"
    rows = [",".join(f"{v:.4f}" for v in row) for row in chosen["healthy"]]
    (folder / "healthy.csv").write_text("\n".join([",".join(CHANNELS), *rows]) + "\n")
    expected["healthy.csv"] = False
    verdicts = {name: {"anomaly": anomalous} for name, anomalous in expected.items()}
    write_expected(folder / "expected.json", {"note": "the verdict each window must get"} | verdicts)
    return expected


def verify_samples(model: torch.nn.Module, folder: pathlib.Path, expected: dict[str, bool], threshold: float) -> None:
    """Re-reads the written sample files and checks the model agrees with them."""
    for name, anomalous in expected.items():
        path = folder / name
        if path.suffix == ".csv":
            values = np.loadtxt(path, delimiter=",", skiprows=1)
        else:
            values = np.asarray(json.loads(path.read_text())["window"])
        got = bool(score(model, values.astype(np.float32)[None])[0] > threshold)
        if got != anomalous:
            raise RuntimeError(f"{path}: model says anomaly={got}, expected {anomalous}")


def main() -> None:
    """Trains, calibrates, evaluates on held-out data and writes all artifacts."""
    args = parse_training_args(__doc__.splitlines()[0], pathlib.Path(__file__).resolve().parent, 60)
    seed_everything(args.seed)

    model = SensorAutoencoder()
    started = time.perf_counter()
    train_set = healthy_windows(N_TRAIN, WINDOW_LENGTH, stream_seed(args.seed, TRAIN))
    train(model, train_set, args.epochs, args.seed)
    seconds = time.perf_counter() - started

    calibration_set = healthy_windows(N_CALIBRATION, WINDOW_LENGTH, stream_seed(args.seed, CALIBRATION))
    threshold = float(np.percentile(score(model, calibration_set), PERCENTILE))
    healthy = healthy_windows(N_EVAL_HEALTHY, WINDOW_LENGTH, stream_seed(args.seed, EVAL_HEALTHY))
    faulty, kinds = faulty_windows(N_EVAL_PER_FAULT, args.seed)
    metrics = evaluate(score(model, healthy), score(model, faulty), kinds, threshold)

    print(f"training took {seconds:.1f} s")
    print(f"threshold (p{PERCENTILE} of healthy scores) {threshold:.5f}")
    print(f"ROC AUC {metrics['roc_auc']:.4f}")
    for kind in FAULTS:
        auc = metrics["roc_auc_per_fault"][kind]
        recall = metrics["recall_at_threshold"][kind]
        print(f"  {kind:<15} AUC {auc:.4f}  recall {recall:.3f}")
    print(f"false-positive rate {metrics['false_positive_rate']:.4f}")
    if metrics["roc_auc"] < MIN_AUC:
        raise SystemExit(f"ROC AUC below {MIN_AUC}: not writing artifacts")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    write_json(
        out / "calibration.json",
        {
            "channels": list(CHANNELS),
            "window_length": WINDOW_LENGTH,
            "min_length": MIN_LENGTH,
            "mean": model.mean.tolist(),
            "std": model.std.tolist(),
            "threshold": threshold,
            "percentile": PERCENTILE,
            **metrics,
            "seed": args.seed,
            "torch_version": torch.__version__,
        },
    )
    expected = write_samples(out / "samples", pick_samples(model, threshold, args.seed))
    verify_samples(model, out / "samples", expected, threshold)
    print(f"wrote artifacts to {out}")


if __name__ == "__main__":
    main()
