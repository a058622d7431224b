"""Texts as token tensors, with a Hugging Face ``tokenizer.json`` (the ``tokenizers`` package).

One text field feeds several model inputs: ``ids`` (token ids), ``mask`` (1 per real token) and
``type_ids`` (segment ids). Rows are padded to the longest text of the request with the tokenizer's
own pad id (0 for the mask and type ids); ``collate`` and the length-aware batching
(handlers/batching.py) pad across requests with the same values, so a row's true length is where
its mask ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from handlers.errors import InvalidInput, MalformedRequest
from handlers.inputs import json_kind

FIELDS = ("ids", "mask", "type_ids")
PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<PAD>")  # when the file configures no padding


@dataclass(frozen=True)
class Encoded:
    """One request's texts as tensors [texts, longest] per field, and per text its token count and
    whether it was cut to fit."""

    tensors: dict[str, torch.Tensor]
    tokens: list[int]
    truncated: list[bool]


class TextEncoder:
    """A tokenizer file, truncating to ``max_tokens`` and cutting texts to ``max_chars`` first (the
    tokenizer's time grows with the text whatever the truncation)."""

    def __init__(self, path: Path, max_tokens: int, max_chars: int | None = None):
        from tokenizers import Tokenizer  # only text models need it

        self.tokenizer = Tokenizer.from_file(str(path))
        self.pad_id = self.find_pad_id(self.tokenizer)
        self.max_tokens = int(max_tokens)
        self.max_chars = int(max_chars or 16 * self.max_tokens)  # ~4x English's characters per token
        # The file's own padding and truncation settings are replaced: rows are padded here, to the
        # request's longest text, and cut at the model's maximum (the spec's bound).
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()

    @staticmethod
    def find_pad_id(tokenizer) -> int:
        """The file's padding id, else the id of a usual pad token, else 0."""
        if tokenizer.padding:
            return int(tokenizer.padding["pad_id"])
        for token in PAD_TOKENS:
            if (found := tokenizer.token_to_id(token)) is not None:
                return int(found)
        return 0

    def pad_of(self, field: str) -> int:
        """The value that fills a field's padding."""
        return self.pad_id if field == "ids" else 0

    def encode(self, texts: list, what: str = "text") -> Encoded:
        """Each text (a non-empty str) as token tensors; raises InvalidInput/MalformedRequest naming
        the bad text (``what`` is how the request calls it)."""
        for i, text in enumerate(texts):
            check_text(text, what if len(texts) == 1 else f"{what}[{i}]")
        encodings = [self.tokenizer.encode(text[: self.max_chars]) for text in texts]
        width = max(len(e.ids) for e in encodings)
        tensors = {f: torch.full((len(texts), width), self.pad_of(f), dtype=torch.int64) for f in FIELDS}
        for row, e in enumerate(encodings):
            n = len(e.ids)
            tensors["ids"][row, :n] = torch.tensor(e.ids, dtype=torch.int64)
            tensors["mask"][row, :n] = torch.tensor(e.attention_mask, dtype=torch.int64)
            tensors["type_ids"][row, :n] = torch.tensor(e.type_ids, dtype=torch.int64)
        cut = [bool(e.overflowing) or len(t) > self.max_chars for e, t in zip(encodings, texts, strict=True)]
        return Encoded(tensors, [len(e.ids) for e in encodings], cut)


def check_text(text, where: str) -> None:
    """Raise a 4xx unless ``text`` is a non-empty str of valid Unicode; ``where`` names it."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{where} must be a non-empty string; got {json_kind(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" (valid JSON, not Unicode)
        raise MalformedRequest(f"{where} is not valid Unicode (a lone surrogate)") from None


def decode_text(body) -> str:
    """A text body (str, or UTF-8 bytes) as str."""
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the text is not valid UTF-8") from None
