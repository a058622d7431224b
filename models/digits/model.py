"""Small CNN for scikit-learn's 8x8 handwritten digits.

Export builds the eager model from here (``build``); the server loads only the exported artifact.
It depends on torch only (training needs scikit-learn, this does not). Inputs are already
normalized; see ``normalization.json``.
"""

import pathlib

import torch
from torch import nn

NUM_CLASSES = 10


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, one 2x2 max-pool and a linear head.

    Input is float32 ``[N, 1, 8, 8]`` (normalized pixels); output is logits
    ``[N, 10]``. The forward pass has no data-dependent control flow, so
    ``torch.jit.trace`` captures it faithfully for any batch size.
    """

    def __init__(self, dropout: float = 0.25) -> None:
        """Creates the layers; ``dropout`` applies before the head in training."""
        super().__init__()
        # Padding 1 keeps the tiny 8x8 grid intact until the single pool.
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(32 * 4 * 4, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps normalized images ``[N, 1, 8, 8]`` to logits ``[N, 10]``."""
        return self.head(self.features(x))


def build(folder: pathlib.Path | None = None) -> torch.nn.Module:
    """Returns a ``DigitsCNN`` in eval mode with trained weights loaded.

    Args:
        folder: Directory holding ``weights.pt`` (a state_dict). Defaults to
            the directory of this file.

    Returns:
        The model, in eval mode, on CPU.
    """
    folder = pathlib.Path(__file__).resolve().parent if folder is None else folder
    model = DigitsCNN()
    # weights_only=True: a state_dict needs no pickled code, so refuse any.
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
