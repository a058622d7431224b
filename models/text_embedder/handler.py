"""Handler for the text_embedder model: texts → L2-normalised sentence embeddings (all-MiniLM-L6-v2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from handlers.base import Decoded, ManifestHandler
from handlers.errors import InvalidInput, UnsupportedMediaType
from handlers.inputs import json_field, json_kind, parse_json
from handlers.oip import V2Request
from handlers.text_codec import check_text, decode_text


class TextEmbedder(ManifestHandler):
    """Accepts JSON ``{"text": "..."}`` / ``{"texts": ["...", ...]}`` or a ``text/plain`` body.

    Cuts each text to ``max_chars`` characters, then tokenizes with the model's own tokenizer
    (``tokenizer.json``), truncating to the model's maximum; the artifact pools and normalises.
    Answers per text ``{"embedding": [384 floats], "dimension": 384, "tokens", "truncated"}``, with
    a ``note`` when the text was truncated. Cosine similarity of two answers is their dot product.
    v2: an input ``text``, BYTES ``[n]`` (UTF-8); ``note`` is BYTES holding JSON (a string or null).
    """

    v2_inputs = ("text",)
    fields = {"embedding": "FP32", "dimension": "INT64", "tokens": "INT64", "truncated": "BOOL", "note": "BYTES"}

    expected = 'a JSON object {"text": "..."} or {"texts": ["...", ...]}, or a text/plain body'

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Load the tokenizer shipped beside the artifact; its maximum is the manifest's ``seq`` bound."""
        super().configure(manifest, folder, settings)
        from tokenizers import Tokenizer  # only this model needs it

        spec = self.input_specs[0]
        self.max_texts = spec.bounds(spec.shape[0])[1]
        self.max_tokens = spec.bounds(spec.shape[1])[1]
        # Tokenizing costs ~4 µs a character whatever the truncation: a text is cut first. 16
        # characters a token is ~4x English's average, so only texts far past the maximum are cut.
        self.max_chars = int((settings or {}).get("max_chars", 16 * self.max_tokens))
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        # The file's own settings pad every text to 128 and cut at 128; this model takes up to 256
        # (sentence-transformers' max_seq_length), and batches are padded to their longest text.
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()

    def decode(self, body: Any, content_type: str) -> Decoded:
        """JSON or plain text → (input_ids, attention_mask) int64 [n, longest], with token counts."""
        if content_type == "application/json":
            name, value = json_field(parse_json(body), ("text", "texts"), self.expected)
            texts, single = ([value], True) if name == "text" else (value, False)
            if not isinstance(texts, list) or not texts:
                raise InvalidInput(f'"texts" must be a non-empty list of strings; got {_kind(value)}')
            return self._encode(texts, single, name)
        if content_type.startswith("text/"):
            return self._encode([decode_text(body)], True, None)
        raise UnsupportedMediaType(f"send {self.expected} (UTF-8)")

    def preprocess_v2(self, request: V2Request) -> Decoded:
        """Input ``text``: BYTES [n], each element one UTF-8 text (all tokenized at once)."""
        tensor = self.v2_input(request, "text")
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"input 'text' must be BYTES (one UTF-8 text per element); got {tensor.datatype}")
        return self._encode([decode_text(t) for t in tensor.data], False, "text")

    def _encode(self, texts: list, single: bool, name: str | None) -> Decoded:
        if len(texts) > self.max_texts:
            raise InvalidInput(f'"texts" holds {len(texts)} texts; at most {self.max_texts} per request')
        for i, text in enumerate(texts):
            where = "the text/plain body" if name is None else f'"{name}"' if single else f'"{name}"[{i}]'
            if not isinstance(text, str) or not text.strip():  # the kit's check, this handler's wording
                raise InvalidInput(f"{where} must be a non-empty string; got {_kind(text)}")
            check_text(text, where)
        encodings = [self.tokenizer.encode(text[: self.max_chars]) for text in texts]
        width = max(len(e.ids) for e in encodings)
        ids = torch.full((len(texts), width), int(self.input_specs[0].pad), dtype=torch.int64)
        mask = torch.full((len(texts), width), int(self.input_specs[1].pad), dtype=torch.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids)
            mask[row, : len(encoding.ids)] = 1
        # Per text: tokens given to the model, and whether the text was cut (by characters or tokens).
        info = [
            (len(e.ids), bool(e.overflowing) or len(t) > self.max_chars) for e, t in zip(encodings, texts, strict=True)
        ]
        return Decoded((ids, mask), single, info)

    def encode(self, outputs: tuple[torch.Tensor, ...], decoded: Decoded) -> list[dict]:
        """Embeddings [n, 384] and (token count, truncated) per text → one answer per text."""
        (embeddings,) = outputs
        # Rounded to 6 decimals as whole rows (a Python loop over 384 tensor elements took 0.5 ms).
        rows = embeddings.double().mul(1e6).round().div(1e6).tolist()
        answers = []
        for embedding, (count, truncated) in zip(rows, decoded.info, strict=True):
            answer = {
                "embedding": embedding,
                "dimension": len(embedding),
                "tokens": count,
                "truncated": truncated,
            }
            if truncated:
                answer["note"] = (
                    f"the text is longer than the model's maximum of {self.max_tokens} tokens; "
                    f"only its first {count - 2} were embedded (plus [CLS] and [SEP])"
                )
            answers.append(answer)
        return answers


def _kind(value: Any) -> str:
    """How a wrong JSON value reads in an error message: "an empty string", "a number", ..."""
    if isinstance(value, (str, list)) and not (value.strip() if isinstance(value, str) else value):
        return f"an empty {'string' if isinstance(value, str) else 'list'}"
    return {"an array": "a list", "an object": "an object"}.get(json_kind(value), json_kind(value))
