"""Handler for the text_embedder model: texts → L2-normalised sentence embeddings (all-MiniLM-L6-v2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from handlers.base import Decoded, ManifestHandler
from handlers.errors import InvalidInput, MalformedRequest, UnsupportedMediaType
from handlers.inputs import json_field, parse_json


class TextEmbedder(ManifestHandler):
    """Accepts JSON ``{"text": "..."}`` / ``{"texts": ["...", ...]}`` or a ``text/plain`` body.

    Tokenizes with the model's own tokenizer (``tokenizer.json``), truncating to the model's
    maximum; the artifact pools and normalises. Answers per text
    ``{"embedding": [384 floats], "dimension": 384, "tokens", "truncated"}``, with a ``note``
    when the text was truncated. Cosine similarity of two answers is their dot product.
    """

    v2_batch_key = v2_bytes_key = "texts"  # Open Inference Protocol input, see docs/SCALING.md

    expected = 'a JSON object {"text": "..."} or {"texts": ["...", ...]}, or a text/plain body'

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Load the tokenizer shipped beside the artifact; its maximum is the manifest's ``seq`` bound."""
        super().configure(manifest, folder, settings)
        from tokenizers import Tokenizer  # only this model needs it

        self.max_texts = self.input_spec.bounds(self.input_spec.shape[0])[1]
        self.max_tokens = self.input_spec.bounds(self.input_spec.shape[1])[1]
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        # The file's own settings pad every text to 128 and cut at 128; this model takes up to 256
        # (sentence-transformers' max_seq_length), and batches are padded to their longest text.
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()

    def preprocess(self, body: Any, content_type: str) -> Decoded:
        """JSON or plain text → (input_ids, attention_mask) int64 [n, longest], with token counts."""
        texts, single = self._texts(body, content_type)
        encodings = [self.tokenizer.encode(text) for text in texts]
        width = max(len(e.ids) for e in encodings)
        ids = torch.full((len(texts), width), int(self.input_specs[0].pad), dtype=torch.int64)
        mask = torch.full((len(texts), width), int(self.input_specs[1].pad), dtype=torch.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids)
            mask[row, : len(encoding.ids)] = 1
        # Per text: tokens given to the model, and whether the tokenizer cut the text.
        tokens = [(len(e.ids), bool(e.overflowing)) for e in encodings]
        return Decoded((ids, mask), single, tokens)

    def _texts(self, body: Any, content_type: str) -> tuple[list[str], bool]:
        if content_type == "application/json":
            name, value = json_field(parse_json(body), ("text", "texts"), self.expected)
            texts, single = ([value], True) if name == "text" else (value, False)
            if not isinstance(texts, list) or not texts:
                raise InvalidInput(f'"texts" must be a non-empty list of strings; got {_kind(value)}')
        elif content_type.startswith("text/"):
            texts, single, name = [_decode(body)], True, None
        else:
            raise UnsupportedMediaType(f"content type {content_type!r} is not supported; send {self.expected} (UTF-8)")
        if len(texts) > self.max_texts:
            raise InvalidInput(f'"texts" holds {len(texts)} texts; at most {self.max_texts} per request')
        for i, text in enumerate(texts):
            where = "the text/plain body" if name is None else f'"{name}"' if single else f'"texts"[{i}]'
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput(f"{where} must be a non-empty string; got {_kind(text)}")
        return texts, single

    def request_output(self, rows: torch.Tensor, decoded: Decoded) -> tuple[torch.Tensor, list]:
        """The embeddings of one request with its token counts (the answer says what was cut)."""
        return rows, decoded.info

    def postprocess(self, output: tuple[torch.Tensor, list]) -> list:
        """Embeddings [n, 384] and (token count, truncated) per text → one answer per text."""
        embeddings, tokens = output
        answers = []
        for embedding, (count, truncated) in zip(embeddings, tokens, strict=True):
            answer = {
                "embedding": [round(float(v), 6) for v in embedding],
                "dimension": int(embedding.shape[0]),
                "tokens": count,
                "truncated": truncated,
            }
            if truncated:
                answer["note"] = (
                    f"the text is longer than the model's maximum of {self.max_tokens} tokens; "
                    f"only its first {self.max_tokens - 2} were embedded (plus [CLS] and [SEP])"
                )
            answers.append(answer)
        return answers


def _decode(body: Any) -> str:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("text/plain body is not valid UTF-8") from None


def _kind(value: Any) -> str:
    """How a wrong JSON value reads in an error message: "an empty string", "a number", ..."""
    if value is None:
        return "null"
    if isinstance(value, (str, list)) and not (value.strip() if isinstance(value, str) else value):
        return f"an empty {'string' if isinstance(value, str) else 'list'}"
    return "a " + {str: "string", list: "list", dict: "object", bool: "boolean"}.get(type(value), "number")
