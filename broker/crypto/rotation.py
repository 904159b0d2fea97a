"""``masp keys rotate`` and ``masp keys revoke``: replace an agency's keys, or withdraw one key.

Rotation writes a new signing and encryption key as the agency's current keys and keeps the
replaced ones under ``<agency>/previous/``, retiring: they still verify (and the holder can
still decrypt with them) until the overlap window ends, so messages signed or encrypted just
before the rotation and still in a queue are not lost. Revocation is immediate: from the moment
``lifecycle.json`` is rewritten, every registry that reads it refuses the key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from broker.crypto.keys import AgencyKeys, KeyId, generate_key, known_kids, next_kid_n, public_jwk
from broker.crypto.lifecycle import REVOKE_REASONS, KeyState, locked, read_states, write_states
from broker.errors import ConfigurationError, UnknownKey


@dataclass(frozen=True)
class Rotation:
    agency: str
    new: dict[str, str]  # use -> new kid
    retiring: dict[str, str]  # use -> replaced kid
    until: datetime


def _write(path: Path, doc: dict[str, str], private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc, indent=2) + "\n")


def rotate(keys_dir: Path, agency: str, now: datetime, overlap: timedelta) -> Rotation:
    """New current keys for ``agency``; the replaced ones verify until ``now + overlap``."""
    if overlap < timedelta(0):
        raise ConfigurationError("the overlap window cannot be negative")
    with locked(keys_dir):
        return _rotate(keys_dir, agency, now, overlap)


def _rotate(keys_dir: Path, agency: str, now: datetime, overlap: timedelta) -> Rotation:
    old = AgencyKeys.load(keys_dir, agency)
    home = keys_dir / agency
    previous = home / "previous"
    previous.mkdir(mode=0o700, exist_ok=True)
    taken = known_kids(home)
    states = read_states(keys_dir)
    until = now + overlap
    retiring: dict[str, str] = {}
    for use, key in (("sig", old.sig), ("enc", old.enc)):
        kid = str(key.kid)
        # keep the replaced key first: a crash after this leaves both on disk, nothing lost
        private_jwk = {str(k): str(v) for k, v in key.as_dict(private=True).items()}
        _write(previous / f"{kid}.private.jwk", private_jwk, private=True)
        _write(previous / f"{kid}.public.jwk", public_jwk(key), private=False)
        if states.get(kid, KeyState("active")).status != "revoked":
            states[kid] = KeyState("retiring", until=until)
        retiring[use] = kid
    fresh_sig = generate_key(agency, "sig", now.date(), next_kid_n(agency, "sig", now.date(), taken))
    fresh_enc = generate_key(agency, "enc", now.date(), next_kid_n(agency, "enc", now.date(), taken))
    fresh = AgencyKeys(agency, fresh_sig, fresh_enc)
    fresh.write(keys_dir)
    new = {"sig": str(fresh_sig.kid), "enc": str(fresh_enc.kid)}
    write_states(keys_dir, states)  # last: readers that see it find every file it names
    return Rotation(agency, new, retiring, until)


def revoke(keys_dir: Path, kid: str, now: datetime, reason: str) -> KeyState:
    """Mark ``kid`` revoked from ``now``; a current key must be rotated away first."""
    if reason not in REVOKE_REASONS:
        raise ConfigurationError(f"reason must be one of {', '.join(REVOKE_REASONS)}")
    parsed = KeyId.parse(kid)
    home = keys_dir / parsed.agency
    if not home.is_dir() or kid not in known_kids(home):
        raise UnknownKey(f"key {kid} is not in {keys_dir}")
    with locked(keys_dir):
        states = read_states(keys_dir)
        if states.get(kid, KeyState("active")).status == "revoked":
            return states[kid]
        states[kid] = KeyState("revoked", revoked_at=now, reason=reason)
        write_states(keys_dir, states)
        return states[kid]


def is_current(keys_dir: Path, kid: str) -> bool:
    home = keys_dir / KeyId.parse(kid).agency
    return any(json.loads(p.read_text())["kid"] == kid for p in home.glob("*.public.jwk"))


__all__ = ["Rotation", "is_current", "revoke", "rotate"]
