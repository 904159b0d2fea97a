"""What the API and ``masp audit proof`` hand out: entry proofs and consistency proofs,
each anchored to a signed (and, when the witnesses have caught up, cosigned) checkpoint."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from broker.audit.proof import TlogProof
from broker.audit.witness import append_cosignatures
from broker.errors import InvalidRange, NotFound
from broker.store import raw
from broker.store.audit_tree import consistency_proof, inclusion_proof
from broker.store.audit_witness import checkpoint_at, cosigned_note, latest_checkpoint


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


@dataclass(frozen=True)
class EntryProof:
    leaf: bytes
    leaf_hash: bytes
    proof: TlogProof
    size: int
    witnesses: list[str]
    published: bool

    def as_json(self) -> dict[str, Any]:
        return {"index": self.proof.index, "tree_size": self.size,
                "hashes": [b64(h) for h in self.proof.hashes], "checkpoint": self.proof.checkpoint,
                "witnesses": self.witnesses, "published": self.published}


_CHECKPOINT_SQL = (
    "SELECT c.size, c.note, s.witness, s.line FROM audit_checkpoint c "
    "LEFT JOIN audit_cosignature s ON s.size = c.size WHERE c.size = {size} ORDER BY s.witness")
_NEWEST = "(SELECT max(size) FROM audit_checkpoint)"
# the newest checkpoint with a quorum of cosignatures that includes the entry, else the newest
_PUBLISHED = ("COALESCE((SELECT size FROM audit_cosignature WHERE size > ? GROUP BY size "
              "HAVING count(*) >= ? ORDER BY size DESC LIMIT 1), "
              "(SELECT max(size) FROM audit_checkpoint))")


async def _checkpoint(session: AsyncSession, seq: int, quorum: int, size: int | None
                      ) -> tuple[int, str, list[str], list[str]] | None:
    """``(size, note, witnesses, cosignature lines)`` of the checkpoint to prove ``seq`` against.

    One query for the checkpoint and its cosignatures (a checkpoint lookup and then
    ``cosigned_note`` took three): proofs are served per entry, often.
    """
    if size is not None:
        rows = await raw.fetch(session, _CHECKPOINT_SQL.format(size="?"), size)
    elif quorum > 0:
        rows = await raw.fetch(session, _CHECKPOINT_SQL.format(size=_PUBLISHED), seq, quorum)
    else:
        rows = await raw.fetch(session, _CHECKPOINT_SQL.format(size=_NEWEST))
    if not rows:
        return None
    cosigned = [(witness, line) for _, _, witness, line in rows if witness is not None]
    return (int(rows[0][0]), str(rows[0][1]), [w for w, _ in cosigned], [ln for _, ln in cosigned])


async def entry_proof(session: AsyncSession, seq: int, *, quorum: int,
                      size: int | None = None) -> EntryProof:
    """Inclusion of entry ``seq`` in checkpoint ``size`` (default: newest published one)."""
    entry = await raw.fetch(session, "SELECT leaf, leaf_hash FROM audit_entry WHERE seq = ?", seq)
    if not entry:
        raise NotFound(f"no audit entry {seq}")
    leaf, leaf_hash = bytes(entry[0][0]), bytes(entry[0][1])
    found = await _checkpoint(session, seq, quorum, size)
    if found is not None and found[0] <= seq:
        if size is not None:
            raise InvalidRange(f"entry {seq} is not in the checkpoint of size {size}")
        found = None
    if found is None:
        raise NotFound("no checkpoint covers this entry" if size is None
                       else f"the log issued no checkpoint of size {size}")
    cp_size, note, witnesses, lines = found
    hashes = await inclusion_proof(session, seq, cp_size)
    proof = TlogProof(seq, tuple(hashes), append_cosignatures(note, lines), extra=leaf)
    return EntryProof(leaf, leaf_hash, proof, cp_size, witnesses, len(witnesses) >= quorum)


async def consistency(session: AsyncSession, size1: int | None, size2: int | None) -> dict[str, Any]:
    """Consistency proof between two tree sizes, with the cosigned checkpoint at ``size2``.

    ``size2`` defaults to the newest checkpoint and must be a checkpoint size, so the proof
    always ends at a signed root; ``size1`` may be omitted or 0 (nothing to prove).
    """
    checkpoint = await (latest_checkpoint(session) if size2 is None else checkpoint_at(session, size2))
    if checkpoint is None:
        raise NotFound("the log is empty" if size2 is None
                       else f"the log issued no checkpoint of size {size2}")
    old = size1 or 0
    if old > checkpoint.size:
        raise InvalidRange(f"from {old} is beyond to {checkpoint.size}")
    proof = await consistency_proof(session, old, checkpoint.size)
    note, witnesses = await cosigned_note(session, checkpoint)
    return {"from": old, "to": checkpoint.size, "proof": [b64(h) for h in proof],
            "checkpoint": note, "witnesses": witnesses}
