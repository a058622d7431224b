"""Declared codecs: the interface every codec implements, and the table that finds them by kind.

A spec declares, per input, ``codec: <kind>`` or ``codec: {kind: <kind>, <option>: <value>, ...}``
(input kinds: ``image``, ``audio``, ``text``, ``tensor``); per output the same (``classes``,
``tensor``, ``segments``); and at the top level ``sequence: {input: <name>, window: <n>, ...}``.
Export checks them at spec load (``check_codecs``) and carries them in the manifest under
``codecs: {"inputs": {name: options}, "outputs": {name: options}, "sequence": options}`` (options
as ``check`` returned them, plus ``kind``; a model with a sequence gets ``batching: false``); the generic
handler (handlers/tensor.py) builds one codec object per declared input and output.

Interface (stable; changes are listed in /work/wt/_prompts/codec-interface-changes.md):

``InputCodec`` (one model input, or several that one file fills, e.g. ids + mask of a text):
  - ``kind``; ``media_types``: raw REST bodies it reads (``image/png``...); ``text``: whether a JSON
    string (REST or a v2 JSON BYTES element) is the data itself (a text), not base64 of a file.
  - ``check(options, spec, model) -> options`` (classmethod): validate at spec load; raise
    ``ValueError`` with a sentence naming the option and what is allowed. ``spec`` is the input's
    InputSpec, ``model`` a ``CodecContext`` (folder, every InputSpec, outputs).
  - ``__init__(options, spec, model)``: at worker start (options as ``check`` returned them).
  - ``feeds``: the model inputs it fills, in the order ``decode`` returns them (default: its own);
    ``name``: the request's name for it (REST JSON key, v2 input name; default: the input's name).
  - ``decode(data, media_type) -> Part``: ONE file (bytes, or str for ``text`` codecs) → one
    instance: a tensor per fed input, each with a batch dimension of 1, in the input's dtype.
    ``media_type`` is "" for v2 BYTES elements (sniff the bytes). Raise RequestErrors (4xx).
  - ``fields() / answer(info)``: optional answer fields computed from the input (e.g. token counts).
  - ``describe()``: what it takes, for error messages ("a PNG, JPEG or WebP image").
  - ``extra_files(options) -> [path]`` (classmethod, optional): files of the model folder it reads
    (a tokenizer, a labels file); export ships them in the archive without the spec listing them.
  - ``from_samples(entry, files) -> entry`` (classmethod, optional; `make new-model SAMPLES=`): the
    spec's input entry (``{name, dtype, shape, dims}``) declared for these sample files: ``codec``
    added (options from the shape and the files), shape/dims adjusted; raise ValueError to leave a
    CHOOSE with that sentence. Default: ``codec: <kind>`` with no options.

``OutputCodec`` (one model output):
  - ``kind``; ``check(options, output, model) -> options`` (classmethod) as above, ``output`` the
    manifest's ``{name, dtype, shape}``; ``__init__(options, output, model)``.
  - ``fields() -> {field: v2 datatype}``: the answer fields it writes, in order.
  - ``encode(row, info) -> dict``: one instance's row of the output (no batch dimension) → its fields;
    ``info`` maps each input codec's input name to the ``Part.info`` of this instance.
  - ``extra_files(options)`` as for inputs.
  - ``rest(fields)``: the REST item when the model's only output is this one; default: the fields
    object. Only ``classes`` declares another (a list of records, as the digits example answers).

``sequence`` (top-level): ``Sequence.check(options, model) -> options`` and
``Sequence(options, model)(inputs, call) -> outputs``: called once per request (the base resets the
model's state first), ``call(tuple_of_tensors) -> tuple_of_tensors`` is one model call.

Files: codecs are found through ``KINDS`` (module:class), each module imported only when a spec
uses its kind: image → handlers/codec_image.py, classes/tensor → handlers/codec_classes.py,
audio → handlers/codec_audio.py, text → handlers/codec_text.py, segments → handlers/codec_segments.py,
sequence → handlers/sequence.py.
"""

from __future__ import annotations

import base64
import binascii
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch

from handlers.errors import MalformedRequest

INPUT_KINDS = ("image", "audio", "text", "tensor")
OUTPUT_KINDS = ("classes", "tensor", "segments")
KINDS = {
    "input:image": "handlers.codec_image:ImageCodec",
    "input:audio": "handlers.codec_audio:AudioCodec",
    "input:text": "handlers.codec_text:TextCodec",
    "output:classes": "handlers.codec_classes:ClassesCodec",
    "output:tensor": "handlers.codec_classes:TensorOutput",
    "output:segments": "handlers.codec_segments:SegmentsCodec",
    "sequence": "handlers.sequence:Sequence",
}


class Part(NamedTuple):
    """One file decoded: a tensor per fed model input (batch dimension 1), and what the answer
    needs besides the model's output (anything; handed back to output codecs as ``info``)."""

    tensors: tuple[torch.Tensor, ...]
    info: Any = None


@dataclass(frozen=True)
class CodecContext:
    """What a codec may read about its model: the folder (extra files such as a labels file), every
    input (InputSpec), every output (``{name, dtype, shape}``), the sequence options if any."""

    folder: Path
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    sequence: dict | None = None


