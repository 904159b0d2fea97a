"""Agency and broker keys: generation, JWK files, and the registry the broker verifies with.

Every key has a ``kid`` of the form ``<agency>-<sig|enc>-<yyyymmdd>[-n]`` (docs/spec/keys.md).
Signing keys are Ed25519, encryption keys X25519, both as OKP JWKs. Private key files are
written 0600 and never leave the agency's own key directory. The current keys are
``<agency>/{sig,enc}.*.jwk``; keys a rotation replaced are kept under ``<agency>/previous/``
and their state (retiring until, revoked) is in ``lifecycle.json`` (``broker.crypto.lifecycle``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal, cast

import structlog
from joserfc.jwk import OKPKey

from broker.crypto.lifecycle import KeyState, read_states, stamp
from broker.errors import ConfigurationError, KeyRevoked, UnknownKey

log = structlog.get_logger("masp.keys")

BROKER = "broker"
AGENCIES: tuple[str, ...] = ("police", "probation", "nhs", "advocacy")
KeyUse = Literal["sig", "enc"]

_KID = re.compile(r"^(?P<agency>[a-z][a-z0-9_]{1,31})-(?P<use>sig|enc)-(?P<day>\d{8})(?:-(?P<n>\d{1,3}))?$")
Curve = Literal["Ed25519", "X25519"]
_CURVE: dict[str, Curve] = {"sig": "Ed25519", "enc": "X25519"}


@dataclass(frozen=True)
class KeyId:
    agency: str
    use: KeyUse
    day: date
    n: int | None = None

    def __str__(self) -> str:
        base = f"{self.agency}-{self.use}-{self.day:%Y%m%d}"
        return base if self.n is None else f"{base}-{self.n}"

    @classmethod
    def parse(cls, kid: str) -> KeyId:
        m = _KID.match(kid)
        if m is None:
            raise UnknownKey("kid is not of the form <agency>-<sig|enc>-<yyyymmdd>[-n]")
        use: KeyUse = "sig" if m["use"] == "sig" else "enc"
        try:
            day = date(int(m["day"][:4]), int(m["day"][4:6]), int(m["day"][6:]))
        except ValueError:
            raise UnknownKey("kid carries an invalid date") from None
        return cls(m["agency"], use, day, int(m["n"]) if m["n"] else None)


def generate_key(agency: str, use: KeyUse, day: date, n: int | None = None) -> OKPKey:
    kid = str(KeyId(agency, use, day, n))
    return OKPKey.generate_key(_CURVE[use], parameters={"kid": kid, "use": use}, private=True)


def public_jwk(key: OKPKey) -> dict[str, str]:
    return {k: str(v) for k, v in key.as_dict(private=False).items()}


@dataclass(frozen=True)
class AgencyKeys:
    """The private signing and encryption keys of one agency (or of the broker)."""

    agency: str
    sig: OKPKey
    enc: OKPKey
    #: The agency's key directory, when loaded from one: decryption then also finds keys a
    #: rotation put there after this process started, and the ones it replaced.
    home: Path | None = None
    _ring: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def decryption_keys(self, now: datetime | None = None, *,
                        retired: bool = True) -> dict[str, OKPKey]:
        """Private encryption keys by kid: the current one and every one a rotation kept.

        A message encrypted to the previous key just before a rotation (still in a queue)
        must open after it; so must one encrypted to a key rotated in by another process. A
        revoked key opens nothing more. ``retired``: whether a key whose overlap has ended
        still opens what was sealed to it. A recipient's does (a delivery sealed before the
        rotation may wait in its queue for as long as a delivery lives); the broker's own
        submission key does not (``retired=False``): a sender seals to the current key once
        the overlap is over (docs/spec/keys.md).
        """
        keys = {str(self.enc.kid): self.enc}
        if self.home is None:
            return keys
        now_stamp = stamp(self.home.parent)
        if self._ring.get("stamp") != now_stamp or "keys" not in self._ring:
            found: dict[str, OKPKey] = {}
            previous = sorted((self.home / "previous").glob("*-enc-*.private.jwk"))
            for path in [self.home / "enc.private.jwk", *previous]:
                try:
                    key = OKPKey.import_key(json.loads(path.read_text()))
                except FileNotFoundError:
                    continue
                found[str(key.kid)] = key
            self._ring.update(stamp=now_stamp, keys=found, states=read_states(self.home.parent))
        states = cast(dict[str, KeyState], self._ring["states"])
        at = now or datetime.now(UTC)
        usable = {**cast(dict[str, OKPKey], self._ring["keys"]), **keys}
        return {kid: key for kid, key in usable.items()
                if kid not in states or states[kid].refusal(at) is None
                or (retired and states[kid].status == "retiring")}

    @classmethod
    def generate(cls, agency: str, day: date) -> AgencyKeys:
        return cls(agency, generate_key(agency, "sig", day), generate_key(agency, "enc", day))

    def write(self, keys_dir: Path) -> Path:
        """Write ``<keys_dir>/<agency>/{sig,enc}.{private,public}.jwk``; private files 0600."""
        home = keys_dir / self.agency
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        for use, key in (("sig", self.sig), ("enc", self.enc)):
            _write_private(home / f"{use}.private.jwk", key.as_dict(private=True))
            (home / f"{use}.public.jwk").write_text(json.dumps(public_jwk(key), indent=2) + "\n")
        return home

    @classmethod
    def load(cls, keys_dir: Path, agency: str) -> AgencyKeys:
        home = keys_dir / agency
        try:
            sig = OKPKey.import_key(json.loads((home / "sig.private.jwk").read_text()))
            enc = OKPKey.import_key(json.loads((home / "enc.private.jwk").read_text()))
        except FileNotFoundError:
            raise ConfigurationError(
                f"no private keys for {agency} under {home}; run `masp keys init`"
            ) from None
        return cls(agency, sig, enc, home)


def _write_private(path: Path, jwk: Mapping[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(jwk, indent=2) + "\n")
    os.chmod(path, 0o600)


@dataclass
class KeyRegistry:
    """Public keys the broker (or an adapter) trusts, looked up by ``kid``.

    A key only speaks for the agency named in its kid: verification compares the kid's
    agency with the claimed ``iss`` so one agency's key can never sign as another.
    """

    _keys: dict[str, OKPKey] = field(default_factory=dict)
    #: Agencies with a registered key: consulted on every signature check, so kept, not derived.
    _agencies: set[str] = field(default_factory=set)
    _states: dict[str, KeyState] = field(default_factory=dict)
    #: Where the keys came from: re-read when ``lifecycle.json`` changes, so a rotation or a
    #: revocation takes effect in a running broker at once, without a restart.
    _dir: Path | None = None
    _wanted: frozenset[str] | None = None
    _stamp: tuple[int, int, int] | None = None

    def _refresh(self) -> None:
        if self._dir is None or stamp(self._dir) == self._stamp:
            return
        fresh = KeyRegistry.from_public_dir(self._dir, self._wanted)
        self._keys, self._agencies, self._states, self._stamp = (
            fresh._keys, fresh._agencies, fresh._states, fresh._stamp)

    @property
    def directory(self) -> Path | None:
        """The key directory this registry reads, if any."""
        return self._dir

    def state(self, kid: str) -> KeyState:
        self._refresh()
        return self._states.get(kid, KeyState("active"))

    def add(self, key: OKPKey) -> None:
        kid = key.kid
        if kid is None:
            raise ConfigurationError("a registered key has no kid")
        parsed = KeyId.parse(kid)
        if key.curve_name != _CURVE[parsed.use]:
            raise ConfigurationError(f"key {kid} is not an {_CURVE[parsed.use]} key")
        self._keys[kid] = OKPKey.import_key(cast(dict[str, str | list[str]], public_jwk(key)))
        self._agencies.add(parsed.agency)

    def get(self, kid: str, *, use: KeyUse, agency: str | None = None,
            now: datetime | None = None) -> OKPKey:
        self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKey("key is not registered")  # the kid is the sender's: not repeated
        parsed = KeyId.parse(kid)
        if parsed.use != use:
            raise UnknownKey(f"key {kid} is not a {use} key")
        if agency is not None and parsed.agency != agency:
            raise UnknownKey(f"key {kid} does not belong to {agency}")
        state = self._states.get(kid)
        why = state.refusal(now or datetime.now(UTC)) if state is not None else None
        if why is not None:
            raise KeyRevoked(f"key {kid} {why}", kid=kid)
        return key

    def current(self, agency: str, use: KeyUse) -> OKPKey:
        """The newest usable key of an agency for a use (latest date, then highest n)."""
        self._refresh()
        now = datetime.now(UTC)
        best: tuple[date, int, OKPKey] | None = None
        for kid, key in self._keys.items():
            parsed = KeyId.parse(kid)
            state = self._states.get(kid)
            if state is not None and state.refusal(now) is not None:
                continue
            if parsed.agency == agency and parsed.use == use:
                rank = (parsed.day, parsed.n or 0, key)
                if best is None or rank[:2] > best[:2]:
                    best = rank
        if best is None:
            raise UnknownKey(f"no {use} key registered for {agency}")
        return best[2]

    def agencies(self) -> set[str]:
        self._refresh()
        return set(self._agencies)

    def knows(self, agency: str) -> bool:
        self._refresh()
        return agency in self._agencies

    def jwks(self, now: datetime | None = None, *,
             broker: bool | None = None) -> dict[str, list[dict[str, str | int]]]:
        """Public keys with their owner (``masp_agency``) and ``status`` (active, retiring until
        ``exp``, retired, revoked). ``broker``: True for the broker's keys only, False for the
        agencies' only (the two are published apart: docs/spec/keys.md), None for all."""
        self._refresh()
        at = now or datetime.now(UTC)
        out: list[dict[str, str | int]] = []
        for kid, key in sorted(self._keys.items()):
            owner = KeyId.parse(kid).agency
            if broker is not None and (owner == BROKER) != broker:
                continue
            state = self._states.get(kid, KeyState("active"))
            jwk: dict[str, str | int] = {**public_jwk(key), "masp_agency": owner,
                                         "status": state.status_at(at)}
            if state.status == "retiring" and state.until is not None:
                jwk["exp"] = int(state.until.timestamp())  # a NumericDate, as in a JWT
            out.append(jwk)
        return {"keys": out}

    @classmethod
    def from_public_dir(cls, keys_dir: Path, agencies: Iterable[str] | None = None) -> KeyRegistry:
        """Load every ``<agency>/*.public.jwk`` under ``keys_dir``.

        A key belongs to the party whose folder holds it, and its kid must say so: a file
        whose kid names another party (``broker-sig-…`` under ``police/``), or a replaced key
        filed under another name than its kid, is never trusted. It is skipped with an error
        in the log, so one misplaced file cannot pass an agency's key off as the broker's.
        """
        wanted = frozenset(agencies) if agencies is not None else None
        reg = cls(_dir=keys_dir, _wanted=wanted, _stamp=stamp(keys_dir))
        current = sorted(keys_dir.glob("*/*.public.jwk"))
        previous = sorted(keys_dir.glob("*/previous/*.public.jwk"))
        for path in current + previous:
            home = path.parent.parent if path.parent.name == "previous" else path.parent
            if wanted is not None and home.name not in wanted:
                continue
            key = OKPKey.import_key(json.loads(path.read_text()))
            try:
                owner: str | None = KeyId.parse(str(key.kid)).agency
            except UnknownKey:
                owner = None
            filed = path.parent.name != "previous" or path.name == f"{key.kid}.public.jwk"
            if owner != home.name or not filed:
                log.error("key_file_misplaced", path=str(path.relative_to(keys_dir)))
                continue
            reg.add(key)
        reg._states = read_states(keys_dir)
        return reg


