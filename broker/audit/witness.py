"""Witnessing the audit log: who cosigns, and opening cosigned checkpoints.

Each agency is a witness. It cosigns (``cosignature/v1``) with its registered Ed25519
signing key under the name ``masp.witness/<agency>``; the type byte in the key id keeps
those signatures apart from the agency's JWS signatures. When a newer checkpoint may be
cosigned (a witness only moves forward) is decided in one place, the C2SP tlog-witness core
``broker/audit/tlog_witness.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker.audit.note import Checkpoint, CosignatureVerifier, NoteError, Verifier, open_note_keys

WITNESS_PREFIX = "masp.witness/"


def witness_name(agency: str) -> str:
    return WITNESS_PREFIX + agency


def witness_verifier(agency: str, public_key: Ed25519PublicKey) -> CosignatureVerifier:
    return CosignatureVerifier(witness_name(agency), public_key)


def open_checkpoint(note: str, log: Verifier | Sequence[Verifier], witnesses: Sequence[Verifier] = ()
                    ) -> tuple[Checkpoint, list[str]]:
    """Verify a (cosigned) checkpoint note; return it and the witnesses that cosigned it.

    ``log`` is the log's key, or several keys of the log (all named by its origin): one of
    them must have signed it.
    """
    checkpoint, _, cosigners = open_checkpoint_keys(note, log, witnesses)
    return checkpoint, [w.name for w in cosigners]


def open_checkpoint_keys(note: str, log: Verifier | Sequence[Verifier], witnesses: Sequence[Verifier] = ()
                         ) -> tuple[Checkpoint, list[Verifier], list[Verifier]]:
    """``open_checkpoint`` returning which log keys signed and which witnesses cosigned."""
    logs = [log] if not isinstance(log, Sequence) else list(log)
    if not logs or len({v.name for v in logs}) != 1:
        raise NoteError("the log's keys must all carry its origin as their name")
    origin = logs[0].name
    text, found = open_note_keys(note, [*logs, *(w for w in witnesses if w.name != origin)])
    checkpoint = Checkpoint.parse(text)
    signed = [v for v in found if v.name == origin]
    if not signed or checkpoint.origin != origin:
        raise NoteError("checkpoint is not signed by the log under its origin")
    return checkpoint, signed, [v for v in found if v.name != origin]


def append_cosignatures(note: str, lines: Sequence[str]) -> str:
    """The note with cosignature lines added after its own signatures."""
    if not note.endswith("\n"):
        raise NoteError("note must end with a newline")
    return note + "".join(line + "\n" for line in lines)
