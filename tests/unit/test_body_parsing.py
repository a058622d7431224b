"""export.samples.torchserve_value against TorchServe's own worker code: the body a handler receives."""

from __future__ import annotations

import io
import struct

import pytest
from ts.protocol.otf_message_handler import _retrieve_input_data

from export.samples import torchserve_value

pytestmark = pytest.mark.unit

BODIES = [
    (b'{"a": [1, 2]}', "application/json"),
    (b'{"a": [1, 2', "application/json"),  # not JSON
    (b'"\xff"', "application/json"),  # not UTF-8
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),  # nested past the recursion limit
    (b"h\xc3\xa9llo", "text/plain"),
    (b"a,b\n\xff", "text/csv"),  # not UTF-8
    (b"\x89PNG\r\n", "image/png"),
    (b"{}", "application/octet-stream"),
]


def as_torchserve_reads(raw: bytes, content_type: str):
    """The value TorchServe's worker decodes from the frame its frontend sends for one body part."""
    frame = b"".join(struct.pack("!i", len(part)) + part for part in (b"body", content_type.encode(), raw))

    class Conn(io.BytesIO):
        recv = io.BytesIO.read

    value = _retrieve_input_data(Conn(frame))["value"]
    return bytes(value) if isinstance(value, bytearray) else value


@pytest.mark.parametrize(("raw", "content_type"), BODIES, ids=range(len(BODIES)))
def test_bodies_reach_handlers_as_torchserve_hands_them(raw, content_type, monkeypatch):
    monkeypatch.delenv("TS_DECODE_INPUT_REQUEST", raising=False)
    assert torchserve_value(raw, content_type) == as_torchserve_reads(raw, content_type)
