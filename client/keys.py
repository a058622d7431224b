"""TorchServe's ``key_file.json``: the current keys, when they expire, and how to renew them.

TorchServe writes the file in its working directory at start: ``management`` and ``inference`` keys,
each with an ``expiration time`` (``token_expiration_min`` after it was made), and an ``API`` key that
never expires. It never renews a key by itself. ``GET <management>/token?type=inference`` (or
``management``), sent with the API key, makes a new key of that type and rewrites the file; the answer
carries no key, so the file is read again afterwards. See pytorch/serve docs/token_authorization_api.md.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Renew this long before the written expiry: a request sent just before it must not arrive after it.
RENEW_MARGIN_S = 5.0


@dataclass(frozen=True)
class Key:
    """One key and when it stops working (None: never, or not said)."""

    value: str
    expires: datetime | None

    def expiring(self, margin: float = RENEW_MARGIN_S) -> bool:
        """True when the key expires within ``margin`` seconds (or already has)."""
        return self.expires is not None and (self.expires - datetime.now(UTC)).total_seconds() < margin


def parse_expiry(text: str | None) -> datetime | None:
    """Java's ``Instant.toString()`` (``2026-11-26T05:12:24.801167Z``, up to 9 fraction digits)."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text.strip())
    if not match:
        return None  # an unknown format: rely on the server's refusal instead
    micro = int((match.group(2) or "0")[:6].ljust(6, "0"))
    return datetime.fromisoformat(match.group(1)).replace(microsecond=micro, tzinfo=UTC)


class KeyFile:
    """Reads ``key_file.json`` afresh on every call (the server rewrites it on renewal)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = threading.Lock()  # one renewal at a time per process: each renewal voids the previous key

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict:
        """The parsed file. TorchServe truncates and rewrites it, so a read may catch it half
        written: try again briefly before giving up."""
        for attempt in range(20):
            try:
                return json.loads(self.path.read_text())
            except json.JSONDecodeError:
                if attempt == 19:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def key(self, api: str) -> Key:
        """``inference``, ``management`` or ``API``."""
        entry = self.read()[api]
        return Key(entry["key"], parse_expiry(entry.get("expiration time")))
