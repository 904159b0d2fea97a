"""The audit log's own signing keys: one purpose (checkpoints and key-rotation statements), rotatable.

Kept apart from the broker's JOSE keys under ``<keys_dir>/log/``, in the Go ``sumdb/note``
text encodings so any C2SP tool reads them:

``<id>.skey``  ``PRIVATE+KEY+<origin>+<id>+...`` (0600), the private key
``<id>.vkey``  ``<origin>+<id>+...``, what a relying party pins
``state.json`` which key is current, which one a rotation is introducing (``pending``) and
               until when each replaced key keeps co-signing checkpoints (``retire_at``)

The key name is the log's origin (``masp.audit/<deployment>``), so every key of one log has
the same name and a different key id. ``state.json`` is rewritten atomically and last, after
every file it names is in place; a process that appends to the log re-reads it when it
changes (``stamp``), so a rotation reaches running brokers without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.note import NoteError, NoteSigner, NoteVerifier
from broker.durable import replace_file
from broker.errors import ConfigurationError

LOG = "log"
"""The key owner name of the audit log's keys (``masp keys rotate log``)."""
LOG_DIR = "log"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class LogKey:
    """One key of the log: its id (8 hex digits), verifier, and when it stops co-signing."""

    id: str
    verifier: NoteVerifier
    added: datetime
    retire_at: datetime | None = None

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def signs_at(self, now: datetime) -> bool:
        return self.retire_at is None or now < self.retire_at


@dataclass
class LogKeyState:
    origin: str
    current: str
    pending: str | None
    keys: dict[str, LogKey] = field(default_factory=dict)
    #: the pending key co-signs: set inside the rotation's own unit of work, before it commits
    pending_signs: bool = False

    def as_json(self) -> dict[str, object]:
        return {"origin": self.origin, "current": self.current, "pending": self.pending,
                "pending_signs": self.pending_signs,
                "keys": {k.id: {"added": k.added.isoformat(), "vkey": k.vkey,
                                "retire_at": k.retire_at.isoformat() if k.retire_at else None}
                         for k in self.keys.values()}}


class LogKeyStore:
    """``<keys_dir>/log``: the log's keys for one origin."""

    def __init__(self, keys_dir: Path, origin: str) -> None:
        self.home = keys_dir / LOG_DIR
        self.origin = origin

    # --- reading ---------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.home / STATE_FILE).exists()

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever ``state.json`` is rewritten (a new inode each time)."""
        try:
            st = (self.home / STATE_FILE).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def state(self) -> LogKeyState:
        path = self.home / STATE_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"no audit log key under {self.home}; run `masp keys init`") from None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{path} is unreadable ({type(exc).__name__})") from None
        if doc.get("origin") != self.origin:
            raise ConfigurationError(
                f"the audit log keys under {self.home} are for the log {doc.get('origin')!r}, "
                f"not {self.origin!r} (MASP_DEPLOYMENT names the log)")
        keys: dict[str, LogKey] = {}
        for key_id, item in doc["keys"].items():
            try:
                verifier = NoteVerifier.from_vkey(item["vkey"])
            except NoteError as exc:
                raise ConfigurationError(f"log key {key_id} in {path}: {exc}") from None
            if verifier.key_id.hex() != key_id or verifier.name != self.origin:
                raise ConfigurationError(f"log key {key_id} in {path} does not match its vkey")
            retire = item.get("retire_at")
            keys[key_id] = LogKey(key_id, verifier, datetime.fromisoformat(item["added"]),
                                  datetime.fromisoformat(retire) if retire else None)
        if doc["current"] not in keys or (doc.get("pending") and doc["pending"] not in keys):
            raise ConfigurationError(f"{path} names a log key it does not hold")
        return LogKeyState(self.origin, doc["current"], doc.get("pending"), keys,
                           bool(doc.get("pending_signs")) and doc.get("pending") is not None)

    def signer(self, key_id: str) -> NoteSigner:
        """The private key ``key_id``: ``<id>.skey``, else any ``*.skey`` here holding it (a
        deployment may mount the current key under a fixed name, e.g. ``current.skey``)."""
        named = self.home / f"{key_id}.skey"
        for path in [named, *sorted(p for p in self.home.glob("*.skey") if p != named)]:
            try:
                signer = NoteSigner.from_skey(path.read_text(encoding="utf-8").strip())
            except FileNotFoundError:
                continue
            except (OSError, NoteError) as exc:
                raise ConfigurationError(f"{path}: not a log signing key ({type(exc).__name__})") from None
            if signer.key_id.hex() == key_id:
                if signer.name != self.origin:
                    raise ConfigurationError(f"{path} is a key of another log")
                return signer
        raise ConfigurationError(f"no private key for audit log key {key_id} under {self.home}")

    def signers(self, now: datetime) -> list[tuple[NoteSigner, datetime | None]]:
        """The keys that sign checkpoints: the current one first, then those still in overlap,
        each with the time it stops (None: never, while current)."""
        state = self.state()
        current = state.keys[state.current]
        others = [k for k in state.keys.values()
                  if k.id not in (state.current, state.pending) and k.signs_at(now)]
        if state.pending is not None and state.pending_signs:
            others.append(state.keys[state.pending])
        return [(self.signer(k.id), k.retire_at) for k in [current, *others]]

    def verifiers(self, now: datetime) -> list[NoteVerifier]:
        """Public keys a witness of this log accepts at ``now``: the current one and those
        still in their overlap (not a pending one: it signs nothing until its rotation)."""
        state = self.state()
        return [k.verifier for k in state.keys.values()
                if k.id != state.pending and (k.id == state.current or k.signs_at(now))]

    def all_keys(self) -> list[LogKey]:
        """Every key the log has had, oldest first (not a pending one)."""
        state = self.state()
        return [k for k in state.keys.values() if k.id != state.pending]  # in the order added

    # --- writing ---------------------------------------------------------------------

    def _save(self, state: LogKeyState) -> None:
        replace_file(self.home / STATE_FILE, (json.dumps(state.as_json(), indent=2) + "\n").encode(), 0o644)

    def _new_key(self, now: datetime) -> LogKey:
        signer = NoteSigner(self.origin, Ed25519PrivateKey.generate())
        key_id = signer.key_id.hex()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(self.home / f"{key_id}.skey", (signer.skey + "\n").encode(), 0o600)
        replace_file(self.home / f"{key_id}.vkey", (signer.vkey + "\n").encode(), 0o644)
        return LogKey(key_id, signer.verifier(), now)

    def create(self, now: datetime) -> LogKey | None:
        """The log's first key; None when it already has one (kept)."""
        if self.exists():
            self.state()  # refuse keys of another origin loudly
            return None
        key = self._new_key(now)
        self._save(LogKeyState(self.origin, key.id, None, {key.id: key}))
        return key

    def begin_rotation(self, now: datetime) -> LogKey:
        """A new key, recorded as pending (it signs nothing yet); an unfinished rotation's
        pending key is reused, so running the command again completes it."""
        state = self.state()
        if state.pending is not None:
            return state.keys[state.pending]
        key = self._new_key(now)
        state.keys[key.id] = key
        state.pending = key.id
        self._save(state)
        return key

    def start_signing(self, key_id: str) -> None:
        """The pending key co-signs from now on: called while the rotation entry's unit of work
        holds the sequencer, so no checkpoint after that entry goes without the new key."""
        state = self.state()
        if state.pending != key_id:
            raise ConfigurationError(f"log key {key_id} is not the one being rotated in")
        if not state.pending_signs:
            state.pending_signs = True
            self._save(state)

    def finish_rotation(self, key_id: str, retire_at: datetime) -> LogKeyState:
        """Make the pending key current; the replaced key co-signs until ``retire_at``."""
        state = self.state()
        if state.pending != key_id:
            raise ConfigurationError(f"log key {key_id} is not the one being rotated in")
        old = state.keys[state.current]
        state.keys[old.id] = LogKey(old.id, old.verifier, old.added, retire_at)
        state.current, state.pending, state.pending_signs = key_id, None, False
        self._save(state)
        return state


