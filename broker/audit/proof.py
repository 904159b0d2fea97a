"""C2SP tlog-proof (``c2sp.org/tlog-proof@v1``): an entry's index, inclusion path and checkpoint.

https://c2sp.org/tlog-proof. The proof is offline-verifiable with the log's key and a
witness policy. The ``extra`` line carries the audit leaf itself (canonical JSON of the
entry: pseudonyms and digests, no personal data), so a proof checks on its own; extra data
is unauthenticated by the format, and is trusted here only because its hash must match
the inclusion proof.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from broker.audit.merkle import HASH_SIZE, ProofInvalid, leaf_hash, verify_inclusion
from broker.audit.note import Checkpoint, NoteError, Verifier
from broker.audit.witness import open_checkpoint

HEADER = "c2sp.org/tlog-proof@v1"
_INDEX_RE = re.compile(r"index (0|[1-9][0-9]*)")


class TlogProofError(ValueError):
    """A tlog-proof is malformed or does not verify; the message names the check."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        value = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise TlogProofError(f"{what} is not valid base64") from None
    if _b64(value) != text:
        raise TlogProofError(f"{what} is not canonical base64")
    return value


@dataclass(frozen=True)
class TlogProof:
    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    """The signed checkpoint note, verbatim, with any witness cosignatures."""
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or self.index < 0:
            raise TlogProofError("index must be a non-negative integer")
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise TlogProofError("inclusion proof hashes must be 32 bytes")
        if not self.checkpoint.endswith("\n"):
            raise TlogProofError("checkpoint note must end with a newline")

    def text(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {_b64(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(_b64(h) for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        head, sep, checkpoint = text.partition("\n\n")
        if not sep:
            raise TlogProofError("proof has no blank line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise TlogProofError(f"proof does not start with {HEADER}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = _unb64(rest.pop(0)[len("extra "):], "extra data")
        if not rest or not (match := _INDEX_RE.fullmatch(rest[0])):
            raise TlogProofError("proof has no canonical index line")
        hashes = tuple(_unb64(line, "inclusion proof hash") for line in rest[1:])
        return cls(int(match[1]), hashes, checkpoint, extra)

    def verify(self, log: Verifier | Sequence[Verifier], witnesses: Sequence[Verifier] = (), quorum: int = 0,
               leaf: bytes | None = None) -> tuple[Checkpoint, list[str]]:
        """Check the note, the witness quorum and the inclusion of ``leaf`` (default: extra).

        Returns the checkpoint and the names of the witnesses whose cosignatures verified.
        """
        data = leaf if leaf is not None else self.extra
        if data is None:
            raise TlogProofError("no leaf to check: the proof carries none and none was given")
        try:
            checkpoint, cosigners = open_checkpoint(self.checkpoint, log, witnesses)
        except NoteError as exc:
            raise TlogProofError(f"checkpoint does not verify: {exc}") from None
        if len(cosigners) < quorum:
            raise TlogProofError(f"checkpoint has {len(cosigners)} witness cosignatures, "
                                 f"the policy needs {quorum}")
        try:
            verify_inclusion(leaf_hash(data), self.index, checkpoint.size, self.hashes,
                             checkpoint.root_hash)
        except ProofInvalid as exc:
            raise TlogProofError(str(exc)) from None
        return checkpoint, cosigners