def known_kids(home: Path) -> set[str]:
    """Every kid a party's folder has held: its current keys and the ones rotations kept."""
    kids = {json.loads(p.read_text())["kid"] for p in home.glob("*.public.jwk")}
    return kids | {p.name.removesuffix(".public.jwk") for p in (home / "previous").glob("*.public.jwk")}


def next_kid_n(agency: str, use: KeyUse, day: date, taken: set[str]) -> int | None:
    """The kid suffix that makes a new key of ``day`` unique (none for the first of the day)."""
    n: int | None = None
    while str(KeyId(agency, use, day, n)) in taken:
        n = 1 if n is None else n + 1
    return n


def init_keys(keys_dir: Path, day: date, agencies: Iterable[str] = (*AGENCIES, BROKER),
              *, force: bool = False) -> list[str]:
    """Create keys for each agency lacking them; return the agencies created.

    ``force`` replaces existing keys, under new kids: a key made the same day as the one it
    replaces takes the next ``-n``, so nothing sealed to the old key (still in a queue) is
    mistaken for a message to the new one, which would look like tampering.
    """
    created: list[str] = []
    for agency in agencies:
        home = keys_dir / agency
        if not force and (home / "sig.private.jwk").exists():
            continue
        # every kid of the day up to the highest this folder holds counts as taken: a forced
        # replacement keeps no trace of the key it replaced, so only a rising -n is unique
        taken: set[str] = set()
        for kid in known_kids(home) if home.is_dir() else set():
            held = KeyId.parse(kid)
            if held.day == day:
                taken |= {str(KeyId(agency, u, day, m or None)) for u in ("sig", "enc")
                          for m in range((held.n or 0) + 1)}
        sig = generate_key(agency, "sig", day, next_kid_n(agency, "sig", day, taken))
        enc = generate_key(agency, "enc", day, next_kid_n(agency, "enc", day, taken))
        AgencyKeys(agency, sig, enc).write(keys_dir)
        created.append(agency)
    return created