def trusted_log_keys(keys_dir: Path, now: datetime, origin: str | None = None
                     ) -> tuple[str, list[NoteVerifier]]:
    """The log's origin and the public keys a witness accepts at ``now``, from a key directory
    laid out as ``masp keys init`` makes it (``origin`` None: the one the directory names)."""
    if origin is None:
        try:
            origin = str(json.loads((keys_dir / LOG_DIR / STATE_FILE).read_text(encoding="utf-8"))["origin"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigurationError(f"no audit log key under {keys_dir / LOG_DIR}") from None
    return origin, LogKeyStore(keys_dir, origin).verifiers(now)


class LogSigners:
    """Who signs the log's next checkpoint: its current key, and any key still in overlap.

    Backed by a ``LogKeyStore`` (re-read when its ``state.json`` changes: ``refresh``, called
    under the sequencer) or by fixed signers (tests, tools).
    """

    def __init__(self, store: LogKeyStore | None = None,
                 fixed: tuple[NoteSigner, ...] = (), *, now: datetime | None = None) -> None:
        self.store = store
        self._stamp: tuple[int, int, int] | None = None
        self._signers: list[tuple[NoteSigner, datetime | None]] = [(s, None) for s in fixed]
        self._known: set[bytes] = {s.key_id for s in fixed}
        if store is not None:
            self.refresh(now or datetime.now(UTC))
        if not self._signers:
            raise ConfigurationError("the audit log has no signing key")

    @classmethod
    def of(cls, *signers: NoteSigner) -> LogSigners:
        return cls(fixed=signers)

    def refresh(self, now: datetime, *, force: bool = False) -> None:
        if self.store is None:
            return
        stamp = self.store.stamp()
        if stamp == self._stamp and not force:
            return
        state = self.store.state()
        # the keys that sign at ``now`` (a retired key's private file may be gone);
        # ``at`` drops each one as its overlap ends
        self._signers = self.store.signers(now)
        self._known = {bytes.fromhex(k) for k in state.keys if k != state.pending or state.pending_signs}
        self._stamp = stamp

    @property
    def current(self) -> NoteSigner:
        return self._signers[0][0]

    def at(self, now: datetime) -> list[NoteSigner]:
        """The signers of a checkpoint made at ``now``: current first, then those in overlap."""
        return [s for s, until in self._signers if until is None or now < until]

    def knows(self, key_id: bytes) -> bool:
        """Whether ``key_id`` is one of this log's keys (current, overlapping or retired)."""
        return key_id in self._known


__all__ = ["LOG", "LOG_DIR", "LogKey", "LogKeyState", "LogKeyStore", "LogSigners", "trusted_log_keys"]