class InputCodec:
    """Base of input codecs (see the module's docstring for the contract)."""

    kind: ClassVar[str] = ""
    media_types: ClassVar[tuple[str, ...]] = ()
    text: ClassVar[bool] = False

    @classmethod
    def check(cls, options: dict, spec, model: CodecContext) -> dict:
        """Validated options (raise ValueError naming the option); default: no options."""
        known(options, (), f"input {spec.name!r} codec {cls.kind}")
        return options

    def __init__(self, options: dict, spec, model: CodecContext):
        self.options, self.spec, self.model = options, spec, model
        self.feeds: tuple[str, ...] = (spec.name,)
        self.name: str = spec.name

    @classmethod
    def extra_files(cls, options: dict) -> list[str]:
        return []

    @classmethod
    def from_samples(cls, entry: dict, files: list[Path]) -> dict:
        return entry | {"codec": {"kind": cls.kind}}

    def decode(self, data: bytes | str, media_type: str) -> Part:
        raise NotImplementedError

    def fields(self) -> dict[str, str]:
        return {}

    def answer(self, info: Any) -> dict:
        return {}

    def describe(self) -> str:
        return " or ".join(self.media_types)


class OutputCodec:
    """Base of output codecs (see the module's docstring for the contract)."""

    kind: ClassVar[str] = ""

    @classmethod
    def check(cls, options: dict, output: dict, model: CodecContext) -> dict:
        known(options, (), f"output {output['name']!r} codec {cls.kind}")
        return options

    @classmethod
    def extra_files(cls, options: dict) -> list[str]:
        return []

    def __init__(self, options: dict, output: dict, model: CodecContext):
        self.options, self.output, self.model = options, output, model

    def fields(self) -> dict[str, str]:
        raise NotImplementedError

    def encode(self, row: torch.Tensor, info: dict) -> dict:
        raise NotImplementedError

    def rest(self, fields: dict) -> Any:
        return fields


def known(options: dict, names: tuple[str, ...], where: str) -> None:
    """Raise ValueError for an option not in ``names`` (a typo must not pass silently)."""
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(names) or 'none'}")


def normalise(value: Any, where: str) -> dict:
    """``codec: image`` or ``codec: {kind: image, ...}`` as ``{"kind": "image", ...}``."""
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and isinstance(value.get("kind"), str):
        return dict(value)
    raise ValueError(f"{where}: codec must be a kind name or a mapping with `kind:`; got {value!r}")


def codec_class(key: str) -> type:
    """The class of ``KINDS[key]`` (imported now); ValueError if this build lacks it."""
    module, _, name = KINDS[key].partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        raise ValueError(f"codec {key.split(':')[-1]!r} is not available in this version ({module} missing)") from None


def check_codecs(inputs: list, outputs: list, input_codecs: dict, output_codecs: dict, sequence, folder: Path) -> dict:
    """Validate a spec's declared codecs; returns the manifest's ``codecs`` entry (options as
    checked). Raises ValueError with a sentence saying what is wrong and what is allowed."""
    model = CodecContext(Path(folder), list(inputs), list(outputs), sequence)
    names = {s.name: s for s in inputs}
    checked: dict = {"inputs": {}, "outputs": {}}
    for name, raw in input_codecs.items():
        options = normalise(raw, f"input {name!r}")
        kind = options.pop("kind")
        if kind not in INPUT_KINDS:
            raise ValueError(f"input {name!r}: codec kind {kind!r} is not an input kind; use one of {INPUT_KINDS}")
        if kind != "tensor":
            options = codec_class(f"input:{kind}").check(options, names[name], model)
        checked["inputs"][name] = {"kind": kind, **options}
    for output in outputs:
        if output["name"] not in output_codecs:
            continue
        options = normalise(output_codecs[output["name"]], f"output {output['name']!r}")
        kind = options.pop("kind")
        if kind not in OUTPUT_KINDS:
            raise ValueError(
                f"output {output['name']!r}: codec kind {kind!r} is not an output kind; use one of {OUTPUT_KINDS}"
            )
        options = codec_class(f"output:{kind}").check(options, output, model)
        checked["outputs"][output["name"]] = {"kind": kind, **options}
    if sequence is not None:
        if not isinstance(sequence, dict):
            raise ValueError(f"sequence must be a mapping such as {{input: x, window: 512}}; got {sequence!r}")
        checked["sequence"] = codec_class("sequence").check(dict(sequence), model)
    return checked


def codec_files(checked: dict) -> list[str]:
    """The model-folder files the checked codecs read (shipped as extra files)."""
    files = []
    for side, prefix in (("inputs", "input"), ("outputs", "output")):
        for options in checked.get(side, {}).values():
            if options["kind"] != "tensor":
                files += codec_class(f"{prefix}:{options['kind']}").extra_files(options)
    return files


def file_bytes(value: Any, where: str) -> bytes:
    """A file sent inside JSON (REST value or v2 JSON BYTES element): base64 text → bytes."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise MalformedRequest(f"{where}: expected a file as a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest(f"{where}: expected a file as a base64 string; this is not valid base64") from None
