"""The ``text`` input codec: one text → token ids, and the attention mask (and type ids) of other inputs.

Spec, on the ids input (``[batch, seq]``, int64; ``seq`` bounded: its maximum is where texts are cut):
``codec: {kind: text, tokenizer: tokenizer.json, mask: attention_mask, type_ids: token_type_ids}``
(``mask`` and ``type_ids`` name the model inputs they fill; either may be left out). The tokenizer
file sits in the model folder (shipped in the archive without being listed). Clients send the
text as ``text`` (``{"text": "..."}``, a list for several; v2: a BYTES input ``text``). The ids input's ``pad`` must be
the tokenizer's pad id (checked at spec load) so that ``collate`` and the length-aware batching pad
requests together as the tokenizer would. Answer fields: ``tokens`` (tokens given to the model) and
``truncated`` (the text was cut to fit). Encoding: handlers/text_codec.py.
"""

from __future__ import annotations

from pathlib import Path

from handlers.codec import InputCodec, Part, known
from handlers.text_codec import TextEncoder, decode_text

FEEDS = (("mask", "mask"), ("type_ids", "type_ids"))  # option -> encoder field


class TextCodec(InputCodec):
    """A UTF-8 text (a text/plain body, a JSON string, a v2 BYTES element) as token tensors."""

    kind = "text"
    media_types = ("text/plain",)
    text = True

    @classmethod
    def check(cls, options: dict, spec, model) -> dict:
        where = f"input {spec.name!r} codec text"
        known(options, ("tokenizer", "mask", "type_ids", "max_chars"), where)
        path = Path(model.folder) / options.get("tokenizer", "tokenizer.json")
        if not path.is_file():
            raise ValueError(f"{where}: tokenizer file {path.name!r} is not in the model folder (set `tokenizer:`)")
        max_tokens = cls._max_tokens(spec, where)
        names = {s.name: s for s in model.inputs}
        for option, _ in FEEDS:
            other = options.get(option)
            if other is None:
                continue
            if other not in names or other == spec.name:
                raise ValueError(f"{where}: `{option}` must name another model input, one of {sorted(names)}")
            if list(names[other].shape) != list(spec.shape) or not names[other].dtype.startswith("int"):
                raise ValueError(
                    f"{where}: `{option}` input {other!r} must be an integer tensor of shape {list(spec.shape)}"
                )
            if names[other].pad != 0:
                raise ValueError(f"{where}: input {other!r} is padded with 0; set its `pad: 0`")
        if not spec.dtype.startswith("int"):
            raise ValueError(f"{where}: token ids are integers; the input is {spec.dtype}")
        pad_id = TextEncoder(path, max_tokens).pad_id
        if spec.pad != pad_id:
            raise ValueError(f"{where}: {path.name}'s pad id is {pad_id}; set the input's `pad: {pad_id}`")
        max_chars = options.get("max_chars")
        if max_chars is not None and (not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1):
            raise ValueError(f"{where}: `max_chars` must be a positive whole number; got {max_chars!r}")
        return {"tokenizer": path.name, **{k: options[k] for k in ("mask", "type_ids", "max_chars") if k in options}}

    @classmethod
    def extra_files(cls, options: dict) -> list[str]:
        return [options["tokenizer"]]

    @staticmethod
    def _max_tokens(spec, where: str) -> int:
        if len(spec.shape) != 2:
            raise ValueError(f"{where}: the input must be [batch, seq]; it is {list(spec.shape)}")
        seq = spec.shape[1]
        most = seq if isinstance(seq, int) else spec.bounds(seq)[1]
        if not most:
            raise ValueError(f"{where}: bound the sequence dimension ({seq}: {{max: N}}): texts are cut to it")
        return int(most)

    def __init__(self, options: dict, spec, model):
        super().__init__(options, spec, model)
        max_tokens = self._max_tokens(spec, spec.name)
        self.encoder = TextEncoder(Path(model.folder) / options["tokenizer"], max_tokens, options.get("max_chars"))
        self.fields_fed = ["ids"] + [field for option, field in FEEDS if options.get(option)]
        self.feeds = (spec.name, *(options[option] for option, _ in FEEDS if options.get(option)))
        # Clients send "text" (REST JSON key, v2 input name), not the token ids' input name.
        self.name = spec.name if any(s.name == "text" for s in model.inputs) else "text"

    def decode(self, data, media_type: str) -> Part:
        encoded = self.encoder.encode([decode_text(data)])
        tensors = tuple(encoded.tensors[field] for field in self.fields_fed)
        return Part(tensors, {"tokens": encoded.tokens[0], "truncated": encoded.truncated[0]})

    def fields(self) -> dict[str, str]:
        return {"tokens": "INT64", "truncated": "BOOL"}

    def answer(self, info) -> dict:
        return dict(info)

    def describe(self) -> str:
        return f"a UTF-8 text (text/plain, or a JSON string), cut at {self.encoder.max_tokens} tokens"
