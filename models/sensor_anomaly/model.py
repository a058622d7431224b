"""1-D convolutional autoencoder that scores windows of sensor readings.

Export builds the eager model from here (``build``); the server loads only the exported artifact.
It depends on torch only. The model takes raw readings and normalizes them itself with buffers saved in the
state_dict, so a client sends sensor values in their own units.
"""

import pathlib

import torch
import torch.nn.functional as F
from torch import nn

NUM_CHANNELS = 4  # vibration, temperature, current, pressure (see data.CHANNELS)
DOWNSAMPLE = 4  # two stride-2 convolutions
MIN_LENGTH = 16  # leaves at least four latent steps for the 3-tap bottleneck


class SensorAutoencoder(nn.Module):
    """Reconstructs a window of readings and returns its per-channel error.

    Input is raw float32 ``[N, T, 4]`` with ``T >= 16``; output is float32
    ``[N, 4]``: the mean over time of the squared reconstruction error of
    each channel, in normalized units. The anomaly score of a window is the
    mean of its four errors (see ``anomaly_score``).

    When ``T`` is not a multiple of 4 the forward pass pads, then crops back.
    That branch depends on the input's shape, which is why the exported model
    is made with ``torch.jit.script``: ``torch.jit.trace`` would record only
    the path taken for its example input.
    """

    def __init__(self, hidden: int = 32, latent: int = 4) -> None:
        super().__init__()
        # Copied onto the instance: TorchScript cannot read module globals.
        self.num_channels = NUM_CHANNELS
        self.downsample = DOWNSAMPLE
        self.min_length = MIN_LENGTH
        # Per-channel statistics of the training data; buffers so they travel
        # with the weights and the server cannot pair them with the wrong model.
        self.register_buffer("mean", torch.zeros(NUM_CHANNELS))
        self.register_buffer("std", torch.ones(NUM_CHANNELS))
        # A narrow bottleneck (4 values per 4 steps of 4 channels) leaves little
        # room to copy noise or faults through; only the typical joint shape
        # of healthy signals can be reconstructed.
        self.encoder = nn.Sequential(
            nn.Conv1d(NUM_CHANNELS, hidden, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(hidden, latent, kernel_size=3, padding=1),
        )
        # kernel 4, stride 2, padding 1 doubles the length exactly.
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(latent, hidden, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose1d(hidden, hidden, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(hidden, NUM_CHANNELS, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps raw readings ``[N, T, 4]`` to reconstruction errors ``[N, 4]``."""
        if x.dim() != 3 or x.size(2) != self.num_channels:
            raise ValueError("expected readings of shape [N, T, 4]")
        length = x.size(1)
        if length < self.min_length:
            raise ValueError("windows need at least 16 time steps")
        z = ((x - self.mean) / self.std).transpose(1, 2)  # [N, 4, T]
        # The encoder halves the length twice and the decoder doubles it
        # twice, so only multiples of 4 come back at their own length. Repeat
        # the last reading (a plausible continuation, unlike zeros) and drop
        # the extra steps before comparing.
        padded = z
        remainder = length % self.downsample
        if remainder != 0:
            padded = F.pad(z, [0, self.downsample - remainder], mode="replicate")
        reconstruction = self.decoder(self.encoder(padded))[:, :, :length]
        return (reconstruction - z).pow(2).mean(dim=2)


def anomaly_score(errors: torch.Tensor) -> torch.Tensor:
    """Mean over channels of ``SensorAutoencoder`` output: ``[N, 4]`` -> ``[N]``."""
    return errors.mean(dim=1)


def build(folder: pathlib.Path | None = None) -> torch.nn.Module:
    """Returns a ``SensorAutoencoder`` in eval mode with trained weights loaded.

    Args:
        folder: Directory holding ``weights.pt`` (a state_dict, including the
            normalization buffers). Defaults to the directory of this file.

    Returns:
        The model, in eval mode, on CPU.
    """
    folder = pathlib.Path(__file__).resolve().parent if folder is None else folder
    model = SensorAutoencoder()
    # weights_only=True: a state_dict needs no pickled code, so refuse any.
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
