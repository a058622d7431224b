"""TorchServe's ``key_file.json``: the current keys, when they expire, and how to renew them.

TorchServe writes the file in its working directory at start: ``management`` and ``inference`` keys,
each with an ``expiration time`` (``token_expiration_min`` after it was made), and an ``API`` key that
never expires. It never renews a key by itself. ``GET <management>/token?type=inference`` (or
``management``), sent with the API key, makes a new key of that type and rewrites the file; the answer
carries no key, so the file is read again afterwards. See pytorch/serve docs/token_authorization_api.md.

Keys by role (docs/SECURITY.md): the API key mints management keys, so only the server's user holds it.
``python -m client.renewer renew`` runs as that user, keeps the inference key fresh and copies it alone into
a file inference clients can read (mode 640); an inference client given that file never renews, it
waits for the renewer. Renewals across processes take a lock file beside the key file, and a key file
that is a symlink, group/world-writable, or owned by anyone but this user or root (or $KIT_KEY_OWNER)
is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Renew this long before the written expiry: a request sent just before it must not arrive after it.
RENEW_MARGIN_S = 5.0
# How long a client without the API key waits for the renewer to replace a refused key.
WAIT_FOR_RENEWER_S = 10.0


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


class KeyFileRefused(PermissionError):
    """The key file is a symlink, writable by others, or owned by an untrusted user."""


def trusted_owners() -> set[int]:
    """This user, root, and $KIT_KEY_OWNER (a user name or uid: the renewer, for inference clients)."""
    owners = {os.geteuid(), 0}
    named = os.environ.get("KIT_KEY_OWNER", "").strip()
    if named:
        owners.add(int(named) if named.isdigit() else pwd.getpwnam(named).pw_uid)
    return owners


def read_private(path: Path) -> str:
    """The text of ``path``, refused (KeyFileRefused) unless it is a regular file, not a symlink,
    writable by its owner only, and owned by a trusted user."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if Path(path).is_symlink():
            raise KeyFileRefused(f"{path} is a symlink; a key file must be a regular file") from err
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileRefused(f"{path} is not a regular file")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KeyFileRefused(f"{path} is writable by group or others (mode {info.st_mode & 0o777:o})")
        if info.st_uid not in trusted_owners():
            raise KeyFileRefused(f"{path} is owned by uid {info.st_uid}; set KIT_KEY_OWNER to trust its owner")
        return file.read().decode("utf-8")


class KeyFile:
    """Reads ``key_file.json`` afresh on every call (the server rewrites it on renewal)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = threading.Lock()  # one renewal at a time per process; the lock file, across processes

    def exists(self) -> bool:
        return self.path.exists() or self.path.is_symlink()

    @contextmanager
    def renewing(self) -> Iterator[None]:
        """Hold the thread lock and ``<key file>.lock`` (fcntl): each renewal voids the key before it,
        so two processes renewing at once would each void the other's new key."""
        with self.lock:
            lock_path = self.path.with_name(self.path.name + ".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def read(self) -> dict:
        """The parsed file. TorchServe truncates and rewrites it, so a read may catch it half
        written: try again briefly before giving up."""
        for attempt in range(20):
            try:
                return json.loads(read_private(self.path))
            except json.JSONDecodeError:
                if attempt == 19:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def key(self, api: str) -> Key:
        """``inference``, ``management`` or ``API``."""
        entry = self.read()[api]
        return Key(entry["key"], parse_expiry(entry.get("expiration time")))

    def holds(self, api: str) -> bool:
        return api in self.read()

    def wait_for_new(self, api: str, stale: str, timeout: float = WAIT_FOR_RENEWER_S) -> Key:
        """For a client without the API key: the key the renewer writes in place of ``stale`` (or,
        after ``timeout`` seconds, whatever the file holds: the server's refusal then says why)."""
        deadline = time.monotonic() + timeout
        while True:
            key = self.key(api)
            if key.value != stale or time.monotonic() > deadline:
                return key
            time.sleep(0.1)


def write_role_file(path: Path, entries: dict, mode: int = 0o640) -> None:
    """Replace ``path`` in one step with ``entries`` (never following a symlink planted there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, mode)  # not narrowed by the umask
        json.dump(entries, file)
    os.replace(tmp, path)
