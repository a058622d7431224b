"""The generic handler (a model folder without ``handler.py``), driven by the manifest's ``inputs``,
``outputs`` and declared ``codecs`` (handlers/codec.py).

REST: ``application/json`` ``{"inputs": {<name>: value, ...}}``, or for a one-input model
``{<name>: value}``. A tensor input's value is a nested list: with every dimension of the input's
shape (the batch first) it is a batch, answered with a list; without the batch dimension it is one
instance, answered with one object. A codec input (image, audio, text) also takes its file: the raw
body (``image/png``...), a multipart form field, or in JSON a string (base64 of the file; the text
itself for text) for one instance or a list of strings for a batch; or the raw tensor as above.
Answer per instance: the fields object (``{<output name>: nested list}`` for undeclared outputs).
v2: one tensor per model input by name (numeric), or per codec input BYTES elements (one file each:
raw in the binary extension, base64 in JSON, the text itself for text); one v2 output per field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from handlers.base import ManifestHandler, output_specs
from handlers.codec import CodecContext, Part, codec_class, file_bytes
from handlers.contract import Decoded, numeric_tensor, pad_and_cat, same_batch
from handlers.errors import InvalidInput, MalformedRequest, RequestError, UnsupportedMediaType, excerpt
from handlers.inputs import json_kind, nested_rank, numeric_array, parse_json
from handlers.oip import V2Request, datatype_of

SNIFFED = ("", "application/octet-stream")  # a file body whose type the client did not say


class TensorHandler(ManifestHandler):
    """Named nested lists or declared files in, named fields out (see the module's docstring)."""

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Build the declared codecs (none: the plain tensor handler)."""
        super().configure(manifest, folder, settings)
        declared = manifest.get("codecs") or {}
        model = CodecContext(Path(folder), self.input_specs, output_specs(manifest), declared.get("sequence"))
        specs = {s.name: s for s in self.input_specs}
        self.codecs = {}  # request name -> input codec
        for name, options in declared.get("inputs", {}).items():
            if options["kind"] != "tensor":
                codec = codec_class(f"input:{options['kind']}")(without_kind(options), specs[name], model)
                self.codecs[codec.name] = codec
        self.outputs = {}  # output name -> output codec
        for output in model.outputs:
            options = declared.get("outputs", {}).get(output["name"])
            if options:
                self.outputs[output["name"]] = codec_class(f"output:{options['kind']}")(
                    without_kind(options), output, model
                )
        if declared.get("sequence"):
            self.sequence = codec_class("sequence")(declared["sequence"], model)
        fed = {n for codec in self.codecs.values() for n in codec.feeds}
        self.names = [*self.codecs, *(s.name for s in self.input_specs if s.name not in fed)]  # what clients send
        if self.codecs:
            self.v2_inputs = tuple(self.names)
            self.v2_limits = dataclasses.replace(self.v2_limits, inputs=len(self.input_specs) + len(self.codecs))

    # -- REST ------------------------------------------------------------------------------------

    def decode(self, body: Any, content_type: str) -> Decoded:
        """A JSON object of named values, or one codec's file as the body (see the module)."""
        if content_type == "application/json" or isinstance(body, (dict, list)):
            return self.from_json(parse_json(body))
        codec = next((c for c in self.codecs.values() if content_type in c.media_types), None)
        if codec is None and content_type in SNIFFED and isinstance(body, (bytes, bytearray)) and len(self.codecs) == 1:
            codec = next(iter(self.codecs.values()))
        if codec is None:
            raise UnsupportedMediaType(f"send {self.accepted()}")
        if len(self.names) > 1:
            raise InvalidInput(f"this model takes several inputs {self.names}: send application/json {self.example()}")
        return self.assemble({codec.name: [self.part(codec, body, "the body", content_type)]}, {}, True)

    def from_json(self, doc: Any) -> Decoded:
        if isinstance(doc, dict) and isinstance(doc.get("inputs"), dict):
            values = doc["inputs"]
        else:  # the short form of a one-input model: {<its name>: value}
            values = doc if isinstance(doc, dict) and len(self.names) == 1 else None
        files = {n: v for n, v in (values or {}).items() if n in self.codecs and is_files(v)}
        if not files:
            return self.tensors(values, doc)
        if set(values) != set(self.names):
            raise MalformedRequest(f"expected {self.example()}; got keys {excerpt(list(values)[:5])}")
        forms = {isinstance(v, str) for v in files.values()}
        if len(forms) != 1:
            raise InvalidInput("send every file input as one string (one instance) or all as lists of strings")
        single = forms.pop()
        parts = {}
        for name, value in files.items():
            codec, items = self.codecs[name], [value] if single else value
            if len(items) > self.max_instances():
                raise InvalidInput(f'"{name}" holds {len(items)} items; at most {self.max_instances()} per request')
            where = [f'"{name}"' if single else f'"{name}"[{i}]' for i in range(len(items))]
            parts[name] = [
                self.part(codec, self.json_file(codec, v, w), w, "") for v, w in zip(items, where, strict=True)
            ]
        others = {}
        for spec in self.input_specs:
            if spec.name in values and spec.name not in files:
                what = f"a nested list of {spec.describe()}" + (" without the first dimension" if single else "")
                value = [values[spec.name]] if single else values[spec.name]
                others[spec.name] = torch.from_numpy(numeric_array(value, spec.name, what, spec.dtype))
        return self.assemble(parts, others, single)

    def tensors(self, values: Any, doc: Any) -> Decoded:
        """Every model input as a nested list (the plain tensor form)."""
        names = {s.name for s in self.input_specs}
        if not isinstance(values, dict) or set(values) != names:
            got = f"keys {excerpt(list(values)[:5])}" if isinstance(values, dict) else json_kind(doc)
            raise MalformedRequest(f"expected {self.example()}; got {got}")
        forms = {nested_rank(values[s.name]) == len(s.shape) - 1 for s in self.input_specs}
        if len(forms) != 1:
            raise InvalidInput("every input must be one instance (no batch dimension) or all a batch, not a mix")
        single = forms.pop()
        tensors = []
        for spec in self.input_specs:
            value = [values[spec.name]] if single else values[spec.name]
            what = f"a nested list of {spec.describe()} (or one instance without the first dimension)"
            tensors.append(torch.from_numpy(numeric_array(value, spec.name, what, spec.dtype, self.max_instances())))
        return Decoded(same_batch(self.input_specs, tensors), single)

    # -- v2 --------------------------------------------------------------------------------------

    def preprocess_v2(self, request: V2Request) -> Decoded:
        """Numeric tensors by model input name; a codec input's BYTES elements, one file each."""
        if not self.codecs or all(t.datatype != "BYTES" for t in request.inputs.values()):
            return super().preprocess_v2(request)
        unknown = set(request.inputs) - set(self.names)
        if unknown or len(request.inputs) != len(self.names):
            raise InvalidInput(f"expected the input tensor(s) {self.names}; got {excerpt(sorted(request.inputs))}")
        parts, others = {}, {}
        for name in self.names:
            tensor = request.inputs[name]
            if name in self.codecs and tensor.datatype == "BYTES":
                codec = self.codecs[name]
                where = [f"input {name!r} element {i}" for i in range(len(tensor.data))]
                items = [self.json_file(codec, e, w) for e, w in zip(tensor.data, where, strict=True)]
                parts[name] = [self.part(codec, e, w, "") for e, w in zip(items, where, strict=True)]
            else:
                spec = next(s for s in self.input_specs if s.name == name)
                others[name] = numeric_tensor(spec, tensor)
        return self.assemble(parts, others, False)

    # -- shared ----------------------------------------------------------------------------------

    def json_file(self, codec, value: Any, where: str) -> bytes | str:
        """A file inside JSON or a v2 element: base64 (raw bytes from the binary extension); a text
        codec's string is the text itself."""
        return value if codec.text or isinstance(value, (bytes, bytearray)) else file_bytes(value, where)

    def part(self, codec, data: Any, where: str, media_type: str) -> Part:
        """One file through its codec, each tensor checked against its input now (before joining)."""
        try:
            part = codec.decode(data, media_type)
            for name, tensor in zip(codec.feeds, part.tensors, strict=True):
                next(s for s in self.input_specs if s.name == name).check(tensor)
        except RequestError as err:
            raise type(err)(err.message if where == "the body" else f"{where}: {err.message}") from None
        return part

    def assemble(self, parts: dict[str, list[Part]], others: dict[str, torch.Tensor], single: bool) -> Decoded:
        """Files' parts and tensor inputs as one request, in the manifest's input order."""
        columns, pads = dict(others), {s.name: s.pad for s in self.input_specs}
        for name, items in parts.items():
            for j, fed in enumerate(self.codecs[name].feeds):
                columns[fed] = pad_and_cat([p.tensors[j] for p in items], pads[fed])
        tensors = same_batch(self.input_specs, [columns[s.name] for s in self.input_specs])
        info = [{name: items[i].info for name, items in parts.items()} for i in range(tensors[0].shape[0])]
        return Decoded(tensors, single, info)

    # -- answers ---------------------------------------------------------------------------------

    def encode(self, outputs: tuple[torch.Tensor, ...], decoded: Decoded) -> list[dict]:
        """Per instance: each output's fields (its codec's, else its row as a nested list under its
        name), then the input codecs' fields."""
        specs = output_specs(self.manifest)
        if not self.outputs and not self.codecs or len(specs) != len(outputs):
            return super().encode(outputs, decoded)
        answers = []
        for n in range(outputs[0].shape[0]):
            info, fields = decoded.info[n] or {}, {}
            for spec, output in zip(specs, outputs, strict=True):
                codec = self.outputs.get(spec["name"])
                fields |= codec.encode(output[n], info) if codec else {spec["name"]: output[n].tolist()}
            for name, codec in self.codecs.items():
                fields |= codec.answer(info.get(name))
            answers.append(fields)
        return answers

    def output_fields(self) -> dict[str, str]:
        fields = {}
        for spec in output_specs(self.manifest):
            codec = self.outputs.get(spec["name"])
            fields |= codec.fields() if codec else {spec["name"]: datatype_of(spec["dtype"])}
        for codec in self.codecs.values():
            fields |= codec.fields()
        return fields

    def rest_item(self, fields: dict) -> Any:
        """The fields object; a lone output codec may declare its own REST shape (``classes``)."""
        only = list(self.outputs.values())
        if (
            len(only) == 1
            and len(output_specs(self.manifest)) == 1
            and not any(c.fields() for c in self.codecs.values())
        ):
            return only[0].rest(fields)
        return fields

    def example(self) -> str:
        """What a request looks like, for error messages."""
        named = []
        for name in self.names:
            codec, spec = self.codecs.get(name), next((s for s in self.input_specs if s.name == name), None)
            forms = ([f"{codec.describe()}{'' if codec.text else ' as base64'}"] if codec else []) + (
                [spec.describe()] if spec and (not codec or codec.feeds == (name,)) else []
            )
            named.append(f'"{name}": <{" or ".join(forms)}>')
        body = ", ".join(named)
        return f"{{{body}}}" if len(self.names) == 1 else f'{{"inputs": {{{body}}}}}'

    def accepted(self) -> str:
        """Every content type this model takes, for the 415."""
        files = [t for c in self.codecs.values() for t in c.media_types]
        raw = f" or {', '.join(files)} (the body, or a multipart form field)" if files else ""
        return f"application/json {self.example()}{raw}"


def without_kind(options: dict) -> dict:
    return {k: v for k, v in options.items() if k != "kind"}


def is_files(value: Any) -> bool:
    """A JSON string, or a non-empty list of strings: files (or texts), not a tensor."""
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
    )
