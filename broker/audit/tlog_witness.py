"""The witness side of the C2SP tlog-witness protocol (https://c2sp.org/tlog-witness), no HTTP.

A log submits ``add-checkpoint``: the size of the checkpoint this witness last cosigned for the
log (``old <size>``), a consistency proof from that size, an empty line and the new signed
checkpoint. ``Witness.submit`` runs the spec's checks in its order and answers with the
cosignature line(s), or raises ``WitnessRefusal`` carrying the status, body and content type
the spec prescribes:

- 400 the request is malformed, or the old size is larger than the checkpoint's size;
- 404 the checkpoint's origin is not a log this witness knows;
- 403 no signature by a trusted key of that log, or a trusted key's signature fails;
- 409 the old size is not the size of the latest checkpoint cosigned for the origin (body
  ``<size>\\n``, ``Content-Type: text/x.tlog.size``), so the log can resynchronise;
- 422 a size-0 checkpoint whose root is not the empty tree's, a proof with old size 0, a
  consistency proof that does not verify, or the same size with another root.

Comparing the old size with the latest cosigned checkpoint and recording the new one happen
under one lock (``FileWitnessState.locked``: an exclusive ``flock``, then an atomic replace),
so two racing submissions can never roll the record back; the record is on disk before the
cosignature is returned. The same core serves the adapters' pull mode (``adapters/witness.py``):
one implementation of the checks, two transports.

The record of a log is a signed note: the checkpoint with the log signatures that verified
and this witness's cosignature. It is what ``GET <prefix>/<sha256(origin)>/checkpoint``
serves to monitors (``Witness.monitored``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from broker.audit.merkle import EMPTY_ROOT, HASH_SIZE, ProofInvalid, verify_consistency
from broker.audit.note import (
    MAX_SIGNATURES,
    Checkpoint,
    CosignatureSigner,
    NoteError,
    Verifier,
    note_signatures,
    open_note_keys,
    parse_signature_line,
)
from broker.clock import Clock
from broker.durable import replace_file
from broker.errors import ConfigurationError

MAX_PROOF_LINES = 63
"""The spec's bound: a client MUST NOT send more proof lines, so a request with more is malformed."""
MAX_REQUEST_BYTES = 256 * 1024
"""Bounds the work of parsing one request: a checkpoint note is a few hundred bytes, and 63
proof lines about 3 KiB; the rest leaves room for many (post-quantum) signatures."""
SIZE_MEDIA = "text/x.tlog.size"
TEXT_MEDIA = "text/plain; charset=utf-8"

_OLD_RE = re.compile(r"old (0|[1-9][0-9]{0,19})")
_ORIGIN_HASH_RE = re.compile(r"[0-9a-f]{64}")
_MAX_SIZE = 1 << 64


def origin_hash(origin: str) -> str:
    """The spec's name of a log in monitoring URLs: lowercase hex SHA-256 of its origin line."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


class WitnessRefusal(Exception):
    """The witness will not cosign: the HTTP answer the spec prescribes, ready to send.

    ``code`` is a short stable name of the check that failed, safe to log; ``body`` never
    echoes the request.
    """

    def __init__(self, status: int, code: str, detail: str, *, body: str | None = None,
                 content_type: str = TEXT_MEDIA, latest_size: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body if body is not None else detail + "\n"
        self.content_type = content_type
        #: on a 409, the size of the latest checkpoint cosigned for the log
        self.latest_size = latest_size

    @classmethod
    def conflict(cls, size: int) -> WitnessRefusal:
        return cls(409, "old-size-mismatch", f"the latest cosigned checkpoint has size {size}",
                   body=f"{size}\n", content_type=SIZE_MEDIA, latest_size=size)


def _malformed(detail: str) -> WitnessRefusal:
    return WitnessRefusal(400, "malformed", detail)


def _proof_hash(line: str) -> bytes:
    """One proof line: the canonical standard base64 of exactly one 32-byte hash."""
    try:
        value = base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _malformed("a consistency proof line is not base64") from None
    if len(value) != HASH_SIZE or base64.b64encode(value).decode("ascii") != line:
        raise _malformed("a consistency proof line is not one canonically encoded 32-byte hash")
    return value


@dataclass(frozen=True)
class AddCheckpoint:
    """An ``add-checkpoint`` request. ``checkpoint`` is the note's text, parsed but not yet
    verified: nothing about it is trusted until ``Witness.submit`` checked the log's signature."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str
    checkpoint: Checkpoint

    def encode(self) -> bytes:
        """The request body, as a log sends it."""
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode("ascii") for h in self.proof), ""]
        return ("".join(line + "\n" for line in lines) + self.note).encode("utf-8")

    @classmethod
    def of(cls, old_size: int, proof: Sequence[bytes], note: str) -> AddCheckpoint:
        """A request from its parts, held to the same rules as a parsed one."""
        return parse_add_checkpoint(cls(old_size, tuple(proof), note, _EMPTY).encode())


