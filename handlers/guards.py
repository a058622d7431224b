"""Decode-cost guards: what a decoder may be fed, checked before it runs, and a time budget for it.

A pixel cap bounds what a PNG or a baseline JPEG costs, but not everything: a progressive JPEG
runs its whole entropy decoder once per scan (50,000 scans of 12 bytes: 3.3 s for 512x512 here), and
Pillow walks JPEG segments and PNG chunks one by one in Python (1.6 million empty comments: 3.8 s).
``check_image_structure`` walks the markers and chunks first, stopping at the first limit passed, so
its own cost is bounded by the limits. ``decode_budget`` then bounds any decode (image, audio, text)
in time, whatever its input.
"""

from __future__ import annotations

import re
import signal
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from handlers.errors import InvalidInput

# Encoders write 10 scans (libjpeg's progressive script for colour) to about 20; 64 leaves room and
# keeps a 512x512 decode at a few milliseconds.
MAX_JPEG_SCANS = 64
# Segments of any kind (APPn, COM, DQT, DHT, SOF, SOS...): a photo with EXIF and a chunked ICC
# profile has tens; an ICC profile at most 255 more.
MAX_JPEG_SEGMENTS = 512
# PNG chunks: libpng splits IDAT every 8 KB, so a 6.5 MB body holds about 800; other chunks are few.
MAX_PNG_CHUNKS = 4096
MAX_PNG_OTHER_CHUNKS = 64
# Seconds one decode may take (a 512x512 image takes milliseconds); past it the request gets a 422.
DECODE_SECONDS = 1.0

_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # the next marker after entropy-coded data
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class DecodeTooCostly(InvalidInput):
    """422: an input whose decode would cost more than its size promises (or ran past its budget)."""


def check_image_structure(data: bytes) -> None:
    """Refuse a PNG or JPEG whose chunk, segment or scan count would make decoding cost more than
    its pixel count; other bytes pass (the decoder decides what they are)."""
    view = memoryview(data)
    if data[:8] == PNG_SIGNATURE:
        _check_png(view)
    elif data[:2] == b"\xff\xd8":
        _check_jpeg(data)


def _check_png(view: memoryview) -> None:
    at, chunks, other = 8, 0, 0
    while at + 8 <= len(view):
        length, kind = struct.unpack(">I4s", view[at : at + 8])
        chunks += 1
        other += kind not in (b"IDAT", b"fdAT")
        if chunks > MAX_PNG_CHUNKS or other > MAX_PNG_OTHER_CHUNKS:
            raise DecodeTooCostly(
                f"PNG has more than {MAX_PNG_CHUNKS} chunks (or {MAX_PNG_OTHER_CHUNKS} besides image data); "
                "expected an ordinary PNG"
            )
        if kind == b"IEND":
            return
        at += 12 + length


def _check_jpeg(data: bytes) -> None:
    at, segments, scans = 2, 0, 0
    while at + 4 <= len(data):
        if data[at] != 0xFF:  # stray bytes: decoders skip to the next marker (counted below)
            found = _MARKER.search(data, at)
            if found is None:
                return
            at = found.start()
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker == 0xD9:  # EOI
            return
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise DecodeTooCostly(f"JPEG has more than {MAX_JPEG_SEGMENTS} segments; expected an ordinary JPEG")
        if marker in _STANDALONE:
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if marker == 0xDA:  # SOS: entropy-coded data runs to the next marker
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise DecodeTooCostly(
                    f"JPEG has more than {MAX_JPEG_SCANS} scans; each scan costs a full decode pass "
                    "(save it as a baseline or ordinary progressive JPEG)"
                )
            found = _MARKER.search(data, at)
            if found is None:
                return
            at = found.start()


@contextmanager
def decode_budget(what: str, seconds: float = DECODE_SECONDS) -> Iterator[None]:
    """Run the block within ``seconds``, else raise DecodeTooCostly (422) naming ``what``.

    In the main thread (where TorchServe's worker calls the handler) a SIGALRM timer interrupts the
    block at the next Python line, so a decoder returning to Python between chunks (as Pillow does)
    is stopped there; one C call is not interrupted. Elsewhere, or inside another budget, the time
    is checked when the block ends. Audio and text codecs wrap their decode in this too."""

    def expired(_signum, _frame):
        raise DecodeTooCostly(f"{what} took more than {seconds:g} s to decode; send a smaller or simpler input")

    alarm = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    start = time.monotonic()
    if alarm:
        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if time.monotonic() - start > seconds:
        expired(None, None)
