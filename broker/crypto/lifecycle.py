"""Key lifecycle state: which keys are retiring (and until when) and which are revoked.

One JSON file, ``<keys_dir>/lifecycle.json``, beside the JWK files. ``masp keys rotate`` and
``masp keys revoke`` rewrite it atomically, last, after any new key files are in place, so a
running broker that sees the file change (``stamp``) finds the keys it names. A kid absent
from the file is active.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

LIFECYCLE_FILE = "lifecycle.json"
Status = Literal["active", "retiring", "revoked"]
#: Why a key was revoked: codes, never free text (the reason goes into the audit log).
REVOKE_REASONS = ("compromised", "superseded", "retired", "unused")


@dataclass(frozen=True)
class KeyState:
    status: Status
    until: datetime | None = None  # retiring: verifies until then
    revoked_at: datetime | None = None
    reason: str | None = None

    def refusal(self, now: datetime) -> str | None:
        """Why the key may no longer verify at ``now``, or None while it may."""
        if self.status == "revoked":
            at = f" at {self.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if self.revoked_at else ""
            return f"was revoked{at} ({self.reason or 'no reason given'})"
        if self.status == "retiring" and self.until is not None and now >= self.until:
            return f"was retired at {self.until:%Y-%m-%dT%H:%M:%SZ} when its rotation overlap ended"
        return None

    def status_at(self, now: datetime) -> str:
        if self.status == "retiring" and self.refusal(now) is not None:
            return "retired"
        return self.status

    def as_json(self) -> dict[str, str]:
        doc: dict[str, str] = {"status": self.status}
        if self.until is not None:
            doc["until"] = self.until.isoformat()
        if self.revoked_at is not None:
            doc["revoked_at"] = self.revoked_at.isoformat()
        if self.reason is not None:
            doc["reason"] = self.reason
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, str]) -> KeyState:
        status = doc["status"]
        if status not in ("active", "retiring", "revoked"):
            raise ValueError(f"unknown key status {status!r}")
        until, revoked = doc.get("until"), doc.get("revoked_at")
        return cls(status, datetime.fromisoformat(until) if until else None,  # type: ignore[arg-type]
                   datetime.fromisoformat(revoked) if revoked else None, doc.get("reason"))


def stamp(keys_dir: Path) -> tuple[int, int, int] | None:
    """Changes whenever the lifecycle file is rewritten (a new inode each time)."""
    try:
        st = (keys_dir / LIFECYCLE_FILE).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_states(keys_dir: Path) -> dict[str, KeyState]:
    path = keys_dir / LIFECYCLE_FILE
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    return {kid: KeyState.from_json(state) for kid, state in doc.get("keys", {}).items()}


@contextmanager
def locked(keys_dir: Path) -> Iterator[None]:
    """One key change at a time: two rotations or revocations must not lose each other's state."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(keys_dir / ".lifecycle.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_states(keys_dir: Path, states: dict[str, KeyState]) -> None:
    """Replace the file atomically (write, fsync, rename): readers see the old or the new, never half."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    doc = {"keys": {kid: states[kid].as_json() for kid in sorted(states)}}
    fd, tmp = tempfile.mkstemp(dir=keys_dir, prefix=".lifecycle-")
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, keys_dir / LIFECYCLE_FILE)


__all__ = ["LIFECYCLE_FILE", "REVOKE_REASONS", "KeyState", "locked", "read_states", "stamp", "write_states"]