_EMPTY = Checkpoint("-", 0, EMPTY_ROOT)


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request body strictly; anything but the spec's grammar is a 400.

    The old size line is ``old`` and a canonical decimal (no leading zero, below 2^64); then
    at most 63 proof lines; then an empty line; then a signed note whose text is a well-formed
    checkpoint. Every line ends in a newline.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise _malformed("the request is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("the request is not UTF-8") from None
    end = text.find("\n")
    found = _OLD_RE.fullmatch(text[:end]) if end >= 0 else None
    if found is None:
        raise _malformed("the first line is not 'old <size>' with a canonical decimal size")
    old_size = int(found[1])
    if old_size >= _MAX_SIZE:
        raise _malformed("the old size is not a 64-bit unsigned integer")
    pos = end + 1
    proof: list[bytes] = []
    while True:
        end = text.find("\n", pos)
        if end < 0:
            raise _malformed("no empty line before the checkpoint")
        line, pos = text[pos:end], end + 1
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise _malformed(f"more than {MAX_PROOF_LINES} consistency proof lines")
        proof.append(_proof_hash(line))
    note = text[pos:]
    try:
        checkpoint = Checkpoint.parse(note_signatures(note)[0])
    except NoteError:
        raise _malformed("the checkpoint is not a well-formed signed checkpoint note") from None
    return AddCheckpoint(old_size, tuple(proof), note, checkpoint)


def parse_cosignature_lines(body: str) -> list[tuple[str, bytes, str]]:
    """A 200 answer to ``add-checkpoint``: one or more note signature lines, each ending in a
    newline; as (key name, key id || signature, line). Raises ``NoteError`` otherwise."""
    if not body.endswith("\n"):
        raise NoteError("the cosignature lines do not end in a newline")
    lines = body[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("too many cosignature lines")
    return [(*parse_signature_line(line), line) for line in lines]


# --- the record of what was cosigned ----------------------------------------------------


def _read_record(path: Path, origin: str | None) -> tuple[str, Checkpoint] | None:
    """A stored record: the note and its checkpoint, or None when there is none.

    The record is this witness's own, written only after the log's signature verified; it
    is parsed, not verified again (the log's key may have been retired since). A record that
    does not parse, or is for another origin, stops the witness rather than resetting it.
    """
    try:
        note = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"witness state {path} is unreadable ({type(exc).__name__})") from None
    try:
        checkpoint = Checkpoint.parse(note_signatures(note)[0])
    except NoteError as exc:
        raise ConfigurationError(f"witness state {path} is not a checkpoint note: {exc}") from None
    if origin is not None and checkpoint.origin != origin:
        raise ConfigurationError(f"witness state {path} is for another log")
    return note, checkpoint


class StateSlot:
    """One log's record, held under its lock (``FileWitnessState.locked``)."""

    def __init__(self, path: Path, origin: str) -> None:
        self.path = path
        self.origin = origin

    def read(self) -> tuple[str, Checkpoint] | None:
        return _read_record(self.path, self.origin)

    def write(self, note: str) -> None:
        replace_file(self.path, note.encode("utf-8"))


class FileWitnessState:
    """Per log, the latest cosigned checkpoint, in a file of its own.

    A log's file is ``directory/<sha256(origin)>``, unless ``pinned`` names its path: an
    adapter keeps the broker's log at ``<home>/witness/checkpoint``, where its pull mode always
    kept it, so an adapter upgraded to this code carries on from the checkpoint it last saw.
    """

    def __init__(self, directory: Path, pinned: Mapping[str, Path] | None = None) -> None:
        self.directory = directory
        self.pinned = dict(pinned or {})

    def path(self, origin: str) -> Path:
        return self.pinned.get(origin) or self.directory / origin_hash(origin)

    def read(self, origin: str) -> tuple[str, Checkpoint] | None:
        """The record of ``origin`` without waiting for its lock (a replace is atomic)."""
        return _read_record(self.path(origin), origin)

    def by_hash(self, hashed: str) -> str | None:
        """The recorded note of the log whose origin hashes to ``hashed``, if any."""
        if not _ORIGIN_HASH_RE.fullmatch(hashed):
            return None
        path = next((p for o, p in self.pinned.items() if origin_hash(o) == hashed),
                    self.directory / hashed)
        found = _read_record(path, None)
        if found is None or origin_hash(found[1].origin) != hashed:
            return None
        return found[0]

    @contextlib.contextmanager
    def locked(self, origin: str) -> Iterator[StateSlot]:
        """Hold ``origin``'s record exclusively: other threads and processes wait.

        ``flock`` on a lock file beside the record (never the record itself, which is
        replaced); each call opens the lock file anew, so threads of one process exclude each
        other as processes do.
        """
        path = self.path(origin)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield StateSlot(path, origin)
        finally:
            os.close(fd)  # closing the descriptor releases the lock


# --- the witness ------------------------------------------------------------------------

#: The trusted keys of the log with this origin; empty when the origin is unknown.
LogKeys = Callable[[str], Sequence[Verifier]]


@dataclass
class Witness:
    """A tlog witness: its cosigning key, the logs it knows, what it last cosigned, a clock."""

    signer: CosignatureSigner
    log_keys: LogKeys
    state: FileWitnessState
    clock: Clock

    @property
    def name(self) -> str:
        return self.signer.name

    def add_checkpoint(self, body: bytes) -> str:
        """The whole exchange over a request body: the 200 body, or ``WitnessRefusal``."""
        return "".join(line + "\n" for line in self.submit(parse_add_checkpoint(body)))

    def latest(self, origin: str) -> Checkpoint | None:
        """The latest checkpoint cosigned for ``origin`` (None: never)."""
        found = self.state.read(origin)
        return found[1] if found else None

    def _trusted(self, origin: str) -> list[Verifier]:
        # only keys named by the origin: a key of another name would let a note signed under
        # that name pass for this log
        keys = [k for k in self.log_keys(origin) if k.name == origin]
        if not keys:
            raise WitnessRefusal(404, "unknown-origin", "this witness does not know the log")
        return keys

    def submit(self, request: AddCheckpoint) -> list[str]:
        """Check ``request`` in the spec's order, record it, and return the cosignature line(s).

        The record is replaced (under the log's lock, before returning) by the checkpoint with
        the log signatures that verified and the new cosignature.
        """
        new = request.checkpoint
        keys = self._trusted(new.origin)
        try:
            text, signed = open_note_keys(request.note, keys)
        except NoteError:
            raise WitnessRefusal(403, "untrusted-signature", "no valid signature by a trusted key "
                                 "of the log, or a signature by a trusted key failed") from None
        if request.old_size > new.size:
            raise WitnessRefusal(400, "old-size-too-large", "the old size is larger than the "
                                 "checkpoint's size")
        with self.state.locked(new.origin) as slot:
            found = slot.read()
            latest = found[1] if found else None
            latest_size = latest.size if latest else 0
            if request.old_size != latest_size:
                raise WitnessRefusal.conflict(latest_size)
            if new.size == 0 and not hmac.compare_digest(new.root_hash, EMPTY_ROOT):
                raise WitnessRefusal(422, "empty-tree-root", "a checkpoint of size 0 must have "
                                     "the root hash of the empty tree")
            if request.old_size == 0:
                if request.proof:
                    raise WitnessRefusal(422, "unexpected-proof", "a proof from old size 0 must "
                                         "be empty")
            else:
                assert latest is not None
                self._consistent(latest, new, request.proof)
            lines = [self.signer.cosign(new.body(), self._timestamp())]
            slot.write(self._record(text, request.note, signed, lines))
        return lines

    @staticmethod
    def _consistent(latest: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
        if latest.size == new.size and not proof:
            if not hmac.compare_digest(latest.root_hash, new.root_hash):
                raise WitnessRefusal(422, "root-mismatch", "the checkpoint has the size of the "
                                     "latest cosigned one but another root hash")
            return
        try:
            verify_consistency(latest.size, new.size, proof, latest.root_hash, new.root_hash)
        except ProofInvalid:
            raise WitnessRefusal(422, "proof-invalid", "the consistency proof from the latest "
                                 "cosigned checkpoint does not verify") from None

    def _timestamp(self) -> int:
        # the spec: the timestamp MUST NOT be zero (a clock at the epoch or before still
        # cosigns with a time that is not "no statement")
        return max(1, int(self.clock().timestamp()))

    @staticmethod
    def _record(text: str, note: str, signed: Sequence[Verifier], cosignatures: Sequence[str]) -> str:
        """The checkpoint with the log signatures that verified and this witness's lines."""
        ids = {(v.name, v.key_id) for v in signed}
        _, lines = note_signatures(note)
        kept = [line for name, raw, line in lines if (name, raw[:4]) in ids]
        return text + "\n" + "".join(line + "\n" for line in [*kept, *cosignatures])

    def monitored(self, hashed: str) -> str:
        """``GET <prefix>/<origin hash>/checkpoint``: the latest cosigned checkpoint with the
        log's signatures and this witness's cosignature; a 404 refusal if there is none.

        A record from before this witness kept its cosignature in it (an adapter's pull mode
        kept only the log's signatures) is cosigned afresh, as of now: that is still true.
        """
        note = self.state.by_hash(hashed)
        if note is None:
            raise WitnessRefusal(404, "not-found", "this witness has not cosigned that log")
        text, lines = note_signatures(note)
        if any(name == self.name and raw[:4] == self.signer.key_id for name, raw, _ in lines):
            return note
        return note + self.signer.cosign(text, self._timestamp()) + "\n"


__all__ = [
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "SIZE_MEDIA",
    "TEXT_MEDIA",
    "AddCheckpoint",
    "FileWitnessState",
    "LogKeys",
    "StateSlot",
    "Witness",
    "WitnessRefusal",
    "origin_hash",
    "parse_add_checkpoint",
    "parse_cosignature_lines",
]
