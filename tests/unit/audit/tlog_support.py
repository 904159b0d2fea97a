"""A log, a witness and request bodies for the tlog-witness tests: real keys, real trees."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.merkle import consistency_proof, leaf_hash, root_from_leaf_hashes
from broker.audit.note import Checkpoint, CosignatureSigner, NoteSigner, Verifier, sign_note
from broker.audit.tlog_witness import FileWitnessState, Witness
from broker.clock import Clock, FrozenClock

SPEC = Path(__file__).resolve().parents[2] / "assets" / "vectors" / "tlog-witness"
SPEC_REQUEST = (SPEC / "add-checkpoint-request.txt").read_bytes()
SPEC_RESPONSE = (SPEC / "add-checkpoint-response.txt").read_text(encoding="utf-8")
SPEC_ORIGIN = "example.com/behind-the-sofa"

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ORIGIN = "example.org/tlog-witness-test"
LOG = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
OTHER_LOG_KEY = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x08" * 32))
WITNESS = CosignatureSigner("witness.example/test", Ed25519PrivateKey.from_private_bytes(b"\x09" * 32))
LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(64)]
FORKED = [*LEAVES[:3], *(leaf_hash(f"forked {i}".encode()) for i in range(3, 64))]


def checkpoint(size: int, leaves: Sequence[bytes] = LEAVES) -> Checkpoint:
    return Checkpoint(ORIGIN, size, root_from_leaf_hashes(leaves[:size]))


def signed(size: int, leaves: Sequence[bytes] = LEAVES, signers: Sequence[NoteSigner] = (LOG,)) -> str:
    return sign_note(checkpoint(size, leaves).body(), signers)


def proof(old: int, new: int, leaves: Sequence[bytes] = LEAVES) -> list[bytes]:
    return consistency_proof(old, new, leaves.__getitem__) if 0 < old < new else []


def body(old: int, note: str, hashes: Sequence[bytes] = ()) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in hashes), ""]
    return ("".join(line + "\n" for line in lines) + note).encode()


def make_witness(home: Path, keys: Sequence[Verifier] | None = None, clock: Clock | None = None,
                 origin: str = ORIGIN) -> Witness:
    """A witness recording under ``home`` that knows ``origin`` by ``keys`` (default: LOG's)."""
    trusted = list(keys) if keys is not None else [LOG.verifier()]
    return Witness(WITNESS, lambda o: trusted if o == origin else [], FileWitnessState(home),
                   clock or FrozenClock(NOW))
