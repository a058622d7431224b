"""Issue 22 finding 3: inputs whose decode cost is not bounded by their pixel count (a progressive JPEG
with thousands of scans, a JPEG or PNG of a million empty segments or chunks) are refused before any
decoder runs, ordinary images still decode, and every decode stops at its time budget."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from handlers.errors import RequestError
from handlers.guards import DecodeTooCostly, decode_budget
from handlers.inputs import decode_image

SIZE, MAX_PIXELS = (8, 8), 512 * 512


def progressive_bomb(scans: int, side: int = 512) -> tuple[bytes, bytes, bytes]:
    """(head, scan, tail): a flat grey progressive JPEG whose smallest scan is repeated ``scans`` times
    between head and tail. The head is padded with a comment to a multiple of 3 bytes and the scan is
    12 bytes, so the base64 of the whole is base64(head) + base64(scan) * n + base64(tail)."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", progressive=True)
    data, at, sos = buf.getvalue(), 2, []
    while data[at + 1] != 0xD9:
        end = at + 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
        if data[at + 1] == 0xDA:  # entropy data up to the next marker that is not a stuffed byte or RSTn
            while not (data[end] == 0xFF and data[end + 1] not in (0, *range(0xD0, 0xD8))):
                end += 1
            sos.append((at, end))
        at = end
    start, end = min(sos, key=lambda s: s[1] - s[0])
    pad = -(len(data[:end]) + 4) % 3
    head = data[:2] + b"\xff\xfe" + struct.pack(">H", 2 + pad) + b" " * pad + data[2:end]
    return head, data[start:end], data[end:]


def segment_bomb(count: int) -> bytes:
    """An 8x8 JPEG preceded by ``count`` empty comment segments."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, "JPEG")
    return buf.getvalue()[:2] + b"\xff\xfe\x00\x02" * count + buf.getvalue()[2:]


def chunk_bomb(count: int, kind: bytes = b"abCd") -> bytes:
    """An 8x8 PNG with ``count`` empty chunks of ``kind`` before its image data."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, "PNG")
    png = buf.getvalue()
    chunk = struct.pack(">I", 0) + kind + struct.pack(">I", zlib.crc32(kind))
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk * count + png[at:]


def refused(body: bytes) -> RequestError:
    with pytest.raises(RequestError) as caught:
        decode_image(body, SIZE, MAX_PIXELS)
    return caught.value


@pytest.mark.parametrize(
    ("body", "what"),
    [
        pytest.param(b"".join((h, s * 50_000, t)), "scans", id="progressive JPEG, 50k scans")
        for h, s, t in [progressive_bomb(0)]
    ]
    + [
        pytest.param(segment_bomb(1_600_000), "segments", id="JPEG, 1.6M comments"),
        pytest.param(chunk_bomb(540_000), "chunks", id="PNG, 540k ancillary chunks"),
        pytest.param(chunk_bomb(540_000, b"IDAT"), "chunks", id="PNG, 540k empty IDAT chunks"),
    ],
)
def test_costly_structure_is_refused_with_a_422_before_decoding(body, what):
    # Without the guard Pillow decodes each of these to a valid 8x8 or 512x512 image, in seconds (the
    # time budget would stop it later, with another message).
    error = refused(body)
    assert error.status == 422 and isinstance(error, DecodeTooCostly), error.message
    assert "more than" in error.message and what in error.message, error.message


def test_the_bomb_is_a_valid_image_that_pillow_decodes():
    """The reference: without the guard the same bytes decode (so the refusal is the guard's)."""
    head, scan, tail = progressive_bomb(0)
    with Image.open(io.BytesIO(head + scan * 200 + tail)) as image:
        assert np.asarray(image.convert("L")).shape == (512, 512)


@pytest.mark.parametrize("scans", [0, 40])
def test_ordinary_and_mildly_rescanned_images_still_decode(scans):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    for kind, options in [("JPEG", {"progressive": True}), ("JPEG", {}), ("PNG", {})]:
        buf = io.BytesIO()
        rgb.save(buf, kind, **options)
        assert decode_image(buf.getvalue(), SIZE, MAX_PIXELS).shape == (8, 8)
    head, scan, tail = progressive_bomb(0)
    assert decode_image(head + scan * scans + tail, SIZE, MAX_PIXELS).shape == (8, 8)


def test_a_decode_past_its_budget_is_stopped_with_a_422():
    start = time.monotonic()
    with pytest.raises(DecodeTooCostly) as caught, decode_budget("the spin", 0.2):
        while True:
            pass
    assert time.monotonic() - start < 2 and caught.value.status == 422
    with decode_budget("the quick one", 0.2):  # the timer was disarmed: nothing fires later
        pass
    time.sleep(0.3)


def test_outside_the_main_thread_the_budget_is_checked_at_the_end():
    errors = []

    def slow():
        try:
            with decode_budget("the sleep", 0.05):
                time.sleep(0.1)
        except DecodeTooCostly as err:
            errors.append(err)

    thread = threading.Thread(target=slow)
    thread.start()
    thread.join()
    assert len(errors) == 1
